//! Rule evaluation throughput: Falco's upstream k8saudit rules plus KubeBid's, against a mix of realistic
//! audit events (decoded once, as the audit sink holds them). The figure is (event × rule) evaluations per
//! second on one core, counting every loaded evaluable rule for every event, including the ones the
//! prefilter skips, since skipping them is the point (goal: at least 1,000,000/s per core). The last line
//! printed is the summary.
//!
//! `cargo bench -p kubebid-rules --bench evaluate`

// A benchmark with a broken fixture should stop loudly.
#![allow(clippy::expect_used)]

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group};
use kubebid_rules::{ActorKind, AuditEvent, Engine, K8sAudit, KubeBidContext, Loader, Scratch};
use serde_json::Value;

const UPSTREAM: &str = include_str!("../tests/data/k8s_audit_rules.yaml");
const EVENTS: &str = include_str!("../tests/data/audit_events.jsonl");

fn engine() -> Engine<K8sAudit> {
    let mut l = Loader::new();
    l.add("k8s_audit_rules.yaml", UPSTREAM)
        .expect("upstream rules load");
    l.add(
        kubebid_rules::KUBEBID_AUDIT_RULES_FILE,
        kubebid_rules::kubebid_audit_rules(),
    )
    .expect("KubeBid rules load");
    Engine::compile(&l.finish().expect("parse"), K8sAudit::new()).expect("compiles")
}

struct Fixture {
    event: Value,
    tenant: String,
    actor_tenant: String,
    actor_kind: ActorKind,
    denied: bool,
}

fn fixtures() -> Vec<Fixture> {
    EVENTS
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let v: Value = serde_json::from_str(l).expect("JSON line");
            let c = &v["context"];
            Fixture {
                event: v["event"].clone(),
                tenant: c["tenant"].as_str().unwrap_or_default().to_owned(),
                actor_tenant: c["actor_tenant"].as_str().unwrap_or_default().to_owned(),
                actor_kind: match c["actor_kind"].as_str() {
                    Some("platform") => ActorKind::Platform,
                    Some("tenant") => ActorKind::Tenant,
                    _ => ActorKind::Unknown,
                },
                denied: c["denied"].as_bool().unwrap_or(false),
            }
        })
        .collect()
}

fn events(f: &[Fixture]) -> Vec<AuditEvent<'_>> {
    f.iter()
        .map(|f| {
            AuditEvent::new(&f.event).with_context(KubeBidContext {
                tenant: &f.tenant,
                actor_tenant: &f.actor_tenant,
                actor_kind: f.actor_kind,
                denied: f.denied,
            })
        })
        .collect()
}

fn run_all(engine: &Engine<K8sAudit>, events: &[AuditEvent<'_>], scratch: &mut Scratch) -> usize {
    let mut n = 0;
    for e in events {
        n += engine.matches(black_box(e), scratch).len();
    }
    n
}

fn bench(c: &mut Criterion) {
    let engine = engine();
    let fixtures = fixtures();
    let events = events(&fixtures);
    let mut scratch = Scratch::new();
    let mut g = c.benchmark_group("evaluate");
    g.throughput(Throughput::Elements(
        (events.len() * engine.rules().len()) as u64,
    ));
    g.bench_function("mix_upstream_and_kubebid_rules", |b| {
        b.iter(|| black_box(run_all(&engine, &events, &mut scratch)));
    });
    g.finish();
    let mut g = c.benchmark_group("alerts");
    g.throughput(Throughput::Elements(events.len() as u64));
    g.bench_function("mix_with_alert_formatting", |b| {
        b.iter(|| {
            let mut n = 0;
            for e in &events {
                n += engine.alerts(black_box(e), &mut scratch).len();
            }
            black_box(n)
        });
    });
    g.finish();
}

criterion_group!(benches, bench);

fn summary() {
    let engine = engine();
    let fixtures = fixtures();
    let events = events(&fixtures);
    let mut scratch = Scratch::new();
    let per_round = events.len() * engine.rules().len();
    let mut best = 0f64;
    for _ in 0..3 {
        let started = std::time::Instant::now();
        let mut rounds = 0u64;
        while started.elapsed() < std::time::Duration::from_millis(500) {
            for _ in 0..64 {
                black_box(run_all(&engine, &events, &mut scratch));
            }
            rounds += 64;
        }
        best = best.max(rounds as f64 * per_round as f64 / started.elapsed().as_secs_f64());
    }
    let candidates: usize = events
        .iter()
        .map(|e| engine.candidates(e, &mut scratch))
        .sum();
    println!(
        "\n{} events x {} evaluable rules; the prefilter leaves {} of {} (event, rule) pairs to evaluate",
        events.len(),
        engine.rules().len(),
        candidates,
        per_round
    );
    println!(
        "summary: {:.0} event x rule evaluations/s on one core ({:.0} events/s; goal >= 1,000,000 evaluations/s)",
        best,
        best / engine.rules().len() as f64
    );
}

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
    summary();
}
