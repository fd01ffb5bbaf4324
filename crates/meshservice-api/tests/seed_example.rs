//! The seed example in examples/meshservice.yaml works as written: it deserialises into the Rust
//! type, passes the CRD's CEL rules, and serialises back without losing or inventing a field.

use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use meshservice_api::{MeshService, Protocol};

const SEED: &str = include_str!("../../../examples/meshservice.yaml");

#[test]
fn the_seed_example_round_trips_without_loss() {
    let as_written: serde_json::Value =
        serde_saphyr::from_str(SEED).expect("the seed example is YAML");
    let typed: MeshService =
        serde_saphyr::from_str(SEED).expect("the seed example is a MeshService");
    let round_tripped = serde_json::to_value(&typed).expect("a MeshService serialises");
    assert_eq!(round_tripped, as_written);
}

#[test]
fn the_seed_example_means_what_it_says() {
    let ms: MeshService = serde_saphyr::from_str(SEED).expect("the seed example is a MeshService");
    assert!(ms.validate_cel().is_ok());
    assert_eq!(ms.spec.service_name, "webapp");
    assert_eq!(ms.spec.hosts, ["webapp.example.com"]);
    let gateway = ms.spec.gateway.as_ref().expect("the seed names a gateway");
    assert_eq!(
        (
            gateway.name.as_str(),
            gateway.effective_namespace("default")
        ),
        ("public-gateway", "istio-system")
    );
    assert!(!gateway.managed, "an unmanaged gateway by default");
    let port = &ms.spec.ports[0];
    assert_eq!(port.effective_protocol(), Protocol::Http);
    assert_eq!(port.effective_target_port(), IntOrString::Int(8080));
    assert_eq!(port.effective_name(), "http-80");
    assert_eq!(
        ms.spec.effective_selector().get("app").map(String::as_str),
        Some("webapp")
    );
}
