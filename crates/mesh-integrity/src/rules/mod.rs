//! The rule registry. One module per analysis: its SQL, its rule(s) (stable code, kebab-case
//! name, default severity, documentation) and how a result row becomes a finding with a repair plan.
//!
//! Several Istio findings share code IST0101 ("ReferencedResourceNotFound") with different rule
//! names: the registry key is the rule name.

use std::sync::LazyLock;

use rusqlite::types::Value as Sql;
use serde_json::{Value, json};

use crate::engine::{Ctx, ObjInfo};
use crate::error::Error;
use crate::finding::{
    ActionKind, ChainLink, RepairAction, ReportedBy, ResourceRef, RuleInfo, Severity,
};

mod dr_duplicate_host;
mod dr_host_unknown;
mod export_to_namespace;
mod gateway_conflict;
mod gateway_credential;
mod gateway_port_not_on_service;
mod gateway_selector_no_pod;
mod gateway_wildcard_overlap;
mod mesh_gateway_hosts;
mod meshservice_claims;
mod meshservice_gateway;
mod meshservice_names;
mod operator_reported;
mod se_host_port_claims;
mod se_protocol_conflict;
mod sidecars;
mod undecodable;
mod vs_destinations;
mod vs_gateway_not_found;
mod vs_host_not_in_gateway;
mod vs_subsets;

/// Every analysis, in report order.
static ANALYSES: &[&Analysis] = &[
    &undecodable::ANALYSIS,
    &vs_gateway_not_found::ANALYSIS,
    &vs_host_not_in_gateway::ANALYSIS,
    &vs_destinations::ANALYSIS,
    &vs_subsets::ANALYSIS,
    &dr_host_unknown::ANALYSIS,
    &mesh_gateway_hosts::ANALYSIS,
    &se_protocol_conflict::ANALYSIS,
    &gateway_conflict::ANALYSIS,
    &gateway_selector_no_pod::ANALYSIS,
    &gateway_port_not_on_service::ANALYSIS,
    &gateway_credential::ANALYSIS,
    &sidecars::NO_POD,
    &sidecars::CONFLICT,
    &sidecars::MULTIPLE,
    &gateway_wildcard_overlap::ANALYSIS,
    &dr_duplicate_host::ANALYSIS,
    &se_host_port_claims::ANALYSIS,
    &export_to_namespace::ANALYSIS,
    &meshservice_claims::ANALYSIS,
    &meshservice_gateway::NOT_FOUND,
    &meshservice_gateway::NOT_SERVED,
    &meshservice_names::SERVICE,
    &meshservice_names::VIRTUAL_SERVICE,
];

pub(crate) fn analyses() -> &'static [&'static Analysis] {
    ANALYSES
}

static RULES: LazyLock<Vec<RuleInfo>> = LazyLock::new(|| {
    let mut rules: Vec<RuleInfo> = Vec::new();
    let engine_rules = ANALYSES.iter().flat_map(|a| a.rules.iter());
    for r in engine_rules.chain(operator_reported::RULES) {
        if !rules.iter().any(|x| x.name == r.name) {
            rules.push(**r);
        }
    }
    rules.sort_by(|a, b| (a.code, a.name).cmp(&(b.code, b.name)));
    rules
});

/// Every rule, sorted by code then name (for `--list-rules` and generated docs): those the engine
/// runs, and those only the operator reports ([`ReportedBy::Operator`]).
pub fn rules() -> &'static [RuleInfo] {
    &RULES
}

/// Looks a rule up by name.
pub fn rule_by_name(name: &str) -> Option<&'static RuleInfo> {
    rules().iter().find(|r| r.name == name)
}

/// Every kind the engine stores (MSH0001 can be reported on any of them).
pub(crate) const ALL_KINDS: &[&str] = &[
    "VirtualService",
    "Gateway",
    "DestinationRule",
    "ServiceEntry",
    "Sidecar",
    "Service",
    "Namespace",
    "Pod",
    "Secret",
    "MeshService",
];

/// One SQL query and the rules its rows become. The first column of every row is the id of the
/// object the finding is reported on.
pub(crate) struct Analysis {
    pub rules: &'static [&'static RuleInfo],
    /// Kinds the findings are reported on (for `findings_for`).
    pub reports_on: &'static [&'static str],
    /// SQL with placeholders replaced by `1` for a full check, or by the predicate (using `?1`,
    /// the reported object's id) for a targeted one.
    pub sql: &'static str,
    /// A cheaper SQL for the targeted run, when the full one is built for bulk (same columns;
    /// `build` must then filter rows that are not findings).
    pub targeted_sql: Option<&'static str>,
    /// Targeted SQL for the objects of one kind, taking precedence over `targeted_sql`: for an
    /// analysis whose targeted query would otherwise be a UNION ALL of parts that each serve one
    /// kind (a statement costs more to run the more cursors it has, even those that find nothing).
    pub targeted_by_kind: &'static [(&'static str, &'static str)],
    pub targets: &'static [(&'static str, &'static str)],
    /// Keep only the first row per reported object.
    pub once_per_object: bool,
    /// A cheap `SELECT EXISTS (...)`: when it is false the analysis cannot find anything and is skipped.
    pub guard: Option<&'static str>,
    /// For an analysis of several rules: which one a row of the full query becomes (counting
    /// findings without building them). `None`: the analysis has one rule.
    pub rule_of_row: Option<fn(&Row) -> &'static RuleInfo>,
    pub build: fn(&Ctx, &Row) -> Result<Option<Hit>, Error>,
}

impl Analysis {
    pub fn sql_for(&self, targeted: Option<()>) -> String {
        match (targeted, self.targeted_sql) {
            (Some(()), Some(t)) => self.with_targets(t, true),
            _ => self.with_targets(self.sql, targeted.is_some()),
        }
    }

    /// [`Analysis::targeted_by_kind`] with the targets' placeholders replaced.
    pub fn targeted_sql_by_kind(&self) -> impl Iterator<Item = (&'static str, String)> + '_ {
        self.targeted_by_kind
            .iter()
            .map(|(kind, sql)| (*kind, self.with_targets(sql, true)))
    }

    /// `sql` with each target placeholder replaced by its predicate (targeted) or by `1` (all).
    fn with_targets(&self, sql: &str, targeted: bool) -> String {
        let mut sql = sql.to_string();
        for (placeholder, predicate) in self.targets {
            sql = sql.replace(placeholder, if targeted { predicate } else { "1" });
        }
        sql
    }

    /// The rule a row of the full query becomes a finding of.
    pub fn rule_of(&self, row: &Row) -> &'static RuleInfo {
        match self.rule_of_row {
            Some(rule_of_row) => rule_of_row(row),
            None => self.rules[0],
        }
    }

    /// The first required kind missing from `present`, if any.
    pub fn missing(&self, present: &[String]) -> Option<&'static str> {
        self.rules
            .iter()
            .flat_map(|r| r.requires.iter())
            .find(|k| !present.iter().any(|p| p == *k))
            .copied()
    }
}

/// A result row.
pub(crate) struct Row(pub Vec<Sql>);

/// The rows of `sql` as plain values, for tests that compare a query with its specification.
#[cfg(test)]
pub(crate) fn values(
    engine: &crate::Engine,
    sql: &str,
    params: impl rusqlite::Params,
) -> Vec<Vec<Sql>> {
    crate::engine::query_rows(engine.connection(), sql, params)
        .expect("query")
        .into_iter()
        .map(|row| row.0)
        .collect()
}

impl Row {
    pub fn i(&self, n: usize) -> i64 {
        self.oi(n).unwrap_or(0)
    }
    pub fn oi(&self, n: usize) -> Option<i64> {
        match self.0.get(n) {
            Some(Sql::Integer(i)) => Some(*i),
            Some(Sql::Real(f)) => Some(*f as i64),
            Some(Sql::Text(t)) => t.parse().ok(),
            _ => None,
        }
    }
    pub fn s(&self, n: usize) -> String {
        self.os(n).unwrap_or_default()
    }
    pub fn os(&self, n: usize) -> Option<String> {
        match self.0.get(n) {
            Some(Sql::Text(t)) => Some(t.clone()),
            Some(Sql::Integer(i)) => Some(i.to_string()),
            _ => None,
        }
    }
    /// A `group_concat` of ids.
    pub fn ids(&self, n: usize) -> Vec<i64> {
        let mut ids: Vec<i64> = self
            .s(n)
            .split(',')
            .filter_map(|s| s.trim().parse().ok())
            .collect();
        ids.sort();
        ids.dedup();
        ids
    }
}

/// A finding before it is resolved to names.
pub(crate) struct Hit {
    pub rule: &'static RuleInfo,
    pub obj: i64,
    pub message: String,
    pub related: Vec<i64>,
    pub chain: Vec<ChainLink>,
    pub repair: Vec<RepairAction>,
    pub host: Option<String>,
    pub port: Option<u32>,
    pub gateway: Option<String>,
    pub winner: Option<i64>,
}

impl Hit {
    pub fn new(rule: &'static RuleInfo, obj: i64, message: String) -> Hit {
        Hit {
            rule,
            obj,
            message,
            related: Vec::new(),
            chain: Vec::new(),
            repair: Vec::new(),
            host: None,
            port: None,
            gateway: None,
            winner: None,
        }
    }
    pub fn related(mut self, ids: Vec<i64>) -> Self {
        self.related = ids;
        self
    }
    pub fn link(
        mut self,
        from: impl Into<String>,
        path: impl Into<String>,
        to: impl Into<String>,
    ) -> Self {
        self.chain.push(ChainLink {
            from: from.into(),
            path: path.into(),
            to: to.into(),
        });
        self
    }
    pub fn repair(mut self, action: RepairAction) -> Self {
        self.repair.push(action);
        self
    }
}

pub(crate) const fn rule(
    code: &'static str,
    name: &'static str,
    severity: Severity,
    summary: &'static str,
    explanation: &'static str,
) -> RuleInfo {
    rule_requiring(code, name, severity, summary, explanation, &[])
}

pub(crate) const fn rule_requiring(
    code: &'static str,
    name: &'static str,
    severity: Severity,
    summary: &'static str,
    explanation: &'static str,
    requires: &'static [&'static str],
) -> RuleInfo {
    RuleInfo {
        code,
        name,
        severity,
        summary,
        explanation,
        requires,
        reported_by: ReportedBy::Engine,
    }
}

/// `rule` as one only the operator reports (no SQL: the engine never finds it).
pub(crate) const fn reported_by_operator(rule: RuleInfo) -> RuleInfo {
    RuleInfo {
        reported_by: ReportedBy::Operator,
        ..rule
    }
}

/// `/spec/http/0/route/1/destination` → `spec.http[0].route[1].destination`.
pub(crate) fn pointer_to_path(pointer: &str) -> String {
    let mut out = String::new();
    for part in pointer.trim_start_matches('/').split('/') {
        if part.chars().all(|c| c.is_ascii_digit()) && !part.is_empty() {
            out.push_str(&format!("[{part}]"));
        } else {
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(part);
        }
    }
    out
}

/// A resource that does not exist yet.
pub(crate) fn new_ref(api_version: &str, kind: &str, namespace: &str, name: &str) -> ResourceRef {
    ResourceRef {
        api_version: api_version.into(),
        kind: kind.into(),
        namespace: namespace.into(),
        name: name.into(),
    }
}

/// Create `object` (advice for a human).
pub(crate) fn create(object: Value, description: String) -> RepairAction {
    let target = new_ref(
        object["apiVersion"].as_str().unwrap_or(""),
        object["kind"].as_str().unwrap_or(""),
        object["metadata"]["namespace"].as_str().unwrap_or(""),
        object["metadata"]["name"].as_str().unwrap_or(""),
    );
    RepairAction {
        action: ActionKind::Create,
        target: Some(target),
        patch: None,
        object: Some(object),
        operator_may_apply: false,
        description,
    }
}

/// Patch `target` with JSON Patch `ops`; the operator may apply it only to what it owns.
pub(crate) fn patch(target: &ObjInfo, ops: Value, description: String) -> RepairAction {
    RepairAction {
        action: ActionKind::Patch,
        target: Some(target.resource()),
        patch: Some(ops),
        object: None,
        operator_may_apply: target.operator_owned(),
        description,
    }
}

/// A DNS-1123 name derived from arbitrary text.
pub(crate) fn dns_name(text: &str) -> String {
    let mut out: String = text
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    while out.contains("--") {
        out = out.replace("--", "-");
    }
    let out = out.trim_matches('-').to_string();
    let mut out: String = out.chars().take(63).collect();
    while out.ends_with('-') {
        out.pop();
    }
    if out.is_empty() {
        "generated".into()
    } else {
        out
    }
}

/// An Istio Gateway serving `hosts` on the given (port, protocol) servers.
pub(crate) fn gateway_object(
    ns: &str,
    name: &str,
    servers: &[(i64, String)],
    hosts: &[String],
    credential: Option<&str>,
) -> Value {
    let hosts: Vec<String> = if hosts.is_empty() {
        vec!["*".into()]
    } else {
        hosts.to_vec()
    };
    let servers: Vec<Value> = servers
        .iter()
        .map(|(port, protocol)| {
            let protocol = protocol.to_ascii_uppercase();
            let mut server = json!({
                "port": {"number": port, "name": format!("{}-{}", protocol.to_ascii_lowercase(), port), "protocol": protocol},
                "hosts": hosts,
            });
            match protocol.as_str() {
                "HTTPS" => {
                    server["tls"] = json!({"mode": "SIMPLE", "credentialName": credential.map(str::to_string).unwrap_or(format!("{name}-cert"))})
                }
                "TLS" => server["tls"] = json!({"mode": "PASSTHROUGH"}),
                _ => {}
            }
            server
        })
        .collect();
    json!({
        "apiVersion": "networking.istio.io/v1",
        "kind": "Gateway",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"selector": {"istio": "ingressgateway"}, "servers": servers},
    })
}

/// JSON Patch adding `host` to a gateway: to server `sidx` when it has servers, else a new HTTP server.
pub(crate) fn add_gateway_host(
    ctx: &Ctx,
    gateway: i64,
    sidx: i64,
    host: &str,
    port: i64,
) -> Result<Value, Error> {
    let n: i64 = ctx
        .rows("SELECT n_servers FROM gateway WHERE obj = ?1", [gateway])?
        .first()
        .map(|r| r.i(0))
        .unwrap_or(0);
    let with_hosts = ctx.rows(
        "SELECT 1 FROM gw_server WHERE obj = ?1 AND sidx = ?2 AND raw <> ''",
        [gateway, sidx],
    )?;
    Ok(if n == 0 {
        json!([{"op": "add", "path": "/spec/servers", "value": [
            {"port": {"number": port, "name": format!("http-{port}"), "protocol": "HTTP"}, "hosts": [host]}
        ]}])
    } else if with_hosts.is_empty() {
        json!([{"op": "add", "path": format!("/spec/servers/{sidx}/hosts"), "value": [host]}])
    } else {
        json!([{"op": "add", "path": format!("/spec/servers/{sidx}/hosts/-"), "value": host}])
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_engine_runs_every_engine_rule_and_no_operator_rule() {
        let run: Vec<&str> = analyses()
            .iter()
            .flat_map(|a| a.rules.iter())
            .inspect(|r| assert_eq!(r.reported_by, ReportedBy::Engine, "{}", r.name))
            .map(|r| r.name)
            .collect();
        for rule in rules() {
            assert_eq!(
                run.contains(&rule.name),
                rule.reported_by == ReportedBy::Engine,
                "{}",
                rule.name
            );
        }
    }

    #[test]
    fn an_analysis_of_several_rules_says_which_rule_a_row_becomes() {
        for analysis in analyses() {
            assert!(
                analysis.rules.len() == 1 || analysis.rule_of_row.is_some(),
                "{} has {} rules and no rule_of_row: finding_counts could not tell them apart",
                analysis.rules[0].name,
                analysis.rules.len()
            );
        }
    }
}
