//! KubeBid's audit sink.
//!
//! The API server's audit webhook backend posts batches of events; the sink attributes each event to a
//! tenant through the tenancy model ([`attribute`]), appends it to that tenant's log ([`log`]) and
//! acknowledges the batch once it is durable ([`store`]: group commit with `fdatasync`). Each log is a
//! Merkle tree in the style of RFC 9162 ([`merkle`]) with Ed25519-signed tree heads ([`head`]), so that
//! [`verify`] finds any event modified, removed, reordered or appended behind the sink's back, and any
//! truncation behind the last signed head; [`proof`] gives an auditor an inclusion proof to check
//! offline.

pub mod attribute;
pub mod detect;
pub mod event;
pub mod export;
pub mod forward;
pub mod head;
pub mod log;
pub mod merkle;
pub mod metrics;
pub mod proof;
pub mod query;
pub mod segment;
pub mod sink;
pub mod store;
pub mod verify;
