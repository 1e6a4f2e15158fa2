//! Engine throughput on representative objects, without I/O: objects are decoded once, then evaluated.
//!
//! `cargo bench -p kubebid-policy --bench engine`

// A benchmark with a broken fixture should stop loudly.
#![allow(clippy::expect_used)]

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
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

criterion_group!(benches, bench);
criterion_main!(benches);
