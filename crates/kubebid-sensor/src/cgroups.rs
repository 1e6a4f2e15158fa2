//! Cgroup v2 IDs (what the kernel reports with each event) to cgroup paths: the ID is the cgroup
//! directory's inode number under `/sys/fs/cgroup`. Looked up in an index, rebuilt when an ID is not in it
//! (a pod started since), at most once per second.

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The index of one cgroup v2 mount.
pub struct CgroupIndex {
    root: PathBuf,
    paths: HashMap<u64, String>,
    built: Option<Instant>,
}

impl CgroupIndex {
    /// For the cgroup v2 hierarchy mounted at `root` (`/sys/fs/cgroup`).
    #[must_use]
    pub fn new(root: &Path) -> Self {
        Self {
            root: root.to_owned(),
            paths: HashMap::new(),
            built: None,
        }
    }

    fn rebuild(&mut self) {
        self.paths.clear();
        let mut stack = vec![self.root.clone()];
        while let Some(dir) = stack.pop() {
            let Ok(meta) = std::fs::metadata(&dir) else {
                continue;
            };
            let rel = dir
                .strip_prefix(&self.root)
                .map(|r| format!("/{}", r.display()))
                .unwrap_or_default();
            self.paths.insert(meta.ino(), rel);
            if let Ok(entries) = std::fs::read_dir(&dir) {
                for e in entries.flatten() {
                    if e.file_type().is_ok_and(|t| t.is_dir()) {
                        stack.push(e.path());
                    }
                }
            }
        }
        self.built = Some(Instant::now());
    }

    /// The path of cgroup `id` (`/kubepods.slice/…`), if it exists.
    pub fn path(&mut self, id: u64) -> Option<&str> {
        if !self.paths.contains_key(&id)
            && self
                .built
                .is_none_or(|t| t.elapsed() >= Duration::from_secs(1))
        {
            self.rebuild();
        }
        self.paths.get(&id).map(String::as_str)
    }
}
