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
              AND ((x.gw = 'mesh' AND EXISTS (SELECT 1 FROM vs v WHERE v.obj = x.vs AND v.mesh = 1)) \
                OR EXISTS (SELECT 1 FROM vs_gateway g WHERE g.obj = x.vs AND g.gw_ns || '/' || g.gw_name = x.gw))), \
          mg AS MATERIALIZED ( \
            SELECT a.obj AS ms, a.gw, a.host, a.hidx, a.port, s.obj AS gwobj, s.host AS ghost FROM mc a \
              CROSS JOIN gateway gb ON gb.sel = a.sel \
              JOIN object go ON go.id = gb.obj AND go.managed = 0 AND (go.ns || '/' || go.name) <> a.gw \
              JOIN gw_server s ON s.obj = gb.obj AND s.port = a.port AND s.host <> '' \
            WHERE s.host = a.host OR ((a.wild OR s.wild) AND host_matches(a.host, s.host))), \
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
    targeted_sql: None,
    targets: &[("{t}", "p.loser = ?1")],
    once_per_object: false,
    guard: Some("SELECT EXISTS (SELECT 1 FROM ms)"),
    rule_of_row: None,
    build,
};

fn build(ctx: &Ctx, row: &Row) -> Result<Option<Hit>, Error> {
    let loser_id = row.i(0);
    let loser = ctx.obj(loser_id)?;
    let winner_id = row.i(5);
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
