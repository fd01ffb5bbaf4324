//! The operator on a real control plane (etcd, kube-apiserver, kube-controller-manager with the
//! Istio and MeshService CRDs), each test asserting what a user would observe.
//!
//! The operator runs in-process: `mesh_reconcile::run_until` on a tokio task, scoped with
//! `--namespace` to the test's own namespaces (tests share one control plane per test binary and
//! run in parallel), with its admin server on a free loopback port. "Killed mid-reconcile" aborts
//! that task, which drops every task it spawned, and starts a new one: what survives is exactly
//! what a restarted process would find, the state in the apiserver.

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::core::{ApiResource, DynamicObject};
use kube::{Client, ResourceExt};
use mesh_reconcile::index::WatchedKind;
use mesh_reconcile::{BackoffPolicy, Config, LeaderElection};
use meshservice_api::{MeshService, ownership};
use serde_json::{Value, json};
use test_controlplane::{ControlPlane, shared};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const TIMEOUT: Duration = Duration::from_secs(20);

/// The shared control plane of this test binary.
async fn control_plane() -> Result<&'static ControlPlane> {
    Ok(shared().await?)
}

/// A control plane of the test's own, for tests that break it.
async fn own_control_plane() -> Result<ControlPlane> {
    Ok(ControlPlane::start().await?)
}

/// How soon the operator must react to a watch event in these tests: far below the 5-minute
/// resync, so that a reaction by resync fails, and loose enough for a busy 2-core machine.
const REACTION: Duration = Duration::from_secs(15);

/// Namespace and ServiceAccount the shipped manifests (deploy/) run the operator as.
const OPERATOR_NAMESPACE: &str = "istio-integrity-system";
const OPERATOR_ACCOUNT: &str = "istio-integrity-operator";

/// A client for the operator under test: the shipped ServiceAccount with the shipped RBAC
/// (deploy/namespace.yaml and deploy/rbac/, applied as an install does), authenticated by a
/// TokenRequest token, not admin, so every test here also proves the RBAC is sufficient.
async fn operator_client(cp: &ControlPlane) -> Result<Client> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    cp.kubectl_apply(&[
        &root.join("deploy/namespace.yaml"),
        &root.join("deploy/rbac"),
    ])?;
    let client = cp
        .service_account_client(OPERATOR_NAMESPACE, OPERATOR_ACCOUNT)
        .await?;
    // A new binding reaches the apiserver's authorizer a moment after it is created, and the
    // operator treats a 403 on its first list as fatal: wait until the grants are in effect.
    let meshservices: Api<MeshService> = Api::all(client.clone());
    let leases: Api<Lease> = Api::namespaced(client.clone(), OPERATOR_NAMESPACE);
    eventually("the operator's RBAC in effect", || async {
        let listed = meshservices
            .list_metadata(&ListParams::default().limit(1))
            .await;
        let lease = leases.get_opt("rbac-probe").await;
        Ok((!forbidden(&listed) && !forbidden(&lease)).then_some(()))
    })
    .await?;
    Ok(client)
}

/// Whether a request was refused by authorization.
fn forbidden<T>(result: &Result<T, kube::Error>) -> bool {
    matches!(result, Err(kube::Error::Api(status)) if status.code == 403)
}

/// One in-process operator.
struct Operator {
    admin: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<mesh_reconcile::Result<()>>,
}

impl Operator {
    async fn start(client: Client, namespaces: &[&str]) -> Result<Operator> {
        Self::start_with(client, namespaces, true).await
    }

    async fn start_with(client: Client, namespaces: &[&str], repair: bool) -> Result<Operator> {
        let config = Config {
            namespaces: namespaces.iter().map(|n| n.to_string()).collect(),
            repair,
            backoff: BackoffPolicy {
                base: Duration::from_millis(200),
                max: Duration::from_secs(5),
            },
            identity: format!("e2e-{}", namespaces.first().copied().unwrap_or("all")),
            ..Config::default()
        };
        Self::start_config(client, config).await
    }

    async fn start_config(client: Client, config: Config) -> Result<Operator> {
        // Operator logs with the test's output, filtered by RUST_LOG (default: warnings).
        let _ = tracing_subscriber::fmt()
            .with_env_filter(
                tracing_subscriber::EnvFilter::try_from_default_env()
                    .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
            )
            .with_test_writer()
            .try_init();
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let admin = listener.local_addr()?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(mesh_reconcile::run_until(
            client,
            config,
            listener,
            async move {
                let _ = stopped.await;
            },
        ));
        let operator = Operator {
            admin,
            stop: Some(stop),
            task,
        };
        let ready = eventually("the operator is ready", || async {
            if operator.task.is_finished() {
                return Ok(Some(false));
            }
            Ok(operator
                .get("/readyz")
                .await
                .ok()
                .filter(|(status, _)| *status == 200)
                .map(|_| true))
        })
        .await?;
        if !ready {
            let outcome = operator.task.await?;
            bail!("the operator stopped before it was ready: {outcome:?}");
        }
        Ok(operator)
    }

    /// `GET path` on the admin server: (status code, body).
    async fn get(&self, path: &str) -> Result<(u16, String)> {
        let mut stream = TcpStream::connect(self.admin).await?;
        stream
            .write_all(
                format!("GET {path} HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n")
                    .as_bytes(),
            )
            .await?;
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).await?;
        let text = String::from_utf8(raw)?;
        let (head, body) = text.split_once("\r\n\r\n").context("no HTTP header end")?;
        let status = head
            .split_whitespace()
            .nth(1)
            .context("no status code")?
            .parse()?;
        // axum answers HTTP/1.1 with chunked bodies for streamed responses; ours are whole.
        let body = if head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked")
        {
            dechunk(body)?
        } else {
            body.to_string()
        };
        Ok((status, body))
    }

    /// SIGTERM-like: graceful stop, waiting for it.
    async fn stop(mut self) -> Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        tokio::time::timeout(TIMEOUT, &mut self.task).await???;
        Ok(())
    }

    /// SIGKILL-like: the task and everything it spawned are dropped wherever they are.
    async fn kill(self) {
        self.task.abort();
        let _ = self.task.await;
    }
}

fn dechunk(body: &str) -> Result<String> {
    let mut out = String::new();
    let mut rest = body;
    loop {
        let (size, after) = rest.split_once("\r\n").context("bad chunk")?;
        let size = usize::from_str_radix(size.trim(), 16)?;
        if size == 0 {
            return Ok(out);
        }
        out.push_str(after.get(..size).context("short chunk")?);
        rest = after.get(size + 2..).context("short chunk")?;
    }
}

/// Polls `check` every 100 ms until it yields `Some`, for at most [`TIMEOUT`].
async fn eventually<T, F, Fut>(what: &str, mut check: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Option<T>>>,
{
    let deadline = Instant::now() + TIMEOUT;
    let mut last_error = None;
    loop {
        match check().await {
            Ok(Some(value)) => return Ok(value),
            Ok(None) => {}
            Err(error) => last_error = Some(error),
        }
        if Instant::now() >= deadline {
            bail!("{what}: not observed within {TIMEOUT:?} (last error: {last_error:?})");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn meshservice(name: &str, spec: Value) -> Result<MeshService> {
    Ok(serde_json::from_value(json!({
        "apiVersion": meshservice_api::API_VERSION,
        "kind": meshservice_api::KIND,
        "metadata": {"name": name},
        "spec": spec,
    }))?)
}

/// `(status, reason, message)` of a condition.
fn condition(ms: &MeshService, type_: &str) -> Option<(String, String, String)> {
    ms.status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| (c.status.clone(), c.reason.clone(), c.message.clone()))
}

/// The status the apiserver defaults before the operator's first write, and nothing else:
/// `Accepted=Unknown`, reason `Pending`.
fn is_pending(ms: &MeshService) -> bool {
    ms.status.as_ref().is_some_and(|status| {
        status.observed_generation.is_none()
            && status.conditions.len() == 1
            && condition(ms, "Accepted")
                == Some((
                    "Unknown".into(),
                    "Pending".into(),
                    "Waiting for controller".into(),
                ))
    })
}

/// Ready=True, with the status and every condition at the current generation.
fn ready_at_generation(ms: &MeshService) -> bool {
    let generation = ms.metadata.generation;
    let Some(status) = &ms.status else {
        return false;
    };
    status.observed_generation == generation
        && status.conditions.len() == 3
        && status
            .conditions
            .iter()
            .all(|c| c.observed_generation == generation)
        && condition(ms, "Ready").is_some_and(|(s, _, _)| s == "True")
}

/// Waits until `operator` has finished `count` successful MeshService reconciles (its metrics are
/// its own, so these are ones it did, not an operator's before it); returns its metrics text.
async fn reconciled(operator: &Operator, count: u32) -> Result<String> {
    eventually(&format!("{count} reconciles by this operator"), || async {
        let (_, metrics) = operator.get("/metrics").await?;
        let done = metric(
            &metrics,
            r#"controller_runtime_reconcile_total{controller="meshservice",result="success"}"#,
        )
        .is_some_and(|n| n >= f64::from(count));
        Ok(done.then_some(metrics))
    })
    .await
}

async fn wait_ready(api: &Api<MeshService>, name: &str) -> Result<MeshService> {
    eventually(
        &format!("MeshService {name} Ready=True at its generation"),
        || async {
            let ms = api.get(name).await?;
            Ok(ready_at_generation(&ms).then_some(ms))
        },
    )
    .await
}

async fn wait_condition(
    api: &Api<MeshService>,
    name: &str,
    type_: &str,
    status: &str,
    reason: &str,
) -> Result<MeshService> {
    eventually(
        &format!("MeshService {name} {type_}={status} ({reason})"),
        || async {
            let ms = api.get(name).await?;
            let observed =
                ms.status.as_ref().and_then(|s| s.observed_generation) == ms.metadata.generation;
            Ok((observed
                && condition(&ms, type_).is_some_and(|(s, r, _)| s == status && r == reason))
            .then_some(ms))
        },
    )
    .await
}

fn dynamic_api(client: &Client, kind: WatchedKind, namespace: &str) -> Api<DynamicObject> {
    let resource: ApiResource = kind.api_resource();
    Api::namespaced_with(client.clone(), namespace, &resource)
}

fn gateway_hosts(gateway: &DynamicObject) -> Vec<String> {
    let mut hosts: Vec<String> = gateway.data["spec"]["servers"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|server| server["hosts"].as_array().into_iter().flatten())
        .filter_map(|h| h.as_str().map(str::to_string))
        .collect();
    hosts.sort();
    hosts.dedup();
    hosts
}

fn strings(value: &Value) -> Vec<String> {
    value
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v.as_str().map(str::to_string))
        .collect()
}

fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
}

async fn events_with_reason(client: &Client, namespace: &str, reason: &str) -> Result<Vec<Event>> {
    let events: Api<Event> = Api::namespaced(client.clone(), namespace);
    Ok(events
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .filter(|e| e.reason.as_deref() == Some(reason))
        .collect())
}

fn seed_spec(gateway_namespace: &str, managed: bool) -> Value {
    json!({
        "serviceName": "webapp",
        "hosts": ["webapp.example.com"],
        "gateway": {"name": "public-gateway", "namespace": gateway_namespace, "managed": managed},
        "ports": [{"port": 80, "targetPort": 8080}],
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_seed_meshservice_yields_its_service_virtual_service_and_managed_gateway() -> Result<()>
{
    let cp = control_plane().await?;
    let client = cp.client()?;
    let team = cp.namespace("seed").await?;
    let edge = cp.namespace("seed-edge").await?;
    let operator = Operator::start(operator_client(cp).await?, &[team.name(), edge.name()]).await?;

    let api: Api<MeshService> = Api::namespaced(client.clone(), team.name());
    let created = api
        .create(
            &PostParams::default(),
            &meshservice("webapp-service", seed_spec(edge.name(), true))?,
        )
        .await?;
    let ms = wait_ready(&api, "webapp-service").await?;
    let uid = created.uid().context("uid")?;

    // The Service: port 80 to container port 8080, selecting app=webapp, owned by the MeshService.
    let service: Service = Api::namespaced(client.clone(), team.name())
        .get("webapp")
        .await?;
    let spec = service.spec.clone().context("Service spec")?;
    let port = &spec.ports.as_ref().context("ports")?[0];
    assert_eq!((port.port, port.name.as_deref()), (80, Some("http-80")));
    assert_eq!(serde_json::to_value(&port.target_port)?, json!(8080));
    assert_eq!(
        spec.selector,
        Some(BTreeMap::from([("app".to_string(), "webapp".to_string())]))
    );
    let owner = &service.owner_references()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.uid.as_str(), owner.controller),
        ("MeshService", uid.as_str(), Some(true))
    );

    // The VirtualService: the host, bound to the shared gateway, routing to the Service.
    let vs = dynamic_api(&client, WatchedKind::VirtualService, team.name())
        .get("webapp-service")
        .await?;
    assert_eq!(strings(&vs.data["spec"]["hosts"]), ["webapp.example.com"]);
    assert_eq!(
        strings(&vs.data["spec"]["gateways"]),
        [format!("{edge}/public-gateway")]
    );
    let destination = &vs.data["spec"]["http"][0]["route"][0]["destination"];
    assert_eq!(
        destination["host"],
        json!(format!("webapp.{team}.svc.cluster.local"))
    );
    assert_eq!(destination["port"]["number"], json!(80));
    assert_eq!(vs.owner_references()[0].uid, uid);

    // The managed Gateway: serves the team's host on port 80, marked as ours with its contributor.
    let gateway = dynamic_api(&client, WatchedKind::Gateway, edge.name())
        .get("public-gateway")
        .await?;
    assert_eq!(
        gateway_hosts(&gateway),
        [format!("{team}/webapp.example.com")]
    );
    assert_eq!(
        gateway.data["spec"]["servers"][0]["port"]["number"],
        json!(80)
    );
    assert_eq!(
        gateway
            .labels()
            .get(ownership::MANAGED_BY_LABEL)
            .map(String::as_str),
        Some(ownership::MANAGED_BY_VALUE)
    );
    assert_eq!(
        gateway
            .annotations()
            .get(ownership::CONTRIBUTORS_ANNOTATION)
            .cloned(),
        Some(format!("{team}/webapp-service"))
    );
    assert!(
        gateway.owner_references().is_empty(),
        "cross-namespace: no ownerReference"
    );

    // The status: the three conditions true, the three objects applied, the finalizer set.
    for type_ in ["Accepted", "ResolvedRefs", "Ready"] {
        assert_eq!(
            condition(&ms, type_).map(|c| c.0),
            Some("True".to_string()),
            "{type_}"
        );
    }
    let resources: Vec<(String, String)> = ms
        .status
        .as_ref()
        .map(|s| {
            s.resources
                .iter()
                .map(|r| (r.kind.clone(), r.state.clone()))
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(
        resources,
        [
            ("Service".to_string(), "Applied".to_string()),
            ("VirtualService".to_string(), "Applied".to_string()),
            ("Gateway".to_string(), "Applied".to_string())
        ]
    );
    assert!(ms.finalizers().iter().any(|f| f == ownership::FINALIZER));
    assert!(
        !events_with_reason(&client, team.name(), "Applied")
            .await?
            .is_empty(),
        "an Applied Event"
    );

    // Steady state: what the apiserver defaults or prunes is never mistaken for drift.
    api.patch(
        "webapp-service",
        &PatchParams::default(),
        &Patch::Merge(&json!({"metadata": {"labels": {"touched": "yes"}}})),
    )
    .await?;
    // The label change is reconciled (a third reconcile) and finds nothing to repair.
    let metrics = reconciled(&operator, 3).await?;
    assert!(!metrics.contains("mesh_drift_detected_total{"), "{metrics}");

    operator.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_meshservice_reads_as_pending_until_the_operator_accepts_it() -> Result<()> {
    let cp = control_plane().await?;
    let client = cp.client()?;
    let team = cp.namespace("pending").await?;
    let api: Api<MeshService> = Api::namespaced(client.clone(), team.name());
    let spec =
        json!({"serviceName": "webapp", "hosts": ["webapp.example.com"], "ports": [{"port": 80}]});
    // No operator running: what the apiserver returns is all a user sees.
    let created = api
        .create(
            &PostParams::default(),
            &meshservice("webapp-service", spec)?,
        )
        .await?;
    assert!(is_pending(&created), "{:?}", created.status);
    let read = api.get("webapp-service").await?;
    assert!(is_pending(&read), "{:?}", read.status);
    let pending_since = read
        .status
        .as_ref()
        .and_then(|s| s.conditions.first())
        .map(|c| c.last_transition_time.0);
    assert_eq!(
        pending_since.map(|t| t.as_second()),
        Some(0),
        "1970-01-01T00:00:00Z"
    );

    let operator = Operator::start(operator_client(cp).await?, &[team.name()]).await?;
    let ready = wait_ready(&api, "webapp-service").await?;
    let accepted = ready
        .status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == "Accepted"))
        .context("an Accepted condition")?;
    assert_eq!(
        (accepted.status.as_str(), accepted.reason.as_str()),
        ("True", "Accepted")
    );
    // Unknown → True is a flip: its lastTransitionTime moved off the epoch.
    assert!(accepted.last_transition_time.0.as_second() > 0);
    assert_eq!(ready.status.as_ref().map(|s| s.conditions.len()), Some(3));

    // A steady state writes nothing more: no default creeps back in, no timestamp moves.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let later = api.get("webapp-service").await?;
    assert_eq!(later.status, ready.status);

    operator.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changing_hosts_and_ports_updates_the_virtual_service_and_the_shared_gateway() -> Result<()>
{
    let cp = control_plane().await?;
    let client = cp.client()?;
    let team = cp.namespace("change").await?;
    let edge = cp.namespace("change-edge").await?;
    let operator = Operator::start(operator_client(cp).await?, &[team.name(), edge.name()]).await?;
    let api: Api<MeshService> = Api::namespaced(client.clone(), team.name());
    api.create(
        &PostParams::default(),
        &meshservice("webapp-service", seed_spec(edge.name(), true))?,
    )
    .await?;
    wait_ready(&api, "webapp-service").await?;

    let patch = json!({"spec": {
        "hosts": ["webapp.example.com", "www.example.com"],
        "ports": [{"port": 8080, "targetPort": 9090}],
    }});
    let patched = api
        .patch(
            "webapp-service",
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await?;
    let ms = wait_ready(&api, "webapp-service").await?;
    assert_eq!(
        ms.status.as_ref().and_then(|s| s.observed_generation),
        patched.metadata.generation
    );

    let vs = dynamic_api(&client, WatchedKind::VirtualService, team.name())
        .get("webapp-service")
        .await?;
    assert_eq!(
        strings(&vs.data["spec"]["hosts"]),
        ["webapp.example.com", "www.example.com"]
    );
    assert_eq!(
        vs.data["spec"]["http"][0]["route"][0]["destination"]["port"]["number"],
        json!(8080)
    );
    let gateway = dynamic_api(&client, WatchedKind::Gateway, edge.name())
        .get("public-gateway")
        .await?;
    assert_eq!(
        gateway_hosts(&gateway),
        [
            format!("{team}/webapp.example.com"),
            format!("{team}/www.example.com")
        ]
    );
    let ports: Vec<i64> = gateway.data["spec"]["servers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s["port"]["number"].as_i64())
        .collect();
    assert_eq!(ports, [8080]);
    let service: Service = Api::namespaced(client.clone(), team.name())
        .get("webapp")
        .await?;
    let port = &service.spec.and_then(|s| s.ports).context("ports")?[0];
    assert_eq!(
        (port.port, serde_json::to_value(&port.target_port)?),
        (8080, json!(9090))
    );

    // The new host was served by the Gateway written in the same reconcile: no flapping through
    // ResolvedRefs=False on the way.
    assert!(
        events_with_reason(&client, team.name(), "HostNotServed")
            .await?
            .is_empty(),
        "no HostNotServed Event"
    );

    operator.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drift_of_owned_fields_is_repaired_and_fields_of_other_managers_survive() -> Result<()> {
    let cp = control_plane().await?;
    let client = cp.client()?;
    let team = cp.namespace("drift").await?;
    let edge = cp.namespace("drift-edge").await?;
    let operator = Operator::start(operator_client(cp).await?, &[team.name(), edge.name()]).await?;
    let api: Api<MeshService> = Api::namespaced(client.clone(), team.name());
    api.create(
        &PostParams::default(),
        &meshservice("webapp-service", seed_spec(edge.name(), true))?,
    )
    .await?;
    wait_ready(&api, "webapp-service").await?;

    // Another field manager takes our hosts and adds an annotation of its own.
    let virtual_services = dynamic_api(&client, WatchedKind::VirtualService, team.name());
    let intrusion = json!({
        "apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
        "metadata": {"name": "webapp-service", "annotations": {"example.com/note": "keep me"}},
        "spec": {"hosts": ["evil.example.com"]},
    });
    let edited_at = Instant::now();
    virtual_services
        .patch(
            "webapp-service",
            &PatchParams::apply("intruder").force(),
            &Patch::Apply(&intrusion),
        )
        .await?;
    let repaired = eventually("the VirtualService hosts are restored", || async {
        let vs = virtual_services.get("webapp-service").await?;
        Ok((strings(&vs.data["spec"]["hosts"]) == ["webapp.example.com"]).then_some(vs))
    })
    .await?;
    let repair_time = edited_at.elapsed();
    eprintln!("VirtualService drift repaired in {repair_time:?}");
    // Driven by the watch, not by the 5-minute resync; the bound is loose because the machines
    // running this are noisy (latency is measured by the run_scale bench, not asserted here).
    assert!(
        repair_time < REACTION,
        "repaired in {repair_time:?}, not within {REACTION:?}"
    );
    assert_eq!(
        repaired
            .annotations()
            .get("example.com/note")
            .map(String::as_str),
        Some("keep me"),
        "a field another manager owns survives the repair"
    );

    // Deleting the Service recreates it.
    let services: Api<Service> = Api::namespaced(client.clone(), team.name());
    let old_uid = services.get("webapp").await?.uid();
    let deleted_at = Instant::now();
    services.delete("webapp", &DeleteParams::default()).await?;
    eventually("the Service is recreated", || async {
        Ok(services
            .get_opt("webapp")
            .await?
            .filter(|s| s.uid() != old_uid))
    })
    .await?;
    let recreate_time = deleted_at.elapsed();
    eprintln!("deleted Service recreated in {recreate_time:?}");
    assert!(
        recreate_time < REACTION,
        "recreated in {recreate_time:?}, not within {REACTION:?}"
    );

    // Counted (the counter follows the write it counts) and announced.
    eventually("both repairs counted", || async {
        let (_, metrics) = operator.get("/metrics").await?;
        let counted = |kind: &str| {
            metric(
                &metrics,
                &format!(r#"mesh_drift_repairs_total{{kind="{kind}"}}"#),
            )
            .is_some_and(|n| n >= 1.0)
        };
        Ok((counted("VirtualService") && counted("Service")).then_some(()))
    })
    .await?;
    // The recorder folds repeats of one reason into one Event series, so one Event it is.
    eventually("a DriftRepaired Event", || async {
        let events = events_with_reason(&client, team.name(), "DriftRepaired").await?;
        Ok((!events.is_empty()).then_some(()))
    })
    .await?;

    operator.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drift_made_while_the_operator_was_down_is_repaired_and_counted_after_restart() -> Result<()>
{
    let cp = control_plane().await?;
    let client = cp.client()?;
    let team = cp.namespace("drift-down").await?;
    let operator = Operator::start(operator_client(cp).await?, &[team.name()]).await?;
    let api: Api<MeshService> = Api::namespaced(client.clone(), team.name());
    let spec = |service: &str, host: &str| json!({"serviceName": service, "hosts": [host], "ports": [{"port": 80}]});
    api.create(
        &PostParams::default(),
        &meshservice("drifted", spec("drifted", "drifted.example.com"))?,
    )
    .await?;
    api.create(
        &PostParams::default(),
        &meshservice("edited", spec("edited", "edited.example.com"))?,
    )
    .await?;
    wait_ready(&api, "drifted").await?;
    wait_ready(&api, "edited").await?;
    operator.stop().await?;

    // While it is down: someone else rewrites one VirtualService and deletes one Service (drift),
    // and the owner of the other MeshService changes its hosts (a change, not drift).
    let virtual_services = dynamic_api(&client, WatchedKind::VirtualService, team.name());
    let intrusion = json!({
        "apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
        "metadata": {"name": "drifted"}, "spec": {"hosts": ["evil.example.com"]},
    });
    virtual_services
        .patch(
            "drifted",
            &PatchParams::apply("intruder").force(),
            &Patch::Apply(&intrusion),
        )
        .await?;
    let services: Api<Service> = Api::namespaced(client.clone(), team.name());
    services.delete("drifted", &DeleteParams::default()).await?;
    eventually("the Service is gone", || async {
        Ok(services.get_opt("drifted").await?.is_none().then_some(()))
    })
    .await?;
    api.patch(
        "edited",
        &PatchParams::default(),
        &Patch::Merge(&json!({"spec": {"hosts": ["renamed.example.com"]}})),
    )
    .await?;

    let restarted = Operator::start(operator_client(cp).await?, &[team.name()]).await?;
    // "drifted" still reads Ready=True at its generation from before the stop (its spec did not
    // change), so the repair itself is what the test waits for.
    eventually("the drifted VirtualService repaired", || async {
        let vs = virtual_services.get("drifted").await?;
        Ok((strings(&vs.data["spec"]["hosts"]) == ["drifted.example.com"]).then_some(()))
    })
    .await?;
    eventually("the deleted Service recreated", || async {
        Ok(services.get_opt("drifted").await?.map(|_| ()))
    })
    .await?;
    wait_ready(&api, "edited").await?;
    let edited = virtual_services.get("edited").await?;
    assert_eq!(
        strings(&edited.data["spec"]["hosts"]),
        ["renamed.example.com"]
    );

    // Counted once each, and announced on the drifted MeshService only. The counter follows the
    // write it counts, so wait for both series before asserting that each is exactly one.
    let vs_series = r#"mesh_drift_repairs_total{kind="VirtualService"}"#;
    let service_series = r#"mesh_drift_repairs_total{kind="Service"}"#;
    let metrics = eventually("both repairs counted", || async {
        let (_, metrics) = restarted.get("/metrics").await?;
        let counted =
            metric(&metrics, vs_series).is_some() && metric(&metrics, service_series).is_some();
        Ok(counted.then_some(metrics))
    })
    .await?;
    assert_eq!(metric(&metrics, vs_series), Some(1.0), "{metrics}");
    assert_eq!(metric(&metrics, service_series), Some(1.0), "{metrics}");
    let announced = eventually("a DriftRepaired Event", || async {
        let events = events_with_reason(&client, team.name(), "DriftRepaired").await?;
        Ok((!events.is_empty()).then_some(events))
    })
    .await?;
    let about: Vec<Option<String>> = announced
        .iter()
        .map(|e| e.regarding.as_ref().and_then(|r| r.name.clone()))
        .collect();
    assert!(
        about.iter().all(|name| name.as_deref() == Some("drifted")),
        "{about:?}"
    );

    restarted.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_repair_off_drift_is_reported_and_left_alone() -> Result<()> {
    let cp = control_plane().await?;
    let client = cp.client()?;
    let team = cp.namespace("drift-off").await?;
    let operator = Operator::start_with(operator_client(cp).await?, &[team.name()], false).await?;
    let api: Api<MeshService> = Api::namespaced(client.clone(), team.name());
    let spec =
        json!({"serviceName": "webapp", "hosts": ["webapp.example.com"], "ports": [{"port": 80}]});
    api.create(
        &PostParams::default(),
        &meshservice("webapp-service", spec)?,
    )
    .await?;
    wait_ready(&api, "webapp-service").await?;

    let virtual_services = dynamic_api(&client, WatchedKind::VirtualService, team.name());
    let intrusion = json!({
        "apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
        "metadata": {"name": "webapp-service"}, "spec": {"hosts": ["evil.example.com"]},
    });
    virtual_services
        .patch(
            "webapp-service",
            &PatchParams::apply("intruder").force(),
            &Patch::Apply(&intrusion),
        )
        .await?;
    let ms = wait_condition(&api, "webapp-service", "Ready", "False", "Drifted").await?;
    assert!(
        ms.status
            .iter()
            .flat_map(|s| &s.resources)
            .any(|r| r.kind == "VirtualService" && r.state == "Drifted")
    );
    let vs = virtual_services.get("webapp-service").await?;
    assert_eq!(
        strings(&vs.data["spec"]["hosts"]),
        ["evil.example.com"],
        "not repaired"
    );
    let (_, metrics) = operator.get("/metrics").await?;
    assert!(
        metric(
            &metrics,
            r#"mesh_drift_detected_total{kind="VirtualService"}"#
        )
        .is_some_and(|n| n >= 1.0),
        "{metrics}"
    );
    assert!(
        metric(
            &metrics,
            r#"mesh_drift_repairs_total{kind="VirtualService"}"#
        )
        .is_none(),
        "{metrics}"
    );

    operator.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_older_of_two_claims_wins_and_the_newer_takes_over_when_it_goes() -> Result<()> {
    let cp = control_plane().await?;
    let client = cp.client()?;
    let team_a = cp.namespace("claim-a").await?;
    let team_b = cp.namespace("claim-b").await?;
    let operator =
        Operator::start(operator_client(cp).await?, &[team_a.name(), team_b.name()]).await?;
    let spec = |service: &str| json!({"serviceName": service, "hosts": ["shop.example.com"], "ports": [{"port": 80}]});

    let older: Api<MeshService> = Api::namespaced(client.clone(), team_a.name());
    older
        .create(&PostParams::default(), &meshservice("shop", spec("shop"))?)
        .await?;
    wait_ready(&older, "shop").await?;
    // creationTimestamp has a resolution of one second.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let newer: Api<MeshService> = Api::namespaced(client.clone(), team_b.name());
    newer
        .create(&PostParams::default(), &meshservice("shop", spec("shop"))?)
        .await?;

    let lost = wait_condition(&newer, "shop", "Accepted", "False", "HostConflict").await?;
    let (_, _, message) = condition(&lost, "Accepted").context("Accepted")?;
    assert!(
        message.contains(&format!("{team_a}/shop")),
        "the message names the winner: {message}"
    );
    assert_eq!(condition(&lost, "Ready").map(|c| c.0), Some("False".into()));
    assert!(
        lost.status
            .iter()
            .flat_map(|s| &s.findings)
            .any(|f| f.code == "MSH0201")
    );
    // None of its conflicting hosts is applied: it has no VirtualService at all.
    assert!(
        dynamic_api(&client, WatchedKind::VirtualService, team_b.name())
            .get_opt("shop")
            .await?
            .is_none()
    );
    assert!(
        ready_at_generation(&older.get("shop").await?),
        "the winner stays Ready"
    );
    assert!(
        !events_with_reason(&client, team_b.name(), "HostConflict")
            .await?
            .is_empty()
    );

    // The winner goes; the loser takes over without anyone touching it.
    let generation = lost.metadata.generation;
    older.delete("shop", &DeleteParams::default()).await?;
    let took_over = wait_ready(&newer, "shop").await?;
    assert_eq!(took_over.metadata.generation, generation);
    let vs = dynamic_api(&client, WatchedKind::VirtualService, team_b.name())
        .get("shop")
        .await?;
    assert_eq!(strings(&vs.data["spec"]["hosts"]), ["shop.example.com"]);

    operator.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_unmanaged_gateway_resolves_when_it_is_created() -> Result<()> {
    let cp = control_plane().await?;
    let client = cp.client()?;
    let team = cp.namespace("gw-missing").await?;
    let edge = cp.namespace("gw-missing-edge").await?;
    let operator = Operator::start(operator_client(cp).await?, &[team.name(), edge.name()]).await?;
    let api: Api<MeshService> = Api::namespaced(client.clone(), team.name());
    api.create(
        &PostParams::default(),
        &meshservice("webapp-service", seed_spec(edge.name(), false))?,
    )
    .await?;

    let missing = wait_condition(
        &api,
        "webapp-service",
        "ResolvedRefs",
        "False",
        "GatewayNotFound",
    )
    .await?;
    assert_eq!(
        condition(&missing, "Accepted").map(|c| c.0),
        Some("True".into())
    );
    // The VirtualService is applied anyway, so traffic flows the moment the Gateway appears.
    let vs = dynamic_api(&client, WatchedKind::VirtualService, team.name())
        .get("webapp-service")
        .await?;
    assert_eq!(
        strings(&vs.data["spec"]["gateways"]),
        [format!("{edge}/public-gateway")]
    );

    let gateway = json!({
        "apiVersion": "networking.istio.io/v1", "kind": "Gateway",
        "metadata": {"name": "public-gateway"},
        "spec": {"selector": {"istio": "ingressgateway"},
                 "servers": [{"port": {"number": 80, "name": "http", "protocol": "HTTP"}, "hosts": ["*/webapp.example.com"]}]},
    });
    let created_at = Instant::now();
    dynamic_api(&client, WatchedKind::Gateway, edge.name())
        .create(&PostParams::default(), &serde_json::from_value(gateway)?)
        .await?;
    let resolved = wait_ready(&api, "webapp-service").await?;
    let flip = created_at.elapsed();
    eprintln!("ResolvedRefs flipped {flip:?} after the Gateway was created");
    assert!(flip < REACTION, "flipped after {flip:?}");
    assert_eq!(
        condition(&resolved, "ResolvedRefs").map(|c| c.1),
        Some("ResolvedRefs".into())
    );
    assert_eq!(
        resolved.metadata.generation, missing.metadata.generation,
        "the MeshService was not touched"
    );
    assert!(
        !events_with_reason(&client, team.name(), "GatewayNotFound")
            .await?
            .is_empty()
    );

    operator.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_in_a_namespace_not_watched_is_reported_with_the_namespace_to_add() -> Result<()>
{
    let cp = control_plane().await?;
    let client = cp.client()?;
    let team = cp.namespace("unwatched").await?;
    let edge = cp.namespace("unwatched-edge").await?;
    // The platform team's Gateway exists and serves the host: only the operator cannot see it.
    let gateway = json!({
        "apiVersion": "networking.istio.io/v1", "kind": "Gateway",
        "metadata": {"name": "public-gateway"},
        "spec": {"selector": {"istio": "ingressgateway"},
                 "servers": [{"port": {"number": 80, "name": "http", "protocol": "HTTP"},
                              "hosts": ["*/webapp.example.com"]}]}
    });
    dynamic_api(&client, WatchedKind::Gateway, edge.name())
        .create(&PostParams::default(), &serde_json::from_value(gateway)?)
        .await?;
    let operator = Operator::start(operator_client(cp).await?, &[team.name()]).await?;
    let api: Api<MeshService> = Api::namespaced(client.clone(), team.name());
    api.create(
        &PostParams::default(),
        &meshservice("webapp-service", seed_spec(edge.name(), false))?,
    )
    .await?;
    let mut managed = seed_spec(edge.name(), true);
    managed["serviceName"] = json!("managed");
    managed["hosts"] = json!(["managed.example.com"]);
    managed["gateway"]["name"] = json!("managed-gateway");
    api.create(&PostParams::default(), &meshservice("managed", managed)?)
        .await?;

    for name in ["webapp-service", "managed"] {
        let ms = wait_condition(
            &api,
            name,
            "ResolvedRefs",
            "False",
            "GatewayNamespaceNotWatched",
        )
        .await?;
        let (_, _, message) = condition(&ms, "ResolvedRefs").context("ResolvedRefs")?;
        assert!(
            message.contains(&format!("add --namespace {edge}")),
            "{message}"
        );
    }
    assert!(
        dynamic_api(&client, WatchedKind::Gateway, edge.name())
            .get_opt("managed-gateway")
            .await?
            .is_none(),
        "nothing written where the operator does not watch"
    );
    eventually("a GatewayNamespaceNotWatched Event", || async {
        let events = events_with_reason(&client, team.name(), "GatewayNamespaceNotWatched").await?;
        Ok((!events.is_empty()).then_some(()))
    })
    .await?;
    operator.stop().await?;

    // Doing what the message says resolves both.
    let widened = Operator::start(operator_client(cp).await?, &[team.name(), edge.name()]).await?;
    wait_ready(&api, "webapp-service").await?;
    wait_ready(&api, "managed").await?;
    widened.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_undecodable_virtual_service_elsewhere_is_reported_and_stops_nothing() -> Result<()> {
    let cp = control_plane().await?;
    let client = cp.client()?;
    let team = cp.namespace("tolerant").await?;
    let other = cp.namespace("tolerant-other").await?;
    // Valid for the CRD schema (a uint32), not a port number: the engine cannot project it.
    let bad = json!({
        "apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
        "metadata": {"name": "broken"},
        "spec": {"hosts": ["broken.example.com"],
                 "http": [{"route": [{"destination": {"host": "x", "port": {"number": 70000}}}]}]},
    });
    dynamic_api(&client, WatchedKind::VirtualService, other.name())
        .create(&PostParams::default(), &serde_json::from_value(bad)?)
        .await?;
    let operator =
        Operator::start(operator_client(cp).await?, &[team.name(), other.name()]).await?;

    let api: Api<MeshService> = Api::namespaced(client.clone(), team.name());
    let spec =
        json!({"serviceName": "webapp", "hosts": ["webapp.example.com"], "ports": [{"port": 80}]});
    api.create(
        &PostParams::default(),
        &meshservice("webapp-service", spec)?,
    )
    .await?;
    wait_ready(&api, "webapp-service").await?;

    let (status, body) = operator.get("/report").await?;
    assert_eq!(status, 200);
    let report: Value = serde_json::from_str(&body)?;
    let listed = report["findings"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|f| {
            f["code"] == "MSH0001"
                && f["resource"]["name"] == "broken"
                && f["resource"]["namespace"] == other.name()
        });
    assert!(
        listed,
        "the report lists the undecodable VirtualService: {body}"
    );

    operator.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_meshservice_removes_its_children_and_exactly_its_hosts_from_a_shared_gateway()
-> Result<()> {
    let cp = control_plane().await?;
    let client = cp.client()?;
    let team_a = cp.namespace("shared-a").await?;
    let team_b = cp.namespace("shared-b").await?;
    let edge = cp.namespace("shared-edge").await?;
    let operator = Operator::start(
        operator_client(cp).await?,
        &[team_a.name(), team_b.name(), edge.name()],
    )
    .await?;
    let spec = |service: &str, host: &str| {
        json!({"serviceName": service, "hosts": [host],
               "gateway": {"name": "shared", "namespace": edge.name(), "managed": true},
               "ports": [{"port": 80}]})
    };
    let a: Api<MeshService> = Api::namespaced(client.clone(), team_a.name());
    let b: Api<MeshService> = Api::namespaced(client.clone(), team_b.name());
    a.create(
        &PostParams::default(),
        &meshservice("cart", spec("cart", "cart.example.com"))?,
    )
    .await?;
    b.create(
        &PostParams::default(),
        &meshservice("shop", spec("shop", "shop.example.com"))?,
    )
    .await?;
    wait_ready(&a, "cart").await?;
    wait_ready(&b, "shop").await?;
    let gateways = dynamic_api(&client, WatchedKind::Gateway, edge.name());
    let both = eventually("the shared Gateway serves both teams", || async {
        let gateway = gateways.get("shared").await?;
        Ok((gateway_hosts(&gateway).len() == 2).then_some(gateway))
    })
    .await?;
    assert_eq!(
        gateway_hosts(&both),
        [
            format!("{team_a}/cart.example.com"),
            format!("{team_b}/shop.example.com")
        ]
    );

    a.delete("cart", &DeleteParams::default()).await?;
    eventually("MeshService cart is gone", || async {
        Ok(a.get_opt("cart").await?.is_none().then_some(()))
    })
    .await?;
    let services: Api<Service> = Api::namespaced(client.clone(), team_a.name());
    let virtual_services = dynamic_api(&client, WatchedKind::VirtualService, team_a.name());
    eventually(
        "its Service and VirtualService are garbage-collected",
        || async {
            Ok((services.get_opt("cart").await?.is_none()
                && virtual_services.get_opt("cart").await?.is_none())
            .then_some(()))
        },
    )
    .await?;
    let remaining = gateways.get("shared").await?;
    assert_eq!(
        gateway_hosts(&remaining),
        [format!("{team_b}/shop.example.com")]
    );
    assert_eq!(
        remaining
            .annotations()
            .get(ownership::CONTRIBUTORS_ANNOTATION)
            .cloned(),
        Some(format!("{team_b}/shop"))
    );
    assert!(
        ready_at_generation(&b.get("shop").await?),
        "the other team is unaffected"
    );

    // The last contributor leaves: the Gateway goes too.
    b.delete("shop", &DeleteParams::default()).await?;
    eventually("the shared Gateway is deleted", || async {
        Ok(gateways.get_opt("shared").await?.is_none().then_some(()))
    })
    .await?;

    operator.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_killed_mid_reconcile_converges_after_restart() -> Result<()> {
    let cp = control_plane().await?;
    let client = cp.client()?;
    let team = cp.namespace("restart").await?;
    let edge = cp.namespace("restart-edge").await?;
    let namespaces = [team.name(), edge.name()];
    let operator = Operator::start(operator_client(cp).await?, &namespaces).await?;
    let api: Api<MeshService> = Api::namespaced(client.clone(), team.name());
    api.create(
        &PostParams::default(),
        &meshservice("webapp-service", seed_spec(edge.name(), true))?,
    )
    .await?;
    // Kill it as soon as the first child exists: the reconcile is somewhere between the Service
    // and the status write.
    let services: Api<Service> = Api::namespaced(client.clone(), team.name());
    eventually("the first child exists", || async {
        Ok(services.get_opt("webapp").await?.map(|_| ()))
    })
    .await?;
    operator.kill().await;

    let restarted = Operator::start(operator_client(cp).await?, &namespaces).await?;
    // The killed operator may have written Ready=True before it died: wait for the restarted one
    // to have reconciled the MeshService itself.
    reconciled(&restarted, 1).await?;
    wait_ready(&api, "webapp-service").await?;
    let owned = ListParams::default().labels(&format!(
        "{}={}",
        ownership::MANAGED_BY_LABEL,
        ownership::MANAGED_BY_VALUE
    ));
    assert_eq!(services.list(&owned).await?.items.len(), 1, "one Service");
    let virtual_services = dynamic_api(&client, WatchedKind::VirtualService, team.name())
        .list(&owned)
        .await?;
    assert_eq!(virtual_services.items.len(), 1, "one VirtualService");
    let gateways = dynamic_api(&client, WatchedKind::Gateway, edge.name())
        .list(&owned)
        .await?;
    assert_eq!(gateways.items.len(), 1, "one Gateway");
    // And a restart of a converged operator changes nothing: the status is byte-identical.
    restarted.stop().await?;
    let ms = api.get("webapp-service").await?;
    assert_eq!(
        ms.finalizers()
            .iter()
            .filter(|f| *f == ownership::FINALIZER)
            .count(),
        1,
        "one finalizer"
    );
    assert_eq!(ms.status.as_ref().map(|s| s.resources.len()), Some(3));
    let again = Operator::start(operator_client(cp).await?, &namespaces).await?;
    reconciled(&again, 1).await?;
    let after = api.get("webapp-service").await?;
    assert_eq!(after.status, ms.status, "status unchanged by a restart");
    assert_eq!(
        after.resource_version(),
        ms.resource_version(),
        "no write at all"
    );

    again.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_preexisting_service_of_the_same_name_is_a_name_conflict_and_left_untouched() -> Result<()>
{
    let cp = control_plane().await?;
    let client = cp.client()?;
    let team = cp.namespace("name-conflict").await?;
    let services: Api<Service> = Api::namespaced(client.clone(), team.name());
    let theirs: Service = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "webapp", "labels": {"owner": "someone-else"}},
        "spec": {"selector": {"app": "legacy"}, "ports": [{"port": 9000}]},
    }))?;
    let theirs = services.create(&PostParams::default(), &theirs).await?;
    let operator = Operator::start(operator_client(cp).await?, &[team.name()]).await?;

    let api: Api<MeshService> = Api::namespaced(client.clone(), team.name());
    let spec =
        json!({"serviceName": "webapp", "hosts": ["webapp.example.com"], "ports": [{"port": 80}]});
    api.create(
        &PostParams::default(),
        &meshservice("webapp-service", spec)?,
    )
    .await?;
    let ms = wait_condition(&api, "webapp-service", "Accepted", "False", "NameConflict").await?;
    assert_eq!(condition(&ms, "Ready").map(|c| c.0), Some("False".into()));

    let after = services.get("webapp").await?;
    assert_eq!(
        after.resource_version(),
        theirs.resource_version(),
        "the Service is unchanged"
    );
    assert!(after.owner_references().is_empty());
    assert!(
        dynamic_api(&client, WatchedKind::VirtualService, team.name())
            .get_opt("webapp-service")
            .await?
            .is_none()
    );
    assert!(
        !events_with_reason(&client, team.name(), "NameConflict")
            .await?
            .is_empty()
    );

    operator.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_and_report_answer_with_the_figures() -> Result<()> {
    let cp = control_plane().await?;
    let client = cp.client()?;
    let team = cp.namespace("admin").await?;
    let edge = cp.namespace("admin-edge").await?;
    let operator = Operator::start(operator_client(cp).await?, &[team.name(), edge.name()]).await?;
    assert_eq!(operator.get("/healthz").await?.0, 200);
    assert_eq!(operator.get("/readyz").await?.0, 200);

    let api: Api<MeshService> = Api::namespaced(client.clone(), team.name());
    api.create(
        &PostParams::default(),
        &meshservice(
            "ok",
            json!({"serviceName": "ok", "hosts": ["ok.example.com"], "ports": [{"port": 80}]}),
        )?,
    )
    .await?;
    api.create(
        &PostParams::default(),
        &meshservice("orphan", seed_spec(edge.name(), false))?,
    )
    .await?;
    wait_ready(&api, "ok").await?;
    wait_condition(&api, "orphan", "ResolvedRefs", "False", "GatewayNotFound").await?;

    let (status, body) = operator.get("/report").await?;
    assert_eq!(status, 200);
    let report: Value = serde_json::from_str(&body)?;
    assert_eq!(
        report["summary"]["objectsByKind"]["MeshService"],
        json!(2),
        "{body}"
    );
    let not_found = report["findings"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|f| f["code"] == "MSH0202")
        .context("an MSH0202 finding")?;
    assert_eq!(not_found["resource"]["name"], json!("orphan"));
    assert!(
        not_found["repair"].is_array(),
        "findings carry repair plans"
    );

    // The watched-object gauges follow the index's own watch, which may trail the controller's.
    let metrics = eventually("both MeshServices counted as watched", || async {
        let (status, metrics) = operator.get("/metrics").await?;
        let counted = status == 200
            && metric(&metrics, r#"mesh_watched_objects{kind="MeshService"}"#) == Some(2.0);
        Ok(counted.then_some(metrics))
    })
    .await?;
    let reconciles = metric(
        &metrics,
        r#"controller_runtime_reconcile_total{controller="meshservice",result="success"}"#,
    );
    assert!(reconciles.is_some_and(|n| n >= 2.0), "{metrics}");
    assert!(
        metrics.contains("controller_runtime_reconcile_time_seconds_bucket"),
        "{metrics}"
    );
    assert_eq!(
        metric(&metrics, r#"mesh_watched_objects{kind="MeshService"}"#),
        Some(2.0),
        "{metrics}"
    );
    assert_eq!(
        metric(
            &metrics,
            r#"mesh_integrity_findings{code="MSH0202",severity="Error"}"#
        ),
        Some(1.0),
        "{metrics}"
    );
    assert!(
        metric(&metrics, "mesh_engine_check_duration_seconds_count").is_some_and(|n| n >= 1.0),
        "{metrics}"
    );
    assert_eq!(metric(&metrics, "mesh_leader"), Some(1.0), "{metrics}");

    operator.stop().await
}

/// Whether the operator's `mesh_leader` gauge says it leads.
async fn leads(operator: &Operator) -> Result<bool> {
    Ok(metric(&operator.get("/metrics").await?.1, "mesh_leader") == Some(1.0))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_lease_holder_writes_and_a_standby_takes_over_when_it_stops() -> Result<()> {
    let cp = control_plane().await?;
    let client = cp.client()?;
    let team = cp.namespace("leader").await?;
    // the shipped leader-election Role grants Leases in the operator's namespace only
    let lease_name = format!("iio-e2e-{}", team.name());
    let replica = |identity: &str| Config {
        namespaces: vec![team.name().to_string()],
        leader_election: Some(LeaderElection {
            namespace: OPERATOR_NAMESPACE.to_string(),
            lease_name: lease_name.clone(),
            lease_duration_seconds: 4,
            renew_grace_seconds: 1,
        }),
        identity: identity.to_string(),
        ..Config::default()
    };
    let one = Operator::start_config(operator_client(cp).await?, replica("one")).await?;
    let two = Operator::start_config(operator_client(cp).await?, replica("two")).await?;
    let (leader, standby, leader_name, standby_name) = eventually("one replica leads", || async {
        Ok(match (leads(&one).await?, leads(&two).await?) {
            (true, false) => Some(true),
            (false, true) => Some(false),
            _ => None,
        })
    })
    .await
    .map(|one_leads| {
        if one_leads {
            (one, two, "one", "two")
        } else {
            (two, one, "two", "one")
        }
    })?;

    let leases: Api<k8s_openapi::api::coordination::v1::Lease> =
        Api::namespaced(client.clone(), OPERATOR_NAMESPACE);
    let lease = leases.get(&lease_name).await?;
    assert_eq!(
        lease.spec.and_then(|s| s.holder_identity).as_deref(),
        Some(leader_name)
    );

    let api: Api<MeshService> = Api::namespaced(client.clone(), team.name());
    let spec =
        json!({"serviceName": "webapp", "hosts": ["webapp.example.com"], "ports": [{"port": 80}]});
    api.create(
        &PostParams::default(),
        &meshservice("webapp-service", spec)?,
    )
    .await?;
    wait_ready(&api, "webapp-service").await?;
    let applied = events_with_reason(&client, team.name(), "Applied").await?;
    assert!(!applied.is_empty());
    assert!(
        applied
            .iter()
            .all(|e| e.reporting_instance.as_deref() == Some(leader_name)),
        "only the leader published Events"
    );
    assert!(!leads(&standby).await?, "the standby does not lead");

    // The leader stops (and releases the Lease); the standby takes over and reconciles.
    leader.stop().await?;
    eventually("the standby leads", || async {
        Ok(leads(&standby).await?.then_some(()))
    })
    .await?;
    let patch = json!({"spec": {"hosts": ["webapp.example.com", "www.example.com"]}});
    api.patch(
        "webapp-service",
        &PatchParams::default(),
        &Patch::Merge(&patch),
    )
    .await?;
    wait_ready(&api, "webapp-service").await?;
    let vs = dynamic_api(&client, WatchedKind::VirtualService, team.name())
        .get("webapp-service")
        .await?;
    assert_eq!(
        strings(&vs.data["spec"]["hosts"]),
        ["webapp.example.com", "www.example.com"]
    );
    let lease = leases.get(&lease_name).await?;
    assert_eq!(
        lease.spec.and_then(|s| s.holder_identity).as_deref(),
        Some(standby_name)
    );

    standby.stop().await
}

/// A MeshService labelled `team=<team>`, serving `<name>.example.com` on port 80 (through
/// `gateway` when given).
fn team_meshservice(name: &str, team: &str, gateway: Option<Value>) -> Result<MeshService> {
    let mut spec = json!({"serviceName": name, "hosts": [format!("{name}.example.com")], "ports": [{"port": 80}]});
    if let Some(gateway) = gateway {
        spec["gateway"] = gateway;
    }
    let mut ms = meshservice(name, spec)?;
    ms.metadata.labels = Some(BTreeMap::from([("team".to_string(), team.to_string())]));
    Ok(ms)
}

/// An operator reconciling the MeshServices labelled `team=<team>` as shard `<team>`.
fn shard_config(namespaces: &[&str], team: &str) -> Config {
    Config {
        namespaces: namespaces.iter().map(|n| n.to_string()).collect(),
        selector: Some(format!("team={team}")),
        shard: Some(team.to_string()),
        identity: format!(
            "e2e-shard-{team}-{}",
            namespaces.first().copied().unwrap_or("all")
        ),
        ..Config::default()
    }
}

async fn relabel(api: &Api<MeshService>, name: &str, team: &str) -> Result<()> {
    let patch = json!({"metadata": {"labels": {"team": team}}});
    api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_selector_limits_which_meshservices_are_reconciled() -> Result<()> {
    let cp = control_plane().await?;
    let client = cp.client()?;
    let team = cp.namespace("selector").await?;
    let operator = Operator::start_config(
        operator_client(cp).await?,
        shard_config(&[team.name()], "a"),
    )
    .await?;
    let api: Api<MeshService> = Api::namespaced(client.clone(), team.name());
    api.create(
        &PostParams::default(),
        &team_meshservice("ours", "a", None)?,
    )
    .await?;
    api.create(
        &PostParams::default(),
        &team_meshservice("theirs", "b", None)?,
    )
    .await?;
    let ours = wait_ready(&api, "ours").await?;
    assert_eq!(ours.finalizers(), [ownership::finalizer(Some("a"))]);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let theirs = api.get("theirs").await?;
    assert!(is_pending(&theirs), "not reconciled: {:?}", theirs.status);
    assert!(theirs.finalizers().is_empty());
    let services: Api<Service> = Api::namespaced(client.clone(), team.name());
    assert!(services.get_opt("theirs").await?.is_none());

    operator.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_meshservice_relabelled_out_of_the_selector_is_released_and_deletes_at_once() -> Result<()>
{
    let cp = control_plane().await?;
    let client = cp.client()?;
    let team = cp.namespace("release").await?;
    let operator = Operator::start_config(
        operator_client(cp).await?,
        shard_config(&[team.name()], "a"),
    )
    .await?;
    let api: Api<MeshService> = Api::namespaced(client.clone(), team.name());
    api.create(&PostParams::default(), &team_meshservice("web", "a", None)?)
        .await?;
    let held = wait_ready(&api, "web").await?;
    assert_eq!(held.finalizers(), [ownership::finalizer(Some("a"))]);
    let services: Api<Service> = Api::namespaced(client.clone(), team.name());
    let service = services.get("web").await?;

    // Out of the selector: the finalizer goes, the children stay (for whichever shard adopts it).
    relabel(&api, "web", "nobody").await?;
    eventually("the shard releases its finalizer", || async {
        Ok(api.get("web").await?.finalizers().is_empty().then_some(()))
    })
    .await?;
    let still = services.get("web").await?;
    assert_eq!(still.uid(), service.uid(), "the Service is left in place");
    assert!(
        dynamic_api(&client, WatchedKind::VirtualService, team.name())
            .get_opt("web")
            .await?
            .is_some(),
        "the VirtualService is left in place"
    );
    eventually("a Released Event", || async {
        let released = events_with_reason(&client, team.name(), "Released").await?;
        Ok((!released.is_empty()).then_some(()))
    })
    .await?;

    // Deleting it no longer waits for anyone.
    let asked = Instant::now();
    api.delete("web", &DeleteParams::default()).await?;
    eventually("the MeshService is gone", || async {
        Ok(api.get_opt("web").await?.is_none().then_some(()))
    })
    .await?;
    assert!(
        asked.elapsed() < REACTION,
        "deleted after {:?}",
        asked.elapsed()
    );

    operator.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_shards_render_their_shared_gateway_alike_and_hand_meshservices_over() -> Result<()> {
    let cp = control_plane().await?;
    let client = cp.client()?;
    let team_a = cp.namespace("shard-a").await?;
    let team_b = cp.namespace("shard-b").await?;
    let edge = cp.namespace("shard-edge").await?;
    let namespaces = [team_a.name(), team_b.name(), edge.name()];
    let shard_a =
        Operator::start_config(operator_client(cp).await?, shard_config(&namespaces, "a")).await?;
    let shard_b =
        Operator::start_config(operator_client(cp).await?, shard_config(&namespaces, "b")).await?;
    let shared = json!({"name": "shared", "namespace": edge.name(), "managed": true});
    let a: Api<MeshService> = Api::namespaced(client.clone(), team_a.name());
    let b: Api<MeshService> = Api::namespaced(client.clone(), team_b.name());
    a.create(
        &PostParams::default(),
        &team_meshservice("cart", "a", Some(shared.clone()))?,
    )
    .await?;
    b.create(
        &PostParams::default(),
        &team_meshservice("shop", "b", Some(shared))?,
    )
    .await?;
    wait_ready(&a, "cart").await?;
    let shop = wait_ready(&b, "shop").await?;
    assert_eq!(
        a.get("cart").await?.finalizers(),
        [ownership::finalizer(Some("a"))]
    );
    assert_eq!(shop.finalizers(), [ownership::finalizer(Some("b"))]);

    // Both shards write the Gateway; both render every contributor, so it settles.
    let gateways = dynamic_api(&client, WatchedKind::Gateway, edge.name());
    let both = [
        format!("{team_a}/cart.example.com"),
        format!("{team_b}/shop.example.com"),
    ];
    let settled =
        eventually("the shared Gateway settles with both hosts", || async {
            let before = gateways.get("shared").await?;
            tokio::time::sleep(Duration::from_secs(2)).await;
            let after = gateways.get("shared").await?;
            Ok((gateway_hosts(&after) == both
                && after.resource_version() == before.resource_version())
            .then_some(after))
        })
        .await?;
    assert_eq!(
        settled
            .annotations()
            .get(ownership::CONTRIBUTORS_ANNOTATION)
            .cloned(),
        Some(format!("{team_a}/cart,{team_b}/shop"))
    );

    // shop moves to shard a: b releases it, a adopts it and its children (same field manager).
    let services: Api<Service> = Api::namespaced(client.clone(), team_b.name());
    let service = services.get("shop").await?;
    relabel(&b, "shop", "a").await?;
    eventually("shard a holds shop alone", || async {
        let ms = b.get("shop").await?;
        Ok(
            (ms.finalizers() == [ownership::finalizer(Some("a"))] && ready_at_generation(&ms))
                .then_some(()),
        )
    })
    .await?;
    assert_eq!(gateway_hosts(&gateways.get("shared").await?), both);

    // Shard a reconciles shop from now on: with b gone, a change to shop reaches its children.
    shard_b.stop().await?;
    b.patch(
        "shop",
        &PatchParams::default(),
        &Patch::Merge(&json!({"spec": {"hosts": ["shop.example.com", "store.example.com"]}})),
    )
    .await?;
    wait_ready(&b, "shop").await?;
    let vs = dynamic_api(&client, WatchedKind::VirtualService, team_b.name())
        .get("shop")
        .await?;
    assert_eq!(
        strings(&vs.data["spec"]["hosts"]),
        ["shop.example.com", "store.example.com"]
    );
    assert_eq!(
        gateway_hosts(&gateways.get("shared").await?),
        [
            format!("{team_a}/cart.example.com"),
            format!("{team_b}/shop.example.com"),
            format!("{team_b}/store.example.com"),
        ]
    );
    assert_eq!(
        services.get("shop").await?.uid(),
        service.uid(),
        "adopted, not recreated"
    );

    shard_a.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_rides_out_an_apiserver_restart() -> Result<()> {
    // Its own control plane: the outage must not hit the other tests.
    let cp = own_control_plane().await?;
    let client = cp.client()?;
    let team = cp.namespace("apiserver-restart").await?;
    let operator = Operator::start(operator_client(&cp).await?, &[team.name()]).await?;
    let api: Api<MeshService> = Api::namespaced(client.clone(), team.name());
    let spec =
        json!({"serviceName": "webapp", "hosts": ["webapp.example.com"], "ports": [{"port": 80}]});
    api.create(
        &PostParams::default(),
        &meshservice("webapp-service", spec)?,
    )
    .await?;
    wait_ready(&api, "webapp-service").await?;

    cp.restart_apiserver().await?;

    // Watches resume (a change made after the restart is reconciled) and the index is intact.
    let patch = json!({"spec": {"hosts": ["webapp.example.com", "after-restart.example.com"]}});
    let client = cp.client()?;
    let api: Api<MeshService> = Api::namespaced(client.clone(), team.name());
    eventually("the MeshService can be patched again", || async {
        Ok(api
            .patch(
                "webapp-service",
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await
            .ok()
            .map(|_| ()))
    })
    .await?;
    wait_ready(&api, "webapp-service").await?;
    let vs = dynamic_api(&client, WatchedKind::VirtualService, team.name())
        .get("webapp-service")
        .await?;
    assert_eq!(
        strings(&vs.data["spec"]["hosts"]),
        ["after-restart.example.com", "webapp.example.com"]
    );
    assert_eq!(operator.get("/readyz").await?.0, 200);
    assert_eq!(operator.get("/healthz").await?.0, 200);

    operator.stop().await
}
