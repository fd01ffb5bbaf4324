//! IST0162: a gateway server port that the gateway workload's Services do not expose.

use super::*;

pub(crate) static RULE: RuleInfo = rule_requiring(
    "IST0162",
    "gateway-port-not-on-service",
    Severity::Warning,
    "A Gateway listens on a port that no Service of its workload exposes (runs only when Pods are in the input).",
    "Istio's IngressGatewayPortAnalyzer: for the Pods the Gateway selects, the TCP ports of the Services (in \
     the Pods' namespaces) that select those Pods are collected (targetPort, else port; and the port \
     numbers). A server port outside that set is unreachable from outside the cluster. Example: a server on \
     8443 when the ingress Service maps 443→8443 and 80→8080 is fine; a server on 9000 is not.",
    &["Pod"],
);

pub(crate) static ANALYSIS: Analysis = Analysis {
    rules: &[&RULE],
    reports_on: &["Gateway"],
    sql: "WITH gp AS MATERIALIZED (SELECT g.obj AS gw, p.id AS pod, p.ns FROM gateway g JOIN object p ON p.kind = 'Pod' AND p.grp = '' \
              WHERE {t} AND (g.sel_n = 0 OR p.id IN (SELECT x.pod FROM sel_pod x WHERE x.sel_obj = g.obj))), \
          sv AS MATERIALIZED (SELECT DISTINCT gp.gw, so.id AS svc FROM gp \
              JOIN object so ON so.kind = 'Service' AND so.grp = '' AND so.ns = gp.ns \
              WHERE so.svc_sel_n = 0 OR gp.pod IN (SELECT x.pod FROM sel_pod x WHERE x.sel_obj = so.id)), \
          ports AS MATERIALIZED (SELECT sv.gw, coalesce(pt.target, pt.number) AS n FROM sv JOIN port pt ON pt.obj = sv.svc \
                WHERE upper(coalesce(pt.protocol, 'TCP')) = 'TCP' \
              UNION SELECT sv.gw, pt.number FROM sv JOIN port pt ON pt.obj = sv.svc WHERE upper(coalesce(pt.protocol, 'TCP')) = 'TCP') \
          SELECT s.obj, s.sidx, s.port, (SELECT sel FROM gateway WHERE obj = s.obj) FROM gw_server s \
          WHERE s.obj IN (SELECT gw FROM gp) AND s.hidx = 0 AND s.port IS NOT NULL \
            AND s.port NOT IN (SELECT n FROM ports WHERE ports.gw = s.obj) \
          ORDER BY s.obj, s.sidx",
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
    let port = row.i(2);
    let sel = row.s(3);
    let mut hit = Hit::new(
        &RULE,
        row.i(0),
        format!("The gateway refers to a port that is not exposed on the workload (pod selector {sel}; port {port})"),
    )
    .link(gw.display(), format!("spec.servers[{}].port.number", row.i(1)), format!("port {port}: no Service of the workload exposes it"))
    .repair(RepairAction::none(
        "no safe automatic repair: expose the port on the gateway workload's Service, or use a port it exposes",
    ));
    hit.port = Some(port as u32);
    Ok(Some(hit))
}
