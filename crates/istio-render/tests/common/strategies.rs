//! Generators of valid MeshServices, shared by the property tests.

use std::collections::BTreeSet;

use meshservice_api::{MeshService, Protocol};
use proptest::prelude::*;
use proptest::sample::{select, subsequence};
use serde_json::{Value, json};

use super::meshservice;

/// Hosts a spec may claim, wildcards included.
pub const HOST_POOL: [&str; 7] = [
    "a.example.com",
    "b.example.com",
    "shop.example.com",
    "*.example.com",
    "*.shop.example.com",
    "api.internal",
    "x.y.z.example.org",
];

/// Ports a spec may use, each always with the same protocol so that contributors never conflict.
pub const PORT_TABLE: [(i32, Protocol); 7] = [
    (80, Protocol::Http),
    (8080, Protocol::Http2),
    (9090, Protocol::Grpc),
    (443, Protocol::Https),
    (8443, Protocol::Tls),
    (5432, Protocol::Tcp),
    (15021, Protocol::Http),
];

pub const NAMESPACES: [&str; 3] = ["default", "team-a", "team-b"];

pub fn port_json() -> impl Strategy<Value = Value> {
    let target_port = prop_oneof![
        Just(None),
        (1..=65535i32).prop_map(|n| Some(json!(n))),
        Just(Some(json!("app-port")))
    ];
    (
        select(PORT_TABLE.to_vec()),
        any::<bool>(),
        any::<bool>(),
        target_port,
    )
        .prop_map(
            |((port, protocol), explicit_protocol, named, target_port)| {
                let mut spec = json!({"port": port});
                if explicit_protocol || protocol != Protocol::Http {
                    spec["protocol"] = json!(protocol.as_str());
                }
                if named {
                    // Unique per port number, and never equal to a default `<protocol>-<port>` name.
                    spec["name"] = json!(format!("p{port}"));
                }
                if let Some(target_port) = target_port {
                    spec["targetPort"] = target_port;
                }
                spec
            },
        )
}

pub fn ports_json() -> impl Strategy<Value = Vec<Value>> {
    subsequence(PORT_TABLE.to_vec(), 1..=4).prop_flat_map(|chosen| {
        let count = chosen.len();
        proptest::collection::vec(port_json(), count).prop_map(move |mut ports| {
            for (port, (number, protocol)) in ports.iter_mut().zip(&chosen) {
                port["port"] = json!(number);
                if protocol == &Protocol::Http {
                    if port.get("protocol").is_some() {
                        port["protocol"] = json!("HTTP");
                    }
                } else {
                    port["protocol"] = json!(protocol.as_str());
                }
                if port.get("name").is_some() {
                    port["name"] = json!(format!("p{number}"));
                }
            }
            ports
        })
    })
}

pub fn hosts() -> impl Strategy<Value = Vec<String>> {
    subsequence(HOST_POOL.to_vec(), 1..=4)
        .prop_shuffle()
        .prop_map(|hosts| hosts.into_iter().map(String::from).collect())
}

/// Every kind of gateway reference: none, unmanaged (with or without namespace), managed (with or
/// without a credential).
pub fn gateway_json() -> impl Strategy<Value = Option<Value>> {
    prop_oneof![
        servable_gateway_json(),
        Just(Some(
            json!({"name": "shared", "namespace": "istio-ingress", "managed": true})
        ))
    ]
}

/// Gateway references whose every port can be served: a managed gateway always has a credential
/// for its HTTPS servers.
pub fn servable_gateway_json() -> impl Strategy<Value = Option<Value>> {
    prop_oneof![
        Just(None),
        Just(Some(json!({"name": "public", "namespace": "istio-system"}))),
        Just(Some(json!({"name": "local"}))),
        Just(Some(
            json!({"name": "shared", "namespace": "istio-ingress", "managed": true, "tls": {"credentialName": "cert"}})
        )),
    ]
}

pub fn export_to_json() -> impl Strategy<Value = Option<Value>> {
    prop_oneof![
        Just(None),
        Just(Some(json!(["*"]))),
        Just(Some(json!(["."]))),
        Just(Some(json!([".", "istio-system", "istio-ingress"])))
    ]
}

/// A valid MeshService `<namespace>/ms` with a gateway reference drawn from `gateway`.
pub fn meshservice_with(
    gateway: impl Strategy<Value = Option<Value>>,
) -> impl Strategy<Value = MeshService> {
    (
        select(NAMESPACES.to_vec()),
        hosts(),
        ports_json(),
        gateway,
        export_to_json(),
        any::<bool>(),
    )
        .prop_map(
            |(namespace, hosts, ports, gateway, export_to, custom_selector)| {
                let mut spec = json!({"serviceName": "svc", "hosts": hosts, "ports": ports});
                if let Some(gateway) = gateway {
                    spec["gateway"] = gateway;
                }
                if let Some(export_to) = export_to {
                    spec["exportTo"] = export_to;
                }
                if custom_selector {
                    spec["selector"] = json!({"app.kubernetes.io/name": "svc-pods"});
                }
                meshservice(namespace, "ms", spec)
            },
        )
}

/// A valid MeshService and a subset of its hosts that lost a conflict.
pub fn meshservice_and_excluded() -> impl Strategy<Value = (MeshService, BTreeSet<String>)> {
    meshservice_with(gateway_json()).prop_flat_map(|ms| {
        let host_count = ms.spec.hosts.len();
        let hosts = ms.spec.hosts.clone();
        (Just(ms), subsequence(hosts, 0..=host_count))
            .prop_map(|(ms, excluded)| (ms, excluded.into_iter().collect()))
    })
}

/// MeshService `<namespace>/ms-<index>` contributing to the managed Gateway `istio-ingress/shared`.
/// Each port number always has the same protocol, so contributors never conflict on a protocol.
pub fn shared_gateway_contributor(index: usize) -> impl Strategy<Value = MeshService> {
    (
        select(NAMESPACES.to_vec()),
        hosts(),
        subsequence(PORT_TABLE.to_vec(), 1..=3),
        prop_oneof![Just(None), (0u32..3).prop_map(Some)],
    )
        .prop_map(move |(namespace, hosts, ports, created_day)| {
            let ports: Vec<Value> = ports
                .iter()
                .map(|(port, protocol)| json!({"port": port, "protocol": protocol.as_str()}))
                .collect();
            // A team's certificate is one per namespace, so a host of one namespace is never served
            // under two credentials on one port and removal shifts no host between servers.
            let spec = json!({
                "serviceName": format!("svc-{index}"),
                "hosts": hosts,
                "gateway": {"name": "shared", "namespace": "istio-ingress", "managed": true,
                            "tls": {"credentialName": format!("{namespace}-cert")}},
                "ports": ports,
            });
            let mut ms = meshservice(namespace, &format!("ms-{index}"), spec);
            ms.metadata.creation_timestamp = created_day.map(|day| {
                serde_json::from_value(json!(format!("2026-01-0{}T00:00:00Z", day + 1)))
                    .expect("valid time")
            });
            ms
        })
}

/// One to five contributors to the managed Gateway `istio-ingress/shared`.
pub fn shared_gateway_contributors() -> impl Strategy<Value = Vec<MeshService>> {
    (1usize..=5).prop_flat_map(|count| {
        (0..count)
            .map(shared_gateway_contributor)
            .collect::<Vec<_>>()
    })
}
