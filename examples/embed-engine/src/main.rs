//! Embeds the integrity engine: loads a directory of YAML/JSON and prints the consistency report.
//!
//! ```text
//! cargo run -p embed-engine                      # the bundled examples/embed-engine/mesh/
//! cargo run -p embed-engine -- path/to/dir       # any directory (recursively: *.yaml, *.yml, *.json)
//! cargo run -p embed-engine -- path/to/dir --json
//! ```
//!
//! Exit status: 0 without error findings, 1 with, 2 when a file cannot be read or parsed
//! (printed as `file:line:column: message`).

use std::path::{Path, PathBuf};

use anyhow::Context;
use mesh_integrity::{Engine, Report, SourceObject, parse_documents};

/// Every `*.yaml`, `*.yml` and `*.json` file under `dir`, sorted.
fn files(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).with_context(|| format!("reading {}", d.display()))? {
            let path = entry?.path();
            if path.is_dir() {
                stack.push(path);
            } else if matches!(
                path.extension().and_then(|e| e.to_str()),
                Some("yaml" | "yml" | "json")
            ) {
                out.push(path);
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Parses every file of `dir`; the first parse error is returned as `file:line:column: message`.
pub fn load(dir: &Path) -> anyhow::Result<Vec<SourceObject>> {
    let mut objects = Vec::new();
    for path in files(dir)? {
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        let name = path
            .strip_prefix(dir)
            .unwrap_or(&path)
            .display()
            .to_string();
        objects.extend(parse_documents(&text, &name)?);
    }
    Ok(objects)
}

/// Loads `dir` into a fresh engine and checks it.
pub fn check_dir(dir: &Path) -> anyhow::Result<Report> {
    let mut engine = Engine::open_in_memory()?;
    engine.ingest_batch(load(dir)?)?;
    Ok(engine.check()?)
}

fn print_text(report: &Report) {
    for f in &report.findings {
        let at = match (&f.file, f.line) {
            (Some(file), Some(line)) => format!("{file}:{line}: "),
            _ => String::new(),
        };
        println!(
            "{at}{} [{}] {} {}/{}: {}",
            f.code, f.severity, f.resource.kind, f.resource.namespace, f.resource.name, f.message
        );
        for action in &f.repair {
            let who = if action.operator_may_apply {
                "operator"
            } else {
                "human"
            };
            println!("    repair ({who}): {}", action.description);
        }
    }
    println!(
        "{} finding(s) in {} object(s), schema v{}, checked in {:.1} ms",
        report.summary.total,
        report.summary.objects_total,
        report.schema_version,
        report.durations.check_ms
    );
    for note in &report.coverage.notes {
        println!("note: {note}");
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let json = args.iter().any(|a| a == "--json");
    let dir = args
        .iter()
        .find(|a| !a.starts_with("--"))
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("mesh"));
    let report = match check_dir(&dir) {
        Ok(report) => report,
        Err(error) => {
            eprintln!("{error:#}");
            std::process::exit(2);
        }
    };
    if json {
        println!("{}", report.to_json());
    } else {
        print_text(&report);
    }
    std::process::exit(i32::from(report.errors() > 0));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bundled_mesh_has_the_expected_findings() {
        let report = check_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("mesh")).unwrap();
        let mut found: Vec<(&str, &str)> = report
            .findings
            .iter()
            .map(|f| (f.rule.as_str(), f.resource.name.as_str()))
            .collect();
        found.sort();
        assert_eq!(
            found,
            [
                ("meshservice-host-not-served", "checkout"),
                ("vs-destination-host-not-found", "fraud"),
                ("vs-destination-port-selector-required", "storefront"),
                ("vs-destination-subset-not-found", "storefront"),
            ]
        );
        assert!(report.coverage.notes.iter().any(|n| n.contains("Pod")));
    }
}
