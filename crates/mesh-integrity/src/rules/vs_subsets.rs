//! IST0101 (host+subset / mirror+subset in destinationrule): a destination subset must be declared
//! by a DestinationRule for that host.

use super::*;
use crate::host::split_cluster_local;

pub(crate) static RULE: RuleInfo = rule(
    "IST0101",
    "vs-destination-subset-not-found",
    Severity::Error,
    "A route or mirror destination names a subset no DestinationRule for that host declares.",
    "Istio's DestinationRuleAnalyzer: the destination host and every DestinationRule host are normalised to \
     `namespace/name` (`name.ns.svc.cluster.local` → `ns/name`; anything else → the referrer's namespace and the \
     host verbatim) and some DestinationRule with that key must declare the subset. No exportTo and no \
     wildcards here, exactly as in Istio. Traffic to an undeclared subset gets a 503. Example: \
     `destination: {host: reviews, subset: v3}` while DestinationRule `reviews` declares v1 and v2.",
);

pub(crate) static ANALYSIS: Analysis = Analysis {
    rules: &[&RULE],
    reports_on: &["VirtualService"],
    sql: "SELECT d.obj, d.idx, d.mirror, d.host, d.subset, d.skey, d.path, \
            (SELECT dr.obj FROM dr JOIN object o ON o.id = dr.obj WHERE dr.skey = d.skey ORDER BY o.ns, o.name LIMIT 1) \
          FROM dest d \
          WHERE {t} AND d.subset IS NOT NULL \
            AND NOT EXISTS (SELECT 1 FROM dr JOIN dr_subset s ON s.obj = dr.obj WHERE dr.skey = d.skey AND s.name = d.subset) \
          ORDER BY d.obj, d.idx",
    targeted_sql: None,
    targeted_by_kind: &[],
    targets: &[("{t}", "d.obj = ?1")],
    once_per_object: false,
    guard: None,
    rule_of_row: None,
    build,
};

fn build(ctx: &Ctx, row: &Row) -> Result<Option<Hit>, Error> {
    let vs_id = row.i(0);
    let vs = ctx.obj(vs_id)?;
    let mirror = row.i(2) != 0;
    let host = row.s(3);
    let subset = row.s(4);
    let skey = row.s(5);
    let path = pointer_to_path(&row.s(6));
    let what = if mirror {
        "mirror+subset in destinationrule"
    } else {
        "host+subset in destinationrule"
    };
    let mut hit = Hit::new(
        &RULE,
        vs_id,
        format!("Referenced {what} not found: \"{host}+{subset}\""),
    );
    let subset_value = json!({"name": subset, "labels": {"version": subset}});
    match row.oi(7) {
        Some(dr_id) => {
            let dr = ctx.obj(dr_id)?;
            let n: i64 = ctx
                .rows("SELECT n_subsets FROM dr WHERE obj = ?1", [dr_id])?
                .first()
                .map(|r| r.i(0))
                .unwrap_or(0);
            let op = if n == 0 {
                json!([{"op": "add", "path": "/spec/subsets", "value": [subset_value]}])
            } else {
                json!([{"op": "add", "path": "/spec/subsets/-", "value": subset_value}])
            };
            hit = hit
                .link(
                    vs.display(),
                    format!("{path}.subset"),
                    format!("{}: no subset {subset}", dr.display()),
                )
                .repair(patch(
                    &dr,
                    op,
                    format!(
                        "declare subset {subset} in {} (check its labels)",
                        dr.display()
                    ),
                ));
            hit.related = vec![dr_id];
        }
        None => {
            let (ns, name) = skey.split_once('/').unwrap_or(("default", &skey));
            let dr_host = if split_cluster_local(&row.s(3)).is_some() || !host.contains('.') {
                format!("{name}.{ns}.svc.cluster.local")
            } else {
                host.clone()
            };
            let mut dr_name = dns_name(name);
            if ctx
                .find("networking.istio.io", "DestinationRule", ns, &dr_name)?
                .is_some()
            {
                dr_name = dns_name(&format!("{dr_name}-subsets"));
            }
            let object = json!({
                "apiVersion": "networking.istio.io/v1",
                "kind": "DestinationRule",
                "metadata": {"name": dr_name, "namespace": ns},
                "spec": {"host": dr_host, "subsets": [subset_value]},
            });
            hit = hit
                .link(vs.display(), format!("{path}.subset"), format!("no DestinationRule for {skey}"))
                .repair(create(object, format!("create DestinationRule {ns}/{dr_name} declaring subset {subset} (check its labels)")));
        }
    }
    hit.host = Some(host);
    Ok(Some(hit))
}
