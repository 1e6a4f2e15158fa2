//! The proxy between `etcdctl` and a real etcd (Debian's etcd-server and etcd-client; scripts/test
//! installs them): a tenant's Secret is sealed in etcd and plain through the proxy, in gets, prefix
//! ranges, deletes with prev_kv, transactions and watches; everything else, leases, compaction, status
//! and member list included, passes through.

// Test fixtures fail the test loudly.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

mod common;

use std::io::Write as _;
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use common::FakeHsm;
use common::etcd::{ctl, etcd_missing, start_etcd};
use kubebid_etcd::layer::Layer;
use kubebid_etcd::path::SecretKeys;
use kubebid_etcd::proxy::{Etcd, serve};
use kubebid_etcd::seal::{MAGIC, Sealer};

fn ctl_stdin(addr: SocketAddr, args: &[&str], input: &str) -> (bool, String, String) {
    let mut child = Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={addr}"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

const SECRET: &str = "/registry/secrets/acme-prod/db";

async fn proxy(etcd: SocketAddr) -> SocketAddr {
    let hsm = Arc::new(FakeHsm::default());
    hsm.add("acme");
    let tenant_of = Arc::new(|ns: &str| (ns == "acme-prod").then(|| "acme".to_owned()));
    let layer = Layer::new(
        SecretKeys::new("/registry"),
        tenant_of,
        Arc::new(Sealer::new(hsm)),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let upstream = Arc::new(Etcd::new(format!("http://{etcd}").parse().unwrap(), None).unwrap());
    tokio::spawn(serve(
        listener,
        None,
        layer,
        upstream,
        std::future::pending(),
    ));
    addr
}

fn raw(etcd: SocketAddr, key: &str) -> String {
    ctl(etcd, &["get", key, "--print-value-only"]).1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcdctl_through_the_proxy_sees_plain_values_and_etcd_holds_them_sealed() {
    if etcd_missing() {
        return;
    }
    let (_etcd, etcd) = start_etcd();
    let p = proxy(etcd).await;
    let run = move |args: Vec<&'static str>| tokio::task::spawn_blocking(move || ctl(p, &args));

    // A tenant's Secret: sealed in etcd, plain through the proxy.
    assert!(
        run(vec!["put", SECRET, "k8s:enc:kms:v2:kubebid-kms:s3cret"])
            .await
            .unwrap()
            .0
    );
    let stored = raw(etcd, SECRET);
    assert!(stored.as_bytes().starts_with(MAGIC), "{stored}");
    assert!(!stored.contains("s3cret"));
    assert!(
        !stored.contains("k8s:enc:kms:v2"),
        "the KMS v2 envelope is not bare in etcd"
    );
    let (ok, through, err) = run(vec!["get", SECRET, "--print-value-only"])
        .await
        .unwrap();
    assert!(ok, "{err}");
    assert_eq!(through.trim_end(), "k8s:enc:kms:v2:kubebid-kms:s3cret");
    // A ConfigMap and a Secret of a namespace no tenant owns pass byte for byte.
    assert!(
        run(vec!["put", "/registry/configmaps/acme-prod/c", "cm"])
            .await
            .unwrap()
            .0
    );
    assert!(
        run(vec!["put", "/registry/secrets/kube-system/t", "platform"])
            .await
            .unwrap()
            .0
    );
    assert_eq!(
        raw(etcd, "/registry/configmaps/acme-prod/c").trim_end(),
        "cm"
    );
    assert_eq!(
        raw(etcd, "/registry/secrets/kube-system/t").trim_end(),
        "platform"
    );

    // Prefix range with a limit, and a read at an older revision.
    assert!(
        run(vec!["put", "/registry/secrets/acme-prod/db2", "second"])
            .await
            .unwrap()
            .0
    );
    let (ok, listed, _) = run(vec!["get", "/registry/secrets/", "--prefix", "--limit=2"])
        .await
        .unwrap();
    assert!(ok);
    assert!(
        listed.contains("k8s:enc:kms:v2:kubebid-kms:s3cret") && listed.contains("second"),
        "{listed}"
    );
    assert!(!listed.contains("k8s:enc:kubebid-tenant"), "{listed}");

    // A transaction guarded by mod_revision, as the API server writes.
    let txn =
        format!("mod(\"{SECRET}\") > \"0\"\n\nput {SECRET} updated\n\nput {SECRET} failed\n\n");
    let (ok, out, err) = tokio::task::spawn_blocking(move || ctl_stdin(p, &["txn"], &txn))
        .await
        .unwrap();
    assert!(ok && out.contains("SUCCESS"), "{out}{err}");
    assert!(!raw(etcd, SECRET).contains("updated"));
    assert_eq!(
        run(vec!["get", SECRET, "--print-value-only"])
            .await
            .unwrap()
            .1
            .trim_end(),
        "updated"
    );
    // A read at an older revision: the value the Secret had then, opened.
    let (_, json, _) = run(vec!["get", SECRET, "-w", "json"]).await.unwrap();
    let created: String = json
        .split("\"create_revision\":")
        .nth(1)
        .unwrap_or_default()
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    assert!(!created.is_empty(), "{json}");
    let rev = format!("--rev={created}");
    let (ok, old, err) =
        tokio::task::spawn_blocking(move || ctl(p, &["get", SECRET, "--print-value-only", &rev]))
            .await
            .unwrap();
    assert!(ok, "{err}");
    assert_eq!(old.trim_end(), "k8s:enc:kms:v2:kubebid-kms:s3cret");

    // Comparing the value of a sealed Secret is refused.
    let by_value = format!("value(\"{SECRET}\") = \"updated\"\n\nput {SECRET} x\n\n\n");
    let (ok, _, err) = tokio::task::spawn_blocking(move || ctl_stdin(p, &["txn"], &by_value))
        .await
        .unwrap();
    assert!(!ok, "a value comparison went through");
    assert!(err.contains("compare the value"), "{err}");

    // A watch from the start, with previous values: every event plain.
    let (_, events, _) = tokio::task::spawn_blocking(move || {
        let mut child = Command::new("etcdctl")
            .env("ETCDCTL_API", "3")
            .arg(format!("--endpoints={p}"))
            .args(["watch", "--rev=1", "--prev-kv", SECRET])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_secs(2));
        let _ = child.kill();
        let out = child.wait_with_output().unwrap();
        (
            true,
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::new(),
        )
    })
    .await
    .unwrap();
    assert!(
        events.contains("k8s:enc:kms:v2:kubebid-kms:s3cret") && events.contains("updated"),
        "{events}"
    );
    assert!(!events.contains("k8s:enc:kubebid-tenant"), "{events}");

    // Delete with the previous value.
    let (ok, deleted, _) = run(vec!["del", SECRET, "--prev-kv"]).await.unwrap();
    assert!(ok && deleted.contains("updated"), "{deleted}");

    // What the proxy only forwards: leases, compaction, status, member list.
    let (ok, granted, _) = run(vec!["lease", "grant", "60"]).await.unwrap();
    assert!(ok, "{granted}");
    let id = granted
        .split_whitespace()
        .nth(1)
        .unwrap_or_default()
        .to_owned();
    let id2 = id.clone();
    let (ok, kept, _) =
        tokio::task::spawn_blocking(move || ctl(p, &["lease", "keep-alive", "--once", &id2]))
            .await
            .unwrap();
    assert!(ok && kept.contains("keepalived"), "{kept}");
    let (ok, _, _) = tokio::task::spawn_blocking(move || ctl(p, &["lease", "revoke", &id]))
        .await
        .unwrap();
    assert!(ok);
    let (ok, _, err) = run(vec!["compaction", "2"]).await.unwrap();
    assert!(ok, "{err}");
    let (ok, status, err) = run(vec!["endpoint", "status"]).await.unwrap();
    assert!(ok, "{status}{err}");
    let (ok, members, _) = run(vec!["member", "list"]).await.unwrap();
    assert!(ok && members.contains("default"), "{members}");
}
