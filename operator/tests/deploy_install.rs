//! deploy/, examples/ and the installer bundle on the real control plane (test-controlplane): every
//! manifest passes server-side dry-run, then `kubectl apply -k deploy/` and `-k examples/` install
//! for real and `kubectl delete -k` removes it all again. The only test of this binary, because
//! uninstalling deletes the MeshService CRD of the binary's shared control plane.

#[path = "../../xtask/src/installer.rs"]
#[allow(dead_code)] // `run` is xtask's entry point; the test uses `bundle`
mod installer;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use k8s_openapi::api::rbac::v1::ClusterRole;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Api;
use kube::api::PostParams;
use meshservice_api::MeshService;
use test_controlplane::ControlPlane;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// Runs kubectl as the admin and returns its stdout; panics with stderr when it fails.
fn kubectl(cp: &ControlPlane, args: &[&str]) -> String {
    let out = Command::new(cp.kubectl())
        .arg("--kubeconfig")
        .arg(cp.kubeconfig_path())
        .args(args)
        .current_dir(root())
        .output()
        .expect("kubectl runs");
    assert!(
        out.status.success(),
        "kubectl {}:\n{}{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Waits until `gone` returns true, for at most 60 s.
async fn eventually<F, Fut>(what: &str, mut gone: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(60);
    while !gone().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn deploy_examples_and_bundle_pass_dry_run_then_install_and_uninstall() {
    let cp = test_controlplane::shared().await.unwrap();
    let client = cp.client().unwrap();

    // A server-side dry-run does not create namespaces, and objects in a missing namespace are
    // refused: the namespaces come first, for real (as `kubectl apply` orders them itself).
    kubectl(
        cp,
        &[
            "apply",
            "--server-side",
            "--force-conflicts",
            "-f",
            "deploy/namespace.yaml",
        ],
    );
    // istio-system: an Istio install provides it (so may the harness, with Istio's CRDs).
    let istio_system: Namespace =
        serde_json::from_value(serde_json::json!({"metadata": {"name": "istio-system"}})).unwrap();
    match Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &istio_system)
        .await
    {
        Ok(_) => {}
        Err(kube::Error::Api(status)) if status.is_already_exists() => {}
        Err(error) => panic!("creating istio-system: {error}"),
    }
    kubectl(
        cp,
        &[
            "apply",
            "--server-side",
            "--force-conflicts",
            "-f",
            "examples/istio/00-namespaces.yaml",
        ],
    );

    // Server-side dry-run: the apiserver validates every object (schemas, CEL rules, RBAC
    // references) and stores nothing.
    let dry = kubectl(
        cp,
        &[
            "apply",
            "--server-side",
            "--force-conflicts",
            "--dry-run=server",
            "-k",
            "deploy/",
        ],
    );
    assert!(
        dry.contains(
            "deployment.apps/istio-integrity-operator serverside-applied (server dry run)"
        ),
        "{dry}"
    );
    let dry = kubectl(
        cp,
        &[
            "apply",
            "--server-side",
            "--force-conflicts",
            "--dry-run=server",
            "-k",
            "examples/",
        ],
    );
    assert!(
        dry.contains(
            "meshservice.mesh.istio.operator/webapp-service serverside-applied (server dry run)"
        ),
        "{dry}"
    );
    let bundle_dir = tempfile::tempdir().unwrap();
    let bundle = bundle_dir.path().join("install.yaml");
    std::fs::write(
        &bundle,
        installer::bundle(&root(), "registry.example/istio-integrity-operator:v0.1.0").unwrap(),
    )
    .unwrap();
    let dry = kubectl(
        cp,
        &[
            "apply",
            "--server-side",
            "--force-conflicts",
            "--dry-run=server",
            "-f",
            bundle.to_str().unwrap(),
        ],
    );
    assert_eq!(dry.matches("(server dry run)").count(), 9, "{dry}");
    // The --namespace variant (deploy/ plus the Component), from a kustomization of one's own.
    let scratch_parent = root().join("target").join("deploy-tests");
    std::fs::create_dir_all(&scratch_parent).unwrap();
    let scratch = tempfile::Builder::new()
        .prefix("install-namespaced")
        .tempdir_in(&scratch_parent)
        .unwrap();
    std::fs::write(
        scratch.path().join("kustomization.yaml"),
        "resources: [../../../deploy]\ncomponents: [../../../deploy/namespaced]\n",
    )
    .unwrap();
    let dry = kubectl(
        cp,
        &[
            "apply",
            "--server-side",
            "--force-conflicts",
            "--dry-run=server",
            "-k",
            scratch.path().to_str().unwrap(),
        ],
    );
    assert!(
        dry.contains("role.rbac.authorization.k8s.io/istio-integrity-operator serverside-applied"),
        "{dry}"
    );
    // Dry-run stored nothing.
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "istio-integrity-system");
    assert!(
        deployments
            .get_opt("istio-integrity-operator")
            .await
            .unwrap()
            .is_none()
    );

    // The real install: `kubectl apply -k deploy/`, then the samples as they are.
    kubectl(
        cp,
        &[
            "apply",
            "--server-side",
            "--force-conflicts",
            "-k",
            "deploy/",
        ],
    );
    let deployment = deployments.get("istio-integrity-operator").await.unwrap();
    let pod_spec = deployment.spec.unwrap().template.spec.unwrap();
    assert_eq!(
        pod_spec.containers[0].image.as_deref(),
        Some(installer::IMAGE_PLACEHOLDER)
    );
    // The pod the Deployment asks for passes Pod Security "restricted", which its namespace
    // enforces (the test control plane runs no kubelet, so a server-side dry-run create of the
    // Deployment's pod stands in for the ReplicaSet's); a pod that may escalate privileges is
    // refused there, so the enforcement is real.
    let pods: Api<Pod> = Api::namespaced(client.clone(), "istio-integrity-system");
    let dry_run = PostParams {
        dry_run: true,
        ..PostParams::default()
    };
    let mut pod = Pod {
        metadata: ObjectMeta {
            name: Some("operator-pod".into()),
            ..ObjectMeta::default()
        },
        spec: Some(pod_spec),
        ..Pod::default()
    };
    pods.create(&dry_run, &pod).await.unwrap();
    let container = &mut pod.spec.as_mut().unwrap().containers[0];
    container
        .security_context
        .as_mut()
        .unwrap()
        .allow_privilege_escalation = None;
    match pods.create(&dry_run, &pod).await {
        Err(kube::Error::Api(status)) => {
            assert!(status.is_forbidden(), "{status:?}");
            assert!(status.message.contains("restricted"), "{}", status.message);
        }
        other => panic!("a pod that may escalate privileges must be refused, got {other:?}"),
    }
    let cluster_roles: Api<ClusterRole> = Api::all(client.clone());
    assert!(
        cluster_roles
            .get_opt("istio-integrity-operator")
            .await
            .unwrap()
            .is_some()
    );

    kubectl(cp, &["apply", "-k", "examples/"]);
    let default_ms: Api<MeshService> = Api::namespaced(client.clone(), "default");
    let webapp = default_ms.get("webapp-service").await.unwrap();
    assert_eq!(webapp.spec.service_name, "webapp");
    let shop_ms: Api<MeshService> = Api::namespaced(client.clone(), "shop");
    assert!(shop_ms.get_opt("reviews").await.unwrap().is_some());

    // Uninstall, in the README's order: the samples, then the operator with its CRD.
    kubectl(cp, &["delete", "--wait=false", "-k", "examples/"]);
    eventually("the sample MeshService to go", || async {
        default_ms
            .get_opt("webapp-service")
            .await
            .unwrap()
            .is_none()
    })
    .await;
    kubectl(cp, &["delete", "--wait=false", "-k", "deploy/"]);
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    eventually(
        "the CRD, the ClusterRole and the Deployment to go",
        || async {
            crds.get_opt("meshservices.mesh.istio.operator")
                .await
                .unwrap()
                .is_none()
                && cluster_roles
                    .get_opt("istio-integrity-operator")
                    .await
                    .unwrap()
                    .is_none()
                && deployments
                    .get_opt("istio-integrity-operator")
                    .await
                    .unwrap()
                    .is_none()
        },
    )
    .await;
    let namespaces: Api<Namespace> = Api::all(client);
    eventually("the operator's namespace to be deleted", || async {
        namespaces
            .get_opt("istio-integrity-system")
            .await
            .unwrap()
            .is_none_or(|ns| ns.metadata.deletion_timestamp.is_some())
    })
    .await;
}
