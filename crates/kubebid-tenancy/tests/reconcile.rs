//! The reconciler at the kube client's HTTP boundary. No API server can run here, so a mock stands in for
//! it (tower-test) and keeps the objects it is sent; the test checks the exact requests: a new tenant is
//! created with server-side apply (field manager `kubebid`, forced), an unchanged one gets reads only,
//! drift is repaired object by object, and an API error or a write conflict stops the reconcile naming the
//! object, with the Tenant marked Degraded.

// Test helpers fail the test by panicking on broken fixtures; that is their job.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::{Request, Response};
use kubebid_model::load::ConfigSet;
use kubebid_tenancy::reconcile::{ReconcileError, apply_all};
use kubebid_tenancy::render;
use serde_json::{Value, json};

#[derive(Default)]
struct ApiServer {
    objects: BTreeMap<String, Value>,
    log: Vec<String>,
    fail_path: Option<String>,
    /// Writes to this path answer 409 Conflict (another writer changed the object meanwhile).
    conflict_path: Option<String>,
}

fn tenant_objects() -> Vec<Value> {
    let mut set = ConfigSet::default();
    let text = "apiVersion: kubebid.io/v1alpha1\nkind: Tenant\nmetadata: {name: acme}\nspec:\n  namespaces: [acme]\n  owners: [{kind: User, name: alice}]\n  egressCidrs: [203.0.113.0/24]\n";
    assert!(set.add_text("t.yaml", text).is_empty());
    render::tenant(&set.tenants[0].object, &Default::default())
}

fn start(state: Arc<Mutex<ApiServer>>) -> kube::Client {
    let (mock, mut handle) =
        tower_test::mock::pair::<Request<kube::client::Body>, Response<Full<Bytes>>>();
    tokio::spawn(async move {
        while let Some((req, send)) = handle.next_request().await {
            let method = req.method().clone();
            let path = req.uri().path().to_owned();
            let query = req.uri().query().unwrap_or_default().to_owned();
            let content_type = req
                .headers()
                .get("content-type")
                .map(|v| v.to_str().unwrap().to_owned())
                .unwrap_or_default();
            let body = req.into_body().collect_bytes().await.unwrap();
            let mut s = state.lock().unwrap();
            s.log
                .push(format!("{method} {path}?{query} {content_type}"));
            let respond = common::respond;
            let not_found = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404, "message": "not found"});
            if s.fail_path.as_deref() == Some(path.as_str()) {
                send.send_response(respond(500, json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "InternalError", "code": 500, "message": "etcd unavailable"})));
                continue;
            }
            if method == "PATCH" && s.conflict_path.as_deref() == Some(path.as_str()) {
                send.send_response(respond(409, json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "Conflict", "code": 409, "message": "Operation cannot be fulfilled: the object has been modified"})));
                continue;
            }
            match method.as_str() {
                "GET" => {
                    let r = match s.objects.get(&path) {
                        Some(o) => respond(200, o.clone()),
                        None => respond(404, not_found),
                    };
                    send.send_response(r);
                }
                "PATCH" => {
                    let mut applied: Value = serde_json::from_slice(&body).unwrap();
                    // What a real server adds: identity, version, and a defaulted field.
                    applied["metadata"]["uid"] = json!("0b7e6a9e-1111-4222-8333-444455556666");
                    applied["metadata"]["resourceVersion"] = json!("42");
                    if applied["kind"] == "NetworkPolicy" {
                        for rule in applied["spec"]["egress"]
                            .as_array_mut()
                            .into_iter()
                            .flatten()
                        {
                            for port in rule["ports"].as_array_mut().into_iter().flatten() {
                                port.as_object_mut()
                                    .unwrap()
                                    .entry("protocol")
                                    .or_insert(json!("TCP"));
                            }
                        }
                    }
                    // A status write changes only the status of the stored object, which is returned whole.
                    if let Some(base) = path.strip_suffix("/status") {
                        let mut whole = s
                            .objects
                            .get(base)
                            .cloned()
                            .unwrap_or_else(|| panic!("status of unknown {base}"));
                        whole["status"] = applied["status"].clone();
                        s.objects.insert(base.to_owned(), whole.clone());
                        s.objects.insert(path, applied);
                        send.send_response(respond(200, whole));
                        continue;
                    }
                    s.objects.insert(path, applied.clone());
                    send.send_response(respond(200, applied));
                }
                other => panic!("unexpected {other} {path}"),
            }
        }
    });
    kube::Client::new(mock, "default")
}

fn writes(log: &[String]) -> Vec<&String> {
    log.iter().filter(|l| !l.starts_with("GET ")).collect()
}

#[tokio::test]
async fn create_then_no_op_then_repair_drift_then_stop_on_api_errors() {
    let state = Arc::new(Mutex::new(ApiServer::default()));
    let client = start(state.clone());
    let desired = tenant_objects();

    // A new tenant: every object is read (404) and then applied.
    let outcome = apply_all(&client, &desired).await.unwrap();
    assert_eq!(outcome.created.len(), desired.len());
    {
        let s = state.lock().unwrap();
        let w = writes(&s.log);
        assert_eq!(w.len(), desired.len());
        for line in &w {
            assert!(line.starts_with("PATCH "), "{line}");
            assert!(
                line.contains("fieldManager=kubebid") && line.contains("force=true"),
                "{line}"
            );
            assert!(line.ends_with("application/apply-patch+yaml"), "{line}");
        }
        assert!(
            s.log[0].starts_with("GET /api/v1/namespaces/acme?"),
            "namespace first: {}",
            s.log[0]
        );
        assert!(s.log.iter().any(|l| l.starts_with(
            "PATCH /apis/networking.k8s.io/v1/namespaces/acme/networkpolicies/default-deny-all?"
        )));
        assert!(s.log.iter().any(|l| l.starts_with("PATCH /apis/rbac.authorization.k8s.io/v1/namespaces/acme/rolebindings/tenant-admin-owners?")));
        assert!(
            s.log
                .iter()
                .any(|l| l.starts_with("PATCH /api/v1/namespaces/acme/limitranges/tenant-limits?"))
        );
    }

    // Unchanged: reads only, not a single write, though the server added fields and defaults.
    state.lock().unwrap().log.clear();
    let outcome = apply_all(&client, &desired).await.unwrap();
    assert_eq!(
        (
            outcome.created.len(),
            outcome.repaired.len(),
            outcome.unchanged
        ),
        (0, 0, desired.len())
    );
    assert!(writes(&state.lock().unwrap().log).is_empty());

    // Drift: someone weakened the default deny and deleted the limit range. Exactly those two are restored.
    {
        let mut s = state.lock().unwrap();
        s.log.clear();
        let np = s
            .objects
            .get_mut("/apis/networking.k8s.io/v1/namespaces/acme/networkpolicies/default-deny-all")
            .unwrap();
        np["spec"]["policyTypes"] = json!(["Ingress"]);
        s.objects
            .remove("/api/v1/namespaces/acme/limitranges/tenant-limits");
    }
    let outcome = apply_all(&client, &desired).await.unwrap();
    assert_eq!(outcome.repaired, ["NetworkPolicy acme/default-deny-all"]);
    assert_eq!(outcome.created, ["LimitRange acme/tenant-limits"]);
    {
        let s = state.lock().unwrap();
        assert_eq!(writes(&s.log).len(), 2);
        let np = &s.objects["/apis/networking.k8s.io/v1/namespaces/acme/networkpolicies/default-deny-all"];
        assert_eq!(np["spec"]["policyTypes"], json!(["Ingress", "Egress"]));
    }

    // An API error stops the reconcile and names the object; nothing after it is written.
    {
        let mut s = state.lock().unwrap();
        s.log.clear();
        s.objects
            .remove("/apis/rbac.authorization.k8s.io/v1/namespaces/acme/roles/tenant-admin");
        s.fail_path =
            Some("/apis/rbac.authorization.k8s.io/v1/namespaces/acme/roles/tenant-admin".into());
    }
    let err = apply_all(&client, &desired).await.unwrap_err();
    assert!(
        matches!(&err, ReconcileError::Api { object, .. } if object == "Role acme/tenant-admin"),
        "{err}"
    );
    assert!(writes(&state.lock().unwrap().log).is_empty());
}

fn acme(uid: bool) -> kubebid_model::config::Tenant {
    let mut set = ConfigSet::default();
    let text = "apiVersion: kubebid.io/v1alpha1\nkind: Tenant\nmetadata: {name: acme}\nspec:\n  namespaces: [acme]\n  owners: [{kind: User, name: alice}]\n";
    assert!(set.add_text("t.yaml", text).is_empty());
    let mut t = set.tenants.remove(0).object;
    if uid {
        t.metadata.uid = Some("5d1c2f7a-0000-4000-8000-00000000abcd".into());
        t.metadata.generation = Some(3);
    }
    t
}

#[tokio::test]
async fn an_unchanged_tenant_reconciles_without_a_single_write() {
    let state = Arc::new(Mutex::new(ApiServer::default()));
    let client = start(state.clone());
    let mut tenant = acme(true);
    let cluster = Default::default();
    state.lock().unwrap().objects.insert(
        "/apis/kubebid.io/v1alpha1/tenants/acme".into(),
        serde_json::to_value(&tenant).unwrap(),
    );
    kubebid_tenancy::operator::reconcile_tenant(&tenant, &cluster, &client)
        .await
        .unwrap();
    let status_path = "/apis/kubebid.io/v1alpha1/tenants/acme/status";
    let status = {
        let s = state.lock().unwrap();
        assert_eq!(
            s.log
                .iter()
                .filter(|l| l.starts_with(&format!("PATCH {status_path}?")))
                .count(),
            1,
            "{:?}",
            s.log
        );
        s.objects[status_path]["status"].clone()
    };
    assert_eq!(status["conditions"][0]["type"], "Ready");
    assert_eq!(status["conditions"][0]["status"], "True");
    assert_eq!(status["observedGeneration"], 3);
    // Owned objects point at the Tenant; the namespace does not (deleteNamespaces is false).
    {
        let s = state.lock().unwrap();
        let np = &s.objects["/apis/networking.k8s.io/v1/namespaces/acme/networkpolicies/default-deny-all"];
        assert_eq!(
            np["metadata"]["ownerReferences"][0]["uid"],
            "5d1c2f7a-0000-4000-8000-00000000abcd"
        );
        assert!(
            s.objects["/api/v1/namespaces/acme"]["metadata"]
                .get("ownerReferences")
                .is_none()
        );
    }
    // The Tenant as the API server now returns it, with its status: the next reconcile writes nothing.
    tenant.status = Some(serde_json::from_value(status).unwrap());
    state.lock().unwrap().log.clear();
    kubebid_tenancy::operator::reconcile_tenant(&tenant, &cluster, &client)
        .await
        .unwrap();
    assert!(
        writes(&state.lock().unwrap().log).is_empty(),
        "{:?}",
        state.lock().unwrap().log
    );
}

#[test]
fn namespaces_are_owned_only_when_the_tenant_asks_for_their_deletion() {
    let mut t = acme(true);
    let mut objects = render::tenant(&t, &Default::default());
    render::owned_by(&mut objects, &t);
    assert!(
        objects
            .iter()
            .filter(|o| o["kind"] == "Namespace")
            .all(|o| o["metadata"].get("ownerReferences").is_none())
    );
    assert!(
        objects
            .iter()
            .filter(|o| o["kind"] != "Namespace")
            .all(|o| o["metadata"]["ownerReferences"][0]["controller"] == true)
    );
    t.spec.delete_namespaces = true;
    let mut objects = render::tenant(&t, &Default::default());
    render::owned_by(&mut objects, &t);
    assert!(
        objects
            .iter()
            .all(|o| o["metadata"]["ownerReferences"][0]["kind"] == "Tenant")
    );
    // Without a UID (not yet created) nothing is owned.
    let t = acme(false);
    let mut objects = render::tenant(&t, &Default::default());
    render::owned_by(&mut objects, &t);
    assert!(
        objects
            .iter()
            .all(|o| o["metadata"].get("ownerReferences").is_none())
    );
}

#[tokio::test]
async fn a_write_conflict_stops_the_reconcile_and_marks_the_tenant_degraded() {
    let state = Arc::new(Mutex::new(ApiServer::default()));
    let client = start(state.clone());
    let tenant = acme(true);
    let quota = "/api/v1/namespaces/acme/resourcequotas/tenant-quota";
    {
        let mut s = state.lock().unwrap();
        s.objects.insert(
            "/apis/kubebid.io/v1alpha1/tenants/acme".into(),
            serde_json::to_value(&tenant).unwrap(),
        );
        s.conflict_path = Some(quota.into());
    }
    let err = kubebid_tenancy::operator::reconcile_tenant(&tenant, &Default::default(), &client)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ReconcileError::Api { object, .. } if object == "ResourceQuota acme/tenant-quota"),
        "{err}"
    );
    let s = state.lock().unwrap();
    // Nothing after the quota was written; the status was.
    assert!(
        !s.log
            .iter()
            .any(|l| l.starts_with("PATCH /api/v1/namespaces/acme/limitranges/")),
        "{:?}",
        s.log
    );
    let status = &s.objects["/apis/kubebid.io/v1alpha1/tenants/acme/status"]["status"];
    let degraded = status["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Degraded")
        .unwrap();
    assert_eq!(degraded["status"], "True");
    assert!(
        degraded["message"]
            .as_str()
            .unwrap()
            .contains("ResourceQuota acme/tenant-quota"),
        "{degraded}"
    );
}
