//! The operator at scale on a real control plane: creates N VirtualServices (with N/10 Gateways
//! and N Services, 1 % of the VirtualServices routing to a Service that does not exist), then
//! starts the real `run` binary against them and measures time to ready, RSS (after ready, after
//! the first metrics refresh, after one full GET /report, peak) and the latency from creating a
//! MeshService to its status Ready=True with the N objects present.
//!
//! * `cargo bench -p istio-integrity-operator --bench run_scale -- 100000` — the real figures for
//!   N = 100000 (the target: ≤ 250 MB RSS); without a size, N = 10000.
//! * Under `cargo test --all-targets` it runs with no `--bench` flag: a 200-object smoke run that
//!   checks the generator, readiness, the findings and the latency probe, a few seconds beyond the
//!   control plane's start.

use std::fmt::Write as _;
use std::io::{Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail, ensure};
use futures::{StreamExt as _, TryStreamExt as _};
use k8s_openapi::api::core::v1::{Namespace, Service};
use kube::api::{ApiResource, DynamicObject, GroupVersionKind, PostParams};
use kube::{Api, Client};
use meshservice_api::MeshService;
use serde_json::json;
use test_controlplane::ControlPlane;

const BIN: &str = env!("CARGO_BIN_EXE_istio-integrity-operator");

/// VirtualServices per Gateway (and per namespace-group of names).
const PER_GATEWAY: usize = 10;
/// Every 100th VirtualService routes to a Service nobody created: IST0101 findings to report.
const FAULT_EVERY: usize = 100;
/// Creates in flight: enough to keep the apiserver busy without queueing in its inflight limit.
const IN_FLIGHT: usize = 48;

/// What one run looks like: the full benchmark or the smoke run.
struct Plan {
    virtual_services: usize,
    namespaces: usize,
    latency_samples: usize,
    /// How long the operator may take to list everything.
    ready_timeout: Duration,
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let full = args.iter().any(|arg| arg == "--bench");
    let size = args.iter().find_map(|arg| arg.parse::<usize>().ok());
    let plan = match (full, size) {
        (false, _) => Plan {
            virtual_services: 200,
            namespaces: 4,
            latency_samples: 3,
            ready_timeout: Duration::from_secs(60),
        },
        (true, size) => Plan {
            virtual_services: size.unwrap_or(10_000),
            namespaces: 100,
            latency_samples: 50,
            ready_timeout: Duration::from_secs(30 * 60),
        },
    };
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?
        .block_on(run(&plan))
}

async fn run(plan: &Plan) -> Result<()> {
    let cp = ControlPlane::start().await?;
    let client = cp.client()?;
    let n = plan.virtual_services;
    let namespaces: Vec<String> = (0..plan.namespaces.min(n.div_ceil(PER_GATEWAY)).max(1))
        .map(|i| format!("scale-{i}"))
        .collect();

    let created_at = Instant::now();
    let namespace_api: Api<Namespace> = Api::all(client.clone());
    for name in &namespaces {
        let namespace: Namespace = serde_json::from_value(json!({"metadata": {"name": name}}))?;
        namespace_api
            .create(&PostParams::default(), &namespace)
            .await?;
    }
    let gateways = n.div_ceil(PER_GATEWAY);
    let namespace_of = |group: usize| namespaces[group % namespaces.len()].as_str();
    // Gateways and Services first, so the operator never sees a VirtualService before its refs.
    let gateway_rate = create_all(gateways, |g| {
        let client = client.clone();
        let namespace = namespace_of(g).to_string();
        async move { create_gateway(&client, &namespace, g).await }
    })
    .await?;
    let service_rate = create_all(n, |i| {
        let client = client.clone();
        let namespace = namespace_of(i / PER_GATEWAY).to_string();
        async move { create_service(&client, &namespace, i).await }
    })
    .await?;
    let virtual_service_rate = create_all(n, |i| {
        let client = client.clone();
        let namespace = namespace_of(i / PER_GATEWAY).to_string();
        async move { create_virtual_service(&client, &namespace, i).await }
    })
    .await?;
    let objects = gateways + 2 * n;
    let creation = created_at.elapsed();
    println!(
        "created {objects} objects in {:.1} s ({:.0}/s overall): {gateways} Gateways at {gateway_rate:.0}/s, \
         {n} Services at {service_rate:.0}/s, {n} VirtualServices at {virtual_service_rate:.0}/s, \
         in {} namespaces, {IN_FLIGHT} creates in flight",
        creation.as_secs_f64(),
        objects as f64 / creation.as_secs_f64(),
        namespaces.len(),
    );

    let log_dir = tempfile::tempdir()?;
    let log = log_dir.path().join("operator.log");
    let mut operator = Operator::start(cp.kubeconfig_path(), &log)?;
    let result = measure(plan, &cp, &client, &mut operator, &namespaces).await;
    if result.is_err() {
        eprintln!(
            "operator log (tail):\n{}",
            tail(&std::fs::read_to_string(&log).unwrap_or_default(), 40)
        );
    }
    let figures = result?;
    let stopped_in = operator.terminate()?;

    let mut table = String::from("| figure | value |\n|---|---:|\n");
    let mut row = |name: &str, value: String| {
        let _ = writeln!(table, "| {name} | {value} |");
    };
    row(
        "watched objects (VirtualServices / Gateways / Services)",
        format!("{n} / {gateways} / {n}"),
    );
    row(
        "creation rate (all kinds, admin client)",
        format!("{:.0} objects/s", objects as f64 / creation.as_secs_f64()),
    );
    row(
        "time to /readyz 200 (initial lists in the index)",
        seconds(figures.ready),
    );
    row("RSS after ready", megabytes(figures.rss_ready));
    row(
        "findings metrics current (a full check after ready)",
        seconds(figures.metrics_current),
    );
    row(
        "engine check (finding_counts), mean",
        seconds(figures.mean_check),
    );
    row(
        "RSS after the first metrics refresh",
        megabytes(figures.rss_refreshed),
    );
    row(
        "IST0101 findings in /metrics (expected)",
        format!("{} ({})", figures.ist0101, n / FAULT_EVERY),
    );
    row(
        "GET /report (findings, bytes)",
        format!(
            "{} ({}, {} B)",
            seconds(figures.report),
            figures.report_findings,
            figures.report_bytes
        ),
    );
    row("RSS after GET /report", megabytes(figures.rss_reported));
    row(
        &format!(
            "MeshService created → Ready=True, median / p99 of {}",
            figures.latencies.len()
        ),
        format!(
            "{} / {}",
            millis(percentile(&figures.latencies, 50)),
            millis(percentile(&figures.latencies, 99))
        ),
    );
    row("RSS after the latency samples", megabytes(figures.rss_end));
    row("peak RSS (VmHWM)", megabytes(figures.rss_peak));
    row(
        "kube-apiserver / etcd RSS at the end",
        format!(
            "{} / {}",
            megabytes(figures.apiserver_rss),
            megabytes(figures.etcd_rss)
        ),
    );
    row("SIGTERM → exit", seconds(stopped_in));
    // `cargo bench` builds the binary with the bench profile (release); `cargo test`, debug.
    let profile = if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    };
    println!("run_scale: {profile} operator binary, `run --kubeconfig … --admin-addr …`, N = {n}");
    print!("{table}");
    // Times depend on what else the machine runs; record it so they can be judged.
    if let Ok(load) = std::fs::read_to_string("/proc/loadavg") {
        let load: Vec<&str> = load.split_whitespace().take(3).collect();
        println!("load average (1, 5, 15 min) at the end: {}", load.join(" "));
    }
    ensure!(
        figures.ist0101 >= n / FAULT_EVERY,
        "{} IST0101 findings for {} faults",
        figures.ist0101,
        n / FAULT_EVERY
    );
    Ok(())
}

struct Figures {
    ready: Duration,
    rss_ready: u64,
    /// Since spawn: when /metrics first showed a full check of the whole mesh.
    metrics_current: Duration,
    /// Mean duration of the engine checks (finding_counts) counted so far.
    mean_check: Duration,
    rss_refreshed: u64,
    ist0101: usize,
    report: Duration,
    report_findings: usize,
    report_bytes: usize,
    rss_reported: u64,
    latencies: Vec<Duration>,
    rss_end: u64,
    rss_peak: u64,
    apiserver_rss: u64,
    etcd_rss: u64,
}

async fn measure(
    plan: &Plan,
    cp: &ControlPlane,
    client: &Client,
    operator: &mut Operator,
    namespaces: &[String],
) -> Result<Figures> {
    let ready = operator.wait_ready(plan.ready_timeout).await?;
    let rss_ready = operator.rss_kib("VmRSS")?;

    // The metrics loop checks every 2 s (or 10x the last check's duration) while anything changed,
    // so at 100k it has already counted checks of a half-loaded index by now. Wait for a check that
    // finished after ready and whose IST0101 count is the whole mesh's: the findings metrics are
    // current, and the RSS below includes what finding_counts costs on the full index.
    let checks_at_ready = admin_get(operator.port, "/metrics", Duration::from_secs(30))
        .map_or(0.0, |(_, body)| metric_sum(&body, CHECKS));
    let expected_faults = plan.virtual_services / FAULT_EVERY;
    let (metrics_current, metrics) = loop {
        if let Some((200, body)) = admin_get(operator.port, "/metrics", Duration::from_secs(30))
            && metric_sum(&body, CHECKS) > checks_at_ready
            && ist0101_count(&body) >= expected_faults
        {
            break (operator.started.elapsed(), body);
        }
        operator.ensure_running()?;
        ensure!(
            operator.started.elapsed() < ready + plan.ready_timeout,
            "the findings metrics never counted {expected_faults} IST0101"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let rss_refreshed = operator.rss_kib("VmRSS")?;
    let ist0101 = ist0101_count(&metrics);
    let checks = metric_sum(&metrics, CHECKS);
    let mean_check = Duration::from_secs_f64(
        metric_sum(&metrics, "mesh_engine_check_duration_seconds_sum") / checks.max(1.0),
    );

    let report_started = Instant::now();
    let Some((200, report)) = admin_get(operator.port, "/report", Duration::from_secs(600)) else {
        bail!("GET /report did not answer 200");
    };
    let report_took = report_started.elapsed();
    let rss_reported = operator.rss_kib("VmRSS")?;
    let report_json: serde_json::Value =
        serde_json::from_str(&report).context("the /report body is JSON")?;
    let report_findings = report_json["findings"].as_array().map_or(0, Vec::len);

    let latency_namespace = namespaces.first().context("at least one namespace")?;
    let meshservices: Api<MeshService> = Api::namespaced(client.clone(), latency_namespace);
    let mut latencies = Vec::new();
    for sample in 0..plan.latency_samples {
        latencies.push(meshservice_ready_latency(&meshservices, sample).await?);
    }
    let rss_end = operator.rss_kib("VmRSS")?;
    let rss_peak = operator.rss_kib("VmHWM")?;
    let pids = cp.pids();
    let rss_of = |pid: Option<u32>| pid.and_then(|pid| proc_status_kib(pid, "VmRSS").ok());
    Ok(Figures {
        ready,
        rss_ready,
        metrics_current,
        mean_check,
        rss_refreshed,
        ist0101,
        report: report_took,
        report_findings,
        report_bytes: report.len(),
        rss_reported,
        latencies,
        rss_end,
        rss_peak,
        apiserver_rss: rss_of(pids.apiserver).unwrap_or_default(),
        etcd_rss: rss_of(pids.etcd).unwrap_or_default(),
    })
}

/// Creates one mesh-internal MeshService (no gateway: a Service and a VirtualService) and times
/// until its status says Ready=True at its generation: watch event, engine check, two
/// server-side applies and the status write, all with the N objects in the index.
async fn meshservice_ready_latency(api: &Api<MeshService>, sample: usize) -> Result<Duration> {
    let name = format!("latency-{sample}");
    let meshservice: MeshService = serde_json::from_value(json!({
        "apiVersion": meshservice_api::API_VERSION, "kind": meshservice_api::KIND,
        "metadata": {"name": name},
        "spec": {"serviceName": name, "hosts": [format!("{name}.example.com")],
                 "ports": [{"port": 80, "targetPort": 8080}]},
    }))?;
    let started = Instant::now();
    api.create(&PostParams::default(), &meshservice).await?;
    loop {
        let current = api.get(&name).await?;
        if ready_at_generation(&current) {
            return Ok(started.elapsed());
        }
        ensure!(
            started.elapsed() < Duration::from_secs(120),
            "MeshService {name} not Ready within 120 s: {:?}",
            current.status
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn ready_at_generation(meshservice: &MeshService) -> bool {
    let generation = meshservice.metadata.generation;
    meshservice.status.as_ref().is_some_and(|status| {
        status.observed_generation == generation
            && status.conditions.iter().any(|c| {
                c.type_ == "Ready" && c.status == "True" && c.observed_generation == generation
            })
    })
}

/// Runs `count` creates, `IN_FLIGHT` at a time, and returns the rate in objects per second.
async fn create_all<F, Fut>(count: usize, create: F) -> Result<f64>
where
    F: Fn(usize) -> Fut,
    Fut: Future<Output = Result<()>>,
{
    let started = Instant::now();
    futures::stream::iter((0..count).map(create))
        .buffer_unordered(IN_FLIGHT)
        .try_collect::<()>()
        .await?;
    Ok(count as f64 / started.elapsed().as_secs_f64().max(f64::EPSILON))
}

fn istio_api(client: &Client, namespace: &str, kind: &str, plural: &str) -> Api<DynamicObject> {
    let kind = GroupVersionKind::gvk("networking.istio.io", "v1", kind);
    let resource = ApiResource::from_gvk_with_plural(&kind, plural);
    Api::namespaced_with(client.clone(), namespace, &resource)
}

fn host_of(i: usize) -> String {
    format!("app-{i}.example.com")
}

/// Gateway `gw-G` serves the hosts of VirtualServices G*10 .. G*10+9, with its own selector so
/// that no two Gateways conflict (IST0145).
async fn create_gateway(client: &Client, namespace: &str, group: usize) -> Result<()> {
    let hosts: Vec<String> = (group * PER_GATEWAY..(group + 1) * PER_GATEWAY)
        .map(host_of)
        .collect();
    let gateway: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "networking.istio.io/v1", "kind": "Gateway",
        "metadata": {"name": format!("gw-{group}")},
        "spec": {"selector": {"istio": format!("ingressgateway-{group}")},
                 "servers": [{"port": {"number": 80, "name": "http", "protocol": "HTTP"},
                              "hosts": hosts}]},
    }))?;
    create_retrying(
        &istio_api(client, namespace, "Gateway", "gateways"),
        &gateway,
    )
    .await
}

/// Headless: the harness's Service CIDR is a /24, far too small for N cluster IPs, and the index
/// only needs the name.
async fn create_service(client: &Client, namespace: &str, i: usize) -> Result<()> {
    let service: Service = serde_json::from_value(json!({
        "metadata": {"name": format!("app-{i}"), "labels": {"app": format!("app-{i}")}},
        "spec": {"clusterIP": "None", "selector": {"app": format!("app-{i}")},
                 "ports": [{"name": "http", "port": 80, "targetPort": 8080}]},
    }))?;
    create_retrying(&Api::namespaced(client.clone(), namespace), &service).await
}

async fn create_virtual_service(client: &Client, namespace: &str, i: usize) -> Result<()> {
    let destination = if i % FAULT_EVERY == FAULT_EVERY - 1 {
        format!("app-{i}-missing")
    } else {
        format!("app-{i}")
    };
    let virtual_service: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
        "metadata": {"name": format!("app-{i}")},
        "spec": {"hosts": [host_of(i)], "gateways": [format!("gw-{}", i / PER_GATEWAY)],
                 "http": [{"match": [{"uri": {"prefix": "/api"}}],
                           "route": [{"destination": {"host": destination, "port": {"number": 80}}}],
                           "timeout": "3s"}]},
    }))?;
    let api = istio_api(client, namespace, "VirtualService", "virtualservices");
    create_retrying(&api, &virtual_service).await
}

/// Creates `object`, retrying transient failures (an overloaded apiserver answers 429 or 5xx);
/// an object that already exists came from an earlier attempt whose answer was lost.
async fn create_retrying<K>(api: &Api<K>, object: &K) -> Result<()>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    let mut attempt = 0;
    loop {
        match api.create(&PostParams::default(), object).await {
            Ok(_) => return Ok(()),
            Err(kube::Error::Api(status)) if status.code == 409 => return Ok(()),
            Err(error) if attempt < 5 => {
                attempt += 1;
                eprintln!("create failed (attempt {attempt}), retrying: {error}");
                tokio::time::sleep(Duration::from_millis(200 * attempt)).await;
            }
            Err(error) => return Err(error.into()),
        }
    }
}

/// The operator process, SIGKILLed if dropped without [`Operator::terminate`].
struct Operator {
    child: Child,
    port: u16,
    started: Instant,
}

impl Operator {
    fn start(kubeconfig: &Path, log: &Path) -> Result<Operator> {
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let log = std::fs::File::create(log)?;
        let child = Command::new(BIN)
            .arg("run")
            .arg("--kubeconfig")
            .arg(kubeconfig)
            .args(["--admin-addr", &format!("127.0.0.1:{port}")])
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("starting the operator binary")?;
        Ok(Operator {
            child,
            port,
            started: Instant::now(),
        })
    }

    fn ensure_running(&mut self) -> Result<()> {
        if let Some(status) = self.child.try_wait()? {
            bail!("the operator exited early: {status}");
        }
        Ok(())
    }

    /// Polls /readyz until it answers 200; returns the time since the process was spawned.
    async fn wait_ready(&mut self, timeout: Duration) -> Result<Duration> {
        loop {
            if let Some((200, _)) = admin_get(self.port, "/readyz", Duration::from_secs(5)) {
                return Ok(self.started.elapsed());
            }
            self.ensure_running()?;
            ensure!(
                self.started.elapsed() < timeout,
                "/readyz not 200 within {timeout:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn rss_kib(&self, field: &str) -> Result<u64> {
        proc_status_kib(self.child.id(), field)
    }

    /// SIGTERM, then waits for the graceful exit; returns how long it took.
    fn terminate(&mut self) -> Result<Duration> {
        let pid = libc::pid_t::try_from(self.child.id())?;
        let sent = Instant::now();
        // SAFETY: kill(2) on our own unreaped child; no memory is shared.
        ensure!(
            unsafe { libc::kill(pid, libc::SIGTERM) } == 0,
            "SIGTERM failed"
        );
        loop {
            if let Some(status) = self.child.try_wait()? {
                ensure!(
                    status.success(),
                    "the operator exited with {status} on SIGTERM"
                );
                return Ok(sent.elapsed());
            }
            ensure!(
                sent.elapsed() < Duration::from_secs(30),
                "still running 30 s after SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A `VmRSS:`/`VmHWM:`-style line of /proc/PID/status, in KiB.
fn proc_status_kib(pid: u32, field: &str) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        .with_context(|| format!("{field} in /proc/{pid}/status"))
}

/// `(status code, body)` of `GET path` on the admin port, if it answers within `timeout`.
fn admin_get(port: u16, path: &str, timeout: Duration) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(timeout)).ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let (head, body) = response.split_once("\r\n\r\n")?;
    let code = head.split_whitespace().nth(1)?.parse().ok()?;
    Some((code, body.to_string()))
}

/// The engine checks counted in /metrics.
const CHECKS: &str = "mesh_engine_check_duration_seconds_count";

fn ist0101_count(exposition: &str) -> usize {
    exposition
        .lines()
        .filter(|line| line.starts_with("mesh_integrity_findings{") && line.contains("IST0101"))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as usize
}

/// Sum of every sample of `name` (all label sets) in a Prometheus text exposition.
fn metric_sum(exposition: &str, name: &str) -> f64 {
    exposition
        .lines()
        .filter(|line| {
            line.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with(' ') || rest.starts_with('{'))
        })
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// The `p`th percentile (nearest rank) of the samples.
fn percentile(samples: &[Duration], p: usize) -> Duration {
    let mut sorted = samples.to_vec();
    sorted.sort();
    let rank = (sorted.len() * p).div_ceil(100).max(1);
    sorted.get(rank - 1).copied().unwrap_or_default()
}

fn seconds(duration: Duration) -> String {
    format!("{:.2} s", duration.as_secs_f64())
}

fn millis(duration: Duration) -> String {
    format!("{:.0} ms", duration.as_secs_f64() * 1000.0)
}

fn megabytes(kib: u64) -> String {
    format!("{:.1} MB", kib as f64 / 1024.0)
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
