//! MSH0104: exportTo naming a namespace that does not exist.

use super::*;

pub(crate) static RULE: RuleInfo = rule_requiring(
    "MSH0104",
    "export-to-namespace-not-found",
    Severity::Error,
    "exportTo names a namespace that does not exist (runs only when Namespaces are in the input).",
    "An exportTo entry (VirtualService, DestinationRule, ServiceEntry, MeshService, or a Service's \
     `networking.istio.io/exportTo` annotation) other than `.`, `*` and `~` must name an existing namespace; \
     a typo exports the object nowhere it was meant to go. Kiali's KIA0005; Istio has no such check.",
    &["Namespace"],
);

pub(crate) static ANALYSIS: Analysis = Analysis {
    rules: &[&RULE],
    reports_on: &[
        "VirtualService",
        "DestinationRule",
        "ServiceEntry",
        "Service",
        "MeshService",
    ],
    sql: "SELECT e.obj, e.raw FROM export_to e \
          WHERE {t} AND e.raw NOT IN ('.', '*', '~') \
            AND NOT EXISTS (SELECT 1 FROM object n WHERE n.kind = 'Namespace' AND n.grp = '' AND n.ns = '' AND n.name = e.raw) \
          GROUP BY e.obj, e.raw ORDER BY e.obj, e.raw",
    targeted_sql: None,
    targeted_by_kind: &[],
    targets: &[("{t}", "e.obj = ?1")],
    once_per_object: false,
    guard: None,
    rule_of_row: None,
    build,
};

fn build(ctx: &Ctx, row: &Row) -> Result<Option<Hit>, Error> {
    let obj = ctx.obj(row.i(0))?;
    let ns = row.s(1);
    let field = if obj.key.kind == "Service" {
        "metadata.annotations[networking.istio.io/exportTo]"
    } else {
        "spec.exportTo"
    };
    let object = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}});
    Ok(Some(
        Hit::new(
            &RULE,
            row.i(0),
            format!("exportTo names namespace \"{ns}\", which does not exist"),
        )
        .link(obj.display(), field, format!("Namespace {ns}: not found"))
        .repair(create(
            object,
            format!("create Namespace {ns}, or correct the exportTo entry if it is a typo"),
        )),
    ))
}
