//! Input types: objects, their origin and their keys.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Where an object was read from: a file and the 1-based line its document starts on.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Origin {
    /// File name as given to [`crate::parse_documents`].
    pub file: String,
    /// 1-based line of the document (for a `kind: List`, of the item).
    pub line: u32,
}

/// One Kubernetes-style object handed to the engine.
#[derive(Debug, Clone, PartialEq)]
pub struct SourceObject {
    /// The object, as the API server (or a YAML file) has it. Unknown fields are ignored.
    pub value: Value,
    /// Where it came from, when it came from a file.
    pub origin: Option<Origin>,
}

impl SourceObject {
    /// An object with no file origin (e.g. from a watch).
    pub fn new(value: Value) -> Self {
        SourceObject {
            value,
            origin: None,
        }
    }

    /// An object read from `file` at `line`.
    pub fn with_origin(value: Value, file: impl Into<String>, line: u32) -> Self {
        SourceObject {
            value,
            origin: Some(Origin {
                file: file.into(),
                line,
            }),
        }
    }

    /// From a typed object (e.g. `meshservice_api::MeshService` or a k8s-openapi type) through serde.
    pub fn from_typed<T: Serialize>(object: &T) -> Result<Self, crate::Error> {
        Ok(SourceObject::new(serde_json::to_value(object)?))
    }
}

impl From<&Value> for SourceObject {
    fn from(value: &Value) -> Self {
        SourceObject::new(value.clone())
    }
}

impl From<Value> for SourceObject {
    fn from(value: Value) -> Self {
        SourceObject::new(value)
    }
}

/// The identity of an object: API group, kind, namespace, name. No version: Istio's v1, v1beta1
/// and v1alpha3 of one object share one key. Cluster-scoped kinds (Namespace) have namespace `""`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ObjectKey {
    /// API group (`networking.istio.io`, `""` for core, `gateway.networking.k8s.io`, `mesh.istio.operator`).
    pub group: String,
    /// Kind (`VirtualService`, `Service`, ...).
    pub kind: String,
    /// Namespace (`""` for cluster-scoped kinds).
    pub namespace: String,
    /// Name.
    pub name: String,
}

/// API group of Istio's networking kinds.
pub const ISTIO_GROUP: &str = "networking.istio.io";
/// API group of the Gateway API.
pub const GATEWAY_API_GROUP: &str = "gateway.networking.k8s.io";

impl ObjectKey {
    /// A key from its four parts.
    pub fn new(group: &str, kind: &str, namespace: &str, name: &str) -> Self {
        ObjectKey {
            group: group.into(),
            kind: kind.into(),
            namespace: namespace.into(),
            name: name.into(),
        }
    }
    /// An Istio `VirtualService`.
    pub fn virtual_service(namespace: &str, name: &str) -> Self {
        Self::new(ISTIO_GROUP, "VirtualService", namespace, name)
    }
    /// An Istio `Gateway`.
    pub fn gateway(namespace: &str, name: &str) -> Self {
        Self::new(ISTIO_GROUP, "Gateway", namespace, name)
    }
    /// An Istio `DestinationRule`.
    pub fn destination_rule(namespace: &str, name: &str) -> Self {
        Self::new(ISTIO_GROUP, "DestinationRule", namespace, name)
    }
    /// An Istio `ServiceEntry`.
    pub fn service_entry(namespace: &str, name: &str) -> Self {
        Self::new(ISTIO_GROUP, "ServiceEntry", namespace, name)
    }
    /// A core `Service`.
    pub fn service(namespace: &str, name: &str) -> Self {
        Self::new("", "Service", namespace, name)
    }
    /// A `MeshService`.
    pub fn mesh_service(namespace: &str, name: &str) -> Self {
        Self::new(
            meshservice_api::GROUP,
            meshservice_api::KIND,
            namespace,
            name,
        )
    }

    /// The key of an object value: group from `apiVersion`, kind, `metadata.namespace` (or
    /// `default_namespace`; `""` for Namespace), `metadata.name`. `None` when a part is missing.
    pub fn from_value(value: &Value, default_namespace: &str) -> Option<ObjectKey> {
        let api_version = value.get("apiVersion")?.as_str()?;
        let kind = value.get("kind")?.as_str()?;
        let name = value.get("metadata")?.get("name")?.as_str()?;
        let group = group_of(api_version);
        let namespace = if is_cluster_scoped(group, kind) {
            String::new()
        } else {
            value
                .get("metadata")
                .and_then(|m| m.get("namespace"))
                .and_then(Value::as_str)
                .filter(|ns| !ns.is_empty())
                .unwrap_or(default_namespace)
                .to_string()
        };
        Some(ObjectKey {
            group: group.into(),
            kind: kind.into(),
            namespace,
            name: name.into(),
        })
    }
}

impl std::fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.namespace.is_empty() {
            write!(f, "{} {}", self.kind, self.name)
        } else {
            write!(f, "{} {}/{}", self.kind, self.namespace, self.name)
        }
    }
}

/// The group part of an apiVersion (`networking.istio.io/v1` → `networking.istio.io`, `v1` → ``).
pub fn group_of(api_version: &str) -> &str {
    match api_version.rsplit_once('/') {
        Some((group, _)) => group,
        None => "",
    }
}

pub(crate) fn is_cluster_scoped(group: &str, kind: &str) -> bool {
    group.is_empty() && kind == "Namespace"
}

/// How objects are ingested.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IngestOptions {
    /// Namespace of objects that have no `metadata.namespace` (`kubectl apply` semantics). Default `default`.
    pub default_namespace: String,
}

impl Default for IngestOptions {
    fn default() -> Self {
        IngestOptions {
            default_namespace: "default".to_string(),
        }
    }
}

/// What one ingestion did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct IngestStats {
    /// Objects stored, by kind.
    pub by_kind: BTreeMap<String, u64>,
    /// Objects of kinds the engine does not check, by `apiVersion/kind` (not stored).
    pub skipped_unknown: BTreeMap<String, u64>,
    /// Objects stored as `MSH0001` (could not be projected).
    pub undecodable: u64,
    /// Total objects stored.
    pub total: u64,
}
