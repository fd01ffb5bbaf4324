//! The OpenAPI part of the CRD: what the apiserver enforces before any CEL rule runs. These tests
//! pin each constraint in the generated schema; the control-plane e2e tests prove the apiserver
//! rejects violations of them.

use kube::CustomResourceExt;
use meshservice_api::MeshService;
use serde_json::{Value, json};

fn spec_schema() -> Value {
    let crd = serde_json::to_value(MeshService::crd()).expect("the CRD serialises");
    crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"].clone()
}

#[test]
fn the_required_fields_are_service_name_hosts_and_ports() {
    assert_eq!(
        spec_schema()["required"],
        json!(["hosts", "ports", "serviceName"])
    );
    assert_eq!(
        spec_schema()["properties"]["gateway"]["required"],
        json!(["name"])
    );
}

#[test]
fn service_name_is_a_dns_1035_label() {
    let service_name = &spec_schema()["properties"]["serviceName"];
    assert_eq!(
        service_name["pattern"],
        json!(meshservice_api::DNS1035_LABEL_PATTERN)
    );
    assert_eq!(service_name["maxLength"], json!(63));
}

#[test]
fn hosts_hold_one_to_sixty_four_bounded_names() {
    let hosts = &spec_schema()["properties"]["hosts"];
    assert_eq!(
        (&hosts["minItems"], &hosts["maxItems"]),
        (&json!(1), &json!(64))
    );
    assert_eq!(hosts["items"]["maxLength"], json!(253));
}

#[test]
fn ports_hold_one_to_thirty_two_entries_in_the_port_range() {
    let ports = &spec_schema()["properties"]["ports"];
    assert_eq!(
        (&ports["minItems"], &ports["maxItems"]),
        (&json!(1), &json!(32))
    );
    let port = &ports["items"]["properties"]["port"];
    assert_eq!(
        (&port["minimum"], &port["maximum"]),
        (&json!(1.0), &json!(65535.0))
    );
    assert_eq!(
        ports["items"]["properties"]["targetPort"]["x-kubernetes-int-or-string"],
        json!(true)
    );
    assert_eq!(
        ports["items"]["properties"]["protocol"]["enum"],
        json!(["HTTP", "HTTP2", "GRPC", "HTTPS", "TLS", "TCP"])
    );
}

#[test]
fn every_list_a_cel_rule_walks_is_bounded() {
    // The apiserver refuses CEL rules whose estimated cost is unbounded; maxItems and maxLength bound it.
    let properties = &spec_schema()["properties"];
    for list in ["hosts", "ports", "exportTo"] {
        assert!(properties[list]["maxItems"].is_u64(), "{list} has maxItems");
    }
    for list in ["hosts", "exportTo"] {
        assert!(
            properties[list]["items"]["maxLength"].is_u64(),
            "{list} items have maxLength"
        );
    }
}

#[test]
fn the_status_conditions_merge_by_type() {
    let crd = serde_json::to_value(MeshService::crd()).expect("the CRD serialises");
    let version = &crd["spec"]["versions"][0];
    let conditions =
        &version["schema"]["openAPIV3Schema"]["properties"]["status"]["properties"]["conditions"];
    assert_eq!(conditions["x-kubernetes-list-type"], json!("map"));
    assert_eq!(conditions["x-kubernetes-list-map-keys"], json!(["type"]));
    assert_eq!(version["subresources"]["status"], json!({}));
}

#[test]
fn kubectl_shows_ready_hosts_gateway_and_age_and_knows_the_short_name() {
    let crd = serde_json::to_value(MeshService::crd()).expect("the CRD serialises");
    let columns: Vec<_> = crd["spec"]["versions"][0]["additionalPrinterColumns"]
        .as_array()
        .expect("printer columns")
        .iter()
        .map(|column| column["name"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(columns, ["Ready", "Hosts", "Gateway", "Age"]);
    assert_eq!(crd["spec"]["names"]["shortNames"], json!(["ms"]));
    assert_eq!(
        crd["spec"]["names"]["categories"],
        json!(["istio-integrity"])
    );
}
