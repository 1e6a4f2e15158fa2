//! The BPF side, loaded with aya: the programs built from `bpf/sensor.bpf.c` at build time, attached to
//! `sched_process_exec` and the raw system call entry and exit tracepoints (BTF-typed: no tracefs, no
//! perf events). The entry program looks the call up in `wanted`, which user space fills with the calls
//! some loaded rule needs, and returns at once for any other: only those leave the kernel. (Per-call
//! tracepoints or fexit would spare other calls even that lookup; this machine's kernel refuses both
//! attachments, perf-event links with EACCES and trampolines with EPERM.)

use std::os::fd::AsFd as _;
use std::time::Duration;

use aya::maps::lpm_trie::{Key, LpmTrie};
use aya::maps::{Array, MapData, RingBuf};
use aya::programs::BtfTracePoint;

/// The BPF object compiled by the build (empty when the build had no clang).
static OBJECT: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/sensor.bpf.o"));

/// Why the probe could not start.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("this build has no BPF programs (clang and libbpf-dev were missing when it was built)")]
    NotBuilt,
    #[error("the kernel cannot run the sensor here: {0}")]
    Unsupported(String),
    #[error("{0}")]
    Load(String),
}

fn load_err(what: &str, e: impl std::fmt::Display) -> ProbeError {
    ProbeError::Load(format!("{what}: {e}"))
}

/// The loaded programs and their ring buffer.
pub struct Probe {
    ebpf: aya::Ebpf,
    ring: RingBuf<MapData>,
}

impl Probe {
    /// Loads and attaches the programs: execs always, and the system calls named in `wanted` (Falco's
    /// `evt.type` names; ones the sensor cannot watch are ignored) let out of the kernel. Opens leave it
    /// only for the paths in `watch` (or spellings the kernel cannot judge; see [`crate::paths`]).
    ///
    /// # Errors
    /// No programs in this build, or the kernel refused them (no BPF, no BTF, not privileged).
    pub fn load(wanted: &[&str], watch: &crate::paths::WatchSet) -> Result<Self, ProbeError> {
        Self::load_ignoring(wanted, watch, Some(std::process::id()))
    }

    /// [`Probe::load`], with the system calls of process `ignore` kept in the kernel: the sensor's own (by
    /// default: each call it makes to read its maps would otherwise be an event to handle, which makes
    /// another). Its PID must be as the kernel's first PID namespace sees it (the `DaemonSet` runs in the
    /// host's). `None` reports every process.
    ///
    /// # Errors
    /// As [`Probe::load`].
    pub fn load_ignoring(
        wanted: &[&str],
        watch: &crate::paths::WatchSet,
        ignore: Option<u32>,
    ) -> Result<Self, ProbeError> {
        if OBJECT.is_empty() {
            return Err(ProbeError::NotBuilt);
        }
        if !std::path::Path::new("/sys/kernel/btf/vmlinux").exists() {
            return Err(ProbeError::Unsupported(
                "no BTF (/sys/kernel/btf/vmlinux)".into(),
            ));
        }
        if !nix::unistd::geteuid().is_root() {
            return Err(ProbeError::Unsupported(
                "not root (or CAP_BPF and CAP_PERFMON)".into(),
            ));
        }
        let mut ebpf = aya::Ebpf::load(OBJECT).map_err(|e| load_err("loading the object", e))?;
        let btf = aya::Btf::from_sys_fs().map_err(|e| load_err("the kernel's BTF", e))?;
        let exec: &mut BtfTracePoint = ebpf
            .program_mut("on_exec")
            .ok_or_else(|| load_err("on_exec", "not in the object"))?
            .try_into()
            .map_err(|e| load_err("on_exec", e))?;
        exec.load("sched_process_exec", &btf)
            .map_err(|e| load_err("on_exec", e))?;
        exec.attach().map_err(|e| load_err("on_exec", e))?;
        let calls = wanted
            .iter()
            .any(|w| crate::event::SYSCALLS.iter().any(|(n, _)| n == w));
        // The system call tracepoints put every call of every process on the kernel's slow path: attached
        // only when some rule needs a call.
        let tracepoints: &[(&str, &str)] = if calls {
            &[("on_enter", "sys_enter"), ("on_exit", "sys_exit")]
        } else {
            &[]
        };
        for &(program, tracepoint) in tracepoints {
            let p: &mut BtfTracePoint = ebpf
                .program_mut(program)
                .ok_or_else(|| load_err(program, "not in the object"))?
                .try_into()
                .map_err(|e| load_err(program, e))?;
            p.load(tracepoint, &btf).map_err(|e| load_err(program, e))?;
            p.attach().map_err(|e| load_err(program, e))?;
        }
        {
            let map = ebpf
                .map_mut("wanted")
                .ok_or_else(|| load_err("wanted", "no such map"))?;
            let mut wanted_map: Array<&mut MapData, u8> =
                Array::try_from(map).map_err(|e| load_err("wanted", e))?;
            for name in wanted {
                if let Some((_, nr)) = crate::event::SYSCALLS.iter().find(|(n, _)| n == name) {
                    wanted_map
                        .set(*nr, 1, 0)
                        .map_err(|e| load_err("wanted", e))?;
                }
            }
        }
        {
            let map = ebpf
                .map_mut("self_tgid")
                .ok_or_else(|| load_err("self_tgid", "no such map"))?;
            let mut me: Array<&mut MapData, u32> =
                Array::try_from(map).map_err(|e| load_err("self_tgid", e))?;
            me.set(0, ignore.unwrap_or(0), 0)
                .map_err(|e| load_err("self_tgid", e))?;
        }
        {
            let map = ebpf
                .map_mut("paths")
                .ok_or_else(|| load_err("paths", "no such map"))?;
            let mut trie: LpmTrie<&mut MapData, [u8; crate::paths::MAX_PATH], u8> =
                LpmTrie::try_from(map).map_err(|e| load_err("paths", e))?;
            for (bits, data) in watch.trie_entries() {
                trie.insert(&Key::new(bits, data), 1, 0)
                    .map_err(|e| load_err("paths", e))?;
            }
        }
        let ring = RingBuf::try_from(
            ebpf.take_map("events")
                .ok_or_else(|| load_err("events", "no such map"))?,
        )
        .map_err(|e| load_err("events", e))?;
        Ok(Self { ebpf, ring })
    }

    /// Waits up to `timeout` for records and hands each to `f`; how many there were.
    pub fn poll(&mut self, timeout: Duration, mut f: impl FnMut(&[u8])) -> usize {
        let mut n = 0;
        while let Some(item) = self.ring.next() {
            f(&item);
            n += 1;
        }
        if n == 0 {
            let ms = u16::try_from(timeout.as_millis()).unwrap_or(u16::MAX);
            let mut fds = [nix::poll::PollFd::new(
                self.ring.as_fd(),
                nix::poll::PollFlags::POLLIN,
            )];
            let _ = nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(ms));
            while let Some(item) = self.ring.next() {
                f(&item);
                n += 1;
            }
        }
        n
    }

    /// Records the kernel could not put in the ring buffer (it was full).
    #[must_use]
    pub fn lost(&self) -> u64 {
        self.ebpf
            .map("lost")
            .and_then(|m| Array::<&MapData, u64>::try_from(m).ok())
            .and_then(|a| a.get(&0, 0).ok())
            .unwrap_or(0)
    }
}
