//! Compiles the sensor's BPF programs (`bpf/sensor.bpf.c`) with clang for the BPF target, CO-RE. Without
//! clang the crate builds with an empty object and the sensor says at start that it was built without
//! its BPF programs (`scripts/test` installs clang, libbpf-dev and bpftool).

use std::path::PathBuf;
use std::process::Command;

fn main() {
    println!("cargo::rerun-if-changed=bpf/sensor.bpf.c");
    println!("cargo::rerun-if-env-changed=KUBEBID_CLANG");
    let out = PathBuf::from(std::env::var_os("OUT_DIR").unwrap_or_default()).join("sensor.bpf.o");
    let clang = std::env::var("KUBEBID_CLANG").unwrap_or_else(|_| "clang".to_owned());
    let built = Command::new(&clang)
        .args([
            "-O2",
            "-g",
            "-target",
            "bpf",
            "-D__TARGET_ARCH_x86",
            "-Wall",
            "-c",
            "bpf/sensor.bpf.c",
            "-o",
        ])
        .arg(&out)
        .status()
        .is_ok_and(|s| s.success());
    if !built {
        println!(
            "cargo::warning=clang (with libbpf-dev's headers) not found or failed: the sensor is built without its BPF programs"
        );
        let _ = std::fs::write(&out, b"");
    }
}
