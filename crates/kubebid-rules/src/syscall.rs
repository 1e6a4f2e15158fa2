//! The `syscall` source: what a node sensor sees of a process's system call, with the process tree and
//! KubeBid's attribution (container, pod, tenant), for Falco's `syscall` rules (`falco_rules.yaml`).
//!
//! Events are exit events: `evt.dir` is `<` and `evt.res` the call's result (`SUCCESS`, or the errno's name
//! for a failure). Fields follow Falco's meanings; a field the sensor does not capture (network endpoints,
//! inode times, executable provenance) is unknown here, so a rule that needs it is reported as not evaluable
//! with the field named, rather than evaluated wrongly.

use std::fmt::Write as _;

use crate::source::{FieldError, Source, Val, Values};

/// One process as the sensor's process tree knows it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProcessInfo {
    pub pid: i64,
    pub ppid: i64,
    /// The command name (`comm`, at most 15 bytes in the kernel; the executable's base name otherwise).
    pub name: String,
    /// The full path of the executable.
    pub exepath: String,
    /// The command line, `argv[0]` first.
    pub argv: Vec<String>,
    pub cwd: String,
    /// The controlling terminal's device number; 0 for none.
    pub tty: u32,
    pub uid: u32,
    pub gid: u32,
    /// The login UID (`-1` when unset, as for a process no login started).
    pub loginuid: i64,
    pub user: String,
    pub group: String,
    pub loginname: String,
    /// The effective capability set, as the kernel's bit mask.
    pub cap_effective: u64,
}

/// The container a process runs in.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ContainerInfo {
    /// The runtime's container ID (64 hex digits for containerd and CRI-O); Falco shows the first 12.
    pub id: String,
    pub name: String,
    pub image_repository: String,
    pub privileged: Option<bool>,
}

/// The pod, namespace and tenant a container belongs to.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PodInfo {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    /// The tenant that owns the namespace, empty for none.
    pub tenant: String,
}

/// The file descriptor a call acted on.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FdInfo {
    /// The descriptor number; `-1` when the call failed before one was made.
    pub num: i64,
    /// The path (for files and directories).
    pub name: String,
    /// Falco's type character: `f` file, `d` directory, `u` unix socket, `4`/`6` IP, `p` pipe, ...
    pub typechar: char,
}

/// One system call.
#[derive(Clone, Copy, Debug)]
pub struct SyscallEvent<'e> {
    /// Nanoseconds since the epoch.
    pub time_ns: i64,
    /// The sensor's event number.
    pub num: u64,
    /// The call (`execve`, `setuid`, `openat`, `mount`, ...).
    pub evt_type: &'e str,
    /// The raw result: 0 or positive for success, `-errno` for failure.
    pub res: i64,
    /// The call's arguments by name (`flags`, `target`, `request`, `uid`, ...), rendered as Falco does.
    pub args: &'e [(String, String)],
    /// For an open: the flags, to decide `evt.is_open_read` / `evt.is_open_write`.
    pub open_flags: Option<u32>,
    pub process: &'e ProcessInfo,
    /// The process's ancestors, parent first.
    pub ancestors: &'e [&'e ProcessInfo],
    pub fd: Option<&'e FdInfo>,
    pub container: Option<&'e ContainerInfo>,
    pub pod: Option<&'e PodInfo>,
    pub hostname: &'e str,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum P {
    Name,
    Exe,
    ExePath,
    Cmdline,
    Args,
    Pid,
    Ppid,
    Cwd,
    Tty,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum F {
    Type,
    Dir,
    Res,
    RawRes,
    Num,
    Time,
    Hostname,
    Arg(Box<str>),
    Args,
    IsOpenRead,
    IsOpenWrite,
    /// A fact of the process itself (0), its parent (1), or an ancestor.
    Proc(P, usize),
    /// A fact of every ancestor (parent first), for `proc.aname` without an index.
    Ancestors(P),
    UserName,
    UserUid,
    UserLoginUid,
    UserLoginName,
    GroupName,
    GroupGid,
    CapEffective,
    ContainerId,
    ContainerName,
    ContainerImageRepository,
    ContainerPrivileged,
    K8sNs,
    K8sPod,
    K8sPodUid,
    Tenant,
    FdName,
    FdNum,
    FdTypeChar,
    FdType,
    FdDirectory,
    FdFilename,
}

/// A resolved `syscall` field.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SyscallField(F);

/// The `syscall` source.
#[derive(Clone, Copy, Debug, Default)]
pub struct Syscall;

impl Syscall {
    #[must_use]
    pub fn new() -> Self {
        Syscall
    }
}

fn no_arg(arg: Option<&str>, f: F) -> Result<F, FieldError> {
    match arg {
        None => Ok(f),
        Some(a) => Err(FieldError::BadArg(format!(
            "the field takes no argument, got {a:?}"
        ))),
    }
}

fn depth(arg: Option<&str>) -> Result<Option<usize>, FieldError> {
    arg.map(|a| {
        a.trim()
            .parse::<usize>()
            .map_err(|_| FieldError::BadArg(format!("{a:?} is not an ancestor index")))
    })
    .transpose()
}

fn resolve(name: &str, arg: Option<&str>) -> Result<F, FieldError> {
    if let Some(a) = name.strip_prefix("evt.arg.") {
        return no_arg(arg, F::Arg(a.into()));
    }
    let proc = |p: P, at: usize| no_arg(arg, F::Proc(p, at));
    let ancestor = |p: P| {
        Ok(match depth(arg)? {
            Some(n) => F::Proc(p, n),
            None => F::Ancestors(p),
        })
    };
    match name {
        "evt.type" => no_arg(arg, F::Type),
        "evt.dir" => no_arg(arg, F::Dir),
        "evt.res" => no_arg(arg, F::Res),
        "evt.rawres" => no_arg(arg, F::RawRes),
        "evt.num" => no_arg(arg, F::Num),
        "evt.time" => no_arg(arg, F::Time),
        "evt.hostname" => no_arg(arg, F::Hostname),
        "evt.arg" => match arg {
            Some(a) if !a.is_empty() => Ok(F::Arg(a.into())),
            _ => Err(FieldError::ArgRequired),
        },
        "evt.args" => no_arg(arg, F::Args),
        "evt.is_open_read" => no_arg(arg, F::IsOpenRead),
        "evt.is_open_write" => no_arg(arg, F::IsOpenWrite),
        "proc.name" => proc(P::Name, 0),
        "proc.exe" => proc(P::Exe, 0),
        "proc.exepath" => proc(P::ExePath, 0),
        "proc.cmdline" => proc(P::Cmdline, 0),
        "proc.args" => proc(P::Args, 0),
        "proc.pid" => proc(P::Pid, 0),
        "proc.ppid" => proc(P::Ppid, 0),
        "proc.cwd" => proc(P::Cwd, 0),
        "proc.tty" => proc(P::Tty, 0),
        "proc.pname" => proc(P::Name, 1),
        "proc.pexe" => proc(P::Exe, 1),
        "proc.pexepath" => proc(P::ExePath, 1),
        "proc.pcmdline" => proc(P::Cmdline, 1),
        "proc.aname" => ancestor(P::Name),
        "proc.aexe" => ancestor(P::Exe),
        "proc.aexepath" => ancestor(P::ExePath),
        "proc.acmdline" => ancestor(P::Cmdline),
        "proc.apid" => ancestor(P::Pid),
        "user.name" => no_arg(arg, F::UserName),
        "user.uid" => no_arg(arg, F::UserUid),
        "user.loginuid" => no_arg(arg, F::UserLoginUid),
        "user.loginname" => no_arg(arg, F::UserLoginName),
        "group.name" => no_arg(arg, F::GroupName),
        "group.gid" => no_arg(arg, F::GroupGid),
        "thread.cap_effective" => no_arg(arg, F::CapEffective),
        "container.id" => no_arg(arg, F::ContainerId),
        "container.name" => no_arg(arg, F::ContainerName),
        "container.image.repository" => no_arg(arg, F::ContainerImageRepository),
        "container.privileged" => no_arg(arg, F::ContainerPrivileged),
        "k8s.ns.name" => no_arg(arg, F::K8sNs),
        "k8s.pod.name" => no_arg(arg, F::K8sPod),
        "k8s.pod.uid" => no_arg(arg, F::K8sPodUid),
        "kubebid.tenant" => no_arg(arg, F::Tenant),
        "fd.name" | "fd.nameraw" => no_arg(arg, F::FdName),
        "fd.num" => no_arg(arg, F::FdNum),
        "fd.typechar" => no_arg(arg, F::FdTypeChar),
        "fd.type" => no_arg(arg, F::FdType),
        "fd.directory" => no_arg(arg, F::FdDirectory),
        "fd.filename" => no_arg(arg, F::FdFilename),
        _ => Err(FieldError::Unknown),
    }
}

/// The errno names Falco shows in `evt.res`, for the common failures.
fn errno_name(e: i64) -> Option<&'static str> {
    Some(match e {
        1 => "EPERM",
        2 => "ENOENT",
        3 => "ESRCH",
        4 => "EINTR",
        5 => "EIO",
        9 => "EBADF",
        11 => "EAGAIN",
        12 => "ENOMEM",
        13 => "EACCES",
        14 => "EFAULT",
        16 => "EBUSY",
        17 => "EEXIST",
        20 => "ENOTDIR",
        21 => "EISDIR",
        22 => "EINVAL",
        24 => "EMFILE",
        28 => "ENOSPC",
        30 => "EROFS",
        38 => "ENOSYS",
        95 => "EOPNOTSUPP",
        _ => return None,
    })
}

/// The capability names of a mask, as Falco lists them.
const CAPS: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

fn capabilities(mask: u64) -> String {
    let mut out = String::new();
    for (bit, name) in CAPS.iter().enumerate() {
        if mask & (1u64 << bit) != 0 {
            if !out.is_empty() {
                out.push(' ');
            }
            out.push_str(name);
        }
    }
    out
}

fn process_fact<'e>(p: P, proc: &'e ProcessInfo) -> Val<'e> {
    match p {
        P::Name => Val::Str(&proc.name),
        P::Exe => Val::Str(proc.argv.first().map_or(proc.name.as_str(), String::as_str)),
        P::ExePath => Val::Str(&proc.exepath),
        P::Cmdline => {
            let mut s = proc.name.clone();
            for a in proc.argv.iter().skip(1) {
                s.push(' ');
                s.push_str(a);
            }
            Val::Owned(s.into())
        }
        P::Args => Val::Owned(proc.argv.get(1..).unwrap_or_default().join(" ").into()),
        P::Pid => Val::int(proc.pid),
        P::Ppid => Val::int(proc.ppid),
        P::Cwd => Val::Str(&proc.cwd),
        P::Tty => Val::int(i64::from(proc.tty)),
    }
}

fn at<'e>(e: &SyscallEvent<'e>, depth: usize) -> Option<&'e ProcessInfo> {
    match depth {
        0 => Some(e.process),
        n => e.ancestors.get(n - 1).copied(),
    }
}

fn one(v: Val<'_>) -> Values<'_> {
    Values::One(v)
}

fn opt<'e, T: 'e>(x: Option<&'e T>, f: impl FnOnce(&'e T) -> Val<'e>) -> Values<'e> {
    x.map_or(Values::NotAvailable, |t| Values::One(f(t)))
}

/// `O_ACCMODE` values.
const O_WRONLY: u32 = 1;
const O_RDWR: u32 = 2;

fn extract<'e>(f: &F, e: &SyscallEvent<'e>) -> Values<'e> {
    match f {
        F::Type => one(Val::Str(e.evt_type)),
        F::Dir => one(Val::Str("<")),
        F::Res => one(if e.res >= 0 {
            Val::Str("SUCCESS")
        } else {
            errno_name(-e.res).map_or_else(|| Val::int(e.res), Val::Str)
        }),
        F::RawRes => one(Val::int(e.res)),
        F::Num => one(Val::int(i64::try_from(e.num).unwrap_or(i64::MAX))),
        F::Time => one(Val::int(e.time_ns)),
        F::Hostname => one(Val::Str(e.hostname)),
        F::Arg(name) => e
            .args
            .iter()
            .find(|(n, _)| n.as_str() == &**name)
            .map_or(Values::NotAvailable, |(_, v)| one(Val::Str(v))),
        F::Args => {
            let mut s = String::new();
            for (n, v) in e.args {
                if !s.is_empty() {
                    s.push(' ');
                }
                let _ = write!(s, "{n}={v}");
            }
            one(Val::Owned(s.into()))
        }
        F::IsOpenRead => e.open_flags.map_or(Values::NotAvailable, |fl| {
            one(Val::bool(fl & 3 != O_WRONLY))
        }),
        F::IsOpenWrite => e.open_flags.map_or(Values::NotAvailable, |fl| {
            one(Val::bool(matches!(fl & 3, O_WRONLY | O_RDWR)))
        }),
        F::Proc(p, d) => at(e, *d).map_or(Values::NotAvailable, |proc| one(process_fact(*p, proc))),
        F::Ancestors(p) => Values::List(e.ancestors.iter().map(|a| process_fact(*p, a)).collect()),
        F::UserName => one(Val::Str(&e.process.user)),
        F::UserUid => one(Val::int(i64::from(e.process.uid))),
        F::UserLoginUid => one(Val::int(e.process.loginuid)),
        F::UserLoginName => one(Val::Str(&e.process.loginname)),
        F::GroupName => one(Val::Str(&e.process.group)),
        F::GroupGid => one(Val::int(i64::from(e.process.gid))),
        F::CapEffective => one(Val::Owned(capabilities(e.process.cap_effective).into())),
        F::ContainerId => one(match e.container {
            // Falco's short form: the first 12 hex digits; `host` outside any container.
            Some(c) => Val::Str(c.id.get(..12).unwrap_or(&c.id)),
            None => Val::Str("host"),
        }),
        F::ContainerName => one(match e.container {
            Some(c) => Val::Str(&c.name),
            None => Val::Str("host"),
        }),
        F::ContainerImageRepository => opt(e.container, |c| Val::Str(&c.image_repository)),
        F::ContainerPrivileged => e
            .container
            .and_then(|c| c.privileged)
            .map_or(Values::NotAvailable, |p| one(Val::bool(p))),
        F::K8sNs => opt(e.pod, |p| Val::Str(&p.namespace)),
        F::K8sPod => opt(e.pod, |p| Val::Str(&p.name)),
        F::K8sPodUid => opt(e.pod, |p| Val::Str(&p.uid)),
        F::Tenant => opt(e.pod.filter(|p| !p.tenant.is_empty()), |p| {
            Val::Str(&p.tenant)
        }),
        F::FdName => opt(e.fd, |fd| Val::Str(&fd.name)),
        F::FdNum => opt(e.fd, |fd| Val::int(fd.num)),
        F::FdTypeChar => opt(e.fd, |fd| {
            let mut b = [0u8; 4];
            Val::Owned(fd.typechar.encode_utf8(&mut b).to_owned().into())
        }),
        F::FdType => opt(e.fd, |fd| {
            Val::Str(match fd.typechar {
                'f' => "file",
                'd' => "directory",
                '4' => "ipv4",
                '6' => "ipv6",
                'u' => "unix",
                'p' => "pipe",
                'e' => "event",
                's' => "signalfd",
                'l' => "eventpoll",
                'i' => "inotify",
                'b' => "bpf",
                'm' => "memfd",
                _ => "unknown",
            })
        }),
        F::FdDirectory => opt(e.fd, |fd| {
            Val::Str(match fd.name.rfind('/') {
                Some(0) => "/",
                Some(i) => &fd.name[..i],
                None => "",
            })
        }),
        F::FdFilename => opt(e.fd, |fd| {
            Val::Str(fd.name.rsplit('/').next().unwrap_or(&fd.name))
        }),
    }
}

impl Source for Syscall {
    type Event<'e> = SyscallEvent<'e>;
    type Field = SyscallField;

    fn name(&self) -> &str {
        "syscall"
    }

    fn field(&self, name: &str, arg: Option<&str>) -> Result<SyscallField, FieldError> {
        resolve(name, arg).map(SyscallField)
    }

    fn extract<'e>(&self, field: &SyscallField, event: &Self::Event<'e>) -> Values<'e> {
        extract(&field.0, event)
    }

    fn timestamp(&self, event: &SyscallEvent<'_>) -> Option<jiff::Timestamp> {
        jiff::Timestamp::from_nanosecond(i128::from(event.time_ns)).ok()
    }

    fn known_family(&self, name: &str) -> bool {
        // Falco's field classes for system call events, and KubeBid's own.
        const FAMILIES: &[&str] = &[
            "evt",
            "proc",
            "thread",
            "user",
            "group",
            "container",
            "k8s",
            "k8smeta",
            "fd",
            "fdlist",
            "fs",
            "syslog",
            "span",
            "mesos",
            "cgroup",
            "kubebid",
        ];
        name.split_once('.')
            .is_some_and(|(family, rest)| !rest.is_empty() && FAMILIES.contains(&family))
    }
}
