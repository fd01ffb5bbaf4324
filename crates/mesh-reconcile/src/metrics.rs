//! Prometheus metrics. Reconcile metrics carry controller-runtime's names so dashboards built for
//! Go operators work unchanged; the integrity metrics are ours.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// The `controller` label of the reconcile metrics.
pub const CONTROLLER: &str = "meshservice";

/// `controller` label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ControllerLabels {
    /// Always [`CONTROLLER`].
    pub controller: String,
}

/// `controller` and `result` (`success`, `error`, `requeue_after`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    /// Always [`CONTROLLER`].
    pub controller: String,
    /// Outcome of the reconcile.
    pub result: String,
}

/// `controller` and `error`, the variant name of the reconcile error.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    /// Always [`CONTROLLER`].
    pub controller: String,
    /// Variant of [`crate::Error`].
    pub error: String,
}

/// `code` and `severity` of integrity findings.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FindingLabels {
    /// Rule code (`MSH0201`, `IST0101`, ...).
    pub code: String,
    /// `Error`, `Warning` or `Info`.
    pub severity: String,
}

/// `kind` of a Kubernetes object.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    /// Kind (`VirtualService`, `Service`, ...).
    pub kind: String,
}

/// Every metric the operator exports, registered in one registry.
#[derive(Debug)]
pub struct Metrics {
    /// The registry `/metrics` encodes.
    pub registry: Registry,
    reconcile_total: Family<ResultLabels, Counter>,
    reconcile_errors_total: Family<ControllerLabels, Counter>,
    reconcile_failures_total: Family<ErrorLabels, Counter>,
    reconcile_time_seconds: Family<ControllerLabels, Histogram, fn() -> Histogram>,
    findings: Family<FindingLabels, Gauge>,
    drift_detected_total: Family<KindLabels, Counter>,
    drift_repairs_total: Family<KindLabels, Counter>,
    engine_check_duration_seconds: Histogram,
    watched_objects: Family<KindLabels, Gauge>,
    undecodable_objects_total: Family<KindLabels, Counter>,
    leader: Gauge,
}

fn duration_histogram() -> Histogram {
    // 1 ms .. ~33 s, like controller-runtime's reconcile_time_seconds range.
    Histogram::new(exponential_buckets(0.001, 2.0, 16))
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// All metrics, registered and at zero.
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let reconcile_total = Family::<ResultLabels, Counter>::default();
        let reconcile_errors_total = Family::<ControllerLabels, Counter>::default();
        let reconcile_failures_total = Family::<ErrorLabels, Counter>::default();
        let reconcile_time_seconds =
            Family::<ControllerLabels, Histogram, fn() -> Histogram>::new_with_constructor(
                duration_histogram,
            );
        let findings = Family::<FindingLabels, Gauge>::default();
        let drift_detected_total = Family::<KindLabels, Counter>::default();
        let drift_repairs_total = Family::<KindLabels, Counter>::default();
        let engine_check_duration_seconds = duration_histogram();
        let watched_objects = Family::<KindLabels, Gauge>::default();
        let undecodable_objects_total = Family::<KindLabels, Counter>::default();
        let leader = Gauge::default();

        // prometheus-client appends `_total` to counters itself.
        registry.register(
            "controller_runtime_reconcile",
            "Total number of reconciliations per controller and result",
            reconcile_total.clone(),
        );
        registry.register(
            "controller_runtime_reconcile_errors",
            "Total number of reconciliation errors per controller",
            reconcile_errors_total.clone(),
        );
        registry.register(
            "mesh_reconcile_failures",
            "Reconciliation errors per controller and error kind",
            reconcile_failures_total.clone(),
        );
        registry.register(
            "controller_runtime_reconcile_time_seconds",
            "Length of time per reconciliation per controller",
            reconcile_time_seconds.clone(),
        );
        registry.register(
            "mesh_integrity_findings",
            "Integrity findings in the last engine check, by code and severity",
            findings.clone(),
        );
        registry.register(
            "mesh_drift_detected",
            "Owned objects found drifted from their rendered state, by kind",
            drift_detected_total.clone(),
        );
        registry.register(
            "mesh_drift_repairs",
            "Owned objects re-applied after drift, by kind",
            drift_repairs_total.clone(),
        );
        registry.register(
            "mesh_engine_check_duration_seconds",
            "Duration of a full integrity check of the engine",
            engine_check_duration_seconds.clone(),
        );
        registry.register(
            "mesh_watched_objects",
            "Objects currently in the integrity engine, by kind",
            watched_objects.clone(),
        );
        registry.register(
            "mesh_undecodable_objects",
            "Watched objects that could not be decoded (each becomes a finding), by kind",
            undecodable_objects_total.clone(),
        );
        registry.register(
            "mesh_leader",
            "1 while this replica holds the leader Lease (or runs without leader election)",
            leader.clone(),
        );

        Self {
            registry,
            reconcile_total,
            reconcile_errors_total,
            reconcile_failures_total,
            reconcile_time_seconds,
            findings,
            drift_detected_total,
            drift_repairs_total,
            engine_check_duration_seconds,
            watched_objects,
            undecodable_objects_total,
            leader,
        }
    }

    fn controller() -> ControllerLabels {
        ControllerLabels {
            controller: CONTROLLER.into(),
        }
    }

    /// One reconcile finished after `elapsed` with `result` (`success`, `error`, `requeue_after`).
    pub fn reconciled(&self, result: &str, elapsed: Duration) {
        self.reconcile_total
            .get_or_create(&ResultLabels {
                controller: CONTROLLER.into(),
                result: result.into(),
            })
            .inc();
        self.reconcile_time_seconds
            .get_or_create(&Self::controller())
            .observe(elapsed.as_secs_f64());
    }

    /// One reconcile failed with an error of kind `error`.
    pub fn reconcile_failed(&self, error: &str) {
        self.reconcile_errors_total
            .get_or_create(&Self::controller())
            .inc();
        self.reconcile_failures_total
            .get_or_create(&ErrorLabels {
                controller: CONTROLLER.into(),
                error: error.into(),
            })
            .inc();
    }

    /// Replaces the findings gauges with the counts of the latest check.
    pub fn set_findings(&self, counts: impl IntoIterator<Item = ((String, String), i64)>) {
        self.findings.clear();
        for ((code, severity), count) in counts {
            self.findings
                .get_or_create(&FindingLabels { code, severity })
                .set(count);
        }
    }

    /// An owned object of `kind` was found drifted.
    pub fn drift_detected(&self, kind: &str) {
        self.drift_detected_total
            .get_or_create(&KindLabels { kind: kind.into() })
            .inc();
    }

    /// A drifted owned object of `kind` was re-applied.
    pub fn drift_repaired(&self, kind: &str) {
        self.drift_repairs_total
            .get_or_create(&KindLabels { kind: kind.into() })
            .inc();
    }

    /// An engine check took `elapsed`.
    pub fn engine_checked(&self, elapsed: Duration) {
        self.engine_check_duration_seconds
            .observe(elapsed.as_secs_f64());
    }

    /// The engine now holds `count` objects of `kind`.
    pub fn set_watched(&self, kind: &str, count: usize) {
        self.watched_objects
            .get_or_create(&KindLabels { kind: kind.into() })
            .set(i64::try_from(count).unwrap_or(i64::MAX));
    }

    /// A watched object of `kind` could not be decoded.
    pub fn undecodable(&self, kind: &str) {
        self.undecodable_objects_total
            .get_or_create(&KindLabels { kind: kind.into() })
            .inc();
    }

    /// Whether this replica leads.
    pub fn set_leader(&self, leading: bool) {
        self.leader.set(i64::from(leading));
    }

    /// The text exposition of every metric.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Encoding into a String cannot fail; an error would only come from the writer.
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reconcile_metrics_carry_controller_runtime_names() {
        let metrics = Metrics::new();
        metrics.reconciled("success", Duration::from_millis(3));
        metrics.reconcile_failed("Apply");
        let text = metrics.encode();
        assert!(
            text.contains(
                r#"controller_runtime_reconcile_total{controller="meshservice",result="success"} 1"#
            ),
            "{text}"
        );
        assert!(
            text.contains(
                r#"controller_runtime_reconcile_errors_total{controller="meshservice"} 1"#
            ),
            "{text}"
        );
        assert!(
            text.contains(
                r#"controller_runtime_reconcile_time_seconds_count{controller="meshservice"} 1"#
            ),
            "{text}"
        );
        assert!(
            text.contains(
                r#"mesh_reconcile_failures_total{controller="meshservice",error="Apply"} 1"#
            ),
            "{text}"
        );
    }

    #[test]
    fn findings_gauges_are_replaced_not_accumulated() {
        let metrics = Metrics::new();
        metrics.set_findings([
            (("MSH0201".into(), "Error".into()), 2),
            (("IST0101".into(), "Error".into()), 1),
        ]);
        metrics.set_findings([(("IST0101".into(), "Error".into()), 4)]);
        let text = metrics.encode();
        assert!(
            text.contains(r#"mesh_integrity_findings{code="IST0101",severity="Error"} 4"#),
            "{text}"
        );
        assert!(!text.contains("MSH0201"), "{text}");
    }

    #[test]
    fn drift_watched_objects_and_leadership_are_exported() {
        let metrics = Metrics::new();
        metrics.drift_detected("VirtualService");
        metrics.drift_repaired("VirtualService");
        metrics.set_watched("Gateway", 3);
        metrics.set_leader(true);
        metrics.engine_checked(Duration::from_millis(1));
        let text = metrics.encode();
        assert!(
            text.contains(r#"mesh_drift_repairs_total{kind="VirtualService"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"mesh_drift_detected_total{kind="VirtualService"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"mesh_watched_objects{kind="Gateway"} 3"#),
            "{text}"
        );
        assert!(text.contains("mesh_leader 1"), "{text}");
        assert!(
            text.contains("mesh_engine_check_duration_seconds_count 1"),
            "{text}"
        );
    }
}
