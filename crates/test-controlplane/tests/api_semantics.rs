//! What the real control plane proves, on the control plane shared by this test binary: our CRD is
//! served and its CEL rules enforced by the apiserver, Istio's CRDs convert between versions, Services
//! get cluster IPs, the garbage collector and namespace controller run, and RBAC denies.

mod common;

use std::time::Duration;

use anyhow::{Context, Result, bail};
use common::eventually;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Service};
use k8s_openapi::api::rbac::v1::{PolicyRule, Role, RoleBinding, RoleRef, Subject};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{
    ApiResource, DeleteParams, DynamicObject, GroupVersionKind, Patch, PatchParams, PostParams,
};
use kube::{Api, Resource, ResourceExt};
use meshservice_api::{MeshService, messages};
use serde_json::{Value, json};
use test_controlplane::{SERVICE_CLUSTER_IP_RANGE, shared};

fn meshservice(name: &str, spec: Value) -> Result<MeshService> {
    Ok(serde_json::from_value(json!({
        "apiVersion": meshservice_api::API_VERSION,
        "kind": meshservice_api::KIND,
        "metadata": {"name": name},
        "spec": spec,
    }))?)
}

fn valid_spec() -> Value {
    json!({
        "serviceName": "webapp",
        "hosts": ["webapp.example.com"],
        "ports": [{"port": 80, "targetPort": 8080}],
    })
}

fn config_map(name: &str) -> ConfigMap {
    ConfigMap {
        metadata: kube::api::ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        data: Some([("key".to_string(), "value".to_string())].into()),
        ..Default::default()
    }
}

/// The apiserver's rejection message, or a failure when the object was accepted or failed otherwise.
fn rejection(result: kube::Result<MeshService>) -> Result<String> {
    match result {
        Ok(accepted) => bail!("the apiserver accepted {:?}", accepted.spec),
        Err(kube::Error::Api(status)) if status.is_invalid() => Ok(status.message),
        Err(other) => Err(other).context("expected a 422 Invalid"),
    }
}

#[tokio::test]
async fn our_crd_is_served_and_a_valid_meshservice_round_trips() -> Result<()> {
    let cp = shared().await?;
    let ns = cp.namespace("meshservice-round-trip").await?;
    let api: Api<MeshService> = Api::namespaced(cp.client()?, ns.name());

    let created = api
        .create(
            &PostParams::default(),
            &meshservice("webapp-service", valid_spec())?,
        )
        .await?;
    let read = api.get("webapp-service").await?;

    assert_eq!(read.spec, created.spec);
    assert_eq!(read.spec.hosts, ["webapp.example.com"]);
    assert!(read.uid().is_some(), "the apiserver assigned a uid");
    Ok(())
}

#[tokio::test]
async fn the_apiserver_rejects_invalid_meshservices_with_the_cel_rule_messages() -> Result<()> {
    let cp = shared().await?;
    let ns = cp.namespace("meshservice-cel-rules").await?;
    let api: Api<MeshService> = Api::namespaced(cp.client()?, ns.name());

    // Each case overrides fields of a valid spec and breaks exactly one rule.
    let cases = [
        (
            json!({"hosts": ["a.example.com", "a.example.com"]}),
            messages::UNIQUE_HOSTS,
        ),
        (
            json!({"hosts": ["shop.*.example.com"]}),
            messages::WILDCARD_FORM,
        ),
        (json!({"hosts": ["Shop.Example.com"]}), messages::HOST_FORM),
        (
            json!({"ports": [{"port": 80}, {"port": 80, "targetPort": 81}]}),
            messages::UNIQUE_PORTS,
        ),
        (
            json!({"ports": [{"port": 80, "name": "web"}, {"port": 81, "name": "web"}]}),
            messages::UNIQUE_PORT_NAMES,
        ),
        (
            json!({"ports": [{"port": 80, "targetPort": 70000}]}),
            messages::TARGET_PORT_RANGE,
        ),
        (
            json!({"ports": [{"port": 80, "targetPort": "Not_A_Name"}]}),
            messages::TARGET_PORT_NAME,
        ),
        (
            json!({"exportTo": ["*", "shop"]}),
            messages::EXPORT_TO_STAR_ALONE,
        ),
        (
            json!({"exportTo": ["shop", "shop"]}),
            messages::UNIQUE_EXPORT_TO,
        ),
        (
            json!({
                "gateway": {"name": "public", "namespace": "istio-system", "managed": true},
                "ports": [{"port": 443, "protocol": "HTTPS", "targetPort": 8443}],
            }),
            messages::MANAGED_HTTPS_CREDENTIAL,
        ),
    ];
    for (index, (overrides, expected)) in cases.into_iter().enumerate() {
        let mut spec = valid_spec();
        for (field, value) in overrides.as_object().context("overrides are an object")? {
            spec[field] = value.clone();
        }
        let object = meshservice(&format!("invalid-{index}"), spec)?;

        let server_says = rejection(api.create(&PostParams::default(), &object).await)?;
        assert!(
            server_says.contains(expected),
            "{overrides}: the apiserver said {server_says:?}, expected {expected:?}"
        );

        // kube's client-side CEL must agree with the apiserver on the same object.
        let client_says: Vec<String> = match object.validate_cel() {
            Ok(()) => Vec::new(),
            Err(errors) => errors
                .as_slice()
                .iter()
                .map(|error| error.message.clone())
                .collect(),
        };
        assert!(
            client_says.iter().any(|message| message == expected),
            "{overrides}: client-side CEL said {client_says:?}, the apiserver said {server_says:?}"
        );
    }
    Ok(())
}

#[tokio::test]
async fn service_name_is_immutable_on_update() -> Result<()> {
    let cp = shared().await?;
    let ns = cp.namespace("meshservice-immutable").await?;
    let api: Api<MeshService> = Api::namespaced(cp.client()?, ns.name());
    let mut object = api
        .create(
            &PostParams::default(),
            &meshservice("webapp-service", valid_spec())?,
        )
        .await?;

    object.spec.service_name = "renamed".into();
    let server_says = rejection(
        api.replace("webapp-service", &PostParams::default(), &object)
            .await,
    )?;

    assert!(
        server_says.contains(messages::SERVICE_NAME_IMMUTABLE),
        "the apiserver said {server_says:?}"
    );
    Ok(())
}

#[tokio::test]
async fn an_istio_virtualservice_created_as_v1_reads_back_as_v1beta1() -> Result<()> {
    let cp = shared().await?;
    let ns = cp.namespace("istio-versions").await?;
    let resource = |version: &str| {
        ApiResource::from_gvk(&GroupVersionKind::gvk(
            "networking.istio.io",
            version,
            "VirtualService",
        ))
    };
    let v1: Api<DynamicObject> = Api::namespaced_with(cp.client()?, ns.name(), &resource("v1"));
    let v1beta1: Api<DynamicObject> =
        Api::namespaced_with(cp.client()?, ns.name(), &resource("v1beta1"));
    let virtual_service: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": {"name": "webapp"},
        "spec": {
            "hosts": ["webapp.example.com"],
            "http": [{"route": [{"destination": {"host": "webapp", "port": {"number": 80}}}]}],
        },
    }))?;

    v1.create(&PostParams::default(), &virtual_service).await?;
    let read = v1beta1.get("webapp").await?;

    assert_eq!(
        read.types.as_ref().map(|t| t.api_version.as_str()),
        Some("networking.istio.io/v1beta1")
    );
    assert_eq!(read.data["spec"]["hosts"], json!(["webapp.example.com"]));
    assert_eq!(
        read.data["spec"]["http"][0]["route"][0]["destination"]["host"],
        json!("webapp")
    );
    Ok(())
}

#[tokio::test]
async fn a_service_gets_a_cluster_ip_from_the_service_range() -> Result<()> {
    let cp = shared().await?;
    let ns = cp.namespace("service-cluster-ip").await?;
    let api: Api<Service> = Api::namespaced(cp.client()?, ns.name());
    let service: Service = serde_json::from_value(json!({
        "metadata": {"name": "webapp"},
        "spec": {"selector": {"app": "webapp"}, "ports": [{"name": "http-80", "port": 80, "targetPort": 8080}]},
    }))?;

    let created = api.create(&PostParams::default(), &service).await?;

    let cluster_ip = created
        .spec
        .and_then(|spec| spec.cluster_ip)
        .context("no clusterIP assigned")?;
    let prefix = SERVICE_CLUSTER_IP_RANGE.trim_end_matches("0/24");
    assert!(
        cluster_ip.starts_with(prefix),
        "{cluster_ip} is in {SERVICE_CLUSTER_IP_RANGE}"
    );
    Ok(())
}

#[tokio::test]
async fn deleting_an_owner_garbage_collects_its_owner_referenced_child() -> Result<()> {
    let cp = shared().await?;
    let ns = cp.namespace("garbage-collection").await?;
    let client = cp.client()?;
    let owners: Api<MeshService> = Api::namespaced(client.clone(), ns.name());
    let children: Api<ConfigMap> = Api::namespaced(client, ns.name());
    let owner = owners
        .create(&PostParams::default(), &meshservice("owner", valid_spec())?)
        .await?;
    let mut child = config_map("child");
    child.metadata.owner_references = Some(vec![OwnerReference {
        api_version: MeshService::api_version(&()).into(),
        kind: MeshService::kind(&()).into(),
        name: owner.name_any(),
        uid: owner.uid().context("the owner has a uid")?,
        controller: Some(true),
        block_owner_deletion: Some(true),
    }]);
    children.create(&PostParams::default(), &child).await?;

    owners.delete("owner", &DeleteParams::background()).await?;

    eventually(
        Duration::from_secs(60),
        "the child is garbage collected",
        || async { Ok(children.get_opt("child").await?.is_none()) },
    )
    .await
}

#[tokio::test]
async fn deleting_a_namespace_removes_it_and_its_content() -> Result<()> {
    let cp = shared().await?;
    let ns = cp.namespace("namespace-deletion").await?;
    let namespaces: Api<Namespace> = Api::all(cp.client()?);
    Api::<ConfigMap>::namespaced(cp.client()?, ns.name())
        .create(&PostParams::default(), &config_map("content"))
        .await?;

    namespaces
        .delete(ns.name(), &DeleteParams::default())
        .await?;

    eventually(
        Duration::from_secs(60),
        "the namespace controller finalizes the namespace",
        || async { Ok(namespaces.get_opt(ns.name()).await?.is_none()) },
    )
    .await
}

#[tokio::test]
async fn a_service_account_gets_403_without_a_permission_and_succeeds_with_it() -> Result<()> {
    let cp = shared().await?;
    let ns = cp.namespace("rbac-service-account").await?;
    let as_account: Api<ConfigMap> = Api::namespaced(
        cp.service_account_client(ns.name(), "reader").await?,
        ns.name(),
    );

    let denied = as_account.list(&Default::default()).await;
    match denied {
        Err(kube::Error::Api(status)) => {
            assert_eq!(status.code, 403, "{status:?}");
            assert!(
                status
                    .message
                    .contains(&format!("system:serviceaccount:{}:reader", ns.name())),
                "{}",
                status.message
            );
        }
        other => bail!("expected 403 Forbidden, got {other:?}"),
    }

    grant_configmap_read(
        cp,
        ns.name(),
        Subject {
            kind: "ServiceAccount".into(),
            name: "reader".into(),
            namespace: Some(ns.name().into()),
            ..Default::default()
        },
    )
    .await?;
    eventually(
        Duration::from_secs(10),
        "the RoleBinding takes effect",
        || async { Ok(as_account.list(&Default::default()).await.is_ok()) },
    )
    .await
}

#[tokio::test]
async fn an_impersonated_user_is_authorized_as_that_user() -> Result<()> {
    let cp = shared().await?;
    let ns = cp.namespace("rbac-impersonation").await?;
    let as_alice: Api<ConfigMap> =
        Api::namespaced(cp.impersonated_client("alice", &["developers"])?, ns.name());

    match as_alice.list(&Default::default()).await {
        Err(kube::Error::Api(status)) => assert_eq!(status.code, 403, "{status:?}"),
        other => bail!("expected 403 Forbidden for alice, got {other:?}"),
    }

    grant_configmap_read(
        cp,
        ns.name(),
        Subject {
            kind: "Group".into(),
            name: "developers".into(),
            api_group: Some("rbac.authorization.k8s.io".into()),
            ..Default::default()
        },
    )
    .await?;
    eventually(
        Duration::from_secs(10),
        "the group's RoleBinding applies to alice",
        || async { Ok(as_alice.list(&Default::default()).await.is_ok()) },
    )
    .await
}

async fn grant_configmap_read(
    cp: &test_controlplane::ControlPlane,
    namespace: &str,
    subject: Subject,
) -> Result<()> {
    let client = cp.client()?;
    let params = PatchParams::apply("api-semantics-test");
    let role = Role {
        metadata: kube::api::ObjectMeta {
            name: Some("configmap-reader".into()),
            ..Default::default()
        },
        rules: Some(vec![PolicyRule {
            api_groups: Some(vec![String::new()]),
            resources: Some(vec!["configmaps".into()]),
            verbs: vec!["get".into(), "list".into()],
            ..Default::default()
        }]),
    };
    let binding = RoleBinding {
        metadata: kube::api::ObjectMeta {
            name: Some("configmap-reader".into()),
            ..Default::default()
        },
        role_ref: RoleRef {
            api_group: "rbac.authorization.k8s.io".into(),
            kind: "Role".into(),
            name: "configmap-reader".into(),
        },
        subjects: Some(vec![subject]),
    };
    Api::<Role>::namespaced(client.clone(), namespace)
        .patch("configmap-reader", &params, &Patch::Apply(&role))
        .await?;
    Api::<RoleBinding>::namespaced(client, namespace)
        .patch("configmap-reader", &params, &Patch::Apply(&binding))
        .await?;
    Ok(())
}

#[tokio::test]
async fn istio_system_exists_as_after_an_istio_install_and_takes_a_gateway() -> Result<()> {
    let cp = shared().await?;
    let gateways: Api<DynamicObject> = Api::namespaced_with(
        cp.client()?,
        test_controlplane::ISTIO_SYSTEM,
        &ApiResource::from_gvk(&GroupVersionKind::gvk(
            "networking.istio.io",
            "v1",
            "Gateway",
        )),
    );
    let gateway: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "networking.istio.io/v1",
        "kind": "Gateway",
        "metadata": {"name": "public-gateway-proof"},
        "spec": {
            "selector": {"istio": "ingressgateway"},
            "servers": [{"port": {"number": 80, "name": "http", "protocol": "HTTP"}, "hosts": ["*.example.com"]}],
        },
    }))?;

    gateways.create(&PostParams::default(), &gateway).await?;

    let read = gateways.get("public-gateway-proof").await?;
    assert_eq!(
        read.data["spec"]["servers"][0]["hosts"],
        json!(["*.example.com"])
    );
    Ok(())
}
