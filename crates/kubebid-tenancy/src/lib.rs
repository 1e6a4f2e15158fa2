//! Tenants: from one `Tenant` (and the cluster's `KubeBidConfig`) to every object its isolation depends on.
//!
//! [`render::tenant`] gives a tenant's namespaced objects, [`render::cluster`] the cluster-wide ones (secure
//! `RuntimeClass`, encrypted `StorageClass`, the encryption-required Cilium policy), and
//! [`render::audit_policy`] and [`render::encryption_config`] the files for the API server's flags. Every
//! object is labelled `kubebid.io/managed: "true"`, so the admission webhook guards it against tenants.
#![deny(clippy::pedantic)]

pub mod lease;
pub mod metrics;
pub mod operator;
pub mod reconcile;
pub mod render;
