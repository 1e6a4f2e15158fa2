//! `kubebid serve sensor` on this machine's kernel, as root: a cgroup laid out as the kubelet and
//! containerd lay it out, a pod in it (from a pods file) in a tenant's namespace, and inside it `unshare`,
//! `su` run by a non-root user and `mount -t proc`. The alerts name the rule, the tenant, the namespace,
//! the pod and the container; the same tools on the node outside any pod raise no container alert. Opens of
//! /etc/shadow however spelled are reported as /etc/shadow. Every alert also reaches a webhook, and the
//! audit sink files it in the tenant's trail. Where
//! the kernel refuses BPF, the test says so and skips (the rules are tested on recorded events in
//! kubebid-rules).

// Test fixtures fail the test loudly.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

mod common;

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const UID: &str = "7a1b2c3d-4e5f-4a6b-8c7d-0123456789ab";
const ID: &str = "fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210";

fn cgroup2_root() -> Option<PathBuf> {
    let mounts = std::fs::read_to_string("/proc/self/mounts").ok()?;
    mounts.lines().find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        (f.get(2) == Some(&"cgroup2")).then(|| PathBuf::from(f[1]))
    })
}

/// An HTTP/1.1 receiver on loopback that answers 200 to every POST and keeps the bodies.
fn webhook() -> (std::net::SocketAddr, Arc<Mutex<Vec<String>>>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let bodies = Arc::new(Mutex::new(Vec::new()));
    let keep = bodies.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(conn) = conn else { return };
            let keep = keep.clone();
            std::thread::spawn(move || {
                let mut reader = BufReader::new(conn.try_clone().unwrap());
                let mut conn = conn;
                loop {
                    let mut length = 0usize;
                    let mut line = String::new();
                    loop {
                        line.clear();
                        if reader.read_line(&mut line).unwrap_or(0) == 0 {
                            return;
                        }
                        let l = line.to_ascii_lowercase();
                        if let Some(v) = l.strip_prefix("content-length:") {
                            length = v.trim().parse().unwrap();
                        }
                        if line == "\r\n" {
                            break;
                        }
                    }
                    let mut body = vec![0; length];
                    reader.read_exact(&mut body).unwrap();
                    keep.lock().unwrap().push(String::from_utf8(body).unwrap());
                    conn.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
                        .unwrap();
                }
            });
        }
    });
    (addr, bodies)
}

/// The audit sink on loopback over `dir` (its `tenants.yaml`), with a signing key of its own; its address.
fn audit_sink(dir: &std::path::Path) -> (std::process::Child, std::net::SocketAddr) {
    let keygen = Command::new(env!("CARGO_BIN_EXE_kubebid"))
        .args(["audit", "keygen", "--out"])
        .arg(dir.join("key.pem"))
        .output()
        .unwrap();
    assert!(keygen.status.success(), "{keygen:?}");
    let (key, alerts) = (dir.join("key.pem"), dir.join("sink-alerts.jsonl"));
    common::spawn_audit_sink(
        dir,
        &[
            "--signing-key".as_ref(),
            key.as_os_str(),
            "--alerts".as_ref(),
            alerts.as_os_str(),
        ],
        &[],
    )
}

/// The kubelet-shaped cgroup directories, removed on drop (deepest first).
struct Cgroups(Vec<PathBuf>);

impl Drop for Cgroups {
    fn drop(&mut self) {
        for d in self.0.iter().rev() {
            let _ = std::fs::remove_dir(d);
        }
    }
}

#[test]
fn escapes_and_escalations_in_a_tenant_pod_raise_alerts_naming_it() {
    let Some(root) = cgroup2_root() else {
        println!("SKIPPED: no cgroup v2 hierarchy is mounted");
        return;
    };
    let u = UID.replace('-', "_");
    let mut dirs = Vec::new();
    let mut at = root.clone();
    for seg in [
        "kubepods.slice".to_owned(),
        "kubepods-besteffort.slice".to_owned(),
        format!("kubepods-besteffort-pod{u}.slice"),
        format!("cri-containerd-{ID}.scope"),
    ] {
        at = at.join(seg);
        if !at.exists() {
            if let Err(e) = std::fs::create_dir(&at) {
                println!("SKIPPED: cannot create cgroups here ({e})");
                return;
            }
            dirs.push(at.clone());
        }
    }
    let leaf = at.clone();
    let _cgroups = Cgroups(dirs);
    let dir = std::env::temp_dir().join(format!("kubebid-sensor-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("tenants.yaml"),
        "apiVersion: kubebid.io/v1alpha1\nkind: Tenant\nmetadata: {name: acme}\nspec: {namespaces: [acme-prod]}\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("pods.json"),
        serde_json::json!({"apiVersion": "v1", "kind": "List", "items": [{
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "web-0", "namespace": "acme-prod", "uid": UID},
            "status": {"containerStatuses": [{"name": "app", "containerID": format!("containerd://{ID}")}]}
        }]})
        .to_string(),
    )
    .unwrap();
    let alerts = dir.join("alerts.jsonl");
    let (hook, posted) = webhook();
    let (mut sink, sink_addr) = audit_sink(&dir);
    let mut sensor = Command::new(env!("CARGO_BIN_EXE_kubebid"))
        .args(["serve", "sensor", "-c"])
        .arg(dir.join("tenants.yaml"))
        .arg("--pods")
        .arg(dir.join("pods.json"))
        .arg("--alerts")
        .arg(&alerts)
        .arg("--alert-webhook")
        .arg(format!("http://{hook}/"))
        .arg("--audit-sink")
        .arg(format!("http://{sink_addr}/events"))
        .args([
            "--duration",
            "60",
            "--syscall-rules",
            "--metrics-listen",
            "127.0.0.1:0",
        ])
        .env("KUBEBID_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(sensor.stderr.take().unwrap()).lines();
    let metrics: std::net::SocketAddr = loop {
        let Some(Ok(line)) = lines.next() else {
            let _ = sensor.wait();
            println!("SKIPPED: the sensor did not start here (BPF refused?)");
            return;
        };
        if line.contains("sensor running") {
            let v: serde_json::Value = serde_json::from_str(&line).unwrap();
            break v["fields"]["metrics"].as_str().unwrap().parse().unwrap();
        }
        if line.contains("kubebid serve sensor:") {
            let _ = sensor.wait();
            // Only a kernel or build that cannot run the sensor skips; anything else fails.
            assert!(
                line.contains("cannot run the sensor here") || line.contains("no BPF programs"),
                "{line}"
            );
            println!("SKIPPED: {line}");
            return;
        }
    };
    std::thread::spawn(move || for _ in lines {});

    // Inside the pod's container cgroup.
    let mnt = dir.join("proc-here");
    let script = format!(
        "echo $$ > {procs} && unshare --uts true; \
         setpriv --reuid=65534 --regid=65534 --clear-groups su -c true root </dev/null >/dev/null 2>&1; \
         unshare -m sh -c 'mkdir -p {mnt} && mount -t proc proc {mnt} && umount {mnt}'; \
         cat /etc/shadow >/dev/null; (cd /etc && cat ./shadow >/dev/null); cat //etc/./shadow >/dev/null; \
         cat /proc/self/root/etc/shadow >/dev/null; cat /etc/hostname >/dev/null",
        procs = leaf.join("cgroup.procs").display(),
        mnt = mnt.display()
    );
    let st = Command::new("sh").args(["-c", &script]).status().unwrap();
    assert!(st.success(), "the workload ran");
    // On the node, outside any pod: the same namespace tool.
    assert!(
        Command::new("unshare")
            .args(["--uts", "true"])
            .status()
            .unwrap()
            .success()
    );

    let want = [
        "KubeBid Namespace Tool in Container",
        "KubeBid Privilege Escalation Tool",
        "KubeBid Proc Mount in Container",
        "KubeBid Proc Mounted in Container",
        "KubeBid Namespace Change in Container",
        "KubeBid Sensitive File Opened in Container",
    ];
    let spellings = [
        "cat /etc/shadow",
        "cat ./shadow",
        "cat //etc/./shadow",
        "cat /proc/self/root/etc/shadow",
    ];
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut found: Vec<serde_json::Value> = Vec::new();
    while Instant::now() < deadline {
        found = std::fs::read_to_string(&alerts)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect();
        let opened = |c: &str| {
            found.iter().any(|a| {
                a["output_fields"]["proc.cmdline"] == c
                    && a["rule"] == "KubeBid Sensitive File Opened in Container"
            })
        };
        if want.iter().all(|w| found.iter().any(|a| a["rule"] == *w))
            && spellings.iter().all(|c| opened(c))
        {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    // Counted on /metrics: the alerts by rule, and nothing lost.
    let page = {
        use std::io::{Read as _, Write as _};
        let mut s = std::net::TcpStream::connect(metrics).unwrap();
        write!(
            s,
            "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    };
    assert!(
        page.contains(r#"kubebid_sensor_alerts_total{rule="KubeBid Privilege Escalation Tool"}"#),
        "{page}"
    );
    assert!(page.contains("kubebid_sensor_lost_events 0"), "{page}");
    let _ = Command::new("kill").arg(sensor.id().to_string()).status();
    let _ = sensor.wait();
    for w in want {
        let a = found
            .iter()
            .find(|a| a["rule"] == w)
            .unwrap_or_else(|| panic!("no {w} alert in {found:#?}"));
        let f = &a["output_fields"];
        assert_eq!(f["kubebid.tenant"], "acme", "{a}");
        assert_eq!(f["k8s.ns.name"], "acme-prod", "{a}");
        assert_eq!(f["k8s.pod.name"], "web-0", "{a}");
        assert_eq!(f["container.id"], &ID[..12], "{a}");
        assert!(a["output"].as_str().unwrap().contains("tenant=acme"), "{a}");
    }
    // However the path was spelled, the file is /etc/shadow; the unwatched file raised nothing.
    let opens: Vec<&serde_json::Value> = found
        .iter()
        .filter(|a| a["rule"] == "KubeBid Sensitive File Opened in Container")
        .collect();
    for c in spellings {
        let a = opens
            .iter()
            .find(|a| a["output_fields"]["proc.cmdline"] == c)
            .unwrap_or_else(|| panic!("no open alert for {c:?} in {opens:#?}"));
        assert_eq!(a["output_fields"]["fd.name"], "/etc/shadow", "{a}");
        assert_eq!(a["output_fields"]["evt.is_open_write"], "false", "{a}");
    }
    assert!(
        opens
            .iter()
            .all(|a| a["output_fields"]["fd.name"] != "/etc/hostname"),
        "{opens:#?}"
    );
    let esc = found
        .iter()
        .find(|a| a["rule"] == "KubeBid Privilege Escalation Tool")
        .unwrap();
    assert_eq!(esc["output_fields"]["user.uid"], "65534", "{esc}");
    // Every namespace tool alert is the pod's: the node's own unshare raised none.
    assert!(
        found
            .iter()
            .filter(|a| a["rule"] == "KubeBid Namespace Tool in Container")
            .all(|a| a["output_fields"]["k8s.pod.name"] == "web-0")
    );

    // The webhook got every alert as Falco's JSON.
    let hooked: Vec<serde_json::Value> = posted
        .lock()
        .unwrap()
        .iter()
        .map(|b| serde_json::from_str(b).unwrap())
        .collect();
    for w in want {
        assert!(hooked.iter().any(|a| a["rule"] == w), "{w} not posted");
    }
    // The sink filed them in acme's trail, about the pod, under the sensor's name.
    let _ = sink.kill();
    let _ = sink.wait();
    let trail = common::trail(&dir, "acme");
    for w in want {
        let e = trail
            .iter()
            .find(|e| e["annotations"]["kubebid.io/rule"] == w)
            .unwrap_or_else(|| panic!("{w} not in acme's trail: {trail:#?}"));
        assert_eq!(e["verb"], "runtime-alert");
        assert_eq!(e["objectRef"]["namespace"], "acme-prod");
        assert_eq!(e["objectRef"]["name"], "web-0");
        assert!(
            e["user"]["username"]
                .as_str()
                .unwrap()
                .starts_with("system:kubebid:sensor:")
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
