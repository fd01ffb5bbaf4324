//! `Engine::finding_counts` gives the counts of `Engine::check`'s findings, suppressions honoured.

mod common;
use std::collections::BTreeMap;

use mesh_integrity::{Engine, FindingCount, SourceObject, parse_documents};
use proptest::prelude::*;
use serde_json::{Value, json};

/// The counts per (code, severity) of the findings `check` reports, built from the findings.
fn counted_from_check(engine: &Engine) -> Vec<FindingCount> {
    let mut counts = BTreeMap::new();
    for finding in engine.check().unwrap().findings {
        *counts.entry((finding.code, finding.severity)).or_default() += 1;
    }
    counts
        .into_iter()
        .map(|((code, severity), count)| FindingCount {
            code,
            severity,
            count,
        })
        .collect()
}

fn sample_mesh() -> Vec<SourceObject> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/istio");
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    files
        .iter()
        .flat_map(|p| {
            let text = std::fs::read_to_string(p).unwrap();
            parse_documents(&text, &p.display().to_string()).unwrap()
        })
        .collect()
}

#[test]
fn the_sample_meshs_counts_are_those_of_its_report() {
    let mut engine = Engine::open_in_memory().unwrap();
    engine.ingest_batch(sample_mesh()).unwrap();
    let counts = engine.finding_counts().unwrap();
    assert!(!counts.is_empty(), "the sample mesh has deliberate faults");
    assert_eq!(counts, counted_from_check(&engine));

    // suppressed everywhere by code, and on one object only
    engine.add_suppression("IST0145").unwrap();
    engine
        .add_suppression("IST0101=VirtualService/shop/catalog")
        .unwrap();
    let suppressed = engine.finding_counts().unwrap();
    assert!(!suppressed.iter().any(|c| c.code == "IST0145"));
    assert_ne!(suppressed, counts);
    assert_eq!(suppressed, counted_from_check(&engine));
}

#[test]
fn every_destination_fault_is_counted_under_its_own_code() {
    let yaml = r#"
apiVersion: v1
kind: Service
metadata: {name: web, namespace: shop}
spec: {ports: [{port: 80}, {port: 443}]}
---
apiVersion: v1
kind: Service
metadata: {name: api, namespace: shop}
spec: {ports: [{port: 8080}]}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: routes, namespace: shop}
spec:
  hosts: [routes]
  http:
  - route: [{destination: {host: nowhere}}, {destination: {host: web}}, {destination: {host: api, port: {number: 9090}}}]
    mirror: {host: gone}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: quiet
  namespace: shop
  annotations: {galley.istio.io/analyze-suppress: IST0112}
spec:
  hosts: [quiet]
  http:
  - route: [{destination: {host: web}}, {destination: {host: nowhere}}]
"#;
    let engine = common::engine(yaml);
    let rules: Vec<String> = engine
        .check()
        .unwrap()
        .findings
        .into_iter()
        .map(|f| f.rule)
        .collect();
    for rule in [
        "vs-destination-host-not-found",
        "vs-mirror-host-not-found",
        "vs-destination-port-not-found",
        "vs-destination-port-selector-required",
    ] {
        assert!(rules.iter().any(|r| r == rule), "{rule} in {rules:?}");
    }
    let counts = engine.finding_counts().unwrap();
    assert_eq!(counts, counted_from_check(&engine));
    // quiet's IST0112 is suppressed by its annotation, its IST0101 is not
    let selector: u64 = counts
        .iter()
        .filter(|c| c.code == "IST0112")
        .map(|c| c.count)
        .sum();
    assert_eq!(selector, 1);
}

#[test]
fn an_empty_engine_counts_nothing() {
    let engine = Engine::open_in_memory().unwrap();
    assert_eq!(engine.finding_counts().unwrap(), Vec::new());
}

fn broken_mesh(services: usize, vs: &[(usize, usize, bool, bool)]) -> Vec<Value> {
    let mut out = Vec::new();
    for j in 0..services {
        out.push(json!({"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": format!("svc{j}"), "namespace": "ns"},
            "spec": {"ports": [{"port": 80}, {"port": 81 + (j % 2)}]}}));
        out.push(
            json!({"apiVersion": "networking.istio.io/v1", "kind": "DestinationRule",
            "metadata": {"name": format!("dr{j}"), "namespace": "ns"},
            "spec": {"host": format!("svc{}", j + services / 2), "subsets": [{"name": "v1"}]}}),
        );
    }
    for (i, (target, port, subset, suppressed)) in vs.iter().enumerate() {
        let mut dest = json!({"host": format!("svc{target}")});
        if *port > 0 {
            dest["port"] = json!({"number": 79 + port});
        }
        if *subset {
            dest["subset"] = json!("v1");
        }
        let mut metadata = json!({"name": format!("v{i}"), "namespace": "ns"});
        if *suppressed {
            metadata["annotations"] = json!({"galley.istio.io/analyze-suppress": "IST0101"});
        }
        out.push(json!({"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
            "metadata": metadata,
            "spec": {"hosts": [format!("v{i}")], "gateways": if i % 3 == 0 { json!(["missing-gw"]) } else { json!([]) },
                     "http": [{"route": [{"destination": dest}], "mirror": {"host": format!("svc{}", target + 1)}}]}}));
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    #[test]
    fn counts_equal_the_reports_counts(
        services in 1usize..5,
        vs in proptest::collection::vec((0usize..6, 0usize..4, any::<bool>(), any::<bool>()), 0..10),
        suppression in proptest::option::of(prop::sample::select(vec!["IST0101", "IST0112", "IST0132", "vs-mirror-host-not-found", "IST0101=VirtualService/ns/v1"])),
    ) {
        let mut engine = Engine::open_in_memory().unwrap();
        engine.ingest_batch(broken_mesh(services, &vs)).unwrap();
        if let Some(spec) = suppression {
            engine.add_suppression(spec).unwrap();
        }
        prop_assert_eq!(engine.finding_counts().unwrap(), counted_from_check(&engine));
    }
}
