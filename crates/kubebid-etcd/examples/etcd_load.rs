//! Load generator for bench/etcd-proxy.sh: etcd v3 gRPC calls (the API server's Put and single-key Range)
//! over one HTTP/2 connection, `concurrency` callers in a closed loop for `secs` seconds, each call timed.
//!
//!   etcd_load <host:port> <put|get> <key prefix> <keys> <value bytes> <concurrency> <secs>
//!
//! Prints one line: `<op> c=<n>: <ops/s> ops/s p50 <µs> p99 <µs> errors <n>`. `get` reads keys a `put`
//! run wrote.
//!
//!   etcd_load relay <listen host:port> <upstream host:port>
//!
//! A bare TCP relay (bytes copied both ways, nothing parsed): the limit of any proxy between a client
//! and etcd on this machine, for the benchmark to compare with.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use kubebid_etcd::client::Client;
use kubebid_etcd::proto::{PutRequest, RangeRequest};
use kubebid_etcd::proxy::Etcd;

fn usage() -> ! {
    eprintln!(
        "usage: etcd_load <host:port> <put|get> <key prefix> <keys> <value bytes> <concurrency> <secs>"
    );
    std::process::exit(2)
}

fn num(s: Option<&String>) -> u64 {
    s.and_then(|s| s.parse().ok()).unwrap_or_else(|| usage())
}

/// Copies bytes between each accepted connection and `upstream` until either side closes.
fn relay(listen: &str, upstream: &str) -> ! {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| {
            eprintln!("runtime: {e}");
            std::process::exit(2)
        });
    let upstream = upstream.to_owned();
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .unwrap_or_else(|e| {
                eprintln!("{listen}: {e}");
                std::process::exit(2)
            });
        loop {
            let Ok((mut down, _)) = listener.accept().await else {
                continue;
            };
            let upstream = upstream.clone();
            tokio::spawn(async move {
                let _ = down.set_nodelay(true);
                if let Ok(mut up) = tokio::net::TcpStream::connect(&upstream).await {
                    let _ = up.set_nodelay(true);
                    let _ = tokio::io::copy_bidirectional(&mut down, &mut up).await;
                }
            });
        }
    })
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() == 3 && args[0] == "relay" {
        relay(&args[1], &args[2]);
    }
    if args.len() != 7 {
        usage();
    }
    let (addr, op, prefix) = (args[0].clone(), args[1].clone(), args[2].clone());
    let (keys, size, conc, secs) = (
        num(args.get(3)).max(1),
        num(args.get(4)),
        num(args.get(5)).max(1),
        num(args.get(6)),
    );
    if op != "put" && op != "get" {
        usage();
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap_or_else(|e| {
            eprintln!("runtime: {e}");
            std::process::exit(2)
        });
    let uri = format!("http://{addr}").parse().unwrap_or_else(|_| usage());
    let etcd = Etcd::new(uri, None).unwrap_or_else(|e| {
        eprintln!("{e}");
        std::process::exit(2)
    });
    let client = Client::new(Arc::new(etcd));
    let errors = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(secs);
    // A value shaped like what the API server stores: its KMS v2 envelope prefix, then bytes.
    let mut value = b"k8s:enc:kms:v2:kubebid-kms:".to_vec();
    value.resize(usize::try_from(size).unwrap_or(1024).max(value.len()), b'x');
    let value = Arc::new(value);
    let started = Instant::now();
    let mut latencies: Vec<u32> = rt.block_on(async {
        let mut tasks = Vec::new();
        for w in 0..conc {
            let (client, errors, value, prefix, op) = (
                client.clone(),
                errors.clone(),
                value.clone(),
                prefix.clone(),
                op.clone(),
            );
            tasks.push(tokio::spawn(async move {
                let mut lat = Vec::new();
                let mut i = w;
                while Instant::now() < deadline {
                    let key = format!("{prefix}{:06}", i % keys).into_bytes();
                    i += conc;
                    let t = Instant::now();
                    let ok = if op == "put" {
                        client
                            .put(&PutRequest {
                                key,
                                value: value.to_vec(),
                                ..PutRequest::default()
                            })
                            .await
                            .is_ok()
                    } else {
                        client
                            .range(&RangeRequest {
                                key,
                                ..RangeRequest::default()
                            })
                            .await
                            .is_ok_and(|r| r.kvs.len() == 1)
                    };
                    if ok {
                        lat.push(u32::try_from(t.elapsed().as_micros()).unwrap_or(u32::MAX));
                    } else {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
                lat
            }));
        }
        let mut all = Vec::new();
        for t in tasks {
            if let Ok(l) = t.await {
                all.extend(l);
            }
        }
        all
    });
    let elapsed = started.elapsed().as_secs_f64();
    latencies.sort_unstable();
    let pct = |p: f64| {
        if latencies.is_empty() {
            return 0;
        }
        let i = ((latencies.len() as f64 - 1.0) * p).round() as usize;
        latencies[i.min(latencies.len() - 1)]
    };
    println!(
        "{op} c={conc}: {:.0} ops/s p50 {} p99 {} errors {}",
        latencies.len() as f64 / elapsed,
        pct(0.50),
        pct(0.99),
        errors.load(Ordering::Relaxed)
    );
}
