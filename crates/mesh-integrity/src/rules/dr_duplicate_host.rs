//! MSH0102: more than one DestinationRule for one host in overlapping scopes.

use super::*;

pub(crate) static RULE: RuleInfo = rule(
    "MSH0102",
    "dr-duplicate-host",
    Severity::Warning,
    "More than one DestinationRule configures the same host in overlapping exportTo scopes.",
    "No Istio analyzer checks this (Kiali's KIA0201 does). Istio merges or picks one DestinationRule per host \
     for a client, so traffic policy or subsets from the other are silently ignored. Hosts compare after FQDN \
     expansion; scopes overlap when either exports to `*` or both name a common namespace. Example: \
     DestinationRules `reviews` and `reviews-canary` in `default`, both for host `reviews`.",
);

pub(crate) static ANALYSIS: Analysis = Analysis {
    rules: &[&RULE],
    reports_on: &["DestinationRule"],
    sql: "SELECT a.obj, group_concat(DISTINCT b.obj), a.fqdn FROM dr a JOIN dr b ON b.fqdn = a.fqdn AND b.obj <> a.obj \
          WHERE {t} AND a.fqdn <> '' AND (a.export_all OR b.export_all OR EXISTS ( \
              SELECT 1 FROM export_to ea JOIN export_to eb ON eb.scope = ea.scope WHERE ea.obj = a.obj AND eb.obj = b.obj)) \
          GROUP BY a.obj ORDER BY a.obj",
    targeted_sql: None,
    targeted_by_kind: &[],
    targets: &[("{t}", "a.obj = ?1")],
    once_per_object: false,
    guard: None,
    rule_of_row: None,
    build,
};

fn build(ctx: &Ctx, row: &Row) -> Result<Option<Hit>, Error> {
    let dr = ctx.obj(row.i(0))?;
    let others = row.ids(1);
    let mut names = Vec::new();
    for o in &others {
        names.push(ctx.obj(*o)?.display());
    }
    names.sort();
    let host = row.s(2);
    let mut hit = Hit::new(
        &RULE,
        row.i(0),
        format!(
            "host {host} is also configured by {}; only one DestinationRule applies per client",
            names.join(", ")
        ),
    )
    .related(others)
    .link(
        dr.display(),
        "spec.host",
        format!("{host}: also {}", names.join(", ")),
    )
    .repair(RepairAction::none(
        "no safe automatic repair: merge the DestinationRules into one, or narrow their exportTo",
    ));
    hit.host = Some(host);
    Ok(Some(hit))
}
