//! The admission probes at the kube client's HTTP boundary: every object of the corpus is created with
//! `dryRun=All` in the tenant's namespace as the tenant's owner, and judged from the answer. The mock API
//! server refuses what KubeBid refuses, except a PodTemplate (the neighbour kind a webhook's rules might
//! leave out) and a ConfigMap it wrongly refuses: both must show as failures.

// Test fixtures fail the test loudly.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

mod common;

use common::respond;

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::{Request, Response};
use kubebid_verify::Verifier;
use kubebid_verify::admission::{CORPUS, Must};
use serde_json::{Value, json};

const TENANTS: &str = "apiVersion: kubebid.io/v1alpha1
kind: Tenant
metadata: {name: acme}
spec:
  namespaces: [acme-prod]
  owners: [{kind: Group, name: acme-admins}]
---
apiVersion: kubebid.io/v1alpha1
kind: Tenant
metadata: {name: globex}
spec:
  namespaces: [globex]
";

#[tokio::test]
async fn hostile_objects_must_be_refused_and_compliant_ones_admitted() {
    let (mock, mut handle) =
        tower_test::mock::pair::<Request<kube::client::Body>, Response<Full<Bytes>>>();
    let seen = Arc::new(Mutex::new(Vec::<(String, String, Value)>::new()));
    let log = seen.clone();
    tokio::spawn(async move {
        while let Some((req, send)) = handle.next_request().await {
            let (parts, body) = req.into_parts();
            assert_eq!(parts.method, "POST");
            let body: Value =
                serde_json::from_slice(&body.collect().await.unwrap().to_bytes()).unwrap();
            let user = parts.headers["impersonate-user"]
                .to_str()
                .unwrap()
                .to_owned();
            log.lock()
                .unwrap()
                .push((parts.uri.to_string(), user, body.clone()));
            let name = body["metadata"]["name"].as_str().unwrap_or_default();
            let kind = body["kind"].as_str().unwrap_or_default();
            let refuse = |msg: &str| {
                respond(
                    403,
                    &json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 403,
                    "reason": "Forbidden", "message": format!("admission webhook \"validate.kubebid.io\" denied the request: {msg}")}),
                )
            };
            let answer = match (kind, name) {
                ("PodTemplate", _) => respond(201, &body),
                ("ConfigMap", _) => refuse("over-blocking"),
                (_, n) if n == "kubebid-verify-web" || n == "kubebid-verify-own" => {
                    respond(201, &body)
                }
                _ => refuse("pss/privileged"),
            };
            send.send_response(answer);
        }
    });
    let tenancy = common::config(TENANTS).tenancy();
    let findings = Verifier::new(kube::Client::new(mock, "default"), 4)
        .admission(&tenancy, None, &|_, _| {})
        .await
        .unwrap();
    assert_eq!(findings.len(), 2 * CORPUS.len());
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 2 * CORPUS.len());
    for (uri, user, body) in &seen {
        assert!(uri.ends_with("?dryRun=All"), "{uri}");
        let ns = body["metadata"]["namespace"].as_str().unwrap();
        assert!(uri.contains(&format!("/namespaces/{ns}/")), "{uri}");
        match ns {
            "acme-prod" => assert_eq!(user, "kubebid-verify:acme:acme-admins"),
            "globex" => assert_eq!(user, "system:serviceaccount:globex:default"),
            other => panic!("{other}"),
        }
    }
    // Cross-tenant objects name the other tenant's namespace.
    let alias = seen
        .iter()
        .find(|(_, _, b)| {
            b["metadata"]["name"] == "kubebid-verify-alias"
                && b["metadata"]["namespace"] == "acme-prod"
        })
        .unwrap();
    assert_eq!(
        alias.2["spec"]["externalName"],
        "db.globex.svc.cluster.local"
    );
    let failed: Vec<String> = findings
        .iter()
        .filter(|f| !f.passed)
        .map(|f| format!("{} {}: {}", f.probe, f.tenant, f.evidence[0]))
        .collect();
    assert_eq!(failed.len(), 4, "{failed:#?}");
    for tenant in ["acme", "globex"] {
        assert!(
            failed.contains(&format!(
                "admission/hostile {tenant}: privileged pod in a PodTemplate: admitted (dryRun=All)"
            )),
            "{failed:#?}"
        );
        assert!(
            failed.iter().any(|f| f.starts_with(&format!(
                "admission/compliant {tenant}: a ConfigMap: refused (403)"
            ))),
            "{failed:#?}"
        );
    }
    let passed_hostile = findings
        .iter()
        .filter(|f| f.passed && f.probe == "admission/hostile")
        .count();
    assert_eq!(
        passed_hostile,
        2 * (CORPUS.iter().filter(|c| c.must == Must::Refuse).count() - 1)
    );
}

#[tokio::test]
async fn an_answer_that_is_neither_admission_nor_refusal_is_no_verdict() {
    let (mock, mut handle) =
        tower_test::mock::pair::<Request<kube::client::Body>, Response<Full<Bytes>>>();
    tokio::spawn(async move {
        while let Some((_, send)) = handle.next_request().await {
            send.send_response(common::respond(
                500,
                &json!({"kind": "Status", "code": 500, "message": "etcd is down"}),
            ));
        }
    });
    let e = Verifier::new(kube::Client::new(mock, "default"), 2)
        .admission(&common::config(TENANTS).tenancy(), Some("acme"), &|_, _| {})
        .await
        .unwrap_err();
    assert!(e.to_string().contains("dry-run create of"), "{e}");
}
