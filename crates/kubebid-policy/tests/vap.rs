//! The generated `ValidatingAdmissionPolicy` CEL agrees with the native engine. Every distinct PSA fixture is
//! run through both (CEL by kube-cel's Kubernetes-compatible evaluator) in every pod-bearing kind, at the
//! place [`kubebid_model::podspec`] says the kind keeps its pod spec, and as an ephemeral-containers update;
//! Services and NetworkPolicies are run through a table of cases. For a rule the backstop carries in full the
//! failing rules must be identical; for one it carries in part, the CEL may deny only what the engine denies.

// Test helpers fail the test by panicking on broken fixtures; that is their job.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::collections::BTreeSet;
use std::path::PathBuf;

use kube_cel::{AdmissionRequest, CompiledVapExpression, VapError, VapEvaluator, VapExpression};
use kubebid_model::load::{ConfigSet, manifest_items};
use kubebid_model::podspec::POD_BEARING;
use kubebid_model::{Object, Profile};
use kubebid_policy::vap::{CARRIED, CelValidation, Coverage, validations};
use kubebid_policy::{Operation, PolicySet, Request};
use serde_json::{Value, json};

fn corpus() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/psa")
}

struct Cel {
    ids: Vec<&'static str>,
    compiled: Vec<Result<CompiledVapExpression, VapError>>,
}

impl Cel {
    fn new(validations: Vec<CelValidation>) -> Self {
        let ids = validations.iter().map(|v| v.0).collect();
        let expressions: Vec<VapExpression> = validations
            .into_iter()
            .map(|(id, expression, _)| VapExpression {
                expression,
                message: Some(id.to_owned()),
                message_expression: None,
            })
            .collect();
        let compiled = VapEvaluator::builder()
            .object(json!({}))
            .build()
            .compile_expressions(&expressions);
        for c in &compiled {
            assert!(c.is_ok(), "the generated CEL compiles: {c:?}");
        }
        Self { ids, compiled }
    }

    /// Rules whose CEL does not hold for `object` in namespace `ns` (an evaluation error counts as a denial:
    /// the policies fail closed).
    fn failing(&self, object: &Value, ns: &str, operation: &str) -> BTreeSet<&'static str> {
        let results = VapEvaluator::builder()
            .object(object.clone())
            .request(AdmissionRequest {
                operation: operation.into(),
                namespace: ns.into(),
                ..AdmissionRequest::default()
            })
            .build()
            .evaluate_compiled(&self.compiled);
        assert_eq!(results.len(), self.ids.len());
        results
            .iter()
            .zip(&self.ids)
            .filter(|(r, _)| !r.passed)
            .map(|(_, id)| *id)
            .collect()
    }
}

fn policy_cel(policy: &PolicySet, name: &str) -> Cel {
    let v = validations(policy)
        .into_iter()
        .find(|(n, _)| *n == name)
        .unwrap()
        .1;
    Cel::new(v)
}

fn coverage(id: &str) -> Coverage {
    CARRIED.iter().find(|(r, _)| *r == id).unwrap().1
}

/// Checks one object: full rules agree exactly, partial ones never deny more than the engine.
fn agree(
    by_cel: &BTreeSet<&'static str>,
    by_engine: &BTreeSet<&'static str>,
    context: &dyn Fn() -> String,
) {
    for id in by_cel.union(by_engine) {
        let (c, e) = (by_cel.contains(id), by_engine.contains(id));
        match coverage(id) {
            Coverage::Full => assert_eq!(c, e, "{id}: CEL {c}, engine {e} for {}", context()),
            Coverage::Partial => assert!(
                !c || e,
                "{id}: CEL denies what the engine admits: {}",
                context()
            ),
        }
    }
}

fn native(
    policies: &[&PolicySet],
    value: &Value,
    ns: &str,
    operation: Operation,
    covered: &BTreeSet<&str>,
) -> BTreeSet<&'static str> {
    let object = Object::from_value(value.clone()).unwrap();
    let mut out = BTreeSet::new();
    for p in policies {
        let req = Request {
            namespace: Some(ns),
            operation,
            ..Request::create(&object)
        };
        for f in p.evaluate(&req).findings {
            if covered.contains(f.rule.id) && f.denies() {
                out.insert(f.rule.id);
            }
        }
    }
    out
}

/// `pod` as an object of kind `l.kind`, its spec where that kind keeps it.
fn wrap(l: &kubebid_model::podspec::PodSpecLocation, pod: &Value, ns: &str) -> Value {
    l.object(ns, pod["metadata"].clone(), &pod["spec"])
}

#[test]
fn pod_cel_agrees_with_the_engine_on_every_psa_fixture_in_every_pod_bearing_kind() {
    let dir = corpus();
    let manifest = std::fs::read_to_string(dir.join("manifest.tsv")).expect("PSA fixtures");
    let zero_trust = PolicySet::builtin();
    let baseline = PolicySet::builtin().with_profile(Profile::Baseline);
    let cel = policy_cel(&zero_trust, "kubebid-pods");
    let covered: BTreeSet<&str> = cel.ids.iter().copied().collect();
    let (mut compared, mut denied_somewhere) = (0, 0);
    let mut kinds = BTreeSet::new();
    let mut seen = BTreeSet::new();
    for line in manifest.lines().skip(1) {
        let path = line.split('\t').nth(4).unwrap();
        let text = std::fs::read_to_string(dir.join(path)).unwrap();
        // Many versions share identical fixtures; compare each distinct pod once.
        if !seen.insert(text.clone()) {
            continue;
        }
        let (items, _) = manifest_items(path, &text);
        let mut pod = items.into_iter().next().unwrap().value;
        for runtime in [false, true] {
            if runtime {
                pod["spec"]["runtimeClassName"] = json!("kubebid-secure");
            }
            let mut forms: Vec<(Value, Operation, &str)> = POD_BEARING
                .iter()
                .map(|l| (wrap(l, &pod, "t"), Operation::Create, "CREATE"))
                .collect();
            // An ephemeral container arrives as an UPDATE of the Pod (pods/ephemeralcontainers).
            let mut debug = wrap(&POD_BEARING[0], &pod, "t");
            debug["spec"]["ephemeralContainers"] = json!([{"name": "debug", "image": "busybox",
                "securityContext": {"privileged": true}}]);
            forms.push((debug, Operation::Update, "UPDATE"));
            for (form, op, op_name) in forms {
                let by_cel = cel.failing(&form, "t", op_name);
                let by_engine = native(&[&baseline, &zero_trust], &form, "t", op, &covered);
                agree(&by_cel, &by_engine, &|| {
                    format!("{path} as {} (runtime class set: {runtime})", form["kind"])
                });
                kinds.insert(form["kind"].as_str().unwrap().to_owned());
                compared += 1;
                denied_somewhere += usize::from(by_cel.iter().any(|r| r.starts_with("pss/")));
            }
        }
    }
    println!(
        "CEL backstop agrees with the engine on {compared} objects ({} distinct fixtures, {denied_somewhere} denied by a PSS rule)",
        seen.len()
    );
    assert_eq!(kinds.len(), POD_BEARING.len(), "{kinds:?}");
    assert!(
        compared > 5000 && denied_somewhere > 1000,
        "{compared} / {denied_somewhere}"
    );
}

fn example_policy() -> PolicySet {
    let mut set = ConfigSet::default();
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples/config");
    for f in ["kubebid.yaml", "exceptions.yaml"] {
        let text = std::fs::read_to_string(dir.join(f)).unwrap();
        assert!(set.add_text(f, &text).is_empty());
    }
    PolicySet::from_config(&set).unwrap()
}

#[test]
fn tenant_specific_pod_rules_follow_the_namespace() {
    let policy = example_policy();
    let cel = policy_cel(&policy, "kubebid-pods");
    let covered: BTreeSet<&str> = cel.ids.iter().copied().collect();
    let pod = |extra: Value| {
        let mut p = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
            "spec": {"containers": [{"name": "c", "image": "i"}]}});
        for (k, v) in extra.as_object().unwrap() {
            p["spec"][k] = v.clone();
        }
        p
    };
    for ns in [
        "tenant-acme",
        "tenant-globex",
        "tenant-initech",
        "unclaimed",
    ] {
        for extra in [
            json!({"runtimeClassName": "kubebid-secure"}),
            json!({"runtimeClassName": "runc"}),
            json!({}),
            json!({"runtimeClassName": "kubebid-secure", "priorityClassName": "system-node-critical"}),
            json!({"runtimeClassName": "kubebid-secure", "priorityClassName": ""}),
            json!({"runtimeClassName": "kubebid-secure", "nodeName": "cp-1"}),
            json!({"runtimeClassName": "kubebid-secure", "dnsPolicy": "Default"}),
            json!({"runtimeClassName": "kubebid-secure", "dnsPolicy": "ClusterFirst"}),
            json!({"runtimeClassName": "kubebid-secure", "dnsConfig": {"nameservers": ["8.8.8.8"]}}),
        ] {
            let mut o = pod(extra.clone());
            o["metadata"]["namespace"] = json!(ns);
            let by_cel = cel.failing(&o, ns, "CREATE");
            let by_engine = native(&[&policy], &o, ns, Operation::Create, &covered);
            agree(&by_cel, &by_engine, &|| format!("{ns}: {extra}"));
        }
    }
}

#[test]
fn service_cel_agrees_with_the_engine() {
    let policy = example_policy();
    let cel = policy_cel(&policy, "kubebid-services");
    let covered: BTreeSet<&str> = cel.ids.iter().copied().collect();
    let mut denied = BTreeSet::new();
    for ns in ["tenant-acme", "tenant-globex"] {
        for spec in [
            json!({}),
            json!({"type": "ClusterIP"}),
            json!({"type": "NodePort"}),
            json!({"type": "ClusterIP", "ports": [{"port": 80, "nodePort": 30080}]}),
            json!({"type": "LoadBalancer"}),
            json!({"type": "LoadBalancer", "allocateLoadBalancerNodePorts": false}),
            json!({"type": "LoadBalancer", "allocateLoadBalancerNodePorts": false, "externalTrafficPolicy": "Local"}),
            json!({"type": "LoadBalancer", "allocateLoadBalancerNodePorts": false, "healthCheckNodePort": 31000}),
            json!({"type": "LoadBalancer", "allocateLoadBalancerNodePorts": false, "loadBalancerIP": "198.51.100.7"}),
            json!({"externalIPs": ["203.0.113.7"]}),
            json!({"type": "ExternalName", "externalName": "db.example.com"}),
            json!({"type": "ExternalName", "externalName": "169.254.169.254"}),
            json!({"type": "ExternalName", "externalName": "127.0.0.1"}),
            json!({"type": "ExternalName", "externalName": "10.96.0.10"}),
            json!({"type": "ExternalName", "externalName": "203.0.113.9"}),
            json!({"type": "ExternalName", "externalName": "2852039166"}),
            json!({"type": "ExternalName", "externalName": "web.tenant-globex.svc.cluster.local"}),
        ] {
            let svc = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s", "namespace": ns}, "spec": spec});
            let by_cel = cel.failing(&svc, ns, "CREATE");
            let by_engine = native(&[&policy], &svc, ns, Operation::Create, &covered);
            agree(&by_cel, &by_engine, &|| format!("{ns}: {svc}"));
            denied.extend(by_cel);
        }
    }
    // Each carried Service rule is exercised: the comparison is not vacuous.
    for id in &covered {
        assert!(denied.contains(id), "{id} never denied");
    }
}

#[test]
fn network_policy_cel_agrees_with_the_engine() {
    let policy = example_policy();
    let cel = policy_cel(&policy, "kubebid-networkpolicies");
    let covered: BTreeSet<&str> = cel.ids.iter().copied().collect();
    let mut denied = 0;
    for block in [
        json!({"cidr": "203.0.113.0/24"}),
        json!({"cidr": "0.0.0.0/0"}),
        json!({"cidr": "169.254.169.254/32"}),
        json!({"cidr": "10.244.0.0/16"}),
        json!({"cidr": "10.244.1.0/24"}),
        json!({"cidr": "10.0.0.0/8", "except": ["10.96.0.0/12"]}),
        json!({"cidr": "10.0.0.0/8", "except": ["10.96.0.0/12", "10.244.0.0/16"]}),
        json!({"cidr": "0.0.0.0/0", "except": ["10.96.0.0/12", "10.244.0.0/16", "127.0.0.0/8", "169.254.0.0/16", "0.0.0.0/8", "168.63.129.16/32", "100.100.100.200/32"]}),
        json!({"cidr": "::/0"}),
        json!({"cidr": "2001:db8::/32"}),
    ] {
        for direction in ["ingress", "egress"] {
            let peers = if direction == "ingress" { "from" } else { "to" };
            let np = json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                "metadata": {"name": "n", "namespace": "tenant-globex"},
                "spec": {"podSelector": {}, direction: [{peers: [{"ipBlock": block}]}]}});
            let by_cel = cel.failing(&np, "tenant-globex", "CREATE");
            let by_engine = native(
                &[&policy],
                &np,
                "tenant-globex",
                Operation::Create,
                &covered,
            );
            agree(&by_cel, &by_engine, &|| format!("{np}"));
            denied += usize::from(!by_cel.is_empty());
        }
    }
    assert!(denied >= 8, "{denied}");
}
