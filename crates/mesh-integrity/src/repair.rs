//! Applying repair plans to a set of objects (offline `--fix`, tests, previews). The operator
//! applies `operatorMayApply` actions through the API server instead.

use serde_json::Value;

use crate::finding::{ActionKind, RepairAction};
use crate::model::{ObjectKey, SourceObject};

/// Why an action could not be applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RepairError {
    /// The action names no object, or the object is not in the set.
    #[error("target not found: {0}")]
    TargetNotFound(String),
    /// A JSON Patch operation failed.
    #[error("patch failed: {0}")]
    Patch(String),
}

/// Applies one action to `objects`. `none` actions change nothing and return `Ok(false)`.
pub fn apply_action(
    objects: &mut Vec<SourceObject>,
    action: &RepairAction,
    default_namespace: &str,
) -> Result<bool, RepairError> {
    let find = |objects: &Vec<SourceObject>, key: &ObjectKey| {
        objects
            .iter()
            .position(|o| ObjectKey::from_value(&o.value, default_namespace).as_ref() == Some(key))
    };
    match action.action {
        ActionKind::None => Ok(false),
        ActionKind::Create => {
            let object = action
                .object
                .clone()
                .ok_or_else(|| RepairError::TargetNotFound("create without object".into()))?;
            if let Some(key) = ObjectKey::from_value(&object, default_namespace)
                && let Some(i) = find(objects, &key)
            {
                objects.remove(i);
            }
            objects.push(SourceObject::new(object));
            Ok(true)
        }
        ActionKind::Patch | ActionKind::Delete => {
            let target = action
                .target
                .as_ref()
                .ok_or_else(|| RepairError::TargetNotFound("no target".into()))?;
            let key = target.key();
            let i =
                find(objects, &key).ok_or_else(|| RepairError::TargetNotFound(key.to_string()))?;
            if action.action == ActionKind::Delete {
                objects.remove(i);
                return Ok(true);
            }
            let ops = action
                .patch
                .as_ref()
                .ok_or_else(|| RepairError::Patch("patch without operations".into()))?;
            json_patch(&mut objects[i].value, ops)?;
            Ok(true)
        }
    }
}

/// Applies every action of a plan, in order.
pub fn apply_plan(
    objects: &mut Vec<SourceObject>,
    plan: &[RepairAction],
    default_namespace: &str,
) -> Result<usize, RepairError> {
    let mut applied = 0;
    for action in plan {
        if apply_action(objects, action, default_namespace)? {
            applied += 1;
        }
    }
    Ok(applied)
}

/// RFC 6902 JSON Patch: `add`, `remove`, `replace` and `test`.
pub fn json_patch(doc: &mut Value, ops: &Value) -> Result<(), RepairError> {
    let ops = ops
        .as_array()
        .ok_or_else(|| RepairError::Patch("a JSON Patch is an array".into()))?;
    for op in ops {
        let kind = op["op"].as_str().unwrap_or("");
        let path = op["path"]
            .as_str()
            .ok_or_else(|| RepairError::Patch("operation without path".into()))?;
        let value = op.get("value").cloned();
        match kind {
            "add" => add(
                doc,
                path,
                value.ok_or_else(|| RepairError::Patch("add without value".into()))?,
            )?,
            "remove" => {
                remove(doc, path)?;
            }
            "replace" => {
                remove(doc, path)?;
                add(
                    doc,
                    path,
                    value.ok_or_else(|| RepairError::Patch("replace without value".into()))?,
                )?;
            }
            "test" => {
                if doc.pointer(path) != value.as_ref() {
                    return Err(RepairError::Patch(format!("test failed at {path}")));
                }
            }
            other => {
                return Err(RepairError::Patch(format!(
                    "unsupported operation {other:?}"
                )));
            }
        }
    }
    Ok(())
}

fn split(path: &str) -> Result<(String, String), RepairError> {
    let (parent, last) = path
        .rsplit_once('/')
        .ok_or_else(|| RepairError::Patch(format!("bad path {path:?}")))?;
    Ok((
        parent.to_string(),
        last.replace("~1", "/").replace("~0", "~"),
    ))
}

fn add(doc: &mut Value, path: &str, value: Value) -> Result<(), RepairError> {
    if path.is_empty() {
        *doc = value;
        return Ok(());
    }
    let (parent, last) = split(path)?;
    let target = doc
        .pointer_mut(&parent)
        .ok_or_else(|| RepairError::Patch(format!("no parent for {path}")))?;
    match target {
        Value::Object(map) => {
            map.insert(last, value);
        }
        Value::Array(items) => {
            if last == "-" {
                items.push(value);
            } else {
                let i: usize = last
                    .parse()
                    .map_err(|_| RepairError::Patch(format!("bad index in {path}")))?;
                if i > items.len() {
                    return Err(RepairError::Patch(format!("index out of range in {path}")));
                }
                items.insert(i, value);
            }
        }
        _ => {
            return Err(RepairError::Patch(format!(
                "parent of {path} is not a container"
            )));
        }
    }
    Ok(())
}

fn remove(doc: &mut Value, path: &str) -> Result<Value, RepairError> {
    let (parent, last) = split(path)?;
    let target = doc
        .pointer_mut(&parent)
        .ok_or_else(|| RepairError::Patch(format!("no parent for {path}")))?;
    match target {
        Value::Object(map) => map
            .remove(&last)
            .ok_or_else(|| RepairError::Patch(format!("nothing at {path}"))),
        Value::Array(items) => {
            let i: usize = last
                .parse()
                .map_err(|_| RepairError::Patch(format!("bad index in {path}")))?;
            if i >= items.len() {
                return Err(RepairError::Patch(format!("index out of range in {path}")));
            }
            Ok(items.remove(i))
        }
        _ => Err(RepairError::Patch(format!(
            "parent of {path} is not a container"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn json_patch_add_remove_replace() {
        let mut doc = json!({"spec": {"hosts": ["a"], "ports": []}});
        json_patch(
            &mut doc,
            &json!([{"op": "add", "path": "/spec/hosts/-", "value": "b"}]),
        )
        .unwrap();
        json_patch(
            &mut doc,
            &json!([{"op": "remove", "path": "/spec/hosts/0"}]),
        )
        .unwrap();
        json_patch(
            &mut doc,
            &json!([{"op": "replace", "path": "/spec/ports", "value": [1]}]),
        )
        .unwrap();
        assert_eq!(doc, json!({"spec": {"hosts": ["b"], "ports": [1]}}));
        assert!(
            json_patch(
                &mut doc,
                &json!([{"op": "remove", "path": "/spec/nothing/0"}])
            )
            .is_err()
        );
    }
}
