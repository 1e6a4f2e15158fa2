//! Prometheus metrics of the webhook: reviews and their latency by endpoint, operation, kind and verdict;
//! findings by rule. HTTP errors, certificate reloads and connections are the server
//! shell's (`kubebid_server_*`).

use kubebid_server::metrics::{Component, Registered, latency_histogram};
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

/// Every metric the webhook exports, registered in the process's registry.
pub type Metrics = Registered<WebhookFamilies>;

/// The webhook's families.
pub struct WebhookFamilies {
    pub reviews: Family<ReviewLabels, Counter>,
    pub latency: Family<ReviewLabels, Histogram>,
    pub findings: Family<RuleLabels, Counter>,
}

impl Component for WebhookFamilies {
    const PREFIX: &'static str = "kubebid_webhook";

    fn register(r: &mut prometheus_client::registry::Registry) -> Self {
        let this = Self {
            reviews: Family::default(),
            latency: Family::new_with_constructor(latency_histogram as fn() -> Histogram),
            findings: Family::default(),
        };
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
        this
    }
}
