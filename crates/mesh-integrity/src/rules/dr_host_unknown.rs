//! IST0174: a DestinationRule's host resolves to no visible Service or ServiceEntry.

use super::*;

pub(crate) static RULE: RuleInfo = rule(
    "IST0174",
    "dr-host-unknown",
    Severity::Warning,
    "A DestinationRule's host matches no Service or ServiceEntry visible to it.",
    "Same resolution as the VirtualService destinations (Istio's GetDestinationHost with the \
     DestinationRule's namespace and exportTo). A DestinationRule for an unknown host has no effect, which \
     usually means a typo or a leftover. Example: `host: reviews.prod.svc.cluster.local` with no Service \
     `reviews` in `prod`.",
);

pub(crate) static ANALYSIS: Analysis = Analysis {
    rules: &[&RULE],
    reports_on: &["DestinationRule"],
    sql: "SELECT dr.obj, dr.host, dr.fqdn FROM dr JOIN object o ON o.id = dr.obj \
          WHERE {t} \
            AND NOT EXISTS (SELECT 1 FROM provider p WHERE p.fqdn = dr.fqdn AND (p.scope = '*' OR p.scope IN ( \
                  SELECT e.scope FROM export_to e WHERE e.obj = dr.obj \
                  UNION ALL SELECT o.ns WHERE NOT EXISTS (SELECT 1 FROM export_to e2 WHERE e2.obj = dr.obj)))) \
            AND NOT EXISTS (SELECT 1 FROM provider p WHERE p.wild = 1 AND (p.scope = '*' OR p.scope = o.ns) \
                  AND ends_with(CASE WHEN substr(dr.host, 1, 1) = '*' THEN substr(dr.host, 2) ELSE dr.host END, p.suffix)) \
          ORDER BY dr.obj",
    targeted_sql: None,
    targets: &[("{t}", "dr.obj = ?1")],
    once_per_object: false,
    guard: None,
    rule_of_row: None,
    build,
};

fn build(ctx: &Ctx, row: &Row) -> Result<Option<Hit>, Error> {
    let dr = ctx.obj(row.i(0))?;
    let host = row.s(1);
    let hit = Hit::new(
        &RULE,
        row.i(0),
        format!("The host {host} defined in the DestinationRule does not match any services in the mesh."),
    )
    .link(dr.display(), "spec.host", format!("{}: no visible Service or ServiceEntry", row.s(2)))
    .repair(RepairAction::none(
        "no safe automatic repair: correct spec.host, create the Service or ServiceEntry it is meant for, \
         or delete the DestinationRule if it is a leftover",
    ));
    Ok(Some(Hit {
        host: Some(host),
        ..hit
    }))
}
