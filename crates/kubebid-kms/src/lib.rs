//! KubeBid's KMS v2 plugin: the Kubernetes API server encrypts Secrets through it, over a unix socket.
//!
//! Start at [`envelope`] (the key hierarchy: data keys under an in-memory KEK, the KEK sealed by a root key
//! that never leaves the HSM) and [`keystore`] (the HSM through PKCS#11, or a development file store).
//! [`server`] is the gRPC shell: the `v2.KeyManagementService` API on a 0600 unix socket. [`tenant`] wraps
//! volume keys under per-tenant HSM keys, served as `kubebid.kms.v1alpha1.TenantKeyService` on a socket of
//! its own.
#![deny(clippy::pedantic)]

pub mod envelope;
pub mod keystore;
pub mod server;
pub mod tenant;

/// The KMS v2 API's generated types, client and server.
#[allow(clippy::pedantic, clippy::default_trait_access, missing_docs)]
pub mod proto {
    tonic::include_proto!("v2");
}

/// The per-tenant key service's generated types, client and server.
#[allow(clippy::pedantic, clippy::default_trait_access, missing_docs)]
pub mod tenant_proto {
    tonic::include_proto!("kubebid.kms.v1alpha1");
}
