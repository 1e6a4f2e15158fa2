//! `kubebid serve etcd-proxy` end to end: a tenant's key in SoftHSM2 behind the KMS plugin's tenant key
//! socket, a real etcd (Debian's etcd-server), and etcdctl (etcd-client) as the API server. The Secret is
//! sealed in etcd under the tenant's key and plain through the proxy; a tenant with no key cannot write.

// Test fixtures fail the test loudly.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

mod common;

use std::io::{BufRead as _, BufReader};
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// Children killed, and the directory removed, on drop.
struct Procs(Vec<Child>, PathBuf);

impl Drop for Procs {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = std::fs::remove_dir_all(&self.1);
    }
}

fn port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn etcdctl(addr: SocketAddr, args: &[&str]) -> (bool, String, String) {
    let out = Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={addr}"))
        .args(["--command-timeout=10s", "--dial-timeout=2s"])
        .args(args)
        .output()
        .expect("etcdctl is installed (scripts/test installs etcd-client)");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn wait_for(what: &str, mut ready: impl FnMut() -> bool) {
    for _ in 0..200 {
        if ready() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("{what} did not come up");
}

const TENANTS: &str = "apiVersion: kubebid.io/v1alpha1
kind: Tenant
metadata: {name: acme}
spec: {namespaces: [acme-prod]}
---
apiVersion: kubebid.io/v1alpha1
kind: Tenant
metadata: {name: globex}
spec: {namespaces: [globex]}
";

#[test]
fn a_tenants_secret_is_sealed_under_its_hsm_key_in_etcd_and_plain_through_the_proxy() {
    if Command::new("etcd").arg("--version").output().is_err() {
        println!(
            "SKIPPED: etcd is not installed (scripts/test installs etcd-server and etcd-client)"
        );
        return;
    }
    let dir = std::env::temp_dir().join(format!("kubebid-etcd-proxy-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let conf = common::softhsm_token(&dir);
    let kubebid = |args: &[&str]| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_kubebid"));
        c.args(args)
            .env("SOFTHSM2_CONF", &conf)
            .env("KUBEBID_KMS_PIN", "1234")
            .env("KUBEBID_LOG", "warn");
        c
    };
    // Only acme has a key: globex's Secrets cannot be written.
    assert!(
        kubebid(&["kms", "tenant-key", "create", "acme"])
            .output()
            .unwrap()
            .status
            .success()
    );
    let mut procs = Procs(Vec::new(), dir.clone());
    let (sock, tsock) = (dir.join("kms.sock"), dir.join("tenant-keys.sock"));
    procs.0.push(
        kubebid(&[
            "serve",
            "kms",
            "--metrics-listen",
            "127.0.0.1:0",
            "--socket",
            sock.to_str().unwrap(),
            "--tenant-socket",
            tsock.to_str().unwrap(),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap(),
    );
    wait_for("the KMS plugin", || tsock.exists());
    let (client, peer) = (port(), port());
    procs.0.push(
        Command::new("etcd")
            .args(["--name", "default", "--data-dir"])
            .arg(dir.join("etcd"))
            .arg(format!("--listen-client-urls=http://127.0.0.1:{client}"))
            .arg(format!("--advertise-client-urls=http://127.0.0.1:{client}"))
            .arg(format!("--listen-peer-urls=http://127.0.0.1:{peer}"))
            .arg(format!(
                "--initial-advertise-peer-urls=http://127.0.0.1:{peer}"
            ))
            .arg(format!("--initial-cluster=default=http://127.0.0.1:{peer}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let etcd: SocketAddr = format!("127.0.0.1:{client}").parse().unwrap();
    wait_for("etcd", || etcdctl(etcd, &["endpoint", "health"]).0);
    std::fs::write(dir.join("tenants.yaml"), TENANTS).unwrap();
    let mut proxy = kubebid(&[
        "serve",
        "etcd-proxy",
        "--listen",
        "127.0.0.1:0",
        "--etcd",
        &format!("http://{etcd}"),
        "--tenant-key-socket",
        tsock.to_str().unwrap(),
        "-c",
        dir.join("tenants.yaml").to_str().unwrap(),
    ])
    .env("KUBEBID_LOG", "info")
    .stdout(Stdio::null())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    let mut lines = BufReader::new(proxy.stderr.take().unwrap()).lines();
    let addr: SocketAddr = loop {
        let line = lines
            .next()
            .expect("the proxy says where it listens")
            .unwrap();
        if line.contains("etcd proxy serving") {
            let v: serde_json::Value = serde_json::from_str(&line).unwrap();
            break v["fields"]["listen"].as_str().unwrap().parse().unwrap();
        }
    };
    std::thread::spawn(move || for _ in lines {});
    procs.0.push(proxy);

    let secret = "/registry/secrets/acme-prod/db";
    let (ok, _, err) = etcdctl(addr, &["put", secret, "k8s:enc:kms:v2:kubebid-kms:s3cret"]);
    assert!(ok, "{err}");
    let stored = etcdctl(etcd, &["get", secret, "--print-value-only"]).1;
    assert!(
        stored.starts_with("k8s:enc:kubebid-tenant:v1:\u{4}acme"),
        "{stored:?}"
    );
    assert!(!stored.contains("s3cret"));
    assert!(
        stored.contains("kubebid-tenant-acme-v1"),
        "the value names the tenant key version that wrapped its data key"
    );
    let through = etcdctl(addr, &["get", secret, "--print-value-only"]).1;
    assert_eq!(through.trim_end(), "k8s:enc:kms:v2:kubebid-kms:s3cret");
    // Crypto-shredding while the proxy runs: once acme's key is destroyed, its Secret stops opening.
    let out = kubebid(&["kms", "tenant-key", "destroy", "acme", "--yes"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    wait_for("the proxy to drop acme's keys", || {
        !etcdctl(addr, &["get", secret, "--print-value-only"]).0
    });
    let (_, _, err) = etcdctl(addr, &["get", secret]);
    assert!(err.contains("acme"), "{err}");
    // A tenant without a key: the write is refused and nothing reaches etcd.
    let (ok, _, err) = etcdctl(addr, &["put", "/registry/secrets/globex/db", "x"]);
    assert!(!ok && err.contains("globex"), "{err}");
    assert!(
        etcdctl(
            etcd,
            &["get", "/registry/secrets/globex/db", "--print-value-only"]
        )
        .1
        .trim()
        .is_empty()
    );
}
