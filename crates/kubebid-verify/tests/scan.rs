//! Posture scans at the kube client's HTTP boundary: objects listed page by page from a mock API server,
//! judged by the policy engine as they stand (an exception that has expired no longer lifts anything),
//! and the PolicyReports applied with the exact request: path, field manager, content type and body.

// Test fixtures fail the test loudly.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::{Request, Response};
use kubebid_policy::PolicySet;
use kubebid_verify::scan::{apply, report_path, scan, stale, targets};
use serde_json::{Value, json};

const CONFIG: &str = "apiVersion: kubebid.io/v1alpha1
kind: KubeBidConfig
metadata: {name: kubebid}
spec:
  excludedNamespaces: [kube-system]
---
apiVersion: kubebid.io/v1alpha1
kind: Tenant
metadata: {name: acme}
spec:
  namespaces: [acme-prod]
  profile: baseline
---
apiVersion: kubebid.io/v1alpha1
kind: PolicyException
metadata: {name: old-debug}
spec:
  rules: [pss/privileged]
  match: {namespaces: [acme-prod], kinds: [Pod], names: [debug]}
  reason: debugging a kernel issue
  expires: \"2026-01-01T00:00:00Z\"
---
apiVersion: kubebid.io/v1alpha1
kind: PolicyException
metadata: {name: nfs-until-2030}
spec:
  rules: [pss/hostPathVolumes]
  match: {namespaces: [acme-prod], kinds: [Deployment], names: [archive]}
  reason: archive share
  expires: \"2030-01-01T00:00:00Z\"
";

fn policy() -> PolicySet {
    PolicySet::from_config(&common::config(CONFIG)).unwrap()
}

fn pod(ns: &str, name: &str, privileged: bool) -> Value {
    json!({"metadata": {"name": name, "namespace": ns, "uid": format!("uid-{name}"), "managedFields": [{"manager": "kubectl"}]},
        "spec": {"runtimeClassName": "kubebid-secure", "containers": [{"name": "c", "image": "registry.example/app:1",
            "securityContext": {"privileged": privileged},
            "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}, "limits": {"cpu": "100m", "memory": "64Mi"}}}]}})
}

/// Each request: method, path and query, content type, body.
type Seen = Arc<Mutex<Vec<(String, String, String, String)>>>;

/// Lists by path; pods come in two pages. Every request is recorded with its query.
fn cluster() -> (kube::Client, Seen) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    let mut lists: BTreeMap<&str, Vec<Value>> = BTreeMap::new();
    // The tenant's Namespace as KubeBid renders it.
    let set = common::config(CONFIG);
    let mut acme_prod =
        kubebid_tenancy::render::tenant(&set.tenants[0].object, &set.cluster_spec())
            .unwrap()
            .into_iter()
            .find(|o| o["kind"] == "Namespace")
            .unwrap();
    acme_prod["metadata"]["uid"] = "uid-ns".into();
    lists.insert(
        "/api/v1/namespaces",
        vec![
            acme_prod,
            json!({"metadata": {"name": "kube-system", "uid": "uid-ks"}}),
        ],
    );
    lists.insert("/apis/apps/v1/deployments", vec![json!({"metadata": {"name": "archive", "namespace": "acme-prod", "uid": "uid-archive"},
        "spec": {"selector": {"matchLabels": {"a": "b"}}, "template": {"metadata": {"labels": {"a": "b"}},
        "spec": {"runtimeClassName": "kubebid-secure", "containers": [{"name": "c", "image": "registry.example/app:1",
            "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}, "limits": {"cpu": "100m", "memory": "64Mi"}}}], "volumes": [{"name": "v", "hostPath": {"path": "/srv/archive"}}]}}}})]);
    // Reports written before: KubeBid's in acme-prod and in a namespace no longer judged, and another
    // tool's.
    lists.insert(
        "/apis/wgpolicyk8s.io/v1alpha2/policyreports",
        vec![
            json!({"metadata": {"name": "kubebid", "namespace": "acme-prod"}}),
            json!({"metadata": {"name": "kubebid", "namespace": "old-tenant"}}),
            json!({"metadata": {"name": "kyverno-polr", "namespace": "old-tenant"}}),
        ],
    );
    // An object the engine cannot read: it must be in the report as an error, not left out.
    lists.insert(
        "/api/v1/replicationcontrollers",
        vec![
            json!({"metadata": {"name": "odd", "namespace": "acme-prod", "uid": "uid-odd"},
            "spec": {"template": {"spec": {"containers": "not a list"}}}}),
        ],
    );
    let (mock, mut handle) =
        tower_test::mock::pair::<Request<kube::client::Body>, Response<Full<Bytes>>>();
    tokio::spawn(async move {
        while let Some((req, send)) = handle.next_request().await {
            let path = req.uri().path().to_owned();
            let query = req.uri().query().unwrap_or_default().to_owned();
            let method = req.method().to_string();
            let ctype = req
                .headers()
                .get("content-type")
                .map(|v| v.to_str().unwrap().to_owned())
                .unwrap_or_default();
            let body = req.into_body().collect().await.unwrap().to_bytes();
            log.lock().unwrap().push((
                method.clone(),
                format!("{path}?{query}"),
                ctype,
                String::from_utf8_lossy(&body).into_owned(),
            ));
            let list = |items: Vec<Value>, cont: &str| json!({"kind": "List", "metadata": {"continue": cont}, "items": items});
            let (code, answer) = match (method.as_str(), path.as_str()) {
                ("PATCH", _) => (200, serde_json::from_slice(&body).unwrap()),
                (_, "/api/v1/pods") if !query.contains("continue=") => (
                    200,
                    list(
                        vec![
                            pod("acme-prod", "debug", true),
                            pod("kube-system", "proxy", true),
                        ],
                        "page/2",
                    ),
                ),
                (_, "/api/v1/pods") => {
                    assert!(query.contains("continue=page%2F2"), "{query}");
                    (200, list(vec![pod("acme-prod", "web", false)], ""))
                }
                // This cluster does not serve Ingresses.
                (_, "/apis/networking.k8s.io/v1/ingresses") => (
                    404,
                    json!({"kind": "Status", "code": 404, "reason": "NotFound", "message": "the server could not find the requested resource"}),
                ),
                (_, p) => (200, list(lists.get(p).cloned().unwrap_or_default(), "")),
            };
            send.send_response(common::respond(code, &answer));
        }
    });
    (kube::Client::new(mock, "default"), seen)
}

fn results<'a>(report: &'a Value, name: &str) -> Vec<(&'a str, &'a str)> {
    report["results"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["resources"][0]["name"] == name)
        .map(|r| (r["rule"].as_str().unwrap(), r["result"].as_str().unwrap()))
        .collect()
}

#[tokio::test]
async fn existing_objects_are_judged_as_they_stand_and_reported_per_namespace() {
    let (client, seen) = cluster();
    let now = jiff::Timestamp::now();
    let s = scan(&client, &policy(), None, now, &|_| {}).await.unwrap();
    // Every kind listed, each as a page of at most 500, pods twice (two pages).
    let asked: Vec<String> = seen.lock().unwrap().iter().map(|r| r.1.clone()).collect();
    assert_eq!(asked.len(), targets().len() + 1, "{asked:?}");
    assert!(asked.iter().all(|p| p.contains("limit=500")));

    let names: Vec<String> = s.reports.iter().map(report_path).collect();
    assert_eq!(
        names,
        vec![
            "/apis/wgpolicyk8s.io/v1alpha2/clusterpolicyreports/kubebid",
            "/apis/wgpolicyk8s.io/v1alpha2/namespaces/acme-prod/policyreports/kubebid",
        ],
        "no report for the excluded kube-system"
    );
    let ns = &s.reports[1];
    assert_eq!(ns["kind"], "PolicyReport");
    assert_eq!(ns["apiVersion"], "wgpolicyk8s.io/v1alpha2");
    // The exception for `debug` expired in January: the privileged pod fails now.
    assert!(
        results(ns, "debug").contains(&("pss/privileged", "fail")),
        "{ns:#}"
    );
    // The archive's exception holds until 2030: its host path is skipped, with the exception named.
    let archive: Vec<&Value> = ns["results"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["resources"][0]["name"] == "archive")
        .collect();
    assert!(
        archive.iter().any(|r| r["rule"] == "pss/hostPathVolumes"
            && r["result"] == "skip"
            && r["properties"]["exception"] == "nfs-until-2030"),
        "{archive:#?}"
    );
    assert_eq!(results(ns, "web"), vec![("admission", "pass")]);
    assert_eq!(results(ns, "odd"), vec![("admission", "error")]);
    assert_eq!(s.unreadable.len(), 1, "{:?}", s.unreadable);
    // Failures and errors come first.
    let order: Vec<&str> = ns["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["result"].as_str().unwrap())
        .collect();
    assert!(
        order
            .windows(2)
            .all(|w| (w[0] == "pass") <= (w[1] == "pass")),
        "{order:?}"
    );
    assert_eq!(ns["summary"]["fail"], 1);
    assert_eq!(ns["summary"]["skip"], 1);
    assert_eq!(ns["results"][0]["resources"][0]["uid"], "uid-debug");
    assert_eq!(ns["results"][0]["properties"]["tenant"], "acme");
    assert_eq!(ns["results"][0]["timestamp"]["seconds"], now.as_second());
    // The cluster report: the tenant's Namespace, judged; kube-system is not.
    let cluster_report = &s.reports[0];
    assert_eq!(
        results(cluster_report, "acme-prod"),
        vec![("admission", "pass")]
    );
    assert!(results(cluster_report, "kube-system").is_empty());

    // One namespace alone: its lists and its report only.
    seen.lock().unwrap().clear();
    let one = scan(&client, &policy(), Some("acme-prod"), now, &|_| {})
        .await
        .unwrap();
    assert_eq!(one.reports.len(), 1);
    let asked: Vec<String> = seen.lock().unwrap().iter().map(|r| r.1.clone()).collect();
    assert!(
        asked.contains(&"/api/v1/namespaces/acme-prod/services?limit=500".to_owned()),
        "{asked:?}"
    );
    assert!(
        asked.contains(
            &"/api/v1/namespaces?limit=500&fieldSelector=metadata.name%3Dacme-prod".to_owned()
        ),
        "{asked:?}"
    );
}

#[tokio::test]
async fn reports_are_written_by_server_side_apply() {
    let (client, seen) = cluster();
    let s = scan(&client, &policy(), None, jiff::Timestamp::now(), &|_| {})
        .await
        .unwrap();
    seen.lock().unwrap().clear();
    for r in &s.reports {
        apply(&client, r).await.unwrap();
    }
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 2);
    let (method, path, ctype, body) = &seen[1];
    assert_eq!(method, "PATCH");
    assert_eq!(
        path,
        "/apis/wgpolicyk8s.io/v1alpha2/namespaces/acme-prod/policyreports/kubebid?fieldManager=kubebid-scanner&force=true"
    );
    assert_eq!(ctype, "application/apply-patch+yaml");
    let body: Value = serde_json::from_str(body).unwrap();
    assert_eq!(body["metadata"]["name"], "kubebid");
    assert_eq!(
        body["metadata"]["labels"]["app.kubernetes.io/managed-by"],
        "kubebid"
    );
}

#[tokio::test]
async fn a_report_left_in_a_namespace_no_longer_judged_is_emptied() {
    let (client, seen) = cluster();
    let now = jiff::Timestamp::now();
    let s = scan(&client, &policy(), None, now, &|_| {}).await.unwrap();
    seen.lock().unwrap().clear();
    let empty = stale(&client, &s.reports, now).await.unwrap();
    assert_eq!(
        seen.lock().unwrap()[0].1,
        "/apis/wgpolicyk8s.io/v1alpha2/policyreports?labelSelector=app.kubernetes.io%2Fmanaged-by%3Dkubebid"
    );
    assert_eq!(empty.len(), 1, "{empty:#?}");
    assert_eq!(
        report_path(&empty[0]),
        "/apis/wgpolicyk8s.io/v1alpha2/namespaces/old-tenant/policyreports/kubebid"
    );
    assert_eq!(empty[0]["results"], json!([]));
    assert_eq!(empty[0]["summary"]["fail"], 0);
}
