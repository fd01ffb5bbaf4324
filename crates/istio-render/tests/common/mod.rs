//! Fixtures shared by the renderer's tests.
#![allow(dead_code)] // each test binary uses its own subset

use std::collections::BTreeSet;

use istio_render::Gateway;
use meshservice_api::{MeshService, Protocol};
use serde_json::{Value, json};

/// A MeshService from the JSON a user would write, with namespace, name and uid filled in.
pub fn meshservice(namespace: &str, name: &str, spec: Value) -> MeshService {
    serde_json::from_value(json!({
        "apiVersion": "mesh.istio.operator/v1alpha1",
        "kind": "MeshService",
        "metadata": {"name": name, "namespace": namespace, "uid": uid_of(namespace, name)},
        "spec": spec,
    }))
    .expect("fixture is a valid MeshService")
}

/// A stable uid per MeshService, as the apiserver would have assigned.
pub fn uid_of(namespace: &str, name: &str) -> String {
    format!("uid-{namespace}-{name}")
}

/// The seed example of the MeshService API issue.
pub fn seed_example() -> MeshService {
    meshservice(
        "default",
        "webapp-service",
        json!({
            "serviceName": "webapp",
            "hosts": ["webapp.example.com"],
            "gateway": {"name": "public-gateway", "namespace": "istio-system"},
            "ports": [{"port": 80, "targetPort": 8080}],
        }),
    )
}

/// No excluded hosts.
pub fn nothing_excluded() -> BTreeSet<String> {
    BTreeSet::new()
}

/// Every server of a Gateway flattened to (port, protocol, credentialName, namespaced host).
pub fn served_hosts(gateway: &Gateway) -> BTreeSet<(u32, Protocol, Option<String>, String)> {
    gateway
        .spec
        .servers
        .iter()
        .flat_map(|server| {
            let credential = server
                .tls
                .as_ref()
                .and_then(|tls| tls.credential_name.clone());
            server.hosts.iter().map(move |host| {
                (
                    server.port.number,
                    server.port.protocol,
                    credential.clone(),
                    host.clone(),
                )
            })
        })
        .collect()
}

pub mod strategies;
