//! Prometheus metrics of the webhook: reviews and their latency by endpoint, operation, kind and verdict;
//! findings by rule. HTTP errors, certificate reloads and connections are the server
//! shell's (`kubebid_server_*`).

use kubebid_server::Registry;
use kubebid_server::metrics::latency_histogram;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReviewLabels {
    pub endpoint: &'static str,
    pub operation: &'static str,
    pub kind: String,
    pub verdict: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RuleLabels {
    pub rule: &'static str,
}

/// Every metric the webhook exports.
pub struct Metrics {
    registry: Registry,
    pub reviews: Family<ReviewLabels, Counter>,
    pub latency: Family<ReviewLabels, Histogram>,
    pub findings: Family<RuleLabels, Counter>,
}

/// In a registry of their own (for a process that has no other component, and for tests).
impl Default for Metrics {
    fn default() -> Self {
        Self::new(&Registry::new())
    }
}

impl Metrics {
    /// Registers the webhook's families in the process's `registry`, under `kubebid_webhook`.
    #[must_use]
    pub fn new(registry: &Registry) -> Self {
        let this = Self {
            registry: registry.clone(),
            reviews: Family::default(),
            latency: Family::new_with_constructor(latency_histogram as fn() -> Histogram),
            findings: Family::default(),
        };
        registry.register("kubebid_webhook", |r| {
            r.register(
                "reviews",
                "Admission reviews answered",
                this.reviews.clone(),
            );
            r.register(
                "review_duration_seconds",
                "Time to decide one review",
                this.latency.clone(),
            );
            r.register("findings", "Findings by rule", this.findings.clone());
        });
        this
    }

    /// The registry the families are in.
    #[must_use]
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The registry's metrics in the `OpenMetrics` text format.
    #[must_use]
    pub fn encode(&self) -> String {
        self.registry.encode()
    }
}
