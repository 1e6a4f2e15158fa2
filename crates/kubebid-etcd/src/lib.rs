//! The tenant layer KubeBid puts around Secrets in etcd, below the API server: which etcd keys
//! belong to a tenant namespace's Secrets ([`path`]), sealing and opening their values under the
//! tenant's data keys ([`seal`], whose wrapping by the tenant's HSM key is behind [`seal::KeyWrapper`]),
//! and doing so on etcd's own messages ([`layer`], over the types in [`proto`]); the proxy that applies it
//! between the API server and etcd ([`proxy`], with its [`metrics`]), and a small gRPC client of etcd
//! ([`client`]) for `kubebid secrets rewrap`, the tests and the benchmark.

pub mod client;
pub mod layer;
pub mod metrics;
pub mod path;
pub mod proxy;
pub mod rewrap;
pub mod seal;

/// The etcd v3 messages that carry stored values, generated from `proto/etcd-kv.proto`.
#[allow(clippy::pedantic, clippy::default_trait_access, missing_docs)]
pub mod proto {
    include!(concat!(env!("OUT_DIR"), "/kubebid.etcd.v3.rs"));
}
