//! Cluster mode at the kube client's HTTP boundary. No API server can run here, so a mock service stands in
//! for it (tower-test): it answers the reflectors' LIST and WATCH requests, and the test checks the exact
//! requests (reads only, the three configuration kinds), that no policy is published before every list has
//! completed, that namespaces belong to the Tenant that lists them (never to the one a label names), that
//! conflicting Tenants are resolved as the operator resolves them, and that a watched change applies.
//! `real_cluster` runs against a cluster when KUBECONFIG is set.

// Test helpers fail the test by panicking on broken fixtures; that is their job.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use hyper::body::{Bytes, Frame};
use hyper::{Request, Response};
use kubebid_model::Object;
use kubebid_policy::{PolicySet, Request as Review};
use kubebid_webhook::cluster;
use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot, watch};

mod common;

use common::{Chunk, channel_body as body};

type MockBody = common::ChannelBody;

fn tenant(name: &str, namespaces: &[&str], extra: Value) -> Value {
    let mut spec = json!({"namespaces": namespaces});
    for (k, v) in extra.as_object().unwrap() {
        spec[k] = v.clone();
    }
    let created = if name == "acme" {
        "2026-01-01T00:00:00Z"
    } else {
        "2026-06-01T00:00:00Z"
    };
    json!({"apiVersion": "kubebid.io/v1alpha1", "kind": "Tenant", "metadata": {"name": name, "resourceVersion": "2", "creationTimestamp": created}, "spec": spec})
}

fn list(api_version: &str, kind: &str, items: Vec<Value>) -> Value {
    json!({"apiVersion": api_version, "kind": format!("{kind}List"), "metadata": {"resourceVersion": "10"}, "items": items})
}

fn pod(ns: &str, image: &str) -> Object {
    Object::from_value(json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": ns},
        "spec": {"runtimeClassName": "kubebid-secure", "securityContext": {"runAsNonRoot": true, "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [{"name": "c", "image": image, "securityContext": {"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}},
                "resources": {"requests": {"cpu": "1", "memory": "1Gi"}, "limits": {"cpu": "1", "memory": "1Gi"}}}]}}))
    .unwrap()
}

#[tokio::test]
async fn reflectors_publish_only_after_every_list_and_apply_watched_changes() {
    let (mock, mut handle) =
        tower_test::mock::pair::<Request<kube::client::Body>, Response<MockBody>>();
    let client = kube::Client::new(mock, "default");
    let (tx, mut rx) = watch::channel::<Option<PolicySet>>(None);
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(cluster::run(client, tx, async move {
        let _ = stopped.await;
    }));

    let requests = Arc::new(Mutex::new(Vec::<String>::new()));
    let (release_exceptions, exceptions_released) = oneshot::channel::<()>();
    let (tenant_watch_tx, tenant_watch) = oneshot::channel::<mpsc::Sender<Chunk>>();
    let log = requests.clone();
    let server = tokio::spawn(async move {
        let mut exceptions_released = Some(exceptions_released);
        let mut tenant_watch_tx = Some(tenant_watch_tx);
        let mut held = Vec::new();
        while let Some((req, send)) = handle.next_request().await {
            let uri = req.uri().to_string();
            log.lock().unwrap().push(format!("{} {uri}", req.method()));
            let is_watch = uri.contains("watch=true");
            let (tx, body) = body();
            send.send_response(
                Response::builder()
                    .status(200)
                    .header("content-type", "application/json")
                    .body(body)
                    .unwrap(),
            );
            let payload = if is_watch {
                None
            } else if uri.starts_with("/apis/kubebid.io/v1alpha1/tenants") {
                // A younger tenant claims acme's namespace too: it is left out whole.
                Some(list(
                    "kubebid.io/v1alpha1",
                    "Tenant",
                    vec![
                        tenant("mallory", &["mallory", "acme"], json!({})),
                        tenant("acme", &["acme"], json!({})),
                    ],
                ))
            } else if uri.starts_with("/apis/kubebid.io/v1alpha1/policyexceptions") {
                // Hold the exceptions list back until the test has checked readiness.
                if let Some(r) = exceptions_released.take() {
                    let _ = r.await;
                }
                Some(list("kubebid.io/v1alpha1", "PolicyException", vec![]))
            } else if uri.starts_with("/apis/kubebid.io/v1alpha1/kubebidconfigs") {
                Some(list("kubebid.io/v1alpha1", "KubeBidConfig", vec![]))
            } else {
                panic!("unexpected request {uri}");
            };
            match payload {
                Some(p) => {
                    tx.send(Ok(Frame::data(Bytes::from(
                        serde_json::to_vec(&p).unwrap(),
                    ))))
                    .await
                    .unwrap();
                }
                None if uri.starts_with("/apis/kubebid.io/v1alpha1/tenants") => {
                    if let Some(t) = tenant_watch_tx.take() {
                        let _ = t.send(tx);
                    } else {
                        held.push(tx);
                    }
                }
                None => held.push(tx), // keep other watches open
            }
        }
    });

    // Two lists answered, the exceptions list held back: nothing is published yet.
    for _ in 0..50 {
        if requests.lock().unwrap().len() >= 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        rx.borrow().is_none(),
        "no policy before every cache has synced"
    );
    release_exceptions.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(10), rx.changed())
        .await
        .expect("policy published")
        .unwrap();
    {
        let policy = rx.borrow_and_update().clone().unwrap();
        assert_eq!(
            policy.tenant_for(Some("acme")).unwrap().name.as_deref(),
            Some("acme")
        );
        // The younger, conflicting tenant is not in force, not even for its uncontested namespace.
        assert_eq!(policy.tenant_for(Some("mallory")).unwrap().name, None);
        assert_eq!(policy.tenancy().rejected()[0].tenant, "mallory");
        assert!(
            policy.tenant_for(Some("kube-system")).is_none(),
            "excluded namespace"
        );
        assert!(
            !policy
                .evaluate(&Review::create(&pod("acme", "docker.io/library/nginx")))
                .denied()
        );
    }
    // A watched change: acme is restricted to its own registry.
    let watch_tx = tokio::time::timeout(Duration::from_secs(10), tenant_watch)
        .await
        .expect("tenants watched")
        .unwrap();
    let event = json!({"type": "MODIFIED", "object": tenant("acme", &["acme"], json!({"registries": ["ghcr.io/acme"]}))});
    let mut line = serde_json::to_vec(&event).unwrap();
    line.push(b'\n');
    watch_tx
        .send(Ok(Frame::data(Bytes::from(line))))
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(10), rx.changed())
        .await
        .expect("change applied")
        .unwrap();
    let policy = rx.borrow_and_update().clone().unwrap();
    let d = policy.evaluate(&Review::create(&pod("acme", "docker.io/library/nginx")));
    assert!(
        d.findings
            .iter()
            .any(|f| f.rule.id == "tenant/image-registry"),
        "{:?}",
        d.findings
    );

    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("stops")
        .unwrap();
    server.abort();
    let seen = requests.lock().unwrap().clone();
    assert!(
        seen.iter().all(|r| r.starts_with("GET ")),
        "the webhook only reads: {seen:?}"
    );
    assert!(
        !seen.iter().any(|r| r.contains("/api/v1/namespaces")),
        "namespaces' labels decide nothing: {seen:?}"
    );
    for path in [
        "/apis/kubebid.io/v1alpha1/kubebidconfigs?",
        "/apis/kubebid.io/v1alpha1/tenants?",
        "/apis/kubebid.io/v1alpha1/policyexceptions?",
    ] {
        assert!(
            seen.iter()
                .any(|r| r.contains(path) && !r.contains("watch=true")),
            "LIST {path}: {seen:?}"
        );
        assert!(
            seen.iter()
                .any(|r| r.contains(path) && r.contains("watch=true")),
            "WATCH {path}: {seen:?}"
        );
    }
}

/// Runs only with a real cluster (KUBECONFIG set and KubeBid's CRDs installed: `kubebid generate crds`).
#[tokio::test]
async fn real_cluster() {
    if std::env::var_os("KUBECONFIG").is_none() {
        eprintln!("SKIPPED real_cluster: KUBECONFIG is not set");
        return;
    }
    let client = kube::Client::try_default().await.expect("kubeconfig loads");
    let (tx, mut rx) = watch::channel::<Option<PolicySet>>(None);
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(cluster::run(client, tx, async move {
        let _ = stopped.await;
    }));
    tokio::time::timeout(Duration::from_secs(60), rx.changed())
        .await
        .expect("caches sync against the cluster")
        .unwrap();
    assert!(rx.borrow().is_some());
    stop.send(()).unwrap();
    task.await.unwrap();
}
