//! The BPF programs on this machine's kernel (as root, with BTF): every exec of a known set of processes is
//! seen, with its command line, real user and cgroup, and none is lost; a watched system call (`unshare`)
//! arrives with its flags and result, and an unwatched one (`setns`, not asked for) does not leave the
//! kernel. Where the kernel refuses BPF, the test says so and skips.

// Test fixtures fail the test loudly.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::collections::HashSet;
use std::process::Command;
use std::time::{Duration, Instant};

use kubebid_sensor::event::{F_RELATIVE, F_UNRESOLVED, Kind, Raw, arguments, decode, syscall_name};
use kubebid_sensor::paths::WatchSet;
use kubebid_sensor::probe::{Probe, ProbeError};

fn probe(wanted: &[&str], watch: &WatchSet) -> Option<Probe> {
    // Only a kernel (or a build) that cannot run it skips; anything else that fails is a failure.
    // This process's own calls are what the tests make: not ignored.
    match Probe::load_ignoring(wanted, watch, None) {
        Ok(p) => Some(p),
        Err(e @ (ProbeError::NotBuilt | ProbeError::Unsupported(_))) => {
            println!("SKIPPED: the BPF probe cannot load here: {e}");
            None
        }
        Err(e) => panic!("{e}"),
    }
}

#[test]
fn every_exec_is_seen_and_only_wanted_calls_leave_the_kernel() {
    let Some(mut p) = probe(&["unshare"], &WatchSet::default()) else {
        return;
    };
    // 300 execs of /bin/true, as fast as they go.
    let mut pids = HashSet::new();
    for _ in 0..300 {
        let c = Command::new("/bin/true").spawn().unwrap();
        pids.insert(c.id());
        let mut c = c;
        c.wait().unwrap();
    }
    // unshare(CLONE_NEWUTS) through the unshare tool, and nsenter doing setns (not wanted).
    let un = Command::new("unshare")
        .args(["--uts", "/bin/true"])
        .spawn()
        .unwrap();
    let un_pid = un.id();
    let mut un = un;
    un.wait().unwrap();
    let _ = Command::new("nsenter")
        .args(["-t", "1", "-u", "/bin/true"])
        .status();

    let mut seen = HashSet::new();
    let mut unshare_call = None;
    let mut setns = 0;
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline && (seen.len() < pids.len() || unshare_call.is_none()) {
        p.poll(Duration::from_millis(100), |b| {
            let r = decode(b).expect("a record decodes");
            match r.kind {
                Kind::Exec if pids.contains(&r.tgid) => {
                    assert_eq!(r.text, "/bin/true");
                    assert_eq!(r.argv, vec!["/bin/true".to_owned()]);
                    assert_eq!(r.uid, 0);
                    assert!(r.cgroup > 0);
                    seen.insert(r.tgid);
                }
                Kind::Syscall if syscall_name(r.nr) == Some("unshare") && r.tgid == un_pid => {
                    unshare_call = Some(r);
                }
                Kind::Syscall if syscall_name(r.nr) == Some("setns") => setns += 1,
                _ => {}
            }
        });
    }
    assert_eq!(seen.len(), pids.len(), "every exec seen");
    assert_eq!(p.lost(), 0, "nothing lost");
    let u = unshare_call.expect("the unshare call");
    assert_eq!(u.ret, 0);
    // CLONE_NEWUTS
    assert_eq!(
        arguments(&u),
        vec![("flags".to_owned(), "0x4000000".to_owned())]
    );
    assert_eq!(setns, 0, "setns was not asked for");
}

/// Every record from this process's `openat` calls until `done` says enough.
fn opens_of(p: &mut Probe, pid: u32, mut done: impl FnMut(&[Raw]) -> bool) -> Vec<Raw> {
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline && !done(&got) {
        p.poll(Duration::from_millis(100), |b| {
            let r = decode(b).expect("a record decodes");
            if r.kind == Kind::Syscall && syscall_name(r.nr) == Some("openat") && r.tgid == pid {
                got.push(r);
            }
        });
    }
    got
}

#[test]
fn only_opens_of_watched_paths_leave_the_kernel() {
    let dir = std::env::temp_dir().join(format!("kubebid-probe-opens-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("vault/deep")).unwrap();
    for f in ["key", "keyed", "plain", "vault/a", "vault/deep/b"] {
        std::fs::write(dir.join(f), "x").unwrap();
    }
    let d = dir.display().to_string();
    let watch = WatchSet::parse(&[format!("{d}/key"), format!("{d}/vault/")]).unwrap();
    let Some(mut p) = probe(&["openat", "creat"], &watch) else {
        return;
    };
    let me = std::process::id();
    let open = |path: String| drop(std::fs::File::open(path).unwrap());
    // Plain absolute spellings: judged in the kernel.
    for _ in 0..100 {
        open(format!("{d}/plain"));
        open(format!("{d}/keyed"));
    }
    for _ in 0..10 {
        open(format!("{d}/key"));
    }
    open(format!("{d}/vault/a"));
    open(format!("{d}/vault/deep/b"));
    // Other spellings leave the kernel for user space to judge.
    open(format!("{d}//plain"));
    open(format!("{d}/vault/../key"));
    // Relative to a directory descriptor: the kernel walks the directory up to the root.
    let dirfd = std::fs::File::open(&dir).unwrap();
    drop(
        nix::fcntl::openat(
            &dirfd,
            "key",
            nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        )
        .unwrap(),
    );
    let got = opens_of(&mut p, me, |g| g.iter().any(|r| r.text == "key"));
    let texts: Vec<&str> = got.iter().map(|r| r.text.as_str()).collect();
    let count = |t: String| texts.iter().filter(|x| **x == t).count();
    assert_eq!(count(format!("{d}/plain")), 0, "unwatched: {texts:?}");
    assert_eq!(
        count(format!("{d}/keyed")),
        0,
        "a longer name is another file"
    );
    assert_eq!(count(format!("{d}/key")), 10, "{texts:?}");
    assert_eq!(count(format!("{d}/vault/a")), 1);
    assert_eq!(count(format!("{d}/vault/deep/b")), 1);
    for odd in [format!("{d}//plain"), format!("{d}/vault/../key")] {
        let r = got.iter().find(|r| r.text == odd).expect("odd spelling");
        assert_eq!(r.flags & F_UNRESOLVED, F_UNRESOLVED);
    }
    let rel = got.iter().find(|r| r.text == "key").unwrap();
    assert_eq!(rel.flags & F_RELATIVE, F_RELATIVE);
    assert_eq!(rel.start_dir.as_deref(), Some(d.as_str()), "walked up to /");
    assert!(rel.ret >= 0);
    assert_eq!(
        arguments(rel)
            .into_iter()
            .find(|(k, _)| k == "flags")
            .map(|(_, v)| v),
        Some("O_RDONLY|O_CLOEXEC".to_owned())
    );
    // creat(2), the old way to open for writing: a watched path made through it is seen too.
    let made = format!("{d}/vault/made");
    let perl = std::process::Command::new("perl")
        .args([
            "-e",
            &format!("my $p = \"{made}\"; syscall(85, $p, 0644) >= 0 or exit 1"),
        ])
        .spawn();
    if let Ok(mut perl) = perl {
        let pid = perl.id();
        assert!(perl.wait().unwrap().success(), "creat ran");
        let mut creat = None;
        let deadline = Instant::now() + Duration::from_secs(10);
        while creat.is_none() && Instant::now() < deadline {
            p.poll(Duration::from_millis(100), |b| {
                let r = decode(b).unwrap();
                if r.tgid == pid && syscall_name(r.nr) == Some("creat") {
                    creat = Some(r);
                }
            });
        }
        let c = creat.expect("the creat call");
        assert_eq!(c.text, made);
        assert_eq!(
            arguments(&c)
                .into_iter()
                .find(|(k, _)| k == "flags")
                .map(|(_, v)| v),
            Some("O_WRONLY|O_CREAT|O_TRUNC".to_owned())
        );
    } else {
        println!("SKIPPED: no perl to call creat(2) with");
    }
    assert_eq!(p.lost(), 0);
    let _ = std::fs::remove_dir_all(&dir);
}
