//! The whole controller (`operator::run`) against a mock API server at the kube client's HTTP boundary:
//! it lists and watches Tenants, KubeBidConfigs and the five kinds it owns (only those labelled
//! `kubebid.io/managed=true`), reconciles the listed Tenant with server-side apply, writes its status,
//! records an Event, and stops when asked (graceful shutdown), with no request after that.

// Test helpers fail the test by panicking on broken fixtures; that is their job.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::{Request, Response};
use kubebid_tenancy::metrics::OperatorMetrics;
use serde_json::{Value, json};
use tokio::sync::{Notify, oneshot};

#[derive(Default)]
struct ApiServer {
    objects: BTreeMap<String, Value>,
    log: Vec<String>,
}

fn tenant() -> Value {
    json!({"apiVersion": "kubebid.io/v1alpha1", "kind": "Tenant",
        "metadata": {"name": "acme", "uid": "5d1c2f7a-0000-4000-8000-00000000abcd", "generation": 1, "resourceVersion": "7"},
        "spec": {"namespaces": ["acme"], "owners": [{"kind": "User", "name": "alice"}]}})
}

fn list_of(items: Vec<Value>) -> Value {
    json!({"apiVersion": "v1", "kind": "List", "metadata": {"resourceVersion": "10"}, "items": items})
}

const COLLECTIONS: &[&str] = &[
    "tenants",
    "kubebidconfigs",
    "networkpolicies",
    "roles",
    "rolebindings",
    "resourcequotas",
    "limitranges",
];

#[tokio::test]
async fn the_controller_reconciles_listed_tenants_and_stops_gracefully() {
    let (mock, mut handle) =
        tower_test::mock::pair::<Request<kube::client::Body>, Response<Full<Bytes>>>();
    let client = kube::Client::new(mock, "default");
    let state = Arc::new(Mutex::new(ApiServer::default()));
    let status_written = Arc::new(Notify::new());
    let server_state = state.clone();
    let notify = status_written.clone();
    let server = tokio::spawn(async move {
        // Watches are held open (their responders kept) until the test ends.
        let mut watches = Vec::new();
        while let Some((req, send)) = handle.next_request().await {
            let method = req.method().clone();
            let path = req.uri().path().to_owned();
            let query = req.uri().query().unwrap_or_default().to_owned();
            let body = req.into_body().collect_bytes().await.unwrap();
            let mut s = server_state.lock().unwrap();
            s.log.push(format!("{method} {path}?{query}"));
            let respond = common::respond;
            if method == "GET" && query.contains("watch=true") {
                watches.push(send);
                continue;
            }
            let collection = path
                .rsplit('/')
                .next()
                .is_some_and(|last| COLLECTIONS.contains(&last));
            let r = match method.as_str() {
                "GET" if collection => {
                    let items = if path == "/apis/kubebid.io/v1alpha1/tenants" {
                        vec![tenant()]
                    } else {
                        vec![]
                    };
                    respond(200, list_of(items))
                }
                "GET" => match s.objects.get(&path) {
                    Some(o) => respond(200, o.clone()),
                    None => respond(
                        404,
                        json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404}),
                    ),
                },
                "PATCH" => {
                    let mut applied: Value = serde_json::from_slice(&body).unwrap();
                    if let Some(base) = path.strip_suffix("/status") {
                        let mut whole = tenant();
                        whole["status"] = applied["status"].take();
                        s.objects.insert(base.to_owned(), whole.clone());
                        notify.notify_one();
                        respond(200, whole)
                    } else {
                        applied["metadata"]["uid"] = json!("0b7e6a9e-1111-4222-8333-444455556666");
                        s.objects.insert(path, applied.clone());
                        respond(200, applied)
                    }
                }
                "POST" if path.ends_with("/events") => {
                    let event: Value = serde_json::from_slice(&body).unwrap();
                    s.objects.insert(
                        format!("{path}/{}", event["reason"].as_str().unwrap_or("?")),
                        event.clone(),
                    );
                    respond(201, event)
                }
                other => panic!("unexpected {other} {path}?{query}"),
            };
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
    // Owned kinds are listed with the managed label only.
    for kind in [
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
