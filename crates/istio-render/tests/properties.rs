//! Properties of the renderer over generated valid MeshServices.

mod common;

use std::collections::BTreeSet;

use common::served_hosts;
use common::strategies::{meshservice_and_excluded, shared_gateway_contributor};
use istio_render::{
    Contribution, GatewayKey, GatewayOptions, GatewayPlan, GatewayRendering, Protocol, RenderInput,
    RenderedMeshService, render_gateway, render_meshservice, service_fqdn,
};
use meshservice_api::{MeshService, ownership};
use proptest::prelude::*;
use proptest::sample::subsequence;

fn render(ms: &MeshService, excluded: &BTreeSet<String>) -> RenderedMeshService {
    render_meshservice(&RenderInput {
        meshservice: ms,
        owner_uid: "uid-1",
        excluded_hosts: excluded,
    })
    .expect("a valid MeshService renders")
}

fn bytes(rendered: &RenderedMeshService) -> (Vec<u8>, Vec<u8>) {
    (
        istio_render::to_json_bytes(&rendered.service).expect("serialises"),
        istio_render::to_json_bytes(&rendered.virtual_service).expect("serialises"),
    )
}

/// Every (matched port, destination host, destination port) of a VirtualService, over all route kinds.
fn routes(rendered: &RenderedMeshService) -> Vec<(u32, String, u32)> {
    let Some(virtual_service) = &rendered.virtual_service else {
        return Vec::new();
    };
    let spec = &virtual_service.spec;
    let http = spec.http.iter().map(|route| {
        (
            route.matches.iter().map(|m| m.port).collect::<Vec<_>>(),
            &route.route,
        )
    });
    let tls = spec
        .tls
        .iter()
        .map(|route| (route.matches.iter().map(|m| m.port).collect(), &route.route));
    let tcp = spec
        .tcp
        .iter()
        .map(|route| (route.matches.iter().map(|m| m.port).collect(), &route.route));
    http.chain(tls)
        .chain(tcp)
        .flat_map(|(matched, destinations)| {
            assert_eq!(matched.len(), 1, "each route matches exactly one port");
            destinations.iter().map(move |d| {
                (
                    matched[0],
                    d.destination.host.clone(),
                    d.destination.port.number,
                )
            })
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn the_same_meshservice_renders_to_the_same_bytes_whatever_the_order_of_its_lists(
        (ms, excluded) in meshservice_and_excluded(),
        rotation in 0usize..4,
    ) {
        let first = bytes(&render(&ms, &excluded));
        prop_assert_eq!(&first, &bytes(&render(&ms, &excluded)));

        let mut reordered = ms.clone();
        let host_rotation = rotation % reordered.spec.hosts.len();
        reordered.spec.hosts.rotate_left(host_rotation);
        let port_rotation = rotation % reordered.spec.ports.len();
        reordered.spec.ports.rotate_left(port_rotation);
        prop_assert_eq!(first, bytes(&render(&reordered, &excluded)));
    }

    #[test]
    fn every_accepted_host_is_served_and_no_excluded_host_appears((ms, excluded) in meshservice_and_excluded()) {
        let rendered = render(&ms, &excluded);
        let accepted: BTreeSet<String> = ms.spec.hosts.iter().filter(|h| !excluded.contains(*h)).cloned().collect();
        match &rendered.virtual_service {
            None => prop_assert!(accepted.is_empty(), "a VirtualService is omitted only when no host is left"),
            Some(virtual_service) => {
                let hosts: BTreeSet<String> = virtual_service.spec.hosts.iter().cloned().collect();
                prop_assert_eq!(hosts.len(), virtual_service.spec.hosts.len(), "hosts are unique");
                prop_assert_eq!(&hosts, &accepted);
                for route in &virtual_service.spec.tls {
                    for tls_match in &route.matches {
                        let sni: BTreeSet<String> = tls_match.sni_hosts.iter().cloned().collect();
                        prop_assert_eq!(&sni, &accepted);
                    }
                }
            }
        }
    }

    #[test]
    fn every_spec_port_is_a_service_port_and_has_exactly_one_route((ms, excluded) in meshservice_and_excluded()) {
        let rendered = render(&ms, &excluded);
        let service_ports = rendered.service.spec.as_ref().and_then(|spec| spec.ports.clone()).expect("has ports");
        prop_assert_eq!(service_ports.len(), ms.spec.ports.len());
        let routed = routes(&rendered);
        for port in &ms.spec.ports {
            let service_port = service_ports.iter().find(|p| p.port == port.port);
            prop_assert!(service_port.is_some(), "port {} is missing from the Service", port.port);
            let service_port = service_port.expect("checked above");
            prop_assert_eq!(service_port.target_port.clone(), Some(port.effective_target_port()));
            prop_assert_eq!(service_port.name.clone(), Some(port.effective_name()));
            prop_assert_eq!(service_port.app_protocol.as_deref(), Some(port.effective_protocol().port_name_prefix()));
            if rendered.virtual_service.is_some() {
                let number = u32::try_from(port.port).expect("valid port");
                prop_assert_eq!(routed.iter().filter(|(matched, _, _)| *matched == number).count(), 1);
            }
        }
        if rendered.virtual_service.is_some() {
            prop_assert_eq!(routed.len(), ms.spec.ports.len());
        }
    }

    #[test]
    fn every_route_destination_resolves_to_the_rendered_service((ms, excluded) in meshservice_and_excluded()) {
        let rendered = render(&ms, &excluded);
        let service_meta = &rendered.service.metadata;
        let service_host = format!(
            "{}.{}.svc.cluster.local",
            service_meta.name.as_deref().expect("named"),
            service_meta.namespace.as_deref().expect("namespaced"),
        );
        prop_assert_eq!(&service_host, &service_fqdn(&ms).expect("namespaced"));
        let service_ports: BTreeSet<u32> = rendered
            .service
            .spec
            .iter()
            .flat_map(|spec| spec.ports.iter().flatten())
            .map(|p| u32::try_from(p.port).expect("valid port"))
            .collect();
        for (matched, host, port) in routes(&rendered) {
            prop_assert_eq!(&host, &service_host);
            prop_assert!(service_ports.contains(&port), "route to port {} not on the Service", port);
            prop_assert_eq!(matched, port, "a route forwards to the port it matched");
        }
    }
}

/// One generated contributor to the shared gateway `istio-ingress/shared`.
#[derive(Clone, Debug)]
struct ContributorCase {
    meshservice: MeshService,
    excluded: BTreeSet<String>,
}

fn shared_gateway() -> GatewayKey {
    GatewayKey {
        namespace: "istio-ingress".into(),
        name: "shared".into(),
    }
}

fn contributor_case(index: usize) -> impl Strategy<Value = ContributorCase> {
    shared_gateway_contributor(index).prop_flat_map(|ms| {
        let host_count = ms.spec.hosts.len();
        let hosts = ms.spec.hosts.clone();
        (Just(ms), subsequence(hosts, 0..=host_count)).prop_map(|(meshservice, excluded)| {
            ContributorCase {
                meshservice,
                excluded: excluded.into_iter().collect(),
            }
        })
    })
}

fn contributor_cases() -> impl Strategy<Value = Vec<ContributorCase>> {
    (1usize..=5).prop_flat_map(|count| (0..count).map(contributor_case).collect::<Vec<_>>())
}

fn render_shared(cases: &[&ContributorCase]) -> GatewayRendering {
    let contributions: Vec<_> = cases
        .iter()
        .map(|case| Contribution {
            meshservice: &case.meshservice,
            excluded_hosts: &case.excluded,
        })
        .collect();
    render_gateway(
        &shared_gateway(),
        &contributions,
        &GatewayOptions::default(),
    )
    .expect("renders")
}

type ServedHost = (u32, Protocol, Option<String>, String);

/// What a contributor must add to the gateway, computed independently of the renderer.
fn expected_claims(case: &ContributorCase) -> BTreeSet<ServedHost> {
    let namespace = case
        .meshservice
        .metadata
        .namespace
        .clone()
        .expect("namespaced");
    let credential = case
        .meshservice
        .spec
        .gateway
        .as_ref()
        .and_then(|g| g.tls.as_ref())
        .map(|t| t.credential_name.clone());
    let mut claims = BTreeSet::new();
    for port in &case.meshservice.spec.ports {
        let protocol = port.effective_protocol();
        for host in case
            .meshservice
            .spec
            .hosts
            .iter()
            .filter(|h| !case.excluded.contains(*h))
        {
            claims.insert((
                u32::try_from(port.port).expect("valid port"),
                protocol,
                if protocol == Protocol::Https {
                    credential.clone()
                } else {
                    None
                },
                format!("{namespace}/{host}"),
            ));
        }
    }
    claims
}

fn served(rendering: &GatewayRendering) -> BTreeSet<ServedHost> {
    match &rendering.plan {
        GatewayPlan::Apply(gateway) => served_hosts(gateway),
        GatewayPlan::Delete(_) => BTreeSet::new(),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn aggregation_does_not_depend_on_the_order_of_contributors(
        (cases, order) in contributor_cases().prop_flat_map(|cases| {
            let indices: Vec<usize> = (0..cases.len()).collect();
            (Just(cases), Just(indices).prop_shuffle())
        }),
    ) {
        let in_order: Vec<&ContributorCase> = cases.iter().collect();
        let shuffled: Vec<&ContributorCase> = order.iter().map(|&i| &cases[i]).collect();
        let one = render_shared(&in_order);
        let other = render_shared(&shuffled);
        prop_assert_eq!(&one, &other);
        if let (GatewayPlan::Apply(one), GatewayPlan::Apply(other)) = (&one.plan, &other.plan) {
            prop_assert_eq!(
                istio_render::to_json_bytes(one).expect("serialises"),
                istio_render::to_json_bytes(other).expect("serialises")
            );
        }
    }

    #[test]
    fn the_gateway_serves_exactly_the_accepted_claims_of_its_contributors(cases in contributor_cases()) {
        let rendering = render_shared(&cases.iter().collect::<Vec<_>>());
        prop_assert!(rendering.dropped_claims.is_empty(), "consistent protocols with credentials drop nothing");
        let expected: BTreeSet<ServedHost> = cases.iter().flat_map(expected_claims).collect();
        prop_assert_eq!(served(&rendering), expected.clone());
        match &rendering.plan {
            GatewayPlan::Delete(key) => {
                prop_assert!(expected.is_empty());
                prop_assert_eq!(key, &shared_gateway());
            }
            GatewayPlan::Apply(gateway) => {
                let contributors: Vec<String> = cases
                    .iter()
                    .filter(|case| !expected_claims(case).is_empty())
                    .map(|case| ownership::owner_key(
                        case.meshservice.metadata.namespace.as_deref().expect("namespaced"),
                        case.meshservice.metadata.name.as_deref().expect("named"),
                    ))
                    .collect::<BTreeSet<_>>()
                    .into_iter()
                    .collect();
                let annotation = gateway.metadata.annotations.as_ref().and_then(|a| a.get(ownership::CONTRIBUTORS_ANNOTATION));
                prop_assert_eq!(annotation, Some(&contributors.join(",")));
                let ports: Vec<u32> = gateway.spec.servers.iter().map(|s| s.port.number).collect();
                let mut sorted_ports = ports.clone();
                sorted_ports.sort();
                prop_assert_eq!(ports, sorted_ports, "servers are sorted by port");
                let names: BTreeSet<&str> = gateway.spec.servers.iter().map(|s| s.port.name.as_str()).collect();
                prop_assert_eq!(names.len(), gateway.spec.servers.len(), "server port names are unique");
            }
        }
    }

    #[test]
    fn removing_one_contributor_removes_exactly_the_hosts_only_it_claimed(
        (cases, removed) in contributor_cases().prop_flat_map(|cases| {
            let count = cases.len();
            (Just(cases), 0..count)
        }),
    ) {
        let everyone: Vec<&ContributorCase> = cases.iter().collect();
        let remaining: Vec<&ContributorCase> =
            cases.iter().enumerate().filter(|(i, _)| *i != removed).map(|(_, case)| case).collect();
        let before = served(&render_shared(&everyone));
        let after = served(&render_shared(&remaining));
        let still_claimed: BTreeSet<ServedHost> = remaining.iter().copied().flat_map(expected_claims).collect();
        let only_removed: BTreeSet<ServedHost> =
            expected_claims(&cases[removed]).difference(&still_claimed).cloned().collect();
        let disappeared: BTreeSet<ServedHost> = before.difference(&after).cloned().collect();
        prop_assert!(after.is_subset(&before), "removing a contributor adds nothing");
        prop_assert_eq!(disappeared, only_removed);
    }
}
