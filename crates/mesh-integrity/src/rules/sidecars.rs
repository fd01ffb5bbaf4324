//! IST0101 (sidecar selector), IST0110, IST0111: Sidecar workload selectors.

use super::*;

pub(crate) static NO_POD_RULE: RuleInfo = rule_requiring(
    "IST0101",
    "sidecar-selector-no-pod",
    Severity::Error,
    "A Sidecar's workloadSelector matches no Pod in its namespace (runs only when Pods are in the input).",
    "Istio's sidecar.SelectorAnalyzer: a Sidecar with `workloadSelector.labels` must select at least one Pod \
     of its own namespace, or it configures nothing.",
    &["Pod"],
);

pub(crate) static CONFLICT_RULE: RuleInfo = rule_requiring(
    "IST0110",
    "sidecar-selector-conflict",
    Severity::Error,
    "Two Sidecars with workload selectors select the same Pod (runs only when Pods are in the input).",
    "Istio's sidecar.SelectorAnalyzer: which Sidecar applies to a Pod selected by two is undefined. \
     Reported on each Sidecar, naming the others and one Pod.",
    &["Pod"],
);

pub(crate) static MULTIPLE_RULE: RuleInfo = rule(
    "IST0111",
    "sidecar-multiple-without-selector",
    Severity::Error,
    "A namespace has more than one Sidecar without a workload selector.",
    "Istio's sidecar.SelectorAnalyzer: the namespace-wide Sidecar must be unique; with two, which one applies \
     is undefined.",
);

pub(crate) static NO_POD: Analysis = Analysis {
    rules: &[&NO_POD_RULE],
    reports_on: &["Sidecar"],
    sql: "SELECT sc.obj, (SELECT group_concat(key || '=' || value, ',' ORDER BY key) FROM selector WHERE obj = sc.obj) \
          FROM sidecar sc JOIN object o ON o.id = sc.obj \
          WHERE {t} AND sc.sel_n > 0 AND NOT EXISTS (SELECT 1 FROM sel_pod x JOIN object p ON p.id = x.pod \
              WHERE x.sel_obj = sc.obj AND p.ns = o.ns) \
          ORDER BY sc.obj",
    targeted_sql: None,
    targeted_by_kind: &[],
    targets: &[("{t}", "sc.obj = ?1")],
    once_per_object: false,
    guard: Some("SELECT EXISTS (SELECT 1 FROM sidecar)"),
    rule_of_row: None,
    build: build_no_pod,
};

pub(crate) static CONFLICT: Analysis = Analysis {
    rules: &[&CONFLICT_RULE],
    reports_on: &["Sidecar"],
    sql: "SELECT a.obj, group_concat(DISTINCT b.obj), min(p.name) FROM sidecar a JOIN object oa ON oa.id = a.obj \
          JOIN sel_pod xa ON xa.sel_obj = a.obj JOIN object p ON p.id = xa.pod AND p.ns = oa.ns \
          JOIN sel_pod xb ON xb.pod = p.id AND xb.sel_obj <> a.obj JOIN sidecar b ON b.obj = xb.sel_obj \
          JOIN object ob ON ob.id = b.obj AND ob.ns = oa.ns \
          WHERE {t} AND a.sel_n > 0 GROUP BY a.obj ORDER BY a.obj",
    targeted_sql: None,
    targeted_by_kind: &[],
    targets: &[("{t}", "a.obj = ?1")],
    once_per_object: false,
    guard: Some("SELECT EXISTS (SELECT 1 FROM sidecar)"),
    rule_of_row: None,
    build: build_conflict,
};

pub(crate) static MULTIPLE: Analysis = Analysis {
    rules: &[&MULTIPLE_RULE],
    reports_on: &["Sidecar"],
    sql: "SELECT a.obj, group_concat(b.obj) FROM sidecar a JOIN object oa ON oa.id = a.obj \
          JOIN object ob ON ob.ns = oa.ns AND ob.kind = 'Sidecar' AND ob.grp = 'networking.istio.io' AND ob.id <> a.obj \
          JOIN sidecar b ON b.obj = ob.id AND b.sel_n = 0 \
          WHERE {t} AND a.sel_n = 0 GROUP BY a.obj ORDER BY a.obj",
    targeted_sql: None,
    targeted_by_kind: &[],
    targets: &[("{t}", "a.obj = ?1")],
    once_per_object: false,
    guard: Some("SELECT EXISTS (SELECT 1 FROM sidecar)"),
    rule_of_row: None,
    build: build_multiple,
};

fn names(ctx: &Ctx, me: i64, others: &[i64]) -> Result<Vec<String>, Error> {
    let mut names = vec![ctx.obj(me)?.key.name.clone()];
    for o in others {
        names.push(ctx.obj(*o)?.key.name.clone());
    }
    names.sort();
    Ok(names)
}

fn build_no_pod(ctx: &Ctx, row: &Row) -> Result<Option<Hit>, Error> {
    let sc = ctx.obj(row.i(0))?;
    let sel = row.s(1);
    Ok(Some(
        Hit::new(&NO_POD_RULE, row.i(0), format!("Referenced selector not found: \"{sel}\""))
            .link(sc.display(), "spec.workloadSelector.labels", format!("{sel}: no Pod in namespace {}", sc.key.namespace))
            .repair(RepairAction::none(
                "no safe automatic repair: set workloadSelector.labels to the labels of the intended Pods, or delete the Sidecar",
            )),
    ))
}

fn build_conflict(ctx: &Ctx, row: &Row) -> Result<Option<Hit>, Error> {
    let me = row.i(0);
    let sc = ctx.obj(me)?;
    let others = row.ids(1);
    let names = names(ctx, me, &others)?;
    let pod = row.s(2);
    let message = format!(
        "The Sidecars [{}] in namespace \"{}\" select the same workload pod \"{pod}\", which can lead to undefined behavior.",
        names.join(", "),
        sc.key.namespace
    );
    Ok(Some(
        Hit::new(&CONFLICT_RULE, me, message)
            .related(others)
            .link(sc.display(), "spec.workloadSelector.labels", format!("Pod {}/{pod}: also selected by {}", sc.key.namespace, names.join(", ")))
            .repair(RepairAction::none("no safe automatic repair: make the Sidecars' workload selectors disjoint, or merge them")),
    ))
}

fn build_multiple(ctx: &Ctx, row: &Row) -> Result<Option<Hit>, Error> {
    let me = row.i(0);
    let sc = ctx.obj(me)?;
    let others = row.ids(1);
    let names = names(ctx, me, &others)?;
    let message = format!(
        "The Sidecars [{}] in namespace \"{}\" have no workload selector, which can lead to undefined behavior.",
        names.join(", "),
        sc.key.namespace
    );
    Ok(Some(
        Hit::new(&MULTIPLE_RULE, me, message)
            .related(others)
            .link(sc.display(), "spec.workloadSelector", "absent: namespace-wide Sidecar, not unique")
            .repair(RepairAction::none("no safe automatic repair: keep one namespace-wide Sidecar (merge the others into it)")),
    ))
}
