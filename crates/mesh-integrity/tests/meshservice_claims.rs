//! MSH0201 (`meshservice-host-claim-lost`) through its targeted query: `findings_for` of every
//! object must be exactly its share of the full check (`common::check` asserts it for every
//! object), whichever kind loses, on every path the targeted query takes.

mod common;
use common::{check, engine};
use mesh_integrity::{Engine, Finding, ObjectKey, SourceObject};
use proptest::prelude::*;
use serde_json::{Value, json};

fn ms(ns: &str, name: &str, created: Option<&str>, hosts: &[&str], gateway: Value) -> Value {
    let mut value = json!({"apiVersion": "mesh.istio.operator/v1alpha1", "kind": "MeshService",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"serviceName": name, "hosts": hosts, "ports": [{"port": 80, "targetPort": 8080}]}});
    if let Some(created) = created {
        value["metadata"]["creationTimestamp"] = json!(created);
    }
    if !gateway.is_null() {
        value["spec"]["gateway"] = gateway;
    }
    value
}

fn vs(ns: &str, name: &str, created: Option<&str>, hosts: &[&str], gateways: &[&str]) -> Value {
    let mut value = json!({"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"hosts": hosts, "gateways": gateways,
                 "http": [{"route": [{"destination": {"host": "cart.shop.svc.cluster.local"}}]}]}});
    if let Some(created) = created {
        value["metadata"]["creationTimestamp"] = json!(created);
    }
    value
}

fn gateway(name: &str, created: Option<&str>, selector: &str, hosts: &[&str]) -> Value {
    let mut value = json!({"apiVersion": "networking.istio.io/v1", "kind": "Gateway",
        "metadata": {"name": name, "namespace": "istio-system"},
        "spec": {"selector": {"istio": selector},
                 "servers": [{"port": {"number": 80, "name": "http", "protocol": "HTTP"}, "hosts": hosts}]}});
    if let Some(created) = created {
        value["metadata"]["creationTimestamp"] = json!(created);
    }
    value
}

fn public() -> Value {
    json!({"name": "public", "namespace": "istio-system"})
}

/// A MeshService claiming `host` on Gateway `istio-system/public`.
fn public_ms(ns: &str, name: &str, created: Option<&str>, host: &str) -> Value {
    ms(ns, name, created, &[host], public())
}

/// A VirtualService serving `host` on Gateway `istio-system/public`.
fn public_vs(ns: &str, name: &str, created: Option<&str>, host: &str) -> Value {
    vs(ns, name, created, &[host], &["istio-system/public"])
}

const OLD: Option<&str> = Some("2023-01-01T00:00:00Z");
const NEW: Option<&str> = Some("2024-01-01T00:00:00Z");

/// The report of `objects`, checked object by object against `findings_for` (in `common::check`).
fn report(objects: &[Value]) -> Vec<Finding> {
    let yaml: String = objects
        .iter()
        .map(|o| format!("---\n{}\n", serde_json::to_string(o).expect("json")))
        .collect();
    check(&yaml)
        .findings
        .into_iter()
        .filter(|f| f.code == "MSH0201")
        .collect()
}

/// `kind/ns/name` of the losers, and the winner's name, sorted.
fn losers(findings: &[Finding]) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = findings
        .iter()
        .map(|f| {
            (
                format!(
                    "{}/{}/{}",
                    f.resource.kind, f.resource.namespace, f.resource.name
                ),
                f.winner
                    .as_ref()
                    .map(|w| w.name.clone())
                    .unwrap_or_default(),
            )
        })
        .collect();
    v.sort();
    v
}

fn pair(loser: &str, winner: &str) -> (String, String) {
    (loser.to_string(), winner.to_string())
}

#[test]
fn a_wildcard_claim_and_an_exact_host_overlap_both_ways() {
    let gw = gateway("public", OLD, "ingress", &["*"]);
    // a wildcard MeshService against an exact VirtualService host, on the same gateway
    let f = report(&[
        gw.clone(),
        public_ms("shop", "all", NEW, "*.example.com"),
        public_vs("legacy", "cart", OLD, "cart.example.com"),
    ]);
    assert_eq!(losers(&f), [pair("MeshService/shop/all", "cart")]);
    // an exact MeshService host against a wildcard VirtualService host; the VirtualService loses
    let f = report(&[
        gw.clone(),
        public_ms("shop", "cart", OLD, "cart.example.com"),
        public_vs("legacy", "all", NEW, "*.example.com"),
    ]);
    assert_eq!(losers(&f), [pair("VirtualService/legacy/all", "cart")]);
    assert_eq!(f[0].host.as_deref(), Some("*.example.com"));
    assert_eq!(f[0].port, None);
    // two wildcards, and a wildcard that does not cover the other host
    let f = report(&[
        gw.clone(),
        public_ms("a", "wide", OLD, "*.example.com"),
        public_ms("b", "narrow", NEW, "*.shop.example.com"),
        public_ms("c", "apex", NEW, "example.com"),
    ]);
    assert_eq!(losers(&f), [pair("MeshService/b/narrow", "wide")]);
}

#[test]
fn the_mesh_gateway_is_a_gateway_of_its_own() {
    // a mesh-only MeshService and a mesh VirtualService: a short host expands in its namespace
    let f = report(&[
        ms("shop", "cart", NEW, &["cart"], Value::Null),
        vs(
            "shop",
            "cart-vs",
            OLD,
            &["cart.shop.svc.cluster.local"],
            &[],
        ),
        vs("shop", "cart-mesh", OLD, &["cart"], &["mesh"]),
    ]);
    assert_eq!(losers(&f), [pair("MeshService/shop/cart", "cart-mesh")]);
    // the same host on a gateway does not compete with the mesh claim, nor the reverse
    let f = report(&[
        gateway("public", OLD, "ingress", &["*"]),
        ms("shop", "cart", NEW, &["cart.example.com"], Value::Null),
        public_vs("legacy", "cart", OLD, "cart.example.com"),
        public_ms("shop", "edge", NEW, "edge.example.com"),
        vs("legacy", "edge", OLD, &["edge.example.com"], &[]),
    ]);
    assert!(f.is_empty(), "{f:?}");
    // a VirtualService on the mesh and on the gateway loses on both, once each
    let f = report(&[
        gateway("public", OLD, "ingress", &["*"]),
        public_ms("shop", "cart", OLD, "cart.example.com"),
        ms("shop", "mesh", OLD, &["cart.example.com"], Value::Null),
        vs(
            "legacy",
            "cart",
            NEW,
            &["cart.example.com"],
            &["istio-system/public", "mesh", "istio-system/public"],
        ),
    ]);
    let mut gateways: Vec<_> = f.iter().filter_map(|f| f.gateway.clone()).collect();
    gateways.sort();
    assert_eq!(gateways, ["istio-system/public", "mesh"]);
}

#[test]
fn a_virtual_service_owned_by_a_meshservice_present_does_not_compete() {
    let gw = gateway("public", OLD, "ingress", &["*"]);
    let mut owned = public_vs("shop", "other", OLD, "cart.example.com");
    owned["metadata"]["annotations"] = json!({"mesh.istio.operator/owner": "shop/other"});
    // its owner is present: that MeshService claims for it (and it has no host of its own here)
    let f = report(&[
        gw.clone(),
        public_ms("shop", "cart", NEW, "cart.example.com"),
        public_ms("shop", "other", NEW, "other.example.com"),
        owned.clone(),
    ]);
    assert!(f.is_empty(), "{f:?}");
    // its owner is gone: the VirtualService competes
    let f = report(&[
        gw.clone(),
        public_ms("shop", "cart", NEW, "cart.example.com"),
        owned.clone(),
    ]);
    assert_eq!(losers(&f), [pair("MeshService/shop/cart", "other")]);
    // an owner that is no `ns/name` key, and one with more than one `/`, owns nothing present
    for owner in ["other", "shop/other/x"] {
        owned["metadata"]["annotations"] = json!({"mesh.istio.operator/owner": owner});
        let f = report(&[
            gw.clone(),
            public_ms("shop", "cart", NEW, "cart.example.com"),
            public_ms("shop", "other", NEW, "other.example.com"),
            owned.clone(),
        ]);
        assert_eq!(
            losers(&f),
            [pair("MeshService/shop/cart", "other")],
            "{owner}"
        );
    }
}

#[test]
fn an_unmanaged_gateway_on_the_same_selector_loses_or_wins() {
    let claims = public_ms("shop", "cart", NEW, "cart.example.com");
    // an older Gateway on the workload of the MeshService's gateway wins
    let f = report(&[
        gateway("public", NEW, "ingress", &["*.example.com"]),
        gateway("legacy", OLD, "ingress", &["cart.example.com"]),
        claims.clone(),
    ]);
    assert_eq!(losers(&f), [pair("MeshService/shop/cart", "legacy")]);
    // a younger one loses, reported on the Gateway with the MeshService's gateway and port
    let f = report(&[
        gateway("public", OLD, "ingress", &["*.example.com"]),
        gateway(
            "legacy",
            Some("2025-01-01T00:00:00Z"),
            "ingress",
            &["*.example.com"],
        ),
        claims.clone(),
    ]);
    assert_eq!(losers(&f), [pair("Gateway/istio-system/legacy", "cart")]);
    assert_eq!(f[0].gateway.as_deref(), Some("istio-system/legacy"));
    assert_eq!(f[0].port, Some(80));
    assert!(
        f[0].message
            .contains("on gateway istio-system/public port 80")
    );
    // a younger managed Gateway is the operator's own: it does not lose
    let mut managed = gateway(
        "legacy",
        Some("2025-01-01T00:00:00Z"),
        "ingress",
        &["*.example.com"],
    );
    managed["metadata"]["labels"] =
        json!({"app.kubernetes.io/managed-by": "istio-integrity-operator"});
    let f = report(&[
        gateway("public", OLD, "ingress", &["*.example.com"]),
        managed,
        claims.clone(),
    ]);
    assert!(f.is_empty(), "{f:?}");
    // another selector, a managed Gateway, another port: no conflict
    let mut managed = gateway("legacy", OLD, "ingress", &["cart.example.com"]);
    managed["metadata"]["labels"] =
        json!({"app.kubernetes.io/managed-by": "istio-integrity-operator"});
    let mut other_port = gateway("legacy", OLD, "ingress", &["cart.example.com"]);
    other_port["spec"]["servers"][0]["port"]["number"] = json!(8080);
    for other in [
        gateway("legacy", OLD, "egress", &["cart.example.com"]),
        managed,
        other_port,
    ] {
        let f = report(&[
            gateway("public", NEW, "ingress", &["*.example.com"]),
            other,
            claims.clone(),
        ]);
        assert!(f.is_empty(), "{f:?}");
    }
}

#[test]
fn ties_are_broken_by_namespace_then_name_and_no_timestamp_is_youngest() {
    let gw = gateway("public", OLD, "ingress", &["*"]);
    // equal timestamps: namespace, then name
    let f = report(&[
        gw.clone(),
        public_ms("b", "cart", NEW, "cart.example.com"),
        public_vs("a", "cart", NEW, "cart.example.com"),
        public_ms("a", "zz", NEW, "cart.example.com"),
    ]);
    assert_eq!(
        losers(&f),
        [
            pair("MeshService/a/zz", "cart"),
            pair("MeshService/b/cart", "cart")
        ]
    );
    assert!(
        f.iter()
            .all(|f| f.winner.as_ref().unwrap().kind == "VirtualService")
    );
    // no timestamp: younger than any
    let f = report(&[
        gw.clone(),
        public_ms("a", "cart", None, "cart.example.com"),
        public_vs("z", "cart", NEW, "cart.example.com"),
    ]);
    assert_eq!(losers(&f), [pair("MeshService/a/cart", "cart")]);
    // the oldest of several competitors is the winner named
    let f = report(&[
        gw.clone(),
        public_vs("z", "late", NEW, "cart.example.com"),
        public_ms("y", "early", OLD, "*.example.com"),
        public_ms(
            "x",
            "cart",
            Some("2025-01-01T00:00:00Z"),
            "cart.example.com",
        ),
    ]);
    assert_eq!(
        losers(&f),
        [
            pair("MeshService/x/cart", "early"),
            pair("VirtualService/z/late", "early")
        ]
    );
}

#[test]
fn a_host_or_port_written_twice_is_one_claim() {
    let gw = gateway("public", OLD, "ingress", &["*"]);
    let mut twice = ms(
        "shop",
        "cart",
        NEW,
        &["cart.example.com", "cart.example.com"],
        public(),
    );
    twice["spec"]["ports"] = json!([{"port": 80}, {"port": 80, "protocol": "HTTPS"}]);
    let f = report(&[
        gw,
        twice,
        vs(
            "legacy",
            "cart",
            OLD,
            &["cart.example.com", "cart.example.com"],
            &["istio-system/public"],
        ),
    ]);
    assert_eq!(losers(&f), [pair("MeshService/shop/cart", "cart")]);
}

#[test]
fn events_move_a_claim_between_losers() {
    // the operator's path: upserts, then findings_for the object of the event
    let claims = |e: &Engine, key: &ObjectKey| -> Vec<Finding> {
        let all = e.findings_for(key).unwrap();
        all.into_iter().filter(|f| f.code == "MSH0201").collect()
    };
    let mut e: Engine = engine("");
    let gw = gateway("public", OLD, "ingress", &["*"]);
    e.upsert(SourceObject::new(gw)).unwrap();
    e.upsert(SourceObject::new(public_ms(
        "shop",
        "cart",
        NEW,
        "cart.example.com",
    )))
    .unwrap();
    let key = ObjectKey::virtual_service("legacy", "cart");
    e.upsert(SourceObject::new(public_vs(
        "legacy",
        "cart",
        OLD,
        "other.example.com",
    )))
    .unwrap();
    assert!(claims(&e, &key).is_empty());
    e.upsert(SourceObject::new(public_vs(
        "legacy",
        "cart",
        Some("2025-01-01T00:00:00Z"),
        "cart.example.com",
    )))
    .unwrap();
    let f = claims(&e, &key);
    assert_eq!(f.len(), 1, "{f:?}");
    assert_eq!(f[0].winner.as_ref().unwrap().name, "cart");
    assert!(claims(&e, &ObjectKey::mesh_service("shop", "cart")).is_empty());
    e.delete(&ObjectKey::mesh_service("shop", "cart")).unwrap();
    assert!(claims(&e, &key).is_empty());
    common::assert_findings_for_match(&e, &e.check().unwrap());
}

/// One object of a small world where every MSH0201 path can meet: two selectors, three gateways,
/// the mesh, wildcard and short hosts, owners present or not, managed or not, three ages.
fn object() -> impl Strategy<Value = Value> {
    let host = prop::sample::select(vec![
        "cart.example.com",
        "*.example.com",
        "*.shop.example.com",
        "cart.shop.example.com",
        "cart",
        "*",
        "*hop.example.com",
    ]);
    let hosts = prop::collection::vec(host, 1..3);
    let created = prop::sample::select(vec![
        None,
        Some("2023-01-01T00:00:00Z"),
        Some("2024-01-01T00:00:00Z"),
    ]);
    let ns = prop::sample::select(vec!["shop", "legacy"]);
    let name = prop::sample::select(vec!["a", "b", "c"]);
    let gw_name = prop::sample::select(vec!["public", "legacy", "other"]);
    let port = prop::sample::select(vec![80u16, 443]);
    (0u8..3, ns, name, created, hosts, gw_name, port, 0u8..4).prop_map(
        |(kind, ns, name, created, hosts, gw_name, port, variant)| match kind {
            0 => {
                let gateway = match variant {
                    0 => Value::Null,
                    1 => json!({"name": gw_name, "namespace": "istio-system", "managed": true}),
                    _ => json!({"name": gw_name, "namespace": "istio-system"}),
                };
                let mut m = ms(ns, name, created, &hosts, gateway);
                m["spec"]["ports"] = json!([{"port": port}]);
                m
            }
            1 => {
                let gateways: Vec<String> = match variant {
                    0 => vec![],
                    1 => vec!["mesh".into(), format!("istio-system/{gw_name}")],
                    _ => vec![format!("istio-system/{gw_name}")],
                };
                let gateways: Vec<&str> = gateways.iter().map(String::as_str).collect();
                let mut v = vs(ns, name, created, &hosts, &gateways);
                if variant == 3 {
                    v["metadata"]["annotations"] =
                        json!({"mesh.istio.operator/owner": format!("{ns}/a")});
                }
                v
            }
            _ => {
                let selector = if variant == 0 { "egress" } else { "ingress" };
                let mut g = gateway(gw_name, created, selector, &hosts);
                g["spec"]["servers"][0]["port"]["number"] = json!(port);
                if variant == 1 {
                    g["metadata"]["labels"] =
                        json!({"app.kubernetes.io/managed-by": "istio-integrity-operator"});
                }
                g
            }
        },
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn findings_for_is_each_objects_share_of_the_claims(objects in prop::collection::vec(object(), 1..10)) {
        // later objects of the same key replace earlier ones, as watch events would
        let mut e = Engine::open_in_memory().unwrap();
        for o in objects {
            e.upsert(SourceObject::new(o)).unwrap();
        }
        common::assert_findings_for_match(&e, &e.check().unwrap());
    }
}
