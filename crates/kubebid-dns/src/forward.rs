//! Forwarding policy for external names: the cache in front of the upstream resolvers, and the rebinding
//! filter that keeps a tenant's pod from being handed a protected address (the metadata service, the
//! cluster's own networks) under an external name. The sockets are [`crate::upstream`]'s; the server
//! decides who may forward and how many at once.

use std::time::Instant;

use hickory_proto::op::{Message, Query};
use kubebid_model::address::ProtectedRanges;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::histogram::Histogram;

use crate::answer::{Source, forwarded, server_failure};
use crate::cache::{Cache, Key};
use crate::metrics::DnsMetrics;
use crate::upstream::Upstreams;

/// Responses the cache holds at most.
pub const CACHE_CAPACITY: usize = 10_000;

/// Seconds a cached response is kept at most, whatever its TTL.
pub const CACHE_MAX_TTL: u32 = 3600;

/// The metrics forwarding moves: handles on the server's own counters, not copies.
#[derive(Clone, Debug)]
struct ForwardMetrics {
    cache_hits: Counter,
    cache_misses: Counter,
    upstream_duration: Histogram,
    upstream_failures: Counter,
    rebinding: Counter,
}

impl ForwardMetrics {
    fn of(m: &DnsMetrics) -> Self {
        Self {
            cache_hits: m.cache_hits.clone(),
            cache_misses: m.cache_misses.clone(),
            upstream_duration: m.upstream_duration.clone(),
            upstream_failures: m.upstream_failures.clone(),
            rebinding: m.rebinding.clone(),
        }
    }
}

/// Answers forwarded queries: from the cache, else upstream (then cached), else SERVFAIL.
pub struct Forwarder {
    cache: Cache,
    upstreams: Upstreams,
    metrics: ForwardMetrics,
}

/// The cache key of a question: its name in lower case, type and class.
#[must_use]
pub fn cache_key(query: &Query) -> Key {
    (
        query.name().to_lowercase().to_ascii(),
        u16::from(query.query_type()),
        u16::from(query.query_class()),
    )
}

impl Forwarder {
    /// A forwarder to `upstreams` with an empty cache, counting into `metrics`.
    #[must_use]
    pub fn new(upstreams: Upstreams, metrics: &DnsMetrics) -> Self {
        Self {
            cache: Cache::new(CACHE_CAPACITY, CACHE_MAX_TTL),
            upstreams,
            metrics: ForwardMetrics::of(metrics),
        }
    }

    /// The upstream resolvers.
    #[must_use]
    pub fn upstreams(&self) -> &Upstreams {
        &self.upstreams
    }

    /// The cache.
    #[must_use]
    pub fn cache(&self) -> &Cache {
        &self.cache
    }

    /// The answer to a forwarded `query` of `request`, and where it came from. The cache keeps upstream's
    /// answer whole; with `protected` (every client but the platform's) the answer given loses its
    /// records in those ranges, each one counted.
    pub async fn forward(
        &self,
        request: &Message,
        query: &Query,
        protected: Option<&ProtectedRanges>,
    ) -> (Message, Source) {
        let (mut answer, source) = self.forward_whole(request, query).await;
        if let Some(protected) = protected {
            self.drop_rebinding(&mut answer, query, protected);
        }
        (answer, source)
    }

    /// The answer as upstream gave it (from the cache or not), or SERVFAIL.
    async fn forward_whole(&self, request: &Message, query: &Query) -> (Message, Source) {
        let key = cache_key(query);
        if let Some(hit) = self.cache.get(&key, Instant::now()) {
            self.metrics.cache_hits.inc();
            return (forwarded(request, &hit), Source::Cache);
        }
        self.metrics.cache_misses.inc();
        match self.upstreams.resolve(query).await {
            Ok((response, _server, took)) => {
                self.metrics.upstream_duration.observe(took.as_secs_f64());
                self.cache.put(key, &response, Instant::now());
                (forwarded(request, &response), Source::Upstream)
            }
            Err(e) => {
                self.metrics.upstream_failures.inc();
                tracing::warn!(error = %e, name = %query.name(), "forwarding failed");
                (server_failure(request), Source::Upstream)
            }
        }
    }

    /// Drops the records of `answer` that name a protected address (DNS rebinding), counting them.
    fn drop_rebinding(&self, answer: &mut Message, query: &Query, protected: &ProtectedRanges) {
        let dropped = crate::answer::drop_protected(answer, protected);
        if dropped > 0 {
            self.metrics
                .rebinding
                .inc_by(u64::try_from(dropped).unwrap_or(u64::MAX));
            tracing::debug!(name = %query.name(), dropped, "forwarded answer named protected addresses; dropped");
        }
    }
}
