#![allow(dead_code)]
//! Helpers shared by the integration tests.

use mesh_integrity::{Engine, Finding, ObjectKey, Report, SourceObject, parse_documents};

/// An engine holding the objects of a YAML text.
pub fn engine(yaml: &str) -> Engine {
    let mut engine = Engine::open_in_memory().expect("engine");
    engine
        .ingest_batch(parse_documents(yaml, "test.yaml").expect("yaml"))
        .expect("ingest");
    engine
}

pub fn objects(yaml: &str) -> Vec<SourceObject> {
    parse_documents(yaml, "test.yaml").expect("yaml")
}

/// The report of a YAML text. Every rule test goes through here, so it also proves that each
/// object's targeted findings (`findings_for`, with its own cheaper SQL) are exactly its share of
/// the full check.
pub fn check(yaml: &str) -> Report {
    let engine = engine(yaml);
    let report = engine.check().expect("check");
    assert_findings_for_match(&engine, &report);
    report
}

/// `findings_for` of every object held equals the findings `report` has on it.
pub fn assert_findings_for_match(engine: &Engine, report: &Report) {
    let keys: Vec<ObjectKey> = engine
        .connection()
        .prepare("SELECT grp, kind, ns, name FROM object")
        .expect("object keys")
        .query_map([], |r| {
            Ok(ObjectKey {
                group: r.get(0)?,
                kind: r.get(1)?,
                namespace: r.get(2)?,
                name: r.get(3)?,
            })
        })
        .expect("object keys")
        .collect::<Result<_, _>>()
        .expect("object keys");
    for key in keys {
        let share: Vec<Finding> = report
            .findings
            .iter()
            .filter(|f| {
                let group = f
                    .resource
                    .api_version
                    .rsplit_once('/')
                    .map_or("", |(g, _)| g);
                group == key.group
                    && f.resource.kind == key.kind
                    && f.resource.namespace == key.namespace
                    && f.resource.name == key.name
            })
            .cloned()
            .collect();
        assert_eq!(
            engine.findings_for(&key).expect("findings_for"),
            share,
            "findings_for({key}) is not its share of check()"
        );
    }
}

/// `(rule, kind/ns/name)` of every finding, sorted.
pub fn hits(yaml: &str) -> Vec<(String, String)> {
    summarize(&check(yaml).findings)
}

pub fn summarize(findings: &[Finding]) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = findings
        .iter()
        .map(|f| {
            (
                f.rule.clone(),
                format!(
                    "{}/{}/{}",
                    f.resource.kind, f.resource.namespace, f.resource.name
                ),
            )
        })
        .collect();
    v.sort();
    v
}

/// Rules that fired, sorted, deduplicated.
pub fn rules_fired(yaml: &str) -> Vec<String> {
    let mut v: Vec<String> = check(yaml).findings.into_iter().map(|f| f.rule).collect();
    v.sort();
    v.dedup();
    v
}
