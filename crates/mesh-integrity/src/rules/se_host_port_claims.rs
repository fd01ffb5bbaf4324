//! MSH0103: one ServiceEntry host and port claimed from two namespaces in overlapping scopes.

use super::*;

pub(crate) static RULE: RuleInfo = rule(
    "MSH0103",
    "se-host-port-claim-conflict",
    Severity::Warning,
    "ServiceEntries in different namespaces claim the same host and port in overlapping exportTo scopes.",
    "Istio merges or picks among ServiceEntries for one host by namespace and age, so endpoints, resolution or \
     location of one team's entry silently override another's. Hosts compare after FQDN expansion; scopes \
     overlap when equal or either is `*`. IST0177 covers differing protocols; this rule covers the claim itself. \
     Example: `api.example.com:443` declared in `team-a` and in `team-b`, both exported to `*`.",
);

pub(crate) static ANALYSIS: Analysis = Analysis {
    rules: &[&RULE],
    reports_on: &["ServiceEntry"],
    sql: "SELECT pa.obj, pa.raw, pta.number, group_concat(DISTINCT pb.obj) FROM provider pa \
          JOIN object oa ON oa.id = pa.obj AND oa.kind = 'ServiceEntry' \
          CROSS JOIN provider pb ON pb.fqdn = pa.fqdn AND pb.obj <> pa.obj AND (pb.scope = pa.scope OR pb.scope = '*' OR pa.scope = '*') \
          JOIN object ob ON ob.id = pb.obj AND ob.kind = 'ServiceEntry' AND ob.ns <> oa.ns \
          JOIN port pta ON pta.obj = pa.obj JOIN port ptb ON ptb.obj = pb.obj AND ptb.number = pta.number \
          WHERE {t} GROUP BY pa.obj, pa.fqdn, pta.number ORDER BY pa.obj, pa.fqdn, pta.number",
    targeted_sql: None,
    targeted_by_kind: &[],
    targets: &[("{t}", "pa.obj = ?1")],
    once_per_object: true,
    guard: None,
    rule_of_row: None,
    build,
};

fn build(ctx: &Ctx, row: &Row) -> Result<Option<Hit>, Error> {
    let se = ctx.obj(row.i(0))?;
    let others = row.ids(3);
    let mut names = Vec::new();
    for o in &others {
        names.push(ctx.obj(*o)?.display());
    }
    names.sort();
    let (host, port) = (row.s(1), row.i(2));
    let mut hit = Hit::new(&RULE, row.i(0), format!("host {host} port {port} is also claimed by {}", names.join(", ")))
        .related(others)
        .link(se.display(), "spec.hosts", format!("{host}:{port}: also {}", names.join(", ")))
        .repair(RepairAction::none(
            "no safe automatic repair: keep one ServiceEntry for the host, or restrict each one's exportTo to its own namespace",
        ));
    hit.host = Some(host);
    hit.port = Some(port as u32);
    Ok(Some(hit))
}
