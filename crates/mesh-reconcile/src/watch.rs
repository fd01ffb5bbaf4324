//! The watches that feed the live index, the gate that says when every initial list is in, and
//! the trigger channels through which index changes requeue MeshServices.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use futures::StreamExt;
use kube::api::Api;
use kube::core::{DeserializeGuard, DynamicObject};
use kube::runtime::WatchStreamExt;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher::{self, Event};
use meshservice_api::MeshService;
use tokio::sync::{Notify, mpsc};
use tracing::{info, warn};

use crate::affect::MeshKey;
use crate::index::{LiveIndex, WatchedKind, log_event, object_value};

/// The reference by which the controller is asked to reconcile a MeshService.
pub type MeshRef = ObjectRef<DeserializeGuard<MeshService>>;

/// Objects of an initial list are handed to the engine in batches of this size: big enough to
/// amortise the SQLite transaction, small enough to keep the lock short and no list in memory.
const INIT_BATCH: usize = 500;

/// Tracks which watch streams have completed their first list.
#[derive(Debug, Default)]
pub struct SyncGate {
    pending: Mutex<HashSet<String>>,
    notify: Notify,
}

impl SyncGate {
    /// A gate waiting for the given streams.
    pub fn new(streams: impl IntoIterator<Item = String>) -> Self {
        Self {
            pending: Mutex::new(streams.into_iter().collect()),
            notify: Notify::new(),
        }
    }

    /// `stream` has listed everything once.
    pub fn synced(&self, stream: &str) {
        let now_empty = {
            let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
            pending.remove(stream) && pending.is_empty()
        };
        if now_empty {
            self.notify.notify_waiters();
        }
    }

    /// Whether every stream has listed once.
    pub fn is_synced(&self) -> bool {
        self.pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_empty()
    }

    /// Streams still listing.
    pub fn pending(&self) -> Vec<String> {
        let mut pending: Vec<String> = self
            .pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .cloned()
            .collect();
        pending.sort();
        pending
    }

    /// Waits until every stream has listed once.
    pub async fn wait(&self) {
        loop {
            let notified = self.notify.notified();
            if self.is_synced() {
                return;
            }
            notified.await;
        }
    }
}

/// Channels to the running controllers, one per watched scope (`None`: all namespaces).
#[derive(Debug, Default)]
pub struct Triggers {
    senders: Mutex<Vec<(Option<String>, mpsc::UnboundedSender<MeshRef>)>>,
}

impl Triggers {
    /// A new channel for the controller of `namespace` (`None`: cluster-wide).
    pub fn subscribe(&self, namespace: Option<String>) -> mpsc::UnboundedReceiver<MeshRef> {
        let (tx, rx) = mpsc::unbounded_channel();
        self.senders
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((namespace, tx));
        rx
    }

    /// Requeues the given MeshServices in whichever controller covers them. Without a running
    /// controller (standby replica, caches syncing) the triggers are dropped: a controller that
    /// starts reconciles everything anyway.
    pub fn fire(&self, keys: impl IntoIterator<Item = MeshKey>) {
        let mut senders = self.senders.lock().unwrap_or_else(|e| e.into_inner());
        senders.retain(|(_, tx)| !tx.is_closed());
        for (namespace, name) in keys {
            for (scope, tx) in senders.iter() {
                if scope.as_deref().is_none_or(|scope| scope == namespace) {
                    // Closed receivers were pruned above; a race with a stopping controller only
                    // loses a trigger that the next controller's initial reconcile covers.
                    let _ = tx.send(ObjectRef::new(&name).within(&namespace));
                }
            }
        }
    }
}

/// What one watch stream needs.
#[derive(Clone, Debug)]
pub struct WatchContext {
    /// The index it feeds.
    pub index: Arc<LiveIndex>,
    /// Where requeues go.
    pub triggers: Arc<Triggers>,
    /// Where it reports its first complete list.
    pub gate: Arc<SyncGate>,
    /// Raised when a watch ends: the index would silently go stale, so liveness fails and the
    /// kubelet restarts the process.
    pub broken: Arc<std::sync::atomic::AtomicBool>,
}

/// The name of the watch stream of `kind` in `namespace` (`None`: all namespaces).
pub fn stream_name(kind: WatchedKind, namespace: Option<&str>) -> String {
    match namespace {
        Some(namespace) => format!("{}@{namespace}", kind.kind()),
        None => kind.kind().to_string(),
    }
}

/// Feeds the index from one watch until the stream ends (never, in practice: kube's watcher
/// retries with backoff). Objects that do not decode even as untyped objects are logged and
/// counted, and the stream goes on.
pub async fn run_watch(
    ctx: WatchContext,
    kind: WatchedKind,
    api: Api<DeserializeGuard<DynamicObject>>,
    config: watcher::Config,
    stream: String,
) {
    // Keys of the objects this stream currently holds in the index: after a relist, those not
    // listed again were deleted while the watch was down.
    let mut known: HashSet<(String, String)> = HashSet::new();
    let mut listed: HashSet<(String, String)> = HashSet::new();
    let mut batch: Vec<serde_json::Value> = Vec::new();
    let mut first_list_done = false;

    let events = watcher::watcher(api, config).default_backoff();
    futures::pin_mut!(events);
    while let Some(event) = events.next().await {
        let event = match event {
            Ok(event) => event,
            Err(error) => {
                if !first_list_done && not_served(&error) {
                    // The kind is not installed (an Istio without ServiceEntry, say): the index
                    // holds none of it, which is the truth. Readiness must not wait for it; the
                    // watch keeps retrying and picks the kind up once it is installed.
                    warn!(stream, %error, "kind not served; counting it as listed (empty)");
                    ctx.gate.synced(&stream);
                } else {
                    warn!(stream, %error, "watch failed; retrying with backoff");
                }
                continue;
            }
        };
        match event {
            Event::Init => {
                listed.clear();
                batch.clear();
            }
            Event::InitApply(object) => {
                if let Some((id, value)) = decode(&ctx, kind, &stream, object) {
                    listed.insert(id);
                    batch.push(value);
                    if batch.len() >= INIT_BATCH {
                        ctx.index.apply_batch(kind, std::mem::take(&mut batch));
                    }
                }
            }
            Event::InitDone => {
                ctx.index.apply_batch(kind, std::mem::take(&mut batch));
                let gone: Vec<(String, String)> = known.difference(&listed).cloned().collect();
                ctx.index.delete_keys(kind, &gone);
                known = std::mem::take(&mut listed);
                ctx.index.set_count(&stream, kind, known.len());
                if first_list_done {
                    // A relist may hide any number of changes: requeue every MeshService.
                    info!(
                        stream,
                        objects = known.len(),
                        removed = gone.len(),
                        "relisted"
                    );
                    ctx.triggers.fire(ctx.index.meshservice_keys());
                } else {
                    info!(stream, objects = known.len(), "initial list in the index");
                    first_list_done = true;
                    ctx.gate.synced(&stream);
                }
            }
            Event::Apply(object) => {
                if let Some((id, value)) = decode(&ctx, kind, &stream, object) {
                    let affected = ctx.index.apply(kind, value);
                    log_event(&stream, "apply", &id.0, &id.1, affected.len());
                    known.insert(id);
                    ctx.index.set_count(&stream, kind, known.len());
                    ctx.triggers.fire(affected);
                }
            }
            Event::Delete(object) => {
                if let Some((id, value)) = decode(&ctx, kind, &stream, object) {
                    let affected = ctx.index.delete(kind, &value);
                    log_event(&stream, "delete", &id.0, &id.1, affected.len());
                    known.remove(&id);
                    ctx.index.set_count(&stream, kind, known.len());
                    ctx.triggers.fire(affected);
                }
            }
        }
    }
    tracing::error!(
        stream,
        "watch stream ended; the index goes stale, /healthz now fails"
    );
    ctx.broken.store(true, std::sync::atomic::Ordering::Relaxed);
}

/// Whether a watch error means the resource does not exist on the server (404).
fn not_served(error: &watcher::Error) -> bool {
    match error {
        watcher::Error::InitialListFailed(kube::Error::Api(status))
        | watcher::Error::WatchStartFailed(kube::Error::Api(status)) => status.is_not_found(),
        _ => false,
    }
}

fn decode(
    ctx: &WatchContext,
    kind: WatchedKind,
    stream: &str,
    object: DeserializeGuard<DynamicObject>,
) -> Option<((String, String), serde_json::Value)> {
    match object.0 {
        Ok(object) => {
            let id = (
                object.metadata.namespace.clone().unwrap_or_default(),
                object.metadata.name.clone().unwrap_or_default(),
            );
            match object_value(kind, object) {
                Ok(value) => Some((id, value)),
                Err(error) => {
                    warn!(stream, namespace = id.0, name = id.1, %error, "object does not serialise");
                    None
                }
            }
        }
        Err(invalid) => {
            // Not even untyped: its metadata is malformed. Nothing can be projected.
            warn!(
                stream,
                namespace = invalid.metadata.namespace.as_deref().unwrap_or_default(),
                name = invalid.metadata.name.as_deref().unwrap_or_default(),
                error = %invalid.error,
                "object does not decode; skipped"
            );
            ctx.index
                .record_undecodable(kind, &invalid.metadata, &invalid.error);
            None
        }
    }
}
