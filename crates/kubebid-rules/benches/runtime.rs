//! `syscall` rule evaluation throughput: Falco's upstream `falco_rules.yaml` plus both tiers of KubeBid's
//! runtime rules, over a mix of sensor events (execs of shells, package managers, sudo and nsenter inside
//! and outside tenant containers, mounts, setns, ptrace, opens of sensitive files). The figure is events
//! per second on one core through every evaluable rule (goal: at least 1,000,000/s). The last line printed
//! is the summary.
//!
//! `cargo bench -p kubebid-rules --bench runtime`

// A benchmark with a broken fixture should stop loudly.
#![allow(clippy::expect_used)]

use std::hint::black_box;
use std::time::Instant;

use criterion::{Criterion, Throughput, criterion_group};
use kubebid_rules::{
    ContainerInfo, Engine, FdInfo, Loader, PodInfo, ProcessInfo, Scratch, Syscall, SyscallEvent,
};

const UPSTREAM: &str = include_str!("../tests/data/falco_rules.yaml");

fn engine() -> Engine<Syscall> {
    let mut l = Loader::new();
    l.add("falco_rules.yaml", UPSTREAM)
        .expect("upstream rules load");
    l.add(
        kubebid_rules::KUBEBID_RUNTIME_RULES_FILE,
        kubebid_rules::kubebid_runtime_rules(),
    )
    .expect("KubeBid rules load");
    l.add(
        kubebid_rules::KUBEBID_RUNTIME_SYSCALL_RULES_FILE,
        kubebid_rules::kubebid_runtime_syscall_rules(),
    )
    .expect("KubeBid system call tier loads");
    Engine::compile(&l.finish().expect("parse"), Syscall::new()).expect("compiles")
}

fn process(pid: i64, name: &str, argv: &[&str], uid: u32) -> ProcessInfo {
    ProcessInfo {
        pid,
        ppid: pid - 1,
        name: name.into(),
        exepath: format!("/usr/bin/{name}"),
        argv: argv.iter().map(|a| (*a).to_owned()).collect(),
        uid,
        gid: uid,
        loginuid: -1,
        user: if uid == 0 {
            "root".into()
        } else {
            "app".into()
        },
        ..ProcessInfo::default()
    }
}

struct World {
    procs: Vec<ProcessInfo>,
    parent: ProcessInfo,
    container: ContainerInfo,
    pod: PodInfo,
    fd: FdInfo,
    mount_args: Vec<(String, String)>,
    ptrace_args: Vec<(String, String)>,
}

fn world() -> World {
    World {
        procs: vec![
            process(10, "bash", &["bash", "-c", "ls"], 1000),
            process(11, "apt-get", &["apt-get", "install", "curl"], 0),
            process(12, "sudo", &["sudo", "-i"], 1000),
            process(13, "nsenter", &["nsenter", "-t", "1", "-m"], 0),
            process(14, "python3", &["python3", "app.py"], 1000),
            process(15, "mount", &["mount", "-t", "proc", "proc", "/mnt"], 0),
            process(16, "cat", &["cat", "/etc/shadow"], 0),
            process(17, "nginx", &["nginx", "-g", "daemon off;"], 101),
        ],
        parent: process(9, "containerd-shim", &["containerd-shim"], 0),
        container: ContainerInfo {
            id: "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef".into(),
            name: "app".into(),
            image_repository: "ghcr.io/acme/app".into(),
            privileged: Some(false),
        },
        pod: PodInfo {
            namespace: "acme-prod".into(),
            name: "web-0".into(),
            uid: "6f1c".into(),
            tenant: "acme".into(),
        },
        fd: FdInfo {
            num: 3,
            name: "/etc/shadow".into(),
            typechar: 'f',
        },
        mount_args: vec![("type".into(), "proc".into()), ("flags".into(), "0".into())],
        ptrace_args: vec![("request".into(), "PTRACE_ATTACH".into())],
    }
}

fn events<'w>(w: &'w World, anc: &'w [&'w ProcessInfo]) -> Vec<SyscallEvent<'w>> {
    let mut out = Vec::new();
    for (i, p) in w.procs.iter().enumerate() {
        let in_container = i % 3 != 2;
        let base = SyscallEvent {
            time_ns: 1_764_400_000_000_000_000,
            num: u64::try_from(i).unwrap_or(0),
            evt_type: "execve",
            res: 0,
            args: &[],
            open_flags: None,
            process: p,
            ancestors: anc,
            fd: None,
            container: in_container.then_some(&w.container),
            pod: in_container.then_some(&w.pod),
            hostname: "node-1",
        };
        out.push(base);
        out.push(SyscallEvent {
            evt_type: "openat",
            fd: Some(&w.fd),
            open_flags: Some(0),
            ..base
        });
        out.push(SyscallEvent {
            evt_type: "mount",
            args: &w.mount_args,
            ..base
        });
        out.push(SyscallEvent {
            evt_type: "ptrace",
            args: &w.ptrace_args,
            ..base
        });
        out.push(SyscallEvent {
            evt_type: "setns",
            ..base
        });
    }
    out
}

fn bench(c: &mut Criterion) {
    let engine = engine();
    let w = world();
    let anc = [&w.parent];
    let evs = events(&w, &anc);
    let mut g = c.benchmark_group("runtime");
    g.throughput(Throughput::Elements(evs.len() as u64));
    g.bench_function("falco_rules + KubeBid, matches", |b| {
        let mut scratch = Scratch::new();
        b.iter(|| {
            let mut n = 0;
            for e in &evs {
                n += engine.matches(black_box(e), &mut scratch).len();
            }
            black_box(n)
        });
    });
    g.finish();
    // The summary: events per second through every evaluable rule, alerts formatted for those that match.
    let mut scratch = Scratch::new();
    let rounds = 20_000;
    let started = Instant::now();
    let mut alerts = 0;
    for _ in 0..rounds {
        for e in &evs {
            alerts += engine.matches(e, &mut scratch).len();
        }
    }
    let secs = started.elapsed().as_secs_f64();
    let n = (rounds * evs.len()) as f64;
    println!(
        "summary: {:.0} events/s on one core through {} evaluable syscall rules ({} events, {} matches per round)",
        n / secs,
        engine.report().evaluable_count(),
        evs.len(),
        alerts / rounds
    );
}

criterion_group!(benches, bench);

fn main() {
    benches();
}
