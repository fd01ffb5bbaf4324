//! `--format text`: for people. Findings grouped by severity, one line each, then a summary.

use std::fmt::Write as _;

use super::report::{Finding, Resource, Severity, repair_step_text};

/// Counts the summary line reports beside the findings.
#[derive(Debug, Clone, Default)]
pub struct Totals {
    /// Objects the engine checked.
    pub checked: u64,
    /// Objects of kinds the engine does not know, skipped.
    pub skipped: u64,
    /// Findings silenced by `--suppress` or the analyze-suppress annotation, when known.
    pub suppressed: Option<u64>,
}

/// ANSI colour, on or off.
#[derive(Debug, Clone, Copy)]
pub struct Style {
    /// Whether to emit escape sequences.
    pub color: bool,
}

impl Style {
    fn paint(self, code: &str, text: &str) -> String {
        if self.color {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_string()
        }
    }

    fn severity(self, severity: Severity, text: &str) -> String {
        let code = match severity {
            Severity::Error => "1;31",
            Severity::Warning => "1;33",
            Severity::Info => "1;36",
        };
        self.paint(code, text)
    }

    fn dim(self, text: &str) -> String {
        self.paint("2", text)
    }

    fn bold(self, text: &str) -> String {
        self.paint("1", text)
    }
}

/// The whole text report.
pub fn render(findings: &[Finding], totals: &Totals, with_plan: bool, style: Style) -> String {
    let mut out = String::new();
    for severity in [Severity::Error, Severity::Warning, Severity::Info] {
        let mut group: Vec<&Finding> = findings.iter().filter(|f| f.severity == severity).collect();
        if group.is_empty() {
            continue;
        }
        // Stable, file-ordered output reads like a compiler's and diffs well between CI runs.
        group.sort_by(|a, b| {
            (a.file.as_deref(), a.line, &a.code, &a.resource).cmp(&(
                b.file.as_deref(),
                b.line,
                &b.code,
                &b.resource,
            ))
        });
        let _ = writeln!(
            out,
            "{}",
            style.bold(&format!("{} ({})", plural_heading(severity), group.len()))
        );
        for finding in group {
            let severity_word = style.severity(severity, &format!("{:<7}", severity.as_str()));
            let location = finding
                .location()
                .map(|at| format!("  {}", style.dim(&format!("({at})"))))
                .unwrap_or_default();
            let _ = writeln!(
                out,
                "  {severity_word} {:<7}  {}  {}{location}",
                one_line(&finding.code),
                one_line(&finding.resource.label()),
                one_line(&finding.message),
            );
            if with_plan {
                if finding.repair.is_empty() {
                    let _ = writeln!(out, "      {}", style.dim("repair: none proposed"));
                }
                for (index, step) in finding.repair.iter().enumerate() {
                    let _ = writeln!(
                        out,
                        "      repair {}. {}",
                        index + 1,
                        one_line(&repair_step_text(step))
                    );
                    // The exact JSON Patch, so a person can apply it by hand (`kubectl patch
                    // --type=json`) instead of retyping it from the description.
                    if let Some(patch) = step.get("patch").filter(|p| !p.is_null()) {
                        let target = step
                            .get("target")
                            .and_then(|t| serde_json::from_value::<Resource>(t.clone()).ok())
                            .map(|t| format!(" {}", one_line(&t.label())))
                            .unwrap_or_default();
                        let line = format!("patch{target}: {patch}");
                        let _ = writeln!(out, "         {}", style.dim(&line));
                    }
                }
            }
        }
        out.push('\n');
    }
    let _ = writeln!(out, "{}", summary_line(findings, totals));
    out
}

/// `3 findings (2 errors, 1 warning, 0 info) in 40 objects; 3 skipped (unknown kinds)`.
pub fn summary_line(findings: &[Finding], totals: &Totals) -> String {
    let count = |severity: Severity| findings.iter().filter(|f| f.severity == severity).count();
    let (errors, warnings, infos) = (
        count(Severity::Error),
        count(Severity::Warning),
        count(Severity::Info),
    );
    let mut line = if findings.is_empty() {
        format!(
            "No findings in {} {}",
            totals.checked,
            noun(totals.checked as usize, "object", "objects")
        )
    } else {
        format!(
            "{} {} ({} {}, {} {}, {} info) in {} {}",
            findings.len(),
            noun(findings.len(), "finding", "findings"),
            errors,
            noun(errors, "error", "errors"),
            warnings,
            noun(warnings, "warning", "warnings"),
            infos,
            totals.checked,
            noun(totals.checked as usize, "object", "objects"),
        )
    };
    if totals.skipped > 0 {
        let _ = write!(
            line,
            "; {} skipped (kinds the engine does not check)",
            totals.skipped
        );
    }
    if let Some(suppressed) = totals.suppressed.filter(|n| *n > 0) {
        let _ = write!(line, "; {suppressed} suppressed");
    }
    line
}

fn plural_heading(severity: Severity) -> &'static str {
    match severity {
        Severity::Error => "Errors",
        Severity::Warning => "Warnings",
        Severity::Info => "Info",
    }
}

fn noun(count: usize, one: &'static str, many: &'static str) -> &'static str {
    if count == 1 { one } else { many }
}

/// Messages are printed on one line whatever they contain, so that `grep` and CI logs work, and
/// control characters from the input are never sent to the terminal.
fn one_line(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c == '\n' || c == '\r' || c == '\t' {
                ' '
            } else {
                c
            }
        })
        .filter(|c| !c.is_control())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn finding(code: &str, severity: Severity, name: &str, line: u32) -> Finding {
        Finding {
            code: code.to_string(),
            severity,
            resource: Resource {
                api_version: "networking.istio.io/v1".to_string(),
                kind: "VirtualService".to_string(),
                namespace: "shop".to_string(),
                name: name.to_string(),
            },
            message: format!("{name} is broken"),
            file: Some("mesh.yaml".to_string()),
            line: Some(line),
            ..Finding::default()
        }
    }

    #[test]
    fn findings_are_grouped_errors_first_and_each_names_code_object_message_and_line() {
        let findings = [
            finding("IST0132", Severity::Warning, "b", 20),
            finding("IST0101", Severity::Error, "a", 10),
        ];
        let text = render(
            &findings,
            &Totals {
                checked: 7,
                ..Totals::default()
            },
            false,
            Style { color: false },
        );
        assert_eq!(
            text,
            "Errors (1)\n  Error   IST0101  VirtualService shop/a  a is broken  (mesh.yaml:10)\n\n\
             Warnings (1)\n  Warning IST0132  VirtualService shop/b  b is broken  (mesh.yaml:20)\n\n\
             2 findings (1 error, 1 warning, 0 info) in 7 objects\n"
        );
    }

    #[test]
    fn no_findings_is_one_summary_line_with_skipped_kinds() {
        let text = render(
            &[],
            &Totals {
                checked: 1,
                skipped: 3,
                suppressed: Some(0),
            },
            false,
            Style { color: false },
        );
        assert_eq!(
            text,
            "No findings in 1 object; 3 skipped (kinds the engine does not check)\n"
        );
    }

    #[test]
    fn colour_is_emitted_only_when_asked() {
        let findings = [finding("IST0101", Severity::Error, "a", 1)];
        let plain = render(&findings, &Totals::default(), false, Style { color: false });
        let coloured = render(&findings, &Totals::default(), false, Style { color: true });
        assert!(!plain.contains('\x1b'));
        assert!(coloured.contains("\x1b[1;31m"));
    }

    #[test]
    fn plans_are_listed_under_their_finding_only_with_plan() {
        let mut broken = finding("IST0101", Severity::Error, "a", 1);
        broken.repair = vec![serde_json::json!(
            "add subset v3 to DestinationRule shop/catalog"
        )];
        let without = render(
            std::slice::from_ref(&broken),
            &Totals::default(),
            false,
            Style { color: false },
        );
        let with = render(&[broken], &Totals::default(), true, Style { color: false });
        assert!(!without.contains("repair"));
        assert!(with.contains("      repair 1. add subset v3 to DestinationRule shop/catalog\n"));
    }

    #[test]
    fn a_json_patch_step_is_printed_exactly_under_its_description() {
        let mut broken = finding("IST0101", Severity::Error, "a", 1);
        broken.repair = vec![serde_json::json!({
            "action": "patch", "description": "declare subset v3",
            "target": {"apiVersion": "networking.istio.io/v1", "kind": "DestinationRule", "namespace": "shop", "name": "catalog"},
            "patch": [{"op": "add", "path": "/spec/subsets/-", "value": {"name": "v3"}}]
        })];
        let text = render(&[broken], &Totals::default(), true, Style { color: false });
        assert!(text.contains(
            "      repair 1. declare subset v3\n         patch DestinationRule shop/catalog: [{\"op\":\"add\",\"path\":\"/spec/subsets/-\",\"value\":{\"name\":\"v3\"}}]\n"
        ), "{text}");
    }

    #[test]
    fn control_characters_in_messages_never_reach_the_terminal() {
        assert_eq!(one_line("a\nb\x1b[31mc\x07"), "a b[31mc");
    }
}
