//! The sensitive paths whose opens the sensor reports, and how an open's path is brought to the one
//! spelling they are compared in.
//!
//! The kernel compares a plain absolute path (no `//`, `/./`, `/../`, no `/proc/<pid>/root` and friends)
//! against the set itself, in an LPM trie, and drops every other open of such a path there. Any other
//! spelling (relative, dotted, doubled slashes, a `/proc` magic link, too long for its buffer) leaves the
//! kernel and is resolved here, lexically, then compared with the same set. Symbolic links other than
//! `/proc`'s are not followed: a link the tenant made to `/etc/shadow` is opened under the link's name (as
//! in Falco, whose `fd.name` is also the path as opened).

/// The kernel's path buffer (`STR` in `bpf/sensor.bpf.c`), with the closing NUL.
pub const MAX_PATH: usize = 256;

/// What KubeBid watches when no paths are configured: credentials, sudo and PAM configuration, SSH keys
/// of root, the node's Kubernetes credentials, the dynamic loader's preload list and the kernel's core
/// dump helper (a container escape writes it).
pub const DEFAULT_PATHS: &[&str] = &[
    "/etc/shadow",
    "/etc/gshadow",
    "/etc/sudoers",
    "/etc/sudoers.d/",
    "/etc/pam.conf",
    "/etc/pam.d/",
    "/etc/security/pwquality.conf",
    "/etc/ld.so.preload",
    "/root/.ssh/",
    "/etc/kubernetes/",
    "/var/lib/kubelet/pki/",
    "/proc/sys/kernel/core_pattern",
];

/// A watched path: a file (exactly), or a directory (ending in `/`: everything below it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Watched {
    pub path: String,
    pub below: bool,
}

/// The set of watched paths.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WatchSet(Vec<Watched>);

impl WatchSet {
    /// Reads the configured paths: each absolute, in its plain spelling, and short enough for the kernel's
    /// buffer.
    ///
    /// # Errors
    /// The first path that is not, named.
    pub fn parse<S: AsRef<str>>(paths: &[S]) -> Result<Self, String> {
        let mut set = Vec::new();
        for p in paths {
            let p = p.as_ref();
            let below = p.ends_with('/') && p.len() > 1;
            let bare = if below { &p[..p.len() - 1] } else { p };
            if !p.starts_with('/') {
                return Err(format!("watched path {p:?}: not absolute"));
            }
            if p.contains('\0') {
                return Err(format!("watched path {p:?}: contains a NUL"));
            }
            if normalize(bare) != bare {
                return Err(format!(
                    "watched path {p:?}: not in its plain spelling (write {:?})",
                    normalize(bare)
                ));
            }
            if p.len() + 1 > MAX_PATH {
                return Err(format!(
                    "watched path {p:?}: longer than {} bytes",
                    MAX_PATH - 1
                ));
            }
            if bare == "/" {
                return Err("watched path \"/\": would report every open".into());
            }
            set.push(Watched {
                path: bare.to_owned(),
                below,
            });
        }
        Ok(Self(set))
    }

    /// KubeBid's default set.
    #[must_use]
    pub fn defaults() -> Self {
        Self::parse(DEFAULT_PATHS).unwrap_or_default()
    }

    /// The watched paths.
    #[must_use]
    pub fn paths(&self) -> &[Watched] {
        &self.0
    }

    /// Whether a path in its plain spelling is watched.
    #[must_use]
    pub fn matches(&self, path: &str) -> bool {
        self.0.iter().any(|w| {
            if w.below {
                path.strip_prefix(w.path.as_str())
                    .is_some_and(|rest| rest.len() > 1 && rest.starts_with('/'))
            } else {
                path == w.path
            }
        })
    }

    /// The kernel trie's entries: a bit count and the bytes it covers. A file's entry covers its closing
    /// NUL; a directory's covers its trailing `/` only.
    #[must_use]
    pub fn trie_entries(&self) -> Vec<(u32, [u8; MAX_PATH])> {
        self.0
            .iter()
            .map(|w| {
                let mut data = [0u8; MAX_PATH];
                let bytes = w.path.as_bytes();
                data[..bytes.len()].copy_from_slice(bytes);
                let covered = if w.below {
                    data[bytes.len()] = b'/';
                    bytes.len() + 1
                } else {
                    bytes.len() + 1
                };
                (u32::try_from(covered * 8).unwrap_or(u32::MAX), data)
            })
            .collect()
    }
}

/// A path's plain spelling, lexically: `.` and empty components dropped, `..` taking one away (never above
/// `/`). The result is absolute; a relative input is taken from `/`.
#[must_use]
pub fn normalize(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for c in path.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    let mut out = String::with_capacity(path.len() + 1);
    for p in &parts {
        out.push('/');
        out.push_str(p);
    }
    if out.is_empty() {
        out.push('/');
    }
    out
}

/// Where a `/proc` magic link in a plain path points, as the opening process sees it: what follows
/// `/proc/<who>/root` from its root, what follows `/proc/<who>/cwd` or `/proc/<who>/fd/<n>` from that
/// directory. `link` reads a link of `/proc/<pid>/…` (the opener's own, or another process's); `None` when
/// the path is no magic link.
pub fn through_proc(
    path: &str,
    opener: u32,
    link: &mut dyn FnMut(u32, &str) -> Option<String>,
) -> Option<Option<String>> {
    let rest = path.strip_prefix("/proc/")?;
    let mut parts = rest.splitn(2, '/');
    let who = parts.next()?;
    let mut tail = parts.next()?;
    let mut pid = match who {
        "self" | "thread-self" => opener,
        n => n.parse::<u32>().ok()?,
    };
    if let Some(t) = tail.strip_prefix("task/") {
        let (tid, t) = t.split_once('/').unwrap_or((t, ""));
        pid = tid.parse().ok()?;
        tail = t;
    }
    let (what, after) = tail.split_once('/').unwrap_or((tail, ""));
    let (base, after) = match what {
        "root" => (Some("/".to_owned()), after),
        "cwd" => (link(pid, "cwd"), after),
        "fd" => {
            let (n, after) = after.split_once('/').unwrap_or((after, ""));
            if after.is_empty() {
                // /proc/<pid>/fd/<n> itself is the descriptor's file.
                return Some(link(pid, &format!("fd/{n}")));
            }
            (link(pid, &format!("fd/{n}")), after)
        }
        _ => return None,
    };
    Some(base.map(|b| normalize(&format!("{b}/{after}"))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_brought_to_their_plain_spelling() {
        for (given, plain) in [
            ("/etc/shadow", "/etc/shadow"),
            ("//etc//shadow", "/etc/shadow"),
            ("/etc/./shadow", "/etc/shadow"),
            ("/tmp/../etc/shadow", "/etc/shadow"),
            ("/../../etc/shadow", "/etc/shadow"),
            ("/etc/pam.d/", "/etc/pam.d"),
            ("", "/"),
            ("/", "/"),
            ("..", "/"),
            ("/root/.ssh/id_rsa", "/root/.ssh/id_rsa"),
        ] {
            assert_eq!(normalize(given), plain, "{given}");
        }
    }

    #[test]
    fn files_match_exactly_and_directories_below() {
        let set = WatchSet::parse(&["/etc/shadow", "/etc/pam.d/"]).unwrap();
        assert!(set.matches("/etc/shadow"));
        assert!(!set.matches("/etc/shadowed"));
        assert!(!set.matches("/etc/shadow/x"));
        assert!(set.matches("/etc/pam.d/sshd"));
        assert!(set.matches("/etc/pam.d/a/b"));
        assert!(!set.matches("/etc/pam.d"));
        assert!(!set.matches("/etc/pam.dx/sshd"));
        let entries = set.trie_entries();
        assert_eq!(entries[0].0, 12 * 8, "/etc/shadow and its NUL");
        assert_eq!(&entries[0].1[..12], b"/etc/shadow\0");
        assert_eq!(entries[1].0, 11 * 8, "/etc/pam.d/ without a NUL");
        assert_eq!(&entries[1].1[..11], b"/etc/pam.d/");
    }

    #[test]
    fn a_bad_watched_path_is_named() {
        for (bad, why) in [
            ("etc/shadow", "not absolute"),
            ("/etc//shadow", "plain spelling"),
            ("/etc/../shadow", "plain spelling"),
            ("/", "every open"),
        ] {
            let e = WatchSet::parse(&[bad]).unwrap_err();
            assert!(e.contains(why) && e.contains(bad), "{e}");
        }
        let long = format!("/{}", "a".repeat(300));
        assert!(WatchSet::parse(&[long]).unwrap_err().contains("longer"));
        assert_eq!(WatchSet::defaults().paths().len(), DEFAULT_PATHS.len());
    }

    #[test]
    fn magic_links_resolve_as_the_opener_sees_them() {
        let mut link = |pid: u32, what: &str| match (pid, what) {
            (7, "cwd") => Some("/etc".to_owned()),
            (7, "fd/3") => Some("/etc/pam.d".to_owned()),
            (9, "cwd") => Some("/var".to_owned()),
            _ => None,
        };
        let r =
            |p: &str, link: &mut dyn FnMut(u32, &str) -> Option<String>| through_proc(p, 7, link);
        assert_eq!(
            r("/proc/self/root/etc/shadow", &mut link),
            Some(Some("/etc/shadow".into()))
        );
        assert_eq!(
            r("/proc/7/cwd/shadow", &mut link),
            Some(Some("/etc/shadow".into()))
        );
        assert_eq!(
            r("/proc/self/fd/3/sshd", &mut link),
            Some(Some("/etc/pam.d/sshd".into()))
        );
        assert_eq!(
            r("/proc/self/task/9/cwd/x", &mut link),
            Some(Some("/var/x".into()))
        );
        assert_eq!(
            r("/proc/thread-self/root/etc/shadow", &mut link),
            Some(Some("/etc/shadow".into()))
        );
        assert_eq!(r("/proc/1/cwd/x", &mut link), Some(None), "unreadable");
        assert_eq!(r("/proc/self/status", &mut link), None);
        assert_eq!(r("/proc/cpuinfo", &mut link), None);
        assert_eq!(r("/etc/shadow", &mut link), None);
    }
}
