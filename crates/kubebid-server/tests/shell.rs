//! The shell over real HTTP on loopback: the process's endpoints, the body limit, the timeout, the
//! concurrency limit, the drain on shutdown, and the accept loop's two answers to a full house.

// Test helpers fail the test by panicking on broken fixtures; that is their job.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::{Request, Response, StatusCode};
use kubebid_server::Shutdown;
use kubebid_server::accept::{AcceptConfig, WhenFull, serve_tcp};
use kubebid_server::http::{HttpConfig, Process, Transport, serve, text};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn send(addr: SocketAddr, method: &str, path: &str, body: &[u8]) -> String {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).await.unwrap();
    s.write_all(body).await.unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out).await;
    out
}

fn status(reply: &str) -> u16 {
    reply
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

/// A service that answers the length of the body, after waiting on `gate` when the path is `/slow`,
/// and never when it is `/never`; it records the most requests it saw at once.
#[derive(Clone)]
struct Probe {
    gate: Arc<tokio::sync::Semaphore>,
    now: Arc<AtomicUsize>,
    most: Arc<AtomicUsize>,
}

impl tower::Service<Request<Bytes>> for Probe {
    type Response = Response<Full<Bytes>>;
    type Error = Infallible;
    type Future =
        std::pin::Pin<Box<dyn Future<Output = Result<Response<Full<Bytes>>, Infallible>> + Send>>;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Infallible>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<Bytes>) -> Self::Future {
        let this = self.clone();
        Box::pin(async move {
            let n = this.now.fetch_add(1, Ordering::SeqCst) + 1;
            this.most.fetch_max(n, Ordering::SeqCst);
            match req.uri().path() {
                "/slow" => {
                    let _ = this.gate.acquire().await.unwrap();
                }
                "/never" => std::future::pending::<()>().await,
                _ => {}
            }
            this.now.fetch_sub(1, Ordering::SeqCst);
            Ok(text(StatusCode::OK, format!("{}", req.body().len())))
        })
    }
}

struct Server {
    addr: SocketAddr,
    process: Process,
    probe: Probe,
    done: tokio::task::JoinHandle<()>,
}

async fn start(config: HttpConfig) -> Server {
    let process = Process::new(Shutdown::new());
    let probe = Probe {
        gate: Arc::new(tokio::sync::Semaphore::new(0)),
        now: Arc::default(),
        most: Arc::default(),
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (p, s) = (process.clone(), probe.clone());
    let done = tokio::spawn(async move {
        serve(&p, &config, listener, Transport::Plain, s).await;
    });
    Server {
        addr,
        process,
        probe,
        done,
    }
}

fn config() -> HttpConfig {
    let mut c = HttpConfig::new("test", &["/echo", "/slow", "/never"]);
    c.max_body = 16;
    c.request_timeout = Duration::from_millis(200);
    c.drain_timeout = Duration::from_secs(10);
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoints_report_every_check_and_every_request() {
    let s = start(config()).await;
    assert_eq!(status(&send(s.addr, "GET", "/healthz", b"").await), 200);
    assert_eq!(status(&send(s.addr, "GET", "/readyz", b"").await), 200);
    assert_eq!(status(&send(s.addr, "POST", "/healthz", b"").await), 405);
    s.process
        .health
        .add_readiness("caches", || Err("not synced".into()));
    let ready = send(s.addr, "GET", "/readyz", b"").await;
    assert_eq!(status(&ready), 503);
    assert!(ready.contains("caches: not synced"), "{ready}");
    // Readiness does not touch liveness; a failing liveness check fails both.
    assert_eq!(status(&send(s.addr, "GET", "/healthz", b"").await), 200);
    s.process
        .health
        .add_liveness("lease", || Err("lost".into()));
    assert_eq!(status(&send(s.addr, "GET", "/healthz", b"").await), 503);
    let ready = send(s.addr, "GET", "/readyz", b"").await;
    assert!(
        ready.contains("lease: lost") && ready.contains("caches: not synced"),
        "{ready}"
    );
    assert_eq!(status(&send(s.addr, "GET", "/echo", b"abc").await), 200);
    assert_eq!(status(&send(s.addr, "GET", "/elsewhere/x", b"").await), 200);
    let m = send(s.addr, "GET", "/metrics", b"").await;
    for line in [
        r#"kubebid_server_http_requests_total{server="test",route="/healthz",code="503"} 1"#,
        r#"kubebid_server_http_requests_total{server="test",route="/echo",code="200"} 1"#,
        // A path nobody declared is counted under `other`: a client cannot grow the label set.
        r#"kubebid_server_http_requests_total{server="test",route="other",code="200"} 1"#,
    ] {
        assert!(m.contains(line), "{line} missing from:\n{m}");
    }
    s.process.shutdown.trigger();
    s.done.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_over_the_limit_get_413_and_slow_answers_503() {
    let s = start(config()).await;
    let ok = send(s.addr, "POST", "/echo", &[b'x'; 16]).await;
    assert_eq!(status(&ok), 200);
    assert!(ok.ends_with("16"), "{ok}");
    assert_eq!(
        status(&send(s.addr, "POST", "/echo", &[b'x'; 17]).await),
        413
    );
    // Declared larger than the limit: refused without reading it.
    let mut c = tokio::net::TcpStream::connect(s.addr).await.unwrap();
    c.write_all(
        b"POST /echo HTTP/1.1\r\nhost: x\r\nconnection: close\r\ncontent-length: 100000\r\n\r\n",
    )
    .await
    .unwrap();
    let mut head = [0u8; 12];
    c.read_exact(&mut head).await.unwrap();
    assert_eq!(&head, b"HTTP/1.1 413");
    assert_eq!(status(&send(s.addr, "GET", "/never", b"").await), 503);
    s.process.shutdown.trigger();
    s.done.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_concurrency_limit_holds_and_shutdown_drains_what_is_in_flight() {
    let mut c = config();
    c.max_concurrent_requests = Some(1);
    c.request_timeout = Duration::from_secs(30);
    let s = start(c).await;
    let addr = s.addr;
    let first = tokio::spawn(async move { send(addr, "GET", "/slow", b"").await });
    let second = tokio::spawn(async move { send(addr, "GET", "/slow", b"").await });
    // Both are sent; only one reaches the service until it answers. Both connections must be accepted
    // before the shutdown (one still in the listen queue when the listener closes is reset).
    while s.probe.now.load(Ordering::SeqCst) == 0
        || !s
            .process
            .registry
            .encode()
            .contains(r#"kubebid_server_connections{server="test"} 2"#)
    {
        tokio::task::yield_now().await;
    }
    // Shutdown now: no new connection is accepted, but both requests in flight finish.
    s.process.shutdown.trigger();
    s.probe.gate.add_permits(2);
    assert_eq!(status(&first.await.unwrap()), 200);
    assert_eq!(status(&second.await.unwrap()), 200);
    assert_eq!(s.probe.most.load(Ordering::SeqCst), 1);
    s.done.await.unwrap();
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_house_waits_or_is_closed_as_the_server_chose() {
    let process = Process::new(Shutdown::new());
    let refused = Arc::new(AtomicUsize::new(0));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let counted = refused.clone();
    let config = AcceptConfig {
        server: "full",
        max_connections: 1,
        when_full: WhenFull::Close(Arc::new(move || {
            counted.fetch_add(1, Ordering::SeqCst);
        })),
    };
    let (metrics, shutdown) = (process.metrics.clone(), process.shutdown.clone());
    let stop = process.shutdown.clone();
    let accept = tokio::spawn(async move {
        serve_tcp(listener, &config, &metrics, &shutdown, |mut tcp, _| {
            let stop = stop.requested();
            async move {
                // Hold the connection until shutdown, answering one byte first.
                let _ = tcp.write_all(b"!").await;
                stop.await;
            }
        })
        .await;
    });
    let mut held = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut b = [0u8; 1];
    held.read_exact(&mut b).await.unwrap();
    let mut second = tokio::net::TcpStream::connect(addr).await.unwrap();
    assert_eq!(second.read(&mut b).await.unwrap_or(0), 0, "closed at once");
    assert_eq!(refused.load(Ordering::SeqCst), 1);
    process.shutdown.trigger();
    accept.await.unwrap();
    assert!(process.shutdown.drain(Duration::from_secs(5)).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_never_comes_is_answered_408() {
    let s = start(config()).await;
    let mut c = tokio::net::TcpStream::connect(s.addr).await.unwrap();
    c.write_all(
        b"POST /echo HTTP/1.1\r\nhost: x\r\nconnection: close\r\ncontent-length: 10\r\n\r\nabc",
    )
    .await
    .unwrap();
    let mut head = [0u8; 12];
    c.read_exact(&mut head).await.unwrap();
    assert_eq!(&head, b"HTTP/1.1 408");
    s.process.shutdown.trigger();
    s.done.await.unwrap();
}
