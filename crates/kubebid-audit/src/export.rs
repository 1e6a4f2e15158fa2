//! Export to a log platform over OpenTelemetry (OTLP logs over HTTP, JSON encoding), in order, with the
//! signed tree heads, so that a trail kept there still proves itself.
//!
//! The exporter follows each trail's segments from a cursor (segment and byte offset of the next record)
//! that it keeps in `export/cursor.json` and moves only after the receiver accepted a request: every
//! record is delivered in log order, at least once, across restarts. Each event becomes one log record
//! whose body is the event's exact bytes, with its index; each tree head one record with the head as JSON.
//! A receiver then holds what `kubebid audit verify` and `check-proof` need: the leaf bytes in order and
//! the heads that sign them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::log::list_segments;
use crate::metrics::AuditMetrics;
use crate::segment::{self, Record, Records};
use crate::store::{Trail, trail_dir};
use crate::verify::trails;

/// Where the exporter is in each trail.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursor {
    /// Trail name to (first index of the segment, byte offset of the next record in it, index of the next event).
    pub trails: BTreeMap<String, (u64, usize, u64)>,
}

/// One request's worth of records of one trail, and where the cursor goes once it is accepted.
pub struct Chunk {
    pub trail: String,
    pub body: Vec<u8>,
    pub records: usize,
    pub next: (u64, usize, u64),
}

fn cursor_path(root: &Path) -> PathBuf {
    root.join("export").join("cursor.json")
}

/// Reads the cursor (a missing one starts every trail at its beginning).
pub fn load_cursor(root: &Path) -> Cursor {
    std::fs::read(cursor_path(root))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

/// Writes the cursor (temporary file, then rename).
pub fn save_cursor(root: &Path, cursor: &Cursor) -> std::io::Result<()> {
    let path = cursor_path(root);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("json.tmp");
    std::fs::write(
        &tmp,
        serde_json::to_vec(cursor).map_err(std::io::Error::other)?,
    )?;
    std::fs::rename(tmp, path)
}

fn attr(key: &str, value: Value) -> Value {
    json!({"key": key, "value": value})
}

/// The next request for `trail` from `at` (segment, offset, next event index): at most `max` records,
/// only whole records that are durable (a torn tail waits). `None` when there is nothing new.
pub fn next_chunk(
    root: &Path,
    trail: &Trail,
    at: Option<(u64, usize, u64)>,
    max: usize,
) -> std::io::Result<Option<Chunk>> {
    let dir = trail_dir(root, trail);
    let segments = list_segments(&dir).map_err(std::io::Error::other)?;
    let Some(first) = segments.first() else {
        return Ok(None);
    };
    // A cursor in a segment retention has removed starts again at the oldest kept one.
    let (mut seg, mut offset, mut index) = match at {
        Some((s, o, i)) if segments.iter().any(|(f, _)| *f == s) => (s, o, i),
        _ => (first.0, 0, first.0),
    };
    // Only what is durable: up to the witness head, which the sink writes after the commits it covers.
    let Some(durable) = std::fs::read(crate::verify::witness_path(root, trail))
        .ok()
        .and_then(|b| serde_json::from_slice::<crate::head::SignedHead>(&b).ok())
        .map(|h| h.tree_size)
    else {
        return Ok(None);
    };
    // Nothing new since the cursor (the common case, every second): say so without reading the segment.
    if let (Some((_, off, idx)), Some((last_first, last_path))) = (at, segments.last())
        && seg == *last_first
        && idx >= durable
        && std::fs::metadata(last_path).is_ok_and(|m| m.len() == off as u64)
    {
        return Ok(None);
    }
    let mut records: Vec<Value> = Vec::new();
    let now = jiff::Timestamp::now().as_nanosecond().to_string();
    let from = seg;
    for (f, path) in segments.iter().filter(|(f, _)| *f >= from) {
        if *f != seg {
            seg = *f;
            offset = 0;
            index = *f;
        }
        let Ok((_, start)) = segment::read_header(path)? else {
            break;
        };
        // Only what follows the cursor is read: catching up on a large segment chunk by chunk does not
        // read it again for every chunk. Offsets in `bytes` count from `base`.
        let base = offset.max(start);
        let bytes = read_from(path, base)?;
        let mut reader = Records::new(&bytes, 0);
        let mut done = false;
        loop {
            let before = base + reader.offset();
            let Some(Ok((_, record))) = reader.next() else {
                break;
            };
            let beyond = match &record {
                Record::Event(_) => index >= durable,
                Record::Head(h) => h.tree_size > durable,
            };
            if beyond {
                // Not yet known durable: the next pass starts at this record.
                offset = before;
                done = true;
                break;
            }
            let (kind, body, time_ns, extra) = match record {
                Record::Event(e) => {
                    let text = String::from_utf8_lossy(e).into_owned();
                    let time = crate::event::head(&text)
                        .ok()
                        .and_then(|h| h.time())
                        .map_or_else(|| now.clone(), |t| t.as_nanosecond().to_string());
                    let i = index;
                    index += 1;
                    (
                        "event",
                        text,
                        time,
                        attr("kubebid.audit.index", json!({"intValue": i.to_string()})),
                    )
                }
                Record::Head(h) => {
                    let time = (i128::from(h.timestamp_ms) * 1_000_000).to_string();
                    let size = h.tree_size;
                    (
                        "tree-head",
                        serde_json::to_string(&h).unwrap_or_default(),
                        time,
                        attr(
                            "kubebid.audit.tree_size",
                            json!({"intValue": size.to_string()}),
                        ),
                    )
                }
            };
            records.push(json!({
                "timeUnixNano": time_ns,
                "observedTimeUnixNano": now,
                "severityNumber": 9,
                "severityText": "INFO",
                "body": {"stringValue": body},
                "attributes": [attr("kubebid.audit.kind", json!({"stringValue": kind})), extra],
            }));
            if records.len() >= max {
                break;
            }
        }
        if !done {
            offset = base + reader.offset();
        }
        if done || records.len() >= max {
            break;
        }
    }
    if records.is_empty() {
        return Ok(None);
    }
    let n = records.len();
    let body = json!({"resourceLogs": [{
        "resource": {"attributes": [
            attr("service.name", json!({"stringValue": "kubebid-audit"})),
            attr("kubebid.trail", json!({"stringValue": trail.name()})),
        ]},
        "scopeLogs": [{"scope": {"name": "kubebid.io/audit", "version": env!("CARGO_PKG_VERSION")}, "logRecords": records}]
    }]});
    Ok(Some(Chunk {
        trail: trail.name().to_owned(),
        body: serde_json::to_vec(&body).map_err(std::io::Error::other)?,
        records: n,
        next: (seg, offset, index),
    }))
}

/// The bytes of the file at `path` from `offset` on.
fn read_from(path: &Path, offset: usize) -> std::io::Result<Vec<u8>> {
    use std::io::{Read as _, Seek as _};
    let mut f = std::fs::File::open(path)?;
    f.seek(std::io::SeekFrom::Start(offset as u64))?;
    let mut out = Vec::new();
    f.read_to_end(&mut out)?;
    Ok(out)
}

/// Posts one OTLP request; `Ok` when the receiver accepted it (2xx).
pub type Post = Box<
    dyn Fn(Bytes) -> std::pin::Pin<Box<dyn Future<Output = Result<(), String>> + Send>>
        + Send
        + Sync,
>;

/// A [`Post`] to an OTLP/HTTP logs endpoint (`http(s)://collector:4318/v1/logs`).
pub fn http_post(endpoint: hyper::Uri) -> Result<Post, String> {
    use http_body_util::Full;
    use hyper_util::client::legacy::Client;
    use hyper_util::rt::TokioExecutor;
    if !matches!(endpoint.scheme_str(), Some("http" | "https")) {
        return Err(format!(
            "{endpoint}: the OTLP endpoint must be an http or https URL"
        ));
    }
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_webpki_roots()
        .https_or_http()
        .enable_http1()
        .build();
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build(connector);
    Ok(Box::new(move |body| {
        let (client, endpoint) = (client.clone(), endpoint.clone());
        Box::pin(async move {
            let req = hyper::Request::post(endpoint)
                .header(hyper::header::CONTENT_TYPE, "application/json")
                .body(Full::new(body))
                .map_err(|e| e.to_string())?;
            let res = tokio::time::timeout(std::time::Duration::from_secs(10), client.request(req))
                .await
                .map_err(|_| "timed out".to_owned())?
                .map_err(|e| e.to_string())?;
            if res.status().is_success() {
                Ok(())
            } else {
                Err(format!("the receiver answered {}", res.status()))
            }
        })
    }))
}

/// Exports everything new in every trail, trail by trail, in order; returns the records sent.
pub async fn export_once(
    root: &Path,
    post: &Post,
    metrics: &AuditMetrics,
) -> Result<usize, String> {
    let mut cursor = load_cursor(root);
    let mut sent = 0;
    for trail in trails(root).map_err(|e| e.to_string())? {
        loop {
            let at = cursor.trails.get(trail.name()).copied();
            let root_owned = root.to_owned();
            let t = trail.clone();
            let chunk = tokio::task::spawn_blocking(move || next_chunk(&root_owned, &t, at, 1000))
                .await
                .map_err(|e| e.to_string())?
                .map_err(|e| e.to_string())?;
            let Some(chunk) = chunk else { break };
            if let Err(e) = post(Bytes::from(chunk.body)).await {
                metrics.export_failures.inc();
                return Err(e);
            }
            metrics.exported.inc_by(chunk.records as u64);
            sent += chunk.records;
            cursor.trails.insert(chunk.trail, chunk.next);
            save_cursor(root, &cursor).map_err(|e| e.to_string())?;
        }
    }
    Ok(sent)
}

/// Exports every second until `stop`.
pub async fn run(root: PathBuf, post: Post, metrics: AuditMetrics, stop: impl Future<Output = ()>) {
    tokio::pin!(stop);
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = &mut stop => return,
        }
        if let Err(e) = export_once(&root, &post, &metrics).await {
            tracing::warn!(error = %e, "OTLP export failed; it resumes from the same record");
        }
    }
}
