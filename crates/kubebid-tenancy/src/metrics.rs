//! The operator's Prometheus metrics and health endpoint (plain HTTP: `/metrics`, `/healthz`), served on its
//! own port so that scraping works on every replica, leader or not.

use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::operator::TenantOutcome;
use crate::reconcile::ReconcileError;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ActionLabels {
    pub action: &'static str,
}

/// Every metric the operator exports.
pub struct OperatorMetrics {
    registry: Registry,
    pub reconciles: Family<ResultLabels, Counter>,
    pub objects: Family<ActionLabels, Counter>,
    pub duration: Histogram,
    pub leading: Gauge,
    /// What `/healthz` says: the last leader-election error, if the last attempt failed.
    health: std::sync::Mutex<Result<(), String>>,
}

impl Default for OperatorMetrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("kubebid_operator");
        let reconciles = Family::<ResultLabels, Counter>::default();
        let objects = Family::<ActionLabels, Counter>::default();
        let duration = Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
            0.001, 2.0, 14,
        ));
        let leading = Gauge::default();
        registry.register(
            "reconciles",
            "Tenant reconciles by result",
            reconciles.clone(),
        );
        registry.register(
            "objects",
            "Managed objects created or restored",
            objects.clone(),
        );
        registry.register(
            "reconcile_duration_seconds",
            "Time to reconcile one Tenant",
            duration.clone(),
        );
        registry.register(
            "leading",
            "1 while this replica holds the leader lease",
            leading.clone(),
        );
        Self {
            registry,
            reconciles,
            objects,
            duration,
            leading,
            health: std::sync::Mutex::new(Ok(())),
        }
    }
}

impl OperatorMetrics {
    /// Records whether the replica can talk to the API server (its lease requests succeed).
    pub fn healthy(&self, state: Result<(), String>) {
        *self
            .health
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = state;
    }

    /// What `/healthz` answers.
    ///
    /// # Errors
    /// The last leader-election error.
    pub fn health(&self) -> Result<(), String> {
        self.health
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Records one reconcile.
    pub fn record(&self, result: &Result<TenantOutcome, ReconcileError>, seconds: f64) {
        self.duration.observe(seconds);
        match result {
            Ok(TenantOutcome::Invalid(_)) => {
                self.reconciles
                    .get_or_create(&ResultLabels { result: "invalid" })
                    .inc();
            }
            Ok(TenantOutcome::Applied { outcome: o, .. }) => {
                self.reconciles
                    .get_or_create(&ResultLabels { result: "ok" })
                    .inc();
                self.objects
                    .get_or_create(&ActionLabels { action: "created" })
                    .inc_by(o.created.len() as u64);
                self.objects
                    .get_or_create(&ActionLabels { action: "restored" })
                    .inc_by(o.repaired.len() as u64);
                self.objects
                    .get_or_create(&ActionLabels { action: "pruned" })
                    .inc_by(o.pruned.len() as u64);
            }
            Err(_) => {
                self.reconciles
                    .get_or_create(&ResultLabels { result: "error" })
                    .inc();
            }
        }
    }

    /// The metrics in the `OpenMetrics` text format.
    #[must_use]
    pub fn encode(&self) -> String {
        kubebid_runtime::metrics::encode(&self.registry)
    }
}

/// Serves `/metrics` and `/healthz` on `listener` until `shutdown` completes.
pub async fn serve(
    listener: tokio::net::TcpListener,
    metrics: Arc<OperatorMetrics>,
    shutdown: impl Future<Output = ()>,
) {
    let health = metrics.clone();
    kubebid_runtime::metrics::serve(
        listener,
        Arc::new(move || metrics.encode()),
        Arc::new(move || health.health()),
        shutdown,
    )
    .await;
}
