//! The pinned versions of the control plane, in one place: `cargo xtask controlplane` builds into the
//! directory named from them and the harness looks for its binaries there, so the two cannot drift.
//! `xtask/controlplane/go.mod` pins the same versions for Go; a test below keeps it in step.

use std::path::{Path, PathBuf};

/// Kubernetes version built (k8s.io/kubernetes; staging modules at the matching v0.x).
pub const KUBERNETES_VERSION: &str = "v1.35.4";
/// etcd version built (go.etcd.io/etcd/server/v3).
pub const ETCD_VERSION: &str = "v3.6.13";
/// istio.io/api version whose CRDs are installed.
pub const ISTIO_API_VERSION: &str = "v1.32.0";
/// Environment variable naming the control plane directory (set by `cargo xtask test`).
pub const DIR_ENV: &str = "IIO_CONTROLPLANE_DIR";
/// File name of Istio's CRDs next to the binaries.
pub const ISTIO_CRDS_FILE: &str = "istio-crds.yaml";

/// Name of the directory under `target/controlplane/` holding one build of the pinned versions.
pub fn dir_name() -> String {
    format!("k8s-{KUBERNETES_VERSION}_etcd-{ETCD_VERSION}_istio-{ISTIO_API_VERSION}")
}

/// `<workspace>/target/controlplane/<versions>/`, where `cargo xtask controlplane` builds.
pub fn default_dir(workspace_root: &Path) -> PathBuf {
    workspace_root
        .join("target")
        .join("controlplane")
        .join(dir_name())
}

/// The workspace this crate belongs to (two levels above its manifest).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join("..")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A `require` line of go.mod, e.g. `\tk8s.io/kubernetes v1.35.4`.
    fn required_version<'a>(go_mod: &'a str, module: &str) -> Option<&'a str> {
        go_mod.lines().find_map(|line| {
            let mut words = line.split_whitespace();
            (words.next() == Some(module))
                .then(|| words.next())
                .flatten()
        })
    }

    #[test]
    fn go_mod_pins_the_same_kubernetes_and_etcd_as_the_harness() {
        let go_mod = std::fs::read_to_string(workspace_root().join("xtask/controlplane/go.mod"))
            .expect("xtask/controlplane/go.mod is part of the repository");
        assert_eq!(
            required_version(&go_mod, "k8s.io/kubernetes"),
            Some(KUBERNETES_VERSION)
        );
        assert_eq!(
            required_version(&go_mod, "go.etcd.io/etcd/server/v3"),
            Some(ETCD_VERSION)
        );
        let staging_minor = KUBERNETES_VERSION.replacen("v1.", "v0.", 1);
        assert_eq!(
            required_version(&go_mod, "k8s.io/apiserver"),
            Some(staging_minor.as_str()),
            "staging modules are pinned to the v0.x tag matching Kubernetes"
        );
    }

    #[test]
    fn the_build_directory_names_every_pinned_version() {
        let name = dir_name();
        for version in [KUBERNETES_VERSION, ETCD_VERSION, ISTIO_API_VERSION] {
            assert!(name.contains(version), "{name} names {version}");
        }
        assert_eq!(
            default_dir(Path::new("/w")),
            Path::new("/w/target/controlplane").join(&name)
        );
    }
}
