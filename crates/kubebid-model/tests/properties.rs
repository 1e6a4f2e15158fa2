//! Property tests: the loader never panics, and reads back any JSON value it is given.

// Test helpers fail the test by panicking on broken fixtures; that is their job.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use kubebid_model::Object;
use kubebid_model::load::{ConfigSet, manifest_items};
use kubebid_model::yaml::parse_documents;
use proptest::prelude::*;
use serde_json::{Map, Value};

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        "[a-zA-Z0-9 :#'\"\\-_./*&!|>{}\\[\\],%@`~\\\\\n\t]{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(5, 64, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map("[a-zA-Z0-9_./-]{1,10}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_text_never_panics(text in "\\PC{0,300}") {
        let _ = parse_documents(&text);
        let (items, _) = manifest_items("fuzz.yaml", &text);
        for item in items {
            let _ = Object::from_value(item.value);
        }
        let mut set = ConfigSet::default();
        let _ = set.add_text("fuzz.yaml", &text);
        let _ = set.cross_check();
    }

    #[test]
    fn yaml_looking_text_never_panics(lines in prop::collection::vec("( {0,4})([a-z]{1,6}: ?|- |--- ?|&a |\\*a|<<: |\\[|\\]|\\{|\\}|'|\"|#|\\|)[a-z0-9 ,:]{0,8}", 0..20)) {
        let text = lines.join("\n");
        let _ = parse_documents(&text);
    }

    #[test]
    fn emitted_yaml_reads_back_unchanged(v in json_value()) {
        prop_assume!(v.is_object());
        let text = kubebid_model::emit::to_yaml(&v).map_err(TestCaseError::fail)?;
        let docs = parse_documents(&text);
        let doc = docs.into_iter().next().ok_or_else(|| TestCaseError::fail("no document"))?;
        let doc = doc.map_err(|e| TestCaseError::fail(format!("{e}: {text}")))?;
        prop_assert_eq!(doc.value, v, "{}", text);
    }

    #[test]
    fn any_json_value_reads_back_unchanged(v in json_value()) {
        let text = serde_json::to_string_pretty(&v).expect("serialises");
        let docs = parse_documents(&text);
        prop_assert_eq!(docs.len(), usize::from(!v.is_null()));
        if let Some(doc) = docs.into_iter().next() {
            let doc = doc.map_err(|e| TestCaseError::fail(format!("{e}: {text}")))?;
            prop_assert_eq!(doc.value, v);
        }
    }
}
