//! The compute probes at the kube client's HTTP boundary: the RuntimeClass compared field by field with
//! the mission's, and every running tenant pod checked for its class and its node's attestation label.

// Test fixtures fail the test loudly.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

mod common;

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response};
use kubebid_verify::Verifier;
use serde_json::{Value, json};

const TENANTS: &str = "apiVersion: kubebid.io/v1alpha1
kind: Tenant
metadata: {name: acme}
spec: {namespaces: [acme-prod]}
---
apiVersion: kubebid.io/v1alpha1
kind: Tenant
metadata: {name: globex}
spec: {namespaces: [globex]}
";

fn pod(name: &str, ns: &str, class: Option<&str>, node: &str, phase: &str) -> Value {
    json!({"metadata": {"name": name, "namespace": ns},
        "spec": {"runtimeClassName": class, "nodeName": node, "containers": []},
        "status": {"phase": phase}})
}

fn cluster(rc: Option<Value>) -> kube::Client {
    let (mock, mut handle) =
        tower_test::mock::pair::<Request<kube::client::Body>, Response<Full<Bytes>>>();
    tokio::spawn(async move {
        while let Some((req, send)) = handle.next_request().await {
            assert_eq!(req.method(), "GET");
            assert!(
                req.headers().get("impersonate-user").is_none(),
                "read as the verifier"
            );
            let (code, body) = match req.uri().path() {
                "/apis/node.k8s.io/v1/runtimeclasses/kubebid-secure" => match &rc {
                    Some(rc) => (200, rc.clone()),
                    None => (
                        404,
                        json!({"kind": "Status", "code": 404, "message": "not found", "reason": "NotFound"}),
                    ),
                },
                "/api/v1/nodes" => (
                    200,
                    json!({"items": [
                    {"metadata": {"name": "n1", "labels": {"kubebid.io/secure-runtime": "true"}}},
                    {"metadata": {"name": "n2", "labels": {}}}]}),
                ),
                "/api/v1/namespaces/acme-prod/pods" => (
                    200,
                    json!({"items": [
                    pod("web", "acme-prod", Some("kubebid-secure"), "n1", "Running"),
                    pod("batch", "acme-prod", Some("kubebid-secure-snp"), "n2", "Running"),
                    pod("done", "acme-prod", None, "n2", "Succeeded"),
                    // Its init container never ends: Pending, but running on its node all the same.
                    pod("stuck", "acme-prod", Some("runc"), "n1", "Pending"),
                    // Not placed yet: nothing runs.
                    pod("queued", "acme-prod", Some("runc"), "", "Pending")]}),
                ),
                "/api/v1/namespaces/globex/pods" => (
                    200,
                    json!({"items": [
                    pod("api", "globex", Some("runc"), "n1", "Running")]}),
                ),
                other => panic!("unexpected {other}"),
            };
            send.send_response(common::respond(code, &body));
        }
    });
    kube::Client::new(mock, "default")
}

fn tenancy() -> kubebid_model::tenancy::Tenancy {
    common::config(TENANTS).tenancy()
}

#[tokio::test]
async fn the_runtime_class_and_every_running_pod_are_checked() {
    let rc = json!({"metadata": {"name": "kubebid-secure"}, "handler": "kata-fc",
        "overhead": {"podFixed": {"memory": "160Mi", "cpu": "250m"}},
        "scheduling": {"nodeSelector": {"kubebid.io/secure-runtime": "true"}}});
    let f = Verifier::new(cluster(Some(rc)), 2)
        .compute(&tenancy(), None)
        .await
        .unwrap();
    assert!(f[0].passed, "{:?}", f[0]);
    let acme = f.iter().find(|x| x.tenant == "acme").unwrap();
    assert_eq!(
        acme.evidence,
        vec![
            "acme-prod/batch runs on node \"n2\", which is not labelled kubebid.io/secure-runtime=true",
            "acme-prod/stuck runs in RuntimeClass \"runc\", not a KubeBid microVM class"
        ]
    );
    let globex = f.iter().find(|x| x.tenant == "globex").unwrap();
    assert_eq!(
        globex.evidence,
        vec!["globex/api runs in RuntimeClass \"runc\", not a KubeBid microVM class"]
    );
}

#[tokio::test]
async fn a_runtime_class_that_differs_from_the_missions_fails_field_by_field() {
    let rc = json!({"metadata": {"name": "kubebid-secure"}, "handler": "runc",
        "overhead": {"podFixed": {"memory": "160Mi"}}});
    let f = Verifier::new(cluster(Some(rc)), 2)
        .compute(&tenancy(), Some("acme"))
        .await
        .unwrap();
    assert_eq!(f.len(), 2);
    let ev = &f[0].evidence;
    assert!(ev[0].starts_with("handler is \"runc\""), "{ev:?}");
    assert!(
        ev.iter()
            .any(|e| e.starts_with("overhead.podFixed.cpu is null")),
        "{ev:?}"
    );
    assert!(
        ev.iter().any(|e| e.starts_with("scheduling.nodeSelector")),
        "{ev:?}"
    );
    let missing = Verifier::new(cluster(None), 2)
        .compute(&tenancy(), Some("acme"))
        .await
        .unwrap();
    assert_eq!(
        missing[0].evidence,
        vec!["RuntimeClass kubebid-secure does not exist"]
    );
}
