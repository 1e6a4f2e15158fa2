//! KubeBid's admission webhook: the validating and mutating `AdmissionReview` server over the policy engine,
//! with the same rules, IDs and configuration as `kubebid check`.
//!
//! [`review`] decides one request without I/O; [`server`] is the HTTPS shell around it (TLS with certificate
//! reload and optional client certificates, HTTP/1.1 and HTTP/2, health, readiness, Prometheus metrics,
//! graceful shutdown); [`certs`] writes development certificates.
#![deny(clippy::pedantic)]

pub mod certs;
pub mod cluster;
pub mod generate;
pub mod metrics;
pub mod review;
pub mod server;
pub mod tls;
