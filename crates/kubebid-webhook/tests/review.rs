//! The review core with AdmissionReview JSON as the API server sends it: every operation, mutation that
//! validation then admits, and bad input.

// Test helpers fail the test by panicking on broken fixtures; that is their job.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use jiff::Timestamp;
use kubebid_model::load::ConfigSet;
use kubebid_policy::PolicySet;
use kubebid_webhook::review::{BadReview, Endpoint, review};
use proptest::prelude::*;
use serde_json::{Value, json};

const CONFIG: &str = "apiVersion: kubebid.io/v1alpha1\nkind: Tenant\nmetadata: {name: acme}\nspec:\n  namespaces: [acme]\n  rules: {tenant/pod-connect: enforce}\n---\napiVersion: kubebid.io/v1alpha1\nkind: Tenant\nmetadata: {name: globex}\nspec:\n  namespaces: [globex]\n  mutate: {runtimeClassName: false}\n";

fn policy() -> PolicySet {
    let mut set = ConfigSet::default();
    assert!(set.add_text("c.yaml", CONFIG).is_empty());
    PolicySet::from_config(&set).expect("compiles")
}

fn admission(
    op: &str,
    resource: &str,
    sub: Option<&str>,
    ns: &str,
    name: &str,
    object: Value,
    old: Value,
) -> Value {
    let kind = object
        .get("kind")
        .or_else(|| old.get("kind"))
        .cloned()
        .unwrap_or(json!("Pod"));
    let api = object
        .get("apiVersion")
        .or_else(|| old.get("apiVersion"))
        .and_then(Value::as_str)
        .unwrap_or("v1")
        .to_owned();
    let (group, version) = api
        .split_once('/')
        .map_or(("", api.as_str()), |(g, v)| (g, v));
    let mut req = json!({
        "uid": "705ab4f5-6393-11e8-b7cc-42010a800002",
        "kind": {"group": group, "version": version, "kind": kind},
        "resource": {"group": group, "version": version, "resource": resource},
        "name": name,
        "namespace": ns,
        "operation": op,
        "userInfo": {"username": "alice@acme.example", "groups": ["acme-admins", "system:authenticated"]},
        "object": object,
        "oldObject": old,
        "dryRun": false
    });
    if let Some(s) = sub {
        req["subResource"] = json!(s);
    }
    json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": req})
}

fn run(endpoint: Endpoint, body: &Value) -> Value {
    let out = review(
        &policy(),
        endpoint,
        &serde_json::to_vec(body).unwrap(),
        Timestamp::now(),
    )
    .expect("reviewed");
    let v: Value = serde_json::from_slice(&out.body).unwrap();
    assert_eq!(v["apiVersion"], "admission.k8s.io/v1");
    assert_eq!(v["kind"], "AdmissionReview");
    assert_eq!(v["response"]["uid"], "705ab4f5-6393-11e8-b7cc-42010a800002");
    v["response"].clone()
}

fn container(name: &str) -> Value {
    json!({"name": name, "image": "ghcr.io/acme/app:1",
        "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}, "limits": {"cpu": "1", "memory": "128Mi"}}})
}

/// A pod that is compliant except for what mutation fills in.
fn mutable_pod(ns: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web", "namespace": ns},
        "spec": {"securityContext": {"runAsNonRoot": true}, "initContainers": [container("init")], "containers": [container("app")]}})
}

fn apply_patch(object: &Value, response: &Value) -> Value {
    let mut patched = object.clone();
    if let Some(p) = response.get("patch").and_then(Value::as_str) {
        assert_eq!(response["patchType"], "JSONPatch");
        let bytes = base64_decode(p);
        let patch: json_patch_types::Patch = serde_json::from_slice(&bytes).unwrap();
        json_patch_types::patch(&mut patched, &patch).unwrap();
    }
    patched
}

fn base64_decode(s: &str) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD
        .decode(s)
        .expect("the patch is base64")
}

mod json_patch_types {
    pub use json_patch::{Patch, patch};
}

#[test]
fn create_is_denied_with_rule_path_and_fix() {
    let r = run(
        Endpoint::Validate,
        &admission(
            "CREATE",
            "pods",
            None,
            "acme",
            "web",
            mutable_pod("acme"),
            Value::Null,
        ),
    );
    assert_eq!(r["allowed"], false);
    let msg = r["status"]["message"].as_str().unwrap();
    assert!(
        msg.contains("[tenant/runtime-class] spec.runtimeClassName"),
        "{msg}"
    );
    assert!(msg.contains("[pss/allowPrivilegeEscalation] spec.initContainers[0].securityContext.allowPrivilegeEscalation"), "{msg}");
    assert!(msg.contains("(fix: "), "{msg}");
    assert_eq!(r["status"]["code"], 403);
}

#[test]
fn mutation_then_validation_admits() {
    for ns in ["acme", "globex"] {
        let pod = mutable_pod(ns);
        let m = run(
            Endpoint::Mutate,
            &admission("CREATE", "pods", None, ns, "web", pod.clone(), Value::Null),
        );
        assert_eq!(m["allowed"], true);
        let patched = apply_patch(&pod, &m);
        let v = run(
            Endpoint::Validate,
            &admission(
                "CREATE",
                "pods",
                None,
                ns,
                "web",
                patched.clone(),
                Value::Null,
            ),
        );
        if ns == "acme" {
            assert_eq!(v["allowed"], true, "{v}");
            assert_eq!(patched["spec"]["runtimeClassName"], "kubebid-secure");
        } else {
            // globex turned runtime-class mutation off: the rest is fixed, the runtime class is not.
            assert_eq!(v["allowed"], false);
            let msg = v["status"]["message"].as_str().unwrap();
            assert!(
                msg.contains("tenant/runtime-class") && !msg.contains("pss/"),
                "{msg}"
            );
        }
    }
}

/// The API server has defaulted `imagePullPolicy` (IfNotPresent for a tagged image) before any webhook sees
/// the pod: /mutate turns it to Always, in the pod's own containers and in ephemeral containers added later
/// through their subresource, where the patch touches nothing else of the running pod.
#[test]
fn images_are_always_pulled_and_ephemeral_containers_are_mutated_alone() {
    let mut pod = mutable_pod("acme");
    pod["spec"]["containers"][0]["imagePullPolicy"] = json!("IfNotPresent");
    let m = run(
        Endpoint::Mutate,
        &admission(
            "CREATE",
            "pods",
            None,
            "acme",
            "web",
            pod.clone(),
            Value::Null,
        ),
    );
    let running = apply_patch(&pod, &m);
    assert_eq!(
        running["spec"]["containers"][0]["imagePullPolicy"],
        "Always"
    );
    assert_eq!(
        running["spec"]["initContainers"][0]["imagePullPolicy"],
        "Always"
    );
    // Later, a debug container through pods/ephemeralcontainers.
    let mut debug = running.clone();
    debug["spec"]["ephemeralContainers"] = json!([{"name": "debug", "image": "ghcr.io/acme/debug:1", "imagePullPolicy": "IfNotPresent"}]);
    let m = run(
        Endpoint::Mutate,
        &admission(
            "UPDATE",
            "pods",
            Some("ephemeralcontainers"),
            "acme",
            "web",
            debug.clone(),
            running.clone(),
        ),
    );
    assert_eq!(m["allowed"], true);
    let patched = apply_patch(&debug, &m);
    assert_eq!(
        patched["spec"]["ephemeralContainers"][0]["imagePullPolicy"],
        "Always"
    );
    assert_eq!(
        patched["spec"]["ephemeralContainers"][0]["securityContext"]["allowPrivilegeEscalation"],
        false
    );
    let mut rest = patched.clone();
    rest["spec"]
        .as_object_mut()
        .unwrap()
        .remove("ephemeralContainers");
    let mut before = running.clone();
    before["spec"]
        .as_object_mut()
        .unwrap()
        .remove("ephemeralContainers");
    assert_eq!(rest, before, "nothing but the ephemeral containers changed");
    // A plain pod UPDATE (labels) is never mutated.
    let mut relabelled = running.clone();
    relabelled["metadata"]["labels"] = json!({"a": "b"});
    let m = run(
        Endpoint::Mutate,
        &admission("UPDATE", "pods", None, "acme", "web", relabelled, running),
    );
    assert!(m.get("patch").is_none_or(Value::is_null), "{m}");
}

#[test]
fn updates_that_open_a_node_port_or_drop_namespace_labels_are_denied() {
    let svc = |t: &str| json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s", "namespace": "acme"}, "spec": {"type": t, "ports": [{"port": 80}]}});
    let r = run(
        Endpoint::Validate,
        &admission(
            "UPDATE",
            "services",
            None,
            "acme",
            "s",
            svc("NodePort"),
            svc("ClusterIP"),
        ),
    );
    assert_eq!(r["allowed"], false);
    assert!(
        r["status"]["message"]
            .as_str()
            .unwrap()
            .contains("tenant/service-nodeport")
    );
    let ns = |labels: Value| json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "acme", "labels": labels}});
    let old = ns(
        json!({"kubebid.io/tenant": "acme", "pod-security.kubernetes.io/enforce": "restricted"}),
    );
    let new = ns(json!({"kubebid.io/tenant": "acme"}));
    let r = run(
        Endpoint::Validate,
        &admission("UPDATE", "namespaces", None, "", "acme", new, old),
    );
    assert_eq!(r["allowed"], false);
    assert!(
        r["status"]["message"]
            .as_str()
            .unwrap()
            .contains("pod-security.kubernetes.io/enforce")
    );
}

#[test]
fn deleting_managed_objects_is_denied_and_other_deletes_pass() {
    let np = |name: &str, labels: Value| json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": {"name": name, "namespace": "acme", "labels": labels}, "spec": {"podSelector": {}}});
    let r = run(
        Endpoint::Validate,
        &admission(
            "DELETE",
            "networkpolicies",
            None,
            "acme",
            "default-deny-all",
            Value::Null,
            np("default-deny-all", json!({"kubebid.io/managed": "true"})),
        ),
    );
    assert_eq!(r["allowed"], false);
    let message = r["status"]["message"].as_str().unwrap();
    assert!(message.contains("tenant/managed-object"));
    // The denial names the object by its kind and name, as the request does.
    assert!(
        message.starts_with("KubeBid denied NetworkPolicy \"default-deny-all\""),
        "{message}"
    );
    // Kubernetes' garbage collector (and the namespace controller) delete managed objects by design.
    let mut gc = admission(
        "DELETE",
        "networkpolicies",
        None,
        "acme",
        "default-deny-all",
        Value::Null,
        np("default-deny-all", json!({"kubebid.io/managed": "true"})),
    );
    for user in [
        "system:serviceaccount:kube-system:generic-garbage-collector",
        "system:serviceaccount:kube-system:namespace-controller",
        "system:kube-controller-manager",
    ] {
        gc["request"]["userInfo"] = json!({"username": user});
        assert_eq!(run(Endpoint::Validate, &gc)["allowed"], true, "{user}");
    }
    // So do cluster admins repairing one.
    gc["request"]["userInfo"] = json!({"username": "root", "groups": ["system:masters"]});
    gc["request"]["operation"] = json!("UPDATE");
    gc["request"]["object"] = np("default-deny-all", json!({"kubebid.io/managed": "true"}));
    assert_eq!(run(Endpoint::Validate, &gc)["allowed"], true);
    let r = run(
        Endpoint::Validate,
        &admission(
            "DELETE",
            "networkpolicies",
            None,
            "acme",
            "mine",
            Value::Null,
            np("mine", json!({})),
        ),
    );
    assert_eq!(r["allowed"], true);
}

#[test]
fn connect_is_judged_per_tenant() {
    let opts = json!({"apiVersion": "v1", "kind": "PodExecOptions", "command": ["sh"], "stdin": true, "tty": true});
    let r = run(
        Endpoint::Validate,
        &admission(
            "CONNECT",
            "pods",
            Some("exec"),
            "acme",
            "web-0",
            opts.clone(),
            Value::Null,
        ),
    );
    assert_eq!(
        r["allowed"], false,
        "acme sets tenant/pod-connect to enforce"
    );
    assert!(
        r["status"]["message"]
            .as_str()
            .unwrap()
            .contains("exec into pod acme/web-0")
    );
    let r = run(
        Endpoint::Validate,
        &admission(
            "CONNECT",
            "pods",
            Some("exec"),
            "globex",
            "web-0",
            opts,
            Value::Null,
        ),
    );
    assert_eq!(r["allowed"], true);
    assert_eq!(
        r["auditAnnotations"]["tenant-pod-connect"],
        "[tenant/pod-connect] exec into pod globex/web-0"
    );
}

#[test]
fn ephemeral_containers_subresource_is_checked() {
    let mut pod = mutable_pod("globex");
    pod["spec"]["runtimeClassName"] = json!("kubebid-secure");
    pod["spec"]["securityContext"]["seccompProfile"] = json!({"type": "RuntimeDefault"});
    for list in ["initContainers", "containers"] {
        pod["spec"][list][0]["securityContext"] =
            json!({"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}});
    }
    let mut with_debug = pod.clone();
    with_debug["spec"]["ephemeralContainers"] = json!([{"name": "debugger", "image": "ghcr.io/acme/debug", "securityContext": {"privileged": true}}]);
    let r = run(
        Endpoint::Validate,
        &admission(
            "UPDATE",
            "pods",
            Some("ephemeralcontainers"),
            "globex",
            "web",
            with_debug,
            pod,
        ),
    );
    assert_eq!(r["allowed"], false);
    assert!(
        r["status"]["message"]
            .as_str()
            .unwrap()
            .contains("spec.ephemeralContainers[0].securityContext.privileged")
    );
}

#[test]
fn dry_run_is_decided_the_same_way_and_warnings_are_returned() {
    let mut body = admission(
        "CREATE",
        "pods",
        None,
        "acme",
        "web",
        mutable_pod("acme"),
        Value::Null,
    );
    body["request"]["dryRun"] = json!(true);
    assert_eq!(run(Endpoint::Validate, &body)["allowed"], false);
    let mut set = ConfigSet::default();
    assert!(set.add_text("c.yaml", "apiVersion: kubebid.io/v1alpha1\nkind: KubeBidConfig\nmetadata: {name: c}\nspec:\n  rules: {tenant/node-name: warn}\n").is_empty());
    let p = PolicySet::from_config(&set).unwrap();
    let mut pod = mutable_pod("x");
    pod["spec"]["nodeName"] = json!("n1");
    let out = review(
        &p,
        Endpoint::Validate,
        &serde_json::to_vec(&admission(
            "CREATE",
            "pods",
            None,
            "x",
            "web",
            pod,
            Value::Null,
        ))
        .unwrap(),
        Timestamp::now(),
    )
    .unwrap();
    let v: Value = serde_json::from_slice(&out.body).unwrap();
    assert!(
        v["response"]["warnings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|w| w.as_str().unwrap().contains("tenant/node-name"))
    );
}

#[test]
fn undecodable_objects_are_denied_not_admitted() {
    let mut pod = mutable_pod("acme");
    pod["spec"]["containers"][0]["securityContext"] = json!({"privileged": "yes please"});
    for endpoint in [Endpoint::Validate, Endpoint::Mutate] {
        let r = run(
            endpoint,
            &admission(
                "CREATE",
                "pods",
                None,
                "acme",
                "web",
                pod.clone(),
                Value::Null,
            ),
        );
        assert_eq!(r["allowed"], false);
        assert!(
            r["status"]["message"]
                .as_str()
                .unwrap()
                .contains("spec.containers[0].securityContext.privileged"),
            "{r}"
        );
    }
}

#[test]
fn bodies_that_are_not_admission_reviews_are_errors() {
    let p = policy();
    let now = Timestamp::now();
    assert!(matches!(
        review(&p, Endpoint::Validate, b"", now),
        Err(BadReview::Malformed(_))
    ));
    assert!(matches!(
        review(&p, Endpoint::Validate, b"{\"kind\": \"Pod\"}", now),
        Err(BadReview::Malformed(_))
    ));
    assert!(matches!(
        review(
            &p,
            Endpoint::Validate,
            br#"{"apiVersion": "admission.k8s.io/v1beta1", "kind": "AdmissionReview"}"#,
            now
        ),
        Err(BadReview::Version(_))
    ));
    assert!(matches!(
        review(
            &p,
            Endpoint::Validate,
            br#"{"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview"}"#,
            now
        ),
        Err(BadReview::NoRequest)
    ));
    let mut body = admission(
        "CREATE",
        "pods",
        None,
        "acme",
        "web",
        mutable_pod("acme"),
        Value::Null,
    );
    body["request"]["operation"] = json!("EXPLODE");
    assert!(
        review(
            &p,
            Endpoint::Validate,
            &serde_json::to_vec(&body).unwrap(),
            now
        )
        .is_err()
    );
}

#[test]
fn kubebid_service_account_is_exempt() {
    let mut body = admission(
        "CREATE",
        "pods",
        None,
        "acme",
        "web",
        mutable_pod("acme"),
        Value::Null,
    );
    body["request"]["userInfo"]["username"] = json!("system:serviceaccount:kubebid-system:kubebid");
    assert_eq!(run(Endpoint::Validate, &body)["allowed"], true);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Whatever /mutate produces, /validate admits, for pods whose only problems mutation fixes.
    #[test]
    fn whatever_mutate_produces_validate_admits(
        kind in prop::sample::select(vec!["Pod", "Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob", "ReplicaSet", "ReplicationController"]),
        set_rc in any::<bool>(), set_seccomp in any::<bool>(),
        ape in prop::collection::vec(prop::option::of(Just(false)), 1..4),
        drop in prop::collection::vec(any::<bool>(), 1..4),
    ) {
        let n = ape.len().min(drop.len());
        let containers: Vec<Value> = (0..n).map(|i| {
            let mut c = container(&format!("c{i}"));
            let mut sc = serde_json::Map::new();
            if let Some(v) = ape[i] { sc.insert("allowPrivilegeEscalation".into(), json!(v)); }
            if drop[i] { sc.insert("capabilities".into(), json!({"drop": ["ALL"]})); }
            c["securityContext"] = Value::Object(sc);
            c
        }).collect();
        let mut spec = json!({"securityContext": {"runAsNonRoot": true}, "containers": containers});
        if set_rc { spec["runtimeClassName"] = json!("kubebid-secure"); }
        if set_seccomp { spec["securityContext"]["seccompProfile"] = json!({"type": "RuntimeDefault"}); }
        let tpl = json!({"metadata": {"labels": {"a": "b"}}, "spec": spec});
        let meta = json!({"name": "w", "namespace": "acme"});
        let (api, obj) = match kind {
            "Pod" => ("v1", json!({"metadata": meta, "spec": tpl["spec"]})),
            "CronJob" => ("batch/v1", json!({"metadata": meta, "spec": {"schedule": "@daily", "jobTemplate": {"spec": {"template": tpl}}}})),
            "Job" => ("batch/v1", json!({"metadata": meta, "spec": {"template": tpl}})),
            "ReplicationController" => ("v1", json!({"metadata": meta, "spec": {"template": tpl}})),
            _ => ("apps/v1", json!({"metadata": meta, "spec": {"selector": {"matchLabels": {"a": "b"}}, "serviceName": "s", "template": tpl}})),
        };
        let mut object = obj;
        object["apiVersion"] = json!(api);
        object["kind"] = json!(kind);
        let m = run(Endpoint::Mutate, &admission("CREATE", "x", None, "acme", "w", object.clone(), Value::Null));
        let patched = apply_patch(&object, &m);
        let v = run(Endpoint::Validate, &admission("CREATE", "x", None, "acme", "w", patched, Value::Null));
        prop_assert_eq!(&v["allowed"], &json!(true), "{}", v);
    }
}

fn arbitrary_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        prop::sample::select(vec![
            "",
            "Pod",
            "v1",
            "CREATE",
            "DELETE",
            "CONNECT",
            "apps/v1",
            "Deployment",
            "exec",
            "acme",
            "x"
        ])
        .prop_map(|s| json!(s)),
    ];
    leaf.prop_recursive(4, 40, 5, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(
                prop::sample::select(vec![
                    "apiVersion",
                    "kind",
                    "metadata",
                    "spec",
                    "name",
                    "namespace",
                    "containers",
                    "securityContext",
                    "privileged",
                    "object",
                    "oldObject",
                    "operation",
                    "uid",
                    "group",
                    "version",
                    "resource",
                    "subResource",
                    "userInfo",
                    "username"
                ]),
                inner,
                0..5,
            )
            .prop_map(|m| Value::Object(m.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1000, ..ProptestConfig::default() })]

    /// No body makes the review panic, and a review of an object the engine cannot decode never allows it.
    #[test]
    fn no_body_panics_or_admits_what_cannot_be_decoded(
        bytes in prop::collection::vec(any::<u8>(), 0..200),
        op in prop::sample::select(vec!["CREATE", "UPDATE", "DELETE", "CONNECT"]),
        object in arbitrary_json(),
        old in arbitrary_json(),
        endpoint in prop::sample::select(vec![Endpoint::Validate, Endpoint::Mutate]),
    ) {
        let p = policy();
        let _ = review(&p, endpoint, &bytes, Timestamp::now());
        let body = admission(op, "pods", None, "acme", "x", object.clone(), old);
        if let Ok(out) = review(&p, endpoint, &serde_json::to_vec(&body).unwrap(), Timestamp::now()) {
            let v: Value = serde_json::from_slice(&out.body).unwrap();
            let decodable = object.is_null() || kubebid_model::Object::from_value(object.clone()).is_ok();
            if !decodable {
                prop_assert_eq!(&v["response"]["allowed"], &json!(false), "{}", v);
            }
        }
    }
}

#[test]
fn tenants_are_refused_when_they_claim_what_another_tenant_holds_or_are_invalid() {
    let tenant = |name: &str, spec: Value| json!({"apiVersion": "kubebid.io/v1alpha1", "kind": "Tenant", "metadata": {"name": name}, "spec": spec});
    let req = |obj: Value| {
        let name = obj["metadata"]["name"].as_str().unwrap().to_owned();
        let mut b = admission("CREATE", "tenants", None, "", &name, obj, Value::Null);
        b["request"]["kind"] =
            json!({"group": "kubebid.io", "version": "v1alpha1", "kind": "Tenant"});
        b["request"].as_object_mut().unwrap().remove("namespace");
        b
    };
    // The policy's tenants are acme (namespace acme) and globex (namespace globex).
    let ok = run(
        Endpoint::Validate,
        &req(tenant("initech", json!({"namespaces": ["initech"]}))),
    );
    assert_eq!(ok["allowed"], true, "{ok}");
    let clash = run(
        Endpoint::Validate,
        &req(tenant(
            "initech",
            json!({"namespaces": ["initech", "globex"]}),
        )),
    );
    assert_eq!(clash["allowed"], false);
    let msg = clash["status"]["message"].as_str().unwrap();
    assert!(
        msg.contains(
            "spec.namespaces[1]: namespace \"globex\" already belongs to tenant \"globex\""
        ),
        "{msg}"
    );
    // Updating a tenant's own namespaces is not a clash with itself.
    assert_eq!(
        run(
            Endpoint::Validate,
            &req(tenant("acme", json!({"namespaces": ["acme", "acme-2"]})))
        )["allowed"],
        true
    );
    let bad = run(
        Endpoint::Validate,
        &req(tenant(
            "initech",
            json!({"namespaces": ["Bad_Name"], "egressCidrs": ["10.0.0.0/99"]}),
        )),
    );
    let msg = bad["status"]["message"].as_str().unwrap();
    assert!(
        msg.contains("spec.namespaces[0]") && msg.contains("spec.egressCidrs[0]"),
        "{msg}"
    );
    let unknown = run(
        Endpoint::Validate,
        &req(tenant(
            "initech",
            json!({"namespaces": ["x"], "namespacez": []}),
        )),
    );
    assert!(
        unknown["status"]["message"]
            .as_str()
            .unwrap()
            .contains("unknown field"),
        "{unknown}"
    );
    let system = run(
        Endpoint::Validate,
        &req(tenant("initech", json!({"namespaces": ["kube-system"]}))),
    );
    assert!(
        system["status"]["message"]
            .as_str()
            .unwrap()
            .contains("\"kube-system\" is a Kubernetes system namespace"),
        "{system}"
    );
}
