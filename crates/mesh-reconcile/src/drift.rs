//! Drift: does a live object still carry every field the operator applied?
//!
//! The operator applies only the fields it renders (server-side apply with one field manager).
//! The apiserver adds defaults (`protocol: TCP` on a Service port, `clusterIP`, ...) and other
//! managers may add their own fields (an annotation, a label). Neither is drift. Drift is a field
//! the operator rendered that now has another value, or is gone. So the test is containment: the
//! rendered JSON must be contained in the live JSON.

use serde_json::Value;

/// Whether every field of `desired` is present in `live` with the same value.
///
/// Objects: every key of `desired` is in `live` and contained. Lists: every element of `desired`
/// is contained in some element of `live` (other managers may add list items, e.g. a port, and
/// the apiserver may default fields inside items). Scalars: equal, with integral numbers compared
/// by value (`80` and `80.0`).
pub fn contains(live: &Value, desired: &Value) -> bool {
    match (live, desired) {
        (Value::Object(live), Value::Object(desired)) => desired
            .iter()
            .all(|(key, want)| live.get(key).is_some_and(|have| contains(have, want))),
        (Value::Array(live), Value::Array(desired)) => desired
            .iter()
            .all(|want| live.iter().any(|have| contains(have, want))),
        (Value::Number(live), Value::Number(desired)) => {
            live == desired || (live.as_f64().is_some() && live.as_f64() == desired.as_f64())
        }
        (live, desired) => live == desired,
    }
}

/// The dotted path of the first field of `desired` not contained in `live`, for messages.
pub fn first_difference(live: &Value, desired: &Value) -> Option<String> {
    fn walk(live: &Value, desired: &Value, path: &mut Vec<String>) -> bool {
        match (live, desired) {
            (Value::Object(live), Value::Object(desired)) => {
                for (key, want) in desired {
                    path.push(key.clone());
                    match live.get(key) {
                        Some(have) if walk(have, want, path) => {}
                        _ => return false,
                    }
                    path.pop();
                }
                true
            }
            (Value::Array(live_items), Value::Array(desired_items)) => {
                for (index, want) in desired_items.iter().enumerate() {
                    if !live_items.iter().any(|have| contains(have, want)) {
                        path.push(index.to_string());
                        // Descend into the item at the same position when there is one, to name
                        // the field that changed rather than the whole item.
                        if let Some(have) = live_items.get(index) {
                            walk(have, want, path);
                        }
                        return false;
                    }
                }
                true
            }
            _ => contains(live, desired),
        }
    }
    let mut path = Vec::new();
    (!walk(live, desired, &mut path)).then(|| path.join("."))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn service() -> Value {
        json!({
            "metadata": {"name": "webapp", "labels": {"app.kubernetes.io/managed-by": "istio-integrity-operator"}},
            "spec": {"selector": {"app": "webapp"}, "ports": [{"name": "http-80", "port": 80, "targetPort": 8080}]}
        })
    }

    #[test]
    fn apiserver_defaults_and_fields_of_other_managers_are_not_drift() {
        let live = json!({
            "metadata": {"name": "webapp", "uid": "u1", "resourceVersion": "7",
                "labels": {"app.kubernetes.io/managed-by": "istio-integrity-operator", "team": "a"},
                "annotations": {"note": "added by someone else"}},
            "spec": {"clusterIP": "10.0.0.7", "type": "ClusterIP", "selector": {"app": "webapp"},
                "ports": [{"name": "http-80", "port": 80, "protocol": "TCP", "targetPort": 8080}]}
        });
        assert!(contains(&live, &service()));
        assert_eq!(first_difference(&live, &service()), None);
    }

    #[test]
    fn a_changed_owned_field_is_drift_and_is_named() {
        let mut live = service();
        live["spec"]["ports"][0]["targetPort"] = json!(9090);
        assert!(!contains(&live, &service()));
        assert_eq!(
            first_difference(&live, &service()).as_deref(),
            Some("spec.ports.0.targetPort")
        );
    }

    #[test]
    fn a_removed_owned_field_is_drift() {
        let mut live = service();
        live["metadata"]["labels"] = json!({});
        assert_eq!(
            first_difference(&live, &service()).as_deref(),
            Some("metadata.labels.app.kubernetes.io/managed-by")
        );
    }

    #[test]
    fn an_item_added_to_a_list_by_another_manager_is_not_drift() {
        let mut live = service();
        live["spec"]["ports"]
            .as_array_mut()
            .expect("ports is a list")
            .push(json!({"name": "metrics", "port": 9100}));
        assert!(contains(&live, &service()));
    }

    #[test]
    fn integral_numbers_compare_by_value() {
        assert!(contains(&json!({"weight": 100.0}), &json!({"weight": 100})));
        assert!(!contains(&json!({"weight": 99}), &json!({"weight": 100})));
    }
}
