//! The e2e test harness: starts a real etcd, kube-apiserver and kube-controller-manager (built by
//! `cargo xtask controlplane` from the upstream Go modules) on loopback, installs our CRDs and Istio's,
//! and hands tests an admin `kube::Client`; nothing of the Kubernetes API is mocked.
