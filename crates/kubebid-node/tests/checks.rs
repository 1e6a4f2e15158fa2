//! The checks on this machine's real `/dev/kvm` and on fixture nodes: every feature present, then each
//! broken the ways a node breaks, each failure naming the file and line or the thing missing.

// Test fixtures fail the test loudly.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

mod common;

use common::{CONTAINERD, KATA_FC, KUBELET, full_node, have_kvm};
use kubebid_node::checks::{Options, Status, Technology, attest, kvm};
use kubebid_node::host::Host;

fn opts(node: &common::Node) -> Options {
    Options::new(Host::new(&node.root))
}

fn status(a: &kubebid_node::checks::Attestation, id: &str) -> (Status, String) {
    let c = a.checks.iter().find(|c| c.id == id).unwrap();
    (c.status, c.detail.clone())
}

#[test]
fn kvm_passes_here_for_real_and_fails_without_the_device() {
    if have_kvm() {
        let d = kvm(&Host::new("/")).unwrap();
        assert!(
            d.contains("API version 12") && d.contains("a VM was created"),
            "{d}"
        );
    } else {
        println!("SKIPPED: this machine has no /dev/kvm");
    }
    let empty = std::env::temp_dir().join(format!("kubebid-node-empty-{}", std::process::id()));
    std::fs::create_dir_all(&empty).unwrap();
    let e = kvm(&Host::new(&empty)).unwrap_err();
    assert!(e.contains("/dev/kvm is missing"), "{e}");
    // A file where the device should be: opened, but it answers no ioctl.
    std::fs::create_dir_all(empty.join("dev")).unwrap();
    std::fs::write(empty.join("dev/kvm"), "").unwrap();
    assert!(kvm(&Host::new(&empty)).is_err());
    let _ = std::fs::remove_dir_all(&empty);
}

#[test]
fn a_node_with_every_feature_is_secure_with_snp_and_cache_allocation() {
    if !have_kvm() {
        println!("SKIPPED: this machine has no /dev/kvm");
        return;
    }
    let node = full_node("full");
    let a = attest(&opts(&node));
    assert!(a.secure_runtime(), "{:#?}", a.checks);
    assert_eq!(a.memory_encryption, Some(Technology::SevSnp));
    let cache = a.cache.clone().unwrap();
    assert_eq!(
        (cache.closids, cache.cbm_bits, cache.min_cbm_bits, cache.mba),
        (16, 12, 1, true)
    );
    assert_eq!(cache.mount, "/sys/fs/resctrl");
    let (_, kata) = status(&a, "kata-firecracker");
    assert!(
        kata.contains("jailer /opt/kata/bin/jailer") && kata.contains("guest seccomp on"),
        "{kata}"
    );
}

#[test]
fn broken_configuration_fails_with_file_and_line() {
    let node = full_node("broken");
    let kata = "/opt/kata/share/defaults/kata-containers/configuration-fc.toml";
    let cases: Vec<(&str, &str, String, &str, &str)> = vec![
        // (check, file, text, expected in detail, what)
        (
            "kata-firecracker",
            kata,
            KATA_FC.replace("default_vcpus = 1", "default_vcpus = = 1"),
            "configuration-fc.toml:7:",
            "a TOML syntax error",
        ),
        (
            "kata-firecracker",
            kata,
            KATA_FC.replace(
                "jailer_path = \"/opt/kata/bin/jailer\"",
                "jailer_path = \"\"",
            ),
            "configuration-fc.toml:5: jailer_path is not set",
            "no jailer",
        ),
        (
            "kata-firecracker",
            kata,
            KATA_FC.replace(
                "default_vcpus = 1",
                "default_vcpus = 1\ndisable_seccomp = true",
            ),
            "configuration-fc.toml:8: disable_seccomp = true",
            "the VMM's seccomp off",
        ),
        (
            "kata-firecracker",
            kata,
            KATA_FC.replace("[hypervisor.firecracker]", "[hypervisor.qemu]"),
            "no [hypervisor.firecracker] section",
            "another hypervisor",
        ),
        (
            "containerd-kata-fc",
            "/etc/containerd/config.toml",
            CONTAINERD
                .replace("runtimes.kata-fc]", "runtimes.kata-qemu]")
                .replace("runtimes.kata-fc.options]", "runtimes.kata-qemu.options]"),
            "no runtime handler kata-fc",
            "no handler",
        ),
        (
            "containerd-kata-fc",
            "/etc/containerd/config.toml",
            CONTAINERD.replace("version = 2", "version = 2\n[plugins"),
            "/etc/containerd/config.toml:2:",
            "a TOML syntax error",
        ),
        (
            "cpu-manager",
            "/var/lib/kubelet/config.yaml",
            KUBELET.replace("cpuManagerPolicy: static", "cpuManagerPolicy: none"),
            "config.yaml:4: cpuManagerPolicy is \"none\"",
            "no static policy",
        ),
        (
            "cpu-manager",
            "/var/lib/kubelet/config.yaml",
            KUBELET.replace(
                "  full-pcpus-only: \"true\"\n",
                "  full-pcpus-only: \"false\"\n",
            ),
            "config.yaml:6: cpuManagerPolicyOptions has no full-pcpus-only",
            "half cores",
        ),
        (
            "cpu-manager",
            "/var/lib/kubelet/config.yaml",
            KUBELET.replace("topologyManagerPolicy: single-numa-node\n", ""),
            "topologyManagerPolicy is \"none\"",
            "no topology manager",
        ),
        (
            "cpu-manager",
            "/var/lib/kubelet/config.yaml",
            KUBELET.replace("cgroupDriver: systemd", "cgroupDriver: [systemd"),
            "config.yaml:4: invalid YAML",
            "a YAML syntax error",
        ),
    ];
    for (check, file, text, want, what) in cases {
        node.put(file, &text);
        let a = attest(&opts(&node));
        let (s, detail) = status(&a, check);
        assert_eq!(s, Status::Fail, "{what}: {detail}");
        assert!(detail.contains(want), "{what}: {detail:?} lacks {want:?}");
        assert!(!a.secure_runtime(), "{what}: never labelled on a guess");
        // Restore.
        node.put(
            file,
            match file {
                f if f == kata => KATA_FC,
                "/etc/containerd/config.toml" => CONTAINERD,
                _ => KUBELET,
            },
        );
    }
    node.remove("/opt/kata/bin/jailer");
    let (s, d) = status(&attest(&opts(&node)), "kata-firecracker");
    assert_eq!(s, Status::Fail);
    assert!(
        d.contains("the jailer /opt/kata/bin/jailer is missing"),
        "{d}"
    );
}

#[test]
fn containerd_2_layout_and_imported_files_register_handlers() {
    let node = full_node("imports");
    node.put(
        "/etc/containerd/config.toml",
        "version = 3\nimports = ['/etc/containerd/conf.d/*.toml']\n",
    );
    node.put(
        "/etc/containerd/conf.d/kata.toml",
        "[plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.kata-fc]\n  runtime_type = 'io.containerd.kata-fc.v2'\n",
    );
    let (s, d) = status(&attest(&opts(&node)), "containerd-kata-fc");
    assert_eq!(s, Status::Pass, "{d}");
    // Without the ConfigPath option Kata's configuration is found in its default places.
    let (s, d) = status(&attest(&opts(&node)), "kata-firecracker");
    assert_eq!(s, Status::Pass, "{d}");
    // A runtime without its type is a broken file.
    node.put(
        "/etc/containerd/conf.d/kata.toml",
        "[plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.kata-fc]\n  pod_annotations = []\n",
    );
    let (s, d) = status(&attest(&opts(&node)), "containerd-kata-fc");
    assert_eq!(s, Status::Fail);
    assert!(
        d.contains("conf.d/kata.toml:1: runtime kata-fc has no runtime_type"),
        "{d}"
    );
}

#[test]
fn memory_encryption_and_cache_allocation_are_told_apart() {
    let node = full_node("enc");
    // SNP on, but no confidential handler: a failure, not a label.
    node.put(
        "/etc/containerd/config.toml",
        &CONTAINERD.replace("kata-qemu-snp", "kata-qemu"),
    );
    let a = attest(&opts(&node));
    assert_eq!(a.memory_encryption, None);
    let (s, d) = status(&a, "memory-encryption");
    assert_eq!(s, Status::Fail);
    assert!(d.contains("no runtime handler kata-qemu-snp"), "{d}");
    // SNP enabled in the module but no /dev/sev.
    node.put("/etc/containerd/config.toml", CONTAINERD);
    node.remove("/dev/sev");
    let (s, d) = status(&attest(&opts(&node)), "memory-encryption");
    assert_eq!(s, Status::Fail);
    assert!(d.contains("/dev/sev"), "{d}");
    // TDX instead.
    for p in ["sev", "sev_es", "sev_snp"] {
        node.put(&format!("/sys/module/kvm_amd/parameters/{p}"), "N\n");
    }
    node.put("/sys/module/kvm_intel/parameters/tdx", "Y\n");
    node.put("/sys/firmware/tdx/tdx_module/status", "initialized\n");
    node.put(
        "/proc/cpuinfo",
        "processor\t: 0\nflags\t\t: fpu vmx tdx_host_platform\n",
    );
    node.put(
        "/etc/containerd/config.toml",
        &CONTAINERD.replace("kata-qemu-snp", "kata-qemu-tdx"),
    );
    let a = attest(&opts(&node));
    assert_eq!(
        a.memory_encryption,
        Some(Technology::Tdx),
        "{:#?}",
        a.checks
    );
    // Neither: absent, which is not a failure of the node.
    node.put("/sys/module/kvm_intel/parameters/tdx", "N\n");
    let (s, _) = status(&attest(&opts(&node)), "memory-encryption");
    assert_eq!(s, Status::Absent);
    // No resctrl mount: absent; a mangled mask: a failure.
    node.put("/proc/mounts", "sysfs /sys sysfs rw 0 0\n");
    let a = attest(&opts(&node));
    assert_eq!(status(&a, "cache-partitioning").0, Status::Absent);
    assert!(a.cache.is_none());
    node.put("/proc/mounts", "resctrl /sys/fs/resctrl resctrl rw 0 0\n");
    node.put("/sys/fs/resctrl/info/L3/cbm_mask", "f0f\n");
    assert_eq!(
        status(&attest(&opts(&node)), "cache-partitioning").0,
        Status::Fail
    );
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]
    /// Whatever the node's files hold, the checks answer, never panic, and never pass what is broken.
    #[test]
    fn any_file_contents_are_answered(
        which in 0usize..7,
        text in "(?s).{0,400}",
    ) {
        let node = full_node(&format!("prop{which}"));
        let file = [
            "/etc/containerd/config.toml",
            "/opt/kata/share/defaults/kata-containers/configuration-fc.toml",
            "/var/lib/kubelet/config.yaml",
            "/proc/cpuinfo",
            "/proc/mounts",
            "/sys/fs/resctrl/info/L3/cbm_mask",
            "/sys/module/kvm_amd/parameters/sev_snp",
        ][which];
        node.put(file, &text);
        let a = attest(&opts(&node));
        proptest::prop_assert_eq!(a.checks.len(), 6);
        for c in &a.checks {
            proptest::prop_assert!(!c.detail.is_empty());
        }
    }
}
