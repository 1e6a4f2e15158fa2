//! Load generator for the webhook benchmark (`bench/webhook-load.sh`): drives `/validate` over TLS with
//! keep-alive connections, either as fast as it can (saturation) or at a fixed rate, open loop: latency is
//! measured from when each request was due, so a stalled server cannot hide its queueing. With
//! `--server-pid`, the server's CPU time and resident memory over the run are read from /proc.

// A benchmark tool: a broken setup should stop it loudly.
#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::cast_precision_loss,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss
)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};

#[derive(Parser)]
struct Args {
    /// Webhook address.
    #[arg(long)]
    addr: SocketAddr,
    /// CA certificate that signed the webhook's certificate.
    #[arg(long)]
    ca: PathBuf,
    /// AdmissionReview JSON to send.
    #[arg(long)]
    body: PathBuf,
    /// Keep-alive connections.
    #[arg(long, default_value_t = 32)]
    connections: usize,
    /// Seconds to run.
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
    /// Requests per second, spread over the connections; 0 runs at saturation.
    #[arg(long, default_value_t = 0.0)]
    rate: f64,
    /// PID of the server, to report its CPU and RSS.
    #[arg(long)]
    server_pid: Option<u32>,
}

fn proc_cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = stat.rsplit_once(')')?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

fn proc_rss_mib(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

async fn connection(
    addr: SocketAddr,
    tls: Arc<rustls::ClientConfig>,
) -> hyper::client::conn::http1::SendRequest<Full<Bytes>> {
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    tcp.set_nodelay(true).expect("nodelay");
    let stream = tokio_rustls::TlsConnector::from(tls)
        .connect(ServerName::try_from("localhost").expect("name"), tcp)
        .await
        .expect("TLS");
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("HTTP");
    tokio::spawn(conn);
    sender
}

fn main() {
    let args = Args::parse();
    // Two workers: the same as the server's share of this 2-core machine would allow.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(run(args));
}

async fn run(args: Args) {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(&args.ca).expect("CA file") {
        roots.add(c.expect("CA cert")).expect("add CA");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    let tls = Arc::new(cfg);
    let body = Bytes::from(std::fs::read(&args.body).expect("body file"));
    let duration = Duration::from_secs_f64(args.seconds);
    let rss_before = args.server_pid.and_then(proc_rss_mib);
    let cpu_before = args.server_pid.and_then(proc_cpu_seconds);
    let start = Instant::now() + Duration::from_millis(200);
    let mut tasks = Vec::new();
    for i in 0..args.connections {
        let (tls, body) = (tls.clone(), body.clone());
        let (addr, rate, conns) = (args.addr, args.rate, args.connections);
        tasks.push(tokio::spawn(async move {
            let mut sender = connection(addr, tls).await;
            let mut latencies = Vec::new();
            let mut service = Vec::new();
            let mut errors = 0u64;
            // Open loop at a fixed rate: request k of this connection is due at start + k * interval.
            let interval = (rate > 0.0).then(|| Duration::from_secs_f64(conns as f64 / rate));
            let offset = interval.map_or(Duration::ZERO, |iv| iv.mul_f64(i as f64 / conns as f64));
            tokio::time::sleep_until((start + offset).into()).await;
            let mut k = 0u32;
            loop {
                let due = match interval {
                    Some(iv) => start + offset + iv * k,
                    None => Instant::now(),
                };
                if due >= start + duration {
                    break;
                }
                if due > Instant::now() {
                    tokio::time::sleep_until(due.into()).await;
                }
                let req = Request::post("/validate")
                    .header("host", "localhost")
                    .header("content-type", "application/json")
                    .body(Full::new(body.clone()))
                    .expect("request");
                let sent = Instant::now();
                let ok = async {
                    sender.ready().await.ok()?;
                    let resp = sender.send_request(req).await.ok()?;
                    let ok = resp.status().is_success();
                    resp.into_body().collect().await.ok()?;
                    Some(ok)
                }
                .await;
                match ok {
                    Some(true) => {
                        latencies.push(due.elapsed().as_micros() as u64);
                        service.push(sent.elapsed().as_micros() as u64);
                    }
                    _ => errors += 1,
                }
                k += 1;
            }
            (latencies, service, errors)
        }));
    }
    let mut all = Vec::new();
    let mut service = Vec::new();
    let mut errors = 0;
    for t in tasks {
        let (l, s, e) = t.await.expect("task");
        all.extend(l);
        service.extend(s);
        errors += e;
    }
    let elapsed = args.seconds;
    let cpu_after = args.server_pid.and_then(proc_cpu_seconds);
    let rss_after = args.server_pid.and_then(proc_rss_mib);
    all.sort_unstable();
    service.sort_unstable();
    let pct_of = |v: &[u64], p: f64| {
        v.get(((v.len() as f64 * p).ceil() as usize).saturating_sub(1))
            .copied()
            .unwrap_or(0) as f64
            / 1000.0
    };
    let pct = |p: f64| pct_of(&all, p);
    let spct = |p: f64| pct_of(&service, p);
    let mode = if args.rate > 0.0 {
        format!("fixed rate {} req/s", args.rate)
    } else {
        "saturation".into()
    };
    println!(
        "mode: {mode}; connections: {}; seconds: {elapsed}",
        args.connections
    );
    println!(
        "  completed: {} ({:.0} req/s), errors: {errors}",
        all.len(),
        all.len() as f64 / elapsed
    );
    println!(
        "  latency ms, from send:         p50 {:.3}  p99 {:.3}  p999 {:.3}  max {:.3}",
        spct(0.50),
        spct(0.99),
        spct(0.999),
        spct(1.0)
    );
    if args.rate > 0.0 {
        // Includes the generator's own timer lateness (tokio timers tick in milliseconds).
        println!(
            "  latency ms, from due time:     p50 {:.3}  p99 {:.3}  p999 {:.3}  max {:.3}",
            pct(0.50),
            pct(0.99),
            pct(0.999),
            pct(1.0)
        );
    }
    if let (Some(a), Some(b)) = (cpu_before, cpu_after) {
        println!("  server CPU: {:.2} cores on average", (b - a) / elapsed);
    }
    if let (Some(a), Some(b)) = (rss_before, rss_after) {
        println!("  server RSS: {a:.1} MiB before, {b:.1} MiB after");
    }
}
