//! The Istio renderer: pure functions (no I/O, no clock) that turn a `MeshService`, and for a managed
//! shared Gateway the set of MeshServices that reference it, into exactly the Kubernetes `Service`,
//! Istio `VirtualService` and Istio `Gateway` the operator applies with server-side apply. The same
//! input always yields byte-identical JSON: every list is sorted, nothing depends on time.
//!
//! # What is rendered
//!
//! | object | name / namespace | rendered by |
//! |---|---|---|
//! | `v1` Service | `spec.serviceName` / the MeshService's | [`render_service`] |
//! | `networking.istio.io/v1` VirtualService | the MeshService's / the MeshService's | [`render_virtual_service`] |
//! | `networking.istio.io/v1` Gateway | `spec.gateway.{name, namespace}`, only when `managed` | [`render_gateway`] |
//!
//! - **Service**: one port per spec port (`port -> targetPort`, transport `TCP`), named
//!   `<protocol>-<port>` unless the spec names it, with `appProtocol` set so Istio never guesses
//!   the protocol (no IST0118); selector `spec.selector` or `app: <serviceName>`.
//! - **VirtualService**: `hosts` = the accepted hosts (sorted); `gateways` = `<gw-ns>/<gw-name>`,
//!   or `mesh` without a gateway; one route per port, sorted by port, each matching its port and
//!   sending to `<serviceName>.<namespace>.svc.cluster.local` on the same port. HTTP, HTTP2 and GRPC
//!   get `http` routes, TLS gets `tls` (SNI = the hosts) routes, TCP gets `tcp` routes. HTTPS is
//!   terminated by a gateway, so it gets an `http` route behind one and a `tls` route without one.
//!   `exportTo` is copied from the spec.
//! - **Gateway** (managed only): see [`render_gateway`] for the aggregation rules: one server per
//!   (port, protocol), one protocol per port number (oldest contributor wins), one HTTPS server per
//!   credential, server port names unique ([`server_port_name`]). Hosts are
//!   written `<contributor-namespace>/<host>` so only that team's VirtualServices can bind them;
//!   HTTPS servers carry `tls: {mode: SIMPLE, credentialName}` from `spec.gateway.tls`, TLS servers
//!   `tls: {mode: PASSTHROUGH}`; the selector is [`GatewayOptions::selector`], by default
//!   `istio: ingressgateway`.
//!
//! # Metadata
//!
//! Service and VirtualService carry `app.kubernetes.io/managed-by: istio-integrity-operator`,
//! `app.kubernetes.io/part-of: <serviceName>`, the annotation `mesh.istio.operator/owner:
//! <ns>/<name>` and one controller ownerReference to the MeshService (hence [`RenderInput::owner_uid`]).
//! The Gateway lives in another namespace than most of its contributors, so it has no
//! ownerReference: it carries the managed-by label and `mesh.istio.operator/contributors`, the
//! sorted comma-separated `<ns>/<name>` of the MeshServices that have a host in it. It has no
//! part-of label: it belongs to no single application.
//!
//! # How the reconciler uses it
//!
//! ```
//! use std::collections::BTreeSet;
//! use istio_render::{Contribution, GatewayKey, GatewayOptions, GatewayPlan, RenderInput};
//! # use istio_render::{render_gateway, render_meshservice};
//! # let meshservice: meshservice_api::MeshService = serde_json::from_value(serde_json::json!({
//! #     "apiVersion": "mesh.istio.operator/v1alpha1", "kind": "MeshService",
//! #     "metadata": {"name": "webapp-service", "namespace": "default", "uid": "0b5c"},
//! #     "spec": {"serviceName": "webapp", "hosts": ["webapp.example.com"],
//! #              "gateway": {"name": "public-gateway", "namespace": "istio-system", "managed": true},
//! #              "ports": [{"port": 80, "targetPort": 8080}]}})).unwrap();
//! // Hosts the engine says this MeshService lost to another claim are never rendered.
//! let lost_hosts = BTreeSet::new();
//! let rendered = render_meshservice(&RenderInput {
//!     meshservice: &meshservice,
//!     owner_uid: "0b5c",
//!     excluded_hosts: &lost_hosts,
//! })?;
//! let service_patch = istio_render::to_value(&rendered.service)?; // for Patch::Apply
//! match &rendered.virtual_service {
//!     Some(virtual_service) => { let _patch = istio_render::to_value(virtual_service)?; }
//!     None => { /* every host lost: delete our VirtualService if it exists */ }
//! }
//! // A managed gateway is re-rendered from ALL its live contributors whenever one of them changes.
//! if let Some(gateway) = GatewayKey::managed_by(&meshservice)? {
//!     let contributions = [Contribution { meshservice: &meshservice, excluded_hosts: &lost_hosts }];
//!     let rendering = render_gateway(&gateway, &contributions, &GatewayOptions::default())?;
//!     match rendering.plan {
//!         GatewayPlan::Apply(gateway) => { let _patch = istio_render::to_value(&gateway)?; }
//!         GatewayPlan::Delete(key) => { let _ = key; /* delete it if it carries our managed-by label */ }
//!     }
//!     assert!(rendering.dropped_claims.is_empty());
//! }
//! # let _ = service_patch;
//! # Ok::<(), istio_render::RenderError>(())
//! ```
//!
//! - Objects hold only the fields the operator owns; apply them with field manager
//!   `meshservice_api::ownership::FIELD_MANAGER` and force, so other managers' fields survive.
//! - Name conflicts: an existing Service or VirtualService whose `mesh.istio.operator/owner`
//!   annotation is not this MeshService's `<ns>/<name>`, or an existing Gateway at a managed key
//!   without our managed-by label, belongs to someone else and must not be applied over.
//!   [`service_name`], [`virtual_service_name`] and [`GatewayKey::managed_by`] give the names
//!   without rendering.
//! - An unmanaged gateway (`managed: false`) is never rendered: it must exist, and the engine says
//!   whether it serves the hosts.
//! - Istio's CRDs declare no list keys, so every list the renderer writes (`hosts`, `http`,
//!   `servers`, ...) is atomic under server-side apply: the operator owns each list whole.
//! - Contributors with `deletionTimestamp` set are ignored by [`render_gateway`], so the finalizer
//!   can pass the full list it sees and apply (or delete) the result before removing the finalizer.
//! - [`GatewayRendering::dropped_claims`] lists the contributor ports the Gateway could not serve
//!   (protocol conflict on a port number, HTTPS without `tls.credentialName`): report them on the
//!   contributor's status.

mod gateway;
mod istio;
mod meshservice;

use serde::Serialize;

/// The protocol type of Gateway server ports, re-exported from the MeshService API.
pub use meshservice_api::Protocol;

pub use gateway::{
    Contribution, DEFAULT_GATEWAY_SELECTOR_KEY, DEFAULT_GATEWAY_SELECTOR_VALUE, DropReason,
    DroppedClaim, GatewayKey, GatewayOptions, GatewayPlan, GatewayRendering, render_gateway,
    server_port_name,
};
pub use istio::{
    Destination, GATEWAY_KIND, GATEWAY_PLURAL, Gateway, GatewaySpec, HttpMatchRequest, HttpRoute,
    ISTIO_NETWORKING_API_VERSION, ISTIO_NETWORKING_GROUP, ISTIO_NETWORKING_VERSION,
    L4MatchAttributes, PortSelector, RouteDestination, Server, ServerPort, ServerTlsMode,
    ServerTlsSettings, TcpRoute, TlsMatchAttributes, TlsRoute, VIRTUAL_SERVICE_KIND,
    VIRTUAL_SERVICE_PLURAL, VirtualService, VirtualServiceSpec,
};
pub use meshservice::{
    CLUSTER_DOMAIN, MESH_GATEWAY, RenderInput, RenderedMeshService, SERVICE_PORT_TRANSPORT,
    accepted_hosts, render_meshservice, render_service, render_virtual_service, service_fqdn,
    service_name, virtual_service_name,
};

/// Why an object cannot be rendered. Every variant is a caller or input mistake; nothing is retried.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    /// The MeshService has no `metadata.name`.
    #[error("the MeshService has no metadata.name")]
    MissingName,
    /// The MeshService has no `metadata.namespace` (it is namespaced; objects from the API have one).
    #[error("MeshService {name} has no metadata.namespace")]
    MissingNamespace {
        /// Name of the MeshService.
        name: String,
    },
    /// The owner uid is empty, so no valid ownerReference can be written.
    #[error(
        "MeshService {owner}: the owner uid is empty; a controller ownerReference needs metadata.uid"
    )]
    EmptyOwnerUid {
        /// `<namespace>/<name>` of the MeshService.
        owner: String,
    },
    /// A port number outside 1-65535 (the API schema forbids it; only a bypassed schema gets here).
    #[error("MeshService {owner}: port {port} is outside 1-65535")]
    PortOutOfRange {
        /// `<namespace>/<name>` of the MeshService.
        owner: String,
        /// The offending number.
        port: i32,
    },
    /// Two ports end up with one name: an explicit name equals another port's default name.
    #[error("MeshService {owner}: two ports are named {name}; name them explicitly and distinctly")]
    DuplicatePortName {
        /// `<namespace>/<name>` of the MeshService.
        owner: String,
        /// The name used twice.
        name: String,
    },
    /// A contribution to a Gateway from a MeshService that does not reference it as managed.
    #[error("MeshService {contributor} does not reference the managed Gateway {gateway}")]
    NotAContributor {
        /// `<namespace>/<name>` of the MeshService.
        contributor: String,
        /// The Gateway being rendered.
        gateway: GatewayKey,
    },
    /// The same MeshService given twice as a contributor.
    #[error("MeshService {contributor} is given twice as a contributor to Gateway {gateway}")]
    DuplicateContributor {
        /// `<namespace>/<name>` of the MeshService.
        contributor: String,
        /// The Gateway being rendered.
        gateway: GatewayKey,
    },
    /// A rendered object could not be turned into JSON.
    #[error("cannot serialise a rendered object to JSON: {0}")]
    Serialize(#[from] serde_json::Error),
}

/// A rendered object as JSON, with `apiVersion` and `kind`, ready for kube's `DynamicObject` or
/// `Patch::Apply`.
pub fn to_value<T: Serialize>(object: &T) -> Result<serde_json::Value, RenderError> {
    Ok(serde_json::to_value(object)?)
}

/// A rendered object as compact JSON bytes; equal inputs give equal bytes.
pub fn to_json_bytes<T: Serialize>(object: &T) -> Result<Vec<u8>, RenderError> {
    Ok(serde_json::to_vec(object)?)
}
