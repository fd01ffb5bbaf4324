//! `istio-integrity-operator run`: flags to [`mesh_reconcile::Config`], logging, the Kubernetes
//! client, and the runtime. The operator itself is `mesh_reconcile::run`.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Args, ValueEnum};
use mesh_reconcile::{CONTROLLER_NAME, Config, LeaderElection};

/// Flags of `run`.
#[derive(Args, Debug)]
pub struct RunArgs {
    /// Kubeconfig file. Default: in-cluster config, else $KUBECONFIG, else ~/.kube/config.
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
    /// Kubeconfig context. Default: the current context.
    #[arg(long)]
    context: Option<String>,
    /// Watch only this namespace (repeatable). Default: all namespaces. List the namespaces of
    /// referenced Gateways too: a MeshService whose Gateway is elsewhere gets ResolvedRefs=False,
    /// reason GatewayNamespaceNotWatched, naming the namespace to add.
    #[arg(long = "namespace", short = 'n', value_name = "NAMESPACE")]
    namespaces: Vec<String>,
    /// Reconcile only MeshServices matching this label selector (`team=a`, `tier in (web)`).
    /// Every MeshService is still watched: a managed Gateway aggregates all its contributors.
    #[arg(long, short = 'l')]
    selector: Option<String>,
    /// Name of this shard (with --selector): its finalizer is mesh.istio.operator/cleanup-<shard>.
    /// Default: derived from the selector; name it to keep the finalizer when the selector changes.
    #[arg(long, requires = "selector")]
    shard: Option<String>,
    /// Repair drift of owned objects (`off`: report drift only, in status, Events and metrics).
    #[arg(long, value_enum, default_value_t = Switch::On)]
    repair: Switch,
    /// Only the holder of a Lease writes; other replicas watch, serve /report and wait.
    #[arg(long)]
    leader_elect: bool,
    /// Name of the leader Lease.
    #[arg(long, default_value = CONTROLLER_NAME)]
    leader_elect_lease: String,
    /// Namespace of the leader Lease. Default: $POD_NAMESPACE, else `default`.
    #[arg(long)]
    leader_elect_namespace: Option<String>,
    /// Lease duration in seconds.
    #[arg(long, default_value_t = 15)]
    leader_elect_duration: u64,
    /// Address of the admin server (/healthz, /readyz, /metrics, /report).
    #[arg(long, default_value = "0.0.0.0:8080")]
    admin_addr: SocketAddr,
    /// Log format.
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    /// MeshServices reconciled in parallel.
    #[arg(long, default_value_t = 4)]
    concurrency: u16,
    /// This replica's identity (Event reporter, Lease holder). Default: $POD_NAME, else the
    /// host name, else a process-unique name.
    #[arg(long)]
    identity: Option<String>,
}

/// `on` or `off`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Switch {
    On,
    Off,
}

/// `text` or `json`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

/// Runs the operator until SIGTERM or SIGINT.
pub fn run(args: RunArgs) -> anyhow::Result<()> {
    init_logging(args.log_format);
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(async move {
        let client = client(&args).await?;
        let admin_addr = args.admin_addr;
        mesh_reconcile::run(client, config(args), admin_addr)
            .await
            .context("the operator stopped with an error")
    })
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}

async fn client(args: &RunArgs) -> anyhow::Result<kube::Client> {
    let options = kube::config::KubeConfigOptions {
        context: args.context.clone(),
        ..Default::default()
    };
    let config = match &args.kubeconfig {
        Some(path) => {
            let kubeconfig = kube::config::Kubeconfig::read_from(path)
                .with_context(|| format!("reading kubeconfig {}", path.display()))?;
            kube::Config::from_custom_kubeconfig(kubeconfig, &options).await?
        }
        None if args.context.is_some() => kube::Config::from_kubeconfig(&options).await?,
        None => kube::Config::infer()
            .await
            .context("no in-cluster config and no usable kubeconfig")?,
    };
    kube::Client::try_from(config).context("building the Kubernetes client")
}

fn config(args: RunArgs) -> Config {
    let identity = args
        .identity
        .or_else(|| std::env::var("POD_NAME").ok())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| format!("{CONTROLLER_NAME}-{}", std::process::id()));
    let leader_election = args.leader_elect.then(|| LeaderElection {
        namespace: args
            .leader_elect_namespace
            .or_else(|| std::env::var("POD_NAMESPACE").ok())
            .unwrap_or_else(|| "default".into()),
        lease_name: args.leader_elect_lease,
        lease_duration_seconds: args.leader_elect_duration.max(2),
        // Renew a third of the way before expiry, at least a second.
        renew_grace_seconds: (args.leader_elect_duration / 3).max(1),
    });
    Config {
        namespaces: args.namespaces,
        selector: args.selector,
        shard: args.shard,
        repair: args.repair == Switch::On,
        leader_election,
        concurrency: args.concurrency.max(1),
        identity,
        ..Config::default()
    }
}
