//! The long robustness run of `check` (proptest-driven; cargo-fuzz needs a nightly toolchain):
//!
//! `cargo bench -p istio-integrity-operator --bench check_fuzz` runs 100 000 random or mutated
//! inputs through the reader and the engine in-process and 2 000 through the CLI binary
//! (`-- 250000 5000` for other counts). Under `cargo test --all-targets` (no `--bench` flag) it
//! is a 200 + 10 case smoke run. Any failure prints the shrunk input; it then belongs in
//! `tests/check_fuzz.rs` (or `tests/check_cli.rs`) as a regression test.

#[path = "../tests/check_fuzz_cases/mod.rs"]
mod check_fuzz_cases;

use std::cell::Cell;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Instant;

use proptest::test_runner::{Config, TestCaseError, TestRunner};

const BIN: &str = env!("CARGO_BIN_EXE_istio-integrity-operator");

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let full = args.iter().any(|arg| arg == "--bench");
    let counts: Vec<u32> = args.iter().filter_map(|arg| arg.parse().ok()).collect();
    let in_process = counts
        .first()
        .copied()
        .unwrap_or(if full { 100_000 } else { 200 });
    let through_cli = counts
        .get(1)
        .copied()
        .unwrap_or(if full { 2_000 } else { 10 });

    let started = Instant::now();
    // proptest's runner takes an `Fn`, hence the cells.
    let parsed = Cell::new(0u64);
    let mut runner = TestRunner::new(Config {
        cases: in_process,
        failure_persistence: None,
        ..Config::default()
    });
    let result = runner.run(&check_fuzz_cases::input(), |bytes| {
        parsed.set(parsed.get() + u64::from(check_fuzz_cases::read_and_check(&bytes)));
        Ok(())
    });
    if let Err(failure) = result {
        panic!("reader/engine fuzz failure: {failure}");
    }
    println!(
        "check_fuzz: reader+engine: {in_process} cases, {} parsed, 0 failures, {:.1} s",
        parsed.get(),
        started.elapsed().as_secs_f64()
    );

    let started = Instant::now();
    let mut runner = TestRunner::new(Config {
        cases: through_cli,
        failure_persistence: None,
        ..Config::default()
    });
    let exits = [Cell::new(0u64), Cell::new(0u64), Cell::new(0u64)];
    let result = runner.run(&check_fuzz_cases::input(), |bytes| {
        let mut child = Command::new(BIN)
            .args(["check", "-", "--format", "sarif"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| TestCaseError::fail(format!("spawn: {e}")))?;
        if let Some(mut stdin) = child.stdin.take() {
            let _ = stdin.write_all(&bytes);
        }
        let output = child
            .wait_with_output()
            .map_err(|e| TestCaseError::fail(format!("wait: {e}")))?;
        let stderr = String::from_utf8_lossy(&output.stderr);
        match output.status.code() {
            Some(code @ 0..=2) if !stderr.contains("panicked") => {
                exits[code as usize].set(exits[code as usize].get() + 1);
                Ok(())
            }
            other => Err(TestCaseError::fail(format!(
                "exit {other:?}, stderr:\n{stderr}"
            ))),
        }
    });
    if let Err(failure) = result {
        panic!("CLI fuzz failure: {failure}");
    }
    println!(
        "check_fuzz: CLI: {through_cli} cases, exit 0/1/2 = {}/{}/{}, 0 failures, {:.1} s",
        exits[0].get(),
        exits[1].get(),
        exits[2].get(),
        started.elapsed().as_secs_f64()
    );
}
