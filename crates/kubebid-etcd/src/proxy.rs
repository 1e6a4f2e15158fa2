//! The etcd proxy: HTTP/2 gRPC between the API server and etcd, with the tenant [`Layer`] applied to the
//! messages that carry values and every other byte forwarded as it came.
//!
//! The proxy does not terminate etcd's API: each call is forwarded on its own path, with its headers, to
//! etcd, and its messages are rewritten in flight where values travel (`KV/Put`, `KV/Txn` on the way in;
//! `KV/Range`, `KV/Put`, `KV/DeleteRange`, `KV/Txn` and the `Watch` stream on the way out). Leases,
//! maintenance, cluster and auth calls, and unary calls that carry no tenant value, pass through
//! unchanged, streaming included. A message that cannot be sealed ends the call with a gRPC error before
//! anything reaches etcd; one that cannot be opened ends it with an error in place of the value.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Buf as _, BufMut as _, Bytes, BytesMut};
use http_body::{Body, Frame};
use http_body_util::BodyExt;
use http_body_util::combinators::BoxBody;
use hyper::{Request, Response};
use prost::Message;

use crate::layer::{Layer, LayerError};
use crate::metrics::{CallLabels, FaultLabels};
use crate::proto::{
    DeleteRangeResponse, PutRequest, PutResponse, RangeResponse, TxnRequest, TxnResponse,
    WatchResponse,
};

/// A response or request body of the proxy.
pub type ProxyBody = BoxBody<Bytes, hyper::Error>;

/// How one message of a call is rewritten.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Rewrite {
    RangeRequest,
    PutRequest,
    TxnRequest,
    RangeResponse,
    /// The answer to a Range over many keys: a crypto-shredded tenant's values are left out.
    RangeListingResponse,
    PutResponse,
    DeleteResponse,
    TxnResponse,
    WatchResponse,
}

/// The calls the proxy forwards: what the API server's etcd client uses (KV, Watch, Lease, the status
/// its health check and endpoint sync read, the member list, authentication), matched exactly. Anything
/// else, including another spelling of these (percent-encoded, etcd's JSON gateway under `/v3/`), is
/// refused: etcd might route it to a call whose values the proxy did not see.
pub(crate) const ALLOWED: &[&str] = &[
    "/etcdserverpb.KV/Range",
    "/etcdserverpb.KV/Put",
    "/etcdserverpb.KV/DeleteRange",
    "/etcdserverpb.KV/Txn",
    "/etcdserverpb.KV/Compact",
    "/etcdserverpb.Watch/Watch",
    "/etcdserverpb.Lease/LeaseGrant",
    "/etcdserverpb.Lease/LeaseRevoke",
    "/etcdserverpb.Lease/LeaseKeepAlive",
    "/etcdserverpb.Lease/LeaseTimeToLive",
    "/etcdserverpb.Lease/LeaseLeases",
    "/etcdserverpb.Maintenance/Status",
    "/etcdserverpb.Maintenance/Alarm",
    "/etcdserverpb.Cluster/MemberList",
    "/etcdserverpb.Auth/Authenticate",
    "/grpc.health.v1.Health/Check",
];

/// Whether a request may be forwarded at all: an allowed path, as gRPC.
fn allowed(req: &Request<ProxyBody>) -> bool {
    let grpc = req
        .headers()
        .get(hyper::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == "application/grpc" || v.starts_with("application/grpc+proto"));
    grpc && req.uri().query().is_none() && ALLOWED.contains(&req.uri().path())
}

/// The rewrites of a call's request and response, by its path.
fn rewrites(path: &str) -> (Option<Rewrite>, Option<Rewrite>) {
    match path {
        // The request is read (not changed) to learn whether it lists many keys.
        "/etcdserverpb.KV/Range" => (Some(Rewrite::RangeRequest), Some(Rewrite::RangeResponse)),
        "/etcdserverpb.KV/Put" => (Some(Rewrite::PutRequest), Some(Rewrite::PutResponse)),
        "/etcdserverpb.KV/DeleteRange" => (None, Some(Rewrite::DeleteResponse)),
        "/etcdserverpb.KV/Txn" => (Some(Rewrite::TxnRequest), Some(Rewrite::TxnResponse)),
        "/etcdserverpb.Watch/Watch" => (None, Some(Rewrite::WatchResponse)),
        _ => (None, None),
    }
}

fn apply<M: Message + Default>(
    message: &[u8],
    f: impl FnOnce(&mut M) -> Result<bool, LayerError>,
) -> Result<Option<Vec<u8>>, Fault> {
    let mut m = M::decode(message).map_err(|e| Fault::Decode(e.to_string()))?;
    Ok(f(&mut m).map_err(Fault::Layer)?.then(|| m.encode_to_vec()))
}

fn canonical<M: Message + Default>(
    message: &[u8],
    f: impl FnOnce(&mut M) -> Result<bool, LayerError>,
) -> Result<Option<Vec<u8>>, Fault> {
    let mut m = M::decode(message).map_err(|e| Fault::Decode(e.to_string()))?;
    f(&mut m).map_err(Fault::Layer)?;
    Ok(Some(m.encode_to_vec()))
}

impl Rewrite {
    /// A request message as etcd is to get it. Whenever it is decoded, it goes on re-encoded even when
    /// nothing changed: a field repeated in the bytes is merged by the decoder, and etcd must see the
    /// merged message the layer checked, not bytes it could read differently.
    fn run_inbound(self, layer: &Layer, message: &[u8]) -> Result<Option<Vec<u8>>, Fault> {
        if !layer.may_concern(message) && self == Self::PutRequest {
            return Ok(None);
        }
        match self {
            Self::PutRequest => canonical::<PutRequest>(message, |m| layer.put_request(m)),
            Self::TxnRequest => canonical::<TxnRequest>(message, |m| layer.txn_request(m)),
            other => other.run(layer, message),
        }
    }

    /// The message rewritten, or `None` when it is to pass as it came.
    fn run(self, layer: &Layer, message: &[u8]) -> Result<Option<Vec<u8>>, Fault> {
        // A message that carries keys (a Put, or an answer) names every key in full: one that does not
        // contain the Secret prefix has nothing of a tenant in it, and passes without being decoded.
        // (Not so for a Txn request, whose comparisons can cover Secrets by a range.)
        let keyed = !matches!(self, Self::TxnRequest | Self::RangeRequest);
        if keyed && !layer.may_concern(message) {
            return Ok(None);
        }
        match self {
            Self::RangeRequest => Ok(None),
            Self::PutRequest => apply::<PutRequest>(message, |m| layer.put_request(m)),
            Self::TxnRequest => apply::<TxnRequest>(message, |m| layer.txn_request(m)),
            Self::RangeResponse => apply::<RangeResponse>(message, |m| layer.range_response(m)),
            Self::RangeListingResponse => {
                apply::<RangeResponse>(message, |m| layer.range_listing_response(m))
            }
            Self::PutResponse => apply::<PutResponse>(message, |m| layer.put_response(m)),
            Self::DeleteResponse => {
                apply::<DeleteRangeResponse>(message, |m| layer.delete_response(m))
            }
            Self::TxnResponse => apply::<TxnResponse>(message, |m| layer.txn_response(m)),
            Self::WatchResponse => apply::<WatchResponse>(message, |m| layer.watch_response(m)),
        }
    }
}

/// Why a message could not pass.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Fault {
    #[error("{0}")]
    Layer(LayerError),
    #[error("not an etcd message: {0}")]
    Decode(String),
    #[error("compressed gRPC messages are not accepted on calls that carry tenants' values")]
    Compressed,
}

impl Fault {
    /// The gRPC status code for it: a key that cannot be used is `FAILED_PRECONDITION`, a message that is
    /// not what it should be `INVALID_ARGUMENT` (on the way in) or `DATA_LOSS` (on the way out).
    fn code(&self, inbound: bool) -> u32 {
        match self {
            Self::Layer(LayerError::Seal { .. }) => 9,
            Self::Layer(
                LayerError::ValueCompare { .. }
                | LayerError::ValueSort { .. }
                | LayerError::AlreadySealed { .. },
            )
            | Self::Compressed => 3,
            Self::Decode(_) if inbound => 3,
            Self::Decode(_) => 15,
        }
    }
}

/// A body whose gRPC messages are rewritten on the way through; trailers pass as they came. A fault
/// ends the body with `grpc-status` trailers in place of the rest.
struct Rewritten {
    inner: ProxyBody,
    rewrite: Rewrite,
    layer: Layer,
    inbound: bool,
    method: &'static str,
    buf: BytesMut,
    out: VecDeque<Frame<Bytes>>,
    failed: bool,
    ended: bool,
}

impl Rewritten {
    fn fault(&mut self, f: &Fault) {
        tracing::warn!(error = %f, method = self.method, "an etcd message did not pass the tenant layer");
        let code = f.code(self.inbound);
        if let Some(m) = self.layer.metrics() {
            m.faults
                .get_or_create(&FaultLabels {
                    method: self.method,
                    code,
                })
                .inc();
        }
        let mut trailers = hyper::HeaderMap::new();
        grpc_status(&mut trailers, code, &f.to_string());
        self.out.push_back(Frame::trailers(trailers));
        self.failed = true;
    }

    /// Takes every whole message out of the buffer, rewritten.
    fn drain(&mut self) {
        while self.buf.len() >= 5 && !self.failed {
            let compressed = self.buf[0] != 0;
            let len =
                u32::from_be_bytes([self.buf[1], self.buf[2], self.buf[3], self.buf[4]]) as usize;
            if self.buf.len() < 5 + len {
                return;
            }
            let frame = self.buf.split_to(5 + len);
            if compressed {
                self.fault(&Fault::Compressed);
                return;
            }
            match self.rewrite.run(&self.layer, &frame[5..]) {
                Ok(None) => self.out.push_back(Frame::data(frame.freeze())),
                Ok(Some(message)) => {
                    let mut f = BytesMut::with_capacity(5 + message.len());
                    f.put_u8(0);
                    f.put_u32(u32::try_from(message.len()).unwrap_or(u32::MAX));
                    f.put_slice(&message);
                    self.out.push_back(Frame::data(f.freeze()));
                }
                Err(e) => self.fault(&e),
            }
        }
    }
}

impl Body for Rewritten {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        loop {
            if let Some(f) = self.out.pop_front() {
                return Poll::Ready(Some(Ok(f)));
            }
            if self.failed || self.ended {
                return Poll::Ready(None);
            }
            match Pin::new(&mut self.inner).poll_frame(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(None) => {
                    self.ended = true;
                    if !self.buf.is_empty() {
                        self.fault(&Fault::Decode("a message is cut short".into()));
                    }
                }
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(e))),
                Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                    Ok(mut data) => {
                        while data.has_remaining() {
                            let chunk = data.chunk().len();
                            self.buf.extend_from_slice(&data.chunk()[..chunk]);
                            data.advance(chunk);
                        }
                        self.drain();
                    }
                    Err(other) => self.out.push_back(other),
                },
            }
        }
    }
}

/// A body of frames known in advance.
struct Frames(VecDeque<Frame<Bytes>>);

impl Body for Frames {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        Poll::Ready(self.0.pop_front().map(Ok))
    }

    fn is_end_stream(&self) -> bool {
        self.0.is_empty()
    }
}

fn rewritten(
    inner: ProxyBody,
    rewrite: Rewrite,
    layer: &Layer,
    inbound: bool,
    method: &'static str,
) -> ProxyBody {
    Rewritten {
        inner,
        rewrite,
        layer: layer.clone(),
        inbound,
        method,
        buf: BytesMut::new(),
        out: VecDeque::new(),
        failed: false,
        ended: false,
    }
    .boxed()
}

/// Something that sends a request to etcd.
pub trait Upstream: Send + Sync {
    /// Sends `req` (its URI is the path only) to etcd.
    fn send(
        &self,
        req: Request<ProxyBody>,
    ) -> Pin<Box<dyn Future<Output = Result<Response<ProxyBody>, String>> + Send>>;
}

/// The whole gRPC messages in `body` (a unary call's request), or why not.
pub(crate) fn messages(mut body: &[u8]) -> Result<Vec<&[u8]>, Fault> {
    let mut out = Vec::new();
    while !body.is_empty() {
        if body.len() < 5 {
            return Err(Fault::Decode("a message is cut short".into()));
        }
        if body[0] != 0 {
            return Err(Fault::Compressed);
        }
        let len = u32::from_be_bytes([body[1], body[2], body[3], body[4]]) as usize;
        let end = 5usize
            .checked_add(len)
            .filter(|e| *e <= body.len())
            .ok_or_else(|| Fault::Decode("a message is cut short".into()))?;
        out.push(&body[5..end]);
        body = &body[end..];
    }
    Ok(out)
}

pub(crate) fn framed(message: &[u8], out: &mut BytesMut) {
    out.put_u8(0);
    out.put_u32(u32::try_from(message.len()).unwrap_or(u32::MAX));
    out.put_slice(message);
}

/// A gRPC answer with only a status: the call fails before anything reaches etcd.
fn status_only(code: u32, message: &str) -> Response<ProxyBody> {
    let mut r = Response::new(http_body_util::Empty::new().map_err(|n| match n {}).boxed());
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/grpc"),
    );
    grpc_status(r.headers_mut(), code, message);
    r
}

/// Sets `grpc-status` and `grpc-message` (percent-encoded; anything but printable ASCII shown as `?`).
fn grpc_status(h: &mut hyper::HeaderMap, code: u32, message: &str) {
    if let Ok(v) = code.to_string().parse() {
        h.insert("grpc-status", v);
    }
    let msg: String = message
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() || c == ' ' {
                c
            } else {
                '?'
            }
        })
        .collect();
    if let Ok(v) = msg.replace('%', "%25").parse() {
        h.insert("grpc-message", v);
    }
}

/// One call through the proxy.
pub async fn call(
    layer: &Layer,
    upstream: &Arc<dyn Upstream>,
    req: Request<ProxyBody>,
) -> Response<ProxyBody> {
    let started = std::time::Instant::now();
    if !allowed(&req) {
        tracing::warn!(path = %req.uri().path(), "a call the proxy does not forward was refused");
        if let Some(m) = layer.metrics() {
            m.faults
                .get_or_create(&FaultLabels {
                    method: "other",
                    code: 12,
                })
                .inc();
        }
        return status_only(12, "the etcd proxy does not forward this call");
    }
    let (inbound, mut outbound) = rewrites(req.uri().path());
    let method = crate::metrics::method(req.uri().path());
    let metrics = layer.metrics();
    if let Some(m) = metrics {
        m.calls.get_or_create(&CallLabels { method }).inc();
    }
    let fault = |code: u32| {
        if let Some(m) = metrics {
            m.faults.get_or_create(&FaultLabels { method, code }).inc();
        }
    };
    let (parts, body) = req.into_parts();
    let body = match inbound {
        // Put and Txn are unary: the request is read whole, sealed, and only then sent, so that a value
        // that cannot be sealed never reaches etcd.
        Some(r) => {
            let Ok(collected) = body.collect().await else {
                fault(1);
                return status_only(1, "the request was cut off");
            };
            let bytes = collected.to_bytes();
            let rewritten = messages(&bytes).and_then(|ms| {
                if r == Rewrite::RangeRequest {
                    // Read, not changed: whether it lists many keys, and that it does not sort
                    // tenants' sealed values.
                    for m in &ms {
                        let q = crate::proto::RangeRequest::decode(*m)
                            .map_err(|e| Fault::Decode(e.to_string()))?;
                        layer.range_request(&q).map_err(Fault::Layer)?;
                        if !q.range_end.is_empty() {
                            outbound = Some(Rewrite::RangeListingResponse);
                        }
                    }
                    return Ok(bytes.clone());
                }
                let mut out = BytesMut::with_capacity(bytes.len() + 256);
                for m in ms {
                    match r.run_inbound(layer, m)? {
                        Some(new) => framed(&new, &mut out),
                        None => framed(m, &mut out),
                    }
                }
                Ok(out.freeze())
            });
            match rewritten {
                Ok(b) => http_body_util::Full::new(b).map_err(|n| match n {}).boxed(),
                Err(f) => {
                    tracing::warn!(error = %f, method, "a write did not pass the tenant layer");
                    fault(f.code(true));
                    return status_only(f.code(true), &f.to_string());
                }
            }
        }
        None => body,
    };
    match upstream.send(Request::from_parts(parts, body)).await {
        Ok(res) => {
            if let Some(m) = metrics {
                m.duration
                    .get_or_create(&CallLabels { method })
                    .observe(started.elapsed().as_secs_f64());
            }
            let (parts, body) = res.into_parts();
            let body = match outbound {
                // A unary answer is read whole and sent on in one piece (headers, message, trailers
                // together): one write to the client instead of three.
                Some(r) if r != Rewrite::WatchResponse => {
                    match rewritten(body, r, layer, false, method).collect().await {
                        Ok(c) => {
                            let trailers = c.trailers().cloned();
                            let mut frames = VecDeque::with_capacity(2);
                            frames.push_back(Frame::data(c.to_bytes()));
                            if let Some(t) = trailers {
                                frames.push_back(Frame::trailers(t));
                            }
                            Frames(frames).boxed()
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, method, "etcd's answer was cut off");
                            fault(14);
                            return status_only(14, "etcd's answer was cut off");
                        }
                    }
                }
                Some(r) => rewritten(body, r, layer, false, method),
                None => body,
            };
            Response::from_parts(parts, body)
        }
        Err(e) => {
            tracing::warn!(error = %e, method, "etcd did not answer");
            fault(14);
            status_only(14, "etcd is unavailable through the proxy")
        }
    }
}

type Connector = hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>;

/// [`Upstream`] over HTTP/2 to etcd's client URL: with TLS for `https://` (the proxy's client certificate
/// presented, etcd's checked against a CA of its own), without (h2c) for `http://` on loopback.
pub struct Etcd {
    client: hyper_util::client::legacy::Client<Connector, ProxyBody>,
    base: hyper::Uri,
}

impl Etcd {
    /// To etcd at `base` (`https://10.0.0.1:2379`, or `http://127.0.0.1:2379` when `tls` is `None`).
    ///
    /// # Errors
    /// `https://` without a TLS configuration, or `http://` with one, or another scheme.
    pub fn new(base: hyper::Uri, tls: Option<rustls::ClientConfig>) -> Result<Self, String> {
        let mut http = hyper_util::client::legacy::connect::HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        let builder = match (base.scheme_str(), tls) {
            (Some("https"), Some(mut tls)) => {
                // The connector offers `h2` itself, and refuses a configuration that already does.
                tls.alpn_protocols.clear();
                hyper_rustls::HttpsConnectorBuilder::new()
                    .with_tls_config(tls)
                    .https_only()
            }
            (Some("http"), None) => hyper_rustls::HttpsConnectorBuilder::new()
                .with_tls_config(
                    rustls::ClientConfig::builder_with_provider(Arc::new(
                        rustls::crypto::ring::default_provider(),
                    ))
                    .with_safe_default_protocol_versions()
                    .map_err(|e| e.to_string())?
                    .with_root_certificates(rustls::RootCertStore::empty())
                    .with_no_client_auth(),
                )
                .https_or_http(),
            (Some("https"), None) => {
                return Err(format!("{base}: https needs the CA of etcd's certificate"));
            }
            (Some("http"), Some(_)) => {
                return Err(format!("{base}: TLS settings given for a plain http URL"));
            }
            _ => return Err(format!("{base}: not an http:// or https:// URL")),
        };
        let connector = builder.enable_http2().wrap_connector(http);
        let client =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .http2_only(true)
                .http2_initial_stream_window_size(STREAM_WINDOW)
                .http2_initial_connection_window_size(CONNECTION_WINDOW)
                .build(connector);
        Ok(Self { client, base })
    }
}

impl Upstream for Etcd {
    fn send(
        &self,
        mut req: Request<ProxyBody>,
    ) -> Pin<Box<dyn Future<Output = Result<Response<ProxyBody>, String>> + Send>> {
        let path = req
            .uri()
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .to_owned();
        let uri = format!("{}{}", self.base.to_string().trim_end_matches('/'), path);
        let client = self.client.clone();
        Box::pin(async move {
            *req.uri_mut() = uri
                .parse()
                .map_err(|e: hyper::http::uri::InvalidUri| e.to_string())?;
            let res = client.request(req).await.map_err(|e| e.to_string())?;
            Ok(res.map(|b| b.boxed()))
        })
    }
}

/// Streams one client connection may have open at once.
const STREAMS: u32 = 1 << 20;
/// HTTP/2 flow-control windows, per stream and per connection.
const STREAM_WINDOW: u32 = 4 << 20;
const CONNECTION_WINDOW: u32 = 16 << 20;

/// How long open calls (watches included) get to finish after a stop before their connections close.
const DRAIN: std::time::Duration = std::time::Duration::from_secs(5);

/// Serves the proxy on `listener` until `stop`: HTTP/2 over TLS with `tls` (whose configuration decides
/// which client certificates are accepted), else without TLS (loopback only). After `stop`, connections
/// get [`DRAIN`] to finish their calls.
pub async fn serve(
    listener: tokio::net::TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    layer: Layer,
    upstream: Arc<dyn Upstream>,
    stop: impl Future<Output = ()>,
) {
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    tokio::pin!(stop);
    loop {
        let (tcp, peer) = tokio::select! {
            a = listener.accept() => match a {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut stop => break,
        };
        let _ = tcp.set_nodelay(true);
        let (layer, upstream) = (layer.clone(), upstream.clone());
        let svc = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
            let (layer, upstream) = (layer.clone(), upstream.clone());
            async move {
                let req = req.map(BodyExt::boxed);
                Ok::<_, std::convert::Infallible>(call(&layer, &upstream, req).await)
            }
        });
        let watcher = graceful.watcher();
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            let mut builder =
                hyper::server::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new());
            // The API server keeps a watch per resource on one connection, beside its calls: as etcd,
            // no small stream limit; and windows wide enough that a list does not wait on updates.
            builder
                .max_concurrent_streams(STREAMS)
                .initial_stream_window_size(STREAM_WINDOW)
                .initial_connection_window_size(CONNECTION_WINDOW);
            let result = match acceptor {
                Some(acceptor) => {
                    let tls = tokio::time::timeout(
                        std::time::Duration::from_secs(10),
                        acceptor.accept(tcp),
                    )
                    .await;
                    match tls {
                        Ok(Ok(tls)) => {
                            let conn =
                                builder.serve_connection(hyper_util::rt::TokioIo::new(tls), svc);
                            watcher.watch(conn).await
                        }
                        Ok(Err(e)) => {
                            tracing::info!(%peer, error = %e, "TLS handshake refused");
                            return;
                        }
                        Err(_) => {
                            tracing::info!(%peer, "TLS handshake timed out");
                            return;
                        }
                    }
                }
                None => {
                    let conn = builder.serve_connection(hyper_util::rt::TokioIo::new(tcp), svc);
                    watcher.watch(conn).await
                }
            };
            if let Err(e) = result {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
    if tokio::time::timeout(DRAIN, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::info!("calls still open after the drain period were cut");
    }
}
