//! IST0101 (selector): a Gateway selector that matches no Pod.

use super::*;

pub(crate) static RULE: RuleInfo = rule_requiring(
    "IST0101",
    "gateway-selector-no-pod",
    Severity::Error,
    "A Gateway's selector matches no Pod (runs only when Pods are in the input).",
    "Istio's IngressGatewayPortAnalyzer: the Gateway `selector` must match at least one Pod in any \
     namespace, or no proxy serves it. Example: `selector: {istio: ingress}` when the gateway pods are \
     labelled `istio: ingressgateway`.",
    &["Pod"],
);

pub(crate) static ANALYSIS: Analysis = Analysis {
    rules: &[&RULE],
    reports_on: &["Gateway"],
    sql: "SELECT g.obj, g.sel FROM gateway g \
          WHERE {t} AND CASE WHEN g.sel_n = 0 THEN NOT EXISTS (SELECT 1 FROM object p WHERE p.kind = 'Pod' AND p.grp = '') \
                ELSE NOT EXISTS (SELECT 1 FROM sel_pod x WHERE x.sel_obj = g.obj) END \
          ORDER BY g.obj",
    targeted_sql: None,
    targeted_by_kind: &[],
    targets: &[("{t}", "g.obj = ?1")],
    once_per_object: false,
    guard: None,
    rule_of_row: None,
    build,
};

fn build(ctx: &Ctx, row: &Row) -> Result<Option<Hit>, Error> {
    let gw = ctx.obj(row.i(0))?;
    let sel = row.s(1);
    Ok(Some(
        Hit::new(&RULE, row.i(0), format!("Referenced selector not found: \"{sel}\""))
            .link(gw.display(), "spec.selector", format!("{sel}: matches no Pod"))
            .repair(RepairAction::none(
                "no safe automatic repair: set spec.selector to the labels of the gateway workload's Pods",
            )),
    ))
}
