//! Cache partitions: one resctrl group per tenant on this node, with an exclusive run of L3 ways sized by
//! the tenant's share, and the tenant's pods' threads kept in it as pods come and go.
//!
//! Ways are handed out from the top of the mask in tenant-name order; the default group (the node and
//! every other pod) keeps the rest, at least the hardware's minimum. The default group's mask is narrowed
//! first, then each tenant's group gets its ways and mode `exclusive`, so no two masks overlap at any
//! moment the kernel checks. A tenant whose share no longer fits (too few ways or classes of service left)
//! gets no group and is reported; the others are not moved.
//!
//! Threads, not processes: resctrl moves the thread written to `tasks`, and a thread's children inherit
//! its group, so the pod's existing threads (from `cgroup.threads`) are placed and what they start follows.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write as _;
use std::path::{Path, PathBuf};

use crate::checks::CacheInfo;

/// The prefix of KubeBid's groups; other groups in the resctrl tree are left alone.
pub const GROUP_PREFIX: &str = "kubebid-";

/// One tenant's ways.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Partition {
    pub tenant: String,
    /// The capacity bit mask.
    pub mask: u64,
}

/// Where every tenant's ways go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    pub partitions: Vec<Partition>,
    /// What the default group keeps.
    pub default_mask: u64,
    /// Tenants that did not fit, and why.
    pub refused: Vec<(String, String)>,
}

/// The ways of a `share` percent of `bits`, at least `min`.
#[must_use]
pub fn ways(share: u8, bits: u32, min: u32) -> u32 {
    (u32::from(share) * bits).div_ceil(100).max(min)
}

/// Plans the partitions of `shares` (tenant, percent) on a cache described by `info`.
#[must_use]
pub fn plan(shares: &BTreeMap<String, u8>, info: &CacheInfo) -> Plan {
    let bits = info.cbm_bits.min(63);
    let full: u64 = (1u64 << bits) - 1;
    let min = info.min_cbm_bits.max(1);
    // The default group keeps at least the minimum, at the bottom of the mask.
    let mut top = bits;
    let floor = min;
    let mut partitions = Vec::new();
    let mut refused = Vec::new();
    // One class of service is the default group's.
    let mut classes = info.closids.saturating_sub(1);
    for (tenant, &share) in shares {
        let w = ways(share, bits, min);
        if classes == 0 {
            refused.push((
                tenant.clone(),
                format!("no class of service left ({} in all)", info.closids),
            ));
            continue;
        }
        if top < floor + w {
            refused.push((
                tenant.clone(),
                format!(
                    "{share}% is {w} of {bits} ways; {} are left beside the node's {floor}",
                    top - floor
                ),
            ));
            continue;
        }
        top -= w;
        classes -= 1;
        partitions.push(Partition {
            tenant: tenant.clone(),
            mask: ((1u64 << w) - 1) << top,
        });
    }
    let taken = partitions.iter().fold(0, |m, p| m | p.mask);
    Plan {
        partitions,
        default_mask: full & !taken,
        refused,
    }
}

/// A resctrl file system (the node's `/sys/fs/resctrl`, or a fixture tree laid out like one).
#[derive(Clone, Debug)]
pub struct Resctrl {
    root: PathBuf,
}

fn write(path: &Path, text: &str) -> Result<(), String> {
    std::fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))
}

impl Resctrl {
    #[must_use]
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    fn group(&self, tenant: &str) -> PathBuf {
        self.root.join(format!("{GROUP_PREFIX}{tenant}"))
    }

    /// The L3 cache IDs (one per cache domain, usually per socket), from the default group's schemata.
    ///
    /// # Errors
    /// No readable `schemata` with an `L3:` line.
    pub fn cache_ids(&self) -> Result<Vec<String>, String> {
        let path = self.root.join("schemata");
        let text =
            std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let line = text
            .lines()
            .find_map(|l| l.trim().strip_prefix("L3:"))
            .ok_or_else(|| format!("{}: no L3 line", path.display()))?;
        Ok(line
            .split(';')
            .filter_map(|d| d.split_once('=').map(|(id, _)| id.trim().to_owned()))
            .collect())
    }

    fn schemata(ids: &[String], mask: u64) -> String {
        let domains: Vec<String> = ids.iter().map(|id| format!("{id}={mask:x}")).collect();
        format!("L3:{}\n", domains.join(";"))
    }

    /// Brings the groups to `plan`: the default group narrowed, each tenant's group made (or kept) with its
    /// mask, exclusive, and KubeBid's groups of tenants no longer planned removed (their threads return to
    /// the default group).
    ///
    /// # Errors
    /// Every write the kernel refused, named.
    pub fn apply(&self, plan: &Plan) -> Result<(), Vec<String>> {
        let ids = self.cache_ids().map_err(|e| vec![e])?;
        let mut errors = Vec::new();
        if let Err(e) = write(
            &self.root.join("schemata"),
            &Self::schemata(&ids, plan.default_mask),
        ) {
            errors.push(e);
        }
        let planned: BTreeSet<&str> = plan.partitions.iter().map(|p| p.tenant.as_str()).collect();
        for stale in self.groups() {
            if !planned.contains(stale.as_str()) {
                let dir = self.group(&stale);
                // The kernel's groups are removed with rmdir alone; a fixture's holds plain files.
                let removed = std::fs::remove_dir(&dir).or_else(|_| std::fs::remove_dir_all(&dir));
                if let Err(e) = removed {
                    errors.push(format!("{}: {e}", dir.display()));
                }
            }
        }
        for p in &plan.partitions {
            let dir = self.group(&p.tenant);
            if !dir.exists()
                && let Err(e) = std::fs::create_dir(&dir)
            {
                errors.push(format!("{}: {e}", dir.display()));
                continue;
            }
            if let Err(e) = write(&dir.join("schemata"), &Self::schemata(&ids, p.mask)) {
                errors.push(e);
                continue;
            }
            if let Err(e) = write(&dir.join("mode"), "exclusive\n") {
                errors.push(e);
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }

    /// The tenants KubeBid has groups for.
    #[must_use]
    pub fn groups(&self) -> Vec<String> {
        let mut out: Vec<String> = std::fs::read_dir(&self.root)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.path().is_dir())
            .filter_map(|e| {
                e.file_name()
                    .to_str()
                    .and_then(|n| n.strip_prefix(GROUP_PREFIX))
                    .map(str::to_owned)
            })
            .collect();
        out.sort();
        out
    }

    /// The threads in a tenant's group.
    #[must_use]
    pub fn tasks(&self, tenant: &str) -> BTreeSet<u32> {
        std::fs::read_to_string(self.group(tenant).join("tasks"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect()
    }

    /// Moves `threads` into the tenant's group (those already there are skipped); how many moved. A thread
    /// that exited meanwhile is not an error.
    ///
    /// # Errors
    /// The group is missing, or the kernel refused a live thread.
    pub fn place(&self, tenant: &str, threads: &BTreeSet<u32>) -> Result<usize, String> {
        let path = self.group(tenant).join("tasks");
        if !self.group(tenant).is_dir() {
            return Err(format!("{}: no such group", self.group(tenant).display()));
        }
        let there = self.tasks(tenant);
        let mut moved = 0;
        for tid in threads.difference(&there) {
            // One thread per write: resctrl takes a single ID each time.
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .map_err(|e| format!("{}: {e}", path.display()))?;
            match f.write_all(format!("{tid}\n").as_bytes()) {
                Ok(()) => moved += 1,
                Err(e) if e.raw_os_error() == Some(3) => {} // ESRCH: the thread exited
                Err(e) => return Err(format!("{}: thread {tid}: {e}", path.display())),
            }
        }
        Ok(moved)
    }
}

/// The pods' cgroup directories under the node's cgroup v2 root, by pod UID.
#[must_use]
pub fn pod_cgroups(cgroup_root: &Path) -> BTreeMap<String, PathBuf> {
    let mut out = BTreeMap::new();
    let mut stack: Vec<(PathBuf, usize)> = vec![(cgroup_root.to_path_buf(), 0)];
    while let Some((dir, depth)) = stack.pop() {
        for e in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = e.path();
            if !path.is_dir() {
                continue;
            }
            let Some(name) = e.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            if depth == 0 && !name.starts_with("kubepods") {
                continue;
            }
            let rel = path
                .strip_prefix(cgroup_root)
                .map(|r| format!("/{}", r.display()))
                .unwrap_or_default();
            match kubebid_sensor::cgroup::attribute(&rel) {
                kubebid_sensor::cgroup::Attribution::Pod { pod_uid, .. } => {
                    out.entry(pod_uid).or_insert(path);
                }
                kubebid_sensor::cgroup::Attribution::Node if depth < 3 => {
                    stack.push((path, depth + 1));
                }
                _ => {}
            }
        }
    }
    out
}

/// Every thread in a cgroup and the cgroups below it (`cgroup.threads`, or `cgroup.procs` where a cgroup
/// has no thread list).
#[must_use]
pub fn threads_in(dir: &Path) -> BTreeSet<u32> {
    let mut out = BTreeSet::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let list = std::fs::read_to_string(d.join("cgroup.threads"))
            .or_else(|_| std::fs::read_to_string(d.join("cgroup.procs")))
            .unwrap_or_default();
        out.extend(list.lines().filter_map(|l| l.trim().parse::<u32>().ok()));
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            if e.path().is_dir() {
                stack.push(e.path());
            }
        }
    }
    out
}

/// Keeps every planned tenant's pods on this node in its group: `pods` are the node's pods (UID →
/// namespace), `tenant_of` the tenancy. Returns how many threads moved, and what failed.
pub fn place_pods(
    resctrl: &Resctrl,
    cgroup_root: &Path,
    pods: &BTreeMap<String, String>,
    tenant_of: &dyn Fn(&str) -> Option<String>,
    planned: &BTreeSet<String>,
) -> (usize, Vec<String>) {
    let dirs = pod_cgroups(cgroup_root);
    let mut by_tenant: BTreeMap<String, BTreeSet<u32>> = BTreeMap::new();
    for (uid, namespace) in pods {
        let Some(tenant) = tenant_of(namespace).filter(|t| planned.contains(t)) else {
            continue;
        };
        if let Some(dir) = dirs.get(uid) {
            by_tenant.entry(tenant).or_default().extend(threads_in(dir));
        }
    }
    let mut moved = 0;
    let mut errors = Vec::new();
    for (tenant, threads) in &by_tenant {
        match resctrl.place(tenant, threads) {
            Ok(n) => moved += n,
            Err(e) => errors.push(e),
        }
    }
    (moved, errors)
}
