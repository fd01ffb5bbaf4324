//! The integrity engine: every VirtualService, Gateway, DestinationRule, ServiceEntry, Service and
//! MeshService it is given is projected into a few columns of an in-memory SQLite database (schema
//! under versioned refinery migrations in the workspace's `migrations/`), where SQL rules find
//! dangling references, colliding host/port claims and drift, each with a stable code and a repair
//! plan. No kube client, no tokio, no I/O but SQLite: the operator and the offline `check` embed it,
//! and so can any other Rust tool.
