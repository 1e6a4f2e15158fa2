//! The admission path decodes objects straight from their JSON text (`Object::from_json`); everything
//! else decodes parsed values (`Object::from_value`). The two must agree on every input: the same
//! object, or both an error naming the same field. Random objects of every kind with rules, with fields
//! of the right and the wrong types, and arbitrary text.

// Test helpers fail the test by panicking on broken fixtures; that is their job.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use kubebid_model::Object;
use proptest::prelude::*;
use serde_json::{Map, Value, json};

const KINDS: &[(&str, &str)] = &[
    ("v1", "Pod"),
    ("apps/v1", "Deployment"),
    ("batch/v1", "CronJob"),
    ("v1", "PodTemplate"),
    ("v1", "Service"),
    ("networking.k8s.io/v1", "NetworkPolicy"),
    ("rbac.authorization.k8s.io/v1", "RoleBinding"),
    ("v1", "Namespace"),
    ("v1", "Binding"),
    ("example.com/v1", "Widget"),
];

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i32>().prop_map(Value::from),
        Just(json!(1.5)),
        "[a-z0-9:/.-]{0,10}".prop_map(Value::String),
    ]
}

/// Fields the kinds have, at plausible places, with values of any type.
fn field_name() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec![
        "metadata",
        "spec",
        "name",
        "namespace",
        "labels",
        "containers",
        "image",
        "securityContext",
        "privileged",
        "hostPID",
        "template",
        "jobTemplate",
        "selector",
        "ports",
        "port",
        "subjects",
        "roleRef",
        "target",
        "unknownField",
    ])
}

fn value() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(5, 48, 5, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(field_name(), inner, 0..5).prop_map(|m| {
                Value::Object(
                    m.into_iter()
                        .map(|(k, v)| (k.to_owned(), v))
                        .collect::<Map<_, _>>(),
                )
            }),
        ]
    })
}

fn object() -> impl Strategy<Value = Value> {
    (
        prop::sample::select(KINDS.to_vec()),
        prop::collection::btree_map(field_name(), value(), 0..4),
        prop::option::of(leaf()),
    )
        .prop_map(|((api_version, kind), fields, odd_kind)| {
            let mut map: Map<String, Value> =
                fields.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
            map.insert("apiVersion".into(), json!(api_version));
            // Now and then a kind that is not a string, or is missing.
            map.insert("kind".into(), odd_kind.unwrap_or_else(|| json!(kind)));
            Value::Object(map)
        })
}

fn agree(value: Value) -> Result<(), TestCaseError> {
    let text = value.to_string();
    let from_text = Object::from_json(&text);
    let from_value = Object::from_value(value);
    match (from_text, from_value) {
        (Ok(a), Ok(b)) => prop_assert_eq!(format!("{a:?}"), format!("{b:?}")),
        (Err(a), Err(b)) => prop_assert_eq!(a.path, b.path),
        (a, b) => prop_assert!(false, "from text {a:?}, from value {b:?}"),
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn text_and_value_decode_alike(o in object()) {
        agree(o)?;
    }

    #[test]
    fn any_json_decodes_alike(v in value()) {
        agree(v)?;
    }

    #[test]
    fn arbitrary_text_never_panics(text in "\\PC{0,200}") {
        let _ = Object::from_json(&text);
    }
}

#[test]
fn a_type_error_names_its_field_from_text_too() {
    let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
        "spec": {"containers": [{"name": "c", "securityContext": {"privileged": "maybe"}}]}});
    let e = Object::from_json(&pod.to_string()).expect_err("bad type");
    assert_eq!(e.path, "spec.containers[0].securityContext.privileged");
    assert!(!e.message.contains("line"), "{}", e.message);
    let e = Object::from_json(r#"{"apiVersion": "v1", "kind": 7}"#).expect_err("bad kind");
    assert_eq!(
        (e.path.as_str(), e.message.as_str()),
        ("kind", "must be a non-empty string")
    );
}
