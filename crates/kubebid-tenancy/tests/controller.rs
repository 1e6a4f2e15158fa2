//! The whole controller (`operator::run`) against a mock API server at the kube client's HTTP boundary:
//! it lists and watches Tenants, KubeBidConfigs, the kinds it manages (only those labelled
//! `kubebid.io/managed=true`, namespaces included) and Services, keeps the cluster-wide classes in place,
//! reconciles the listed Tenant with server-side apply, writes its status, records an Event, and stops when
//! asked (graceful shutdown).

// Test helpers fail the test by panicking on broken fixtures; that is their job.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::{Request, Response};
use kubebid_tenancy::metrics::OperatorMetrics;
use serde_json::{Value, json};
use tokio::sync::{Notify, oneshot};

fn tenant() -> Value {
    json!({"apiVersion": "kubebid.io/v1alpha1", "kind": "Tenant",
        "metadata": {"name": "acme", "uid": "5d1c2f7a-0000-4000-8000-00000000abcd", "generation": 1, "resourceVersion": "7"},
        "spec": {"namespaces": ["acme"], "owners": [{"kind": "User", "name": "alice"}]}})
}

#[tokio::test]
async fn the_controller_reconciles_listed_tenants_and_stops_gracefully() {
    let (mock, mut handle) =
        tower_test::mock::pair::<Request<kube::client::Body>, Response<Full<Bytes>>>();
    let client = kube::Client::new(mock, "default");
    let state = Arc::new(Mutex::new(common::ApiServer::default()));
    state
        .lock()
        .unwrap()
        .objects
        .insert("/apis/kubebid.io/v1alpha1/tenants/acme".into(), tenant());
    let status_written = Arc::new(Notify::new());
    let server_state = state.clone();
    let notify = status_written.clone();
    let server = tokio::spawn(async move {
        // Watches are held open (their responders kept) until the test ends.
        let mut watches = Vec::new();
        while let Some((req, send)) = handle.next_request().await {
            let common::Seen {
                method,
                path,
                query,
                content_type,
                body,
            } = common::read(req).await;
            if method == "GET" && query.contains("watch=true") {
                server_state
                    .lock()
                    .unwrap()
                    .log
                    .push(format!("{method} {path}?{query}"));
                watches.push(send);
                continue;
            }
            let r = common::answer(
                &mut server_state.lock().unwrap(),
                &method,
                &path,
                &query,
                &content_type,
                &body,
            );
            if method == "PATCH" && path.ends_with("/status") {
                notify.notify_one();
            }
            send.send_response(r);
        }
        drop(watches);
    });

    let metrics = Arc::new(OperatorMetrics::default());
    let (stop, stopped) = oneshot::channel::<()>();
    let controller = tokio::spawn(kubebid_tenancy::operator::run(
        client,
        metrics.clone(),
        async move {
            let _ = stopped.await;
        },
    ));
    // Hang guard only: the status write is the last step of a reconcile.
    tokio::time::timeout(Duration::from_secs(60), status_written.notified())
        .await
        .expect("the listed Tenant was reconciled");
    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(60), controller)
        .await
        .expect("the controller stopped when asked")
        .unwrap();

    let s = state.lock().unwrap();
    let log = s.log.join("\n");
    // Managed kinds are watched with the managed label only, namespaces included.
    for kind in [
        "/api/v1/namespaces",
        "/apis/networking.k8s.io/v1/networkpolicies",
        "/apis/rbac.authorization.k8s.io/v1/roles",
        "/apis/rbac.authorization.k8s.io/v1/rolebindings",
        "/api/v1/resourcequotas",
        "/api/v1/limitranges",
    ] {
        assert!(
            s.log.iter().any(|l| l.starts_with(&format!("GET {kind}?"))
                && l.contains("labelSelector=kubebid.io%2Fmanaged%3Dtrue")),
            "{kind} not watched by label:\n{log}"
        );
    }
    // The Services sharedServices grants name are watched, metadata only; so are the configuration objects.
    assert!(
        s.log.iter().any(|l| l.starts_with("GET /api/v1/services?")),
        "{log}"
    );
    assert!(
        s.log
            .iter()
            .any(|l| l.starts_with("GET /apis/kubebid.io/v1alpha1/kubebidconfigs?")),
        "{log}"
    );
    // The cluster-wide objects are kept in place by the operator, whatever installed it.
    for object in [
        "/apis/node.k8s.io/v1/runtimeclasses/kubebid-secure",
        "/apis/storage.k8s.io/v1/storageclasses/encrypted-ssd",
    ] {
        assert!(
            s.objects.contains_key(object),
            "{object} not applied:\n{log}"
        );
    }
    // The tenant's objects were applied with server-side apply by field manager kubebid.
    let patches: Vec<&String> = s.log.iter().filter(|l| l.starts_with("PATCH ")).collect();
    assert!(patches.len() > 5, "{log}");
    assert!(patches.iter().all(|l| l.contains("fieldManager=kubebid")));
    assert!(s.objects.contains_key(
        "/apis/networking.k8s.io/v1/namespaces/acme/networkpolicies/default-deny-all"
    ));
    let status = &s.objects["/apis/kubebid.io/v1alpha1/tenants/acme"]["status"];
    assert_eq!(status["conditions"][0]["type"], "Ready");
    assert_eq!(status["conditions"][0]["status"], "True");
    // An Event says what was created.
    let applied = s
        .objects
        .iter()
        .find(|(k, _)| k.ends_with("/events/Applied"))
        .map(|(_, v)| v)
        .unwrap_or_else(|| panic!("no Applied event:\n{log}"));
    assert!(applied["note"].as_str().unwrap().starts_with("created "));
    assert!(
        metrics.encode().contains("result=\"ok\""),
        "{}",
        metrics.encode()
    );
    drop(s);
    server.abort();
}

/// A `KubeBidConfig` change reconciles every Tenant (the rendered objects depend on it): a change streamed
/// through the watch makes the operator read the tenant's objects again.
#[tokio::test]
async fn a_config_change_reconciles_every_tenant() {
    use http_body_util::BodyExt as _;
    type Chunk = Result<hyper::body::Frame<Bytes>, std::io::Error>;
    struct Rx(tokio::sync::mpsc::Receiver<Chunk>);
    impl futures_core::Stream for Rx {
        type Item = Chunk;
        fn poll_next(
            mut self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Option<Chunk>> {
            self.0.poll_recv(cx)
        }
    }
    type Body = http_body_util::StreamBody<Rx>;
    let (mock, mut handle) =
        tower_test::mock::pair::<Request<kube::client::Body>, Response<Body>>();
    let client = kube::Client::new(mock, "default");
    let state = Arc::new(Mutex::new(common::ApiServer::default()));
    state
        .lock()
        .unwrap()
        .objects
        .insert("/apis/kubebid.io/v1alpha1/tenants/acme".into(), tenant());
    let (config_watch_tx, config_watch) = oneshot::channel::<tokio::sync::mpsc::Sender<Chunk>>();
    let server_state = state.clone();
    let server = tokio::spawn(async move {
        let mut config_watch_tx = Some(config_watch_tx);
        let mut held = Vec::new();
        while let Some((req, send)) = handle.next_request().await {
            let common::Seen {
                method,
                path,
                query,
                content_type,
                body,
            } = common::read(req).await;
            let (tx, rx) = tokio::sync::mpsc::channel(16);
            if query.contains("watch=true") {
                send.send_response(
                    Response::builder()
                        .status(200)
                        .body(http_body_util::StreamBody::new(Rx(rx)))
                        .unwrap(),
                );
                if path.ends_with("/kubebidconfigs")
                    && let Some(t) = config_watch_tx.take()
                {
                    let _ = t.send(tx);
                    continue;
                }
                held.push(tx);
                continue;
            }
            let r = common::answer(
                &mut server_state.lock().unwrap(),
                &method,
                &path,
                &query,
                &content_type,
                &body,
            );
            let (parts, full) = r.into_parts();
            let bytes = full.collect().await.unwrap().to_bytes();
            tx.send(Ok(hyper::body::Frame::data(bytes))).await.unwrap();
            drop(tx);
            send.send_response(Response::from_parts(
                parts,
                http_body_util::StreamBody::new(Rx(rx)),
            ));
        }
        drop(held);
    });
    let reads = || {
        state
            .lock()
            .unwrap()
            .log
            .iter()
            .filter(|l| l.starts_with("GET /api/v1/namespaces/acme?"))
            .count()
    };
    let (stop, stopped) = oneshot::channel::<()>();
    let controller = tokio::spawn(kubebid_tenancy::operator::run(
        client,
        Arc::new(OperatorMetrics::default()),
        async move {
            let _ = stopped.await;
        },
    ));
    let settle = || async {
        // Reconciles of one trigger are done once the count stops moving.
        let mut last = usize::MAX;
        for _ in 0..200 {
            tokio::time::sleep(Duration::from_millis(50)).await;
            let now = reads();
            if now == last && now > 0 {
                return now;
            }
            last = now;
        }
        panic!("reconciles never settled");
    };
    let before = settle().await;
    assert!(before >= 1);
    // The platform changes the cluster settings: acme is reconciled again.
    let watch = tokio::time::timeout(Duration::from_secs(30), config_watch)
        .await
        .expect("configs watched")
        .unwrap();
    let event = json!({"type": "ADDED", "object": {"apiVersion": "kubebid.io/v1alpha1", "kind": "KubeBidConfig",
        "metadata": {"name": "kubebid", "resourceVersion": "11"}, "spec": {"podSecurityVersion": "v1.35"}}});
    let mut line = serde_json::to_vec(&event).unwrap();
    line.push(b'\n');
    watch
        .send(Ok(hyper::body::Frame::data(Bytes::from(line))))
        .await
        .unwrap();
    let after = settle().await;
    assert!(
        after > before,
        "no reconcile after the config change: {before} -> {after}"
    );
    // And the new setting is what it applied: the namespace's pod-security version.
    let ns = state.lock().unwrap().objects["/api/v1/namespaces/acme"].clone();
    assert_eq!(
        ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce-version"],
        "v1.35"
    );
    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(60), controller)
        .await
        .expect("stops")
        .unwrap();
    server.abort();
}
