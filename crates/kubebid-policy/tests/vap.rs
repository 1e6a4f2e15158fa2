//! The generated ValidatingAdmissionPolicy CEL agrees with the native engine: every PSA fixture is run
//! through both (CEL by kube-cel's Kubernetes-compatible evaluator), and for the rules the CEL covers the
//! set of failing rules must be identical.

// Test helpers fail the test by panicking on broken fixtures; that is their job.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::collections::BTreeSet;
use std::path::PathBuf;

use kube_cel::{CompiledVapExpression, VapError, VapEvaluator, VapExpression};
use kubebid_model::Object;
use kubebid_model::Profile;
use kubebid_model::load::manifest_items;
use kubebid_policy::{PolicySet, Request};
use kubebid_webhook::vap::{pod_validations, service_validations};
use serde_json::{Value, json};

fn corpus() -> PathBuf {
    std::env::var("KUBEBID_PSA_DIR").map_or_else(
        |_| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/conformance/psa"),
        PathBuf::from,
    )
}

struct Cel {
    ids: Vec<&'static str>,
    compiled: Vec<Result<CompiledVapExpression, VapError>>,
}

impl Cel {
    fn new(validations: Vec<(&'static str, String, &'static str)>) -> Self {
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

    fn failing(&self, object: &Value) -> BTreeSet<&'static str> {
        let results = VapEvaluator::builder()
            .object(object.clone())
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

fn native(
    baseline: &PolicySet,
    zero_trust: &PolicySet,
    value: &Value,
    covered: &BTreeSet<&str>,
) -> BTreeSet<&'static str> {
    let object = Object::from_value(value.clone()).unwrap();
    let mut out = BTreeSet::new();
    // PSS rules at baseline (where hostPathVolumes and capabilities_baseline are not overridden), tenant
    // rules under zero-trust.
    for p in [baseline, zero_trust] {
        for f in p.evaluate(&Request::create(&object)).findings {
            if covered.contains(f.rule.id) {
                out.insert(f.rule.id);
            }
        }
    }
    out
}

#[test]
fn pod_cel_agrees_with_the_engine_on_every_psa_fixture_in_every_kind() {
    let dir = corpus();
    let manifest =
        std::fs::read_to_string(dir.join("manifest.tsv")).expect("PSA fixtures are required");
    let cel = Cel::new(pod_validations(&["kubebid-secure".to_owned()]));
    let covered: BTreeSet<&str> = cel.ids.iter().copied().collect();
    let baseline = PolicySet::builtin().with_profile(Profile::Baseline);
    let zero_trust = PolicySet::builtin();
    let (mut compared, mut denied_somewhere) = (0, 0);
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
            // The pod itself, and the same spec inside a Deployment and a CronJob.
            let template =
                json!({"metadata": pod["metadata"].clone(), "spec": pod["spec"].clone()});
            let forms = [
                pod.clone(),
                json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d", "namespace": "t"}, "spec": {"selector": {}, "template": template}}),
                json!({"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "c", "namespace": "t"}, "spec": {"schedule": "@daily", "jobTemplate": {"spec": {"template": template}}}}),
            ];
            for form in forms {
                let by_cel = cel.failing(&form);
                let by_engine = native(&baseline, &zero_trust, &form, &covered);
                assert_eq!(
                    by_cel, by_engine,
                    "{path} (runtime class set: {runtime}, kind {})",
                    form["kind"]
                );
                compared += 1;
                denied_somewhere += usize::from(by_cel.iter().any(|r| r.starts_with("pss/")));
            }
        }
    }
    println!(
        "CEL backstop agrees with the engine on {compared} objects ({} distinct fixtures, {denied_somewhere} denied by a PSS rule)",
        seen.len()
    );
    assert!(
        compared > 1000 && denied_somewhere > 200,
        "{compared} / {denied_somewhere}"
    );
}

#[test]
fn service_cel_agrees_with_the_engine() {
    let cel = Cel::new(service_validations());
    let covered: BTreeSet<&str> = cel.ids.iter().copied().collect();
    let zero_trust = PolicySet::builtin();
    for spec in [
        json!({}),
        json!({"type": "ClusterIP"}),
        json!({"type": "NodePort"}),
        json!({"type": "ExternalName", "externalName": "x.example"}),
    ] {
        let svc = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s", "namespace": "t"}, "spec": spec});
        assert_eq!(
            cel.failing(&svc),
            native(&zero_trust, &zero_trust, &svc, &covered),
            "{svc}"
        );
    }
}
