//! MSH02xx: the MeshService rules the operator maps onto status conditions.

mod common;
use common::{check, engine, hits};
use mesh_integrity::ObjectKey;

fn ms(ns: &str, name: &str, created: &str, hosts: &str, gateway: &str) -> String {
    format!(
        "---\napiVersion: mesh.istio.operator/v1alpha1\nkind: MeshService\nmetadata: {{name: {name}, namespace: {ns}, creationTimestamp: \"{created}\"}}\nspec:\n  serviceName: {name}\n  hosts: {hosts}\n  ports: [{{port: 80}}]\n{gateway}"
    )
}

const PUBLIC: &str = "  gateway: {name: public, namespace: istio-system}\n";
const MANAGED: &str = "  gateway: {name: shared, namespace: istio-system, managed: true}\n";

fn public_gw(hosts: &str) -> String {
    format!(
        "---\napiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {{name: public, namespace: istio-system}}\nspec: {{selector: {{istio: ingressgateway}}, servers: [{{port: {{number: 80, name: http, protocol: HTTP}}, hosts: {hosts}}}]}}\n"
    )
}

#[test]
fn the_older_meshservice_wins_a_host_claim() {
    let y = ms(
        "a",
        "first",
        "2024-01-01T00:00:00Z",
        "[cart.example.com]",
        MANAGED,
    ) + &ms(
        "b",
        "second",
        "2024-02-01T00:00:00Z",
        "[cart.example.com]",
        MANAGED,
    );
    let r = check(&y);
    let claims: Vec<_> = r.findings.iter().filter(|f| f.code == "MSH0201").collect();
    assert_eq!(claims.len(), 1, "{:?}", hits(&y));
    let f = claims[0];
    assert_eq!(
        (f.resource.namespace.as_str(), f.resource.name.as_str()),
        ("b", "second")
    );
    assert_eq!(f.host.as_deref(), Some("cart.example.com"));
    assert_eq!(f.port, Some(80));
    assert_eq!(f.gateway.as_deref(), Some("istio-system/shared"));
    assert_eq!(f.winner.as_ref().unwrap().name, "first");
    assert!(f.message.contains("MeshService a/first"));
    // the winner has nothing
    let e = engine(&y);
    assert!(
        e.findings_for(&ObjectKey::mesh_service("a", "first"))
            .unwrap()
            .iter()
            .all(|f| f.code != "MSH0201")
    );
    assert_eq!(
        e.findings_for(&ObjectKey::mesh_service("b", "second"))
            .unwrap()
            .iter()
            .filter(|f| f.code == "MSH0201")
            .count(),
        1
    );
}

#[test]
fn claims_compare_with_wildcards_on_the_same_gateway_and_port_only() {
    let y = ms(
        "a",
        "first",
        "2024-01-01T00:00:00Z",
        "[\"*.example.com\"]",
        MANAGED,
    ) + &ms(
        "b",
        "second",
        "2024-02-01T00:00:00Z",
        "[cart.example.com]",
        MANAGED,
    );
    assert_eq!(check(&y).summary.by_code.get("MSH0201"), Some(&1));
    let other_gw = MANAGED.replace("shared", "other");
    let y = ms(
        "a",
        "first",
        "2024-01-01T00:00:00Z",
        "[cart.example.com]",
        MANAGED,
    ) + &ms(
        "b",
        "second",
        "2024-02-01T00:00:00Z",
        "[cart.example.com]",
        &other_gw,
    );
    assert_eq!(check(&y).summary.by_code.get("MSH0201"), None);
    let y = ms(
        "a",
        "first",
        "2024-01-01T00:00:00Z",
        "[cart.example.com]",
        MANAGED,
    ) + &ms(
        "b",
        "second",
        "2024-02-01T00:00:00Z",
        "[cart.example.com]",
        MANAGED,
    )
    .replace("port: 80", "port: 8080");
    assert_eq!(check(&y).summary.by_code.get("MSH0201"), None);
    // equal timestamps: namespace/name decides
    let y = ms(
        "b",
        "x",
        "2024-01-01T00:00:00Z",
        "[cart.example.com]",
        MANAGED,
    ) + &ms(
        "a",
        "x",
        "2024-01-01T00:00:00Z",
        "[cart.example.com]",
        MANAGED,
    );
    let r = check(&y);
    let f = r.findings.iter().find(|f| f.code == "MSH0201").unwrap();
    assert_eq!(f.resource.namespace, "b");
}

#[test]
fn a_virtual_service_it_does_not_own_conflicts_but_its_own_does_not() {
    let legacy = "---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: legacy, namespace: other, creationTimestamp: \"2023-01-01T00:00:00Z\"}\nspec: {hosts: [cart.example.com], gateways: [istio-system/shared], http: [{route: [{destination: {host: cart.shop.svc.cluster.local}}]}]}\n";
    let svc = "---\napiVersion: v1\nkind: Service\nmetadata: {name: cart, namespace: shop, annotations: {mesh.istio.operator/owner: shop/cart}}\nspec: {ports: [{port: 80}]}\n";
    let y = ms(
        "shop",
        "cart",
        "2024-01-01T00:00:00Z",
        "[cart.example.com]",
        MANAGED,
    ) + legacy
        + svc;
    let r = check(&y);
    let f = r
        .findings
        .iter()
        .find(|f| f.code == "MSH0201")
        .expect("claim lost");
    assert_eq!(f.resource.kind, "MeshService");
    assert_eq!(f.winner.as_ref().unwrap().name, "legacy");
    // the same VirtualService, owned by the MeshService: no conflict
    let owned = legacy.replace(
        "name: legacy, namespace: other",
        "name: cart, namespace: shop, annotations: {mesh.istio.operator/owner: shop/cart}",
    );
    let y = ms(
        "shop",
        "cart",
        "2024-01-01T00:00:00Z",
        "[cart.example.com]",
        MANAGED,
    ) + &owned
        + svc;
    assert!(
        check(&y).findings.iter().all(|f| f.code != "MSH0201"),
        "{:?}",
        hits(&y)
    );
    // a younger foreign VirtualService is the loser
    let young = legacy.replace("2023-01-01", "2025-01-01");
    let y = ms(
        "shop",
        "cart",
        "2024-01-01T00:00:00Z",
        "[cart.example.com]",
        MANAGED,
    ) + &young
        + svc;
    let r = check(&y);
    let f = r
        .findings
        .iter()
        .find(|f| f.code == "MSH0201")
        .expect("claim lost");
    assert_eq!(f.resource.kind, "VirtualService");
    assert_eq!(f.winner.as_ref().unwrap().kind, "MeshService");
}

#[test]
fn an_unmanaged_gateway_on_the_same_workload_serving_the_host_conflicts() {
    let other_gw = "---\napiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {name: legacy, namespace: istio-system, creationTimestamp: \"2020-01-01T00:00:00Z\"}\nspec: {selector: {istio: ingressgateway}, servers: [{port: {number: 80, name: http, protocol: HTTP}, hosts: [cart.example.com]}]}\n";
    let y = ms(
        "shop",
        "cart",
        "2024-01-01T00:00:00Z",
        "[cart.example.com]",
        PUBLIC,
    ) + &public_gw("[cart.example.com]")
        + other_gw;
    let r = check(&y);
    let f = r
        .findings
        .iter()
        .find(|f| f.code == "MSH0201" && f.resource.kind == "MeshService")
        .expect("{r:?}");
    assert_eq!(f.winner.as_ref().unwrap().name, "legacy");
}

#[test]
fn gateway_not_found_and_not_serving_a_host_only_for_unmanaged_gateways() {
    let y = ms(
        "shop",
        "cart",
        "2024-01-01T00:00:00Z",
        "[cart.example.com]",
        PUBLIC,
    );
    assert_eq!(check(&y).summary.by_code.get("MSH0202"), Some(&1));
    let y = ms(
        "shop",
        "cart",
        "2024-01-01T00:00:00Z",
        "[cart.example.com]",
        MANAGED,
    );
    assert!(
        check(&y).findings.is_empty(),
        "a managed gateway is created by the operator"
    );
    let y = ms(
        "shop",
        "cart",
        "2024-01-01T00:00:00Z",
        "[cart.example.com, shop.example.com]",
        PUBLIC,
    ) + &public_gw("[\"*.example.com\"]");
    assert!(check(&y).findings.is_empty(), "{:?}", hits(&y));
    let y = ms(
        "shop",
        "cart",
        "2024-01-01T00:00:00Z",
        "[cart.example.com, cart.example.org]",
        PUBLIC,
    ) + &public_gw("[\"*.example.com\"]");
    let r = check(&y);
    let f: Vec<_> = r.findings.iter().filter(|f| f.code == "MSH0203").collect();
    assert_eq!(f.len(), 1);
    assert_eq!(f[0].host.as_deref(), Some("cart.example.org"));
    // a namespace-prefixed server host is visible only there
    let y = ms(
        "shop",
        "cart",
        "2024-01-01T00:00:00Z",
        "[cart.example.com]",
        PUBLIC,
    ) + &public_gw("[\"other/cart.example.com\"]");
    assert_eq!(check(&y).summary.by_code.get("MSH0203"), Some(&1));
    let y = ms(
        "shop",
        "cart",
        "2024-01-01T00:00:00Z",
        "[cart.example.com]",
        PUBLIC,
    ) + &public_gw("[\"shop/cart.example.com\"]");
    assert!(check(&y).findings.is_empty());
}

#[test]
fn names_taken_by_objects_it_does_not_own() {
    let svc = |annotations: &str| {
        format!(
            "---\napiVersion: v1\nkind: Service\nmetadata: {{name: cart, namespace: shop{annotations}}}\nspec: {{ports: [{{port: 80}}]}}\n"
        )
    };
    let base = ms("shop", "cart", "2024-01-01T00:00:00Z", "[cart]", "");
    assert_eq!(
        check(&(base.clone() + &svc("")))
            .summary
            .by_code
            .get("MSH0204"),
        Some(&1)
    );
    assert_eq!(
        check(&(base.clone() + &svc(", annotations: {mesh.istio.operator/owner: shop/other}")))
            .summary
            .by_code
            .get("MSH0204"),
        Some(&1)
    );
    assert!(
        check(&(base.clone() + &svc(", annotations: {mesh.istio.operator/owner: shop/cart}")))
            .findings
            .is_empty()
    );
    let vs = |annotations: &str| {
        format!(
            "---\napiVersion: networking.istio.io/v1beta1\nkind: VirtualService\nmetadata: {{name: cart, namespace: shop{annotations}}}\nspec: {{hosts: [other.example.com], gateways: [mesh]}}\n"
        )
    };
    let r = check(
        &(base.clone() + &svc(", annotations: {mesh.istio.operator/owner: shop/cart}") + &vs("")),
    );
    assert_eq!(r.summary.by_code.get("MSH0205"), Some(&1));
    let r = check(
        &(base
            + &svc(", annotations: {mesh.istio.operator/owner: shop/cart}")
            + &vs(", annotations: {mesh.istio.operator/owner: shop/cart}")),
    );
    assert_eq!(r.summary.by_code.get("MSH0205"), None);
}

#[test]
fn typed_meshservices_are_accepted() {
    let value = serde_json::json!({
        "apiVersion": "mesh.istio.operator/v1alpha1", "kind": "MeshService",
        "metadata": {"name": "webapp", "namespace": "shop"},
        "spec": {"serviceName": "webapp", "hosts": ["webapp.example.com"], "ports": [{"port": 80}],
                 "gateway": {"name": "missing", "namespace": "istio-system"}}
    });
    let typed: meshservice_api::MeshService = serde_json::from_value(value).unwrap();
    let mut engine = mesh_integrity::Engine::open_in_memory().unwrap();
    engine
        .upsert(mesh_integrity::SourceObject::from_typed(&typed).unwrap())
        .unwrap();
    let f = engine
        .findings_for(&ObjectKey::mesh_service("shop", "webapp"))
        .unwrap();
    assert_eq!(f.len(), 1);
    assert_eq!(f[0].code, "MSH0202");
    // a MeshService missing required fields is MSH0001, not an error
    engine
        .upsert(
            serde_json::json!({"apiVersion": "mesh.istio.operator/v1alpha1", "kind": "MeshService",
            "metadata": {"name": "broken", "namespace": "shop"}, "spec": {"hosts": "x"}}),
        )
        .unwrap();
    let f = engine
        .findings_for(&ObjectKey::mesh_service("shop", "broken"))
        .unwrap();
    assert_eq!(f[0].code, "MSH0001");
}
