//! The DNS core without sockets: deciding one query (general path: parse, policy, encode), the hot path's
//! read of a kept answer, building the zone for a cluster of 300 tenants x 100 services with a pod each,
//! and the per-client rate limit (governor's keyed limiter against the hand-written token buckets it
//! replaced, kept below for the comparison).
//!
//! `cargo bench -p kubebid-dns --bench answer`, or `-- "client rate limit"` for the limiter alone.

// A benchmark with a broken fixture should stop loudly.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::num::NonZeroU32;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use hickory_proto::op::{Message, Query};
use hickory_proto::rr::{Name, RecordType};
use k8s_openapi::api::core::v1::{Namespace, Pod, Service};
use kubebid_dns::answer::{Action, decide, parse_request};
use kubebid_dns::fast::{Answers, parse};
use kubebid_dns::zone::{ClusterObjects, UnknownClients, Zone};
use kubebid_model::config::{KubeBidConfigSpec, Tenant};
use kubebid_model::load::ConfigSet;
use prometheus_client::metrics::counter::Counter;
use serde_json::json;

const TENANTS: usize = 300;
const SERVICES: usize = 100;

fn cluster() -> (ClusterObjects, Vec<Tenant>) {
    let mut objects = ClusterObjects::default();
    let mut text = String::new();
    for t in 0..TENANTS {
        let ns = format!("tenant-{t}");
        objects.namespaces.push(
            serde_json::from_value::<Namespace>(
                json!({"metadata": {"name": ns, "labels": {"kubebid.io/tenant": format!("t{t}")}}}),
            )
            .unwrap(),
        );
        text.push_str(&format!(
            "---\napiVersion: kubebid.io/v1alpha1\nkind: Tenant\nmetadata: {{name: t{t}}}\nspec:\n  namespaces: [{ns}]\n"
        ));
        for s in 0..SERVICES {
            let ip = format!("10.{}.{}.{}", 96 + t / 250, t % 250, s + 1);
            objects.services.push(
                serde_json::from_value::<Service>(json!({"metadata": {"name": format!("svc-{s}"), "namespace": ns},
                    "spec": {"clusterIP": ip, "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]}}))
                .unwrap(),
            );
        }
        objects.pods.push(
            serde_json::from_value::<Pod>(json!({"metadata": {"name": "client", "namespace": ns},
                "spec": {"containers": [{"name": "c"}]},
                "status": {"phase": "Running", "podIP": format!("10.244.{}.{}", t / 250, t % 250 + 1)}}))
            .unwrap(),
        );
    }
    let mut set = ConfigSet::default();
    assert!(set.add_text("bench.yaml", &text).is_empty());
    (objects, set.tenants.into_iter().map(|t| t.object).collect())
}

fn query(name: &str) -> Vec<u8> {
    let mut m = Message::query();
    m.metadata.recursion_desired = true;
    m.add_query(Query::query(Name::from_ascii(name).unwrap(), RecordType::A));
    m.to_vec().unwrap()
}

fn general_path(zone: &Zone, client: IpAddr, packet: &[u8]) -> usize {
    let request = parse_request(packet).unwrap();
    match decide(zone, client, &request).action {
        Action::Reply(m) => m.to_vec().unwrap().len(),
        _ => 0,
    }
}

fn bench(c: &mut Criterion) {
    let (objects, tenants) = cluster();
    let spec = KubeBidConfigSpec::default();
    let zone = Zone::build(&objects, &spec, &tenants, UnknownClients::Deny);
    let client = IpAddr::V4(Ipv4Addr::new(10, 244, 0, 8)); // a pod of tenant t7
    let own = query("svc-42.tenant-7.svc.cluster.local.");
    let other = query("svc-42.tenant-8.svc.cluster.local.");

    let mut g = c.benchmark_group("dns");
    g.throughput(Throughput::Elements(1));
    g.bench_function("general path, allowed A", |b| {
        b.iter(|| general_path(&zone, client, black_box(&own)));
    });
    g.bench_function("general path, denied (NXDOMAIN)", |b| {
        b.iter(|| general_path(&zone, client, black_box(&other)));
    });
    let answers = Answers::default();
    let mut q = parse(&own).unwrap();
    q.with_class(zone.class_of(client));
    let bytes = match decide(&zone, client, &parse_request(&own).unwrap()).action {
        Action::Reply(m) => m.to_vec().unwrap(),
        _ => unreachable!(),
    };
    answers.keep(&q, &bytes, Counter::default(), None);
    g.bench_function("hot path, kept answer", |b| {
        let mut out = [0u8; 1232];
        b.iter(|| {
            let mut q = parse(black_box(&own)).unwrap();
            q.with_class(zone.class_of(client));
            answers.answer(&q, &own, &mut out, |e| {
                e.rcode.inc();
            })
        });
    });
    g.finish();

    let mut g = c.benchmark_group("zone");
    g.sample_size(10);
    g.throughput(Throughput::Elements((TENANTS * SERVICES) as u64));
    g.bench_function("build, 30,000 services", |b| {
        b.iter(|| Zone::build(black_box(&objects), &spec, &tenants, UnknownClients::Deny).len());
    });
    g.finish();
}

/// The limiter the server used before governor: 16 mutex-guarded shards of token buckets per address.
mod hand_written {
    use std::collections::HashMap;
    use std::net::IpAddr;
    use std::sync::{Mutex, PoisonError};
    use std::time::{Duration, Instant};

    const SHARDS: usize = 16;

    fn shard_of(ip: IpAddr) -> usize {
        let folded = match ip {
            IpAddr::V4(v4) => u32::from(v4),
            IpAddr::V6(v6) => {
                let o = v6.octets();
                u32::from_be_bytes([o[12], o[13], o[14], o[15]])
                    ^ u32::from_be_bytes([o[0], o[1], o[2], o[3]])
            }
        };
        usize::try_from(folded.wrapping_mul(0x9E37_79B9) >> 28).unwrap_or(0) % SHARDS
    }

    pub struct RateLimiter {
        qps: f64,
        burst: f64,
        shards: Vec<Mutex<HashMap<IpAddr, (f64, Instant)>>>,
    }

    impl RateLimiter {
        pub fn new(qps: u32) -> Self {
            Self {
                qps: f64::from(qps),
                burst: f64::from(qps) * 2.0,
                shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            }
        }

        pub fn allow(&self, ip: IpAddr, now: Instant) -> bool {
            if self.qps <= 0.0 {
                return true;
            }
            let mut shard = self.shards[shard_of(ip)]
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if shard.len() > 65_536 {
                shard.retain(|_, (_, last)| {
                    now.saturating_duration_since(*last) < Duration::from_secs(10)
                });
            }
            let (tokens, last) = shard.entry(ip).or_insert((self.burst, now));
            let refill = now.saturating_duration_since(*last).as_secs_f64() * self.qps;
            *tokens = (*tokens + refill).min(self.burst);
            *last = now;
            if *tokens >= 1.0 {
                *tokens -= 1.0;
                true
            } else {
                false
            }
        }
    }
}

/// 100,000 distinct client addresses, as a spoofed-source flood would send.
fn many_addresses() -> Vec<IpAddr> {
    (0..100_000u32)
        .map(|i| IpAddr::V4(Ipv4Addr::from(0x0af4_0000 + i)))
        .collect()
}

/// Both threads checking `check` as fast as they can; the time is the slower thread's.
fn two_threads(iters: u64, check: &(impl Fn() -> bool + Sync)) -> Duration {
    let half = iters.div_ceil(2);
    let start = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| {
                for _ in 0..half {
                    black_box(check());
                }
            });
        }
    });
    start.elapsed()
}

fn rate_limit(c: &mut Criterion) {
    // The server's default: 1,000 queries per second per address, bursts of 2,000.
    let qps = NonZeroU32::new(1000).unwrap();
    let quota = governor::Quota::per_second(qps)
        .allow_burst(qps.saturating_mul(NonZeroU32::new(2).unwrap()));
    let one = IpAddr::V4(Ipv4Addr::new(10, 244, 0, 8));
    let many = many_addresses();

    let mut g = c.benchmark_group("client rate limit");
    g.throughput(Throughput::Elements(1));
    let hand = hand_written::RateLimiter::new(qps.get());
    let keyed = governor::RateLimiter::keyed(quota);
    g.bench_function("hand-written, one address", |b| {
        b.iter(|| hand.allow(black_box(one), Instant::now()));
    });
    g.bench_function("governor, one address", |b| {
        b.iter(|| keyed.check_key(black_box(&one)).is_ok());
    });
    let hand = hand_written::RateLimiter::new(qps.get());
    let keyed = governor::RateLimiter::keyed(quota);
    g.bench_function("hand-written, 100k addresses", |b| {
        let mut i = 0;
        b.iter(|| {
            i = (i + 1) % many.len();
            hand.allow(black_box(many[i]), Instant::now())
        });
    });
    g.bench_function("governor, 100k addresses", |b| {
        let mut i = 0;
        b.iter(|| {
            i = (i + 1) % many.len();
            keyed.check_key(black_box(&many[i])).is_ok()
        });
    });
    // Every UDP worker thread checking the same flooding address.
    g.bench_function("hand-written, one address, 2 threads", |b| {
        b.iter_custom(|iters| two_threads(iters, &|| hand.allow(black_box(one), Instant::now())));
    });
    g.bench_function("governor, one address, 2 threads", |b| {
        b.iter_custom(|iters| two_threads(iters, &|| keyed.check_key(black_box(&one)).is_ok()));
    });
    g.finish();
}

criterion_group!(benches, bench, rate_limit);
criterion_main!(benches);
