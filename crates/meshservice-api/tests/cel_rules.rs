//! Every CEL rule of the MeshService CRD, evaluated client-side with kube's CEL engine: for each rule
//! the smallest spec it rejects (with its exact message) and the nearest spec it accepts. The same
//! rules are proven server-side by the control-plane e2e tests.

use meshservice_api::{MeshService, messages};
use serde_json::{Value, json};

/// The seed example's spec, valid as written.
fn seed_spec() -> Value {
    json!({
        "serviceName": "webapp",
        "hosts": ["webapp.example.com"],
        "gateway": {"name": "public-gateway", "namespace": "istio-system"},
        "ports": [{"port": 80, "targetPort": 8080}]
    })
}

fn meshservice(spec: Value) -> MeshService {
    serde_json::from_value(json!({
        "apiVersion": "mesh.istio.operator/v1alpha1",
        "kind": "MeshService",
        "metadata": {"name": "webapp-service", "namespace": "shop"},
        "spec": spec,
    }))
    .expect("test specs are well-typed")
}

fn with(field: &str, value: Value) -> MeshService {
    let mut spec = seed_spec();
    spec[field] = value;
    meshservice(spec)
}

/// The messages of every rule the object violates on creation.
fn violations(ms: &MeshService) -> Vec<String> {
    match ms.validate_cel() {
        Ok(()) => Vec::new(),
        Err(errors) => errors
            .as_slice()
            .iter()
            .map(|e| e.message.clone())
            .collect(),
    }
}

fn assert_rejected_with(ms: &MeshService, message: &str) {
    let found = violations(ms);
    assert_eq!(found, vec![message.to_string()], "spec {:?}", ms.spec);
}

fn assert_accepted(ms: &MeshService) {
    assert_eq!(violations(ms), Vec::<String>::new(), "spec {:?}", ms.spec);
}

#[test]
fn the_seed_example_is_accepted() {
    assert_accepted(&meshservice(seed_spec()));
}

#[test]
fn hosts_must_be_dns_names() {
    assert_rejected_with(
        &with("hosts", json!(["Webapp.Example.com"])),
        messages::HOST_FORM,
    );
    assert_rejected_with(
        &with("hosts", json!(["webapp_example.com"])),
        messages::HOST_FORM,
    );
    assert_rejected_with(
        &with("hosts", json!(["-webapp.example.com"])),
        messages::HOST_FORM,
    );
    assert_accepted(&with(
        "hosts",
        json!(["webapp", "webapp.example.com", "a-b.c1.example.com"]),
    ));
}

#[test]
fn a_wildcard_is_only_a_whole_first_label() {
    // these violate both the DNS form and the wildcard form; the wildcard message is the one that explains
    for bad in [
        "shop.*.example.com",
        "*shop.example.com",
        "*.*.example.com",
        "*",
    ] {
        let found = violations(&with("hosts", json!([bad])));
        assert!(
            found.contains(&messages::WILDCARD_FORM.to_string()),
            "{bad}: {found:?}"
        );
    }
    assert_accepted(&with(
        "hosts",
        json!(["*.example.com", "*.shop.example.com"]),
    ));
}

#[test]
fn hosts_are_unique() {
    assert_rejected_with(
        &with(
            "hosts",
            json!([
                "webapp.example.com",
                "shop.example.com",
                "webapp.example.com"
            ]),
        ),
        messages::UNIQUE_HOSTS,
    );
    assert_accepted(&with(
        "hosts",
        json!(["webapp.example.com", "www.webapp.example.com"]),
    ));
}

#[test]
fn port_numbers_are_unique() {
    assert_rejected_with(
        &with(
            "ports",
            json!([{"port": 80}, {"port": 443, "protocol": "HTTPS"}, {"port": 80, "targetPort": 8081}]),
        ),
        messages::UNIQUE_PORTS,
    );
    assert_accepted(&with(
        "ports",
        json!([{"port": 80}, {"port": 8080, "targetPort": 80}]),
    ));
}

#[test]
fn port_names_are_unique_when_given() {
    assert_rejected_with(
        &with(
            "ports",
            json!([{"port": 80, "name": "web"}, {"port": 81, "name": "web"}]),
        ),
        messages::UNIQUE_PORT_NAMES,
    );
    assert_accepted(&with(
        "ports",
        json!([{"port": 80, "name": "web"}, {"port": 81}, {"port": 82}]),
    ));
}

#[test]
fn a_named_target_port_is_an_iana_service_name() {
    assert_rejected_with(
        &with("ports", json!([{"port": 80, "targetPort": "Http"}])),
        messages::TARGET_PORT_NAME,
    );
    assert_rejected_with(
        &with("ports", json!([{"port": 80, "targetPort": "8080"}])),
        messages::TARGET_PORT_NAME,
    );
    assert_rejected_with(
        &with(
            "ports",
            json!([{"port": 80, "targetPort": "a-very-long-port-name"}]),
        ),
        messages::TARGET_PORT_NAME,
    );
    assert_accepted(&with(
        "ports",
        json!([{"port": 80, "targetPort": "http-web"}]),
    ));
}

#[test]
fn a_numeric_target_port_is_a_port_number() {
    assert_rejected_with(
        &with("ports", json!([{"port": 80, "targetPort": 0}])),
        messages::TARGET_PORT_RANGE,
    );
    assert_rejected_with(
        &with("ports", json!([{"port": 80, "targetPort": 65536}])),
        messages::TARGET_PORT_RANGE,
    );
    assert_accepted(&with(
        "ports",
        json!([{"port": 80, "targetPort": 65535}, {"port": 81, "targetPort": 1}]),
    ));
}

#[test]
fn export_to_takes_dot_star_or_namespace_names() {
    assert_rejected_with(
        &with("exportTo", json!(["Team-A"])),
        messages::EXPORT_TO_FORM,
    );
    assert_rejected_with(&with("exportTo", json!(["~"])), messages::EXPORT_TO_FORM);
    assert_accepted(&with("exportTo", json!([".", "team-a", "istio-system"])));
    assert_accepted(&with("exportTo", json!(["*"])));
}

#[test]
fn export_to_star_stands_alone() {
    assert_rejected_with(
        &with("exportTo", json!(["*", "team-a"])),
        messages::EXPORT_TO_STAR_ALONE,
    );
    assert_accepted(&with("exportTo", json!(["team-a"])));
}

#[test]
fn export_to_entries_are_unique() {
    assert_rejected_with(
        &with("exportTo", json!([".", "team-a", "."])),
        messages::UNIQUE_EXPORT_TO,
    );
    assert_accepted(&with("exportTo", json!([".", "team-a"])));
}

#[test]
fn service_name_is_immutable() {
    let old = meshservice(seed_spec());
    let renamed = with("serviceName", json!("webapp-v2"));
    let errors = renamed
        .validate_cel_update(&old)
        .expect_err("renaming the Service is refused");
    let found: Vec<_> = errors
        .as_slice()
        .iter()
        .map(|e| e.message.clone())
        .collect();
    assert_eq!(found, vec![messages::SERVICE_NAME_IMMUTABLE.to_string()]);

    let mut more_hosts = seed_spec();
    more_hosts["hosts"] = json!(["webapp.example.com", "www.example.com"]);
    assert!(
        meshservice(more_hosts).validate_cel_update(&old).is_ok(),
        "other fields stay mutable"
    );
}

#[test]
fn https_on_a_managed_gateway_needs_a_credential() {
    let managed = json!({"name": "public", "namespace": "istio-system", "managed": true});
    let mut spec = seed_spec();
    spec["gateway"] = managed.clone();
    spec["ports"] = json!([{"port": 443, "protocol": "HTTPS", "targetPort": 8080}]);
    assert_rejected_with(
        &meshservice(spec.clone()),
        messages::MANAGED_HTTPS_CREDENTIAL,
    );

    spec["gateway"]["tls"] = json!({"credentialName": "shop-cert"});
    assert_accepted(&meshservice(spec.clone()));

    // an unmanaged gateway brings its own TLS configuration
    spec["gateway"] = json!({"name": "public", "namespace": "istio-system"});
    assert_accepted(&meshservice(spec));
}
