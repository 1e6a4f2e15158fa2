//! KubeBid's DNS isolation server: authoritative for the cluster domain as the Kubernetes DNS specification
//! describes it, but each client sees only its tenant's namespaces, shared namespaces and services, and
//! (if its tenant allows) external names. Everything else is NXDOMAIN, indistinguishable from a name that
//! does not exist.
//!
//! Start at [`zone`] (the index of names and who owns each) and [`answer`] (one query in, one decision
//! out); both are plain functions over data. [`server`] is the UDP/TCP shell, [`upstream`] and [`cache`]
//! forward external names, [`state`] and [`cluster`] feed the zone from files or from the API server.
#![deny(clippy::pedantic)]

pub mod answer;
pub mod cache;
pub mod cluster;
pub mod fast;
pub mod metrics;
pub mod server;
pub mod state;
pub mod upstream;
pub mod zone;
