//! The control-plane probes at the kube client's HTTP boundary: the exact reviews they send (impersonation
//! headers, review bodies), one rules review per identity and namespace, and the verdicts drawn from the
//! answers. The API server is a mock that answers as a cluster with two mistakes would: a RoleBinding in
//! globex's namespace that lets acme's admins read Secrets, and a role that gives globex's owner
//! `pods/binding` and a ClusterRole that lets it create Namespaces.

// Test fixtures fail the test loudly.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

mod common;

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::{Request, Response};
use kubebid_verify::{Verifier, identities};
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
  owners: [{kind: User, name: bob}]
";

#[derive(Clone, Debug)]
struct Seen {
    path: String,
    user: String,
    groups: Vec<String>,
    body: Value,
}

fn base_rules() -> Value {
    json!([{"verbs": ["create"], "apiGroups": ["authorization.k8s.io"], "resources": ["selfsubjectaccessreviews", "selfsubjectrulesreviews"]}])
}

fn admin_rules() -> Value {
    json!([
        {"verbs": ["create"], "apiGroups": ["authorization.k8s.io"], "resources": ["selfsubjectaccessreviews", "selfsubjectrulesreviews"]},
        {"verbs": ["get", "list", "watch", "create", "update", "patch", "delete"], "apiGroups": [""], "resources": ["pods", "services", "secrets"]},
        {"verbs": ["get"], "apiGroups": [""], "resources": ["namespaces"], "resourceNames": ["acme-prod"]}
    ])
}

/// The mock's answer to one review.
fn answer(s: &Seen) -> Value {
    let ns = s.body["spec"]["namespace"].as_str().unwrap_or_default();
    let acme = s.groups.iter().any(|g| g == "acme-admins");
    let bob = s.user == "bob";
    if s.path.ends_with("selfsubjectrulesreviews") {
        let rules = match (ns, acme, bob) {
            ("acme-prod", true, _) => admin_rules(),
            // The mistake: a RoleBinding in globex for acme's admins.
            ("globex", true, _) => {
                let mut r = base_rules();
                r.as_array_mut()
                    .unwrap()
                    .push(json!({"verbs": ["get"], "apiGroups": [""], "resources": ["secrets"]}));
                r
            }
            ("globex", _, true) => {
                let mut r = admin_rules();
                r.as_array_mut().unwrap().push(
                    json!({"verbs": ["create"], "apiGroups": [""], "resources": ["pods/binding"]}),
                );
                r
            }
            _ => base_rules(),
        };
        json!({"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectRulesReview",
            "status": {"resourceRules": rules, "nonResourceRules": [], "incomplete": false}})
    } else {
        let attrs = &s.body["spec"]["resourceAttributes"];
        let allowed = bob && attrs["verb"] == "create" && attrs["resource"] == "namespaces";
        json!({"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
            "status": {"allowed": allowed}})
    }
}

fn api() -> (kube::Client, Arc<Mutex<Vec<Seen>>>) {
    api_with(answer)
}

fn api_with(answer: fn(&Seen) -> Value) -> (kube::Client, Arc<Mutex<Vec<Seen>>>) {
    let (mock, mut handle) =
        tower_test::mock::pair::<Request<kube::client::Body>, Response<Full<Bytes>>>();
    let log = Arc::new(Mutex::new(Vec::new()));
    let l = log.clone();
    tokio::spawn(async move {
        while let Some((req, send)) = handle.next_request().await {
            let (parts, body) = req.into_parts();
            assert_eq!(parts.method, "POST");
            assert_eq!(parts.headers["content-type"], "application/json");
            let bytes = body.collect().await.unwrap().to_bytes();
            let seen = Seen {
                path: parts.uri.path().to_owned(),
                user: parts.headers["impersonate-user"]
                    .to_str()
                    .unwrap()
                    .to_owned(),
                groups: parts
                    .headers
                    .get_all("impersonate-group")
                    .iter()
                    .map(|v| v.to_str().unwrap().to_owned())
                    .collect(),
                body: serde_json::from_slice(&bytes).unwrap(),
            };
            let a = answer(&seen);
            l.lock().unwrap().push(seen);
            send.send_response(common::respond(201, &a));
        }
    });
    (kube::Client::new(mock, "default"), log)
}

fn tenancy() -> kubebid_model::tenancy::Tenancy {
    common::config(TENANTS).tenancy()
}

#[tokio::test]
async fn every_identity_is_asked_once_per_namespace_and_the_mistakes_are_found() {
    let tenancy = tenancy();
    let ids = identities(&tenancy, None);
    let users: Vec<&str> = ids.iter().map(|i| i.user.as_str()).collect();
    assert_eq!(
        users,
        vec![
            "kubebid-verify:acme:acme-admins",
            "system:serviceaccount:acme-prod:default",
            "bob",
            "system:serviceaccount:globex:default"
        ]
    );
    let (client, log) = api();
    let progress = Mutex::new(Vec::new());
    let findings = Verifier::new(client, 4)
        .control_plane(&tenancy, None, &|done, total| {
            progress.lock().unwrap().push((done, total))
        })
        .await
        .unwrap();
    let seen = log.lock().unwrap().clone();
    // 2 namespaces × (baseline + 4 identities) rules reviews, and 4 identities × the cluster requests.
    let rules: Vec<&Seen> = seen
        .iter()
        .filter(|s| s.path == "/apis/authorization.k8s.io/v1/selfsubjectrulesreviews")
        .collect();
    assert_eq!(rules.len(), 2 * 5);
    let access = seen.len() - rules.len();
    assert_eq!(access, 4 * kubebid_verify::rbac::CLUSTER_REQUESTS.len());
    let p = progress.lock().unwrap().clone();
    assert_eq!(p.len(), seen.len());
    assert!(p.iter().all(|(_, t)| *t == seen.len()));
    // The exact review of acme's admins in globex.
    let r = rules
        .iter()
        .find(|s| {
            s.user == "kubebid-verify:acme:acme-admins" && s.body["spec"]["namespace"] == "globex"
        })
        .unwrap();
    assert_eq!(r.groups, vec!["acme-admins", "system:authenticated"]);
    assert_eq!(
        r.body,
        json!({"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectRulesReview", "spec": {"namespace": "globex"}})
    );
    let sa = rules
        .iter()
        .find(|s| s.user == "system:serviceaccount:globex:default")
        .unwrap();
    assert_eq!(
        sa.groups,
        vec![
            "system:serviceaccounts",
            "system:serviceaccounts:globex",
            "system:authenticated"
        ]
    );
    let nodes_proxy = seen
        .iter()
        .find(|s| s.body["spec"]["resourceAttributes"]["subresource"] == "proxy")
        .unwrap();
    assert_eq!(
        nodes_proxy.body["spec"]["resourceAttributes"],
        json!({"verb": "get", "group": "", "resource": "nodes", "subresource": "proxy"})
    );

    let failed: Vec<String> = findings
        .iter()
        .filter(|f| !f.passed)
        .map(|f| {
            format!(
                "{} {} {} {:?}: {}",
                f.probe,
                f.tenant,
                f.identity,
                f.namespace,
                f.evidence.join("; ")
            )
        })
        .collect();
    assert_eq!(failed.len(), 3, "{failed:#?}");
    assert!(failed.iter().any(|f| f.starts_with("control-plane/foreign-namespace acme kubebid-verify:acme:acme-admins Some(\"globex\"): get on secrets")), "{failed:#?}");
    assert!(
        failed
            .iter()
            .any(|f| f.starts_with("control-plane/own-namespace globex bob")
                && f.contains("pods/binding")),
        "{failed:#?}"
    );
    assert!(
        failed.iter().any(|f| f.starts_with(
            "control-plane/cluster-scope globex bob None: allowed: create namespaces"
        )),
        "{failed:#?}"
    );
    // Every identity got every probe: 2 namespaces each, and the cluster scope.
    assert_eq!(findings.len(), 4 * 3);
    let cross = findings
        .iter()
        .find(|f| f.probe == "control-plane/foreign-namespace" && f.tenant == "acme" && !f.passed)
        .unwrap();
    assert_eq!(cross.other.as_deref(), Some("globex"));
    let j = kubebid_verify::to_json(cross);
    assert_eq!(j["result"], "fail");
    assert!(
        j["controls"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c == "SOC 2 CC6.1")
    );
}

#[tokio::test]
async fn one_tenant_is_verified_against_all_and_an_incomplete_review_is_no_proof() {
    let tenancy = tenancy();
    let (client, log) = api();
    let findings = Verifier::new(client, 2)
        .control_plane(&tenancy, Some("acme"), &|_, _| {})
        .await
        .unwrap();
    assert!(findings.iter().all(|f| f.tenant == "acme"));
    assert!(log.lock().unwrap().iter().all(|s| s.user != "bob"));

    // An API server that cannot evaluate every rule: the verification stops, naming why.
    let (mock, mut handle) =
        tower_test::mock::pair::<Request<kube::client::Body>, Response<Full<Bytes>>>();
    tokio::spawn(async move {
        while let Some((_, send)) = handle.next_request().await {
            let a = json!({"status": {"resourceRules": [], "incomplete": true, "evaluationError": "webhook authorizer unavailable"}});
            send.send_response(common::respond(201, &a));
        }
    });
    let e = Verifier::new(kube::Client::new(mock, "default"), 2)
        .control_plane(&tenancy, None, &|_, _| {})
        .await
        .unwrap_err();
    assert!(
        e.to_string()
            .contains("incomplete: webhook authorizer unavailable"),
        "{e}"
    );
}

/// As [`answer`], but every authenticated user may read globex's Secrets (a binding to
/// `system:authenticated`).
fn everyone_reads_globex(s: &Seen) -> Value {
    let mut a = answer(s);
    if s.body["spec"]["namespace"] == "globex" && s.path.ends_with("selfsubjectrulesreviews") {
        a["status"]["resourceRules"]
            .as_array_mut()
            .unwrap()
            .push(json!({"verbs": ["get"], "apiGroups": [""], "resources": ["secrets"]}));
    }
    a
}

#[tokio::test]
async fn a_grant_to_every_authenticated_user_is_found_in_every_tenant() {
    let tenancy = tenancy();
    let (client, _) = api_with(everyone_reads_globex);
    let findings = Verifier::new(client, 4)
        .control_plane(&tenancy, Some("acme"), &|_, _| {})
        .await
        .unwrap();
    let sa = findings
        .iter()
        .find(|f| {
            f.probe == "control-plane/foreign-namespace"
                && f.identity == "system:serviceaccount:acme-prod:default"
        })
        .unwrap();
    assert!(!sa.passed, "{sa:?}");
    assert_eq!(
        sa.evidence,
        vec!["get on secrets: every authenticated user holds it here, this tenant too"]
    );
}
