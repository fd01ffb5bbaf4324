//! MSH0206 / MSH0207: MeshService conditions only the operator can see, while it applies a managed
//! Gateway. Listed in the registry (so `--list-rules`, SARIF and the docs know every code the
//! project reports) with no SQL: the engine never reports them.

use super::*;

pub(crate) static GATEWAY_NAME_TAKEN: RuleInfo = reported_by_operator(rule(
    "MSH0206",
    "meshservice-gateway-name-taken",
    Severity::Error,
    "The managed Gateway a MeshService needs exists and is not managed by the operator.",
    "With `spec.gateway.managed: true` the operator creates (or shares) the Gateway `spec.gateway.name`. \
     When it reads that Gateway before applying it and finds one without its managed-by label, the \
     Gateway is someone else's: the operator must not overwrite it. Reported by the operator in the \
     MeshService's status (Accepted=False, reason NameConflict), not by the engine or `check`.",
));

pub(crate) static GATEWAY_PORT_DROPPED: RuleInfo = reported_by_operator(rule(
    "MSH0207",
    "meshservice-gateway-port-dropped",
    Severity::Warning,
    "A port of a MeshService is left out of its managed Gateway.",
    "The operator renders one managed Gateway from every MeshService that shares it; a port it cannot \
     serve for this MeshService is dropped (its number is already served with another protocol, or HTTPS \
     has no credentialName). Reported by the operator in the MeshService's status, not by the engine \
     or `check`.",
));

/// The rules only the operator reports.
pub(crate) static RULES: &[&RuleInfo] = &[&GATEWAY_NAME_TAKEN, &GATEWAY_PORT_DROPPED];
