//! The Istio renderer: pure functions (no I/O, no clock) that turn a `MeshService`, and for a managed
//! shared Gateway the set of MeshServices that reference it, into exactly the Kubernetes `Service`,
//! Istio `VirtualService` and Istio `Gateway` the operator applies with server-side apply. The same
//! input always yields byte-identical JSON.
