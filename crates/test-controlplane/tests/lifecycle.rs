//! Control planes beyond the shared one: a second one in the same process is independent and is
//! stopped and removed by Drop; etcd and the apiserver can be restarted without losing data, and
//! kube-controller-manager is restarted when it exits, as a kubelet would.

mod common;

use std::time::Duration;

use anyhow::{Context, Result};
use common::{eventually, process_is_gone};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::Api;
use kube::api::PostParams;
use test_controlplane::{ControlPlane, shared};

fn config_map(name: &str) -> ConfigMap {
    ConfigMap {
        metadata: kube::api::ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        data: Some([("stored".to_string(), "before the restart".to_string())].into()),
        ..Default::default()
    }
}

#[tokio::test]
async fn a_second_control_plane_in_the_same_process_has_its_own_ports_and_data() -> Result<()> {
    let first = shared().await?;
    let second = ControlPlane::start().await?;

    assert_ne!(first.apiserver_url(), second.apiserver_url());
    assert_ne!(first.etcd_url(), second.etcd_url());
    assert_ne!(first.dir(), second.dir());

    let ns = first.namespace("only-in-the-first").await?;
    assert!(
        Api::<Namespace>::all(first.client()?)
            .get_opt(ns.name())
            .await?
            .is_some()
    );
    assert!(
        Api::<Namespace>::all(second.client()?)
            .get_opt(ns.name())
            .await?
            .is_none(),
        "the second control plane has its own etcd data"
    );

    let pids = second.pids();
    let dir = second.dir().to_path_buf();
    drop(second);

    for pid in [pids.etcd, pids.apiserver, pids.controller_manager] {
        let pid = pid.context("every process was running")?;
        assert!(
            process_is_gone(pid),
            "process {pid} stopped with its ControlPlane"
        );
    }
    assert!(
        !dir.exists(),
        "{} is removed with its ControlPlane",
        dir.display()
    );
    first
        .client()?
        .apiserver_version()
        .await
        .context("the first control plane still serves")?;
    Ok(())
}

#[tokio::test]
async fn restarting_etcd_and_the_apiserver_keeps_the_stored_objects() -> Result<()> {
    let cp = ControlPlane::start().await?;
    let ns = cp.namespace("restarts").await?;
    Api::<ConfigMap>::namespaced(cp.client()?, ns.name())
        .create(&PostParams::default(), &config_map("survivor"))
        .await?;
    let before = cp.pids();

    cp.restart_etcd().await?;
    assert_ne!(cp.pids().etcd, before.etcd, "etcd is a new process");
    // A fresh client: the old one's pooled connections may have been cut.
    let after_etcd = Api::<ConfigMap>::namespaced(cp.client()?, ns.name())
        .get("survivor")
        .await?;
    assert_eq!(after_etcd.data, config_map("survivor").data);

    cp.restart_apiserver().await?;
    assert_ne!(
        cp.pids().apiserver,
        before.apiserver,
        "kube-apiserver is a new process"
    );
    let after_apiserver = Api::<ConfigMap>::namespaced(cp.client()?, ns.name())
        .get("survivor")
        .await?;
    assert_eq!(after_apiserver.data, config_map("survivor").data);

    // kube-controller-manager may have given up while the apiserver was away (it exits when the
    // apiserver stays unhealthy during its own start); whether it did or not, killing it shows
    // that it comes back.
    let controller_manager = cp
        .pids()
        .controller_manager
        .context("kube-controller-manager runs")?;
    let pid = libc::pid_t::try_from(controller_manager)?;
    // SAFETY: kill(2) with a pid this control plane spawned and still owns; no memory is shared.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGKILL) }, 0, "SIGKILL sent");
    eventually(
        Duration::from_secs(30),
        "kube-controller-manager is restarted",
        || async {
            Ok(cp
                .pids()
                .controller_manager
                .is_some_and(|restarted| restarted != controller_manager))
        },
    )
    .await?;

    // The namespace controller works again: a namespace deletion completes.
    let namespaces: Api<Namespace> = Api::all(cp.client()?);
    namespaces.delete(ns.name(), &Default::default()).await?;
    eventually(
        Duration::from_secs(60),
        "the namespace controller finalizes after restarts",
        || async { Ok(namespaces.get_opt(ns.name()).await?.is_none()) },
    )
    .await
}
