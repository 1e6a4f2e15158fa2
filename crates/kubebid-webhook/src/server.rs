//! The HTTPS server: a thin shell around [`review`](crate::review). TLS handshakes and HTTP (1.1 and 2)
//! run per connection; bodies are bounded; the decision is pure; shutdown stops accepting and lets the
//! reviews in flight finish.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full};
use hyper::body::{Body, Bytes, Frame, Incoming, SizeHint};
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use kubebid_policy::PolicySet;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio_rustls::TlsAcceptor;

use crate::metrics::{ErrorLabels, Metrics, ReviewLabels, RuleLabels};
use crate::review::{self, Endpoint};
use crate::tls::ReloadingCert;

/// Largest request body accepted: the API server's own limit for objects is 3 MiB.
pub const MAX_BODY_BYTES: usize = 3 * 1024 * 1024;

/// What the server needs.
pub struct WebhookServer {
    /// TLS configuration (with its certificate resolver).
    pub tls: Arc<rustls::ServerConfig>,
    /// The certificate to watch for changes, if any.
    pub reloading_cert: Option<Arc<ReloadingCert>>,
    /// The current policy; `None` until the configuration (or the cluster caches) are ready.
    pub policy: watch::Receiver<Option<PolicySet>>,
    /// Metrics, shared with `/metrics`.
    pub metrics: Arc<Metrics>,
    /// How often to look at the certificate files.
    pub reload_interval: Duration,
    /// Most connections served at once; further ones wait to be accepted.
    pub max_connections: usize,
    /// How long shutdown waits for reviews in flight.
    pub drain_timeout: Duration,
    /// Whether `/validate` and `/mutate` need a verified client certificate (`--client-ca`).
    pub client_auth: bool,
}

struct Shared {
    policy: watch::Receiver<Option<PolicySet>>,
    metrics: Arc<Metrics>,
    /// Whether reviews need a client certificate (the TLS layer asks for one but lets health probes in
    /// without).
    client_auth: bool,
}

/// A reply body that keeps the unread rest of the request alive until the reply is sent. Over HTTP/2 a
/// request body dropped before the response is complete makes the stream end with `RST_STREAM(CANCEL)`, and
/// the client never sees the 413; dropped after it, the stream ends with `NO_ERROR`, which clients accept.
pub struct Reply {
    body: Full<Bytes>,
    unread: Option<Incoming>,
}

impl Reply {
    fn new(body: impl Into<Bytes>) -> Self {
        Self {
            body: Full::new(body.into()),
            unread: None,
        }
    }
}

impl Body for Reply {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Pin::new(&mut self.get_mut().body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

impl WebhookServer {
    /// Serves on `listener` until `shutdown` completes, then drains.
    ///
    /// # Errors
    /// Only if accepting on the listener fails persistently; per-connection errors are logged.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()>,
    ) -> std::io::Result<()> {
        let acceptor = TlsAcceptor::from(self.tls.clone());
        let shared = Arc::new(Shared {
            policy: self.policy.clone(),
            metrics: self.metrics.clone(),
            client_auth: self.client_auth,
        });
        let graceful = hyper_util::server::graceful::GracefulShutdown::new();
        let slots = Arc::new(Semaphore::new(self.max_connections));
        let (stop_reload, mut reload_stopped) = watch::channel(false);
        if let Some(cert) = self.reloading_cert.clone() {
            let metrics = self.metrics.clone();
            let interval = self.reload_interval;
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(interval);
                loop {
                    tokio::select! {
                        _ = tick.tick() => {}
                        _ = reload_stopped.changed() => return,
                    }
                    match cert.reload_if_changed() {
                        Ok(true) => {
                            metrics.cert_reloads.inc();
                            tracing::info!("serving certificate reloaded");
                        }
                        Ok(false) => {}
                        Err(e) => {
                            metrics.cert_reload_errors.inc();
                            tracing::warn!(error = %e, "changed certificate did not load; still serving the previous one");
                        }
                    }
                }
            });
        }
        tokio::pin!(shutdown);
        loop {
            let permit = tokio::select! {
                p = slots.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
                () = &mut shutdown => break,
            };
            let (tcp, peer) = tokio::select! {
                r = listener.accept() => match r {
                    Ok(c) => c,
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
                () = &mut shutdown => break,
            };
            let _ = tcp.set_nodelay(true);
            let acceptor = acceptor.clone();
            let shared = shared.clone();
            let watcher = graceful.watcher();
            tokio::spawn(async move {
                let _permit = permit;
                let tls = match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp))
                    .await
                {
                    Ok(Ok(s)) => s,
                    Ok(Err(e)) => {
                        tracing::debug!(%peer, error = %e, "TLS handshake failed");
                        return;
                    }
                    Err(_) => {
                        tracing::debug!(%peer, "TLS handshake timed out");
                        return;
                    }
                };
                let authenticated = tls
                    .get_ref()
                    .1
                    .peer_certificates()
                    .is_some_and(|c| !c.is_empty());
                serve_connection(tls, peer, authenticated, shared, watcher).await;
            });
        }
        drop(listener);
        let _ = stop_reload.send(true);
        tracing::info!("stopped accepting; finishing reviews in flight");
        if tokio::time::timeout(self.drain_timeout, graceful.shutdown())
            .await
            .is_err()
        {
            tracing::warn!("drain timed out; closing remaining connections");
        }
        Ok(())
    }
}

async fn serve_connection(
    tls: tokio_rustls::server::TlsStream<tokio::net::TcpStream>,
    peer: SocketAddr,
    authenticated: bool,
    shared: Arc<Shared>,
    watcher: hyper_util::server::graceful::Watcher,
) {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(10))
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(256)
        .keep_alive_interval(Some(Duration::from_secs(30)));
    let service = hyper::service::service_fn(move |req| {
        let shared = shared.clone();
        async move { Ok::<_, Infallible>(handle(&shared, authenticated, req).await) }
    });
    let conn = builder
        .serve_connection(TokioIo::new(tls), service)
        .into_owned();
    if let Err(e) = watcher.watch(conn).await {
        tracing::debug!(%peer, error = %e, "connection ended with an error");
    }
}

fn text(status: StatusCode, body: impl Into<Bytes>) -> Response<Reply> {
    let mut r = Response::new(Reply::new(body));
    *r.status_mut() = status;
    r.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

async fn handle(shared: &Shared, authenticated: bool, req: Request<Incoming>) -> Response<Reply> {
    let endpoint = match (req.method(), req.uri().path()) {
        (&Method::GET, "/healthz") => return text(StatusCode::OK, "ok\n"),
        (&Method::GET, "/readyz") => {
            return if shared.policy.borrow().is_some() {
                text(StatusCode::OK, "ok\n")
            } else {
                text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "not ready: policy not loaded or caches not synced\n",
                )
            };
        }
        (&Method::GET, "/metrics") => {
            let mut r = text(StatusCode::OK, shared.metrics.encode());
            r.headers_mut().insert(
                CONTENT_TYPE,
                HeaderValue::from_static(
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                ),
            );
            return r;
        }
        (&Method::POST, "/validate") => Endpoint::Validate,
        (&Method::POST, "/mutate") => Endpoint::Mutate,
        (_, "/validate" | "/mutate" | "/healthz" | "/readyz" | "/metrics") => {
            return reject(
                shared,
                StatusCode::METHOD_NOT_ALLOWED,
                "method",
                "method not allowed\n",
            );
        }
        _ => return reject(shared, StatusCode::NOT_FOUND, "path", "not found\n"),
    };
    if shared.client_auth && !authenticated {
        return reject(
            shared,
            StatusCode::FORBIDDEN,
            "client_cert",
            "reviews need a client certificate signed by the configured client CA\n",
        );
    }
    let body = match read_body(req.into_body()).await {
        Ok(b) => b,
        Err(BodyError::TooLarge(unread)) => {
            let mut r = reject(
                shared,
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                format!("body larger than {MAX_BODY_BYTES} bytes\n"),
            );
            r.body_mut().unread = Some(unread);
            return r;
        }
        Err(BodyError::Read(e)) => {
            return reject(
                shared,
                StatusCode::BAD_REQUEST,
                "body",
                format!("cannot read the body: {e}\n"),
            );
        }
    };
    let started = Instant::now();
    shared.metrics.in_flight.inc();
    let policy = shared.policy.borrow().clone();
    let outcome = match &policy {
        Some(p) => review::review(p, endpoint, &body, jiff::Timestamp::now()),
        None => review::review_unready(&body),
    };
    shared.metrics.in_flight.dec();
    match outcome {
        Ok(done) => {
            let labels = ReviewLabels {
                endpoint: endpoint.as_str(),
                operation: done.operation,
                kind: done.kind.clone(),
                verdict: done.verdict,
            };
            shared
                .metrics
                .latency
                .get_or_create(&labels)
                .observe(started.elapsed().as_secs_f64());
            shared.metrics.reviews.get_or_create(&labels).inc();
            for rule in &done.rules {
                shared
                    .metrics
                    .findings
                    .get_or_create(&RuleLabels { rule })
                    .inc();
            }
            if done.verdict == "denied" {
                tracing::info!(uid = %done.uid, endpoint = endpoint.as_str(), operation = done.operation, kind = %done.kind, rules = ?done.rules, "denied");
            }
            let mut r = Response::new(Reply::new(done.body));
            r.headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            r
        }
        Err(e) => reject(
            shared,
            StatusCode::BAD_REQUEST,
            "malformed",
            format!("{e}\n"),
        ),
    }
}

enum BodyError {
    /// Over the limit; the rest of the body, unread.
    TooLarge(Incoming),
    Read(hyper::Error),
}

/// How much of an oversized body is read and thrown away before the 413 is sent. Clients that are still
/// sending when the answer arrives (curl before 8.10 over HTTP/2, say) report an error instead of the 413;
/// draining lets them finish. Beyond this the answer is sent anyway.
const DRAIN_BYTES: usize = 16 * 1024 * 1024;

/// Reads a body of at most [`MAX_BODY_BYTES`]. A larger one is drained (up to [`DRAIN_BYTES`]) and returned
/// unread for the reply to hold.
async fn read_body(mut body: Incoming) -> Result<Bytes, BodyError> {
    let mut parts: Vec<Bytes> = Vec::new();
    let mut len = 0usize;
    let declared_too_large = body
        .size_hint()
        .lower()
        .try_into()
        .is_ok_and(|n: usize| n > MAX_BODY_BYTES);
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(BodyError::Read)?;
        if let Ok(data) = frame.into_data() {
            len = len.saturating_add(data.len());
            if declared_too_large || len > MAX_BODY_BYTES {
                parts.clear();
                if len > DRAIN_BYTES {
                    break;
                }
                continue;
            }
            parts.push(data);
        }
    }
    if declared_too_large || len > MAX_BODY_BYTES {
        return Err(BodyError::TooLarge(body));
    }
    Ok(match parts.len() {
        0 => Bytes::new(),
        1 => parts.swap_remove(0),
        _ => parts.concat().into(),
    })
}

fn reject(
    shared: &Shared,
    status: StatusCode,
    reason: &'static str,
    body: impl Into<Bytes>,
) -> Response<Reply> {
    shared
        .metrics
        .rejected_requests
        .get_or_create(&ErrorLabels { reason })
        .inc();
    text(status, body)
}
