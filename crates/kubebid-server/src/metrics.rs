//! One Prometheus registry per process. Components register their own families under their own prefix
//! (`kubebid_webhook_…`, `kubebid_dns_…`); the process serves them together at `/metrics`, in the
//! `OpenMetrics` text format.

use std::sync::{Arc, Mutex, PoisonError};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};

/// The process's registry. Clones share it.
#[derive(Clone, Debug, Default)]
pub struct Registry {
    inner: Arc<Mutex<prometheus_client::registry::Registry>>,
}

impl Registry {
    /// An empty registry.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Lets a component register its families, every name prefixed with `prefix` (`kubebid_dns`).
    pub fn register<T>(
        &self,
        prefix: &str,
        register: impl FnOnce(&mut prometheus_client::registry::Registry) -> T,
    ) -> T {
        let mut root = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        register(root.sub_registry_with_prefix(prefix))
    }

    /// Every family, in the `OpenMetrics` text format.
    #[must_use]
    pub fn encode(&self) -> String {
        let root = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let mut out = String::new();
        // Encoding in-memory metrics into a String cannot fail; if it ever did, an empty page is better
        // than a truncated one.
        if prometheus_client::encoding::text::encode(&mut out, &root).is_err() {
            out.clear();
        }
        out
    }
}

/// A component's metric families, as it registers them: created and registered in one go, every name
/// under the component's prefix.
pub trait Component: Sized {
    /// Prefix of every family (`kubebid_dns`).
    const PREFIX: &'static str;

    /// Creates the families and registers each in `registry` (names there are prefixed already).
    fn register(registry: &mut prometheus_client::registry::Registry) -> Self;
}

/// A component's families together with the registry they are in. Dereferences to the families.
#[derive(Debug)]
pub struct Registered<C> {
    registry: Registry,
    families: C,
}

impl<C: Component> Registered<C> {
    /// Registers `C`'s families in the process's `registry`.
    #[must_use]
    pub fn new(registry: &Registry) -> Self {
        Self {
            registry: registry.clone(),
            families: registry.register(C::PREFIX, C::register),
        }
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

/// In a registry of their own: for a program that has no other component, and for tests.
impl<C: Component> Default for Registered<C> {
    fn default() -> Self {
        Self::new(&Registry::new())
    }
}

impl<C> std::ops::Deref for Registered<C> {
    type Target = C;
    fn deref(&self) -> &C {
        &self.families
    }
}

/// A latency histogram from 50 µs to about 1.6 s, doubling.
#[must_use]
pub fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.000_05, 2.0, 16))
}

/// Labels of one HTTP request.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// The server (`webhook`, `dns-metrics`, …).
    pub server: &'static str,
    /// The route, one of the server's known paths, else `other` (a client cannot grow the label set).
    pub route: &'static str,
    /// The HTTP status code.
    pub code: u16,
}

/// Labels of one server.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ServerLabels {
    /// The server.
    pub server: &'static str,
}

/// Labels of one certificate reload.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReloadLabels {
    /// The server.
    pub server: &'static str,
    /// `ok` or `error`.
    pub result: &'static str,
}

/// The shell's own families, registered once per process under `kubebid_server`.
#[derive(Clone, Debug)]
pub struct ShellMetrics {
    /// HTTP requests answered, by server, route and status.
    pub requests: Family<RequestLabels, Counter>,
    /// Time to answer, by server, route and status.
    pub duration: Family<RequestLabels, Histogram>,
    /// Connections open, by server.
    pub connections: Family<ServerLabels, Gauge>,
    /// TLS handshakes that failed or timed out, by server.
    pub handshake_failures: Family<ServerLabels, Counter>,
    /// Certificate reloads after a change, by server and result.
    pub certificate_reloads: Family<ReloadLabels, Counter>,
}

impl ShellMetrics {
    /// Registers the shell's families in `registry`.
    #[must_use]
    pub fn new(registry: &Registry) -> Self {
        let this = Self {
            requests: Family::default(),
            duration: Family::new_with_constructor(latency_histogram as fn() -> Histogram),
            connections: Family::default(),
            handshake_failures: Family::default(),
            certificate_reloads: Family::default(),
        };
        registry.register("kubebid_server", |r| {
            r.register(
                "http_requests",
                "HTTP requests answered",
                this.requests.clone(),
            );
            r.register(
                "http_request_duration_seconds",
                "Time to answer an HTTP request",
                this.duration.clone(),
            );
            r.register("connections", "Connections open", this.connections.clone());
            r.register(
                "tls_handshake_failures",
                "TLS handshakes that failed or timed out",
                this.handshake_failures.clone(),
            );
            r.register(
                "certificate_reloads",
                "Serving certificates loaded after their files changed, by result",
                this.certificate_reloads.clone(),
            );
        });
        this
    }
}
