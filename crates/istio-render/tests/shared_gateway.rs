//! The managed shared Gateway aggregated from every MeshService that references it.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::{meshservice, nothing_excluded, served_hosts};
use istio_render::{
    Contribution, DropReason, DroppedClaim, Gateway, GatewayKey, GatewayOptions, GatewayPlan,
    GatewayRendering, Protocol, RenderError, ServerTlsMode, render_gateway,
};
use meshservice_api::{MeshService, ownership};
use serde_json::{Value, json};

fn shared_gateway() -> GatewayKey {
    GatewayKey {
        namespace: "istio-ingress".into(),
        name: "shared".into(),
    }
}

fn managed(extra: Value) -> Value {
    let mut gateway = json!({"name": "shared", "namespace": "istio-ingress", "managed": true});
    if let (Some(target), Value::Object(fields)) = (gateway.as_object_mut(), extra) {
        target.extend(fields);
    }
    gateway
}

/// A contributor created at `created` (RFC 3339), or with no creationTimestamp when `None`.
fn contributor(namespace: &str, name: &str, created: Option<&str>, spec: Value) -> MeshService {
    let mut ms = meshservice(namespace, name, spec);
    ms.metadata.creation_timestamp = created
        .map(|time| serde_json::from_value(json!(time)).expect("fixture timestamp is RFC 3339"));
    ms
}

fn render(contributors: &[&MeshService]) -> GatewayRendering {
    let nothing = nothing_excluded();
    let contributions: Vec<_> = contributors
        .iter()
        .map(|ms| Contribution {
            meshservice: ms,
            excluded_hosts: &nothing,
        })
        .collect();
    render_gateway(
        &shared_gateway(),
        &contributions,
        &GatewayOptions::default(),
    )
    .expect("renders")
}

fn applied(rendering: GatewayRendering) -> Gateway {
    match rendering.plan {
        GatewayPlan::Apply(gateway) => *gateway,
        GatewayPlan::Delete(key) => panic!("expected a Gateway to apply, got delete of {key}"),
    }
}

fn shop() -> MeshService {
    contributor(
        "team-a",
        "shop",
        Some("2026-01-01T00:00:00Z"),
        json!({"serviceName": "shop", "hosts": ["shop.example.com", "www.shop.example.com"],
               "gateway": managed(json!({"tls": {"credentialName": "shop-cert"}})),
               "ports": [{"port": 80}, {"port": 443, "protocol": "HTTPS"}]}),
    )
}

fn blog() -> MeshService {
    contributor(
        "team-b",
        "blog",
        Some("2026-02-01T00:00:00Z"),
        json!({"serviceName": "blog", "hosts": ["blog.example.com"], "gateway": managed(json!({})),
               "ports": [{"port": 80}]}),
    )
}

#[test]
fn a_single_contributor_yields_one_server_per_port_with_namespaced_hosts_and_the_default_selector()
{
    let gateway = applied(render(&[&blog()]));
    assert_eq!(
        istio_render::to_value(&gateway).expect("serialises"),
        json!({
            "apiVersion": "networking.istio.io/v1",
            "kind": "Gateway",
            "metadata": {
                "name": "shared",
                "namespace": "istio-ingress",
                "labels": {"app.kubernetes.io/managed-by": "istio-integrity-operator"},
                "annotations": {"mesh.istio.operator/contributors": "team-b/blog"},
            },
            "spec": {
                "selector": {"istio": "ingressgateway"},
                "servers": [{"port": {"number": 80, "protocol": "HTTP", "name": "http-80"}, "hosts": ["team-b/blog.example.com"]}],
            },
        })
    );
}

#[test]
fn the_gateway_has_no_owner_reference_because_its_contributors_live_in_other_namespaces() {
    let gateway = applied(render(&[&shop(), &blog()]));
    assert_eq!(gateway.metadata.owner_references, None);
    assert_eq!(
        gateway
            .metadata
            .annotations
            .as_ref()
            .and_then(|annotations| annotations.get(ownership::CONTRIBUTORS_ANNOTATION)),
        Some(&"team-a/shop,team-b/blog".to_string())
    );
}

#[test]
fn contributors_on_one_port_share_a_server_with_the_sorted_union_of_their_namespaced_hosts() {
    let gateway = applied(render(&[&blog(), &shop()]));
    let http = gateway
        .spec
        .servers
        .iter()
        .find(|server| server.port.number == 80)
        .expect("port 80 is served");
    assert_eq!(
        http.hosts,
        vec![
            "team-a/shop.example.com",
            "team-a/www.shop.example.com",
            "team-b/blog.example.com"
        ]
    );
    assert_eq!(
        gateway
            .spec
            .servers
            .iter()
            .filter(|server| server.port.number == 80)
            .count(),
        1
    );
}

#[test]
fn https_servers_terminate_tls_with_the_contributor_credential_and_tls_servers_pass_it_through() {
    let passthrough = contributor(
        "team-c",
        "bank",
        None,
        json!({"serviceName": "bank", "hosts": ["bank.example.com"], "gateway": managed(json!({})),
               "ports": [{"port": 8443, "protocol": "TLS"}]}),
    );
    let gateway = applied(render(&[&shop(), &passthrough]));
    let https = gateway
        .spec
        .servers
        .iter()
        .find(|server| server.port.number == 443)
        .expect("443 served");
    let https_tls = https.tls.as_ref().expect("HTTPS has tls");
    assert_eq!(
        (https_tls.mode, https_tls.credential_name.as_deref()),
        (ServerTlsMode::Simple, Some("shop-cert"))
    );
    assert_eq!(https.port.name, "https-443-shop-cert");

    let tls = gateway
        .spec
        .servers
        .iter()
        .find(|server| server.port.number == 8443)
        .expect("8443 served");
    let tls_settings = tls.tls.as_ref().expect("TLS has tls");
    assert_eq!(
        (tls_settings.mode, tls_settings.credential_name.as_deref()),
        (ServerTlsMode::Passthrough, None)
    );

    let plain = gateway
        .spec
        .servers
        .iter()
        .find(|server| server.port.number == 80)
        .expect("80 served");
    assert_eq!(plain.tls, None);
}

#[test]
fn two_credentials_on_one_https_port_get_two_servers_with_distinct_port_names() {
    let other_shop = contributor(
        "team-b",
        "tickets",
        None,
        json!({"serviceName": "tickets", "hosts": ["tickets.example.com"],
               "gateway": managed(json!({"tls": {"credentialName": "tickets-cert"}})),
               "ports": [{"port": 443, "protocol": "HTTPS"}]}),
    );
    let gateway = applied(render(&[&shop(), &other_shop]));
    let https: Vec<_> = gateway
        .spec
        .servers
        .iter()
        .filter(|server| server.port.number == 443)
        .map(|server| (server.port.name.as_str(), server.hosts.clone()))
        .collect();
    assert_eq!(
        https,
        vec![
            (
                "https-443-shop-cert",
                vec![
                    "team-a/shop.example.com".to_string(),
                    "team-a/www.shop.example.com".to_string()
                ]
            ),
            (
                "https-443-tickets-cert",
                vec!["team-b/tickets.example.com".to_string()]
            ),
        ]
    );
    let port_names: BTreeSet<_> = gateway
        .spec
        .servers
        .iter()
        .map(|server| server.port.name.clone())
        .collect();
    assert_eq!(
        port_names.len(),
        gateway.spec.servers.len(),
        "Istio requires unique server port names"
    );
}

#[test]
fn an_https_port_without_a_credential_is_dropped_and_reported_rather_than_invalidating_the_gateway()
{
    let no_credential = contributor(
        "team-b",
        "blog",
        None,
        json!({"serviceName": "blog", "hosts": ["blog.example.com"], "gateway": managed(json!({})),
               "ports": [{"port": 80}, {"port": 443, "protocol": "HTTPS"}]}),
    );
    let rendering = render(&[&no_credential]);
    assert_eq!(
        rendering.dropped_claims,
        vec![DroppedClaim {
            contributor: "team-b/blog".into(),
            port: 443,
            protocol: Protocol::Https,
            reason: DropReason::MissingCredential,
        }]
    );
    assert_eq!(
        rendering.dropped_claims[0].to_string(),
        "port 443 (HTTPS) of MeshService team-b/blog is not served: \
         an HTTPS server needs spec.gateway.tls.credentialName"
    );
    let gateway = applied(rendering);
    assert_eq!(
        gateway
            .spec
            .servers
            .iter()
            .map(|server| server.port.number)
            .collect::<Vec<_>>(),
        vec![80]
    );
}

#[test]
fn on_a_protocol_conflict_the_oldest_contributor_keeps_the_port_whatever_the_input_order() {
    let older_tcp = contributor(
        "team-a",
        "db",
        Some("2025-06-01T00:00:00Z"),
        json!({"serviceName": "db", "hosts": ["db.example.com"], "gateway": managed(json!({})),
               "ports": [{"port": 80, "protocol": "TCP"}]}),
    );
    for order in [[&older_tcp, &blog()], [&blog(), &older_tcp]] {
        let rendering = render(&order);
        assert_eq!(
            rendering.dropped_claims,
            vec![DroppedClaim {
                contributor: "team-b/blog".into(),
                port: 80,
                protocol: Protocol::Http,
                reason: DropReason::ProtocolConflict {
                    winner: "team-a/db".into(),
                    winning_protocol: Protocol::Tcp
                },
            }]
        );
        assert_eq!(
            rendering.dropped_claims[0].to_string(),
            "port 80 (HTTP) of MeshService team-b/blog is not served: \
             the port is already served as TCP for the older MeshService team-a/db"
        );
        let gateway = applied(rendering);
        assert_eq!(gateway.spec.servers.len(), 1);
        assert_eq!(gateway.spec.servers[0].port.protocol, Protocol::Tcp);
        assert_eq!(gateway.spec.servers[0].hosts, vec!["team-a/db.example.com"]);
    }
}

#[test]
fn contributors_without_a_creation_timestamp_rank_after_dated_ones_then_by_namespace_and_name() {
    let undated_tcp = contributor(
        "team-0",
        "early-name",
        None,
        json!({"serviceName": "db", "hosts": ["db.example.com"], "gateway": managed(json!({})),
               "ports": [{"port": 80, "protocol": "TCP"}]}),
    );
    let gateway = applied(render(&[&undated_tcp, &blog()]));
    assert_eq!(
        gateway.spec.servers[0].port.protocol,
        Protocol::Http,
        "the dated blog outranks the undated db"
    );
}

#[test]
fn excluded_hosts_of_a_contributor_are_not_served() {
    let shop = shop();
    let lost = BTreeSet::from(["www.shop.example.com".to_string()]);
    let rendering = render_gateway(
        &shared_gateway(),
        &[Contribution {
            meshservice: &shop,
            excluded_hosts: &lost,
        }],
        &GatewayOptions::default(),
    )
    .expect("renders");
    let hosts: BTreeSet<_> = served_hosts(&applied(rendering))
        .into_iter()
        .map(|(_, _, _, host)| host)
        .collect();
    assert_eq!(
        hosts,
        BTreeSet::from(["team-a/shop.example.com".to_string()])
    );
}

#[test]
fn with_no_host_left_the_plan_is_to_delete_the_gateway() {
    assert_eq!(render(&[]).plan, GatewayPlan::Delete(shared_gateway()));

    let blog = blog();
    let everything = BTreeSet::from(["blog.example.com".to_string()]);
    let rendering = render_gateway(
        &shared_gateway(),
        &[Contribution {
            meshservice: &blog,
            excluded_hosts: &everything,
        }],
        &GatewayOptions::default(),
    )
    .expect("renders");
    assert_eq!(rendering.plan, GatewayPlan::Delete(shared_gateway()));
}

#[test]
fn a_contributor_being_deleted_no_longer_contributes() {
    let mut leaving = blog();
    leaving.metadata.deletion_timestamp =
        Some(serde_json::from_value(json!("2026-03-01T00:00:00Z")).expect("time"));
    let gateway = applied(render(&[&shop(), &leaving]));
    assert!(
        served_hosts(&gateway)
            .iter()
            .all(|(_, _, _, host)| host.starts_with("team-a/"))
    );
    assert_eq!(
        render(&[&leaving]).plan,
        GatewayPlan::Delete(shared_gateway())
    );
}

#[test]
fn the_selector_can_be_configured() {
    let options = GatewayOptions {
        selector: BTreeMap::from([("app".to_string(), "edge-proxy".to_string())]),
    };
    let blog = blog();
    let rendering = render_gateway(
        &shared_gateway(),
        &[Contribution {
            meshservice: &blog,
            excluded_hosts: &nothing_excluded(),
        }],
        &options,
    )
    .expect("renders");
    assert_eq!(applied(rendering).spec.selector, options.selector);
}

#[test]
fn a_meshservice_that_does_not_reference_the_gateway_as_managed_is_refused() {
    let unmanaged = contributor(
        "team-b",
        "blog",
        None,
        json!({"serviceName": "blog", "hosts": ["blog.example.com"],
               "gateway": {"name": "shared", "namespace": "istio-ingress"}, "ports": [{"port": 80}]}),
    );
    let elsewhere = contributor(
        "team-b",
        "wiki",
        None,
        json!({"serviceName": "wiki", "hosts": ["wiki.example.com"],
               "gateway": {"name": "shared", "managed": true}, "ports": [{"port": 80}]}),
    );
    let nothing = nothing_excluded();
    for stranger in [&unmanaged, &elsewhere] {
        let result = render_gateway(
            &shared_gateway(),
            &[Contribution {
                meshservice: stranger,
                excluded_hosts: &nothing,
            }],
            &GatewayOptions::default(),
        );
        assert!(
            matches!(result, Err(RenderError::NotAContributor { gateway, .. }) if gateway == shared_gateway())
        );
    }
}

#[test]
fn the_same_contributor_given_twice_is_refused() {
    let blog = blog();
    let nothing = nothing_excluded();
    let twice = [Contribution {
        meshservice: &blog,
        excluded_hosts: &nothing,
    }; 2];
    let result = render_gateway(&shared_gateway(), &twice, &GatewayOptions::default());
    assert!(
        matches!(result, Err(RenderError::DuplicateContributor { contributor, .. }) if contributor == "team-b/blog")
    );
}

#[test]
fn the_managed_gateway_key_of_a_meshservice_defaults_its_namespace() {
    let elsewhere = meshservice(
        "team-b",
        "wiki",
        json!({"serviceName": "wiki", "hosts": ["wiki.example.com"], "gateway": {"name": "edge", "managed": true},
               "ports": [{"port": 80}]}),
    );
    let key = GatewayKey::managed_by(&elsewhere)
        .expect("namespaced")
        .expect("managed");
    assert_eq!(key.to_string(), "team-b/edge");
    assert_eq!(
        GatewayKey::managed_by(&common::seed_example()).expect("namespaced"),
        None
    );
    assert_eq!(
        GatewayKey::referenced_by(&common::seed_example())
            .expect("namespaced")
            .map(|key| key.to_string()),
        Some("istio-system/public-gateway".to_string())
    );
}

#[test]
fn a_host_claimed_under_two_credentials_on_one_port_stays_with_the_older_claim() {
    let older = contributor(
        "team-a",
        "shop",
        Some("2026-01-01T00:00:00Z"),
        json!({"serviceName": "shop", "hosts": ["shop.example.com"],
               "gateway": managed(json!({"tls": {"credentialName": "old-cert"}})),
               "ports": [{"port": 443, "protocol": "HTTPS"}]}),
    );
    let newer = contributor(
        "team-a",
        "shop-v2",
        Some("2026-03-01T00:00:00Z"),
        json!({"serviceName": "shop-v2", "hosts": ["shop.example.com", "v2.shop.example.com"],
               "gateway": managed(json!({"tls": {"credentialName": "new-cert"}})),
               "ports": [{"port": 443, "protocol": "HTTPS"}]}),
    );
    let gateway = applied(render(&[&newer, &older]));
    assert_eq!(
        served_hosts(&gateway),
        BTreeSet::from([
            (
                443,
                Protocol::Https,
                Some("new-cert".to_string()),
                "team-a/v2.shop.example.com".to_string()
            ),
            (
                443,
                Protocol::Https,
                Some("old-cert".to_string()),
                "team-a/shop.example.com".to_string()
            ),
        ])
    );
}

#[test]
fn a_meshservice_repeating_a_claim_of_its_namespace_shares_the_server_and_is_a_contributor() {
    let first = blog();
    let second = contributor(
        "team-b",
        "blog-canary",
        None,
        json!({"serviceName": "blog-canary", "hosts": ["blog.example.com"], "gateway": managed(json!({})),
               "ports": [{"port": 80}]}),
    );
    let gateway = applied(render(&[&first, &second]));
    assert_eq!(gateway.spec.servers.len(), 1);
    assert_eq!(
        gateway.spec.servers[0].hosts,
        vec!["team-b/blog.example.com"]
    );
    assert_eq!(
        gateway
            .metadata
            .annotations
            .as_ref()
            .and_then(|annotations| annotations.get(ownership::CONTRIBUTORS_ANNOTATION)),
        Some(&"team-b/blog,team-b/blog-canary".to_string())
    );
}
