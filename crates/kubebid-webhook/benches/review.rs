//! One admission review without I/O, from the request's bytes to the answer's: what the webhook spends
//! per review beyond serving HTTP. The review is the one `bench/webhook-load.sh` sends, against the
//! three-tenant example configuration; `plain_parse` is a `serde_json` parse of the same body into a JSON
//! value, the floor of any decoding.
//!
//! `cargo bench -p kubebid-webhook --bench review`

// A benchmark with a broken fixture should stop loudly.
#![allow(clippy::expect_used)]

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use kubebid_policy::PolicySet;
use kubebid_webhook::review::{Endpoint, Verdict, review};

const REVIEW: &str = r#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"b5f8a2c4-0c1d-4b1e-9f43-2a6f1e9d7c10",
 "kind":{"group":"","version":"v1","kind":"Pod"},"resource":{"group":"","version":"v1","resource":"pods"},
 "name":"web-7d4b9c","namespace":"tenant-acme","operation":"CREATE",
 "userInfo":{"username":"system:serviceaccount:kube-system:replicaset-controller","groups":["system:serviceaccounts","system:authenticated"]},
 "object":{"apiVersion":"v1","kind":"Pod","metadata":{"name":"web-7d4b9c","namespace":"tenant-acme","labels":{"app":"web"}},
  "spec":{"runtimeClassName":"kubebid-secure","securityContext":{"runAsNonRoot":true,"seccompProfile":{"type":"RuntimeDefault"}},
   "containers":[
    {"name":"web","image":"ghcr.io/acme/web:1.4.2","ports":[{"containerPort":8080}],
     "securityContext":{"allowPrivilegeEscalation":false,"capabilities":{"drop":["ALL"]}},
     "resources":{"requests":{"cpu":"100m","memory":"128Mi"},"limits":{"cpu":"500m","memory":"256Mi"}}},
    {"name":"proxy","image":"ghcr.io/acme/proxy:2.1","securityContext":{"allowPrivilegeEscalation":false,"capabilities":{"drop":["ALL"]}},
     "resources":{"requests":{"cpu":"50m","memory":"32Mi"},"limits":{"cpu":"200m","memory":"64Mi"}}}]}},
 "dryRun":false}}"#;

fn example_policy() -> PolicySet {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/config");
    let mut set = kubebid_model::load::ConfigSet::default();
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .expect("examples/config")
        .map(|e| e.expect("entry").path())
        .collect();
    files.sort();
    for f in files {
        let text = std::fs::read_to_string(&f).expect("read");
        let errors = set.add_text(&f.display().to_string(), &text);
        assert!(errors.is_empty(), "{errors:?}");
    }
    PolicySet::from_config(&set).expect("policy")
}

fn bench(c: &mut Criterion) {
    let policy = example_policy();
    let now = jiff::Timestamp::now();
    let done = review(&policy, Endpoint::Validate, REVIEW.as_bytes(), now).expect("reviews");
    assert_eq!(
        done.verdict,
        Verdict::Allowed,
        "{}",
        String::from_utf8_lossy(&done.body)
    );
    let mut g = c.benchmark_group("review");
    g.throughput(Throughput::Elements(1));
    g.bench_function("validate_compliant_pod", |b| {
        b.iter(|| {
            black_box(review(
                &policy,
                Endpoint::Validate,
                black_box(REVIEW.as_bytes()),
                now,
            ))
        });
    });
    g.bench_function("mutate_compliant_pod", |b| {
        b.iter(|| {
            black_box(review(
                &policy,
                Endpoint::Mutate,
                black_box(REVIEW.as_bytes()),
                now,
            ))
        });
    });
    g.bench_function("plain_parse", |b| {
        b.iter(|| {
            black_box(serde_json::from_slice::<serde_json::Value>(black_box(
                REVIEW.as_bytes(),
            )))
        });
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
