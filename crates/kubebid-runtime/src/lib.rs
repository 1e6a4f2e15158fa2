//! What KubeBid's long-running services share: [`watch`], a reflector over one kind that reports each
//! change and the end of its first list (so a service publishes nothing before every list is in), and
//! [`metrics`], the plain-HTTP `/metrics` and `/healthz` endpoint of the services that do not speak HTTPS.
#![deny(clippy::pedantic)]

pub mod metrics;
pub mod watch;
