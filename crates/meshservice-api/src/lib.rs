//! The `MeshService` custom resource, `mesh.istio.operator/v1alpha1`.
//!
//! A user writes one `MeshService`; the operator derives from it the Kubernetes `Service`, the Istio
//! `VirtualService` and, for a managed gateway, the shared Istio `Gateway`. This crate holds only the
//! API: the Rust types, the OpenAPI schema they generate (`MeshService::crd()`), and the CEL rules
//! (`x-kubernetes-validations`) that the apiserver enforces on every single object. Rules that need
//! other objects (a gateway exists, a host is not claimed twice) live in the integrity engine.
//!
//! The crate is pure: it depends on kube's derive and client-side CEL, never on its client or tokio.
//!
//! ```
//! use meshservice_api::MeshService;
//! let yaml = r#"
//! apiVersion: mesh.istio.operator/v1alpha1
//! kind: MeshService
//! metadata: { name: webapp-service }
//! spec:
//!   serviceName: webapp
//!   hosts: ["webapp.example.com"]
//!   ports: [{ port: 80, targetPort: 8080 }]
//! "#;
//! let ms: MeshService = serde_json::from_value(serde_json::to_value(
//!     serde_json::json!({"apiVersion": "mesh.istio.operator/v1alpha1", "kind": "MeshService",
//!       "metadata": {"name": "webapp-service"},
//!       "spec": {"serviceName": "webapp", "hosts": ["webapp.example.com"], "ports": [{"port": 80, "targetPort": 8080}]}})
//! ).unwrap()).unwrap();
//! assert!(ms.validate_cel().is_ok());
//! assert_eq!(ms.spec.ports[0].effective_protocol(), meshservice_api::Protocol::Http);
//! # let _ = yaml;
//! ```

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// API group of the MeshService resource.
pub const GROUP: &str = "mesh.istio.operator";
/// API version of the MeshService resource.
pub const VERSION: &str = "v1alpha1";
/// `apiVersion` string of the MeshService resource.
pub const API_VERSION: &str = "mesh.istio.operator/v1alpha1";
/// Kind of the MeshService resource.
pub const KIND: &str = "MeshService";
/// The most findings a MeshService status carries; the full list is in the operator's report.
pub const MAX_STATUS_FINDINGS: usize = 20;

/// A DNS-1035 label: what Kubernetes requires of a Service name.
pub const DNS1035_LABEL_PATTERN: &str = "^[a-z]([-a-z0-9]*[a-z0-9])?$";

/// CEL: every host is a lower-case DNS name, optionally prefixed by one `*.` wildcard label.
const HOST_FORM_RULE: &str = r"self.all(h, h.matches('^(\\*\\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$'))";
/// CEL: a `*` may only stand as the whole first label (`*.example.com`).
const WILDCARD_FORM_RULE: &str =
    "self.all(h, !h.contains('*') || (h.startsWith('*.') && !h.substring(1).contains('*')))";
/// CEL: list elements are unique.
const UNIQUE_HOSTS_RULE: &str = "self.all(h, self.filter(x, x == h).size() == 1)";
/// CEL: port numbers are unique.
const UNIQUE_PORTS_RULE: &str = "self.all(p, self.filter(q, q.port == p.port).size() == 1)";
/// CEL: port names, where given, are unique.
const UNIQUE_PORT_NAMES_RULE: &str =
    "self.all(p, !has(p.name) || self.filter(q, has(q.name) && q.name == p.name).size() == 1)";
/// CEL: Istio's exportTo values: `.`, `*` or a namespace name (DNS-1123 label).
const EXPORT_TO_FORM_RULE: &str =
    r"self.all(e, e == '.' || e == '*' || e.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$'))";
/// CEL: `*` exports everywhere, so combining it with anything else is a mistake.
const EXPORT_TO_STAR_ALONE_RULE: &str = "!self.exists(e, e == '*') || self.size() == 1";
/// CEL: exportTo entries are unique.
const UNIQUE_EXPORT_TO_RULE: &str = "self.all(e, self.filter(x, x == e).size() == 1)";
/// CEL: a named targetPort is an IANA service name (what a container port name may be).
/// `x == string(x)` holds only for a string: int-or-string is `dyn` in CEL, and `type()` is not
/// available to kube's client-side evaluator.
const TARGET_PORT_NAME_RULE: &str = r"!has(self.targetPort) || self.targetPort != string(self.targetPort) || (string(self.targetPort).size() <= 15 && string(self.targetPort).matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$') && string(self.targetPort).matches('[a-z]'))";
/// CEL: a numeric targetPort is a port number.
const TARGET_PORT_RANGE_RULE: &str = "!has(self.targetPort) || self.targetPort == string(self.targetPort) || (int(string(self.targetPort)) >= 1 && int(string(self.targetPort)) <= 65535)";

/// CEL: a managed Gateway terminates HTTPS, so it needs the certificate's Secret; Istio rejects a
/// `SIMPLE` TLS server without one, which would take the whole shared Gateway down.
const MANAGED_HTTPS_CREDENTIAL_RULE: &str = "!has(self.gateway) || !has(self.gateway.managed) || !self.gateway.managed || !self.ports.exists(p, has(p.protocol) && p.protocol == 'HTTPS') || has(self.gateway.tls)";

/// Messages of the CEL rules, exactly as the apiserver reports them; tests assert on them.
pub mod messages {
    /// `spec.serviceName` changed after creation.
    pub const SERVICE_NAME_IMMUTABLE: &str =
        "serviceName is immutable: create a new MeshService to rename the Service";
    /// A host is not a DNS name or wildcard.
    pub const HOST_FORM: &str = "each host must be a lower-case DNS name such as shop.example.com, optionally prefixed by '*.'";
    /// A wildcard in the wrong place.
    pub const WILDCARD_FORM: &str =
        "a wildcard host must have the form '*.suffix': '*' may only be the whole first label";
    /// Duplicate host.
    pub const UNIQUE_HOSTS: &str = "hosts must be unique";
    /// Duplicate port number.
    pub const UNIQUE_PORTS: &str = "port numbers must be unique";
    /// Duplicate port name.
    pub const UNIQUE_PORT_NAMES: &str = "port names must be unique";
    /// Bad exportTo value.
    pub const EXPORT_TO_FORM: &str = "exportTo entries must be '.', '*' or a namespace name";
    /// `*` combined with other exportTo entries.
    pub const EXPORT_TO_STAR_ALONE: &str =
        "exportTo '*' already exports to every namespace and cannot be combined";
    /// Duplicate exportTo entry.
    pub const UNIQUE_EXPORT_TO: &str = "exportTo entries must be unique";
    /// A named targetPort that is not an IANA service name.
    pub const TARGET_PORT_NAME: &str = "a named targetPort must be an IANA service name: at most 15 lower-case letters, digits and '-', with a letter";
    /// A managed gateway asked to serve HTTPS without a certificate.
    pub const MANAGED_HTTPS_CREDENTIAL: &str = "an HTTPS port on a managed gateway needs gateway.tls.credentialName: the Gateway cannot terminate TLS without a certificate";
    /// A numeric targetPort out of range.
    pub const TARGET_PORT_RANGE: &str = "a numeric targetPort must be between 1 and 65535";
}

/// The desired state: one Service reachable under `hosts`, optionally through a gateway.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "mesh.istio.operator",
    version = "v1alpha1",
    kind = "MeshService",
    namespaced,
    status = "MeshServiceStatus",
    derive = "PartialEq",
    shortname = "ms",
    category = "istio-integrity",
    cel,
    doc = "A MeshService declares one Kubernetes Service and the Istio routing that exposes it; the operator creates and keeps the Service, the VirtualService and, when managed, the shared Gateway.",
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Hosts","type":"string","jsonPath":".spec.hosts"}"#,
    printcolumn = r#"{"name":"Gateway","type":"string","jsonPath":".spec.gateway.name"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new(MANAGED_HTTPS_CREDENTIAL_RULE).message(messages::MANAGED_HTTPS_CREDENTIAL))]
pub struct MeshServiceSpec {
    /// Name of the Kubernetes Service the operator creates in this namespace (a DNS-1035 label).
    /// Immutable: renaming would orphan the traffic of the old name.
    #[schemars(
        length(min = 1, max = 63),
        regex(pattern = "^[a-z]([-a-z0-9]*[a-z0-9])?$")
    )]
    #[x_kube(validation = Rule::new("self == oldSelf").message(messages::SERVICE_NAME_IMMUTABLE))]
    pub service_name: String,

    /// Host names clients use (`shop.example.com`, or a wildcard `*.shop.example.com`); 1 to 64, unique.
    #[schemars(length(min = 1, max = 64), inner(length(min = 1, max = 253)))]
    #[x_kube(
        validation = Rule::new(HOST_FORM_RULE).message(messages::HOST_FORM),
        validation = Rule::new(WILDCARD_FORM_RULE).message(messages::WILDCARD_FORM),
        validation = Rule::new(UNIQUE_HOSTS_RULE).message(messages::UNIQUE_HOSTS)
    )]
    pub hosts: Vec<String>,

    /// The Istio Gateway that exposes the hosts outside the mesh. Absent: mesh-internal only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<GatewayRef>,

    /// Ports of the Service, each routed by the VirtualService; 1 to 32, unique port numbers.
    #[schemars(length(min = 1, max = 32))]
    #[x_kube(
        validation = Rule::new(UNIQUE_PORTS_RULE).message(messages::UNIQUE_PORTS),
        validation = Rule::new(UNIQUE_PORT_NAMES_RULE).message(messages::UNIQUE_PORT_NAMES)
    )]
    pub ports: Vec<PortSpec>,

    /// Pod labels the Service selects. Default: `app: <serviceName>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32))]
    pub selector: Option<BTreeMap<String, String>>,

    /// Namespaces that may see the VirtualService, with Istio's semantics: `.` (this namespace),
    /// `*` (all), or namespace names. Absent: all namespaces.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 32), inner(length(min = 1, max = 63)))]
    #[x_kube(
        validation = Rule::new(EXPORT_TO_FORM_RULE).message(messages::EXPORT_TO_FORM),
        validation = Rule::new(EXPORT_TO_STAR_ALONE_RULE).message(messages::EXPORT_TO_STAR_ALONE),
        validation = Rule::new(UNIQUE_EXPORT_TO_RULE).message(messages::UNIQUE_EXPORT_TO)
    )]
    pub export_to: Option<Vec<String>>,
}

/// The Istio Gateway a MeshService binds its hosts to.
#[derive(
    KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord,
)]
#[serde(rename_all = "camelCase")]
pub struct GatewayRef {
    /// Name of the Gateway.
    #[schemars(
        length(min = 1, max = 253),
        regex(pattern = "^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
    )]
    pub name: String,
    /// Namespace of the Gateway. Default: the MeshService's own namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 1, max = 63),
        regex(pattern = "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    )]
    pub namespace: Option<String>,
    /// `false` (default): the Gateway must already exist and serve the hosts. `true`: the operator
    /// manages a shared Gateway of this name, aggregating every MeshService that references it.
    #[serde(default, skip_serializing_if = "is_false")]
    pub managed: bool,
    /// TLS settings for HTTPS servers of a managed Gateway.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<GatewayTls>,
}

/// TLS of the HTTPS servers the operator renders into a managed Gateway.
#[derive(
    KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord,
)]
#[serde(rename_all = "camelCase")]
pub struct GatewayTls {
    /// Name of the Secret holding the certificate, in the gateway workload's namespace.
    #[schemars(
        length(min = 1, max = 253),
        regex(pattern = "^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
    )]
    pub credential_name: String,
}

fn is_false(value: &bool) -> bool {
    !*value
}

/// One port of the Service and its route.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new(TARGET_PORT_NAME_RULE).message(messages::TARGET_PORT_NAME),
    validation = Rule::new(TARGET_PORT_RANGE_RULE).message(messages::TARGET_PORT_RANGE)
)]
pub struct PortSpec {
    /// Port the Service and the VirtualService route listen on (1-65535).
    #[schemars(range(min = 1, max = 65535))]
    pub port: i32,
    /// Container port, a number or a named port. Default: `port`.
    // maxLength bounds the CEL cost estimate of the targetPort rules; without it the apiserver
    // refuses the CRD (a named port is at most 15 characters, a port number at most 5 digits).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("maxLength" = 15))]
    pub target_port: Option<IntOrString>,
    /// Service port name. Default: `<protocol>-<port>` (lower case), which Istio's protocol
    /// detection understands.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 1, max = 63),
        regex(pattern = "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    )]
    pub name: Option<String>,
    /// Application protocol: HTTP (default), HTTP2, GRPC, HTTPS, TLS or TCP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<Protocol>,
}

impl PortSpec {
    /// The protocol, with the default (HTTP) applied.
    pub fn effective_protocol(&self) -> Protocol {
        self.protocol.unwrap_or_default()
    }

    /// The target port, with the default (`port`) applied.
    pub fn effective_target_port(&self) -> IntOrString {
        self.target_port
            .clone()
            .unwrap_or(IntOrString::Int(self.port))
    }

    /// The Service port name, with the default `<protocol>-<port>` applied.
    pub fn effective_name(&self) -> String {
        match &self.name {
            Some(name) => name.clone(),
            None => format!(
                "{}-{}",
                self.effective_protocol().port_name_prefix(),
                self.port
            ),
        }
    }
}

/// Application protocol of a port, as Istio names it.
#[derive(
    JsonSchema,
    Serialize,
    Deserialize,
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
)]
pub enum Protocol {
    /// HTTP/1.1 (the default).
    #[default]
    #[serde(rename = "HTTP")]
    Http,
    /// HTTP/2 (cleartext).
    #[serde(rename = "HTTP2")]
    Http2,
    /// gRPC.
    #[serde(rename = "GRPC")]
    Grpc,
    /// HTTPS terminated at the gateway.
    #[serde(rename = "HTTPS")]
    Https,
    /// TLS passed through by SNI.
    #[serde(rename = "TLS")]
    Tls,
    /// Opaque TCP.
    #[serde(rename = "TCP")]
    Tcp,
}

impl Protocol {
    /// Every protocol, in declaration order.
    pub const ALL: [Protocol; 6] = [
        Protocol::Http,
        Protocol::Http2,
        Protocol::Grpc,
        Protocol::Https,
        Protocol::Tls,
        Protocol::Tcp,
    ];

    /// The name Istio uses (`HTTP`, `GRPC`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Http => "HTTP",
            Protocol::Http2 => "HTTP2",
            Protocol::Grpc => "GRPC",
            Protocol::Https => "HTTPS",
            Protocol::Tls => "TLS",
            Protocol::Tcp => "TCP",
        }
    }

    /// The Service port-name prefix Istio's protocol selection recognises (`http`, `grpc`, ...).
    pub fn port_name_prefix(self) -> &'static str {
        match self {
            Protocol::Http => "http",
            Protocol::Http2 => "http2",
            Protocol::Grpc => "grpc",
            Protocol::Https => "https",
            Protocol::Tls => "tls",
            Protocol::Tcp => "tcp",
        }
    }

    /// Whether the VirtualService routes this protocol with `http` routes (else `tls` or `tcp`).
    pub fn is_http_routed(self) -> bool {
        matches!(
            self,
            Protocol::Http | Protocol::Http2 | Protocol::Grpc | Protocol::Https
        )
    }
}

impl std::fmt::Display for Protocol {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl MeshServiceSpec {
    /// The Service selector, with the default `app: <serviceName>` applied.
    pub fn effective_selector(&self) -> BTreeMap<String, String> {
        match &self.selector {
            Some(selector) if !selector.is_empty() => selector.clone(),
            _ => BTreeMap::from([("app".to_string(), self.service_name.clone())]),
        }
    }
}

impl GatewayRef {
    /// The gateway namespace, defaulting to the MeshService's own.
    pub fn effective_namespace<'a>(&'a self, meshservice_namespace: &'a str) -> &'a str {
        self.namespace.as_deref().unwrap_or(meshservice_namespace)
    }
}

/// What the operator observed and did; written only by the operator through the status subresource.
///
/// Until the operator's first write, the apiserver fills in a default status (as Gateway API does):
/// `Accepted=Unknown`, reason `Pending`, so a fresh MeshService reads as waiting, not as nothing.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("default" = {"conditions": [{
    "type": "Accepted",
    "status": "Unknown",
    "reason": "Pending",
    "message": "Waiting for controller",
    "lastTransitionTime": "1970-01-01T00:00:00Z"
}]}))]
pub struct MeshServiceStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// `Accepted`, `ResolvedRefs` and `Ready`, Gateway API style, each with its observedGeneration.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 8))]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,

    /// The objects this MeshService manages and their state.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    pub resources: Vec<ManagedResource>,

    /// Integrity findings that concern this MeshService (at most 20; the operator's report has all).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 20))]
    pub findings: Vec<StatusFinding>,
}

/// Condition types a MeshService status carries.
pub mod condition {
    /// The spec was accepted: valid, and its claims (names, hosts) do not lose a conflict.
    pub const ACCEPTED: &str = "Accepted";
    /// Every referenced object (gateway) exists and serves the hosts.
    pub const RESOLVED_REFS: &str = "ResolvedRefs";
    /// The managed objects are applied at the current generation.
    pub const READY: &str = "Ready";
    /// Reason of the default `Accepted=Unknown` condition the apiserver fills in before the
    /// operator's first status write.
    pub const PENDING: &str = "Pending";
}

/// One object a MeshService manages.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ManagedResource {
    /// apiVersion of the object.
    pub api_version: String,
    /// Kind of the object.
    pub kind: String,
    /// Namespace of the object.
    pub namespace: String,
    /// Name of the object.
    pub name: String,
    /// `Applied`, `Pending`, `Conflict`, `DriftRepaired` or `Deleted`.
    pub state: String,
}

/// An integrity finding reported on a MeshService.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct StatusFinding {
    /// Stable rule code (`IST0101`, `MSH0001`, ...).
    pub code: String,
    /// `Error`, `Warning` or `Info`.
    pub severity: String,
    /// What is wrong, naming the other side.
    pub message: String,
    /// The other object involved, as `Kind namespace/name`, when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub related: Option<String>,
}

/// Labels and annotations by which the operator marks what it owns. The renderer writes them, the
/// integrity engine and the reconciler read them: one definition keeps the three in agreement.
pub mod ownership {
    /// Standard label naming the manager of an object.
    pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
    /// Value of [`MANAGED_BY_LABEL`] on every object the operator owns.
    pub const MANAGED_BY_VALUE: &str = "istio-integrity-operator";
    /// Standard label naming the application an object is part of (the MeshService's `serviceName`).
    pub const PART_OF_LABEL: &str = "app.kubernetes.io/part-of";
    /// Annotation on an owned Service or VirtualService: `<namespace>/<name>` of its MeshService.
    pub const OWNER_ANNOTATION: &str = "mesh.istio.operator/owner";
    /// Annotation on a managed shared Gateway: the sorted, comma-separated `<namespace>/<name>` of
    /// every MeshService contributing to it (cross-namespace, so no ownerReference can say it).
    pub const CONTRIBUTORS_ANNOTATION: &str = "mesh.istio.operator/contributors";
    /// Annotation on every object the operator applies: a hash of exactly what it rendered. A live
    /// object carrying the hash of the current rendering but differing from it has drifted, which
    /// the operator can tell even for a change made while it was not running.
    pub const RENDERED_HASH_ANNOTATION: &str = "mesh.istio.operator/rendered-hash";
    /// The finalizer that removes a MeshService's contribution from a shared Gateway: the one of an
    /// unsharded operator (no `--selector`); a shard's is [`finalizer`] of its name.
    pub const FINALIZER: &str = "mesh.istio.operator/cleanup";
    /// The longest shard name: a finalizer's name part is at most 63 characters.
    pub const MAX_SHARD_NAME: usize = 63 - "cleanup-".len();

    /// The finalizer of an operator instance: [`FINALIZER`] unsharded, `FINALIZER-<shard>` for a
    /// shard. One name per shard, because an instance removes its finalizer from a MeshService it
    /// no longer selects: with a shared name it would remove the one the selecting shard relies on.
    pub fn finalizer(shard: Option<&str>) -> String {
        match shard {
            Some(shard) => format!("{FINALIZER}-{shard}"),
            None => FINALIZER.to_string(),
        }
    }
    /// The server-side apply field manager of the operator.
    pub const FIELD_MANAGER: &str = "istio-integrity-operator";

    /// `<namespace>/<name>`, the form of [`OWNER_ANNOTATION`] and of each [`CONTRIBUTORS_ANNOTATION`] entry.
    pub fn owner_key(namespace: &str, name: &str) -> String {
        format!("{namespace}/{name}")
    }
}
