//! The scanner service at the kube client's HTTP boundary: it lists, watches (metadata only), and when a
//! watch reports a new pod it scans that pod's namespace alone and applies its PolicyReport; a new policy
//! scans the whole cluster again. The mock API server answers lists, holds watches open, and sends one
//! event.

// Test fixtures fail the test loudly.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::{Request, Response};
use kubebid_policy::PolicySet;
use kubebid_verify::scanner::{ScannerConfig, ScannerMetrics, run};
use serde_json::{Value, json};
use tokio::sync::mpsc;

const CONFIG: &str = "apiVersion: kubebid.io/v1alpha1
kind: Tenant
metadata: {name: acme}
spec: {namespaces: [acme-prod], profile: baseline}
";

fn pod(name: &str) -> Value {
    json!({"metadata": {"name": name, "namespace": "acme-prod", "uid": format!("uid-{name}"), "resourceVersion": "2"},
        "spec": {"containers": [{"name": "c", "image": "registry.example/app:1", "securityContext": {"privileged": true}}]}})
}

/// (method, path and query) of each request but held watches; PATCH bodies too.
type Seen = mpsc::UnboundedSender<(String, String, Value)>;

fn cluster(seen: Seen) -> kube::Client {
    let event_sent = Arc::new(AtomicBool::new(false));
    let (mock, mut handle) =
        tower_test::mock::pair::<Request<kube::client::Body>, Response<Full<Bytes>>>();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Some((req, send)) = handle.next_request().await {
            let method = req.method().to_string();
            let path = req.uri().path().to_owned();
            let query = req.uri().query().unwrap_or_default().to_owned();
            let body = req.into_body().collect().await.unwrap().to_bytes();
            if query.contains("watch=true") {
                if path == "/api/v1/pods" && !event_sent.swap(true, Ordering::SeqCst) {
                    let event = json!({"type": "ADDED", "object": {"apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadata",
                        "metadata": {"name": "new", "namespace": "acme-prod", "resourceVersion": "3"}}});
                    send.send_response(
                        Response::builder()
                            .status(200)
                            .header("content-type", "application/json")
                            .body(Full::new(Bytes::from(format!("{event}\n"))))
                            .unwrap(),
                    );
                } else {
                    // Held open: no more events.
                    held.push(send);
                }
                continue;
            }
            let patch = if method == "PATCH" {
                serde_json::from_slice(&body).unwrap()
            } else {
                Value::Null
            };
            let _ = seen.send((method.clone(), format!("{path}?{query}"), patch.clone()));
            let items: Vec<Value> = match path.as_str() {
                "/api/v1/pods" | "/api/v1/namespaces/acme-prod/pods" => {
                    let mut v = vec![pod("old")];
                    if event_sent.load(Ordering::SeqCst) {
                        v.push(pod("new"));
                    }
                    v
                }
                "/api/v1/namespaces" => vec![
                    json!({"metadata": {"name": "acme-prod", "uid": "u", "resourceVersion": "2",
                    "labels": {"kubernetes.io/metadata.name": "acme-prod", "kubebid.io/tenant": "acme"}}}),
                ],
                _ => Vec::new(),
            };
            let answer = if method == "PATCH" {
                patch
            } else {
                json!({"kind": "List", "apiVersion": "v1", "metadata": {"resourceVersion": "2"}, "items": items})
            };
            send.send_response(common::respond(200, &answer));
        }
    });
    kube::Client::new(mock, "default")
}

async fn next_patch(rx: &mut mpsc::UnboundedReceiver<(String, String, Value)>) -> (String, Value) {
    loop {
        let (method, path, body) = tokio::time::timeout(Duration::from_secs(60), rx.recv())
            .await
            .expect("the scanner kept going")
            .unwrap();
        if method == "PATCH" {
            return (path, body);
        }
    }
}

fn pods_in(report: &Value) -> Vec<&str> {
    let mut v: Vec<&str> = report["results"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["resources"][0]["kind"] == "Pod")
        .map(|r| r["resources"][0]["name"].as_str().unwrap())
        .collect();
    v.dedup();
    v
}

#[tokio::test]
async fn a_change_rescans_its_namespace_and_a_new_policy_the_cluster() {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let client = cluster(tx);
    let policy = PolicySet::from_config(&common::config(CONFIG)).unwrap();
    let (policy_tx, policy_rx) = tokio::sync::watch::channel(Some(policy.clone()));
    let registry = kubebid_server::http::Process::new(kubebid_server::Shutdown::new());
    let metrics = Arc::new(ScannerMetrics::new(&registry.registry));
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(run(
        client,
        policy_rx,
        ScannerConfig {
            resync: Duration::from_secs(3600),
            debounce: Duration::from_millis(20),
        },
        metrics.clone(),
        async {
            let _ = stop_rx.await;
        },
    ));
    // The first scan: the whole cluster, its two reports.
    let mut reports = Vec::new();
    while reports.len() < 2 {
        reports.push(next_patch(&mut rx).await);
    }
    assert!(reports.iter().any(|(p, _)| {
        p.starts_with("/apis/wgpolicyk8s.io/v1alpha2/clusterpolicyreports/kubebid?")
    }));
    // The watch's event: acme-prod alone is listed and its report applied, now with the new pod. (The
    // event may come before the first scan lists the pods; either way a later report holds it.)
    let mut namespace_lists = false;
    let report = loop {
        let (method, path, body) = tokio::time::timeout(Duration::from_secs(60), rx.recv())
            .await
            .unwrap()
            .unwrap();
        namespace_lists |= method == "GET" && path == "/api/v1/namespaces/acme-prod/pods?limit=500";
        if method == "PATCH" && namespace_lists {
            assert_eq!(
                path,
                "/apis/wgpolicyk8s.io/v1alpha2/namespaces/acme-prod/policyreports/kubebid?fieldManager=kubebid-scanner&force=true"
            );
            break body;
        }
    };
    assert_eq!(pods_in(&report), vec!["old", "new"]);
    let privileged = report["results"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["rule"] == "pss/privileged" && r["result"] == "fail")
        .count();
    assert_eq!(privileged, 2, "{report:#}");

    // A new policy: the whole cluster again.
    policy_tx.send(Some(policy)).unwrap();
    loop {
        let (path, _) = next_patch(&mut rx).await;
        if path.starts_with("/apis/wgpolicyk8s.io/v1alpha2/clusterpolicyreports/") {
            break;
        }
    }
    stop_tx.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(60), task)
        .await
        .unwrap()
        .unwrap();
    let scans = metrics
        .scans
        .get_or_create(&kubebid_verify::scanner::ScopeLabels {
            scope: "cluster",
            outcome: "ok",
        })
        .get();
    assert!(scans >= 2, "{scans}");
}
