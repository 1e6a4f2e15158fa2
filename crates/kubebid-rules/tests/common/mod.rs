//! Shared fixtures: the upstream rules, KubeBid's, and the audit events with their expected alerts.

#![allow(dead_code, clippy::expect_used)]

use kubebid_rules::{
    ActorKind, AuditEvent, Engine, K8sAudit, KubeBidContext, Loader, RuleSet, Scratch,
};
use serde_json::Value;

pub const UPSTREAM: &str = include_str!("../data/k8s_audit_rules.yaml");
pub const EVENTS: &str = include_str!("../data/audit_events.jsonl");

pub fn upstream_and_kubebid() -> RuleSet {
    let mut l = Loader::new();
    l.add("k8s_audit_rules.yaml", UPSTREAM)
        .expect("upstream rules load");
    l.add(
        kubebid_rules::KUBEBID_AUDIT_RULES_FILE,
        kubebid_rules::kubebid_audit_rules(),
    )
    .expect("KubeBid rules load");
    l.finish().expect("conditions parse")
}

pub struct Case {
    pub name: String,
    pub expect: Vec<String>,
    pub event: Value,
    pub tenant: String,
    pub actor_tenant: String,
    pub actor_kind: ActorKind,
    pub denied: bool,
}

impl Case {
    pub fn event(&self) -> AuditEvent<'_> {
        AuditEvent::new(&self.event).with_context(KubeBidContext {
            tenant: &self.tenant,
            actor_tenant: &self.actor_tenant,
            actor_kind: self.actor_kind,
            denied: self.denied,
        })
    }
}

pub fn cases() -> Vec<Case> {
    EVENTS
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let v: Value = serde_json::from_str(l).expect("a JSON line");
            let c = &v["context"];
            let s = |k: &str| c[k].as_str().unwrap_or_default().to_owned();
            Case {
                name: v["name"].as_str().unwrap_or_default().to_owned(),
                expect: v["expect"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .filter_map(|x| x.as_str().map(str::to_owned))
                            .collect()
                    })
                    .unwrap_or_default(),
                event: v["event"].clone(),
                tenant: s("tenant"),
                actor_tenant: s("actor_tenant"),
                actor_kind: match c["actor_kind"].as_str() {
                    Some("platform") => ActorKind::Platform,
                    Some("tenant") => ActorKind::Tenant,
                    Some("exempt") => ActorKind::Exempt,
                    _ => ActorKind::Unknown,
                },
                denied: c["denied"].as_bool().unwrap_or(false),
            }
        })
        .collect()
}

pub fn fired(engine: &Engine<K8sAudit>, ev: &AuditEvent<'_>) -> Vec<String> {
    let mut scratch = Scratch::new();
    engine
        .matches(ev, &mut scratch)
        .iter()
        .map(|&id| engine.rules()[id as usize].name().to_owned())
        .collect()
}
