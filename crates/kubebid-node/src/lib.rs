//! KubeBid's node agent.
//!
//! Start at [`checks::attest`]: it reads the node (through [`host::Host`], so tests point it at a
//! fixture tree) and says whether it may run tenants' microVMs: KVM, Kata with Firecracker and its jailer,
//! containerd's handler, the kubelet's CPU manager, and which memory encryption and cache allocation it
//! offers. [`labels`] turns attestations into the Node's labels, taint and condition with hysteresis;
//! [`agent`] applies them through the API server; [`resctrl`] keeps each tenant's pods in an exclusive
//! share of the L3 cache.

pub mod agent;
pub mod checks;
pub mod host;
pub mod labels;
pub mod metrics;
pub mod resctrl;
