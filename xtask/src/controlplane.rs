//! `cargo xtask controlplane`: a real Kubernetes control plane for the e2e tests, built from the
//! upstream Go modules pinned in `xtask/controlplane/go.mod`, plus Istio's CRDs from `istio.io/api`.
//! A second run with the same pins is a no-op.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

// The pinned versions and the directory layout live in the e2e harness, which looks for the binaries
// where this builds them; sharing them keeps the two from drifting.
pub use test_controlplane::versions::{
    DIR_ENV, ETCD_VERSION, ISTIO_API_VERSION, ISTIO_CRDS_FILE, KUBERNETES_VERSION,
};
/// Oldest Go that builds Kubernetes 1.35.
const MIN_GO: (u32, u32) = (1, 25);

/// The binaries the harness runs, with the Go package each is built from.
const BINARIES: [(&str, &str); 4] = [
    ("etcd", "go.etcd.io/etcd/server/v3"),
    ("kube-apiserver", "k8s.io/kubernetes/cmd/kube-apiserver"),
    (
        "kube-controller-manager",
        "k8s.io/kubernetes/cmd/kube-controller-manager",
    ),
    ("kubectl", "k8s.io/kubernetes/cmd/kubectl"),
];

/// `target/controlplane/<versions>/`, holding `bin/` and the Istio CRDs.
pub fn dir(root: &Path) -> PathBuf {
    test_controlplane::versions::default_dir(root)
}

/// Builds what is missing and returns the control plane directory.
pub fn build(root: &Path) -> Result<PathBuf> {
    let out = dir(root);
    let bin = out.join("bin");
    let module = root.join("xtask").join("controlplane");
    let missing: Vec<_> = BINARIES
        .iter()
        .filter(|(name, _)| !bin.join(name).is_file())
        .collect();
    let istio_crds = out.join(ISTIO_CRDS_FILE);
    if missing.is_empty() && istio_crds.is_file() {
        println!(
            "control plane {KUBERNETES_VERSION} / etcd {ETCD_VERSION} / istio {ISTIO_API_VERSION}: already built"
        );
        return Ok(out);
    }
    check_go()?;
    std::fs::create_dir_all(&bin)?;
    for (name, package) in missing {
        println!("building {name} from {package} (first build takes several minutes)");
        crate::run(
            go().current_dir(&module)
                .args(["build", "-trimpath", "-ldflags=-s -w", "-o"])
                .arg(bin.join(name))
                .arg(package),
        )
        .with_context(|| format!("building {name}"))?;
    }
    if !istio_crds.is_file() {
        fetch_istio_crds(&module, &istio_crds)?;
    }
    Ok(out)
}

fn go() -> Command {
    let mut command = Command::new("go");
    // The pinned go.mod must be honoured as committed, and no other toolchain fetched behind our back.
    command
        .env("GOFLAGS", "-mod=readonly")
        .env("GOTOOLCHAIN", "local");
    command
}

fn check_go() -> Result<()> {
    let output = go().arg("version").output().map_err(|error| {
        anyhow::anyhow!(
            "`go` was not found ({error}). The e2e tests run a real kube-apiserver built from Go modules: \
             install Go {}.{} or newer (https://go.dev/doc/install, or your distribution's golang package) and retry",
            MIN_GO.0,
            MIN_GO.1
        )
    })?;
    let text = String::from_utf8_lossy(&output.stdout);
    let version = text
        .split_whitespace()
        .find_map(|word| {
            word.strip_prefix("go")
                .filter(|v| v.starts_with(|c: char| c.is_ascii_digit()))
        })
        .with_context(|| format!("cannot read the Go version from `go version`: {text}"))?;
    let mut parts = version.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    let found = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    if found < MIN_GO {
        bail!(
            "Go {version} is too old: Kubernetes {KUBERNETES_VERSION} needs Go {}.{} or newer; install a newer Go and retry",
            MIN_GO.0,
            MIN_GO.1
        );
    }
    Ok(())
}

fn fetch_istio_crds(module: &Path, target: &Path) -> Result<()> {
    println!("fetching Istio CRDs from istio.io/api@{ISTIO_API_VERSION}");
    let output = go()
        .current_dir(module)
        .args([
            "mod",
            "download",
            "-json",
            &format!("istio.io/api@{ISTIO_API_VERSION}"),
        ])
        .output()
        .context("running go mod download")?;
    if !output.status.success() {
        bail!(
            "go mod download istio.io/api@{ISTIO_API_VERSION} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let text = String::from_utf8_lossy(&output.stdout);
    let module_dir = text
        .lines()
        .find_map(|line| line.trim().strip_prefix("\"Dir\": \""))
        .and_then(|rest| rest.strip_suffix("\","))
        .context("go mod download printed no Dir")?;
    let source = Path::new(module_dir)
        .join("kubernetes")
        .join("customresourcedefinitions.gen.yaml");
    std::fs::copy(&source, target).with_context(|| format!("copying {}", source.display()))?;
    Ok(())
}
