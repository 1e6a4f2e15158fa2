//! Load generator for the audit sink, and the limit it is compared with.
//!
//! `audit_load saturate ADDR SECONDS CONNECTIONS BATCH`: posts batches of BATCH realistic events (about
//! 1 KiB each, four tenants and the platform) over CONNECTIONS keep-alive HTTP/1.1 connections as fast as
//! they are acknowledged; prints events/s.
//!
//! `audit_load rate ADDR SECONDS EVENTS_PER_SECOND BATCH`: open loop at a fixed event rate; prints the
//! acknowledgement latency (p50, p99, max) of the batches.
//!
//! `audit_load limit DIR SECONDS BATCH`: the same batch bytes appended to a file and `fdatasync`ed, one
//! batch per sync, in a plain loop: what the disk allows with no sink at all.

// A benchmark stops loudly on a broken setup.
#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::panic,
    clippy::cast_precision_loss
)]

use std::io::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};

const TENANTS: &[(&str, &str)] = &[
    ("acme-prod", "acme-admins"),
    ("globex", "globex-admins"),
    ("initech-web", "initech-admins"),
    ("umbrella", "umbrella-admins"),
    ("kube-system", "system:masters"),
];

/// One realistic event of about 1 KiB.
fn event(i: u64) -> String {
    let (ns, group) = TENANTS[(i % TENANTS.len() as u64) as usize];
    let verbs = ["get", "list", "watch", "create", "update", "patch"];
    let resources = ["pods", "secrets", "configmaps", "deployments", "services"];
    let verb = verbs[(i / 5 % 6) as usize];
    let res = resources[(i / 7 % 5) as usize];
    format!(
        concat!(
            r#"{{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"{:08x}-7a2c-4c6e-9d1b-{:012x}","#,
            r#""stage":"ResponseComplete","requestURI":"/api/v1/namespaces/{}/{}/app-{}?timeout=30s","verb":"{}","#,
            r#""user":{{"username":"user-{}@example.com","groups":["{}","system:authenticated"],"extra":{{"authentication.kubernetes.io/credential-id":["X509SHA256=9f3c5b0e7d1a4c2b8e6f0a9d3c7b1e5f2a4d6c8b0e9f1a3c5d7b9e0f2a4c6d8b"]}}}},"#,
            r#""sourceIPs":["10.244.{}.{}"],"userAgent":"kubectl/v1.35.0 (linux/amd64) kubernetes/4c2f1a7","#,
            r#""objectRef":{{"resource":"{}","namespace":"{}","name":"app-{}","apiVersion":"v1"}},"#,
            r#""responseStatus":{{"metadata":{{}},"code":200}},"#,
            r#""requestReceivedTimestamp":"2026-11-29T10:00:00.{:06}Z","stageTimestamp":"2026-11-29T10:00:00.{:06}Z","#,
            r#""annotations":{{"authorization.k8s.io/decision":"allow","authorization.k8s.io/reason":"RBAC: allowed by RoleBinding \"tenant-admin/{}\" of Role \"tenant-admin\" to Group \"{}\"","#,
            r#""pod-security.kubernetes.io/enforce-policy":"restricted:latest","kubebid.io/padding":"{}"}}}}"#
        ),
        i,
        i,
        ns,
        res,
        i % 97,
        verb,
        i % 50,
        group,
        i % 250,
        i % 250,
        res,
        ns,
        i % 97,
        i % 1_000_000,
        (i + 1500) % 1_000_000,
        ns,
        group,
        "x".repeat(40)
    )
}

fn batch_body(start: u64, n: usize) -> Bytes {
    let items: Vec<String> = (0..n as u64).map(|k| event(start + k)).collect();
    Bytes::from(format!(
        r#"{{"kind":"EventList","apiVersion":"audit.k8s.io/v1","metadata":{{}},"items":[{}]}}"#,
        items.join(",")
    ))
}

type Sender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

async fn connect(addr: SocketAddr) -> Sender {
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.set_nodelay(true).unwrap();
    let (sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    sender
}

async fn post(sender: &mut Sender, body: Bytes) -> bool {
    let req = hyper::Request::post("/events")
        .header("host", "audit")
        .header("content-type", "application/json")
        .body(Full::new(body))
        .unwrap();
    match sender.send_request(req).await {
        Ok(res) => {
            let ok = res.status().is_success();
            let _ = res.into_body().collect().await;
            ok
        }
        Err(_) => false,
    }
}

async fn saturate(addr: SocketAddr, seconds: u64, connections: usize, batch: usize) {
    // A pool of distinct batches, so the sink does not see one body over and over.
    let bodies: Arc<Vec<Bytes>> = Arc::new(
        (0..64)
            .map(|b| batch_body(b * batch as u64, batch))
            .collect(),
    );
    let bytes: usize = bodies.iter().map(Bytes::len).sum::<usize>() / bodies.len();
    let events = Arc::new(AtomicU64::new(0));
    let failures = Arc::new(AtomicU64::new(0));
    let stop = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..connections {
        let (bodies, events, failures) = (bodies.clone(), events.clone(), failures.clone());
        tasks.push(tokio::spawn(async move {
            let mut s = connect(addr).await;
            let mut k = c;
            while Instant::now() < stop {
                if post(&mut s, bodies[k % bodies.len()].clone()).await {
                    events.fetch_add(batch as u64, Ordering::Relaxed);
                } else {
                    failures.fetch_add(1, Ordering::Relaxed);
                }
                k += connections;
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let secs = started.elapsed().as_secs_f64();
    let n = events.load(Ordering::Relaxed);
    println!(
        "saturate: {n} events in {secs:.1} s: {:.0} events/s ({:.1} MB/s of {} KiB batches), {} failed batches",
        n as f64 / secs,
        n as f64 * (bytes as f64 / batch as f64) / secs / 1e6,
        bytes / 1024,
        failures.load(Ordering::Relaxed)
    );
}

async fn rate(addr: SocketAddr, seconds: u64, per_second: u64, batch: usize) {
    let batches_per_second = (per_second / batch as u64).max(1);
    let interval = Duration::from_secs_f64(1.0 / batches_per_second as f64);
    let bodies: Arc<Vec<Bytes>> = Arc::new(
        (0..64)
            .map(|b| batch_body(b * batch as u64, batch))
            .collect(),
    );
    let total = batches_per_second * seconds;
    // Enough connections that a slow acknowledgement never delays the next send.
    let pool = Arc::new(tokio::sync::Mutex::new(Vec::<Sender>::new()));
    let latencies = Arc::new(std::sync::Mutex::new(Vec::with_capacity(total as usize)));
    let start = tokio::time::Instant::now();
    let mut tasks = Vec::new();
    for i in 0..total {
        tokio::time::sleep_until(start + interval * u32::try_from(i).unwrap()).await;
        let (pool, latencies, bodies) = (pool.clone(), latencies.clone(), bodies.clone());
        tasks.push(tokio::spawn(async move {
            let mut s = match pool.lock().await.pop() {
                Some(s) => s,
                None => connect(addr).await,
            };
            let sent = Instant::now();
            let ok = post(&mut s, bodies[(i % 64) as usize].clone()).await;
            let took = sent.elapsed();
            if ok {
                latencies.lock().unwrap().push(took);
            }
            pool.lock().await.push(s);
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let mut l = latencies.lock().unwrap().clone();
    l.sort();
    let pct = |p: f64| {
        l.get(((l.len() as f64 * p) as usize).min(l.len().saturating_sub(1)))
            .copied()
            .unwrap_or_default()
    };
    println!(
        "rate: {} events/s in batches of {batch}: {} batches acknowledged of {total}; ack latency p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        per_second,
        l.len(),
        pct(0.50).as_secs_f64() * 1e3,
        pct(0.99).as_secs_f64() * 1e3,
        l.last().copied().unwrap_or_default().as_secs_f64() * 1e3
    );
}

fn limit(dir: &str, seconds: u64, batch: usize) {
    // The event bytes of a batch, as the sink would append them.
    let bodies: Vec<Vec<u8>> = (0..64)
        .map(|b| {
            (0..batch as u64)
                .flat_map(|k| event(b * batch as u64 + k).into_bytes())
                .collect()
        })
        .collect();
    let path = std::path::Path::new(dir).join("limit.log");
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .open(&path)
        .unwrap();
    let stop = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let mut n = 0u64;
    let mut k = 0;
    while Instant::now() < stop {
        f.write_all(&bodies[k % 64]).unwrap();
        f.sync_data().unwrap();
        n += batch as u64;
        k += 1;
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "limit: append + fdatasync per batch of {batch}: {:.0} events/s",
        n as f64 / secs
    );
    let _ = std::fs::remove_file(path);
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |i: usize| {
        args.get(i)
            .cloned()
            .unwrap_or_else(|| panic!("usage: see the file's header"))
    };
    let num = |i: usize| {
        arg(i)
            .parse::<u64>()
            .unwrap_or_else(|_| panic!("argument {i} must be a number"))
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    match arg(1).as_str() {
        "saturate" => rt.block_on(saturate(
            arg(2).parse().unwrap(),
            num(3),
            num(4) as usize,
            num(5) as usize,
        )),
        "rate" => rt.block_on(rate(
            arg(2).parse().unwrap(),
            num(3),
            num(4),
            num(5) as usize,
        )),
        "limit" => limit(&arg(2), num(3), num(4) as usize),
        "event" => println!("{}", event(num(2))),
        other => panic!("unknown mode {other}"),
    }
}
