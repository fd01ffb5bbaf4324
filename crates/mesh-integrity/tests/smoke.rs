mod common;

#[test]
fn every_rule_sql_runs_on_an_empty_and_a_small_mesh() {
    let yaml = r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: cart, namespace: shop}
spec:
  hosts: [cart.example.com]
  gateways: [istio-system/public]
  http: [{route: [{destination: {host: cart}}]}]
---
apiVersion: v1
kind: Service
metadata: {name: cart, namespace: shop}
spec: {ports: [{port: 80}], selector: {app: cart}}
---
apiVersion: v1
kind: Pod
metadata: {name: cart-1, namespace: shop, labels: {app: cart}}
---
apiVersion: v1
kind: Namespace
metadata: {name: shop}
---
apiVersion: v1
kind: Secret
metadata: {name: s, namespace: shop}
type: kubernetes.io/tls
"#;
    let report = common::check(yaml);
    println!("{}", serde_json::to_string_pretty(&report).unwrap());
    assert!(report.coverage.skipped_rules.is_empty());
    let empty = mesh_integrity::Engine::open_in_memory()
        .unwrap()
        .check()
        .unwrap();
    assert_eq!(empty.summary.total, 0);
}
