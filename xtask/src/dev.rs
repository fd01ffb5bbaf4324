//! `cargo xtask dev`: a real Kubernetes API on this machine, without a cluster. Starts the control
//! plane the e2e tests use (etcd, kube-apiserver, kube-controller-manager, our CRDs and Istio's),
//! writes a kubeconfig to a stable path and runs until Ctrl-C.

use std::path::Path;

use anyhow::{Context, Result};
use test_controlplane::{ControlPlane, Options, versions};

/// Where the kubeconfig of the running dev control plane is written, relative to the workspace.
const KUBECONFIG: &str = "target/controlplane/dev/kubeconfig";

pub fn run(root: &Path) -> Result<()> {
    let controlplane_dir = crate::controlplane::build(root)?;
    let options = Options {
        crds: vec![
            root.join("deploy").join("crds"),
            controlplane_dir.join(versions::ISTIO_CRDS_FILE),
        ],
        controlplane_dir,
        ..Options::from_env()
    };
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")?
        .block_on(serve(root, options))
}

async fn serve(root: &Path, options: Options) -> Result<()> {
    println!("starting etcd, kube-apiserver and kube-controller-manager ...");
    let control_plane = ControlPlane::start_with(options).await?;
    let kubeconfig = root.join(KUBECONFIG);
    if let Some(parent) = kubeconfig.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    std::fs::copy(control_plane.kubeconfig_path(), &kubeconfig)
        .with_context(|| format!("writing {}", kubeconfig.display()))?;

    let kubectl = control_plane.kubectl();
    println!(
        "control plane ready in {:.1} s: {} (CRDs: MeshService and Istio's installed)",
        control_plane.startup_time().as_secs_f64(),
        control_plane.apiserver_url()
    );
    println!(
        "logs, certificates and etcd data: {}",
        control_plane.dir().display()
    );
    println!();
    println!("In another shell:");
    println!("  export KUBECONFIG={}", kubeconfig.display());
    println!("  alias kubectl={}", kubectl.display());
    println!("  kubectl get crd");
    println!("  kubectl apply -k examples/");
    println!();
    println!("Press Ctrl-C to stop; everything is removed on exit.");

    wait_for_stop_signal().await?;
    println!("stopping the control plane ...");
    drop(control_plane);
    // The kubeconfig names a stopped server and certificates that no longer exist.
    let _ = std::fs::remove_file(&kubeconfig);
    Ok(())
}

async fn wait_for_stop_signal() -> Result<()> {
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("installing the SIGTERM handler")?;
    tokio::select! {
        interrupted = tokio::signal::ctrl_c() => interrupted.context("waiting for Ctrl-C"),
        _ = terminate.recv() => Ok(()),
    }
}
