//! `kubebid serve audit` and `kubebid audit …` as an operator uses them: sustained ingest, `kill -9`,
//! restart, and every acknowledged event still there and verified; proofs checked offline; tampering
//! found with a non-zero exit.

// Test fixtures fail the test loudly.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

mod common;

use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

fn kubebid() -> Command {
    Command::new(env!("CARGO_BIN_EXE_kubebid"))
}

fn tempdir() -> PathBuf {
    let d = std::env::temp_dir().join(format!(
        "kubebid-audit-cli-{}-{}",
        std::process::id(),
        rand_suffix()
    ));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn rand_suffix() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

const TENANTS: &str = "apiVersion: kubebid.io/v1alpha1
kind: Tenant
metadata: {name: acme}
spec: {namespaces: [acme-prod], owners: [{kind: Group, name: acme-admins}]}
---
apiVersion: kubebid.io/v1alpha1
kind: Tenant
metadata: {name: globex}
spec: {namespaces: [globex], owners: [{kind: Group, name: globex-admins}]}
";

/// Starts the sink and returns it with the address it serves on.
fn start(dir: &Path) -> (Child, SocketAddr) {
    let key = dir.join("key.pem");
    let alerts = dir.join("alerts.jsonl");
    spawn_sink(
        dir,
        &[
            OsStr::new("--signing-key"),
            key.as_os_str(),
            OsStr::new("--alerts"),
            alerts.as_os_str(),
        ],
        &[],
    )
}

/// Runs the sink on `dir` with `extra` arguments and `env`, until it says where it listens.
fn spawn_sink(dir: &Path, extra: &[&OsStr], env: &[(&str, &OsStr)]) -> (Child, SocketAddr) {
    common::spawn_audit_sink(dir, extra, env)
}

fn post(addr: SocketAddr, body: &str) -> std::io::Result<u16> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        s,
        "POST /events HTTP/1.1\r\nhost: audit\r\ncontent-type: application/json\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )?;
    let mut reply = String::new();
    s.read_to_string(&mut reply)?;
    Ok(reply
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0))
}

fn event(id: &str, ns: &str, group: &str) -> String {
    format!(
        r#"{{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"{id}","stage":"ResponseComplete","requestURI":"/api/v1/namespaces/{ns}/secrets/db","verb":"get","user":{{"username":"someone","groups":["{group}"]}},"objectRef":{{"resource":"secrets","namespace":"{ns}","name":"db","apiVersion":"v1"}},"responseStatus":{{"code":200}},"requestReceivedTimestamp":"2026-11-29T10:00:00.000000Z"}}"#
    )
}

fn ids_in(dir: &Path, tenant: &str) -> BTreeSet<String> {
    common::trail(dir, tenant)
        .iter()
        .map(|e| e["auditID"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn kill_9_during_ingest_loses_nothing_acknowledged_and_the_log_verifies() {
    let dir = tempdir();
    std::fs::write(dir.join("tenants.yaml"), TENANTS).unwrap();
    let out = kubebid()
        .args(["audit", "keygen", "--out"])
        .arg(dir.join("key.pem"))
        .output()
        .unwrap();
    assert!(out.status.success());
    use std::os::unix::fs::PermissionsExt as _;
    assert_eq!(
        std::fs::metadata(dir.join("key.pem"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o600
    );

    let (mut sink, addr) = start(&dir);
    let acked = Arc::new(Mutex::new(Vec::<(String, String)>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let (acked, stop) = (acked.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) {
                    let items: Vec<(String, &str, &str, &str)> = (0..20)
                        .map(|k| {
                            let (ns, group, tenant) = if k % 2 == 0 {
                                ("acme-prod", "acme-admins", "acme")
                            } else {
                                ("globex", "globex-admins", "globex")
                            };
                            (format!("w{w}-{n}-{k}"), ns, group, tenant)
                        })
                        .collect();
                    let body = format!(
                        r#"{{"kind":"EventList","apiVersion":"audit.k8s.io/v1","items":[{}]}}"#,
                        items
                            .iter()
                            .map(|(id, ns, g, _)| event(id, ns, g))
                            .collect::<Vec<_>>()
                            .join(",")
                    );
                    // Only a 200 is an acknowledgement; refusals and a killed sink are not.
                    if let Ok(200) = post(addr, &body) {
                        acked.lock().unwrap().extend(
                            items
                                .iter()
                                .map(|(id, _, _, t)| (id.clone(), (*t).to_owned())),
                        );
                    }
                    n += 1;
                }
            })
        })
        .collect();
    // Sustained ingest, then the hard kill in the middle of it.
    while acked.lock().unwrap().len() < 2000 {
        std::thread::sleep(Duration::from_millis(20));
    }
    sink.kill().unwrap();
    sink.wait().unwrap();
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.join().unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() >= 2000);

    // Restart: the sink opens every log, cuts what was never acknowledged, and serves on.
    let (mut sink, addr) = start(&dir);
    assert_eq!(
        post(
            addr,
            &format!(
                r#"{{"kind":"EventList","apiVersion":"audit.k8s.io/v1","items":[{}]}}"#,
                event("after", "acme-prod", "acme-admins")
            )
        )
        .unwrap(),
        200
    );
    sink.kill().unwrap();
    sink.wait().unwrap();

    let verify = kubebid()
        .args(["audit", "verify"])
        .arg(dir.join("data"))
        .output()
        .unwrap();
    assert!(
        verify.status.success(),
        "{}",
        String::from_utf8_lossy(&verify.stdout)
    );
    let acme = ids_in(&dir, "acme");
    let globex = ids_in(&dir, "globex");
    for (id, tenant) in &acked {
        let set = if tenant == "acme" { &acme } else { &globex };
        assert!(
            set.contains(id),
            "acknowledged event {id} of {tenant} is missing"
        );
    }
    assert!(acme.contains("after"));

    // An auditor's proof, checked with the public key only; a doctored copy fails.
    let proof = dir.join("proof.json");
    let out = kubebid()
        .args(["audit", "proof"])
        .arg(dir.join("data"))
        .args(["--tenant", "globex", "--index", "3", "--out"])
        .arg(&proof)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let check = |p: &Path| {
        kubebid()
            .args(["audit", "check-proof"])
            .arg(p)
            .arg("--key")
            .arg(dir.join("key.pub"))
            .output()
            .unwrap()
    };
    let ok = check(&proof);
    assert!(ok.status.success());
    assert!(String::from_utf8_lossy(&ok.stdout).contains("proof holds: event 3 of globex"));
    let doctored = dir.join("doctored.json");
    std::fs::write(
        &doctored,
        std::fs::read_to_string(&proof)
            .unwrap()
            .replace("someone", "nobody"),
    )
    .unwrap();
    assert_eq!(check(&doctored).status.code(), Some(1));
    assert_eq!(
        check(&dir.join("tenants.yaml")).status.code(),
        Some(1),
        "not a proof at all"
    );

    // An auditor keeps today's heads; later a consistency proof shows the log still extends them.
    let heads = kubebid()
        .args(["audit", "heads"])
        .arg(dir.join("data"))
        .output()
        .unwrap();
    assert!(heads.status.success());
    let line = String::from_utf8_lossy(&heads.stdout)
        .lines()
        .find(|l| l.contains(r#""trail":"acme""#))
        .unwrap()
        .to_owned();
    std::fs::write(dir.join("kept-head.json"), line).unwrap();
    let consistency = dir.join("consistency.json");
    let out = kubebid()
        .args(["audit", "proof"])
        .arg(dir.join("data"))
        .args(["--tenant", "acme", "--since-head"])
        .arg(dir.join("kept-head.json"))
        .arg("--out")
        .arg(&consistency)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let held = check(&consistency);
    assert!(held.status.success());
    assert!(String::from_utf8_lossy(&held.stdout).contains("is a prefix of the tree"));

    // Tampering with a stored event makes verify fail, naming the trail.
    let seg = std::fs::read_dir(dir.join("data/tenants/acme"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "seg"))
        .unwrap();
    let mut bytes = std::fs::read(&seg).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 1;
    std::fs::write(&seg, bytes).unwrap();
    let verify = kubebid()
        .args(["audit", "verify"])
        .arg(dir.join("data"))
        .output()
        .unwrap();
    assert_eq!(verify.status.code(), Some(1));
    let text = String::from_utf8_lossy(&verify.stdout);
    assert!(
        text.contains("acme") && text.contains("FAILED") && text.contains("problem: segment"),
        "{text}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn tree_heads_are_signed_inside_the_hsm() {
    let dir = tempdir();
    let conf = common::softhsm_token(&dir);
    std::fs::write(dir.join("tenants.yaml"), TENANTS).unwrap();
    let with_token = |c: &mut Command| {
        c.env("SOFTHSM2_CONF", &conf).env("KUBEBID_KMS_PIN", "1234");
    };
    let mut keygen = kubebid();
    keygen
        .args(["audit", "keygen", "--hsm-key", "audit-heads", "--out"])
        .arg(dir.join("hsm.pub"));
    with_token(&mut keygen);
    let out = keygen.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The label is taken now: a second key under it is refused.
    assert_eq!(keygen.output().unwrap().status.code(), Some(2));

    let (mut child, addr) = spawn_sink(
        &dir,
        &[
            OsStr::new("--no-detection"),
            OsStr::new("--hsm-key"),
            OsStr::new("audit-heads"),
        ],
        &[
            ("SOFTHSM2_CONF", conf.as_os_str()),
            ("KUBEBID_KMS_PIN", OsStr::new("1234")),
        ],
    );
    let body = format!(
        r#"{{"kind":"EventList","apiVersion":"audit.k8s.io/v1","items":[{}]}}"#,
        event("h1", "acme-prod", "acme-admins")
    );
    assert_eq!(post(addr, &body).unwrap(), 200);
    child.kill().unwrap();
    child.wait().unwrap();

    let verify = |key: &Path| {
        kubebid()
            .args(["audit", "verify"])
            .arg(dir.join("data"))
            .arg("--key")
            .arg(key)
            .output()
            .unwrap()
    };
    let ok = verify(&dir.join("hsm.pub"));
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stdout)
    );
    // Another key does not verify the HSM's heads.
    let other = kubebid()
        .args(["audit", "keygen", "--out"])
        .arg(dir.join("other.pem"))
        .output()
        .unwrap();
    assert!(other.status.success());
    assert_eq!(verify(&dir.join("other.pub")).status.code(), Some(1));
    let _ = std::fs::remove_dir_all(&dir);
}

/// Over TLS with a client CA: the API server's certificate is required in the handshake to post events
/// (curl is the client; scripts/test installs it).
#[test]
fn events_need_the_api_servers_client_certificate() {
    let dir = tempdir();
    std::fs::write(dir.join("tenants.yaml"), TENANTS).unwrap();
    assert!(
        kubebid()
            .args(["audit", "keygen", "--out"])
            .arg(dir.join("key.pem"))
            .output()
            .unwrap()
            .status
            .success()
    );
    let certs = dir.join("certs");
    let out = kubebid()
        .args(["cert", "generate", "--host", "127.0.0.1", "--out"])
        .arg(&certs)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let key = dir.join("key.pem");
    let (cert, tls_key, ca) = (
        certs.join("tls.crt"),
        certs.join("tls.key"),
        certs.join("ca.crt"),
    );
    let (mut child, addr) = spawn_sink(
        &dir,
        &[
            OsStr::new("--signing-key"),
            key.as_os_str(),
            OsStr::new("--tls-cert"),
            cert.as_os_str(),
            OsStr::new("--tls-key"),
            tls_key.as_os_str(),
            OsStr::new("--client-ca"),
            ca.as_os_str(),
            OsStr::new("--no-detection"),
        ],
        &[],
    );
    let body = format!(
        r#"{{"kind":"EventList","apiVersion":"audit.k8s.io/v1","items":[{}]}}"#,
        event("t1", "acme-prod", "acme-admins")
    );
    let curl = |addr: SocketAddr, client: bool| {
        let mut c = Command::new("curl");
        c.args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "--cacert"])
            .arg(&ca);
        if client {
            c.arg("--cert")
                .arg(certs.join("client.crt"))
                .arg("--key")
                .arg(certs.join("client.key"));
        }
        let out = c
            .args([
                "-X",
                "POST",
                "--data",
                &body,
                &format!("https://{addr}/events"),
            ])
            .output()
            .expect("curl is installed");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    // Without the certificate the handshake itself fails (curl reports no HTTP status): no body is read.
    assert_eq!(curl(addr, false), "000");
    assert_eq!(curl(addr, true), "200");
    child.kill().unwrap();
    child.wait().unwrap();
    // Pinned to the API server's name, the same CA's certificate for another name is refused.
    for (name, code) in [("kube-apiserver", "200"), ("someone-else", "000")] {
        let (mut child, pinned) = spawn_sink(
            &dir,
            &[
                OsStr::new("--signing-key"),
                key.as_os_str(),
                OsStr::new("--tls-cert"),
                cert.as_os_str(),
                OsStr::new("--tls-key"),
                tls_key.as_os_str(),
                OsStr::new("--client-ca"),
                ca.as_os_str(),
                OsStr::new("--client-name"),
                OsStr::new(name),
                OsStr::new("--no-detection"),
            ],
            &[],
        );
        assert_eq!(curl(pinned, true), code, "--client-name {name}");
        child.kill().unwrap();
        child.wait().unwrap();
    }
    // Posted twice (to the first sink and the pinned one): one audit ID.
    assert_eq!(ids_in(&dir, "acme"), BTreeSet::from(["t1".to_owned()]));
    let _ = std::fs::remove_dir_all(&dir);
}
