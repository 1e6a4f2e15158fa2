//! The escapes found on a real API server, replayed as the AdmissionReviews the API server sends, with the
//! identities it sends them under: a tenant owner holding `tenant-admin`, Kubernetes' controllers, cluster
//! admins. Each test names the hole it closes and tries its neighbours.

// Test helpers fail the test by panicking on broken fixtures; that is their job.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use jiff::Timestamp;
use kubebid_model::load::ConfigSet;
use kubebid_model::podspec::POD_BEARING;
use kubebid_policy::PolicySet;
use kubebid_webhook::generate::{Target, WebhookSettings, validating};
use kubebid_webhook::review::{Endpoint, review};
use serde_json::{Value, json};

fn policy() -> PolicySet {
    let mut set = ConfigSet::default();
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/config");
    for f in ["kubebid.yaml", "exceptions.yaml"] {
        let text = std::fs::read_to_string(dir.join(f)).unwrap();
        assert!(set.add_text(f, &text).is_empty());
    }
    PolicySet::from_config(&set).unwrap()
}

const OWNER: (&str, &[&str]) = (
    "alice@acme.example",
    &["acme-admins", "system:authenticated"],
);

struct Call<'a> {
    op: &'a str,
    resource: &'a str,
    sub: Option<&'a str>,
    ns: &'a str,
    name: &'a str,
    object: Value,
    old: Value,
    user: (&'a str, &'a [&'a str]),
}

impl Call<'_> {
    fn review(&self) -> Value {
        self.review_as(None)
    }

    /// The review with `kind` as the request's kind instead of the object's.
    fn review_as(&self, kind: Option<Value>) -> Value {
        let source = if self.object.is_null() {
            &self.old
        } else {
            &self.object
        };
        let api = source["apiVersion"].as_str().unwrap_or("v1");
        let (group, version) = api.split_once('/').unwrap_or(("", api));
        let mut req = json!({
            "uid": "5e1f2c3d-0000-4000-8000-000000000001",
            "kind": {"group": group, "version": version, "kind": source["kind"]},
            "resource": {"group": group, "version": version, "resource": self.resource},
            "name": self.name, "namespace": self.ns, "operation": self.op,
            "userInfo": {"username": self.user.0, "groups": self.user.1},
            "object": self.object, "oldObject": self.old,
        });
        if let Some(s) = self.sub {
            req["subResource"] = json!(s);
        }
        if let Some(k) = kind {
            req["kind"] = k;
        }
        let body =
            json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": req});
        let out = review(
            &policy(),
            Endpoint::Validate,
            &serde_json::to_vec(&body).unwrap(),
            Timestamp::now(),
        )
        .unwrap();
        let v: Value = serde_json::from_slice(&out.body).unwrap();
        v["response"].clone()
    }

    fn allowed(&self) -> bool {
        self.review()["allowed"].as_bool().unwrap()
    }

    fn denied_by(&self, rule: &str) {
        let r = self.review();
        assert_eq!(
            r["allowed"], false,
            "{} {} {}: admitted",
            self.op, self.resource, self.name
        );
        let m = r["status"]["message"].as_str().unwrap();
        assert!(
            m.contains(&format!("[{rule}]")),
            "{} {}: {m}",
            self.op,
            self.resource
        );
    }
}

fn namespace(name: &str, labels: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}})
}

fn acme_labels() -> Value {
    json!({"kubernetes.io/metadata.name": "tenant-acme", "kubebid.io/tenant": "acme", "kubebid.io/managed": "true",
        "pod-security.kubernetes.io/enforce": "restricted", "pod-security.kubernetes.io/enforce-version": "latest"})
}

/// Escape 1: a tenant that relabels its namespace steps out of every webhook and policy. Now the webhooks
/// select namespaces by the name label the API server sets (matched against the *new* labels of an
/// UPDATE, which still carry it), and a tenant may not touch its Namespace at all.
#[test]
fn relabelling_or_deleting_the_own_namespace_is_refused_and_cannot_escape_the_webhook() {
    let settings = WebhookSettings::for_cluster(
        policy().tenancy(),
        Target::Url("https://kubebid.example".into()),
        b"-----BEGIN CERTIFICATE-----".to_vec(),
        5,
    );
    let hooks = validating(&settings).webhooks.unwrap();
    let mut stripped = acme_labels();
    for k in [
        "kubebid.io/tenant",
        "kubebid.io/managed",
        "pod-security.kubernetes.io/enforce",
    ] {
        stripped.as_object_mut().unwrap().remove(k);
    }
    // The API server re-sets kubernetes.io/metadata.name; every other label is gone. Every webhook that
    // judges namespaced requests or namespaces still selects this namespace.
    let new_labels: std::collections::BTreeMap<String, String> =
        serde_json::from_value(stripped.clone()).unwrap();
    for h in &hooks {
        if let Some(sel) = &h.namespace_selector {
            assert!(
                kubebid_policy::selector_matches(sel, Some(&new_labels)),
                "{} lets the relabelled namespace out",
                h.name
            );
        }
    }
    for (op, object, old) in [
        (
            "UPDATE",
            namespace("tenant-acme", stripped.clone()),
            namespace("tenant-acme", acme_labels()),
        ),
        (
            "UPDATE",
            namespace(
                "tenant-acme",
                json!({"kubernetes.io/metadata.name": "tenant-acme", "kubebid.io/tenant": "acme", "kubebid.io/managed": "true", "pod-security.kubernetes.io/enforce": "restricted", "pod-security.kubernetes.io/enforce-version": "v1.0"}),
            ),
            namespace("tenant-acme", acme_labels()),
        ),
        (
            "DELETE",
            Value::Null,
            namespace("tenant-acme", acme_labels()),
        ),
        (
            "CREATE",
            namespace("tenant-acme-staging", acme_labels()),
            Value::Null,
        ),
    ] {
        let name = if object.is_null() { &old } else { &object }["metadata"]["name"]
            .as_str()
            .unwrap()
            .to_owned();
        Call {
            op,
            resource: "namespaces",
            sub: None,
            ns: "",
            name: &name,
            object,
            old,
            user: OWNER,
        }
        .denied_by("tenant/namespace-object");
    }
    // The namespace controller deletes it when the Tenant goes; a cluster admin repairs its labels.
    let gc = (
        "system:serviceaccount:kube-system:namespace-controller",
        &[][..],
    );
    assert!(
        Call {
            op: "DELETE",
            resource: "namespaces",
            sub: None,
            ns: "",
            name: "tenant-acme",
            object: Value::Null,
            old: namespace("tenant-acme", acme_labels()),
            user: gc
        }
        .allowed()
    );
    let admin = ("root", &["system:masters"][..]);
    assert!(
        Call {
            op: "UPDATE",
            resource: "namespaces",
            sub: None,
            ns: "",
            name: "tenant-acme",
            object: namespace("tenant-acme", acme_labels()),
            old: namespace("tenant-acme", stripped),
            user: admin
        }
        .allowed()
    );
}

/// Escape 2's neighbours that admission must judge even if RBAC were widened: binding a pod to a node, and
/// hand-written endpoints to another tenant's pod (or any protected address), from a tenant; Kubernetes'
/// scheduler and endpoint controllers pass.
#[test]
fn bindings_and_hand_written_endpoints_are_the_platforms() {
    let binding = json!({"apiVersion": "v1", "kind": "Binding", "metadata": {"name": "web-0", "namespace": "tenant-acme"},
        "target": {"apiVersion": "v1", "kind": "Node", "name": "control-plane-1"}});
    Call {
        op: "CREATE",
        resource: "pods",
        sub: Some("binding"),
        ns: "tenant-acme",
        name: "web-0",
        object: binding.clone(),
        old: Value::Null,
        user: OWNER,
    }
    .denied_by("tenant/node-name");
    Call {
        op: "CREATE",
        resource: "bindings",
        sub: None,
        ns: "tenant-acme",
        name: "web-0",
        object: binding.clone(),
        old: Value::Null,
        user: OWNER,
    }
    .denied_by("tenant/node-name");
    let scheduler = ("system:kube-scheduler", &[][..]);
    assert!(
        Call {
            op: "CREATE",
            resource: "pods",
            sub: Some("binding"),
            ns: "tenant-acme",
            name: "web-0",
            object: binding,
            old: Value::Null,
            user: scheduler
        }
        .allowed()
    );

    let endpoints = |ip: &str, target_ns: Option<&str>| {
        let mut addr = json!({"ip": ip});
        if let Some(ns) = target_ns {
            addr["targetRef"] = json!({"kind": "Pod", "name": "api-0", "namespace": ns});
        }
        json!({"apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": "steal", "namespace": "tenant-acme"},
            "subsets": [{"addresses": [addr], "ports": [{"port": 8443}]}]})
    };
    for (ip, ns) in [
        ("10.244.7.12", None),
        ("169.254.169.254", None),
        ("10.96.0.1", None),
        ("203.0.113.5", Some("tenant-globex")),
    ] {
        Call {
            op: "CREATE",
            resource: "endpoints",
            sub: None,
            ns: "tenant-acme",
            name: "steal",
            object: endpoints(ip, ns),
            old: Value::Null,
            user: OWNER,
        }
        .denied_by("tenant/endpoints");
    }
    let slice = json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice", "metadata": {"name": "steal-x", "namespace": "tenant-acme"},
        "addressType": "IPv4", "endpoints": [{"addresses": ["10.244.7.12"]}], "ports": [{"port": 8443}]});
    Call {
        op: "CREATE",
        resource: "endpointslices",
        sub: None,
        ns: "tenant-acme",
        name: "steal-x",
        object: slice.clone(),
        old: Value::Null,
        user: OWNER,
    }
    .denied_by("tenant/endpoints");
    // An external address is a legitimate selector-less Service; the endpoint controllers write pod IPs.
    assert!(
        Call {
            op: "CREATE",
            resource: "endpoints",
            sub: None,
            ns: "tenant-acme",
            name: "steal",
            object: endpoints("203.0.113.5", None),
            old: Value::Null,
            user: OWNER
        }
        .allowed()
    );
    let controller = (
        "system:serviceaccount:kube-system:endpointslice-controller",
        &[][..],
    );
    assert!(
        Call {
            op: "CREATE",
            resource: "endpointslices",
            sub: None,
            ns: "tenant-acme",
            name: "steal-x",
            object: slice,
            old: Value::Null,
            user: controller
        }
        .allowed()
    );
}

/// `spec` as the pod spec of an object of kind `l`, where that kind keeps it.
fn wrap(l: &kubebid_model::podspec::PodSpecLocation, spec: Value) -> Value {
    l.object("tenant-acme", Value::Null, &spec)
}

/// Escape 4: a tenant pod naming a system priority class preempts everyone; in every pod-bearing kind.
#[test]
fn priority_classes_outside_the_tenants_list_are_refused_in_every_kind() {
    for l in POD_BEARING {
        for class in [
            "system-node-critical",
            "system-cluster-critical",
            "high-priority",
        ] {
            let spec = json!({"priorityClassName": class, "containers": [{"name": "c", "image": "ghcr.io/acme/c"}]});
            let o = wrap(l, spec);
            Call {
                op: "CREATE",
                resource: l.resource,
                sub: None,
                ns: "tenant-acme",
                name: "w",
                object: o,
                old: Value::Null,
                user: OWNER,
            }
            .denied_by("tenant/priority-class");
        }
    }
}

/// Escape 7 (dnsPolicy Default reads the node's resolver, like None with foreign nameservers) and escape 8
/// (an object naming another namespace than its request is judged by the request, and refused).
#[test]
fn dns_bypass_and_namespace_mismatch() {
    let pod = |ns: &str, extra: Value| {
        let mut p = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": ns},
            "spec": {"runtimeClassName": "kubebid-secure", "securityContext": {"runAsNonRoot": true, "seccompProfile": {"type": "RuntimeDefault"}},
                "containers": [{"name": "c", "image": "ghcr.io/acme/c", "securityContext": {"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}},
                    "resources": {"requests": {"cpu": "1", "memory": "1Gi"}, "limits": {"cpu": "1", "memory": "1Gi"}}}]}});
        for (k, v) in extra.as_object().unwrap() {
            p["spec"][k] = v.clone();
        }
        p
    };
    assert!(
        Call {
            op: "CREATE",
            resource: "pods",
            sub: None,
            ns: "tenant-acme",
            name: "p",
            object: pod("tenant-acme", json!({})),
            old: Value::Null,
            user: OWNER
        }
        .allowed()
    );
    for policy in ["Default", "None"] {
        Call {
            op: "CREATE",
            resource: "pods",
            sub: None,
            ns: "tenant-acme",
            name: "p",
            object: pod(
                "tenant-acme",
                json!({"dnsPolicy": policy, "dnsConfig": {"nameservers": ["10.0.0.10"]}}),
            ),
            old: Value::Null,
            user: OWNER,
        }
        .denied_by("tenant/dns-bypass");
    }
    // The object claims the platform's namespace (where nothing is judged) but the request is acme's: the
    // mismatch is refused, and the object is still judged as acme's (hostPID).
    let sneaky = pod("kube-system", json!({"hostPID": true}));
    let r = Call {
        op: "CREATE",
        resource: "pods",
        sub: None,
        ns: "tenant-acme",
        name: "p",
        object: sneaky,
        old: Value::Null,
        user: OWNER,
    }
    .review();
    let m = r["status"]["message"].as_str().unwrap();
    assert!(
        m.contains("[tenant/request-mismatch]") && m.contains("[pss/hostNamespaces]"),
        "{m}"
    );
    // A known kind at a version KubeBid does not decode is refused, not passed.
    let mut old_api = pod("tenant-acme", json!({"hostPID": true}));
    old_api["apiVersion"] = json!("v1beta1");
    Call {
        op: "CREATE",
        resource: "pods",
        sub: None,
        ns: "tenant-acme",
        name: "p",
        object: old_api,
        old: Value::Null,
        user: OWNER,
    }
    .denied_by("tenant/unknown-version");
    // Nor in another spelling of the kind.
    let mut lower = pod("tenant-acme", json!({"hostPID": true}));
    lower["kind"] = json!("pod");
    Call {
        op: "CREATE",
        resource: "pods",
        sub: None,
        ns: "tenant-acme",
        name: "p",
        object: lower,
        old: Value::Null,
        user: OWNER,
    }
    .denied_by("tenant/unknown-version");
    // An object of another kind than the request names (a Pod sent as a ConfigMap, which has no rules) is
    // refused before anything judges it; as is an old object that disagrees.
    let call = Call {
        op: "UPDATE",
        resource: "pods",
        sub: None,
        ns: "tenant-acme",
        name: "p",
        object: pod("tenant-acme", json!({"hostPID": true})),
        old: pod("tenant-acme", json!({})),
        user: OWNER,
    };
    for kind in [
        json!({"group": "", "version": "v1", "kind": "ConfigMap"}),
        json!({"group": "apps", "version": "v1", "kind": "Pod"}),
        json!({"group": "", "version": "v2", "kind": "Pod"}),
    ] {
        let r = call.review_as(Some(kind.clone()));
        assert_eq!(r["allowed"], false, "{kind}");
        let m = r["status"]["message"].as_str().unwrap();
        assert!(m.contains("but the object is v1 Pod"), "{kind}: {m}");
    }
    let mut config_map_call = call;
    config_map_call.object = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "p", "namespace": "tenant-acme"}});
    config_map_call.resource = "configmaps";
    let r = config_map_call.review();
    assert_eq!(r["allowed"], false, "old object is a Pod: {r}");
}

/// Escape 9's other half: tenants still may not delete or edit what KubeBid manages; the garbage collector
/// may (deleting a Tenant must clean up).
#[test]
fn managed_objects_are_refused_to_tenants_and_left_to_the_garbage_collector() {
    let quota = json!({"apiVersion": "v1", "kind": "ResourceQuota", "metadata": {"name": "tenant-quota", "namespace": "tenant-acme",
        "labels": {"kubebid.io/managed": "true", "kubebid.io/tenant": "acme"}}, "spec": {"hard": {"pods": "100"}}});
    let mut raised = quota.clone();
    raised["spec"]["hard"]["pods"] = json!("100000");
    Call {
        op: "UPDATE",
        resource: "resourcequotas",
        sub: None,
        ns: "tenant-acme",
        name: "tenant-quota",
        object: raised,
        old: quota.clone(),
        user: OWNER,
    }
    .denied_by("tenant/quota-change");
    Call {
        op: "DELETE",
        resource: "resourcequotas",
        sub: None,
        ns: "tenant-acme",
        name: "tenant-quota",
        object: Value::Null,
        old: quota.clone(),
        user: OWNER,
    }
    .denied_by("tenant/managed-object");
    let gc = (
        "system:serviceaccount:kube-system:generic-garbage-collector",
        &[][..],
    );
    assert!(
        Call {
            op: "DELETE",
            resource: "resourcequotas",
            sub: None,
            ns: "tenant-acme",
            name: "tenant-quota",
            object: Value::Null,
            old: quota,
            user: gc
        }
        .allowed()
    );
}
