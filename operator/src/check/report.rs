//! The formatters' view of the engine's report.
//!
//! The JSON output is the engine's own report, serialised as is. The text, SARIF and graph
//! formatters read it through these tolerant types instead (every field defaulted, unknown
//! fields ignored), so that a field the engine adds or renames degrades one formatter's detail
//! rather than breaking `check`.

use serde::Deserialize;
use serde_json::Value;

/// How bad a finding is; ordered so that `Error > Warning > Info`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    /// Informational (the default: an unknown severity never fails a run harder than it should).
    #[default]
    Info,
    /// Probably wrong.
    Warning,
    /// Certainly broken.
    Error,
}

impl Severity {
    /// Case-insensitive; `warn` is accepted because some tools spell it so. Unknown → `Info`, so
    /// that an unexpected severity never makes `check` fail harder than it should.
    pub fn parse(text: &str) -> Severity {
        match text.to_ascii_lowercase().as_str() {
            "error" => Severity::Error,
            "warning" | "warn" => Severity::Warning,
            _ => Severity::Info,
        }
    }

    /// `Error`, `Warning`, `Info`: Istio's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Error => "Error",
            Severity::Warning => "Warning",
            Severity::Info => "Info",
        }
    }

    /// SARIF's `level`.
    pub fn sarif_level(self) -> &'static str {
        match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
            Severity::Info => "note",
        }
    }
}

impl<'de> Deserialize<'de> for Severity {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Ok(Severity::parse(&text))
    }
}

/// The object a finding is about.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[serde(default, rename_all = "camelCase")]
pub struct Resource {
    /// `networking.istio.io/v1`, `v1`, ...
    pub api_version: String,
    /// `VirtualService`, ...
    pub kind: String,
    /// Namespace (empty for cluster-scoped kinds).
    pub namespace: String,
    /// Name.
    pub name: String,
}

impl Resource {
    /// `Kind namespace/name` (or `Kind name` when cluster-scoped): how findings name objects.
    pub fn label(&self) -> String {
        if self.namespace.is_empty() {
            format!("{} {}", self.kind, self.name)
        } else {
            format!("{} {}/{}", self.kind, self.namespace, self.name)
        }
    }

    /// Kind, namespace and name without the version: Istio's v1 and v1beta1 of one object are one.
    pub fn identity(&self) -> (String, String, String) {
        (self.kind.clone(), self.namespace.clone(), self.name.clone())
    }
}

/// Another object a finding involves (the other side of a conflict, the target of a reference).
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct Related {
    /// The other object.
    #[serde(flatten)]
    pub resource: Resource,
    /// Why it is related (`conflicts with`, `references`, ...), when the engine says.
    pub role: Option<String>,
    /// Where it was read from.
    pub file: Option<String>,
    /// 1-based line of its document.
    pub line: Option<u32>,
}

/// One finding.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct Finding {
    /// Stable code: `IST0101`, `MSH0003`, ...
    pub code: String,
    /// Error, Warning or Info.
    pub severity: Severity,
    /// The rule's name (`ReferencedResourceNotFound`, ...).
    pub rule: String,
    /// The object the finding is reported on.
    pub resource: Resource,
    /// What is wrong, naming the other side.
    pub message: String,
    /// File of the object, when it was read from one.
    pub file: Option<String>,
    /// 1-based line of the object's document.
    pub line: Option<u32>,
    /// The other objects involved.
    pub related: Vec<Related>,
    /// The repair plan: steps, as the engine writes them (strings or objects).
    pub repair: Vec<Value>,
}

impl Finding {
    /// `file:line`, `file`, or nothing, for messages.
    pub fn location(&self) -> Option<String> {
        match (&self.file, self.line) {
            (Some(file), Some(line)) => Some(format!("{file}:{line}")),
            (Some(file), None) => Some(file.clone()),
            _ => None,
        }
    }
}

/// The report: findings plus whatever else the engine adds (kept only for the JSON output).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct ReportView {
    /// Every finding, in the engine's order.
    pub findings: Vec<Finding>,
}

/// One rule of the engine's registry, as `--list-rules` and SARIF describe it.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct RuleView {
    /// Stable code.
    pub code: String,
    /// Name (`ReferencedResourceNotFound`, ...).
    pub name: String,
    /// Default severity.
    pub severity: Severity,
    /// One line.
    pub summary: String,
    /// Longer: why it matters and how to fix it.
    pub explanation: String,
}

/// One repair step as a line of text: a string as is, an object by its `description`/`summary`
/// or `action` field, else compact JSON.
pub fn repair_step_text(step: &Value) -> String {
    match step {
        Value::String(text) => text.clone(),
        Value::Object(map) => {
            for key in ["description", "summary", "message", "action"] {
                if let Some(Value::String(text)) = map.get(key) {
                    return text.clone();
                }
            }
            step.to_string()
        }
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn severities_order_error_above_warning_above_info() {
        assert!(Severity::Error > Severity::Warning);
        assert!(Severity::Warning > Severity::Info);
    }

    #[test]
    fn a_finding_reads_the_planned_report_shape_and_ignores_unknown_fields() {
        let value = serde_json::json!({
            "code": "IST0101", "severity": "Error", "rule": "ReferencedResourceNotFound",
            "resource": {"apiVersion": "networking.istio.io/v1", "kind": "VirtualService", "namespace": "shop", "name": "catalog"},
            "message": "subset v3 not found", "file": "mesh.yaml", "line": 12,
            "related": [{"kind": "DestinationRule", "namespace": "shop", "name": "catalog"}],
            "repair": ["add subset v3"], "somethingNew": {"x": 1}
        });
        let finding: Finding = serde_json::from_value(value).expect("planned shape");
        assert_eq!(finding.severity, Severity::Error);
        assert_eq!(finding.resource.label(), "VirtualService shop/catalog");
        assert_eq!(finding.location().as_deref(), Some("mesh.yaml:12"));
        assert_eq!(
            finding.related[0].resource.label(),
            "DestinationRule shop/catalog"
        );
        assert_eq!(repair_step_text(&finding.repair[0]), "add subset v3");
    }

    #[test]
    fn an_unknown_severity_counts_as_info() {
        assert_eq!(Severity::parse("Fatal?"), Severity::Info);
        assert_eq!(Severity::parse("WARNING"), Severity::Warning);
    }
}
