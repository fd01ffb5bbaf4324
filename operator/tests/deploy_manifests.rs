//! The deploy/ manifests as kustomize builds them (kubectl's built-in kustomize, from the control
//! plane directory), checked against what the operator binary accepts and against each other: the
//! Deployment's hardening, its flags, the installer bundle, the `--namespace` Component, the Helm
//! chart's RBAC and the Dockerfile. No apiserver here; deploy_install.rs and deploy_rbac.rs use one.

#[path = "../../xtask/src/installer.rs"]
#[allow(dead_code)] // `run` is xtask's entry point; the tests use `bundle`
mod installer;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn kubectl() -> PathBuf {
    test_controlplane::Options::from_env()
        .controlplane_dir
        .join("bin")
        .join("kubectl")
}

/// `kubectl kustomize DIR`, parsed.
fn kustomize(dir: &Path) -> Vec<Value> {
    let out = Command::new(kubectl())
        .arg("kustomize")
        .arg(dir)
        .output()
        .expect("kubectl runs (built by `cargo xtask controlplane`)");
    assert!(
        out.status.success(),
        "kubectl kustomize {}: {}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    parse(&String::from_utf8(out.stdout).unwrap())
}

fn parse(yaml: &str) -> Vec<Value> {
    let docs: Vec<Value> = serde_saphyr::from_str_multiple(yaml).unwrap();
    docs.into_iter()
        .filter(|d| !d.is_null())
        .map(normalize)
        .collect()
}

/// Numbers as YAML means them: kustomize prints `65535.0` as `65535`, the same number.
fn normalize(value: Value) -> Value {
    match value {
        Value::Number(n) => match n.as_f64() {
            Some(f) if f.fract() == 0.0 && f.abs() < 1e15 => Value::from(f as i64),
            _ => Value::Number(n),
        },
        Value::Array(items) => Value::Array(items.into_iter().map(normalize).collect()),
        Value::Object(map) => {
            Value::Object(map.into_iter().map(|(k, v)| (k, normalize(v))).collect())
        }
        other => other,
    }
}

/// The path of the first difference between two values, for a readable failure.
fn first_difference(a: &Value, b: &Value, path: &str) -> Option<String> {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            for k in x.keys().chain(y.keys()) {
                let (va, vb) = (
                    x.get(k).unwrap_or(&Value::Null),
                    y.get(k).unwrap_or(&Value::Null),
                );
                if let Some(d) = first_difference(va, vb, &format!("{path}.{k}")) {
                    return Some(d);
                }
            }
            None
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => x
            .iter()
            .zip(y)
            .enumerate()
            .find_map(|(i, (va, vb))| first_difference(va, vb, &format!("{path}[{i}]"))),
        _ if a == b => None,
        _ => Some(format!("{path}: {a} != {b}")),
    }
}

fn key(doc: &Value) -> (String, String, String) {
    let s = |v: &Value| v.as_str().unwrap_or_default().to_string();
    (
        s(&doc["kind"]),
        s(&doc["metadata"]["namespace"]),
        s(&doc["metadata"]["name"]),
    )
}

fn by_key(docs: Vec<Value>) -> BTreeMap<(String, String, String), Value> {
    let mut map = BTreeMap::new();
    for doc in docs {
        assert!(
            map.insert(key(&doc), doc.clone()).is_none(),
            "duplicate object {:?}",
            key(&doc)
        );
    }
    map
}

fn one<'a>(docs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    let found: Vec<&Value> = docs
        .iter()
        .filter(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .collect();
    assert_eq!(found.len(), 1, "expected exactly one {kind} {name}");
    found[0]
}

fn strings(value: &Value) -> Vec<String> {
    value
        .as_array()
        .map(|a| a.iter().map(|v| v.as_str().unwrap().to_string()).collect())
        .unwrap_or_default()
}

/// The long flags `istio-integrity-operator run --help` documents.
fn run_flags() -> Vec<String> {
    let out = Command::new(env!("CARGO_BIN_EXE_istio-integrity-operator"))
        .args(["run", "--help"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "run --help: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .split(|c: char| c.is_whitespace() || c == ',' || c == '=' || c == '[' || c == '<')
        .filter(|w| w.starts_with("--") && w.len() > 2)
        .map(str::to_string)
        .collect()
}

fn assert_flags_accepted(args: &[String], known: &[String], origin: &str) {
    assert_eq!(
        args.first().map(String::as_str),
        Some("run"),
        "{origin}: the operator's subcommand"
    );
    for arg in &args[1..] {
        let flag = arg.split('=').next().unwrap();
        assert!(
            known.iter().any(|k| k == flag),
            "{origin}: `{arg}` is not a flag of `run` ({known:?})"
        );
    }
}

#[test]
fn the_kustomization_installs_a_hardened_operator_with_its_own_identity() {
    let docs = kustomize(&root().join("deploy"));
    let kinds: Vec<(String, String, String)> = docs.iter().map(key).collect();
    for (kind, name) in [
        ("Namespace", "istio-integrity-system"),
        (
            "CustomResourceDefinition",
            "meshservices.mesh.istio.operator",
        ),
        ("ServiceAccount", "istio-integrity-operator"),
        ("ClusterRole", "istio-integrity-operator"),
        ("ClusterRoleBinding", "istio-integrity-operator"),
        ("Role", "istio-integrity-operator-leader-election"),
        ("RoleBinding", "istio-integrity-operator-leader-election"),
        ("Deployment", "istio-integrity-operator"),
        ("Service", "istio-integrity-operator-metrics"),
    ] {
        one(&docs, kind, name);
    }
    assert_eq!(kinds.len(), 9, "nothing else is installed: {kinds:?}");

    let deployment = one(&docs, "Deployment", "istio-integrity-operator");
    assert_eq!(
        deployment["metadata"]["namespace"],
        "istio-integrity-system"
    );
    let pod = &deployment["spec"]["template"]["spec"];
    assert_eq!(pod["serviceAccountName"], "istio-integrity-operator");
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(pod["securityContext"]["runAsUser"], 65532);
    assert_eq!(
        pod["securityContext"]["seccompProfile"]["type"],
        "RuntimeDefault"
    );
    let containers = pod["containers"].as_array().unwrap();
    assert_eq!(containers.len(), 1);
    let container = &containers[0];
    let security = &container["securityContext"];
    assert_eq!(security["allowPrivilegeEscalation"], false);
    assert_eq!(security["readOnlyRootFilesystem"], true);
    assert_eq!(security["runAsNonRoot"], true);
    assert_eq!(strings(&security["capabilities"]["drop"]), ["ALL"]);
    assert_eq!(security["seccompProfile"]["type"], "RuntimeDefault");
    for bound in ["requests", "limits"] {
        for resource in ["cpu", "memory"] {
            assert!(
                container["resources"][bound][resource].is_string(),
                "resources.{bound}.{resource}"
            );
        }
    }

    // The admin port: named `admin`, the port --admin-addr binds, probed and exposed.
    let port = &container["ports"][0];
    assert_eq!(port["name"], "admin");
    let args = strings(&container["args"]);
    assert!(args.contains(&"--leader-elect".to_string()), "{args:?}");
    let admin_addr = args
        .iter()
        .find_map(|a| a.strip_prefix("--admin-addr="))
        .expect("--admin-addr is set");
    assert_eq!(
        admin_addr.rsplit(':').next().unwrap(),
        port["containerPort"].to_string()
    );
    assert_eq!(container["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(container["livenessProbe"]["httpGet"]["port"], "admin");
    assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(container["readinessProbe"]["httpGet"]["port"], "admin");
    // Leader election: the Lease goes to the pod's namespace, held under the pod's name.
    let env: Vec<String> = container["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap().into())
        .collect();
    assert_eq!(env, ["POD_NAME", "POD_NAMESPACE"]);

    let service = one(&docs, "Service", "istio-integrity-operator-metrics");
    assert_eq!(service["spec"]["ports"][0]["targetPort"], "admin");
    let pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
        .as_object()
        .unwrap();
    for (label, value) in service["spec"]["selector"].as_object().unwrap() {
        assert_eq!(
            pod_labels.get(label),
            Some(value),
            "the metrics Service selects the operator pods"
        );
    }

    // Every binding grants to the operator's ServiceAccount and nobody else.
    for binding in docs
        .iter()
        .filter(|d| d["kind"].as_str().unwrap().ends_with("Binding"))
    {
        let subjects = binding["subjects"].as_array().unwrap();
        assert_eq!(subjects.len(), 1);
        assert_eq!(subjects[0]["kind"], "ServiceAccount");
        assert_eq!(subjects[0]["name"], "istio-integrity-operator");
        assert_eq!(subjects[0]["namespace"], "istio-integrity-system");
    }
}

/// Every argument the shipped manifests pass is a flag of the binary's `run` (a renamed flag would
/// otherwise surface only as a crash-looping pod).
#[test]
fn every_shipped_argument_is_a_flag_of_run() {
    let known = run_flags();
    assert!(known.contains(&"--leader-elect".to_string()), "{known:?}");

    let docs = kustomize(&root().join("deploy"));
    let deployment = one(&docs, "Deployment", "istio-integrity-operator");
    let args = strings(&deployment["spec"]["template"]["spec"]["containers"][0]["args"]);
    assert_flags_accepted(&args, &known, "deploy/manager/deployment.yaml");

    let scratch = scratch_kustomization("namespaced-args");
    let docs = kustomize(scratch.path());
    let deployment = one(&docs, "Deployment", "istio-integrity-operator");
    let args = strings(&deployment["spec"]["template"]["spec"]["containers"][0]["args"]);
    assert!(
        args.contains(&"--namespace=default".to_string()),
        "{args:?}"
    );
    assert_flags_accepted(&args, &known, "deploy/namespaced");

    // The chart's template: its `- run` / `- --flag…` lines (values are templated, names are not).
    let template =
        std::fs::read_to_string(root().join("deploy/chart/templates/deployment.yaml")).unwrap();
    let args: Vec<String> = template
        .lines()
        .map(str::trim)
        .filter_map(|l| l.strip_prefix("- "))
        .filter(|a| *a == "run" || a.starts_with("--"))
        .map(str::to_string)
        .collect();
    assert!(
        args.len() >= 5,
        "the chart passes run and its flags: {args:?}"
    );
    assert_flags_accepted(&args, &known, "deploy/chart/templates/deployment.yaml");

    // The image's default command.
    let dockerfile = std::fs::read_to_string(root().join("Dockerfile")).unwrap();
    let cmd = dockerfile
        .lines()
        .find_map(|l| l.strip_prefix("CMD "))
        .expect("the Dockerfile has a CMD");
    let cmd: Vec<String> = serde_json::from_str(cmd).unwrap();
    assert_flags_accepted(&cmd, &known, "Dockerfile CMD");
}

/// A kustomization under target/ that uses deploy/ with the namespaced Component (kustomize forbids
/// an overlay inside its base, and wants relative paths).
fn scratch_kustomization(name: &str) -> tempfile::TempDir {
    let parent = root().join("target").join("deploy-tests");
    std::fs::create_dir_all(&parent).unwrap();
    let dir = tempfile::Builder::new()
        .prefix(name)
        .tempdir_in(&parent)
        .unwrap();
    std::fs::write(
        dir.path().join("kustomization.yaml"),
        "resources: [../../../deploy]\ncomponents: [../../../deploy/namespaced]\n",
    )
    .unwrap();
    dir
}

#[test]
fn the_namespaced_component_replaces_the_cluster_role_with_roles() {
    let scratch = scratch_kustomization("namespaced");
    let docs = kustomize(scratch.path());
    let cluster = kustomize(&root().join("deploy"));
    assert!(
        !docs
            .iter()
            .any(|d| d["kind"] == "ClusterRole"
                && d["metadata"]["name"] == "istio-integrity-operator"),
        "no cluster-wide grant in --namespace mode"
    );
    assert!(!docs.iter().any(|d| d["kind"] == "ClusterRoleBinding"
        && d["metadata"]["name"] == "istio-integrity-operator"));

    let role = one(&docs, "Role", "istio-integrity-operator");
    assert_eq!(role["metadata"]["namespace"], "default");
    let binding = one(&docs, "RoleBinding", "istio-integrity-operator");
    assert_eq!(binding["metadata"]["namespace"], "default");
    assert_eq!(binding["roleRef"]["kind"], "Role");

    // The Role grants exactly the ClusterRole's namespaced rules; Namespace objects move to a
    // ClusterRole narrowed to the watched namespace by name.
    let cluster_rules = one(&cluster, "ClusterRole", "istio-integrity-operator")["rules"]
        .as_array()
        .unwrap()
        .clone();
    let (namespace_rules, namespaced_rules): (Vec<Value>, Vec<Value>) = cluster_rules
        .into_iter()
        .partition(|r| strings(&r["resources"]) == ["namespaces"]);
    assert_eq!(role["rules"].as_array().unwrap(), &namespaced_rules);
    let narrowed = one(&docs, "ClusterRole", "istio-integrity-operator-namespaces");
    assert_eq!(
        narrowed["rules"].as_array().unwrap().len(),
        namespace_rules.len()
    );
    for (narrow, wide) in narrowed["rules"]
        .as_array()
        .unwrap()
        .iter()
        .zip(&namespace_rules)
    {
        assert_eq!(strings(&narrow["resourceNames"]), ["default"]);
        assert_eq!(narrow["verbs"], wide["verbs"]);
        assert_eq!(narrow["resources"], wide["resources"]);
    }
}

/// `cargo xtask installer` bundles exactly what `kubectl apply -k deploy/` installs, image set.
#[test]
fn the_installer_bundle_is_the_kustomize_build_with_the_image_set() {
    let image = "registry.example/istio-integrity-operator:v9.9.9";
    let bundle = installer::bundle(&root(), image).unwrap();
    assert!(!bundle.contains(installer::IMAGE_PLACEHOLDER));
    let bundled = by_key(parse(&bundle));
    let mut built = by_key(kustomize(&root().join("deploy")));
    let deployment = built
        .get_mut(&(
            "Deployment".into(),
            "istio-integrity-system".into(),
            "istio-integrity-operator".into(),
        ))
        .unwrap();
    assert_eq!(
        deployment["spec"]["template"]["spec"]["containers"][0]["image"],
        installer::IMAGE_PLACEHOLDER
    );
    deployment["spec"]["template"]["spec"]["containers"][0]["image"] = image.into();
    assert_eq!(
        bundled.keys().collect::<Vec<_>>(),
        built.keys().collect::<Vec<_>>()
    );
    for (key, object) in &built {
        assert_eq!(first_difference(&bundled[key], object, ""), None, "{key:?}");
    }
    // The namespace comes first, the CRD before anything could use it.
    let order: Vec<String> = parse(&bundle)
        .iter()
        .map(|d| d["kind"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(&order[..2], ["Namespace", "CustomResourceDefinition"]);

    assert!(installer::bundle(&root(), "has space:1").is_err());
    assert!(installer::bundle(&root(), "").is_err());
}

/// The chart and kustomize grant the same: the chart's rule blocks are the kustomize ones, verbatim.
/// (Both are printed by `cargo xtask manifests` from xtask/src/rbac.rs, and xtask's test fails
/// when a committed file is stale; this checks the committed files against each other.)
#[test]
fn the_chart_rbac_is_the_kustomize_rbac() {
    let read = |p: &str| std::fs::read_to_string(root().join(p)).unwrap();
    let rules_blocks = |text: &str| -> Vec<String> {
        text.split("\nrules:\n")
            .skip(1)
            .map(|rest| {
                rest.split("\n---")
                    .next()
                    .unwrap()
                    .split("\n{{")
                    .next()
                    .unwrap()
                    .trim_end()
                    .to_string()
            })
            .collect()
    };
    let chart = rules_blocks(&read("deploy/chart/templates/rbac.yaml"));
    let cluster_role = rules_blocks(&read("deploy/rbac/cluster_role.yaml"));
    let lease_role = rules_blocks(&read("deploy/rbac/leader_election_role.yaml"));
    let namespaced = rules_blocks(&read("deploy/namespaced/rbac.yaml"));
    assert_eq!(
        chart.len(),
        4,
        "ClusterRole, Role per namespace, namespaces ClusterRole, lease Role"
    );
    assert_eq!(chart[0], cluster_role[0], "cluster mode");
    assert_eq!(chart[1], namespaced[0], "--namespace mode: the Role");
    assert_eq!(
        chart[2].replace("{{ toJson $.Values.watchNamespaces }}", "[\"default\"]"),
        namespaced[1],
        "--namespace mode: the Namespace objects"
    );
    assert_eq!(chart[3], lease_role[0], "leader election");
    assert!(!cluster_role[0].contains("secrets") && !cluster_role[0].contains('*'));

    // The chart's CRD is the generated one: crds/ is a symlink to deploy/crds/, nothing to sync.
    let crds = root().join("deploy/chart/crds");
    assert_eq!(std::fs::read_link(&crds).unwrap(), Path::new("../crds"));
    assert_eq!(
        read("deploy/chart/crds/meshservices.mesh.istio.operator.yaml"),
        read("deploy/crds/meshservices.mesh.istio.operator.yaml")
    );
}

/// The image runs as the user the Deployment demands, from a base without a shell.
#[test]
fn the_dockerfile_builds_a_static_non_root_image() {
    let dockerfile = std::fs::read_to_string(root().join("Dockerfile")).unwrap();
    let froms: Vec<&str> = dockerfile
        .lines()
        .filter(|l| l.starts_with("FROM "))
        .collect();
    assert_eq!(froms.len(), 2, "multi-stage: build, then runtime");
    assert!(froms[1].contains("distroless/static"), "{}", froms[1]);
    assert!(
        dockerfile.contains("--locked")
            && dockerfile.contains("--target x86_64-unknown-linux-musl")
    );
    let user = dockerfile
        .lines()
        .find_map(|l| l.strip_prefix("USER "))
        .expect("USER is set");
    let docs = kustomize(&root().join("deploy"));
    let pod = &one(&docs, "Deployment", "istio-integrity-operator")["spec"]["template"]["spec"];
    assert_eq!(
        user,
        format!("{0}:{0}", pod["securityContext"]["runAsUser"])
    );
    let ignore = std::fs::read_to_string(root().join(".dockerignore")).unwrap();
    assert!(
        ignore.lines().any(|l| l == "target/"),
        "the build context leaves target/ out"
    );
}
