//! A small gRPC client of etcd's KV and Watch calls, over any [`Upstream`]: enough for
//! `kubebid secrets rewrap`, the transparency tests (which put the same calls to etcd directly and through
//! the proxy) and the benchmark's load generator. Not a general etcd client: no retries, no endpoint
//! balancing, one call at a time per future.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use http_body::{Body, Frame};
use http_body_util::BodyExt;
use hyper::Request;
use prost::Message;

use crate::proto::{
    CompactionRequest, CompactionResponse, DeleteRangeRequest, DeleteRangeResponse, PutRequest,
    PutResponse, RangeRequest, RangeResponse, TxnRequest, TxnResponse, WatchCreateRequest,
    WatchRequest, WatchResponse, watch_request,
};
use crate::proxy::{ProxyBody, Upstream, framed, messages};

/// A call that did not succeed: its gRPC status code and message.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("gRPC status {code}: {message}")]
pub struct Status {
    pub code: u32,
    pub message: String,
}

impl Status {
    fn new(code: u32, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

/// `%XX` escapes of a `grpc-message` decoded.
fn percent_decoded(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && let Some(h) = b.get(i + 1..i + 3)
            && let Ok(v) = u8::from_str_radix(&String::from_utf8_lossy(h), 16)
        {
            out.push(v);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The status in `h`, if it carries one.
fn status_of(h: &hyper::HeaderMap) -> Option<Status> {
    let code = h.get("grpc-status")?.to_str().ok()?.parse().ok()?;
    let message = h
        .get("grpc-message")
        .and_then(|m| m.to_str().ok())
        .map(percent_decoded)
        .unwrap_or_default();
    Some(Status { code, message })
}

fn request(path: &str, body: ProxyBody) -> Result<Request<ProxyBody>, Status> {
    Request::builder()
        .method(hyper::Method::POST)
        .uri(path)
        .header(hyper::header::CONTENT_TYPE, "application/grpc")
        .header("te", "trailers")
        .body(body)
        .map_err(|e| Status::new(13, e.to_string()))
}

/// A gRPC client of etcd.
#[derive(Clone)]
pub struct Client {
    upstream: Arc<dyn Upstream>,
}

impl Client {
    #[must_use]
    pub fn new(upstream: Arc<dyn Upstream>) -> Self {
        Self { upstream }
    }

    /// One unary call.
    ///
    /// # Errors
    /// The call's gRPC status when it is not OK; `UNAVAILABLE` when nothing answered; `INTERNAL` when the
    /// answer is not one message of the expected type.
    pub async fn unary<Q: Message, R: Message + Default>(
        &self,
        path: &str,
        req: &Q,
    ) -> Result<R, Status> {
        let mut body = BytesMut::new();
        framed(&req.encode_to_vec(), &mut body);
        let body = http_body_util::Full::new(body.freeze())
            .map_err(|n| match n {})
            .boxed();
        let res = self
            .upstream
            .send(request(path, body)?)
            .await
            .map_err(|e| Status::new(14, e))?;
        if let Some(s) = status_of(res.headers())
            && s.code != 0
        {
            return Err(s);
        }
        let collected = res
            .into_body()
            .collect()
            .await
            .map_err(|e| Status::new(14, e.to_string()))?;
        if let Some(s) = collected.trailers().and_then(status_of)
            && s.code != 0
        {
            return Err(s);
        }
        let bytes = collected.to_bytes();
        let ms = messages(&bytes).map_err(|e| Status::new(13, e.to_string()))?;
        match ms.as_slice() {
            [one] => R::decode(*one).map_err(|e| Status::new(13, e.to_string())),
            _ => Err(Status::new(
                13,
                format!("{} messages in a unary answer", ms.len()),
            )),
        }
    }

    /// # Errors
    /// As [`Client::unary`].
    pub async fn range(&self, r: &RangeRequest) -> Result<RangeResponse, Status> {
        self.unary("/etcdserverpb.KV/Range", r).await
    }

    /// # Errors
    /// As [`Client::unary`].
    pub async fn put(&self, r: &PutRequest) -> Result<PutResponse, Status> {
        self.unary("/etcdserverpb.KV/Put", r).await
    }

    /// # Errors
    /// As [`Client::unary`].
    pub async fn delete_range(
        &self,
        r: &DeleteRangeRequest,
    ) -> Result<DeleteRangeResponse, Status> {
        self.unary("/etcdserverpb.KV/DeleteRange", r).await
    }

    /// # Errors
    /// As [`Client::unary`].
    pub async fn txn(&self, r: &TxnRequest) -> Result<TxnResponse, Status> {
        self.unary("/etcdserverpb.KV/Txn", r).await
    }

    /// # Errors
    /// As [`Client::unary`].
    pub async fn compact(&self, r: &CompactionRequest) -> Result<CompactionResponse, Status> {
        self.unary("/etcdserverpb.KV/Compact", r).await
    }

    /// Opens a watch stream with one watch on it.
    ///
    /// # Errors
    /// `UNAVAILABLE` when nothing answered, or the status etcd answered the stream with.
    pub async fn watch(&self, create: WatchCreateRequest) -> Result<WatchStream, Status> {
        let first = WatchRequest {
            request_union: Some(watch_request::RequestUnion::CreateRequest(create)),
        };
        let mut body = BytesMut::new();
        framed(&first.encode_to_vec(), &mut body);
        let res = self
            .upstream
            .send(request(
                "/etcdserverpb.Watch/Watch",
                OpenBody(Some(body.freeze())).boxed(),
            )?)
            .await
            .map_err(|e| Status::new(14, e))?;
        if let Some(s) = status_of(res.headers())
            && s.code != 0
        {
            return Err(s);
        }
        Ok(WatchStream {
            body: res.into_body(),
            buf: BytesMut::new(),
        })
    }
}

/// A request body that sends its one message and then stays open (a watch stream lives until dropped).
struct OpenBody(Option<Bytes>);

impl Body for OpenBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match self.0.take() {
            Some(b) => Poll::Ready(Some(Ok(Frame::data(b)))),
            None => Poll::Pending,
        }
    }
}

/// The answers of a watch stream.
pub struct WatchStream {
    body: ProxyBody,
    buf: BytesMut,
}

impl WatchStream {
    /// The next answer; `None` when the stream ended without an error status.
    ///
    /// # Errors
    /// The stream's error status, or a message that does not decode.
    pub async fn next(&mut self) -> Option<Result<WatchResponse, Status>> {
        loop {
            if self.buf.len() >= 5 {
                if self.buf[0] != 0 {
                    return Some(Err(Status::new(13, "compressed message")));
                }
                let len = u32::from_be_bytes([self.buf[1], self.buf[2], self.buf[3], self.buf[4]])
                    as usize;
                if self.buf.len() >= 5 + len {
                    let m = self.buf.split_to(5 + len);
                    return Some(
                        WatchResponse::decode(&m[5..]).map_err(|e| Status::new(13, e.to_string())),
                    );
                }
            }
            match self.body.frame().await? {
                Err(e) => return Some(Err(Status::new(14, e.to_string()))),
                Ok(frame) => match frame.into_data() {
                    Ok(d) => self.buf.extend_from_slice(&d),
                    Err(frame) => {
                        return frame
                            .trailers_ref()
                            .and_then(status_of)
                            .filter(|s| s.code != 0)
                            .map(Err);
                    }
                },
            }
        }
    }
}
