//! The proxy's metrics: calls by method and by how the proxy ended them, time to etcd's answer, and per
//! tenant how many values were sealed and opened and how many could not be.

use kubebid_server::metrics::Component;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;

/// The label of a call's path: the method's name for a call the proxy forwards, else `other`, so a client
/// cannot grow the label set.
#[must_use]
pub fn method(path: &str) -> &'static str {
    crate::proxy::ALLOWED
        .iter()
        .find(|m| **m == path)
        .map_or("other", |m| m.rsplit('/').next().unwrap_or("other"))
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CallLabels {
    pub method: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FaultLabels {
    pub method: &'static str,
    /// The gRPC status code the proxy ended the call with.
    pub code: u32,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TenantLabels {
    pub tenant: String,
    /// `ok` or `error`.
    pub result: &'static str,
}

/// The proxy's families, registered under `kubebid_etcd_proxy`.
#[derive(Clone, Debug)]
pub struct ProxyFamilies {
    pub calls: Family<CallLabels, Counter>,
    pub faults: Family<FaultLabels, Counter>,
    pub duration: Family<CallLabels, Histogram>,
    pub seals: Family<TenantLabels, Counter>,
    pub opens: Family<TenantLabels, Counter>,
}

impl Component for ProxyFamilies {
    const PREFIX: &'static str = "kubebid_etcd_proxy";

    fn register(r: &mut prometheus_client::registry::Registry) -> Self {
        let this = Self {
            calls: Family::default(),
            faults: Family::default(),
            duration: Family::new_with_constructor(
                kubebid_server::metrics::latency_histogram as fn() -> Histogram,
            ),
            seals: Family::default(),
            opens: Family::default(),
        };
        r.register(
            "calls",
            "Calls forwarded to etcd, by method",
            this.calls.clone(),
        );
        r.register(
            "faults",
            "Calls or streams the proxy ended itself, by method and gRPC code (a value that could not be sealed or opened, a malformed message, etcd unreachable)",
            this.faults.clone(),
        );
        r.register(
            "upstream_duration_seconds",
            "Time from a call's arrival to etcd's response headers, by method",
            this.duration.clone(),
        );
        r.register(
            "seals",
            "Values sealed for a tenant, by tenant and result",
            this.seals.clone(),
        );
        r.register(
            "opens",
            "Values opened for a tenant, by tenant and result",
            this.opens.clone(),
        );
        this
    }
}

impl ProxyFamilies {
    pub(crate) fn sealed(&self, tenant: &str, ok: bool) {
        self.seals.get_or_create(&tenant_labels(tenant, ok)).inc();
    }

    pub(crate) fn opened(&self, tenant: &str, ok: bool) {
        self.opens.get_or_create(&tenant_labels(tenant, ok)).inc();
    }
}

fn tenant_labels(tenant: &str, ok: bool) -> TenantLabels {
    TenantLabels {
        tenant: tenant.to_owned(),
        result: if ok { "ok" } else { "error" },
    }
}
