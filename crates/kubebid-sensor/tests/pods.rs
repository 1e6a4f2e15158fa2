//! The node-local pod watch at the kube client's HTTP boundary: it lists and watches pods with the field
//! selector `spec.nodeName=<node>` (so the API server sends only this node's pods), and publishes each pod
//! with its containers by ID (the runtime's `containerd://` prefix taken off).

// Test fixtures fail the test loudly.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response};
use kubebid_sensor::pods::{NodePods, watch};

#[tokio::test]
async fn only_this_nodes_pods_are_asked_for_and_published() {
    let (mock, mut handle) =
        tower_test::mock::pair::<Request<kube::client::Body>, Response<Full<Bytes>>>();
    let client = kube::Client::new(mock, "default");
    let queries = Arc::new(Mutex::new(Vec::<String>::new()));
    let log = queries.clone();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Some((req, send)) = handle.next_request().await {
            assert_eq!(req.method(), "GET");
            assert_eq!(req.uri().path(), "/api/v1/pods");
            let query = req.uri().query().unwrap_or_default().to_owned();
            log.lock().unwrap().push(query.clone());
            if query.contains("watch=true") {
                held.push(send);
                continue;
            }
            let list = serde_json::json!({
                "apiVersion": "v1", "kind": "PodList", "metadata": {"resourceVersion": "7"},
                "items": [{
                    "apiVersion": "v1", "kind": "Pod",
                    "metadata": {"name": "web-0", "namespace": "acme-prod", "uid": "6f1c2b3a-1d2e-4f5a-8b9c-0123456789ab"},
                    "spec": {"nodeName": "node-1", "containers": [{"name": "app"}]},
                    "status": {"containerStatuses": [{
                        "name": "app", "containerID": "containerd://abc123", "image": "x", "imageID": "y",
                        "ready": true, "restartCount": 0
                    }]}
                }]
            });
            send.send_response(
                Response::builder()
                    .status(200)
                    .header("content-type", "application/json")
                    .body(Full::new(Bytes::from(serde_json::to_vec(&list).unwrap())))
                    .unwrap(),
            );
        }
        drop(held);
    });
    let pods = NodePods::default();
    tokio::spawn(watch(client, "node-1", pods.clone()));
    let (_, got) = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if let Some(p) = pods.changed_since(0) {
                break p;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the pods are published");
    let p = &got["6f1c2b3a-1d2e-4f5a-8b9c-0123456789ab"];
    assert_eq!(
        (p.namespace.as_str(), p.name.as_str()),
        ("acme-prod", "web-0")
    );
    assert_eq!(p.containers["abc123"], "app");
    let q = queries.lock().unwrap().clone();
    assert!(!q.is_empty());
    for query in q {
        assert!(
            query.contains("fieldSelector=spec.nodeName%3Dnode-1"),
            "every request is this node's: {query}"
        );
    }
}
