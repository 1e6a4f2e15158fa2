//! The operator's Prometheus metrics and its liveness check, served by the server shell's endpoint (plain
//! HTTP: `/metrics`, `/healthz`, `/readyz`) on a port of its own, so that scraping works on every replica,
//! leader or not.

use std::sync::Arc;

use kubebid_server::{Health, Registry};
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

/// In a registry of their own (for tests).
impl Default for OperatorMetrics {
    fn default() -> Self {
        Self::new(&Registry::new())
    }
}

impl OperatorMetrics {
    /// Registers the operator's families in the process's `registry`, under `kubebid_operator`.
    #[must_use]
    pub fn new(process_registry: &Registry) -> Self {
        let reconciles = Family::<ResultLabels, Counter>::default();
        let objects = Family::<ActionLabels, Counter>::default();
        let duration = Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
            0.001, 2.0, 14,
        ));
        let leading = Gauge::default();
        process_registry.register("kubebid_operator", |registry| {
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
        });
        Self {
            registry: process_registry.clone(),
            reconciles,
            objects,
            duration,
            leading,
            health: std::sync::Mutex::new(Ok(())),
        }
    }

    /// Adds the operator's liveness check (its lease requests succeed) to the process's `health`.
    pub fn add_checks(self: &Arc<Self>, health: &Health) {
        let this = self.clone();
        health.add_liveness("leader-election", move || this.health());
    }
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
        self.registry.encode()
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
        metrics.registry.clone(),
        kubebid_server::Shutdown::after(shutdown),
    );
    metrics.add_checks(&process.health);
    kubebid_server::http::serve_endpoint(&process, "operator-metrics", listener).await;
}
