//! `--graph FILE.dot`: the reference graph for Graphviz (`dot -Tsvg mesh.dot -o mesh.svg`).
//!
//! Objects are nodes, clustered by namespace; references (VirtualService → Gateway, route
//! destination → Service/ServiceEntry, subset → DestinationRule, DestinationRule → host,
//! MeshService → Gateway) are edges. A reference whose target does not exist goes to a red
//! dashed "missing" node; the objects of a conflict are joined by a bold red edge labelled with
//! the code; every object with a finding is filled in its worst severity's colour.
//!
//! The edges come from reading the objects here (the engine's report names the objects in
//! findings, not every reference), with Istio's host rules: short hosts are qualified with the
//! referrer's namespace, wildcard ServiceEntry hosts match by suffix.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use serde_json::Value;

use super::report::{Finding, Severity};

/// An object in the graph: kind, namespace, name.
type NodeId = (String, String, String);

/// One object as the graph needs it.
#[derive(Debug, Clone)]
pub struct GraphObject {
    /// Kind, namespace, name.
    pub id: NodeId,
    /// The object (only `spec` is read).
    pub value: Value,
}

impl GraphObject {
    /// From a parsed object; `None` for kinds the graph does not draw or objects without a name.
    pub fn from_value(value: &Value, default_namespace: &str) -> Option<GraphObject> {
        let kind = value.get("kind")?.as_str()?;
        if !DRAWN_KINDS.contains(&kind) {
            return None;
        }
        let metadata = value.get("metadata")?;
        let name = metadata.get("name")?.as_str()?;
        let namespace = metadata
            .get("namespace")
            .and_then(Value::as_str)
            .filter(|ns| !ns.is_empty())
            .unwrap_or(default_namespace);
        Some(GraphObject {
            id: (kind.to_string(), namespace.to_string(), name.to_string()),
            value: value.get("spec").cloned().unwrap_or(Value::Null),
        })
    }
}

const DRAWN_KINDS: [&str; 6] = [
    "VirtualService",
    "Gateway",
    "DestinationRule",
    "ServiceEntry",
    "Service",
    "MeshService",
];

#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Target {
    Found(NodeId),
    Missing(String),
}

#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Edge {
    from: NodeId,
    to: Target,
    label: String,
}

/// The DOT text for these objects and findings.
pub fn render(objects: &[GraphObject], findings: &[Finding]) -> String {
    let index = Index::new(objects);
    let mut edges = BTreeSet::new();
    for object in objects {
        references(object, &index, &mut edges);
    }

    // Worst severity and messages per object, for fill colour and tooltip.
    let mut worst: BTreeMap<NodeId, Severity> = BTreeMap::new();
    let mut notes: BTreeMap<NodeId, Vec<String>> = BTreeMap::new();
    let mut conflicts: BTreeSet<(NodeId, NodeId, String)> = BTreeSet::new();
    for finding in findings {
        let id = finding.resource.identity();
        let entry = worst.entry(id.clone()).or_insert(finding.severity);
        *entry = (*entry).max(finding.severity);
        notes
            .entry(id.clone())
            .or_default()
            .push(format!("{} {}", finding.code, finding.message));
        for related in &finding.related {
            let other = related.resource.identity();
            // A related object that exists in the input and is not the target of a reference
            // edge is the other side of a conflict.
            if other != id
                && index.exists(&other)
                && !edges
                    .iter()
                    .any(|e| e.from == id && e.to == Target::Found(other.clone()))
            {
                let (a, b) = if id < other {
                    (id.clone(), other)
                } else {
                    (other, id.clone())
                };
                conflicts.insert((a, b, finding.code.clone()));
            }
        }
    }

    let mut dot = String::new();
    dot.push_str("digraph mesh {\n");
    dot.push_str("  graph [rankdir=LR, fontname=\"Helvetica\", label=\"istio-integrity-operator check: references (red: dangling or conflicting)\", labelloc=t];\n");
    dot.push_str("  node [shape=box, style=\"rounded,filled\", fillcolor=white, fontname=\"Helvetica\", fontsize=10];\n");
    dot.push_str("  edge [fontname=\"Helvetica\", fontsize=9, color=gray40];\n");

    let mut by_namespace: BTreeMap<&str, Vec<&GraphObject>> = BTreeMap::new();
    for object in objects {
        by_namespace
            .entry(object.id.1.as_str())
            .or_default()
            .push(object);
    }
    for (cluster, (namespace, members)) in by_namespace.iter().enumerate() {
        let _ = writeln!(dot, "  subgraph cluster_{cluster} {{");
        let _ = writeln!(
            dot,
            "    label={}; style=rounded; color=gray60;",
            quote(&format!("namespace {namespace}"))
        );
        let mut seen = BTreeSet::new();
        for object in members {
            if !seen.insert(&object.id) {
                continue;
            }
            let (kind, _, name) = &object.id;
            let fill = match worst.get(&object.id) {
                Some(Severity::Error) => "#f8b4b4",
                Some(Severity::Warning) => "#fde68a",
                Some(Severity::Info) => "#bfdbfe",
                None => "white",
            };
            let tooltip = notes
                .get(&object.id)
                .map(|n| n.join("\n"))
                .unwrap_or_default();
            let _ = writeln!(
                dot,
                "    {} [label={}, fillcolor={}, tooltip={}];",
                quote(&node_name(&object.id)),
                quote(&format!("{kind}\n{name}")),
                quote(fill),
                quote(&tooltip)
            );
        }
        dot.push_str("  }\n");
    }

    let mut missing = BTreeSet::new();
    for edge in &edges {
        match &edge.to {
            Target::Found(to) => {
                let _ = writeln!(
                    dot,
                    "  {} -> {} [label={}];",
                    quote(&node_name(&edge.from)),
                    quote(&node_name(to)),
                    quote(&edge.label)
                );
            }
            Target::Missing(what) => {
                if missing.insert(what.clone()) {
                    let _ = writeln!(
                        dot,
                        "  {} [label={}, shape=box, style=\"dashed,filled\", fillcolor=\"#fee2e2\", color=red, fontcolor=red];",
                        quote(&format!("missing: {what}")),
                        quote(&format!("missing\n{what}"))
                    );
                }
                let _ = writeln!(
                    dot,
                    "  {} -> {} [label={}, color=red, fontcolor=red, style=dashed, penwidth=2];",
                    quote(&node_name(&edge.from)),
                    quote(&format!("missing: {what}")),
                    quote(&edge.label)
                );
            }
        }
    }
    for (a, b, code) in &conflicts {
        let _ = writeln!(
            dot,
            "  {} -> {} [label={}, dir=both, color=red, fontcolor=red, penwidth=3, constraint=false];",
            quote(&node_name(a)),
            quote(&node_name(b)),
            quote(&format!("conflict {code}"))
        );
    }
    dot.push_str("}\n");
    dot
}

fn node_name((kind, namespace, name): &NodeId) -> String {
    format!("{kind}/{namespace}/{name}")
}

/// A DOT string literal: quotes and backslashes escaped, newlines as `\n` (centred lines).
fn quote(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Lookups by what references name.
struct Index {
    ids: BTreeSet<NodeId>,
    /// FQDN of each Service (`name.ns.svc.cluster.local`) → Service.
    services: BTreeMap<String, NodeId>,
    /// Each ServiceEntry host → ServiceEntry.
    entries: Vec<(String, NodeId)>,
    /// Each DestinationRule: its host qualified like Istio's subset lookup, itself, its subsets.
    rules: Vec<(String, NodeId, BTreeSet<String>)>,
}

impl Index {
    fn new(objects: &[GraphObject]) -> Index {
        let mut index = Index {
            ids: BTreeSet::new(),
            services: BTreeMap::new(),
            entries: Vec::new(),
            rules: Vec::new(),
        };
        for object in objects {
            let (kind, namespace, name) = &object.id;
            index.ids.insert(object.id.clone());
            match kind.as_str() {
                "Service" => {
                    index.services.insert(
                        format!("{name}.{namespace}.svc.cluster.local"),
                        object.id.clone(),
                    );
                }
                "ServiceEntry" => {
                    for host in strings(object.value.get("hosts")) {
                        index.entries.push((host.to_string(), object.id.clone()));
                    }
                }
                "DestinationRule" => {
                    if let Some(host) = object.value.get("host").and_then(Value::as_str) {
                        let subsets = items(object.value.get("subsets"))
                            .filter_map(|subset| subset.get("name").and_then(Value::as_str))
                            .map(str::to_string)
                            .collect();
                        index
                            .rules
                            .push((to_fqdn(namespace, host), object.id.clone(), subsets));
                    }
                }
                _ => {}
            }
        }
        index
    }

    fn exists(&self, id: &NodeId) -> bool {
        self.ids.contains(id)
    }

    /// The Service or ServiceEntry serving `host` as seen from `namespace`.
    fn serving(&self, namespace: &str, host: &str) -> Option<NodeId> {
        let fqdn = to_fqdn(namespace, host);
        if let Some(service) = self.services.get(&fqdn) {
            return Some(service.clone());
        }
        self.entries
            .iter()
            .find(|(entry, _)| host_matches(entry, &fqdn))
            .map(|(_, id)| id.clone())
    }
}

fn references(object: &GraphObject, index: &Index, edges: &mut BTreeSet<Edge>) {
    let (kind, namespace, _) = &object.id;
    let spec = &object.value;
    let mut add = |to: Target, label: String| {
        edges.insert(Edge {
            from: object.id.clone(),
            to,
            label,
        });
    };
    match kind.as_str() {
        "VirtualService" => {
            let mut gateways: BTreeSet<&str> = strings(spec.get("gateways")).collect();
            for rule in items(spec.get("http")) {
                for matcher in items(rule.get("match")) {
                    gateways.extend(strings(matcher.get("gateways")));
                }
            }
            for gateway in gateways.into_iter().filter(|g| *g != "mesh") {
                let (gw_namespace, gw_name) =
                    gateway.split_once('/').unwrap_or((namespace, gateway));
                let id = (
                    "Gateway".to_string(),
                    gw_namespace.to_string(),
                    gw_name.to_string(),
                );
                if index.exists(&id) {
                    add(Target::Found(id), "gateway".to_string());
                } else {
                    add(
                        Target::Missing(format!("Gateway {gw_namespace}/{gw_name}")),
                        "gateway".to_string(),
                    );
                }
            }
            for section in ["http", "tcp", "tls"] {
                for rule in items(spec.get(section)) {
                    let mut destinations: Vec<&Value> = items(rule.get("route"))
                        .filter_map(|r| r.get("destination"))
                        .collect();
                    destinations.extend(rule.get("mirror"));
                    destinations
                        .extend(items(rule.get("mirrors")).filter_map(|m| m.get("destination")));
                    for destination in destinations {
                        let Some(host) = destination.get("host").and_then(Value::as_str) else {
                            continue;
                        };
                        match index.serving(namespace, host) {
                            Some(target) => add(Target::Found(target), "route".to_string()),
                            None => add(
                                Target::Missing(format!("host {}", to_fqdn(namespace, host))),
                                "route".to_string(),
                            ),
                        }
                        if let Some(subset) = destination.get("subset").and_then(Value::as_str) {
                            let fqdn = to_fqdn(namespace, host);
                            // Any DestinationRule of the host that declares the subset satisfies it.
                            let declaring = index.rules.iter().find(|(rule_host, _, subsets)| {
                                *rule_host == fqdn && subsets.contains(subset)
                            });
                            match declaring {
                                Some((_, rule, _)) => {
                                    add(Target::Found(rule.clone()), format!("subset {subset}"))
                                }
                                None => add(
                                    Target::Missing(format!("subset {subset} of {fqdn}")),
                                    format!("subset {subset}"),
                                ),
                            }
                        }
                    }
                }
            }
        }
        "DestinationRule" => {
            if let Some(host) = spec.get("host").and_then(Value::as_str) {
                match index.serving(namespace, host) {
                    Some(target) => add(Target::Found(target), "host".to_string()),
                    // Wildcard DestinationRules apply to whatever matches; nothing to miss.
                    None if host.starts_with('*') => {}
                    None => add(
                        Target::Missing(format!("host {}", to_fqdn(namespace, host))),
                        "host".to_string(),
                    ),
                }
            }
        }
        "MeshService" => {
            if let Some(gateway) = spec.get("gateway")
                && let Some(name) = gateway.get("name").and_then(Value::as_str)
            {
                let gw_namespace = gateway
                    .get("namespace")
                    .and_then(Value::as_str)
                    .unwrap_or(namespace);
                let managed = gateway
                    .get("managed")
                    .and_then(Value::as_bool)
                    .unwrap_or(false);
                let id = (
                    "Gateway".to_string(),
                    gw_namespace.to_string(),
                    name.to_string(),
                );
                if index.exists(&id) {
                    add(Target::Found(id), "gateway".to_string());
                } else if !managed {
                    // A managed gateway is created by the operator, so its absence is expected.
                    add(
                        Target::Missing(format!("Gateway {gw_namespace}/{name}")),
                        "gateway".to_string(),
                    );
                }
            }
        }
        _ => {}
    }
}

fn items(value: Option<&Value>) -> impl Iterator<Item = &Value> {
    value.and_then(Value::as_array).into_iter().flatten()
}

fn strings(value: Option<&Value>) -> impl Iterator<Item = &str> {
    items(value).filter_map(Value::as_str)
}

/// Istio's `ConvertHostToFQDN`: a short host is qualified with the referrer's namespace.
fn to_fqdn(namespace: &str, host: &str) -> String {
    if host.contains('.') || host.starts_with('*') {
        host.to_string()
    } else {
        format!("{host}.{namespace}.svc.cluster.local")
    }
}

/// Istio's `host.Name.Matches`, for one side that may be a wildcard (`*.example.com`).
fn host_matches(pattern: &str, host: &str) -> bool {
    match pattern.strip_prefix('*') {
        Some(suffix) => host.ends_with(suffix),
        None => pattern == host,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::report::{Related, Resource};
    use serde_json::json;

    fn object(kind: &str, namespace: &str, name: &str, spec: Value) -> GraphObject {
        GraphObject::from_value(
            &json!({"apiVersion": "x/v1", "kind": kind, "metadata": {"name": name, "namespace": namespace}, "spec": spec}),
            "default",
        )
        .expect("a drawn kind")
    }

    #[test]
    fn references_that_resolve_are_plain_edges_and_dangling_ones_go_to_red_missing_nodes() {
        let objects = [
            object("Service", "shop", "catalog", json!({})),
            object(
                "DestinationRule",
                "shop",
                "catalog",
                json!({"host": "catalog", "subsets": [{"name": "v1"}]}),
            ),
            object(
                "VirtualService",
                "shop",
                "catalog",
                json!({"hosts": ["catalog"], "gateways": ["mesh", "istio-system/gw"],
                       "http": [{"route": [{"destination": {"host": "catalog", "subset": "v1"}},
                                           {"destination": {"host": "catalog", "subset": "v3"}}]}]}),
            ),
        ];
        let dot = render(&objects, &[]);
        assert!(
            dot.contains(
                "\"VirtualService/shop/catalog\" -> \"Service/shop/catalog\" [label=\"route\"];"
            ),
            "{dot}"
        );
        assert!(dot.contains("\"VirtualService/shop/catalog\" -> \"DestinationRule/shop/catalog\" [label=\"subset v1\"];"), "{dot}");
        assert!(
            dot.contains(
                "\"DestinationRule/shop/catalog\" -> \"Service/shop/catalog\" [label=\"host\"];"
            ),
            "{dot}"
        );
        assert!(
            dot.contains("\"VirtualService/shop/catalog\" -> \"missing: subset v3 of catalog.shop.svc.cluster.local\" [label=\"subset v3\", color=red"),
            "{dot}"
        );
        assert!(
            dot.contains("\"VirtualService/shop/catalog\" -> \"missing: Gateway istio-system/gw\""),
            "{dot}"
        );
        assert!(
            !dot.contains("Gateway shop/mesh"),
            "the mesh pseudo-gateway is not a reference: {dot}"
        );
    }

    #[test]
    fn conflicting_objects_are_joined_by_a_red_edge_and_filled_by_severity() {
        let objects = [
            object("Gateway", "a", "one", json!({})),
            object("Gateway", "b", "two", json!({})),
        ];
        let finding = Finding {
            code: "IST0145".to_string(),
            severity: Severity::Error,
            resource: Resource {
                kind: "Gateway".into(),
                namespace: "a".into(),
                name: "one".into(),
                ..Resource::default()
            },
            related: vec![Related {
                resource: Resource {
                    kind: "Gateway".into(),
                    namespace: "b".into(),
                    name: "two".into(),
                    ..Resource::default()
                },
                ..Related::default()
            }],
            ..Finding::default()
        };
        let dot = render(&objects, &[finding]);
        assert!(dot.contains("\"Gateway/a/one\" -> \"Gateway/b/two\" [label=\"conflict IST0145\", dir=both, color=red"), "{dot}");
        assert!(
            dot.contains("\"Gateway/a/one\" [label=\"Gateway\\none\", fillcolor=\"#f8b4b4\""),
            "{dot}"
        );
        assert!(
            dot.contains("label=\"namespace a\"") && dot.contains("label=\"namespace b\""),
            "{dot}"
        );
    }

    #[test]
    fn wildcard_service_entries_serve_matching_hosts() {
        let objects = [
            object(
                "ServiceEntry",
                "ext",
                "apis",
                json!({"hosts": ["*.example.com"]}),
            ),
            object(
                "VirtualService",
                "ext",
                "api",
                json!({"hosts": ["api.example.com"], "tls": [{"route": [{"destination": {"host": "api.example.com"}}]}]}),
            ),
        ];
        let dot = render(&objects, &[]);
        assert!(
            dot.contains("\"VirtualService/ext/api\" -> \"ServiceEntry/ext/apis\""),
            "{dot}"
        );
    }

    #[test]
    fn names_with_quotes_and_control_characters_cannot_break_the_dot_syntax() {
        assert_eq!(quote("a\"b\\c\nd\x07"), "\"a\\\"b\\\\c\\nd\"");
    }
}
