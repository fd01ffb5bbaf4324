//! Projection: a Kubernetes-style object becomes the few rows the rules read. Unknown fields are
//! ignored; a field the rules need that has the wrong shape makes the whole object undecodable
//! (an `MSH0001` finding), never an error.

use std::fmt::Display;

use serde_json::{Map, Value};

use crate::host::{is_wild, resource_key, to_fqdn};
use crate::model::{ObjectKey, group_of};

/// Annotation carrying Istio's analyzer suppressions.
pub const SUPPRESS_ANNOTATION: &str = "galley.istio.io/analyze-suppress";
/// Annotation by which a Service restricts its visibility (Istio's exportTo for Services).
pub const SERVICE_EXPORT_TO_ANNOTATION: &str = "networking.istio.io/exportTo";

/// The kinds the engine understands: (group, kind).
pub const KNOWN_KINDS: &[(&str, &str)] = &[
    ("networking.istio.io", "VirtualService"),
    ("networking.istio.io", "Gateway"),
    ("networking.istio.io", "DestinationRule"),
    ("networking.istio.io", "ServiceEntry"),
    ("networking.istio.io", "Sidecar"),
    ("", "Service"),
    ("", "Namespace"),
    ("", "Pod"),
    ("", "Secret"),
    ("gateway.networking.k8s.io", "Gateway"),
    ("mesh.istio.operator", "MeshService"),
];

/// Whether the engine stores objects of this group and kind.
pub fn is_known(group: &str, kind: &str) -> bool {
    KNOWN_KINDS.iter().any(|(g, k)| *g == group && *k == kind)
}

#[derive(Debug, Default, Clone, Hash)]
pub(crate) struct Dest {
    pub idx: i64,
    pub mirror: bool,
    pub host: String,
    pub fqdn: String,
    pub port: Option<i64>,
    pub subset: Option<String>,
    pub skey: String,
    pub path: String,
}

#[derive(Debug, Default, Clone, Hash)]
pub(crate) struct Server {
    pub sidx: i64,
    pub hidx: i64,
    pub port: Option<i64>,
    pub protocol: Option<String>,
    pub bind: String,
    pub raw: String,
    pub vis_ns: Option<String>,
    pub host: String,
    pub credential: Option<String>,
}

/// (number, name, protocol, targetPort)
pub(crate) type PortRow = (i64, Option<String>, Option<String>, Option<i64>);
/// (serviceName, gateway namespace, gateway name, managed, credentialName)
pub(crate) type MsRow = (String, Option<String>, Option<String>, bool, Option<String>);

#[derive(Debug, Default, Clone)]
pub(crate) struct Rows {
    pub export_to: Vec<(String, String)>, // (resolved scope, raw)
    // VirtualService and Service columns of `object` (V9)
    pub vs_mesh: Option<bool>,
    pub vs_export_all: Option<bool>,
    pub svc_sel_n: Option<i64>,
    pub vs_host: Vec<(String, String)>, // (host, fqdn)
    pub vs_gateway: Vec<(i64, String, String, String)>,
    pub mesh_host: Vec<(String, String)>, // (scope, fqdn)
    pub dest: Vec<Dest>,
    pub gateway: Option<(String, i64, i64)>, // (sel, sel_n, n_servers)
    pub gw_server: Vec<Server>,
    pub selector: Vec<(String, String)>,
    pub label: Vec<(String, String)>,
    pub provider: Vec<(String, String, String)>, // (scope, raw, fqdn)
    pub port: Vec<PortRow>,
    pub dr: Option<(String, String, String, bool, i64)>, // host, fqdn, skey, export_all, n_subsets
    pub dr_subset: Vec<String>,
    pub sidecar: Option<i64>,
    pub secret: Option<Option<String>>,
    pub ms: Option<MsRow>,
    pub ms_host: Vec<(String, String)>,
    pub ms_port: Vec<(i64, String)>,
    pub undecodable: Option<String>,
}

#[derive(Debug, Clone)]
pub(crate) struct Projection {
    pub key: ObjectKey,
    pub api_version: String,
    pub created: Option<String>,
    pub owner: Option<String>,
    pub contributors: Option<String>,
    pub managed: bool,
    pub suppress: Option<String>,
    pub rows: Rows,
}

/// Result of projecting one value.
pub(crate) enum Projected {
    /// A kind the engine does not check: `apiVersion/kind`.
    Unknown(String),
    /// No identity (apiVersion, kind or name missing).
    NoIdentity(String),
    Object(Box<Projection>),
}

type R<T> = Result<T, String>;

// The helpers below take the JSON path they report as `impl Display`, so callers pass
// `format_args!` and the path is only formatted for an error: formatting every path eagerly
// was a third of projecting a VirtualService.

fn str_at(v: Option<&Value>, path: impl Display) -> R<Option<&str>> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(format!("{path}: expected a string")),
    }
}

fn strs(v: Option<&Value>, path: impl Display) -> R<Vec<String>> {
    match v {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(items)) => items
            .iter()
            .enumerate()
            .map(|(i, item)| match item {
                Value::String(s) => Ok(s.clone()),
                _ => Err(format!("{path}[{i}]: expected a string")),
            })
            .collect(),
        Some(_) => Err(format!("{path}: expected a list of strings")),
    }
}

fn arr(v: Option<&Value>, path: impl Display) -> R<&[Value]> {
    match v {
        None | Some(Value::Null) => Ok(&[]),
        Some(Value::Array(items)) => Ok(items),
        Some(_) => Err(format!("{path}: expected a list")),
    }
}

fn obj(v: Option<&Value>, path: impl Display) -> R<Option<&Map<String, Value>>> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(m)) => Ok(Some(m)),
        Some(_) => Err(format!("{path}: expected an object")),
    }
}

fn str_map(v: Option<&Value>, path: impl Display) -> R<Vec<(String, String)>> {
    let Some(map) = obj(v, &path)? else {
        return Ok(Vec::new());
    };
    let mut out = Vec::with_capacity(map.len());
    for (k, v) in map {
        match v {
            Value::String(s) => out.push((k.clone(), s.clone())),
            Value::Null => out.push((k.clone(), String::new())),
            _ => return Err(format!("{path}.{k}: expected a string")),
        }
    }
    out.sort();
    Ok(out)
}

fn port_number(v: Option<&Value>, path: impl Display) -> R<Option<i64>> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => match n.as_i64() {
            Some(p) if (0..=65535).contains(&p) => Ok(Some(p)),
            _ => Err(format!("{path}: not a port number")),
        },
        Some(_) => Err(format!("{path}: expected a number")),
    }
}

fn export_rows(entries: &[String], ns: &str) -> Vec<(String, String)> {
    entries
        .iter()
        .map(|e| {
            let scope = if e == "." { ns.to_string() } else { e.clone() };
            (scope, e.clone())
        })
        .collect()
}

/// Istio's visibility scopes of an exportTo list: `*` if empty or containing `*`, else the entries.
fn visibility(export: &[(String, String)]) -> Vec<String> {
    if export.is_empty() || export.iter().any(|(s, _)| s == "*") {
        vec!["*".to_string()]
    } else {
        let mut scopes: Vec<String> = export.iter().map(|(s, _)| s.clone()).collect();
        scopes.dedup();
        scopes
    }
}

/// Projects one object. `default_namespace` applies to namespaced objects without one.
pub(crate) fn project(value: &Value, default_namespace: &str) -> Projected {
    let api_version = value.get("apiVersion").and_then(Value::as_str);
    let kind = value.get("kind").and_then(Value::as_str);
    let (Some(api_version), Some(kind)) = (api_version, kind) else {
        return Projected::NoIdentity("object has no apiVersion or kind".into());
    };
    let group = group_of(api_version);
    if !is_known(group, kind) {
        return Projected::Unknown(format!("{api_version}/{kind}"));
    }
    let Some(key) = ObjectKey::from_value(value, default_namespace) else {
        return Projected::NoIdentity(format!("{kind} has no metadata.name"));
    };
    if key.name.is_empty() {
        return Projected::NoIdentity(format!("{kind} has an empty metadata.name"));
    }
    let mut projection = Projection {
        key,
        api_version: api_version.to_string(),
        created: None,
        owner: None,
        contributors: None,
        managed: false,
        suppress: None,
        rows: Rows::default(),
    };
    if let Err(message) = fill(&mut projection, value) {
        projection.rows = Rows {
            undecodable: Some(message),
            ..Rows::default()
        };
    }
    Projected::Object(Box::new(projection))
}

/// A projection for an object that failed to decode elsewhere (`Engine::record_undecodable`).
pub(crate) fn undecodable(key: &ObjectKey, api_version: &str, message: &str) -> Projection {
    Projection {
        key: key.clone(),
        api_version: api_version.to_string(),
        created: None,
        owner: None,
        contributors: None,
        managed: false,
        suppress: None,
        rows: Rows {
            undecodable: Some(message.to_string()),
            ..Rows::default()
        },
    }
}

fn fill(p: &mut Projection, value: &Value) -> R<()> {
    let metadata = obj(value.get("metadata"), "metadata")?;
    if let Some(md) = metadata {
        p.created =
            str_at(md.get("creationTimestamp"), "metadata.creationTimestamp")?.map(str::to_string);
        let annotations = str_map(md.get("annotations"), "metadata.annotations")?;
        for (k, v) in &annotations {
            match k.as_str() {
                meshservice_api::ownership::OWNER_ANNOTATION => p.owner = Some(v.clone()),
                meshservice_api::ownership::CONTRIBUTORS_ANNOTATION => {
                    p.contributors = Some(v.clone())
                }
                SUPPRESS_ANNOTATION => p.suppress = Some(v.clone()),
                _ => {}
            }
        }
        let labels = str_map(md.get("labels"), "metadata.labels")?;
        p.managed = labels.iter().any(|(k, v)| {
            k == meshservice_api::ownership::MANAGED_BY_LABEL
                && v == meshservice_api::ownership::MANAGED_BY_VALUE
        });
        if p.key.kind == "Pod" && p.key.group.is_empty() {
            p.rows.label = labels;
        }
        if p.key.kind == "Service"
            && p.key.group.is_empty()
            && let Some((_, v)) = annotations
                .iter()
                .find(|(k, _)| k == SERVICE_EXPORT_TO_ANNOTATION)
        {
            {
                let entries: Vec<String> = v
                    .split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
                    .collect();
                p.rows.export_to = export_rows(&entries, &p.key.namespace);
            }
        }
    }
    let empty = Value::Object(Map::new());
    let spec = match value.get("spec") {
        None | Some(Value::Null) => &empty,
        Some(v @ Value::Object(_)) => v,
        Some(_) => return Err("spec: expected an object".into()),
    };
    let ns = p.key.namespace.clone();
    match (p.key.group.as_str(), p.key.kind.as_str()) {
        ("networking.istio.io", "VirtualService") => virtual_service(&mut p.rows, spec, &ns),
        ("networking.istio.io", "Gateway") => gateway(&mut p.rows, spec, &ns),
        ("networking.istio.io", "DestinationRule") => destination_rule(&mut p.rows, spec, &ns),
        ("networking.istio.io", "ServiceEntry") => service_entry(&mut p.rows, spec, &ns),
        ("networking.istio.io", "Sidecar") => {
            let ws = obj(spec.get("workloadSelector"), "spec.workloadSelector")?;
            let labels = str_map(
                ws.and_then(|w| w.get("labels")),
                "spec.workloadSelector.labels",
            )?;
            p.rows.sidecar = Some(labels.len() as i64);
            p.rows.selector = labels;
            Ok(())
        }
        ("", "Service") => service(&mut p.rows, spec, &ns, &p.key.name),
        ("", "Namespace") | ("", "Pod") => Ok(()),
        ("", "Secret") => {
            p.rows.secret = Some(str_at(value.get("type"), "type")?.map(str::to_string));
            Ok(())
        }
        ("gateway.networking.k8s.io", "Gateway") => {
            for (i, l) in arr(spec.get("listeners"), "spec.listeners")?
                .iter()
                .enumerate()
            {
                let host = str_at(
                    l.get("hostname"),
                    format_args!("spec.listeners[{i}].hostname"),
                )?;
                let host = host.unwrap_or("*").to_string();
                p.rows.gw_server.push(Server {
                    sidx: i as i64,
                    hidx: 0,
                    port: None,
                    protocol: None,
                    bind: String::new(),
                    raw: host.clone(),
                    vis_ns: None,
                    host,
                    credential: None,
                });
            }
            Ok(())
        }
        ("mesh.istio.operator", "MeshService") => mesh_service(&mut p.rows, value, &ns),
        _ => Ok(()),
    }
}

fn virtual_service(rows: &mut Rows, spec: &Value, ns: &str) -> R<()> {
    let hosts = strs(spec.get("hosts"), "spec.hosts")?;
    let gateways = strs(spec.get("gateways"), "spec.gateways")?;
    let export = strs(spec.get("exportTo"), "spec.exportTo")?;
    rows.export_to = export_rows(&export, ns);
    let mesh = gateways.is_empty() || gateways.iter().any(|g| g == "mesh");
    let export_all = export.is_empty() || export.iter().any(|e| e == "*");
    rows.vs_mesh = Some(mesh);
    rows.vs_export_all = Some(export_all);
    for h in &hosts {
        rows.vs_host.push((h.clone(), to_fqdn(ns, h)));
    }
    for (i, g) in gateways.iter().enumerate() {
        if g == "mesh" || g.contains("~istio-autogenerated-k8s-gateway~") {
            continue;
        }
        let (gw_ns, gw_name) = match g.split_once('/') {
            Some((n, name)) => (n.to_string(), name.to_string()),
            None => (ns.to_string(), g.clone()),
        };
        rows.vs_gateway.push((i as i64, g.clone(), gw_ns, gw_name));
    }
    if mesh {
        for scope in visibility(&rows.export_to) {
            for h in &hosts {
                rows.mesh_host.push((scope.clone(), to_fqdn(ns, h)));
            }
        }
    }
    let mut idx = 0i64;
    let mut push = |rows: &mut Rows, d: Option<&Value>, path: String, mirror: bool| -> R<()> {
        let d = obj(d, &path)?;
        let host = str_at(d.and_then(|d| d.get("host")), format_args!("{path}.host"))?
            .unwrap_or("")
            .to_string();
        let port_obj = obj(d.and_then(|d| d.get("port")), format_args!("{path}.port"))?;
        let port = port_number(
            port_obj.and_then(|p| p.get("number")),
            format_args!("{path}.port.number"),
        )?;
        let port = port.filter(|p| *p != 0);
        let subset = str_at(
            d.and_then(|d| d.get("subset")),
            format_args!("{path}.subset"),
        )?
        .filter(|s| !s.is_empty())
        .map(str::to_string);
        rows.dest.push(Dest {
            idx,
            mirror,
            fqdn: to_fqdn(ns, &host),
            skey: resource_key(ns, &host),
            host,
            port,
            subset,
            path,
        });
        idx += 1;
        Ok(())
    };
    for section in ["http", "tcp", "tls"] {
        for (i, rule) in arr(spec.get(section), format_args!("spec.{section}"))?
            .iter()
            .enumerate()
        {
            for (j, route) in arr(rule.get("route"), format_args!("spec.{section}[{i}].route"))?
                .iter()
                .enumerate()
            {
                push(
                    rows,
                    route.get("destination"),
                    format!("/spec/{section}/{i}/route/{j}/destination"),
                    false,
                )?;
            }
            if section == "http" {
                if let Some(m) = rule.get("mirror").filter(|m| !m.is_null()) {
                    push(rows, Some(m), format!("/spec/http/{i}/mirror"), true)?;
                }
                for (j, m) in arr(rule.get("mirrors"), format_args!("spec.http[{i}].mirrors"))?
                    .iter()
                    .enumerate()
                {
                    push(
                        rows,
                        m.get("destination"),
                        format!("/spec/http/{i}/mirrors/{j}/destination"),
                        true,
                    )?;
                }
            }
        }
    }
    Ok(())
}

fn selector_string(labels: &[(String, String)]) -> String {
    labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

fn gateway(rows: &mut Rows, spec: &Value, ns: &str) -> R<()> {
    let selector = str_map(spec.get("selector"), "spec.selector")?;
    let servers = arr(spec.get("servers"), "spec.servers")?;
    rows.gateway = Some((
        selector_string(&selector),
        selector.len() as i64,
        servers.len() as i64,
    ));
    rows.selector = selector;
    for (i, server) in servers.iter().enumerate() {
        let path = format_args!("spec.servers[{i}]");
        let port = obj(server.get("port"), format_args!("{path}.port"))?;
        let number = port_number(
            port.and_then(|p| p.get("number")),
            format_args!("{path}.port.number"),
        )?;
        let protocol = str_at(
            port.and_then(|p| p.get("protocol")),
            format_args!("{path}.port.protocol"),
        )?;
        let bind = str_at(server.get("bind"), format_args!("{path}.bind"))?
            .unwrap_or("")
            .to_string();
        let tls = obj(server.get("tls"), format_args!("{path}.tls"))?;
        let credential = str_at(
            tls.and_then(|t| t.get("credentialName")),
            format_args!("{path}.tls.credentialName"),
        )?
        .filter(|c| !c.is_empty())
        .map(str::to_string);
        let hosts = strs(server.get("hosts"), format_args!("{path}.hosts"))?;
        // Istio's sanitizeServerHostNamespace: `*/*` turns the whole server into `*`.
        let all = hosts.iter().any(|h| h == "*/*");
        let base = Server {
            sidx: i as i64,
            port: number,
            protocol: protocol.map(str::to_string),
            bind,
            credential,
            ..Server::default()
        };
        if hosts.is_empty() {
            rows.gw_server.push(base);
            continue;
        }
        for (j, raw) in hosts.iter().enumerate() {
            let (vis_ns, host) = if all {
                (None, "*".to_string())
            } else {
                match raw.split_once('/') {
                    Some((".", h)) => (Some(ns.to_string()), h.to_string()),
                    Some(("*", h)) => (None, h.to_string()),
                    Some((n, h)) => (Some(n.to_string()), h.to_string()),
                    None => (None, raw.clone()),
                }
            };
            rows.gw_server.push(Server {
                hidx: j as i64,
                raw: raw.clone(),
                vis_ns,
                host,
                ..base.clone()
            });
        }
    }
    Ok(())
}

fn destination_rule(rows: &mut Rows, spec: &Value, ns: &str) -> R<()> {
    let host = str_at(spec.get("host"), "spec.host")?
        .unwrap_or("")
        .to_string();
    let export = strs(spec.get("exportTo"), "spec.exportTo")?;
    rows.export_to = export_rows(&export, ns);
    let export_all = export.is_empty() || export.iter().any(|e| e == "*");
    let subsets = arr(spec.get("subsets"), "spec.subsets")?;
    for (i, s) in subsets.iter().enumerate() {
        if let Some(name) = str_at(s.get("name"), format_args!("spec.subsets[{i}].name"))? {
            rows.dr_subset.push(name.to_string());
        }
    }
    rows.dr = Some((
        host.clone(),
        to_fqdn(ns, &host),
        resource_key(ns, &host),
        export_all,
        subsets.len() as i64,
    ));
    Ok(())
}

fn service_entry(rows: &mut Rows, spec: &Value, ns: &str) -> R<()> {
    let hosts = strs(spec.get("hosts"), "spec.hosts")?;
    let export = strs(spec.get("exportTo"), "spec.exportTo")?;
    rows.export_to = export_rows(&export, ns);
    for (i, port) in arr(spec.get("ports"), "spec.ports")?.iter().enumerate() {
        let path = format_args!("spec.ports[{i}]");
        let Some(number) = port_number(port.get("number"), format_args!("{path}.number"))? else {
            return Err(format!("{path}.number: missing"));
        };
        let name = str_at(port.get("name"), format_args!("{path}.name"))?.map(str::to_string);
        let protocol =
            str_at(port.get("protocol"), format_args!("{path}.protocol"))?.map(str::to_string);
        let target = port_number(port.get("targetPort"), format_args!("{path}.targetPort"))?;
        rows.port.push((number, name, protocol, target));
    }
    for scope in visibility(&rows.export_to) {
        for h in &hosts {
            rows.provider
                .push((scope.clone(), h.clone(), to_fqdn(ns, h)));
        }
    }
    Ok(())
}

fn service(rows: &mut Rows, spec: &Value, ns: &str, name: &str) -> R<()> {
    let selector = str_map(spec.get("selector"), "spec.selector")?;
    rows.svc_sel_n = Some(selector.len() as i64);
    rows.selector = selector;
    for (i, port) in arr(spec.get("ports"), "spec.ports")?.iter().enumerate() {
        let path = format_args!("spec.ports[{i}]");
        let Some(number) = port_number(port.get("port"), format_args!("{path}.port"))? else {
            return Err(format!("{path}.port: missing"));
        };
        let name = str_at(port.get("name"), format_args!("{path}.name"))?.map(str::to_string);
        let protocol = str_at(port.get("protocol"), format_args!("{path}.protocol"))?
            .unwrap_or("TCP")
            .to_string();
        // a named targetPort resolves only against the Pod; Istio then falls back to `port`
        let target = match port.get("targetPort") {
            Some(Value::Number(n)) => n.as_i64().filter(|t| *t != 0),
            _ => None,
        };
        rows.port.push((number, name, Some(protocol), target));
    }
    // Istio's InitServiceEntryHostMap: a Service is a one-host ServiceEntry; scopes from the
    // `networking.istio.io/exportTo` annotation, `*` when absent.
    let host = to_fqdn(ns, name);
    for scope in visibility(&rows.export_to) {
        rows.provider.push((scope, name.to_string(), host.clone()));
    }
    Ok(())
}

fn mesh_service(rows: &mut Rows, value: &Value, ns: &str) -> R<()> {
    let ms: meshservice_api::MeshService =
        serde_json::from_value(value.clone()).map_err(|e| format!("MeshService: {e}"))?;
    let spec = &ms.spec;
    let (gw_ns, gw_name, managed, credential) = match &spec.gateway {
        Some(g) => (
            Some(g.effective_namespace(ns).to_string()),
            Some(g.name.clone()),
            g.managed,
            g.tls.as_ref().map(|t| t.credential_name.clone()),
        ),
        None => (None, None, false, None),
    };
    rows.ms = Some((
        spec.service_name.clone(),
        gw_ns,
        gw_name,
        managed,
        credential,
    ));
    for h in &spec.hosts {
        rows.ms_host.push((h.clone(), to_fqdn(ns, h)));
    }
    for p in &spec.ports {
        rows.ms_port
            .push((p.port as i64, p.effective_protocol().as_str().to_string()));
    }
    let export = spec.export_to.clone().unwrap_or_default();
    rows.export_to = export_rows(&export, ns);
    Ok(())
}

pub(crate) fn wild(host: &str) -> bool {
    is_wild(host)
}
