//! Robustness of `check`, the quick version run by `cargo test`: 500 random or mutated inputs
//! through the reader and the engine in-process, and 40 through the CLI. The long run (≥ 100k
//! cases) is `cargo bench -p istio-integrity-operator --bench check_fuzz`.

mod check_fuzz_cases;

use std::io::Write;
use std::process::{Command, Stdio};

use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, TestRunner};

const BIN: &str = env!("CARGO_BIN_EXE_istio-integrity-operator");

/// Runs the CLI on `bytes` as stdin and returns (exit code, stderr).
fn cli(bytes: &[u8], format: &str) -> (Option<i32>, String) {
    let mut child = Command::new(BIN)
        .args(["check", "-", "--format", format])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the binary starts");
    if let Some(mut stdin) = child.stdin.take() {
        // The binary may stop reading early on bad input; a broken pipe here is not a failure.
        let _ = stdin.write_all(bytes);
    }
    let output = child.wait_with_output().expect("the binary finishes");
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn the_reader_and_engine_never_panic_on_random_or_mutated_input() {
    let mut runner = TestRunner::new(Config {
        cases: 500,
        failure_persistence: None,
        ..Config::default()
    });
    runner
        .run(&check_fuzz_cases::input(), |bytes| {
            check_fuzz_cases::read_and_check(&bytes);
            Ok(())
        })
        .expect("no panic");
}

#[test]
fn the_cli_exits_0_1_or_2_and_never_panics_on_random_or_mutated_input() {
    let mut runner = TestRunner::new(Config {
        cases: 40,
        failure_persistence: None,
        ..Config::default()
    });
    runner
        .run(
            &(
                check_fuzz_cases::input(),
                prop_oneof!["text", "json", "sarif"],
            ),
            |(bytes, format)| {
                let (code, stderr) = cli(&bytes, &format);
                prop_assert!(
                    matches!(code, Some(0..=2)),
                    "exit {code:?}, stderr:\n{stderr}"
                );
                prop_assert!(!stderr.contains("panicked"), "{stderr}");
                Ok(())
            },
        )
        .expect("exit codes are 0, 1 or 2 and nothing panics");
}

#[test]
fn mutations_really_break_the_seeds_sometimes_and_keep_them_parseable_sometimes() {
    // Guards the generator itself: a fuzz run whose inputs all fail (or all pass) parsing would
    // explore nothing past the reader (or nothing of the reader's error paths).
    let mut runner = TestRunner::new(Config {
        cases: 300,
        failure_persistence: None,
        ..Config::default()
    });
    let strategy = proptest::collection::vec(check_fuzz_cases::input(), 300..=300);
    let inputs = strategy.new_tree(&mut runner).expect("inputs").current();
    let parsed = inputs
        .iter()
        .filter(|bytes| check_fuzz_cases::read_and_check(bytes))
        .count();
    assert!(parsed > 15 && parsed < 285, "{parsed} of 300 parsed");
}
