//! The operator process SIGKILLed while it reconciles a batch of MeshServices, then started
//! again: whatever it had written and whatever it had not, the restarted process converges. Each
//! child exists exactly once, every status describes the current generation, and no finalizer is
//! left stuck (deleting everything afterwards completes).

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Service;
use kube::api::{ApiResource, DeleteParams, DynamicObject, ListParams, PostParams};
use kube::{Api, ResourceExt};
use meshservice_api::{MeshService, ownership};
use serde_json::json;
use test_controlplane::shared;

mod common;
use common::{free_port, http_get};

/// MeshServices in the batch: enough that the kill lands while most are still to do.
const BATCH: usize = 24;

/// The operator binary, killed when dropped.
struct Operator(Child);

impl Operator {
    /// Starts `run` scoped to `namespace` and waits for its /readyz.
    async fn start(kubeconfig: &Path, namespace: &str, log: &Path) -> Operator {
        let port = free_port();
        let log = std::fs::File::options()
            .create(true)
            .append(true)
            .open(log)
            .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_istio-integrity-operator"))
            .arg("run")
            .arg("--kubeconfig")
            .arg(kubeconfig)
            .args(["--namespace", namespace, "--log-format", "json"])
            .args(["--admin-addr", &format!("127.0.0.1:{port}")])
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        let mut operator = Operator(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        let answered_200 = || {
            http_get(port, "/readyz").is_some_and(|r| r.split_whitespace().nth(1) == Some("200"))
        };
        while !answered_200() {
            assert!(Instant::now() < deadline, "not ready within 30 s");
            assert!(
                operator.0.try_wait().unwrap().is_none(),
                "the operator exited early"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        operator
    }

    /// SIGKILL: no signal handler runs, nothing is flushed or released.
    fn kill(mut self) {
        self.0.kill().unwrap();
        self.0.wait().unwrap();
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        if self.0.try_wait().ok().flatten().is_none() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

fn ready_at_generation(ms: &MeshService) -> bool {
    ms.status.as_ref().is_some_and(|status| {
        status.observed_generation == ms.metadata.generation
            && status.conditions.len() == 3
            && status.conditions.iter().all(|c| {
                c.observed_generation == ms.metadata.generation
                    && (c.type_ != "Ready" || c.status == "True")
            })
    })
}

async fn count_ready(api: &Api<MeshService>) -> usize {
    api.list(&ListParams::default())
        .await
        .unwrap()
        .items
        .iter()
        .filter(|ms| ready_at_generation(ms))
        .count()
}

fn istio(namespace: &str, client: &kube::Client, kind: &str, plural: &str) -> Api<DynamicObject> {
    let resource = ApiResource {
        group: "networking.istio.io".into(),
        version: "v1".into(),
        api_version: "networking.istio.io/v1".into(),
        kind: kind.into(),
        plural: plural.into(),
    };
    Api::namespaced_with(client.clone(), namespace, &resource)
}

/// The names of the objects the operator owns, with repeats (there must be none).
fn names<K: ResourceExt>(items: &[K]) -> Vec<String> {
    items.iter().map(|o| o.name_any()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_process_killed_mid_batch_converges_when_started_again() {
    let cp = shared().await.unwrap();
    let ns = cp.namespace("run-kill").await.unwrap();
    let ns = ns.name().to_string();
    let log_dir = tempfile::tempdir().unwrap();
    let log = log_dir.path().join("operator.log");
    let client = cp.client().unwrap();
    let api: Api<MeshService> = Api::namespaced(client.clone(), &ns);
    let services: Api<Service> = Api::namespaced(client.clone(), &ns);

    // The whole batch exists before the operator starts: created while it runs, the operator could
    // keep pace with the creates and be through the batch before the kill.
    for i in 0..BATCH {
        let ms: MeshService = serde_json::from_value(json!({
            "apiVersion": meshservice_api::API_VERSION, "kind": meshservice_api::KIND,
            "metadata": {"name": format!("svc-{i}")},
            "spec": {"serviceName": format!("svc-{i}"), "hosts": [format!("svc-{i}.example.com")],
                     "gateway": {"name": "shared", "managed": true},
                     "ports": [{"port": 80}]}
        }))
        .unwrap();
        api.create(&PostParams::default(), &ms).await.unwrap();
    }
    let operator = Operator::start(cp.kubeconfig_path(), &ns, &log).await;
    let started = Instant::now();
    // Kill it once it has started writing children, long before it is through the batch.
    loop {
        let written = services.list(&ListParams::default()).await.unwrap().items;
        if written.len() >= 2 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "no child within 20 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    operator.kill();
    let ready_at_kill = count_ready(&api).await;
    let services_at_kill = services
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .len();
    eprintln!(
        "killed after {:?}: {services_at_kill} Services, {ready_at_kill}/{BATCH} Ready",
        started.elapsed()
    );
    assert!(
        ready_at_kill < BATCH,
        "the kill must land mid-batch to prove anything"
    );

    let restarted = Operator::start(cp.kubeconfig_path(), &ns, &log).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while count_ready(&api).await < BATCH {
        assert!(
            Instant::now() < deadline,
            "{}/{BATCH} Ready 30 s after the restart; log:\n{}",
            count_ready(&api).await,
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    eprintln!(
        "converged {:?} after the batch was created",
        started.elapsed()
    );

    // Each child exactly once, all of them ours.
    let owned = ListParams::default().labels(&format!(
        "{}={}",
        ownership::MANAGED_BY_LABEL,
        ownership::MANAGED_BY_VALUE
    ));
    let expected: BTreeSet<String> = (0..BATCH).map(|i| format!("svc-{i}")).collect();
    let service_names = names(&services.list(&owned).await.unwrap().items);
    let virtual_service_names = names(
        &istio(&ns, &client, "VirtualService", "virtualservices")
            .list(&owned)
            .await
            .unwrap()
            .items,
    );
    for (kind, found) in [
        ("Service", &service_names),
        ("VirtualService", &virtual_service_names),
    ] {
        assert_eq!(found.len(), BATCH, "{kind}s: {found:?}");
        assert_eq!(
            found.iter().cloned().collect::<BTreeSet<_>>(),
            expected,
            "{kind}s"
        );
    }
    let gateways = istio(&ns, &client, "Gateway", "gateways")
        .list(&owned)
        .await
        .unwrap()
        .items;
    assert_eq!(names(&gateways), ["shared"]);
    let contributors = gateways[0]
        .annotations()
        .get(ownership::CONTRIBUTORS_ANNOTATION)
        .cloned()
        .unwrap_or_default();
    assert_eq!(contributors.split(',').count(), BATCH, "{contributors}");

    // One finalizer each, and none of them stuck: deleting everything completes.
    for ms in api.list(&ListParams::default()).await.unwrap().items {
        assert_eq!(ms.finalizers(), [ownership::FINALIZER], "{}", ms.name_any());
    }
    api.delete_collection(&DeleteParams::default(), &ListParams::default())
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let left = api.list(&ListParams::default()).await.unwrap().items;
        if left.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "still there 20 s after deletion: {:?}",
            names(&left)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let gateway_left = istio(&ns, &client, "Gateway", "gateways")
        .get_opt("shared")
        .await
        .unwrap();
    assert!(
        gateway_left.is_none(),
        "the last contributor took the Gateway"
    );
    drop(restarted);
}
