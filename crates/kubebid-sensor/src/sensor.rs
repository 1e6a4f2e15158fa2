//! The user-space half: kernel records to rule events. Keeps the process tree (command lines, parents,
//! users), attributes each process to its container, pod, namespace and tenant through its cgroup, and
//! evaluates the `syscall` rules.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use kubebid_rules::{
    Alert, ContainerInfo, Engine, FdInfo, PodInfo, ProcessInfo, Scratch, Syscall, SyscallEvent,
};

use crate::cgroup::{Attribution, attribute};
use crate::cgroups::CgroupIndex;
use crate::event::{AT_FDCWD, F_DEEP, F_TRUNCATED, Kind, OPENS, Raw, arguments, syscall_name};
use crate::paths::{WatchSet, normalize, through_proc};

/// At most this many processes are remembered; past it, those no longer running are dropped.
const MAX_PROCESSES: usize = 65_536;
/// Ancestors looked up for `proc.aname[n]` and friends.
const MAX_ANCESTORS: usize = 8;

/// Where the mounted cgroup v2 hierarchy is (`/sys/fs/cgroup`, or `/sys/fs/cgroup/unified` on a hybrid
/// layout), from `/proc/self/mounts`.
#[must_use]
pub fn cgroup2_root() -> Option<PathBuf> {
    let mounts = std::fs::read_to_string("/proc/self/mounts").ok()?;
    mounts.lines().find_map(|l| {
        let mut f = l.split_whitespace();
        let (_, at, kind) = (f.next()?, f.next()?, f.next()?);
        (kind == "cgroup2").then(|| PathBuf::from(at))
    })
}

/// A running pod the sensor attributes processes to.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Pod {
    pub namespace: String,
    pub name: String,
    /// Container names by container ID (without the runtime's `containerd://` prefix).
    pub containers: HashMap<String, String>,
}

/// The tenant of a namespace.
pub type TenantOf = Box<dyn Fn(&str) -> Option<String> + Send>;

/// Turns records into alerts.
pub struct Sensor {
    engine: Engine<Syscall>,
    cgroups: CgroupIndex,
    processes: HashMap<u32, ProcessInfo>,
    users: HashMap<u32, String>,
    pods: HashMap<String, Pod>,
    tenant_of: TenantOf,
    hostname: String,
    scratch: Scratch,
    proc_root: PathBuf,
    watch: WatchSet,
    /// Opens the kernel let out that were not of a watched path once resolved (or could not be resolved).
    pub opens_dropped: u64,
}

fn read_users() -> HashMap<u32, String> {
    std::fs::read_to_string("/etc/passwd")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let mut f = l.split(':');
            let name = f.next()?;
            let uid = f.nth(1)?.parse().ok()?;
            Some((uid, name.to_owned()))
        })
        .collect()
}

impl Sensor {
    #[must_use]
    pub fn new(
        engine: Engine<Syscall>,
        cgroup_root: &Path,
        tenant_of: TenantOf,
        hostname: String,
    ) -> Self {
        Self {
            engine,
            cgroups: CgroupIndex::new(cgroup_root),
            processes: HashMap::new(),
            users: read_users(),
            pods: HashMap::new(),
            tenant_of,
            hostname,
            scratch: Scratch::new(),
            proc_root: PathBuf::from("/proc"),
            watch: WatchSet::defaults(),
            opens_dropped: 0,
        }
    }

    /// The paths whose opens are reported (the kernel's trie must hold the same set).
    pub fn set_watch(&mut self, watch: WatchSet) {
        self.watch = watch;
    }

    /// A link of `/proc/<pid>/` (`cwd`, `fd/3`), as the sensor reads it.
    fn proc_link(&self, pid: u32, what: &str) -> Option<String> {
        std::fs::read_link(self.proc_root.join(pid.to_string()).join(what))
            .ok()
            .map(|p| p.display().to_string())
    }

    /// The file an open named, in its plain spelling as the opening process sees it; `None` when it
    /// cannot be told (the process is gone and the kernel could not read the start).
    fn open_target(&self, raw: &Raw) -> Option<String> {
        let opener = raw.tgid;
        let mut path = if raw.flags & F_TRUNCATED != 0 {
            if raw.ret < 0 {
                return None;
            }
            self.proc_link(opener, &format!("fd/{}", raw.ret))?
        } else if raw.text.starts_with('/') {
            normalize(&raw.text)
        } else {
            let base = match &raw.start_dir {
                Some(d) if raw.flags & F_DEEP == 0 => d.clone(),
                _ => {
                    let dirfd = crate::event::dirfd(raw.args[0]);
                    if dirfd == AT_FDCWD {
                        self.proc_link(opener, "cwd")?
                    } else {
                        self.proc_link(opener, &format!("fd/{dirfd}"))?
                    }
                }
            };
            normalize(&format!("{base}/{}", raw.text))
        };
        // A magic link may lead to another (a cwd under /proc): a few hops at most.
        for _ in 0..4 {
            match through_proc(&path, opener, &mut |pid, what| self.proc_link(pid, what)) {
                None => break,
                Some(Some(p)) => path = p,
                Some(None) => return None,
            }
        }
        Some(path)
    }

    /// The rules' engine.
    #[must_use]
    pub fn engine(&self) -> &Engine<Syscall> {
        &self.engine
    }

    /// The running pods, by UID.
    pub fn set_pods(&mut self, pods: HashMap<String, Pod>) {
        self.pods = pods;
    }

    fn user(&self, uid: u32) -> String {
        self.users
            .get(&uid)
            .cloned()
            .unwrap_or_else(|| uid.to_string())
    }

    /// A process as `/proc` shows it, for one the sensor did not see start.
    fn read_proc(&self, pid: u32) -> Option<ProcessInfo> {
        let dir = self.proc_root.join(pid.to_string());
        let status = std::fs::read_to_string(dir.join("status")).ok()?;
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .map(|v| v.split_whitespace().map(str::to_owned).collect::<Vec<_>>())
                .unwrap_or_default()
        };
        let num = |v: Option<&String>| v.and_then(|s| s.parse::<u32>().ok()).unwrap_or(0);
        let uid = num(field("Uid:").first());
        let gid = num(field("Gid:").first());
        let cmdline = std::fs::read(dir.join("cmdline")).unwrap_or_default();
        Some(ProcessInfo {
            pid: i64::from(pid),
            ppid: i64::from(num(field("PPid:").first())),
            name: field("Name:").join(" "),
            exepath: std::fs::read_link(dir.join("exe"))
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
            argv: cmdline
                .split(|&b| b == 0)
                .filter(|a| !a.is_empty())
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect(),
            cwd: std::fs::read_link(dir.join("cwd"))
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
            uid,
            gid,
            loginuid: std::fs::read_to_string(dir.join("loginuid"))
                .ok()
                .and_then(|s| s.trim().parse::<u32>().ok())
                .filter(|&l| l != u32::MAX)
                .map_or(-1, i64::from),
            user: self.user(uid),
            ..ProcessInfo::default()
        })
    }

    fn remember(&mut self, p: ProcessInfo) {
        if self.processes.len() >= MAX_PROCESSES {
            let root = self.proc_root.clone();
            self.processes
                .retain(|pid, _| root.join(pid.to_string()).exists());
        }
        if let Ok(pid) = u32::try_from(p.pid) {
            self.processes.insert(pid, p);
        }
    }

    fn process(&mut self, pid: u32) -> Option<ProcessInfo> {
        if let Some(p) = self.processes.get(&pid) {
            return Some(p.clone());
        }
        let p = self.read_proc(pid)?;
        self.remember(p.clone());
        Some(p)
    }

    fn attribute(&mut self, cgroup: u64) -> (Option<ContainerInfo>, Option<PodInfo>) {
        let Some(path) = self.cgroups.path(cgroup) else {
            return (None, None);
        };
        match attribute(path) {
            Attribution::Container {
                pod_uid,
                container_id,
                ..
            } => {
                let pod = self.pods.get(&pod_uid);
                let container = ContainerInfo {
                    name: pod
                        .and_then(|p| p.containers.get(&container_id).cloned())
                        .unwrap_or_default(),
                    id: container_id,
                    ..ContainerInfo::default()
                };
                let pod = pod.map(|p| PodInfo {
                    namespace: p.namespace.clone(),
                    name: p.name.clone(),
                    uid: pod_uid.clone(),
                    tenant: (self.tenant_of)(&p.namespace).unwrap_or_default(),
                });
                (Some(container), pod)
            }
            _ => (None, None),
        }
    }

    /// The alerts of one kernel record, and the pod it happened in.
    pub fn handle(&mut self, raw: &Raw) -> Detected {
        let process = match raw.kind {
            Kind::Exec => {
                let p = ProcessInfo {
                    pid: i64::from(raw.tgid),
                    ppid: i64::from(raw.ppid),
                    name: raw.comm.clone(),
                    exepath: raw.text.clone(),
                    argv: raw.argv.clone(),
                    uid: raw.uid,
                    gid: raw.gid,
                    loginuid: -1,
                    user: self.user(raw.uid),
                    ..ProcessInfo::default()
                };
                self.remember(p.clone());
                p
            }
            Kind::Syscall => self.process(raw.tgid).unwrap_or_else(|| ProcessInfo {
                pid: i64::from(raw.tgid),
                ppid: i64::from(raw.ppid),
                name: raw.comm.clone(),
                uid: raw.uid,
                gid: raw.gid,
                loginuid: -1,
                user: self.user(raw.uid),
                ..ProcessInfo::default()
            }),
        };
        let mut ancestors = Vec::new();
        let mut next = u32::try_from(process.ppid).unwrap_or(0);
        while next > 1 && ancestors.len() < MAX_ANCESTORS {
            let Some(a) = self.process(next) else { break };
            next = u32::try_from(a.ppid).unwrap_or(0);
            ancestors.push(a);
        }
        let evt_type = syscall_name(raw.nr).unwrap_or("unknown");
        let fd = if raw.kind == Kind::Syscall && OPENS.contains(&evt_type) {
            match self.open_target(raw) {
                Some(name) if self.watch.matches(&name) => Some(FdInfo {
                    num: if raw.ret >= 0 { raw.ret } else { -1 },
                    name,
                    typechar: if raw.args[1] & 0o200_000 == 0 {
                        'f'
                    } else {
                        'd'
                    },
                }),
                _ => {
                    self.opens_dropped += 1;
                    return Detected::default();
                }
            }
        } else {
            None
        };
        let (container, pod) = self.attribute(raw.cgroup);
        let args = arguments(raw);
        let refs: Vec<&ProcessInfo> = ancestors.iter().collect();
        let event = SyscallEvent {
            time_ns: jiff::Timestamp::now()
                .as_nanosecond()
                .try_into()
                .unwrap_or(0),
            num: raw.boot_ns,
            evt_type,
            res: raw.ret,
            args: &args,
            open_flags: fd
                .as_ref()
                .map(|_| u32::try_from(raw.args[1] & 0xffff_ffff).unwrap_or(0)),
            process: &process,
            ancestors: &refs,
            fd: fd.as_ref(),
            container: container.as_ref(),
            pod: pod.as_ref(),
            hostname: &self.hostname,
        };
        let alerts = self.engine.alerts(&event, &mut self.scratch);
        Detected { alerts, pod }
    }
}

/// What one record raised.
#[derive(Debug, Default)]
pub struct Detected {
    pub alerts: Vec<Alert>,
    /// The pod the record's process runs in, when it is one of this node's pods.
    pub pod: Option<PodInfo>,
}

/// The sensor's metrics, registered under `kubebid_sensor`.
#[derive(Clone, Debug, Default)]
pub struct SensorFamilies {
    /// Records read from the kernel.
    pub events: prometheus_client::metrics::counter::Counter,
    /// Records that did not decode.
    pub malformed: prometheus_client::metrics::counter::Counter,
    /// Records the kernel could not queue (the ring buffer was full), as the kernel counts them.
    pub lost: prometheus_client::metrics::gauge::Gauge,
    /// Alerts raised, by rule.
    pub alerts: prometheus_client::metrics::family::Family<
        RuleLabels,
        prometheus_client::metrics::counter::Counter,
    >,
    /// Opens the kernel let out (a spelling it could not judge) that user space found unwatched.
    pub opens_dropped: prometheus_client::metrics::gauge::Gauge,
    /// Alerts an output could not queue, by output.
    pub alerts_dropped: OutputFamily,
    /// Deliveries an output's receiver did not acknowledge, by output.
    pub delivery_failures: OutputFamily,
    /// Alerts an output's receiver acknowledged, by output.
    pub alerts_delivered: OutputFamily,
}

/// Counters by alert output (`webhook`, `audit`).
pub type OutputFamily = prometheus_client::metrics::family::Family<
    OutputLabels,
    prometheus_client::metrics::counter::Counter,
>;

/// Labels of an output's count.
#[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
pub struct OutputLabels {
    pub output: String,
}

/// Labels of an alert count.
#[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
pub struct RuleLabels {
    pub rule: String,
}

impl kubebid_server::metrics::Component for SensorFamilies {
    const PREFIX: &'static str = "kubebid_sensor";

    fn register(r: &mut prometheus_client::registry::Registry) -> Self {
        let this = Self::default();
        r.register(
            "events",
            "Records read from the kernel",
            this.events.clone(),
        );
        r.register(
            "malformed",
            "Records from the kernel that did not decode",
            this.malformed.clone(),
        );
        r.register(
            "lost_events",
            "Records the kernel could not queue because the ring buffer was full",
            this.lost.clone(),
        );
        r.register("alerts", "Alerts raised, by rule", this.alerts.clone());
        r.register(
            "opens_dropped",
            "Opens the kernel passed whose resolved path is not watched",
            this.opens_dropped.clone(),
        );
        r.register(
            "alerts_dropped",
            "Alerts an output could not queue, by output",
            this.alerts_dropped.clone(),
        );
        r.register(
            "delivery_failures",
            "Deliveries an output's receiver did not acknowledge, by output",
            this.delivery_failures.clone(),
        );
        r.register(
            "alerts_delivered",
            "Alerts an output's receiver acknowledged, by output",
            this.alerts_delivered.clone(),
        );
        this
    }
}
