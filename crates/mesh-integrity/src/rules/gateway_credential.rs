//! IST0101 (credentialName): a TLS server's Secret missing from the gateway workload's namespace.

use super::*;

pub(crate) static RULE: RuleInfo = rule_requiring(
    "IST0101",
    "gateway-credential-not-found",
    Severity::Error,
    "A Gateway TLS server's credentialName Secret does not exist in the gateway workload's namespace \
     (runs only when Pods and Secrets are in the input).",
    "Istio's SecretAnalyzer: the Secret named by `tls.credentialName` must exist in the namespace of the \
     first Pod the Gateway selects (the workload's namespace, not the Gateway's). Without it the HTTPS \
     listener has no certificate and TLS handshakes fail. Example: credentialName `shop-cert` in namespace \
     `shop` while the ingress gateway runs in `istio-system`.",
    &["Pod", "Secret"],
);

pub(crate) static ANALYSIS: Analysis = Analysis {
    rules: &[&RULE],
    reports_on: &["Gateway"],
    sql: "WITH gp AS (SELECT g.obj AS gw, (SELECT p.ns FROM object p WHERE p.kind = 'Pod' AND p.grp = '' \
              AND (g.sel_n = 0 OR p.id IN (SELECT x.pod FROM sel_pod x WHERE x.sel_obj = g.obj)) \
              ORDER BY p.ns, p.name LIMIT 1) AS pns FROM gateway g WHERE {t}) \
          SELECT s.obj, s.sidx, s.credential, gp.pns FROM gp JOIN gw_server s ON s.obj = gp.gw AND s.hidx = 0 \
          WHERE gp.pns IS NOT NULL AND s.credential IS NOT NULL \
            AND NOT EXISTS (SELECT 1 FROM object x WHERE x.kind = 'Secret' AND x.grp = '' AND x.ns = gp.pns AND x.name = s.credential) \
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
    let (credential, ns) = (row.s(2), row.s(3));
    Ok(Some(
        Hit::new(
            &RULE,
            row.i(0),
            format!("Referenced credentialName not found: \"{credential}\" (looked up in namespace {ns}, the gateway workload's)"),
        )
        .link(gw.display(), format!("spec.servers[{}].tls.credentialName", row.i(1)), format!("Secret {ns}/{credential}: not found"))
        .repair(RepairAction::none(format!(
            "no safe automatic repair: create the TLS Secret {ns}/{credential} (the engine never handles secret data)"
        ))),
    ))
}
