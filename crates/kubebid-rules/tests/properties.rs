//! No input makes loading, compiling or evaluating panic: arbitrary bytes, and upstream rules mutated.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use kubebid_rules::{AuditEvent, Engine, K8sAudit, Loader, Scratch, parse_condition};
use proptest::prelude::*;

const UPSTREAM: &str = include_str!("data/k8s_audit_rules.yaml");

/// Loads, compiles and evaluates `text`; every error must name the file it came from.
fn exercise(text: &str) {
    let mut l = Loader::new();
    let compiled = l
        .add("fuzz.yaml", text)
        .and_then(|()| l.finish())
        .and_then(|set| Engine::compile(&set, K8sAudit::new()));
    match compiled {
        Ok(engine) => {
            let ev = serde_json::json!({"auditID": "x", "stage": "ResponseComplete", "verb": "create",
                "objectRef": {"resource": "pods"}, "user": {"username": "u"}});
            let alerts = engine.alerts(&AuditEvent::new(&ev), &mut Scratch::new());
            assert!(alerts.len() <= engine.rules().len());
            assert_eq!(
                engine.report().rules.len(),
                engine.report().to_string().lines().count() - 1
            );
        }
        Err(e) => assert_eq!(e.file, "fuzz.yaml", "{e}"),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let text = String::from_utf8_lossy(&bytes);
        exercise(&text);
        let _ = parse_condition(&text);
    }

    #[test]
    fn mutated_upstream_rules_never_panic(
        edits in proptest::collection::vec((any::<prop::sample::Index>(), 0usize..4, "[ -~\n]{0,6}"), 1..6)
    ) {
        let mut text = UPSTREAM.to_owned();
        for (at, kind, s) in edits {
            let mut i = at.index(text.len().max(1));
            while i > 0 && !text.is_char_boundary(i) { i -= 1; }
            match kind {
                0 => text.insert_str(i, &s),
                1 => { let end = (i + s.len() + 1).min(text.len()); if text.is_char_boundary(end) { text.replace_range(i..end, ""); } }
                2 => { let end = (i + s.len()).min(text.len()); if text.is_char_boundary(end) { text.replace_range(i..end, &s); } }
                _ => text.truncate(i),
            }
        }
        exercise(&text);
    }

    #[test]
    fn arbitrary_conditions_never_panic(cond in "[a-z.()\\[\\]=!<> ,'\"/*0-9]{0,80}") {
        let rule = format!("- rule: R\n  desc: d\n  condition: {cond:?}\n  output: o %ka.verb\n  priority: info\n  source: k8s_audit\n");
        exercise(&rule);
    }
}
