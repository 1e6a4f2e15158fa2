//! HTTP/1.1 and HTTP/2 serving, composed from tower layers over the shell's accept loop.
//!
//! A request passes, outermost first:
//! 1. [`ObserveLayer`]: a tracing span, and `kubebid_server_http_requests_total` and its duration by
//!    server, route (a known path, else `other`) and status;
//! 2. [`EndpointsLayer`]: the process's `/healthz`, `/readyz` and `/metrics` (GET only; no client
//!    certificate needed, the kubelet's probes carry none);
//! 3. [`BodyLimitLayer`]: the body read whole, at most `max_body` bytes, else 413 on both protocols, and
//!    within the request timeout, else 408 (a slow sender holds no slot for long);
//! 4. a timeout (`tower::timeout`), answered with 503 (by the body-limit layer, which turns the layers'
//!    errors into responses);
//! 5. a concurrency limit shared by every connection (`tower::limit::GlobalConcurrencyLimit`), unless
//!    the service answers inline;
//! 6. the service itself: `Request<Bytes>` in, `Response<Full<Bytes>>` out, with the [`Peer`] in the
//!    request's extensions.
//!
//! [`serve`] runs the stack on TLS (ALPN `h2`, `http/1.1`) or plain TCP until shutdown is requested, then
//! lets the requests in flight finish, up to the drain deadline.

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
use tokio::net::TcpListener;
use tower::{Layer, Service, ServiceBuilder, ServiceExt};

use crate::accept::{self, AcceptConfig};
use crate::metrics::{RequestLabels, ServerLabels, ShellMetrics};
use crate::{Health, Registry, Shutdown};

/// What one process shares between its servers: the registry, the health checks, the shell's own
/// metrics and the shutdown coordinator.
#[derive(Clone, Debug)]
pub struct Process {
    /// The process's Prometheus registry.
    pub registry: Registry,
    /// The process's liveness and readiness checks.
    pub health: Health,
    /// The shell's families in `registry`.
    pub metrics: ShellMetrics,
    /// The shutdown coordinator.
    pub shutdown: Shutdown,
}

impl Process {
    /// A process context stopped by `shutdown`.
    #[must_use]
    pub fn new(shutdown: Shutdown) -> Self {
        Self::with_registry(Registry::new(), shutdown)
    }

    /// A process context around an existing `registry` (one a component was registered in first); the
    /// shell's families are added to it.
    #[must_use]
    pub fn with_registry(registry: Registry, shutdown: Shutdown) -> Self {
        let metrics = ShellMetrics::new(&registry);
        Self {
            registry,
            health: Health::new(),
            metrics,
            shutdown,
        }
    }
}

/// How a server serves.
#[derive(Clone, Debug)]
pub struct HttpConfig {
    /// The server's name in logs and metrics.
    pub server: &'static str,
    /// The service's paths, as metric labels; any other path is counted as `other`.
    pub routes: &'static [&'static str],
    /// Largest request body; a larger one is answered 413.
    pub max_body: usize,
    /// Longest time to answer one request; then 503.
    pub request_timeout: Duration,
    /// Most requests the service works on at once, over all connections; further ones wait. `None` for
    /// a service that answers inline, on the worker thread that read the request (its concurrency is
    /// the number of workers already), where a shared semaphore would only add contention.
    pub max_concurrent_requests: Option<usize>,
    /// Most connections open at once.
    pub max_connections: usize,
    /// Longest TLS handshake.
    pub handshake_timeout: Duration,
    /// How long shutdown waits for requests in flight.
    pub drain_timeout: Duration,
}

impl HttpConfig {
    /// Defaults for a server named `server` with `routes`.
    #[must_use]
    pub fn new(server: &'static str, routes: &'static [&'static str]) -> Self {
        Self {
            server,
            routes,
            max_body: 3 * 1024 * 1024,
            request_timeout: Duration::from_secs(10),
            max_concurrent_requests: Some(1024),
            max_connections: 4096,
            handshake_timeout: Duration::from_secs(10),
            drain_timeout: Duration::from_secs(25),
        }
    }
}

/// Who sent a request, in its extensions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Peer {
    /// The client's address.
    pub addr: SocketAddr,
    /// Whether the client presented a certificate the configured client CA signed (TLS verified it).
    pub client_certificate: bool,
}

/// A reply body that keeps the unread rest of the request alive until the reply is sent. Over HTTP/2 a
/// request body dropped before the response is complete makes the stream end with `RST_STREAM(CANCEL)`, and
/// the client never sees the 413; dropped after it, the stream ends with `NO_ERROR`, which clients accept.
#[derive(Debug)]
pub struct Reply {
    body: Full<Bytes>,
    unread: Option<Incoming>,
}

impl Reply {
    fn new(body: Full<Bytes>) -> Self {
        Self { body, unread: None }
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

/// A plain-text response.
#[must_use]
pub fn text(status: StatusCode, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    r.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

/// A JSON response.
#[must_use]
pub fn json(body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body.into()));
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// A stage of the stack below the body limit's reading: HTTP requests in, the shell's replies out, no
/// errors (every failure is a response), clonable per request and movable across threads.
pub trait Stage:
    Service<
        Request<Incoming>,
        Response = Response<Reply>,
        Error = Infallible,
        Future: Send + 'static,
    > + Clone
    + Send
    + 'static
{
}

impl<S> Stage for S where
    S: Service<
            Request<Incoming>,
            Response = Response<Reply>,
            Error = Infallible,
            Future: Send + 'static,
        > + Clone
        + Send
        + 'static
{
}

/// Takes the service that was made ready and leaves a clone in its place (tower's usual pattern).
fn take<S: Clone>(inner: &mut S) -> S {
    let clone = inner.clone();
    std::mem::replace(inner, clone)
}

// ---------------------------------------------------------------------------------------------------
// 1. Observe

/// Layer 1: a span and the request metrics. Its state is behind one `Arc`: the stack is cloned for
/// every request (tower's readiness contract), and one reference count is cheaper than five.
#[derive(Clone, Debug)]
pub struct ObserveLayer(Arc<ObserveState>);

#[derive(Debug)]
struct ObserveState {
    server: &'static str,
    routes: &'static [&'static str],
    metrics: ShellMetrics,
}

/// The service of [`ObserveLayer`].
#[derive(Clone, Debug)]
pub struct Observe<S> {
    layer: ObserveLayer,
    inner: S,
}

impl<S> Layer<S> for ObserveLayer {
    type Service = Observe<S>;
    fn layer(&self, inner: S) -> Observe<S> {
        Observe {
            layer: self.clone(),
            inner,
        }
    }
}

const SHELL_ROUTES: [&str; 3] = ["/healthz", "/readyz", "/metrics"];

fn route(path: &str, routes: &'static [&'static str]) -> &'static str {
    SHELL_ROUTES
        .iter()
        .chain(routes)
        .find(|r| **r == path)
        .copied()
        .unwrap_or("other")
}

impl<S> Service<Request<Incoming>> for Observe<S>
where
    S: Stage,
{
    type Response = Response<Reply>;
    type Error = Infallible;
    type Future = BoxFuture<Result<Response<Reply>, Infallible>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<Incoming>) -> Self::Future {
        let started = Instant::now();
        let state = self.layer.0.clone();
        let server = state.server;
        let route = route(req.uri().path(), state.routes);
        let span = tracing::debug_span!("request", server, route, method = %req.method());
        let call = take(&mut self.inner).call(req);
        Box::pin(tracing::Instrument::instrument(
            async move {
                let Ok(response) = call.await;
                let labels = RequestLabels {
                    server,
                    route,
                    code: response.status().as_u16(),
                };
                state
                    .metrics
                    .duration
                    .get_or_create(&labels)
                    .observe(started.elapsed().as_secs_f64());
                state.metrics.requests.get_or_create(&labels).inc();
                Ok(response)
            },
            span,
        ))
    }
}

// ---------------------------------------------------------------------------------------------------
// 2. Endpoints

/// Layer 2: the process's `/healthz`, `/readyz` and `/metrics`.
#[derive(Clone, Debug)]
pub struct EndpointsLayer(Arc<EndpointsState>);

#[derive(Debug)]
struct EndpointsState {
    registry: Registry,
    health: Health,
}

/// The service of [`EndpointsLayer`].
#[derive(Clone, Debug)]
pub struct Endpoints<S> {
    layer: EndpointsLayer,
    inner: S,
}

impl<S> Layer<S> for EndpointsLayer {
    type Service = Endpoints<S>;
    fn layer(&self, inner: S) -> Endpoints<S> {
        Endpoints {
            layer: self.clone(),
            inner,
        }
    }
}

impl EndpointsLayer {
    fn answer(&self, method: &Method, path: &str) -> Option<Response<Full<Bytes>>> {
        if !SHELL_ROUTES.contains(&path) {
            return None;
        }
        if method != Method::GET {
            return Some(text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n"));
        }
        let verdict = match path {
            "/healthz" => self.0.health.liveness(),
            "/readyz" => self.0.health.readiness(),
            _ => {
                let mut r = text(StatusCode::OK, self.0.registry.encode());
                r.headers_mut().insert(
                    CONTENT_TYPE,
                    HeaderValue::from_static(
                        "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    ),
                );
                return Some(r);
            }
        };
        let status = match verdict {
            crate::health::Verdict::Pass => StatusCode::OK,
            crate::health::Verdict::Fail(_) => StatusCode::SERVICE_UNAVAILABLE,
        };
        Some(text(status, verdict.body()))
    }
}

impl<S> Service<Request<Incoming>> for Endpoints<S>
where
    S: Stage,
{
    type Response = Response<Reply>;
    type Error = Infallible;
    type Future =
        futures::future::Either<std::future::Ready<Result<Response<Reply>, Infallible>>, S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<Incoming>) -> Self::Future {
        match self.layer.answer(req.method(), req.uri().path()) {
            Some(r) => futures::future::Either::Left(std::future::ready(Ok(r.map(Reply::new)))),
            None => futures::future::Either::Right(take(&mut self.inner).call(req)),
        }
    }
}

// ---------------------------------------------------------------------------------------------------
// 3. Body limit

/// Layer 3: reads the body whole, at most `max` bytes within `deadline`; a larger one is answered 413, a
/// slower one 408.
#[derive(Clone, Copy, Debug)]
pub struct BodyLimitLayer {
    max: usize,
    deadline: Duration,
}

impl BodyLimitLayer {
    /// Bodies of at most `max` bytes, arriving within `deadline`.
    #[must_use]
    pub fn new(max: usize, deadline: Duration) -> Self {
        Self { max, deadline }
    }
}

/// The service of [`BodyLimitLayer`].
#[derive(Clone, Debug)]
pub struct BodyLimit<S> {
    layer: BodyLimitLayer,
    inner: S,
}

impl<S> Layer<S> for BodyLimitLayer {
    type Service = BodyLimit<S>;
    fn layer(&self, inner: S) -> BodyLimit<S> {
        BodyLimit {
            layer: *self,
            inner,
        }
    }
}

enum BodyError {
    /// Over the limit; the rest of the body, unread.
    TooLarge(Incoming),
    Read(hyper::Error),
    /// The body did not arrive within the request timeout (a slow sender holds no slot for long).
    Slow,
}

/// How much of an oversized body is read and thrown away before the 413 is sent. Clients that are still
/// sending when the answer arrives (curl before 8.10 over HTTP/2, say) report an error instead of the 413;
/// draining lets them finish. Beyond this, or after a pause of [`DRAIN_PAUSE`], the answer is sent anyway.
const DRAIN_BYTES: usize = 16 * 1024 * 1024;

/// The longest pause in an oversized body that is still waited for.
const DRAIN_PAUSE: Duration = Duration::from_millis(500);

async fn read_body(mut body: Incoming, max: usize, deadline: Duration) -> Result<Bytes, BodyError> {
    // Most bodies come in one frame: kept as it is, no buffer to gather into.
    let mut first: Option<Bytes> = None;
    let mut rest: Vec<Bytes> = Vec::new();
    let mut len = 0usize;
    let declared_too_large = body
        .size_hint()
        .lower()
        .try_into()
        .is_ok_and(|n: usize| n > max);
    let until = tokio::time::Instant::now() + deadline;
    loop {
        let too_large = declared_too_large || len > max;
        let next = if too_large {
            // Draining: only as long as the client keeps sending.
            match tokio::time::timeout(DRAIN_PAUSE, body.frame()).await {
                Ok(f) => f,
                Err(_) => break,
            }
        } else {
            match tokio::time::timeout_at(until, body.frame()).await {
                Ok(f) => f,
                Err(_) => return Err(BodyError::Slow),
            }
        };
        let Some(frame) = next else { break };
        let frame = frame.map_err(BodyError::Read)?;
        if let Ok(data) = frame.into_data() {
            len = len.saturating_add(data.len());
            if declared_too_large || len > max {
                first = None;
                rest.clear();
                if len > DRAIN_BYTES {
                    break;
                }
                continue;
            }
            if first.is_none() {
                first = Some(data);
            } else {
                rest.push(data);
            }
        }
    }
    if declared_too_large || len > max {
        return Err(BodyError::TooLarge(body));
    }
    Ok(match (first, rest.is_empty()) {
        (None, _) => Bytes::new(),
        (Some(one), true) => one,
        (Some(one), false) => {
            let mut all = Vec::with_capacity(len);
            all.extend_from_slice(&one);
            for part in &rest {
                all.extend_from_slice(part);
            }
            all.into()
        }
    })
}

impl<S> Service<Request<Incoming>> for BodyLimit<S>
where
    S: Service<Request<Bytes>, Response = Response<Full<Bytes>>, Error = tower::BoxError>
        + Clone
        + Send
        + 'static,
    S::Future: Send,
{
    type Response = Response<Reply>;
    type Error = Infallible;
    type Future = BoxFuture<Result<Response<Reply>, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        // Readiness of the inner service is awaited after the body is in (below), so that a request
        // waiting for a slot holds no permit while it is still uploading.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<Incoming>) -> Self::Future {
        let BodyLimitLayer { max, deadline } = self.layer;
        let inner = self.inner.clone();
        Box::pin(async move {
            let (parts, body) = req.into_parts();
            let bytes = match read_body(body, max, deadline).await {
                Ok(b) => b,
                Err(BodyError::TooLarge(unread)) => {
                    let mut r = text(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        format!("body larger than {max} bytes\n"),
                    )
                    .map(Reply::new);
                    r.body_mut().unread = Some(unread);
                    return Ok(r);
                }
                Err(BodyError::Slow) => {
                    return Ok(text(
                        StatusCode::REQUEST_TIMEOUT,
                        "the body did not arrive in time\n",
                    )
                    .map(Reply::new));
                }
                Err(BodyError::Read(e)) => {
                    return Ok(text(
                        StatusCode::BAD_REQUEST,
                        format!("cannot read the body: {e}\n"),
                    )
                    .map(Reply::new));
                }
            };
            let response = match inner.oneshot(Request::from_parts(parts, bytes)).await {
                Ok(r) => r,
                Err(e) if e.is::<tower::timeout::error::Elapsed>() => text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the request was not answered in time\n",
                ),
                // The layers below raise no other error (the service's own is `Infallible`).
                Err(e) => text(StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")),
            };
            Ok(response.map(Reply::new))
        })
    }
}

// ---------------------------------------------------------------------------------------------------
// Serving

/// The whole stack around `app`, as [`serve`] runs it.
pub fn stack<S>(process: &Process, config: &HttpConfig, app: S) -> impl Stage
where
    S: Service<Request<Bytes>, Response = Response<Full<Bytes>>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    ServiceBuilder::new()
        .layer(ObserveLayer(Arc::new(ObserveState {
            server: config.server,
            routes: config.routes,
            metrics: process.metrics.clone(),
        })))
        .layer(EndpointsLayer(Arc::new(EndpointsState {
            registry: process.registry.clone(),
            health: process.health.clone(),
        })))
        .layer(BodyLimitLayer::new(config.max_body, config.request_timeout))
        .timeout(config.request_timeout)
        .option_layer(
            config
                .max_concurrent_requests
                .map(|n| tower::limit::GlobalConcurrencyLimitLayer::new(n.max(1))),
        )
        .service(app)
}

/// Where a server listens: TLS (with the configuration from [`tls::server_config`](crate::tls)) or plain.
#[derive(Clone, Debug)]
pub enum Transport {
    /// HTTPS; HTTP/2 or HTTP/1.1 by ALPN.
    Tls(Arc<rustls::ServerConfig>),
    /// Plain HTTP/1.1 (or HTTP/2 with prior knowledge), for metrics ports.
    Plain,
}

/// Serves `app` behind the shell's layers on `listener` until shutdown is requested, then drains.
pub async fn serve<S>(
    process: &Process,
    config: &HttpConfig,
    listener: TcpListener,
    transport: Transport,
    app: S,
) where
    S: Service<Request<Bytes>, Response = Response<Full<Bytes>>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    let stack = stack(process, config, app);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let acceptor = match &transport {
        Transport::Tls(tls) => Some(tokio_rustls::TlsAcceptor::from(tls.clone())),
        Transport::Plain => None,
    };
    let handshakes = process
        .metrics
        .handshake_failures
        .get_or_create(&ServerLabels {
            server: config.server,
        })
        .clone();
    let accept_config = AcceptConfig {
        server: config.server,
        max_connections: config.max_connections,
        when_full: accept::WhenFull::Wait,
    };
    let handshake_timeout = config.handshake_timeout;
    let server = config.server;
    accept::serve_tcp(
        listener,
        &accept_config,
        &process.metrics,
        &process.shutdown,
        |tcp, addr| {
            let stack = stack.clone();
            let acceptor = acceptor.clone();
            let handshakes = handshakes.clone();
            let watcher = graceful.watcher();
            async move {
                let Some(acceptor) = acceptor else {
                    let peer = Peer {
                        addr,
                        client_certificate: false,
                    };
                    connection(TokioIo::new(tcp), peer, stack, watcher, server).await;
                    return;
                };
                let tls = match tokio::time::timeout(handshake_timeout, acceptor.accept(tcp)).await
                {
                    Ok(Ok(s)) => s,
                    Ok(Err(e)) => {
                        handshakes.inc();
                        tracing::debug!(server, %addr, error = %e, "TLS handshake failed");
                        return;
                    }
                    Err(_) => {
                        handshakes.inc();
                        tracing::debug!(server, %addr, "TLS handshake timed out");
                        return;
                    }
                };
                let peer = Peer {
                    addr,
                    client_certificate: tls
                        .get_ref()
                        .1
                        .peer_certificates()
                        .is_some_and(|c| !c.is_empty()),
                };
                connection(TokioIo::new(tls), peer, stack, watcher, server).await;
            }
        },
    )
    .await;
    tracing::info!(server, "stopped accepting; finishing requests in flight");
    if tokio::time::timeout(config.drain_timeout, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(server, "drain timed out; closing remaining connections");
    }
}

/// The HTTP settings of every connection: HTTP/1.1 with keep-alive and a header deadline, HTTP/2 with at
/// most 256 streams and keep-alive pings.
#[must_use]
pub fn connection_builder() -> auto::Builder<TokioExecutor> {
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
    builder
}

async fn connection<I, S>(
    io: TokioIo<I>,
    peer: Peer,
    stack: S,
    watcher: hyper_util::server::graceful::Watcher,
    server: &'static str,
) where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    S: Stage,
{
    let builder = connection_builder();
    let service = hyper::service::service_fn(move |mut req: Request<Incoming>| {
        req.extensions_mut().insert(peer);
        stack.clone().oneshot(req)
    });
    let conn = builder.serve_connection(io, service).into_owned();
    if let Err(e) = watcher.watch(conn).await {
        tracing::debug!(server, addr = %peer.addr, error = %e, "connection ended with an error");
    }
}

/// Serves only the process's `/healthz`, `/readyz` and `/metrics` (everything else 404), in plain HTTP on
/// `listener`: the endpoint of services that do not speak HTTP themselves (DNS, KMS, the operator).
pub async fn serve_endpoint(process: &Process, server: &'static str, listener: TcpListener) {
    let mut config = HttpConfig::new(server, &[]);
    config.max_body = 64 * 1024;
    config.max_connections = 256;
    config.drain_timeout = Duration::from_secs(1);
    serve(
        process,
        &config,
        listener,
        Transport::Plain,
        tower::service_fn(|_req: Request<Bytes>| async {
            Ok::<_, Infallible>(text(StatusCode::NOT_FOUND, "not found\n"))
        }),
    )
    .await;
}

/// A request's [`Peer`], as the shell recorded it.
#[must_use]
pub fn peer<B>(req: &Request<B>) -> Option<Peer> {
    req.extensions().get::<Peer>().copied()
}
