//! A full attestation of this machine (real `/dev/kvm`: open, API version, a VM created and closed) and of a
//! fixture node with every feature, as the agent runs it each round.

use criterion::{Criterion, criterion_group, criterion_main};
use kubebid_node::checks::{Options, attest};
use kubebid_node::host::Host;

fn bench(c: &mut Criterion) {
    let fixture = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/full");
    let here = Options::new(Host::new("/"));
    let full = Options::new(Host::new(fixture));
    c.bench_function("attest this machine", |b| b.iter(|| attest(&here)));
    c.bench_function("attest a fixture node with every feature", |b| {
        b.iter(|| attest(&full));
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
