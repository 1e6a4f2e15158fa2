//! What the proxy forwards at all, and in which form: only etcd's own gRPC calls by their exact paths (not
//! a percent-encoded spelling, not etcd's JSON gateway); Put and Txn requests as the layer checked them
//! (re-encoded, so a field repeated in the bytes cannot be read one way here and another way by etcd); and
//! never a value that is already sealed.

// Test fixtures fail the test loudly.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

mod common;

use std::pin::Pin;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use common::FakeHsm;
use http_body_util::BodyExt;
use hyper::{Request, Response};
use kubebid_etcd::layer::Layer;
use kubebid_etcd::path::SecretKeys;
use kubebid_etcd::proto::{PutRequest, RequestOp, TxnRequest, request_op};
use kubebid_etcd::proxy::{ProxyBody, Upstream, call};
use kubebid_etcd::seal::{MAGIC, Sealer};
use prost::Message as _;

/// What reached etcd: each call's path and request body.
type Seen = Arc<Mutex<Vec<(String, Vec<u8>)>>>;

/// Records what reached etcd and answers an empty message.
#[derive(Default)]
struct Recorder(Seen);

impl Upstream for Recorder {
    fn send(
        &self,
        req: Request<ProxyBody>,
    ) -> Pin<Box<dyn Future<Output = Result<Response<ProxyBody>, String>> + Send>> {
        let seen = self.0.clone();
        Box::pin(async move {
            let (parts, body) = req.into_parts();
            let bytes = body.collect().await.map_err(|e| e.to_string())?.to_bytes();
            seen.lock()
                .unwrap()
                .push((parts.uri.path().to_owned(), bytes.to_vec()));
            let body = http_body_util::Full::new(Bytes::from_static(&[0, 0, 0, 0, 0]))
                .map_err(|n| match n {})
                .boxed();
            Ok(Response::new(body))
        })
    }
}

fn layer() -> Layer {
    let hsm = Arc::new(FakeHsm::default());
    hsm.add("acme");
    Layer::new(
        SecretKeys::new("/registry"),
        Arc::new(|ns: &str| (ns == "acme-prod").then(|| "acme".to_owned())),
        Arc::new(Sealer::new(hsm)),
    )
}

fn framed(m: &[u8]) -> Bytes {
    let mut out = vec![0];
    out.extend_from_slice(&u32::try_from(m.len()).unwrap().to_be_bytes());
    out.extend_from_slice(m);
    Bytes::from(out)
}

fn request(path: &str, content_type: &str, body: Bytes) -> Request<ProxyBody> {
    Request::builder()
        .method("POST")
        .uri(path)
        .header("content-type", content_type)
        .body(
            http_body_util::Full::new(body)
                .map_err(|n| match n {})
                .boxed(),
        )
        .unwrap()
}

fn status(r: &Response<ProxyBody>) -> Option<String> {
    r.headers()
        .get("grpc-status")
        .map(|v| v.to_str().unwrap().to_owned())
}

const KEY: &[u8] = b"/registry/secrets/acme-prod/db";

fn put(value: &[u8]) -> PutRequest {
    PutRequest {
        key: KEY.to_vec(),
        value: value.to_vec(),
        ..PutRequest::default()
    }
}

#[tokio::test]
async fn only_etcds_own_calls_by_their_exact_paths_are_forwarded() {
    let rec = Arc::new(Recorder::default());
    let up: Arc<dyn Upstream> = rec.clone();
    let l = layer();
    let plain = framed(&put(b"k8s:enc:kms:v2:x").encode_to_vec());
    for (path, ct) in [
        ("/etcdserverpb.KV/%50ut", "application/grpc"),
        ("/etcdserverpb.kv/Put", "application/grpc"),
        ("/etcdserverpb.KV/Put?x=1", "application/grpc"),
        ("/v3/kv/put", "application/json"),
        ("/etcdserverpb.KV/Put", "application/json"),
        ("/etcdserverpb.Maintenance/Snapshot", "application/grpc"),
    ] {
        let r = call(&l, &up, request(path, ct, plain.clone())).await;
        assert_eq!(status(&r).as_deref(), Some("12"), "{path} {ct}");
    }
    assert!(rec.0.lock().unwrap().is_empty(), "nothing reached etcd");
    // The real call goes through, sealed.
    let r = call(
        &l,
        &up,
        request("/etcdserverpb.KV/Put", "application/grpc", plain),
    )
    .await;
    assert_eq!(status(&r), None);
    let seen = rec.0.lock().unwrap().clone();
    assert_eq!(seen.len(), 1);
    let sent = PutRequest::decode(&seen[0].1[5..]).unwrap();
    assert!(sent.value.starts_with(MAGIC));
}

#[tokio::test]
async fn a_txn_is_forwarded_as_checked_and_a_sealed_value_is_never_sealed_again() {
    let rec = Arc::new(Recorder::default());
    let up: Arc<dyn Upstream> = rec.clone();
    let l = layer();
    // A RequestOp whose put field appears twice: `ignore_value` first, then the key and a plain value.
    let first = PutRequest {
        ignore_value: true,
        ..PutRequest::default()
    }
    .encode_to_vec();
    let second = put(b"plain").encode_to_vec();
    let mut op = Vec::new();
    for m in [&first, &second] {
        op.push(0x12); // field 2, length-delimited
        op.push(u8::try_from(m.len()).unwrap());
        op.extend_from_slice(m);
    }
    let mut txn = vec![0x12, u8::try_from(op.len()).unwrap()]; // TxnRequest.success
    txn.extend_from_slice(&op);
    let r = call(
        &l,
        &up,
        request("/etcdserverpb.KV/Txn", "application/grpc", framed(&txn)),
    )
    .await;
    // Merged, it is a Put with ignore_value and a value: refused, and nothing reaches etcd.
    assert_eq!(status(&r).as_deref(), Some("3"));
    assert!(rec.0.lock().unwrap().is_empty());

    // A value that is already sealed (read through a proxy, written back through one): refused.
    let mut sealed = MAGIC.to_vec();
    sealed.extend_from_slice(b"\x04acme...");
    for body in [
        put(&sealed).encode_to_vec(),
        TxnRequest {
            success: vec![RequestOp {
                request: Some(request_op::Request::RequestPut(put(&sealed))),
            }],
            ..TxnRequest::default()
        }
        .encode_to_vec(),
    ] {
        let path = if body.len() == put(&sealed).encode_to_vec().len() {
            "/etcdserverpb.KV/Put"
        } else {
            "/etcdserverpb.KV/Txn"
        };
        let r = call(&l, &up, request(path, "application/grpc", framed(&body))).await;
        assert_eq!(status(&r).as_deref(), Some("3"), "{path}");
    }
    assert!(rec.0.lock().unwrap().is_empty());

    // A plain Txn goes on re-encoded, its put sealed.
    let ok = TxnRequest {
        success: vec![RequestOp {
            request: Some(request_op::Request::RequestPut(put(b"plain"))),
        }],
        ..TxnRequest::default()
    };
    let r = call(
        &l,
        &up,
        request(
            "/etcdserverpb.KV/Txn",
            "application/grpc",
            framed(&ok.encode_to_vec()),
        ),
    )
    .await;
    assert_eq!(status(&r), None);
    let seen = rec.0.lock().unwrap().clone();
    let sent = TxnRequest::decode(&seen[0].1[5..]).unwrap();
    match &sent.success[0].request {
        Some(request_op::Request::RequestPut(p)) => assert!(p.value.starts_with(MAGIC)),
        other => panic!("{other:?}"),
    }
}
