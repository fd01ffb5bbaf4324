//! `cargo xtask manifests`: the operator's RBAC has ONE source of truth, the tables below. From them
//! xtask writes the kustomize RBAC (deploy/rbac/, deploy/namespaced/), the Helm chart's RBAC template
//! and the RBAC table of deploy/README.md (the chart's crds/ is a symlink to deploy/crds/); `--check`
//! fails with a diff when any committed file differs from what the tables produce. So the chart's
//! rules and the kustomize rules cannot drift apart: both are printed from the same `Rule`s.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context, Result, bail};

/// The name every object of the operator carries (ServiceAccount, roles, Deployment, Service).
pub const NAME: &str = "istio-integrity-operator";
/// The namespace the kustomize manifests install the operator into.
pub const NAMESPACE: &str = "istio-integrity-system";
/// The namespace the `deploy/namespaced/` overlay grants the operator (its `--namespace`).
pub const NAMESPACED_OVERLAY_WATCHES: &str = "default";

/// Where a rule is granted.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Namespaced objects: a ClusterRole cluster-wide, or a Role in each watched namespace in
    /// `--namespace` mode.
    Watched,
    /// The Namespace objects themselves (cluster-scoped, so never in a Role): cluster-wide by
    /// default; in `--namespace` mode a ClusterRole narrowed by `resourceNames` to the watched
    /// namespaces, which is all the operator asks for then (it watches them with the field selector
    /// `metadata.name=<namespace>`, and RBAC authorizes such a list/watch per name).
    Namespaces,
}

/// One RBAC rule and the reason the operator needs it.
pub struct Rule {
    pub group: &'static str,
    pub resources: &'static [&'static str],
    pub verbs: &'static [&'static str],
    pub scope: Scope,
    /// Printed as a comment above the rule and in the README table.
    pub why: &'static str,
}

/// What the operator does to the API, verb by verb: exactly the calls crates/mesh-reconcile makes
/// (watches in watch.rs and lib.rs, `get_opt`/apply/delete in reconcile.rs, the finalizer helper,
/// the status apply, kube-runtime's event Recorder).
pub const OPERATOR_RULES: &[Rule] = &[
    Rule {
        group: "mesh.istio.operator",
        resources: &["meshservices"],
        verbs: &["list", "watch", "patch"],
        scope: Scope::Watched,
        why: "list/watch: the desired state (the controller, the integrity index and the startup CRD check); \
              patch: add and remove the finalizer mesh.istio.operator/cleanup[-<shard>] (kube-runtime's \
              finalizer helper sends a JSON patch, never an update; a shard releasing a MeshService \
              sends a resourceVersion-guarded JSON patch)",
    },
    Rule {
        group: "mesh.istio.operator",
        resources: &["meshservices/status"],
        verbs: &["patch"],
        scope: Scope::Watched,
        why: "write conditions, resources and findings through the status subresource (server-side apply)",
    },
    Rule {
        group: "mesh.istio.operator",
        resources: &["meshservices/finalizers"],
        verbs: &["update"],
        scope: Scope::Watched,
        why: "children carry an ownerReference with blockOwnerDeletion: true; clusters that enable the \
              OwnerReferencesPermissionEnforcement admission plugin (OpenShift does) only allow that to \
              who may update the owner's finalizers. Grants nothing else",
    },
    Rule {
        group: "",
        resources: &["services"],
        verbs: &["get", "list", "watch", "create", "patch"],
        scope: Scope::Watched,
        why: "list/watch: the integrity engine's view of every Service; get: read the live Service before \
              writing (ownership and drift check); create+patch: server-side apply of the Service a \
              MeshService implies (an apply that creates the object is authorized as create); never \
              deleted by the operator: the garbage collector follows the ownerReference",
    },
    Rule {
        group: "networking.istio.io",
        resources: &["virtualservices"],
        verbs: &["get", "list", "watch", "create", "patch", "delete"],
        scope: Scope::Watched,
        why: "list/watch: the integrity engine's view of every VirtualService; get: ownership and drift \
              check; create+patch: server-side apply of the VirtualService a MeshService implies; delete: \
              its own VirtualService when every host is lost to an older claim",
    },
    Rule {
        group: "networking.istio.io",
        resources: &["gateways"],
        verbs: &["get", "list", "watch", "create", "patch", "delete"],
        scope: Scope::Watched,
        why: "list/watch: the integrity engine's view of every Gateway; get: ownership and drift check; \
              create+patch: server-side apply of a managed shared Gateway (possibly in another \
              namespace, so no ownerReference); delete: the managed Gateway when its last MeshService \
              leaves",
    },
    Rule {
        group: "networking.istio.io",
        resources: &["destinationrules", "serviceentries"],
        verbs: &["list", "watch"],
        scope: Scope::Watched,
        why: "read only: the integrity engine checks references to and from them (subsets, hosts); the \
              operator never writes them",
    },
    Rule {
        group: "events.k8s.io",
        resources: &["events"],
        verbs: &["create", "patch"],
        scope: Scope::Watched,
        why: "Kubernetes Events on MeshServices (kube-runtime's Recorder creates an event, then patches \
              its series count when it repeats)",
    },
    Rule {
        group: "",
        resources: &["namespaces"],
        verbs: &["list", "watch"],
        scope: Scope::Namespaces,
        why: "the integrity engine resolves exportTo and cross-namespace references against the \
              namespaces that exist; read only",
    },
];

/// The leader-election Lease, in the operator's own namespace (kube-lease-manager 0.13: `get` to read
/// the holder, `create` the first time, `patch` to acquire, renew and release; it never deletes or
/// watches).
pub const LEADER_ELECTION_RULES: &[Rule] = &[Rule {
    group: "coordination.k8s.io",
    resources: &["leases"],
    verbs: &["get", "create", "patch"],
    scope: Scope::Watched,
    why: "leader election under --leader-elect: only the Lease holder reconciles",
}];

const GENERATED: &str =
    "Generated by `cargo xtask manifests` from xtask/src/rbac.rs. Do not edit by hand.";

fn quoted(items: &[&str]) -> String {
    let items: Vec<String> = items.iter().map(|i| format!("\"{i}\"")).collect();
    format!("[{}]", items.join(", "))
}

/// Wrap a reason into `# ` comment lines of at most ~100 columns, indented by `indent`.
fn comment(why: &str, indent: usize) -> String {
    let pad = " ".repeat(indent);
    let mut out = String::new();
    let mut line = String::new();
    for word in why.split_whitespace() {
        if !line.is_empty() && pad.len() + 2 + line.len() + 1 + word.len() > 100 {
            writeln!(out, "{pad}# {line}").unwrap();
            line.clear();
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if !line.is_empty() {
        writeln!(out, "{pad}# {line}").unwrap();
    }
    out
}

/// The `rules:` list (without the key), each rule preceded by its reason, indented by `indent`;
/// `resource_names`, when given, is printed verbatim as the rules' `resourceNames`.
fn rules_yaml<'a>(
    rules: impl IntoIterator<Item = &'a Rule>,
    indent: usize,
    resource_names: Option<&str>,
) -> String {
    let pad = " ".repeat(indent);
    let mut out = String::new();
    for rule in rules {
        out.push_str(&comment(rule.why, indent));
        writeln!(out, "{pad}- apiGroups: [\"{}\"]", rule.group).unwrap();
        writeln!(out, "{pad}  resources: {}", quoted(rule.resources)).unwrap();
        if let Some(names) = resource_names {
            writeln!(out, "{pad}  resourceNames: {names}").unwrap();
        }
        writeln!(out, "{pad}  verbs: {}", quoted(rule.verbs)).unwrap();
    }
    out
}

fn scoped(scope: Scope) -> impl Iterator<Item = &'static Rule> {
    OPERATOR_RULES.iter().filter(move |r| r.scope == scope)
}

const KUSTOMIZE_LABELS: &str = "  labels:\n    app.kubernetes.io/name: istio-integrity-operator\n";

/// deploy/rbac/cluster_role.yaml: every operator rule, cluster-wide (the default mode).
fn cluster_role() -> String {
    format!(
        "# {GENERATED}\n\
         # The operator's permissions when it watches every namespace (no --namespace flag).\n\
         apiVersion: rbac.authorization.k8s.io/v1\n\
         kind: ClusterRole\n\
         metadata:\n  name: {NAME}\n{KUSTOMIZE_LABELS}\
         rules:\n{}",
        rules_yaml(OPERATOR_RULES, 2, None)
    )
}

/// deploy/rbac/leader_election_role.yaml: the Lease, in the operator's namespace only.
fn leader_election_role() -> String {
    format!(
        "# {GENERATED}\n\
         apiVersion: rbac.authorization.k8s.io/v1\n\
         kind: Role\n\
         metadata:\n  name: {NAME}-leader-election\n  namespace: {NAMESPACE}\n{KUSTOMIZE_LABELS}\
         rules:\n{}",
        rules_yaml(LEADER_ELECTION_RULES, 2, None)
    )
}

/// deploy/namespaced/rbac.yaml: the `--namespace` variant: a Role and RoleBinding in the watched
/// namespace, plus read access to that Namespace object by name (a Role cannot grant it).
fn namespaced_rbac() -> String {
    format!(
        "# {GENERATED}\n\
         # The operator's permissions in --namespace mode: a Role and a RoleBinding in each watched namespace\n\
         # (here {w}; copy both for every further --namespace), and a ClusterRole for the Namespace\n\
         # objects themselves, which a Role cannot grant, narrowed to the watched ones by name.\n\
         apiVersion: rbac.authorization.k8s.io/v1\n\
         kind: Role\n\
         metadata:\n  name: {NAME}\n  namespace: {w}\n{KUSTOMIZE_LABELS}\
         rules:\n{rules}\
         ---\n\
         apiVersion: rbac.authorization.k8s.io/v1\n\
         kind: RoleBinding\n\
         metadata:\n  name: {NAME}\n  namespace: {w}\n{KUSTOMIZE_LABELS}\
         roleRef:\n  apiGroup: rbac.authorization.k8s.io\n  kind: Role\n  name: {NAME}\n\
         subjects:\n  - kind: ServiceAccount\n    name: {NAME}\n    namespace: {NAMESPACE}\n\
         ---\n\
         apiVersion: rbac.authorization.k8s.io/v1\n\
         kind: ClusterRole\n\
         metadata:\n  name: {NAME}-namespaces\n{KUSTOMIZE_LABELS}\
         rules:\n{cluster}\
         ---\n\
         apiVersion: rbac.authorization.k8s.io/v1\n\
         kind: ClusterRoleBinding\n\
         metadata:\n  name: {NAME}-namespaces\n{KUSTOMIZE_LABELS}\
         roleRef:\n  apiGroup: rbac.authorization.k8s.io\n  kind: ClusterRole\n  name: {NAME}-namespaces\n\
         subjects:\n  - kind: ServiceAccount\n    name: {NAME}\n    namespace: {NAMESPACE}\n",
        w = NAMESPACED_OVERLAY_WATCHES,
        rules = rules_yaml(scoped(Scope::Watched), 2, None),
        cluster = rules_yaml(
            scoped(Scope::Namespaces),
            2,
            Some(&format!("[\"{NAMESPACED_OVERLAY_WATCHES}\"]"))
        ),
    )
}

/// deploy/chart/templates/rbac.yaml: the same rules, with Helm choosing the mode from
/// `.Values.watchNamespaces` (empty: ClusterRole; otherwise a Role per namespace).
fn chart_rbac() -> String {
    let labels = "  labels:\n    {{- include \"iio.labels\" $ | nindent 4 }}\n";
    let subject = "subjects:\n  - kind: ServiceAccount\n    name: {{ include \"iio.serviceAccountName\" $ }}\n    namespace: {{ $.Release.Namespace }}\n";
    format!(
        "{{{{- /* {GENERATED} */}}}}\n\
         {{{{- if not .Values.watchNamespaces }}}}\n\
         # The operator's permissions when it watches every namespace (watchNamespaces empty).\n\
         apiVersion: rbac.authorization.k8s.io/v1\n\
         kind: ClusterRole\n\
         metadata:\n  name: {{{{ include \"iio.fullname\" $ }}}}\n{labels}\
         rules:\n{all}\
         ---\n\
         apiVersion: rbac.authorization.k8s.io/v1\n\
         kind: ClusterRoleBinding\n\
         metadata:\n  name: {{{{ include \"iio.fullname\" $ }}}}\n{labels}\
         roleRef:\n  apiGroup: rbac.authorization.k8s.io\n  kind: ClusterRole\n  name: {{{{ include \"iio.fullname\" $ }}}}\n\
         {subject}\
         {{{{- else }}}}\n\
         {{{{- range .Values.watchNamespaces }}}}\n\
         # The operator's permissions in namespace {{{{ . }}}} (--namespace mode).\n\
         apiVersion: rbac.authorization.k8s.io/v1\n\
         kind: Role\n\
         metadata:\n  name: {{{{ include \"iio.fullname\" $ }}}}\n  namespace: {{{{ . }}}}\n{labels}\
         rules:\n{watched}\
         ---\n\
         apiVersion: rbac.authorization.k8s.io/v1\n\
         kind: RoleBinding\n\
         metadata:\n  name: {{{{ include \"iio.fullname\" $ }}}}\n  namespace: {{{{ . }}}}\n{labels}\
         roleRef:\n  apiGroup: rbac.authorization.k8s.io\n  kind: Role\n  name: {{{{ include \"iio.fullname\" $ }}}}\n\
         {subject}\
         ---\n\
         {{{{- end }}}}\n\
         # The watched Namespace objects themselves, which a Role cannot grant.\n\
         apiVersion: rbac.authorization.k8s.io/v1\n\
         kind: ClusterRole\n\
         metadata:\n  name: {{{{ include \"iio.fullname\" $ }}}}-namespaces\n{labels}\
         rules:\n{cluster}\
         ---\n\
         apiVersion: rbac.authorization.k8s.io/v1\n\
         kind: ClusterRoleBinding\n\
         metadata:\n  name: {{{{ include \"iio.fullname\" $ }}}}-namespaces\n{labels}\
         roleRef:\n  apiGroup: rbac.authorization.k8s.io\n  kind: ClusterRole\n  name: {{{{ include \"iio.fullname\" $ }}}}-namespaces\n\
         {subject}\
         {{{{- end }}}}\n\
         ---\n\
         apiVersion: rbac.authorization.k8s.io/v1\n\
         kind: Role\n\
         metadata:\n  name: {{{{ include \"iio.fullname\" $ }}}}-leader-election\n  namespace: {{{{ $.Release.Namespace }}}}\n{labels}\
         rules:\n{lease}\
         ---\n\
         apiVersion: rbac.authorization.k8s.io/v1\n\
         kind: RoleBinding\n\
         metadata:\n  name: {{{{ include \"iio.fullname\" $ }}}}-leader-election\n  namespace: {{{{ $.Release.Namespace }}}}\n{labels}\
         roleRef:\n  apiGroup: rbac.authorization.k8s.io\n  kind: Role\n  name: {{{{ include \"iio.fullname\" $ }}}}-leader-election\n\
         {subject}",
        all = rules_yaml(OPERATOR_RULES, 2, None),
        watched = rules_yaml(scoped(Scope::Watched), 2, None),
        cluster = rules_yaml(
            scoped(Scope::Namespaces),
            2,
            Some("{{ toJson $.Values.watchNamespaces }}")
        ),
        lease = rules_yaml(LEADER_ELECTION_RULES, 2, None),
    )
}

/// The Markdown table between the RBAC markers of deploy/README.md.
fn readme_table() -> String {
    let mut out =
        String::from("| role | API group | resources | verbs | why |\n|---|---|---|---|---|\n");
    let rows = OPERATOR_RULES
        .iter()
        .map(|r| {
            let role = match r.scope {
                Scope::Watched => "operator (ClusterRole, or Role per `--namespace`)",
                Scope::Namespaces => {
                    "operator (ClusterRole; with `--namespace` only the watched ones, by `resourceNames`)"
                },
            };
            (role, r)
        })
        .chain(
            LEADER_ELECTION_RULES
                .iter()
                .map(|r| ("leader election (Role, operator namespace)", r)),
        );
    for (role, rule) in rows {
        let group = if rule.group.is_empty() {
            "core (`\"\"`)".to_string()
        } else {
            format!("`{}`", rule.group)
        };
        writeln!(
            out,
            "| {role} | {group} | {} | {} | {} |",
            rule.resources
                .iter()
                .map(|r| format!("`{r}`"))
                .collect::<Vec<_>>()
                .join(", "),
            rule.verbs.join(", "),
            rule.why
        )
        .unwrap();
    }
    out
}

pub const README: &str = "deploy/README.md";
const TABLE_BEGIN: &str = "<!-- rbac-table:begin (generated by `cargo xtask manifests`) -->\n";
const TABLE_END: &str = "<!-- rbac-table:end -->";

/// Every generated file: (path relative to the workspace root, wanted content).
pub fn render(root: &Path) -> Result<Vec<(String, String)>> {
    let readme_path = root.join(README);
    let readme = std::fs::read_to_string(&readme_path)
        .with_context(|| format!("reading {}", readme_path.display()))?;
    let (Some(begin), Some(end)) = (readme.find(TABLE_BEGIN), readme.find(TABLE_END)) else {
        bail!("{README} lacks the markers {TABLE_BEGIN:?} … {TABLE_END:?}");
    };
    let readme = format!(
        "{}{TABLE_BEGIN}{}{}",
        &readme[..begin],
        readme_table(),
        &readme[end..]
    );
    Ok(vec![
        ("deploy/rbac/cluster_role.yaml".into(), cluster_role()),
        (
            "deploy/rbac/leader_election_role.yaml".into(),
            leader_election_role(),
        ),
        ("deploy/namespaced/rbac.yaml".into(), namespaced_rbac()),
        ("deploy/chart/templates/rbac.yaml".into(), chart_rbac()),
        (README.into(), readme),
    ])
}

/// The files whose committed content differs from the generated one, with a unified diff each.
pub fn stale(root: &Path) -> Result<Vec<(String, String)>> {
    let mut stale = Vec::new();
    for (path, wanted) in render(root)? {
        let committed = std::fs::read_to_string(root.join(&path)).unwrap_or_default();
        if committed != wanted {
            let diff = similar::TextDiff::from_lines(&committed, &wanted)
                .unified_diff()
                .header(
                    &format!("{path} (committed)"),
                    "generated by xtask/src/rbac.rs",
                )
                .to_string();
            stale.push((path, diff));
        }
    }
    Ok(stale)
}

pub fn run(root: &Path, check: bool) -> Result<()> {
    if check {
        let stale = stale(root)?;
        for (_, diff) in &stale {
            eprintln!("{diff}");
        }
        if !stale.is_empty() {
            let paths: Vec<&str> = stale.iter().map(|(p, _)| p.as_str()).collect();
            bail!(
                "stale: {}; run `cargo xtask manifests` and commit the result",
                paths.join(", ")
            );
        }
        println!("deploy/ RBAC, the chart's RBAC and the README table are up to date");
        return Ok(());
    }
    for (path, wanted) in render(root)? {
        let full = root.join(&path);
        std::fs::create_dir_all(full.parent().context("generated path has a parent")?)?;
        std::fs::write(&full, wanted).with_context(|| format!("writing {}", full.display()))?;
        println!("wrote {path}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The drift test: the committed kustomize RBAC, the chart's RBAC template and the README table
    /// are exactly what the one table of rules produces, so the chart and kustomize grant the same.
    #[test]
    fn committed_manifests_match_the_rules() {
        let root = crate::workspace_root();
        let stale = stale(&root).unwrap();
        let report: Vec<String> = stale.iter().map(|(_, d)| d.clone()).collect();
        assert!(
            stale.is_empty(),
            "run `cargo xtask manifests`:\n{}",
            report.join("\n")
        );
    }

    /// Every generated kustomize file parses as YAML, and the ClusterRole carries each rule once.
    #[test]
    fn generated_rbac_is_valid_yaml_with_every_rule() {
        let role: serde_json::Value = serde_saphyr::from_str(&cluster_role()).unwrap();
        let rules = role["rules"].as_array().unwrap();
        assert_eq!(rules.len(), OPERATOR_RULES.len());
        for (yaml, rule) in rules.iter().zip(OPERATOR_RULES) {
            let verbs: Vec<&str> = yaml["verbs"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_str().unwrap())
                .collect();
            assert_eq!(verbs, rule.verbs);
            assert_eq!(yaml["apiGroups"][0].as_str().unwrap(), rule.group);
        }
        let docs: Vec<serde_json::Value> =
            serde_saphyr::from_str_multiple(&namespaced_rbac()).unwrap();
        let kinds: Vec<&str> = docs.iter().map(|d| d["kind"].as_str().unwrap()).collect();
        assert_eq!(
            kinds,
            ["Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding"]
        );
    }

    /// No rule may grant Secrets, wildcards or the escalation verbs: the operator never needs them.
    #[test]
    fn no_rule_grants_secrets_wildcards_or_escalation() {
        for rule in OPERATOR_RULES.iter().chain(LEADER_ELECTION_RULES) {
            for resource in rule.resources {
                assert!(
                    !resource.contains('*') && *resource != "secrets",
                    "{resource}"
                );
            }
            for verb in rule.verbs {
                assert!(
                    !matches!(
                        *verb,
                        "*" | "escalate" | "bind" | "impersonate" | "deletecollection"
                    ),
                    "{verb}"
                );
            }
        }
    }
}
