//! MSH0201: host claim conflicts between MeshServices, and between a MeshService and a
//! VirtualService or Gateway it does not own.
//!
//! A MeshService claims, for each spec port, (gateway `ns/name` or `mesh`, host, port). It
//! conflicts with another MeshService claiming an overlapping host (Istio wildcard matching, after
//! FQDN expansion) on the same gateway and port; with a VirtualService bound to the same gateway
//! (any port) serving an overlapping host, unless the MeshService owns it (owner annotation) or
//! another MeshService present owns it (that MeshService claims for it); and with an unmanaged
//! Gateway other than its own on the same workload selector that serves an overlapping host on the
//! same port. The oldest `creationTimestamp` wins (absent = youngest), then namespace, name and
//! kind; only losers are reported, naming the winner.

use super::*;

// Fragments of the targeted query (macros, so that `concat!` builds one literal from them).

/// One correlated `min()` subquery: the smallest ordering key (the full query's `wkey`, then
/// char(2) and the id, so that `build` recovers the winner without another lookup) among the
/// competitors `ow`, reached from rows `$t` of `$table`, that satisfy the condition and are older
/// than the loser `lo` (the full query's comparison, as written). The separators are written as
/// bytes 1 and 2 in the literal rather than `char(1)`: SQLite evaluates constant function calls
/// each time the statement starts, and this query has dozens. The text is terse because rusqlite
/// hashes and copies it on every use of the cached statement.
macro_rules! winner {
    ($table:expr, $t:expr, $($cond:expr),+) => {
        concat!(
            "(SELECT min(coalesce(ow.created,'~')||'\u{1}'||ow.ns||'\u{1}'||ow.name||'\u{1}'||ow.kind||'\u{2}'||ow.id) FROM ",
            $table, " ", $t, " JOIN object ow ON ow.id=", $t, ".obj WHERE ", $($cond,)+
            " AND (coalesce(ow.created,'~'),ow.ns,ow.name,ow.kind)<(coalesce(lo.created,'~'),lo.ns,lo.name,lo.kind))"
        )
    };
}

/// Three `winner` subqueries, one per way a host row `$t` of `$table` overlaps host `$fqdn`
/// (wildcard flag `$wild`) of the outer row, each through its own index: equal FQDNs (`*_fqdn`),
/// a wildcard row (`*_wild`), and, only when the outer host is a wildcard, a scan of the plain
/// ones. Separate subqueries: a compound one could need a temporary table.
macro_rules! overlapping {
    ($table:expr, $t:expr, $fqdn:expr, $wild:expr, $($cond:expr),+) => {
        concat!(
            winner!($table, $t, $t, ".fqdn=", $fqdn, $($cond),+),
            ", ",
            winner!($table, $t, $t, ".wild = 1 AND ", $t, ".fqdn <> ", $fqdn,
                " AND host_matches(", $fqdn, ", ", $t, ".fqdn)", $($cond),+),
            ", ",
            winner!($table, $t, $wild, " = 1 AND ", $t, ".wild = 0 AND ", $t, ".fqdn <> ", $fqdn,
                " AND host_matches(", $fqdn, ", ", $t, ".fqdn)", $($cond),+)
        )
    };
}

/// `ow` (host row `a`) is a MeshService claiming on gateway `$gw`, on a port when `$port` says
/// which (the full query's `mc` rows: a MeshService claims only with at least one port).
macro_rules! ms_claims {
    ($gw:expr, $port:expr) => {
        concat!(
            " AND ow.kind='MeshService' AND ow.grp='mesh.istio.operator' AND EXISTS (SELECT 1 FROM ms mb \
               WHERE mb.obj=a.obj AND coalesce(mb.gw_ns||'/'||mb.gw_name,'mesh')=", $gw, ") \
             AND EXISTS (SELECT 1 FROM ms_port bp WHERE bp.obj=a.obj", $port, ")"
        )
    };
}

/// The VirtualService `$o` is not owned by a MeshService present (which would claim for it): no
/// MeshService `ns/name` is its owner. The namespace of such a MeshService is a prefix of the owner
/// ending before a `/`, so it lies between the owner's first segment and the owner: a range of the
/// object key index (a few keys) rather than every MeshService.
macro_rules! not_owned_by_a_meshservice {
    ($o:expr) => {
        concat!(
            "(",
            $o,
            ".owner IS NULL OR NOT EXISTS (SELECT 1 FROM object mo WHERE instr(",
            $o,
            ".owner,'/')>0 \
               AND mo.kind='MeshService' AND mo.ns BETWEEN substr(",
            $o,
            ".owner,1,instr(",
            $o,
            ".owner,'/')-1) AND ",
            $o,
            ".owner \
               AND mo.ns||'/'||mo.name=",
            $o,
            ".owner AND mo.grp='mesh.istio.operator'))"
        )
    };
}

/// The gateway a losing MeshService `m` claims on.
macro_rules! own_gateway {
    () => {
        "coalesce(m.gw_ns||'/'||m.gw_name,'mesh')"
    };
}

/// The losing VirtualService `lo` (host row `v`) on gateway `$gw`: the MeshService claims
/// overlapping the host. A host or gateway written twice is one row, the first.
macro_rules! vs_lost {
    ($gw:expr, $from:expr, $first:expr) => {
        concat!(
            "SELECT v.obj, ", $gw, ", v.host, v.idx, NULL, NULL, ",
            overlapping!("ms_host", "a", "v.fqdn", "v.wild", ms_claims!($gw, "")),
            ", NULL, NULL, NULL, NULL FROM vs_host v JOIN object lo ON lo.id = v.obj ", $from,
            " WHERE v.obj = ?1 AND ", not_owned_by_a_meshservice!("lo"), $first,
            " AND NOT EXISTS (SELECT 1 FROM vs_host v2 WHERE v2.obj = v.obj AND v2.idx < v.idx AND v2.host = v.host)"
        )
    };
}

/// The competitors of the claim (host `h`, port `p`) of MeshService `m` among the unmanaged
/// Gateways on its Gateway's workload: a server on the port with the same host, a wildcard server
/// covering it (one probe per prefix of the host's reversed base, see `gw_server.rbase`), or, for
/// a wildcard host, a server it covers (one range). Found by host first, not by going through
/// every Gateway on the workload (most installations have one, with thousands of Gateways).
macro_rules! gateway_competitors {
    () => {
        concat!(
            winner!("gw_server", "s", "s.port=p.port AND s.rbase=host_rbase(h.host) AND s.host=h.host", gateway_competitor!()),
            ", ",
            winner!("json_each(host_rbase_prefixes(h.host)) x CROSS JOIN gw_server", "s",
                "s.port=p.port AND s.rbase=x.value AND s.wild=1 AND s.host<>h.host AND host_matches(h.host,s.host)",
                gateway_competitor!()),
            ", ",
            winner!("gw_server", "s",
                "h.wild=1 AND s.port=p.port AND s.rbase>=host_rbase(h.host) AND s.rbase<host_rbase(h.host)||'\u{10FFFF}' \
                 AND s.host<>h.host AND host_matches(h.host,s.host)",
                gateway_competitor!())
        )
    };
}

/// The Gateway `ow` of server `s` is an unmanaged one on the workload of MeshService `m`'s
/// Gateway, other than that Gateway.
macro_rules! gateway_competitor {
    () => {
        concat!(
            " AND s.host<>'' AND ow.managed=0 AND (ow.ns||'/'||ow.name)<>",
            own_gateway!(),
            " AND (SELECT g.sel FROM gateway g WHERE g.obj=s.obj)=(SELECT g.sel FROM object go JOIN gateway g ON g.obj=go.id \
               WHERE go.kind='Gateway' AND go.grp='networking.istio.io' AND go.ns=m.gw_ns AND go.name=m.gw_name)"
        )
    };
}

/// The targeted query for a MeshService: its own claims against MeshServices, VirtualServices and
/// unmanaged Gateways on the same selector.
macro_rules! meshservice_loses {
    () => {
        concat!(
            "SELECT m.obj, ",
            own_gateway!(),
            ", h.host, h.idx, p.port, NULL, ",
            overlapping!(
                "ms_host",
                "a",
                "h.fqdn",
                "h.wild",
                " AND a.obj<>m.obj",
                ms_claims!(own_gateway!(), " AND bp.port=p.port")
            ),
            ", ",
            overlapping!(
                "vs_host",
                "v",
                "h.fqdn",
                "h.wild",
                " AND ",
                not_owned_by_a_meshservice!("ow"),
                " AND ((",
                own_gateway!(),
                "='mesh' AND EXISTS (SELECT 1 FROM object vv WHERE vv.id=v.obj AND vv.vs_mesh=1)) \
                   OR EXISTS (SELECT 1 FROM vs_gateway g WHERE g.obj=v.obj AND g.gw_ns||'/'||g.gw_name=",
                own_gateway!(),
                "))"
            ),
            ", ",
            gateway_competitors!(),
            " FROM ms m JOIN object lo ON lo.id = m.obj JOIN ms_host h ON h.obj = m.obj JOIN ms_port p ON p.obj = m.obj \
             WHERE m.obj = ?1 AND lo.kind = 'MeshService' AND lo.grp = 'mesh.istio.operator' \
               AND NOT EXISTS (SELECT 1 FROM ms_host h2 WHERE h2.obj = h.obj AND h2.idx < h.idx AND h2.host = h.host) \
               AND NOT EXISTS (SELECT 1 FROM ms_port p2 WHERE p2.obj = p.obj AND p2.rowid < p.rowid AND p2.port = p.port)",
        )
    };
}

/// The targeted query for a VirtualService: on the mesh, and on each gateway it names, against
/// MeshServices.
macro_rules! virtualservice_loses {
    () => {
        concat!(
            vs_lost!("'mesh'", "", " AND lo.vs_mesh = 1"),
            " UNION ALL ",
            vs_lost!(
                "g.gw_ns || '/' || g.gw_name",
                "JOIN vs_gateway g ON g.obj = v.obj",
                " AND NOT EXISTS (SELECT 1 FROM vs_gateway g2 WHERE g2.obj = g.obj AND g2.idx < g.idx \
                   AND g2.gw_ns || '/' || g2.gw_name = g.gw_ns || '/' || g.gw_name)"
            ),
        )
    };
}

/// The targeted query for a Gateway: against the MeshServices of every Gateway with its selector.
/// It goes through the Gateways MeshServices claim on (one `ms` row each, by `ms_gateway`) and
/// keeps those with its selector, rather than through every Gateway with its selector: most
/// installations have one ingress workload, and 10k Gateways on it made a Gateway event 28 ms.
macro_rules! gateway_loses {
    () => {
        concat!(
            "SELECT gb.obj, og.ns || '/' || og.name, s.host, NULL, s.port, NULL, NULL, NULL, NULL, NULL, NULL, NULL, ",
            winner!(
                "ms",
                "m",
                "m.gw_ns = og.ns AND m.gw_name = og.name \
                 AND ow.kind = 'MeshService' AND ow.grp = 'mesh.istio.operator' \
                 AND EXISTS (SELECT 1 FROM ms_port bp WHERE bp.obj = m.obj AND bp.port = s.port) \
                 AND EXISTS (SELECT 1 FROM ms_host a WHERE a.obj = m.obj \
                   AND (s.host = a.host OR ((a.wild OR s.wild) AND host_matches(a.host, s.host))))"
            ),
            " FROM gateway gb CROSS JOIN object lo ON lo.id = gb.obj \
               CROSS JOIN ms mg ON mg.gw_ns > '' AND NOT EXISTS (SELECT 1 FROM ms m2 \
                 WHERE m2.gw_ns = mg.gw_ns AND m2.gw_name = mg.gw_name AND m2.obj < mg.obj) \
               CROSS JOIN object og ON og.kind = 'Gateway' AND og.grp = 'networking.istio.io' AND og.ns = mg.gw_ns AND og.name = mg.gw_name \
               CROSS JOIN gateway gg ON gg.obj = og.id CROSS JOIN gw_server s ON s.obj = gb.obj \
             WHERE gb.obj = ?1 AND lo.managed = 0 AND gg.sel = gb.sel \
               AND (lo.ns || '/' || lo.name) <> (og.ns || '/' || og.name) AND s.port IS NOT NULL AND s.host <> '' \
               AND NOT EXISTS (SELECT 1 FROM gw_server s2 WHERE s2.obj = s.obj AND s2.host = s.host AND +s2.port = s.port \
                 AND (s2.sidx, s2.hidx) < (s.sidx, s.hidx))"
        )
    };
}

pub(crate) static RULE: RuleInfo = rule(
    "MSH0201",
    "meshservice-host-claim-lost",
    Severity::Error,
    "A host claimed on a gateway port is claimed by an older MeshService, VirtualService or Gateway.",
    "Two MeshServices, or a MeshService and a VirtualService or Gateway it does not own, claim one host on \
     one gateway port. The oldest creationTimestamp wins (then namespace/name); the loser is reported with \
     the structured host, port and gateway it lost and the winner, and the operator leaves those hosts out \
     of what it applies (status Accepted=False, reason HostConflict). Example: MeshService `shop/cart` \
     claims `cart.example.com` on `istio-system/public` port 443, already served by the older VirtualService \
     `legacy/cart`.",
);

pub(crate) static ANALYSIS: Analysis = Analysis {
    rules: &[&RULE],
    reports_on: &["MeshService", "VirtualService", "Gateway"],
    sql: "WITH \
          msk AS MATERIALIZED (SELECT o.id, o.ns || '/' || o.name AS k FROM object o WHERE o.kind = 'MeshService' AND o.grp = 'mesh.istio.operator'), \
          mc AS MATERIALIZED ( \
            SELECT m.obj, coalesce(m.gw_ns || '/' || m.gw_name, 'mesh') AS gw, h.host, h.fqdn, h.wild, h.idx AS hidx, p.port, k.k AS key, \
              (SELECT g.sel FROM object go JOIN gateway g ON g.obj = go.id WHERE go.kind = 'Gateway' \
                 AND go.grp = 'networking.istio.io' AND go.ns = m.gw_ns AND go.name = m.gw_name) AS sel \
            FROM ms m JOIN ms_host h ON h.obj = m.obj JOIN ms_port p ON p.obj = m.obj JOIN msk k ON k.id = m.obj), \
          mvh AS ( \
            SELECT a.obj AS ms, a.gw, a.host, a.hidx, a.port, a.key, h.obj AS vs, h.host AS vhost, h.idx AS vidx \
              FROM mc a CROSS JOIN vs_host h ON h.fqdn = a.fqdn \
            UNION ALL \
            SELECT a.obj, a.gw, a.host, a.hidx, a.port, a.key, h.obj, h.host, h.idx \
              FROM mc a CROSS JOIN vs_host h ON h.wild = 1 AND h.fqdn <> a.fqdn AND host_matches(a.fqdn, h.fqdn) \
            UNION ALL \
            SELECT a.obj, a.gw, a.host, a.hidx, a.port, a.key, h.obj, h.host, h.idx \
              FROM mc a CROSS JOIN vs_host h ON a.wild = 1 AND h.wild = 0 AND h.fqdn <> a.fqdn AND host_matches(a.fqdn, h.fqdn)), \
          mv AS MATERIALIZED ( \
            SELECT x.* FROM mvh x CROSS JOIN object vo ON vo.id = x.vs \
            WHERE (vo.owner IS NULL OR vo.owner NOT IN (SELECT k FROM msk)) \
              AND ((x.gw = 'mesh' AND vo.vs_mesh = 1) \
                OR EXISTS (SELECT 1 FROM vs_gateway g WHERE g.obj = x.vs AND g.gw_ns || '/' || g.gw_name = x.gw))), \
          mgs AS ( \
            SELECT a.obj AS ms, a.gw, a.host, a.hidx, a.port, a.sel, s.obj AS gwobj, s.host AS ghost FROM mc a \
              CROSS JOIN gw_server s ON s.port = a.port AND s.rbase = host_rbase(a.host) AND s.host = a.host \
            UNION ALL SELECT a.obj, a.gw, a.host, a.hidx, a.port, a.sel, s.obj, s.host FROM mc a \
              CROSS JOIN json_each(host_rbase_prefixes(a.host)) x CROSS JOIN gw_server s ON s.port = a.port AND s.rbase = x.value \
              WHERE s.wild = 1 AND s.host <> a.host AND host_matches(a.host, s.host) \
            UNION ALL SELECT a.obj, a.gw, a.host, a.hidx, a.port, a.sel, s.obj, s.host FROM mc a CROSS JOIN gw_server s \
              ON s.port = a.port AND s.rbase >= host_rbase(a.host) AND s.rbase < host_rbase(a.host) || char(1114111) \
              WHERE a.wild = 1 AND s.host <> a.host AND host_matches(a.host, s.host)), \
          mg AS MATERIALIZED ( \
            SELECT c.ms, c.gw, c.host, c.hidx, c.port, c.gwobj, c.ghost FROM mgs c \
              CROSS JOIN gateway gb ON gb.obj = c.gwobj AND gb.sel = c.sel \
              CROSS JOIN object go ON go.id = gb.obj AND go.managed = 0 AND (go.ns || '/' || go.name) <> c.gw \
            WHERE c.ghost <> ''), \
          pairs AS ( \
            SELECT a.obj AS loser, b.obj AS other, a.gw, a.host, a.hidx, a.port FROM mc a CROSS JOIN mc b \
              ON b.gw = a.gw AND b.port = a.port AND b.obj <> a.obj \
             AND (b.fqdn = a.fqdn OR ((a.wild OR b.wild) AND host_matches(a.fqdn, b.fqdn))) \
            UNION ALL SELECT ms, vs, gw, host, hidx, port FROM mv \
            UNION ALL SELECT vs, ms, gw, vhost, vidx, NULL FROM mv \
            UNION ALL SELECT ms, gwobj, gw, host, hidx, port FROM mg \
            UNION ALL SELECT gwobj, ms, gw, ghost, NULL, port FROM mg) \
          SELECT p.loser, p.gw, p.host, p.hidx, p.port, p.other, \
                 min(coalesce(ow.created, '~') || char(1) || ow.ns || char(1) || ow.name || char(1) || ow.kind) AS wkey \
          FROM pairs p CROSS JOIN object ol ON ol.id = p.loser CROSS JOIN object ow ON ow.id = p.other \
          WHERE {t} AND (coalesce(ow.created, '~'), ow.ns, ow.name, ow.kind) < (coalesce(ol.created, '~'), ol.ns, ol.name, ol.kind) \
          GROUP BY p.loser, p.gw, p.host, p.port ORDER BY p.loser, p.gw, p.host, p.port",
    // For one object: its own claims (a MeshService), or the claims on its hosts (a VirtualService
    // or Gateway), one row per (gateway, host, port) it can lose, as the full query groups them.
    // The winner of each is the smallest key among a few correlated `min()` subqueries, each an
    // index probe from the row's host; `build` takes the smallest and drops rows with none. No
    // materialised CTE, GROUP BY, ORDER BY or IN (subquery): each costs a temporary b-tree. A host
    // or port written twice gives one row (the first), as one group of the full query.
    //
    // The loser's rows come from its kind's query (one statement per kind, rather than one
    // UNION ALL of all parts: a statement's set-up and tear-down grow with every cursor it could
    // open, and the other kinds' parts found nothing anyway): a MeshService against MeshServices, VirtualServices and unmanaged Gateways on the same
    // selector; a VirtualService on the mesh, and on each gateway it names, against MeshServices;
    // a Gateway against the MeshServices of every Gateway with its selector (told apart by object,
    // where the full query groups by the `ns/name` text: the same unless a namespace or name holds
    // a `/`, which Kubernetes forbids). The Gateway part's joins are CROSS JOINs and `+s.port`
    // hides the port index: without statistics SQLite would otherwise start from every Gateway, or
    // every server on the port, which grows with the mesh (`the_targeted_query_neither_sorts_nor_
    // materialises` checks the plan).
    targeted_sql: None,
    targeted_by_kind: &[
        ("MeshService", meshservice_loses!()),
        ("VirtualService", virtualservice_loses!()),
        ("Gateway", gateway_loses!()),
    ],
    targets: &[("{t}", "p.loser = ?1")],
    once_per_object: false,
    guard: Some("SELECT EXISTS (SELECT 1 FROM ms)"),
    rule_of_row: None,
    build,
};

fn build(ctx: &Ctx, row: &Row) -> Result<Option<Hit>, Error> {
    // The full query names the winner in column 5; the targeted one gives, from column 6 on, the
    // smallest key of each kind of competitor (NULL: none older), each ending in char(2) and the id.
    let winner_id = match row.oi(5) {
        Some(id) => id,
        None => {
            let smallest = (6..row.0.len()).filter_map(|n| row.os(n)).min();
            match smallest.and_then(|k| k.rsplit_once('\u{2}').and_then(|(_, id)| id.parse().ok()))
            {
                Some(id) => id,
                None => return Ok(None),
            }
        }
    };
    let loser_id = row.i(0);
    let loser = ctx.obj(loser_id)?;
    let winner = ctx.obj(winner_id)?;
    let gw = row.s(1);
    let host = row.s(2);
    let port = row.oi(4);
    let on_port = port.map(|p| format!(" port {p}")).unwrap_or_default();
    let gateway = if loser.key.kind == "Gateway" {
        loser.nsname()
    } else {
        gw.clone()
    };
    let message = match loser.key.kind.as_str() {
        "MeshService" => format!(
            "host {host} on gateway {gw}{on_port} is already claimed by {} (older); this claim loses and the host is not applied",
            winner.display()
        ),
        _ => format!(
            "host {host} on gateway {gw}{on_port} is claimed by the older {}; {} conflicts with it",
            winner.display(),
            loser.display()
        ),
    };
    let mut hit = Hit::new(&RULE, loser_id, message)
        .related(vec![winner_id])
        .link(
            loser.display(),
            "spec.hosts",
            format!("{host}{on_port} on {gw}: won by {}", winner.display()),
        );
    let table = match loser.key.kind.as_str() {
        "MeshService" => Some("ms_host"),
        "VirtualService" => Some("vs_host"),
        _ => None,
    };
    let n_hosts = match table {
        Some(t) => ctx
            .rows(
                &format!("SELECT count(*) FROM {t} WHERE obj = ?1"),
                [loser_id],
            )?
            .first()
            .map(|r| r.i(0))
            .unwrap_or(0),
        None => 0,
    };
    hit = match (row.oi(3), n_hosts > 1) {
        (Some(idx), true) => hit.repair(patch(
            &loser,
            json!([{"op": "remove", "path": format!("/spec/hosts/{idx}")}]),
            format!("drop host {host} from {} (it is {}'s), or agree with its owner which object serves it", loser.display(), winner.display()),
        )),
        _ => hit.repair(RepairAction::none(format!(
            "no safe automatic repair: {host} is served by the older {}; choose another host, or have its owner release it",
            winner.display()
        ))),
    };
    hit.host = Some(host);
    hit.port = port.map(|p| p as u32);
    hit.gateway = Some(gateway);
    hit.winner = Some(winner_id);
    Ok(Some(hit))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    /// The Gateway claims of the full query as first written: every Gateway on the claim's
    /// workload and each of its servers, compared. The specification the host-first `mgs` is
    /// held to.
    const ALL_GATEWAYS_MG: &str = "mg AS MATERIALIZED ( \
        SELECT a.obj AS ms, a.gw, a.host, a.hidx, a.port, s.obj AS gwobj, s.host AS ghost FROM mc a \
          CROSS JOIN gateway gb ON gb.sel = a.sel \
          CROSS JOIN object go ON go.id = gb.obj AND go.managed = 0 AND (go.ns || '/' || go.name) <> a.gw \
          CROSS JOIN gw_server s ON s.obj = gb.obj AND +s.port = a.port AND s.host <> '' \
        WHERE s.host = a.host OR ((a.wild OR s.wild) AND host_matches(a.host, s.host))), ";

    /// MeshServices on two Gateways and unmanaged Gateways on two workloads, with every kind of
    /// wildcard overlap between their hosts.
    fn object() -> impl Strategy<Value = serde_json::Value> {
        let host = prop::sample::select(vec![
            "cart.example.com",
            "*.example.com",
            "*.shop.example.com",
            "cart.shop.example.com",
            "cart",
            "*",
            "*hop.example.com",
            "example.com",
        ]);
        let hosts = prop::collection::vec(host, 1..3);
        let created = prop::sample::select(vec!["2023-01-01T00:00:00Z", "2024-01-01T00:00:00Z"]);
        let name = prop::sample::select(vec!["a", "b", "c"]);
        let port = prop::sample::select(vec![80u16, 443]);
        (any::<bool>(), name, created, hosts, port, 0u8..3).prop_map(
            |(is_ms, name, created, hosts, port, variant)| {
                let gw = ["a", "b", "c"][usize::from(variant)];
                if is_ms {
                    json!({"apiVersion": "mesh.istio.operator/v1alpha1", "kind": "MeshService",
                        "metadata": {"name": name, "namespace": "shop", "creationTimestamp": created},
                        "spec": {"serviceName": name, "hosts": hosts, "ports": [{"port": port}],
                                 "gateway": {"name": gw, "namespace": "istio-system"}}})
                } else {
                    let selector = if variant == 0 { "egress" } else { "ingress" };
                    json!({"apiVersion": "networking.istio.io/v1", "kind": "Gateway",
                        "metadata": {"name": name, "namespace": "istio-system", "creationTimestamp": created},
                        "spec": {"selector": {"istio": selector}, "servers": [
                            {"port": {"number": port, "name": "p", "protocol": "HTTP"}, "hosts": hosts}]}})
                }
            },
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn the_host_first_gateway_claims_equal_comparing_every_gateway(
            objects in prop::collection::vec(object(), 1..9),
        ) {
            let mut engine = crate::Engine::open_in_memory().expect("engine");
            for object in objects {
                engine.upsert(object).expect("upsert");
            }
            let full = ANALYSIS.sql_for(None);
            let start = full.find("mgs AS (").expect("mgs");
            let end = full.find("pairs AS (").expect("pairs");
            let specified = format!("{}{ALL_GATEWAYS_MG}{}", &full[..start], &full[end..]);
            prop_assert_eq!(values(&engine, &full, []), values(&engine, &specified, []));
        }
    }

    /// The targeted query runs on every watch event: no step of its plan may build a temporary
    /// b-tree or table (a few microseconds each), and every lookup goes through an index (a scan
    /// grows with the mesh) but one: the plain VirtualService hosts a wildcard MeshService host is
    /// matched against, which only a MeshService with a wildcard host takes. (The prefixes of a
    /// host, read through `json_each`, are not a table.)
    #[test]
    fn the_targeted_query_neither_sorts_nor_materialises() {
        let engine = crate::Engine::open_in_memory().expect("engine");
        let mut plan: Vec<String> = Vec::new();
        for (kind, sql) in ANALYSIS.targeted_sql_by_kind() {
            assert!(ANALYSIS.reports_on.contains(&kind));
            let sql = format!("EXPLAIN QUERY PLAN {sql}");
            let mut stmt = engine.connection().prepare(&sql).expect("plan");
            plan.extend(
                stmt.query_map([1], |r| r.get::<_, String>(3))
                    .expect("plan")
                    .collect::<Result<Vec<_>, _>>()
                    .expect("plan"),
            );
        }
        assert_eq!(
            ANALYSIS.targeted_sql_by_kind().count(),
            ANALYSIS.reports_on.len(),
            "every kind it reports on has its query"
        );
        let text = plan.join("\n");
        for costly in ["TEMP B-TREE", "MATERIALIZE", "AUTOMATIC"] {
            assert!(!text.contains(costly), "{costly} in\n{text}");
        }
        let unindexed: Vec<&str> = plan
            .iter()
            .map(String::as_str)
            .filter(|s| {
                s.starts_with("SCAN") || (s.starts_with("SEARCH") && !s.contains(" USING "))
            })
            // json_each over a host's prefixes: as many rows as the host has characters
            .filter(|s| !s.contains("VIRTUAL TABLE"))
            .collect();
        assert_eq!(unindexed, ["SEARCH v"], "{text}");
    }
}
