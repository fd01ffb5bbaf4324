//! Project automation, run as `cargo xtask <task>` (alias in `.cargo/config.toml`).

mod controlplane;
mod crd;
mod dev;
mod installer;
mod rbac;

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "cargo xtask",
    about = "Tasks for istio-integrity-operator developers and CI"
)]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Write deploy/crds/ from the Rust types (--check: fail with a diff when the committed YAML is stale).
    Crd {
        /// Compare instead of writing; exit non-zero and print the diff when stale.
        #[arg(long)]
        check: bool,
    },
    /// Build kube-apiserver, kube-controller-manager, kubectl and etcd from Go modules and fetch Istio's CRDs (cached).
    Controlplane,
    /// Write the generated parts of deploy/ (RBAC for kustomize and the Helm chart, the README RBAC table) from xtask/src/rbac.rs (--check: fail with a diff when stale).
    Manifests {
        /// Compare instead of writing; exit non-zero and print the diff when stale.
        #[arg(long)]
        check: bool,
    },
    /// Write one YAML bundle of everything deploy/ installs, with the given operator image.
    Installer {
        /// The operator image, e.g. registry.example/istio-integrity-operator:v0.1.0.
        #[arg(long)]
        image: String,
        /// Where to write the bundle.
        #[arg(long, default_value = installer::DEFAULT_OUT)]
        out: PathBuf,
    },
    /// Start a real control plane (etcd, kube-apiserver, kube-controller-manager, CRDs installed), print `export KUBECONFIG=…`, run until Ctrl-C.
    Dev,
    /// Run every check CI runs: fmt, clippy, CRD drift, control-plane build, all tests including e2e.
    Test,
}

fn main() -> Result<()> {
    match Cli::parse().task {
        Task::Crd { check } => crd::run(&workspace_root(), check),
        Task::Controlplane => controlplane::build(&workspace_root()).map(|dir| {
            println!("control plane ready in {}", dir.display());
        }),
        Task::Dev => dev::run(&workspace_root()),
        Task::Manifests { check } => rbac::run(&workspace_root(), check),
        Task::Installer { image, out } => installer::run(&workspace_root(), &image, &out),
        Task::Test => test(&workspace_root()),
    }
}

/// The workspace root: xtask lives one level below it.
pub(crate) fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask has a parent directory")
        .to_path_buf()
}

fn test(root: &Path) -> Result<()> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
    step("cargo fmt --check", || {
        run(Command::new(&cargo)
            .current_dir(root)
            .args(["fmt", "--all", "--check"]))
    })?;
    step("cargo clippy", || {
        run(Command::new(&cargo).current_dir(root).args([
            "clippy",
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ]))
    })?;
    step("cargo xtask crd --check", || crd::run(root, true))?;
    step("cargo xtask manifests --check", || rbac::run(root, true))?;
    let controlplane_dir = step("cargo xtask controlplane", || controlplane::build(root))?;
    step("cargo test --workspace", || {
        run(Command::new(&cargo)
            .current_dir(root)
            .env(controlplane::DIR_ENV, &controlplane_dir)
            .args(["test", "--workspace", "--all-targets"]))
    })?;
    step("cargo test --doc", || {
        run(Command::new(&cargo)
            .current_dir(root)
            .args(["test", "--workspace", "--doc"]))
    })?;
    println!("xtask test: every step passed");
    Ok(())
}

fn step<T>(name: &str, f: impl FnOnce() -> Result<T>) -> Result<T> {
    println!("==> {name}");
    let started = std::time::Instant::now();
    let result = f().with_context(|| format!("step `{name}` failed"));
    println!("<== {name} ({:.1} s)", started.elapsed().as_secs_f64());
    result
}

pub(crate) fn run(command: &mut Command) -> Result<()> {
    let status = command
        .status()
        .with_context(|| format!("cannot start {:?}", command.get_program()))?;
    if !status.success() {
        bail!("{command:?} exited with {status}");
    }
    Ok(())
}
