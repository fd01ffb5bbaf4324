//! `istio-integrity-operator check`: the integrity engine offline, over YAML and JSON files or
//! standard input, for GitOps pipelines and for people.
//!
//! Exit codes, the same in every format:
//! * 0: no finding at or above `--fail-on`;
//! * 1: findings at or above `--fail-on`;
//! * 2: unusable input (unreadable file, YAML/JSON syntax error, a document that is not a
//!   Kubernetes object) or usage error. Bad input wins over findings: when some files are bad,
//!   the findings on the others are still printed, but the exit code is 2, because a check that
//!   did not see everything cannot say the mesh is clean.

mod engine;
mod graph;
mod input;
mod report;
mod sarif;
mod text;

use std::io::{IsTerminal, Read, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::{Args, ValueEnum};
use serde_json::{Value, json};

use self::input::InputProblem;
use self::report::{RuleView, Severity};

/// Exit code: nothing at or above the threshold.
pub const EXIT_CLEAN: i32 = 0;
/// Exit code: findings at or above the threshold.
pub const EXIT_FINDINGS: i32 = 1;
/// Exit code: unusable input or usage (clap uses 2 for usage errors too).
pub const EXIT_BAD_INPUT: i32 = 2;

/// Options of `check`.
#[derive(Args, Debug, Clone)]
#[command(
    after_help = "Exit status: 0 nothing at or above --fail-on; 1 findings at or above it; \
2 unusable input or usage (bad input wins over findings). The same in every format.\n\n\
Examples:\n  istio-integrity-operator check examples/istio/\n  \
kustomize build overlays/prod | istio-integrity-operator check - --format sarif > mesh.sarif"
)]
pub struct CheckArgs {
    /// Files or directories (recursive: *.yaml, *.yml, *.json). `-` reads standard input, as does
    /// no PATH when input is piped.
    #[arg(value_name = "PATH")]
    pub paths: Vec<PathBuf>,

    /// Output format.
    #[arg(long, short = 'o', value_enum, default_value_t = Format::Text)]
    pub format: Format,

    /// Namespace of objects without metadata.namespace.
    #[arg(long, short = 'n', default_value = "default", value_name = "NAMESPACE")]
    pub namespace: String,

    /// Print every rule (code, name, severity, description) and exit.
    #[arg(long)]
    pub list_rules: bool,

    /// Add each finding's repair plan to the output.
    #[arg(long)]
    pub plan: bool,

    /// Print read, ingest and check times and object counts to standard error.
    #[arg(long)]
    pub stats: bool,

    /// Write the reference graph as Graphviz DOT to this file (`dot -Tsvg FILE.dot -o mesh.svg`).
    #[arg(long, value_name = "FILE.dot")]
    pub graph: Option<PathBuf>,

    /// Lowest severity that makes the exit code 1. Changes the exit code only, never the output.
    #[arg(long, value_enum, default_value_t = FailOn::Error)]
    pub fail_on: FailOn,

    /// Silence a rule everywhere (`CODE`) or on one object (`CODE=Kind/namespace/name`), like
    /// istioctl's -S. Repeatable. The galley.istio.io/analyze-suppress annotation is honoured too.
    #[arg(
        long = "suppress",
        short = 'S',
        value_name = "CODE[=Kind/namespace/name]"
    )]
    pub suppress: Vec<String>,

    /// Colour in text output: auto = only when stdout is a terminal and NO_COLOR is unset.
    #[arg(long, value_enum, default_value_t = Color::Auto)]
    pub color: Color,
}

/// `--format`.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// For people: grouped by severity, one line per finding, a summary line.
    Text,
    /// The engine's report: findings[], summary.
    Json,
    /// SARIF 2.1.0, for CI code scanning.
    Sarif,
}

/// `--fail-on`.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailOn {
    /// Errors fail the run.
    Error,
    /// Warnings and errors fail the run.
    Warning,
    /// Any finding fails the run.
    Info,
    /// Findings never fail the run (bad input still does).
    Never,
}

impl FailOn {
    /// Whether a finding of this severity fails the run.
    pub fn fails(self, severity: Severity) -> bool {
        match self {
            FailOn::Error => severity >= Severity::Error,
            FailOn::Warning => severity >= Severity::Warning,
            FailOn::Info => true,
            FailOn::Never => false,
        }
    }
}

/// `--color`.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Color {
    /// Colour when stdout is a terminal and NO_COLOR is unset.
    Auto,
    /// Always colour.
    Always,
    /// Never colour.
    Never,
}

/// Runs `check` on the process's standard streams and returns the exit code.
pub fn run(args: CheckArgs) -> i32 {
    let stdin = std::io::stdin();
    let stdin_is_terminal = stdin.is_terminal();
    let stdout_is_terminal = std::io::stdout().is_terminal();
    let mut stdin = stdin.lock();
    let mut stdout = std::io::stdout().lock();
    let mut stderr = std::io::stderr().lock();
    let streams = Streams {
        stdin: &mut stdin,
        stdin_is_terminal,
        stdout: &mut stdout,
        stdout_is_terminal,
        stderr: &mut stderr,
    };
    let code = execute(&args, streams);
    let _ = std::io::stdout().flush();
    code
}

/// The streams `check` talks to; separate from the process's so the logic can be driven in-process.
pub struct Streams<'a> {
    /// Where `-` and piped input come from.
    pub stdin: &'a mut dyn Read,
    /// Whether standard input is a terminal (then no PATH is a usage error, not a read).
    pub stdin_is_terminal: bool,
    /// The report.
    pub stdout: &'a mut dyn Write,
    /// Whether stdout is a terminal (colour in `auto`).
    pub stdout_is_terminal: bool,
    /// Problems, notes and `--stats`.
    pub stderr: &'a mut dyn Write,
}

/// Threads parsing the input files (see [`execute`]).
const PARSERS: usize = 2;

/// The whole command; returns the exit code. Never panics on input.
pub fn execute(args: &CheckArgs, streams: Streams<'_>) -> i32 {
    let Streams {
        stdin,
        stdin_is_terminal,
        stdout,
        stdout_is_terminal,
        stderr,
    } = streams;

    if args.list_rules {
        return list_rules(args.format, stdout, stderr);
    }
    if let Err(message) = engine::validate_suppressions(&args.suppress) {
        let _ = writeln!(stderr, "error: {message}");
        return EXIT_BAD_INPUT;
    }

    let started = Instant::now();
    let mut paths = args.paths.clone();
    if paths.is_empty() {
        if stdin_is_terminal {
            let _ = writeln!(
                stderr,
                "error: nothing to check: give files or directories, or pipe YAML into `check -`\n\n\
                 Usage: istio-integrity-operator check [OPTIONS] [PATH]..."
            );
            return EXIT_BAD_INPUT;
        }
        paths.push(PathBuf::from("-"));
    }
    let mut session = match engine::Session::open(&args.namespace, &args.suppress) {
        Ok(session) => session,
        Err(message) => {
            let _ = writeln!(stderr, "error: the integrity engine failed: {message}");
            return EXIT_BAD_INPUT;
        }
    };
    let mut texts: Vec<input::Source> = Vec::new();
    let (sources, read_problems) = input::gather(&paths, stdin, &mut |source| texts.push(source));

    // Parser threads turn the files into objects and send them back to this thread, which feeds
    // them to the engine in file order as they come, so parsing overlaps the engine's work and
    // memory holds the texts and a few files' objects, never the whole tree's. Two parsers, each
    // taking every other file: parsing is the largest share of the work, and the engine's own
    // writing thread shares the cores with them (this thread projects what they parse). All objects go into one batch: the
    // engine loads a batch into an empty database without its indexes and builds them once at
    // the end, much cheaper than a batch per file.
    let mut parse_problems: Vec<InputProblem> = Vec::new();
    let mut graph_objects: Vec<graph::GraphObject> = Vec::new();
    let files = texts.len();
    let (ingested, parse_time) = std::thread::scope(|scope| {
        let mut shares: [Vec<input::Source>; PARSERS] = Default::default();
        for (i, source) in texts.into_iter().enumerate() {
            shares[i % PARSERS].push(source);
        }
        let (parsers, receivers): (Vec<_>, Vec<_>) = shares
            .into_iter()
            .map(|share| {
                let (sender, receiver) = std::sync::mpsc::sync_channel(4);
                let parser = scope.spawn(move || {
                    let started = Instant::now();
                    for source in share {
                        let parsed = mesh_integrity::parse_documents(&source.text, &source.name);
                        // the engine failed and stopped listening
                        if sender.send(parsed).is_err() {
                            break;
                        }
                    }
                    started.elapsed()
                });
                (parser, receiver)
            })
            .unzip();
        // file i comes from parser i % PARSERS, which sends its files in order
        let receiver = (0..files).map_while(|i| receivers[i % PARSERS].recv().ok());
        let objects = receiver
            .flat_map(|parsed| match parsed {
                Ok(objects) => objects,
                Err(error) => {
                    parse_problems.push(InputProblem {
                        name: format!("{}:{}:{}", error.file, error.line, error.column),
                        message: error.message,
                    });
                    Vec::new()
                }
            })
            .inspect(|object| {
                if args.graph.is_some() {
                    graph_objects.extend(graph::GraphObject::from_value(
                        &object.value,
                        &args.namespace,
                    ));
                }
            });
        let ingested = session.ingest(objects);
        // A parser stops early only when the engine failed and dropped the receivers; a panic in
        // one is a bug to surface, not a shorter input.
        let parse_time = parsers
            .into_iter()
            .map(|parser| {
                parser
                    .join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            })
            .max()
            .unwrap_or_default();
        (ingested, parse_time)
    });
    let read_time = started.elapsed();
    let mut problems = read_problems;
    problems.extend(parse_problems);

    let outcome = match ingested.and_then(|()| session.check()) {
        Ok(outcome) => outcome,
        Err(message) => {
            // The engine failing on valid input is our bug, not the user's; say so plainly.
            let _ = writeln!(stderr, "error: the integrity engine failed: {message}");
            return EXIT_BAD_INPUT;
        }
    };

    for problem in &problems {
        let _ = writeln!(stderr, "error: {problem}");
    }
    if !problems.is_empty() {
        let _ = writeln!(
            stderr,
            "error: {} input {} could not be read; the findings below cover only the rest (exit status 2)",
            problems.len(),
            if problems.len() == 1 {
                "problem"
            } else {
                "problems"
            }
        );
    }
    if sources == 0 && problems.is_empty() {
        let _ = writeln!(stderr, "note: no input: nothing was checked");
    }

    let written = match args.format {
        Format::Text => {
            let color = match args.color {
                Color::Always => true,
                Color::Never => false,
                Color::Auto => {
                    stdout_is_terminal && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
                }
            };
            let totals = text::Totals {
                checked: outcome.checked,
                skipped: outcome.skipped,
                suppressed: outcome.suppressed,
            };
            stdout.write_all(
                text::render(&outcome.findings, &totals, args.plan, text::Style { color })
                    .as_bytes(),
            )
        }
        Format::Json => match json_report(&outcome, args.plan) {
            Ok(report) => write_json(stdout, &report),
            Err(error) => Err(std::io::Error::other(error)),
        },
        Format::Sarif => {
            let mut log = sarif::render(&outcome.findings, &engine::rules(), args.plan);
            add_sarif_invocation(&mut log, &problems, &outcome.coverage_notes);
            write_json(stdout, &log)
        }
    };
    if let Err(error) = written {
        // A closed pipe (`check | head`) is not worth a panic or a message; the exit code stays.
        if error.kind() != std::io::ErrorKind::BrokenPipe {
            let _ = writeln!(stderr, "error: writing the report: {error}");
            return EXIT_BAD_INPUT;
        }
    }

    // Notes and stats follow the report on the terminal, not before it.
    let _ = stdout.flush();
    if args.format == Format::Text {
        // A clean report proves nothing about rules that could not run; people should know.
        // (JSON carries `coverage`, SARIF carries notifications.)
        for note in &outcome.coverage_notes {
            let _ = writeln!(stderr, "note: {note}");
        }
    }

    if let Some(path) = &args.graph {
        let dot = graph::render(&graph_objects, &outcome.findings);
        if let Err(error) = std::fs::write(path, dot) {
            let _ = writeln!(
                stderr,
                "error: cannot write the graph to {}: {error}",
                path.display()
            );
            return EXIT_BAD_INPUT;
        }
    }

    if args.stats {
        print_stats(stderr, &outcome, read_time, parse_time, sources);
    }

    if !problems.is_empty() {
        EXIT_BAD_INPUT
    } else if outcome
        .findings
        .iter()
        .any(|finding| args.fail_on.fails(finding.severity))
    {
        EXIT_FINDINGS
    } else {
        EXIT_CLEAN
    }
}

/// The engine's report, with repair plans only when `--plan` asked for them (so that the default
/// JSON stays small and stable; the `repair` key is always there).
fn json_report(outcome: &engine::Outcome, with_plan: bool) -> Result<Value, serde_json::Error> {
    let mut report = serde_json::to_value(&outcome.report)?;
    for finding in items_mut(&mut report, "findings") {
        if !with_plan && let Some(repair) = finding.get_mut("repair") {
            *repair = json!([]);
        }
    }
    Ok(report)
}

/// The elements of the array `value[key]`; none when it is absent or not an array.
fn items_mut<'a>(value: &'a mut Value, key: &str) -> impl Iterator<Item = &'a mut Value> {
    value
        .get_mut(key)
        .and_then(Value::as_array_mut)
        .into_iter()
        .flatten()
}

/// SARIF's record of the run itself: whether it saw all its input, what it could not read, and
/// which rules could not run for lack of input.
fn add_sarif_invocation(log: &mut Value, problems: &[InputProblem], coverage_notes: &[String]) {
    let notifications: Vec<Value> = problems
        .iter()
        .map(|problem| json!({ "level": "error", "message": { "text": problem.to_string() } }))
        .chain(
            coverage_notes
                .iter()
                .map(|note| json!({ "level": "note", "message": { "text": note } })),
        )
        .collect();
    let invocation = json!({
        "executionSuccessful": problems.is_empty(),
        "toolExecutionNotifications": notifications,
    });
    if let Some(run) = log.get_mut("runs").and_then(|runs| runs.get_mut(0)) {
        run["invocations"] = json!([invocation]);
    }
}

fn write_json(out: &mut dyn Write, value: &impl serde::Serialize) -> std::io::Result<()> {
    serde_json::to_writer_pretty(&mut *out, value)?;
    out.write_all(b"\n")
}

fn list_rules(format: Format, stdout: &mut dyn Write, stderr: &mut dyn Write) -> i32 {
    let rules = engine::rules();
    let written = match format {
        Format::Text => stdout.write_all(rules_table(&rules).as_bytes()),
        Format::Json => write_json(stdout, &json!(engine::rules_json())),
        Format::Sarif => write_json(stdout, &sarif::render(&[], &rules, false)),
    };
    match written {
        Ok(()) => EXIT_CLEAN,
        Err(error) if error.kind() == std::io::ErrorKind::BrokenPipe => EXIT_CLEAN,
        Err(error) => {
            let _ = writeln!(stderr, "error: writing the rules: {error}");
            EXIT_BAD_INPUT
        }
    }
}

/// `CODE  SEVERITY  NAME  summary`, aligned.
fn rules_table(rules: &[RuleView]) -> String {
    let code_width = rules.iter().map(|r| r.code.len()).max().unwrap_or(4).max(4);
    let name_width = rules.iter().map(|r| r.name.len()).max().unwrap_or(4).max(4);
    let mut out = format!(
        "{:<code_width$}  {:<8} {:<name_width$}  DESCRIPTION\n",
        "CODE", "SEVERITY", "NAME"
    );
    for rule in rules {
        out.push_str(&format!(
            "{:<code_width$}  {:<8} {:<name_width$}  {}\n",
            rule.code,
            rule.severity.as_str(),
            rule.name,
            rule.summary
        ));
    }
    out
}

fn print_stats(
    stderr: &mut dyn Write,
    outcome: &engine::Outcome,
    read_time: Duration,
    parse_time: Duration,
    files: usize,
) {
    let by_kind: Vec<String> = outcome
        .by_kind
        .iter()
        .map(|(kind, count)| format!("{kind} {count}"))
        .collect();
    let skipped: Vec<String> = outcome
        .skipped_kinds
        .iter()
        .map(|(kind, count)| format!("{kind} {count}"))
        .collect();
    let _ = writeln!(
        stderr,
        "stats: read+parse+ingest {:.1} ms ({files} inputs), of which parse {:.1} ms on {PARSERS} threads of their own",
        ms(read_time),
        ms(parse_time)
    );
    let _ = writeln!(
        stderr,
        "stats: ingest {:.1} ms (overlapping the parse), check {:.1} ms",
        ms(outcome.ingest_time),
        ms(outcome.check_time)
    );
    let _ = writeln!(
        stderr,
        "stats: objects checked {} ({}); skipped {}{}",
        outcome.checked,
        if by_kind.is_empty() {
            "none".to_string()
        } else {
            by_kind.join(", ")
        },
        outcome.skipped,
        if skipped.is_empty() {
            String::new()
        } else {
            format!(" ({})", skipped.join(", "))
        }
    );
    let _ = writeln!(stderr, "stats: findings {}", outcome.findings.len());
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fail_on_thresholds_compare_by_severity() {
        assert!(FailOn::Error.fails(Severity::Error));
        assert!(!FailOn::Error.fails(Severity::Warning));
        assert!(FailOn::Warning.fails(Severity::Warning));
        assert!(!FailOn::Warning.fails(Severity::Info));
        assert!(FailOn::Info.fails(Severity::Info));
        assert!(!FailOn::Never.fails(Severity::Error));
    }

    #[test]
    fn the_rules_table_aligns_columns() {
        let rules = [
            RuleView {
                code: "IST0101".into(),
                name: "ReferencedResourceNotFound".into(),
                severity: Severity::Error,
                summary: "a".into(),
                ..RuleView::default()
            },
            RuleView {
                code: "MSH0001".into(),
                name: "Bad".into(),
                severity: Severity::Warning,
                summary: "b".into(),
                ..RuleView::default()
            },
        ];
        let table = rules_table(&rules);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines[1], "IST0101  Error    ReferencedResourceNotFound  a");
        assert_eq!(lines[2], "MSH0001  Warning  Bad                         b");
    }
}
