//! The agent's metrics, under `kubebid_node`.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// Labels of one check.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CheckLabels {
    pub check: String,
}

#[derive(Clone, Debug, Default)]
pub struct NodeFamilies {
    /// 1 when the check passes, 0 when it fails or the feature is absent.
    pub check: Family<CheckLabels, Gauge>,
    /// 1 while the Node carries `kubebid.io/secure-runtime=true` (the verdict in effect).
    pub secure_runtime: Gauge,
    /// The last attestation's duration, in microseconds.
    pub attestation_micros: Gauge,
    /// Attestations run.
    pub attestations: Counter,
    /// Rounds whose Node update the API server refused or did not answer.
    pub api_errors: Counter,
    /// Threads moved into tenants' cache partitions.
    pub tasks_placed: Counter,
    /// resctrl writes the kernel refused.
    pub resctrl_errors: Counter,
    /// Tenants whose cache share does not fit this node.
    pub partitions_refused: Gauge,
}

impl kubebid_server::metrics::Component for NodeFamilies {
    const PREFIX: &'static str = "kubebid_node";

    fn register(r: &mut Registry) -> Self {
        let this = Self::default();
        r.register("check", "1 when the check passes", this.check.clone());
        r.register(
            "secure_runtime",
            "1 while the node is labelled kubebid.io/secure-runtime=true",
            this.secure_runtime.clone(),
        );
        r.register(
            "attestation_micros",
            "The last attestation's duration in microseconds",
            this.attestation_micros.clone(),
        );
        r.register(
            "attestations",
            "Attestations run",
            this.attestations.clone(),
        );
        r.register(
            "api_errors",
            "Rounds whose Node update failed",
            this.api_errors.clone(),
        );
        r.register(
            "tasks_placed",
            "Threads moved into tenants' cache partitions",
            this.tasks_placed.clone(),
        );
        r.register(
            "resctrl_errors",
            "resctrl writes the kernel refused",
            this.resctrl_errors.clone(),
        );
        r.register(
            "partitions_refused",
            "Tenants whose cache share does not fit this node",
            this.partitions_refused.clone(),
        );
        this
    }
}
