//! IST0101 (host, mirror host, host:port) and IST0112: route and mirror destinations must resolve
//! to a Service or ServiceEntry visible to the VirtualService, on a port it exposes.
//!
//! Istio's `util.GetDestinationHost`: (a) a provider exported to `*` with the destination's FQDN;
//! (b) else one exported to a namespace in the VirtualService's own exportTo (`.` = its namespace;
//! none = its namespace); (c) else a wildcard ServiceEntry host (scope `*` or the VirtualService's
//! namespace) that is a suffix of the host. The first step that finds something decides.

use super::*;
use crate::host::split_cluster_local;

pub(crate) static HOST: RuleInfo = rule(
    "IST0101",
    "vs-destination-host-not-found",
    Severity::Error,
    "A route destination host resolves to no Service or ServiceEntry visible to the VirtualService.",
    "Every `http/tcp/tls[].route[].destination.host` must be a Kubernetes Service (`name`, expanded to \
     `name.<vs-namespace>.svc.cluster.local`, or the full `name.ns.svc.cluster.local`) or a ServiceEntry host, \
     exported (exportTo / `networking.istio.io/exportTo`) to the VirtualService's namespace. Hosts with a dot \
     are not expanded (`reviews.default` is not `reviews.default.svc.cluster.local`, as in Istio). Traffic to \
     an unknown host gets a 503. Example: `destination: {host: ratings}` with no Service `ratings`.",
);

pub(crate) static MIRROR: RuleInfo = rule(
    "IST0101",
    "vs-mirror-host-not-found",
    Severity::Error,
    "A mirror destination host resolves to no Service or ServiceEntry visible to the VirtualService.",
    "Same resolution as vs-destination-host-not-found, for `http[].mirror` and `http[].mirrors[].destination`. \
     Mirrored traffic to an unknown host is silently dropped.",
);

pub(crate) static PORT: RuleInfo = rule(
    "IST0101",
    "vs-destination-port-not-found",
    Severity::Error,
    "A destination names a port its Service or ServiceEntry does not expose.",
    "When `destination.port.number` is set it must be one of the ports of the resolved Service or \
     ServiceEntry (Istio's `host:port` variant of ReferencedResourceNotFound). Example: `reviews:9090` when \
     Service `reviews` exposes only 9080.",
);

pub(crate) static SELECTOR: RuleInfo = rule(
    "IST0112",
    "vs-destination-port-selector-required",
    Severity::Error,
    "A destination without a port points at a service with several ports.",
    "Istio cannot tell which port of a multi-port Service or ServiceEntry a destination without \
     `port.number` means. Example: `destination: {host: web}` where Service `web` exposes 80 and 443.",
);

// The three resolution steps, as conditions on a provider `p` of destination `d`.
macro_rules! step1 {
    () => {
        "p.fqdn = d.fqdn AND p.scope = '*'"
    };
}
macro_rules! step2 {
    () => {
        "p.fqdn = d.fqdn AND ( \
           EXISTS (SELECT 1 FROM export_to e WHERE e.obj = d.obj AND e.scope = p.scope) \
           OR (p.scope = (SELECT ns FROM object WHERE id = d.obj) \
               AND NOT EXISTS (SELECT 1 FROM export_to e2 WHERE e2.obj = d.obj)))"
    };
}
macro_rules! step3 {
    () => {
        "p.wild = 1 AND (p.scope = '*' OR p.scope = (SELECT ns FROM object WHERE id = d.obj)) \
         AND ends_with(CASE WHEN substr(d.host, 1, 1) = '*' THEN substr(d.host, 2) ELSE d.host END, p.suffix)"
    };
}
/// Whether the providers of one step (`p`, joined to their ports `pt`) make destination `d` a
/// problem; NULL when the step found no provider.
macro_rules! problem {
    ($step:expr) => {
        concat!(
            "(SELECT CASE WHEN count(*) = 0 THEN NULL \
               WHEN d.port IS NULL THEN coalesce(min(pt.number) < max(pt.number), 0) \
               ELSE coalesce(max(pt.number = d.port), 0) = 0 END \
             FROM provider p LEFT JOIN port pt ON pt.obj = p.obj WHERE ",
            $step,
            ")"
        )
    };
}

pub(crate) static ANALYSIS: Analysis = Analysis {
    rules: &[&HOST, &MIRROR, &PORT, &SELECTOR],
    reports_on: &["VirtualService"],
    // Per destination, in one pass: the common case (a port, and a provider exported to `*`
    // exposing it) is one EXISTS probe; otherwise each resolution step in turn (`coalesce` stops
    // at the first that finds providers) tells whether its providers' ports make a problem.
    // `min() < max()` is "more than one distinct port" without the temporary b-tree of
    // `count(DISTINCT)`. The earlier form materialised every destination, its providers and their
    // ports through several CTEs, a UNION and a GROUP BY (438 ms at 100k). Providers are listed
    // only for the rows returned (the problems).
    sql: concat!(
        "SELECT d.obj, d.idx, d.mirror, d.host, d.fqdn, d.port, d.path, coalesce( \
           (SELECT group_concat(p.obj) FROM provider p WHERE ",
        step1!(),
        "), \
           (SELECT group_concat(p.obj) FROM provider p WHERE ",
        step2!(),
        "), \
           (SELECT group_concat(p.obj) FROM provider p WHERE ",
        step3!(),
        ")), NULL \
         FROM dest d \
         WHERE {t} AND CASE \
           WHEN d.port IS NOT NULL AND EXISTS (SELECT 1 FROM provider p JOIN port pt ON pt.obj = p.obj \
             WHERE ",
        step1!(),
        " AND pt.number = d.port) THEN 0 \
           ELSE coalesce(",
        problem!(step1!()),
        ", ",
        problem!(step2!()),
        ", ",
        problem!(step3!()),
        ", 1) END \
         ORDER BY d.obj, d.idx"
    ),
    // For one VirtualService, per destination, the first resolution step that finds providers
    // (`coalesce` stops there). The exportTo test is EXISTS rather than `IN (subquery)`, which
    // would build a temporary b-tree per destination.
    targeted_sql: Some(
        "SELECT d.obj, d.idx, d.mirror, d.host, d.fqdn, d.port, d.path, coalesce( \
            (SELECT group_concat(p.obj) FROM provider p WHERE p.fqdn = d.fqdn AND p.scope = '*'), \
            (SELECT group_concat(p.obj) FROM provider p WHERE p.fqdn = d.fqdn AND ( \
                EXISTS (SELECT 1 FROM export_to e WHERE e.obj = d.obj AND e.scope = p.scope) \
                OR (p.scope = o.ns AND NOT EXISTS (SELECT 1 FROM export_to e2 WHERE e2.obj = d.obj)))), \
            (SELECT group_concat(p.obj) FROM provider p WHERE p.wild = 1 AND (p.scope = '*' OR p.scope = o.ns) \
                AND ends_with(CASE WHEN substr(d.host, 1, 1) = '*' THEN substr(d.host, 2) ELSE d.host END, p.suffix))), \
            NULL \
          FROM dest d JOIN object o ON o.id = d.obj WHERE {t} ORDER BY d.obj, d.idx",
    ),
    targeted_by_kind: &[],
    targets: &[("{t}", "d.obj = ?1")],
    once_per_object: false,
    guard: None,
    rule_of_row: Some(rule_of_row),
    build,
};

/// The rule a row of the full query becomes (as `build` decides, without building the finding):
/// no provider → the host (or mirror host) is not found; else no port → the selector is required;
/// else the port is not exposed (the full query returns problem rows only).
fn rule_of_row(row: &Row) -> &'static RuleInfo {
    match (row.ids(7).is_empty(), row.i(2) != 0, row.oi(5)) {
        (true, true, _) => &MIRROR,
        (true, false, _) => &HOST,
        (false, _, None) => &SELECTOR,
        (false, _, Some(_)) => &PORT,
    }
}

fn build(ctx: &Ctx, row: &Row) -> Result<Option<Hit>, Error> {
    let vs_id = row.i(0);
    let mirror = row.i(2) != 0;
    let host = row.s(3);
    let fqdn = row.s(4);
    let port = row.oi(5);
    let pointer = row.s(6);
    let path = pointer_to_path(&pointer);
    let providers = row.ids(7);
    if providers.is_empty() {
        let vs = ctx.obj(vs_id)?;
        let (rule, what) = if mirror {
            (&MIRROR, "mirror host")
        } else {
            (&HOST, "host")
        };
        let hit = Hit::new(
            rule,
            vs_id,
            format!("Referenced {what} not found: \"{host}\""),
        )
        .link(
            vs.display(),
            format!("{path}.host"),
            format!("{fqdn}: no visible Service or ServiceEntry"),
        )
        .repair(create_provider(ctx, &vs, &host, &fqdn, port)?);
        return Ok(Some(Hit {
            host: Some(host),
            port: port.map(|p| p as u32),
            ..hit
        }));
    }
    let mut ports: Vec<i64> = Vec::new();
    for p in &providers {
        for r in ctx.rows("SELECT number FROM port WHERE obj = ?1", [*p])? {
            ports.push(r.i(0));
        }
    }
    ports.sort();
    ports.dedup();
    // the targeted query returns every destination: keep only the problems
    let problem = match port {
        None => ports.len() > 1,
        Some(p) => !ports.contains(&p),
    };
    if !problem {
        return Ok(None);
    }
    // names are looked up only for a finding: most destinations of a targeted run are fine
    let vs = ctx.obj(vs_id)?;
    let first = ctx.obj(providers[0])?;
    let hit = match port {
        None => {
            let list = ports
                .iter()
                .map(i64::to_string)
                .collect::<Vec<_>>()
                .join(", ");
            let message = format!(
                "This VirtualService routes to a service \"{host}\" that exposes multiple ports [{list}]. \
                 Specifying a port in the destination is required to disambiguate."
            );
            let number = ports.first().copied().unwrap_or(80);
            Hit::new(&SELECTOR, vs_id, message)
                .link(vs.display(), format!("{path}.host"), format!("{} (ports {list})", first.display()))
                .repair(patch(
                    &vs,
                    json!([{"op": "add", "path": format!("{pointer}/port"), "value": {"number": number}}]),
                    format!("route {path} to port {number} of {} (pick the port the traffic is meant for)", first.display()),
                ))
        }
        Some(p) => {
            let message = format!("Referenced host:port not found: \"{host}:{p}\"");
            let (op_path, value) = if ports.is_empty() {
                ("/spec/ports".to_string(), port_value(&first, p, true))
            } else {
                ("/spec/ports/-".to_string(), port_value(&first, p, false))
            };
            Hit::new(&PORT, vs_id, message)
                .link(
                    vs.display(),
                    format!("{path}.port.number"),
                    format!("{} has no port {p}", first.display()),
                )
                .repair(patch(
                    &first,
                    json!([{"op": "add", "path": op_path, "value": value}]),
                    format!(
                        "expose port {p} on {} (or route {path} to one of its ports)",
                        first.display()
                    ),
                ))
        }
    };
    Ok(Some(Hit {
        host: Some(host),
        port: port.map(|p| p as u32),
        related: providers,
        ..hit
    }))
}

fn port_value(provider: &ObjInfo, port: i64, as_list: bool) -> Value {
    let one = if provider.key.kind == "Service" {
        json!({"name": format!("http-{port}"), "port": port})
    } else {
        json!({"number": port, "name": format!("http-{port}"), "protocol": "HTTP"})
    };
    if as_list { json!([one]) } else { one }
}

/// Create the Service (cluster-local host) or ServiceEntry (anything else) the destination names.
fn create_provider(
    ctx: &Ctx,
    vs: &ObjInfo,
    host: &str,
    fqdn: &str,
    port: Option<i64>,
) -> Result<RepairAction, Error> {
    if host.is_empty() {
        return Ok(RepairAction::none(
            "no safe automatic repair: the destination has no host; set destination.host",
        ));
    }
    let number = port.unwrap_or(80);
    if let Some((ns, name)) = split_cluster_local(fqdn) {
        if ctx.find("", "Service", ns, name)?.is_some() {
            return Ok(RepairAction::none(format!(
                "no safe automatic repair: Service {ns}/{name} exists but is not exported to namespace {} \
                 (check its networking.istio.io/exportTo annotation and the VirtualService's exportTo)",
                vs.key.namespace
            )));
        }
        let object = json!({
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": name, "namespace": ns},
            "spec": {"selector": {"app": name}, "ports": [{"name": format!("http-{number}"), "port": number}]},
        });
        return Ok(create(
            object,
            format!(
                "create Service {ns}/{name} (check its selector and ports), or correct the destination host"
            ),
        ));
    }
    let name = dns_name(host);
    let object = json!({
        "apiVersion": "networking.istio.io/v1",
        "kind": "ServiceEntry",
        "metadata": {"name": name, "namespace": vs.key.namespace},
        "spec": {
            "hosts": [host],
            "ports": [{"number": number, "name": format!("http-{number}"), "protocol": "HTTP"}],
            "location": "MESH_EXTERNAL",
            "resolution": "DNS",
        },
    });
    Ok(create(
        object,
        format!(
            "declare {host} with a ServiceEntry in namespace {} (or correct the destination host)",
            vs.key.namespace
        ),
    ))
}
