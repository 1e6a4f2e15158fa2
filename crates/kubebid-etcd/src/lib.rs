//! The tenant layer KubeBid puts around Secrets in etcd, below the API server (issue 13's proxy builds on
//! it). No I/O: which etcd keys belong to a tenant namespace's Secrets ([`path`]), and sealing and opening
//! their values under the tenant's data keys ([`seal`]), whose wrapping by the tenant's HSM key is behind
//! the [`seal::KeyWrapper`] trait.

pub mod path;
pub mod seal;
