//! The kernel's event records, decoded with every length checked: a record that is short, or whose
//! lengths point past its end, is an error, never a panic.

/// The record's layout (`struct event` in `bpf/sensor.bpf.c`).
const COMM: usize = 88;
const STR: usize = COMM + 16;
const ARGV: usize = STR + 256;
/// A whole record's size.
pub const SIZE: usize = ARGV + 256;

/// What happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A program was executed (`sched_process_exec`).
    Exec,
    /// A watched system call returned.
    Syscall,
}

/// One record from the kernel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Raw {
    pub kind: Kind,
    /// Nanoseconds since boot.
    pub boot_ns: u64,
    /// The cgroup v2 ID (the cgroup directory's inode number).
    pub cgroup: u64,
    pub ret: i64,
    pub args: [u64; 3],
    /// The system call number (x86_64); 59 (`execve`) for an exec.
    pub nr: u32,
    pub tgid: u32,
    pub ppid: u32,
    /// The real user and group IDs, and the effective user ID.
    pub uid: u32,
    pub gid: u32,
    pub euid: u32,
    /// `F_*` bits: how far the kernel could read and judge the call's path.
    pub flags: u32,
    pub comm: String,
    /// The executed file (exec) or the call's string argument (mount's file system type, an open's path
    /// as the caller spelled it).
    pub text: String,
    /// The command line (exec), split at NULs.
    pub argv: Vec<String>,
    /// For a relative open (`F_RELATIVE`): the directory it starts from, as the kernel walked it up to the
    /// process's root (`/` first). Only the deepest components when `F_DEEP` is set.
    pub start_dir: Option<String>,
}

/// The open's path filled the kernel's buffer: `text` is its start only.
pub const F_TRUNCATED: u32 = 1;
/// The path is not one the kernel's trie could judge (relative, `//`, `/./`, `/../`, a `/proc` magic
/// link): user space resolves it and decides.
pub const F_UNRESOLVED: u32 = 2;
/// The starting directory was deeper than the kernel's slots.
pub const F_DEEP: u32 = 4;
/// `start_dir` was read by the kernel.
pub const F_RELATIVE: u32 = 8;
/// The kernel's slots for a starting directory's components.
const SLOT: usize = 32;

/// Why a record could not be decoded.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("a record of {0} bytes, expected {SIZE}")]
    Size(usize),
    #[error("unknown record kind {0}")]
    Kind(u32),
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    b.get(at..at + 8)
        .and_then(|s| <[u8; 8]>::try_from(s).ok())
        .map_or(0, u64::from_ne_bytes)
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    b.get(at..at + 4)
        .and_then(|s| <[u8; 4]>::try_from(s).ok())
        .map_or(0, u32::from_ne_bytes)
}

/// Text up to its first NUL (or `max` bytes), lossily.
fn text(b: &[u8], at: usize, max: usize) -> String {
    let s = b.get(at..at + max).unwrap_or_default();
    let end = s.iter().position(|&c| c == 0).unwrap_or(s.len());
    String::from_utf8_lossy(&s[..end]).into_owned()
}

/// Decodes one record.
///
/// # Errors
/// A record of the wrong size or an unknown kind.
pub fn decode(b: &[u8]) -> Result<Raw, DecodeError> {
    if b.len() != SIZE {
        return Err(DecodeError::Size(b.len()));
    }
    let kind = match u32_at(b, 48) {
        1 => Kind::Exec,
        2 => Kind::Syscall,
        k => return Err(DecodeError::Kind(k)),
    };
    let str_len = (u32_at(b, 72) as usize).min(256);
    let args_len = (u32_at(b, 76) as usize).min(256);
    let flags = u32_at(b, 84);
    let start_dir = (kind == Kind::Syscall && flags & F_RELATIVE != 0).then(|| {
        let mut dir = String::new();
        for k in (0..args_len.min(256 / SLOT)).rev() {
            dir.push('/');
            dir.push_str(&text(b, ARGV + k * SLOT, SLOT));
        }
        if dir.is_empty() {
            dir.push('/');
        }
        dir
    });
    let args_len = if start_dir.is_some() { 0 } else { args_len };
    let argv = b
        .get(ARGV..ARGV + args_len)
        .unwrap_or_default()
        .split(|&c| c == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    Ok(Raw {
        kind,
        boot_ns: u64_at(b, 0),
        cgroup: u64_at(b, 8),
        ret: i64::from_ne_bytes(u64_at(b, 16).to_ne_bytes()),
        args: [u64_at(b, 24), u64_at(b, 32), u64_at(b, 40)],
        tgid: u32_at(b, 52),
        ppid: u32_at(b, 56),
        uid: u32_at(b, 60),
        gid: u32_at(b, 64),
        euid: u32_at(b, 68),
        nr: u32_at(b, 80),
        flags,
        comm: text(b, COMM, 16),
        text: text(b, STR, str_len),
        argv,
        start_dir,
    })
}

/// The x86_64 system calls the sensor can watch, by Falco's `evt.type` name.
pub const SYSCALLS: &[(&str, u32)] = &[
    ("open", 2),
    ("creat", 85),
    ("ptrace", 101),
    ("setuid", 105),
    ("setgid", 106),
    ("setreuid", 113),
    ("setregid", 114),
    ("setresuid", 117),
    ("setresgid", 119),
    ("capset", 126),
    ("mount", 165),
    ("init_module", 175),
    ("unshare", 272),
    ("openat", 257),
    ("setns", 308),
    ("finit_module", 313),
    ("bpf", 321),
    ("openat2", 437),
];

/// The opens, whose paths the kernel checks against the watched set.
pub const OPENS: &[&str] = &["open", "creat", "openat", "openat2"];

/// A system call's name by number.
#[must_use]
pub fn syscall_name(nr: u32) -> Option<&'static str> {
    if nr == 59 {
        return Some("execve");
    }
    SYSCALLS.iter().find(|(_, n)| *n == nr).map(|(s, _)| *s)
}

/// `openat`'s "the working directory" descriptor.
pub const AT_FDCWD: i64 = -100;

/// A descriptor argument: the register's low 32 bits, as the kernel reads an `int` (the upper half is
/// whatever the caller left there).
#[must_use]
pub fn dirfd(register: u64) -> i64 {
    let low = u32::try_from(register & 0xffff_ffff).unwrap_or(0);
    i64::from(i32::from_ne_bytes(low.to_ne_bytes()))
}

/// An open's flags by name, `|`-joined as Falco shows them (`O_RDONLY|O_CLOEXEC`).
fn open_flags(f: u64) -> String {
    const NAMED: &[(u64, &str)] = &[
        (0o100, "O_CREAT"),
        (0o200, "O_EXCL"),
        (0o400, "O_NOCTTY"),
        (0o1000, "O_TRUNC"),
        (0o2000, "O_APPEND"),
        (0o4000, "O_NONBLOCK"),
        (0o10000, "O_DSYNC"),
        (0o200_000, "O_DIRECTORY"),
        (0o400_000, "O_NOFOLLOW"),
        (0o1_000_000, "O_NOATIME"),
        (0o2_000_000, "O_CLOEXEC"),
        (0o10_000_000, "O_PATH"),
        (0o20_000_000, "O_TMPFILE"),
    ];
    let mut out = match f & 3 {
        0 => "O_RDONLY",
        1 => "O_WRONLY",
        2 => "O_RDWR",
        _ => "O_ACCMODE",
    }
    .to_owned();
    for (bit, name) in NAMED {
        if f & bit != 0 {
            out.push('|');
            out.push_str(name);
        }
    }
    out
}

/// `ptrace` requests by number, as Falco names them.
fn ptrace_request(r: u64) -> String {
    match r {
        0 => "PTRACE_TRACEME".into(),
        1 => "PTRACE_PEEKTEXT".into(),
        2 => "PTRACE_PEEKDATA".into(),
        4 => "PTRACE_POKETEXT".into(),
        5 => "PTRACE_POKEDATA".into(),
        16 => "PTRACE_ATTACH".into(),
        17 => "PTRACE_DETACH".into(),
        0x4206 => "PTRACE_SEIZE".into(),
        n => n.to_string(),
    }
}

/// The call's arguments by name, rendered as the rules compare them.
#[must_use]
pub fn arguments(raw: &Raw) -> Vec<(String, String)> {
    let a = raw.args;
    let kv = |k: &str, v: String| (k.to_owned(), v);
    match syscall_name(raw.nr) {
        Some("mount") => vec![kv("type", raw.text.clone()), kv("flags", a[2].to_string())],
        Some("unshare") => vec![kv("flags", format!("{:#x}", a[0]))],
        Some("setns") => vec![
            kv("fd", a[0].to_string()),
            kv("nstype", format!("{:#x}", a[1])),
        ],
        Some("ptrace") => vec![
            kv("request", ptrace_request(a[0])),
            kv("pid", a[1].to_string()),
        ],
        Some("setuid" | "setgid") => vec![kv("uid", a[0].to_string())],
        Some("bpf") => vec![kv("cmd", a[0].to_string())],
        Some("execve") => vec![kv("filename", raw.text.clone())],
        Some("open" | "creat" | "openat" | "openat2") => {
            let mut v = vec![
                kv("name", raw.text.clone()),
                kv("flags", open_flags(a[1])),
                kv("mode", format!("{:#o}", a[2])),
            ];
            if raw.nr != 2 && raw.nr != 85 {
                let dirfd = dirfd(a[0]);
                v.push(kv(
                    "dirfd",
                    if dirfd == AT_FDCWD {
                        "AT_FDCWD".into()
                    } else {
                        dirfd.to_string()
                    },
                ));
            }
            v
        }
        _ => Vec::new(),
    }
}
