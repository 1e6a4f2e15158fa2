//! What the probe tests share: the mock API server's answers, and configurations from text.

#![allow(dead_code)] // each test crate uses part of it

use bytes::Bytes;
use http_body_util::Full;
use hyper::Response;
use serde_json::Value;

/// An API server answer: `code` with `body` as JSON.
pub fn respond(code: u16, body: &Value) -> Response<Full<Bytes>> {
    Response::builder()
        .status(code)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(serde_json::to_vec(body).unwrap())))
        .unwrap()
}

/// The configuration in `text` (Tenants, a `KubeBidConfig`), which must load.
pub fn config(text: &str) -> kubebid_model::load::ConfigSet {
    let mut set = kubebid_model::load::ConfigSet::default();
    let errors = set.add_text("tenants.yaml", text);
    assert!(errors.is_empty(), "{errors:?}");
    set
}
