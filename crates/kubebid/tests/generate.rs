//! `kubebid generate webhooks` and `kubebid generate crds`: the YAML reads back as the Kubernetes objects
//! the API server expects, with the CA bundle, fail-closed policies and KubeBid's own account skipped.

// Test helpers fail the test by panicking on broken fixtures; that is their job.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::process::Command;

use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhookConfiguration, ValidatingWebhookConfiguration,
};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kubebid_model::yaml::parse_documents;

fn kubebid(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_kubebid"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap(),
        String::from_utf8(out.stdout).unwrap(),
    )
}

#[test]
fn webhook_configurations_read_back_with_the_ca_and_fail_closed() {
    let dir = std::env::temp_dir().join(format!("kubebid-gen-{}", std::process::id()));
    kubebid_webhook::certs::generate(&dir, &["localhost".into()]).unwrap();
    let ca = dir.join("ca.crt");
    let (code, yaml) = kubebid(&[
        "generate",
        "webhooks",
        "--ca-bundle",
        ca.to_str().unwrap(),
        "--service",
        "kubebid-system/kubebid-webhook",
    ]);
    assert_eq!(code, 0);
    let docs: Vec<_> = parse_documents(&yaml)
        .into_iter()
        .map(|d| d.unwrap().value)
        .collect();
    assert_eq!(docs.len(), 2);
    let v: ValidatingWebhookConfiguration = serde_json::from_value(docs[0].clone()).unwrap();
    let m: MutatingWebhookConfiguration = serde_json::from_value(docs[1].clone()).unwrap();
    let pem = std::fs::read(&ca).unwrap();
    let hooks = v.webhooks.unwrap();
    let names: Vec<&str> = hooks.iter().map(|h| h.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "tenants.validate.kubebid.io",
            "namespaces.validate.kubebid.io",
            "endpoints.validate.kubebid.io",
            "config.validate.kubebid.io",
            "cluster.validate.kubebid.io"
        ]
    );
    for h in &hooks {
        assert_eq!(h.failure_policy.as_deref(), Some("Fail"));
        assert_eq!(h.side_effects, "None");
        assert_eq!(h.client_config.ca_bundle.as_ref().unwrap().0, pem);
        let svc = h.client_config.service.as_ref().unwrap();
        assert_eq!(
            (
                svc.namespace.as_str(),
                svc.name.as_str(),
                svc.path.as_deref()
            ),
            ("kubebid-system", "kubebid-webhook", Some("/validate"))
        );
        assert!(h.match_conditions.as_ref().unwrap().iter().any(|c| {
            c.expression
                .contains("system:serviceaccount:kubebid-system:kubebid")
        }));
        // No selector rests on a label a namespace's editor can change: namespaces are matched by the
        // name label the API server sets, cluster-scoped objects by an object selector (old and new).
        if let Some(sel) = &h.namespace_selector {
            let req = &sel.match_expressions.as_ref().unwrap()[0];
            assert_eq!(
                (req.key.as_str(), req.operator.as_str()),
                ("kubernetes.io/metadata.name", "NotIn"),
                "{}",
                h.name
            );
            let excluded = req.values.as_ref().unwrap();
            for ns in ["kube-system", "kubebid-system"] {
                assert!(excluded.contains(&ns.to_owned()), "{}: {ns}", h.name);
            }
        }
    }
    let tenants = &hooks[0];
    // Deletions by Kubernetes' controllers (garbage collection, namespace deletion) do not wait on it.
    assert!(tenants.match_conditions.as_ref().unwrap().iter().any(|c| {
        c.name == "not-platform-deletes"
            && c.expression.contains("system:serviceaccount:kube-system:")
    }));
    // Namespaces and endpoints are judged for tenants only, whatever their labels.
    for h in &hooks[1..3] {
        assert!(
            h.match_conditions
                .as_ref()
                .unwrap()
                .iter()
                .any(|c| c.name == "not-the-platform"),
            "{}",
            h.name
        );
    }
    assert!(hooks[2].rules.as_ref().unwrap().iter().any(|r| {
        r.resources
            .as_ref()
            .unwrap()
            .contains(&"pods/binding".to_owned())
    }));
    assert!(hooks[4].object_selector.is_some());
    let rules = tenants.rules.as_ref().unwrap();
    assert!(rules.iter().any(|r| {
        r.operations.as_ref().unwrap() == &["CONNECT"]
            && r.resources
                .as_ref()
                .unwrap()
                .contains(&"pods/exec".to_owned())
    }));
    assert!(rules.iter().any(|r| {
        r.resources
            .as_ref()
            .unwrap()
            .contains(&"pods/ephemeralcontainers".to_owned())
    }));
    let mh = &m.webhooks.unwrap()[0];
    assert_eq!(
        mh.client_config.service.as_ref().unwrap().path.as_deref(),
        Some("/mutate")
    );
    assert_eq!(mh.reinvocation_policy.as_deref(), Some("IfNeeded"));
    // Bad input is refused.
    assert_eq!(
        kubebid(&[
            "generate",
            "webhooks",
            "--ca-bundle",
            ca.to_str().unwrap(),
            "--url",
            "http://insecure"
        ])
        .0,
        2
    );
    assert_eq!(
        kubebid(&[
            "generate",
            "webhooks",
            "--ca-bundle",
            "/nonexistent",
            "--url",
            "https://x"
        ])
        .0,
        2
    );
    assert_eq!(
        kubebid(&[
            "generate",
            "webhooks",
            "--ca-bundle",
            ca.to_str().unwrap(),
            "--service",
            "nonamespace"
        ])
        .0,
        2
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn crds_read_back() {
    let (code, yaml) = kubebid(&["generate", "crds"]);
    assert_eq!(code, 0);
    let names: Vec<String> = parse_documents(&yaml)
        .into_iter()
        .map(|d| {
            serde_json::from_value::<CustomResourceDefinition>(d.unwrap().value)
                .unwrap()
                .metadata
                .name
                .unwrap()
        })
        .collect();
    assert_eq!(
        names,
        [
            "kubebidconfigs.kubebid.io",
            "tenants.kubebid.io",
            "policyexceptions.kubebid.io"
        ]
    );
}

#[test]
fn vap_reads_back_with_the_cel_the_agreement_test_checks() {
    use k8s_openapi::api::admissionregistration::v1::{
        ValidatingAdmissionPolicy, ValidatingAdmissionPolicyBinding,
    };
    let (code, yaml) = kubebid(&["generate", "vap", "--config", "../../examples/config"]);
    assert_eq!(code, 0, "{yaml}");
    // The output names the rules it carries before the objects.
    for (id, _) in kubebid_policy::vap::CARRIED {
        assert!(yaml.contains(&format!("#   {id} (")), "{id} not listed");
    }
    let docs: Vec<_> = parse_documents(&yaml)
        .into_iter()
        .map(|d| d.unwrap().value)
        .collect();
    let policy = {
        let mut set = kubebid_model::load::ConfigSet::default();
        for f in ["kubebid.yaml", "exceptions.yaml"] {
            let text = std::fs::read_to_string(format!("../../examples/config/{f}")).unwrap();
            assert!(set.add_text(f, &text).is_empty());
        }
        kubebid_policy::PolicySet::from_config(&set).unwrap()
    };
    let expected = kubebid_policy::vap::validations(&policy);
    assert_eq!(docs.len(), 2 * expected.len());
    for (i, (name, validations)) in expected.iter().enumerate() {
        let p: ValidatingAdmissionPolicy = serde_json::from_value(docs[i].clone()).unwrap();
        assert_eq!(p.metadata.name.as_deref(), Some(*name));
        let spec = p.spec.unwrap();
        assert_eq!(spec.failure_policy.as_deref(), Some("Fail"));
        let got = spec.validations.unwrap();
        assert_eq!(got.len(), validations.len());
        for (g, (id, expr, _)) in got.iter().zip(validations) {
            assert_eq!(&g.expression, expr);
            assert!(g.message.as_ref().unwrap().starts_with(&format!("[{id}]")));
        }
        let binding: ValidatingAdmissionPolicyBinding =
            serde_json::from_value(docs[expected.len() + i].clone()).unwrap();
        assert_eq!(binding.spec.validation_actions, ["Deny"]);
        assert_eq!(binding.spec.policy_name, *name);
        // Bound to every namespace but the platform's, by the name label nobody can change.
        let selector = binding
            .spec
            .match_resources
            .unwrap()
            .namespace_selector
            .unwrap();
        let req = &selector.match_expressions.unwrap()[0];
        assert_eq!(req.key, "kubernetes.io/metadata.name");
        assert_eq!(req.operator, "NotIn");
        assert!(
            req.values
                .as_ref()
                .unwrap()
                .contains(&"kube-system".to_owned())
        );
    }
}

#[test]
fn tenant_render_prints_every_managed_object_and_the_api_server_files() {
    let dir = std::env::temp_dir().join(format!("kubebid-render-{}", std::process::id()));
    let (code, yaml) = kubebid(&[
        "tenant",
        "render",
        "../../examples/config",
        "--api-server-dir",
        dir.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{yaml}");
    let docs: Vec<_> = parse_documents(&yaml)
        .into_iter()
        .map(|d| d.unwrap().value)
        .collect();
    let kinds = |k: &str| docs.iter().filter(|d| d["kind"] == k).count();
    // The microVM class, and one per memory encryption technology.
    assert_eq!(kinds("RuntimeClass"), 3);
    assert_eq!(kinds("StorageClass"), 1);
    assert_eq!(
        kinds("Namespace"),
        4,
        "acme has two namespaces, globex and initech one each"
    );
    // A quota and a zero-pod quota over priority classes per namespace.
    assert_eq!(kinds("ResourceQuota"), 8);
    for f in ["audit-policy.yaml", "encryption-config.yaml"] {
        assert!(dir.join(f).exists(), "{f}");
    }
    let enc =
        parse_documents(&std::fs::read_to_string(dir.join("encryption-config.yaml")).unwrap());
    assert_eq!(
        enc[0].as_ref().unwrap().value["kind"],
        "EncryptionConfiguration"
    );
    // The audit webhook backend's kubeconfig points at the sink, with the files the flags name.
    let kubeconfig =
        parse_documents(&std::fs::read_to_string(dir.join("audit-webhook.kubeconfig")).unwrap());
    let kc = &kubeconfig[0].as_ref().unwrap().value;
    assert_eq!(kc["kind"], "Config");
    assert_eq!(
        kc["clusters"][0]["cluster"]["server"],
        "https://kubebid-audit.kubebid-system.svc:8444/events"
    );
    assert_eq!(
        kc["users"][0]["user"]["client-certificate"],
        "/etc/kubernetes/kubebid/audit-client.crt"
    );
    let flags = std::fs::read_to_string(dir.join("kube-apiserver-flags.txt")).unwrap();
    for flag in [
        "--audit-policy-file=/etc/kubernetes/kubebid/audit-policy.yaml",
        "--audit-webhook-config-file=/etc/kubernetes/kubebid/audit-webhook.kubeconfig",
        "--audit-webhook-mode=batch",
        "--encryption-provider-config=/etc/kubernetes/kubebid/encryption-config.yaml",
    ] {
        assert!(flags.lines().any(|l| l == flag), "{flag} in {flags}");
    }
    // Two tenants claiming one namespace are refused, as the webhook would.
    let clash = dir.join("clash.yaml");
    std::fs::write(&clash, "apiVersion: kubebid.io/v1alpha1\nkind: Tenant\nmetadata: {name: a}\nspec: {namespaces: [x]}\n---\napiVersion: kubebid.io/v1alpha1\nkind: Tenant\nmetadata: {name: b}\nspec: {namespaces: [x]}\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_kubebid"))
        .args(["tenant", "render", clash.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("already belongs to tenant"));
    let _ = std::fs::remove_dir_all(dir);
}
