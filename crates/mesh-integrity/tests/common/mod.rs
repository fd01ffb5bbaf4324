#![allow(dead_code)]
//! Helpers shared by the integration tests.

use mesh_integrity::{Engine, Finding, Report, SourceObject, parse_documents};

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

pub fn check(yaml: &str) -> Report {
    engine(yaml).check().expect("check")
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
