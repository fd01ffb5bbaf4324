//! IST0145: two gateways on the same workload serve the same host on the same port.

use super::*;

pub(crate) static RULE: RuleInfo = rule(
    "IST0145",
    "gateway-conflict",
    Severity::Error,
    "Two Gateways on the same workload have a server on the same port with the same host and bind.",
    "Istio's ConflictingGatewayAnalyzer: selectors identical, or one selector string containing the other \
     with a Pod matching both (only checked when Pods are in the input), a server on the same port number \
     and at least one identical host string with the same bind. Envoy then keeps only one of the servers. \
     Exact host strings only; wildcard overlaps are MSH0101.",
);

pub(crate) static ANALYSIS: Analysis = Analysis {
    rules: &[&RULE],
    reports_on: &["Gateway"],
    sql: "SELECT sa.obj, sa.port, sa.raw, group_concat(DISTINCT sb.obj), ga.sel \
          FROM gw_server sa JOIN gateway ga ON ga.obj = sa.obj \
          JOIN gw_server sb ON sb.raw = sa.raw AND sb.port = sa.port AND sb.bind = sa.bind AND sb.obj <> sa.obj \
          JOIN gateway gb ON gb.obj = sb.obj \
          WHERE {t} AND sa.raw <> '' AND sa.port IS NOT NULL AND (ga.sel = gb.sel OR ( \
            (instr(ga.sel, gb.sel) > 0 OR instr(gb.sel, ga.sel) > 0) AND EXISTS ( \
              SELECT 1 FROM object p WHERE p.kind = 'Pod' AND p.grp = '' \
                AND (ga.sel_n = 0 OR p.id IN (SELECT x.pod FROM sel_pod x WHERE x.sel_obj = ga.obj)) \
                AND (gb.sel_n = 0 OR p.id IN (SELECT x.pod FROM sel_pod x WHERE x.sel_obj = gb.obj))))) \
          GROUP BY sa.obj, sa.port, sa.raw ORDER BY sa.obj, sa.port, sa.raw",
    targeted_sql: None,
    targeted_by_kind: &[],
    targets: &[("{t}", "sa.obj = ?1")],
    once_per_object: true,
    guard: None,
    rule_of_row: None,
    build,
};

fn build(ctx: &Ctx, row: &Row) -> Result<Option<Hit>, Error> {
    let id = row.i(0);
    let gw = ctx.obj(id)?;
    let others = row.ids(3);
    let mut names = Vec::new();
    for o in &others {
        names.push(ctx.obj(*o)?.nsname());
    }
    names.sort();
    let (port, host) = (row.i(1), row.s(2));
    let message = format!(
        "Conflict with gateways {} (workload selector {}, port {port}, hosts [{host}])",
        names.join(", "),
        row.s(4)
    );
    let mut hit = Hit::new(&RULE, id, message)
        .related(others)
        .link(gw.display(), "spec.servers", format!("{host}:{port} also served by {}", names.join(", ")))
        .repair(RepairAction::none(
            "no safe automatic repair: keep the host on one of the Gateways (or give them different ports or selectors)",
        ));
    hit.host = Some(host);
    hit.port = Some(port as u32);
    Ok(Some(hit))
}
