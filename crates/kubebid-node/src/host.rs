//! The node's file system as the agent reads it: `/` on the node, the host's root mounted into the
//! agent's container (`/host`), or a fixture tree in tests. Paths are written as the node names them
//! (`/etc/containerd/config.toml`) and shown that way in every message.

use std::path::{Path, PathBuf};

/// A configuration file that is present but wrong: where, and what.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}: {message}")]
pub struct ConfigError {
    /// The node's path of the file.
    pub file: String,
    /// From 1.
    pub line: usize,
    pub message: String,
}

/// The node's root.
#[derive(Clone, Debug)]
pub struct Host {
    root: PathBuf,
}

impl Host {
    #[must_use]
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// Where the node's `abs` is here.
    #[must_use]
    pub fn path(&self, abs: &str) -> PathBuf {
        self.root.join(abs.trim_start_matches('/'))
    }

    #[must_use]
    pub fn root(&self) -> &Path {
        &self.root
    }

    #[must_use]
    pub fn exists(&self, abs: &str) -> bool {
        self.path(abs).exists()
    }

    /// The file's text, `None` when it is absent.
    ///
    /// # Errors
    /// A file that is present but cannot be read.
    pub fn read(&self, abs: &str) -> Result<Option<String>, String> {
        match std::fs::read_to_string(self.path(abs)) {
            Ok(t) => Ok(Some(t)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(format!("{abs}: {e}")),
        }
    }

    /// A one-line file (a module parameter, a count), trimmed; `None` when absent or unreadable.
    #[must_use]
    pub fn value(&self, abs: &str) -> Option<String> {
        self.read(abs).ok().flatten().map(|s| s.trim().to_owned())
    }

    /// A kernel module parameter that is on (`Y` or `1`).
    #[must_use]
    pub fn param_on(&self, abs: &str) -> bool {
        matches!(self.value(abs).as_deref(), Some("Y" | "y" | "1"))
    }

    /// The CPU flags of `/proc/cpuinfo` (of its first processor).
    #[must_use]
    pub fn cpu_flags(&self) -> Vec<String> {
        self.value("/proc/cpuinfo")
            .unwrap_or_default()
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                (k.trim() == "flags").then(|| v.split_whitespace().map(str::to_owned).collect())
            })
            .unwrap_or_default()
    }

    /// Where a file system of type `fstype` is mounted on the node, from `/proc/mounts`.
    #[must_use]
    pub fn mount_of(&self, fstype: &str) -> Option<String> {
        self.value("/proc/mounts")?.lines().find_map(|l| {
            let mut f = l.split_whitespace();
            let (_, at, kind) = (f.next()?, f.next()?, f.next()?);
            (kind == fstype).then(|| at.to_owned())
        })
    }
}

/// The line (from 1) of byte offset `at` in `text`.
#[must_use]
pub fn line_at(text: &str, at: usize) -> usize {
    text.get(..at.min(text.len()))
        .map_or(1, |before| before.matches('\n').count() + 1)
}

/// Parses a TOML file, or says where it is broken.
///
/// # Errors
/// The file and line of the syntax error.
pub fn parse_toml(file: &str, text: &str) -> Result<toml::Table, ConfigError> {
    text.parse::<toml::Table>().map_err(|e| ConfigError {
        file: file.to_owned(),
        line: e.span().map_or(1, |s| line_at(text, s.start)),
        message: e.message().trim().to_owned(),
    })
}

/// The line on which `key` is set in a TOML text (its first `key =`), for messages about its value.
#[must_use]
pub fn toml_key_line(text: &str, key: &str) -> usize {
    text.lines()
        .position(|l| {
            let l = l.trim_start();
            l.strip_prefix(key)
                .is_some_and(|rest| rest.trim_start().starts_with('='))
        })
        .map_or(1, |i| i + 1)
}
