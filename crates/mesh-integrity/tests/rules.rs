//! Per rule: the smallest input that triggers it, and the nearest inputs that must not.

mod common;
use common::{check, hits, rules_fired};

const GW: &str = r#"---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: public, namespace: istio-system}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 80, name: http, protocol: HTTP}
    hosts: ["*.shop.example.com", "./internal.example.com", "team-a/a.example.com"]
"#;

fn svc(ns: &str, name: &str, ports: &[u32]) -> String {
    let ports: Vec<String> = ports
        .iter()
        .map(|p| format!("{{port: {p}, name: http-{p}}}"))
        .collect();
    format!(
        "---\napiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: {ns}}}\nspec: {{selector: {{app: {name}}}, ports: [{}]}}\n",
        ports.join(", ")
    )
}

fn vs(ns: &str, name: &str, hosts: &str, gateways: &str, dest: &str) -> String {
    format!(
        "---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: {name}, namespace: {ns}}}\nspec:\n  hosts: {hosts}\n  gateways: {gateways}\n  http: [{{route: [{{destination: {dest}}}]}}]\n"
    )
}

// ---------- IST0101 gateway / IST0132 ----------

#[test]
fn vs_gateway_not_found_and_host_not_in_gateway() {
    let y = vs(
        "shop",
        "cart",
        "[cart.shop.example.com]",
        "[istio-system/missing]",
        "{host: cart}",
    ) + &svc("shop", "cart", &[80]);
    assert_eq!(
        rules_fired(&y),
        ["vs-gateway-not-found", "vs-host-not-in-gateway"]
    );
    // short gateway name resolves in the VS namespace
    let y = vs(
        "istio-system",
        "cart",
        "[cart.shop.example.com]",
        "[public]",
        "{host: cart.shop.svc.cluster.local}",
    ) + GW
        + &svc("shop", "cart", &[80]);
    assert!(rules_fired(&y).is_empty(), "{:?}", hits(&y));
    // the mesh gateway is never looked up
    let y = vs("shop", "cart", "[cart]", "[mesh]", "{host: cart}") + &svc("shop", "cart", &[80]);
    assert!(rules_fired(&y).is_empty());
    // a Gateway API gateway counts; a listener without hostname serves everything
    let y = vs(
        "shop",
        "cart",
        "[cart.example.com]",
        "[web]",
        "{host: cart}",
    ) + &svc("shop", "cart", &[80])
        + "---\napiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {name: web, namespace: shop}\nspec: {gatewayClassName: istio, listeners: [{name: http, port: 80, protocol: HTTP}]}\n";
    assert!(rules_fired(&y).is_empty(), "{:?}", hits(&y));
}

#[test]
fn gateway_host_matching_wildcards_and_namespace_prefixes() {
    let base = GW.to_string() + &svc("shop", "cart", &[80]);
    // wildcard server host matches
    let y = base.clone()
        + &vs(
            "shop",
            "cart",
            "[cart.shop.example.com]",
            "[istio-system/public]",
            "{host: cart}",
        );
    assert!(rules_fired(&y).is_empty(), "{:?}", hits(&y));
    // the wildcard does not cover the apex
    let y = base.clone()
        + &vs(
            "shop",
            "cart",
            "[shop.example.com]",
            "[istio-system/public]",
            "{host: cart}",
        );
    assert_eq!(rules_fired(&y), ["vs-host-not-in-gateway"]);
    // `./h` is visible only to the gateway's namespace
    let y = base.clone()
        + &vs(
            "shop",
            "cart",
            "[internal.example.com]",
            "[istio-system/public]",
            "{host: cart}",
        );
    assert_eq!(rules_fired(&y), ["vs-host-not-in-gateway"]);
    let y = base.clone()
        + &vs(
            "istio-system",
            "cart",
            "[internal.example.com]",
            "[public]",
            "{host: cart.shop.svc.cluster.local}",
        );
    assert!(rules_fired(&y).is_empty(), "{:?}", hits(&y));
    // `team-a/h` only to team-a
    let y = base.clone()
        + &vs(
            "shop",
            "a",
            "[a.example.com]",
            "[istio-system/public]",
            "{host: cart}",
        );
    assert_eq!(rules_fired(&y), ["vs-host-not-in-gateway"]);
    let y = base
        + &svc("team-a", "a", &[80])
        + &vs(
            "team-a",
            "a",
            "[a.example.com]",
            "[istio-system/public]",
            "{host: a}",
        );
    assert!(rules_fired(&y).is_empty(), "{:?}", hits(&y));
}

// ---------- IST0101 host / mirror / host:port, IST0112 ----------

#[test]
fn destination_host_resolution_is_istios() {
    // short name expands in the VS namespace
    let y = vs("shop", "r", "[r]", "[mesh]", "{host: cart}") + &svc("shop", "cart", &[80]);
    assert!(rules_fired(&y).is_empty());
    // ...but not across namespaces
    let y = vs("front", "r", "[r]", "[mesh]", "{host: cart}") + &svc("shop", "cart", &[80]);
    assert_eq!(rules_fired(&y), ["vs-destination-host-not-found"]);
    // FQDN across namespaces works
    let y = vs(
        "front",
        "r",
        "[r]",
        "[mesh]",
        "{host: cart.shop.svc.cluster.local}",
    ) + &svc("shop", "cart", &[80]);
    assert!(rules_fired(&y).is_empty());
    // `cart.shop` is not expanded (Istio's behaviour)
    let y = vs("front", "r", "[r]", "[mesh]", "{host: cart.shop}") + &svc("shop", "cart", &[80]);
    assert_eq!(rules_fired(&y), ["vs-destination-host-not-found"]);
    // the finding names the host and has a repair creating the Service
    let r = check(&(vs("front", "r", "[r]", "[mesh]", "{host: cart}")));
    assert_eq!(r.findings[0].message, "Referenced host not found: \"cart\"");
    assert_eq!(
        r.findings[0].repair[0].target.as_ref().unwrap().kind,
        "Service"
    );
}

#[test]
fn destination_visibility_follows_export_to() {
    let private = "---\napiVersion: v1\nkind: Service\nmetadata: {name: cart, namespace: shop, annotations: {networking.istio.io/exportTo: \".\"}}\nspec: {ports: [{port: 80}]}\n";
    // exported only to its own namespace
    let y = vs(
        "front",
        "r",
        "[r]",
        "[mesh]",
        "{host: cart.shop.svc.cluster.local}",
    ) + private;
    assert_eq!(rules_fired(&y), ["vs-destination-host-not-found"]);
    let y = vs("shop", "r", "[r]", "[mesh]", "{host: cart}") + private;
    assert!(rules_fired(&y).is_empty());
    // exported to a named namespace
    let named = private.replace("\".\"", "\"front\"");
    let y = vs(
        "front",
        "r",
        "[r]",
        "[mesh]",
        "{host: cart.shop.svc.cluster.local}",
    ) + &named;
    assert!(rules_fired(&y).is_empty());
    // a ServiceEntry exported to `*` and a wildcard ServiceEntry host
    let se = "---\napiVersion: networking.istio.io/v1beta1\nkind: ServiceEntry\nmetadata: {name: ext, namespace: egress}\nspec: {hosts: [\"*.example.org\"], ports: [{number: 443, name: https, protocol: HTTPS}]}\n";
    let y = vs("front", "r", "[r]", "[mesh]", "{host: api.example.org}") + se;
    assert!(rules_fired(&y).is_empty(), "{:?}", hits(&y));
    let y = vs("front", "r", "[r]", "[mesh]", "{host: example.org}") + se;
    assert_eq!(rules_fired(&y), ["vs-destination-host-not-found"]);
    // a wildcard SE exported only to its own namespace is not visible from front
    let y = vs("front", "r", "[r]", "[mesh]", "{host: api.example.org}")
        + &se.replace("spec: {", "spec: {exportTo: [\".\"], ");
    assert_eq!(rules_fired(&y), ["vs-destination-host-not-found"]);
    // the VS's own exportTo decides which namespace scopes are consulted (hello-export-to-bogus)
    let y = "---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: r, namespace: front}\nspec: {hosts: [r], exportTo: [bogus], http: [{route: [{destination: {host: cart.shop.svc.cluster.local}}]}]}\n".to_string()
        + &named;
    assert_eq!(rules_fired(&y), ["vs-destination-host-not-found"]);
}

#[test]
fn mirror_and_port_rules() {
    let y = "---\napiVersion: networking.istio.io/v1alpha3\nkind: VirtualService\nmetadata: {name: r, namespace: shop}\nspec:\n  hosts: [r]\n  http:\n  - route: [{destination: {host: cart, port: {number: 80}}}]\n    mirror: {host: shadow}\n".to_string()
        + &svc("shop", "cart", &[80, 443]);
    assert_eq!(rules_fired(&y), ["vs-mirror-host-not-found"]);
    let y = vs(
        "shop",
        "r",
        "[r]",
        "[mesh]",
        "{host: cart, port: {number: 8080}}",
    ) + &svc("shop", "cart", &[80]);
    assert_eq!(rules_fired(&y), ["vs-destination-port-not-found"]);
    assert_eq!(
        check(&y).findings[0].message,
        "Referenced host:port not found: \"cart:8080\""
    );
    let y = vs("shop", "r", "[r]", "[mesh]", "{host: cart}") + &svc("shop", "cart", &[80, 443]);
    assert_eq!(rules_fired(&y), ["vs-destination-port-selector-required"]);
    // one port: no selector needed
    let y = vs("shop", "r", "[r]", "[mesh]", "{host: cart}") + &svc("shop", "cart", &[80]);
    assert!(rules_fired(&y).is_empty());
    // tcp routes are checked too
    let y = "---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: r, namespace: shop}\nspec: {hosts: [r], tcp: [{route: [{destination: {host: db}}]}]}\n";
    assert_eq!(rules_fired(y), ["vs-destination-host-not-found"]);
}

/// The port checks at each resolution step, as the full check and the targeted one compute them
/// differently (the full one per step in SQL, the targeted one from the listed providers).
#[test]
fn destination_ports_are_checked_at_the_step_that_resolves() {
    let vs_front = |dest: &str| vs("front", "r", "[r]", "[mesh]", dest);
    let fqdn = "cart.shop.svc.cluster.local";
    // step 2: a Service exported to the VirtualService's namespace by name
    let named = |ports: &str| {
        format!(
            "---\napiVersion: v1\nkind: Service\nmetadata: {{name: cart, namespace: shop, annotations: {{networking.istio.io/exportTo: \"front\"}}}}\nspec: {{ports: [{ports}]}}\n"
        )
    };
    let y = vs_front(&format!("{{host: {fqdn}, port: {{number: 8080}}}}")) + &named("{port: 80}");
    assert_eq!(rules_fired(&y), ["vs-destination-port-not-found"]);
    let y = vs_front(&format!("{{host: {fqdn}, port: {{number: 80}}}}")) + &named("{port: 80}");
    assert!(rules_fired(&y).is_empty());
    let y = vs_front(&format!("{{host: {fqdn}}}")) + &named("{port: 80}, {port: 443, name: https}");
    assert_eq!(rules_fired(&y), ["vs-destination-port-selector-required"]);
    // a provider without ports: a port cannot be found, no port needs no selector
    let y = vs_front(&format!("{{host: {fqdn}, port: {{number: 80}}}}")) + &named("");
    assert_eq!(rules_fired(&y), ["vs-destination-port-not-found"]);
    let y = vs_front(&format!("{{host: {fqdn}}}")) + &named("");
    assert!(rules_fired(&y).is_empty());
    // step 3: a wildcard ServiceEntry host
    let wild = |ports: &str| {
        format!(
            "---\napiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {{name: ext, namespace: egress}}\nspec: {{hosts: [\"*.example.org\"], ports: [{ports}]}}\n"
        )
    };
    let https = "{number: 443, name: https, protocol: HTTPS}";
    let y = vs_front("{host: api.example.org, port: {number: 8443}}") + &wild(https);
    assert_eq!(rules_fired(&y), ["vs-destination-port-not-found"]);
    let y = vs_front("{host: api.example.org, port: {number: 443}}") + &wild(https);
    assert!(rules_fired(&y).is_empty());
    let two = format!("{https}, {{number: 8443, name: alt, protocol: HTTPS}}");
    let y = vs_front("{host: api.example.org}") + &wild(&two);
    assert_eq!(rules_fired(&y), ["vs-destination-port-selector-required"]);
    // the first step that finds a provider decides, even when a later one has the port
    let exact = se("egress", "exact", "api.example.org", 80, "HTTP", "[\"*\"]");
    let y = vs_front("{host: api.example.org, port: {number: 8443}}") + &exact + &wild(&two);
    assert_eq!(rules_fired(&y), ["vs-destination-port-not-found"]);
    // the ports of every provider of the step count: two providers, one port each
    let y = vs_front("{host: api.example.com}")
        + &se("a", "x", "api.example.com", 443, "HTTPS", "[\"*\"]")
        + &se("a", "z", "api.example.com", 8443, "HTTPS", "[\"*\"]");
    assert_eq!(rules_fired(&y), ["vs-destination-port-selector-required"]);
    let y = vs_front("{host: api.example.com, port: {number: 8443}}")
        + &se("a", "x", "api.example.com", 443, "HTTPS", "[\"*\"]")
        + &se("a", "z", "api.example.com", 8443, "HTTPS", "[\"*\"]");
    assert!(rules_fired(&y).is_empty());
}

// ---------- IST0101 subset / IST0174 ----------

#[test]
fn subsets_resolve_by_normalised_name() {
    let dr = |ns: &str, host: &str| {
        format!(
            "---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {{name: d, namespace: {ns}}}\nspec: {{host: {host}, subsets: [{{name: v1, labels: {{version: v1}}}}]}}\n"
        )
    };
    let base = svc("shop", "cart", &[80]);
    let y = base.clone()
        + &vs("shop", "r", "[r]", "[mesh]", "{host: cart, subset: v1}")
        + &dr("shop", "cart");
    assert!(rules_fired(&y).is_empty(), "{:?}", hits(&y));
    let y = base.clone()
        + &vs("shop", "r", "[r]", "[mesh]", "{host: cart, subset: v2}")
        + &dr("shop", "cart");
    assert_eq!(rules_fired(&y), ["vs-destination-subset-not-found"]);
    // FQDN DR host in another namespace matches a short VS host
    let y = base.clone()
        + &vs("shop", "r", "[r]", "[mesh]", "{host: cart, subset: v1}")
        + &dr("other", "cart.shop.svc.cluster.local");
    assert!(rules_fired(&y).is_empty(), "{:?}", hits(&y));
    // a short DR host in another namespace means another service
    let y = base.clone()
        + &vs("shop", "r", "[r]", "[mesh]", "{host: cart, subset: v1}")
        + &dr("other", "cart");
    assert_eq!(
        rules_fired(&y),
        ["dr-host-unknown", "vs-destination-subset-not-found"]
    );
}

#[test]
fn dr_host_unknown_respects_visibility() {
    let dr = "---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: d, namespace: shop}\nspec: {host: cart}\n";
    assert_eq!(rules_fired(dr), ["dr-host-unknown"]);
    let y = dr.to_string() + &svc("shop", "cart", &[80]);
    assert!(rules_fired(&y).is_empty());
    let y = dr.to_string() + &svc("other", "cart", &[80]);
    assert_eq!(rules_fired(&y), ["dr-host-unknown"]);
    // exportTo of the provider, and of the DestinationRule (which scopes are consulted)
    let cart = |export: &str| {
        format!(
            "---\napiVersion: v1\nkind: Service\nmetadata: {{name: cart, namespace: shop, annotations: {{networking.istio.io/exportTo: \"{export}\"}}}}\nspec: {{ports: [{{port: 80}}]}}\n"
        )
    };
    let wild = |export: &str| {
        se(
            "egress",
            "ext",
            "\"*.shop.svc.cluster.local\"",
            80,
            "HTTP",
            export,
        )
    };
    for (dr_ns, dr_export, provider, unknown) in [
        ("shop", "[]", cart("."), false),
        ("front", "[]", cart("."), true),
        ("front", "[]", cart("front"), false),
        ("shop", "[front]", cart("front"), false),
        ("shop", "[front]", cart("shop"), true),
        ("front", "[]", wild("[\"*\"]"), false),
        ("front", "[]", wild("[\".\"]"), true),
        ("egress", "[]", wild("[\".\"]"), false),
    ] {
        let y = format!(
            "---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {{name: d, namespace: {dr_ns}}}\nspec: {{host: cart.shop.svc.cluster.local, exportTo: {dr_export}}}\n"
        ) + &provider;
        let expected: &[&str] = if unknown { &["dr-host-unknown"] } else { &[] };
        assert_eq!(rules_fired(&y), expected, "{dr_ns} {dr_export}\n{provider}");
    }
}

// ---------- IST0109 ----------

fn mesh_vs(ns: &str, name: &str, hosts: &str, export: &str) -> String {
    format!(
        "---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: {name}, namespace: {ns}}}\nspec: {{hosts: {hosts}, exportTo: {export}, tcp: [{{route: [{{destination: {{host: web.shop.svc.cluster.local}}}}]}}]}}\n"
    )
}

#[test]
fn mesh_gateway_host_conflicts_follow_scopes() {
    let web = svc("shop", "web", &[80]);
    let y = web.clone()
        + &mesh_vs("a", "x", "[web.shop.svc.cluster.local]", "[\"*\"]")
        + &mesh_vs("b", "z", "[web.shop.svc.cluster.local]", "[\"*\"]");
    assert_eq!(hits(&y).len(), 2);
    assert!(rules_fired(&y) == ["mesh-vs-host-conflict"]);
    // `.` vs `.` in different namespaces: different scopes
    let y = web.clone()
        + &mesh_vs("a", "x", "[web.shop.svc.cluster.local]", "[\".\"]")
        + &mesh_vs("b", "z", "[web.shop.svc.cluster.local]", "[\".\"]");
    assert!(rules_fired(&y).is_empty());
    // a namespace scope conflicts with `*`
    let y = web.clone()
        + &mesh_vs("a", "x", "[web.shop.svc.cluster.local]", "[\".\"]")
        + &mesh_vs("b", "z", "[web.shop.svc.cluster.local]", "[\"*\"]");
    assert_eq!(hits(&y).len(), 2);
    // ... also by wildcard overlap
    let y = web.clone()
        + &mesh_vs("a", "x", "[\"*.svc.cluster.local\"]", "[\"*\"]")
        + &mesh_vs("b", "z", "[web.shop.svc.cluster.local]", "[\".\"]");
    assert_eq!(hits(&y).len(), 2);
    // but two `*` scoped wildcard overlaps are not (Istio compares the key exactly)
    let y = web.clone()
        + &mesh_vs("a", "x", "[\"*.svc.cluster.local\"]", "[\"*\"]")
        + &mesh_vs("b", "z", "[web.shop.svc.cluster.local]", "[\"*\"]");
    assert!(rules_fired(&y).is_empty());
    // short name and FQDN in one VS: conflicts with itself (istio/istio#42561)
    let y = web.clone() + &mesh_vs("shop", "x", "[web, web.shop.svc.cluster.local]", "[\"*\"]");
    assert_eq!(rules_fired(&y), ["mesh-vs-host-conflict"]);
    // gateway-bound VirtualServices are merged by Istio: not checked
    let y =
        web + &vs(
            "a",
            "x",
            "[w.example.com]",
            "[istio-system/public]",
            "{host: web.shop.svc.cluster.local}",
        ) + &vs(
            "b",
            "z",
            "[w.example.com]",
            "[istio-system/public]",
            "{host: web.shop.svc.cluster.local}",
        ) + GW
            .replace("\"*.shop.example.com\"", "w.example.com")
            .as_str();
    assert!(
        !rules_fired(&y).contains(&"mesh-vs-host-conflict".to_string()),
        "{:?}",
        hits(&y)
    );
}

// ---------- IST0177, MSH0103 ----------

fn se(ns: &str, name: &str, host: &str, port: u32, proto: &str, export: &str) -> String {
    format!(
        "---\napiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {{name: {name}, namespace: {ns}}}\nspec: {{hosts: [{host}], exportTo: {export}, ports: [{{number: {port}, name: p, protocol: {proto}}}]}}\n"
    )
}

#[test]
fn service_entry_protocol_and_claim_conflicts() {
    let y = se("a", "x", "api.example.com", 443, "HTTPS", "[\"*\"]")
        + &se("a", "z", "api.example.com", 443, "TLS", "[\"*\"]");
    assert_eq!(rules_fired(&y), ["se-protocol-conflict"]);
    let y = se("a", "x", "api.example.com", 443, "HTTPS", "[\".\"]")
        + &se("b", "z", "api.example.com", 443, "TLS", "[\".\"]");
    assert!(rules_fired(&y).is_empty());
    let y = se("a", "x", "api.example.com", 443, "https", "[\"*\"]")
        + &se("a", "z", "api.example.com", 443, "HTTPS", "[\".\"]");
    assert!(rules_fired(&y).is_empty(), "protocols compare upper-cased");
    // same protocol from two namespaces in overlapping scopes: our MSH0103
    let y = se("a", "x", "api.example.com", 443, "HTTPS", "[\"*\"]")
        + &se("b", "z", "api.example.com", 443, "HTTPS", "[\"*\"]");
    assert_eq!(rules_fired(&y), ["se-host-port-claim-conflict"]);
    let y = se("a", "x", "api.example.com", 443, "HTTPS", "[\".\"]")
        + &se("b", "z", "api.example.com", 443, "HTTPS", "[\".\"]");
    assert!(rules_fired(&y).is_empty());
    let y = se("a", "x", "api.example.com", 443, "HTTPS", "[\"*\"]")
        + &se("b", "z", "api.example.com", 8443, "HTTPS", "[\"*\"]");
    assert!(rules_fired(&y).is_empty());
    // a namespace scope also sees the `*`-scoped entries: both are members of the conflicting key
    let y = se("a", "x", "api.example.com", 443, "HTTPS", "[\".\"]")
        + &se("b", "z", "api.example.com", 443, "TLS", "[\"*\"]");
    assert_eq!(
        hits(&y)
            .into_iter()
            .filter(|(rule, _)| rule == "se-protocol-conflict")
            .map(|(_, on)| on)
            .collect::<Vec<_>>(),
        ["ServiceEntry/a/x", "ServiceEntry/b/z"]
    );
    // one ServiceEntry declaring a port twice with two protocols conflicts with itself
    let twice = "---\napiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: x, namespace: a}\nspec: {hosts: [api.example.com], ports: [{number: 443, name: a, protocol: HTTPS}, {number: 443, name: b, protocol: TLS}]}\n";
    assert_eq!(rules_fired(twice), ["se-protocol-conflict"]);
    // the same protocols under another host or port are no conflict
    let y = se("a", "x", "api.example.com", 443, "HTTPS", "[\"*\"]")
        + &se("a", "z", "api.example.com", 8443, "TLS", "[\"*\"]")
        + &se("a", "w", "web.example.com", 443, "TLS", "[\"*\"]");
    assert!(rules_fired(&y).is_empty());
}

// ---------- IST0145, MSH0101 ----------

fn gw(ns: &str, name: &str, sel: &str, port: u32, hosts: &str) -> String {
    format!(
        "---\napiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {{name: {name}, namespace: {ns}}}\nspec: {{selector: {sel}, servers: [{{port: {{number: {port}, name: p, protocol: HTTP}}, hosts: {hosts}}}]}}\n"
    )
}

#[test]
fn gateway_conflicts_exact_and_wildcard() {
    let y = gw(
        "a",
        "x",
        "{istio: ingressgateway}",
        80,
        "[shop.example.com]",
    ) + &gw(
        "b",
        "z",
        "{istio: ingressgateway}",
        80,
        "[shop.example.com]",
    );
    assert_eq!(rules_fired(&y), ["gateway-conflict"]);
    assert_eq!(hits(&y).len(), 2);
    let y = gw(
        "a",
        "x",
        "{istio: ingressgateway}",
        80,
        "[shop.example.com]",
    ) + &gw(
        "b",
        "z",
        "{istio: ingressgateway}",
        443,
        "[shop.example.com]",
    );
    assert!(rules_fired(&y).is_empty());
    let y = gw(
        "a",
        "x",
        "{istio: ingressgateway}",
        80,
        "[shop.example.com]",
    ) + &gw("b", "z", "{istio: other}", 80, "[shop.example.com]");
    assert!(rules_fired(&y).is_empty());
    let y = gw(
        "a",
        "x",
        "{istio: ingressgateway}",
        80,
        "[\"*.shop.example.com\"]",
    ) + &gw(
        "b",
        "z",
        "{istio: ingressgateway}",
        80,
        "[cart.shop.example.com]",
    );
    assert_eq!(rules_fired(&y), ["gateway-wildcard-host-overlap"]);
    assert_eq!(hits(&y).len(), 2);
    let y = gw(
        "a",
        "x",
        "{istio: ingressgateway}",
        80,
        "[\"*.shop.example.com\"]",
    ) + &gw(
        "b",
        "z",
        "{istio: ingressgateway}",
        80,
        "[shop.example.com]",
    );
    assert!(rules_fired(&y).is_empty());
}

// ---------- Pods / Secrets rules ----------

const POD: &str = "---\napiVersion: v1\nkind: Pod\nmetadata: {name: ingress-1, namespace: istio-system, labels: {istio: ingressgateway, app: ingress}}\n";

#[test]
fn pod_rules_run_only_with_pods_and_say_so() {
    let y = gw(
        "istio-system",
        "x",
        "{istio: nothing}",
        80,
        "[a.example.com]",
    );
    let r = check(&y);
    assert!(r.findings.is_empty());
    assert!(!r.coverage.pods);
    assert!(
        r.coverage
            .skipped_rules
            .iter()
            .any(|s| s.rule == "gateway-selector-no-pod")
    );
    assert!(r.coverage.notes.iter().any(|n| n.contains("Pod")));
    let y = y + POD;
    assert_eq!(rules_fired(&y), ["gateway-selector-no-pod"]);
}

#[test]
fn gateway_port_must_be_exposed_by_the_workload_service() {
    let ingress_svc = "---\napiVersion: v1\nkind: Service\nmetadata: {name: ingress, namespace: istio-system}\nspec: {selector: {istio: ingressgateway}, ports: [{port: 80, targetPort: 8080, name: http}, {port: 443, name: https}]}\n";
    let base = POD.to_string() + ingress_svc;
    let y = base.clone()
        + &gw(
            "istio-system",
            "x",
            "{istio: ingressgateway}",
            8080,
            "[a.example.com]",
        );
    assert!(rules_fired(&y).is_empty(), "{:?}", hits(&y));
    let y = base.clone()
        + &gw(
            "istio-system",
            "x",
            "{istio: ingressgateway}",
            80,
            "[a.example.com]",
        );
    assert!(rules_fired(&y).is_empty(), "service port keys count too");
    let y = base
        + &gw(
            "istio-system",
            "x",
            "{istio: ingressgateway}",
            9000,
            "[a.example.com]",
        );
    assert_eq!(rules_fired(&y), ["gateway-port-not-on-service"]);
}

#[test]
fn credential_secret_is_looked_up_in_the_workload_namespace() {
    let ingress_svc = "---\napiVersion: v1\nkind: Service\nmetadata: {name: ingress, namespace: istio-system}\nspec: {selector: {istio: ingressgateway}, ports: [{port: 443, name: https}]}\n";
    let tls_gw = "---\napiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {name: x, namespace: shop}\nspec: {selector: {istio: ingressgateway}, servers: [{port: {number: 443, name: https, protocol: HTTPS}, hosts: [a.example.com], tls: {mode: SIMPLE, credentialName: shop-cert}}]}\n";
    let secret = |ns: &str| {
        format!(
            "---\napiVersion: v1\nkind: Secret\nmetadata: {{name: shop-cert, namespace: {ns}}}\ntype: kubernetes.io/tls\ndata: {{tls.crt: AAAA}}\n"
        )
    };
    let y = POD.to_string() + ingress_svc + tls_gw + &secret("shop");
    assert_eq!(rules_fired(&y), ["gateway-credential-not-found"]);
    let y = POD.to_string() + ingress_svc + tls_gw + &secret("istio-system");
    assert!(rules_fired(&y).is_empty());
    // without Secrets in the input the rule does not run
    let y = POD.to_string() + ingress_svc + tls_gw;
    let r = check(&y);
    assert!(r.findings.is_empty());
    assert!(
        r.coverage
            .skipped_rules
            .iter()
            .any(|s| s.rule == "gateway-credential-not-found")
    );
}

#[test]
fn sidecar_rules() {
    let sc = |name: &str, sel: &str| {
        let ws = if sel.is_empty() {
            String::new()
        } else {
            format!("workloadSelector: {{labels: {sel}}}, ")
        };
        format!(
            "---\napiVersion: networking.istio.io/v1\nkind: Sidecar\nmetadata: {{name: {name}, namespace: shop}}\nspec: {{{ws}egress: [{{hosts: [\"./*\"]}}]}}\n"
        )
    };
    let pod = "---\napiVersion: v1\nkind: Pod\nmetadata: {name: cart-1, namespace: shop, labels: {app: cart, tier: web}}\n";
    assert_eq!(
        rules_fired(&(sc("a", "") + &sc("b", ""))),
        ["sidecar-multiple-without-selector"]
    );
    assert!(rules_fired(&sc("a", "")).is_empty());
    let y = pod.to_string() + &sc("a", "{app: cart}") + &sc("b", "{tier: web}");
    assert_eq!(rules_fired(&y), ["sidecar-selector-conflict"]);
    let y = pod.to_string() + &sc("a", "{app: cart}") + &sc("b", "{tier: db}");
    assert_eq!(rules_fired(&y), ["sidecar-selector-no-pod"]);
    // a Pod in another namespace does not count
    let y = pod.replace("namespace: shop", "namespace: other") + &sc("a", "{app: cart}");
    assert_eq!(rules_fired(&y), ["sidecar-selector-no-pod"]);
}

// ---------- MSH0104 ----------

#[test]
fn export_to_namespaces_must_exist_when_namespaces_are_given() {
    let ns = |n: &str| format!("---\napiVersion: v1\nkind: Namespace\nmetadata: {{name: {n}}}\n");
    let y = mesh_vs("a", "x", "[x]", "[\".\", b]") + &svc("shop", "web", &[80]) + &ns("a");
    let r = check(&y);
    assert_eq!(
        common::summarize(&r.findings),
        [(
            "export-to-namespace-not-found".to_string(),
            "VirtualService/a/x".to_string()
        )]
    );
    let y = y + &ns("b");
    assert!(rules_fired(&y).is_empty());
    // without Namespaces the rule does not run
    assert!(
        rules_fired(&(mesh_vs("a", "x", "[x]", "[b]") + &svc("shop", "web", &[80]))).is_empty()
    );
}

// ---------- MSH0001, suppression ----------

#[test]
fn an_undecodable_object_is_a_finding_not_an_error() {
    let y = "---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: bad, namespace: shop}\nspec: {hosts: shop.example.com}\n".to_string()
        + &svc("shop", "cart", &[80]);
    let r = check(&y);
    assert_eq!(
        common::summarize(&r.findings),
        [(
            "object-not-projectable".to_string(),
            "VirtualService/shop/bad".to_string()
        )]
    );
    assert!(r.findings[0].message.contains("spec.hosts"));
    assert_eq!(r.summary.objects_by_kind["Service"], 1);
}

#[test]
fn suppression_annotation_and_external() {
    let y = "---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: r, namespace: shop, annotations: {galley.istio.io/analyze-suppress: \"IST0101\"}}\nspec: {hosts: [r], http: [{route: [{destination: {host: nowhere}}]}]}\n";
    let r = check(y);
    assert!(r.findings.is_empty());
    assert_eq!(r.summary.suppressed, 1);
    let y2 = y.replace("IST0101", "IST0132");
    assert_eq!(check(&y2).findings.len(), 1);
    let mut engine = common::engine(&y2);
    engine
        .add_suppression("IST0101=VirtualService/shop/r")
        .unwrap();
    assert!(engine.check().unwrap().findings.is_empty());
    engine.clear_suppressions();
    engine
        .add_suppression("IST0101=VirtualService/shop/other")
        .unwrap();
    assert_eq!(engine.check().unwrap().findings.len(), 1);
    engine
        .add_suppression("vs-destination-host-not-found")
        .unwrap();
    assert!(engine.check().unwrap().findings.is_empty());
}

#[test]
fn the_registry_lists_every_rule_once() {
    let rules = mesh_integrity::rules();
    assert!(rules.len() >= 25);
    let mut names: Vec<_> = rules.iter().map(|r| r.name).collect();
    names.dedup();
    assert_eq!(names.len(), rules.len());
    for r in rules {
        assert!(r.code.starts_with("IST") || r.code.starts_with("MSH"));
        assert!(!r.summary.is_empty() && !r.explanation.is_empty());
        assert!(
            r.name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c == '-' || c.is_ascii_digit())
        );
    }
    assert_eq!(rules.iter().filter(|r| r.code == "IST0101").count(), 8);
}

#[test]
fn codes_only_the_operator_reports_are_listed_and_marked() {
    let by_operator: Vec<(&str, &str)> = mesh_integrity::rules()
        .iter()
        .filter(|r| r.reported_by == mesh_integrity::ReportedBy::Operator)
        .map(|r| (r.code, r.name))
        .collect();
    assert_eq!(
        by_operator,
        [
            ("MSH0206", "meshservice-gateway-name-taken"),
            ("MSH0207", "meshservice-gateway-port-dropped")
        ]
    );
    let listed = serde_json::to_value(mesh_integrity::rule_by_name(
        "meshservice-gateway-port-dropped",
    ))
    .unwrap();
    assert_eq!(listed["reportedBy"], "operator");
    assert_eq!(listed["severity"], "warning");
    let engine_rule =
        serde_json::to_value(mesh_integrity::rule_by_name("vs-gateway-not-found")).unwrap();
    assert_eq!(engine_rule["reportedBy"], "engine");
}
