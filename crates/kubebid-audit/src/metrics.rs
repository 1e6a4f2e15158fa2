//! The audit sink's metric families.

use std::sync::Arc;
use std::time::Duration;

use kubebid_server::metrics::{Component, Registered};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TrailLabels {
    pub trail: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AlertLabels {
    pub rule: String,
    pub tenant: String,
    pub priority: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub outcome: &'static str,
}

/// The sink's metrics, shared by its HTTP side and its writer thread.
pub type AuditMetrics = Arc<Registered<AuditFamilies>>;

/// The sink's families.
pub struct AuditFamilies {
    pub events: Family<TrailLabels, Counter>,
    pub batches: Family<OutcomeLabels, Counter>,
    pub commit_seconds: Histogram,
    pub batches_per_commit: Histogram,
    pub sync_failures: Counter,
    pub damaged_logs: Counter,
    pub queries: Family<OutcomeLabels, Counter>,
    pub alerts: Family<AlertLabels, Counter>,
    pub detection_skipped: Counter,
    pub alert_webhook_failures: Counter,
    pub exported: Counter,
    pub export_failures: Counter,
}

impl AuditFamilies {
    /// Counts one stored event of `trail`.
    pub fn event(&self, trail: &str) {
        self.events
            .get_or_create(&TrailLabels {
                trail: trail.to_owned(),
            })
            .inc();
    }

    /// Records one group commit.
    pub fn observe_round(&self, batches: usize, took: Duration) {
        self.commit_seconds.observe(took.as_secs_f64());
        #[allow(clippy::cast_precision_loss)] // batch counts are small
        self.batches_per_commit.observe(batches as f64);
    }

    /// Counts one alert.
    pub fn alert(&self, rule: &str, tenant: &str, priority: &'static str) {
        self.alerts
            .get_or_create(&AlertLabels {
                rule: rule.to_owned(),
                tenant: tenant.to_owned(),
                priority,
            })
            .inc();
    }

    /// Counts a batch by outcome (`stored`, `malformed`, `failed`).
    pub fn batch(&self, outcome: &'static str) {
        self.batches.get_or_create(&OutcomeLabels { outcome }).inc();
    }
}

impl Component for AuditFamilies {
    const PREFIX: &'static str = "kubebid_audit";

    fn register(r: &mut prometheus_client::registry::Registry) -> Self {
        let this = Self {
            events: Family::default(),
            batches: Family::default(),
            commit_seconds: kubebid_server::metrics::latency_histogram(),
            batches_per_commit: Histogram::new(exponential_buckets(1.0, 2.0, 11)),
            sync_failures: Counter::default(),
            damaged_logs: Counter::default(),
            queries: Family::default(),
            alerts: Family::default(),
            detection_skipped: Counter::default(),
            alert_webhook_failures: Counter::default(),
            exported: Counter::default(),
            export_failures: Counter::default(),
        };
        r.register(
            "events",
            "Audit events stored, by trail (tenant or platform)",
            this.events.clone(),
        );
        r.register(
            "batches",
            "Event batches received, by outcome",
            this.batches.clone(),
        );
        r.register(
            "commit_duration_seconds",
            "Time of one group commit: write, sign, fdatasync",
            this.commit_seconds.clone(),
        );
        r.register(
            "batches_per_commit",
            "Batches made durable by one group commit",
            this.batches_per_commit.clone(),
        );
        r.register(
            "sync_failures",
            "Group commits whose fdatasync failed",
            this.sync_failures.clone(),
        );
        r.register(
            "damaged_logs",
            "Logs that failed their checks on opening and were moved aside",
            this.damaged_logs.clone(),
        );
        r.register("queries", "Trail queries, by outcome", this.queries.clone());
        r.register(
            "alerts",
            "Alerts raised by the k8s_audit rules, by rule, tenant and priority",
            this.alerts.clone(),
        );
        r.register(
            "detection_skipped_events",
            "Stored events not run through the rules because detection was behind",
            this.detection_skipped.clone(),
        );
        r.register(
            "exported_records",
            "Log records (events and tree heads) accepted by the OTLP receiver",
            this.exported.clone(),
        );
        r.register(
            "export_failures",
            "OTLP export requests that failed",
            this.export_failures.clone(),
        );
        r.register(
            "alert_webhook_failures",
            "Alerts the outbound webhook did not accept",
            this.alert_webhook_failures.clone(),
        );
        this
    }
}
