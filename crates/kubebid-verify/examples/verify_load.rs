//! `kubebid verify`'s control-plane, admission, compute and network probes (the default-deny and the
//! reachability matrix over every NetworkPolicy KubeBid renders for them) over N tenants (N × (N−1) ordered pairs) against an API server
//! that answers every review after a fixed delay: how long the whole proof takes, and how many reviews
//! it needed. The API server is the kube client's mock service; each answer waits on its own task, so
//! reviews overlap as they would on a real server.
//!
//!   cargo run --release -p kubebid-verify --example verify_load -- [tenants] [delay ms] [concurrency]

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response};
use serde_json::json;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let mut a = std::env::args().skip(1);
    let n: usize = a.next().map_or(100, |s| s.parse().unwrap());
    let delay = Duration::from_millis(a.next().map_or(5, |s| s.parse().unwrap()));
    let concurrency: usize = a.next().map_or(64, |s| s.parse().unwrap());
    let mut text = String::new();
    for i in 0..n {
        text.push_str(&format!(
            "---\napiVersion: kubebid.io/v1alpha1\nkind: Tenant\nmetadata: {{name: t{i}}}\nspec:\n  namespaces: [t{i}-prod]\n  owners: [{{kind: Group, name: t{i}-admins}}]\n"
        ));
    }
    let mut set = kubebid_model::load::ConfigSet::default();
    assert!(set.add_text("tenants.yaml", &text).is_empty());
    let tenancy = set.tenancy();
    // What KubeBid renders for every tenant: the Namespaces and NetworkPolicies the network probes read.
    let mut objects: std::collections::BTreeMap<String, serde_json::Value> =
        std::collections::BTreeMap::new();
    let (mut namespaces, mut policies) = (Vec::new(), Vec::new());
    for t in &set.tenants {
        for o in kubebid_tenancy::render::tenant(&t.object, &set.cluster_spec()).unwrap() {
            match o["kind"].as_str() {
                Some("Namespace") => namespaces.push(o),
                Some("NetworkPolicy") => {
                    objects.insert(
                        format!(
                            "/apis/networking.k8s.io/v1/namespaces/{}/networkpolicies/{}",
                            o["metadata"]["namespace"].as_str().unwrap(),
                            o["metadata"]["name"].as_str().unwrap()
                        ),
                        o.clone(),
                    );
                    policies.push(o);
                }
                _ => {}
            }
        }
    }
    objects.insert("/api/v1/namespaces".into(), json!({"items": namespaces}));
    objects.insert(
        "/apis/networking.k8s.io/v1/networkpolicies".into(),
        json!({"items": policies}),
    );
    let objects = Arc::new(objects);
    let (mock, mut handle) =
        tower_test::mock::pair::<Request<kube::client::Body>, Response<Full<Bytes>>>();
    let served = Arc::new(AtomicUsize::new(0));
    let count = served.clone();
    tokio::spawn(async move {
        while let Some((req, send)) = handle.next_request().await {
            let count = count.clone();
            let objects = objects.clone();
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                let path = req.uri().path().to_owned();
                let body = if req.method() == hyper::Method::GET {
                    match objects.get(&path) {
                        Some(o) => o.clone(),
                        // Nodes, pods and the RuntimeClass: nothing stored.
                        None => json!({"items": []}),
                    }
                } else if path.ends_with("selfsubjectrulesreviews") {
                    json!({"status": {"resourceRules": [{"verbs": ["create"], "apiGroups": ["authorization.k8s.io"], "resources": ["selfsubjectrulesreviews"]}], "incomplete": false}})
                } else if path.ends_with("selfsubjectaccessreviews") {
                    json!({"status": {"allowed": false}})
                } else {
                    // A dry-run create: admitted.
                    json!({"kind": "Status", "status": "Success"})
                };
                count.fetch_add(1, Ordering::Relaxed);
                send.send_response(
                    Response::builder()
                        .status(201)
                        .header("content-type", "application/json")
                        .body(Full::new(Bytes::from(serde_json::to_vec(&body).unwrap())))
                        .unwrap(),
                );
            });
        }
    });
    let verifier = kubebid_verify::Verifier::new(kube::Client::new(mock, "default"), concurrency);
    let started = Instant::now();
    let mut findings = verifier
        .control_plane(&tenancy, None, &|_, _| {})
        .await
        .unwrap();
    findings.extend(
        verifier
            .admission(&tenancy, None, &|_, _| {})
            .await
            .unwrap(),
    );
    findings.extend(verifier.compute(&tenancy, None).await.unwrap());
    findings.extend(verifier.network(&set, None).await.unwrap());
    let matrix = Instant::now();
    findings.extend(verifier.reachability(&set, None).await.unwrap());
    let matrix = matrix.elapsed();
    let took = started.elapsed();
    println!(
        "reachability matrix over {} ordered pairs: {:.3} s (its six lists included)",
        n * (n - 1),
        matrix.as_secs_f64()
    );
    println!(
        "{n} tenants ({} ordered pairs), {} probes, {} requests at {} ms each, concurrency {concurrency}: {:.2} s; \
         the same requests back to back would take {:.1} s",
        n * (n - 1),
        findings.len(),
        served.load(Ordering::Relaxed),
        delay.as_millis(),
        took.as_secs_f64(),
        served.load(Ordering::Relaxed) as f64 * delay.as_secs_f64()
    );
}
