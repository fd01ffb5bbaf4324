//! The one place `check` talks to the integrity engine (crate `mesh-integrity`).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use mesh_integrity::{Engine, IngestOptions, IngestStats, Report, SourceObject, Suppression};
use serde_json::Value;

use super::report::{Finding, ReportView, RuleView};

/// What one engine run produced.
pub struct Outcome {
    /// The engine's report: the JSON output, serialised as the engine defines it.
    pub report: Report,
    /// Notes on what the input did not cover (rules that could not run).
    pub coverage_notes: Vec<String>,
    /// The same findings, for the text, SARIF and graph formatters.
    pub findings: Vec<Finding>,
    /// Objects the engine stored and checked.
    pub checked: u64,
    /// Objects of kinds the engine does not check.
    pub skipped: u64,
    /// Stored objects by kind.
    pub by_kind: BTreeMap<String, u64>,
    /// Skipped objects by `apiVersion/kind`.
    pub skipped_kinds: BTreeMap<String, u64>,
    /// Findings silenced by suppressions, when the engine counts them.
    pub suppressed: Option<u64>,
    /// Time spent projecting objects into SQLite.
    pub ingest_time: Duration,
    /// Time spent running the rules.
    pub check_time: Duration,
}

/// Checks `--suppress` values before any input is read, so a typo is a usage error (exit 2).
pub fn validate_suppressions(suppressions: &[String]) -> Result<(), String> {
    for suppression in suppressions {
        Suppression::parse(suppression).map_err(|error| error.to_string())?;
    }
    Ok(())
}

/// One check: an engine with its options and suppressions, fed file by file, then checked.
pub struct Session {
    engine: Engine,
    stats: IngestStats,
    ingest_time: Duration,
}

impl Session {
    /// An empty in-memory engine.
    pub fn open(default_namespace: &str, suppressions: &[String]) -> Result<Session, String> {
        let options = IngestOptions {
            default_namespace: default_namespace.to_string(),
        };
        let mut engine = Engine::open_in_memory().map_err(|error| error.to_string())?;
        engine.set_options(options);
        for suppression in suppressions {
            engine
                .add_suppression(suppression)
                .map_err(|error| error.to_string())?;
        }
        Ok(Session {
            engine,
            stats: IngestStats::default(),
            ingest_time: Duration::ZERO,
        })
    }

    /// Projects a batch of objects into the engine, in one transaction.
    pub fn ingest(
        &mut self,
        objects: impl IntoIterator<Item = SourceObject>,
    ) -> Result<(), String> {
        let started = Instant::now();
        let stats = self
            .engine
            .ingest_batch(objects)
            .map_err(|error| error.to_string())?;
        self.ingest_time += started.elapsed();
        for (kind, count) in stats.by_kind {
            *self.stats.by_kind.entry(kind).or_default() += count;
        }
        for (kind, count) in stats.skipped_unknown {
            *self.stats.skipped_unknown.entry(kind).or_default() += count;
        }
        self.stats.undecodable += stats.undecodable;
        self.stats.total += stats.total;
        Ok(())
    }

    /// Runs every rule over everything ingested.
    pub fn check(self) -> Result<Outcome, String> {
        let Session {
            engine,
            stats,
            ingest_time,
        } = self;
        let check_started = Instant::now();
        let report = engine.check().map_err(|error| error.to_string())?;
        let check_time = check_started.elapsed();

        let value = serde_json::to_value(&report).map_err(|error| error.to_string())?;
        let view: ReportView = serde_json::from_value(value)
            .map_err(|error| format!("reading the engine's report: {error}"))?;
        Ok(Outcome {
            coverage_notes: report.coverage.notes.clone(),
            suppressed: Some(report.summary.suppressed),
            report,
            findings: view.findings,
            checked: stats.total,
            skipped: stats.skipped_unknown.values().sum(),
            by_kind: stats.by_kind,
            skipped_kinds: stats.skipped_unknown,
            ingest_time,
            check_time,
        })
    }
}

/// The engine's rule registry.
pub fn rules() -> Vec<RuleView> {
    rules_json()
        .into_iter()
        .filter_map(|rule| serde_json::from_value(rule).ok())
        .collect()
}

/// The engine's rule registry as JSON objects (`--list-rules --format json`).
pub fn rules_json() -> Vec<Value> {
    mesh_integrity::rules()
        .iter()
        .filter_map(|rule| serde_json::to_value(rule).ok())
        .collect()
}
