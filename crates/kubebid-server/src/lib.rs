//! The shell every KubeBid service runs in, so that each service is only its own work.
//!
//! - [`shutdown::Shutdown`]: one coordinator per process. SIGTERM or Ctrl-C (or [`Shutdown::trigger`])
//!   stops every listener; each server then drains the work it tracked, within a deadline.
//! - [`metrics::Registry`]: one Prometheus registry per process. Each component registers its own
//!   families under its prefix; [`health::Health`] holds the liveness and readiness checks.
//! - [`http`]: HTTP/1.1 and HTTP/2 (by ALPN over TLS, or plain) through tower layers: tracing span,
//!   request metrics, the process's `/healthz`, `/readyz` and `/metrics`, a body limit answered with 413 on
//!   both protocols, a concurrency limit and a timeout. A service is a `tower::Service` from
//!   `Request<Bytes>` to `Response<Full<Bytes>>`.
//! - [`tls`]: TLS 1.2 and 1.3 only, certificates reloaded when their files change, optional client CA.
//! - [`accept`]: the accept loop under every TCP server (HTTP, DNS over TCP): connection limit, accept
//!   errors backed off, connections tracked for the drain.
//! - [`unix`]: gRPC (tonic) on unix sockets created 0600 that refuse to replace a socket still served.
//! - [`watch`]: reflectors that report the end of their first list.
//!
//! [`Shutdown::trigger`]: shutdown::Shutdown::trigger
#![deny(clippy::pedantic)]

pub mod accept;
pub mod health;
pub mod http;
pub mod metrics;
pub mod shutdown;
pub mod tls;
pub mod unix;
pub mod watch;

pub use health::Health;
pub use metrics::Registry;
pub use shutdown::Shutdown;
