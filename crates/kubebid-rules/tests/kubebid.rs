//! KubeBid's tenant-aware rules: each fires on what it is about and not on its near misses.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

mod common;

use common::*;
use kubebid_rules::{ActorKind, Engine, K8sAudit, RuleSet, RuleStatus, Scratch};
use serde_json::json;

fn kubebid_only() -> Engine<K8sAudit> {
    let set = RuleSet::from_yaml(
        kubebid_rules::KUBEBID_AUDIT_RULES_FILE,
        kubebid_rules::kubebid_audit_rules(),
    )
    .expect("loads alone");
    let e = Engine::compile(&set, K8sAudit::new()).expect("compiles");
    assert!(
        e.report()
            .rules
            .iter()
            .all(|r| r.status == RuleStatus::Evaluable),
        "{}",
        e.report()
    );
    assert_eq!(e.report().rules.len(), 5);
    e
}

fn case(name: &str) -> Case {
    cases().into_iter().find(|c| c.name == name).expect("case")
}

#[test]
fn exec_and_attach() {
    let e = kubebid_only();
    let mut c = case("pod exec");
    assert_eq!(
        fired(&e, &c.event()),
        vec!["KubeBid Exec or Attach Into Pod"]
    );
    let alert = e.alerts(&c.event(), &mut Scratch::new()).remove(0);
    assert!(alert.message.contains("tenant=acme "), "{}", alert.message);
    assert!(
        alert.message.contains("command=/bin/sh"),
        "{}",
        alert.message
    );
    c.event["objectRef"]["subresource"] = json!("attach");
    assert_eq!(
        fired(&e, &c.event()),
        vec!["KubeBid Exec or Attach Into Pod"]
    );
    c.event["objectRef"]["subresource"] = json!("log");
    assert!(fired(&e, &c.event()).is_empty());
}

#[test]
fn cross_tenant_secret_reads() {
    let e = kubebid_only();
    let mut c = case("cross-tenant secret get");
    assert_eq!(
        fired(&e, &c.event()),
        vec!["KubeBid Cross-Tenant Secret Read"]
    );
    let alert = e.alerts(&c.event(), &mut Scratch::new()).remove(0);
    assert!(
        alert.message.contains(
            "tenant=acme actor=system:serviceaccount:globex-ci:deployer actor_tenant=globex"
        ),
        "{}",
        alert.message
    );
    // Secret of no tenant, read by a tenant: still across tenants.
    c.tenant = String::new();
    assert_eq!(
        fired(&e, &c.event()),
        vec!["KubeBid Cross-Tenant Secret Read"]
    );
    // Same tenant, or an actor of no tenant (platform): not this rule.
    c.tenant = "globex".into();
    assert!(fired(&e, &c.event()).is_empty());
    c.tenant = "acme".into();
    c.actor_tenant = String::new();
    assert!(fired(&e, &c.event()).is_empty());
    // A configmap is not a secret.
    let mut c = case("cross-tenant secret get");
    c.event["objectRef"]["resource"] = json!("configmaps");
    assert!(fired(&e, &c.event()).is_empty());
}

#[test]
fn rbac_changes() {
    let e = kubebid_only();
    let mut c = case("clusterrolebinding create");
    assert_eq!(fired(&e, &c.event()), vec!["KubeBid RBAC Change"]);
    let alert = e.alerts(&c.event(), &mut Scratch::new()).remove(0);
    assert!(
        alert.message.contains("tenant= actor=alice@acme.example"),
        "{}",
        alert.message
    );
    assert!(
        alert.message.contains("ns=<NA> role=cluster-admin"),
        "{}",
        alert.message
    );
    for (resource, verb) in [
        ("roles", "delete"),
        ("rolebindings", "patch"),
        ("clusterroles", "update"),
    ] {
        c.event["objectRef"]["resource"] = json!(resource);
        c.event["verb"] = json!(verb);
        assert_eq!(
            fired(&e, &c.event()),
            vec!["KubeBid RBAC Change"],
            "{resource} {verb}"
        );
    }
    c.event["verb"] = json!("get");
    assert!(fired(&e, &c.event()).is_empty());
    c.event["verb"] = json!("create");
    c.event["user"]["username"] = json!("system:kube-controller-manager");
    assert!(
        fired(&e, &c.event()).is_empty(),
        "Kubernetes' own controllers are excluded"
    );
}

#[test]
fn admission_denials() {
    let e = kubebid_only();
    let mut c = case("request denied by admission");
    assert_eq!(fired(&e, &c.event()), vec!["KubeBid Admission Denied"]);
    let alert = e.alerts(&c.event(), &mut Scratch::new()).remove(0);
    assert!(
        alert.message.contains("tenant=acme ") && alert.message.contains("reason=Forbidden"),
        "{}",
        alert.message
    );
    c.denied = false;
    assert!(fired(&e, &c.event()).is_empty());
}

#[test]
fn platform_identity_in_tenant_namespace() {
    let e = kubebid_only();
    let mut c = case("platform operator in tenant namespace");
    assert_eq!(
        fired(&e, &c.event()),
        vec!["KubeBid Platform Identity In Tenant Namespace"]
    );
    c.tenant = String::new();
    assert!(
        fired(&e, &c.event()).is_empty(),
        "outside tenant namespaces"
    );
    c.tenant = "acme".into();
    c.actor_kind = ActorKind::Tenant;
    assert!(fired(&e, &c.event()).is_empty(), "tenant identities");
    c.actor_kind = ActorKind::Platform;
    c.event["user"]["username"] = json!("system:node:worker-3");
    assert!(fired(&e, &c.event()).is_empty(), "kubelets");
    let controller = case("benign: controller updates a replicaset in a tenant namespace");
    assert!(fired(&e, &controller.event()).is_empty());
}
