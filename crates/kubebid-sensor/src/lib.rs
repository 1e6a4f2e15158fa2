//! KubeBid's node sensor, the parts that need no kernel: which container, pod and runtime a process
//! belongs to, read from its cgroup path ([`cgroup`]).

pub mod cgroup;
