//! The log at rest against someone with write access to the disk: every kind of tampering is found and
//! named with its trail, segment and index; crashes leave nothing acknowledged behind and are repaired.

// Test fixtures fail the test loudly.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use kubebid_audit::head::{KeyFile, PublicKey, Signer};
use kubebid_audit::log::{LogConfig, list_segments};
use kubebid_audit::metrics::AuditMetrics;
use kubebid_audit::segment::{self, Kind, Record, Records};
use kubebid_audit::store::{Batch, Store, Trail};
use kubebid_audit::verify::{Report, verify_dir};

fn key(dir: &Path) -> Arc<KeyFile> {
    let path = dir.join("key.pem");
    let pem = KeyFile::generate_pem().unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(&path, pem.as_bytes()).unwrap_or_else(|e| panic!("{e}"));
    Arc::new(KeyFile::load(&path).unwrap_or_else(|e| panic!("{e}")))
}

fn event(id: usize, ns: &str) -> String {
    format!(
        r#"{{"kind":"Event","apiVersion":"audit.k8s.io/v1","auditID":"id-{id}","stage":"ResponseComplete","verb":"get","requestURI":"/api/v1/namespaces/{ns}/pods","user":{{"username":"u{id}"}},"objectRef":{{"resource":"pods","namespace":"{ns}"}},"requestReceivedTimestamp":"2026-11-29T10:00:00Z"}}"#
    )
}

fn batch(trail: &Trail, events: &[String]) -> Batch {
    let mut body = String::new();
    let mut ranges = Vec::new();
    for e in events {
        let start = body.len();
        body.push_str(e);
        ranges.push((trail.clone(), start..body.len()));
    }
    Batch {
        body: Bytes::from(body),
        events: ranges,
    }
}

struct Sink {
    root: PathBuf,
    store: Store,
    public: PublicKey,
    _dir: tempfile::TempDir,
}

fn start(config: LogConfig) -> (Sink, Arc<KeyFile>) {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let signer = key(dir.path());
    let root = dir.path().join("data");
    let (store, _, _) = Store::start(&root, config, signer.clone(), AuditMetrics::default())
        .unwrap_or_else(|e| panic!("{e}"));
    (
        Sink {
            root,
            store,
            public: signer.public_key(),
            _dir: dir,
        },
        signer,
    )
}

/// The store on `root` with default settings, as a restarted sink opens it.
fn open_store(
    root: &Path,
    signer: &Arc<KeyFile>,
) -> (
    Store,
    kubebid_audit::store::StartReport,
    std::thread::JoinHandle<()>,
) {
    Store::start(
        root,
        LogConfig::default(),
        signer.clone(),
        AuditMetrics::default(),
    )
    .unwrap_or_else(|e| panic!("{e}"))
}

fn acme() -> Trail {
    Trail::Tenant("acme".into())
}

async fn fill(s: &Sink, rounds: usize, per: usize) {
    for r in 0..rounds {
        let events: Vec<String> = (0..per).map(|i| event(r * per + i, "acme-prod")).collect();
        s.store
            .commit(batch(&acme(), &events))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        s.store
            .commit(batch(&Trail::Platform, &[event(r, "kube-system")]))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
}

fn verify(s: &Sink) -> Report {
    verify_dir(&s.root, &s.public, None, &[]).unwrap_or_else(|e| panic!("{e}"))
}

fn acme_segments(s: &Sink) -> Vec<PathBuf> {
    list_segments(&s.root.join("tenants/acme"))
        .unwrap_or_else(|e| panic!("{e}"))
        .into_iter()
        .map(|(_, p)| p)
        .collect()
}

/// Rewrites a segment's records with valid framing, as an attacker who knows the format would.
fn rewrite(path: &Path, change: impl FnOnce(&mut Vec<(Kind, Vec<u8>)>)) {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{e}"));
    let (header, start) = segment::decode_header(&bytes).unwrap_or_else(|e| panic!("{e}"));
    let mut records: Vec<(Kind, Vec<u8>)> = Records::new(&bytes, start)
        .map(|r| match r {
            Ok((_, Record::Event(e))) => (Kind::Event, e.to_vec()),
            Ok((_, Record::Head(h))) => (Kind::Head, h.encode()),
            Err(e) => panic!("{e}"),
        })
        .collect();
    change(&mut records);
    let mut out = segment::encode_header(&header);
    for (k, p) in &records {
        segment::encode_record(*k, p, &mut out);
    }
    std::fs::write(path, out).unwrap_or_else(|e| panic!("{e}"));
}

fn problems(r: &Report, trail: &str) -> Vec<String> {
    r.trails
        .iter()
        .filter(|t| t.trail == trail)
        .flat_map(|t| {
            t.problems
                .iter()
                .map(|p| format!("{} #{}: {}", p.segment, p.index, p.what))
        })
        .collect()
}

fn event_positions(records: &[(Kind, Vec<u8>)]) -> Vec<usize> {
    records
        .iter()
        .enumerate()
        .filter(|(_, (k, _))| *k == Kind::Event)
        .map(|(i, _)| i)
        .collect()
}

#[tokio::test]
async fn an_untouched_log_verifies() {
    let (s, _) = start(LogConfig::default());
    fill(&s, 5, 10).await;
    let r = verify(&s);
    assert!(r.ok(), "{:?}", r.trails);
    assert_eq!(r.events(), 55);
    let acme = r
        .trails
        .iter()
        .find(|t| t.trail == "acme")
        .map(|t| (t.events, t.heads));
    assert_eq!(acme, Some((50, 5)), "one signed head per commit");
}

#[tokio::test]
async fn a_modified_event_is_found_even_with_its_checksum_fixed() {
    let (s, _) = start(LogConfig::default());
    fill(&s, 3, 4).await;
    let seg = &acme_segments(&s)[0];
    rewrite(seg, |r| {
        let i = event_positions(r)[5];
        r[i].1 = event(999, "acme-prod").into_bytes();
    });
    let r = verify(&s);
    assert!(!r.ok());
    let p = problems(&r, "acme");
    assert!(
        p.iter()
            .any(|p| p.contains("not the ones it signed") && p.contains(".seg #8")),
        "{p:?}"
    );
    assert!(
        problems(&r, "_platform").is_empty(),
        "other trails are not affected"
    );
}

#[tokio::test]
async fn a_removed_or_reordered_event_is_found() {
    for reorder in [false, true] {
        let (s, _) = start(LogConfig::default());
        fill(&s, 2, 4).await;
        rewrite(&acme_segments(&s)[0], |r| {
            let ev = event_positions(r);
            if reorder {
                r.swap(ev[1], ev[2]);
            } else {
                r.remove(ev[1]);
            }
        });
        let r = verify(&s);
        assert!(!problems(&r, "acme").is_empty(), "reorder={reorder}");
    }
}

#[tokio::test]
async fn an_event_appended_behind_the_sinks_back_is_found() {
    let (s, _) = start(LogConfig::default());
    fill(&s, 2, 3).await;
    rewrite(&acme_segments(&s)[0], |r| {
        r.push((Kind::Event, event(77, "acme-prod").into_bytes()));
    });
    let p = problems(&verify(&s), "acme");
    assert!(
        p.iter()
            .any(|p| p.contains("1 events after the last signed tree head")),
        "{p:?}"
    );
}

#[tokio::test]
async fn a_flipped_bit_and_a_forged_signature_are_named() {
    let (s, _) = start(LogConfig::default());
    fill(&s, 2, 3).await;
    let seg = acme_segments(&s)[0].clone();
    let mut bytes = std::fs::read(&seg).unwrap_or_default();
    let at = bytes.len() - 200;
    bytes[at] ^= 0x20;
    std::fs::write(&seg, &bytes).unwrap_or_default();
    let p = problems(&verify(&s), "acme");
    assert!(p.iter().any(|p| p.contains("checksum mismatch")), "{p:?}");

    let (s, _) = start(LogConfig::default());
    fill(&s, 2, 3).await;
    rewrite(&acme_segments(&s)[0], |r| {
        if let Some((_, head)) = r.iter_mut().rev().find(|(k, _)| *k == Kind::Head) {
            let last = head.len() - 1;
            head[last] ^= 1;
        }
    });
    let p = problems(&verify(&s), "acme");
    assert!(
        p.iter().any(|p| p.contains("signature does not verify")),
        "{p:?}"
    );
}

#[tokio::test]
async fn truncation_behind_the_last_head_is_found_against_the_witness_and_kept_heads() {
    let (s, _) = start(LogConfig::default());
    fill(&s, 3, 2).await;
    s.store.tick().await;
    let witness = s.root.join("witness/acme.json");
    for _ in 0..200 {
        if witness.exists() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let kept = verify(&s)
        .trails
        .into_iter()
        .find(|t| t.trail == "acme")
        .and_then(|t| t.last_head);
    // Cut the last commit (its events and its head) at a record boundary: the rest is a valid log.
    rewrite(&acme_segments(&s)[0], |r| {
        let n = r.len();
        r.truncate(n - 3);
    });
    let p = problems(&verify(&s), "acme");
    assert!(
        p.iter()
            .any(|p| p.contains("truncated: a signed head of 6 events exists, the log ends at 4")),
        "{p:?}"
    );
    // Without the witness, a head kept elsewhere still finds it.
    std::fs::remove_file(&witness).unwrap_or_default();
    assert!(verify(&s).ok(), "a shorter log is self-consistent");
    let kept = vec![("acme".to_owned(), kept.unwrap_or_else(|| panic!("a head")))];
    let r = verify_dir(&s.root, &s.public, Some("acme"), &kept).unwrap_or_else(|e| panic!("{e}"));
    assert!(!r.ok());
}

#[tokio::test]
async fn a_segment_removed_outside_retention_is_found() {
    let config = LogConfig {
        max_segment_bytes: 1,
        ..LogConfig::default()
    };
    let (s, _) = start(config);
    for round in 0..3 {
        fill(&s, 1, 2).await;
        s.store.tick().await;
        // The tick rotates between rounds; wait until the new segment exists.
        for _ in 0..200 {
            if acme_segments(&s).len() > round + 1 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    let segs = acme_segments(&s);
    assert!(segs.len() >= 3, "{segs:?}");
    assert!(verify(&s).ok());
    // The oldest one: looks like retention, but the last head signed the oldest index kept.
    std::fs::remove_file(&segs[0]).unwrap_or_default();
    let p = problems(&verify(&s), "acme");
    assert!(
        p.iter()
            .any(|p| p.contains("segments were removed outside retention")),
        "{p:?}"
    );
    // One in the middle: the chain of segments breaks.
    std::fs::remove_file(&segs[1]).unwrap_or_default();
    let p = problems(&verify(&s), "acme");
    assert!(!p.is_empty());
}

#[tokio::test]
async fn a_crash_leaves_nothing_acknowledged_behind_and_the_torn_tail_is_cut() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let signer = key(dir.path());
    let root = dir.path().join("data");
    let public = signer.public_key();
    {
        let (store, _, writer) = open_store(&root, &signer);
        let events: Vec<String> = (0..5).map(|i| event(i, "acme-prod")).collect();
        store
            .commit(batch(&acme(), &events))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        // The process is gone before the next one starts: its writer has finished.
        drop(store);
        writer.join().unwrap_or_else(|_| panic!("the writer ended"));
    }
    // What a crash mid-round leaves: events written without their head, then half a record.
    let seg = list_segments(&root.join("tenants/acme")).unwrap_or_default()[0]
        .1
        .clone();
    let mut bytes = std::fs::read(&seg).unwrap_or_default();
    segment::encode_record(Kind::Event, event(5, "acme-prod").as_bytes(), &mut bytes);
    let mut torn = Vec::new();
    segment::encode_record(Kind::Event, event(6, "acme-prod").as_bytes(), &mut torn);
    bytes.extend_from_slice(&torn[..torn.len() / 2]);
    std::fs::write(&seg, &bytes).unwrap_or_default();
    let before = verify_dir(&root, &public, Some("acme"), &[]).unwrap_or_else(|e| panic!("{e}"));
    assert!(!before.ok(), "an unrecovered crash shows");

    let (store, report, _) = open_store(&root, &signer);
    let acme_recovery = report
        .recovered
        .iter()
        .find(|(t, _)| t == "acme")
        .map(|(_, r)| r.clone());
    let r = acme_recovery.unwrap_or_else(|| panic!("acme recovered"));
    assert_eq!(r.unsigned_events, 1);
    assert_eq!(r.torn_bytes, (torn.len() / 2) as u64);
    let after = verify_dir(&root, &public, None, &[]).unwrap_or_else(|e| panic!("{e}"));
    assert!(after.ok(), "{:?}", after.trails);
    assert_eq!(after.events(), 5, "every acknowledged event is there");
    // And the log goes on.
    store
        .commit(batch(&acme(), &[event(9, "acme-prod")]))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        verify_dir(&root, &public, None, &[])
            .map(|r| (r.ok(), r.events()))
            .ok(),
        Some((true, 6))
    );
}

#[tokio::test]
async fn a_damaged_log_is_kept_aside_and_the_other_tenants_go_on() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let signer = key(dir.path());
    let root = dir.path().join("data");
    {
        let (store, _, writer) = open_store(&root, &signer);
        store
            .commit(batch(&acme(), &[event(1, "acme-prod")]))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        store
            .commit(batch(
                &Trail::Tenant("globex".into()),
                &[event(2, "globex")],
            ))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        drop(store);
        writer.join().unwrap_or_else(|_| panic!("the writer ended"));
    }
    let seg = list_segments(&root.join("tenants/acme")).unwrap_or_default()[0]
        .1
        .clone();
    rewrite(&seg, |r| r[0].1 = event(3, "acme-prod").into_bytes());
    let (store, report, _) = open_store(&root, &signer);
    assert_eq!(report.damaged.len(), 1);
    assert_eq!(report.damaged[0].0, "acme");
    store
        .commit(batch(&acme(), &[event(4, "acme-prod")]))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    store
        .commit(batch(
            &Trail::Tenant("globex".into()),
            &[event(5, "globex")],
        ))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let r = verify_dir(&root, &signer.public_key(), None, &[]).unwrap_or_else(|e| panic!("{e}"));
    assert!(r.trails.iter().all(|t| t.ok()), "the new logs verify");
    assert_eq!(r.damaged.len(), 1, "the damaged one is reported");
    assert!(!r.ok());
}

#[tokio::test]
async fn retention_removes_old_segments_and_what_is_kept_still_proves() {
    let config = LogConfig {
        max_segment_bytes: 1,
        retention: Some(Duration::from_millis(1)),
        ..LogConfig::default()
    };
    let (s, _) = start(config);
    for _ in 0..4 {
        fill(&s, 1, 3).await;
        s.store.tick().await;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    s.store.tick().await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    // Events after the last pruning are kept.
    fill(&s, 1, 3).await;
    let r = verify(&s);
    assert!(r.ok(), "{:?}", r.trails);
    let kept = r
        .trails
        .iter()
        .find(|t| t.trail == "acme")
        .cloned()
        .unwrap_or_else(|| panic!("acme"));
    assert!(kept.oldest > 0, "old segments went: {kept:?}");
    let last = kept.oldest + kept.events - 1;
    let proof = kubebid_audit::proof::prove(&s.root, &acme(), &s.public, last)
        .unwrap_or_else(|e| panic!("{e}"));
    let text = serde_json::to_vec(&proof).unwrap_or_default();
    assert!(kubebid_audit::proof::check(&text, &s.public).is_ok());
    assert!(
        kubebid_audit::proof::prove(&s.root, &acme(), &s.public, 0).is_err(),
        "a removed event has no proof"
    );
}

#[tokio::test]
async fn a_proof_checks_offline_and_a_doctored_one_does_not() {
    let (s, signer) = start(LogConfig::default());
    fill(&s, 3, 5).await;
    let proof = kubebid_audit::proof::prove(&s.root, &acme(), &s.public, 7)
        .unwrap_or_else(|e| panic!("{e}"));
    let good = serde_json::to_string(&proof).unwrap_or_default();
    let checked = kubebid_audit::proof::check(good.as_bytes(), &signer.public_key())
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(checked.event.contains("\"id-7\""));
    let mut doctored = proof.clone();
    doctored.event = doctored.event.replace("u7", "u8");
    let text = serde_json::to_string(&doctored).unwrap_or_default();
    assert!(matches!(
        kubebid_audit::proof::check(text.as_bytes(), &s.public),
        Err(kubebid_audit::proof::ProofError::NotIncluded { index: 7 })
    ));
    let mut other_tenant = proof;
    other_tenant.trail = "globex".into();
    let text = serde_json::to_string(&other_tenant).unwrap_or_default();
    assert!(matches!(
        kubebid_audit::proof::check(text.as_bytes(), &s.public),
        Err(kubebid_audit::proof::ProofError::Signature)
    ));
}

#[tokio::test]
async fn retention_is_per_trail() {
    let config = LogConfig {
        max_segment_bytes: 1,
        ..LogConfig::default()
    };
    let (s, _) = start(config);
    // The tenant keeps its trail a moment; the platform forever.
    s.store
        .set_retention(Arc::new(|t: &Trail| match t {
            Trail::Tenant(_) => Some(Duration::from_millis(1)),
            Trail::Platform => None,
        }))
        .await;
    for _ in 0..4 {
        fill(&s, 1, 3).await;
        s.store.tick().await;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    fill(&s, 1, 3).await;
    let r = verify(&s);
    assert!(r.ok(), "{:?}", r.trails);
    let oldest = |name: &str| r.trails.iter().find(|t| t.trail == name).map(|t| t.oldest);
    assert!(
        oldest("acme").is_some_and(|o| o > 0),
        "the tenant's old segments went"
    );
    assert_eq!(oldest("_platform"), Some(0), "the platform's are kept");
}

#[tokio::test]
async fn an_auditors_earlier_head_is_proven_a_prefix_and_another_history_is_not() {
    let (s, signer) = start(LogConfig::default());
    fill(&s, 3, 4).await;
    let kept = verify(&s)
        .trails
        .into_iter()
        .find(|t| t.trail == "acme")
        .and_then(|t| t.last_head);
    let kept = kept.unwrap_or_else(|| panic!("a head"));
    fill(&s, 5, 3).await;
    let proof = kubebid_audit::proof::prove_consistency(&s.root, &acme(), &s.public, &kept)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((proof.first.tree_size, proof.second.tree_size), (12, 27));
    let text = serde_json::to_vec(&proof).unwrap_or_default();
    assert_eq!(
        kubebid_audit::proof::kind_of(&text).as_deref(),
        Some("AuditConsistencyProof")
    );
    assert!(kubebid_audit::proof::check_consistency(&text, &s.public).is_ok());
    // A doctored path does not hold.
    let mut doctored = proof.clone();
    doctored.path[0] = "00".repeat(32);
    let text = serde_json::to_vec(&doctored).unwrap_or_default();
    assert!(kubebid_audit::proof::check_consistency(&text, &s.public).is_err());

    // A head of another history, signed with the same key, is not a prefix of this log.
    let other_dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let other_root = other_dir.path().join("data");
    let (other, _, _) = open_store(&other_root, &signer);
    other
        .commit(batch(
            &acme(),
            &[event(500, "acme-prod"), event(501, "acme-prod")],
        ))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let foreign = verify_dir(&other_root, &s.public, Some("acme"), &[])
        .ok()
        .and_then(|r| r.trails.into_iter().next())
        .and_then(|t| t.last_head)
        .unwrap_or_else(|| panic!("a head"));
    assert!(matches!(
        kubebid_audit::proof::prove_consistency(&s.root, &acme(), &s.public, &foreign),
        Err(kubebid_audit::proof::ProofError::Diverged { size: 2 })
    ));
}

#[tokio::test]
async fn a_tenant_named_platform_has_a_trail_of_its_own() {
    let (s, _) = start(LogConfig::default());
    let tenant = Trail::Tenant("platform".into());
    s.store
        .commit(batch(
            &tenant,
            &[event(1, "platform"), event(2, "platform")],
        ))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    s.store
        .commit(batch(&Trail::Platform, &[event(3, "kube-system")]))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    s.store.tick().await;
    for _ in 0..200 {
        if s.root.join("witness/_platform.json").exists()
            && s.root.join("witness/platform.json").exists()
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let r = verify(&s);
    assert!(r.ok(), "{:?}", r.trails);
    let count = |name: &str| r.trails.iter().find(|t| t.trail == name).map(|t| t.events);
    assert_eq!((count("platform"), count("_platform")), (Some(2), Some(1)));
}

#[tokio::test]
async fn a_log_cut_behind_its_witness_is_not_repaired_on_restart_but_kept_as_damage() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let signer = key(dir.path());
    let root = dir.path().join("data");
    {
        let (store, _, writer) = open_store(&root, &signer);
        for r in 0..3 {
            let events: Vec<String> = (0..2).map(|i| event(r * 2 + i, "acme-prod")).collect();
            store
                .commit(batch(&acme(), &events))
                .await
                .unwrap_or_else(|e| panic!("{e}"));
        }
        drop(store);
        writer.join().unwrap_or_else(|_| panic!("the writer ended"));
    }
    // The witness saw 6 events signed. Cut the last commit and make its start look torn.
    let seg = list_segments(&root.join("tenants/acme")).unwrap_or_default()[0]
        .1
        .clone();
    rewrite(&seg, |r| {
        let n = r.len();
        r.truncate(n - 3);
    });
    let mut bytes = std::fs::read(&seg).unwrap_or_default();
    bytes.extend_from_slice(&[1, 0xff, 0xff]);
    std::fs::write(&seg, bytes).unwrap_or_default();
    let (_store, report, _) = open_store(&root, &signer);
    assert_eq!(report.damaged.len(), 1, "{:?}", report.recovered);
    assert!(
        report.damaged[0].2.contains("cut behind a signed head"),
        "{}",
        report.damaged[0].2
    );
    let r = verify_dir(&root, &signer.public_key(), None, &[]).unwrap_or_else(|e| panic!("{e}"));
    assert!(!r.ok(), "the damage is reported");
}
