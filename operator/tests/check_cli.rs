//! `istio-integrity-operator check`, driven as a user and a CI pipeline drive it: the built
//! binary, real files, standard input, exit codes and the three output formats.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_istio-integrity-operator");

/// A Service and a VirtualService routing to it: nothing to report.
const CLEAN: &str = r#"apiVersion: v1
kind: Service
metadata:
  name: reviews
  namespace: shop
spec:
  selector: {app: reviews}
  ports:
    - name: http
      port: 80
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: reviews
  namespace: shop
spec:
  hosts: [reviews]
  http:
    - route:
        - destination:
            host: reviews
"#;

/// A VirtualService bound to a Gateway that does not exist (IST0101, an error), on line 6.
const MISSING_GATEWAY: &str = r#"# the VirtualService below starts on line 6 of this file
#
#
#
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: storefront
  namespace: shop
spec:
  hosts: [shop.example.com]
  gateways: [istio-system/no-such-gateway]
  http:
    - route:
        - destination:
            host: reviews
---
apiVersion: v1
kind: Service
metadata:
  name: reviews
  namespace: shop
spec:
  ports:
    - name: http
      port: 80
"#;

/// A VirtualService whose host its (existing) Gateway does not serve: IST0132, a warning only.
const HOST_NOT_IN_GATEWAY: &str = r#"apiVersion: networking.istio.io/v1
kind: Gateway
metadata:
  name: public
  namespace: shop
spec:
  selector: {istio: ingressgateway}
  servers:
    - port: {number: 80, name: http, protocol: HTTP}
      hosts: [a.example.com]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: b
  namespace: shop
spec:
  hosts: [b.example.com]
  gateways: [public]
  http:
    - route:
        - destination:
            host: b
---
apiVersion: v1
kind: Service
metadata:
  name: b
  namespace: shop
spec:
  ports:
    - name: http
      port: 80
"#;

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

fn run(args: &[&str], stdin: Option<&str>) -> Run {
    let mut command = Command::new(BIN);
    command.arg("check").args(args).env_remove("NO_COLOR");
    command.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    });
    command.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = command.spawn().expect("the binary starts");
    if let Some(text) = stdin {
        let mut pipe = child.stdin.take().expect("stdin is piped");
        // A run that stops before reading its input (a usage error) closes the pipe first.
        if let Err(error) = pipe.write_all(text.as_bytes()) {
            assert_eq!(error.kind(), std::io::ErrorKind::BrokenPipe, "{error}");
        }
    }
    let output: Output = child.wait_with_output().expect("the binary finishes");
    Run {
        code: output
            .status
            .code()
            .expect("exited, not killed by a signal"),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).expect("mkdir");
    }
    std::fs::write(&path, text).expect("write fixture");
    path
}

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|error| panic!("stdout is JSON ({error}):\n{text}"))
}

/// `check examples/istio --format FORMAT`.
fn check_the_sample_mesh(format: &str) -> Run {
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/istio");
    run(
        &[examples.to_str().expect("utf-8"), "--format", format],
        None,
    )
}

fn codes(report: &Value) -> Vec<String> {
    report["findings"]
        .as_array()
        .expect("findings[]")
        .iter()
        .map(|f| f["code"].as_str().expect("code").to_string())
        .collect()
}

// ---- exit codes ---------------------------------------------------------------------------

#[test]
fn a_clean_mesh_exits_0_with_a_summary_line() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = write(dir.path(), "mesh.yaml", CLEAN);
    let out = run(&[file.to_str().expect("utf-8 path")], None);
    assert_eq!(
        out.code, 0,
        "stdout:\n{}\nstderr:\n{}",
        out.stdout, out.stderr
    );
    assert_eq!(out.stdout, "No findings in 2 objects\n");
}

#[test]
fn an_error_finding_exits_1_and_names_severity_code_object_and_file_line() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = write(dir.path(), "mesh.yaml", MISSING_GATEWAY);
    let path = file.to_str().expect("utf-8 path");
    let out = run(&[path], None);
    assert_eq!(
        out.code, 1,
        "stdout:\n{}\nstderr:\n{}",
        out.stdout, out.stderr
    );
    let line = out
        .stdout
        .lines()
        .find(|line| line.contains("IST0101"))
        .unwrap_or_else(|| panic!("an IST0101 line in:\n{}", out.stdout));
    assert!(line.trim_start().starts_with("Error"), "{line}");
    assert!(line.contains("VirtualService shop/storefront"), "{line}");
    assert!(line.contains("no-such-gateway"), "{line}");
    assert!(line.ends_with(&format!("({path}:6)")), "{line}");
    assert!(
        out.stdout.starts_with("Errors ("),
        "grouped under a severity heading:\n{}",
        out.stdout
    );
    assert!(
        out.stdout
            .lines()
            .last()
            .is_some_and(|l| l.contains("error")),
        "summary line last:\n{}",
        out.stdout
    );
}

#[test]
fn a_syntax_error_exits_2_naming_file_line_and_column() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = write(
        dir.path(),
        "broken.yaml",
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: [unclosed\n",
    );
    let path = file.to_str().expect("utf-8 path");
    let out = run(&[path], None);
    assert_eq!(out.code, 2, "stderr:\n{}", out.stderr);
    let prefix = format!("error: {path}:");
    let line = out
        .stderr
        .lines()
        .find(|l| l.starts_with(&prefix))
        .unwrap_or_else(|| panic!("{prefix}… in:\n{}", out.stderr));
    let location: Vec<&str> = line[prefix.len()..].splitn(3, ':').collect();
    assert!(
        location[0].parse::<u32>().is_ok_and(|l| l >= 4),
        "line number in {line}"
    );
    assert!(
        location[1].parse::<u32>().is_ok_and(|c| c >= 1),
        "column number in {line}"
    );
}

#[test]
fn a_json_syntax_error_exits_2_naming_file_line_and_column() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = write(
        dir.path(),
        "broken.json",
        "{\n  \"apiVersion\": \"v1\",\n  \"kind\": \"Service\",,\n}\n",
    );
    let path = file.to_str().expect("utf-8 path");
    let out = run(&[path], None);
    assert_eq!(out.code, 2, "stderr:\n{}", out.stderr);
    assert!(
        out.stderr.contains(&format!("error: {path}:")),
        "{}",
        out.stderr
    );
}

#[test]
fn a_document_without_apiversion_or_kind_exits_2_with_its_file_and_line() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = write(
        dir.path(),
        "values.yaml",
        &format!("{CLEAN}---\nreplicas: 3\nimage: shop:1.2\n"),
    );
    let path = file.to_str().expect("utf-8 path");
    let out = run(&[path], None);
    assert_eq!(out.code, 2, "stderr:\n{}", out.stderr);
    let expected_line = CLEAN.lines().count() + 2;
    assert!(
        out.stderr.contains(&format!("{path}:{expected_line}:")),
        "line {expected_line} in:\n{}",
        out.stderr
    );
    assert!(out.stderr.contains("apiVersion"), "{}", out.stderr);
}

#[test]
fn bad_input_wins_over_findings_and_the_findings_are_still_printed() {
    let dir = tempfile::tempdir().expect("temp dir");
    write(dir.path(), "a-mesh.yaml", MISSING_GATEWAY);
    write(dir.path(), "b-broken.yaml", "kind: [\n");
    let out = run(&[dir.path().to_str().expect("utf-8 path")], None);
    assert_eq!(out.code, 2);
    assert!(out.stdout.contains("IST0101"), "{}", out.stdout);
    assert!(out.stderr.contains("b-broken.yaml:"), "{}", out.stderr);
}

#[test]
fn a_file_with_one_bad_document_is_skipped_whole_and_the_other_files_are_still_checked() {
    // a-mixed.yaml: a good VirtualService (bound to a missing Gateway: it would give IST0101),
    // then a document that is not a Kubernetes object. b-mesh.yaml: the same fault, reported.
    let dir = tempfile::tempdir().expect("temp dir");
    let mixed = format!(
        "{}---
replicas: 3
",
        MISSING_GATEWAY.replace("storefront", "skipped")
    );
    let bad_line = mixed.lines().count(); // `replicas: 3`, the last line
    write(dir.path(), "a-mixed.yaml", &mixed);
    write(dir.path(), "b-mesh.yaml", MISSING_GATEWAY);
    let root = dir.path().to_str().expect("utf-8 path");

    let out = run(&[root, "--format", "json"], None);

    assert_eq!(out.code, 2, "bad input wins; stderr:\n{}", out.stderr);
    let location = format!("a-mixed.yaml:{bad_line}:1: ");
    assert!(
        out.stderr.contains(&location),
        "{location} in:\n{}",
        out.stderr
    );
    let report = json(&out.stdout);
    let names: std::collections::BTreeSet<&str> = report["findings"]
        .as_array()
        .expect("findings[]")
        .iter()
        .filter_map(|f| f["resource"]["name"].as_str())
        .collect();
    assert_eq!(
        names,
        ["storefront"].into(),
        "only b-mesh.yaml's objects are checked"
    );
    assert_eq!(
        report["summary"]["objectsTotal"], 2,
        "b-mesh.yaml's two objects"
    );
}

#[test]
fn a_missing_path_exits_2() {
    let out = run(&["/nonexistent/mesh.yaml"], None);
    assert_eq!(out.code, 2);
    assert!(
        out.stderr.contains("/nonexistent/mesh.yaml: cannot read"),
        "{}",
        out.stderr
    );
}

#[test]
fn non_utf8_bytes_exit_2_without_a_panic() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("binary.yaml");
    std::fs::write(&file, [0xff, 0xfe, 0x00, 0x41, b'\n', 0xc3]).expect("write");
    let out = run(&[file.to_str().expect("utf-8 path")], None);
    assert_eq!(out.code, 2);
    assert!(!out.stderr.contains("panicked"), "{}", out.stderr);
    assert!(out.stderr.contains("not UTF-8"), "{}", out.stderr);
}

#[test]
fn usage_errors_exit_2() {
    assert_eq!(run(&["--format", "xml"], None).code, 2);
    assert_eq!(run(&["--fail-on", "sometimes"], None).code, 2);
    assert_eq!(run(&["--no-such-flag"], None).code, 2);
    let bad_suppression = run(&["--suppress", "IST0101=VirtualService", "-"], Some(CLEAN));
    assert_eq!(bad_suppression.code, 2, "{}", bad_suppression.stderr);
}

#[test]
fn help_exits_0() {
    let out = run(&["--help"], None);
    assert_eq!(out.code, 0);
    assert!(out.stdout.contains("--fail-on"));
}

// ---- --fail-on ----------------------------------------------------------------------------

#[test]
fn fail_on_sets_the_threshold_of_exit_1_and_never_changes_the_output() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = write(dir.path(), "mesh.yaml", HOST_NOT_IN_GATEWAY);
    let path = file.to_str().expect("utf-8 path");
    let default = run(&[path], None);
    assert!(default.stdout.contains("IST0132"), "{}", default.stdout);
    assert!(
        !default.stdout.contains("Errors ("),
        "only a warning expected:\n{}",
        default.stdout
    );
    assert_eq!(
        default.code, 0,
        "a warning does not fail the default --fail-on error"
    );
    for (threshold, expected) in [("error", 0), ("warning", 1), ("info", 1), ("never", 0)] {
        let out = run(&[path, "--fail-on", threshold], None);
        assert_eq!(out.code, expected, "--fail-on {threshold}");
        assert_eq!(
            out.stdout, default.stdout,
            "--fail-on {threshold} changed the output"
        );
    }
    let never = run(
        &[
            &format!(
                "{}",
                write(dir.path(), "err.yaml", MISSING_GATEWAY).display()
            ),
            "--fail-on",
            "never",
        ],
        None,
    );
    assert_eq!(never.code, 0, "--fail-on never ignores errors");
}

#[test]
fn fail_on_never_still_exits_2_on_bad_input() {
    let out = run(&["--fail-on", "never", "-"], Some("kind: ["));
    assert_eq!(out.code, 2);
}

// ---- stdin, directories, kind: List, namespaces -------------------------------------------

#[test]
fn dash_reads_stdin_and_names_it_in_findings() {
    let out = run(&["-"], Some(MISSING_GATEWAY));
    assert_eq!(out.code, 1);
    assert!(out.stdout.contains("(<stdin>:6)"), "{}", out.stdout);
}

#[test]
fn no_path_with_piped_input_reads_stdin() {
    let out = run(&[], Some(MISSING_GATEWAY));
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(out.stdout.contains("IST0101"));
}

#[test]
fn directories_are_walked_recursively_and_other_files_ignored() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (service, virtual_service) = CLEAN.split_once("---\n").expect("two documents");
    write(dir.path(), "team-a/service.yml", service);
    write(dir.path(), "team-a/routes/vs.yaml", virtual_service);
    write(dir.path(), "README.md", "# not a manifest: [");
    write(dir.path(), "kustomization.txt", "kind: [");
    let out = run(&[dir.path().to_str().expect("utf-8 path")], None);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert_eq!(out.stdout, "No findings in 2 objects\n");
}

#[test]
fn a_reference_across_two_files_is_resolved() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (service, virtual_service) = CLEAN.split_once("---\n").expect("two documents");
    let a = write(dir.path(), "a.yaml", service);
    let b = write(dir.path(), "b.yaml", virtual_service);
    let only_b = run(&[b.to_str().expect("utf-8")], None);
    assert_eq!(
        only_b.code, 1,
        "the route's Service is missing without a.yaml:\n{}",
        only_b.stdout
    );
    let both = run(
        &[a.to_str().expect("utf-8"), b.to_str().expect("utf-8")],
        None,
    );
    assert_eq!(both.code, 0, "{}", both.stdout);
}

#[test]
fn an_object_repeated_in_a_later_file_replaces_the_earlier_one() {
    let dir = tempfile::tempdir().expect("temp dir");
    let route = |gateway: &str| {
        format!(
            "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: a, namespace: x}}\nspec:\n  hosts: [a]\n  gateways: [{gateway}]\n"
        )
    };
    write(dir.path(), "1.yaml", &route("gw-first"));
    write(
        dir.path(),
        "2.yaml",
        &format!("# moved here\n{}", route("gw-second")),
    );
    let out = run(&[dir.path().to_str().expect("utf-8 path")], None);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(out.stdout.contains("\"x/gw-second\""), "{}", out.stdout);
    assert!(!out.stdout.contains("gw-first"), "{}", out.stdout);
    assert!(out.stdout.contains("2.yaml:2)"), "{}", out.stdout);
}

#[test]
fn across_many_files_the_last_repeat_wins_whichever_parser_read_it() {
    // the files are parsed by two threads, every other file each; the engine still sees them in
    // order, so the last file's version is the one checked, for an odd and an even file count
    for files in [5, 6] {
        let dir = tempfile::tempdir().expect("temp dir");
        for i in 1..=files {
            write(
                dir.path(),
                &format!("{i:02}.yaml"),
                &format!(
                    "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: a, namespace: x}}\nspec:\n  hosts: [a]\n  gateways: [gw-{i}]\n"
                ),
            );
        }
        let out = run(&[dir.path().to_str().expect("utf-8 path")], None);
        assert_eq!(out.code, 1, "{}", out.stderr);
        let last = format!("\"x/gw-{files}\"");
        assert!(out.stdout.contains(&last), "{}", out.stdout);
        for earlier in 1..files {
            let gateway = format!("gw-{earlier}\"");
            assert!(!out.stdout.contains(&gateway), "{}", out.stdout);
        }
        assert!(
            out.stdout.contains(&format!("{files:02}.yaml:1)")),
            "{}",
            out.stdout
        );
    }
}

#[test]
fn kind_list_items_are_checked_with_their_own_lines() {
    let list = r#"apiVersion: v1
kind: List
items:
  - apiVersion: v1
    kind: Service
    metadata: {name: reviews, namespace: shop}
    spec:
      ports: [{name: http, port: 80}]
  - apiVersion: networking.istio.io/v1
    kind: VirtualService
    metadata: {name: storefront, namespace: shop}
    spec:
      hosts: [shop.example.com]
      gateways: [missing]
      http: [{route: [{destination: {host: reviews}}]}]
"#;
    let out = run(&["-", "--format", "json"], Some(list));
    assert_eq!(out.code, 1);
    let report = json(&out.stdout);
    let finding = report["findings"]
        .as_array()
        .and_then(|f| f.iter().find(|f| f["code"] == "IST0101"))
        .expect("IST0101 for the missing gateway");
    assert_eq!(finding["resource"]["name"], "storefront");
    assert_eq!(finding["line"], 9);
}

#[test]
fn json_arrays_are_read() {
    let array = r#"[{"apiVersion":"v1","kind":"Service","metadata":{"name":"reviews","namespace":"shop"},"spec":{"ports":[{"name":"http","port":80}]}},
 {"apiVersion":"networking.istio.io/v1","kind":"VirtualService","metadata":{"name":"reviews","namespace":"shop"},
  "spec":{"hosts":["reviews"],"http":[{"route":[{"destination":{"host":"reviews"}}]}]}}]"#;
    let out = run(&["-"], Some(array));
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert_eq!(out.stdout, "No findings in 2 objects\n");
}

#[test]
fn objects_without_a_namespace_take_the_namespace_option() {
    let without_namespace = CLEAN.replace("  namespace: shop\n", "");
    let default = run(&["-", "--format", "json"], Some(&without_namespace));
    assert_eq!(default.code, 0, "{}", default.stdout);
    // The Service moves to `team`, the VirtualService's short host follows: still clean.
    let mixed = without_namespace.replacen(
        "  name: reviews\n",
        "  name: reviews\n  namespace: other\n",
        1,
    );
    let out = run(
        &["-", "--namespace", "team", "--format", "json"],
        Some(&mixed),
    );
    assert_eq!(
        out.code, 1,
        "the route's host reviews.team is not served:\n{}",
        out.stdout
    );
    let report = json(&out.stdout);
    let finding = &report["findings"][0];
    assert_eq!(finding["resource"]["namespace"], "team");
}

#[test]
fn unknown_kinds_are_skipped_and_counted_never_fatal() {
    let with_unknown = format!(
        "{CLEAN}---\napiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: reviews, namespace: shop}}\n---\napiVersion: example.com/v1\nkind: Widget\nmetadata: {{name: w}}\n"
    );
    let out = run(&["-"], Some(&with_unknown));
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(
        out.stdout,
        "No findings in 2 objects; 2 skipped (kinds the engine does not check)\n"
    );
}

#[test]
fn empty_input_checks_nothing_and_says_so() {
    let out = run(&["-"], Some("# only a comment\n---\n"));
    assert_eq!(out.code, 0);
    assert_eq!(out.stdout, "No findings in 0 objects\n");
}

// ---- formats ------------------------------------------------------------------------------

#[test]
fn json_has_the_documented_finding_shape_and_the_same_exit_code() {
    let out = run(&["-", "--format", "json"], Some(MISSING_GATEWAY));
    assert_eq!(out.code, 1, "same exit code as text");
    let report = json(&out.stdout);
    assert!(report["summary"].is_object(), "summary: {report}");
    let finding = report["findings"]
        .as_array()
        .and_then(|f| f.iter().find(|f| f["code"] == "IST0101"))
        .expect("IST0101");
    for key in [
        "code", "severity", "rule", "resource", "message", "file", "line", "related", "repair",
    ] {
        assert!(finding.get(key).is_some(), "finding has `{key}`: {finding}");
    }
    assert_eq!(finding["severity"], "error");
    assert_eq!(finding["file"], "<stdin>");
    assert_eq!(finding["line"], 6);
    assert_eq!(
        finding["resource"],
        serde_json::json!({"apiVersion": "networking.istio.io/v1", "kind": "VirtualService", "namespace": "shop", "name": "storefront"})
    );
    assert_eq!(
        finding["repair"],
        serde_json::json!([]),
        "plans only with --plan"
    );
}

#[test]
fn json_related_objects_carry_their_own_file_and_line() {
    let out = check_the_sample_mesh("json");
    let report = json(&out.stdout);
    let findings = report["findings"].as_array().expect("findings[]");
    let conflict = findings
        .iter()
        .find(|f| f["code"] == "IST0145" && f["resource"]["name"] == "blog-gateway")
        .expect("IST0145 on blog/blog-gateway");
    let other = &conflict["related"][0];
    assert_eq!(other["name"], "public-gateway", "{other}");
    assert!(
        other["file"]
            .as_str()
            .is_some_and(|file| file.ends_with("examples/istio/10-public-gateway.yaml")),
        "{other}"
    );
    assert_eq!(other["line"], 2, "{other}");
    for related in findings
        .iter()
        .flat_map(|f| f["related"].as_array().into_iter().flatten())
    {
        assert!(
            related.get("file").is_some() && related.get("line").is_some(),
            "file and line are never omitted: {related}"
        );
    }
}

#[test]
fn plan_adds_repair_plans_to_text_and_json() {
    let text = run(&["-", "--plan"], Some(MISSING_GATEWAY));
    assert!(text.stdout.contains("repair"), "{}", text.stdout);
    let json_out = run(&["-", "--plan", "--format", "json"], Some(MISSING_GATEWAY));
    let report = json(&json_out.stdout);
    let finding = report["findings"]
        .as_array()
        .and_then(|f| f.iter().find(|f| f["code"] == "IST0101"))
        .expect("IST0101");
    assert!(
        finding["repair"]
            .as_array()
            .is_some_and(|steps| !steps.is_empty()),
        "{finding}"
    );
}

fn sarif_validator() -> jsonschema::Validator {
    let schema_path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/sarif-schema-2.1.0.json");
    let mut schema: Value =
        serde_json::from_str(&std::fs::read_to_string(schema_path).expect("schema file"))
            .expect("schema is JSON");
    // The published schema's one flaw: the `language` pattern (of `run` and `toolComponent`) has
    // a stray `]`, which the validator's (ECMA-262, unicode mode) regex engine rightly refuses,
    // so the schema would not compile. `check` never writes `language`; that pattern is replaced
    // by the one meant (`en`, `en-US`), and only that one, in memory.
    let mut replaced = 0;
    for pointer in [
        "/definitions/run/properties/language/pattern",
        "/definitions/toolComponent/properties/language/pattern",
    ] {
        let language = schema.pointer_mut(pointer).expect("language pattern");
        assert_eq!(
            language, "^[a-zA-Z]{2}|^[a-zA-Z]{2}-[a-zA-Z]{2}]?$",
            "the schema file changed"
        );
        *language = Value::from("^[a-zA-Z]{2}(-[a-zA-Z]{2})?$");
        replaced += 1;
    }
    assert_eq!(replaced, 2);
    jsonschema::validator_for(&schema).expect("the SARIF schema compiles")
}

fn assert_valid_sarif(log: &Value) {
    let validator = sarif_validator();
    let errors: Vec<String> = validator
        .iter_errors(log)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "SARIF schema violations:\n{}\n{log:#}",
        errors.join("\n")
    );
}

#[test]
fn sarif_validates_against_the_2_1_0_schema_with_one_rule_per_code_and_file_line_locations() {
    let dir = tempfile::tempdir().expect("temp dir");
    write(dir.path(), "mesh dir/missing gateway.yaml", MISSING_GATEWAY);
    write(
        dir.path(),
        "mesh dir/warning.yaml",
        &HOST_NOT_IN_GATEWAY.replace("shop", "blog"),
    );
    let out = run(
        &[
            dir.path().join("mesh dir").to_str().expect("utf-8"),
            "--format",
            "sarif",
            "--plan",
        ],
        None,
    );
    assert_eq!(out.code, 1, "same exit code as text: {}", out.stderr);
    let log = json(&out.stdout);
    assert_valid_sarif(&log);

    let run0 = &log["runs"][0];
    let rules = run0["tool"]["driver"]["rules"].as_array().expect("rules[]");
    let ids: Vec<&str> = rules.iter().filter_map(|r| r["id"].as_str()).collect();
    let mut unique = ids.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(unique.len(), ids.len(), "one rule per code: {ids:?}");

    let results = run0["results"].as_array().expect("results[]");
    let missing = results
        .iter()
        .find(|r| r["ruleId"] == "IST0101")
        .expect("an IST0101 result");
    assert_eq!(missing["level"], "error");
    assert_eq!(
        rules[missing["ruleIndex"].as_u64().expect("ruleIndex") as usize]["id"],
        "IST0101"
    );
    let physical = &missing["locations"][0]["physicalLocation"];
    assert!(
        physical["artifactLocation"]["uri"]
            .as_str()
            .is_some_and(|uri| uri.ends_with("mesh%20dir/missing%20gateway.yaml")),
        "{physical}"
    );
    assert_eq!(physical["region"]["startLine"], 6);
    assert!(
        results
            .iter()
            .any(|r| r["ruleId"] == "IST0132" && r["level"] == "warning")
    );
}

#[test]
fn sarif_related_locations_point_at_the_other_objects_file_and_line() {
    let out = check_the_sample_mesh("sarif");
    let log = json(&out.stdout);
    let conflict = log["runs"][0]["results"]
        .as_array()
        .and_then(|r| {
            r.iter().find(|r| {
                r["ruleId"] == "IST0145"
                    && r["message"]["text"]
                        .as_str()
                        .is_some_and(|t| t.starts_with("Gateway blog/"))
            })
        })
        .expect("IST0145 on blog/blog-gateway");
    let other = &conflict["relatedLocations"][0]["physicalLocation"];
    assert!(
        other["artifactLocation"]["uri"]
            .as_str()
            .is_some_and(|u| u.ends_with("examples/istio/10-public-gateway.yaml")),
        "{other}"
    );
    assert_eq!(other["region"]["startLine"], 2);
}

#[test]
fn sarif_of_a_clean_mesh_and_of_bad_input_also_validates() {
    let clean = run(&["-", "--format", "sarif"], Some(CLEAN));
    assert_eq!(clean.code, 0);
    let log = json(&clean.stdout);
    assert_valid_sarif(&log);
    assert_eq!(log["runs"][0]["results"], serde_json::json!([]));

    let bad = run(&["-", "--format", "sarif"], Some("kind: [\n"));
    assert_eq!(bad.code, 2);
    let log = json(&bad.stdout);
    assert_valid_sarif(&log);
    assert_eq!(
        log["runs"][0]["invocations"][0]["executionSuccessful"],
        false
    );
}

#[test]
fn the_schema_check_is_not_vacuous_it_rejects_a_broken_log() {
    let out = run(&["-", "--format", "sarif"], Some(MISSING_GATEWAY));
    let mut log = json(&out.stdout);
    assert_valid_sarif(&log);
    log["runs"][0]["results"][0]["level"] = Value::from("fatal");
    let validator = sarif_validator();
    assert!(
        !validator.is_valid(&log),
        "a level outside SARIF's enum must fail validation"
    );
}

#[test]
fn rules_that_could_not_run_are_noted_on_stderr_in_text_and_as_sarif_notifications() {
    let text = run(&["-"], Some(CLEAN));
    assert!(
        text.stderr.contains("note: no Pod in the input"),
        "{}",
        text.stderr
    );
    let sarif = run(&["-", "--format", "sarif"], Some(CLEAN));
    let log = json(&sarif.stdout);
    let notes = log["runs"][0]["invocations"][0]["toolExecutionNotifications"]
        .as_array()
        .expect("notifications");
    assert!(
        notes.iter().any(|n| n["level"] == "note"
            && n["message"]["text"]
                .as_str()
                .is_some_and(|t| t.contains("Pod"))),
        "{notes:?}"
    );
}

#[test]
fn colour_only_when_asked_or_on_a_terminal() {
    let piped = run(&["-"], Some(MISSING_GATEWAY));
    assert!(!piped.stdout.contains('\x1b'), "no colour into a pipe");
    let forced = run(&["-", "--color", "always"], Some(MISSING_GATEWAY));
    assert!(forced.stdout.contains("\x1b["), "--color always colours");
}

// ---- rules, stats, graph -----------------------------------------------------------------

#[test]
fn list_rules_prints_code_name_severity_and_description_in_text_and_json() {
    let text = run(&["--list-rules"], None);
    assert_eq!(text.code, 0);
    // Several rules share Istio's IST0101; each is listed under its own name.
    let ist0101: Vec<&str> = text
        .stdout
        .lines()
        .filter(|l| l.starts_with("IST0101"))
        .collect();
    assert!(ist0101.len() > 1, "{}", text.stdout);
    let gateway = ist0101
        .iter()
        .find(|l| l.contains("vs-gateway-not-found"))
        .expect("the gateway reference rule");
    assert!(
        gateway.contains("Error") && gateway.contains("gateway that does not exist"),
        "{gateway}"
    );

    let json_out = run(&["--list-rules", "--format", "json"], None);
    let rules = json(&json_out.stdout);
    let rules = rules.as_array().expect("an array of rules");
    assert!(rules.len() >= 5, "{rules:?}");
    for rule in rules {
        for key in ["code", "name", "severity", "summary"] {
            assert!(
                rule[key].as_str().is_some_and(|v| !v.is_empty()),
                "rule has `{key}`: {rule}"
            );
        }
    }
}

#[test]
fn stats_go_to_stderr_and_leave_stdout_machine_readable() {
    let out = run(&["-", "--stats", "--format", "json"], Some(CLEAN));
    json(&out.stdout);
    assert!(out.stderr.contains("stats: ingest"), "{}", out.stderr);
    assert!(out.stderr.contains("objects checked 2"), "{}", out.stderr);
}

#[test]
fn graph_writes_dot_with_namespaces_references_and_the_dangling_one_in_red() {
    let dir = tempfile::tempdir().expect("temp dir");
    let dot_path = dir.path().join("mesh.dot");
    let out = run(
        &["-", "--graph", dot_path.to_str().expect("utf-8")],
        Some(MISSING_GATEWAY),
    );
    assert_eq!(out.code, 1);
    let dot = std::fs::read_to_string(&dot_path).expect("the graph file is written");
    assert!(dot.starts_with("digraph mesh {"), "{dot}");
    assert!(dot.contains("label=\"namespace shop\""), "{dot}");
    assert!(
        dot.contains("\"VirtualService/shop/storefront\" -> \"Service/shop/reviews\""),
        "{dot}"
    );
    let dangling = dot
        .lines()
        .find(|l| l.contains("\"VirtualService/shop/storefront\" -> \"missing: Gateway istio-system/no-such-gateway\""))
        .unwrap_or_else(|| panic!("dangling gateway edge in:\n{dot}"));
    assert!(dangling.contains("color=red"), "{dangling}");
}

#[test]
fn an_unwritable_graph_path_exits_2() {
    let out = run(&["-", "--graph", "/nonexistent/dir/mesh.dot"], Some(CLEAN));
    assert_eq!(out.code, 2);
    assert!(
        out.stderr.contains("cannot write the graph"),
        "{}",
        out.stderr
    );
}

// ---- suppression --------------------------------------------------------------------------

#[test]
fn suppress_by_code_silences_it_everywhere() {
    let out = run(
        &[
            "-",
            "--suppress",
            "IST0101",
            "--suppress",
            "IST0132",
            "--format",
            "json",
        ],
        Some(MISSING_GATEWAY),
    );
    let report = json(&out.stdout);
    assert!(!codes(&report).contains(&"IST0101".to_string()), "{report}");
    assert_eq!(out.code, 0, "nothing left at error level: {report}");
}

#[test]
fn suppress_by_object_silences_only_that_object() {
    let two = format!(
        "{MISSING_GATEWAY}---\n{}",
        MISSING_GATEWAY
            .split_once("---\n")
            .expect("header")
            .1
            .replace("storefront", "checkout")
    );
    let out = run(
        &[
            "-",
            "-S",
            "IST0101=VirtualService/shop/storefront",
            "--format",
            "json",
        ],
        Some(&two),
    );
    let report = json(&out.stdout);
    let names: Vec<&str> = report["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .filter(|f| f["code"] == "IST0101")
        .filter_map(|f| f["resource"]["name"].as_str())
        .collect();
    assert!(names.contains(&"checkout"), "{names:?}");
    assert!(!names.contains(&"storefront"), "{names:?}");
    assert_eq!(out.code, 1);
}

#[test]
fn the_analyze_suppress_annotation_is_honoured() {
    let annotated = MISSING_GATEWAY.replace(
        "  name: storefront\n",
        "  name: storefront\n  annotations:\n    galley.istio.io/analyze-suppress: \"IST0101,IST0132\"\n",
    );
    let out = run(&["-", "--format", "json"], Some(&annotated));
    let report = json(&out.stdout);
    assert!(
        !codes(&report)
            .iter()
            .any(|c| c == "IST0101" || c == "IST0132"),
        "{report}"
    );
    assert_eq!(out.code, 0);
}

// ---- the sample mesh ----------------------------------------------------------------------

#[test]
fn the_sample_mesh_reports_exactly_its_deliberate_faults() {
    let out = check_the_sample_mesh("json");
    assert_eq!(out.code, 1, "{}", out.stderr);
    let report = json(&out.stdout);
    let mut found: Vec<String> = report["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .map(|f| {
            format!(
                "{} {}/{}/{}",
                f["code"].as_str().unwrap_or("?"),
                f["resource"]["kind"].as_str().unwrap_or("?"),
                f["resource"]["namespace"].as_str().unwrap_or("?"),
                f["resource"]["name"].as_str().unwrap_or("?")
            )
        })
        .collect();
    found.sort();
    // Each entry is a `FAULT` comment in examples/istio/*.yaml; nothing else may be reported.
    let mut expected = vec![
        // A route to subset v3, which DestinationRule shop/catalog does not declare.
        "IST0101 VirtualService/shop/catalog",
        // A route to host `ledger`, which no Service serves.
        "IST0101 VirtualService/payments/ledger",
        // A typo in the gateway name, reported twice as istioctl does: not found, and so its
        // hosts are not served by it.
        "IST0101 VirtualService/payments/payments-public",
        "IST0132 VirtualService/payments/payments-public",
        // www.example.com:80 on the same ingress pods, once per Gateway.
        "IST0145 Gateway/istio-system/public-gateway",
        "IST0145 Gateway/blog/blog-gateway",
        // reviews.example.com, already claimed by the older MeshService shop/reviews.
        "MSH0201 MeshService/blog/comments",
    ];
    expected.sort_unstable();
    assert_eq!(found, expected);
}
