//! `kubebid serve etcd-proxy` and `kubebid secrets rewrap` end to end: a tenant's key in SoftHSM2 behind
//! the KMS plugin's tenant key socket, a real etcd (Debian's etcd-server), and etcdctl (etcd-client) as
//! the API server. The Secret is sealed in etcd under the tenant's key and plain through the proxy; a
//! tenant with no key cannot write; destroying the key shreds it; mutual TLS on both sides with a
//! certificate reloaded; metrics; `kill -9` during writes loses no acknowledged write; rewrap after a
//! rotation.

// Test fixtures fail the test loudly.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

mod common;

use std::io::{BufRead as _, BufReader};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
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

/// TLS flags for etcdctl.
#[derive(Clone)]
struct Tls {
    ca: PathBuf,
    cert: Option<(PathBuf, PathBuf)>,
}

fn etcdctl_tls(addr: SocketAddr, tls: &Tls, args: &[&str]) -> (bool, String, String) {
    let mut flags = vec![format!("--cacert={}", tls.ca.display())];
    if let Some((c, k)) = &tls.cert {
        flags.push(format!("--cert={}", c.display()));
        flags.push(format!("--key={}", k.display()));
    }
    let mut all: Vec<&str> = flags.iter().map(String::as_str).collect();
    all.extend_from_slice(args);
    etcdctl(addr, &all)
}

/// SoftHSM2 with tenant keys, the KMS plugin serving them, and etcd; proxies started on demand.
struct Rig {
    procs: Procs,
    dir: PathBuf,
    conf: PathBuf,
    tsock: PathBuf,
    etcd: SocketAddr,
    /// etcd's CA and the proxy's client certificate for it, when etcd speaks TLS.
    etcd_tls: Option<PathBuf>,
}

impl Rig {
    fn kubebid(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_kubebid"));
        c.args(args)
            .env("SOFTHSM2_CONF", &self.conf)
            .env("KUBEBID_KMS_PIN", "1234")
            .env("KUBEBID_LOG", "warn");
        c
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.kubebid(args).output().unwrap();
        assert!(
            out.status.success(),
            "kubebid {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `keys`: tenants that get a key. `tls`: etcd with TLS and client certificates.
    fn new(name: &str, keys: &[&str], tls: bool) -> Self {
        let dir = std::env::temp_dir().join(format!("kubebid-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let conf = common::softhsm_token(&dir);
        let mut rig = Rig {
            procs: Procs(Vec::new(), dir.clone()),
            conf,
            tsock: dir.join("tenant-keys.sock"),
            etcd: "127.0.0.1:0".parse().unwrap(),
            etcd_tls: None,
            dir,
        };
        for k in keys {
            rig.ok(&["kms", "tenant-key", "create", k]);
        }
        let sock = rig.dir.join("kms.sock");
        let kms = rig
            .kubebid(&[
                "serve",
                "kms",
                "--metrics-listen",
                "127.0.0.1:0",
                "--socket",
                sock.to_str().unwrap(),
                "--tenant-socket",
                rig.tsock.to_str().unwrap(),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        rig.procs.0.push(kms);
        let tsock = rig.tsock.clone();
        wait_for("the KMS plugin", || tsock.exists());
        let (client, peer) = (port(), port());
        let scheme = if tls { "https" } else { "http" };
        let mut etcd = Command::new("etcd");
        etcd.args(["--name", "default", "--data-dir"])
            .arg(rig.dir.join("etcd"))
            .arg(format!(
                "--listen-client-urls={scheme}://127.0.0.1:{client}"
            ))
            .arg(format!(
                "--advertise-client-urls={scheme}://127.0.0.1:{client}"
            ))
            .arg(format!("--listen-peer-urls=http://127.0.0.1:{peer}"))
            .arg(format!(
                "--initial-advertise-peer-urls=http://127.0.0.1:{peer}"
            ))
            .arg(format!("--initial-cluster=default=http://127.0.0.1:{peer}"));
        if tls {
            let certs = rig.dir.join("etcd-certs");
            rig.ok(&[
                "cert",
                "generate",
                "--out",
                certs.to_str().unwrap(),
                "--host",
                "127.0.0.1",
            ]);
            etcd.arg(format!("--cert-file={}", certs.join("tls.crt").display()))
                .arg(format!("--key-file={}", certs.join("tls.key").display()))
                .arg(format!(
                    "--trusted-ca-file={}",
                    certs.join("ca.crt").display()
                ))
                .arg("--client-cert-auth");
            rig.etcd_tls = Some(certs);
        }
        rig.procs.0.push(
            etcd.stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        );
        rig.etcd = format!("127.0.0.1:{client}").parse().unwrap();
        let (addr, raw) = (rig.etcd, rig.raw_tls());
        wait_for("etcd", || match &raw {
            Some(t) => etcdctl_tls(addr, t, &["endpoint", "health"]).0,
            None => etcdctl(addr, &["endpoint", "health"]).0,
        });
        std::fs::write(rig.dir.join("tenants.yaml"), TENANTS).unwrap();
        rig
    }

    /// etcdctl's flags to read etcd itself (the proxy's client certificate, signed by etcd's CA).
    fn raw_tls(&self) -> Option<Tls> {
        self.etcd_tls.as_ref().map(|d| Tls {
            ca: d.join("ca.crt"),
            cert: Some((d.join("client.crt"), d.join("client.key"))),
        })
    }

    /// Reads `key` from etcd itself.
    fn raw(&self, key: &str) -> String {
        let args = ["get", key, "--print-value-only"];
        match self.raw_tls() {
            Some(t) => etcdctl_tls(self.etcd, &t, &args).1,
            None => etcdctl(self.etcd, &args).1,
        }
    }

    /// The flags that connect to etcd.
    fn etcd_flags(&self) -> Vec<String> {
        let scheme = if self.etcd_tls.is_some() {
            "https"
        } else {
            "http"
        };
        let mut f = vec![
            "--etcd".to_owned(),
            format!("{scheme}://{}", self.etcd),
            "--tenant-key-socket".to_owned(),
            self.tsock.display().to_string(),
            "-c".to_owned(),
            self.dir.join("tenants.yaml").display().to_string(),
        ];
        if let Some(d) = &self.etcd_tls {
            for (flag, file) in [
                ("--etcd-ca", "ca.crt"),
                ("--etcd-cert", "client.crt"),
                ("--etcd-key", "client.key"),
            ] {
                f.push(flag.to_owned());
                f.push(d.join(file).display().to_string());
            }
        }
        f
    }

    /// Starts a proxy on `listen`: its address and its metrics address.
    fn proxy(&mut self, listen: &str, extra: &[String]) -> (SocketAddr, SocketAddr) {
        let mut args: Vec<String> = vec![
            "serve".into(),
            "etcd-proxy".into(),
            "--listen".into(),
            listen.into(),
            "--metrics-listen".into(),
            "127.0.0.1:0".into(),
        ];
        args.extend(self.etcd_flags());
        args.extend_from_slice(extra);
        self.spawn_proxy(&args)
    }

    /// Starts `kubebid` with exactly `args` (a proxy): its address and its metrics address.
    fn spawn_proxy(&mut self, args: &[String]) -> (SocketAddr, SocketAddr) {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut proxy = self
            .kubebid(&args)
            .env("KUBEBID_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(proxy.stderr.take().unwrap()).lines();
        let (addr, metrics) = loop {
            let line = lines
                .next()
                .expect("the proxy says where it listens")
                .unwrap();
            if line.contains("etcd proxy serving") {
                let v: serde_json::Value = serde_json::from_str(&line).unwrap();
                break (
                    v["fields"]["listen"].as_str().unwrap().parse().unwrap(),
                    v["fields"]["metrics"].as_str().unwrap().parse().unwrap(),
                );
            }
            assert!(!line.contains("\"ERROR\""), "{line}");
        };
        std::thread::spawn(move || for _ in lines {});
        self.procs.0.push(proxy);
        (addr, metrics)
    }
}

fn skip() -> bool {
    if Command::new("etcd").arg("--version").output().is_err() {
        println!(
            "SKIPPED: etcd is not installed (scripts/test installs etcd-server and etcd-client)"
        );
        return true;
    }
    false
}

/// GET `path` over plain HTTP/1.1: the body.
fn http_get(addr: SocketAddr, path: &str) -> String {
    use std::io::{Read as _, Write as _};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

#[test]
fn a_tenants_secret_is_sealed_under_its_hsm_key_in_etcd_and_plain_through_the_proxy() {
    if skip() {
        return;
    }
    // Only acme has a key: globex's Secrets cannot be written.
    let mut rig = Rig::new("etcd-proxy", &["acme"], false);
    let (addr, metrics) = rig.proxy("127.0.0.1:0", &[]);
    let secret = "/registry/secrets/acme-prod/db";
    let (ok, _, err) = etcdctl(addr, &["put", secret, "k8s:enc:kms:v2:kubebid-kms:s3cret"]);
    assert!(ok, "{err}");
    let stored = rig.raw(secret);
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
    // A Secret of a namespace no tenant owns, beside it.
    assert!(
        etcdctl(
            addr,
            &["put", "/registry/secrets/kube-system/t", "platform"]
        )
        .0
    );
    // Crypto-shredding while the proxy runs: once acme's key is destroyed, its Secret stops opening.
    rig.ok(&["kms", "tenant-key", "destroy", "acme", "--yes"]);
    wait_for("the proxy to drop acme's keys", || {
        !etcdctl(addr, &["get", secret, "--print-value-only"]).0
    });
    let (_, _, err) = etcdctl(addr, &["get", secret]);
    assert!(err.contains("acme") && err.contains("destroyed"), "{err}");
    // ...while a list of every Secret (what the API server runs) goes on for everyone else, without it.
    let (ok, listed, err) = etcdctl(addr, &["get", "/registry/secrets/", "--prefix"]);
    assert!(ok, "{err}");
    assert!(
        listed.contains("platform") && !listed.contains("acme-prod"),
        "{listed}"
    );
    // A tenant without a key: the write is refused and nothing reaches etcd.
    let (ok, _, err) = etcdctl(addr, &["put", "/registry/secrets/globex/db", "x"]);
    assert!(!ok && err.contains("globex"), "{err}");
    assert!(rig.raw("/registry/secrets/globex/db").trim().is_empty());
    // What happened is counted.
    let page = http_get(metrics, "/metrics");
    assert!(
        page.contains(r#"kubebid_etcd_proxy_seals_total{tenant="acme",result="ok"} 1"#),
        "{page}"
    );
    assert!(
        page.contains(r#"kubebid_etcd_proxy_seals_total{tenant="globex",result="error"} 1"#),
        "{page}"
    );
    assert!(
        page.contains(r#"kubebid_etcd_proxy_opens_total{tenant="acme",result="error"}"#),
        "{page}"
    );
    assert!(
        page.contains(r#"kubebid_etcd_proxy_calls_total{method="Put"} 3"#),
        "{page}"
    );
    assert!(
        page.contains(r#"kubebid_etcd_proxy_faults_total{method="Put",code="9"} 1"#),
        "{page}"
    );
    assert!(!page.contains("s3cret"));
}

#[test]
fn mutual_tls_on_both_sides_and_a_new_serving_certificate_is_picked_up() {
    if skip() {
        return;
    }
    let mut rig = Rig::new("etcd-proxy-tls", &["acme"], true);
    // The API server's side: the proxy's serving certificate and the API server's client certificate.
    let front = rig.dir.join("front");
    rig.ok(&[
        "cert",
        "generate",
        "--out",
        front.to_str().unwrap(),
        "--host",
        "127.0.0.1",
    ]);
    let file = |f: &str| front.join(f).display().to_string();
    let (addr, _) = rig.proxy(
        "127.0.0.1:0",
        &[
            "--tls-cert".into(),
            file("tls.crt"),
            "--tls-key".into(),
            file("tls.key"),
            "--client-ca".into(),
            file("ca.crt"),
            "--client-name".into(),
            "kube-apiserver".into(),
        ],
    );
    let apiserver = Tls {
        ca: front.join("ca.crt"),
        cert: Some((front.join("client.crt"), front.join("client.key"))),
    };
    let secret = "/registry/secrets/acme-prod/db";
    let (ok, _, err) = etcdctl_tls(addr, &apiserver, &["put", secret, "over-tls"]);
    assert!(ok, "{err}");
    assert!(rig.raw(secret).starts_with("k8s:enc:kubebid-tenant:v1:"));
    let (ok, got, err) = etcdctl_tls(addr, &apiserver, &["get", secret, "--print-value-only"]);
    assert!(ok, "{err}");
    assert_eq!(got.trim_end(), "over-tls");
    // Without a client certificate, or over plain HTTP/2, nothing gets through.
    let anonymous = Tls {
        ca: front.join("ca.crt"),
        cert: None,
    };
    assert!(!etcdctl_tls(addr, &anonymous, &["get", secret, "--command-timeout=2s"]).0);
    assert!(!etcdctl(addr, &["get", secret, "--command-timeout=2s"]).0);
    // A client certificate the proxy's CA did not sign: refused.
    let other = rig.dir.join("other");
    rig.ok(&[
        "cert",
        "generate",
        "--out",
        other.to_str().unwrap(),
        "--host",
        "127.0.0.1",
    ]);
    let stranger = Tls {
        ca: front.join("ca.crt"),
        cert: Some((other.join("client.crt"), other.join("client.key"))),
    };
    assert!(!etcdctl_tls(addr, &stranger, &["get", secret, "--command-timeout=2s"]).0);
    // The serving certificate is replaced on disk (by a new CA's): new connections get it.
    for f in ["tls.crt", "tls.key"] {
        std::fs::copy(other.join(f), front.join(f)).unwrap();
    }
    let renewed = Tls {
        ca: other.join("ca.crt"),
        cert: apiserver.cert.clone(),
    };
    wait_for("the proxy to serve the new certificate", || {
        etcdctl_tls(addr, &renewed, &["get", secret, "--print-value-only"]).0
    });
    assert!(!etcdctl_tls(addr, &apiserver, &["get", secret, "--command-timeout=2s"]).0);
}

#[test]
fn kill_9_during_writes_loses_no_acknowledged_write_and_rewrap_moves_to_the_new_key() {
    if skip() {
        return;
    }
    let mut rig = Rig::new("etcd-proxy-kill", &["acme"], false);
    let listen = format!("127.0.0.1:{}", port());
    let (addr, _) = rig.proxy(&listen, &[]);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let client = kubebid_etcd::client::Client::new(Arc::new(
        kubebid_etcd::proxy::Etcd::new(format!("http://{addr}").parse().unwrap(), None).unwrap(),
    ));
    // Four writers put Secrets as fast as they can; the proxy is killed under them.
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let c = client.clone();
            rt.spawn(async move {
                let mut acked = Vec::new();
                for i in 0.. {
                    let put = kubebid_etcd::proto::PutRequest {
                        key: format!("/registry/secrets/acme-prod/w{w}-{i}").into_bytes(),
                        value: format!("value-{w}-{i}").into_bytes(),
                        ..Default::default()
                    };
                    match c.put(&put).await {
                        Ok(_) => acked.push(i),
                        Err(e) => {
                            eprintln!("writer {w} stopped at {i}: {e}");
                            break;
                        }
                    }
                }
                acked
            })
        })
        .collect();
    wait_for("writes to be acknowledged", || {
        etcdctl(
            rig.etcd,
            &[
                "get",
                "/registry/secrets/acme-prod/",
                "--prefix",
                "--keys-only",
                "--limit=1",
            ],
        )
        .1
        .contains("/registry/secrets/acme-prod/w")
    });
    std::thread::sleep(Duration::from_millis(300));
    let mut proxy = rig.procs.0.pop().unwrap();
    let _ = Command::new("kill")
        .args(["-9", &proxy.id().to_string()])
        .status();
    let _ = proxy.wait();
    let acked: Vec<(usize, Vec<usize>)> = writers
        .into_iter()
        .enumerate()
        .map(|(w, h)| (w, rt.block_on(h).unwrap()))
        .collect();
    let total: usize = acked.iter().map(|(_, a)| a.len()).sum();
    assert!(total > 0, "no write was acknowledged before the kill");
    // Restarted on the same address: every acknowledged write reads back as written.
    let (addr2, _) = rig.proxy(&listen, &[]);
    assert_eq!(addr, addr2);
    let (ok, listed, err) = etcdctl(addr, &["get", "/registry/secrets/acme-prod/", "--prefix"]);
    assert!(ok, "{err}");
    for (w, is) in &acked {
        for i in is {
            assert!(
                listed.contains(&format!(
                    "/registry/secrets/acme-prod/w{w}-{i}\nvalue-{w}-{i}\n"
                )),
                "acknowledged write w{w}-{i} is missing"
            );
        }
    }
    // Nothing half-sealed: every value etcd holds there is a whole seal that opens.
    let raw = kubebid_etcd::client::Client::new(Arc::new(
        kubebid_etcd::proxy::Etcd::new(format!("http://{}", rig.etcd).parse().unwrap(), None)
            .unwrap(),
    ));
    let held = || {
        let prefix = b"/registry/secrets/acme-prod/".to_vec();
        let range = kubebid_etcd::proto::RangeRequest {
            range_end: kubebid_etcd::rewrap::prefix_end(&prefix),
            key: prefix,
            ..Default::default()
        };
        rt.block_on(raw.range(&range)).unwrap().kvs
    };
    let stored = held();
    assert!(stored.len() >= total);
    for kv in &stored {
        assert!(
            kv.value.starts_with(b"k8s:enc:kubebid-tenant:v1:"),
            "{}",
            String::from_utf8_lossy(&kv.key)
        );
    }
    assert_eq!(
        listed.lines().filter(|l| l.starts_with("value-")).count(),
        stored.len(),
        "every stored value opens through the proxy"
    );

    // Rotation, then rewrap: every value moves to the newest key version, and still reads the same.
    rig.ok(&["kms", "tenant-key", "rotate", "acme"]);
    let mut args = vec![
        "secrets".to_owned(),
        "rewrap".to_owned(),
        "--tenant".to_owned(),
        "acme".to_owned(),
    ];
    args.extend(rig.etcd_flags());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let summary = rig.ok(&args);
    assert!(
        summary.contains(&format!(
            "scanned {}, re-sealed {}",
            stored.len(),
            stored.len()
        )),
        "{summary}"
    );
    let v2 = b"kubebid-tenant-acme-v2";
    for kv in held() {
        assert!(
            kv.value.windows(v2.len()).any(|w| w == v2),
            "{}",
            String::from_utf8_lossy(&kv.key)
        );
    }
    let (_, relisted, _) = etcdctl(addr, &["get", "/registry/secrets/acme-prod/", "--prefix"]);
    assert_eq!(relisted, listed);
    // A second run has nothing to do.
    let summary = rig.ok(&args);
    assert!(
        summary.contains("re-sealed 0")
            && summary.contains(&format!("already current {}", stored.len())),
        "{summary}"
    );
    // An unknown tenant is a usage error.
    let out = rig
        .kubebid(&[
            "secrets",
            "rewrap",
            "--tenant",
            "nobody",
            "-c",
            "x",
            "--tenant-key-socket",
            "y",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

/// The static pod `kubebid tenant render --api-server-dir` writes: a valid Pod beside the KMS plugin's,
/// using its tenant key socket, with the API server's `--etcd-servers` pointing at it; and its command line,
/// with the node's paths moved here (kubeadm's etcd CA and the API server's etcd client certificate
/// standing in), serves the API server over mutual TLS and seals a tenant added to the config later.
#[test]
fn the_rendered_static_pod_serves_with_mutual_tls_and_follows_tenant_changes() {
    if skip() {
        return;
    }
    let mut rig = Rig::new("etcd-proxy-pod", &["acme", "globex"], true);
    let api = rig.dir.join("api-server");
    let input = rig.dir.join("render-input.yaml");
    let only_acme = TENANTS.split("---").next().unwrap();
    std::fs::write(&input, only_acme).unwrap();
    let render = |rig: &Rig| {
        rig.ok(&[
            "tenant",
            "render",
            "--api-server-dir",
            api.to_str().unwrap(),
            input.to_str().unwrap(),
        ]);
        let text = std::fs::read_to_string(api.join("kubebid-etcd-proxy.yaml")).unwrap();
        let mut docs = kubebid_model::yaml::parse_documents(&text);
        docs.remove(0).unwrap().value
    };
    let pod_value = render(&rig);
    let pod: k8s_openapi::api::core::v1::Pod = serde_json::from_value(pod_value.clone()).unwrap();
    assert_eq!(serde_json::to_value(&pod).unwrap(), pod_value);
    let container = &pod.spec.as_ref().unwrap().containers[0];
    let args = container.args.clone().unwrap();
    let arg = |flag: &str| {
        let i = args.iter().position(|a| a == flag).unwrap();
        args[i + 1].clone()
    };
    // The KMS plugin's tenant socket, and the API server's flag pointing at the proxy.
    let kms = std::fs::read_to_string(api.join("kubebid-kms.yaml")).unwrap();
    assert!(
        kms.contains(&format!("- {}", arg("--tenant-key-socket"))),
        "{kms}"
    );
    let flags = std::fs::read_to_string(api.join("kube-apiserver-flags.txt")).unwrap();
    assert!(
        flags.contains(&format!("--etcd-servers=https://{}\n", arg("--listen"))),
        "{flags}"
    );
    let sc = container.security_context.as_ref().unwrap();
    assert_eq!(sc.read_only_root_filesystem, Some(true));
    assert_eq!(
        sc.capabilities.as_ref().unwrap().drop.as_deref(),
        Some(&["ALL".to_owned()][..])
    );

    // The same command line on this machine.
    let certs = rig.etcd_tls.clone().unwrap();
    let here = |p: &str| certs.join(p).display().to_string();
    let kms_dir = Path::new(&arg("--tenant-key-socket"))
        .parent()
        .unwrap()
        .display()
        .to_string();
    let moved: Vec<String> = args
        .iter()
        .map(|a| {
            a.replace("/etc/kubernetes/pki/etcd/ca.crt", &here("ca.crt"))
                .replace(
                    "/etc/kubernetes/pki/apiserver-etcd-client.crt",
                    &here("client.crt"),
                )
                .replace(
                    "/etc/kubernetes/pki/apiserver-etcd-client.key",
                    &here("client.key"),
                )
                .replace(
                    "/etc/kubernetes/kubebid/etcd-proxy/tls.crt",
                    &here("tls.crt"),
                )
                .replace(
                    "/etc/kubernetes/kubebid/etcd-proxy/tls.key",
                    &here("tls.key"),
                )
                .replace("/etc/kubernetes/kubebid", api.to_str().unwrap())
                .replace(&kms_dir, rig.dir.to_str().unwrap())
                .replace("https://127.0.0.1:2379", &format!("https://{}", rig.etcd))
                .replace("127.0.0.1:2378", "127.0.0.1:0")
                .replace("127.0.0.1:9155", "127.0.0.1:0")
        })
        .collect();
    let (addr, _) = rig.spawn_proxy(&moved);
    // The API server: etcd's CA, its etcd client certificate.
    let apiserver = Tls {
        ca: certs.join("ca.crt"),
        cert: Some((certs.join("client.crt"), certs.join("client.key"))),
    };
    assert!(
        etcdctl_tls(
            addr,
            &apiserver,
            &["put", "/registry/secrets/acme-prod/a", "x"]
        )
        .0
    );
    assert!(
        rig.raw("/registry/secrets/acme-prod/a")
            .starts_with("k8s:enc:kubebid-tenant:v1:")
    );
    // globex is not a tenant yet: its namespace's Secrets pass as they are.
    assert!(
        etcdctl_tls(
            addr,
            &apiserver,
            &["put", "/registry/secrets/globex/a", "y"]
        )
        .0
    );
    assert_eq!(rig.raw("/registry/secrets/globex/a").trim_end(), "y");
    // It becomes one: re-rendered, the pod's manifest changes, and the running proxy follows.
    std::fs::write(&input, TENANTS).unwrap();
    let again = render(&rig);
    assert_ne!(
        again["metadata"]["annotations"]["kubebid.io/tenants-sha256"],
        pod_value["metadata"]["annotations"]["kubebid.io/tenants-sha256"]
    );
    wait_for("the proxy to seal globex's Secrets", || {
        etcdctl_tls(
            addr,
            &apiserver,
            &["put", "/registry/secrets/globex/b", "z"],
        )
        .0 && rig
            .raw("/registry/secrets/globex/b")
            .starts_with("k8s:enc:kubebid-tenant:v1:")
    });
    let (ok, got, _) = etcdctl_tls(
        addr,
        &apiserver,
        &["get", "/registry/secrets/globex/b", "--print-value-only"],
    );
    assert!(ok);
    assert_eq!(got.trim_end(), "z");
}
