//! The `syscall` source: Falco's upstream `falco_rules.yaml` loads and each rule is evaluable or says which
//! field it lacks; KubeBid's runtime rules fire on the escalations and escapes they describe, with the
//! tenant in the output, and stay quiet on the same calls where they are harmless.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use kubebid_rules::{
    ContainerInfo, Engine, FdInfo, Loader, PodInfo, ProcessInfo, RuleStatus, Scratch, Syscall,
    SyscallEvent,
};

const UPSTREAM: &str = include_str!("data/falco_rules.yaml");

fn rules() -> Engine<Syscall> {
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
    .expect("KubeBid's system call tier loads");
    Engine::compile(&l.finish().expect("conditions parse"), Syscall::new()).expect("compiles")
}

fn proc(pid: i64, name: &str, exepath: &str, argv: &[&str], uid: u32) -> ProcessInfo {
    ProcessInfo {
        pid,
        ppid: pid - 1,
        name: name.into(),
        exepath: exepath.into(),
        argv: argv.iter().map(|a| (*a).to_owned()).collect(),
        uid,
        gid: uid,
        loginuid: -1,
        user: if uid == 0 {
            "root".into()
        } else {
            format!("u{uid}")
        },
        group: String::new(),
        ..ProcessInfo::default()
    }
}

struct World {
    container: ContainerInfo,
    pod: PodInfo,
    shell: ProcessInfo,
}

fn world() -> World {
    World {
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
        shell: proc(10, "bash", "/usr/bin/bash", &["bash"], 1000),
    }
}

fn fired(engine: &Engine<Syscall>, e: &SyscallEvent<'_>) -> Vec<(String, String)> {
    engine
        .alerts(e, &mut Scratch::new())
        .into_iter()
        .map(|a| (a.rule.clone(), a.message))
        .collect()
}

fn event<'e>(
    w: &'e World,
    evt_type: &'e str,
    p: &'e ProcessInfo,
    ancestors: &'e [&'e ProcessInfo],
    args: &'e [(String, String)],
    in_container: bool,
) -> SyscallEvent<'e> {
    SyscallEvent {
        time_ns: 1_764_400_000_000_000_000,
        num: 1,
        evt_type,
        res: 0,
        args,
        open_flags: None,
        process: p,
        ancestors,
        fd: None,
        container: in_container.then_some(&w.container),
        pod: in_container.then_some(&w.pod),
        hostname: "node-1",
    }
}

#[test]
fn upstream_rules_load_and_each_is_evaluable_or_names_what_it_lacks() {
    let engine = rules();
    let report = engine.report();
    let upstream: Vec<_> = report
        .rules
        .iter()
        .filter(|r| r.source == "syscall" && !r.name.starts_with("KubeBid"))
        .collect();
    assert!(upstream.len() >= 20, "{} upstream rules", upstream.len());
    let evaluable = upstream
        .iter()
        .filter(|r| r.status == RuleStatus::Evaluable)
        .count();
    // Most of the stable rules use process, user, container and file fields the sensor supplies.
    assert!(evaluable * 2 > upstream.len(), "{report}");
    // The rest name a field this source does not capture.
    let text = report.to_string();
    for r in upstream
        .iter()
        .filter(|r| r.status != RuleStatus::Evaluable)
    {
        assert!(text.contains(&r.name), "{text}");
    }
    assert!(
        text.contains("fd.sip") || text.contains("fd.l") || text.contains("proc.is_exe"),
        "{text}"
    );
    // Every KubeBid rule is evaluable.
    assert!(
        report
            .rules
            .iter()
            .filter(|r| r.name.starts_with("KubeBid"))
            .all(|r| r.status == RuleStatus::Evaluable),
        "{report}"
    );
}

#[test]
fn sudo_su_and_doas_by_a_non_root_user_are_escalations_with_the_tenant() {
    let engine = rules();
    let w = world();
    for tool in ["sudo", "su", "doas"] {
        let p = proc(11, tool, &format!("/usr/bin/{tool}"), &[tool, "-i"], 1000);
        let anc = [&w.shell];
        let got = fired(&engine, &event(&w, "execve", &p, &anc, &[], true));
        let (_, msg) = got
            .iter()
            .find(|(r, _)| r == "KubeBid Privilege Escalation Tool")
            .unwrap_or_else(|| panic!("{tool}: {got:?}"));
        assert!(
            msg.contains("tenant=acme")
                && msg.contains("pod=web-0")
                && msg.contains("ns=acme-prod"),
            "{msg}"
        );
        assert!(
            msg.contains("uid=1000") && msg.contains(&format!("command={tool} -i")),
            "{msg}"
        );
        // Root running the same tool is not an escalation.
        let root = proc(11, tool, &format!("/usr/bin/{tool}"), &[tool], 0);
        let got = fired(&engine, &event(&w, "execve", &root, &anc, &[], true));
        assert!(
            !got.iter()
                .any(|(r, _)| r == "KubeBid Privilege Escalation Tool"),
            "{got:?}"
        );
    }
}

#[test]
fn nsenter_unshare_and_a_proc_mount_in_a_container_are_escapes_and_not_on_the_node() {
    let engine = rules();
    let w = world();
    let anc = [&w.shell];
    for tool in ["nsenter", "unshare"] {
        let p = proc(
            12,
            tool,
            &format!("/usr/bin/{tool}"),
            &[tool, "-m", "-p"],
            0,
        );
        let got = fired(&engine, &event(&w, "execve", &p, &anc, &[], true));
        let (_, msg) = got
            .iter()
            .find(|(r, _)| r == "KubeBid Namespace Tool in Container")
            .unwrap_or_else(|| panic!("{tool}: {got:?}"));
        assert!(
            msg.contains("tenant=acme") && msg.contains("container=0123456789ab"),
            "{msg}"
        );
        // On the node, outside any container: the runtime's own business.
        let got = fired(&engine, &event(&w, "execve", &p, &anc, &[], false));
        assert!(
            !got.iter()
                .any(|(r, _)| r == "KubeBid Namespace Tool in Container"),
            "{got:?}"
        );
    }
    let mount = proc(
        13,
        "mount",
        "/usr/bin/mount",
        &["mount", "-t", "proc", "proc", "/mnt"],
        0,
    );
    let args = [
        ("dev".to_owned(), "proc".to_owned()),
        ("dir".to_owned(), "/mnt".to_owned()),
        ("type".to_owned(), "proc".to_owned()),
        ("flags".to_owned(), "0".to_owned()),
    ];
    let got = fired(&engine, &event(&w, "mount", &mount, &anc, &args, true));
    let (_, msg) = got
        .iter()
        .find(|(r, _)| r == "KubeBid Proc Mounted in Container")
        .unwrap_or_else(|| panic!("{got:?}"));
    assert!(
        msg.contains("tenant=acme") && msg.contains("target=/mnt"),
        "{msg}"
    );
    // A tmpfs mount is not a proc mount.
    let tmpfs = [
        ("dev".to_owned(), "tmpfs".to_owned()),
        ("dir".to_owned(), "/mnt".to_owned()),
        ("type".to_owned(), "tmpfs".to_owned()),
    ];
    let got = fired(&engine, &event(&w, "mount", &mount, &anc, &tmpfs, true));
    assert!(
        !got.iter()
            .any(|(r, _)| r == "KubeBid Proc Mounted in Container"),
        "{got:?}"
    );
}

#[test]
fn upstream_rules_fire_on_what_they_describe() {
    let engine = rules();
    let w = world();
    // A shell reading /etc/shadow in a container: Falco's "Read sensitive file untrusted".
    let cat = proc(14, "cat", "/usr/bin/cat", &["cat", "/etc/shadow"], 0);
    let anc = [&w.shell];
    let fd = FdInfo {
        num: 3,
        name: "/etc/shadow".into(),
        typechar: 'f',
    };
    let mut e = event(&w, "openat", &cat, &anc, &[], true);
    e.fd = Some(&fd);
    e.open_flags = Some(0);
    let got = fired(&engine, &e);
    assert!(
        got.iter()
            .any(|(r, _)| r == "Read sensitive file untrusted"),
        "{got:?}"
    );
    // The fields render as Falco renders them.
    let (_, msg) = got
        .iter()
        .find(|(r, _)| r == "Read sensitive file untrusted")
        .unwrap();
    assert!(msg.contains("file=/etc/shadow"), "{msg}");
}

#[test]
fn the_event_types_the_rules_need_are_known_so_the_kernel_sends_only_those() {
    let compile = |files: &[(&str, &str)]| {
        let mut l = Loader::new();
        for (n, t) in files {
            l.add(n, t).unwrap();
        }
        Engine::compile(&l.finish().unwrap(), Syscall::new()).unwrap()
    };
    let exec = compile(&[(
        kubebid_rules::KUBEBID_RUNTIME_RULES_FILE,
        kubebid_rules::kubebid_runtime_rules(),
    )]);
    assert_eq!(
        exec.required_values("evt.type", None),
        Some(vec!["execve".to_owned(), "execveat".to_owned()])
    );
    let both = compile(&[
        (
            kubebid_rules::KUBEBID_RUNTIME_RULES_FILE,
            kubebid_rules::kubebid_runtime_rules(),
        ),
        (
            kubebid_rules::KUBEBID_RUNTIME_SYSCALL_RULES_FILE,
            kubebid_rules::kubebid_runtime_syscall_rules(),
        ),
    ]);
    let need = both.required_values("evt.type", None).unwrap();
    for call in [
        "execve",
        "mount",
        "setns",
        "unshare",
        "ptrace",
        "bpf",
        "init_module",
    ] {
        assert!(need.iter().any(|n| n == call), "{call}: {need:?}");
    }
    assert!(need.iter().any(|n| n == "openat"), "{need:?}");
    assert!(!need.iter().any(|n| n == "connect"), "{need:?}");
    // A rule that constrains no event type needs them all.
    let any = compile(&[(
        "any.yaml",
        "- rule: any\n  desc: d\n  condition: proc.name = x\n  output: o\n  priority: INFO\n",
    )]);
    assert_eq!(any.required_values("evt.type", None), None);
}

#[test]
fn mistakes_in_runtime_rule_files_are_named_with_file_and_line() {
    let compile = |text: &str| {
        let mut l = Loader::new();
        l.add(
            kubebid_rules::KUBEBID_RUNTIME_RULES_FILE,
            kubebid_rules::kubebid_runtime_rules(),
        )
        .unwrap();
        l.add("mine.yaml", text)?;
        Engine::compile(&l.finish()?, Syscall::new()).map(|_| ())
    };
    // A field of no family: a typo, refused where it is.
    let e = compile(
        "- rule: Typo\n  desc: d\n  condition: prc.name = sh\n  output: o\n  priority: INFO\n",
    )
    .unwrap_err();
    assert!(
        e.to_string().starts_with("mine.yaml:1: rule \"Typo\":") && e.message.contains("prc.name"),
        "{e}"
    );
    // The same in an output.
    let e = compile("\n- rule: Out\n  desc: d\n  condition: proc.name = sh\n  output: \"%nosuch\"\n  priority: INFO\n")
        .unwrap_err();
    assert_eq!((e.file.as_str(), e.line), ("mine.yaml", Some(2)), "{e}");
    // A field of a known family that the sensor lacks: loads, and the rule says what it lacks.
    compile(
        "- rule: Lacks\n  desc: d\n  condition: fd.sip = 1.2.3.4\n  output: o\n  priority: INFO\n",
    )
    .unwrap();
    // A malformed rule and a syntax error in the file.
    let e = compile("- rule: Half\n  desc: d\n  condition: proc.name = sh\n").unwrap_err();
    assert!(e.message.contains("missing output, priority"), "{e}");
    assert_eq!(e.line, Some(1));
    let e = compile("- rule: R\n  desc: [unclosed\n").unwrap_err();
    assert_eq!(e.file, "mine.yaml");
    assert!(e.line.is_some(), "{e}");
    let e = compile("\n\n- rule: Cond\n  desc: d\n  condition: proc.name = sh and\n  output: o\n  priority: INFO\n")
        .unwrap_err();
    assert!(
        e.to_string()
            .starts_with("mine.yaml:3: rule \"Cond\": condition:"),
        "{e}"
    );
}
