//! The reconcile loop, and the only crate that talks to the Kubernetes API: it watches MeshServices
//! and the Istio and Kubernetes objects around them, feeds every event into the integrity engine,
//! applies what the renderer produces with server-side apply, repairs drift of what it owns and
//! reports status, Events and metrics.
//!
//! [`run`] is the whole operator: the binary maps its flags to a [`Config`] and calls it.
//!
//! ```text
//!  watches (7 kinds, per scope) ──► LiveIndex (engine + interests) ──► Triggers ──┐
//!                                        ▲                                          ▼
//!  Controller<MeshService> ── reconcile ─┴─ render ─ SSA children ─ status ─ Events
//!  admin server: /healthz /readyz /metrics /report        Lease: only the leader runs controllers
//! ```

pub mod admin;
pub mod affect;
pub mod backoff;
pub mod drift;
mod error;
pub mod index;
pub mod metrics;
pub mod reconcile;
pub mod selector;
pub mod status;
pub mod watch;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use futures::{FutureExt, StreamExt};
use istio_render::GatewayOptions;
use kube::Client;
use kube::api::{Api, ListParams};
use kube::core::{DeserializeGuard, DynamicObject};
use kube::runtime::controller::{self, Controller};
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::watcher;
use kube_lease_manager::LeaseManagerBuilder;
use meshservice_api::{MeshService, ownership};
use tokio::net::TcpListener;
use tokio::sync::watch as signal;
use tracing::{debug, info, warn};

pub use crate::backoff::BackoffPolicy;
pub use crate::error::{Error, Result};

use crate::backoff::Backoffs;
use crate::index::{LiveIndex, WatchedKind};
use crate::metrics::Metrics;
use crate::reconcile::{Context, ReconcileSettings};
use crate::watch::{SyncGate, Triggers, WatchContext, run_watch, stream_name};

/// The name the operator reports Events under and the default Lease name.
pub const CONTROLLER_NAME: &str = "istio-integrity-operator";

/// Leader election with a `coordination.k8s.io` Lease.
#[derive(Clone, Debug)]
pub struct LeaderElection {
    /// Namespace of the Lease.
    pub namespace: String,
    /// Name of the Lease.
    pub lease_name: String,
    /// How long a lease is valid after its last renewal, in seconds.
    pub lease_duration_seconds: u64,
    /// How long before expiry the holder renews, in seconds.
    pub renew_grace_seconds: u64,
}

/// Everything the operator can be told.
#[derive(Clone, Debug)]
pub struct Config {
    /// Watch only these namespaces (empty: all). Gateways referenced across namespaces are only
    /// seen if their namespace is listed too; otherwise the MeshService's status names the
    /// namespace to add (`GatewayNamespaceNotWatched`).
    pub namespaces: Vec<String>,
    /// Reconcile only MeshServices matching this label selector. Every MeshService in scope is
    /// still watched into the index (a managed Gateway aggregates all its contributors, whatever
    /// shard they are in).
    pub selector: Option<String>,
    /// Name of this shard: its finalizer is `mesh.istio.operator/cleanup-<shard>`. `None` with a
    /// selector: derived from the selector (see [`Config::shard_name`]).
    pub shard: Option<String>,
    /// Repair drift of owned objects (`false`: report it only).
    pub repair: bool,
    /// Leader election; `None`: this replica always leads.
    pub leader_election: Option<LeaderElection>,
    /// Settings of managed Gateways (workload selector).
    pub gateway_options: GatewayOptions,
    /// MeshServices reconciled in parallel.
    pub concurrency: u16,
    /// Requeue period of a healthy MeshService (a safety net under the watches).
    pub resync: Duration,
    /// Backoff of failing reconciles.
    pub backoff: BackoffPolicy,
    /// This replica's identity: Event reporter instance and Lease holder.
    pub identity: String,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            namespaces: Vec::new(),
            selector: None,
            shard: None,
            repair: true,
            leader_election: None,
            gateway_options: GatewayOptions::default(),
            concurrency: 4,
            resync: Duration::from_secs(300),
            backoff: BackoffPolicy::default(),
            identity: CONTROLLER_NAME.to_string(),
        }
    }
}

impl Config {
    /// This instance's shard: `shard` as given, else, with a selector, `s` and a stable hash of
    /// the selector (whitespace ignored), else none (unsharded). Naming the shard explicitly keeps
    /// its finalizer when the selector changes across a redeploy.
    pub fn shard_name(&self) -> Option<String> {
        self.shard.clone().or_else(|| {
            self.selector.as_ref().map(|selector| {
                let normalised: String = selector.chars().filter(|c| !c.is_whitespace()).collect();
                format!("s{:016x}", fnv1a(normalised.as_bytes()))
            })
        })
    }

    /// The finalizer this instance adds to the MeshServices it reconciles.
    pub fn finalizer(&self) -> Result<String> {
        if let Some(shard) = self.shard_name() {
            let valid = !shard.is_empty()
                && shard.len() <= ownership::MAX_SHARD_NAME
                && shard
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
                && !shard.starts_with('-')
                && !shard.ends_with('-');
            if !valid {
                return Err(Error::InvalidConfig(format!(
                    "shard name {shard:?}: at most {} lower-case letters, digits and '-', not at either end",
                    ownership::MAX_SHARD_NAME
                )));
            }
        }
        Ok(ownership::finalizer(self.shard_name().as_deref()))
    }
}

/// FNV-1a, 64 bits: a hash that is the same in every build, unlike std's `DefaultHasher`.
pub(crate) fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// Runs the operator until SIGTERM or SIGINT, with the admin server on `admin_addr`.
pub async fn run(client: Client, config: Config, admin_addr: SocketAddr) -> Result<()> {
    let listener = TcpListener::bind(admin_addr).await.map_err(Error::Admin)?;
    run_until(client, config, listener, shutdown_signal()).await
}

/// Completes on the first SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c().map(|_| ());
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut terminate) => {
                tokio::select! {
                    _ = interrupt => {},
                    _ = terminate.recv() => {},
                }
            }
            Err(error) => {
                warn!(%error, "cannot listen for SIGTERM; only SIGINT stops the operator");
                interrupt.await;
            }
        }
    }
    #[cfg(not(unix))]
    interrupt.await;
    info!("shutdown requested");
}

/// Runs the operator with the admin server on `listener` until `shutdown` completes; returns
/// once every task has stopped (the Lease, if held, released).
pub async fn run_until(
    client: Client,
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let selector = config
        .selector
        .as_deref()
        .map(selector::LabelSelector::parse)
        .transpose()
        .map_err(|error| Error::InvalidConfig(error.to_string()))?;
    let finalizer = config.finalizer()?;
    info!(
        selector = config.selector.as_deref().unwrap_or("(all)"),
        finalizer, "reconciling the selected MeshServices, watching all of them"
    );
    check_crd(&client, &config).await?;

    let metrics = Arc::new(Metrics::new());
    let index = Arc::new(LiveIndex::new(metrics.clone())?);
    let triggers = Arc::new(Triggers::default());
    let streams = watch_streams(&config);
    let gate = Arc::new(SyncGate::new(streams.iter().map(|s| s.name.clone())));

    let (stop_tx, stop_rx) = signal::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    });

    let broken = Arc::new(AtomicBool::new(false));
    let admin_state = admin::AdminState {
        metrics: metrics.clone(),
        index: index.clone(),
        gate: gate.clone(),
        broken: broken.clone(),
    };
    info!(addr = ?listener.local_addr().ok(), "admin server listening");
    let mut admin = AbortOnDrop(vec![tokio::spawn(admin::serve(
        listener,
        admin_state,
        stopped(stop_rx.clone()),
    ))]);

    let watch_ctx = WatchContext {
        index: index.clone(),
        triggers: triggers.clone(),
        gate: gate.clone(),
        broken,
    };
    // Aborted when this future is dropped too (an embedding that aborts the operator's task
    // must not leave watches feeding a dead index).
    let mut background = AbortOnDrop(Vec::new());
    for stream in streams {
        background.0.push(tokio::spawn(run_watch(
            watch_ctx.clone(),
            stream.kind,
            stream.api(&client),
            stream.config,
            stream.name,
        )));
    }
    background
        .0
        .push(tokio::spawn(refresh_metrics_loop(index.clone())));

    let result = async {
        let stop = stop_rx.clone();
        tokio::select! {
            _ = gate.wait() => info!("every initial list is in the integrity index; ready"),
            _ = stopped(stop.clone()) => return Ok(()),
        }
        let recorder = Recorder::new(
            client.clone(),
            Reporter {
                controller: CONTROLLER_NAME.into(),
                instance: Some(config.identity.clone()),
            },
        );
        let ctx = Arc::new(Context::new(
            client.clone(),
            index.clone(),
            metrics.clone(),
            recorder,
            Backoffs::new(config.backoff),
            ReconcileSettings {
                repair: config.repair,
                gateway_options: config.gateway_options.clone(),
                resync: config.resync,
                selector,
                finalizer,
                namespaces: config.namespaces.clone(),
            },
        ));
        match &config.leader_election {
            None => {
                metrics.set_leader(true);
                run_controllers(ctx, &config, &triggers, stop_rx.clone()).await;
                Ok(())
            }
            Some(election) => {
                lead_when_elected(ctx, &config, election, &triggers, stop_rx.clone()).await
            }
        }
    }
    .await;

    drop(background);
    if let Some(admin) = admin.0.pop() {
        match admin.await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => warn!(%error, "admin server failed"),
            Err(error) => warn!(%error, "admin server task failed"),
        }
    }
    info!("stopped");
    result
}

/// Tasks aborted when dropped.
struct AbortOnDrop<T>(Vec<tokio::task::JoinHandle<T>>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        for task in &self.0 {
            task.abort();
        }
    }
}

/// A future that completes when the stop flag is raised (or its sender is gone).
async fn stopped(mut stop: signal::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

async fn check_crd(client: &Client, config: &Config) -> Result<()> {
    let api: Api<MeshService> = match config.namespaces.first() {
        Some(namespace) => Api::namespaced(client.clone(), namespace),
        None => Api::all(client.clone()),
    };
    api.list_metadata(&ListParams::default().limit(1))
        .await
        .map(|_| ())
        .map_err(Error::CrdMissing)
}

/// One watch feeding the index.
struct StreamSpec {
    kind: WatchedKind,
    namespace: Option<String>,
    config: watcher::Config,
    name: String,
}

impl StreamSpec {
    fn api(&self, client: &Client) -> Api<DeserializeGuard<DynamicObject>> {
        let resource = self.kind.api_resource();
        match (&self.namespace, self.kind.namespaced()) {
            (Some(namespace), true) => Api::namespaced_with(client.clone(), namespace, &resource),
            _ => Api::all_with(client.clone(), &resource),
        }
    }
}

fn watch_streams(config: &Config) -> Vec<StreamSpec> {
    let scopes: Vec<Option<String>> = if config.namespaces.is_empty() {
        vec![None]
    } else {
        config.namespaces.iter().cloned().map(Some).collect()
    };
    let mut streams = Vec::new();
    for kind in WatchedKind::ALL {
        for scope in &scopes {
            // No label selector even on MeshServices: a managed Gateway aggregates every
            // contributor, and two shards must render it alike or they fight over it.
            let mut watch_config = watcher::Config::default();
            if kind == WatchedKind::Namespace
                && let Some(namespace) = scope
            {
                // Namespaces are cluster-scoped: in a scoped run, watch just the listed ones.
                watch_config = watch_config.fields(&format!("metadata.name={namespace}"));
            }
            streams.push(StreamSpec {
                kind,
                namespace: scope.clone(),
                config: watch_config,
                name: stream_name(kind, scope.as_deref()),
            });
        }
    }
    streams
}

async fn refresh_metrics_loop(index: Arc<LiveIndex>) {
    let mut pause = Duration::from_secs(2);
    loop {
        tokio::time::sleep(pause).await;
        let index = index.clone();
        if let Ok(Some(took)) = tokio::task::spawn_blocking(move || index.refresh_metrics()).await {
            // A big mesh makes checks slow: never spend more than a tenth of the time checking.
            pause = (took * 10).max(Duration::from_secs(2));
        }
    }
}

/// Runs one controller per scope until `stop` is raised, then drains them gracefully.
async fn run_controllers(
    ctx: Arc<Context>,
    config: &Config,
    triggers: &Triggers,
    stop: signal::Receiver<bool>,
) {
    let scopes: Vec<Option<String>> = if config.namespaces.is_empty() {
        vec![None]
    } else {
        config.namespaces.iter().cloned().map(Some).collect()
    };
    let mut stoppers = Vec::new();
    let mut controllers = Vec::new();
    for scope in scopes {
        let api: Api<DeserializeGuard<MeshService>> = match &scope {
            Some(namespace) => Api::namespaced(ctx.client.clone(), namespace),
            None => Api::all(ctx.client.clone()),
        };
        // Every MeshService, selected or not: one that stops matching while it carries this
        // instance's finalizer must be seen, to be released (reconcile filters by the selector).
        let watch_config = watcher::Config::default();
        let requeues = triggers.subscribe(scope.clone());
        let requeues = futures::stream::unfold(requeues, |mut rx| async move {
            rx.recv().await.map(|item| (item, rx))
        });
        // kube wants a Sync shutdown future; a oneshot receiver is one.
        let (stop_tx, stop_rx) = futures::channel::oneshot::channel::<()>();
        stoppers.push(stop_tx);
        let controller = Controller::new(api, watch_config)
            .with_config(controller::Config::default().concurrency(config.concurrency))
            .reconcile_on(requeues)
            .graceful_shutdown_on(stop_rx.map(|_| ()))
            .run(reconcile::reconcile, reconcile::error_policy, ctx.clone())
            .for_each(|result| async move {
                match result {
                    Ok((object, _)) => debug!(%object, "reconciled"),
                    // Reconcile errors are logged and counted by the error policy.
                    Err(controller::Error::ReconcilerFailed(..)) => {}
                    Err(error) => debug!(%error, "controller event"),
                }
            });
        controllers.push(controller);
    }
    info!(controllers = controllers.len(), "controllers started");
    let all = futures::future::join_all(controllers);
    futures::pin_mut!(all);
    tokio::select! {
        _ = &mut all => {}
        _ = stopped(stop.clone()) => {
            for stopper in stoppers {
                let _ = stopper.send(());
            }
            all.await;
        }
    }
    info!("controllers stopped");
}

/// Runs the controllers only while this replica holds the Lease.
async fn lead_when_elected(
    ctx: Arc<Context>,
    config: &Config,
    election: &LeaderElection,
    triggers: &Triggers,
    shutdown: signal::Receiver<bool>,
) -> Result<()> {
    let manager = LeaseManagerBuilder::new(ctx.client.clone(), &election.lease_name)
        .with_namespace(&election.namespace)
        .with_identity(&config.identity)
        .with_duration(election.lease_duration_seconds)
        .with_grace(election.renew_grace_seconds)
        .with_field_manager(format!("{}-lease", ownership::FIELD_MANAGER))
        .build()
        .await?;
    let (mut leading, lease_task) = manager.watch().await;
    loop {
        info!(lease = election.lease_name, "waiting for leadership");
        tokio::select! {
            elected = leading.wait_for(|l| *l).map(|r| r.is_ok()) => if !elected { break },
            _ = stopped(shutdown.clone()) => break,
        }
        info!(lease = election.lease_name, "leading");
        ctx.metrics.set_leader(true);
        let (stop_tx, stop_rx) = signal::channel(false);
        let deposed = async {
            tokio::select! {
                _ = leading.wait_for(|l| !*l).map(|_| ()) => info!("leadership lost"),
                _ = stopped(shutdown.clone()) => {},
            }
            let _ = stop_tx.send(true);
        };
        tokio::join!(
            run_controllers(ctx.clone(), config, triggers, stop_rx),
            deposed
        );
        ctx.metrics.set_leader(false);
        let shutting_down = *shutdown.borrow();
        if shutting_down {
            break;
        }
    }
    // Dropping the receiver makes the lease task release the Lease and end.
    drop(leading);
    match lease_task.await {
        Ok(Ok(_)) => info!("lease released"),
        Ok(Err(error)) => warn!(%error, "releasing the lease failed"),
        Err(error) => warn!(%error, "lease task failed"),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(selector: Option<&str>, shard: Option<&str>) -> Config {
        Config {
            selector: selector.map(str::to_string),
            shard: shard.map(str::to_string),
            ..Config::default()
        }
    }

    #[test]
    fn an_unsharded_instance_keeps_the_historical_finalizer() {
        assert_eq!(
            config(None, None).finalizer().ok(),
            Some(ownership::FINALIZER.to_string())
        );
    }

    #[test]
    fn a_named_shard_keeps_its_finalizer_whatever_its_selector() {
        let before = config(Some("team=a"), Some("team-a")).finalizer().ok();
        let after = config(Some("team in (a,c)"), Some("team-a"))
            .finalizer()
            .ok();
        assert_eq!(
            before,
            Some("mesh.istio.operator/cleanup-team-a".to_string())
        );
        assert_eq!(after, before);
    }

    #[test]
    fn an_unnamed_shard_is_named_after_its_selector_stably() {
        let spaced = config(Some("team in (a, b)"), None).finalizer().ok();
        let compact = config(Some("team in (a,b)"), None).finalizer().ok();
        let other = config(Some("team=c"), None).finalizer().ok();
        assert_eq!(spaced, compact, "whitespace does not matter");
        assert_ne!(spaced, other);
    }

    #[test]
    fn the_selector_hash_is_fnv1a_so_a_rebuild_keeps_the_name() {
        // The published FNV-1a 64 test vectors.
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a(b"foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn a_shard_name_that_cannot_be_a_finalizer_is_refused() {
        for bad in [
            "Team",
            "-a",
            "a-",
            "a/b",
            &"x".repeat(ownership::MAX_SHARD_NAME + 1),
        ] {
            assert!(
                matches!(
                    config(Some("team=a"), Some(bad)).finalizer(),
                    Err(Error::InvalidConfig(_))
                ),
                "{bad:?} accepted"
            );
        }
    }
}
