//! What several of these tests share: a SoftHSM2 token of their own, and an audit sink on loopback.

#![allow(dead_code)] // each test crate uses part of it

use std::path::{Path, PathBuf};
use std::process::Command;

/// Initialises a SoftHSM2 token labelled `kubebid` (user PIN 1234) whose files live in `dir/tokens`;
/// returns its configuration file, for `SOFTHSM2_CONF`. scripts/test installs softhsm2.
pub fn softhsm_token(dir: &Path) -> PathBuf {
    std::fs::create_dir_all(dir.join("tokens")).unwrap();
    let conf = dir.join("softhsm2.conf");
    std::fs::write(
        &conf,
        format!(
            "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
            dir.join("tokens").display()
        ),
    )
    .unwrap();
    let out = Command::new("softhsm2-util")
        .args([
            "--init-token",
            "--free",
            "--label",
            "kubebid",
            "--pin",
            "1234",
            "--so-pin",
            "5678",
        ])
        .env("SOFTHSM2_CONF", &conf)
        .output()
        .expect("softhsm2-util is installed (scripts/test installs softhsm2)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    conf
}

/// Runs `kubebid serve audit` on `dir/data` with the tenants of `dir/tenants.yaml`, `extra` arguments and
/// `env`, until it says where it listens; its log is drained so it never blocks on a full pipe.
pub fn spawn_audit_sink(
    dir: &Path,
    extra: &[&std::ffi::OsStr],
    env: &[(&str, &std::ffi::OsStr)],
) -> (std::process::Child, std::net::SocketAddr) {
    use std::io::BufRead as _;
    let mut child = Command::new(env!("CARGO_BIN_EXE_kubebid"))
        .args(["serve", "audit", "--listen", "127.0.0.1:0", "--data"])
        .arg(dir.join("data"))
        .arg("-c")
        .arg(dir.join("tenants.yaml"))
        .args(extra)
        .envs(env.iter().copied())
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let mut lines = std::io::BufReader::new(stderr).lines();
    let addr = loop {
        let line = lines
            .next()
            .expect("the sink says where it listens")
            .unwrap();
        if line.contains("audit sink serving") {
            let v: serde_json::Value = serde_json::from_str(&line).unwrap();
            break v["fields"]["listen"].as_str().unwrap().parse().unwrap();
        }
    };
    std::thread::spawn(move || for _ in lines {});
    (child, addr)
}

/// A tenant's trail as `kubebid audit query DIR/data --tenant T -o json` prints it, one event each.
pub fn trail(dir: &Path, tenant: &str) -> Vec<serde_json::Value> {
    let out = Command::new(env!("CARGO_BIN_EXE_kubebid"))
        .args(["audit", "query"])
        .arg(dir.join("data"))
        .args(["--tenant", tenant, "-o", "json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}
