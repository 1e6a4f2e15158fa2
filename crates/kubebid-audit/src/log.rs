//! One tenant's append-only log: segments of framed records, the Merkle frontier, signed tree heads.
//!
//! Appending is staged in memory ([`TenantLog::stage`], [`TenantLog::seal`]), written with one `write`
//! ([`TenantLog::write`]) and made durable with one `fdatasync` ([`TenantLog::sync`]); the group commit
//! in [`crate::store`] does this for every tenant a round of batches touched, then acknowledges them.
//! A tree head is written after the events it covers, in the same write, so at rest every event is
//! covered by a signed head; on opening, anything after the last head (never acknowledged) is cut.

use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::head::{SignedHead, Signer};
use crate::merkle::{Frontier, leaf_hash};
use crate::segment::{self, FormatError, Header, Kind, Record, Records};

/// How segments rotate and how long they are kept.
#[derive(Clone, Debug)]
pub struct LogConfig {
    /// A segment is closed once it reaches this size.
    pub max_segment_bytes: u64,
    /// A segment is closed once it is this old.
    pub max_segment_age: Duration,
    /// Segments whose every event is older than this are deleted (`None`: kept forever).
    pub retention: Option<Duration>,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            max_segment_bytes: 64 << 20,
            max_segment_age: Duration::from_secs(3600),
            retention: None,
        }
    }
}

/// Why a log could not be opened or written.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("tenant {tenant}, segment {segment}: {error}")]
    Format {
        tenant: String,
        segment: String,
        error: FormatError,
    },
    #[error("tenant {tenant}, segment {segment}, event {index}: {what}")]
    Integrity {
        tenant: String,
        segment: String,
        index: u64,
        what: String,
    },
    #[error("signing the tree head: {0}")]
    Sign(#[from] crate::head::KeyError),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> LogError + '_ {
    move |source| LogError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// What opening found and repaired.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Recovery {
    /// Bytes of a torn last record that were cut.
    pub torn_bytes: u64,
    /// Events after the last signed head (written, never acknowledged) that were cut.
    pub unsigned_events: u64,
}

#[derive(Clone, Debug)]
struct SegmentInfo {
    first_index: u64,
    created_ms: i64,
    path: PathBuf,
}

/// One tenant's log, open for appending.
pub struct TenantLog {
    tenant: String,
    dir: PathBuf,
    config: LogConfig,
    frontier: Frontier,
    oldest: u64,
    last_head: Option<SignedHead>,
    segments: Vec<SegmentInfo>,
    file: File,
    /// Bytes written to the current segment, and of them those known durable.
    file_len: u64,
    durable_len: u64,
    /// Encoded records not yet written, and the state before this round (to roll back).
    pending: Vec<u8>,
    before: Option<(Frontier, Option<SignedHead>)>,
}

/// The segments in `dir`, sorted by first index.
pub fn list_segments(dir: &Path) -> Result<Vec<(u64, PathBuf)>, LogError> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io(dir))? {
        let entry = entry.map_err(io(dir))?;
        if let Some(first) = entry
            .file_name()
            .to_str()
            .and_then(segment::parse_file_name)
        {
            out.push((first, entry.path()));
        }
    }
    out.sort_by_key(|(first, _)| *first);
    Ok(out)
}

impl TenantLog {
    /// Opens (or creates) `tenant`'s log in `dir`, checks it against `signer`'s key, cuts a torn tail and
    /// any events after the last signed head, and reports what it cut.
    pub fn open(
        dir: &Path,
        tenant: &str,
        config: LogConfig,
        signer: &dyn Signer,
        now_ms: i64,
    ) -> Result<(Self, Recovery), LogError> {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let key = signer.public_key();
        let found = list_segments(dir)?;
        let mut recovery = Recovery::default();
        let mut segments = Vec::with_capacity(found.len());
        let mut frontier = None::<Frontier>;
        let mut last_head = None;
        let mut cut_at = None::<(PathBuf, u64)>;
        let count = found.len();
        for (i, (first, path)) in found.into_iter().enumerate() {
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let fmt = |error| LogError::Format {
                tenant: tenant.to_owned(),
                segment: name.clone(),
                error,
            };
            let bytes = std::fs::read(&path).map_err(io(&path))?;
            let (header, start) = segment::decode_header(&bytes).map_err(fmt)?;
            let integrity = |index, what: String| LogError::Integrity {
                tenant: tenant.to_owned(),
                segment: name.clone(),
                index,
                what,
            };
            if header.tenant != tenant || header.first_index != first {
                return Err(integrity(
                    first,
                    "the header names another tenant or index".into(),
                ));
            }
            let f = match frontier.take() {
                None => header.frontier.clone(),
                Some(f) if f == header.frontier => f,
                Some(f) => {
                    return Err(integrity(
                        f.size(),
                        "the segment does not continue the one before it".into(),
                    ));
                }
            };
            let mut f = f;
            let mut after_head = start as u64;
            let mut events_after_head = 0u64;
            let mut records = Records::new(&bytes, start);
            while let Some(item) = records.next() {
                match item {
                    Ok((_, Record::Event(e))) => {
                        f.push(leaf_hash(e));
                        events_after_head += 1;
                    }
                    Ok((offset, Record::Head(h))) => {
                        if h.tree_size != f.size() || h.root != f.root() {
                            return Err(integrity(
                                f.size(),
                                "a tree head does not match the events before it".into(),
                            ));
                        }
                        if !h.verify(tenant, &key) {
                            return Err(integrity(
                                f.size(),
                                "a tree head's signature does not verify".into(),
                            ));
                        }
                        after_head = (offset + segment::RECORD_OVERHEAD + h.encode().len()) as u64;
                        events_after_head = 0;
                        last_head = Some(h);
                    }
                    Err(e) if e.is_torn() && i + 1 == count => {
                        recovery.torn_bytes = (bytes.len() - records.offset()) as u64;
                    }
                    Err(e) => return Err(fmt(e)),
                }
            }
            if i + 1 == count && (events_after_head > 0 || recovery.torn_bytes > 0) {
                recovery.unsigned_events = events_after_head;
                // Roll the frontier back to the last head of this segment.
                let mut back = header.frontier.clone();
                let keep = f.size() - events_after_head;
                for item in Records::new(&bytes, start) {
                    if back.size() >= keep {
                        break;
                    }
                    if let Ok((_, Record::Event(e))) = item {
                        back.push(leaf_hash(e));
                    }
                }
                f = back;
                cut_at = Some((path.clone(), after_head));
            }
            frontier = Some(f);
            segments.push(SegmentInfo {
                first_index: first,
                created_ms: header.created_ms,
                path,
            });
        }
        if let Some((path, len)) = &cut_at {
            let file = OpenOptions::new()
                .write(true)
                .open(path)
                .map_err(io(path))?;
            file.set_len(*len).map_err(io(path))?;
            file.sync_all().map_err(io(path))?;
        }
        let frontier = frontier.unwrap_or_default();
        let oldest = segments.first().map_or(0, |s| s.first_index);
        let file = if let Some(cur) = segments.last() {
            OpenOptions::new()
                .append(true)
                .open(&cur.path)
                .map_err(io(&cur.path))?
        } else {
            let (file, info) = create_segment(dir, tenant, &frontier, now_ms)?;
            segments.push(info);
            file
        };
        let file_len = file.metadata().map_err(io(dir))?.len();
        let mut log = Self {
            tenant: tenant.to_owned(),
            dir: dir.to_owned(),
            config,
            frontier,
            oldest,
            last_head,
            segments,
            file,
            file_len,
            durable_len: file_len,
            pending: Vec::new(),
            before: None,
        };
        log.rotate_if_due(now_ms)?;
        Ok((log, recovery))
    }

    /// The tenant.
    #[must_use]
    pub fn tenant(&self) -> &str {
        &self.tenant
    }

    /// Events in the log (including staged ones).
    #[must_use]
    pub fn size(&self) -> u64 {
        self.frontier.size()
    }

    /// The last signed head written.
    #[must_use]
    pub fn last_head(&self) -> Option<&SignedHead> {
        self.last_head.as_ref()
    }

    /// Stages one event; returns its index.
    pub fn stage(&mut self, event: &[u8]) -> u64 {
        if self.before.is_none() {
            self.before = Some((self.frontier.clone(), self.last_head.clone()));
        }
        segment::encode_record(Kind::Event, event, &mut self.pending);
        let index = self.frontier.size();
        self.frontier.push(leaf_hash(event));
        index
    }

    /// Stages a signed head over everything staged so far.
    pub fn seal(&mut self, signer: &dyn Signer, now_ms: i64) -> Result<SignedHead, LogError> {
        let root = self.frontier.root();
        let size = self.frontier.size();
        let message = SignedHead::message(&self.tenant, size, self.oldest, now_ms, &root);
        let head = SignedHead {
            tree_size: size,
            oldest: self.oldest,
            timestamp_ms: now_ms,
            root,
            signature: signer.sign(&message)?,
        };
        segment::encode_record(Kind::Head, &head.encode(), &mut self.pending);
        self.last_head = Some(head.clone());
        Ok(head)
    }

    /// Writes what is staged (not yet durable).
    pub fn write(&mut self) -> Result<(), LogError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let path = self.current_path().to_owned();
        if let Err(e) = self.file.write_all(&self.pending) {
            self.rollback();
            return Err(io(&path)(e));
        }
        self.file_len += self.pending.len() as u64;
        self.pending.clear();
        Ok(())
    }

    /// Makes what was written durable.
    pub fn sync(&mut self) -> Result<(), LogError> {
        let path = self.current_path().to_owned();
        self.file.sync_data().map_err(io(&path))
    }

    /// Marks the round durable everywhere: it will not be rolled back.
    pub fn committed(&mut self) {
        self.durable_len = self.file_len;
        self.before = None;
    }

    /// Forgets the round (staged or written, not acknowledged) and cuts the file back to its last
    /// durable length, after a failed write or sync here or in another log of the round.
    pub fn rollback(&mut self) {
        self.pending.clear();
        if let Some((f, head)) = self.before.take() {
            self.frontier = f;
            self.last_head = head;
        }
        if self.file.set_len(self.durable_len).is_ok() {
            self.file_len = self.durable_len;
        }
    }

    fn current_path(&self) -> &Path {
        self.segments
            .last()
            .map_or(self.dir.as_path(), |s| s.path.as_path())
    }

    /// Starts a new segment when the current one is full or old enough (only between commits).
    pub fn rotate_if_due(&mut self, now_ms: i64) -> Result<(), LogError> {
        let Some(cur) = self.segments.last() else {
            return Ok(());
        };
        let age = Duration::from_millis(u64::try_from(now_ms - cur.created_ms).unwrap_or(0));
        let has_events = cur.first_index < self.frontier.size();
        if !self.pending.is_empty()
            || !has_events
            || (self.file_len < self.config.max_segment_bytes && age < self.config.max_segment_age)
        {
            return Ok(());
        }
        let (file, info) = create_segment(&self.dir, &self.tenant, &self.frontier, now_ms)?;
        self.file_len = file.metadata().map_err(io(&info.path))?.len();
        self.durable_len = self.file_len;
        self.file = file;
        self.segments.push(info);
        Ok(())
    }

    /// Changes how long this log's segments are kept (a tenant's own retention, or the sink's default).
    pub fn set_retention(&mut self, retention: Option<Duration>) {
        self.config.retention = retention;
    }

    /// Deletes the segments retention no longer keeps: those whose successor began before the horizon.
    /// Returns how many were deleted. The next signed head carries the new oldest index.
    pub fn prune(&mut self, now_ms: i64) -> Result<usize, LogError> {
        let Some(keep) = self.config.retention else {
            return Ok(0);
        };
        let horizon = now_ms.saturating_sub(i64::try_from(keep.as_millis()).unwrap_or(i64::MAX));
        let mut deleted = 0;
        while self.segments.len() > 1 && self.segments[1].created_ms < horizon {
            let old = self.segments.remove(0);
            std::fs::remove_file(&old.path).map_err(io(&old.path))?;
            deleted += 1;
        }
        if deleted > 0 {
            self.oldest = self.segments.first().map_or(self.oldest, |s| s.first_index);
            sync_dir(&self.dir)?;
        }
        Ok(deleted)
    }
}

fn create_segment(
    dir: &Path,
    tenant: &str,
    frontier: &Frontier,
    now_ms: i64,
) -> Result<(File, SegmentInfo), LogError> {
    let path = dir.join(segment::file_name(frontier.size()));
    let header = Header {
        tenant: tenant.to_owned(),
        first_index: frontier.size(),
        created_ms: now_ms,
        frontier: frontier.clone(),
    };
    let mut file = OpenOptions::new()
        .create_new(true)
        .append(true)
        .open(&path)
        .map_err(io(&path))?;
    file.write_all(&segment::encode_header(&header))
        .map_err(io(&path))?;
    file.sync_all().map_err(io(&path))?;
    sync_dir(dir)?;
    Ok((
        file,
        SegmentInfo {
            first_index: header.first_index,
            created_ms: now_ms,
            path,
        },
    ))
}

fn sync_dir(dir: &Path) -> Result<(), LogError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(io(dir))
}
