//! `istio-integrity-operator run` as a user starts it: a separate process with a kubeconfig, JSON
//! logs and an admin port, reconciling a MeshService on the real control plane, and stopping
//! cleanly on SIGTERM.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use kube::Api;
use kube::api::PostParams;
use meshservice_api::MeshService;
use serde_json::{Value, json};
use test_controlplane::{ControlPlane, shared};

mod common;
use common::{free_port, http_get};

/// The shared control plane of this test binary.
async fn control_plane() -> &'static ControlPlane {
    match shared().await {
        Ok(control_plane) => control_plane,
        Err(error) => panic!("{error}"),
    }
}

/// Status code of `GET path`, if the server answers.
fn get_status(port: u16, path: &str) -> Option<u16> {
    http_get(port, path)?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        if self.0.try_wait().ok().flatten().is_none() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_reconciles_logs_json_and_stops_cleanly_on_sigterm() {
    let cp = control_plane().await;
    let ns = cp.namespace("run-cli").await.unwrap();
    let port = free_port();
    let log_dir = tempfile::tempdir().unwrap();
    let log_path = log_dir.path().join("operator.log");
    let child = Command::new(env!("CARGO_BIN_EXE_istio-integrity-operator"))
        .arg("run")
        .arg("--kubeconfig")
        .arg(cp.kubeconfig_path())
        .args(["--namespace", ns.name(), "--log-format", "json"])
        .args(["--admin-addr", &format!("127.0.0.1:{port}")])
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&log_path).unwrap())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut operator = Process(child);

    let deadline = Instant::now() + Duration::from_secs(30);
    while get_status(port, "/readyz") != Some(200) {
        assert!(Instant::now() < deadline, "not ready within 30 s");
        assert!(
            operator.0.try_wait().unwrap().is_none(),
            "the operator exited early"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(get_status(port, "/healthz"), Some(200));

    let api: Api<MeshService> = Api::namespaced(cp.client().unwrap(), ns.name());
    let ms: MeshService = serde_json::from_value(json!({
        "apiVersion": "mesh.istio.operator/v1alpha1", "kind": "MeshService",
        "metadata": {"name": "webapp-service"},
        "spec": {"serviceName": "webapp", "hosts": ["webapp.example.com"], "ports": [{"port": 80, "targetPort": 8080}]}
    }))
    .unwrap();
    api.create(&PostParams::default(), &ms).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let ms = api.get("webapp-service").await.unwrap();
        let ready = ms.status.as_ref().is_some_and(|s| {
            s.observed_generation == ms.metadata.generation
                && s.conditions
                    .iter()
                    .any(|c| c.type_ == "Ready" && c.status == "True")
        });
        if ready {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not Ready within 20 s: {:?}",
            ms.status
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // SIGTERM: a graceful stop with exit status 0, well within a Pod's grace period.
    let signalled = Instant::now();
    unsafe { libc::kill(operator.0.id() as i32, libc::SIGTERM) };
    let status = loop {
        if let Some(status) = operator.0.try_wait().unwrap() {
            break status;
        }
        assert!(
            signalled.elapsed() < Duration::from_secs(10),
            "still running 10 s after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.success(), "exit status {status}");
    eprintln!("stopped {:?} after SIGTERM", signalled.elapsed());

    // Every line is a JSON object with a level and a message; the last says it stopped.
    let log = std::fs::read_to_string(&log_path).unwrap();
    let lines: Vec<Value> = log
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    assert!(
        lines
            .iter()
            .all(|l| l["level"].is_string() && l["message"].is_string()),
        "{log}"
    );
    assert!(
        lines.iter().any(|l| l["message"] == "shutdown requested"),
        "{log}"
    );
    assert_eq!(
        lines.last().map(|l| l["message"].clone()),
        Some(json!("stopped")),
        "{log}"
    );
}
