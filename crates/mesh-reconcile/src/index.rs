//! The live integrity index: every watched object, projected into the integrity engine as its
//! watch events arrive, plus the little the reconciler needs in memory (the decoded MeshServices
//! and who-cares-about-what for requeues). Whole Istio objects are never kept: the engine holds
//! their projections, so memory grows with the columns the rules read, not with object size.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use kube::core::{ApiResource, DynamicObject};
use mesh_integrity::{Engine, ObjectKey, SourceObject};
use meshservice_api::{MeshService, ownership};
use serde_json::Value;
use tracing::{debug, warn};

use crate::affect::{Interest, Interests, MeshKey, Touched, parse_owner_key};
use crate::metrics::Metrics;
use crate::status::MeshFinding;

/// The kinds the operator watches and projects into the engine.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum WatchedKind {
    /// `mesh.istio.operator/v1alpha1` MeshService.
    MeshService,
    /// `networking.istio.io/v1` VirtualService.
    VirtualService,
    /// `networking.istio.io/v1` Gateway.
    Gateway,
    /// `networking.istio.io/v1` DestinationRule.
    DestinationRule,
    /// `networking.istio.io/v1` ServiceEntry.
    ServiceEntry,
    /// Core `v1` Service.
    Service,
    /// Core `v1` Namespace (cluster-scoped).
    Namespace,
}

const ISTIO_GROUP: &str = "networking.istio.io";
const ISTIO_VERSION: &str = "v1";

impl WatchedKind {
    /// Every watched kind.
    pub const ALL: [WatchedKind; 7] = [
        WatchedKind::MeshService,
        WatchedKind::VirtualService,
        WatchedKind::Gateway,
        WatchedKind::DestinationRule,
        WatchedKind::ServiceEntry,
        WatchedKind::Service,
        WatchedKind::Namespace,
    ];

    /// The Kubernetes kind.
    pub fn kind(self) -> &'static str {
        match self {
            WatchedKind::MeshService => meshservice_api::KIND,
            WatchedKind::VirtualService => "VirtualService",
            WatchedKind::Gateway => "Gateway",
            WatchedKind::DestinationRule => "DestinationRule",
            WatchedKind::ServiceEntry => "ServiceEntry",
            WatchedKind::Service => "Service",
            WatchedKind::Namespace => "Namespace",
        }
    }

    /// The API group (`""` for core).
    pub fn group(self) -> &'static str {
        match self {
            WatchedKind::MeshService => meshservice_api::GROUP,
            WatchedKind::Service | WatchedKind::Namespace => "",
            _ => ISTIO_GROUP,
        }
    }

    /// Whether objects of this kind live in a namespace.
    pub fn namespaced(self) -> bool {
        self != WatchedKind::Namespace
    }

    /// The API resource to watch.
    pub fn api_resource(self) -> ApiResource {
        match self {
            WatchedKind::MeshService => ApiResource::erase::<MeshService>(&()),
            WatchedKind::Service => ApiResource::erase::<k8s_openapi::api::core::v1::Service>(&()),
            WatchedKind::Namespace => {
                ApiResource::erase::<k8s_openapi::api::core::v1::Namespace>(&())
            }
            istio => ApiResource {
                group: ISTIO_GROUP.into(),
                version: ISTIO_VERSION.into(),
                api_version: format!("{ISTIO_GROUP}/{ISTIO_VERSION}"),
                kind: istio.kind().into(),
                plural: match istio {
                    WatchedKind::VirtualService => "virtualservices",
                    WatchedKind::Gateway => "gateways",
                    WatchedKind::DestinationRule => "destinationrules",
                    _ => "serviceentries",
                }
                .into(),
            },
        }
    }

    /// The engine key of an object of this kind.
    pub fn key(self, namespace: &str, name: &str) -> ObjectKey {
        let namespace = if self.namespaced() { namespace } else { "" };
        ObjectKey::new(self.group(), self.kind(), namespace, name)
    }
}

/// An object from a watch as the engine wants it: JSON with `apiVersion` and `kind` (list items of
/// core kinds come without them).
pub fn object_value(
    kind: WatchedKind,
    mut object: DynamicObject,
) -> Result<Value, serde_json::Error> {
    let resource = kind.api_resource();
    object.types = Some(kube::core::TypeMeta {
        api_version: resource.api_version,
        kind: resource.kind,
    });
    serde_json::to_value(object)
}

fn metadata_str<'a>(value: &'a Value, field: &str) -> &'a str {
    value
        .get("metadata")
        .and_then(|m| m.get(field))
        .and_then(Value::as_str)
        .unwrap_or_default()
}

fn annotation<'a>(value: &'a Value, name: &str) -> Option<&'a str> {
    value
        .get("metadata")?
        .get("annotations")?
        .get(name)?
        .as_str()
}

fn string_list(value: Option<&Value>) -> Vec<String> {
    value
        .and_then(Value::as_array)
        .map(|items| {
            items
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

struct Inner {
    engine: Engine,
    interests: Interests,
    meshservices: BTreeMap<MeshKey, Arc<MeshService>>,
    /// Objects per watch stream, for the `mesh_watched_objects` gauge.
    counts: HashMap<String, (WatchedKind, usize)>,
    /// Set by every change; the periodic check clears it.
    dirty: bool,
}

/// The engine and what the reconciler keeps beside it, behind one short-held lock.
pub struct LiveIndex {
    inner: Mutex<Inner>,
    metrics: Arc<Metrics>,
}

impl std::fmt::Debug for LiveIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveIndex").finish_non_exhaustive()
    }
}

impl LiveIndex {
    /// An empty index over a fresh in-memory engine.
    pub fn new(metrics: Arc<Metrics>) -> Result<Self, mesh_integrity::Error> {
        Ok(Self {
            inner: Mutex::new(Inner {
                engine: Engine::open_in_memory()?,
                interests: Interests::default(),
                meshservices: BTreeMap::new(),
                counts: HashMap::new(),
                dirty: true,
            }),
            metrics,
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves the engine as consistent as SQLite left it;
        // refusing all further work would turn one bug into an outage.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Bookkeeping beside the engine for one applied object; returns the trigger description.
    fn note_applied(
        inner: &mut Inner,
        metrics: &Metrics,
        kind: WatchedKind,
        value: &Value,
    ) -> Option<TouchedOwned> {
        let namespace = metadata_str(value, "namespace").to_string();
        let name = metadata_str(value, "name").to_string();
        match kind {
            WatchedKind::MeshService => {
                let key = (namespace.clone(), name);
                let mut hosts = Vec::new();
                if let Some(previous) = inner.interests.meshservice(&key) {
                    hosts.extend(previous.hosts.iter().cloned());
                }
                match serde_json::from_value::<MeshService>(value.clone()) {
                    Ok(meshservice) => {
                        let interest = Interest::of(&meshservice, &namespace);
                        hosts.extend(interest.hosts.iter().cloned());
                        inner.interests.set_meshservice(key.clone(), interest);
                        inner
                            .meshservices
                            .insert(key.clone(), Arc::new(meshservice));
                    }
                    Err(error) => {
                        // The engine turns it into an MSH0001 finding; we only stop acting on it.
                        warn!(meshservice = %format!("{}/{}", key.0, key.1), %error, "MeshService does not decode");
                        metrics.undecodable(kind.kind());
                        inner.interests.remove_meshservice(&key);
                        inner.meshservices.remove(&key);
                    }
                }
                Some(TouchedOwned::MeshService { key, hosts })
            }
            WatchedKind::VirtualService => {
                let hosts = string_list(value.get("spec").and_then(|s| s.get("hosts")));
                let mut all = inner
                    .interests
                    .set_virtual_service_hosts(&namespace, &name, &hosts);
                all.extend(hosts);
                Some(TouchedOwned::VirtualService {
                    owner: annotation(value, ownership::OWNER_ANNOTATION).and_then(parse_owner_key),
                    namespace,
                    name,
                    hosts: all,
                })
            }
            WatchedKind::Gateway => {
                let served = gateway_hosts(value);
                let mut hosts = inner
                    .interests
                    .set_gateway_hosts(&namespace, &name, &served);
                hosts.extend(served);
                Some(TouchedOwned::Gateway {
                    contributors: contributors(value),
                    namespace,
                    name,
                    hosts,
                })
            }
            WatchedKind::Service => Some(TouchedOwned::Service {
                owner: annotation(value, ownership::OWNER_ANNOTATION).and_then(parse_owner_key),
                namespace,
                name,
            }),
            WatchedKind::ServiceEntry => Some(TouchedOwned::ServiceEntry {
                hosts: string_list(value.get("spec").and_then(|s| s.get("hosts"))),
            }),
            WatchedKind::DestinationRule | WatchedKind::Namespace => None,
        }
    }

    /// Projects a created or changed object; returns the MeshServices it may affect.
    pub fn apply(&self, kind: WatchedKind, value: Value) -> BTreeSet<MeshKey> {
        let mut inner = self.lock();
        let touched = Self::note_applied(&mut inner, &self.metrics, kind, &value);
        if let Err(error) = inner.engine.upsert(SourceObject::new(value)) {
            warn!(kind = kind.kind(), %error, "the integrity engine refused an object");
        }
        inner.dirty = true;
        touched
            .map(|t| inner.interests.affected(&t.borrow()))
            .unwrap_or_default()
    }

    /// Projects a batch of listed objects (the initial list of a watch); no triggers, the
    /// controller reconciles every MeshService when it starts.
    pub fn apply_batch(&self, kind: WatchedKind, values: Vec<Value>) {
        if values.is_empty() {
            return;
        }
        let mut inner = self.lock();
        for value in &values {
            Self::note_applied(&mut inner, &self.metrics, kind, value);
        }
        let objects: Vec<SourceObject> = values.into_iter().map(SourceObject::new).collect();
        if let Err(error) = inner.engine.ingest_batch(objects) {
            warn!(kind = kind.kind(), %error, "the integrity engine refused a batch");
        }
        inner.dirty = true;
    }

    /// Forgets a deleted object (`value` is its last known state); returns the MeshServices it may
    /// affect.
    pub fn delete(&self, kind: WatchedKind, value: &Value) -> BTreeSet<MeshKey> {
        let namespace = metadata_str(value, "namespace");
        let name = metadata_str(value, "name");
        let mut inner = self.lock();
        let touched = Self::note_deleted(&mut inner, kind, namespace, name, value);
        if let Err(error) = inner.engine.delete(&kind.key(namespace, name)) {
            warn!(kind = kind.kind(), %error, "the integrity engine failed to delete an object");
        }
        inner.dirty = true;
        touched
            .map(|t| inner.interests.affected(&t.borrow()))
            .unwrap_or_default()
    }

    /// Forgets objects that a relist no longer returned (deleted while the watch was down).
    pub fn delete_keys(&self, kind: WatchedKind, keys: &[(String, String)]) {
        if keys.is_empty() {
            return;
        }
        let mut inner = self.lock();
        for (namespace, name) in keys {
            Self::note_deleted(&mut inner, kind, namespace, name, &Value::Null);
            if let Err(error) = inner.engine.delete(&kind.key(namespace, name)) {
                warn!(kind = kind.kind(), %error, "the integrity engine failed to delete an object");
            }
        }
        inner.dirty = true;
    }

    fn note_deleted(
        inner: &mut Inner,
        kind: WatchedKind,
        namespace: &str,
        name: &str,
        value: &Value,
    ) -> Option<TouchedOwned> {
        match kind {
            WatchedKind::MeshService => {
                let key = (namespace.to_string(), name.to_string());
                inner.meshservices.remove(&key);
                let hosts = inner
                    .interests
                    .remove_meshservice(&key)
                    .map(|interest| interest.hosts)
                    .unwrap_or_default();
                Some(TouchedOwned::MeshService { key, hosts })
            }
            WatchedKind::VirtualService => {
                let hosts = inner
                    .interests
                    .set_virtual_service_hosts(namespace, name, &[]);
                Some(TouchedOwned::VirtualService {
                    owner: annotation(value, ownership::OWNER_ANNOTATION).and_then(parse_owner_key),
                    namespace: namespace.into(),
                    name: name.into(),
                    hosts,
                })
            }
            WatchedKind::Gateway => Some(TouchedOwned::Gateway {
                contributors: contributors(value),
                hosts: inner.interests.set_gateway_hosts(namespace, name, &[]),
                namespace: namespace.into(),
                name: name.into(),
            }),
            WatchedKind::Service => Some(TouchedOwned::Service {
                owner: annotation(value, ownership::OWNER_ANNOTATION).and_then(parse_owner_key),
                namespace: namespace.into(),
                name: name.into(),
            }),
            WatchedKind::ServiceEntry => Some(TouchedOwned::ServiceEntry {
                hosts: string_list(value.get("spec").and_then(|s| s.get("hosts"))),
            }),
            WatchedKind::DestinationRule | WatchedKind::Namespace => None,
        }
    }

    /// Records how many objects a watch stream holds, for the `mesh_watched_objects` gauge.
    pub fn set_count(&self, stream: &str, kind: WatchedKind, count: usize) {
        let mut inner = self.lock();
        inner.counts.insert(stream.to_string(), (kind, count));
        let total: usize = inner
            .counts
            .values()
            .filter(|(k, _)| *k == kind)
            .map(|(_, n)| n)
            .sum();
        drop(inner);
        self.metrics.set_watched(kind.kind(), total);
    }

    /// Makes sure the engine knows `meshservice` at least at its generation. The reconciler may
    /// see a MeshService (through the controller's own watch) before the index watch delivers it;
    /// deciding its claims against an engine that does not know it would let it win a host it
    /// should lose.
    pub fn ensure_meshservice(
        &self,
        meshservice: &MeshService,
    ) -> Result<(), mesh_integrity::Error> {
        let namespace = meshservice.metadata.namespace.clone().unwrap_or_default();
        let name = meshservice.metadata.name.clone().unwrap_or_default();
        let key = (namespace, name);
        let known_generation = self
            .lock()
            .meshservices
            .get(&key)
            .map(|known| known.metadata.generation);
        if known_generation.is_some_and(|known| known >= meshservice.metadata.generation) {
            return Ok(());
        }
        let value = serde_json::to_value(meshservice)?;
        self.apply(WatchedKind::MeshService, value);
        Ok(())
    }

    /// Records an object that does not decode even untyped as an `MSH0001` finding, so `/report`
    /// names it while its watch goes on.
    pub fn record_undecodable(
        &self,
        kind: WatchedKind,
        metadata: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
        message: &str,
    ) {
        let key = kind.key(
            metadata.namespace.as_deref().unwrap_or_default(),
            metadata.name.as_deref().unwrap_or_default(),
        );
        self.metrics.undecodable(kind.kind());
        let mut inner = self.lock();
        if let Err(error) = inner.engine.record_undecodable(&key, message) {
            warn!(kind = kind.kind(), %error, "the integrity engine failed to record an undecodable object");
        }
        inner.dirty = true;
    }

    /// Every MeshService the index knows, decoded.
    pub fn meshservices(&self) -> Vec<Arc<MeshService>> {
        self.lock().meshservices.values().cloned().collect()
    }

    /// Every MeshService key the index knows.
    pub fn meshservice_keys(&self) -> Vec<MeshKey> {
        self.lock().interests.all().cloned().collect()
    }

    /// The engine's findings on one MeshService.
    pub fn findings_for_meshservice(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Vec<MeshFinding>, mesh_integrity::Error> {
        let key = WatchedKind::MeshService.key(namespace, name);
        let findings = self.lock().engine.findings_for(&key)?;
        Ok(findings.into_iter().map(mesh_finding).collect())
    }

    /// The full consistency report as JSON, the shape `check --format json` prints. Updates the
    /// findings and check-duration metrics on the way.
    pub fn report(&self) -> Result<Value, mesh_integrity::Error> {
        let report = self.check()?;
        Ok(serde_json::to_value(&report)?)
    }

    /// Runs the engine's full check and updates the findings and check-duration metrics.
    fn check(&self) -> Result<mesh_integrity::Report, mesh_integrity::Error> {
        let started = Instant::now();
        let report = {
            let mut inner = self.lock();
            inner.dirty = false;
            inner.engine.check()?
        };
        self.metrics.engine_checked(started.elapsed());
        let mut counts: BTreeMap<(String, String), i64> = BTreeMap::new();
        for finding in &report.findings {
            *counts
                .entry((finding.code.clone(), capitalised_severity(finding.severity)))
                .or_default() += 1;
        }
        self.metrics.set_findings(counts);
        Ok(report)
    }

    /// Counts the findings when something changed since the last check, to keep the findings
    /// metrics current; returns how long the count took. Only the counts are needed, so the engine
    /// counts the rules' rows instead of building every finding with its repair plan.
    pub fn refresh_metrics(&self) -> Option<Duration> {
        let started = Instant::now();
        let counts = {
            let mut inner = self.lock();
            if !inner.dirty {
                return None;
            }
            inner.dirty = false;
            inner.engine.finding_counts()
        };
        match counts {
            Ok(counts) => {
                let elapsed = started.elapsed();
                self.metrics.engine_checked(elapsed);
                self.metrics.set_findings(counts.into_iter().map(|c| {
                    let count = i64::try_from(c.count).unwrap_or(i64::MAX);
                    ((c.code, capitalised_severity(c.severity)), count)
                }));
                Some(elapsed)
            }
            Err(error) => {
                warn!(%error, "integrity check failed");
                None
            }
        }
    }
}

/// The hosts a Gateway's servers serve, without their `namespace/` prefix.
fn gateway_hosts(value: &Value) -> Vec<String> {
    let mut hosts: Vec<String> = value
        .get("spec")
        .and_then(|s| s.get("servers"))
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .flat_map(|server| string_list(server.get("hosts")))
        .map(|host| match host.split_once('/') {
            Some((_, host)) => host.to_string(),
            None => host,
        })
        .collect();
    hosts.sort();
    hosts.dedup();
    hosts
}

fn contributors(value: &Value) -> Vec<MeshKey> {
    annotation(value, ownership::CONTRIBUTORS_ANNOTATION)
        .map(|list| list.split(',').filter_map(parse_owner_key).collect())
        .unwrap_or_default()
}

fn capitalised_severity(severity: mesh_integrity::Severity) -> String {
    match severity {
        mesh_integrity::Severity::Error => "Error",
        mesh_integrity::Severity::Warning => "Warning",
        mesh_integrity::Severity::Info => "Info",
    }
    .to_string()
}

fn mesh_finding(finding: mesh_integrity::Finding) -> MeshFinding {
    MeshFinding {
        related: finding
            .winner
            .as_ref()
            .or(finding.related.first().map(|related| &related.resource))
            .map(|r| r.display()),
        severity: capitalised_severity(finding.severity),
        code: finding.code,
        message: finding.message,
        host: finding.host,
    }
}

/// [`Touched`] with owned strings, built under the lock and borrowed for the query.
enum TouchedOwned {
    MeshService {
        key: MeshKey,
        hosts: Vec<String>,
    },
    Gateway {
        namespace: String,
        name: String,
        contributors: Vec<MeshKey>,
        hosts: Vec<String>,
    },
    Service {
        namespace: String,
        name: String,
        owner: Option<MeshKey>,
    },
    VirtualService {
        namespace: String,
        name: String,
        owner: Option<MeshKey>,
        hosts: Vec<String>,
    },
    ServiceEntry {
        hosts: Vec<String>,
    },
}

impl TouchedOwned {
    fn borrow(&self) -> Touched<'_> {
        match self {
            TouchedOwned::MeshService { key, hosts } => Touched::MeshService {
                key,
                hosts: hosts.clone(),
            },
            TouchedOwned::Gateway {
                namespace,
                name,
                contributors,
                hosts,
            } => Touched::Gateway {
                namespace,
                name,
                contributors: contributors.clone(),
                hosts: hosts.clone(),
            },
            TouchedOwned::Service {
                namespace,
                name,
                owner,
            } => Touched::Service {
                namespace,
                name,
                owner: owner.clone(),
            },
            TouchedOwned::VirtualService {
                namespace,
                name,
                owner,
                hosts,
            } => Touched::VirtualService {
                namespace,
                name,
                owner: owner.clone(),
                hosts: hosts.clone(),
            },
            TouchedOwned::ServiceEntry { hosts } => Touched::ServiceEntry {
                hosts: hosts.clone(),
            },
        }
    }
}

/// Logs at debug what a watch event did; kept apart so the hot path stays readable.
pub fn log_event(stream: &str, what: &str, namespace: &str, name: &str, affected: usize) {
    debug!(stream, what, namespace, name, affected, "watch event");
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn watched_kinds_name_their_real_api_resources() {
        let plurals: Vec<(String, String)> = WatchedKind::ALL
            .iter()
            .map(|k| {
                let r = k.api_resource();
                (r.api_version, r.plural)
            })
            .collect();
        assert_eq!(
            plurals,
            [
                ("mesh.istio.operator/v1alpha1", "meshservices"),
                ("networking.istio.io/v1", "virtualservices"),
                ("networking.istio.io/v1", "gateways"),
                ("networking.istio.io/v1", "destinationrules"),
                ("networking.istio.io/v1", "serviceentries"),
                ("v1", "services"),
                ("v1", "namespaces"),
            ]
            .map(|(v, p)| (v.to_string(), p.to_string()))
        );
    }

    fn index() -> LiveIndex {
        LiveIndex::new(Arc::new(Metrics::new())).expect("an in-memory engine")
    }

    fn meshservice(namespace: &str, name: &str, host: &str, gateway: Option<&str>) -> Value {
        json!({
            "apiVersion": "mesh.istio.operator/v1alpha1", "kind": "MeshService",
            "metadata": {"name": name, "namespace": namespace, "uid": format!("uid-{name}"),
                         "generation": 1, "creationTimestamp": "2026-01-01T00:00:00Z"},
            "spec": {"serviceName": name, "hosts": [host], "ports": [{"port": 80}],
                     "gateway": gateway.map(|g| json!({"name": g, "namespace": "edge"}))}
        })
    }

    #[test]
    fn a_gateway_event_requeues_the_meshservices_that_reference_it() {
        let index = index();
        index.apply_batch(
            WatchedKind::MeshService,
            vec![
                meshservice("a", "web", "web.example.com", Some("public")),
                meshservice("b", "api", "api.example.com", None),
            ],
        );
        let gateway = json!({
            "apiVersion": "networking.istio.io/v1", "kind": "Gateway",
            "metadata": {"name": "public", "namespace": "edge"},
            "spec": {"servers": [{"port": {"number": 80, "name": "http", "protocol": "HTTP"}, "hosts": ["*/web.example.com"]}]}
        });
        let affected = index.apply(WatchedKind::Gateway, gateway.clone());
        assert_eq!(
            affected,
            BTreeSet::from([("a".to_string(), "web".to_string())])
        );
        assert_eq!(index.delete(WatchedKind::Gateway, &gateway), affected);
    }

    #[test]
    fn engine_findings_reach_the_meshservice_and_follow_the_gateway() {
        let index = index();
        index.apply(
            WatchedKind::MeshService,
            meshservice("a", "web", "web.example.com", Some("public")),
        );
        let codes = |index: &LiveIndex| -> Vec<String> {
            index
                .findings_for_meshservice("a", "web")
                .expect("findings")
                .into_iter()
                .map(|f| f.code)
                .collect()
        };
        assert_eq!(codes(&index), ["MSH0202"]);
        index.apply(
            WatchedKind::Gateway,
            json!({
                "apiVersion": "networking.istio.io/v1", "kind": "Gateway",
                "metadata": {"name": "public", "namespace": "edge"},
                "spec": {"selector": {"istio": "ingressgateway"},
                         "servers": [{"port": {"number": 80, "name": "http", "protocol": "HTTP"}, "hosts": ["*/web.example.com"]}]}
            }),
        );
        assert!(codes(&index).is_empty(), "{:?}", codes(&index));
    }

    #[test]
    fn a_relist_forgets_what_it_no_longer_lists() {
        let index = index();
        index.apply_batch(
            WatchedKind::MeshService,
            vec![meshservice("a", "web", "web.example.com", None)],
        );
        assert_eq!(index.meshservice_keys().len(), 1);
        index.delete_keys(WatchedKind::MeshService, &[("a".into(), "web".into())]);
        assert!(index.meshservice_keys().is_empty());
        let report = index.report().expect("report");
        assert_eq!(report["summary"]["objectsTotal"], json!(0));
    }

    #[test]
    fn an_undecodable_object_is_in_the_report() {
        let index = index();
        let metadata = k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
            name: Some("broken".into()),
            namespace: Some("x".into()),
            ..Default::default()
        };
        index.record_undecodable(
            WatchedKind::VirtualService,
            &metadata,
            "spec: expected an object",
        );
        let report = index.report().expect("report");
        let finding = &report["findings"][0];
        assert_eq!(finding["code"], json!("MSH0001"));
        assert_eq!(finding["resource"]["name"], json!("broken"));
    }
}
