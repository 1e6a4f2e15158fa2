#![allow(dead_code)] // each test crate uses part of the fixture
//! A fixture node: the files the agent reads, laid out under a temporary root as on a real node with
//! every feature (KVM is the machine's own: the fixture's `/dev/kvm` links to it).

use std::path::{Path, PathBuf};

pub const CONTAINERD: &str = r#"version = 2
[plugins."io.containerd.grpc.v1.cri".containerd]
  default_runtime_name = "runc"
[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"
[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.kata-fc]
  runtime_type = "io.containerd.kata-fc.v2"
  [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.kata-fc.options]
    ConfigPath = "/opt/kata/share/defaults/kata-containers/configuration-fc.toml"
[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.kata-qemu-snp]
  runtime_type = "io.containerd.kata-qemu-snp.v2"
"#;

pub const KATA_FC: &str = r#"[hypervisor.firecracker]
path = "/opt/kata/bin/firecracker"
kernel = "/opt/kata/share/kata-containers/vmlinux.container"
image = "/opt/kata/share/kata-containers/kata-containers.img"
jailer_path = "/opt/kata/bin/jailer"
valid_jailer_paths = ["/opt/kata/bin/jailer"]
default_vcpus = 1

[runtime]
disable_guest_seccomp = false
"#;

pub const KUBELET: &str = "apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
cgroupDriver: systemd
cpuManagerPolicy: static
cpuManagerPolicyOptions:
  full-pcpus-only: \"true\"
topologyManagerPolicy: single-numa-node
reservedSystemCPUs: \"0\"
";

pub struct Node {
    pub root: PathBuf,
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

impl Node {
    /// Writes `text` at the node's `abs`.
    pub fn put(&self, abs: &str, text: &str) {
        let p = self.root.join(abs.trim_start_matches('/'));
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }

    pub fn remove(&self, abs: &str) {
        let p = self.root.join(abs.trim_start_matches('/'));
        let _ = std::fs::remove_file(&p).or_else(|_| std::fs::remove_dir_all(&p));
    }

    pub fn path(&self, abs: &str) -> PathBuf {
        self.root.join(abs.trim_start_matches('/'))
    }
}

/// A node with KVM, Kata for Firecracker, containerd's handlers, the static CPU manager, SEV-SNP and L3
/// cache allocation (12 ways, 16 classes, memory bandwidth allocation).
pub fn full_node(name: &str) -> Node {
    let root = std::env::temp_dir().join(format!("kubebid-node-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(root.join("dev")).unwrap();
    let node = Node { root };
    std::os::unix::fs::symlink("/dev/kvm", node.path("/dev/kvm")).unwrap();
    node.put("/dev/sev", "");
    node.put("/etc/containerd/config.toml", CONTAINERD);
    node.put(
        "/opt/kata/share/defaults/kata-containers/configuration-fc.toml",
        KATA_FC,
    );
    node.put("/opt/kata/bin/firecracker", "");
    node.put("/opt/kata/bin/jailer", "");
    node.put("/var/lib/kubelet/config.yaml", KUBELET);
    for p in ["sev", "sev_es", "sev_snp"] {
        node.put(&format!("/sys/module/kvm_amd/parameters/{p}"), "Y\n");
    }
    node.put(
        "/proc/cpuinfo",
        "processor\t: 0\nvendor_id\t: AuthenticAMD\nflags\t\t: fpu vme sse2 svm sev sev_es sev_snp\n\nprocessor\t: 1\n",
    );
    node.put(
        "/proc/mounts",
        "sysfs /sys sysfs rw 0 0\nresctrl /sys/fs/resctrl resctrl rw,relatime 0 0\n",
    );
    node.put("/sys/fs/resctrl/info/L3/num_closids", "16\n");
    node.put("/sys/fs/resctrl/info/L3/cbm_mask", "fff\n");
    node.put("/sys/fs/resctrl/info/L3/min_cbm_bits", "1\n");
    node.put("/sys/fs/resctrl/info/MB/min_bandwidth", "10\n");
    node.put(
        "/sys/fs/resctrl/schemata",
        "L3:0=fff;1=fff\nMB:0=100;1=100\n",
    );
    node.put("/sys/fs/resctrl/tasks", "1\n2\n");
    node
}

/// Whether this machine has a usable `/dev/kvm` (the fixture's links to it).
pub fn have_kvm() -> bool {
    Path::new("/dev/kvm").exists()
}
