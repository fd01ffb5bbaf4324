//! MSH0204 / MSH0205: the names a MeshService needs are taken by objects it does not own.

use super::*;

pub(crate) static SERVICE_RULE: RuleInfo = rule(
    "MSH0204",
    "meshservice-service-name-taken",
    Severity::Error,
    "The Service a MeshService's serviceName names exists and is not owned by it.",
    "The operator creates Service `serviceName` in the MeshService's namespace and marks it with the \
     `mesh.istio.operator/owner` annotation. A Service of that name without the annotation (or owned by \
     another MeshService) is someone else's: the operator must not overwrite it. Status Accepted=False, \
     reason NameConflict.",
);

pub(crate) static VS_RULE: RuleInfo = rule(
    "MSH0205",
    "meshservice-virtualservice-name-taken",
    Severity::Error,
    "A VirtualService with the MeshService's name exists and is not owned by it.",
    "The operator names the VirtualService it creates after the MeshService. One that exists without the \
     MeshService's owner annotation is someone else's: the operator must not overwrite it. Status \
     Accepted=False, reason NameConflict.",
);

pub(crate) static SERVICE: Analysis = Analysis {
    rules: &[&SERVICE_RULE],
    reports_on: &["MeshService"],
    sql: "SELECT m.obj, s.id, s.owner, m.service_name FROM ms m JOIN object mo ON mo.id = m.obj \
          JOIN object s ON s.kind = 'Service' AND s.grp = '' AND s.ns = mo.ns AND s.name = m.service_name \
          WHERE {t} AND (s.owner IS NULL OR s.owner <> mo.ns || '/' || mo.name) ORDER BY m.obj",
    targeted_sql: None,
    targeted_by_kind: &[],
    targets: &[("{t}", "m.obj = ?1")],
    once_per_object: false,
    guard: Some("SELECT EXISTS (SELECT 1 FROM ms)"),
    rule_of_row: None,
    build: build_service,
};

pub(crate) static VIRTUAL_SERVICE: Analysis = Analysis {
    rules: &[&VS_RULE],
    reports_on: &["MeshService"],
    sql: "SELECT m.obj, v.id, v.owner FROM ms m JOIN object mo ON mo.id = m.obj \
          JOIN object v ON v.kind = 'VirtualService' AND v.grp = 'networking.istio.io' AND v.ns = mo.ns AND v.name = mo.name \
          WHERE {t} AND (v.owner IS NULL OR v.owner <> mo.ns || '/' || mo.name) ORDER BY m.obj",
    targeted_sql: None,
    targeted_by_kind: &[],
    targets: &[("{t}", "m.obj = ?1")],
    once_per_object: false,
    guard: Some("SELECT EXISTS (SELECT 1 FROM ms)"),
    rule_of_row: None,
    build: build_vs,
};

fn owned_by(owner: Option<String>) -> String {
    match owner {
        Some(o) => format!("owned by MeshService {o}"),
        None => "not created by the operator".to_string(),
    }
}

fn build_service(ctx: &Ctx, row: &Row) -> Result<Option<Hit>, Error> {
    let ms = ctx.obj(row.i(0))?;
    let svc = ctx.obj(row.i(1))?;
    let message = format!(
        "serviceName {} is taken: {} exists, {}",
        row.s(3),
        svc.display(),
        owned_by(row.os(2))
    );
    Ok(Some(
        Hit::new(&SERVICE_RULE, row.i(0), message)
            .related(vec![row.i(1)])
            .link(ms.display(), "spec.serviceName", format!("{}: {}", svc.display(), owned_by(row.os(2))))
            .repair(RepairAction::none(format!(
                "no safe automatic repair: serviceName is immutable; recreate the MeshService with another serviceName, \
                 or remove {} if it is a leftover",
                svc.display()
            ))),
    ))
}

fn build_vs(ctx: &Ctx, row: &Row) -> Result<Option<Hit>, Error> {
    let ms = ctx.obj(row.i(0))?;
    let vs = ctx.obj(row.i(1))?;
    let message = format!(
        "the VirtualService name is taken: {} exists, {}",
        vs.display(),
        owned_by(row.os(2))
    );
    Ok(Some(
        Hit::new(&VS_RULE, row.i(0), message)
            .related(vec![row.i(1)])
            .link(ms.display(), "metadata.name", format!("{}: {}", vs.display(), owned_by(row.os(2))))
            .repair(RepairAction::none(format!(
                "no safe automatic repair: rename the MeshService (recreate it), or remove {} if it is a leftover",
                vs.display()
            ))),
    ))
}
