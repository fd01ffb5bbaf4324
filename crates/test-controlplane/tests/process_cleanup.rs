//! A test process that dies leaves no control plane process behind, however it dies; a test that
//! fails shows the control plane's logs.
//!
//! Each test re-runs this test binary as a child process, filtered to the same test, with
//! `IIO_CLEANUP_TEST_ROLE` set: the child starts a control plane, reports its process ids and
//! directory on stdout, and then waits to be killed, exits, or fails. The parent checks what is
//! left and what libtest printed.

mod common;

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use common::{eventually, process_is_gone};
use test_controlplane::{ControlPlane, shared, sweep_stale_dirs};

const ROLE_ENV: &str = "IIO_CLEANUP_TEST_ROLE";
const REPORT: &str = "CONTROLPLANE";
const FAILURE: &str = "this test fails on purpose, in a child process";

/// What the child role reported.
struct Started {
    pids: Vec<u32>,
    dir: PathBuf,
}

/// The child role: start a control plane the way tests do, report it, then `hold` until killed,
/// `exit` the process while the shared control plane is still running (its Drop never runs), or
/// `fail` as a test returning `Err`.
async fn child(role: &str) -> Result<()> {
    let report = |cp: &ControlPlane| {
        let pids = cp.pids();
        println!(
            "{REPORT} {} {} {} {}",
            pids.etcd.unwrap_or(0),
            pids.apiserver.unwrap_or(0),
            pids.controller_manager.unwrap_or(0),
            cp.dir().display()
        );
    };
    match role {
        "hold" => {
            let cp = ControlPlane::start().await?;
            report(&cp);
            tokio::time::sleep(Duration::from_secs(600)).await;
            bail!("the parent test never killed this process")
        }
        "exit" => {
            report(shared().await?);
            std::process::exit(0)
        }
        "fail" => {
            let cp = shared().await?;
            let _ns = cp.namespace("failing-test").await?;
            bail!("{FAILURE}")
        }
        other => bail!("unknown {ROLE_ENV} {other}"),
    }
}

/// The child test process; killed if the parent test fails before it is done with it.
struct ChildTest(std::process::Child);

impl Drop for ChildTest {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs `test` of this binary as a child in `role` and waits for its report.
fn spawn_child(test: &str, role: &str) -> Result<(ChildTest, Started)> {
    let mut child = ChildTest(
        Command::new(std::env::current_exe()?)
            .args([test, "--exact", "--nocapture", "--test-threads=1"])
            .env(ROLE_ENV, role)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?,
    );
    let stdout = child.0.stdout.take().context("piped stdout")?;
    for line in BufReader::new(stdout).lines() {
        let line = line?;
        // libtest prints `test <name> ... ` without a newline before the test's own output.
        let Some((_, report)) = line.split_once(REPORT) else {
            continue;
        };
        let fields: Vec<&str> = report.split_whitespace().collect();
        let [etcd, apiserver, controller_manager, dir] = fields[..] else {
            bail!("malformed report {line:?}")
        };
        let pids = [etcd, apiserver, controller_manager].map(str::parse::<u32>);
        let pids = pids.into_iter().collect::<Result<Vec<_>, _>>()?;
        return Ok((
            child,
            Started {
                pids,
                dir: PathBuf::from(dir),
            },
        ));
    }
    let mut stderr = String::new();
    if let Some(mut pipe) = child.0.stderr.take() {
        std::io::Read::read_to_string(&mut pipe, &mut stderr)?;
    }
    bail!("the child ended without a report: {stderr}")
}

async fn all_gone(pids: &[u32]) -> Result<()> {
    eventually(
        Duration::from_secs(15),
        "every control plane process is gone",
        || async { Ok(pids.iter().all(|pid| process_is_gone(*pid))) },
    )
    .await
}

#[tokio::test]
async fn a_killed_test_process_leaves_no_control_plane_process_behind() -> Result<()> {
    if let Ok(role) = std::env::var(ROLE_ENV) {
        return child(&role).await;
    }
    let (mut test_process, started) = spawn_child(
        "a_killed_test_process_leaves_no_control_plane_process_behind",
        "hold",
    )?;
    assert!(
        started.pids.iter().all(|pid| !process_is_gone(*pid)),
        "the child's control plane runs"
    );

    test_process.0.kill()?; // SIGKILL: no Drop, no atexit, only the kernel's parent-death signal
    test_process.0.wait()?;

    all_gone(&started.pids).await?;
    // Nothing in the killed process could remove its directory; the next start (or any test
    // binary's start, running concurrently) sweeps it.
    sweep_stale_dirs();
    assert!(!started.dir.exists(), "{} swept", started.dir.display());
    Ok(())
}

#[tokio::test]
async fn a_test_process_exiting_with_the_shared_control_plane_running_leaves_nothing_behind()
-> Result<()> {
    if let Ok(role) = std::env::var(ROLE_ENV) {
        return child(&role).await;
    }
    let (mut test_process, started) = spawn_child(
        "a_test_process_exiting_with_the_shared_control_plane_running_leaves_nothing_behind",
        "exit",
    )?;

    let status = test_process.0.wait()?;
    assert!(
        status.success(),
        "the child test process exited with {status}"
    );

    all_gone(&started.pids).await?;
    assert!(
        !started.dir.exists(),
        "{} removed at exit",
        started.dir.display()
    );
    Ok(())
}

#[tokio::test]
async fn a_failing_test_shows_the_tail_of_every_control_plane_log() -> Result<()> {
    let name = "a_failing_test_shows_the_tail_of_every_control_plane_log";
    if let Ok(role) = std::env::var(ROLE_ENV) {
        return child(&role).await;
    }

    // Without --nocapture: libtest prints a test's captured output only when it fails.
    let output = Command::new(std::env::current_exe()?)
        .args([name, "--exact", "--test-threads=1"])
        .env(ROLE_ENV, "fail")
        .output()?;
    let stdout = String::from_utf8_lossy(&output.stdout);

    assert!(!output.status.success(), "the child test failed:\n{stdout}");
    assert!(stdout.contains(FAILURE), "{stdout}");
    assert!(
        stdout.contains("control plane logs at the end of the test in namespace failing-test-"),
        "{stdout}"
    );
    for log in [
        "etcd.log",
        "kube-apiserver.log",
        "kube-controller-manager.log",
    ] {
        assert!(
            stdout.contains(log),
            "the tail of {log} is shown:\n{stdout}"
        );
    }
    let apiserver_tail = stdout
        .split_once("kube-apiserver.log -----\n")
        .map(|(_, rest)| rest)
        .context("the kube-apiserver section is shown")?;
    assert!(
        apiserver_tail.lines().next().is_some_and(is_klog_line),
        "apiserver log lines follow its header:\n{apiserver_tail}"
    );
    Ok(())
}

/// `I1203 09:34:23.420749   25407 file.go:139] message`: severity, then month and day.
fn is_klog_line(line: &str) -> bool {
    let mut chars = line.chars();
    chars
        .next()
        .is_some_and(|severity| "IWEF".contains(severity))
        && chars.take(4).filter(char::is_ascii_digit).count() == 4
}
