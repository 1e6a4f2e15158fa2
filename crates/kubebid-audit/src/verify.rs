//! Checks logs at rest: every event against the signed tree heads after it.
//!
//! A modified, removed or reordered event changes the root at every later head; an event appended
//! behind the sink's back is not covered by any head; a segment removed outside retention breaks the
//! chain of segment headers or the oldest index the last head signed; truncation behind the last head is
//! found against a head kept elsewhere (the sink's witness file, or heads given with `--heads`). Each
//! problem names the trail, the segment and the event index.

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::head::{PublicKey, SignedHead};
use crate::log::list_segments;
use crate::merkle::{Frontier, Hash, leaf_hash};
use crate::segment::{self, Record, Records};
use crate::store::{Trail, trail_dir};

/// One problem found.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct Problem {
    /// Segment file, or empty when the problem is about the whole trail.
    pub segment: String,
    /// The event index the problem is at.
    pub index: u64,
    pub what: String,
}

/// What was found in one trail.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TrailReport {
    pub trail: String,
    pub events: u64,
    pub heads: u64,
    /// Index of the oldest event kept.
    pub oldest: u64,
    pub last_head: Option<SignedHead>,
    pub problems: Vec<Problem>,
    /// Not failures: a torn last record (a write in progress or a crash the sink has not yet recovered).
    pub warnings: Vec<String>,
}

impl TrailReport {
    /// Whether the trail verified.
    #[must_use]
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }
}

/// The whole data directory's report.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub trails: Vec<TrailReport>,
    /// Logs the sink moved aside because they failed their checks on opening.
    pub damaged: Vec<PathBuf>,
}

impl Report {
    /// Whether everything verified.
    #[must_use]
    pub fn ok(&self) -> bool {
        self.damaged.is_empty() && self.trails.iter().all(TrailReport::ok)
    }

    /// Events checked.
    #[must_use]
    pub fn events(&self) -> u64 {
        self.trails.iter().map(|t| t.events).sum()
    }
}

/// The trails stored under `root`: the platform's and every tenant's, by name.
pub fn trails(root: &Path) -> std::io::Result<Vec<Trail>> {
    let mut out = Vec::new();
    if root.join("platform").is_dir() {
        out.push(Trail::Platform);
    }
    match std::fs::read_dir(root.join("tenants")) {
        Ok(dir) => {
            let mut names: Vec<String> = dir
                .flatten()
                .filter(|e| e.path().is_dir())
                .filter_map(|e| e.file_name().to_str().map(str::to_owned))
                .collect();
            names.sort();
            out.extend(names.into_iter().map(|n| Trail::Tenant(n.into())));
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    Ok(out)
}

/// The trail named `name` ([`crate::store::PLATFORM`] or a tenant).
#[must_use]
pub fn trail_named(name: &str) -> Trail {
    if name == crate::store::PLATFORM {
        Trail::Platform
    } else {
        Trail::Tenant(name.into())
    }
}

/// Verifies every trail under `root` (or only `only`), with `key`, against `external` heads kept
/// elsewhere (trail name, head).
pub fn verify_dir(
    root: &Path,
    key: &PublicKey,
    only: Option<&str>,
    external: &[(String, SignedHead)],
) -> std::io::Result<Report> {
    let trails: Vec<Trail> = match only {
        Some(name) => vec![trail_named(name)],
        None => trails(root)?,
    };
    let mut reports = Vec::with_capacity(trails.len());
    for trail in trails {
        let mut witnesses: Vec<SignedHead> = external
            .iter()
            .filter(|(t, _)| t == trail.name())
            .map(|(_, h)| h.clone())
            .collect();
        if let Some(w) = read_witness(root, &trail) {
            witnesses.push(w);
        }
        let sizes: Vec<u64> = witnesses.iter().map(|w| w.tree_size).collect();
        let (mut r, roots) = scan_at(root, &trail, key, &sizes, |_, _| {})?;
        check_witnesses(&mut r, &witnesses, &roots, &trail, key);
        reports.push(r);
    }
    let mut damaged = Vec::new();
    if let Ok(dir) = std::fs::read_dir(root.join("damaged")) {
        damaged.extend(dir.flatten().map(|e| e.path()));
        damaged.sort();
    }
    Ok(Report {
        trails: reports,
        damaged,
    })
}

/// Where the sink keeps the latest head of `trail`, apart from the log.
#[must_use]
pub fn witness_path(root: &Path, trail: &Trail) -> PathBuf {
    root.join("witness").join(format!("{}.json", trail.name()))
}

fn read_witness(root: &Path, trail: &Trail) -> Option<SignedHead> {
    let text = std::fs::read(witness_path(root, trail)).ok()?;
    serde_json::from_slice(&text).ok()
}

/// Each witness head must be signed, and the log must hold a tree of its size with its root (`roots`: the
/// log's roots at the witnesses' sizes).
fn check_witnesses(
    report: &mut TrailReport,
    witnesses: &[SignedHead],
    roots: &[(u64, Hash)],
    trail: &Trail,
    key: &PublicKey,
) {
    let signed = trail.signed_name();
    for w in witnesses {
        if !w.verify(&signed, key) {
            report.problems.push(Problem {
                segment: String::new(),
                index: w.tree_size,
                what: "a witness head's signature does not verify".into(),
            });
        } else if w.tree_size > last_size(report) {
            report.problems.push(Problem {
                segment: String::new(),
                index: last_size(report),
                what: format!(
                    "truncated: a signed head of {} events exists, the log ends at {}",
                    w.tree_size,
                    last_size(report)
                ),
            });
        } else if let Some((_, r)) = roots.iter().find(|(s, _)| *s == w.tree_size)
            && *r != w.root
        {
            report.problems.push(Problem {
                segment: String::new(),
                index: w.tree_size,
                what: "the log's tree at a witness head's size has another root: history was rewritten".into(),
            });
        }
    }
}

fn last_size(r: &TrailReport) -> u64 {
    r.oldest + r.events
}

/// Reads one trail, checking it, and hands each event (index, bytes) to `on_event`.
pub fn scan(
    root: &Path,
    trail: &Trail,
    key: &PublicKey,
    on_event: impl FnMut(u64, &[u8]),
) -> std::io::Result<TrailReport> {
    scan_at(root, trail, key, &[], on_event).map(|(r, _)| r)
}

/// [`scan`], also returning the tree's root at each of the `wanted` sizes the log still holds.
fn scan_at(
    root: &Path,
    trail: &Trail,
    key: &PublicKey,
    wanted: &[u64],
    mut on_event: impl FnMut(u64, &[u8]),
) -> std::io::Result<(TrailReport, Vec<(u64, Hash)>)> {
    let mut wanted: Vec<u64> = wanted.to_vec();
    wanted.sort_unstable();
    wanted.dedup();
    let mut wanted = wanted.into_iter().peekable();
    let mut roots: Vec<(u64, Hash)> = Vec::new();
    let mut note = |f: &Frontier, wanted: &mut std::iter::Peekable<std::vec::IntoIter<u64>>| {
        while let Some(&w) = wanted.peek() {
            if w < f.size() {
                wanted.next();
            } else {
                if w == f.size() {
                    roots.push((w, f.root()));
                    wanted.next();
                }
                break;
            }
        }
    };
    let dir = trail_dir(root, trail);
    let signed = trail.signed_name();
    let mut report = TrailReport {
        trail: trail.name().to_owned(),
        events: 0,
        heads: 0,
        oldest: 0,
        last_head: None,
        problems: Vec::new(),
        warnings: Vec::new(),
    };
    if !dir.is_dir() {
        report.problems.push(Problem {
            segment: String::new(),
            index: 0,
            what: format!("no log at {}", dir.display()),
        });
        return Ok((report, roots));
    }
    let segments = list_segments(&dir).map_err(std::io::Error::other)?;
    let mut frontier: Option<Frontier> = None;
    let count = segments.len();
    let mut since_head = 0u64;
    let mut last_ts = i64::MIN;
    let mut leaves: Vec<Hash> = Vec::new();
    // One buffer for every segment: reading each into fresh memory costs more in page faults than hashing.
    let mut buffer: Vec<u8> = Vec::new();
    let mut spans: Vec<(usize, usize)> = Vec::new();
    let mut items: Vec<Item> = Vec::new();
    for (i, (first, path)) in segments.into_iter().enumerate() {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let problem = |report: &mut TrailReport, index: u64, what: String| {
            report.problems.push(Problem {
                segment: name.clone(),
                index,
                what,
            });
        };
        buffer.clear();
        std::io::Read::read_to_end(&mut std::fs::File::open(&path)?, &mut buffer)?;
        let bytes = buffer.as_slice();
        let (header, start) = match segment::decode_header(bytes) {
            Ok(h) => h,
            Err(e) => {
                problem(&mut report, first, e.to_string());
                return Ok((report, roots));
            }
        };
        if header.tenant != signed || header.first_index != first {
            problem(
                &mut report,
                first,
                "the header names another trail or index".into(),
            );
            return Ok((report, roots));
        }
        let mut f = match frontier.take() {
            None => {
                report.oldest = first;
                note(&header.frontier, &mut wanted);
                header.frontier
            }
            Some(f) if f == header.frontier => f,
            Some(f) => {
                problem(
                    &mut report,
                    f.size(),
                    format!(
                        "events {}..{} are missing: a segment was removed or does not continue the one before",
                        f.size(),
                        first
                    ),
                );
                return Ok((report, roots));
            }
        };
        // Hash the segment's events (the bulk of the work) on every core, then fold them in order in a
        // second pass over the records. Only offsets are kept between the passes: no per-record memory.
        items.clear();
        spans.clear();
        for item in Records::new(bytes, start) {
            items.push(match item {
                Ok((_, Record::Event(e))) => {
                    let at = e.as_ptr() as usize - bytes.as_ptr() as usize;
                    spans.push((at, e.len()));
                    Item::Event(at, e.len())
                }
                Ok((_, Record::Head(h))) => Item::Head(h),
                Err(e) => Item::Bad(e),
            });
        }
        leaves.clear();
        let heads: Vec<&SignedHead> = items
            .iter()
            .filter_map(|i| match i {
                Item::Head(h) => Some(h),
                _ => None,
            })
            .collect();
        // The leaves on the worker threads; meanwhile the heads' signatures here.
        let signed_ok = hash_all(bytes, &spans, &mut leaves, || {
            heads
                .iter()
                .map(|h| h.verify(&signed, key))
                .collect::<Vec<bool>>()
        });
        let mut signed_ok = signed_ok.into_iter();
        let mut next_leaf = leaves.iter();
        for item in items.drain(..) {
            match item {
                Item::Event(at, len) => {
                    on_event(f.size(), bytes.get(at..at + len).unwrap_or_default());
                    if let Some(l) = next_leaf.next() {
                        f.push(*l);
                    }
                    note(&f, &mut wanted);
                    report.events += 1;
                    since_head += 1;
                }
                Item::Head(h) => {
                    report.heads += 1;
                    if h.tree_size != f.size() {
                        problem(
                            &mut report,
                            f.size(),
                            format!(
                                "a tree head says {} events where there are {}",
                                h.tree_size,
                                f.size()
                            ),
                        );
                    } else if h.root != f.root() {
                        problem(
                            &mut report,
                            f.size(),
                            "the events before this tree head are not the ones it signed: modified, removed or reordered".into(),
                        );
                    }
                    if !signed_ok.next().unwrap_or(false) {
                        problem(
                            &mut report,
                            f.size(),
                            "a tree head's signature does not verify".into(),
                        );
                    }
                    if h.timestamp_ms < last_ts {
                        problem(&mut report, f.size(), "tree heads go back in time".into());
                    }
                    last_ts = h.timestamp_ms;
                    since_head = 0;
                    report.last_head = Some(h);
                }
                Item::Bad(e) if e.is_torn() && i + 1 == count => {
                    report.warnings.push(format!(
                        "segment {name}: {e}; the sink cuts it when it starts (never acknowledged)"
                    ));
                }
                Item::Bad(e) => {
                    problem(&mut report, f.size(), e.to_string());
                    return Ok((report, roots));
                }
            }
        }
        frontier = Some(f);
    }
    if since_head > 0 {
        let at = report.oldest + report.events - since_head;
        report.problems.push(Problem {
            segment: String::new(),
            index: at,
            what: format!(
                "{since_head} events after the last signed tree head: appended outside the sink (or a crash the sink has not yet recovered from)"
            ),
        });
    }
    if let Some(h) = &report.last_head
        && h.oldest != report.oldest
    {
        report.problems.push(Problem {
            segment: String::new(),
            index: report.oldest,
            what: format!(
                "the log starts at event {} but its last head kept events from {}: segments were removed outside retention",
                report.oldest, h.oldest
            ),
        });
    }
    Ok((report, roots))
}

/// A record of a segment, read in the first pass.
enum Item {
    Event(usize, usize),
    Head(SignedHead),
    Bad(crate::segment::FormatError),
}

/// Leaf hashes of the events at `spans` (offset, length) of `bytes`, on every core for large segments,
/// while this thread runs `meanwhile`.
fn hash_all<T>(
    bytes: &[u8],
    spans: &[(usize, usize)],
    out: &mut Vec<Hash>,
    meanwhile: impl FnOnce() -> T,
) -> T {
    const CHUNK: usize = 4096;
    let leaf = |&(at, len): &(usize, usize)| leaf_hash(bytes.get(at..at + len).unwrap_or_default());
    if spans.len() < CHUNK {
        out.extend(spans.iter().map(leaf));
        return meanwhile();
    }
    let threads = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    let per = spans.len().div_ceil(threads);
    out.resize(spans.len(), [0; 32]);
    std::thread::scope(|s| {
        for (part, hashes) in spans.chunks(per).zip(out.chunks_mut(per)) {
            s.spawn(move || {
                for (h, span) in hashes.iter_mut().zip(part) {
                    *h = leaf(span);
                }
            });
        }
        meanwhile()
    })
}
