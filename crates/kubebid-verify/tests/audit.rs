//! The audit probe against KubeBid's real audit sink on loopback: events posted as the API server posts
//! them (the probes' dry-run creations, impersonated as the tenant), then read back by the probe through
//! the sink's query API with a bearer token. Events filed for another identity, a token the sink refuses
//! and a tenant whose events never arrive must each fail.

// Test fixtures fail the test loudly.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

mod common;

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, StatusCode};
use kubebid_audit::head::{KeyFile, Signer as _};
use kubebid_audit::log::LogConfig;
use kubebid_audit::metrics::AuditMetrics;
use kubebid_audit::sink::{Access, SinkState, serve_in};
use kubebid_audit::store::Store;
use kubebid_server::Shutdown;
use kubebid_server::http::{Process, Transport};
use kubebid_verify::admission_subjects;
use kubebid_verify::audit::{AuditSink, not_checked, probe};
use serde_json::{Value, json};
use zeroize::Zeroizing;

const TENANTS: &str = "apiVersion: kubebid.io/v1alpha1
kind: Tenant
metadata: {name: acme}
spec:
  namespaces: [acme-prod]
  owners: [{kind: Group, name: acme-admins}]
---
apiVersion: kubebid.io/v1alpha1
kind: Tenant
metadata: {name: globex}
spec:
  namespaces: [globex]
  owners: [{kind: User, name: hank@globex.example}]
";

/// Lets the token `auditor` read every trail.
struct Auditor;

impl Access for Auditor {
    fn may_read<'a>(
        &'a self,
        token: &'a str,
        _: Vec<String>,
    ) -> Pin<Box<dyn Future<Output = Result<bool, String>> + Send + 'a>> {
        Box::pin(async move { Ok(token == "auditor") })
    }
}

struct Sink {
    addr: SocketAddr,
    _process: Process,
    _dir: tempfile::TempDir,
}

async fn sink() -> Sink {
    let dir = tempfile::tempdir().unwrap();
    let key_path = dir.path().join("key.pem");
    std::fs::write(&key_path, KeyFile::generate_pem().unwrap().as_bytes()).unwrap();
    let signer = Arc::new(KeyFile::load(&key_path).unwrap());
    let root = dir.path().join("data");
    let process = Process::new(Shutdown::new());
    let metrics: AuditMetrics =
        Arc::new(kubebid_server::metrics::Registered::new(&process.registry));
    let key = signer.public_key();
    let (store, _, _) = Store::start(&root, LogConfig::default(), signer, metrics.clone()).unwrap();
    let state = Arc::new(SinkState {
        store,
        tenancy: Arc::new(ArcSwap::from_pointee(common::config(TENANTS).tenancy())),
        metrics,
        client_auth: false,
        root,
        key,
        access: Some(Arc::new(Auditor)),
        detection: None,
        ready: Arc::new(std::sync::atomic::AtomicBool::new(true)),
        queries: Arc::new(tokio::sync::Semaphore::new(4)),
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let p = process.clone();
    tokio::spawn(async move { serve_in(&p, listener, Transport::Plain, 1 << 20, state).await });
    Sink {
        addr,
        _process: process,
        _dir: dir,
    }
}

/// A dry-run creation as the API server audits it: made by the verifier, impersonating `as_user`.
fn event(id: &str, ns: &str, as_user: &str, name: &str) -> Value {
    let now = jiff::Timestamp::now().to_string();
    json!({"kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": "Metadata", "auditID": id,
        "stage": "ResponseComplete", "verb": "create",
        "requestURI": format!("/api/v1/namespaces/{ns}/pods?dryRun=All"),
        "user": {"username": "kubebid-verifier", "groups": ["system:authenticated"]},
        "impersonatedUser": {"username": as_user, "groups": ["system:authenticated"]},
        "objectRef": {"resource": "pods", "namespace": ns, "name": name, "apiVersion": "v1"},
        "responseStatus": {"code": 403},
        "requestReceivedTimestamp": now, "stageTimestamp": now})
}

async fn post(addr: SocketAddr, items: &[Value]) {
    let body = json!({"kind": "EventList", "apiVersion": "audit.k8s.io/v1", "metadata": {}, "items": items}).to_string();
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    let res = sender
        .send_request(
            Request::post("/events")
                .header("content-type", "application/json")
                .header("host", "sink")
                .body(Full::new(Bytes::from(body)))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
}

fn reader(addr: SocketAddr, token: &str) -> AuditSink {
    AuditSink {
        url: format!("http://{addr}"),
        token: Zeroizing::new(token.to_owned()),
        tls: None,
        wait: Duration::from_millis(600),
    }
}

#[tokio::test]
async fn the_probes_requests_are_found_in_each_tenant_s_own_trail() {
    let s = sink().await;
    let since = jiff::Timestamp::now();
    let set = common::config(TENANTS);
    let made = admission_subjects(&set.tenancy(), None);
    assert_eq!(
        made,
        vec![
            (
                "acme".to_owned(),
                "kubebid-verify:acme:acme-admins".to_owned(),
                "acme-prod".to_owned()
            ),
            (
                "globex".to_owned(),
                "hank@globex.example".to_owned(),
                "globex".to_owned()
            ),
        ]
    );
    post(
        s.addr,
        &[
            event(
                "a1",
                "acme-prod",
                "kubebid-verify:acme:acme-admins",
                "kubebid-verify-privileged",
            ),
            // globex's namespace, but another identity and not a probe object: neither counts.
            event("g1", "globex", "someone-else", "kubebid-verify-privileged"),
            event("g2", "globex", "hank@globex.example", "web"),
        ],
    )
    .await;
    let found = probe(&reader(s.addr, "auditor"), &made, since).await;
    assert_eq!(found.len(), 2);
    let acme = &found[0];
    assert!(acme.passed && !acme.skipped, "{acme:?}");
    assert!(
        acme.evidence[0].starts_with(
            "create pods/kubebid-verify-privileged as kubebid-verify:acme:acme-admins at "
        ) && acme.evidence[0]
            .contains("is in acme's trail (auditID a1); the trail's chain verifies"),
        "{acme:?}"
    );
    let globex = &found[1];
    assert!(!globex.passed, "{globex:?}");
    assert!(
        globex.evidence[0].contains("did not arrive in globex's trail")
            && globex.evidence[0].contains("2 events in globex's trail for globex"),
        "{globex:?}"
    );

    // Events from before the run are not the run's.
    let later = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(60);
    let found = probe(&reader(s.addr, "auditor"), &made[..1], later).await;
    assert!(!found[0].passed, "{:?}", found[0]);
}

#[tokio::test]
async fn a_refused_reader_is_a_failure_with_the_sink_s_words() {
    let s = sink().await;
    let set = common::config(TENANTS);
    let made = admission_subjects(&set.tenancy(), Some("acme"));
    let found = probe(&reader(s.addr, "stranger"), &made, jiff::Timestamp::now()).await;
    assert!(!found[0].passed);
    assert!(
        found[0].evidence[0].contains("403 Forbidden"),
        "{:?}",
        found[0]
    );
    assert!(
        !found[0].evidence[0].contains("stranger"),
        "the token is not in the evidence"
    );

    let skipped = not_checked(&made);
    assert!(skipped[0].skipped && skipped[0].evidence[0].contains("no --audit-sink given"));
}
