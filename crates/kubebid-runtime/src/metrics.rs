//! The plain-HTTP endpoint of a service's Prometheus metrics: `/metrics` (whatever `render` returns, in the
//! `OpenMetrics` text format) and `/healthz` (what `health` says), on a port of its own.

use std::convert::Infallible;
use std::sync::Arc;

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::{Method, Response, StatusCode};
use hyper_util::rt::TokioIo;

/// What `/healthz` answers: `Ok` (200), or why not (503).
pub type Health = Arc<dyn Fn() -> Result<(), String> + Send + Sync>;

/// A service that is healthy whenever it answers at all.
#[must_use]
pub fn always_healthy() -> Health {
    Arc::new(|| Ok(()))
}

/// Serves `/metrics` and `/healthz` on `listener` until `shutdown` completes.
pub async fn serve(
    listener: tokio::net::TcpListener,
    render: Arc<dyn Fn() -> String + Send + Sync>,
    health: Health,
    shutdown: impl Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    loop {
        let (tcp, _) = tokio::select! {
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    // Out of file descriptors, say: back off instead of spinning.
                    tracing::warn!(error = %e, "metrics accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => return,
        };
        let render = render.clone();
        let health = health.clone();
        tokio::spawn(async move {
            let service =
                hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let render = render.clone();
                    let health = health.clone();
                    async move {
                        let (status, body) = match (req.method(), req.uri().path()) {
                            (&Method::GET, "/metrics") => (StatusCode::OK, render()),
                            (&Method::GET, "/healthz") => match health() {
                                Ok(()) => (StatusCode::OK, "ok\n".to_owned()),
                                Err(why) => (StatusCode::SERVICE_UNAVAILABLE, format!("{why}\n")),
                            },
                            _ => (StatusCode::NOT_FOUND, "not found\n".to_owned()),
                        };
                        let mut r = Response::new(Full::new(Bytes::from(body)));
                        *r.status_mut() = status;
                        Ok::<_, Infallible>(r)
                    }
                });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(tcp), service)
                .await;
        });
    }
}

/// `registry` in the `OpenMetrics` text format (empty if encoding fails, which it cannot for in-memory
/// metrics).
#[must_use]
pub fn encode(registry: &prometheus_client::registry::Registry) -> String {
    let mut out = String::new();
    if prometheus_client::encoding::text::encode(&mut out, registry).is_err() {
        out.clear();
    }
    out
}
