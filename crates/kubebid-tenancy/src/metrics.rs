//! The operator's Prometheus metrics and its liveness check, served by the server shell's endpoint (plain
//! HTTP: `/metrics`, `/healthz`, `/readyz`) on a port of its own, so that scraping works on every replica,
//! leader or not.

use std::sync::Arc;

use kubebid_server::Health;
use kubebid_server::metrics::{Component, Registered};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;

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

/// Every metric the operator exports, registered in the process's registry.
pub type OperatorMetrics = Registered<OperatorFamilies>;

/// The operator's families, and what its liveness check reports.
pub struct OperatorFamilies {
    pub reconciles: Family<ResultLabels, Counter>,
    pub objects: Family<ActionLabels, Counter>,
    pub duration: Histogram,
    pub leading: Gauge,
    /// What `/healthz` says: the last leader-election error, if the last attempt failed.
    health: std::sync::Mutex<Result<(), String>>,
}

impl Component for OperatorFamilies {
    const PREFIX: &'static str = "kubebid_operator";

    fn register(registry: &mut prometheus_client::registry::Registry) -> Self {
        let this = Self {
            reconciles: Family::default(),
            objects: Family::default(),
            duration: Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
                0.001, 2.0, 14,
            )),
            leading: Gauge::default(),
            health: std::sync::Mutex::new(Ok(())),
        };
        registry.register(
            "reconciles",
            "Tenant reconciles by result",
            this.reconciles.clone(),
        );
        registry.register(
            "objects",
            "Managed objects created or restored",
            this.objects.clone(),
        );
        registry.register(
            "reconcile_duration_seconds",
            "Time to reconcile one Tenant",
            this.duration.clone(),
        );
        registry.register(
            "leading",
            "1 while this replica holds the leader lease",
            this.leading.clone(),
        );
        this
    }
}

/// Adds the operator's liveness check (its lease requests succeed) to the process's `health`.
pub fn add_checks(metrics: &Arc<OperatorMetrics>, health: &Health) {
    let this = metrics.clone();
    health.add_liveness("leader-election", move || this.health());
}

impl OperatorFamilies {
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
}

/// Serves the shell's endpoint (`/metrics`, `/healthz`, `/readyz`) for a process that runs only the
/// operator's metrics, on `listener` until `shutdown` completes.
pub async fn serve(
    listener: tokio::net::TcpListener,
    metrics: Arc<OperatorMetrics>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let process = kubebid_server::http::Process::with_registry(
        metrics.registry().clone(),
        kubebid_server::Shutdown::after(shutdown),
    );
    add_checks(&metrics, &process.health);
    kubebid_server::http::serve_endpoint(&process, "operator-metrics", listener).await;
}
