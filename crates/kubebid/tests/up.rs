//! `kubebid up` end to end: first run creates its state, the printed curl commands give an allowed and a
//! denied review over HTTPS (curl is the client), the DNS server answers each tenant's pod what it may see
//! over UDP and TCP (dig is the client), a second `kubebid up` on the same state refuses to take over the
//! first one's sockets, a later run reuses the state, and Ctrl-C stops it cleanly.

// Test helpers fail the test by panicking on broken fixtures; that is their job.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running `kubebid up`, killed if a failing assertion unwinds past it, so no test leaves one behind.
struct Running(Option<Child>);

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn start(state: &Path) -> (Running, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_kubebid"))
        .args([
            "up",
            "--state-dir",
            state.to_str().unwrap(),
            "--webhook-listen",
            "127.0.0.1:0",
            "--dns-listen",
            "127.0.0.1:0",
            "--dns-metrics-listen",
            "127.0.0.1:0",
            "--audit-listen",
            "127.0.0.1:0",
        ])
        .env("KUBEBID_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("kubebid up starts");
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let mut printed = String::new();
    let addr = loop {
        let line = lines
            .next()
            .expect("kubebid up printed its address")
            .unwrap();
        printed.push_str(&line);
        printed.push('\n');
        if let Some(a) = line.strip_prefix("ready: https://") {
            break a.to_owned();
        }
    };
    std::thread::spawn(move || for _ in lines {});
    (Running(Some(child)), format!("{printed}{addr}"))
}

fn curl(ca: &Path, url: &str, body: Option<&Path>) -> String {
    let mut cmd = Command::new("curl");
    cmd.args([
        "-s",
        "--fail-with-body",
        "--cacert",
        ca.to_str().unwrap(),
        url,
    ]);
    if let Some(b) = body {
        cmd.arg("-d").arg(format!("@{}", b.display()));
    }
    let out = cmd
        .output()
        .expect("curl is installed (scripts/test installs it)");
    assert!(
        out.status.success(),
        "curl {url}: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn stop(mut running: Running) {
    let mut child = running.0.take().expect("running");
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            assert!(s.success(), "kubebid up exits 0 on Ctrl-C, got {s}");
            return;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("kubebid up did not stop on Ctrl-C");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn up_serves_an_allowed_and_a_denied_review_and_stops_on_ctrl_c() {
    let state = std::env::temp_dir().join(format!("kubebid-up-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&state);
    let (child, printed) = start(&state);
    let addr = printed.lines().last().unwrap().to_owned();
    assert!(
        printed.contains("created development certificates"),
        "{printed}"
    );
    assert!(printed.contains("three tenants"), "{printed}");
    assert!(printed.contains("curl -s --cacert"), "{printed}");
    let ca = state.join("certs/ca.crt");
    let allowed = curl(
        &ca,
        &format!("https://{addr}/validate"),
        Some(&state.join("requests/allowed.json")),
    );
    assert!(allowed.contains(r#""allowed":true"#), "{allowed}");
    let denied = curl(
        &ca,
        &format!("https://{addr}/validate"),
        Some(&state.join("requests/denied.json")),
    );
    assert!(
        denied.contains(r#""allowed":false"#) && denied.contains("pss/privileged"),
        "{denied}"
    );
    assert_eq!(curl(&ca, &format!("https://{addr}/readyz"), None), "ok\n");
    // One process, one registry: the webhook's /metrics carries every service's families.
    let metrics = curl(&ca, &format!("https://{addr}/metrics"), None);
    for family in [
        "kubebid_webhook_reviews_total",
        "kubebid_dns_queries_total",
        "kubebid_kms_kek_unwraps_total",
        "kubebid_audit_commit_duration_seconds_count",
        "kubebid_server_http_requests_total",
    ] {
        assert!(
            metrics.contains(family),
            "{family} missing from:\n{metrics}"
        );
    }
    // The audit sink: the sample events, posted with the client certificate as the API server would,
    // land in the two tenants' trails, verify, and raise the two alerts.
    let audit = printed
        .lines()
        .find_map(|l| l.trim_start().strip_prefix("audit sink"))
        .and_then(|l| l.trim_start().strip_prefix("https://"))
        .and_then(|l| l.split('/').next())
        .expect("the audit sink's address is printed")
        .to_owned();
    let posted = Command::new("curl")
        .args(["-s", "--fail-with-body", "--cacert"])
        .arg(&ca)
        .arg("--cert")
        .arg(state.join("certs/client.crt"))
        .arg("--key")
        .arg(state.join("certs/client.key"))
        .arg("--data-binary")
        .arg(format!(
            "@{}",
            state.join("requests/audit-events.json").display()
        ))
        .arg(format!("https://{audit}/events"))
        .output()
        .unwrap();
    assert!(
        posted.status.success(),
        "{}",
        String::from_utf8_lossy(&posted.stdout)
    );
    let verify = Command::new(env!("CARGO_BIN_EXE_kubebid"))
        .args(["audit", "verify"])
        .arg(state.join("audit/data"))
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&verify.stdout);
    assert!(
        verify.status.success() && report.contains("2 events"),
        "{report}"
    );
    let alerts = (0..100)
        .map(|_| {
            std::thread::sleep(std::time::Duration::from_millis(20));
            std::fs::read_to_string(state.join("audit/alerts.jsonl")).unwrap_or_default()
        })
        .find(|a| a.lines().count() >= 2)
        .unwrap_or_default();
    assert!(
        alerts.contains("KubeBid Cross-Tenant Secret Read")
            && alerts.contains("KubeBid Exec or Attach Into Pod"),
        "{alerts}"
    );
    // The DNS server: acme's pod resolves its service, globex's does not.
    let dns: std::net::SocketAddr = printed
        .lines()
        .find_map(|l| l.trim().strip_prefix("DNS"))
        .and_then(|l| l.split_whitespace().nth(1))
        .expect("kubebid up prints the DNS address")
        .parse()
        .unwrap();
    let dig = |from: &str, transport: &str| {
        let out = Command::new("dig")
            .args([
                "-b",
                from,
                &format!("@{}", dns.ip()),
                "-p",
                &dns.port().to_string(),
                transport,
            ])
            .args(["+tries=1", "+time=3", "web.tenant-acme.svc.cluster.local"])
            .output()
            .expect("dig is installed (scripts/test installs it)");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    // The banner says udp+tcp: both answer.
    for transport in ["+notcp", "+tcp"] {
        let acme = dig("127.0.0.11", transport);
        assert!(
            acme.contains("status: NOERROR") && acme.contains("10.96.10.10"),
            "{transport}: {acme}"
        );
        let globex = dig("127.0.0.21", transport);
        assert!(globex.contains("status: NXDOMAIN"), "{transport}: {globex}");
    }
    // The KMS plugin: a 0600 socket that answers Status, loudly not HSM-backed.
    assert!(printed.contains("NOT HSM-backed"), "{printed}");
    let socket = state.join("kms/kms.sock");
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&socket).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let status = runtime.block_on(async {
        let mut c = kubebid_kms::server::connect(&socket).await.unwrap();
        c.status(kubebid_kms::proto::StatusRequest {})
            .await
            .unwrap()
            .into_inner()
    });
    assert_eq!(
        (status.healthz.as_str(), status.key_id.as_str()),
        ("ok", "kubebid-root-v1")
    );
    // The tenant key service: each example tenant has a key, and wraps are bound to their tenant.
    let tenant_socket = state.join("kms/tenant-keys.sock");
    let (wrapped, refused) = runtime.block_on(async {
        use kubebid_kms::tenant_proto::{UnwrapKeyRequest, WrapKeyRequest};
        let mut c = kubebid_kms::server::connect_tenant_keys(&tenant_socket)
            .await
            .unwrap();
        let w = c
            .wrap_key(WrapKeyRequest {
                tenant: "acme".into(),
                volume_id: "pvc-1".into(),
                plaintext: vec![3; 32],
            })
            .await
            .unwrap()
            .into_inner();
        let refused = c
            .unwrap_key(UnwrapKeyRequest {
                tenant: "globex".into(),
                volume_id: "pvc-1".into(),
                key_id: w.key_id.clone(),
                wrapped: w.wrapped,
            })
            .await
            .unwrap_err();
        (w.key_id, refused)
    });
    assert_eq!(wrapped, "kubebid-tenant-acme-v1");
    assert_eq!(refused.code(), tonic::Code::PermissionDenied);
    // A second `kubebid up` on the same state refuses to start: it would take over the first one's live
    // sockets.
    let second = Command::new(env!("CARGO_BIN_EXE_kubebid"))
        .args(["up", "--state-dir", state.to_str().unwrap()])
        .args([
            "--webhook-listen",
            "127.0.0.1:0",
            "--dns-listen",
            "127.0.0.1:0",
        ])
        .args(["--dns-metrics-listen", "127.0.0.1:0"])
        .output()
        .unwrap();
    assert_eq!(second.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&second.stderr).contains("another process serves on it"),
        "{}",
        String::from_utf8_lossy(&second.stderr)
    );
    let still = runtime.block_on(async {
        let mut c = kubebid_kms::server::connect(&socket).await.unwrap();
        c.status(kubebid_kms::proto::StatusRequest {}).await.is_ok()
    });
    assert!(still, "the first plugin's socket still answers");
    stop(child);
    // The second run reuses the state: no new certificates.
    let (child, printed) = start(&state);
    assert!(
        !printed.contains("created development certificates"),
        "{printed}"
    );
    stop(child);
    let _ = std::fs::remove_dir_all(&state);
}
