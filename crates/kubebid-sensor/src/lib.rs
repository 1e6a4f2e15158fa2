//! KubeBid's node sensor: BPF programs on the kernel's tracepoints ([`probe`]), their records decoded
//! ([`event`]), cgroup IDs to paths ([`cgroups`]), and a process's cgroup path to its pod, container and
//! runtime ([`cgroup`]).

pub mod cgroup;
pub mod cgroups;
pub mod event;
pub mod paths;
pub mod pods;
pub mod probe;
pub mod sensor;
