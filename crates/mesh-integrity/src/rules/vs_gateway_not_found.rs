//! IST0101 (gateway): a VirtualService names a gateway that does not exist.

use super::*;

pub(crate) static RULE: RuleInfo = rule(
    "IST0101",
    "vs-gateway-not-found",
    Severity::Error,
    "A VirtualService references a gateway that does not exist.",
    "Every entry of `spec.gateways` other than `mesh` must name an Istio Gateway (or a Gateway API Gateway): \
     `name` in the VirtualService's namespace, or `namespace/name`. Otherwise the routes are never attached and \
     traffic for the hosts falls through. Same semantics as istioctl's virtualservice.GatewayAnalyzer. Example: \
     `gateways: [istio-system/public]` with no Gateway `public` in `istio-system`.",
);

pub(crate) static ANALYSIS: Analysis = Analysis {
    rules: &[&RULE],
    reports_on: &["VirtualService"],
    // One probe of the object key index per API group: it holds every column compared, so the
    // object row is never read (the (kind, ns, name) index needs it for the group); the second
    // probe runs only when the first finds nothing. No `IN` list, which would build a temporary
    // b-tree on every run.
    sql: "SELECT g.obj, g.idx, g.ref, g.gw_ns, g.gw_name FROM vs_gateway g \
          WHERE {t} \
            AND NOT EXISTS (SELECT 1 FROM object o WHERE o.grp = 'networking.istio.io' AND o.kind = 'Gateway' \
              AND o.ns = g.gw_ns AND o.name = g.gw_name) \
            AND NOT EXISTS (SELECT 1 FROM object o WHERE o.grp = 'gateway.networking.k8s.io' AND o.kind = 'Gateway' \
              AND o.ns = g.gw_ns AND o.name = g.gw_name) \
          ORDER BY g.obj, g.idx",
    targeted_sql: None,
    targeted_by_kind: &[],
    targets: &[("{t}", "g.obj = ?1")],
    once_per_object: false,
    guard: None,
    rule_of_row: None,
    build,
};

/// Create the missing gateway, serving the VirtualService's hosts on port 80.
pub(crate) fn create_gateway_for(
    ctx: &Ctx,
    vs: i64,
    gw_ns: &str,
    gw_name: &str,
) -> Result<RepairAction, Error> {
    let hosts: Vec<String> = ctx
        .rows("SELECT host FROM vs_host WHERE obj = ?1 ORDER BY idx", [vs])?
        .iter()
        .map(|r| r.s(0))
        .collect();
    let object = gateway_object(gw_ns, gw_name, &[(80, "HTTP".into())], &hosts, None);
    Ok(create(
        object,
        format!(
            "create Gateway {gw_ns}/{gw_name} serving the VirtualService's hosts on port 80 (check its selector and servers), \
             or remove the reference from spec.gateways"
        ),
    ))
}

fn build(ctx: &Ctx, row: &Row) -> Result<Option<Hit>, Error> {
    let vs = ctx.obj(row.i(0))?;
    let gw = format!("{}/{}", row.s(3), row.s(4));
    let hit = Hit::new(
        &RULE,
        row.i(0),
        format!("Referenced gateway not found: \"{gw}\""),
    )
    .link(
        vs.display(),
        format!("spec.gateways[{}]", row.i(1)),
        format!("Gateway {gw}: not found"),
    )
    .repair(create_gateway_for(ctx, row.i(0), &row.s(3), &row.s(4))?);
    Ok(Some(Hit {
        gateway: Some(gw),
        ..hit
    }))
}
