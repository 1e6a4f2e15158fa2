//! Engine throughput on representative objects, without I/O: objects are decoded once, then evaluated;
//! and from JSON text, as the webhook receives them, against the limit: a plain `serde_json` parse of the
//! same text into a JSON value (goal: at least 0.6 of its rate). The last lines printed compare the two
//! measured side by side in one run.
//!
//! `cargo bench -p kubebid-policy --bench engine`

// A benchmark with a broken fixture should stop loudly.
#![allow(clippy::expect_used)]

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group};
use kubebid_model::Object;
use kubebid_policy::{PolicySet, Request};
use serde_json::{Value, json};

fn container(name: &str) -> Value {
    json!({
        "name": name, "image": "ghcr.io/acme/app:1.2.3", "ports": [{"containerPort": 8080}],
        "securityContext": {"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}, "runAsUser": 10001},
        "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}, "limits": {"cpu": "1", "memory": "128Mi"}},
        "readinessProbe": {"httpGet": {"path": "/healthz", "port": 8080}},
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}]
    })
}

fn compliant_deployment() -> Object {
    Object::from_value(json!({
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": "tenant-acme"},
        "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}}, "template": {
            "metadata": {"labels": {"app": "web"}},
            "spec": {
                "runtimeClassName": "kubebid-secure",
                "securityContext": {"runAsNonRoot": true, "seccompProfile": {"type": "RuntimeDefault"}},
                "containers": [container("web"), container("metrics"), container("proxy")],
                "volumes": [{"name": "tmp", "emptyDir": {}}, {"name": "cfg", "configMap": {"name": "web"}}]
            }}}
    }))
    .expect("decodes")
}

fn violating_pod() -> Object {
    Object::from_value(json!({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "bad", "namespace": "tenant-acme"},
        "spec": {"hostPID": true, "hostNetwork": true, "nodeName": "cp-1", "tolerations": [{"operator": "Exists"}],
            "containers": [{"name": "c", "image": "alpine", "securityContext": {"privileged": true, "capabilities": {"add": ["SYS_ADMIN"]}},
                "ports": [{"containerPort": 22, "hostPort": 22}]}],
            "volumes": [{"name": "root", "hostPath": {"path": "/"}}]}
    }))
    .expect("decodes")
}

fn network_policy() -> Object {
    Object::from_value(json!({
        "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": {"name": "np", "namespace": "tenant-acme"},
        "spec": {"podSelector": {"matchLabels": {"app": "web"}}, "policyTypes": ["Ingress", "Egress"],
            "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress-nginx"}}},
                                  {"podSelector": {"matchLabels": {"app": "api"}}}], "ports": [{"port": 8080}]}],
            "egress": [{"to": [{"ipBlock": {"cidr": "203.0.113.0/24"}}]}]}
    }))
    .expect("decodes")
}

fn role_binding() -> Object {
    Object::from_value(json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": {"name": "rb", "namespace": "tenant-acme"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view"},
        "subjects": [{"kind": "ServiceAccount", "name": "ci", "namespace": "tenant-acme"}, {"kind": "User", "name": "alice"}]
    }))
    .expect("decodes")
}

fn bench(c: &mut Criterion) {
    let policy = PolicySet::builtin();
    let mut g = c.benchmark_group("evaluate");
    g.throughput(Throughput::Elements(1));
    for (name, obj) in [
        ("deployment_3_containers_compliant", compliant_deployment()),
        ("pod_violating", violating_pod()),
        ("network_policy", network_policy()),
        ("role_binding", role_binding()),
    ] {
        let d = policy.evaluate(&Request::create(&obj));
        assert_eq!(
            d.denied(),
            name == "pod_violating",
            "{name}: {:?}",
            d.findings
        );
        g.bench_function(name, |b| {
            b.iter(|| black_box(policy.evaluate(&Request::create(black_box(&obj)))));
        });
    }
    g.finish();
}

/// The pods the webhook benchmark sends, as text: a compliant two-container pod, and a violating one.
fn pod_texts() -> Vec<(&'static str, String)> {
    let compliant = json!({"apiVersion":"v1","kind":"Pod","metadata":{"name":"web-7d4b9c","namespace":"tenant-acme","labels":{"app":"web"}},
        "spec":{"runtimeClassName":"kubebid-secure","securityContext":{"runAsNonRoot":true,"seccompProfile":{"type":"RuntimeDefault"}},
        "containers":[
            {"name":"web","image":"ghcr.io/acme/web:1.4.2","ports":[{"containerPort":8080}],
             "securityContext":{"allowPrivilegeEscalation":false,"capabilities":{"drop":["ALL"]}},
             "resources":{"requests":{"cpu":"100m","memory":"128Mi"},"limits":{"cpu":"500m","memory":"256Mi"}}},
            {"name":"proxy","image":"ghcr.io/acme/proxy:2.1","securityContext":{"allowPrivilegeEscalation":false,"capabilities":{"drop":["ALL"]}},
             "resources":{"requests":{"cpu":"50m","memory":"32Mi"},"limits":{"cpu":"200m","memory":"64Mi"}}}]}});
    let violating = json!({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "bad", "namespace": "tenant-acme"},
        "spec": {"hostPID": true, "hostNetwork": true, "nodeName": "cp-1", "tolerations": [{"operator": "Exists"}],
            "containers": [{"name": "c", "image": "alpine", "securityContext": {"privileged": true, "capabilities": {"add": ["SYS_ADMIN"]}},
                "ports": [{"containerPort": 22, "hostPort": 22}]}],
            "volumes": [{"name": "root", "hostPath": {"path": "/"}}]}
    });
    vec![
        ("pod_compliant", compliant.to_string()),
        ("pod_violating", violating.to_string()),
    ]
}

fn decode_and_evaluate(policy: &PolicySet, text: &str) -> bool {
    let object = Object::from_json(text).expect("decodes");
    policy.evaluate(&Request::create(&object)).denied()
}

fn plain_parse(text: &str) -> Value {
    serde_json::from_str(text).expect("parses")
}

fn bench_from_json(c: &mut Criterion) {
    let policy = PolicySet::builtin();
    let mut g = c.benchmark_group("from_json");
    g.throughput(Throughput::Elements(1));
    for (name, text) in pod_texts() {
        g.bench_function(format!("{name}/decode_and_evaluate"), |b| {
            b.iter(|| black_box(decode_and_evaluate(&policy, black_box(&text))));
        });
        g.bench_function(format!("{name}/plain_serde_json_parse"), |b| {
            b.iter(|| black_box(plain_parse(black_box(&text))));
        });
    }
    g.finish();
}

/// Rate of `f` over about `budget`, in calls per second.
fn rate(budget: std::time::Duration, mut f: impl FnMut()) -> f64 {
    let started = std::time::Instant::now();
    let mut n = 0u32;
    while started.elapsed() < budget {
        for _ in 0..256 {
            f();
        }
        n += 256;
    }
    f64::from(n) / started.elapsed().as_secs_f64()
}

/// The goal's figures, measured interleaved (three rounds, best of each) so that noise falls on both.
fn summary() {
    let policy = PolicySet::builtin();
    let budget = std::time::Duration::from_millis(400);
    println!(
        "\nengine from JSON text against a plain serde_json parse of the same text (goal >= 0.6):"
    );
    for (name, text) in pod_texts() {
        let (mut ours, mut limit) = (0f64, 0f64);
        for _ in 0..3 {
            ours = ours.max(rate(budget, || {
                black_box(decode_and_evaluate(&policy, black_box(&text)));
            }));
            limit = limit.max(rate(budget, || {
                black_box(plain_parse(black_box(&text)));
            }));
        }
        println!(
            "  {name}: decode + evaluate {:.0}/s ({:.2} µs), plain parse {:.0}/s ({:.2} µs): {:.2} of the limit",
            ours,
            1e6 / ours,
            limit,
            1e6 / limit,
            ours / limit
        );
    }
}

criterion_group!(benches, bench, bench_from_json);

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
    summary();
}
