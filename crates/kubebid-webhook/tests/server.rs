//! The webhook over real HTTPS on loopback: HTTP/1.1 and HTTP/2, health and metrics, bad requests,
//! client certificates, certificate reload under load, concurrency, and graceful shutdown.

// Test helpers fail the test by panicking on broken fixtures; that is their job.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::{Request, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use kubebid_policy::PolicySet;
use kubebid_webhook::certs;
use kubebid_webhook::metrics::Metrics;
use kubebid_webhook::server::WebhookServer;
use kubebid_webhook::tls::{ReloadingCert, server_config};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use serde_json::{Value, json};
use tokio::sync::{oneshot, watch};

fn tempdir(tag: &str) -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let d = std::env::temp_dir().join(format!(
        "kubebid-wh-{tag}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&d).unwrap();
    d
}

struct Running {
    addr: SocketAddr,
    dir: PathBuf,
    stop: Option<oneshot::Sender<()>>,
    done: tokio::task::JoinHandle<std::io::Result<()>>,
    policy: watch::Sender<Option<PolicySet>>,
}

async fn start(client_ca: bool, ready: bool) -> Running {
    let dir = tempdir("srv");
    certs::generate(&dir, &["localhost".into(), "127.0.0.1".into()]).unwrap();
    let cert = Arc::new(ReloadingCert::new(&dir.join("tls.crt"), &dir.join("tls.key")).unwrap());
    let ca = dir.join("ca.crt");
    let tls = Arc::new(server_config(cert.clone(), client_ca.then_some(ca.as_path())).unwrap());
    let (policy_tx, policy) = watch::channel(ready.then(PolicySet::builtin));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let server = WebhookServer {
        tls,
        reloading_cert: Some(cert),
        policy,
        metrics: Arc::new(Metrics::default()),
        reload_interval: Duration::from_millis(50),
        max_connections: 1024,
        drain_timeout: Duration::from_secs(5),
        client_auth: client_ca,
    };
    let done = tokio::spawn(server.serve(listener, async move {
        let _ = stopped.await;
    }));
    Running {
        addr,
        dir,
        stop: Some(stop),
        done,
        policy: policy_tx,
    }
}

fn client_config(
    ca: &Path,
    client: Option<(&Path, &Path)>,
    alpn: &[u8],
    tls12_only: bool,
) -> rustls::ClientConfig {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let versions: &[&rustls::SupportedProtocolVersion] = if tls12_only {
        &[&rustls::version::TLS12]
    } else {
        &[&rustls::version::TLS13]
    };
    let b = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .unwrap()
        .with_root_certificates(roots);
    let mut cfg = match client {
        Some((cert, key)) => {
            let chain = CertificateDer::pem_file_iter(cert)
                .unwrap()
                .map(Result::unwrap)
                .collect();
            b.with_client_auth_cert(chain, PrivateKeyDer::from_pem_file(key).unwrap())
                .unwrap()
        }
        None => b.with_no_client_auth(),
    };
    cfg.alpn_protocols = vec![alpn.to_vec()];
    cfg
}

enum Sender {
    H1(hyper::client::conn::http1::SendRequest<Full<Bytes>>),
    H2(hyper::client::conn::http2::SendRequest<Full<Bytes>>),
}

impl Sender {
    async fn send(&mut self, req: Request<Full<Bytes>>) -> hyper::Result<(StatusCode, Bytes)> {
        let resp = match self {
            Sender::H1(s) => {
                s.ready().await?;
                s.send_request(req).await?
            }
            Sender::H2(s) => {
                s.ready().await?;
                s.send_request(req).await?
            }
        };
        let status = resp.status();
        Ok((status, resp.into_body().collect().await?.to_bytes()))
    }
}

async fn connect(addr: SocketAddr, cfg: rustls::ClientConfig, h2: bool) -> std::io::Result<Sender> {
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    let tls = tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await?;
    let io = TokioIo::new(tls);
    let err = |e: hyper::Error| std::io::Error::other(e.to_string());
    if h2 {
        let (s, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
            .await
            .map_err(err)?;
        tokio::spawn(conn);
        Ok(Sender::H2(s))
    } else {
        let (s, conn) = hyper::client::conn::http1::handshake(io)
            .await
            .map_err(err)?;
        tokio::spawn(conn);
        Ok(Sender::H1(s))
    }
}

async fn plain(r: &Running, h2: bool) -> Sender {
    let alpn: &[u8] = if h2 { b"h2" } else { b"http/1.1" };
    connect(
        r.addr,
        client_config(&r.dir.join("ca.crt"), None, alpn, false),
        h2,
    )
    .await
    .unwrap()
}

fn post(path: &str, body: impl Into<Bytes>) -> Request<Full<Bytes>> {
    Request::post(path)
        .header("content-type", "application/json")
        .header("host", "localhost")
        .body(Full::new(body.into()))
        .unwrap()
}

fn get(path: &str) -> Request<Full<Bytes>> {
    Request::get(path)
        .header("host", "localhost")
        .body(Full::new(Bytes::new()))
        .unwrap()
}

fn review_body(uid: &str, host_pid: bool) -> Vec<u8> {
    let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "t"},
        "spec": {"hostPID": host_pid, "runtimeClassName": "kubebid-secure", "securityContext": {"runAsNonRoot": true, "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [{"name": "c", "image": "x", "securityContext": {"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}},
                "resources": {"requests": {"cpu": "1", "memory": "1Gi"}, "limits": {"cpu": "1", "memory": "1Gi"}}}]}});
    serde_json::to_vec(&json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {
        "uid": uid, "kind": {"group": "", "version": "v1", "kind": "Pod"}, "resource": {"group": "", "version": "v1", "resource": "pods"},
        "name": "p", "namespace": "t", "operation": "CREATE", "userInfo": {"username": "u"}, "object": pod}})).unwrap()
}

fn allowed(body: &Bytes, uid: &str) -> bool {
    let v: Value = serde_json::from_slice(body).unwrap();
    assert_eq!(v["response"]["uid"], uid);
    v["response"]["allowed"].as_bool().unwrap()
}

async fn stop(mut r: Running) {
    r.stop.take().unwrap().send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(10), r.done)
        .await
        .expect("server stops")
        .unwrap()
        .unwrap();
    let _ = std::fs::remove_dir_all(&r.dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reviews_over_http1_and_http2_with_health_and_metrics() {
    let r = start(false, true).await;
    for h2 in [false, true] {
        let mut c = plain(&r, h2).await;
        let (s, b) = c
            .send(post("/validate", review_body("a", false)))
            .await
            .unwrap();
        assert_eq!(s, StatusCode::OK);
        assert!(allowed(&b, "a"));
        let (_, b) = c
            .send(post("/validate", review_body("b", true)))
            .await
            .unwrap();
        assert!(!allowed(&b, "b"));
        let (s, b) = c
            .send(post("/mutate", review_body("m", false)))
            .await
            .unwrap();
        assert_eq!(s, StatusCode::OK);
        assert!(allowed(&b, "m"));
        assert_eq!(c.send(get("/healthz")).await.unwrap().0, StatusCode::OK);
        assert_eq!(c.send(get("/readyz")).await.unwrap().0, StatusCode::OK);
    }
    let mut c = plain(&r, false).await;
    let (s, m) = c.send(get("/metrics")).await.unwrap();
    assert_eq!(s, StatusCode::OK);
    let m = String::from_utf8(m.to_vec()).unwrap();
    assert!(m.contains(r#"kubebid_webhook_reviews_total{endpoint="validate",operation="CREATE",kind="Pod",verdict="denied"} 2"#), "{m}");
    assert!(
        m.contains(r#"kubebid_webhook_findings_total{rule="pss/hostNamespaces"} 2"#),
        "{m}"
    );
    assert!(
        m.contains("kubebid_webhook_review_duration_seconds_bucket"),
        "{m}"
    );
    stop(r).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_http_errors_and_never_allowed() {
    let r = start(false, true).await;
    let mut c = plain(&r, false).await;
    let (s, b) = c.send(post("/validate", "{not json")).await.unwrap();
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(String::from_utf8_lossy(&b).contains("not an admission.k8s.io/v1 AdmissionReview"));
    let (s, _) = c
        .send(post(
            "/validate",
            r#"{"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview"}"#,
        ))
        .await
        .unwrap();
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let big = vec![b' '; kubebid_webhook::server::MAX_BODY_BYTES + 1];
    let mut c = plain(&r, true).await;
    let (s, _) = c.send(post("/validate", big)).await.unwrap();
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(
        c.send(get("/validate")).await.unwrap().0,
        StatusCode::METHOD_NOT_ALLOWED
    );
    assert_eq!(c.send(get("/nope")).await.unwrap().0, StatusCode::NOT_FOUND);
    // A pod the engine cannot decode is denied, not admitted.
    let mut body: Value = serde_json::from_slice(&review_body("x", false)).unwrap();
    body["request"]["object"]["spec"]["hostPID"] = json!("sure");
    let (s, b) = c
        .send(post("/validate", serde_json::to_vec(&body).unwrap()))
        .await
        .unwrap();
    assert_eq!(s, StatusCode::OK);
    assert!(!allowed(&b, "x"));
    stop(r).await;
}

/// A body over the limit is answered 413 over HTTP/1.1 and HTTP/2 alike, with the length declared or
/// streamed: curl is the client, as an operator would reproduce it. Over HTTP/2 the server must not reset
/// the stream before its answer (the client would see a reset, not the 413).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_body_is_answered_413_over_both_protocols() {
    let r = start(false, true).await;
    let big = r.dir.join("big.json");
    std::fs::write(
        &big,
        vec![b' '; kubebid_webhook::server::MAX_BODY_BYTES + 4096],
    )
    .unwrap();
    let url = format!("https://localhost:{}/validate", r.addr.port());
    let resolve = format!("localhost:{}:127.0.0.1", r.addr.port());
    for proto in ["--http1.1", "--http2"] {
        for streamed in [false, true] {
            let data = if streamed {
                "@-".to_owned()
            } else {
                format!("@{}", big.display())
            };
            let mut cmd = tokio::process::Command::new("curl");
            cmd.args(["-sS", proto, "--cacert"])
                .arg(r.dir.join("ca.crt"))
                .args([
                    "--resolve",
                    &resolve,
                    "-o",
                    "/dev/null",
                    "-w",
                    "%{http_code} %{http_version}",
                ])
                .args([
                    "-H",
                    "content-type: application/json",
                    "--data-binary",
                    &data,
                    &url,
                ])
                .stdin(if streamed {
                    std::process::Stdio::piped()
                } else {
                    std::process::Stdio::null()
                })
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped());
            let mut child = cmd
                .spawn()
                .expect("curl is installed (scripts/test installs it)");
            if streamed {
                let mut stdin = child.stdin.take().unwrap();
                let body = std::fs::read(&big).unwrap();
                tokio::spawn(async move {
                    use tokio::io::AsyncWriteExt;
                    let _ = stdin.write_all(&body).await;
                });
            }
            let out = child.wait_with_output().await.unwrap();
            let answer = String::from_utf8_lossy(&out.stdout);
            assert!(
                out.status.success() && answer.starts_with("413 "),
                "{proto} streamed={streamed}: {answer} {}",
                String::from_utf8_lossy(&out.stderr)
            );
            let version = if proto == "--http2" { " 2" } else { " 1.1" };
            assert!(answer.ends_with(version), "{proto}: {answer}");
        }
    }
    stop(r).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn until_ready_readyz_fails_and_reviews_are_denied() {
    let r = start(false, false).await;
    let mut c = plain(&r, false).await;
    assert_eq!(
        c.send(get("/readyz")).await.unwrap().0,
        StatusCode::SERVICE_UNAVAILABLE
    );
    let (s, b) = c
        .send(post("/validate", review_body("u", false)))
        .await
        .unwrap();
    assert_eq!(s, StatusCode::OK);
    assert!(
        !allowed(&b, "u"),
        "a compliant pod is still denied before the policy is loaded"
    );
    r.policy.send(Some(PolicySet::builtin())).unwrap();
    assert_eq!(c.send(get("/readyz")).await.unwrap().0, StatusCode::OK);
    let (_, b) = c
        .send(post("/validate", review_body("v", false)))
        .await
        .unwrap();
    assert!(allowed(&b, "v"));
    stop(r).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_certificates_are_required_with_a_client_ca() {
    let r = start(true, true).await;
    let ca = r.dir.join("ca.crt");
    // No client certificate: the kubelet's probes are answered, reviews are refused.
    for h2 in [false, true] {
        let alpn: &[u8] = if h2 { b"h2" } else { b"http/1.1" };
        let mut c = connect(r.addr, client_config(&ca, None, alpn, false), h2)
            .await
            .unwrap();
        assert_eq!(c.send(get("/healthz")).await.unwrap().0, StatusCode::OK);
        assert_eq!(c.send(get("/readyz")).await.unwrap().0, StatusCode::OK);
        let (s, b) = c
            .send(post("/validate", review_body("anon", false)))
            .await
            .unwrap();
        assert_eq!(s, StatusCode::FORBIDDEN, "{b:?}");
        assert_eq!(
            c.send(post("/mutate", review_body("anon", false)))
                .await
                .unwrap()
                .0,
            StatusCode::FORBIDDEN
        );
    }
    // A certificate from another CA is refused too.
    let other = tempdir("other");
    certs::generate(&other, &["localhost".into()]).unwrap();
    let foreign = async {
        let cfg = client_config(
            &ca,
            Some((&other.join("client.crt"), &other.join("client.key"))),
            b"http/1.1",
            false,
        );
        let mut c = connect(r.addr, cfg, false).await?;
        c.send(get("/healthz"))
            .await
            .map_err(|e| std::io::Error::other(e.to_string()))
    };
    assert!(foreign.await.is_err());
    // The API server's certificate, from the configured CA, is served; over TLS 1.2 as well.
    for tls12 in [false, true] {
        let cfg = client_config(
            &ca,
            Some((&r.dir.join("client.crt"), &r.dir.join("client.key"))),
            b"h2",
            tls12,
        );
        let mut c = connect(r.addr, cfg, true).await.unwrap();
        let (s, b) = c
            .send(post("/validate", review_body("c", false)))
            .await
            .unwrap();
        assert_eq!(s, StatusCode::OK);
        assert!(allowed(&b, "c"));
    }
    let _ = std::fs::remove_dir_all(other);
    stop(r).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_concurrent_reviews_are_all_answered_correctly() {
    let r = Arc::new(start(false, true).await);
    let mut tasks = Vec::new();
    for t in 0..32 {
        let r = r.clone();
        tasks.push(tokio::spawn(async move {
            let mut c = plain(&r, t % 2 == 0).await;
            for i in 0..40 {
                let uid = format!("{t}-{i}");
                let deny = i % 3 == 0;
                let (s, b) = c
                    .send(post("/validate", review_body(&uid, deny)))
                    .await
                    .unwrap();
                assert_eq!(s, StatusCode::OK);
                assert_eq!(allowed(&b, &uid), !deny);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let r = Arc::try_unwrap(r).ok().expect("sole owner");
    stop(r).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificates_reload_under_load_without_dropping_connections() {
    let r = Arc::new(start(false, true).await);
    let old_ca = r.dir.join("ca.crt");
    let keep_old_ca = r.dir.join("old-ca.crt");
    std::fs::copy(&old_ca, &keep_old_ca).unwrap();
    let stop_load = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let served = Arc::new(AtomicUsize::new(0));
    // Keep-alive connections opened under the old certificate keep reviewing throughout the reload.
    let mut load = Vec::new();
    for t in 0..8 {
        let (r, stop_load, served, ca) = (
            r.clone(),
            stop_load.clone(),
            served.clone(),
            keep_old_ca.clone(),
        );
        load.push(tokio::spawn(async move {
            let mut c = connect(
                r.addr,
                client_config(
                    &ca,
                    None,
                    if t % 2 == 0 { b"h2" } else { b"http/1.1" },
                    false,
                ),
                t % 2 == 0,
            )
            .await
            .unwrap();
            let mut i = 0u64;
            while !stop_load.load(Ordering::Relaxed) {
                let uid = format!("load-{t}-{i}");
                let (s, b) = c
                    .send(post("/validate", review_body(&uid, false)))
                    .await
                    .expect("connection survives the reload");
                assert_eq!(s, StatusCode::OK);
                assert!(allowed(&b, &uid));
                served.fetch_add(1, Ordering::Relaxed);
                i += 1;
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    // Rotate: a new CA and serving pair, written over the files the server watches.
    let fresh = tempdir("fresh");
    certs::generate(&fresh, &["localhost".into()]).unwrap();
    std::fs::copy(fresh.join("tls.key"), r.dir.join("tls.key")).unwrap();
    std::fs::copy(fresh.join("tls.crt"), r.dir.join("tls.crt")).unwrap();
    let new_ca = fresh.join("ca.crt");
    // New handshakes soon present the new certificate (bounded wait: the poll interval is 50 ms).
    let mut switched = false;
    for _ in 0..100 {
        if let Ok(mut c) = connect(
            r.addr,
            client_config(&new_ca, None, b"http/1.1", false),
            false,
        )
        .await
            && c.send(get("/healthz")).await.is_ok()
        {
            switched = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(switched, "the new certificate was not picked up");
    assert!(
        connect(
            r.addr,
            client_config(&keep_old_ca, None, b"http/1.1", false),
            false
        )
        .await
        .is_err(),
        "new handshakes no longer use the old certificate"
    );
    let before = served.load(Ordering::Relaxed);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        served.load(Ordering::Relaxed) > before,
        "old connections still serve after the reload"
    );
    stop_load.store(true, Ordering::Relaxed);
    for l in load {
        l.await.unwrap();
    }
    let _ = std::fs::remove_dir_all(fresh);
    let r = Arc::try_unwrap(r).ok().expect("sole owner");
    stop(r).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_finishes_the_review_in_flight_then_refuses_connections() {
    let mut r = start(false, true).await;
    let cfg = client_config(&r.dir.join("ca.crt"), None, b"http/1.1", false);
    let tcp = tokio::net::TcpStream::connect(r.addr).await.unwrap();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(cfg.clone()))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(conn);
    // A request whose body arrives slowly: in flight when shutdown starts.
    let (mut tx, body) = futures_channel_body();
    let req = Request::post("/validate")
        .header("host", "localhost")
        .body(body)
        .unwrap();
    let pending = tokio::spawn(async move { sender.send_request(req).await });
    let full = review_body("slow", false);
    let (a, b) = full.split_at(full.len() / 2);
    tx.send(Bytes::copy_from_slice(a)).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    r.stop.take().unwrap().send(()).unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    tx.send(Bytes::copy_from_slice(b)).await;
    drop(tx);
    let resp = pending.await.unwrap().unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    assert!(allowed(&body, "slow"));
    tokio::time::timeout(Duration::from_secs(10), r.done)
        .await
        .expect("server stops")
        .unwrap()
        .unwrap();
    assert!(
        connect(r.addr, cfg, false).await.is_err(),
        "no new connections after shutdown"
    );
    let _ = std::fs::remove_dir_all(&r.dir);
}

/// A request body fed chunk by chunk.
fn futures_channel_body() -> (BodyTx, common::ChannelBody) {
    let (tx, body) = common::channel_body();
    (BodyTx(tx), body)
}

struct BodyTx(tokio::sync::mpsc::Sender<common::Chunk>);

impl BodyTx {
    async fn send(&mut self, b: Bytes) {
        self.0.send(Ok(hyper::body::Frame::data(b))).await.unwrap();
    }
}
