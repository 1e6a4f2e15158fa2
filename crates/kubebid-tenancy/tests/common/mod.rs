//! What the mock API servers of these tests share.

use http_body_util::Full;
use hyper::Response;
use hyper::body::Bytes;
use serde_json::Value;

/// A JSON response with `code`, as the API server sends it.
pub fn respond(code: u16, v: Value) -> Response<Full<Bytes>> {
    Response::builder()
        .status(code)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(
            serde_json::to_vec(&v).unwrap_or_default(),
        )))
        .unwrap_or_default()
}
