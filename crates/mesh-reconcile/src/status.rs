//! The MeshService status, computed purely from what the engine found and what the apply did.
//!
//! Conditions follow the Gateway API route conventions: `Accepted`, `ResolvedRefs` and `Ready`,
//! each with a reason and the generation it describes. `lastTransitionTime` moves only when a
//! condition's status flips, so an unchanged world yields a byte-identical status and the
//! reconciler can skip the write (a status write is itself a watch event; writing timestamps on
//! every loop would feed the controller its own output forever).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use meshservice_api::{
    MAX_STATUS_FINDINGS, ManagedResource, MeshServiceStatus, StatusFinding, condition,
};

/// Finding codes the engine reports about a MeshService, and which condition each one drives.
pub mod code {
    /// A host/port claim lost to an older MeshService or VirtualService.
    pub const HOST_CLAIM_LOST: &str = "MSH0201";
    /// The unmanaged gateway the MeshService references does not exist.
    pub const GATEWAY_NOT_FOUND: &str = "MSH0202";
    /// The referenced gateway exists but serves none of a host's ports.
    pub const HOST_NOT_SERVED: &str = "MSH0203";
    /// The Service name is taken by a Service the MeshService does not own.
    pub const SERVICE_NAME_TAKEN: &str = "MSH0204";
    /// The VirtualService name is taken by one the MeshService does not own.
    pub const VIRTUAL_SERVICE_NAME_TAKEN: &str = "MSH0205";
    /// The managed Gateway's name is taken by a Gateway the operator does not manage. Found by
    /// the reconciler itself when it reads the Gateway before applying it.
    pub const GATEWAY_NAME_TAKEN: &str = "MSH0206";
    /// A port of the MeshService that its managed Gateway cannot serve (protocol already taken on
    /// that port number, HTTPS without a credential); from the renderer's dropped claims.
    pub const GATEWAY_PORT_DROPPED: &str = "MSH0207";
    /// The referenced gateway is in a namespace this operator does not watch (`--namespace`
    /// lists others): it can neither see it nor manage it. From the reconciler.
    pub const GATEWAY_NAMESPACE_NOT_WATCHED: &str = "MSH0208";
}

/// Condition reasons.
pub mod reason {
    /// Accepted=True.
    pub const ACCEPTED: &str = "Accepted";
    /// Accepted=False: a host claim lost to an older claimant.
    pub const HOST_CONFLICT: &str = "HostConflict";
    /// Accepted=False: a name of a child object is taken by an object the operator does not own.
    pub const NAME_CONFLICT: &str = "NameConflict";
    /// ResolvedRefs=True.
    pub const RESOLVED_REFS: &str = "ResolvedRefs";
    /// ResolvedRefs=False: the referenced unmanaged Gateway does not exist.
    pub const GATEWAY_NOT_FOUND: &str = "GatewayNotFound";
    /// ResolvedRefs=False: the referenced Gateway is in a namespace the operator does not watch.
    pub const GATEWAY_NAMESPACE_NOT_WATCHED: &str = "GatewayNamespaceNotWatched";
    /// ResolvedRefs=False: the referenced Gateway does not serve a host.
    pub const HOST_NOT_SERVED: &str = "HostNotServed";
    /// Ready=True.
    pub const READY: &str = "Ready";
    /// Ready=False because Accepted=False.
    pub const NOT_ACCEPTED: &str = "NotAccepted";
    /// Ready=False because ResolvedRefs=False.
    pub const REFS_NOT_RESOLVED: &str = "RefsNotResolved";
    /// Ready=False: writing a child object failed.
    pub const APPLY_FAILED: &str = "ApplyFailed";
    /// Ready=False: a child drifted and repair is off.
    pub const DRIFTED: &str = "Drifted";
}

/// States of a managed resource in `status.resources`.
pub mod state {
    /// Applied and matching the desired state.
    pub const APPLIED: &str = "Applied";
    /// Not written yet (the MeshService is not accepted, or the write failed).
    pub const PENDING: &str = "Pending";
    /// The name is taken by an object the operator does not own; left untouched.
    pub const CONFLICT: &str = "Conflict";
    /// Drifted and re-applied during this reconcile.
    pub const DRIFT_REPAIRED: &str = "DriftRepaired";
    /// Drifted, and repair is off.
    pub const DRIFTED: &str = "Drifted";
    /// Removed (the managed Gateway after its last contributor left).
    pub const DELETED: &str = "Deleted";
}

/// A finding of the engine about one MeshService, reduced to what the status needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MeshFinding {
    /// Stable rule code.
    pub code: String,
    /// `Error`, `Warning` or `Info`.
    pub severity: String,
    /// What is wrong, naming the other side.
    pub message: String,
    /// The other object involved, `Kind namespace/name`.
    pub related: Option<String>,
    /// For host-claim findings: the host this MeshService lost.
    pub host: Option<String>,
}

/// `True`, `False` or `Unknown`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// The condition holds.
    True,
    /// The condition does not hold.
    False,
    /// Not determined yet.
    Unknown,
}

impl Status {
    fn as_str(self) -> &'static str {
        match self {
            Status::True => "True",
            Status::False => "False",
            Status::Unknown => "Unknown",
        }
    }
}

/// A condition as the reconciler wants it, before timestamps and generations.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DesiredCondition {
    /// `Accepted`, `ResolvedRefs` or `Ready`.
    pub type_: &'static str,
    /// The status.
    pub status: Status,
    /// CamelCase reason.
    pub reason: &'static str,
    /// Human-readable detail.
    pub message: String,
}

/// What happened to the child objects during this reconcile.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ApplyOutcome {
    /// Every child matches the desired state (possibly after a repair).
    Applied,
    /// Nothing was written because the MeshService is not accepted (a name conflict).
    Withheld,
    /// A child drifted and `--repair=off` kept the operator from repairing it.
    Drifted(String),
    /// A write failed; the reconcile is retried with backoff.
    Failed(String),
}

/// The three conditions implied by the engine's findings and the apply outcome.
pub fn conditions(findings: &[MeshFinding], apply: &ApplyOutcome) -> [DesiredCondition; 3] {
    let messages = |codes: &[&str]| -> Option<String> {
        let matching: Vec<&str> = findings
            .iter()
            .filter(|f| codes.contains(&f.code.as_str()))
            .map(|f| f.message.as_str())
            .collect();
        (!matching.is_empty()).then(|| matching.join("; "))
    };

    let accepted = if let Some(message) = messages(&[
        code::SERVICE_NAME_TAKEN,
        code::VIRTUAL_SERVICE_NAME_TAKEN,
        code::GATEWAY_NAME_TAKEN,
    ]) {
        false_condition(condition::ACCEPTED, reason::NAME_CONFLICT, message)
    } else if let Some(message) = messages(&[code::HOST_CLAIM_LOST]) {
        false_condition(condition::ACCEPTED, reason::HOST_CONFLICT, message)
    } else {
        DesiredCondition {
            type_: condition::ACCEPTED,
            status: Status::True,
            reason: reason::ACCEPTED,
            message: "the MeshService is valid and its names and hosts are its own".into(),
        }
    };

    let resolved_refs = if let Some(message) = messages(&[code::GATEWAY_NAMESPACE_NOT_WATCHED]) {
        false_condition(
            condition::RESOLVED_REFS,
            reason::GATEWAY_NAMESPACE_NOT_WATCHED,
            message,
        )
    } else if let Some(message) = messages(&[code::GATEWAY_NOT_FOUND]) {
        false_condition(condition::RESOLVED_REFS, reason::GATEWAY_NOT_FOUND, message)
    } else if let Some(message) = messages(&[code::HOST_NOT_SERVED]) {
        false_condition(condition::RESOLVED_REFS, reason::HOST_NOT_SERVED, message)
    } else {
        DesiredCondition {
            type_: condition::RESOLVED_REFS,
            status: Status::True,
            reason: reason::RESOLVED_REFS,
            message: "every referenced object exists and serves the hosts".into(),
        }
    };

    // Ready summarises the others; the first cause that applies is the one a user must fix first.
    let ready = match apply {
        ApplyOutcome::Failed(error) => false_condition(
            condition::READY,
            reason::APPLY_FAILED,
            format!("applying the managed objects failed: {error}"),
        ),
        _ if accepted.status != Status::True => false_condition(
            condition::READY,
            reason::NOT_ACCEPTED,
            format!("not accepted ({}): {}", accepted.reason, accepted.message),
        ),
        ApplyOutcome::Drifted(what) => false_condition(
            condition::READY,
            reason::DRIFTED,
            format!("{what} drifted and repair is off"),
        ),
        _ if resolved_refs.status != Status::True => false_condition(
            condition::READY,
            reason::REFS_NOT_RESOLVED,
            format!(
                "applied, but traffic cannot flow yet ({}): {}",
                resolved_refs.reason, resolved_refs.message
            ),
        ),
        ApplyOutcome::Withheld => false_condition(
            condition::READY,
            reason::NOT_ACCEPTED,
            "the managed objects were withheld".into(),
        ),
        ApplyOutcome::Applied => DesiredCondition {
            type_: condition::READY,
            status: Status::True,
            reason: reason::READY,
            message: "the managed objects are applied at this generation".into(),
        },
    };

    [accepted, resolved_refs, ready]
}

fn false_condition(type_: &'static str, reason: &'static str, message: String) -> DesiredCondition {
    DesiredCondition {
        type_,
        status: Status::False,
        reason,
        message,
    }
}

/// The conditions to write: each desired condition at `generation`, keeping the previous
/// `lastTransitionTime` unless its status flipped (or it is new), in which case it becomes `now`.
pub fn merge_conditions(
    existing: &[Condition],
    desired: &[DesiredCondition],
    generation: Option<i64>,
    now: &Time,
) -> Vec<Condition> {
    desired
        .iter()
        .map(|want| {
            let previous = existing.iter().find(|c| c.type_ == want.type_);
            let last_transition_time = match previous {
                Some(previous) if previous.status == want.status.as_str() => {
                    previous.last_transition_time.clone()
                }
                _ => now.clone(),
            };
            Condition {
                type_: want.type_.to_string(),
                status: want.status.as_str().to_string(),
                reason: want.reason.to_string(),
                message: want.message.clone(),
                observed_generation: generation,
                last_transition_time,
            }
        })
        .collect()
}

/// The findings a status carries: the most severe first, then by code and message, at most
/// [`MAX_STATUS_FINDINGS`] (the report has them all).
pub fn status_findings(findings: &[MeshFinding]) -> Vec<StatusFinding> {
    let rank = |severity: &str| match severity {
        "Error" => 0,
        "Warning" => 1,
        _ => 2,
    };
    let mut sorted: Vec<&MeshFinding> = findings.iter().collect();
    sorted.sort_by(|a, b| {
        (rank(&a.severity), &a.code, &a.message).cmp(&(rank(&b.severity), &b.code, &b.message))
    });
    sorted.dedup_by(|a, b| a.code == b.code && a.message == b.message);
    sorted
        .into_iter()
        .take(MAX_STATUS_FINDINGS)
        .map(|f| StatusFinding {
            code: f.code.clone(),
            severity: f.severity.clone(),
            message: f.message.clone(),
            related: f.related.clone(),
        })
        .collect()
}

/// The whole status for `generation`.
pub fn build_status(
    previous: Option<&MeshServiceStatus>,
    generation: Option<i64>,
    desired: &[DesiredCondition],
    resources: Vec<ManagedResource>,
    findings: &[MeshFinding],
    now: &Time,
) -> MeshServiceStatus {
    let existing = previous
        .map(|s| s.conditions.as_slice())
        .unwrap_or_default();
    MeshServiceStatus {
        observed_generation: generation,
        conditions: merge_conditions(existing, desired, generation, now),
        resources,
        findings: status_findings(findings),
    }
}

/// The condition of `type_` in a status, if present.
pub fn find_condition<'a>(
    status: Option<&'a MeshServiceStatus>,
    type_: &str,
) -> Option<&'a Condition> {
    status?.conditions.iter().find(|c| c.type_ == type_)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::jiff::Timestamp;

    fn at(seconds: i64) -> Time {
        Time(Timestamp::from_second(seconds).expect("a valid timestamp"))
    }

    fn finding(code: &str, message: &str) -> MeshFinding {
        MeshFinding {
            code: code.into(),
            severity: "Error".into(),
            message: message.into(),
            related: None,
            host: None,
        }
    }

    fn summary(conditions: &[DesiredCondition; 3]) -> Vec<(&'static str, Status, &'static str)> {
        conditions
            .iter()
            .map(|c| (c.type_, c.status, c.reason))
            .collect()
    }

    #[test]
    fn a_gateway_namespace_not_watched_is_its_own_reason_with_the_finding_message() {
        let finding = MeshFinding {
            code: code::GATEWAY_NAMESPACE_NOT_WATCHED.into(),
            severity: "Error".into(),
            message: "add --namespace istio-system".into(),
            related: None,
            host: None,
        };
        let [_, resolved_refs, ready] = conditions(&[finding], &ApplyOutcome::Applied);
        assert_eq!(
            (
                resolved_refs.status,
                resolved_refs.reason,
                resolved_refs.message.as_str()
            ),
            (
                Status::False,
                reason::GATEWAY_NAMESPACE_NOT_WATCHED,
                "add --namespace istio-system"
            )
        );
        assert_eq!(ready.reason, reason::REFS_NOT_RESOLVED);
    }

    #[test]
    fn no_findings_and_a_successful_apply_is_ready() {
        let c = conditions(&[], &ApplyOutcome::Applied);
        assert_eq!(
            summary(&c),
            [
                ("Accepted", Status::True, "Accepted"),
                ("ResolvedRefs", Status::True, "ResolvedRefs"),
                ("Ready", Status::True, "Ready"),
            ]
        );
    }

    #[test]
    fn a_lost_host_claim_is_not_accepted_and_names_the_winner() {
        let lost = finding(
            code::HOST_CLAIM_LOST,
            "host a.example.com port 80 is claimed by the older MeshService team-a/web",
        );
        let c = conditions(&[lost], &ApplyOutcome::Applied);
        assert_eq!(c[0].status, Status::False);
        assert_eq!(c[0].reason, "HostConflict");
        assert!(c[0].message.contains("team-a/web"));
        assert_eq!((c[2].status, c[2].reason), (Status::False, "NotAccepted"));
    }

    #[test]
    fn a_name_conflict_outranks_a_host_conflict() {
        let findings = [
            finding(code::HOST_CLAIM_LOST, "host lost"),
            finding(code::SERVICE_NAME_TAKEN, "Service ns/webapp is not ours"),
        ];
        let c = conditions(&findings, &ApplyOutcome::Withheld);
        assert_eq!((c[0].status, c[0].reason), (Status::False, "NameConflict"));
        assert_eq!(c[0].message, "Service ns/webapp is not ours");
    }

    #[test]
    fn a_missing_gateway_leaves_it_accepted_but_unresolved_and_not_ready() {
        let c = conditions(
            &[finding(
                code::GATEWAY_NOT_FOUND,
                "Gateway istio-system/public-gateway not found",
            )],
            &ApplyOutcome::Applied,
        );
        assert_eq!(
            summary(&c),
            [
                ("Accepted", Status::True, "Accepted"),
                ("ResolvedRefs", Status::False, "GatewayNotFound"),
                ("Ready", Status::False, "RefsNotResolved"),
            ]
        );
    }

    #[test]
    fn a_gateway_that_does_not_serve_a_host_is_host_not_served() {
        let c = conditions(
            &[finding(
                code::HOST_NOT_SERVED,
                "no server for a.example.com",
            )],
            &ApplyOutcome::Applied,
        );
        assert_eq!((c[1].status, c[1].reason), (Status::False, "HostNotServed"));
    }

    #[test]
    fn a_failed_apply_is_not_ready_whatever_the_findings() {
        let c = conditions(&[], &ApplyOutcome::Failed("409 conflict".into()));
        assert_eq!((c[2].status, c[2].reason), (Status::False, "ApplyFailed"));
        assert!(c[2].message.contains("409 conflict"));
    }

    #[test]
    fn unrepaired_drift_is_not_ready() {
        let c = conditions(&[], &ApplyOutcome::Drifted("VirtualService ns/web".into()));
        assert_eq!((c[2].status, c[2].reason), (Status::False, "Drifted"));
    }

    #[test]
    fn last_transition_time_moves_only_when_the_status_flips() {
        let ready = conditions(&[], &ApplyOutcome::Applied);
        let first = merge_conditions(&[], &ready, Some(1), &at(100));
        assert!(first.iter().all(|c| c.last_transition_time == at(100)));

        // Same statuses at a later generation and time: timestamps stay, generation moves.
        let again = merge_conditions(&first, &ready, Some(2), &at(200));
        assert!(again.iter().all(|c| c.last_transition_time == at(100)));
        assert!(again.iter().all(|c| c.observed_generation == Some(2)));

        // Only the gateway goes missing: ResolvedRefs and Ready flip, Accepted keeps its time.
        let unresolved = conditions(
            &[finding(code::GATEWAY_NOT_FOUND, "gone")],
            &ApplyOutcome::Applied,
        );
        let flipped = merge_conditions(&again, &unresolved, Some(2), &at(300));
        let times: Vec<_> = flipped
            .iter()
            .map(|c| (c.type_.as_str(), c.last_transition_time.clone()))
            .collect();
        assert_eq!(
            times,
            [
                ("Accepted", at(100)),
                ("ResolvedRefs", at(300)),
                ("Ready", at(300))
            ]
        );
    }

    #[test]
    fn a_changed_message_with_the_same_status_keeps_the_timestamp() {
        let one = conditions(
            &[finding(code::HOST_CLAIM_LOST, "lost to a")],
            &ApplyOutcome::Applied,
        );
        let two = conditions(
            &[finding(code::HOST_CLAIM_LOST, "lost to b")],
            &ApplyOutcome::Applied,
        );
        let first = merge_conditions(&[], &one, Some(1), &at(100));
        let second = merge_conditions(&first, &two, Some(1), &at(200));
        assert_eq!(second[0].message, "lost to b");
        assert_eq!(second[0].last_transition_time, at(100));
    }

    #[test]
    fn an_unchanged_world_builds_an_identical_status() {
        let desired = conditions(&[], &ApplyOutcome::Applied);
        let first = build_status(None, Some(3), &desired, vec![], &[], &at(100));
        let second = build_status(Some(&first), Some(3), &desired, vec![], &[], &at(999));
        assert_eq!(first, second);
        assert_eq!(second.observed_generation, Some(3));
    }

    #[test]
    fn status_findings_are_capped_most_severe_first() {
        let mut findings: Vec<MeshFinding> = (0..30)
            .map(|i| MeshFinding {
                severity: "Warning".into(),
                ..finding("IST0101", &format!("warning {i:02}"))
            })
            .collect();
        findings.push(finding(code::GATEWAY_NOT_FOUND, "the error"));
        let kept = status_findings(&findings);
        assert_eq!(kept.len(), MAX_STATUS_FINDINGS);
        assert_eq!(kept[0].message, "the error");
        assert_eq!(kept[1].message, "warning 00");
    }
}
