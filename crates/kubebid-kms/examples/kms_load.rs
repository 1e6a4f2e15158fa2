//! Load generator for the KMS plugin: `concurrency` gRPC callers over the unix socket, each encrypting a
//! 32-byte data key and decrypting the result, for `seconds`. Prints calls per second and p50/p99/p999
//! latency of Encrypt and Decrypt, measured at the client. Given the tenant key socket too, it then times
//! 1,000 WrapKey and UnwrapKey calls of tenant `bench` (which must have a key), one at a time.
//!
//! With `KUBEBID_BENCH_PKCS11_MODULE` (and `KUBEBID_KMS_PIN`, token `kubebid`), it first times the limit
//! in this process: the HSM calls a Status makes, straight through PKCS#11, with no gRPC around them.
//!
//! `cargo run --release -p kubebid-kms --example kms_load -- SOCKET [seconds] [concurrency] [TENANT_SOCKET]`

// A load generator stops loudly on a broken setup.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::path::PathBuf;
use std::time::{Duration, Instant};

use kubebid_kms::proto::key_management_service_client::KeyManagementServiceClient;
use kubebid_kms::proto::{DecryptRequest, EncryptRequest};

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss
    )]
    let i = ((sorted.len() as f64 * p) as usize).min(sorted.len() - 1);
    sorted[i].as_secs_f64() * 1e6
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let socket = PathBuf::from(
        args.next()
            .expect("usage: kms_load SOCKET [seconds] [concurrency]"),
    );
    let seconds: u64 = args.next().map_or(10, |s| s.parse().expect("seconds"));
    let concurrency: usize = args.next().map_or(8, |s| s.parse().expect("concurrency"));
    let tenant_socket = args.next().map(PathBuf::from);
    let client = kubebid_kms::server::connect(&socket)
        .await
        .expect("connect");
    let limit = hsm_limit();
    // One caller, one call at a time: Status (which asks the HSM every time) and, as the floor of any
    // call, a decrypt whose KEK is open (no HSM), so what it measures is the client, the socket,
    // HTTP/2 and tonic on both sides.
    let (floor, status) = one_at_a_time(&mut client.clone()).await;
    println!(
        "status:  p50 {:.0} us  p99 {:.0} us (its HSM calls each time)",
        percentile(&status, 0.5),
        percentile(&status, 0.99)
    );
    if let Some((p50, p99)) = limit {
        println!(
            "status above its HSM calls: p50 +{:.0} us  p99 +{:.0} us (goal <= +50 us)",
            percentile(&status, 0.5) - p50,
            percentile(&status, 0.99) - p99
        );
    }
    println!(
        "one call at a time, no HSM (the gRPC round trip): p50 {:.0} us  p99 {:.0} us",
        percentile(&floor, 0.5),
        percentile(&floor, 0.99)
    );
    let (floor, status) = one_at_a_time(&mut lean(&socket).await).await;
    println!(
        "without the buffer task: round trip p50 {:.0} us  p99 {:.0} us; status p50 {:.0} us  p99 {:.0} us",
        percentile(&floor, 0.5),
        percentile(&floor, 0.99),
        percentile(&status, 0.5),
        percentile(&status, 0.99)
    );
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let mut tasks = Vec::new();
    for i in 0..concurrency {
        let mut c = client.clone();
        tasks.push(tokio::spawn(async move {
            let (mut enc, mut dec) = (Vec::new(), Vec::new());
            #[allow(clippy::cast_possible_truncation)]
            let seed = [i as u8; 32];
            while Instant::now() < deadline {
                let t = Instant::now();
                let r = c
                    .encrypt(EncryptRequest {
                        plaintext: seed.to_vec(),
                        uid: String::new(),
                    })
                    .await
                    .expect("encrypt")
                    .into_inner();
                enc.push(t.elapsed());
                let t = Instant::now();
                let p = c
                    .decrypt(DecryptRequest {
                        ciphertext: r.ciphertext,
                        uid: String::new(),
                        key_id: r.key_id,
                        annotations: r.annotations,
                    })
                    .await
                    .expect("decrypt")
                    .into_inner();
                dec.push(t.elapsed());
                assert_eq!(p.plaintext, seed);
            }
            (enc, dec)
        }));
    }
    let (mut enc, mut dec) = (Vec::new(), Vec::new());
    for t in tasks {
        let (e, d) = t.await.unwrap();
        enc.extend(e);
        dec.extend(d);
    }
    enc.sort();
    dec.sort();
    #[allow(clippy::cast_precision_loss)]
    let rate = |n: usize| n as f64 / seconds as f64;
    println!(
        "encrypt: {:.0} calls/s  p50 {:.0} us  p99 {:.0} us  p999 {:.0} us",
        rate(enc.len()),
        percentile(&enc, 0.5),
        percentile(&enc, 0.99),
        percentile(&enc, 0.999)
    );
    println!(
        "decrypt: {:.0} calls/s  p50 {:.0} us  p99 {:.0} us  p999 {:.0} us",
        rate(dec.len()),
        percentile(&dec, 0.5),
        percentile(&dec, 0.99),
        percentile(&dec, 0.999)
    );
    println!(
        "total:   {:.0} calls/s with {concurrency} callers",
        rate(enc.len() + dec.len())
    );
    if let Some(path) = tenant_socket {
        tenant_keys(&path).await;
    }
}

/// The HSM calls of one Status, made in this process through PKCS#11 (p50, p99 in µs), if a module is
/// named.
fn hsm_limit() -> Option<(f64, f64)> {
    let module = std::env::var_os("KUBEBID_BENCH_PKCS11_MODULE")?;
    let pin = zeroize::Zeroizing::new(std::env::var("KUBEBID_KMS_PIN").expect("KUBEBID_KMS_PIN"));
    let store = kubebid_kms::keystore::Pkcs11Store::open(module.as_ref(), "kubebid", &pin)
        .expect("open the token");
    let envelope =
        kubebid_kms::envelope::Envelope::new(std::sync::Arc::new(store)).expect("envelope");
    let mut calls = Vec::new();
    for _ in 0..500 {
        let t = Instant::now();
        envelope.status().expect("status");
        calls.push(t.elapsed());
    }
    calls.sort();
    let (p50, p99) = (percentile(&calls, 0.5), percentile(&calls, 0.99));
    println!("limit, the HSM calls of a Status in-process: p50 {p50:.0} us  p99 {p99:.0} us");
    Some((p50, p99))
}

/// 500 rounds of one decrypt (its KEK open: no HSM) and one Status, one call at a time: their
/// latencies, sorted.
async fn one_at_a_time<T>(c: &mut KeyManagementServiceClient<T>) -> (Vec<Duration>, Vec<Duration>)
where
    T: tonic::client::GrpcService<tonic::body::Body>,
    T::Error: Into<tonic::codegen::StdError>,
    T::ResponseBody: tonic::codegen::Body<Data = tonic::codegen::Bytes> + Send + 'static,
    <T::ResponseBody as tonic::codegen::Body>::Error: Into<tonic::codegen::StdError> + Send,
{
    let sealed = c
        .encrypt(EncryptRequest {
            plaintext: vec![7; 32],
            uid: String::new(),
        })
        .await
        .expect("encrypt")
        .into_inner();
    let (mut floor, mut status) = (Vec::new(), Vec::new());
    for _ in 0..500 {
        let t = Instant::now();
        c.decrypt(DecryptRequest {
            ciphertext: sealed.ciphertext.clone(),
            uid: String::new(),
            key_id: sealed.key_id.clone(),
            annotations: sealed.annotations.clone(),
        })
        .await
        .expect("decrypt");
        floor.push(t.elapsed());
        let t = Instant::now();
        c.status(kubebid_kms::proto::StatusRequest {})
            .await
            .expect("status");
        status.push(t.elapsed());
    }
    floor.sort();
    status.sort();
    (floor, status)
}

/// A client that sends each call on the HTTP/2 connection itself, as the API server's Go client does,
/// instead of handing it to tonic's buffer task first.
async fn lean(
    path: &std::path::Path,
) -> KeyManagementServiceClient<
    impl tonic::client::GrpcService<
        tonic::body::Body,
        Error = hyper::Error,
        ResponseBody = hyper::body::Incoming,
    > + Clone,
> {
    let io = hyper_util::rt::TokioIo::new(
        tokio::net::UnixStream::connect(path)
            .await
            .expect("connect"),
    );
    let (sender, conn) = hyper::client::conn::http2::handshake::<_, _, tonic::body::Body>(
        hyper_util::rt::TokioExecutor::new(),
        io,
    )
    .await
    .expect("HTTP/2");
    tokio::spawn(conn);
    let service = tower::service_fn(move |mut req: hyper::Request<tonic::body::Body>| {
        let mut sender = sender.clone();
        // The generated client leaves the authority to its channel.
        *req.uri_mut() = format!("http://kms.local{}", req.uri().path())
            .parse()
            .expect("uri");
        async move { sender.send_request(req).await }
    });
    KeyManagementServiceClient::new(service)
}

/// Volume key wraps and unwraps: each is a label lookup and an AES-GCM operation inside the HSM.
async fn tenant_keys(path: &std::path::Path) {
    use kubebid_kms::tenant_proto::{UnwrapKeyRequest, WrapKeyRequest};
    let mut c = kubebid_kms::server::connect_tenant_keys(path)
        .await
        .expect("connect to the tenant key socket");
    let (mut wrap, mut unwrap) = (Vec::new(), Vec::new());
    for i in 0..1000_u32 {
        let volume_id = format!("pvc-{i}");
        let t = Instant::now();
        let w = c
            .wrap_key(WrapKeyRequest {
                tenant: "bench".into(),
                volume_id: volume_id.clone(),
                plaintext: vec![7; 64],
            })
            .await
            .expect("wrap_key")
            .into_inner();
        wrap.push(t.elapsed());
        let t = Instant::now();
        let p = c
            .unwrap_key(UnwrapKeyRequest {
                tenant: "bench".into(),
                volume_id,
                key_id: w.key_id,
                wrapped: w.wrapped,
            })
            .await
            .expect("unwrap_key")
            .into_inner();
        unwrap.push(t.elapsed());
        assert_eq!(p.plaintext, vec![7; 64]);
    }
    wrap.sort();
    unwrap.sort();
    for (name, v) in [("wrap_key", &wrap), ("unwrap_key", &unwrap)] {
        println!(
            "{name}: p50 {:.0} us  p99 {:.0} us (one caller, 64-byte volume key, in the HSM)",
            percentile(v, 0.5),
            percentile(v, 0.99)
        );
    }
}
