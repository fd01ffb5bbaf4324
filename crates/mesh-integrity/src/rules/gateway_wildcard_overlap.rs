//! MSH0101: gateways on one workload whose server hosts overlap by wildcard on one port.

use super::*;

pub(crate) static RULE: RuleInfo = rule(
    "MSH0101",
    "gateway-wildcard-host-overlap",
    Severity::Warning,
    "Two Gateways on the same workload serve overlapping hosts (by wildcard) on the same port.",
    "Istio's IST0145 compares host strings exactly, so `*.shop.example.com` on one Gateway and \
     `cart.shop.example.com` on another (same selector, same port) pass, yet Envoy routes the overlapping \
     names by whichever server wins the filter chain match, and TLS settings may differ. Namespace prefixes \
     must be compatible (`*`, absent, or equal). Identical hosts are IST0145, not this rule.",
);

// Every overlap has a wildcard side `w` whose reversed base starts the other side's (`x`, which
// may be a longer wildcard; `gw_server.rbase`, see `host::reversed_base`). The full query takes
// each wildcard server and the range of `gw_server_rbase` it covers, so it reads the overlapping
// pairs rather than every pair of servers on one workload (10k Gateways sharing a selector: 62 s
// before). `host_matches` stays the judge. Each unordered pair is found once and reported from
// both sides.

/// The conditions on a candidate pair `w`, `x` (besides the reversed base and the port).
macro_rules! overlap {
    () => {
        "w.wild = 1 AND w.host <> '' AND x.host <> '' AND x.host <> w.host AND x.obj <> w.obj \
         AND (w.vis_ns IS NULL OR x.vis_ns IS NULL OR w.vis_ns = x.vis_ns) AND host_matches(w.host, x.host)"
    };
}

/// The pairs of `cand`, reported from both sides, on one workload: one finding per pair of
/// Gateways, on the smallest port, then the smallest hosts (whatever order the rows came in).
macro_rules! report {
    ($target:expr) => {
        concat!(
            "pairs AS (SELECT wobj AS obj, port, whost AS ahost, xobj AS other, xhost AS bhost FROM cand \
               UNION ALL SELECT xobj, port, xhost, wobj, whost FROM cand), \
             ranked AS (SELECT p.obj, p.other, p.port, p.ahost, p.bhost, ga.sel, \
                 row_number() OVER (PARTITION BY p.obj, p.other ORDER BY p.port, p.ahost, p.bhost) AS n \
               FROM pairs p CROSS JOIN gateway ga ON ga.obj = p.obj CROSS JOIN gateway gb ON gb.obj = p.other \
               WHERE ",
            $target,
            " AND gb.sel = ga.sel) \
             SELECT obj, other, port, ahost, bhost, sel FROM ranked WHERE n = 1 ORDER BY obj, other"
        )
    };
}

/// `x`, with `w` the wildcards whose range holds it.
macro_rules! covered {
    () => {
        "SELECT w.obj AS wobj, w.host AS whost, x.obj AS xobj, x.host AS xhost, w.port \
         FROM gw_server w CROSS JOIN gw_server x ON x.port = w.port \
           AND x.rbase >= w.rbase AND x.rbase < w.rbase || char(1114111) WHERE "
    };
}

pub(crate) static ANALYSIS: Analysis = Analysis {
    rules: &[&RULE],
    reports_on: &["Gateway"],
    sql: concat!(
        "WITH cand AS (",
        covered!(),
        overlap!(),
        "), ",
        report!("1")
    ),
    // One Gateway: the ranges of its own wildcards, and the wildcards whose reversed base is a
    // prefix of one of its hosts' (a probe per prefix, as MSH0201 finds the wildcards covering a
    // claimed host).
    targeted_sql: Some(concat!(
        "WITH cand AS (",
        covered!(),
        "w.obj = ?1 AND ",
        overlap!(),
        " UNION ALL SELECT w.obj, w.host, x.obj, x.host, w.port \
           FROM gw_server x CROSS JOIN json_each(host_rbase_prefixes(x.host)) pre \
           CROSS JOIN gw_server w ON w.port = x.port AND w.rbase = pre.value \
           WHERE x.obj = ?1 AND ",
        overlap!(),
        "), ",
        report!("p.obj = ?1")
    )),
    targeted_by_kind: &[],
    targets: &[],
    once_per_object: false,
    guard: None,
    rule_of_row: None,
    build,
};

fn build(ctx: &Ctx, row: &Row) -> Result<Option<Hit>, Error> {
    let gw = ctx.obj(row.i(0))?;
    let other = ctx.obj(row.i(1))?;
    let (port, mine, theirs) = (row.i(2), row.s(3), row.s(4));
    let message = format!(
        "host {mine} on port {port} overlaps host {theirs} served by {} on the same workload (selector {})",
        other.display(),
        row.s(5)
    );
    let mut hit = Hit::new(&RULE, row.i(0), message)
        .related(vec![row.i(1)])
        .link(gw.display(), "spec.servers", format!("{theirs}:{port} on {}", other.display()))
        .repair(RepairAction::none(
            "no safe automatic repair: serve the overlapping names from one Gateway, or make the hosts disjoint",
        ));
    hit.host = Some(mine);
    hit.port = Some(port as u32);
    Ok(Some(hit))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The rule as first written: every pair of servers on one workload, compared. Quadratic in the
    /// Gateways sharing a selector, and the specification the range queries are held to.
    const ALL_PAIRS: &str = "SELECT a.obj, b.obj, a.port, a.host, b.host, ga.sel \
        FROM gateway ga CROSS JOIN gateway gb ON gb.sel = ga.sel AND gb.obj <> ga.obj \
          CROSS JOIN gw_server a ON a.obj = ga.obj CROSS JOIN gw_server b ON b.obj = gb.obj AND +b.port = a.port \
        WHERE (a.wild = 1 OR b.wild = 1) AND a.host <> '' AND b.host <> '' AND a.host <> b.host \
          AND host_matches(a.host, b.host) AND (a.vis_ns IS NULL OR b.vis_ns IS NULL OR a.vis_ns = b.vis_ns) \
        ORDER BY 1, 2, 3, 4, 5";

    /// The model's findings: per pair of Gateways, the smallest (port, own host, other host).
    fn model(engine: &crate::Engine) -> Vec<Vec<Sql>> {
        let mut all = values(engine, ALL_PAIRS, []);
        all.dedup_by(|later, first| later[..2] == first[..2]);
        all
    }

    fn gateway() -> impl Strategy<Value = (u8, Vec<(u16, String)>)> {
        let host = prop::sample::select(vec![
            "*",
            "*.example.com",
            "*.shop.example.com",
            "cart.shop.example.com",
            "shop.example.com",
            "*hop.example.com",
            "example.com",
            "*example.com",
            "./cart.shop.example.com",
            "team/*.example.com",
            "other/cart.shop.example.com",
            "*/shop.example.com",
        ]);
        let server = (
            prop::sample::select(vec![80u16, 443]),
            host.prop_map(str::to_string),
        );
        (0u8..2, prop::collection::vec(server, 1..4))
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn the_range_queries_find_what_comparing_every_pair_finds(
            gateways in prop::collection::vec(gateway(), 1..7),
        ) {
            let mut engine = crate::Engine::open_in_memory().expect("engine");
            for (i, (selector, servers)) in gateways.iter().enumerate() {
                let servers: Vec<_> = servers.iter().map(|(port, host)| serde_json::json!(
                    {"port": {"number": port, "name": "p", "protocol": "HTTP"}, "hosts": [host]})).collect();
                engine.upsert(serde_json::json!({"apiVersion": "networking.istio.io/v1", "kind": "Gateway",
                    "metadata": {"name": format!("g{i}"), "namespace": "team"},
                    "spec": {"selector": {"istio": format!("s{selector}")}, "servers": servers}})).expect("upsert");
            }
            let expected = model(&engine);
            prop_assert_eq!(&values(&engine, &ANALYSIS.sql_for(None), []), &expected);
            for id in values(&engine, "SELECT obj FROM gateway", []) {
                let own: Vec<Vec<Sql>> = expected.iter().filter(|f| f[0] == id[0]).cloned().collect();
                prop_assert_eq!(values(&engine, &ANALYSIS.sql_for(Some(())), [&id[0]]), own);
            }
        }
    }
}
