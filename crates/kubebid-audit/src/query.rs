//! Reading a trail back: events filtered by time, user, verb, resource and namespace.

use std::path::Path;

use serde::Serialize;

use crate::event::{EventHead, head};
use crate::head::PublicKey;
use crate::store::Trail;
use crate::verify::{TrailReport, scan};

/// What to select. Empty fields select everything.
#[derive(Clone, Debug, Default)]
pub struct Filter {
    pub since: Option<jiff::Timestamp>,
    pub until: Option<jiff::Timestamp>,
    pub user: Option<String>,
    pub verb: Option<String>,
    /// `secrets`, or with a subresource `pods/exec`.
    pub resource: Option<String>,
    pub namespace: Option<String>,
    /// At most this many events (the newest kept when more match).
    pub limit: Option<usize>,
}

impl Filter {
    /// Whether `e` is selected.
    #[must_use]
    pub fn matches(&self, e: &EventHead<'_>) -> bool {
        if let Some(u) = &self.user
            && e.user.username != *u
        {
            return false;
        }
        if let Some(v) = &self.verb
            && *e.verb != **v
        {
            return false;
        }
        let o = e.object_ref.as_ref();
        if let Some(r) = &self.resource {
            let Some(o) = o else { return false };
            let (res, sub) = r.split_once('/').unwrap_or((r, ""));
            if o.resource != res || (!sub.is_empty() && o.subresource != sub) {
                return false;
            }
        }
        if let Some(ns) = &self.namespace
            && e.namespace() != Some(ns.as_str())
        {
            return false;
        }
        if self.since.is_some() || self.until.is_some() {
            let Some(t) = e.time() else { return false };
            if self.since.is_some_and(|s| t < s) || self.until.is_some_and(|u| t >= u) {
                return false;
            }
        }
        true
    }
}

/// One selected event.
#[derive(Clone, Debug, Serialize)]
pub struct Found {
    pub index: u64,
    /// The event's JSON as stored.
    pub event: Box<serde_json::value::RawValue>,
}

/// Reads `trail`, verifying it on the way, and returns the events `filter` selects and the report.
pub fn query(
    root: &Path,
    trail: &Trail,
    key: &PublicKey,
    filter: &Filter,
) -> std::io::Result<(Vec<Found>, TrailReport)> {
    let mut found: std::collections::VecDeque<Found> = std::collections::VecDeque::new();
    let report = scan(root, trail, key, |index, bytes| {
        let Ok(text) = std::str::from_utf8(bytes) else {
            return;
        };
        let Ok(h) = head(text) else { return };
        if filter.matches(&h)
            && let Ok(event) = serde_json::value::RawValue::from_string(text.to_owned())
        {
            found.push_back(Found { index, event });
            if filter.limit.is_some_and(|l| found.len() > l) {
                found.pop_front();
            }
        }
    })?;
    Ok((found.into(), report))
}
