//! Falco's upstream k8saudit rules load, are all evaluable, and fire on the events they describe.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

mod common;

use common::*;
use kubebid_rules::{Engine, K8sAudit, Priority, RuleSet, RuleStatus, Scratch};

#[test]
fn upstream_rules_are_all_evaluable() {
    let set = RuleSet::from_yaml("k8s_audit_rules.yaml", UPSTREAM).expect("loads");
    assert_eq!(set.required_engine_version.as_deref(), Some("15"));
    assert!(
        set.required_plugin_versions
            .iter()
            .any(|p| p.name == "k8saudit")
    );
    let engine = Engine::compile(&set, K8sAudit::new()).expect("compiles");
    let report = engine.report();
    let not_evaluable: Vec<_> = report
        .rules
        .iter()
        .filter(|r| r.source == "k8s_audit" && r.status != RuleStatus::Evaluable)
        .collect();
    assert!(not_evaluable.is_empty(), "{report}");
    assert!(report.rules.len() >= 40, "{} rules", report.rules.len());
    assert_eq!(report.evaluable_count(), report.rules.len());
    assert!(report.to_string().contains("evaluable"));
}

#[test]
fn expected_rules_fire_on_each_event() {
    let engine = Engine::compile(&upstream_and_kubebid(), K8sAudit::new()).expect("compiles");
    for case in cases() {
        let mut got = fired(&engine, &case.event());
        let mut want = case.expect.clone();
        got.sort();
        want.sort();
        assert_eq!(got, want, "{}", case.name);
    }
}

#[test]
fn alerts_substitute_fields_and_print_as_falco_json() {
    let engine = Engine::compile(&upstream_and_kubebid(), K8sAudit::new()).expect("compiles");
    let cases = cases();
    let privileged = cases
        .iter()
        .find(|c| c.name == "privileged pod create")
        .expect("case");
    let alerts = engine.alerts(&privileged.event(), &mut Scratch::new());
    let a = alerts
        .iter()
        .find(|a| a.rule == "Create Privileged Pod")
        .expect("alert");
    assert_eq!(a.priority, Priority::Warning);
    assert!(
        a.message.contains("user=alice@acme.example pod=debug resource=pods ns=acme-web images=(docker.io/library/alpine:3.20,ghcr.io/acme/proxy:2.1) init_images=<NA>"),
        "{}",
        a.message
    );
    let j = a.to_json("audit-sink-0");
    assert_eq!(j["hostname"], "audit-sink-0");
    assert_eq!(j["priority"], "Warning");
    assert_eq!(j["rule"], "Create Privileged Pod");
    assert_eq!(j["source"], "k8s_audit");
    assert_eq!(j["tags"], serde_json::json!(["k8s"]));
    assert_eq!(j["time"], "2026-05-04T10:15:03.123456789Z");
    assert!(
        j["output"]
            .as_str()
            .unwrap()
            .starts_with("10:15:03.123456789: Warning Pod started with privileged container")
    );
    assert_eq!(j["output_fields"]["ka.user.name"], "alice@acme.example");
    assert_eq!(
        j["output_fields"]["ka.req.pod.initContainers.image"],
        serde_json::Value::Null
    );

    // A minimum priority drops less severe rules before they are evaluated.
    let errors_only = Engine::compile(&upstream_and_kubebid(), K8sAudit::new())
        .expect("compiles")
        .with_min_priority(Priority::Error);
    let secret = cases
        .iter()
        .find(|c| c.name == "cross-tenant secret get")
        .expect("case");
    let got = fired(&errors_only, &secret.event());
    assert_eq!(
        got,
        vec![
            "K8s Secret Get Successfully",
            "KubeBid Cross-Tenant Secret Read"
        ]
    );
    let privileged_high = fired(&errors_only, &privileged.event());
    assert!(privileged_high.is_empty(), "{privileged_high:?}");
}

#[test]
fn prefilter_skips_most_rules_without_changing_results() {
    let engine = Engine::compile(&upstream_and_kubebid(), K8sAudit::new()).expect("compiles");
    let mut scratch = Scratch::new();
    let mut reference = Scratch::new();
    for case in cases() {
        let with = engine.matches(&case.event(), &mut scratch).to_vec();
        let without = engine
            .matches_without_prefilter(&case.event(), &mut reference)
            .to_vec();
        assert_eq!(with, without, "{}", case.name);
        let n = engine.candidates(&case.event(), &mut scratch);
        assert!(
            n < engine.rules().len() / 2,
            "{}: {n} of {} rules evaluated",
            case.name,
            engine.rules().len()
        );
    }
}
