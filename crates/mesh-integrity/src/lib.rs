//! The integrity engine: every VirtualService, Gateway, DestinationRule, ServiceEntry, Sidecar,
//! Service, Namespace, Pod, Secret, Gateway API Gateway and MeshService it is given is projected
//! into a few columns of an in-memory SQLite database (schema under versioned refinery migrations
//! in the workspace's `migrations/`), where SQL rules find dangling references, colliding claims
//! and conflicts, each with a stable code and a repair plan. No kube client, no tokio, no I/O but
//! SQLite: the operator and the offline `check` embed it, and so can any other Rust tool.
//!
//! ```
//! use mesh_integrity::{Engine, ObjectKey, parse_documents};
//!
//! let yaml = r#"
//! apiVersion: networking.istio.io/v1
//! kind: VirtualService
//! metadata: { name: cart, namespace: shop }
//! spec:
//!   hosts: [cart.example.com]
//!   gateways: [istio-system/public]
//!   http: [{ route: [{ destination: { host: cart } }] }]
//! ---
//! apiVersion: v1
//! kind: Service
//! metadata: { name: cart, namespace: shop }
//! spec: { ports: [{ port: 80 }] }
//! "#;
//! let mut engine = Engine::open_in_memory()?;
//! engine.ingest_batch(parse_documents(yaml, "mesh.yaml")?)?;
//! let report = engine.check()?;
//! // the gateway does not exist: IST0101 (and, as in Istio, IST0132)
//! assert_eq!(report.summary.by_code["IST0101"], 1);
//! assert_eq!(report.findings[0].resource.name, "cart");
//! assert_eq!(report.findings[0].file.as_deref(), Some("mesh.yaml"));
//! // the same findings, for one object, incrementally
//! let cart = ObjectKey::virtual_service("shop", "cart");
//! assert_eq!(engine.findings_for(&cart)?.len(), 2);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Input
//!
//! [`SourceObject`]s: a `serde_json::Value` plus an optional [`Origin`] (file, line). Build them
//! with [`parse_documents`] (multi-document YAML, `kind: List`, JSON objects and arrays),
//! [`SourceObject::new`], or [`SourceObject::from_typed`] for typed structs. Istio kinds are
//! accepted in `v1`, `v1beta1` and `v1alpha3`: the [`ObjectKey`] (group, kind, namespace, name)
//! has no version. Objects without `metadata.namespace` take [`IngestOptions::default_namespace`]
//! (`default`). Unknown kinds are counted and skipped; unknown fields are ignored; an object whose
//! needed fields have the wrong shape becomes an `MSH0001` finding, never an error. Secrets are
//! reduced to name, namespace and type; Pods to namespace and labels.
//!
//! # Ingest
//!
//! [`Engine::ingest_batch`] (one transaction) for snapshots; [`Engine::upsert`],
//! [`Engine::delete`] and [`Engine::record_undecodable`] for watch events.
//!
//! # Checks
//!
//! [`Engine::check`] runs every rule and returns a [`Report`]; [`Engine::findings_for`] runs the
//! rules restricted to one object (indexed; what the operator calls per MeshService);
//! [`Engine::finding_counts`] gives only the number of findings per code and severity, without
//! building them (for metrics: the same counts as `check`, suppressions honoured, at a fraction of
//! the cost when there are many findings). The rules are listed by [`rules()`]; their codes:
//!
//! | code | rule(s) |
//! |---|---|
//! | IST0101 | `vs-gateway-not-found`, `vs-destination-host-not-found`, `vs-mirror-host-not-found`, `vs-destination-port-not-found`, `vs-destination-subset-not-found`, `gateway-selector-no-pod`, `gateway-credential-not-found`, `sidecar-selector-no-pod` |
//! | IST0109 | `mesh-vs-host-conflict` |
//! | IST0110 / IST0111 | `sidecar-selector-conflict` / `sidecar-multiple-without-selector` |
//! | IST0112 | `vs-destination-port-selector-required` |
//! | IST0132 | `vs-host-not-in-gateway` |
//! | IST0145 | `gateway-conflict` |
//! | IST0162 | `gateway-port-not-on-service` |
//! | IST0174 | `dr-host-unknown` |
//! | IST0177 | `se-protocol-conflict` |
//! | MSH0001 | `object-not-projectable` |
//! | MSH0101 | `gateway-wildcard-host-overlap` |
//! | MSH0102 | `dr-duplicate-host` |
//! | MSH0103 | `se-host-port-claim-conflict` |
//! | MSH0104 | `export-to-namespace-not-found` |
//! | MSH0201 | `meshservice-host-claim-lost` |
//! | MSH0202 | `meshservice-gateway-not-found` |
//! | MSH0203 | `meshservice-host-not-served` |
//! | MSH0204 | `meshservice-service-name-taken` |
//! | MSH0205 | `meshservice-virtualservice-name-taken` |
//! | MSH0206 | `meshservice-gateway-name-taken` (reported by the operator only) |
//! | MSH0207 | `meshservice-gateway-port-dropped` (reported by the operator only) |
//!
//! Rules that need Pods, Secrets or Namespaces run only when objects of that kind are in the
//! engine; the report's `coverage` says which did not run.
//!
//! # Suppression
//!
//! Istio's `galley.istio.io/analyze-suppress` annotation (comma-separated codes, or `*`) on an
//! object silences those codes on it; [`Engine::add_suppression`] takes `CODE` (or a rule name)
//! or `CODE=Kind/namespace/name`.
//!
//! # Report JSON
//!
//! [`Report`] serialises (camelCase, every field always present) as:
//!
//! ```text
//! { "reportVersion": 1, "schemaVersion": 10,
//!   "findings": [ { "code", "rule", "severity": "error|warning|info",
//!                   "resource": {"apiVersion","kind","namespace","name"}, "message",
//!                   "file", "line", "related": [resource + file, line...],
//!                   "chain": [{"from","path","to"}],
//!                   "repair": [{"action": "create|patch|delete|none", "target", "patch", "object",
//!                               "operatorMayApply", "description"}],
//!                   "host", "port", "gateway", "winner" } ],
//!   "summary": { "total", "byCode", "byRule", "bySeverity", "byNamespace", "objectsByKind",
//!                "objectsTotal", "suppressed" },
//!   "durations": { "ingestMs", "checkMs", "byRuleMs": {rule: ms} },
//!   "coverage": { "pods", "secrets", "namespaces", "skippedRules": [{"rule","code","reason"}], "notes" } }
//! ```

mod engine;
mod error;
mod finding;
pub mod host;
mod model;
mod parse;
mod project;
pub mod repair;
mod rules;
mod store;
mod suppress;

pub use engine::Engine;
pub use error::{Error, ParseError, ParseErrorKind};
pub use finding::{
    ActionKind, ChainLink, Coverage, Durations, Finding, FindingCount, REPORT_VERSION, RelatedRef,
    RepairAction, Report, ReportedBy, ResourceRef, RuleInfo, Severity, SkippedRule, Summary,
};
pub use model::{
    GATEWAY_API_GROUP, ISTIO_GROUP, IngestOptions, IngestStats, ObjectKey, Origin, SourceObject,
    group_of,
};
pub use parse::parse_documents;
pub use project::{KNOWN_KINDS, SERVICE_EXPORT_TO_ANNOTATION, SUPPRESS_ANNOTATION, is_known};
pub use rules::{rule_by_name, rules};
pub use suppress::Suppression;
