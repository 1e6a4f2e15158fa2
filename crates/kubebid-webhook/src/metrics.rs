//! Prometheus metrics of the webhook: reviews and their latency by endpoint, operation, kind and verdict;
//! findings by rule; malformed requests; certificate reloads.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

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

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    pub reason: &'static str,
}

/// Every metric the webhook exports.
pub struct Metrics {
    registry: Registry,
    pub reviews: Family<ReviewLabels, Counter>,
    pub latency: Family<ReviewLabels, Histogram>,
    pub findings: Family<RuleLabels, Counter>,
    pub rejected_requests: Family<ErrorLabels, Counter>,
    pub cert_reloads: Counter,
    pub cert_reload_errors: Counter,
    pub in_flight: Gauge,
}

fn latency_histogram() -> Histogram {
    // 50 µs to about 1.6 s.
    Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
        0.000_05, 2.0, 16,
    ))
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("kubebid_webhook");
        let reviews = Family::<ReviewLabels, Counter>::default();
        let latency = Family::<ReviewLabels, Histogram>::new_with_constructor(
            latency_histogram as fn() -> Histogram,
        );
        let findings = Family::<RuleLabels, Counter>::default();
        let rejected_requests = Family::<ErrorLabels, Counter>::default();
        let cert_reloads = Counter::default();
        let cert_reload_errors = Counter::default();
        let in_flight = Gauge::default();
        registry.register("reviews", "Admission reviews answered", reviews.clone());
        registry.register(
            "review_duration_seconds",
            "Time to decide one review",
            latency.clone(),
        );
        registry.register("findings", "Findings by rule", findings.clone());
        registry.register(
            "rejected_requests",
            "Requests answered with an HTTP error",
            rejected_requests.clone(),
        );
        registry.register(
            "certificate_reloads",
            "Serving certificates loaded after a change",
            cert_reloads.clone(),
        );
        registry.register(
            "certificate_reload_errors",
            "Changed certificate files that did not load",
            cert_reload_errors.clone(),
        );
        registry.register(
            "reviews_in_flight",
            "Reviews being decided",
            in_flight.clone(),
        );
        Self {
            registry,
            reviews,
            latency,
            findings,
            rejected_requests,
            cert_reloads,
            cert_reload_errors,
            in_flight,
        }
    }
}

impl Metrics {
    /// The metrics in the `OpenMetrics` text format.
    #[must_use]
    pub fn encode(&self) -> String {
        kubebid_runtime::metrics::encode(&self.registry)
    }
}
