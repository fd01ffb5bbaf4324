//! Hand-written `networking.istio.io/v1` VirtualService and Gateway types holding exactly the fields
//! the operator sets. Anything absent here is left to other field managers under server-side apply.
//! Field names and types follow Istio's CRD schema (`crd-all.gen.yaml`): port numbers are uint32,
//! `tls[].match[].sniHosts` is required, a Gateway server port requires `number`, `protocol` and `name`.
//!
//! The types implement k8s-openapi's `Resource` and `Metadata`, so kube's typed `Api<K>` can apply
//! them and decode the answer. Decoding ignores unknown fields but requires the fields the renderer
//! always writes, so objects written by someone else may not decode: read those as `DynamicObject`.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use meshservice_api::Protocol;
use serde::{Deserialize, Serialize};

/// API group of Istio's networking objects.
pub const ISTIO_NETWORKING_GROUP: &str = "networking.istio.io";
/// The Istio API version the renderer writes (the storage version of VirtualService and Gateway).
pub const ISTIO_NETWORKING_VERSION: &str = "v1";
/// `apiVersion` of every Istio object the renderer writes.
pub const ISTIO_NETWORKING_API_VERSION: &str = "networking.istio.io/v1";
/// Kind of a VirtualService.
pub const VIRTUAL_SERVICE_KIND: &str = "VirtualService";
/// Plural resource name of VirtualService (its URL path segment).
pub const VIRTUAL_SERVICE_PLURAL: &str = "virtualservices";
/// Kind of an Istio Gateway.
pub const GATEWAY_KIND: &str = "Gateway";
/// Plural resource name of Istio Gateway (its URL path segment).
pub const GATEWAY_PLURAL: &str = "gateways";

/// An Istio VirtualService, `networking.istio.io/v1`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct VirtualService {
    /// Always [`ISTIO_NETWORKING_API_VERSION`] when rendered.
    pub api_version: String,
    /// Always [`VIRTUAL_SERVICE_KIND`] when rendered.
    pub kind: String,
    /// Name, namespace, ownership labels, owner annotation and ownerReference.
    pub metadata: ObjectMeta,
    /// The routing the operator owns.
    pub spec: VirtualServiceSpec,
}

impl VirtualService {
    /// A VirtualService with `apiVersion` and `kind` set.
    pub fn new(metadata: ObjectMeta, spec: VirtualServiceSpec) -> Self {
        VirtualService {
            api_version: ISTIO_NETWORKING_API_VERSION.to_string(),
            kind: VIRTUAL_SERVICE_KIND.to_string(),
            metadata,
            spec,
        }
    }
}

/// `spec` of a VirtualService.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct VirtualServiceSpec {
    /// Hosts the routes apply to.
    pub hosts: Vec<String>,
    /// `<namespace>/<name>` of the gateway, or `mesh` for sidecars only.
    pub gateways: Vec<String>,
    /// HTTP routes, one per HTTP-routed port.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub http: Vec<HttpRoute>,
    /// SNI routes, one per TLS port (and per HTTPS port when no gateway terminates TLS).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tls: Vec<TlsRoute>,
    /// Opaque TCP routes, one per TCP port.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tcp: Vec<TcpRoute>,
    /// Namespaces that see the VirtualService; absent means all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub export_to: Option<Vec<String>>,
}

/// One HTTP route rule.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct HttpRoute {
    /// Rule name, shown in Envoy stats and access logs: the Service port name.
    pub name: String,
    /// The rule applies to traffic on these ports.
    #[serde(rename = "match")]
    pub matches: Vec<HttpMatchRequest>,
    /// Where the traffic goes.
    pub route: Vec<RouteDestination>,
}

/// An HTTP match on the port only.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct HttpMatchRequest {
    /// Port the traffic is addressed to.
    pub port: u32,
}

/// One TLS (SNI) route rule.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct TlsRoute {
    /// The rule applies to connections matching these (Istio requires at least one).
    #[serde(rename = "match")]
    pub matches: Vec<TlsMatchAttributes>,
    /// Where the connection goes.
    pub route: Vec<RouteDestination>,
}

/// A TLS match on port and SNI.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct TlsMatchAttributes {
    /// Port the connection is addressed to.
    pub port: u32,
    /// SNI names to match; required by Istio's schema.
    pub sni_hosts: Vec<String>,
}

/// One opaque TCP route rule.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct TcpRoute {
    /// The rule applies to connections on these ports.
    #[serde(rename = "match")]
    pub matches: Vec<L4MatchAttributes>,
    /// Where the connection goes.
    pub route: Vec<RouteDestination>,
}

/// A layer-4 match on the port only.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct L4MatchAttributes {
    /// Port the connection is addressed to.
    pub port: u32,
}

/// A weighted destination of a route; the renderer writes exactly one per route, without weight.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct RouteDestination {
    /// The destination service and port.
    pub destination: Destination,
}

/// A service in the registry and one of its ports.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Destination {
    /// Fully qualified name of the rendered Service (`<name>.<namespace>.svc.cluster.local`).
    pub host: String,
    /// The Service port; always set so the route is unambiguous on a multi-port Service (IST0112).
    pub port: PortSelector,
}

/// A destination port.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct PortSelector {
    /// The Service port number.
    pub number: u32,
}

/// An Istio Gateway, `networking.istio.io/v1`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Gateway {
    /// Always [`ISTIO_NETWORKING_API_VERSION`] when rendered.
    pub api_version: String,
    /// Always [`GATEWAY_KIND`] when rendered.
    pub kind: String,
    /// Name, namespace, the managed-by label and the contributors annotation.
    pub metadata: ObjectMeta,
    /// The servers the operator owns.
    pub spec: GatewaySpec,
}

impl Gateway {
    /// A Gateway with `apiVersion` and `kind` set.
    pub fn new(metadata: ObjectMeta, spec: GatewaySpec) -> Self {
        Gateway {
            api_version: ISTIO_NETWORKING_API_VERSION.to_string(),
            kind: GATEWAY_KIND.to_string(),
            metadata,
            spec,
        }
    }
}

/// `spec` of a Gateway.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct GatewaySpec {
    /// Labels of the gateway workload pods this configuration applies to.
    pub selector: BTreeMap<String, String>,
    /// The listeners, sorted by port number, protocol and credential.
    pub servers: Vec<Server>,
}

/// One listener of a Gateway.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Server {
    /// Port, protocol and a name unique within the Gateway.
    pub port: ServerPort,
    /// Hosts served, each `<namespace>/<host>` so only that namespace's VirtualServices bind it.
    pub hosts: Vec<String>,
    /// TLS settings; present exactly for HTTPS and TLS servers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<ServerTlsSettings>,
}

/// The port of a Gateway server.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ServerPort {
    /// Port number the gateway listens on.
    pub number: u32,
    /// Protocol exposed on the port.
    pub protocol: Protocol,
    /// Port name; Istio requires it unique across the servers of one Gateway.
    pub name: String,
}

/// TLS of a Gateway server.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ServerTlsSettings {
    /// How the gateway handles TLS.
    pub mode: ServerTlsMode,
    /// Secret holding the certificate, for `SIMPLE`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential_name: Option<String>,
}

/// The TLS modes the renderer uses.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ServerTlsMode {
    /// TLS terminated at the gateway with the server's credential (HTTPS).
    #[serde(rename = "SIMPLE")]
    Simple,
    /// TLS passed through to the backend, routed by SNI (TLS).
    #[serde(rename = "PASSTHROUGH")]
    Passthrough,
}

// The k8s-openapi resource traits make the types usable with kube's typed `Api<K>` as well as with
// `DynamicObject`, without this crate depending on kube.
impl k8s_openapi::Resource for VirtualService {
    const API_VERSION: &'static str = ISTIO_NETWORKING_API_VERSION;
    const GROUP: &'static str = ISTIO_NETWORKING_GROUP;
    const KIND: &'static str = VIRTUAL_SERVICE_KIND;
    const VERSION: &'static str = ISTIO_NETWORKING_VERSION;
    const URL_PATH_SEGMENT: &'static str = VIRTUAL_SERVICE_PLURAL;
    type Scope = k8s_openapi::NamespaceResourceScope;
}

impl k8s_openapi::Metadata for VirtualService {
    type Ty = ObjectMeta;

    fn metadata(&self) -> &ObjectMeta {
        &self.metadata
    }

    fn metadata_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

impl k8s_openapi::Resource for Gateway {
    const API_VERSION: &'static str = ISTIO_NETWORKING_API_VERSION;
    const GROUP: &'static str = ISTIO_NETWORKING_GROUP;
    const KIND: &'static str = GATEWAY_KIND;
    const VERSION: &'static str = ISTIO_NETWORKING_VERSION;
    const URL_PATH_SEGMENT: &'static str = GATEWAY_PLURAL;
    type Scope = k8s_openapi::NamespaceResourceScope;
}

impl k8s_openapi::Metadata for Gateway {
    type Ty = ObjectMeta;

    fn metadata(&self) -> &ObjectMeta {
        &self.metadata
    }

    fn metadata_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}
