//! Typed errors of the reconciler. The variant name labels the `mesh_reconcile_failures_total`
//! metric, so each variant is one way a reconcile can fail that an operator of the operator may
//! want to alert on separately.

/// Everything that can make a reconcile (or the operator) fail.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Server-side apply of a child object failed.
    #[error("applying {object}: {source}")]
    Apply {
        /// `Kind namespace/name` of the object.
        object: String,
        /// What the apiserver said.
        #[source]
        source: kube::Error,
    },
    /// Reading a child object failed (other than "not found").
    #[error("reading {object}: {source}")]
    Read {
        /// `Kind namespace/name` of the object.
        object: String,
        /// What the apiserver said.
        #[source]
        source: kube::Error,
    },
    /// Deleting a child object failed (other than "not found").
    #[error("deleting {object}: {source}")]
    Delete {
        /// `Kind namespace/name` of the object.
        object: String,
        /// What the apiserver said.
        #[source]
        source: kube::Error,
    },
    /// Writing the status subresource failed.
    #[error("writing the status of MeshService {object}: {source}")]
    Status {
        /// `namespace/name` of the MeshService.
        object: String,
        /// What the apiserver said.
        #[source]
        source: kube::Error,
    },
    /// Adding or removing the finalizer, or the cleanup it guards, failed.
    #[error("finalizer: {0}")]
    Finalizer(#[source] Box<kube::runtime::finalizer::Error<Error>>),
    /// Removing this instance's finalizer from a MeshService it no longer selects failed.
    #[error("releasing MeshService {object}: {source}")]
    Release {
        /// `namespace/name` of the MeshService.
        object: String,
        /// What the apiserver said.
        #[source]
        source: kube::Error,
    },
    /// The configuration is unusable (a malformed selector or shard name).
    #[error("configuration: {0}")]
    InvalidConfig(String),
    /// The renderer refused the MeshService (only an object that bypassed the API schema).
    #[error("rendering: {0}")]
    Render(#[from] istio_render::RenderError),
    /// The integrity engine failed (SQLite), not an object: bad objects are findings.
    #[error("integrity engine: {0}")]
    Engine(#[from] mesh_integrity::Error),
    /// A MeshService that does not decode; recorded as a finding, never retried.
    #[error("MeshService {object} does not decode: {message}")]
    InvalidObject {
        /// `namespace/name` of the object.
        object: String,
        /// The decoder's complaint.
        message: String,
    },
    /// The MeshService CRD is not installed or not readable.
    #[error("the MeshService CRD is not installed or not readable (install deploy/crds/): {0}")]
    CrdMissing(#[source] kube::Error),
    /// The leader Lease could not be created or renewed.
    #[error("leader election: {0}")]
    Lease(#[from] kube_lease_manager::LeaseManagerError),
    /// The admin server could not bind or serve.
    #[error("admin server: {0}")]
    Admin(#[source] std::io::Error),
    /// A watch of the live index ended or failed permanently.
    #[error("watch of {kind} ended: {message}")]
    Watch {
        /// The watched kind.
        kind: String,
        /// Why.
        message: String,
    },
    /// A JSON (de)serialisation of our own data failed.
    #[error("serialising: {0}")]
    Serialize(#[from] serde_json::Error),
}

impl Error {
    /// The metric label of this error: its variant name.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Apply { .. } => "Apply",
            Error::Read { .. } => "Read",
            Error::Delete { .. } => "Delete",
            Error::Status { .. } => "Status",
            Error::Finalizer(_) => "Finalizer",
            Error::Release { .. } => "Release",
            Error::InvalidConfig(_) => "InvalidConfig",
            Error::Render(_) => "Render",
            Error::Engine(_) => "Engine",
            Error::InvalidObject { .. } => "InvalidObject",
            Error::CrdMissing(_) => "CrdMissing",
            Error::Lease(_) => "Lease",
            Error::Admin(_) => "Admin",
            Error::Watch { .. } => "Watch",
            Error::Serialize(_) => "Serialize",
        }
    }
}

/// Result with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
