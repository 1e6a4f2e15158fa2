//! The reachability matrix and the encryption probe at the kube client's HTTP boundary: every Namespace
//! and NetworkPolicy listed once, the policies KubeBid renders first (under which no tenant reaches
//! another), then hostile and careless additions that open a path, each of which must be found with the
//! rules that open it.

// Test fixtures fail the test loudly.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response};
use kubebid_model::load::ConfigSet;
use kubebid_verify::reach::{Labels, block_reaches, matches, satisfiable};
use kubebid_verify::{Finding, Verifier};
use serde_json::{Value, json};

const TENANTS: &str = "apiVersion: kubebid.io/v1alpha1
kind: Tenant
metadata: {name: acme}
spec: {namespaces: [acme-prod, acme-dev]}
---
apiVersion: kubebid.io/v1alpha1
kind: Tenant
metadata: {name: globex}
spec: {namespaces: [globex]}
---
apiVersion: kubebid.io/v1alpha1
kind: Tenant
metadata: {name: initech}
spec: {namespaces: [initech]}
";

fn set() -> ConfigSet {
    common::config(TENANTS)
}

/// Every object KubeBid renders for the tenants, plus the cluster's own namespaces.
fn rendered() -> Vec<Value> {
    let s = set();
    let mut out = Vec::new();
    for t in &s.tenants {
        out.extend(kubebid_tenancy::render::tenant(&t.object, &s.cluster_spec()).unwrap());
    }
    for ns in ["kube-system", "ingress-nginx", "default"] {
        out.push(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns, "labels": {"kubernetes.io/metadata.name": ns}}}));
    }
    out
}

fn np(ns: &str, name: &str, spec: Value) -> Value {
    json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": {"name": name, "namespace": ns}, "spec": spec})
}

/// A mock API server listing `objects` by kind (and answering single objects in `extra` by path); the
/// paths asked are recorded.
fn cluster(
    objects: Vec<Value>,
    extra: BTreeMap<String, Value>,
) -> (kube::Client, Arc<Mutex<Vec<String>>>) {
    let asked = Arc::new(Mutex::new(Vec::new()));
    let log = asked.clone();
    let (mock, mut handle) =
        tower_test::mock::pair::<Request<kube::client::Body>, Response<Full<Bytes>>>();
    tokio::spawn(async move {
        while let Some((req, send)) = handle.next_request().await {
            let path = req.uri().path().to_owned();
            log.lock().unwrap().push(path.clone());
            let list = |kind: &str| {
                json!({"kind": format!("{kind}List"), "metadata": {}, "items":
                    objects.iter().filter(|o| o["kind"] == kind).cloned().collect::<Vec<_>>()})
            };
            let (code, body) = match path.as_str() {
                "/api/v1/namespaces" => (200, list("Namespace")),
                "/apis/networking.k8s.io/v1/networkpolicies" => (200, list("NetworkPolicy")),
                "/api/v1/nodes" => (200, list("Node")),
                "/apis/cilium.io/v2/ciliumnodes" => (200, list("CiliumNode")),
                "/apis/cilium.io/v2/ciliumclusterwidenetworkpolicies" => {
                    (200, list("CiliumClusterwideNetworkPolicy"))
                }
                p => match extra.get(p) {
                    Some(o) => (200, o.clone()),
                    None => (
                        404,
                        json!({"kind": "Status", "code": 404, "reason": "NotFound", "message": "not found"}),
                    ),
                },
            };
            send.send_response(common::respond(code, &body));
        }
    });
    (kube::Client::new(mock, "default"), asked)
}

fn failing(found: &[Finding]) -> Vec<(String, String)> {
    found
        .iter()
        .filter(|f| !f.passed)
        .map(|f| (f.tenant.clone(), f.other.clone().unwrap()))
        .collect()
}

#[tokio::test]
async fn kubebid_s_own_policies_leave_no_path_between_tenants() {
    let (client, asked) = cluster(rendered(), BTreeMap::new());
    let found = Verifier::new(client, 4)
        .reachability(&set(), None)
        .await
        .unwrap();
    // Every ordered pair of the three tenants.
    assert_eq!(found.len(), 6);
    assert!(failing(&found).is_empty(), "{found:#?}");
    // Listed once each, not per pair: namespaces, policies, nodes, and the three kinds it does not model.
    let asked = asked.lock().unwrap();
    assert_eq!(asked.len(), 6, "{asked:?}");
}

#[tokio::test]
async fn a_path_needs_a_way_out_and_a_way_in() {
    let mut objects = rendered();
    // globex lets in every namespace labelled as acme's; acme-prod lets its pods out anywhere.
    objects.push(np("globex", "partner", json!({"podSelector": {"matchLabels": {"app": "api"}}, "policyTypes": ["Ingress"],
        "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"kubebid.io/tenant": "acme"}}}]}]})));
    let (client, _) = cluster(objects.clone(), BTreeMap::new());
    let found = Verifier::new(client, 4)
        .reachability(&set(), None)
        .await
        .unwrap();
    // The way in alone is no path: acme's egress is closed.
    assert!(failing(&found).is_empty(), "{found:#?}");

    objects.push(np("acme-prod", "out", json!({"podSelector": {}, "policyTypes": ["Egress"], "egress": [{"to": [{"namespaceSelector": {}}]}]})));
    let (client, _) = cluster(objects, BTreeMap::new());
    let found = Verifier::new(client, 4)
        .reachability(&set(), None)
        .await
        .unwrap();
    assert_eq!(
        failing(&found),
        vec![("acme".to_owned(), "globex".to_owned())],
        "{found:#?}"
    );
    let f = found.iter().find(|f| !f.passed).unwrap();
    assert_eq!(
        f.evidence,
        vec![
            "acme-prod → globex: out by acme-prod/out egress rule 1; in by globex/partner ingress rule 1"
        ]
    );
}

#[tokio::test]
async fn a_namespace_without_a_default_deny_is_open_to_every_tenant_that_may_leave() {
    let mut objects: Vec<Value> = rendered()
        .into_iter()
        .filter(|o| !(o["kind"] == "NetworkPolicy" && o["metadata"]["namespace"] == "initech"))
        .collect();
    // initech's only policy selects some of its pods.
    objects.push(np(
        "initech",
        "web",
        json!({"podSelector": {"matchLabels": {"app": "web"}}, "ingress": []}),
    ));
    // globex may leave to anything by address, except the pod network.
    objects.push(np(
        "globex",
        "internet",
        json!({"podSelector": {}, "policyTypes": ["Egress"],
        "egress": [{"to": [{"ipBlock": {"cidr": "0.0.0.0/0", "except": ["10.0.0.0/8"]}}]}]}),
    ));
    // acme-dev may leave to an address range that covers part of the pod network.
    objects.push(np(
        "acme-dev",
        "partial",
        json!({"podSelector": {}, "policyTypes": ["Egress"],
        "egress": [{"to": [{"ipBlock": {"cidr": "10.244.0.0/16", "except": ["10.244.0.0/17"]}}]}]}),
    ));
    let (client, _) = cluster(objects, BTreeMap::new());
    let found = Verifier::new(client, 4)
        .reachability(&set(), None)
        .await
        .unwrap();
    let f = failing(&found);
    assert_eq!(
        f,
        vec![("acme".to_owned(), "initech".to_owned())],
        "{found:#?}"
    );
    let e = &found.iter().find(|x| !x.passed).unwrap().evidence;
    assert_eq!(
        e,
        &vec![
            "acme-dev → initech: out by acme-dev/partial egress rule 1; in by initech's ingress policies do not select every pod"
        ]
    );
}

#[tokio::test]
async fn one_tenant_is_checked_against_every_other() {
    let (client, _) = cluster(rendered(), BTreeMap::new());
    let found = Verifier::new(client, 4)
        .reachability(&set(), Some("globex"))
        .await
        .unwrap();
    assert_eq!(found.len(), 2);
    assert!(found.iter().all(|f| f.tenant == "globex"));
}

#[test]
fn selectors_match_as_kubernetes_matches_them() {
    let labels: Labels = [("a", "1"), ("b", "2")]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    let m = |s: Value| matches(&s, &labels);
    assert!(m(json!({})));
    assert!(m(json!({"matchLabels": {"a": "1"}})));
    assert!(!m(json!({"matchLabels": {"a": "2"}})));
    assert!(m(
        json!({"matchExpressions": [{"key": "a", "operator": "In", "values": ["1", "3"]}]})
    ));
    assert!(!m(
        json!({"matchExpressions": [{"key": "a", "operator": "NotIn", "values": ["1"]}]})
    ));
    assert!(m(
        json!({"matchExpressions": [{"key": "c", "operator": "NotIn", "values": ["1"]}]})
    ));
    assert!(m(
        json!({"matchExpressions": [{"key": "b", "operator": "Exists"}]})
    ));
    assert!(!m(
        json!({"matchExpressions": [{"key": "b", "operator": "DoesNotExist"}]})
    ));
    assert!(!m(
        json!({"matchExpressions": [{"key": "b", "operator": "Sometimes"}]})
    ));
}

#[test]
fn contradictory_selectors_select_no_pod() {
    assert!(satisfiable(&json!({})));
    assert!(satisfiable(
        &json!({"matchLabels": {"a": "1"}, "matchExpressions": [{"key": "a", "operator": "In", "values": ["1", "2"]}]})
    ));
    assert!(!satisfiable(
        &json!({"matchLabels": {"a": "1"}, "matchExpressions": [{"key": "a", "operator": "NotIn", "values": ["1"]}]})
    ));
    assert!(!satisfiable(
        &json!({"matchExpressions": [{"key": "a", "operator": "Exists"}, {"key": "a", "operator": "DoesNotExist"}]})
    ));
    assert!(!satisfiable(
        &json!({"matchExpressions": [{"key": "a", "operator": "In", "values": ["1"]}, {"key": "a", "operator": "In", "values": ["2"]}]})
    ));
    assert!(!satisfiable(
        &json!({"matchExpressions": [{"key": "a", "operator": "In", "values": ["1"]}, {"key": "a", "operator": "NotIn", "values": ["1"]}]})
    ));
    assert!(satisfiable(
        &json!({"matchExpressions": [{"key": "a", "operator": "DoesNotExist"}, {"key": "b", "operator": "Exists"}]})
    ));
}

#[test]
fn address_blocks_reach_pods_unless_their_exceptions_cover_the_overlap() {
    let pods = vec!["10.244.0.0/16".parse().unwrap()];
    let b = |v: Value| block_reaches(&v, &pods);
    assert!(b(json!({"cidr": "0.0.0.0/0"})));
    assert!(!b(json!({"cidr": "0.0.0.0/0", "except": ["10.0.0.0/8"]})));
    assert!(!b(
        json!({"cidr": "0.0.0.0/0", "except": ["10.244.0.0/17", "10.244.128.0/17"]})
    ));
    assert!(b(json!({"cidr": "0.0.0.0/0", "except": ["10.244.0.0/17"]})));
    assert!(b(json!({"cidr": "10.244.3.0/24"})));
    assert!(!b(json!({"cidr": "192.168.0.0/16"})));
    // What does not parse is taken to reach.
    assert!(b(json!({"cidr": "not a cidr"})));
}

fn node(name: &str) -> Value {
    json!({"kind": "Node", "metadata": {"name": name}})
}

fn cilium_node(name: &str, key: Option<&str>) -> Value {
    let mut n = json!({"kind": "CiliumNode", "metadata": {"name": name}});
    if let Some(k) = key {
        n["metadata"]["annotations"] = json!({"network.cilium.io/wg-pub-key": k});
    }
    n
}

#[tokio::test]
async fn encryption_is_wireguard_on_every_node_or_said_to_be_unchecked() {
    let (client, _) = cluster(vec![node("a")], BTreeMap::new());
    let f = Verifier::new(client, 1).encryption().await.unwrap();
    assert!(f.skipped && f.passed, "{f:?}");
    assert!(f.evidence[0].contains("could not be checked"));

    let config = |wg: &str| {
        BTreeMap::from([(
            kubebid_verify::CILIUM_CONFIG.to_owned(),
            json!({"kind": "ConfigMap", "data": {"enable-wireguard": wg}}),
        )])
    };
    let objects = vec![
        node("a"),
        node("b"),
        node("c"),
        cilium_node("a", Some("k1")),
        cilium_node("b", None),
    ];
    let (client, _) = cluster(objects.clone(), config("true"));
    let f = Verifier::new(client, 1).encryption().await.unwrap();
    assert!(!f.passed && !f.skipped);
    assert_eq!(
        f.evidence,
        vec![
            "node b's Cilium agent has published no WireGuard key (network.cilium.io/wg-pub-key)",
            "node c has no CiliumNode: no Cilium agent runs there"
        ]
    );

    let (client, _) = cluster(objects, config("false"));
    let f = Verifier::new(client, 1).encryption().await.unwrap();
    assert!(
        f.evidence[0].contains("enable-wireguard is \"false\""),
        "{f:?}"
    );

    let (client, _) = cluster(
        vec![node("a"), cilium_node("a", Some("k1"))],
        config("true"),
    );
    let f = Verifier::new(client, 1).encryption().await.unwrap();
    assert!(f.passed && !f.skipped, "{f:?}");
}

#[tokio::test]
async fn a_policy_the_matrix_does_not_model_that_can_allow_leaves_every_pair_undecided() {
    let mut objects = rendered();
    // KubeBid's own encryption policy only denies: no effect on the matrix.
    objects.push(json!({"apiVersion": "cilium.io/v2", "kind": "CiliumClusterwideNetworkPolicy", "metadata": {"name": "encrypt-all"},
        "spec": {"endpointSelector": {}, "egressDeny": [{"toEndpoints": [{"matchLabels": {"io.cilium.k8s.policy.unencrypted": "true"}}]}]}}));
    let (client, _) = cluster(objects.clone(), BTreeMap::new());
    let found = Verifier::new(client, 4)
        .reachability(&set(), None)
        .await
        .unwrap();
    assert!(failing(&found).is_empty(), "{found:#?}");
    // One that allows: nothing can be proven.
    objects.push(json!({"apiVersion": "cilium.io/v2", "kind": "CiliumClusterwideNetworkPolicy", "metadata": {"name": "open"},
        "spec": {"endpointSelector": {}, "egress": [{"toEntities": ["cluster"]}]}}));
    let (client, _) = cluster(objects, BTreeMap::new());
    let found = Verifier::new(client, 4)
        .reachability(&set(), None)
        .await
        .unwrap();
    assert_eq!(failing(&found).len(), 6);
    assert!(
        found[0]
            .evidence
            .iter()
            .any(|e| e.starts_with("undecided: 1 policy")
                && e.ends_with("CiliumClusterwideNetworkPolicy open")),
        "{:?}",
        found[0].evidence
    );
}

#[test]
fn an_address_block_is_taken_to_reach_pods_when_the_pod_network_is_unknown() {
    assert!(block_reaches(&json!({"cidr": "192.168.0.0/16"}), &[]));
    assert!(block_reaches(
        &json!({"cidr": "no"}),
        &["10.244.0.0/16".parse().unwrap()]
    ));
}
