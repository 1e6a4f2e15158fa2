//! `kubebid verify` from the command line: without a cluster it says so and exits 2 (never a pass); with
//! `KUBECONFIG` set it runs the control-plane probes against that cluster, and says visibly that it
//! skipped otherwise. (The probes' requests and verdicts are tested at the kube client's HTTP boundary in
//! kubebid-verify.)

// Test fixtures fail the test loudly.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::process::Command;

#[test]
fn without_a_cluster_there_is_no_proof() {
    let empty =
        std::env::temp_dir().join(format!("kubebid-verify-kubeconfig-{}", std::process::id()));
    std::fs::write(&empty, "apiVersion: v1\nkind: Config\nclusters: []\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_kubebid"))
        .args(["verify", "--kubeconfig"])
        .arg(&empty)
        .output()
        .unwrap();
    let _ = std::fs::remove_file(&empty);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("kubebid verify:"));
    assert!(out.stdout.is_empty());
}

#[test]
fn on_a_real_cluster_every_probe_has_a_verdict() {
    let Some(kubeconfig) = std::env::var_os("KUBECONFIG") else {
        println!("SKIPPED: KUBECONFIG is not set; no cluster to verify");
        return;
    };
    let out = Command::new(env!("CARGO_BIN_EXE_kubebid"))
        .args(["verify", "-o", "json", "--kubeconfig"])
        .arg(kubeconfig)
        .output()
        .unwrap();
    assert!(
        matches!(out.status.code(), Some(0 | 1)),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        assert!(v["result"] == "pass" || v["result"] == "fail", "{v}");
        assert!(v["controls"].as_array().is_some_and(|c| !c.is_empty()));
    }
}
