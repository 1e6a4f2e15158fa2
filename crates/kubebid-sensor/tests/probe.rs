//! The BPF programs on this machine's kernel (as root, with BTF): every exec of a known set of processes is
//! seen, with its command line, real user and cgroup, and none is lost; a watched system call (`unshare`)
//! arrives with its flags and result, and an unwatched one (`setns`, not asked for) does not leave the
//! kernel. Where the kernel refuses BPF, the test says so and skips.

// Test fixtures fail the test loudly.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::collections::HashSet;
use std::process::Command;
use std::time::{Duration, Instant};

use kubebid_sensor::event::{Kind, arguments, decode, syscall_name};
use kubebid_sensor::probe::{Probe, ProbeError};

fn probe(wanted: &[&str]) -> Option<Probe> {
    // Only a kernel (or a build) that cannot run it skips; anything else that fails is a failure.
    match Probe::load(wanted) {
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
    let Some(mut p) = probe(&["unshare"]) else {
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
