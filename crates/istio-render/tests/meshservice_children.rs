//! The Service and VirtualService a single MeshService implies.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::{meshservice, nothing_excluded, seed_example};
use istio_render::{
    RenderError, RenderInput, VirtualService, render_meshservice, render_service,
    render_virtual_service, service_fqdn, service_name, virtual_service_name,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use meshservice_api::{MeshService, ownership};
use serde_json::json;

fn virtual_service_of(meshservice: &MeshService) -> VirtualService {
    render_virtual_service(&RenderInput {
        meshservice,
        owner_uid: "uid-1",
        excluded_hosts: &nothing_excluded(),
    })
    .expect("renders")
    .expect("has hosts")
}

fn five_protocols(gateway: serde_json::Value) -> MeshService {
    meshservice(
        "shop",
        "storefront",
        json!({
            "serviceName": "storefront",
            "hosts": ["shop.example.com"],
            "gateway": gateway,
            "ports": [
                {"port": 5432, "protocol": "TCP"},
                {"port": 9090, "protocol": "GRPC"},
                {"port": 80},
                {"port": 8443, "protocol": "TLS"},
                {"port": 443, "protocol": "HTTPS"},
            ],
        }),
    )
}

#[test]
fn the_service_is_named_by_service_name_in_the_meshservice_namespace() {
    let seed = seed_example();
    let service = render_service(&seed, "uid-1").expect("renders");
    assert_eq!(service.metadata.name.as_deref(), Some("webapp"));
    assert_eq!(service.metadata.namespace.as_deref(), Some("default"));
    assert_eq!(service_name(&seed), "webapp");
}

#[test]
fn each_service_port_maps_port_to_target_port_under_a_protocol_prefixed_name() {
    let ms = meshservice(
        "default",
        "api",
        json!({
            "serviceName": "api",
            "hosts": ["api.example.com"],
            "ports": [{"port": 9090, "protocol": "GRPC"}, {"port": 80, "targetPort": "web"}],
        }),
    );
    let service = render_service(&ms, "uid-1").expect("renders");
    let ports = service.spec.and_then(|spec| spec.ports).expect("has ports");
    let summary: Vec<_> = ports
        .iter()
        .map(|port| {
            (
                port.name.clone(),
                port.port,
                port.target_port.clone(),
                port.protocol.clone(),
                port.app_protocol.clone(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            (
                Some("http-80".into()),
                80,
                Some(IntOrString::String("web".into())),
                Some("TCP".into()),
                Some("http".into())
            ),
            (
                Some("grpc-9090".into()),
                9090,
                Some(IntOrString::Int(9090)),
                Some("TCP".into()),
                Some("grpc".into())
            ),
        ]
    );
}

#[test]
fn a_port_name_given_in_the_spec_is_kept_and_app_protocol_still_names_the_protocol() {
    let ms = meshservice(
        "default",
        "api",
        json!({"serviceName": "api", "hosts": ["api.example.com"], "ports": [{"port": 80, "name": "web"}]}),
    );
    let service = render_service(&ms, "uid-1").expect("renders");
    let port = &service.spec.and_then(|spec| spec.ports).expect("has ports")[0];
    assert_eq!(port.name.as_deref(), Some("web"));
    assert_eq!(port.app_protocol.as_deref(), Some("http"));
}

#[test]
fn the_selector_defaults_to_app_service_name_and_otherwise_is_the_spec_selector() {
    let defaulted = render_service(&seed_example(), "uid-1").expect("renders");
    assert_eq!(
        defaulted.spec.and_then(|spec| spec.selector),
        Some(BTreeMap::from([("app".to_string(), "webapp".to_string())]))
    );

    let ms = meshservice(
        "default",
        "api",
        json!({"serviceName": "api", "hosts": ["api.example.com"], "ports": [{"port": 80}],
               "selector": {"app.kubernetes.io/name": "api-server", "tier": "backend"}}),
    );
    let explicit = render_service(&ms, "uid-1").expect("renders");
    assert_eq!(
        explicit.spec.and_then(|spec| spec.selector),
        Some(BTreeMap::from([
            (
                "app.kubernetes.io/name".to_string(),
                "api-server".to_string()
            ),
            ("tier".to_string(), "backend".to_string()),
        ]))
    );
}

#[test]
fn service_and_virtual_service_carry_ownership_labels_owner_annotation_and_a_controller_owner_reference()
 {
    let seed = seed_example();
    let rendered = render_meshservice(&RenderInput {
        meshservice: &seed,
        owner_uid: "4f1c6d2e",
        excluded_hosts: &nothing_excluded(),
    })
    .expect("renders");
    let virtual_service = rendered.virtual_service.expect("has hosts");
    for metadata in [&rendered.service.metadata, &virtual_service.metadata] {
        let labels = metadata.labels.as_ref().expect("labels");
        assert_eq!(
            labels.get(ownership::MANAGED_BY_LABEL).map(String::as_str),
            Some(ownership::MANAGED_BY_VALUE)
        );
        assert_eq!(
            labels.get(ownership::PART_OF_LABEL).map(String::as_str),
            Some("webapp")
        );
        let annotations = metadata.annotations.as_ref().expect("annotations");
        assert_eq!(
            annotations
                .get(ownership::OWNER_ANNOTATION)
                .map(String::as_str),
            Some("default/webapp-service")
        );
        let owner_references = metadata
            .owner_references
            .as_ref()
            .expect("owner references");
        assert_eq!(owner_references.len(), 1);
        let owner = &owner_references[0];
        assert_eq!(
            (
                owner.api_version.as_str(),
                owner.kind.as_str(),
                owner.name.as_str(),
                owner.uid.as_str()
            ),
            (
                "mesh.istio.operator/v1alpha1",
                "MeshService",
                "webapp-service",
                "4f1c6d2e"
            )
        );
        assert_eq!(
            (owner.controller, owner.block_owner_deletion),
            (Some(true), Some(true))
        );
    }
}

#[test]
fn rendering_without_an_owner_uid_or_a_namespace_is_an_error() {
    let seed = seed_example();
    assert!(matches!(
        render_service(&seed, ""),
        Err(RenderError::EmptyOwnerUid { owner }) if owner == "default/webapp-service"
    ));

    let mut without_namespace = seed_example();
    without_namespace.metadata.namespace = None;
    assert!(matches!(
        render_service(&without_namespace, "uid-1"),
        Err(RenderError::MissingNamespace { name }) if name == "webapp-service"
    ));
}

#[test]
fn an_explicit_port_name_equal_to_another_port_default_name_is_an_error() {
    let ms = meshservice(
        "default",
        "api",
        json!({"serviceName": "api", "hosts": ["api.example.com"],
               "ports": [{"port": 80, "name": "http-8080"}, {"port": 8080}]}),
    );
    assert!(matches!(
        render_service(&ms, "uid-1"),
        Err(RenderError::DuplicatePortName { owner, name }) if owner == "default/api" && name == "http-8080"
    ));
}

#[test]
fn the_virtual_service_is_named_after_the_meshservice_and_serves_its_hosts() {
    let seed = seed_example();
    let virtual_service = virtual_service_of(&seed);
    assert_eq!(virtual_service.api_version, "networking.istio.io/v1");
    assert_eq!(virtual_service.kind, "VirtualService");
    assert_eq!(
        virtual_service.metadata.name.as_deref(),
        Some("webapp-service")
    );
    assert_eq!(
        virtual_service.metadata.namespace.as_deref(),
        Some("default")
    );
    assert_eq!(
        virtual_service_name(&seed).expect("named"),
        "webapp-service"
    );
    assert_eq!(virtual_service.spec.hosts, vec!["webapp.example.com"]);
}

#[test]
fn gateways_names_the_gateway_with_its_namespace_defaulting_to_the_meshservice_namespace() {
    assert_eq!(
        virtual_service_of(&seed_example()).spec.gateways,
        vec!["istio-system/public-gateway"]
    );

    let same_namespace = five_protocols(json!({"name": "edge"}));
    assert_eq!(
        virtual_service_of(&same_namespace).spec.gateways,
        vec!["shop/edge"]
    );
}

#[test]
fn gateways_is_mesh_when_no_gateway_is_set() {
    let ms = meshservice(
        "default",
        "internal",
        json!({"serviceName": "internal", "hosts": ["internal.example.com"], "ports": [{"port": 80}]}),
    );
    assert_eq!(virtual_service_of(&ms).spec.gateways, vec!["mesh"]);
}

#[test]
fn behind_a_gateway_each_port_gets_one_route_of_its_protocol_matching_that_port() {
    let virtual_service = virtual_service_of(&five_protocols(
        json!({"name": "edge", "namespace": "istio-system"}),
    ));
    let destination = "storefront.shop.svc.cluster.local";
    assert_eq!(
        serde_json::to_value(&virtual_service.spec).expect("serialises"),
        json!({
            "hosts": ["shop.example.com"],
            "gateways": ["istio-system/edge"],
            "http": [
                {"name": "http-80", "match": [{"port": 80}],
                 "route": [{"destination": {"host": destination, "port": {"number": 80}}}]},
                {"name": "https-443", "match": [{"port": 443}],
                 "route": [{"destination": {"host": destination, "port": {"number": 443}}}]},
                {"name": "grpc-9090", "match": [{"port": 9090}],
                 "route": [{"destination": {"host": destination, "port": {"number": 9090}}}]},
            ],
            "tls": [
                {"match": [{"port": 8443, "sniHosts": ["shop.example.com"]}],
                 "route": [{"destination": {"host": destination, "port": {"number": 8443}}}]},
            ],
            "tcp": [
                {"match": [{"port": 5432}],
                 "route": [{"destination": {"host": destination, "port": {"number": 5432}}}]},
            ],
        })
    );
}

#[test]
fn inside_the_mesh_https_is_not_terminated_so_it_is_routed_by_sni() {
    let ms = meshservice(
        "shop",
        "storefront",
        json!({"serviceName": "storefront", "hosts": ["shop.example.com"], "ports": [{"port": 443, "protocol": "HTTPS"}]}),
    );
    let spec = virtual_service_of(&ms).spec;
    assert!(spec.http.is_empty());
    assert_eq!(spec.tls.len(), 1);
    assert_eq!(spec.tls[0].matches[0].port, 443);
    assert_eq!(spec.tls[0].matches[0].sni_hosts, vec!["shop.example.com"]);
}

#[test]
fn every_route_sends_to_the_service_fqdn_on_the_port_it_matches() {
    let ms = five_protocols(json!({"name": "edge"}));
    let spec = virtual_service_of(&ms).spec;
    let fqdn = service_fqdn(&ms).expect("namespaced");
    assert_eq!(fqdn, "storefront.shop.svc.cluster.local");
    let http = spec
        .http
        .iter()
        .map(|route| (route.matches[0].port, &route.route));
    let tls = spec
        .tls
        .iter()
        .map(|route| (route.matches[0].port, &route.route));
    let tcp = spec
        .tcp
        .iter()
        .map(|route| (route.matches[0].port, &route.route));
    let routes: Vec<_> = http.chain(tls).chain(tcp).collect();
    assert_eq!(routes.len(), 5);
    for (matched_port, destinations) in routes {
        assert_eq!(destinations.len(), 1);
        assert_eq!(destinations[0].destination.host, fqdn);
        assert_eq!(destinations[0].destination.port.number, matched_port);
    }
}

#[test]
fn export_to_is_passed_through_and_absent_when_the_spec_has_none() {
    let exported = meshservice(
        "default",
        "api",
        json!({"serviceName": "api", "hosts": ["api.example.com"], "ports": [{"port": 80}], "exportTo": [".", "monitoring"]}),
    );
    assert_eq!(
        virtual_service_of(&exported).spec.export_to,
        Some(vec![".".to_string(), "monitoring".to_string()])
    );

    let json = serde_json::to_value(virtual_service_of(&seed_example())).expect("serialises");
    assert_eq!(json["spec"].get("exportTo"), None);
}

#[test]
fn excluded_hosts_are_rendered_nowhere() {
    let ms = meshservice(
        "default",
        "api",
        json!({"serviceName": "api", "hosts": ["b.example.com", "a.example.com", "c.example.com"],
               "ports": [{"port": 443, "protocol": "TLS"}]}),
    );
    let excluded = BTreeSet::from(["b.example.com".to_string()]);
    let virtual_service = render_virtual_service(&RenderInput {
        meshservice: &ms,
        owner_uid: "u",
        excluded_hosts: &excluded,
    })
    .expect("renders")
    .expect("has hosts left");
    assert_eq!(
        virtual_service.spec.hosts,
        vec!["a.example.com", "c.example.com"]
    );
    assert_eq!(
        virtual_service.spec.tls[0].matches[0].sni_hosts,
        vec!["a.example.com", "c.example.com"]
    );
}

#[test]
fn no_virtual_service_is_rendered_when_every_host_is_excluded_but_the_service_still_is() {
    let seed = seed_example();
    let excluded = BTreeSet::from(["webapp.example.com".to_string()]);
    let rendered = render_meshservice(&RenderInput {
        meshservice: &seed,
        owner_uid: "u",
        excluded_hosts: &excluded,
    })
    .expect("renders");
    assert_eq!(rendered.virtual_service, None);
    assert_eq!(rendered.service.metadata.name.as_deref(), Some("webapp"));
}

#[test]
fn rendered_objects_as_json_carry_api_version_and_kind() {
    let seed = seed_example();
    let rendered = render_meshservice(&RenderInput {
        meshservice: &seed,
        owner_uid: "u",
        excluded_hosts: &nothing_excluded(),
    })
    .expect("renders");
    let service = istio_render::to_value(&rendered.service).expect("serialises");
    assert_eq!(
        (&service["apiVersion"], &service["kind"]),
        (&json!("v1"), &json!("Service"))
    );
    let virtual_service = istio_render::to_value(&rendered.virtual_service).expect("serialises");
    assert_eq!(
        (&virtual_service["apiVersion"], &virtual_service["kind"]),
        (&json!("networking.istio.io/v1"), &json!("VirtualService"))
    );
}

#[test]
fn the_order_of_hosts_and_ports_in_the_spec_does_not_change_the_rendered_bytes() {
    let spec = |hosts: serde_json::Value, ports: serde_json::Value| {
        meshservice(
            "default",
            "api",
            json!({"serviceName": "api", "hosts": hosts, "ports": ports}),
        )
    };
    let one = spec(
        json!(["a.example.com", "b.example.com"]),
        json!([{"port": 80}, {"port": 443, "protocol": "TLS"}]),
    );
    let other = spec(
        json!(["b.example.com", "a.example.com"]),
        json!([{"port": 443, "protocol": "TLS"}, {"port": 80}]),
    );
    let bytes = |ms: &MeshService| {
        let rendered = render_meshservice(&RenderInput {
            meshservice: ms,
            owner_uid: "u",
            excluded_hosts: &nothing_excluded(),
        })
        .expect("renders");
        (
            istio_render::to_json_bytes(&rendered.service).expect("serialises"),
            istio_render::to_json_bytes(&rendered.virtual_service).expect("serialises"),
        )
    };
    assert_eq!(bytes(&one), bytes(&other));
}

#[test]
fn a_rendered_virtual_service_as_the_apiserver_returns_it_decodes_back_into_the_typed_struct() {
    let virtual_service = virtual_service_of(&seed_example());
    let mut returned = istio_render::to_value(&virtual_service).expect("serialises");
    returned["metadata"]["resourceVersion"] = json!("4711");
    returned["metadata"]["generation"] = json!(1);
    returned["spec"]["http"][0]["timeout"] = json!("5s");
    returned["status"] = json!({"observedGeneration": 1});
    let decoded: VirtualService = serde_json::from_value(returned).expect("decodes");
    assert_eq!(decoded.spec, virtual_service.spec);
    assert_eq!(decoded.metadata.resource_version.as_deref(), Some("4711"));
}
