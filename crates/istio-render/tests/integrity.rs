//! What the renderer writes, fed to the integrity engine together with the MeshService that implies
//! it (and, for an unmanaged gateway, a Gateway the platform team would have written): a valid
//! spec yields no finding at all, so every route destination resolves to the rendered Service,
//! every gateway reference resolves, every host is served, and the ownership marks agree.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::strategies::{
    NAMESPACES, PORT_TABLE, meshservice_with, servable_gateway_json, shared_gateway_contributors,
};
use common::{meshservice, nothing_excluded, seed_example, uid_of};
use istio_render::{
    Contribution, GatewayKey, GatewayOptions, GatewayPlan, RenderInput, render_gateway,
    render_meshservice,
};
use mesh_integrity::{Engine, Finding, Report, SourceObject};
use meshservice_api::{MeshService, Protocol, ownership};
use proptest::prelude::*;
use serde_json::{Value, json};

/// A Gateway as a platform team writes it by hand: every port of the MeshService, its hosts
/// visible to every namespace, the default ingress workload.
fn platform_gateway(gateway: &GatewayKey, meshservice: &MeshService) -> Value {
    let servers: Vec<Value> = meshservice
        .spec
        .ports
        .iter()
        .map(|port| {
            let protocol = port.effective_protocol();
            let mut server = json!({
                "port": {"number": port.port, "protocol": protocol.as_str(),
                         "name": format!("{}-{}", protocol.port_name_prefix(), port.port)},
                "hosts": meshservice.spec.hosts,
            });
            match protocol {
                Protocol::Https => {
                    server["tls"] = json!({"mode": "SIMPLE", "credentialName": "platform-cert"})
                }
                Protocol::Tls => server["tls"] = json!({"mode": "PASSTHROUGH"}),
                Protocol::Http | Protocol::Http2 | Protocol::Grpc | Protocol::Tcp => {}
            }
            server
        })
        .collect();
    json!({
        "apiVersion": "networking.istio.io/v1",
        "kind": "Gateway",
        "metadata": {"name": gateway.name, "namespace": gateway.namespace},
        "spec": {"selector": {"istio": "ingressgateway"}, "servers": servers},
    })
}

/// What the platform provides: the namespaces, the ingress gateway workload and its Service
/// (listening on every port the generators use), and the TLS Secrets beside it. With Pods, Secrets
/// and Namespaces present, the engine also runs its selector, credential, gateway-port and
/// exportTo-namespace rules.
fn platform() -> Vec<SourceObject> {
    let mut objects: Vec<Value> = ["default", "team-a", "team-b", "istio-system", "istio-ingress"]
        .iter()
        .map(|namespace| json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}}))
        .collect();
    let workload = json!({"istio": "ingressgateway", "app": "istio-ingressgateway"});
    objects.push(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "istio-ingressgateway-7d4f9", "namespace": "istio-system", "labels": workload},
    }));
    let ingress_ports: Vec<Value> = PORT_TABLE
        .iter()
        .map(|(port, protocol)| json!({"name": format!("{}-{port}", protocol.port_name_prefix()), "port": port, "targetPort": port}))
        .collect();
    objects.push(json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "istio-ingressgateway", "namespace": "istio-system"},
        "spec": {"selector": workload, "ports": ingress_ports},
    }));
    let team_credentials = NAMESPACES
        .iter()
        .map(|namespace| format!("{namespace}-cert"));
    let credentials = ["cert", "platform-cert", "shop-cert", "blog-cert"]
        .map(String::from)
        .into_iter()
        .chain(team_credentials);
    for credential in credentials {
        objects.push(json!({
            "apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
            "metadata": {"name": credential, "namespace": "istio-system"},
        }));
    }
    objects.into_iter().map(SourceObject::new).collect()
}

/// Hosts each MeshService (by `<namespace>/<name>`) lost to a conflict.
type LostHosts = BTreeMap<String, BTreeSet<String>>;

/// The platform, the MeshServices, everything the renderer makes of them (without their `lost`
/// hosts), and the unmanaged gateways they need.
fn world(meshservices: &[&MeshService], lost: &LostHosts) -> Vec<SourceObject> {
    let nothing = nothing_excluded();
    let excluded_hosts = |ms: &MeshService| {
        let owner = ownership::owner_key(
            ms.metadata.namespace.as_deref().expect("namespaced"),
            ms.metadata.name.as_deref().expect("named"),
        );
        lost.get(&owner).unwrap_or(&nothing)
    };
    let mut objects = platform();
    let mut managed: BTreeSet<GatewayKey> = BTreeSet::new();
    let mut unmanaged: BTreeSet<GatewayKey> = BTreeSet::new();
    for ms in meshservices {
        objects.push(SourceObject::from_typed(*ms).expect("MeshService serialises"));
        let namespace = ms.metadata.namespace.as_deref().expect("namespaced");
        let name = ms.metadata.name.as_deref().expect("named");
        let uid = uid_of(namespace, name);
        let rendered = render_meshservice(&RenderInput {
            meshservice: ms,
            owner_uid: &uid,
            excluded_hosts: excluded_hosts(ms),
        })
        .expect("renders");
        objects.push(SourceObject::new(
            istio_render::to_value(&rendered.service).expect("serialises"),
        ));
        if let Some(virtual_service) = &rendered.virtual_service {
            objects.push(SourceObject::new(
                istio_render::to_value(virtual_service).expect("serialises"),
            ));
        }
        if let Some(key) = GatewayKey::managed_by(ms).expect("namespaced") {
            managed.insert(key);
        } else if let Some(key) = GatewayKey::referenced_by(ms).expect("namespaced")
            && unmanaged.insert(key.clone())
        {
            objects.push(SourceObject::new(platform_gateway(&key, ms)));
        }
    }
    for key in managed {
        let contributions: Vec<Contribution<'_>> = meshservices
            .iter()
            .filter(|ms| GatewayKey::managed_by(ms).expect("namespaced").as_ref() == Some(&key))
            .map(|ms| Contribution {
                meshservice: ms,
                excluded_hosts: excluded_hosts(ms),
            })
            .collect();
        let rendering =
            render_gateway(&key, &contributions, &GatewayOptions::default()).expect("renders");
        assert_eq!(
            rendering.dropped_claims,
            vec![],
            "every claim of a servable spec is rendered"
        );
        match rendering.plan {
            GatewayPlan::Apply(gateway) => objects.push(SourceObject::new(
                istio_render::to_value(&gateway).expect("serialises"),
            )),
            GatewayPlan::Delete(key) => panic!("contributors with hosts must yield Gateway {key}"),
        }
    }
    objects
}

fn check(objects: Vec<SourceObject>) -> Report {
    let mut engine = Engine::open_in_memory().expect("engine opens");
    engine.ingest_batch(objects).expect("engine ingests");
    let report = engine.check().expect("engine checks");
    assert!(
        report.coverage.skipped_rules.is_empty(),
        "every rule ran: {:?}",
        report.coverage.notes
    );
    report
}

fn describe(findings: &[Finding]) -> String {
    findings
        .iter()
        .map(|finding| {
            format!(
                "{} {} on {}: {}",
                finding.code,
                finding.rule,
                finding.resource.display(),
                finding.message
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn the_seed_example_behind_its_gateway_has_no_findings() {
    let seed = seed_example();
    let report = check(world(&[&seed], &LostHosts::new()));
    assert_eq!(
        report.summary.objects_by_kind.get("VirtualService"),
        Some(&1),
        "the engine saw the VirtualService"
    );
    assert!(report.findings.is_empty(), "{}", describe(&report.findings));
}

#[test]
fn two_teams_on_a_shared_managed_gateway_have_no_findings() {
    let team = |namespace: &str, name: &str, hosts: Value, credential: &str, created: &str| {
        let mut ms = meshservice(
            namespace,
            name,
            json!({"serviceName": name, "hosts": hosts,
                   "gateway": {"name": "public", "namespace": "istio-ingress", "managed": true,
                               "tls": {"credentialName": credential}},
                   "ports": [{"port": 80, "targetPort": 8080}, {"port": 443, "targetPort": 8080, "protocol": "HTTPS"}]}),
        );
        ms.metadata.creation_timestamp =
            Some(serde_json::from_value(json!(created)).expect("time"));
        ms
    };
    let shop = team(
        "team-a",
        "shop",
        json!(["shop.example.com", "www.shop.example.com"]),
        "shop-cert",
        "2026-01-10T09:00:00Z",
    );
    let blog = team(
        "team-b",
        "blog",
        json!(["blog.example.com", "*.blog.example.com"]),
        "blog-cert",
        "2026-02-20T14:30:00Z",
    );
    let report = check(world(&[&shop, &blog], &LostHosts::new()));
    assert_eq!(
        report.summary.objects_by_kind.get("Gateway"),
        Some(&1),
        "the engine saw the shared Gateway"
    );
    assert!(report.findings.is_empty(), "{}", describe(&report.findings));
}

#[test]
fn the_engine_does_see_the_rendered_objects_a_missing_service_is_a_dangling_route() {
    let seed = seed_example();
    let without_service: Vec<SourceObject> = world(&[&seed], &LostHosts::new())
        .into_iter()
        .filter(|object| object.value["kind"] != "Service")
        .collect();
    let report = check(without_service);
    let codes: BTreeSet<&str> = report
        .findings
        .iter()
        .map(|finding| finding.code.as_str())
        .collect();
    assert!(
        codes.contains("IST0101"),
        "expected the route to dangle, got:\n{}",
        describe(&report.findings)
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn a_valid_meshservice_and_its_rendered_objects_have_no_findings(ms in meshservice_with(servable_gateway_json())) {
        let report = check(world(&[&ms], &LostHosts::new()));
        prop_assert!(report.findings.is_empty(), "{}", describe(&report.findings));
    }
}

/// The hosts the engine says each MeshService lost (MSH0201 on the MeshService), as the reconciler
/// reads them to fill [`RenderInput::excluded_hosts`].
fn lost_hosts(report: &Report) -> LostHosts {
    let mut lost = LostHosts::new();
    for finding in &report.findings {
        if finding.code == "MSH0201"
            && finding.resource.kind == "MeshService"
            && let Some(host) = &finding.host
        {
            let owner = ownership::owner_key(&finding.resource.namespace, &finding.resource.name);
            lost.entry(owner).or_default().insert(host.clone());
        }
    }
    lost
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// The reconciler's loop: render, let the engine find the lost claims, render again without
    /// them. Then no rendered object has a finding; only the losing MeshServices keep theirs.
    #[test]
    fn after_excluding_the_hosts_the_engine_says_were_lost_only_the_losing_meshservices_have_findings(
        contributors in shared_gateway_contributors(),
    ) {
        let meshservices: Vec<&MeshService> = contributors.iter().collect();
        let claimed_everything = check(world(&meshservices, &LostHosts::new()));
        let lost = lost_hosts(&claimed_everything);
        let conceded = check(world(&meshservices, &lost));
        for finding in &conceded.findings {
            prop_assert!(
                finding.code == "MSH0201" && finding.resource.kind == "MeshService",
                "unexpected finding after conceding the lost hosts:\n{}",
                describe(&conceded.findings)
            );
        }
        prop_assert_eq!(lost_hosts(&conceded), lost);
    }
}
