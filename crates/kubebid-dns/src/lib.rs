//! KubeBid's DNS isolation server: authoritative for the cluster domain as the Kubernetes DNS specification
//! describes it, but each client sees only its tenant's namespaces, shared namespaces and services, and
//! (if its tenant allows) external names. Everything else is NXDOMAIN, indistinguishable from a name that
//! does not exist.
//!
//! Start at [`zone`] (the index of names and who owns each) and [`answer`] (one query in, one decision
//! out); both are plain functions over data, and so is [`fast`] (answers kept for the hot path).
//! [`server`] is the UDP/TCP shell: it reads and writes sockets and wires in [`forward`] (the cache and
//! [`upstream`] resolvers for external names), [`limit`] (so one client cannot starve the others) and
//! [`querylog`]. [`state`] and [`cluster`] feed the zone from files or from the API server.
#![deny(clippy::pedantic)]

pub mod answer;
pub mod cache;
pub mod cluster;
pub mod fast;
pub mod forward;
pub mod limit;
pub mod metrics;
pub mod querylog;
pub mod server;
pub mod state;
pub mod upstream;
pub mod zone;
