//! The default-deny probe at the kube client's HTTP boundary: KubeBid's managed NetworkPolicies, read from
//! each tenant namespace and compared with what the renderer writes for that tenant (fields the API server
//! defaults tolerated; a rule added or removed, or a missing policy, found).

// Test fixtures fail the test loudly.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

mod common;

use std::collections::BTreeMap;

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response};
use kubebid_model::load::ConfigSet;
use kubebid_verify::{Verifier, holds};
use serde_json::{Value, json};

const TENANTS: &str = "apiVersion: kubebid.io/v1alpha1
kind: Tenant
metadata: {name: acme}
spec: {namespaces: [acme-prod, acme-dev]}
";

fn set() -> ConfigSet {
    common::config(TENANTS)
}

/// The rendered managed policies, by path, as the API server would keep them (a port's protocol
/// defaulted), with `change` applied.
fn cluster(change: impl Fn(&mut BTreeMap<String, Value>)) -> kube::Client {
    let s = set();
    let t = &s.tenants[0].object;
    let mut objects = BTreeMap::new();
    for o in kubebid_tenancy::render::tenant(t, &s.cluster_spec()).unwrap() {
        if o["kind"] == "NetworkPolicy" {
            let path = format!(
                "/apis/networking.k8s.io/v1/namespaces/{}/networkpolicies/{}",
                o["metadata"]["namespace"].as_str().unwrap(),
                o["metadata"]["name"].as_str().unwrap()
            );
            let mut stored = o.clone();
            stored["metadata"]["resourceVersion"] = "7".into();
            objects.insert(path, stored);
        }
    }
    change(&mut objects);
    let (mock, mut handle) =
        tower_test::mock::pair::<Request<kube::client::Body>, Response<Full<Bytes>>>();
    tokio::spawn(async move {
        while let Some((req, send)) = handle.next_request().await {
            let (code, body) = match objects.get(req.uri().path()) {
                Some(o) => (200, o.clone()),
                None => (
                    404,
                    json!({"kind": "Status", "code": 404, "reason": "NotFound", "message": "not found"}),
                ),
            };
            send.send_response(common::respond(code, &body));
        }
    });
    kube::Client::new(mock, "default")
}

#[tokio::test]
async fn the_managed_default_deny_is_present_and_unchanged() {
    let ok = Verifier::new(cluster(|_| {}), 2)
        .network(&set(), None)
        .await
        .unwrap();
    assert_eq!(ok.len(), 1);
    assert!(ok[0].passed, "{:?}", ok[0].evidence);

    let dns = "/apis/networking.k8s.io/v1/namespaces/acme-dev/networkpolicies/allow-cluster-dns";
    let deny = "/apis/networking.k8s.io/v1/namespaces/acme-prod/networkpolicies/default-deny-all";
    // What the API server writes differently is no change: empty lists left out, a port's protocol
    // defaulted.
    let defaulted = Verifier::new(
        cluster(|o| {
            let spec = o.get_mut(deny).unwrap()["spec"].as_object_mut().unwrap();
            spec.remove("ingress");
            spec.remove("egress");
            for p in o.get_mut(dns).unwrap()["spec"]["egress"][0]["ports"]
                .as_array_mut()
                .unwrap()
            {
                p["protocol"] = p.get("protocol").cloned().unwrap_or(json!("TCP"));
            }
        }),
        2,
    )
    .network(&set(), None)
    .await
    .unwrap();
    assert!(defaulted[0].passed, "{:?}", defaulted[0].evidence);
    // A field added narrows the default deny to some pods: a change.
    let narrowed = Verifier::new(
        cluster(|o| {
            o.get_mut(deny).unwrap()["spec"]["podSelector"] =
                json!({"matchLabels": {"app": "web"}});
        }),
        2,
    )
    .network(&set(), None)
    .await
    .unwrap();
    assert!(!narrowed[0].passed, "{:?}", narrowed[0].evidence);
    // A tenant that opened egress on the default-deny, and one that deleted the DNS policy.
    let f = Verifier::new(
        cluster(|o| {
            o.get_mut(deny).unwrap()["spec"]["egress"] = json!([{}]);
            o.remove(dns);
        }),
        2,
    )
    .network(&set(), None)
    .await
    .unwrap();
    assert!(!f[0].passed);
    assert!(
        f[0].evidence
            .iter()
            .any(|e| e == "acme-dev/allow-cluster-dns is missing"),
        "{:?}",
        f[0].evidence
    );
    assert!(
        f[0].evidence
            .iter()
            .any(|e| e.starts_with("acme-prod/default-deny-all differs")),
        "{:?}",
        f[0].evidence
    );
}

#[test]
fn holding_tolerates_defaults_and_nothing_else() {
    let want = json!({"ports": [{"port": 53}], "b": "x", "ingress": []});
    assert!(holds(
        &want,
        &json!({"ports": [{"port": 53, "protocol": "TCP"}], "b": "x"})
    ));
    // Another protocol, a field added, a port added or changed, or one missing: all differences.
    assert!(!holds(
        &want,
        &json!({"ports": [{"port": 53, "protocol": "UDP"}], "b": "x"})
    ));
    assert!(!holds(
        &want,
        &json!({"ports": [{"port": 53}], "b": "x", "c": 1})
    ));
    assert!(!holds(
        &want,
        &json!({"ports": [{"port": 53, "endPort": 65535}], "b": "x"})
    ));
    assert!(!holds(
        &want,
        &json!({"ports": [{"port": 53}, {"port": 80}], "b": "x"})
    ));
    assert!(!holds(&want, &json!({"ports": [{"port": 54}], "b": "x"})));
    assert!(!holds(&want, &json!({"b": "x"})));
    assert!(!holds(
        &want,
        &json!({"ports": [{"port": 53}], "b": "x", "ingress": [{}]})
    ));
}
