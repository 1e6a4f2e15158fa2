//! The limit for the webhook benchmark (`bench/webhook-load.sh`): a server with the webhook's TLS (the
//! shell's `server_config`, same certificate) and HTTP settings (the shell's `connection_builder`) that reads each request's body whole and answers a fixed
//! AdmissionReview. No routing, no layers, no decoding, no policy: what serving costs before any work.
//!
//!   bare_server ADDR CERT KEY

// A benchmark tool: a broken setup should stop it loudly.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::convert::Infallible;
use std::sync::Arc;

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;

const ANSWER: &[u8] = br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","response":{"uid":"b5f8a2c4-0c1d-4b1e-9f43-2a6f1e9d7c10","allowed":true,"status":{}}}"#;

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let addr = args.next().expect("ADDR");
    let cert = args.next().expect("CERT");
    let key = args.next().expect("KEY");
    let cert = Arc::new(
        kubebid_webhook::tls::ReloadingCert::new(cert.as_ref(), key.as_ref()).expect("cert"),
    );
    let tls = Arc::new(kubebid_webhook::tls::server_config(cert, None).expect("TLS"));
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    let listener = tokio::net::TcpListener::bind(addr).await.expect("bind");
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            let Ok(tls) = acceptor.accept(tcp).await else {
                return;
            };
            let builder = kubebid_server::http::connection_builder();
            let service = hyper::service::service_fn(|req: Request<Incoming>| async move {
                // Read the review whole, as the webhook must.
                let _body = req.into_body().collect().await.map(|b| b.to_bytes());
                let mut r = Response::new(Full::new(Bytes::from_static(ANSWER)));
                r.headers_mut()
                    .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
                Ok::<_, Infallible>(r)
            });
            let _ = builder.serve_connection(TokioIo::new(tls), service).await;
        });
    }
}
