//! `kubebid node check` and `kubebid serve node --offline` on a fixture node (the machine's own
//! `/dev/kvm`): the table and exit codes, and a tenant's pod placed in its cache partition as it starts.

// Test fixtures fail the test loudly.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

#[path = "../../kubebid-node/tests/common/mod.rs"]
mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn kubebid() -> Command {
    Command::new(env!("CARGO_BIN_EXE_kubebid"))
}

#[test]
fn node_check_prints_every_check_and_fails_on_a_broken_node() {
    if !common::have_kvm() {
        println!("SKIPPED: this machine has no /dev/kvm");
        return;
    }
    let node = common::full_node("cli-check");
    let out = kubebid()
        .args(["node", "check", "--host-root"])
        .arg(&node.root)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    for id in [
        "kvm",
        "containerd-kata-fc",
        "kata-firecracker",
        "cpu-manager",
        "memory-encryption",
        "cache-partitioning",
    ] {
        assert!(
            text.lines()
                .any(|l| l.starts_with(id) && l.contains("pass")),
            "{id}: {text}"
        );
    }
    assert!(
        text.contains("kubebid.io/memory-encryption: sev-snp"),
        "{text}"
    );
    node.put(
        "/var/lib/kubelet/config.yaml",
        &common::KUBELET.replace("cpuManagerPolicy: static", "cpuManagerPolicy: none"),
    );
    let out = kubebid()
        .args(["node", "check", "-o", "json", "--host-root"])
        .arg(&node.root)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["secureRuntime"], false);
    let cpu = v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == "cpu-manager")
        .unwrap();
    assert_eq!(cpu["result"], "fail");
    assert!(
        cpu["detail"]
            .as_str()
            .unwrap()
            .starts_with("/var/lib/kubelet/config.yaml:4:"),
        "{cpu}"
    );
    // Not required by flag: the node passes, the check still shows.
    let out = kubebid()
        .args(["node", "check", "--no-require-cpu-manager", "--host-root"])
        .arg(&node.root)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
}

#[test]
fn serve_node_places_a_tenants_pod_in_its_partition_as_it_starts() {
    if !common::have_kvm() {
        println!("SKIPPED: this machine has no /dev/kvm");
        return;
    }
    let node = common::full_node("cli-serve");
    let uid = "7a1b2c3d-4e5f-4a6b-8c7d-0123456789ab";
    let tenants = node.path("/tenants.yaml");
    node.put(
        "/tenants.yaml",
        "apiVersion: kubebid.io/v1alpha1\nkind: Tenant\nmetadata: {name: acme}\nspec:\n  namespaces: [acme-prod]\n  isolation: {cachePartition: {share: 25}}\n",
    );
    node.put(
        "/pods.json",
        r#"{"apiVersion": "v1", "kind": "List", "items": []}"#,
    );
    node.put("/sys/fs/cgroup/kubepods.slice/cgroup.procs", "");
    let mut agent = kubebid()
        .args([
            "serve",
            "node",
            "--offline",
            "--node",
            "node-1",
            "--metrics-listen",
            "127.0.0.1:0",
            "--duration",
            "30",
            "-c",
        ])
        .arg(&tenants)
        .arg("--host-root")
        .arg(&node.root)
        .arg("--pods")
        .arg(node.path("/pods.json"))
        .arg("--cgroup-root")
        .arg(node.path("/sys/fs/cgroup"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let group = node.path("/sys/fs/resctrl/kubebid-acme");
    let wait_for = |what: &str, f: &dyn Fn() -> bool| {
        let deadline = Instant::now() + Duration::from_secs(15);
        while !f() {
            assert!(Instant::now() < deadline, "{what}");
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    wait_for("acme's group is made", &|| group.join("mode").exists());
    assert_eq!(
        std::fs::read_to_string(group.join("schemata")).unwrap(),
        "L3:0=e00;1=e00\n"
    );
    // The pod starts: its cgroup appears and the pods file names it.
    node.put(
        &format!(
            "/sys/fs/cgroup/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{}.slice/cri-containerd-{}.scope/cgroup.threads",
            uid.replace('-', "_"),
            "b".repeat(64)
        ),
        "4242\n4243\n",
    );
    node.put(
        "/pods.json",
        &serde_json::json!({"apiVersion": "v1", "kind": "List", "items": [{"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "web-0", "namespace": "acme-prod", "uid": uid}}]})
        .to_string(),
    );
    wait_for("the pod's threads are placed", &|| {
        std::fs::read_to_string(group.join("tasks")).unwrap_or_default() == "4242\n4243\n"
    });
    let _ = agent.kill();
    let _ = agent.wait();
}
