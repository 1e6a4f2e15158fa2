//! The operator's /metrics and /healthz over real HTTP on loopback, after recording reconciles.

// Test helpers fail the test by panicking on broken fixtures; that is their job.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::sync::Arc;

use kubebid_tenancy::metrics::{OperatorMetrics, serve};
use kubebid_tenancy::operator::TenantOutcome;
use kubebid_tenancy::reconcile::{Outcome, ReconcileError};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn get(addr: std::net::SocketAddr, path: &str) -> String {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out
}

#[tokio::test]
async fn reconciles_are_counted_and_scraped() {
    let metrics = Arc::new(OperatorMetrics::default());
    let ok: Result<TenantOutcome, ReconcileError> = Ok(TenantOutcome::Applied {
        outcome: Outcome {
            created: vec!["a".into(), "b".into()],
            repaired: vec!["c".into()],
            pruned: vec!["d".into()],
            unchanged: 4,
            ..Outcome::default()
        },
        warnings: Vec::new(),
    });
    metrics.record(&ok, 0.01);
    metrics.record(&Ok(TenantOutcome::Invalid(Vec::new())), 0.01);
    metrics.record(
        &Err(ReconcileError::Object {
            object: "Role x/y".into(),
            message: "boom".into(),
        }),
        0.02,
    );
    metrics.leading.set(1);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve(listener, metrics.clone(), async move {
        let _ = stopped.await;
    }));
    let body = get(addr, "/metrics").await;
    assert!(body.starts_with("HTTP/1.1 200"), "{body}");
    for line in [
        r#"kubebid_operator_reconciles_total{result="ok"} 1"#,
        r#"kubebid_operator_reconciles_total{result="error"} 1"#,
        r#"kubebid_operator_objects_total{action="created"} 2"#,
        r#"kubebid_operator_objects_total{action="restored"} 1"#,
        r#"kubebid_operator_objects_total{action="pruned"} 1"#,
        r#"kubebid_operator_reconciles_total{result="invalid"} 1"#,
        "kubebid_operator_leading 1",
        "kubebid_operator_reconcile_duration_seconds_count 3",
    ] {
        assert!(body.contains(line), "{line} missing from:\n{body}");
    }
    assert!(get(addr, "/healthz").await.starts_with("HTTP/1.1 200"));
    assert!(get(addr, "/nope").await.starts_with("HTTP/1.1 404"));
    // When the replica cannot reach the API server for its lease, /healthz says so.
    metrics.healthy(Err(
        "leader election: 403 Forbidden: namespaces \"x\" not found".into(),
    ));
    let sick = get(addr, "/healthz").await;
    assert!(
        sick.starts_with("HTTP/1.1 503") && sick.contains("leader election"),
        "{sick}"
    );
    stop.send(()).unwrap();
    server.await.unwrap();
}
