//! Property tests: whatever a decodable object holds, the engine decides without panicking, and a finding
//! always names a known rule, a non-empty path and a message.

// Test helpers fail the test by panicking on broken fixtures; that is their job.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use kubebid_model::{Object, Profile, PssVersion};
use kubebid_policy::{PolicySet, Request};
use proptest::prelude::*;
use serde_json::{Value, json};

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        (-3i64..70000).prop_map(Value::from),
        prop::sample::select(vec![
            "",
            "ALL",
            "true",
            "None",
            "Unconfined",
            "RuntimeDefault",
            "Localhost",
            "Unmasked",
            "windows",
            "*",
            "*.x.io",
            "10.0.0.0/8",
            "0.0.0.0/0",
            "kube-system",
            "kubebid.io/secure-runtime",
            "node-role.kubernetes.io/master",
            "Exists",
            "In",
            "NotIn",
            "ClusterRole",
            "system:masters",
            "escalate",
            "rbac.authorization.k8s.io",
        ])
        .prop_map(|s| Value::String(s.to_owned())),
    ]
}

fn value() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(4, 48, 5, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(
                prop::sample::select(vec![
                    "name",
                    "image",
                    "securityContext",
                    "privileged",
                    "capabilities",
                    "add",
                    "drop",
                    "hostPort",
                    "ports",
                    "type",
                    "host",
                    "httpGet",
                    "tcpSocket",
                    "runAsUser",
                    "runAsNonRoot",
                    "seccompProfile",
                    "hostPath",
                    "path",
                    "key",
                    "operator",
                    "values",
                    "matchLabels",
                    "matchExpressions",
                    "cidr",
                    "except",
                    "verbs",
                    "resources",
                    "apiGroups",
                    "kind",
                    "namespace",
                    "limits",
                    "requests",
                    "cpu",
                    "memory",
                ]),
                inner,
                0..5,
            )
            .prop_map(|m| Value::Object(m.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())),
        ]
    })
}

fn kind_and_field() -> impl Strategy<Value = (&'static str, &'static str, &'static str)> {
    prop::sample::select(vec![
        ("v1", "Pod", "spec"),
        ("apps/v1", "Deployment", "spec"),
        ("batch/v1", "CronJob", "spec"),
        ("v1", "Service", "spec"),
        ("networking.k8s.io/v1", "Ingress", "spec"),
        ("networking.k8s.io/v1", "NetworkPolicy", "spec"),
        ("rbac.authorization.k8s.io/v1", "Role", "rules"),
        ("rbac.authorization.k8s.io/v1", "RoleBinding", "subjects"),
        ("v1", "PersistentVolumeClaim", "spec"),
        ("v1", "PersistentVolume", "spec"),
        ("v1", "Namespace", "metadata"),
    ])
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn the_engine_never_panics(
        (api, kind, field) in kind_and_field(),
        body in value(),
        containers in prop::collection::vec(value(), 0..3),
        profile in prop::sample::select(Profile::ALL.to_vec()),
        minor in 0u16..40,
    ) {
        let mut obj = json!({"apiVersion": api, "kind": kind, "metadata": {"name": "n", "namespace": "t"}});
        obj[field] = body;
        if kind == "Pod" && obj["spec"].is_object() {
            obj["spec"]["containers"] = Value::Array(containers);
        }
        let Ok(object) = Object::from_value(obj) else { return Ok(()) };
        let policy = PolicySet::builtin().with_profile(profile).with_pss_version(PssVersion::v1(minor));
        let d = policy.evaluate(&Request::create(&object));
        for f in &d.findings {
            prop_assert!(kubebid_policy::rules::rule(f.rule.id).is_some());
            prop_assert!(!f.message.is_empty());
            prop_assert!(f.rule.level.in_profile(profile));
        }
    }
}

fn security_context() -> impl Strategy<Value = Value> {
    prop::collection::btree_map(
        prop::sample::select(vec![
            "privileged",
            "allowPrivilegeEscalation",
            "runAsNonRoot",
            "runAsUser",
            "procMount",
            "capabilities",
            "seccompProfile",
            "appArmorProfile",
            "seLinuxOptions",
            "windowsOptions",
        ]),
        leaf(),
        0..6,
    )
    .prop_map(|m| {
        let mut sc = serde_json::Map::new();
        for (k, v) in m {
            let typed = match (k, v) {
                ("privileged" | "allowPrivilegeEscalation" | "runAsNonRoot", Value::Bool(b)) => {
                    json!(b)
                }
                ("runAsUser", Value::Number(n)) => json!(n),
                ("procMount", Value::String(s)) => json!(s),
                ("capabilities", Value::String(s)) => json!({"add": [s.clone()], "drop": [s]}),
                ("seccompProfile" | "appArmorProfile", Value::String(s)) => json!({"type": s}),
                ("seLinuxOptions", Value::String(s)) => json!({"type": s, "user": s}),
                ("windowsOptions", Value::Bool(b)) => json!({"hostProcess": b}),
                _ => continue,
            };
            sc.insert(k.to_owned(), typed);
        }
        Value::Object(sc)
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1000, ..ProptestConfig::default() })]

    /// Structured pods decode every time, so this exercises every PSS check and tenant pod rule.
    #[test]
    fn pod_specs_always_decode_and_decide(
        scs in prop::collection::vec(security_context(), 1..4),
        host in any::<(bool, bool, bool)>(),
        profile in prop::sample::select(Profile::ALL.to_vec()),
        minor in 0u16..40,
    ) {
        let containers: Vec<Value> = scs.iter().enumerate().map(|(i, sc)| json!({"name": format!("c{i}"), "image": "x", "securityContext": sc})).collect();
        let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "t"},
            "spec": {"hostNetwork": host.0, "hostPID": host.1, "hostIPC": host.2, "containers": containers.clone(), "initContainers": containers}});
        let object = Object::from_value(pod).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let d = PolicySet::builtin().with_profile(profile).with_pss_version(PssVersion::v1(minor)).evaluate(&Request::create(&object));
        if host.0 || host.1 || host.2 {
            prop_assert!(d.denied(), "host namespaces are denied at every profile and version");
        }
        for f in &d.findings {
            prop_assert!(f.path.starts_with("spec."), "{}", f.path);
        }
    }
}
