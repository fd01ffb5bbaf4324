//! The shipped RBAC (deploy/rbac/) on the real control plane, with ServiceAccount tokens from the
//! TokenRequest API, never the admin:
//! - sufficiency: the operator binary, authenticated as the ServiceAccount, reconciles a MeshService
//!   end to end (Service, VirtualService, managed Gateway, status, Event, Lease, finalizer cleanup)
//!   without a single forbidden request;
//! - minimality: for every verb of the shipped roles, a role without that verb makes the operation
//!   that needs it fail with 403 while the rest of the role still works.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Once;
use std::time::{Duration, Instant};

use k8s_openapi::api::authentication::v1::TokenRequest;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Namespace, Service, ServiceAccount};
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, Patch,
    PatchParams, PostParams, WatchParams,
};
use kube::{Client, ResourceExt as _};
use meshservice_api::MeshService;
use serde_json::{Value, json};
use test_controlplane::ControlPlane;

mod common;
use common::{free_port, http_get};
const OPERATOR_NAMESPACE: &str = "istio-integrity-system";
const OPERATOR_ACCOUNT: &str = "istio-integrity-operator";
/// The operator's own field manager, so the test's applies look like the operator's.
const MANAGER: &str = "istio-integrity-operator";

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn shipped<T: serde::de::DeserializeOwned>(path: &str) -> T {
    serde_saphyr::from_str(&std::fs::read_to_string(root().join(path)).unwrap()).unwrap()
}

/// `kubectl apply` of the operator's namespace and deploy/rbac/, as the install does (once per
/// test binary; the tests share the control plane).
fn install_shipped_rbac(cp: &ControlPlane) {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        cp.kubectl_apply(&[
            &root().join("deploy/namespace.yaml"),
            &root().join("deploy/rbac"),
        ])
        .unwrap();
    });
}

fn forbidden<T>(result: &Result<T, kube::Error>) -> bool {
    matches!(result, Err(kube::Error::Api(status)) if status.is_forbidden())
}

/// Retries `op` while the apiserver still answers 403: a new binding reaches the RBAC authorizer
/// through an informer, a moment after it is created.
async fn once_authorized<T, F, Fut>(what: &str, mut op: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, kube::Error>>,
{
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let result = op().await;
        if forbidden(&result) && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        }
        return result.unwrap_or_else(|e| panic!("{what}: {e}"));
    }
}

/// Waits until `account` may list MeshServices (everywhere, or in `namespace`) and, when it uses
/// the leader-election Role, read Leases in the operator's namespace: the operator binary exits on
/// a 403 from its first list, and a new binding takes a moment to be in effect.
async fn wait_until_authorized(
    cp: &ControlPlane,
    account_namespace: &str,
    account: &str,
    namespace: Option<&str>,
    leases: bool,
) {
    let client = cp
        .service_account_client(account_namespace, account)
        .await
        .unwrap();
    let meshservices: Api<MeshService> = match namespace {
        Some(namespace) => Api::namespaced(client.clone(), namespace),
        None => Api::all(client.clone()),
    };
    once_authorized("listing MeshServices", || async {
        meshservices
            .list_metadata(&ListParams::default().limit(1))
            .await
    })
    .await;
    if leases {
        let leases: Api<Lease> = Api::namespaced(client, OPERATOR_NAMESPACE);
        once_authorized("reading Leases", || leases.get_opt("rbac-probe")).await;
    }
}

async fn eventually<F, Fut>(what: &str, seconds: u64, mut done: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(seconds);
    while !done().await {
        assert!(
            Instant::now() < deadline,
            "timed out after {seconds} s waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn istio(kind: &str) -> ApiResource {
    ApiResource::from_gvk(&GroupVersionKind::gvk("networking.istio.io", "v1", kind))
}

fn istio_api(client: &Client, ns: &str, kind: &str) -> Api<DynamicObject> {
    Api::namespaced_with(client.clone(), ns, &istio(kind))
}

fn virtual_service(ns: &str, name: &str) -> Value {
    json!({
        "apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"hosts": [format!("{name}.{ns}.fixture.invalid")], "http": [{"route": [{"destination": {"host": name}}]}]}
    })
}

/// A Gateway for the RBAC operations; its host is its own, so the test operators running at the
/// same time see no host claim conflict with it (the same ingress workload, port 80).
fn gateway(ns: &str, name: &str) -> Value {
    json!({
        "apiVersion": "networking.istio.io/v1", "kind": "Gateway",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"selector": {"istio": "ingressgateway"},
                 "servers": [{"port": {"number": 80, "name": "http", "protocol": "HTTP"}, "hosts": [format!("{name}.{ns}.fixture.invalid")]}]}
    })
}

fn service(ns: &str, name: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"selector": {"app": name}, "ports": [{"name": "http-80", "port": 80, "targetPort": 8080}]}
    })
}

fn meshservice(ns: &str, name: &str, gateway: Value) -> MeshService {
    serde_json::from_value(json!({
        "apiVersion": "mesh.istio.operator/v1alpha1", "kind": "MeshService",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"serviceName": name, "hosts": [format!("{name}.{ns}.example.com")], "gateway": gateway,
                 "ports": [{"port": 80, "targetPort": 8080}]}
    }))
    .unwrap()
}

/// The label the test operators select their MeshServices by.
fn labelled(mut ms: MeshService, selector: &str) -> MeshService {
    ms.metadata.labels = Some([("iio-test".to_string(), selector.to_string())].into());
    ms
}

fn event(ns: &str, name: &str, regarding: &str) -> Event {
    serde_json::from_value(json!({
        "apiVersion": "events.k8s.io/v1", "kind": "Event",
        "metadata": {"name": name, "namespace": ns},
        "eventTime": "2026-01-01T00:00:00.000000Z",
        "reportingController": "istio-integrity-operator", "reportingInstance": "rbac-test",
        "action": "Reconcile", "reason": "Applied", "type": "Normal", "note": "rbac test",
        "regarding": {"apiVersion": "mesh.istio.operator/v1alpha1", "kind": "MeshService", "namespace": ns, "name": regarding}
    }))
    .unwrap()
}

fn lease(name: &str, holder: &str) -> Lease {
    serde_json::from_value(json!({
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": name},
        "spec": {"holderIdentity": holder, "leaseDurationSeconds": 15}
    }))
    .unwrap()
}

fn apply() -> PatchParams {
    PatchParams::apply(MANAGER).force()
}

/// Creates with the admin whatever the operation under test needs to exist.
async fn admin_apply(admin: &Client, ns: &str, kind: &str, object: Value) {
    let name = object["metadata"]["name"].as_str().unwrap().to_string();
    match kind {
        "Service" => Api::<Service>::namespaced(admin.clone(), ns)
            .patch(&name, &apply(), &Patch::Apply(&object))
            .await
            .map(drop),
        _ => istio_api(admin, ns, kind)
            .patch(&name, &apply(), &Patch::Apply(&object))
            .await
            .map(drop),
    }
    .unwrap();
}

/// One operation of the operator, and the verb of the shipped roles it needs.
#[derive(Clone, Copy, Debug)]
enum Op {
    ListMeshServices,
    WatchMeshServices,
    PatchMeshServiceFinalizer,
    PatchMeshServiceStatus,
    GetService,
    ListServices,
    WatchServices,
    CreateServiceByApply,
    PatchServiceByApply,
    GetVirtualService,
    ListVirtualServices,
    WatchVirtualServices,
    CreateVirtualServiceByApply,
    PatchVirtualServiceByApply,
    DeleteVirtualService,
    GetGateway,
    ListGateways,
    WatchGateways,
    CreateGatewayByApply,
    PatchGatewayByApply,
    DeleteGateway,
    ListDestinationRules,
    WatchDestinationRules,
    ListServiceEntries,
    WatchServiceEntries,
    CreateEvent,
    PatchEvent,
    ListNamespaces,
    WatchNamespaces,
    GetLease,
    CreateLease,
    PatchLease,
}

impl Op {
    /// (resource as written in the role, verb) this operation needs.
    fn needs(self) -> (&'static str, &'static str) {
        use Op::*;
        match self {
            ListMeshServices => ("meshservices", "list"),
            WatchMeshServices => ("meshservices", "watch"),
            PatchMeshServiceFinalizer => ("meshservices", "patch"),
            PatchMeshServiceStatus => ("meshservices/status", "patch"),
            GetService => ("services", "get"),
            ListServices => ("services", "list"),
            WatchServices => ("services", "watch"),
            CreateServiceByApply => ("services", "create"),
            PatchServiceByApply => ("services", "patch"),
            GetVirtualService => ("virtualservices", "get"),
            ListVirtualServices => ("virtualservices", "list"),
            WatchVirtualServices => ("virtualservices", "watch"),
            CreateVirtualServiceByApply => ("virtualservices", "create"),
            PatchVirtualServiceByApply => ("virtualservices", "patch"),
            DeleteVirtualService => ("virtualservices", "delete"),
            GetGateway => ("gateways", "get"),
            ListGateways => ("gateways", "list"),
            WatchGateways => ("gateways", "watch"),
            CreateGatewayByApply => ("gateways", "create"),
            PatchGatewayByApply => ("gateways", "patch"),
            DeleteGateway => ("gateways", "delete"),
            ListDestinationRules => ("destinationrules", "list"),
            WatchDestinationRules => ("destinationrules", "watch"),
            ListServiceEntries => ("serviceentries", "list"),
            WatchServiceEntries => ("serviceentries", "watch"),
            CreateEvent => ("events", "create"),
            PatchEvent => ("events", "patch"),
            ListNamespaces => ("namespaces", "list"),
            WatchNamespaces => ("namespaces", "watch"),
            GetLease => ("leases", "get"),
            CreateLease => ("leases", "create"),
            PatchLease => ("leases", "patch"),
        }
    }

    /// An operation the same role still allows once `self`'s verb is gone (same resource where
    /// possible), to tell "the binding has not propagated yet" from "forbidden for good".
    fn sibling(self) -> Op {
        use Op::*;
        match self {
            ListMeshServices | PatchMeshServiceFinalizer | PatchMeshServiceStatus => {
                WatchMeshServices
            }
            WatchMeshServices => ListMeshServices,
            GetService | WatchServices | CreateServiceByApply | PatchServiceByApply => ListServices,
            ListServices => GetService,
            GetVirtualService
            | WatchVirtualServices
            | CreateVirtualServiceByApply
            | DeleteVirtualService => ListVirtualServices,
            ListVirtualServices | PatchVirtualServiceByApply => GetVirtualService,
            GetGateway | WatchGateways | CreateGatewayByApply | DeleteGateway => ListGateways,
            ListGateways | PatchGatewayByApply => GetGateway,
            ListDestinationRules => WatchDestinationRules,
            WatchDestinationRules => ListDestinationRules,
            ListServiceEntries => WatchServiceEntries,
            WatchServiceEntries => ListServiceEntries,
            CreateEvent | PatchEvent => ListServices,
            ListNamespaces => WatchNamespaces,
            WatchNamespaces => ListNamespaces,
            GetLease | CreateLease => PatchLease,
            PatchLease => GetLease,
        }
    }

    /// Prepares what the operation needs with the admin (objects to patch, get or delete).
    async fn prepare(self, admin: &Client, ns: &str, tag: &str) {
        use Op::*;
        match self {
            PatchServiceByApply | GetService => {
                admin_apply(admin, ns, "Service", service(ns, tag)).await
            }
            PatchVirtualServiceByApply | GetVirtualService | DeleteVirtualService => {
                admin_apply(admin, ns, "VirtualService", virtual_service(ns, tag)).await
            }
            PatchGatewayByApply | GetGateway | DeleteGateway => {
                admin_apply(admin, ns, "Gateway", gateway(ns, tag)).await
            }
            PatchMeshServiceFinalizer | PatchMeshServiceStatus => {
                let api: Api<MeshService> = Api::namespaced(admin.clone(), ns);
                api.create(&PostParams::default(), &meshservice(ns, tag, Value::Null))
                    .await
                    .unwrap();
            }
            PatchEvent => {
                let api: Api<Event> = Api::namespaced(admin.clone(), ns);
                api.create(&PostParams::default(), &event(ns, tag, tag))
                    .await
                    .unwrap();
            }
            GetLease | PatchLease => {
                let api: Api<Lease> = Api::namespaced(admin.clone(), ns);
                api.create(&PostParams::default(), &lease(tag, "admin"))
                    .await
                    .unwrap();
            }
            _ => {}
        }
    }

    /// Performs the operation as `client` on objects named `tag` in `ns`.
    async fn run(self, client: &Client, ns: &str, tag: &str) -> Result<(), kube::Error> {
        use Op::*;
        let services: Api<Service> = Api::namespaced(client.clone(), ns);
        let meshservices: Api<MeshService> = Api::namespaced(client.clone(), ns);
        let watch = WatchParams::default().timeout(1);
        match self {
            ListMeshServices => Api::<MeshService>::all(client.clone())
                .list(&ListParams::default())
                .await
                .map(drop),
            WatchMeshServices => Api::<MeshService>::all(client.clone())
                .watch(&watch, "0")
                .await
                .map(drop),
            PatchMeshServiceFinalizer => {
                let patch = json!({"metadata": {"finalizers": ["mesh.istio.operator/cleanup"]}});
                meshservices
                    .patch(tag, &PatchParams::default(), &Patch::Merge(&patch))
                    .await
                    .map(drop)
            }
            PatchMeshServiceStatus => {
                let status = json!({
                    "apiVersion": "mesh.istio.operator/v1alpha1", "kind": "MeshService",
                    "status": {"observedGeneration": 1}
                });
                meshservices
                    .patch_status(tag, &apply(), &Patch::Apply(&status))
                    .await
                    .map(drop)
            }
            GetService => services.get(tag).await.map(drop),
            ListServices => Api::<Service>::all(client.clone())
                .list(&ListParams::default())
                .await
                .map(drop),
            WatchServices => Api::<Service>::all(client.clone())
                .watch(&watch, "0")
                .await
                .map(drop),
            CreateServiceByApply | PatchServiceByApply => services
                .patch(tag, &apply(), &Patch::Apply(&service(ns, tag)))
                .await
                .map(drop),
            GetVirtualService => istio_api(client, ns, "VirtualService")
                .get(tag)
                .await
                .map(drop),
            ListVirtualServices => list_all(client, "VirtualService").await,
            WatchVirtualServices => watch_all(client, "VirtualService").await,
            CreateVirtualServiceByApply | PatchVirtualServiceByApply => {
                istio_api(client, ns, "VirtualService")
                    .patch(tag, &apply(), &Patch::Apply(&virtual_service(ns, tag)))
                    .await
                    .map(drop)
            }
            DeleteVirtualService => istio_api(client, ns, "VirtualService")
                .delete(tag, &DeleteParams::default())
                .await
                .map(drop),
            GetGateway => istio_api(client, ns, "Gateway").get(tag).await.map(drop),
            ListGateways => list_all(client, "Gateway").await,
            WatchGateways => watch_all(client, "Gateway").await,
            CreateGatewayByApply | PatchGatewayByApply => istio_api(client, ns, "Gateway")
                .patch(tag, &apply(), &Patch::Apply(&gateway(ns, tag)))
                .await
                .map(drop),
            DeleteGateway => istio_api(client, ns, "Gateway")
                .delete(tag, &DeleteParams::default())
                .await
                .map(drop),
            ListDestinationRules => list_all(client, "DestinationRule").await,
            WatchDestinationRules => watch_all(client, "DestinationRule").await,
            ListServiceEntries => list_all(client, "ServiceEntry").await,
            WatchServiceEntries => watch_all(client, "ServiceEntry").await,
            CreateEvent => Api::<Event>::namespaced(client.clone(), ns)
                .create(
                    &PostParams::default(),
                    &event(ns, &format!("{tag}-new"), tag),
                )
                .await
                .map(drop),
            PatchEvent => {
                let patch = json!({"series": {"count": 2, "lastObservedTime": "2026-01-01T00:00:01.000000Z"}});
                Api::<Event>::namespaced(client.clone(), ns)
                    .patch(tag, &PatchParams::default(), &Patch::Merge(&patch))
                    .await
                    .map(drop)
            }
            ListNamespaces => Api::<Namespace>::all(client.clone())
                .list(&ListParams::default())
                .await
                .map(drop),
            WatchNamespaces => Api::<Namespace>::all(client.clone())
                .watch(&watch, "0")
                .await
                .map(drop),
            GetLease => Api::<Lease>::namespaced(client.clone(), ns)
                .get(tag)
                .await
                .map(drop),
            CreateLease => Api::<Lease>::namespaced(client.clone(), ns)
                .create(
                    &PostParams::default(),
                    &lease(&format!("{tag}-new"), "test"),
                )
                .await
                .map(drop),
            PatchLease => {
                let patch = json!({"spec": {"holderIdentity": "test"}});
                Api::<Lease>::namespaced(client.clone(), ns)
                    .patch(tag, &PatchParams::default(), &Patch::Merge(&patch))
                    .await
                    .map(drop)
            }
        }
    }
}

async fn list_all(client: &Client, kind: &str) -> Result<(), kube::Error> {
    Api::<DynamicObject>::all_with(client.clone(), &istio(kind))
        .list(&ListParams::default())
        .await
        .map(drop)
}

async fn watch_all(client: &Client, kind: &str) -> Result<(), kube::Error> {
    Api::<DynamicObject>::all_with(client.clone(), &istio(kind))
        .watch(&WatchParams::default().timeout(1), "0")
        .await
        .map(drop)
}

const ALL_OPS: &[Op] = &[
    Op::ListMeshServices,
    Op::WatchMeshServices,
    Op::PatchMeshServiceFinalizer,
    Op::PatchMeshServiceStatus,
    Op::GetService,
    Op::ListServices,
    Op::WatchServices,
    Op::CreateServiceByApply,
    Op::PatchServiceByApply,
    Op::GetVirtualService,
    Op::ListVirtualServices,
    Op::WatchVirtualServices,
    Op::CreateVirtualServiceByApply,
    Op::PatchVirtualServiceByApply,
    Op::DeleteVirtualService,
    Op::GetGateway,
    Op::ListGateways,
    Op::WatchGateways,
    Op::CreateGatewayByApply,
    Op::PatchGatewayByApply,
    Op::DeleteGateway,
    Op::ListDestinationRules,
    Op::WatchDestinationRules,
    Op::ListServiceEntries,
    Op::WatchServiceEntries,
    Op::CreateEvent,
    Op::PatchEvent,
    Op::ListNamespaces,
    Op::WatchNamespaces,
    Op::GetLease,
    Op::CreateLease,
    Op::PatchLease,
];

/// The one shipped verb no test here can exercise: `update` on meshservices/finalizers is only
/// checked by the OwnerReferencesPermissionEnforcement admission plugin (on by default in OpenShift,
/// off in a vanilla kube-apiserver such as the test control plane), when the operator sets
/// `blockOwnerDeletion` on a child.
const NEEDS_AN_ADMISSION_PLUGIN: (&str, &str) = ("meshservices/finalizers", "update");

/// Every verb of the shipped ClusterRole and leader-election Role is proven needed below.
#[test]
fn every_shipped_verb_has_an_operation_that_needs_it() {
    let cluster: ClusterRole = shipped("deploy/rbac/cluster_role.yaml");
    let lease: Role = shipped("deploy/rbac/leader_election_role.yaml");
    let rules = cluster
        .rules
        .unwrap()
        .into_iter()
        .chain(lease.rules.unwrap());
    let mut shipped_verbs = Vec::new();
    for rule in rules {
        for resource in rule.resources.unwrap() {
            for verb in &rule.verbs {
                shipped_verbs.push((resource.clone(), verb.clone()));
            }
        }
    }
    for (resource, verb) in &shipped_verbs {
        let covered = ALL_OPS
            .iter()
            .any(|op| op.needs() == (resource.as_str(), verb.as_str()))
            || (resource.as_str(), verb.as_str()) == NEEDS_AN_ADMISSION_PLUGIN;
        assert!(
            covered,
            "{verb} on {resource} is shipped but no test shows an operation needing it"
        );
    }
    for op in ALL_OPS {
        let (resource, verb) = op.needs();
        assert!(
            shipped_verbs
                .iter()
                .any(|(r, v)| r == resource && v == verb),
            "{op:?} needs {verb} on {resource}, which the shipped roles lack"
        );
    }
}

/// `role` without `verb` on `resource` (rules left with no verb are dropped).
fn without(
    rules: Vec<k8s_openapi::api::rbac::v1::PolicyRule>,
    resource: &str,
    verb: &str,
) -> Vec<k8s_openapi::api::rbac::v1::PolicyRule> {
    let mut out = Vec::new();
    for rule in rules {
        let resources = rule.resources.clone().unwrap_or_default();
        if !resources.iter().any(|r| r == resource) {
            out.push(rule);
            continue;
        }
        // Split the rule: the other resources keep every verb, `resource` loses one.
        let others: Vec<String> = resources
            .iter()
            .filter(|r| *r != resource)
            .cloned()
            .collect();
        if !others.is_empty() {
            out.push(k8s_openapi::api::rbac::v1::PolicyRule {
                resources: Some(others),
                ..rule.clone()
            });
        }
        let verbs: Vec<String> = rule.verbs.iter().filter(|v| *v != verb).cloned().collect();
        assert_ne!(
            verbs.len(),
            rule.verbs.len(),
            "the shipped rule for {resource} has no {verb}"
        );
        if !verbs.is_empty() {
            out.push(k8s_openapi::api::rbac::v1::PolicyRule {
                resources: Some(vec![resource.to_string()]),
                verbs,
                ..rule
            });
        }
    }
    out
}

/// A client for a fresh ServiceAccount `account` in `ns`, bound to the shipped roles: the shipped
/// ClusterRole (minus `missing`, if given) cluster-wide, and the leader-election Role (minus
/// `missing`, if given) in `ns`.
async fn account_with_shipped_roles(
    cp: &ControlPlane,
    ns: &str,
    account: &str,
    missing: Option<(&str, &str)>,
) -> Client {
    let admin = cp.client().unwrap();
    let mut cluster: ClusterRole = shipped("deploy/rbac/cluster_role.yaml");
    let mut lease: Role = shipped("deploy/rbac/leader_election_role.yaml");
    if let Some((resource, verb)) = missing {
        if resource == "leases" {
            lease.rules = Some(without(lease.rules.unwrap(), resource, verb));
        } else {
            cluster.rules = Some(without(cluster.rules.unwrap(), resource, verb));
        }
    }
    let name = format!("{ns}-{account}");
    cluster.metadata = k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
        name: Some(name.clone()),
        ..Default::default()
    };
    lease.metadata = k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
        name: Some(name.clone()),
        namespace: Some(ns.into()),
        ..Default::default()
    };
    Api::<ClusterRole>::all(admin.clone())
        .create(&PostParams::default(), &cluster)
        .await
        .unwrap();
    Api::<Role>::namespaced(admin.clone(), ns)
        .create(&PostParams::default(), &lease)
        .await
        .unwrap();
    let subjects = json!([{"kind": "ServiceAccount", "name": account, "namespace": ns}]);
    let binding: ClusterRoleBinding = serde_json::from_value(json!({
        "metadata": {"name": name},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name},
        "subjects": subjects
    }))
    .unwrap();
    Api::<ClusterRoleBinding>::all(admin.clone())
        .create(&PostParams::default(), &binding)
        .await
        .unwrap();
    let binding: RoleBinding = serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": ns},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
        "subjects": subjects
    }))
    .unwrap();
    Api::<RoleBinding>::namespaced(admin, ns)
        .create(&PostParams::default(), &binding)
        .await
        .unwrap();
    cp.service_account_client(ns, account).await.unwrap()
}

/// For every operation: with the shipped roles it succeeds; with the shipped roles minus the one
/// verb it needs it gets 403, while a sibling operation of the same reduced role still succeeds (so
/// the 403 is the missing verb, not a binding that has not propagated yet).
#[tokio::test(flavor = "multi_thread")]
async fn removing_one_verb_breaks_exactly_the_operation_that_needs_it() {
    let cp = test_controlplane::shared().await.unwrap();
    let ns = cp.namespace("rbac-minus-one-verb").await.unwrap();
    let ns = ns.name();
    let admin = cp.client().unwrap();
    let full = account_with_shipped_roles(cp, ns, "full", None).await;

    for (i, op) in ALL_OPS.iter().enumerate() {
        let (resource, verb) = op.needs();
        let tag = format!("op{i}");
        op.prepare(&admin, ns, &tag).await;
        let account = format!("minus-{i}");
        let reduced = account_with_shipped_roles(cp, ns, &account, Some((resource, verb))).await;
        let sibling = op.sibling();
        let sibling_tag = format!("op{i}-sibling");
        sibling.prepare(&admin, ns, &sibling_tag).await;
        once_authorized(
            &format!("{op:?} minus {verb} on {resource}: sibling {sibling:?}"),
            || sibling.run(&reduced, ns, &sibling_tag),
        )
        .await;
        let result = op.run(&reduced, ns, &tag).await;
        assert!(
            forbidden(&result),
            "{op:?} without {verb} on {resource} must be forbidden, got {:?}",
            result.err()
        );

        once_authorized(&format!("{op:?} with the shipped roles"), || {
            op.run(&full, ns, &tag)
        })
        .await;
    }
}

/// Nothing beyond the shipped rules: no Secrets, no writes to what the operator only reads, no
/// full updates, no Leases outside its namespace.
#[tokio::test(flavor = "multi_thread")]
async fn the_shipped_rbac_grants_nothing_else() {
    let cp = test_controlplane::shared().await.unwrap();
    install_shipped_rbac(cp);
    let ns = cp.namespace("rbac-nothing-else").await.unwrap();
    let ns = ns.name();
    let admin = cp.client().unwrap();
    let operator = cp
        .service_account_client(OPERATOR_NAMESPACE, OPERATOR_ACCOUNT)
        .await
        .unwrap();
    once_authorized("the shipped binding", || {
        Op::ListMeshServices.run(&operator, ns, "x")
    })
    .await;

    let meshservices: Api<MeshService> = Api::namespaced(admin.clone(), ns);
    let created = meshservices
        .create(&PostParams::default(), &meshservice(ns, "web", Value::Null))
        .await
        .unwrap();
    admin_apply(&admin, ns, "Service", service(ns, "web")).await;

    let as_operator: Api<MeshService> = Api::namespaced(operator.clone(), ns);
    let secrets: Api<k8s_openapi::api::core::v1::Secret> = Api::namespaced(operator.clone(), ns);
    assert!(
        forbidden(&secrets.list(&ListParams::default()).await),
        "Secrets"
    );
    assert!(forbidden(&secrets.get("anything").await), "a Secret");
    assert!(forbidden(
        &as_operator
            .create(
                &PostParams::default(),
                &meshservice(ns, "other", Value::Null)
            )
            .await
    ));
    assert!(
        forbidden(
            &as_operator
                .replace("web", &PostParams::default(), &created)
                .await
        ),
        "update"
    );
    assert!(forbidden(
        &as_operator.delete("web", &DeleteParams::default()).await
    ));
    assert!(
        forbidden(&as_operator.get("web").await),
        "get: the operator lists and watches only"
    );
    let services: Api<Service> = Api::namespaced(operator.clone(), ns);
    assert!(
        forbidden(&services.delete("web", &DeleteParams::default()).await),
        "Services go by GC"
    );
    let rules = istio_api(&operator, ns, "DestinationRule");
    let rule = json!({"apiVersion": "networking.istio.io/v1", "kind": "DestinationRule",
                      "metadata": {"name": "web", "namespace": ns}, "spec": {"host": "web"}});
    assert!(
        forbidden(&rules.patch("web", &apply(), &Patch::Apply(&rule)).await),
        "DestinationRules are read only"
    );
    assert!(
        forbidden(&Op::CreateLease.run(&operator, ns, "elsewhere").await),
        "Leases outside its namespace"
    );
    let accounts: Api<ServiceAccount> = Api::namespaced(operator.clone(), OPERATOR_NAMESPACE);
    assert!(
        forbidden(
            &accounts
                .create_token_request(
                    OPERATOR_ACCOUNT,
                    &PostParams::default(),
                    &TokenRequest::default()
                )
                .await
        ),
        "no token minting"
    );
    let leases: Api<Lease> = Api::namespaced(operator, OPERATOR_NAMESPACE);
    assert!(
        forbidden(&leases.delete("anything", &DeleteParams::default()).await),
        "the Lease is never deleted"
    );
}

/// A kubeconfig for the shipped ServiceAccount: the control plane's server and CA, a TokenRequest
/// token as the only credential.
async fn service_account_kubeconfig(
    cp: &ControlPlane,
    dir: &Path,
    namespace: &str,
    account: &str,
) -> PathBuf {
    let admin = cp.client().unwrap();
    let accounts: Api<ServiceAccount> = Api::namespaced(admin, namespace);
    let request: TokenRequest =
        serde_json::from_value(json!({"spec": {"expirationSeconds": 3600, "audiences": []}}))
            .unwrap();
    let issued = accounts
        .create_token_request(account, &PostParams::default(), &request)
        .await
        .unwrap();
    let token = issued.status.unwrap().token;
    let admin_config: Value =
        serde_saphyr::from_str(&std::fs::read_to_string(cp.kubeconfig_path()).unwrap()).unwrap();
    let cluster = admin_config["clusters"][0]["cluster"].clone();
    assert!(
        cluster.is_object(),
        "the admin kubeconfig names its cluster"
    );
    let kubeconfig = json!({
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{"name": "test", "cluster": cluster}],
        "users": [{"name": "operator", "user": {"token": token}}],
        "contexts": [{"name": "operator", "context": {"cluster": "test", "user": "operator"}}],
        "current-context": "operator"
    });
    let path = dir.join(format!("{account}.kubeconfig"));
    std::fs::write(&path, serde_json::to_string(&kubeconfig).unwrap()).unwrap();
    path
}

/// The operator process; killed when dropped, so a failing test leaves nothing running.
struct Operator {
    child: Child,
    log: PathBuf,
}

impl Operator {
    /// Starts `istio-integrity-operator run` with `kubeconfig` and `args`, reconciling only the
    /// MeshServices labelled `iio-test=<selector>` (tests share the control plane), and waits for
    /// its /readyz.
    async fn start(dir: &Path, kubeconfig: &Path, selector: &str, args: &[&str]) -> Operator {
        let port = free_port();
        let log = dir.join(format!("operator-{selector}.log"));
        let child = Command::new(env!("CARGO_BIN_EXE_istio-integrity-operator"))
            .arg("run")
            .arg("--kubeconfig")
            .arg(kubeconfig)
            .args(["--selector", &format!("iio-test={selector}")])
            .args([
                "--log-format",
                "json",
                "--admin-addr",
                &format!("127.0.0.1:{port}"),
            ])
            .args(args)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(std::fs::File::options().append(true).open(&log).unwrap())
            .spawn()
            .unwrap();
        let operator = Operator { child, log };
        eventually("the operator's /readyz", 60, || {
            let ready = http_get(port, "/readyz")
                .is_some_and(|r| r.starts_with("HTTP/1.1 200") || r.starts_with("HTTP/1.0 200"));
            async move { ready }
        })
        .await;
        operator
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn stop(&mut self) {
        // SIGTERM: the operator releases its Lease and exits.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if self.child.try_wait().unwrap().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let log = self.log();
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            eprintln!(
                "----- operator log (last 40 lines, newest first) -----\n{}",
                tail.join("\n")
            );
        }
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn condition(ms: &MeshService, type_: &str) -> Option<String> {
    let status = serde_json::to_value(ms.status.as_ref()?).ok()?;
    status["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_)
        .map(|c| c["status"].as_str().unwrap_or("").to_string())
}

/// The operator binary, authenticated only by a TokenRequest token of the shipped ServiceAccount
/// (not admin), reconciles a MeshService with a managed Gateway end to end, and cleans up on delete.
#[tokio::test(flavor = "multi_thread")]
async fn the_operator_reconciles_under_the_shipped_rbac() {
    let cp = test_controlplane::shared().await.unwrap();
    install_shipped_rbac(cp);
    let ns = cp.namespace("rbac-operator-e2e").await.unwrap();
    let ns = ns.name().to_string();
    let admin = cp.client().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig =
        service_account_kubeconfig(cp, dir.path(), OPERATOR_NAMESPACE, OPERATOR_ACCOUNT).await;
    let lease_name = format!("{ns}-leader");
    let identity = format!("{ns}-replica");
    wait_until_authorized(cp, OPERATOR_NAMESPACE, OPERATOR_ACCOUNT, None, true).await;
    let mut operator = Operator::start(
        dir.path(),
        &kubeconfig,
        &ns,
        &[
            "--leader-elect",
            "--leader-elect-namespace",
            OPERATOR_NAMESPACE,
            "--leader-elect-lease",
            &lease_name,
            "--identity",
            &identity,
        ],
    )
    .await;

    let leases: Api<Lease> = Api::namespaced(admin.clone(), OPERATOR_NAMESPACE);
    eventually("the operator to take the Lease", 30, || async {
        leases
            .get_opt(&lease_name)
            .await
            .unwrap()
            .and_then(|l| l.spec?.holder_identity)
            .as_deref()
            == Some(identity.as_str())
    })
    .await;

    let meshservices: Api<MeshService> = Api::namespaced(admin.clone(), &ns);
    let gateway_ref = json!({"name": "shared-gw", "managed": true});
    meshservices
        .create(
            &PostParams::default(),
            &labelled(meshservice(&ns, "web", gateway_ref), &ns),
        )
        .await
        .unwrap();

    let services: Api<Service> = Api::namespaced(admin.clone(), &ns);
    let virtual_services = istio_api(&admin, &ns, "VirtualService");
    let gateways = istio_api(&admin, &ns, "Gateway");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let ms = meshservices.get_opt("web").await.unwrap();
        let ready = ms
            .as_ref()
            .is_some_and(|ms| condition(ms, "Ready").as_deref() == Some("True"));
        if ready
            && services.get_opt("web").await.unwrap().is_some()
            && virtual_services.get_opt("web").await.unwrap().is_some()
            && gateways.get_opt("shared-gw").await.unwrap().is_some()
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for Service, VirtualService, managed Gateway and Ready=True; MeshService: {}",
            serde_json::to_string(&ms).unwrap()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    // A --selector instance is a shard and holds its own finalizer, derived from the selector.
    let shard_finalizer = mesh_reconcile::Config {
        selector: Some(format!("iio-test={ns}")),
        ..mesh_reconcile::Config::default()
    }
    .finalizer()
    .unwrap();
    let ms = meshservices.get("web").await.unwrap();
    assert_eq!(ms.finalizers(), [shard_finalizer]);
    let events: Api<Event> = Api::namespaced(admin.clone(), &ns);
    eventually("an Event about the MeshService", 30, || async {
        events
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .iter()
            .any(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("web"))
    })
    .await;

    // A younger MeshService on the same Gateway that moves onto the older one's host loses it:
    // the operator deletes the younger one's VirtualService (the `delete` on VirtualServices).
    meshservices
        .create(
            &PostParams::default(),
            &labelled(
                meshservice(
                    &ns,
                    "younger",
                    json!({"name": "shared-gw", "managed": true}),
                ),
                &ns,
            ),
        )
        .await
        .unwrap();
    eventually("the younger MeshService's VirtualService", 60, || async {
        virtual_services.get_opt("younger").await.unwrap().is_some()
    })
    .await;
    let take_over = json!({"spec": {"hosts": [format!("web.{ns}.example.com")]}});
    meshservices
        .patch(
            "younger",
            &PatchParams::default(),
            &Patch::Merge(&take_over),
        )
        .await
        .unwrap();
    eventually(
        "the operator to delete the losing VirtualService",
        60,
        || async { virtual_services.get_opt("younger").await.unwrap().is_none() },
    )
    .await;
    meshservices
        .delete("younger", &DeleteParams::default())
        .await
        .unwrap();

    // Delete: the finalizer's cleanup deletes the managed Gateway, then lets the MeshService go.
    meshservices
        .delete("web", &DeleteParams::default())
        .await
        .unwrap();
    eventually(
        "the MeshService and its managed Gateway to go",
        60,
        || async {
            meshservices.get_opt("web").await.unwrap().is_none()
                && gateways.get_opt("shared-gw").await.unwrap().is_none()
        },
    )
    .await;

    operator.stop();
    let log = operator.log();
    let denied: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("forbidden") || l.contains("Forbidden"))
        .collect();
    assert!(
        denied.is_empty(),
        "the operator was refused something under the shipped RBAC:\n{}",
        denied.join("\n")
    );
    assert!(
        log.contains("leading"),
        "the operator led under --leader-elect:\n{log}"
    );
}

/// The operator-level counterpart of `removing_one_verb_breaks_exactly_the_operation_that_needs_it`:
/// the operator under the shipped ClusterRole minus `create` on VirtualServices still writes the
/// Service, but its server-side apply of the new VirtualService is refused, and it says so in the
/// MeshService's status instead of claiming Ready.
#[tokio::test(flavor = "multi_thread")]
async fn the_operator_without_create_on_virtualservices_reports_the_refusal() {
    let cp = test_controlplane::shared().await.unwrap();
    let ns = cp.namespace("rbac-operator-minus-create").await.unwrap();
    let ns = ns.name().to_string();
    let admin = cp.client().unwrap();
    let account = "operator-minus-vs-create";
    account_with_shipped_roles(cp, &ns, account, Some(("virtualservices", "create"))).await;
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = service_account_kubeconfig(cp, dir.path(), &ns, account).await;
    wait_until_authorized(cp, &ns, account, None, false).await;
    let mut operator = Operator::start(dir.path(), &kubeconfig, &ns, &[]).await;

    let meshservices: Api<MeshService> = Api::namespaced(admin.clone(), &ns);
    meshservices
        .create(
            &PostParams::default(),
            &labelled(meshservice(&ns, "web", Value::Null), &ns),
        )
        .await
        .unwrap();
    let services: Api<Service> = Api::namespaced(admin.clone(), &ns);
    eventually(
        "the Service, and Ready=False on the MeshService",
        60,
        || async {
            let not_ready = meshservices
                .get_opt("web")
                .await
                .unwrap()
                .is_some_and(|ms| condition(&ms, "Ready").as_deref() == Some("False"));
            not_ready && services.get_opt("web").await.unwrap().is_some()
        },
    )
    .await;
    let virtual_services = istio_api(&admin, &ns, "VirtualService");
    assert!(virtual_services.get_opt("web").await.unwrap().is_none());
    operator.stop();
    let log = operator.log();
    assert!(
        log.lines()
            .any(|l| l.contains("forbidden") && l.contains("virtualservices")),
        "the refused apply is logged:\n{log}"
    );
}

/// `--namespace` mode under deploy/namespaced/rbac.yaml (the Component's RBAC), moved to a test
/// namespace: the Role in the watched namespace, and the Namespace object readable by name only
/// (`resourceNames`), which is enough for the operator's `metadata.name=` field-selector watch.
#[tokio::test(flavor = "multi_thread")]
async fn the_operator_reconciles_in_namespace_mode_under_the_namespaced_roles() {
    let cp = test_controlplane::shared().await.unwrap();
    let ns = cp.namespace("rbac-operator-namespaced").await.unwrap();
    let ns = ns.name().to_string();
    let admin = cp.client().unwrap();
    let account = "operator-namespaced";
    let docs: Vec<Value> = serde_saphyr::from_str_multiple(
        &std::fs::read_to_string(root().join("deploy/namespaced/rbac.yaml")).unwrap(),
    )
    .unwrap();
    let subjects = json!([{"kind": "ServiceAccount", "name": account, "namespace": ns}]);
    for mut doc in docs {
        let kind = doc["kind"].as_str().unwrap().to_string();
        // Unique names (the control plane is shared), this test's namespace and account.
        let name = format!("{ns}-{}", doc["metadata"]["name"].as_str().unwrap());
        doc["metadata"]["name"] = name.clone().into();
        if kind.starts_with("Cluster") {
            if kind == "ClusterRole" {
                for rule in doc["rules"].as_array_mut().unwrap() {
                    assert_eq!(rule["resourceNames"], json!(["default"]));
                    rule["resourceNames"] = json!([ns]);
                }
            }
        } else {
            doc["metadata"]["namespace"] = ns.clone().into();
        }
        if kind.ends_with("Binding") {
            doc["roleRef"]["name"] =
                format!("{ns}-{}", doc["roleRef"]["name"].as_str().unwrap()).into();
            doc["subjects"] = subjects.clone();
        }
        match kind.as_str() {
            "Role" => Api::<Role>::namespaced(admin.clone(), &ns)
                .create(
                    &PostParams::default(),
                    &serde_json::from_value(doc).unwrap(),
                )
                .await
                .map(drop),
            "RoleBinding" => Api::<RoleBinding>::namespaced(admin.clone(), &ns)
                .create(
                    &PostParams::default(),
                    &serde_json::from_value(doc).unwrap(),
                )
                .await
                .map(drop),
            "ClusterRole" => Api::<ClusterRole>::all(admin.clone())
                .create(
                    &PostParams::default(),
                    &serde_json::from_value(doc).unwrap(),
                )
                .await
                .map(drop),
            "ClusterRoleBinding" => Api::<ClusterRoleBinding>::all(admin.clone())
                .create(
                    &PostParams::default(),
                    &serde_json::from_value(doc).unwrap(),
                )
                .await
                .map(drop),
            other => panic!("unexpected {other} in deploy/namespaced/rbac.yaml"),
        }
        .unwrap();
    }
    cp.service_account_client(&ns, account).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = service_account_kubeconfig(cp, dir.path(), &ns, account).await;
    wait_until_authorized(cp, &ns, account, Some(&ns), false).await;
    let mut operator = Operator::start(dir.path(), &kubeconfig, &ns, &["--namespace", &ns]).await;

    let meshservices: Api<MeshService> = Api::namespaced(admin.clone(), &ns);
    meshservices
        .create(
            &PostParams::default(),
            &labelled(meshservice(&ns, "web", Value::Null), &ns),
        )
        .await
        .unwrap();
    let services: Api<Service> = Api::namespaced(admin.clone(), &ns);
    let virtual_services = istio_api(&admin, &ns, "VirtualService");
    eventually("Service, VirtualService and Ready=True", 60, || async {
        let ready = meshservices
            .get_opt("web")
            .await
            .unwrap()
            .is_some_and(|ms| condition(&ms, "Ready").as_deref() == Some("True"));
        ready
            && services.get_opt("web").await.unwrap().is_some()
            && virtual_services.get_opt("web").await.unwrap().is_some()
    })
    .await;
    operator.stop();
    let log = operator.log();
    let denied: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("forbidden") || l.contains("Forbidden"))
        .collect();
    assert!(
        denied.is_empty(),
        "the operator was refused something under the namespaced RBAC:\n{}",
        denied.join("\n")
    );
}
