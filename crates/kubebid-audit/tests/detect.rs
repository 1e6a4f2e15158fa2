//! Detection in the sink: stored events through KubeBid's k8s_audit rules with the tenancy's fields, and
//! alerts out as Falco JSON to a file and to the outbound webhook.

// Test fixtures fail the test loudly.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use bytes::Bytes;
use kubebid_audit::detect::{AlertOutput, JsonLines, denied_by_kubebid, spawn_webhook, start};
use kubebid_audit::metrics::AuditMetrics;
use kubebid_audit::store::{Batch, Trail};
use kubebid_model::config::Tenant;
use kubebid_model::tenancy::Tenancy;
use serde_json::json;

fn tenancy() -> Tenancy {
    let t = |name: &str, ns: &str, group: &str| -> Tenant {
        serde_json::from_value(json!({"apiVersion": "kubebid.io/v1alpha1", "kind": "Tenant", "metadata": {"name": name},
            "spec": {"namespaces": [ns], "owners": [{"kind": "Group", "name": group}]}}))
        .unwrap()
    };
    Tenancy::new(
        &Default::default(),
        &[
            t("acme", "acme-prod", "acme-admins"),
            t("globex", "globex", "globex-admins"),
        ],
    )
}

/// Lines written to a shared buffer.
#[derive(Clone, Default)]
struct Buffer(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Buffer {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn a_cross_tenant_secret_read_raises_an_alert_naming_both_tenants_in_every_output() {
    let engine = kubebid_rules::Engine::compile(
        &kubebid_rules::RuleSet::from_yaml(
            kubebid_rules::KUBEBID_AUDIT_RULES_FILE,
            kubebid_rules::kubebid_audit_rules(),
        )
        .unwrap(),
        kubebid_rules::K8sAudit::new(),
    )
    .unwrap();
    let (addr, seen) = common::receiver().await;
    let metrics = AuditMetrics::default();
    let buffer = Buffer::default();
    let outputs: Vec<Box<dyn AlertOutput>> = vec![
        Box::new(JsonLines(buffer.clone())),
        Box::new(
            spawn_webhook(
                format!("http://{addr}/falco").parse().unwrap(),
                metrics.alert_webhook_failures.clone(),
            )
            .unwrap(),
        ),
    ];
    let detection = start(
        engine,
        Arc::new(ArcSwap::from_pointee(tenancy())),
        outputs,
        "node-1".into(),
        metrics.clone(),
    )
    .unwrap();
    let read = json!({"kind": "Event", "apiVersion": "audit.k8s.io/v1", "auditID": "x1", "stage": "ResponseComplete",
        "verb": "get", "requestURI": "/api/v1/namespaces/globex/secrets/db", "user": {"username": "alice", "groups": ["acme-admins"]},
        "objectRef": {"resource": "secrets", "namespace": "globex", "name": "db", "apiVersion": "v1"},
        "responseStatus": {"code": 200}, "stageTimestamp": "2026-11-29T10:00:00Z"})
    .to_string();
    // Her own tenant's Secret is no alert.
    let own = read
        .replace("namespaces/globex", "namespaces/acme-prod")
        .replace("\"namespace\":\"globex\"", "\"namespace\":\"acme-prod\"");
    let body = format!("{read}{own}");
    detection.offer(Batch {
        body: Bytes::from(body.clone()),
        events: vec![
            (Trail::Tenant("globex".into()), 0..read.len()),
            (Trail::Tenant("acme".into()), read.len()..body.len()),
        ],
    });
    for _ in 0..300 {
        if !seen.lock().unwrap().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let lines: Vec<serde_json::Value> = String::from_utf8(buffer.0.lock().unwrap().clone())
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 1, "{lines:?}");
    let alert = &lines[0];
    assert_eq!(alert["rule"], "KubeBid Cross-Tenant Secret Read");
    assert_eq!(alert["priority"], "Critical");
    assert_eq!(alert["hostname"], "node-1");
    assert_eq!(alert["output_fields"]["kubebid.tenant"], "globex");
    assert_eq!(alert["output_fields"]["kubebid.actor.tenant"], "acme");
    let posted = seen.lock().unwrap().clone();
    assert_eq!(posted.len(), 1);
    assert_eq!(posted[0].0, "/falco");
    assert_eq!(posted[0].2, *alert, "the webhook gets the same alert");
    let text = metrics.encode();
    assert!(text.contains(r#"kubebid_audit_alerts_total{rule="KubeBid Cross-Tenant Secret Read",tenant="globex",priority="Critical"} 1"#), "{text}");
}

#[test]
fn a_denial_is_kubebids_only_when_its_webhook_or_policy_said_so() {
    let event = |code: i64, message: &str| {
        json!({"auditID": "a", "stage": "ResponseComplete", "verb": "create", "user": {"username": "u"},
            "responseStatus": {"code": code, "message": message}})
        .to_string()
    };
    let denied = |text: &str| denied_by_kubebid(&kubebid_audit::event::head(text).unwrap());
    assert!(denied(&event(
        403,
        r#"admission webhook "pods.validate.kubebid.io" denied the request: privileged"#
    )));
    assert!(denied(&event(
        422,
        "ValidatingAdmissionPolicy 'kubebid-pods' with binding 'kubebid-pods' denied request"
    )));
    assert!(!denied(&event(
        403,
        r#"admission webhook "validate.kyverno.svc" denied the request"#
    )));
    assert!(!denied(&event(
        200,
        r#"admission webhook "x.kubebid.io" denied the request"#
    )));
}
