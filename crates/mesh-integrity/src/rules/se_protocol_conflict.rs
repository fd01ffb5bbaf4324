//! IST0177: ServiceEntries declaring different protocols for one host and port in one scope.

use super::*;

pub(crate) static RULE: RuleInfo = rule(
    "IST0177",
    "se-protocol-conflict",
    Severity::Warning,
    "ServiceEntries declare different protocols for the same host and port in overlapping scopes.",
    "Istio's ConflictingServiceEntryProtocolAnalyzer: index (scope, host as written, port) → protocols, \
     scope `*` for an empty exportTo or one with `*`, else each entry; namespace scopes also see the \
     `*`-scoped entries. Two protocols for one key make the listener's protocol arbitrary. Example: \
     `api.example.com:443` declared HTTPS by one ServiceEntry and TLS by another.",
);

/// From `keys` (scope, host, port): each key's members, the keys whose members declare more than
/// one protocol, and one row per (member, bad key).
macro_rules! conflicts {
    () => {
        "members AS MATERIALIZED (SELECT k.scope, k.host, k.port, e.obj, upper(coalesce(pt.protocol, '')) AS proto \
             FROM keys k CROSS JOIN provider e ON e.raw = k.host AND (e.scope = k.scope OR e.scope = '*') \
             CROSS JOIN port pt ON pt.obj = e.obj AND pt.number = k.port \
             JOIN object o ON o.id = e.obj AND o.kind = 'ServiceEntry'), \
         bad AS MATERIALIZED (SELECT scope, host, port, group_concat(DISTINCT proto) AS protos, group_concat(DISTINCT obj) AS objs \
             FROM members GROUP BY scope, host, port HAVING count(DISTINCT proto) > 1) \
         SELECT m.obj, b.scope, b.host, b.port, b.protos, b.objs FROM bad b \
           CROSS JOIN members m ON m.scope = b.scope AND m.host = b.host AND m.port = b.port \
         WHERE {t2} GROUP BY m.obj, b.scope, b.host, b.port ORDER BY m.obj, b.scope, b.host, b.port"
    };
}

pub(crate) static ANALYSIS: Analysis = Analysis {
    rules: &[&RULE],
    reports_on: &["ServiceEntry"],
    // Only the (host, port) pairs declared with two protocols by any ServiceEntries, whatever
    // their scopes, can have a conflicting key: one pass over the ServiceEntries' ports finds
    // them (`min() <> max()`: no temporary b-tree per group as `count(DISTINCT)` would build), and
    // the keys, members and groups are built for those only. A key's members all have its host
    // and port, so every conflicting key is among them. Before, keys were built for every
    // provider row (Services too) and each key's members probed (96 ms at 100k).
    sql: concat!(
        "WITH cand AS MATERIALIZED (SELECT p.raw AS host, pt.number AS port \
             FROM object o CROSS JOIN provider p ON p.obj = o.id CROSS JOIN port pt ON pt.obj = p.obj \
             WHERE o.kind = 'ServiceEntry' \
             GROUP BY p.raw, pt.number \
             HAVING min(upper(coalesce(pt.protocol, ''))) <> max(upper(coalesce(pt.protocol, '')))), \
         keys AS MATERIALIZED (SELECT DISTINCT p.scope, p.raw AS host, pt.number AS port \
             FROM cand c CROSS JOIN provider p ON p.raw = c.host \
             CROSS JOIN port pt ON pt.obj = p.obj AND pt.number = c.port \
             JOIN object o ON o.id = p.obj AND o.kind = 'ServiceEntry'), ",
        conflicts!()
    ),
    // For one ServiceEntry, the keys of its own hosts (found through the host index).
    targeted_sql: Some(concat!(
        "WITH keys AS MATERIALIZED (SELECT DISTINCT p.scope, p.raw AS host, pt.number AS port \
             FROM provider p CROSS JOIN port pt ON pt.obj = p.obj JOIN object o ON o.id = p.obj AND o.kind = 'ServiceEntry' \
             WHERE {t}), ",
        conflicts!()
    )),
    targeted_by_kind: &[],
    targets: &[
        ("{t}", "p.raw IN (SELECT raw FROM provider WHERE obj = ?1)"),
        ("{t2}", "m.obj = ?1"),
    ],
    once_per_object: true,
    guard: None,
    rule_of_row: None,
    build,
};

fn build(ctx: &Ctx, row: &Row) -> Result<Option<Hit>, Error> {
    let id = row.i(0);
    let se = ctx.obj(id)?;
    let objs = row.ids(5);
    let mut names = Vec::new();
    for o in &objs {
        names.push(ctx.obj(*o)?.nsname());
    }
    names.sort();
    let mut protos: Vec<String> = row.s(4).split(',').map(str::to_string).collect();
    protos.sort();
    let (scope, host, port) = (row.s(1), row.s(2), row.i(3));
    let message = format!(
        "The ServiceEntries [{}] define conflicting protocols [{}] for host {host} and port {port} (scope {scope})",
        names.join(", "),
        protos.join(", ")
    );
    let mut hit = Hit::new(&RULE, id, message)
        .related(objs)
        .link(se.display(), "spec.ports", format!("{host}:{port}: protocols {}", protos.join(", ")))
        .repair(RepairAction::none(
            "no safe automatic repair: agree on one protocol for the host and port, or narrow the exportTo scopes",
        ));
    hit.host = Some(host);
    hit.port = Some(port as u32);
    Ok(Some(hit))
}
