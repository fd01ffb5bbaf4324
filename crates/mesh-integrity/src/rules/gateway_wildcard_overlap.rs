//! MSH0101: gateways on one workload whose server hosts overlap by wildcard on one port.

use super::*;

pub(crate) static RULE: RuleInfo = rule(
    "MSH0101",
    "gateway-wildcard-host-overlap",
    Severity::Warning,
    "Two Gateways on the same workload serve overlapping hosts (by wildcard) on the same port.",
    "Istio's IST0145 compares host strings exactly, so `*.shop.example.com` on one Gateway and \
     `cart.shop.example.com` on another (same selector, same port) pass, yet Envoy routes the overlapping \
     names by whichever server wins the filter chain match, and TLS settings may differ. Namespace prefixes \
     must be compatible (`*`, absent, or equal). Identical hosts are IST0145, not this rule.",
);

pub(crate) static ANALYSIS: Analysis = Analysis {
    rules: &[&RULE],
    reports_on: &["Gateway"],
    sql: "WITH pairs AS ( \
            SELECT a.obj, a.port, a.host AS ahost, b.obj AS other, b.host AS bhost, ga.sel \
            FROM gateway ga CROSS JOIN gateway gb ON gb.sel = ga.sel AND gb.obj <> ga.obj \
              CROSS JOIN gw_server a ON a.obj = ga.obj CROSS JOIN gw_server b ON b.obj = gb.obj AND b.port = a.port \
            WHERE {t} AND (a.wild = 1 OR b.wild = 1) AND a.host <> '' AND b.host <> '' AND a.host <> b.host \
              AND host_matches(a.host, b.host) AND (a.vis_ns IS NULL OR b.vis_ns IS NULL OR a.vis_ns = b.vis_ns)) \
          SELECT p.obj, p.other, min(p.port), p.ahost, p.bhost, p.sel FROM pairs p \
          GROUP BY p.obj, p.other ORDER BY p.obj, p.other",
    targeted_sql: None,
    targeted_by_kind: &[],
    targets: &[("{t}", "ga.obj = ?1")],
    once_per_object: false,
    guard: None,
    rule_of_row: None,
    build,
};

fn build(ctx: &Ctx, row: &Row) -> Result<Option<Hit>, Error> {
    let gw = ctx.obj(row.i(0))?;
    let other = ctx.obj(row.i(1))?;
    let (port, mine, theirs) = (row.i(2), row.s(3), row.s(4));
    let message = format!(
        "host {mine} on port {port} overlaps host {theirs} served by {} on the same workload (selector {})",
        other.display(),
        row.s(5)
    );
    let mut hit = Hit::new(&RULE, row.i(0), message)
        .related(vec![row.i(1)])
        .link(gw.display(), "spec.servers", format!("{theirs}:{port} on {}", other.display()))
        .repair(RepairAction::none(
            "no safe automatic repair: serve the overlapping names from one Gateway, or make the hosts disjoint",
        ));
    hit.host = Some(mine);
    hit.port = Some(port as u32);
    Ok(Some(hit))
}
