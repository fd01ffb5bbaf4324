//! Applying a finding's repair plan and checking again leaves no finding of that kind.

mod common;
use mesh_integrity::{
    ActionKind, Engine, Finding, IngestOptions, SourceObject, repair::apply_plan,
};

const BROKEN: &str = r#"
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: public, namespace: istio-system}
spec:
  selector: {istio: ingressgateway}
  servers: [{port: {number: 80, name: http, protocol: HTTP}, hosts: [other.example.com]}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: a, namespace: shop}
spec:
  hosts: [a.example.com]
  gateways: [istio-system/public, istio-system/missing]
  http:
  - route:
    - destination: {host: cart}
    - destination: {host: web, port: {number: 8080}}
    - destination: {host: multi}
    - destination: {host: web, subset: v2, port: {number: 80}}
    - destination: {host: cart, subset: v1}
    - destination: {host: api.example.org}
    - destination: {host: pay.billing.svc.cluster.local}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: shop}
spec: {ports: [{port: 80}]}
---
apiVersion: v1
kind: Service
metadata: {name: multi, namespace: shop}
spec: {ports: [{port: 80}, {port: 443}]}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: web, namespace: shop}
spec: {host: web, subsets: [{name: v1, labels: {version: v1}}]}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: wdr, namespace: shop}
spec: {host: web, exportTo: [".", missing-ns]}
---
apiVersion: v1
kind: Namespace
metadata: {name: shop}
---
apiVersion: mesh.istio.operator/v1alpha1
kind: MeshService
metadata: {name: m1, namespace: shop, creationTimestamp: "2024-01-01T00:00:00Z"}
spec: {serviceName: m1, hosts: [m1.example.com, m1.example.org], ports: [{port: 80}], gateway: {name: public, namespace: istio-system}}
---
apiVersion: mesh.istio.operator/v1alpha1
kind: MeshService
metadata: {name: m2, namespace: shop}
spec: {serviceName: m2, hosts: [m2.example.com], ports: [{port: 80}], gateway: {name: nothere, namespace: istio-system}}
---
apiVersion: mesh.istio.operator/v1alpha1
kind: MeshService
metadata: {name: m3, namespace: shop, creationTimestamp: "2025-01-01T00:00:00Z"}
spec: {serviceName: m3, hosts: [m1.example.com, m3.example.com], ports: [{port: 80}], gateway: {name: shared, namespace: istio-system, managed: true}}
---
apiVersion: mesh.istio.operator/v1alpha1
kind: MeshService
metadata: {name: m4, namespace: shop, creationTimestamp: "2024-06-01T00:00:00Z"}
spec: {serviceName: m4, hosts: [m1.example.com], ports: [{port: 80}], gateway: {name: shared, namespace: istio-system, managed: true}}
"#;

fn same_kind(a: &Finding, b: &Finding) -> bool {
    a.rule == b.rule
        && a.resource == b.resource
        && a.host == b.host
        && a.port == b.port
        && a.gateway == b.gateway
}

fn check(objects: &[SourceObject]) -> Vec<Finding> {
    let mut engine = Engine::open_in_memory().unwrap();
    engine.ingest_batch(objects.to_vec()).unwrap();
    engine.check().unwrap().findings
}

#[test]
fn every_actionable_plan_removes_its_finding() {
    let objects = common::objects(BROKEN);
    let findings = check(&objects);
    let rules: std::collections::BTreeSet<_> = findings.iter().map(|f| f.rule.as_str()).collect();
    for expected in [
        "vs-gateway-not-found",
        "vs-host-not-in-gateway",
        "vs-destination-host-not-found",
        "vs-destination-port-not-found",
        "vs-destination-port-selector-required",
        "vs-destination-subset-not-found",
        "export-to-namespace-not-found",
        "meshservice-gateway-not-found",
        "meshservice-host-not-served",
        "meshservice-host-claim-lost",
    ] {
        assert!(
            rules.contains(expected),
            "{expected} missing from {rules:?}"
        );
    }
    let mut actionable = 0;
    for finding in &findings {
        assert!(!finding.repair.is_empty(), "{} has no plan", finding.rule);
        if finding.repair.iter().all(|a| a.action == ActionKind::None) {
            assert!(
                finding.repair[0]
                    .description
                    .starts_with("no safe automatic repair")
            );
            continue;
        }
        actionable += 1;
        let mut repaired = objects.clone();
        apply_plan(
            &mut repaired,
            &finding.repair,
            &IngestOptions::default().default_namespace,
        )
        .unwrap_or_else(|e| panic!("{}: {e}", finding.rule));
        let after = check(&repaired);
        assert!(
            !after.iter().any(|f| same_kind(f, finding)),
            "plan for {} on {:?} left it: {:?}",
            finding.rule,
            finding.resource,
            finding.repair
        );
    }
    assert!(actionable >= 10, "{actionable}");
}

#[test]
fn plans_are_deterministic_and_say_who_may_apply_them() {
    let a = check(&common::objects(BROKEN));
    let b = check(&common::objects(BROKEN));
    assert_eq!(a, b);
    // owned objects may be patched by the operator; foreign ones are advice
    let owned = BROKEN.replace(
        "metadata: {name: public, namespace: istio-system}",
        "metadata: {name: public, namespace: istio-system, labels: {app.kubernetes.io/managed-by: istio-integrity-operator}}",
    );
    let findings = check(&common::objects(&owned));
    let f = findings
        .iter()
        .find(|f| {
            f.rule == "vs-host-not-in-gateway"
                && f.gateway.as_deref() == Some("istio-system/public")
        })
        .unwrap();
    assert!(f.repair[0].operator_may_apply);
    let findings = check(&common::objects(BROKEN));
    let f = findings
        .iter()
        .find(|f| {
            f.rule == "vs-host-not-in-gateway"
                && f.gateway.as_deref() == Some("istio-system/public")
        })
        .unwrap();
    assert!(!f.repair[0].operator_may_apply);
}
