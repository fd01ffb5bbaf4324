//! Batch and incremental ingest: keys, versions, idempotence, deletion, undecodable objects.

mod common;
use mesh_integrity::{Engine, Error, IngestOptions, ObjectKey, SourceObject, parse_documents};
use serde_json::json;

fn vs(version: &str, host: &str) -> serde_json::Value {
    json!({"apiVersion": format!("networking.istio.io/{version}"), "kind": "VirtualService",
           "metadata": {"name": "r", "namespace": "shop"},
           "spec": {"hosts": ["r"], "http": [{"route": [{"destination": {"host": host}}]}]}})
}

#[test]
fn istio_versions_share_one_key() {
    let mut engine = Engine::open_in_memory().unwrap();
    for version in ["v1alpha3", "v1beta1", "v1"] {
        engine.upsert(vs(version, "nowhere")).unwrap();
    }
    assert_eq!(engine.objects_by_kind().unwrap()["VirtualService"], 1);
    let findings = engine
        .findings_for(&ObjectKey::virtual_service("shop", "r"))
        .unwrap();
    assert_eq!(findings.len(), 1);
    assert_eq!(findings[0].resource.api_version, "networking.istio.io/v1");
}

#[test]
fn default_namespace_unknown_kinds_and_stats() {
    let yaml = "apiVersion: v1\nkind: Service\nmetadata: {name: a}\nspec: {ports: [{port: 80}]}\n---\napiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\n---\napiVersion: v1\nkind: Namespace\nmetadata: {name: shop}\n";
    let mut engine = Engine::open_in_memory()
        .unwrap()
        .with_options(IngestOptions {
            default_namespace: "team".into(),
        });
    let stats = engine
        .ingest_batch(parse_documents(yaml, "f.yaml").unwrap())
        .unwrap();
    assert_eq!(stats.total, 2);
    assert_eq!(stats.skipped_unknown["apps/v1/Deployment"], 1);
    assert!(engine.contains(&ObjectKey::service("team", "a")).unwrap());
    assert!(
        engine
            .contains(&ObjectKey::new("", "Namespace", "", "shop"))
            .unwrap()
    );
}

#[test]
fn upsert_is_idempotent_and_delete_then_reinsert_restores() {
    let yaml = "apiVersion: v1\nkind: Service\nmetadata: {name: cart, namespace: shop}\nspec: {ports: [{port: 80}, {port: 81}]}\n";
    let mut engine = common::engine(yaml);
    engine.upsert(vs("v1", "cart")).unwrap();
    let before = engine.check().unwrap().findings;
    assert_eq!(before.len(), 1, "IST0112");
    engine.upsert(vs("v1", "cart")).unwrap();
    assert_eq!(engine.check().unwrap().findings, before);
    let key = ObjectKey::service("shop", "cart");
    assert!(engine.delete(&key).unwrap());
    assert!(!engine.delete(&key).unwrap());
    assert_eq!(
        engine.check().unwrap().findings[0].rule,
        "vs-destination-host-not-found"
    );
    engine
        .ingest_batch(parse_documents(yaml, "test.yaml").unwrap())
        .unwrap();
    assert_eq!(engine.check().unwrap().findings, before);
}

#[test]
fn undecodable_objects_are_recorded_and_cleared() {
    let mut engine = Engine::open_in_memory().unwrap();
    let key = ObjectKey::virtual_service("shop", "r");
    engine
        .record_undecodable(&key, "spec.http[0]: invalid type")
        .unwrap();
    let f = engine.findings_for(&key).unwrap();
    assert_eq!(f[0].code, "MSH0001");
    assert!(f[0].message.contains("invalid type"));
    engine.upsert(vs("v1", "r.shop.svc.cluster.local")).unwrap();
    assert!(
        engine
            .findings_for(&key)
            .unwrap()
            .iter()
            .all(|f| f.code != "MSH0001")
    );
    // an object without identity is an error for upsert, a finding in a file batch
    assert!(matches!(
        engine.upsert(json!({"apiVersion": "v1", "kind": "Service"})),
        Err(Error::Identity(_))
    ));
    let stats = engine
        .ingest_batch(vec![SourceObject::with_origin(
            json!({"apiVersion": "v1", "kind": "Service"}),
            "x.yaml",
            3,
        )])
        .unwrap();
    assert_eq!(stats.undecodable, 1);
    let r = engine.check().unwrap();
    assert!(
        r.findings.iter().any(|f| f.code == "MSH0001"
            && f.file.as_deref() == Some("x.yaml")
            && f.line == Some(3))
    );
}

#[test]
fn secret_data_is_never_stored() {
    let yaml = "apiVersion: v1\nkind: Secret\nmetadata: {name: tls, namespace: shop, annotations: {note: S3CR3T-ANNOTATION}}\ntype: kubernetes.io/tls\ndata: {tls.key: UzNDUjNU}\nstringData: {password: hunter2}\n";
    let engine = common::engine(yaml);
    let conn = engine.connection();
    let tables: Vec<String> = conn
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table'")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    for table in tables {
        let dump: String = conn
            .query_row(
                &format!("SELECT coalesce(group_concat(quote(t.rowid)), '') FROM \"{table}\" t"),
                [],
                |r| r.get(0),
            )
            .unwrap_or_default();
        let _ = dump;
        let mut stmt = conn.prepare(&format!("SELECT * FROM \"{table}\"")).unwrap();
        let n = stmt.column_count();
        let mut rows = stmt.query([]).unwrap();
        while let Some(row) = rows.next().unwrap() {
            for i in 0..n {
                if let Ok(s) = row.get::<_, String>(i) {
                    assert!(
                        !s.contains("UzNDUjNU") && !s.contains("hunter2"),
                        "{table} holds secret data: {s}"
                    );
                }
            }
        }
    }
    assert!(
        engine
            .contains(&ObjectKey::new("", "Secret", "shop", "tls"))
            .unwrap()
    );
}

#[test]
fn findings_for_is_the_objects_share_of_check() {
    let yaml = r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: a, namespace: shop}
spec: {hosts: [a.example.com], gateways: [missing], http: [{route: [{destination: {host: x}}, {destination: {host: y, subset: v1}}]}]}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: d, namespace: shop}
spec: {host: nowhere}
"#;
    let engine = common::engine(yaml);
    let report = engine.check().unwrap();
    for key in [
        ObjectKey::virtual_service("shop", "a"),
        ObjectKey::destination_rule("shop", "d"),
    ] {
        let mine: Vec<_> = report
            .findings
            .iter()
            .filter(|f| f.resource.kind == key.kind && f.resource.name == key.name)
            .cloned()
            .collect();
        assert!(!mine.is_empty());
        assert_eq!(engine.findings_for(&key).unwrap(), mine);
    }
    assert!(
        engine
            .findings_for(&ObjectKey::service("shop", "none"))
            .unwrap()
            .is_empty()
    );
}

#[test]
fn report_json_shape_is_stable() {
    let engine = common::engine(
        "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: d, namespace: shop}\nspec: {host: nowhere}\n",
    );
    let json = serde_json::to_value(engine.check().unwrap()).unwrap();
    for key in [
        "reportVersion",
        "schemaVersion",
        "findings",
        "summary",
        "durations",
        "coverage",
    ] {
        assert!(json.get(key).is_some(), "{key}");
    }
    let f = &json["findings"][0];
    for key in [
        "code", "rule", "severity", "resource", "message", "file", "line", "related", "chain",
        "repair", "host", "port", "gateway", "winner",
    ] {
        assert!(f.get(key).is_some(), "finding.{key}");
    }
    assert_eq!(f["severity"], "warning");
    assert_eq!(f["resource"]["apiVersion"], "networking.istio.io/v1");
    assert_eq!(f["line"], 1);
    for key in [
        "total",
        "byCode",
        "byRule",
        "bySeverity",
        "byNamespace",
        "objectsByKind",
        "objectsTotal",
        "suppressed",
    ] {
        assert!(json["summary"].get(key).is_some(), "summary.{key}");
    }
    for key in ["pods", "secrets", "namespaces", "skippedRules", "notes"] {
        assert!(json["coverage"].get(key).is_some(), "coverage.{key}");
    }
    let back: mesh_integrity::Report = serde_json::from_value(json).unwrap();
    assert_eq!(back.findings.len(), 1);
}

#[test]
fn a_key_repeated_in_one_snapshot_keeps_the_last_object() {
    let service = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "r", "namespace": "shop"},
                         "spec": {"ports": [{"port": 80}]}});
    let other = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s", "namespace": "shop"},
                       "spec": {"ports": [{"port": 80}]}});
    // into an empty engine (the bulk path), the VirtualService first broken, then repaired, then
    // more objects after the repeat
    let mut engine = Engine::open_in_memory().unwrap();
    engine
        .ingest_batch(vec![
            vs("v1", "nowhere"),
            service.clone(),
            vs("v1", "r"),
            other.clone(),
        ])
        .unwrap();
    let mut expected = Engine::open_in_memory().unwrap();
    expected
        .ingest_batch(vec![service, vs("v1", "r"), other])
        .unwrap();
    assert_eq!(
        engine.objects_by_kind().unwrap(),
        expected.objects_by_kind().unwrap()
    );
    assert_eq!(
        engine.check().unwrap().findings,
        expected.check().unwrap().findings
    );
    assert!(engine.check().unwrap().findings.is_empty());
}

#[test]
fn rules_that_need_pods_follow_pods_arriving_and_leaving() {
    let mut engine = Engine::open_in_memory().unwrap();
    engine
        .upsert(json!({"apiVersion": "networking.istio.io/v1", "kind": "Gateway",
            "metadata": {"name": "x", "namespace": "istio-system"},
            "spec": {"selector": {"istio": "nothing"},
                     "servers": [{"port": {"number": 80, "name": "http", "protocol": "HTTP"}, "hosts": ["a.example.com"]}]}}))
        .unwrap();
    let gateway = ObjectKey::new("networking.istio.io", "Gateway", "istio-system", "x");
    let rules_on_gateway = |engine: &Engine| -> Vec<String> {
        let findings = engine.findings_for(&gateway).unwrap();
        findings.into_iter().map(|f| f.rule).collect()
    };
    // no Pod: the selector rule does not run
    assert!(rules_on_gateway(&engine).is_empty());
    let pod = json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "p", "namespace": "istio-system", "labels": {"istio": "ingressgateway"}}});
    engine.upsert(pod).unwrap();
    assert_eq!(rules_on_gateway(&engine), ["gateway-selector-no-pod"]);
    engine
        .delete(&ObjectKey::new("", "Pod", "istio-system", "p"))
        .unwrap();
    assert!(rules_on_gateway(&engine).is_empty());
}

#[test]
fn a_large_batch_equals_the_same_objects_upserted_one_by_one() {
    // Large enough that the batch writes on its second thread, over several chunks; with a
    // repeated key late in the batch (bulk mode ends there), unknown kinds and an unnamed object
    // from a file.
    let mut objects: Vec<SourceObject> = Vec::new();
    for i in 0..1500 {
        let ns = format!("team{}", i % 7);
        objects.push(SourceObject::new(
            json!({"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": format!("svc{i}"), "namespace": ns},
            "spec": {"ports": [{"port": 80}]}}),
        ));
        // every tenth routes to a Service that does not exist
        let target = if i % 10 == 0 {
            format!("gone{i}")
        } else {
            format!("svc{i}")
        };
        objects.push(SourceObject::new(
            json!({"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
            "metadata": {"name": format!("vs{i}"), "namespace": ns},
            "spec": {"hosts": [format!("h{i}.example.com")],
                     "http": [{"route": [{"destination": {"host": target}}]}]}}),
        ));
        if i % 500 == 0 {
            objects.push(SourceObject::new(
                json!({"apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": {"name": format!("d{i}"), "namespace": ns}}),
            ));
        }
    }
    // the first VirtualService again, now repaired, after more than two chunks
    objects.push(SourceObject::new(json!({"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
        "metadata": {"name": "vs0", "namespace": "team0"},
        "spec": {"hosts": ["h0.example.com"], "http": [{"route": [{"destination": {"host": "svc0"}}]}]}})));
    objects.extend(
        parse_documents(
            "apiVersion: v1\nkind: Service\nspec: {ports: [{port: 80}]}\n",
            "f.yaml",
        )
        .unwrap(),
    );

    let mut batch = Engine::open_in_memory().unwrap();
    let stats = batch.ingest_batch(objects.clone()).unwrap();
    let mut one_by_one = Engine::open_in_memory().unwrap();
    for object in objects {
        one_by_one.upsert(object).unwrap();
    }

    assert_eq!(stats.total, 3002);
    assert_eq!(stats.undecodable, 1);
    assert_eq!(stats.skipped_unknown["apps/v1/Deployment"], 3);
    assert_eq!(
        batch.objects_by_kind().unwrap(),
        one_by_one.objects_by_kind().unwrap()
    );
    let findings = batch.check().unwrap().findings;
    assert_eq!(findings, one_by_one.check().unwrap().findings);
    // 150 broken VirtualServices, one of them repaired by its repeat; the unnamed Service
    assert_eq!(findings.len(), 150);
    assert_eq!(
        findings.iter().filter(|f| f.code == "MSH0001").count(),
        1,
        "{findings:#?}"
    );
}

#[test]
fn a_batch_whose_input_panics_midway_keeps_nothing_and_the_engine_stays_usable() {
    // The input is read on the calling thread while a second thread writes: the writes it made
    // before the panic (two chunks and more) must not be committed.
    let service = |i: usize| {
        SourceObject::new(json!({"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": format!("svc{i}"), "namespace": "shop"},
            "spec": {"ports": [{"port": 80}]}}))
    };
    let mut engine = Engine::open_in_memory().unwrap();
    let interrupted = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        engine.ingest_batch((0..3000).map(|i| {
            assert!(i < 1500, "the input fails");
            service(i)
        }))
    }));
    assert!(interrupted.is_err());
    assert!(engine.objects_by_kind().unwrap().is_empty());
    // the bulk load's setting is undone too: queries keep their temporary tables in memory (2)
    let temp_store: i64 = engine
        .connection()
        .pragma_query_value(None, "temp_store", |r| r.get(0))
        .unwrap();
    assert_eq!(temp_store, 2);

    let stats = engine.ingest_batch((0..1000).map(service)).unwrap();
    assert_eq!(stats.total, 1000);
    assert_eq!(engine.objects_by_kind().unwrap()["Service"], 1000);
}

#[test]
fn an_upsert_changing_only_metadata_is_seen() {
    // Only the object row changes (its projection tables stay the same): an annotation added,
    // changed and removed, and a new creationTimestamp, each as a fresh engine sees it.
    let versions = [
        json!({}),
        json!({"annotations": {"galley.istio.io/analyze-suppress": "IST0101"}}),
        json!({"annotations": {"galley.istio.io/analyze-suppress": "IST0112",
                               "mesh.istio.operator/owner": "shop/cart"}}),
        json!({"creationTimestamp": "2026-01-01T00:00:00Z"}),
    ];
    let mut engine = Engine::open_in_memory().unwrap();
    for metadata in versions {
        let mut object = vs("v1", "nowhere");
        for (field, value) in metadata.as_object().unwrap() {
            object["metadata"][field] = value.clone();
        }
        engine.upsert(object.clone()).unwrap();
        let mut fresh = Engine::open_in_memory().unwrap();
        fresh.upsert(object).unwrap();
        assert_eq!(
            engine.check().unwrap().findings,
            fresh.check().unwrap().findings
        );
    }
    // the suppressed version really had no finding, the others one
    let mut object = vs("v1", "nowhere");
    object["metadata"]["annotations"] = json!({"galley.istio.io/analyze-suppress": "IST0101"});
    engine.upsert(object).unwrap();
    assert!(engine.check().unwrap().findings.is_empty());
}
