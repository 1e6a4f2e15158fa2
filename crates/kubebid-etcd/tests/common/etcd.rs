//! A real etcd for the tests (Debian's etcd-server; scripts/test installs it), and etcdctl against it.
// Not every test file uses every helper; fixtures fail the test loudly.
#![allow(dead_code, clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::net::{SocketAddr, TcpListener};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The etcd process and its data directory, both gone on drop.
pub struct Etcd {
    child: Child,
    _dir: tempdir::Dir,
}

mod tempdir {
    /// A directory removed on drop.
    pub struct Dir(pub std::path::PathBuf);
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn start_etcd() -> (Etcd, SocketAddr) {
    let dir = std::env::temp_dir().join(format!(
        "kubebid-etcd-{}-{}",
        std::process::id(),
        free_port()
    ));
    let (client, peer) = (free_port(), free_port());
    let child = Command::new("etcd")
        .args(["--name", "default", "--data-dir"])
        .arg(&dir)
        .arg(format!("--listen-client-urls=http://127.0.0.1:{client}"))
        .arg(format!("--advertise-client-urls=http://127.0.0.1:{client}"))
        .arg(format!("--listen-peer-urls=http://127.0.0.1:{peer}"))
        .arg(format!(
            "--initial-advertise-peer-urls=http://127.0.0.1:{peer}"
        ))
        .arg(format!("--initial-cluster=default=http://127.0.0.1:{peer}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("etcd is installed (scripts/test installs etcd-server)");
    let addr: SocketAddr = format!("127.0.0.1:{client}").parse().unwrap();
    let etcd = Etcd {
        child,
        _dir: tempdir::Dir(dir),
    };
    for _ in 0..200 {
        if ctl(addr, &["endpoint", "health"]).0 {
            return (etcd, addr);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("etcd did not become healthy");
}

/// Runs etcdctl against `addr`: (success, stdout, stderr).
pub fn ctl(addr: SocketAddr, args: &[&str]) -> (bool, String, String) {
    let out = Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={addr}"))
        .args(["--command-timeout=5s", "--dial-timeout=2s"])
        .args(args)
        .output()
        .expect("etcdctl is installed (scripts/test installs etcd-client)");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Whether etcd is missing here; says so (the test then skips visibly).
pub fn etcd_missing() -> bool {
    if Command::new("etcd").arg("--version").output().is_ok() {
        return false;
    }
    println!("SKIPPED: etcd is not installed (scripts/test installs etcd-server and etcd-client)");
    true
}
