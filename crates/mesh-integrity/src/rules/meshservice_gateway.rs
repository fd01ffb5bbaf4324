//! MSH0202 / MSH0203: the unmanaged gateway a MeshService references is missing, or does not
//! serve its hosts. A managed gateway is created by the operator, so neither applies to it.

use super::*;

pub(crate) static NOT_FOUND_RULE: RuleInfo = rule(
    "MSH0202",
    "meshservice-gateway-not-found",
    Severity::Error,
    "The unmanaged gateway a MeshService references does not exist.",
    "With `gateway.managed: false` (the default) the Gateway must already exist (Istio Gateway or Gateway API \
     Gateway, `gateway.namespace` defaulting to the MeshService's). Status ResolvedRefs=False, reason \
     GatewayNotFound. Example: `gateway: {name: public, namespace: istio-system}` with no such Gateway.",
);

pub(crate) static NOT_SERVED_RULE: RuleInfo = rule(
    "MSH0203",
    "meshservice-host-not-served",
    Severity::Error,
    "The unmanaged gateway a MeshService references serves none of the names of one of its hosts.",
    "Each MeshService host must match (Istio wildcard matching) a server host of its unmanaged Gateway that is \
     visible to the MeshService's namespace (`ns/host` prefixes as in IST0132). Reported per host, with the \
     structured host. Status ResolvedRefs=False, reason HostNotServed.",
);

pub(crate) static NOT_FOUND: Analysis = Analysis {
    rules: &[&NOT_FOUND_RULE],
    reports_on: &["MeshService"],
    sql: "SELECT m.obj, m.gw_ns, m.gw_name FROM ms m \
          WHERE {t} AND m.gw_name IS NOT NULL AND m.gw_managed = 0 \
            AND NOT EXISTS (SELECT 1 FROM object o WHERE o.kind = 'Gateway' \
              AND o.grp IN ('networking.istio.io', 'gateway.networking.k8s.io') AND o.ns = m.gw_ns AND o.name = m.gw_name) \
          ORDER BY m.obj",
    targeted_sql: None,
    targeted_by_kind: &[],
    targets: &[("{t}", "m.obj = ?1")],
    once_per_object: false,
    guard: Some("SELECT EXISTS (SELECT 1 FROM ms)"),
    rule_of_row: None,
    build: build_not_found,
};

pub(crate) static NOT_SERVED: Analysis = Analysis {
    rules: &[&NOT_SERVED_RULE],
    reports_on: &["MeshService"],
    sql: "SELECT m.obj, h.host, h.idx, m.gw_ns, m.gw_name, max(CASE WHEN go.grp = 'networking.istio.io' THEN go.id END) \
          FROM ms m JOIN object mo ON mo.id = m.obj JOIN ms_host h ON h.obj = m.obj \
          JOIN object go ON go.kind = 'Gateway' AND go.grp IN ('networking.istio.io', 'gateway.networking.k8s.io') \
            AND go.ns = m.gw_ns AND go.name = m.gw_name \
          WHERE {t} AND m.gw_managed = 0 \
            AND NOT EXISTS (SELECT 1 FROM object g2 JOIN gw_server s ON s.obj = g2.id WHERE g2.kind = 'Gateway' \
              AND g2.grp IN ('networking.istio.io', 'gateway.networking.k8s.io') AND g2.ns = m.gw_ns AND g2.name = m.gw_name \
              AND s.host <> '' AND (s.vis_ns IS NULL OR s.vis_ns = mo.ns) AND host_matches(s.host, h.host)) \
          GROUP BY m.obj, h.idx ORDER BY m.obj, h.idx",
    targeted_sql: None,
    targeted_by_kind: &[],
    targets: &[("{t}", "m.obj = ?1")],
    once_per_object: false,
    guard: Some("SELECT EXISTS (SELECT 1 FROM ms)"),
    rule_of_row: None,
    build: build_not_served,
};

fn ms_ports(ctx: &Ctx, ms: i64) -> Result<Vec<(i64, String)>, Error> {
    Ok(ctx
        .rows(
            "SELECT port, protocol FROM ms_port WHERE obj = ?1 ORDER BY port",
            [ms],
        )?
        .iter()
        .map(|r| (r.i(0), r.s(1)))
        .collect())
}

fn build_not_found(ctx: &Ctx, row: &Row) -> Result<Option<Hit>, Error> {
    let ms_id = row.i(0);
    let ms = ctx.obj(ms_id)?;
    let (gw_ns, gw_name) = (row.s(1), row.s(2));
    let gw = format!("{gw_ns}/{gw_name}");
    let hosts: Vec<String> = ctx
        .rows(
            "SELECT host FROM ms_host WHERE obj = ?1 ORDER BY idx",
            [ms_id],
        )?
        .iter()
        .map(|r| r.s(0))
        .collect();
    let credential = ctx
        .rows("SELECT credential FROM ms WHERE obj = ?1", [ms_id])?
        .first()
        .and_then(|r| r.os(0));
    let object = gateway_object(
        &gw_ns,
        &gw_name,
        &ms_ports(ctx, ms_id)?,
        &hosts,
        credential.as_deref(),
    );
    let mut hit = Hit::new(
        &NOT_FOUND_RULE,
        ms_id,
        format!("Gateway {gw} referenced by spec.gateway does not exist (an unmanaged gateway must exist; set managed: true to have the operator create it)"),
    )
    .link(ms.display(), "spec.gateway", format!("Gateway {gw}: not found"))
    .repair(create(object, format!("create Gateway {gw} serving the MeshService's hosts (check its selector), or set spec.gateway.managed: true")));
    hit.gateway = Some(gw);
    Ok(Some(hit))
}

fn build_not_served(ctx: &Ctx, row: &Row) -> Result<Option<Hit>, Error> {
    let ms_id = row.i(0);
    let ms = ctx.obj(ms_id)?;
    let host = row.s(1);
    let gw = format!("{}/{}", row.s(3), row.s(4));
    let mut hit = Hit::new(
        &NOT_SERVED_RULE,
        ms_id,
        format!("Gateway {gw} does not serve host {host}"),
    )
    .link(
        ms.display(),
        format!("spec.hosts[{}]", row.i(2)),
        format!("Gateway {gw}: no server host matches {host}"),
    );
    hit = match row.oi(5) {
        Some(gw_id) => {
            let gateway = ctx.obj(gw_id)?;
            let ports = ms_ports(ctx, ms_id)?;
            // the server on one of the MeshService's ports, else the first
            let mut sidx = 0;
            let mut port = ports.first().map(|p| p.0).unwrap_or(80);
            for (p, _) in &ports {
                if let Some(r) = ctx.rows("SELECT sidx FROM gw_server WHERE obj = ?1 AND port = ?2 ORDER BY sidx LIMIT 1", [gw_id, *p])?.first() {
                    sidx = r.i(0);
                    port = *p;
                    break;
                }
            }
            hit.related = vec![gw_id];
            hit.repair(patch(&gateway, add_gateway_host(ctx, gw_id, sidx, &host, port)?, format!("add host {host} to Gateway {gw}")))
        }
        None => hit.repair(RepairAction::none(format!(
            "no safe automatic repair: add a listener with hostname {host} to the Gateway API Gateway {gw}"
        ))),
    };
    hit.host = Some(host);
    hit.gateway = Some(gw);
    Ok(Some(hit))
}
