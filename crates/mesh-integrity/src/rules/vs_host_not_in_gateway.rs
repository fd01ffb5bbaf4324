//! IST0132: no host of a VirtualService is served by a gateway it references.

use super::*;

pub(crate) static RULE: RuleInfo = rule(
    "IST0132",
    "vs-host-not-in-gateway",
    Severity::Warning,
    "No host of a VirtualService is served by a gateway it is bound to.",
    "For each gateway in `spec.gateways` (except `mesh`), at least one VirtualService host must match \
     (Istio wildcard matching) a host of one of the gateway's servers that is visible to the VirtualService's \
     namespace (`./h` is the gateway's namespace, `*/h` everyone, `ns/h` only `ns`). As in Istio, this is also \
     reported when the gateway does not exist. Example: VirtualService host `shop.example.com` bound to a \
     Gateway that serves only `*.internal.example.com`.",
);

/// Whether a Gateway of API group `$group` named by `g` serves a host of the VirtualService.
macro_rules! serves_a_host {
    ($group:literal) => {
        concat!(
            "EXISTS (SELECT 1 FROM object go JOIN gw_server s ON s.obj = go.id JOIN vs_host h ON h.obj = g.obj \
               WHERE go.grp = '", $group, "' AND go.kind = 'Gateway' AND go.ns = g.gw_ns AND go.name = g.gw_name \
                 AND s.host <> '' AND (s.vis_ns IS NULL OR s.vis_ns = (SELECT o.ns FROM object o WHERE o.id = g.obj)) \
                 AND host_matches(s.host, h.host))"
        )
    };
}

pub(crate) static ANALYSIS: Analysis = Analysis {
    rules: &[&RULE],
    reports_on: &["VirtualService"],
    // The gateway is probed in the object key index once per API group (the index holds every
    // column compared; the second probe runs only when the first finds no served host), rather
    // than through (kind, ns, name) and a read of the object row for its group. The
    // VirtualService's namespace is read only where needed: for a namespace-restricted server
    // host, and for the rows returned. No `IN` list, which would build a temporary b-tree on
    // every run.
    sql: concat!(
        "SELECT g.obj, g.idx, g.gw_ns, g.gw_name, (SELECT o.ns FROM object o WHERE o.id = g.obj), \
           (SELECT group_concat(h.host, ', ' ORDER BY h.idx) FROM vs_host h WHERE h.obj = g.obj), \
           (SELECT go.id FROM object go WHERE go.kind = 'Gateway' AND go.grp = 'networking.istio.io' AND go.ns = g.gw_ns AND go.name = g.gw_name), \
           (SELECT go.id FROM object go WHERE go.kind = 'Gateway' AND go.grp = 'gateway.networking.k8s.io' AND go.ns = g.gw_ns AND go.name = g.gw_name) \
         FROM vs_gateway g \
         WHERE {t} AND NOT ",
        serves_a_host!("networking.istio.io"),
        " \
           AND NOT ",
        serves_a_host!("gateway.networking.k8s.io"),
        " \
         ORDER BY g.obj, g.idx"
    ),
    targeted_sql: None,
    targeted_by_kind: &[],
    targets: &[("{t}", "g.obj = ?1")],
    once_per_object: false,
    guard: None,
    rule_of_row: None,
    build,
};

fn build(ctx: &Ctx, row: &Row) -> Result<Option<Hit>, Error> {
    let vs_id = row.i(0);
    let vs = ctx.obj(vs_id)?;
    let gw = format!("{}/{}", row.s(2), row.s(3));
    let hosts = row.s(5);
    let message = format!(
        "one or more host(s) [{hosts}] defined in VirtualService {} not found in Gateway {gw}",
        vs.nsname()
    );
    let first_host = ctx.rows(
        "SELECT host FROM vs_host WHERE obj = ?1 ORDER BY idx LIMIT 1",
        [vs_id],
    )?;
    let mut hit = Hit::new(&RULE, vs_id, message);
    let state = match (row.oi(6), row.oi(7)) {
        (Some(_), _) | (_, Some(_)) => "exists but serves none of them",
        _ => "not found",
    };
    hit = hit.link(
        vs.display(),
        format!("spec.gateways[{}]", row.i(1)),
        format!("Gateway {gw}: {state}"),
    );
    let repair = match (row.oi(6), row.oi(7), first_host.first()) {
        (_, _, None) => RepairAction::none(
            "no safe automatic repair: the VirtualService has no hosts; add the hosts it should serve",
        ),
        (Some(gw_id), _, Some(h)) => {
            let gateway = ctx.obj(gw_id)?;
            patch(
                &gateway,
                add_gateway_host(ctx, gw_id, 0, &h.s(0), 80)?,
                format!("add host {} to the first server of Gateway {gw}", h.s(0)),
            )
        }
        (None, Some(_), Some(h)) => RepairAction::none(format!(
            "no safe automatic repair: add a listener with hostname {} to the Gateway API Gateway {gw}",
            h.s(0)
        )),
        (None, None, Some(_)) => {
            super::vs_gateway_not_found::create_gateway_for(ctx, vs_id, &row.s(2), &row.s(3))?
        }
    };
    hit = hit.repair(repair);
    hit.gateway = Some(gw);
    Ok(Some(hit))
}
