//! A full attestation of this machine (real `/dev/kvm`: open, API version, a VM created and closed) and of a
//! fixture node with every feature, as the agent runs it each round.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

#[path = "../tests/common/mod.rs"]
mod common;

use criterion::{Criterion, criterion_group, criterion_main};
use kubebid_node::checks::{Options, attest};
use kubebid_node::host::Host;

fn bench(c: &mut Criterion) {
    let fixture = common::full_node("bench");
    let here = Options::new(Host::new("/"));
    let full = Options::new(Host::new(&fixture.root));
    c.bench_function("attest this machine", |b| b.iter(|| attest(&here)));
    c.bench_function("attest a fixture node with every feature", |b| {
        b.iter(|| attest(&full));
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
