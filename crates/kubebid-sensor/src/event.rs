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
    pub comm: String,
    /// The executed file (exec) or the call's string argument (mount's file system type).
    pub text: String,
    /// The command line (exec), split at NULs.
    pub argv: Vec<String>,
}

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
        comm: text(b, COMM, 16),
        text: text(b, STR, str_len),
        argv,
    })
}

/// The x86_64 system calls the sensor can watch, by Falco's `evt.type` name.
pub const SYSCALLS: &[(&str, u32)] = &[
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
    ("setns", 308),
    ("finit_module", 313),
    ("bpf", 321),
];

/// A system call's name by number.
#[must_use]
pub fn syscall_name(nr: u32) -> Option<&'static str> {
    if nr == 59 {
        return Some("execve");
    }
    SYSCALLS.iter().find(|(_, n)| *n == nr).map(|(s, _)| *s)
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
        _ => Vec::new(),
    }
}
