//! The DNS server's Prometheus metrics (queries, answers by rcode, denials by tenant, cache hits and
//! misses, upstream latency, drops), registered in the process's registry; the server shell serves them.

use hickory_proto::op::ResponseCode;
use kubebid_server::metrics::{Component, Registered};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TransportLabels {
    pub transport: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RcodeLabels {
    pub rcode: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DenialLabels {
    pub tenant: String,
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DropLabels {
    pub reason: &'static str,
}

/// Why a packet got no answer (or a connection was closed), as `kubebid_dns_dropped_total` counts it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dropped {
    /// Not a DNS message at all.
    Malformed,
    /// A DNS message but no query (a response, an update).
    NotAQuery,
    /// Over the client's queries per second.
    RateLimit,
    /// Over the client's forwarded queries in flight.
    ForwardLimit,
    /// A TCP message longer than the server takes.
    TcpOversize,
    /// A TCP connection over the limit, closed at once.
    TcpConnections,
    /// The query log's writer was behind; the line was not written.
    QueryLogFull,
    /// The query log could not be written.
    QueryLogWrite,
}

impl Dropped {
    /// The label value.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Dropped::Malformed => "malformed",
            Dropped::NotAQuery => "not_a_query",
            Dropped::RateLimit => "rate_limit",
            Dropped::ForwardLimit => "forward_limit",
            Dropped::TcpOversize => "tcp_oversize",
            Dropped::TcpConnections => "tcp_connections",
            Dropped::QueryLogFull => "query_log_full",
            Dropped::QueryLogWrite => "query_log_write",
        }
    }
}

const RCODES: [(ResponseCode, &str); 6] = [
    (ResponseCode::NoError, "NOERROR"),
    (ResponseCode::NXDomain, "NXDOMAIN"),
    (ResponseCode::ServFail, "SERVFAIL"),
    (ResponseCode::FormErr, "FORMERR"),
    (ResponseCode::NotImp, "NOTIMP"),
    (ResponseCode::Refused, "REFUSED"),
];

/// Every metric the server exports, registered in the process's registry.
pub type DnsMetrics = Registered<DnsFamilies>;

/// The server's families. Counters on the hot path are resolved once, not per query.
pub struct DnsFamilies {
    pub udp_queries: Counter,
    pub tcp_queries: Counter,
    responses: Family<RcodeLabels, Counter>,
    by_rcode: Vec<(ResponseCode, Counter)>,
    pub denials: Family<DenialLabels, Counter>,
    pub cache_hits: Counter,
    pub cache_misses: Counter,
    pub upstream_duration: Histogram,
    pub upstream_failures: Counter,
    pub rebinding: Counter,
    pub dropped: Family<DropLabels, Counter>,
    pub zone_names: Gauge,
    pub zone_reloads: Counter,
    pub zone_reload_failures: Counter,
    pub tcp_connections: Gauge,
}

impl Component for DnsFamilies {
    const PREFIX: &'static str = "kubebid_dns";

    #[allow(clippy::too_many_lines)] // one registration per family, each with its help text
    fn register(registry: &mut prometheus_client::registry::Registry) -> Self {
        let queries = Family::<TransportLabels, Counter>::default();
        let responses = Family::<RcodeLabels, Counter>::default();
        let denials = Family::<DenialLabels, Counter>::default();
        let cache_hits = Counter::default();
        let cache_misses = Counter::default();
        let upstream_duration = Histogram::new(
            prometheus_client::metrics::histogram::exponential_buckets(0.0005, 2.0, 14),
        );
        let upstream_failures = Counter::default();
        let rebinding = Counter::default();
        let dropped = Family::<DropLabels, Counter>::default();
        let tcp_connections = Gauge::default();
        let (zone_names, zone_reloads, zone_reload_failures) = {
            registry.register("queries", "Queries received, by transport", queries.clone());
            registry.register("responses", "Responses sent, by rcode", responses.clone());
            registry.register(
                "denials",
                "Queries answered NXDOMAIN by policy, by tenant and reason",
                denials.clone(),
            );
            registry.register(
                "cache_hits",
                "Forwarded queries answered from the cache",
                cache_hits.clone(),
            );
            registry.register(
                "cache_misses",
                "Forwarded queries sent upstream",
                cache_misses.clone(),
            );
            registry.register(
                "upstream_duration_seconds",
                "Time an upstream resolver took to answer",
                upstream_duration.clone(),
            );
            registry.register(
                "upstream_failures",
                "Forwarded queries no upstream answered (SERVFAIL)",
                upstream_failures.clone(),
            );
            registry.register(
            "rebinding_records_dropped",
            "Forwarded address records withheld from a tenant's pod for naming a protected address (DNS rebinding)",
            rebinding.clone(),
        );
            registry.register("dropped", "Packets dropped, by reason", dropped.clone());
            let zone = zone_metrics(registry);
            registry.register(
                "tcp_connections",
                "Open TCP connections",
                tcp_connections.clone(),
            );
            zone
        };
        let udp_queries = queries
            .get_or_create(&TransportLabels { transport: "udp" })
            .clone();
        let tcp_queries = queries
            .get_or_create(&TransportLabels { transport: "tcp" })
            .clone();
        let by_rcode = RCODES
            .iter()
            .map(|(code, label)| {
                (
                    *code,
                    responses
                        .get_or_create(&RcodeLabels { rcode: label })
                        .clone(),
                )
            })
            .collect();
        Self {
            udp_queries,
            tcp_queries,
            responses,
            by_rcode,
            denials,
            cache_hits,
            cache_misses,
            upstream_duration,
            upstream_failures,
            rebinding,
            dropped,
            zone_names,
            zone_reloads,
            zone_reload_failures,
            tcp_connections,
        }
    }
}

/// The zone's metrics, registered: names in it, rebuilds, and changes that did not load.
fn zone_metrics(registry: &mut prometheus_client::registry::Registry) -> (Gauge, Counter, Counter) {
    let names = Gauge::default();
    let reloads = Counter::default();
    let failures = Counter::default();
    registry.register("zone_names", "Names in the cluster zone", names.clone());
    registry.register("zone_reloads", "Cluster zone rebuilds", reloads.clone());
    registry.register(
        "zone_reload_failures",
        "Changes to the state or configuration files that did not load (the previous zone stayed)",
        failures.clone(),
    );
    (names, reloads, failures)
}

impl DnsFamilies {
    /// Counts one response.
    pub fn response(&self, code: ResponseCode) {
        match self.by_rcode.iter().find(|(c, _)| *c == code) {
            Some((_, counter)) => {
                counter.inc();
            }
            None => {
                self.responses
                    .get_or_create(&RcodeLabels { rcode: "OTHER" })
                    .inc();
            }
        }
    }

    /// The counter of responses with `code`, to bump later without a lookup.
    #[must_use]
    pub fn rcode_counter(&self, code: ResponseCode) -> Counter {
        match self.by_rcode.iter().find(|(c, _)| *c == code) {
            Some((_, counter)) => counter.clone(),
            None => self
                .responses
                .get_or_create(&RcodeLabels { rcode: "OTHER" })
                .clone(),
        }
    }

    /// The counter of one tenant's denials for `reason`, to bump later without a lookup.
    #[must_use]
    pub fn denial_counter(&self, tenant: Option<&str>, reason: &'static str) -> Counter {
        self.denials
            .get_or_create(&DenialLabels {
                tenant: tenant.unwrap_or("").to_owned(),
                reason,
            })
            .clone()
    }

    /// Counts one denial.
    pub fn denial(&self, tenant: Option<&str>, reason: &'static str) {
        self.denials
            .get_or_create(&DenialLabels {
                tenant: tenant.unwrap_or("").to_owned(),
                reason,
            })
            .inc();
    }

    /// Counts one dropped packet.
    pub fn discard(&self, reason: Dropped) {
        self.dropped
            .get_or_create(&DropLabels {
                reason: reason.as_str(),
            })
            .inc();
    }
}
