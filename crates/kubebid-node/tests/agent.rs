//! The agent at the kube client's HTTP boundary: the exact requests it makes to label, taint and mark a
//! Node, with hysteresis (a flapping check moves no label), and a restart that changes nothing. The API
//! server is a mock that keeps one Node and applies the merge patches it gets.

// Test fixtures fail the test loudly.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

mod common;

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::{Request, Response};
use kubebid_node::agent::Agent;
use kubebid_node::checks::Options;
use kubebid_node::host::Host;
use serde_json::{Value, json};

/// One request as the API server got it.
#[derive(Clone, Debug)]
struct Seen {
    method: String,
    path: String,
    content_type: String,
    body: Value,
}

/// A mock API server holding `node`; every request is logged.
type Log = Arc<Mutex<Vec<Seen>>>;

fn api(node: Value) -> (kube::Client, Log, Arc<Mutex<Value>>) {
    let (mock, mut handle) =
        tower_test::mock::pair::<Request<kube::client::Body>, Response<Full<Bytes>>>();
    let log = Arc::new(Mutex::new(Vec::new()));
    let state = Arc::new(Mutex::new(node));
    let (l, st) = (log.clone(), state.clone());
    tokio::spawn(async move {
        while let Some((req, send)) = handle.next_request().await {
            let (parts, body) = req.into_parts();
            let bytes = body.collect().await.unwrap().to_bytes();
            let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            let seen = Seen {
                method: parts.method.to_string(),
                path: parts.uri.path().to_owned(),
                content_type: parts
                    .headers
                    .get("content-type")
                    .map(|v| v.to_str().unwrap().to_owned())
                    .unwrap_or_default(),
                body: body.clone(),
            };
            l.lock().unwrap().push(seen.clone());
            let (status, answer) = {
                let mut node = st.lock().unwrap();
                match (seen.method.as_str(), seen.path.as_str()) {
                    ("GET", "/api/v1/nodes/node-1") => (200, node.clone()),
                    ("PATCH", "/api/v1/nodes/node-1") => {
                        assert_eq!(
                            body["metadata"]["resourceVersion"],
                            node["metadata"]["resourceVersion"],
                            "the patch is guarded by the Node's resourceVersion"
                        );
                        json_patch::merge(&mut node, &body);
                        let rv: u64 = node["metadata"]["resourceVersion"]
                            .as_str()
                            .unwrap()
                            .parse()
                            .unwrap();
                        node["metadata"]["resourceVersion"] = (rv + 1).to_string().into();
                        (200, node.clone())
                    }
                    ("PATCH", "/api/v1/nodes/node-1/status") => {
                        node["status"]["conditions"] = body["status"]["conditions"].clone();
                        (200, node.clone())
                    }
                    ("POST", "/api/v1/namespaces/default/events") => (201, body.clone()),
                    other => panic!("unexpected request {other:?}"),
                }
            };
            send.send_response(
                Response::builder()
                    .status(status)
                    .header("content-type", "application/json")
                    .body(Full::new(Bytes::from(serde_json::to_vec(&answer).unwrap())))
                    .unwrap(),
            );
        }
    });
    (kube::Client::new(mock, "default"), log, state)
}

fn node() -> Value {
    json!({"apiVersion": "v1", "kind": "Node",
        "metadata": {"name": "node-1", "uid": "u-1", "resourceVersion": "1",
            "labels": {"kubernetes.io/hostname": "node-1"}},
        "spec": {"taints": [{"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}]}})
}

fn take(log: &Log) -> Vec<Seen> {
    std::mem::take(&mut *log.lock().unwrap())
}

fn node_patches(seen: &[Seen]) -> Vec<&Seen> {
    seen.iter()
        .filter(|s| s.method == "PATCH" && s.path == "/api/v1/nodes/node-1")
        .collect()
}

fn condition(seen: &[Seen]) -> Value {
    let s = seen
        .iter()
        .find(|s| s.path == "/api/v1/nodes/node-1/status")
        .expect("the condition is patched every round");
    assert_eq!(s.method, "PATCH");
    assert_eq!(s.content_type, "application/strategic-merge-patch+json");
    let c = s.body["status"]["conditions"][0].clone();
    assert_eq!(c["type"], "KubeBidAttested");
    c
}

fn events(seen: &[Seen]) -> Vec<Value> {
    seen.iter()
        .filter(|s| s.method == "POST")
        .map(|s| s.body.clone())
        .collect()
}

#[tokio::test]
async fn labels_follow_attestation_with_hysteresis_and_a_failed_node_is_tainted() {
    if !common::have_kvm() {
        println!("SKIPPED: this machine has no /dev/kvm (the fixture's links to it)");
        return;
    }
    let fixture = common::full_node("agent");
    let (client, log, state) = api(node());
    let mut agent = Agent::new(
        client.clone(),
        "node-1".into(),
        Options::new(Host::new(&fixture.root)),
        2,
        2,
    );
    let pass = || fixture.put("/opt/kata/bin/jailer", "");
    let fail = || fixture.remove("/opt/kata/bin/jailer");

    // Passing once is not enough to label.
    let r = agent.round().await.unwrap();
    assert!(!r.changed && !r.patched);
    let seen = take(&log);
    assert_eq!(seen[0].method, "GET");
    assert!(node_patches(&seen).is_empty());
    let c = condition(&seen);
    assert_eq!(
        (c["status"].as_str(), c["reason"].as_str()),
        (Some("False"), Some("AttestationPending"))
    );
    // Twice: labelled, with the exact merge patch, and an Event.
    let r = agent.round().await.unwrap();
    assert!(r.changed && r.patched);
    let seen = take(&log);
    let p = node_patches(&seen);
    assert_eq!(p.len(), 1);
    assert_eq!(p[0].content_type, "application/merge-patch+json");
    assert_eq!(
        p[0].body,
        json!({"metadata": {"resourceVersion": "1", "labels": {
            "kubebid.io/secure-runtime": "true",
            "kubebid.io/memory-encryption": "sev-snp",
            "kubebid.io/cache-partitioning": "true"}}})
    );
    assert_eq!(condition(&seen)["reason"], "AttestationPassed");
    let ev = events(&seen);
    assert_eq!(ev.len(), 1);
    assert_eq!(ev[0]["reason"], "NodeAttested");
    assert_eq!(
        ev[0]["involvedObject"],
        json!({"apiVersion": "v1", "kind": "Node", "name": "node-1", "uid": "u-1"})
    );

    // A check that flaps moves no label.
    for _ in 0..3 {
        fail();
        agent.round().await.unwrap();
        let seen = take(&log);
        assert!(node_patches(&seen).is_empty(), "flapping: {seen:#?}");
        let c = condition(&seen);
        assert_eq!(
            (c["status"].as_str(), c["reason"].as_str()),
            (Some("True"), Some("AttestationFailing"))
        );
        assert!(c["message"].as_str().unwrap().contains("jailer"), "{c}");
        pass();
        agent.round().await.unwrap();
        assert!(node_patches(&take(&log)).is_empty());
    }

    // Failing twice in a row: the labels go and the node is tainted, its other taint kept.
    fail();
    agent.round().await.unwrap();
    take(&log);
    let r = agent.round().await.unwrap();
    assert!(r.changed && !r.verdict.secure);
    let seen = take(&log);
    let p = node_patches(&seen);
    assert_eq!(
        p[0].body,
        json!({"metadata": {"resourceVersion": "2", "labels": {
            "kubebid.io/secure-runtime": null,
            "kubebid.io/memory-encryption": null,
            "kubebid.io/cache-partitioning": null}},
            "spec": {"taints": [
                {"key": "dedicated", "value": "gpu", "effect": "NoSchedule"},
                {"key": "kubebid.io/attestation-failed", "value": "true", "effect": "NoSchedule"}]}})
    );
    let c = condition(&seen);
    assert_eq!(
        (c["status"].as_str(), c["reason"].as_str()),
        (Some("False"), Some("AttestationFailed"))
    );
    let ev = events(&seen);
    assert_eq!(
        (ev[0]["type"].as_str(), ev[0]["reason"].as_str()),
        (Some("Warning"), Some("AttestationFailed"))
    );
    assert!(
        ev[0]["message"]
            .as_str()
            .unwrap()
            .contains("kata-firecracker"),
        "{}",
        ev[0]
    );

    // Passing again twice: labelled, and the taint lifted.
    pass();
    agent.round().await.unwrap();
    agent.round().await.unwrap();
    let seen = take(&log);
    let p = node_patches(&seen);
    assert_eq!(p.len(), 1);
    assert_eq!(
        p[0].body["spec"]["taints"],
        json!([{"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}])
    );
    assert_eq!(
        p[0].body["metadata"]["labels"]["kubebid.io/secure-runtime"],
        "true"
    );

    // A restarted agent starts from the Node's labels: nothing to change.
    let mut again = Agent::new(
        client,
        "node-1".into(),
        Options::new(Host::new(&fixture.root)),
        2,
        2,
    );
    let r = again.round().await.unwrap();
    assert!(!r.changed && !r.patched);
    assert!(node_patches(&take(&log)).is_empty());
    let labels = state.lock().unwrap()["metadata"]["labels"].clone();
    assert_eq!(labels["kubebid.io/secure-runtime"], "true");
}

#[tokio::test]
async fn a_node_that_never_passed_is_not_tainted() {
    let fixture = common::full_node("never");
    fixture.remove("/etc/containerd/config.toml");
    let (client, log, _) = api(node());
    let mut agent = Agent::new(
        client,
        "node-1".into(),
        Options::new(Host::new(&fixture.root)),
        1,
        1,
    );
    for _ in 0..3 {
        let r = agent.round().await.unwrap();
        assert!(!r.patched);
    }
    let seen = take(&log);
    assert!(node_patches(&seen).is_empty());
    let c = condition(&seen);
    assert_eq!(c["status"], "False");
    assert!(
        c["message"]
            .as_str()
            .unwrap()
            .contains("/etc/containerd/config.toml is missing"),
        "{c}"
    );
}
