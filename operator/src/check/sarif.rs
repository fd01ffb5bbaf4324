//! `--format sarif`: SARIF 2.1.0 for CI code scanning (GitHub, GitLab, Azure DevOps).
//!
//! One `reportingDescriptor` per rule code, one `result` per finding located at the object's
//! file and line, the object's identity as a logical location, the other objects involved as
//! related locations.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::input::STDIN_NAME;
use super::report::{Finding, RuleView, Severity, repair_step_text};

const SCHEMA_URI: &str = "https://json.schemastore.org/sarif-2.1.0.json";
const TOOL_NAME: &str = "istio-integrity-operator";

/// The SARIF log for these findings. `rules` is the engine's registry, where several rules may
/// share one code (Istio's IST0101 covers gateways, hosts and subsets): SARIF gets one
/// descriptor per code, describing all of them. A code that a finding carries but the registry
/// lacks still gets a descriptor, so every `ruleIndex` is valid.
pub fn render(findings: &[Finding], rules: &[RuleView], with_plan: bool) -> Value {
    let mut order: Vec<&str> = Vec::new();
    let mut by_code: BTreeMap<&str, Vec<&RuleView>> = BTreeMap::new();
    for rule in rules {
        if !by_code.contains_key(rule.code.as_str()) {
            order.push(&rule.code);
        }
        by_code.entry(&rule.code).or_default().push(rule);
    }
    let mut descriptors: Vec<Value> = Vec::new();
    let mut index_of: BTreeMap<String, usize> = BTreeMap::new();
    for code in order {
        let group = by_code.get(code).map(Vec::as_slice).unwrap_or_default();
        index_of.insert(code.to_string(), descriptors.len());
        descriptors.push(descriptor(code, group));
    }
    for finding in findings {
        if !index_of.contains_key(&finding.code) {
            index_of.insert(finding.code.clone(), descriptors.len());
            let stand_in = RuleView {
                code: finding.code.clone(),
                name: finding.rule.clone(),
                severity: finding.severity,
                summary: finding.rule.clone(),
                explanation: String::new(),
            };
            descriptors.push(descriptor(&finding.code, &[&stand_in]));
        }
    }

    let results: Vec<Value> = findings
        .iter()
        .map(|finding| {
            result(
                finding,
                index_of.get(&finding.code).copied().unwrap_or(0),
                with_plan,
            )
        })
        .collect();

    json!({
        "$schema": SCHEMA_URI,
        "version": "2.1.0",
        "runs": [{
            "tool": {
                "driver": {
                    "name": TOOL_NAME,
                    "semanticVersion": env!("CARGO_PKG_VERSION"),
                    "informationUri": "https://istio.io/latest/docs/reference/config/analysis/",
                    "rules": descriptors,
                }
            },
            "columnKind": "unicodeCodePoints",
            "results": results,
        }]
    })
}

/// One descriptor for every rule sharing `code`.
fn descriptor(code: &str, group: &[&RuleView]) -> Value {
    let summaries: Vec<&str> = group
        .iter()
        .map(|r| r.summary.as_str())
        .filter(|s| !s.is_empty())
        .collect();
    let short = if summaries.is_empty() {
        code.to_string()
    } else {
        summaries.join(" / ")
    };
    let explanations: Vec<String> = group
        .iter()
        .filter(|r| !r.explanation.is_empty())
        .map(|r| {
            if group.len() > 1 {
                format!("{}: {}", r.name, r.explanation)
            } else {
                r.explanation.clone()
            }
        })
        .collect();
    let level = group
        .iter()
        .map(|r| r.severity)
        .max()
        .unwrap_or(Severity::Warning);
    let names: Vec<&str> = group.iter().map(|r| r.name.as_str()).collect();
    let mut rule = json!({
        "id": code,
        "shortDescription": { "text": short },
        "defaultConfiguration": { "level": level.sarif_level() },
        "properties": { "tags": ["istio", "integrity"], "engineRules": names },
    });
    let name = istio_message_name(code)
        .map(str::to_string)
        .or_else(|| match group {
            [single] => Some(pascal_case(&single.name)),
            _ => None,
        });
    if let Some(name) = name.filter(|n| is_sarif_rule_name(n)) {
        rule["name"] = json!(name);
    }
    if !explanations.is_empty() {
        let text = explanations.join("\n\n");
        rule["fullDescription"] = json!({ "text": text });
        rule["help"] = json!({ "text": text });
    }
    if code.starts_with("IST") {
        // Istio documents each analyzer message under its code.
        rule["helpUri"] = json!(format!(
            "https://istio.io/latest/docs/reference/config/analysis/{}/",
            code.to_ascii_lowercase()
        ));
    }
    rule
}

/// Istio's own message names (istio/istio `pkg/config/analysis/msg/messages.yaml`), so a code
/// scanning alert reads the same as `istioctl analyze`.
fn istio_message_name(code: &str) -> Option<&'static str> {
    Some(match code {
        "IST0002" => "Deprecated",
        "IST0101" => "ReferencedResourceNotFound",
        "IST0106" => "SchemaValidationError",
        "IST0109" => "ConflictingMeshGatewayVirtualServiceHosts",
        "IST0110" => "ConflictingSidecarWorkloadSelectors",
        "IST0111" => "MultipleSidecarsWithoutWorkloadSelectors",
        "IST0112" => "VirtualServiceDestinationPortSelectorRequired",
        "IST0116" => "DeploymentAssociatedToMultipleServices",
        "IST0118" => "PortNameIsNotUnderNamingConvention",
        "IST0128" => "NoServerCertificateVerificationDestinationLevel",
        "IST0129" => "NoServerCertificateVerificationPortLevel",
        "IST0130" => "VirtualServiceUnreachableRule",
        "IST0131" => "VirtualServiceIneffectiveMatch",
        "IST0132" => "VirtualServiceHostNotFoundInGateway",
        "IST0133" => "SchemaWarning",
        "IST0134" => "ServiceEntryAddressesRequired",
        "IST0137" => "DeploymentConflictingPorts",
        "IST0138" => "GatewayDuplicateCertificate",
        "IST0140" => "IngressRouteRulesNotAffected",
        "IST0145" => "ConflictingGateways",
        "IST0149" => "JwtClaimBasedRoutingWithoutRequestAuthN",
        "IST0150" => "ExternalNameServiceTypeInvalidPortName",
        "IST0161" => "InvalidGatewayCredential",
        "IST0162" => "GatewayPortNotDefinedOnService",
        "IST0165" => "ReferencedInternalGateway",
        "IST0167" => "IneffectivePolicy",
        "IST0173" => "DestinationRuleSubsetNotSelectPods",
        "IST0174" => "UnknownDestinationRuleHost",
        "IST0177" => "ConflictingServiceEntryProtocol",
        _ => return None,
    })
}

/// `host-claim-conflict` → `HostClaimConflict`.
fn pascal_case(kebab: &str) -> String {
    kebab
        .split(['-', '_', ' '])
        .filter(|part| !part.is_empty())
        .map(|part| {
            let mut chars = part.chars();
            match chars.next() {
                Some(first) => first.to_uppercase().chain(chars).collect::<String>(),
                None => String::new(),
            }
        })
        .collect()
}

/// SARIF recommends rule names in PascalCase without spaces; anything else stays out of `name`
/// (the id and descriptions still identify the rule).
fn is_sarif_rule_name(name: &str) -> bool {
    !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric())
}

fn result(finding: &Finding, rule_index: usize, with_plan: bool) -> Value {
    let identity = finding.resource.label();
    let message = if finding.message.is_empty() {
        identity.clone()
    } else {
        format!("{identity}: {}", finding.message)
    };
    let mut location = json!({
        "logicalLocations": [{
            "name": finding.resource.name,
            "fullyQualifiedName": fully_qualified(&finding.resource.kind, &finding.resource.namespace, &finding.resource.name),
            "kind": "object",
        }]
    });
    if let Some(physical) = physical_location(finding.file.as_deref(), finding.line) {
        location["physicalLocation"] = physical;
    }
    let related: Vec<Value> = finding
        .related
        .iter()
        .enumerate()
        .map(|(id, other)| {
            let mut related = json!({
                "id": id,
                "message": { "text": other.resource.label() },
                "logicalLocations": [{
                    "name": other.resource.name,
                    "fullyQualifiedName": fully_qualified(&other.resource.kind, &other.resource.namespace, &other.resource.name),
                    "kind": "object",
                }],
            });
            if let Some(physical) = physical_location(other.file.as_deref(), other.line) {
                related["physicalLocation"] = physical;
            }
            related
        })
        .collect();

    let mut result = json!({
        "ruleId": finding.code,
        "ruleIndex": rule_index,
        "level": finding.severity.sarif_level(),
        "message": { "text": message },
        "locations": [location],
        // Stable across edits that move the object within its file, so code scanning keeps one
        // alert per (rule, object) instead of closing and reopening it.
        "partialFingerprints": {
            "meshIntegrityObject/v1": format!("{}:{}", finding.code, fully_qualified(&finding.resource.kind, &finding.resource.namespace, &finding.resource.name)),
        },
        "properties": {
            "rule": finding.rule,
            "resource": {
                "apiVersion": finding.resource.api_version,
                "kind": finding.resource.kind,
                "namespace": finding.resource.namespace,
                "name": finding.resource.name,
            }
        }
    });
    if !related.is_empty() {
        result["relatedLocations"] = Value::Array(related);
    }
    if with_plan && !finding.repair.is_empty() {
        let steps: Vec<String> = finding.repair.iter().map(repair_step_text).collect();
        result["properties"]["repair"] = json!(steps);
    }
    result
}

fn fully_qualified(kind: &str, namespace: &str, name: &str) -> String {
    if namespace.is_empty() {
        format!("{kind}/{name}")
    } else {
        format!("{kind}/{namespace}/{name}")
    }
}

/// A file location; none for standard input, which has no URI code scanning could open.
fn physical_location(file: Option<&str>, line: Option<u32>) -> Option<Value> {
    let file = file?;
    if file == STDIN_NAME || file.is_empty() {
        return None;
    }
    let mut physical = json!({ "artifactLocation": { "uri": file_uri(file) } });
    if let Some(line) = line.filter(|line| *line >= 1) {
        physical["region"] = json!({ "startLine": line });
    }
    Some(physical)
}

/// A relative path stays a relative URI reference (code scanning resolves it against the
/// checkout); an absolute one becomes `file://`. Everything but unreserved characters and `/`
/// is percent-encoded, so spaces and non-ASCII names give a valid URI.
pub fn file_uri(path: &str) -> String {
    let relative = path.strip_prefix("./").unwrap_or(path);
    let mut encoded = String::with_capacity(relative.len());
    for byte in relative.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' | b'/' => {
                encoded.push(byte as char)
            }
            _ => encoded.push_str(&format!("%{byte:02X}")),
        }
    }
    if path.starts_with('/') {
        format!("file://{encoded}")
    } else {
        encoded
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::report::Resource;

    #[test]
    fn paths_become_uri_references() {
        assert_eq!(
            file_uri("examples/istio/20-shop.yaml"),
            "examples/istio/20-shop.yaml"
        );
        assert_eq!(file_uri("./a b/ü.yaml"), "a%20b/%C3%BC.yaml");
        assert_eq!(file_uri("/tmp/mesh.yaml"), "file:///tmp/mesh.yaml");
    }

    #[test]
    fn every_result_points_at_a_rule_descriptor_even_for_codes_missing_from_the_registry() {
        let finding = Finding {
            code: "MSH9999".to_string(),
            severity: Severity::Warning,
            rule: "Surprise".to_string(),
            resource: Resource {
                kind: "Gateway".to_string(),
                namespace: "a".to_string(),
                name: "g".to_string(),
                ..Resource::default()
            },
            file: Some("m.yaml".to_string()),
            line: Some(3),
            ..Finding::default()
        };
        let registry = [RuleView {
            code: "IST0101".to_string(),
            name: "ReferencedResourceNotFound".to_string(),
            ..RuleView::default()
        }];
        let log = render(&[finding], &registry, false);
        let run = &log["runs"][0];
        assert_eq!(run["tool"]["driver"]["rules"][1]["id"], "MSH9999");
        assert_eq!(run["results"][0]["ruleIndex"], 1);
        assert_eq!(
            run["results"][0]["locations"][0]["physicalLocation"]["region"]["startLine"],
            3
        );
    }

    #[test]
    fn a_finding_from_stdin_has_only_a_logical_location() {
        let finding = Finding {
            code: "IST0101".to_string(),
            file: Some(STDIN_NAME.to_string()),
            line: Some(1),
            ..Finding::default()
        };
        let log = render(&[finding], &[], false);
        let location = &log["runs"][0]["results"][0]["locations"][0];
        assert!(location.get("physicalLocation").is_none());
        assert!(location["logicalLocations"].is_array());
    }
}
