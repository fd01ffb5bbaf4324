//! MSH0001: an object that could not be projected.

use super::*;

pub(crate) static RULE: RuleInfo = rule(
    "MSH0001",
    "object-not-projectable",
    Severity::Error,
    "An object could not be read: a field the rules need has the wrong shape.",
    "The engine reads a few fields of every object (hosts, gateways, destinations, ports, selectors). \
     When one of them has the wrong type (for example `hosts: shop.example.com` instead of a list) the object \
     cannot take part in any check, so it is reported instead of silently ignored; ingestion of the other \
     objects continues. Example: `spec.hosts: expected a list of strings`.",
);

pub(crate) static ANALYSIS: Analysis = Analysis {
    rules: &[&RULE],
    reports_on: ALL_KINDS,
    sql: "SELECT u.obj, u.message FROM undecodable u WHERE {t} ORDER BY u.obj",
    targeted_sql: None,
    targeted_by_kind: &[],
    targets: &[("{t}", "u.obj = ?1")],
    once_per_object: false,
    guard: Some("SELECT EXISTS (SELECT 1 FROM undecodable)"),
    rule_of_row: None,
    build,
};

fn build(ctx: &Ctx, row: &Row) -> Result<Option<Hit>, Error> {
    let obj = ctx.obj(row.i(0))?;
    let message = format!("{} could not be projected: {}", obj.display(), row.s(1));
    Ok(Some(Hit::new(&RULE, row.i(0), message).repair(RepairAction::none(
        "no safe automatic repair: fix the object so that it matches its schema (the message names the field)",
    ))))
}
