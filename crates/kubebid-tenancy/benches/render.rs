//! Rendering throughput: every object of 10,000 tenants (two namespaces each, owners, egress CIDRs and a
//! shared service), as the operator and `kubebid tenant render` produce them, against one tenancy model of
//! all of them.
//!
//! `cargo bench -p kubebid-tenancy --bench render`

// A benchmark with a broken fixture should stop loudly.
#![allow(clippy::expect_used)]

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use k8s_openapi::api::core::v1::Service;
use kubebid_model::load::ConfigSet;
use kubebid_model::{KubeBidConfigSpec, Tenancy, Tenant};
use kubebid_tenancy::render::TenantRenderer;

fn tenants(n: usize) -> Vec<Tenant> {
    let mut text = String::new();
    for i in 0..n {
        text.push_str(&format!(
            "---\napiVersion: kubebid.io/v1alpha1\nkind: Tenant\nmetadata: {{name: t{i}}}\nspec:\n  namespaces: [t{i}-prod, t{i}-dev]\n  owners: [{{kind: User, name: u{i}}}, {{kind: Group, name: g{i}}}]\n  egressCidrs: [203.0.113.0/24]\n  network: {{sharedServices: [monitoring/prometheus]}}\n"
        ));
    }
    let mut set = ConfigSet::default();
    assert!(set.add_text("bench.yaml", &text).is_empty());
    set.tenants.into_iter().map(|t| t.object).collect()
}

fn bench(c: &mut Criterion) {
    let all = tenants(10_000);
    let cluster = KubeBidConfigSpec::default();
    let model = Tenancy::new(&cluster, &all);
    let prometheus: Service = serde_json::from_value(
        serde_json::json!({"metadata": {"name": "prometheus", "namespace": "monitoring"},
        "spec": {"selector": {"app": "prometheus"}, "ports": [{"port": 9090}]}}),
    )
    .expect("service");
    let services = [prometheus];
    let renderer = TenantRenderer::new(&cluster, &model).with_services(&services);
    let render = |t: &Tenant| renderer.render(t).expect("valid").objects;
    let objects: usize = all.iter().map(|t| render(t).len()).sum();
    let mut g = c.benchmark_group("render");
    g.sample_size(10);
    g.throughput(Throughput::Elements(all.len() as u64));
    g.bench_function(format!("10000_tenants_{objects}_objects"), |b| {
        b.iter(|| {
            let mut n = 0;
            for t in &all {
                n += black_box(render(t)).len();
            }
            n
        });
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
