//! The DNS core without sockets: deciding one query (general path: parse, policy, encode), the hot path's
//! read of a kept answer, and building the zone for a cluster of 300 tenants x 100 services with a pod each.
//!
//! `cargo bench -p kubebid-dns --bench answer`

// A benchmark with a broken fixture should stop loudly.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};

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

criterion_group!(benches, bench);
criterion_main!(benches);
