//! OTLP export: in order, only what is durable, resumed from its cursor after a failure or a restart, and
//! complete enough that the receiver's copy proves itself with the sink's public key.

// Test fixtures fail the test loudly.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use kubebid_audit::export::{Post, export_once, http_post};
use kubebid_audit::head::{KeyFile, SignedHead, Signer as _};
use kubebid_audit::log::LogConfig;
use kubebid_audit::merkle::{Frontier, leaf_hash, verify_inclusion};
use kubebid_audit::metrics::AuditMetrics;
use kubebid_audit::proof::Tree;
use kubebid_audit::store::{Batch, Store, Trail};
use serde_json::Value;

fn event(i: usize) -> String {
    format!(
        r#"{{"auditID":"e{i}","stage":"ResponseComplete","verb":"get","user":{{"username":"u"}},"objectRef":{{"resource":"pods","namespace":"acme-prod"}},"requestReceivedTimestamp":"2026-11-29T10:00:0{}Z"}}"#,
        i % 10
    )
}

async fn commit(store: &Store, trail: &Trail, from: usize, n: usize) {
    let mut body = String::new();
    let mut events = Vec::new();
    for i in from..from + n {
        let s = body.len();
        body.push_str(&event(i));
        events.push((trail.clone(), s..body.len()));
    }
    store
        .commit(Batch {
            body: Bytes::from(body),
            events,
        })
        .await
        .unwrap();
}

/// Ticks the store until the witness head of `trail` covers `size` events (the export's horizon).
async fn settle(store: &Store, root: &std::path::Path, trail: &str, size: u64) {
    for _ in 0..300 {
        store.tick().await;
        let w = std::fs::read(root.join("witness").join(format!("{trail}.json"))).ok();
        if w.and_then(|b| serde_json::from_slice::<SignedHead>(&b).ok())
            .is_some_and(|h| h.tree_size >= size)
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the witness of {trail} never reached {size}");
}

/// (kind, body, index or tree size) of every record of `trail` in the requests, in order.
fn records(requests: &[Value], trail: &str) -> Vec<(String, String, u64)> {
    let mut out = Vec::new();
    for r in requests {
        let rl = &r["resourceLogs"][0];
        let attrs = rl["resource"]["attributes"].as_array().unwrap();
        if !attrs
            .iter()
            .any(|a| a["key"] == "kubebid.trail" && a["value"]["stringValue"] == trail)
        {
            continue;
        }
        for rec in rl["scopeLogs"][0]["logRecords"].as_array().unwrap() {
            let a = rec["attributes"].as_array().unwrap();
            let kind = a[0]["value"]["stringValue"].as_str().unwrap().to_owned();
            let n = a[1]["value"]["intValue"].as_str().unwrap().parse().unwrap();
            out.push((
                kind,
                rec["body"]["stringValue"].as_str().unwrap().to_owned(),
                n,
            ));
        }
    }
    out
}

fn collecting(requests: Arc<Mutex<Vec<Value>>>, fail_first: Arc<Mutex<usize>>) -> Post {
    Box::new(move |body: Bytes| {
        let (requests, fail_first) = (requests.clone(), fail_first.clone());
        Box::pin(async move {
            let mut f = fail_first.lock().unwrap();
            if *f > 0 {
                *f -= 1;
                return Err("receiver down".into());
            }
            requests
                .lock()
                .unwrap()
                .push(serde_json::from_slice(&body).unwrap());
            Ok(())
        })
    })
}

/// A temporary directory with a new signing key in it.
fn keyed_dir() -> (tempfile::TempDir, Arc<KeyFile>) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("k.pem");
    std::fs::write(&path, KeyFile::generate_pem().unwrap().as_bytes()).unwrap();
    let signer = Arc::new(KeyFile::load(&path).unwrap());
    (dir, signer)
}

#[tokio::test]
async fn the_export_is_in_order_durable_resumable_and_proves_itself() {
    let (dir, signer) = keyed_dir();
    let public = signer.public_key();
    let root = dir.path().join("data");
    let config = LogConfig {
        max_segment_bytes: 2048,
        ..LogConfig::default()
    };
    let (store, _, _) = Store::start(&root, config, signer, AuditMetrics::default()).unwrap();
    let acme = Trail::Tenant("acme".into());
    let metrics = AuditMetrics::default();
    let requests = Arc::new(Mutex::new(Vec::new()));
    let failures = Arc::new(Mutex::new(1));
    let post = collecting(requests.clone(), failures.clone());

    // Nothing is exported before the witness says it is durable.
    commit(&store, &acme, 0, 5).await;
    assert_eq!(export_once(&root, &post, &metrics).await, Ok(0));

    settle(&store, &root, "acme", 5).await;
    // The receiver is down: nothing moves; then it is back and everything arrives once.
    assert!(export_once(&root, &post, &metrics).await.is_err());
    assert_eq!(
        export_once(&root, &post, &metrics).await,
        Ok(6),
        "5 events and their head"
    );
    assert_eq!(
        export_once(&root, &post, &metrics).await,
        Ok(0),
        "nothing twice"
    );

    // More commits across several segments (the tick rotates them), exported from the cursor on.
    for k in 1..6 {
        commit(&store, &acme, k * 5, 5).await;
        settle(&store, &root, "acme", (k * 5 + 5) as u64).await;
    }
    commit(&store, &Trail::Platform, 100, 2).await;
    settle(&store, &root, "_platform", 2).await;
    export_once(&root, &post, &metrics).await.unwrap();

    let got = records(&requests.lock().unwrap(), "acme");
    let events: Vec<&(String, String, u64)> = got.iter().filter(|r| r.0 == "event").collect();
    assert_eq!(events.len(), 30);
    for (i, e) in events.iter().enumerate() {
        assert_eq!(e.2, i as u64, "in order, no gap, no repeat");
        assert_eq!(e.1, event(i), "the event's exact bytes");
    }
    assert!(
        std::fs::read_dir(root.join("tenants/acme"))
            .unwrap()
            .count()
            > 1,
        "the log rotated"
    );
    assert_eq!(
        records(&requests.lock().unwrap(), "_platform")
            .iter()
            .filter(|r| r.0 == "event")
            .count(),
        2
    );

    // The receiver's copy alone: every head checks against the events before it, and a proof holds.
    let mut frontier = Frontier::new();
    let mut leaves = Vec::new();
    let mut last = None;
    for (kind, body, n) in &got {
        if kind == "event" {
            let l = leaf_hash(body.as_bytes());
            frontier.push(l);
            leaves.push(l);
        } else {
            let head: SignedHead = serde_json::from_str(body).unwrap();
            assert_eq!(head.tree_size, *n);
            assert_eq!(
                (head.tree_size, head.root),
                (frontier.size(), frontier.root())
            );
            assert!(head.verify("acme", &public));
            last = Some(head);
        }
    }
    let head = last.unwrap();
    let tree = Tree::new(Frontier::new(), leaves.clone());
    let path = tree.inclusion(17, head.tree_size).unwrap();
    assert!(verify_inclusion(
        17,
        head.tree_size,
        &leaves[17],
        &path,
        &head.root
    ));
}

#[tokio::test]
async fn the_http_exporter_posts_otlp_json_to_a_receiver() {
    let (addr, seen) = common::receiver().await;
    let (dir, signer) = keyed_dir();
    let root = dir.path().join("data");
    let (store, _, _) =
        Store::start(&root, LogConfig::default(), signer, AuditMetrics::default()).unwrap();
    let acme = Trail::Tenant("acme".into());
    commit(&store, &acme, 0, 3).await;
    settle(&store, &root, "acme", 3).await;
    let post = http_post(format!("http://{addr}/v1/logs").parse().unwrap()).unwrap();
    assert_eq!(
        export_once(&root, &post, &AuditMetrics::default()).await,
        Ok(4)
    );
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].0, "/v1/logs");
    assert_eq!(seen[0].1, "application/json");
    let rec = &seen[0].2["resourceLogs"][0]["scopeLogs"][0]["logRecords"][0];
    assert_eq!(rec["body"]["stringValue"], event(0));
    assert_eq!(
        rec["timeUnixNano"], "1795946400000000000",
        "the event's own time"
    );
    assert!(http_post("ftp://x/".parse().unwrap()).is_err());
}
