//! The reconcile loop, and the only crate that talks to the Kubernetes API: it watches MeshServices
//! and the Istio and Kubernetes objects around them, feeds every event into the integrity engine,
//! applies what the renderer produces with server-side apply, repairs drift of what it owns and
//! reports status, Events and metrics.
