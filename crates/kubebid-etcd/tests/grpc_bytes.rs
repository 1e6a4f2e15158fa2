//! Arbitrary bytes as gRPC messages, both ways through the proxy: whatever a client sends on a call
//! that carries values, and whatever comes back from etcd, the proxy answers (the message passed, or a
//! gRPC status naming the problem) and never panics; a request it cannot read never reaches etcd.

// Test fixtures fail the test loudly.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

mod common;

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use common::FakeHsm;
use http_body_util::BodyExt;
use hyper::{Request, Response};
use kubebid_etcd::layer::Layer;
use kubebid_etcd::path::SecretKeys;
use kubebid_etcd::proxy::{ProxyBody, Upstream, call};
use kubebid_etcd::seal::Sealer;
use proptest::prelude::*;

/// Answers every call with the bytes it was given, counting what reached it.
struct Answers {
    body: Vec<u8>,
    reached: AtomicUsize,
}

impl Upstream for Answers {
    fn send(
        &self,
        _req: Request<ProxyBody>,
    ) -> Pin<Box<dyn Future<Output = Result<Response<ProxyBody>, String>> + Send>> {
        self.reached.fetch_add(1, Ordering::Relaxed);
        let body = http_body_util::Full::new(Bytes::from(self.body.clone()))
            .map_err(|n| match n {})
            .boxed();
        Box::pin(async move { Ok(Response::new(body)) })
    }
}

const PATHS: &[&str] = &[
    "/etcdserverpb.KV/Range",
    "/etcdserverpb.KV/Put",
    "/etcdserverpb.KV/DeleteRange",
    "/etcdserverpb.KV/Txn",
    "/etcdserverpb.Watch/Watch",
    "/etcdserverpb.Lease/LeaseGrant",
];

fn layer() -> Layer {
    let hsm = Arc::new(FakeHsm::default());
    hsm.add("acme");
    Layer::new(
        SecretKeys::new("/registry"),
        Arc::new(|ns: &str| (ns == "acme-prod").then(|| "acme".to_owned())),
        Arc::new(Sealer::new(hsm)),
    )
}

/// A body of whole gRPC frames around `messages`, or the raw bytes when `raw`.
fn framed(messages: &[Vec<u8>], raw: bool) -> Vec<u8> {
    if raw {
        return messages.concat();
    }
    let mut out = Vec::new();
    for m in messages {
        out.push(0);
        out.extend_from_slice(&u32::try_from(m.len()).unwrap().to_be_bytes());
        out.extend_from_slice(m);
    }
    out
}

fn status(h: &hyper::HeaderMap) -> Option<String> {
    h.get("grpc-status")
        .map(|v| v.to_str().unwrap_or("?").to_owned())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1500, ..ProptestConfig::default() })]

    #[test]
    fn any_bytes_either_way_get_an_answer(
        path in 0..PATHS.len(),
        request in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..80), 0..3),
        raw_request in any::<bool>(),
        response in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..80), 0..3),
        raw_response in any::<bool>(),
    ) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let upstream = Arc::new(Answers {
            body: framed(&response, raw_response),
            reached: AtomicUsize::new(0),
        });
        let up: Arc<dyn Upstream> = upstream.clone();
        let req = Request::builder()
            .method("POST")
            .uri(PATHS[path])
            .body(
                http_body_util::Full::new(Bytes::from(framed(&request, raw_request)))
                    .map_err(|n| match n {})
                    .boxed(),
            )
            .unwrap();
        let l = layer();
        let (head, collected) = rt.block_on(async {
            let res = call(&l, &up, req).await;
            let (parts, body) = res.into_parts();
            (parts, body.collect().await.unwrap())
        });
        let refused = status(&head.headers).is_some_and(|s| s != "0");
        // A call refused before etcd was never sent there.
        if refused {
            prop_assert_eq!(upstream.reached.load(Ordering::Relaxed), 0);
        }
        // An answer that failed in flight ends in a status trailer naming a code.
        if let Some(t) = collected.trailers() {
            prop_assert!(status(t).is_some());
        }
    }
}
