//! Findings, repair actions and the consistency report: the JSON shape the CLI (`--format json`)
//! and the operator's `/report` print. Field names are camelCase and stable; fields are never
//! omitted (absent values are `null` or `[]`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// How bad a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Traffic is or will be broken.
    Error,
    /// Probably wrong, or ambiguous.
    Warning,
    /// Worth knowing.
    Info,
}

impl Severity {
    /// `error`, `warning` or `info`.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
            Severity::Info => "info",
        }
    }
}

impl std::fmt::Display for Severity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An object named in a finding: the resource it is reported on, or a related one.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResourceRef {
    /// `apiVersion` as the object was given (`networking.istio.io/v1beta1`, `v1`, ...).
    pub api_version: String,
    /// Kind.
    pub kind: String,
    /// Namespace (`""` for cluster-scoped objects).
    pub namespace: String,
    /// Name.
    pub name: String,
}

impl ResourceRef {
    /// `Kind namespace/name`.
    pub fn display(&self) -> String {
        if self.namespace.is_empty() {
            format!("{} {}", self.kind, self.name)
        } else {
            format!("{} {}/{}", self.kind, self.namespace, self.name)
        }
    }
    /// The engine's key for this object.
    pub fn key(&self) -> crate::ObjectKey {
        crate::ObjectKey::new(
            crate::model::group_of(&self.api_version),
            &self.kind,
            &self.namespace,
            &self.name,
        )
    }
}

/// Another object a finding involves, with where it was read from: `check` points at both sides
/// of a conflict without a second look-up.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RelatedRef {
    /// The object.
    #[serde(flatten)]
    pub resource: ResourceRef,
    /// File it was read from, when known (`null` for objects from a cluster).
    pub file: Option<String>,
    /// 1-based line of its document, when known.
    pub line: Option<u32>,
}

/// One reference followed on the way to a finding: `from` (an object) refers through `path` (a
/// field) to `to` (what it names, and what became of it).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChainLink {
    /// The referring object, `Kind namespace/name`.
    pub from: String,
    /// The field holding the reference (`spec.gateways[0]`).
    pub path: String,
    /// The referenced thing and its resolution (`Gateway istio-system/main: not found`).
    pub to: String,
}

/// What a repair action does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ActionKind {
    /// Create `object`.
    Create,
    /// Apply `patch` (RFC 6902 JSON Patch) to `target`.
    Patch,
    /// Delete `target`.
    Delete,
    /// No safe automatic repair: `description` says why and what a human should decide.
    None,
}

/// One step of a repair plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RepairAction {
    /// create, patch, delete or none.
    pub action: ActionKind,
    /// The object acted on (for `create`, the object created). `null` for `none`.
    pub target: Option<ResourceRef>,
    /// For `patch`: RFC 6902 JSON Patch operations, exact.
    pub patch: Option<Value>,
    /// For `create`: the whole object.
    pub object: Option<Value>,
    /// `true` only when the target is an object the operator owns (managed-by label or owner
    /// annotation): the operator may apply it. `false`: advice for a human.
    pub operator_may_apply: bool,
    /// What the action does and why, for humans.
    pub description: String,
}

impl RepairAction {
    /// "No safe automatic repair", with the reason.
    pub fn none(reason: impl Into<String>) -> Self {
        RepairAction {
            action: ActionKind::None,
            target: None,
            patch: None,
            object: None,
            operator_may_apply: false,
            description: reason.into(),
        }
    }
}

/// One problem found, on one object.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Finding {
    /// Stable code (`IST0101`, `MSH0201`, ...). Several rules may share a code.
    pub code: String,
    /// Rule name (kebab-case), unique: the registry key.
    pub rule: String,
    /// Severity.
    pub severity: Severity,
    /// The object the finding is reported on.
    pub resource: ResourceRef,
    /// What is wrong, naming the other side.
    pub message: String,
    /// File the resource was read from, when known.
    pub file: Option<String>,
    /// 1-based line of the resource's document, when known.
    pub line: Option<u32>,
    /// Other objects involved (the winner of a conflict, the other gateways, ...).
    pub related: Vec<RelatedRef>,
    /// The references followed to reach the finding.
    pub chain: Vec<ChainLink>,
    /// The ordered repair plan.
    pub repair: Vec<RepairAction>,
    /// For host findings (MeshService claims, hosts not served): the host involved.
    pub host: Option<String>,
    /// For claim findings: the port involved.
    pub port: Option<u32>,
    /// For claim findings: the gateway involved (`namespace/name`, or `mesh`).
    pub gateway: Option<String>,
    /// For claim conflicts (`MSH0201`): the object that won the claim.
    pub winner: Option<ResourceRef>,
}

/// A rule of the registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RuleInfo {
    /// Stable code, possibly shared with other rules (Istio's IST0101).
    pub code: &'static str,
    /// Unique kebab-case name.
    pub name: &'static str,
    /// Default severity.
    pub severity: Severity,
    /// One line: what it finds.
    pub summary: &'static str,
    /// Why it matters, and an example.
    pub explanation: &'static str,
    /// Kinds that must be in the input for the rule to run (`Pod`, `Secret`, `Namespace`); empty: always runs.
    pub requires: &'static [&'static str],
    /// Who reports it: the engine's SQL rules, or the operator alone (in a MeshService's status).
    pub reported_by: ReportedBy,
}

/// Who reports the findings of a rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReportedBy {
    /// The engine: [`crate::Engine::check`], [`crate::Engine::findings_for`], the offline `check`.
    Engine,
    /// Only the operator, while it reconciles (in the MeshService's status): the condition needs
    /// what the operator sees when it applies objects, not what the engine holds. Listed so that
    /// `--list-rules` and the generated docs know every code; never in an engine report.
    Operator,
}

/// The number of findings of one code at one severity, from [`crate::Engine::finding_counts`].
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FindingCount {
    /// The rule code (`IST0101`, `MSH0201`, …).
    pub code: String,
    /// The severity of the findings counted.
    pub severity: Severity,
    /// How many findings [`crate::Engine::check`] reports with this code and severity (suppressed
    /// findings are not counted); never 0.
    pub count: u64,
}

/// Counts in a report.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    /// Findings reported.
    pub total: u64,
    /// Findings by code.
    pub by_code: BTreeMap<String, u64>,
    /// Findings by rule name.
    pub by_rule: BTreeMap<String, u64>,
    /// Findings by severity (`error`, `warning`, `info`; all three always present).
    pub by_severity: BTreeMap<String, u64>,
    /// Findings by namespace of the resource (`""` for cluster-scoped).
    pub by_namespace: BTreeMap<String, u64>,
    /// Objects checked, by kind.
    pub objects_by_kind: BTreeMap<String, u64>,
    /// Objects checked.
    pub objects_total: u64,
    /// Findings silenced by suppressions (annotation or external).
    pub suppressed: u64,
}

/// Timings in milliseconds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Durations {
    /// The last batch ingest, if any.
    pub ingest_ms: Option<f64>,
    /// This check.
    pub check_ms: f64,
    /// Time spent in each analysis of this check, keyed by its (first) rule name.
    pub by_rule_ms: BTreeMap<String, f64>,
}

/// A rule that did not run, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SkippedRule {
    /// Rule name.
    pub rule: String,
    /// Its code.
    pub code: String,
    /// Why (e.g. `no Pod in the input`).
    pub reason: String,
}

/// Which inputs were present, so a reader knows what a clean report does and does not prove.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Coverage {
    /// Pods were part of the input (gateway/sidecar selector and port rules ran).
    pub pods: bool,
    /// Secrets were part of the input (credentialName rule ran).
    pub secrets: bool,
    /// Namespaces were part of the input (exportTo namespace rule ran).
    pub namespaces: bool,
    /// Rules that did not run.
    pub skipped_rules: Vec<SkippedRule>,
    /// Human-readable notes (one per skipped group of rules).
    pub notes: Vec<String>,
}

/// The consistency report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    /// Version of the report's JSON shape (bumped on incompatible changes).
    pub report_version: u32,
    /// Schema version of the engine's database (latest applied migration).
    pub schema_version: i64,
    /// Findings, sorted by namespace, kind, name, code, rule, message.
    pub findings: Vec<Finding>,
    /// Counts.
    pub summary: Summary,
    /// Timings.
    pub durations: Durations,
    /// What the input covered.
    pub coverage: Coverage,
}

/// Current version of the report JSON shape.
pub const REPORT_VERSION: u32 = 1;

impl Report {
    /// The report as pretty-printed JSON (the shape documented on [`Report`]).
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a report always serialises")
    }

    /// Findings of severity `error`.
    pub fn errors(&self) -> usize {
        self.findings
            .iter()
            .filter(|f| f.severity == Severity::Error)
            .count()
    }
}
