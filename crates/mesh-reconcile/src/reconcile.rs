//! Reconciling one MeshService: render it, decide its claims with the engine, apply its Service,
//! VirtualService and managed Gateway with server-side apply, repair drift, write its status and
//! publish Events on transitions. Cleanup (behind the finalizer) removes its hosts from a shared
//! Gateway; ownerReference garbage collection removes the rest.

use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeSet, HashMap};
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use istio_render::{
    Contribution, GatewayKey, GatewayOptions, GatewayPlan, RenderInput, render_gateway,
    render_meshservice,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::core::{ApiResource, DeserializeGuard, DynamicObject};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event as KubeEvent, EventType, Recorder};
use kube::runtime::finalizer::{Event as FinalizerEvent, finalizer};
use kube::{Client, Resource, ResourceExt};
use meshservice_api::{ManagedResource, MeshService, MeshServiceStatus, ownership};
use serde_json::{Value, json};
use tracing::{debug, info, warn};

use crate::affect::MeshKey;
use crate::backoff::Backoffs;
use crate::drift;
use crate::error::{Error, Result};
use crate::index::{LiveIndex, WatchedKind};
use crate::metrics::Metrics;
use crate::selector::LabelSelector;
use crate::status::{
    self, ApplyOutcome, DesiredCondition, MeshFinding, Status, code, reason, state,
};

/// Settings of the reconciler.
#[derive(Clone, Debug)]
pub struct ReconcileSettings {
    /// Repair drift of owned objects (`--repair=on`); off: report it only.
    pub repair: bool,
    /// Settings of managed Gateways.
    pub gateway_options: GatewayOptions,
    /// Requeue of a healthy MeshService, a safety net under the watches.
    pub resync: Duration,
    /// `--selector`: the MeshServices this instance reconciles (`None`: all it watches).
    pub selector: Option<LabelSelector>,
    /// This instance's finalizer ([`ownership::finalizer`] of its shard): it adds and removes
    /// only this one, so shards never take each other's away.
    pub finalizer: String,
    /// `--namespace`: the namespaces watched (empty: all).
    pub namespaces: Vec<String>,
}

impl ReconcileSettings {
    /// Whether objects in `namespace` are watched (and, with the shipped RBAC, writable).
    pub fn watches(&self, namespace: &str) -> bool {
        self.namespaces.is_empty() || self.namespaces.iter().any(|n| n == namespace)
    }

    /// Whether this instance reconciles `meshservice`.
    pub fn selects(&self, meshservice: &MeshService) -> bool {
        self.selector
            .as_ref()
            .is_none_or(|selector| selector.matches(meshservice.labels()))
    }
}

/// Everything a reconcile needs.
pub struct Context {
    /// The API client.
    pub client: Client,
    /// The live integrity index.
    pub index: Arc<LiveIndex>,
    /// The metrics.
    pub metrics: Arc<Metrics>,
    /// Publishes Kubernetes Events.
    pub recorder: Recorder,
    /// Failure counts per MeshService.
    pub backoffs: Backoffs<MeshKey>,
    /// Settings.
    pub settings: ReconcileSettings,
    /// Hash of the JSON last applied per child, to tell drift (the live object lost what we
    /// applied) from change (we now render something else).
    last_applied: Mutex<HashMap<String, u64>>,
    /// Serialises the writes of managed Gateways: each write carries the whole aggregate, so two
    /// contributors rendering concurrently must not interleave.
    gateway_writes: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl Context {
    /// A context for the controllers.
    pub fn new(
        client: Client,
        index: Arc<LiveIndex>,
        metrics: Arc<Metrics>,
        recorder: Recorder,
        backoffs: Backoffs<MeshKey>,
        settings: ReconcileSettings,
    ) -> Self {
        Self {
            client,
            index,
            metrics,
            recorder,
            backoffs,
            settings,
            last_applied: Mutex::new(HashMap::new()),
            gateway_writes: tokio::sync::Mutex::new(()),
        }
    }

    fn remember_applied(&self, child: &str, hash: u64) {
        self.last_applied
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(child.to_string(), hash);
    }

    fn last_applied(&self, child: &str) -> Option<u64> {
        self.last_applied
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(child)
            .copied()
    }

    fn forget_applied(&self, child: &str) {
        self.last_applied
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(child);
    }

    async fn publish(
        &self,
        meshservice: &MeshService,
        type_: EventType,
        reason: &str,
        note: String,
    ) {
        let event = KubeEvent {
            type_,
            reason: reason.to_string(),
            // Events are capped at 1 kB of note.
            note: Some(truncate(note, 1000)),
            action: "Reconcile".to_string(),
            secondary: None,
        };
        if let Err(error) = self
            .recorder
            .publish(&event, &meshservice.object_ref(&()))
            .await
        {
            // Events are informative; failing to publish one must not fail the reconcile.
            warn!(%error, reason, "publishing an Event failed");
        }
    }
}

fn truncate(mut text: String, max: usize) -> String {
    if text.len() > max {
        let mut cut = max;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
    }
    text
}

fn display_key(key: &MeshKey) -> String {
    ownership::owner_key(&key.0, &key.1)
}

/// The controller's reconcile function.
pub async fn reconcile(
    object: Arc<DeserializeGuard<MeshService>>,
    ctx: Arc<Context>,
) -> Result<Action> {
    let started = Instant::now();
    let meshservice = match &object.0 {
        Ok(meshservice) => Arc::new(meshservice.clone()),
        Err(invalid) => {
            // The index recorded it as a finding; nothing can be rendered from it, and retrying
            // will not make it decode. Its next change triggers a new attempt.
            warn!(
                namespace = invalid.metadata.namespace.as_deref().unwrap_or_default(),
                name = invalid.metadata.name.as_deref().unwrap_or_default(),
                error = %invalid.error,
                "MeshService does not decode; not reconciled"
            );
            ctx.metrics.reconciled("success", started.elapsed());
            return Ok(Action::await_change());
        }
    };
    let key = (
        meshservice.namespace().unwrap_or_default(),
        meshservice.name_any(),
    );
    let api: Api<MeshService> = Api::namespaced(ctx.client.clone(), &key.0);
    if !ctx.settings.selects(&meshservice) {
        let holds_ours = meshservice
            .finalizers()
            .iter()
            .any(|f| *f == ctx.settings.finalizer);
        if !holds_ours {
            // Another shard's (or nobody's): watched for the index, never written.
            return Ok(Action::await_change());
        }
        let result = release(&api, meshservice, &ctx).await;
        match &result {
            Ok(_) => {
                ctx.backoffs.succeeded(&key);
                ctx.metrics.reconciled("success", started.elapsed());
            }
            Err(_) => ctx.metrics.reconciled("error", started.elapsed()),
        }
        return result;
    }
    let result = finalizer(&api, &ctx.settings.finalizer, meshservice, |event| async {
        match event {
            FinalizerEvent::Apply(meshservice) => apply(meshservice, ctx.clone()).await,
            FinalizerEvent::Cleanup(meshservice) => cleanup(meshservice, ctx.clone()).await,
        }
    })
    .await
    .map_err(|error| match error {
        // Unwrap our own errors so the metric label says what failed.
        kube::runtime::finalizer::Error::ApplyFailed(inner)
        | kube::runtime::finalizer::Error::CleanupFailed(inner) => inner,
        other => Error::Finalizer(Box::new(other)),
    });
    match &result {
        Ok(_) => {
            ctx.backoffs.succeeded(&key);
            ctx.metrics.reconciled("success", started.elapsed());
        }
        Err(_) => ctx.metrics.reconciled("error", started.elapsed()),
    }
    result
}

/// The controller's error policy: per-object exponential backoff.
pub fn error_policy(
    object: Arc<DeserializeGuard<MeshService>>,
    error: &Error,
    ctx: Arc<Context>,
) -> Action {
    let key = (object.namespace().unwrap_or_default(), object.name_any());
    let delay = ctx.backoffs.failed(&key);
    ctx.metrics.reconcile_failed(error.metric_label());
    warn!(
        meshservice = display_key(&key),
        %error,
        retry_in_ms = delay.as_millis() as u64,
        failures = ctx.backoffs.failures(&key),
        "reconcile failed"
    );
    Action::requeue(delay)
}

/// Who may own a live object the operator is about to write.
enum Owner<'a> {
    /// A Service or VirtualService: the MeshService's controller ownerReference, or (for a
    /// child left by an earlier incarnation of the same MeshService) our labels plus its owner
    /// annotation.
    MeshService { uid: &'a str, key: &'a str },
    /// A managed Gateway: our managed-by label.
    ManagedGateway,
}

fn is_owned(live: &DynamicObject, owner: &Owner<'_>) -> bool {
    let managed_by_us = live
        .labels()
        .get(ownership::MANAGED_BY_LABEL)
        .is_some_and(|v| v == ownership::MANAGED_BY_VALUE);
    match owner {
        Owner::MeshService { uid, key } => {
            let controller_ref = live.owner_references().iter().any(|r| {
                r.controller == Some(true) && r.uid == *uid && r.kind == meshservice_api::KIND
            });
            let annotated = live
                .annotations()
                .get(ownership::OWNER_ANNOTATION)
                .is_some_and(|v| v == key);
            controller_ref || (managed_by_us && annotated)
        }
        Owner::ManagedGateway => managed_by_us,
    }
}

/// One object the operator writes.
struct Child {
    resource: ApiResource,
    namespace: String,
    name: String,
    /// The rendered object, carrying the hash of its rendering in
    /// [`ownership::RENDERED_HASH_ANNOTATION`]; `Null`: nothing to apply.
    desired: Value,
    /// The MeshService's status says this child was applied at the MeshService's current
    /// generation: after a restart, that is how a child deleted meanwhile is known as drift.
    listed_as_applied: bool,
}

/// `rendered` with the hash of itself in [`ownership::RENDERED_HASH_ANNOTATION`]. A live object
/// carrying the hash of what is rendered now, yet differing from it, was changed by someone else
/// after we applied exactly this rendering: drift, even when it happened while the operator was
/// down (the annotation survives restarts; what the operator remembers does not).
fn with_rendering_hash(mut rendered: Value) -> Value {
    let hash = format!("{:016x}", crate::fnv1a(rendered.to_string().as_bytes()));
    if let Some(metadata) = rendered.get_mut("metadata").and_then(Value::as_object_mut) {
        let annotations = metadata
            .entry("annotations")
            .or_insert_with(|| Value::Object(serde_json::Map::new()));
        if let Some(annotations) = annotations.as_object_mut() {
            annotations.insert(
                ownership::RENDERED_HASH_ANNOTATION.to_string(),
                Value::String(hash),
            );
        }
    }
    rendered
}

/// The rendering hash a live object carries.
fn carried_rendering_hash(object: &Value) -> Option<&str> {
    object
        .get("metadata")?
        .get("annotations")?
        .get(ownership::RENDERED_HASH_ANNOTATION)?
        .as_str()
}

/// Whether the status lists `kind namespace/name` as applied at the current generation.
fn listed_as_applied(meshservice: &MeshService, kind: &str, namespace: &str, name: &str) -> bool {
    meshservice.status.as_ref().is_some_and(|status| {
        status.observed_generation.is_some()
            && status.observed_generation == meshservice.metadata.generation
            && status.resources.iter().any(|r| {
                r.kind == kind
                    && r.namespace == namespace
                    && r.name == name
                    && (r.state == state::APPLIED || r.state == state::DRIFT_REPAIRED)
            })
    })
}

impl Child {
    fn id(&self) -> String {
        format!("{} {}/{}", self.resource.kind, self.namespace, self.name)
    }

    fn api(&self, client: &Client) -> Api<DynamicObject> {
        Api::namespaced_with(client.clone(), &self.namespace, &self.resource)
    }

    fn managed_resource(&self, state: &str) -> ManagedResource {
        ManagedResource {
            api_version: self.resource.api_version.clone(),
            kind: self.resource.kind.clone(),
            namespace: self.namespace.clone(),
            name: self.name.clone(),
            state: state.to_string(),
        }
    }
}

/// What became of one child.
#[derive(Debug, PartialEq, Eq)]
enum ChildOutcome {
    /// Live and matching.
    Unchanged,
    /// Created or updated to the new desired state.
    Applied,
    /// Had drifted from what we applied, and was re-applied.
    Repaired(String),
    /// Has drifted, repair is off.
    Drifted(String),
    /// The name belongs to an object we do not own; untouched.
    Conflict,
}

fn hash_of(value: &Value) -> u64 {
    let mut hasher = DefaultHasher::new();
    value.to_string().hash(&mut hasher);
    hasher.finish()
}

async fn get_opt(api: &Api<DynamicObject>, name: &str, id: &str) -> Result<Option<DynamicObject>> {
    api.get_opt(name).await.map_err(|source| Error::Read {
        object: id.to_string(),
        source,
    })
}

/// Brings one child to its desired state, never touching an object we do not own.
async fn ensure(ctx: &Context, child: &Child, owner: &Owner<'_>) -> Result<ChildOutcome> {
    let id = child.id();
    let api = child.api(&ctx.client);
    let desired_hash = hash_of(&child.desired);
    let remembered = ctx.last_applied(&id);
    let previously_applied = remembered == Some(desired_hash);
    let live = get_opt(&api, &child.name, &id).await?;

    let drift = match &live {
        Some(live) if !is_owned(live, owner) => return Ok(ChildOutcome::Conflict),
        Some(live) => {
            let live_value = serde_json::to_value(live)?;
            if drift::contains(&live_value, &child.desired) {
                ctx.remember_applied(&id, desired_hash);
                return Ok(ChildOutcome::Unchanged);
            }
            // It differs: drift if it once matched exactly this rendering (we remember applying
            // it, or it carries this rendering's hash), a change of what we render otherwise.
            let applied_this = previously_applied
                || carried_rendering_hash(&live_value).is_some()
                    && carried_rendering_hash(&live_value)
                        == carried_rendering_hash(&child.desired);
            applied_this.then(|| {
                let field = drift::first_difference(&live_value, &child.desired)
                    .unwrap_or_else(|| "a field".into());
                format!("{id}: {field} changed")
            })
        }
        // Deleted: drift if we applied it since we started, or (first look since a start) the
        // status says it was applied at this generation.
        None => (previously_applied || remembered.is_none() && child.listed_as_applied)
            .then(|| format!("{id} was deleted")),
    };

    if let Some(what) = &drift {
        ctx.metrics.drift_detected(&child.resource.kind);
        if !ctx.settings.repair {
            info!(object = id, drift = what, "drift detected; repair is off");
            return Ok(ChildOutcome::Drifted(what.clone()));
        }
    }

    let written = api
        .patch(
            &child.name,
            &PatchParams::apply(ownership::FIELD_MANAGER).force(),
            &Patch::Apply(&child.desired),
        )
        .await
        .map_err(|source| Error::Apply {
            object: id.clone(),
            source,
        })?;
    ctx.remember_applied(&id, desired_hash);
    // Tell the index now rather than when the watch event arrives, so the conditions computed
    // at the end of this reconcile already see what it wrote (a host just added to a managed
    // Gateway is served, not "HostNotServed" until the next round).
    if let Some(kind) = watched_kind(&child.resource) {
        match crate::index::object_value(kind, written) {
            Ok(value) => {
                ctx.index.apply(kind, value);
            }
            Err(error) => debug!(object = id, %error, "written object not serialisable"),
        }
    }
    match drift {
        Some(what) => {
            ctx.metrics.drift_repaired(&child.resource.kind);
            info!(object = id, drift = what, "drift repaired");
            Ok(ChildOutcome::Repaired(what))
        }
        None => {
            debug!(object = id, "applied");
            Ok(ChildOutcome::Applied)
        }
    }
}

/// Deletes a child if it exists and is ours.
async fn remove_if_owned(ctx: &Context, child: &Child, owner: &Owner<'_>) -> Result<bool> {
    let id = child.id();
    let api = child.api(&ctx.client);
    ctx.forget_applied(&id);
    match get_opt(&api, &child.name, &id).await? {
        Some(live) if is_owned(&live, owner) => {
            match api.delete(&child.name, &DeleteParams::default()).await {
                Ok(_) => Ok(true),
                Err(kube::Error::Api(status)) if status.is_not_found() => Ok(false),
                Err(source) => Err(Error::Delete { object: id, source }),
            }
        }
        _ => Ok(false),
    }
}

fn watched_kind(resource: &ApiResource) -> Option<WatchedKind> {
    WatchedKind::ALL
        .into_iter()
        .find(|kind| kind.api_resource() == *resource)
}

fn service_resource() -> ApiResource {
    WatchedKind::Service.api_resource()
}

fn virtual_service_resource() -> ApiResource {
    WatchedKind::VirtualService.api_resource()
}

fn gateway_resource() -> ApiResource {
    WatchedKind::Gateway.api_resource()
}

/// The outcome of one child folded into the reconcile's state.
struct Progress {
    outcome: ApplyOutcome,
    resources: Vec<ManagedResource>,
    findings: Vec<MeshFinding>,
    repaired: Vec<String>,
    /// Whether anything was written (then the engine's findings are read again at the end).
    wrote: bool,
    error: Option<Error>,
}

impl Progress {
    fn record(&mut self, child: &Child, result: Result<ChildOutcome>, conflict_code: &str) {
        let state = match result {
            Ok(ChildOutcome::Unchanged) => state::APPLIED,
            Ok(ChildOutcome::Applied) => {
                self.wrote = true;
                state::APPLIED
            }
            Ok(ChildOutcome::Repaired(what)) => {
                self.wrote = true;
                self.repaired.push(what);
                state::DRIFT_REPAIRED
            }
            Ok(ChildOutcome::Drifted(what)) => {
                if !matches!(self.outcome, ApplyOutcome::Failed(_)) {
                    self.outcome = ApplyOutcome::Drifted(what);
                }
                state::DRIFTED
            }
            Ok(ChildOutcome::Conflict) => {
                self.findings.push(MeshFinding {
                    code: conflict_code.to_string(),
                    severity: "Error".into(),
                    message: format!(
                        "{} exists and is not owned by this MeshService; it is left untouched",
                        child.id()
                    ),
                    related: Some(child.id()),
                    host: None,
                });
                if matches!(self.outcome, ApplyOutcome::Applied) {
                    self.outcome = ApplyOutcome::Withheld;
                }
                state::CONFLICT
            }
            Err(error) => {
                self.outcome = ApplyOutcome::Failed(error.to_string());
                if self.error.is_none() {
                    self.error = Some(error);
                }
                state::PENDING
            }
        };
        self.resources.push(child.managed_resource(state));
    }
}

/// Hosts a MeshService lost in claim conflicts.
fn lost_hosts(findings: &[MeshFinding]) -> BTreeSet<String> {
    findings
        .iter()
        .filter(|f| f.code == code::HOST_CLAIM_LOST)
        .filter_map(|f| f.host.clone())
        .collect()
}

fn has_name_conflict(findings: &[MeshFinding]) -> bool {
    findings
        .iter()
        .any(|f| f.code == code::SERVICE_NAME_TAKEN || f.code == code::VIRTUAL_SERVICE_NAME_TAKEN)
}

async fn apply(meshservice: Arc<MeshService>, ctx: Arc<Context>) -> Result<Action> {
    let namespace = meshservice.namespace().unwrap_or_default();
    let name = meshservice.name_any();
    let owner_key = ownership::owner_key(&namespace, &name);
    let uid = meshservice.uid().ok_or_else(|| Error::InvalidObject {
        object: owner_key.clone(),
        message: "metadata.uid is missing".into(),
    })?;

    ctx.index.ensure_meshservice(&meshservice)?;
    let mut engine_findings = ctx.index.findings_for_meshservice(&namespace, &name)?;
    let unwatched_gateway = unwatched_gateway(&ctx.settings, &meshservice, &namespace);
    if let Some(finding) = &unwatched_gateway {
        // "Not found" and "not served" only say that the operator cannot see it.
        engine_findings
            .retain(|f| f.code != code::GATEWAY_NOT_FOUND && f.code != code::HOST_NOT_SERVED);
        engine_findings.push(finding.clone());
    }
    let excluded = lost_hosts(&engine_findings);
    let rendered = render_meshservice(&RenderInput {
        meshservice: &meshservice,
        owner_uid: &uid,
        excluded_hosts: &excluded,
    })?;

    let service_name = rendered
        .service
        .metadata
        .name
        .clone()
        .unwrap_or_else(|| meshservice.spec.service_name.clone());
    let service = Child {
        resource: service_resource(),
        namespace: namespace.clone(),
        listed_as_applied: listed_as_applied(&meshservice, "Service", &namespace, &service_name),
        name: service_name,
        desired: with_rendering_hash(istio_render::to_value(&rendered.service)?),
    };
    let virtual_service_name = istio_render::virtual_service_name(&meshservice)?.to_string();
    let virtual_service = Child {
        resource: virtual_service_resource(),
        namespace: namespace.clone(),
        listed_as_applied: listed_as_applied(
            &meshservice,
            "VirtualService",
            &namespace,
            &virtual_service_name,
        ),
        name: virtual_service_name,
        desired: match &rendered.virtual_service {
            Some(vs) => with_rendering_hash(istio_render::to_value(vs)?),
            None => Value::Null,
        },
    };
    let owner = Owner::MeshService {
        uid: &uid,
        key: &owner_key,
    };

    let mut progress = Progress {
        outcome: ApplyOutcome::Applied,
        resources: Vec::new(),
        findings: Vec::new(),
        repaired: Vec::new(),
        wrote: false,
        error: None,
    };

    if has_name_conflict(&engine_findings) {
        // A name is taken by someone else's object: write nothing. The VirtualService would
        // route to a Service we do not control, and the Service would be someone else's.
        progress.outcome = ApplyOutcome::Withheld;
        progress
            .resources
            .push(service.managed_resource(state::PENDING));
        progress
            .resources
            .push(virtual_service.managed_resource(state::PENDING));
    } else {
        let result = ensure(&ctx, &service, &owner).await;
        progress.record(&service, result, code::SERVICE_NAME_TAKEN);
        let service_ok = progress
            .resources
            .last()
            .is_some_and(|r| r.state != state::CONFLICT);
        if !service_ok {
            progress
                .resources
                .push(virtual_service.managed_resource(state::PENDING));
        } else if virtual_service.desired.is_null() {
            // Every host lost to an older claim: our VirtualService must not keep claiming them.
            if remove_if_owned(&ctx, &virtual_service, &owner).await? {
                info!(
                    meshservice = owner_key,
                    "every host lost; VirtualService removed"
                );
            }
            progress
                .resources
                .push(virtual_service.managed_resource(state::DELETED));
        } else {
            let result = ensure(&ctx, &virtual_service, &owner).await;
            progress.record(&virtual_service, result, code::VIRTUAL_SERVICE_NAME_TAKEN);
        }
    }

    // Managed gateways: the current one, and any this MeshService contributed to before (its
    // spec moved to another gateway, or stopped asking for a managed one).
    let current_gateway = GatewayKey::managed_by(&meshservice)?;
    let mut gateways: BTreeSet<GatewayKey> = previous_gateways(meshservice.status.as_ref());
    gateways.extend(current_gateway.clone());
    for gateway in gateways {
        if !ctx.settings.watches(&gateway.namespace) {
            // Not watched, and not writable under the namespace-mode RBAC: the finding above says
            // which namespace to add; a write would only fail with 403 and back off forever.
            continue;
        }
        let is_current = Some(&gateway) == current_gateway.as_ref();
        let result = reconcile_gateway(&ctx, &gateway, Some(&meshservice), None).await;
        if is_current {
            match result {
                Ok(GatewayResult {
                    child,
                    outcome,
                    dropped,
                }) => {
                    progress.findings.extend(dropped);
                    match outcome {
                        Some(outcome) => {
                            progress.record(&child, Ok(outcome), code::GATEWAY_NAME_TAKEN)
                        }
                        None => progress
                            .resources
                            .push(child.managed_resource(state::DELETED)),
                    }
                }
                Err(error) => {
                    progress.outcome = ApplyOutcome::Failed(error.to_string());
                    progress.error.get_or_insert(error);
                }
            }
        } else if let Err(error) = result {
            progress.outcome = ApplyOutcome::Failed(error.to_string());
            progress.error.get_or_insert(error);
        }
    }

    for what in &progress.repaired {
        ctx.publish(
            &meshservice,
            EventType::Normal,
            "DriftRepaired",
            format!("{what}; re-applied"),
        )
        .await;
    }

    // What this reconcile wrote is in the index already; judge the result, not the starting point.
    let mut findings = if progress.wrote {
        ctx.index.findings_for_meshservice(&namespace, &name)?
    } else {
        engine_findings
    };
    findings.append(&mut progress.findings);
    progress.findings = findings;
    let desired = status::conditions(&progress.findings, &progress.outcome);
    publish_transitions(&ctx, &meshservice, &desired, &progress.resources).await;
    let new_status = status::build_status(
        meshservice.status.as_ref(),
        meshservice.metadata.generation,
        &desired,
        progress.resources,
        &progress.findings,
        &Time(k8s_openapi::jiff::Timestamp::now()),
    );
    write_status(&ctx, &meshservice, new_status).await?;

    match progress.error {
        Some(error) => Err(error),
        None => Ok(Action::requeue(ctx.settings.resync)),
    }
}

/// The finding for a MeshService whose gateway is in a namespace this instance does not watch.
fn unwatched_gateway(
    settings: &ReconcileSettings,
    meshservice: &MeshService,
    namespace: &str,
) -> Option<MeshFinding> {
    let gateway = meshservice.spec.gateway.as_ref()?;
    let gateway_namespace = gateway.effective_namespace(namespace);
    if settings.watches(gateway_namespace) {
        return None;
    }
    let name = &gateway.name;
    warn!(
        meshservice = ownership::owner_key(namespace, &meshservice.name_any()),
        gateway = format!("{gateway_namespace}/{name}"),
        "the gateway's namespace is not watched; add it with --namespace"
    );
    Some(MeshFinding {
        code: code::GATEWAY_NAMESPACE_NOT_WATCHED.into(),
        severity: "Error".into(),
        message: format!(
            "Gateway {gateway_namespace}/{name} is in namespace {gateway_namespace}, which this operator does not watch (--namespace {}): add --namespace {gateway_namespace} (and, with the namespace-mode RBAC, its Role) to {} it",
            settings.namespaces.join(" --namespace "),
            if gateway.managed { "manage" } else { "resolve" }
        ),
        related: Some(format!("Gateway {gateway_namespace}/{name}")),
        host: None,
    })
}

fn previous_gateways(status: Option<&MeshServiceStatus>) -> BTreeSet<GatewayKey> {
    status
        .map(|s| {
            s.resources
                .iter()
                .filter(|r| {
                    r.kind == istio_render::GATEWAY_KIND
                        && r.api_version
                            .starts_with(istio_render::ISTIO_NETWORKING_GROUP)
                })
                .map(|r| GatewayKey {
                    namespace: r.namespace.clone(),
                    name: r.name.clone(),
                })
                .collect()
        })
        .unwrap_or_default()
}

/// What reconciling a managed Gateway did.
struct GatewayResult {
    child: Child,
    /// `None`: no contributor left, the Gateway was deleted (or never existed).
    outcome: Option<ChildOutcome>,
    /// Findings for the MeshService on whose behalf it ran: its ports the Gateway cannot serve.
    dropped: Vec<MeshFinding>,
}

/// Re-renders a managed Gateway from every live contributor and applies (or deletes) it.
///
/// `fresh` is the newest copy of the MeshService being reconciled (the index may lag behind the
/// controller's watch); `leaving` is a MeshService whose contribution must be left out (its
/// cleanup runs before the index sees its deletion).
async fn reconcile_gateway(
    ctx: &Context,
    gateway: &GatewayKey,
    fresh: Option<&MeshService>,
    leaving: Option<&MeshKey>,
) -> Result<GatewayResult> {
    let _serialised = ctx.gateway_writes.lock().await;

    let fresh_key = fresh.map(|ms| (ms.namespace().unwrap_or_default(), ms.name_any()));
    let mut contributors: Vec<Arc<MeshService>> = ctx
        .index
        .meshservices()
        .into_iter()
        .filter(|ms| {
            let key = (ms.namespace().unwrap_or_default(), ms.name_any());
            // Being deleted is leaving too: when several go at once, the cleanup of the last one
            // must not keep hosts of others whose deletion the index has not seen yet.
            Some(&key) != fresh_key.as_ref()
                && Some(&key) != leaving
                && ms.metadata.deletion_timestamp.is_none()
        })
        .collect();
    if let Some(fresh) = fresh
        && fresh_key.as_ref() != leaving
    {
        contributors.push(Arc::new(fresh.clone()));
    }
    contributors.retain(|ms| GatewayKey::managed_by(ms).ok().flatten().as_ref() == Some(gateway));

    let mut exclusions: Vec<BTreeSet<String>> = Vec::with_capacity(contributors.len());
    for ms in &contributors {
        let findings = ctx
            .index
            .findings_for_meshservice(&ms.namespace().unwrap_or_default(), &ms.name_any())?;
        exclusions.push(if has_name_conflict(&findings) {
            // Not accepted: none of its hosts is served.
            ms.spec.hosts.iter().cloned().collect()
        } else {
            lost_hosts(&findings)
        });
    }
    let contributions: Vec<Contribution<'_>> = contributors
        .iter()
        .zip(&exclusions)
        .map(|(ms, excluded)| Contribution {
            meshservice: ms,
            excluded_hosts: excluded,
        })
        .collect();
    let rendering = render_gateway(gateway, &contributions, &ctx.settings.gateway_options)?;

    let fresh_owner = fresh_key.as_ref().map(display_key);
    let dropped = rendering
        .dropped_claims
        .iter()
        .filter(|claim| Some(&claim.contributor) == fresh_owner.as_ref())
        .map(|claim| MeshFinding {
            code: code::GATEWAY_PORT_DROPPED.into(),
            severity: "Warning".into(),
            message: format!(
                "Gateway {gateway} does not serve port {} ({}): {:?}",
                claim.port, claim.protocol, claim.reason
            ),
            related: Some(format!("Gateway {gateway}")),
            host: None,
        })
        .collect();

    let mut child = Child {
        resource: gateway_resource(),
        namespace: gateway.namespace.clone(),
        name: gateway.name.clone(),
        desired: Value::Null,
        listed_as_applied: fresh.is_some_and(|ms| {
            listed_as_applied(
                ms,
                istio_render::GATEWAY_KIND,
                &gateway.namespace,
                &gateway.name,
            )
        }),
    };
    match rendering.plan {
        GatewayPlan::Apply(rendered) => {
            child.desired = with_rendering_hash(istio_render::to_value(&rendered)?);
            let outcome = ensure(ctx, &child, &Owner::ManagedGateway).await?;
            Ok(GatewayResult {
                child,
                outcome: Some(outcome),
                dropped,
            })
        }
        GatewayPlan::Delete(_) => {
            if remove_if_owned(ctx, &child, &Owner::ManagedGateway).await? {
                info!(gateway = %gateway, "last contributor left; managed Gateway deleted");
            }
            Ok(GatewayResult {
                child,
                outcome: None,
                dropped,
            })
        }
    }
}

async fn cleanup(meshservice: Arc<MeshService>, ctx: Arc<Context>) -> Result<Action> {
    let key = (
        meshservice.namespace().unwrap_or_default(),
        meshservice.name_any(),
    );
    let mut gateways = previous_gateways(meshservice.status.as_ref());
    gateways.extend(GatewayKey::managed_by(&meshservice)?);
    // A gateway in a namespace not watched was never written by this instance (and cannot be).
    gateways.retain(|gateway| ctx.settings.watches(&gateway.namespace));
    for gateway in &gateways {
        reconcile_gateway(&ctx, gateway, None, Some(&key)).await?;
    }
    // The Service and VirtualService go with ownerReference garbage collection.
    forget_children(&ctx, &meshservice, &key);
    info!(
        meshservice = display_key(&key),
        gateways = gateways.len(),
        "cleaned up; ownerReference garbage collection removes the rest"
    );
    Ok(Action::await_change())
}

/// Hands over a MeshService this instance holds but no longer selects (its labels changed, or
/// this instance's selector did across a restart): removes this instance's finalizer and nothing
/// else. The children stay: the shard that selects it now adopts them through the same field
/// manager, and ownerReference garbage collection still covers the Service and VirtualService if
/// no shard ever does. Being deleted, it is cleaned up first (its hosts leave a managed Gateway,
/// which every shard renders alike), so a release never strands a contribution.
async fn release(
    api: &Api<MeshService>,
    meshservice: Arc<MeshService>,
    ctx: &Arc<Context>,
) -> Result<Action> {
    let key = (
        meshservice.namespace().unwrap_or_default(),
        meshservice.name_any(),
    );
    let deleting = meshservice.metadata.deletion_timestamp.is_some();
    if deleting {
        cleanup(meshservice.clone(), ctx.clone()).await?;
    }
    let remaining: Vec<&String> = meshservice
        .finalizers()
        .iter()
        .filter(|f| **f != ctx.settings.finalizer)
        .collect();
    // The resourceVersion makes the patch conditional: another shard adding its own finalizer
    // meanwhile makes this one fail with a conflict and retry, instead of erasing theirs.
    let patch = json!({"metadata": {
        "resourceVersion": meshservice.resource_version(),
        "finalizers": remaining,
    }});
    api.patch(&key.1, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map_err(|source| Error::Release {
            object: display_key(&key),
            source,
        })?;
    forget_children(ctx, &meshservice, &key);
    let selector = ctx
        .settings
        .selector
        .as_ref()
        .map(LabelSelector::as_str)
        .unwrap_or_default();
    info!(
        meshservice = display_key(&key),
        selector, deleting, "no longer selected; finalizer released, children left in place"
    );
    if !deleting {
        ctx.publish(
            &meshservice,
            EventType::Normal,
            "Released",
            format!(
                "no longer matches the selector {selector:?}: finalizer {} removed; the children stay for the shard that selects it",
                ctx.settings.finalizer
            ),
        )
        .await;
    }
    Ok(Action::await_change())
}

/// Forgets what was last applied to the Service and VirtualService of a MeshService this
/// instance stops handling.
fn forget_children(ctx: &Context, meshservice: &MeshService, key: &MeshKey) {
    for resource in [service_resource(), virtual_service_resource()] {
        let name = if resource.kind == "Service" {
            meshservice.spec.service_name.clone()
        } else {
            key.1.clone()
        };
        ctx.forget_applied(&format!("{} {}/{}", resource.kind, key.0, name));
    }
}

/// Publishes one Event per condition whose status or reason changed.
async fn publish_transitions(
    ctx: &Context,
    meshservice: &MeshService,
    desired: &[DesiredCondition],
    resources: &[ManagedResource],
) {
    for want in desired {
        let previous = status::find_condition(meshservice.status.as_ref(), want.type_);
        let unchanged = previous
            .is_some_and(|p| p.status == status_str(want.status) && p.reason == want.reason);
        if unchanged {
            continue;
        }
        let was_false = previous.is_some_and(|p| p.status == "False");
        let (type_, event_reason) = match (want.type_, want.status, want.reason) {
            (meshservice_api::condition::READY, Status::True, _) => (EventType::Normal, "Applied"),
            (meshservice_api::condition::READY, Status::False, reason::APPLY_FAILED) => {
                (EventType::Warning, "ApplyFailed")
            }
            (meshservice_api::condition::READY, Status::False, reason::DRIFTED) => {
                (EventType::Warning, "DriftDetected")
            }
            (_, Status::False, reason::HOST_CONFLICT) => (EventType::Warning, "HostConflict"),
            (_, Status::False, reason::NAME_CONFLICT) => (EventType::Warning, "NameConflict"),
            (_, Status::False, reason::GATEWAY_NOT_FOUND) => {
                (EventType::Warning, "GatewayNotFound")
            }
            (_, Status::False, reason::GATEWAY_NAMESPACE_NOT_WATCHED) => {
                (EventType::Warning, "GatewayNamespaceNotWatched")
            }
            (_, Status::False, reason::HOST_NOT_SERVED) => (EventType::Warning, "HostNotServed"),
            (meshservice_api::condition::RESOLVED_REFS, Status::True, _) if was_false => {
                (EventType::Normal, "RefsResolved")
            }
            (meshservice_api::condition::ACCEPTED, Status::True, _) if was_false => {
                (EventType::Normal, "Accepted")
            }
            _ => continue,
        };
        let note = if event_reason == "Applied" {
            let applied: Vec<String> = resources
                .iter()
                .filter(|r| r.state != state::DELETED)
                .map(|r| format!("{} {}/{}", r.kind, r.namespace, r.name))
                .collect();
            format!("applied {}", applied.join(", "))
        } else {
            want.message.clone()
        };
        ctx.publish(meshservice, type_, event_reason, note).await;
    }
}

fn status_str(status: Status) -> &'static str {
    match status {
        Status::True => "True",
        Status::False => "False",
        Status::Unknown => "Unknown",
    }
}

/// Writes the status through the status subresource with server-side apply, unless it is
/// unchanged (a write is a watch event; skipping no-ops keeps the loop quiet).
async fn write_status(
    ctx: &Context,
    meshservice: &MeshService,
    new: MeshServiceStatus,
) -> Result<()> {
    if meshservice.status.as_ref() == Some(&new) {
        return Ok(());
    }
    let namespace = meshservice.namespace().unwrap_or_default();
    let name = meshservice.name_any();
    let api: Api<MeshService> = Api::namespaced(ctx.client.clone(), &namespace);
    let patch = json!({
        "apiVersion": meshservice_api::API_VERSION,
        "kind": meshservice_api::KIND,
        "status": new,
    });
    api.patch_status(
        &name,
        &PatchParams::apply(ownership::FIELD_MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await
    .map_err(|source| Error::Status {
        object: ownership::owner_key(&namespace, &name),
        source,
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
    use std::collections::BTreeMap;

    fn live(
        labels: &[(&str, &str)],
        annotations: &[(&str, &str)],
        owner_uid: Option<&str>,
    ) -> DynamicObject {
        let to_map = |pairs: &[(&str, &str)]| -> Option<BTreeMap<String, String>> {
            Some(
                pairs
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            )
        };
        DynamicObject {
            types: None,
            metadata: ObjectMeta {
                name: Some("webapp".into()),
                namespace: Some("team-a".into()),
                labels: to_map(labels),
                annotations: to_map(annotations),
                owner_references: owner_uid.map(|uid| {
                    vec![OwnerReference {
                        api_version: meshservice_api::API_VERSION.into(),
                        kind: meshservice_api::KIND.into(),
                        name: "webapp-service".into(),
                        uid: uid.into(),
                        controller: Some(true),
                        block_owner_deletion: None,
                    }]
                }),
                ..ObjectMeta::default()
            },
            data: json!({}),
        }
    }

    const MANAGED: (&str, &str) = (ownership::MANAGED_BY_LABEL, ownership::MANAGED_BY_VALUE);

    #[test]
    fn a_child_with_our_controller_reference_is_ours() {
        let owner = Owner::MeshService {
            uid: "u1",
            key: "team-a/webapp-service",
        };
        assert!(is_owned(&live(&[], &[], Some("u1")), &owner));
        assert!(!is_owned(&live(&[], &[], Some("someone-else")), &owner));
    }

    #[test]
    fn a_child_left_by_an_earlier_incarnation_is_ours_by_label_and_annotation() {
        let owner = Owner::MeshService {
            uid: "new-uid",
            key: "team-a/webapp-service",
        };
        let leftover = live(
            &[MANAGED],
            &[(ownership::OWNER_ANNOTATION, "team-a/webapp-service")],
            Some("old-uid"),
        );
        assert!(is_owned(&leftover, &owner));
    }

    #[test]
    fn an_object_without_our_marks_is_never_ours() {
        let owner = Owner::MeshService {
            uid: "u1",
            key: "team-a/webapp-service",
        };
        assert!(!is_owned(&live(&[], &[], None), &owner));
        // Our annotation without our label (someone copied it) is not enough.
        assert!(!is_owned(
            &live(
                &[],
                &[(ownership::OWNER_ANNOTATION, "team-a/webapp-service")],
                None
            ),
            &owner
        ));
        assert!(!is_owned(&live(&[], &[], None), &Owner::ManagedGateway));
        assert!(is_owned(
            &live(&[MANAGED], &[], None),
            &Owner::ManagedGateway
        ));
    }

    #[test]
    fn lost_hosts_come_from_host_claim_findings_only() {
        let finding = |code: &str, host: Option<&str>| MeshFinding {
            code: code.into(),
            severity: "Error".into(),
            message: String::new(),
            related: None,
            host: host.map(str::to_string),
        };
        let findings = [
            finding(code::HOST_CLAIM_LOST, Some("a.example.com")),
            finding(code::HOST_NOT_SERVED, Some("b.example.com")),
            finding(code::HOST_CLAIM_LOST, Some("c.example.com")),
        ];
        assert_eq!(
            lost_hosts(&findings),
            BTreeSet::from(["a.example.com".to_string(), "c.example.com".to_string()])
        );
    }

    #[test]
    fn previous_gateways_are_read_from_the_status_resources() {
        let status = MeshServiceStatus {
            resources: vec![
                ManagedResource {
                    api_version: "networking.istio.io/v1".into(),
                    kind: "Gateway".into(),
                    namespace: "istio-system".into(),
                    name: "shared".into(),
                    state: state::APPLIED.into(),
                },
                ManagedResource {
                    api_version: "v1".into(),
                    kind: "Service".into(),
                    namespace: "team-a".into(),
                    name: "webapp".into(),
                    state: state::APPLIED.into(),
                },
            ],
            ..MeshServiceStatus::default()
        };
        assert_eq!(
            previous_gateways(Some(&status)),
            BTreeSet::from([GatewayKey {
                namespace: "istio-system".into(),
                name: "shared".into()
            }])
        );
    }

    fn progress() -> Progress {
        Progress {
            outcome: ApplyOutcome::Applied,
            resources: Vec::new(),
            findings: Vec::new(),
            repaired: Vec::new(),
            wrote: false,
            error: None,
        }
    }

    fn child(kind: WatchedKind, name: &str) -> Child {
        Child {
            resource: kind.api_resource(),
            namespace: "team-a".into(),
            name: name.into(),
            desired: json!({}),
            listed_as_applied: false,
        }
    }

    #[test]
    fn an_unchanged_child_is_applied_without_a_write() {
        let mut p = progress();
        p.record(
            &child(WatchedKind::Service, "webapp"),
            Ok(ChildOutcome::Unchanged),
            code::SERVICE_NAME_TAKEN,
        );
        assert_eq!(p.outcome, ApplyOutcome::Applied);
        assert!(!p.wrote);
        assert_eq!(p.resources[0].state, state::APPLIED);
    }

    #[test]
    fn a_repaired_child_is_remembered_for_its_event() {
        let mut p = progress();
        let what = "VirtualService team-a/web: spec.hosts changed".to_string();
        p.record(
            &child(WatchedKind::VirtualService, "web"),
            Ok(ChildOutcome::Repaired(what.clone())),
            code::VIRTUAL_SERVICE_NAME_TAKEN,
        );
        assert_eq!(
            (p.outcome.clone(), p.wrote, p.repaired.clone()),
            (ApplyOutcome::Applied, true, vec![what])
        );
        assert_eq!(p.resources[0].state, state::DRIFT_REPAIRED);
    }

    #[test]
    fn a_foreign_object_under_our_name_is_a_conflict_finding_and_withholds_readiness() {
        let mut p = progress();
        p.record(
            &child(WatchedKind::Service, "webapp"),
            Ok(ChildOutcome::Conflict),
            code::SERVICE_NAME_TAKEN,
        );
        assert_eq!(p.outcome, ApplyOutcome::Withheld);
        assert_eq!(p.resources[0].state, state::CONFLICT);
        assert_eq!(p.findings[0].code, code::SERVICE_NAME_TAKEN);
        assert!(
            p.findings[0].message.contains("Service team-a/webapp"),
            "{}",
            p.findings[0].message
        );
        let conditions = status::conditions(&p.findings, &p.outcome);
        assert_eq!(
            (conditions[0].status, conditions[0].reason),
            (Status::False, reason::NAME_CONFLICT)
        );
    }

    #[test]
    fn a_failed_write_keeps_the_first_error_and_wins_over_drift() {
        let mut p = progress();
        p.record(
            &child(WatchedKind::Service, "webapp"),
            Ok(ChildOutcome::Drifted("x".into())),
            code::SERVICE_NAME_TAKEN,
        );
        let forbidden = Error::InvalidObject {
            object: "team-a/web".into(),
            message: "forbidden".into(),
        };
        p.record(
            &child(WatchedKind::VirtualService, "web"),
            Err(forbidden),
            code::VIRTUAL_SERVICE_NAME_TAKEN,
        );
        assert!(matches!(p.outcome, ApplyOutcome::Failed(_)));
        assert_eq!(p.resources[1].state, state::PENDING);
        assert!(p.error.is_some());
    }

    #[test]
    fn written_objects_map_back_to_their_watched_kind() {
        assert_eq!(
            watched_kind(&service_resource()),
            Some(WatchedKind::Service)
        );
        assert_eq!(
            watched_kind(&gateway_resource()),
            Some(WatchedKind::Gateway)
        );
        assert_eq!(
            watched_kind(&virtual_service_resource()),
            Some(WatchedKind::VirtualService)
        );
    }

    #[test]
    fn the_rendering_hash_annotation_names_exactly_the_rendering() {
        let rendered =
            json!({"metadata": {"name": "web", "annotations": {"a": "b"}}, "spec": {"x": 1}});
        let annotated = with_rendering_hash(rendered.clone());
        let hash = carried_rendering_hash(&annotated).map(str::to_string);
        assert_eq!(hash.as_ref().map(String::len), Some(16));
        assert_eq!(annotated["metadata"]["annotations"]["a"], json!("b"));
        assert_eq!(
            carried_rendering_hash(&with_rendering_hash(rendered)).map(str::to_string),
            hash,
            "the same rendering, the same hash"
        );
        let other = with_rendering_hash(json!({"metadata": {"name": "web"}, "spec": {"x": 2}}));
        assert_ne!(carried_rendering_hash(&other).map(str::to_string), hash);
    }

    #[test]
    fn a_child_counts_as_applied_only_at_the_current_generation() {
        let mut ms: MeshService = serde_json::from_value(json!({
            "apiVersion": meshservice_api::API_VERSION, "kind": meshservice_api::KIND,
            "metadata": {"name": "web", "namespace": "team-a", "generation": 2},
            "spec": {"serviceName": "web", "hosts": ["web.example.com"], "ports": [{"port": 80}]},
            "status": {"observedGeneration": 2, "resources": [
                {"apiVersion": "v1", "kind": "Service", "namespace": "team-a", "name": "web", "state": "Applied"},
                {"apiVersion": "networking.istio.io/v1", "kind": "VirtualService", "namespace": "team-a", "name": "web", "state": "Pending"}
            ]}
        }))
        .expect("a MeshService");
        assert!(listed_as_applied(&ms, "Service", "team-a", "web"));
        assert!(!listed_as_applied(&ms, "VirtualService", "team-a", "web"));
        ms.metadata.generation = Some(3);
        assert!(!listed_as_applied(&ms, "Service", "team-a", "web"));
    }

    #[test]
    fn notes_are_truncated_on_a_character_boundary() {
        assert_eq!(truncate("ééé".into(), 3), "é");
        assert_eq!(truncate("short".into(), 100), "short");
    }
}
