//! The optional query log: one JSON line per query, written by its own thread so the hot path never waits
//! on the disk. When the writer falls behind, lines are dropped and counted, never queued without bound.

use std::io::{self, Write};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::time::Duration;

use hickory_proto::op::{Message, ResponseCode};

use crate::answer::{Decision, Denial, Source};
use crate::metrics::{DnsMetrics, Dropped};

/// Lines waiting for the writer at most; more are dropped.
const QUEUE: usize = 16_384;

/// How often the writer flushes when no line comes.
const FLUSH_EVERY: Duration = Duration::from_millis(200);

/// The sending end of the log; the writer thread ends when it is dropped.
pub struct QueryLog {
    tx: SyncSender<String>,
}

impl QueryLog {
    /// Appends to `path`.
    ///
    /// # Errors
    /// The file cannot be opened.
    pub fn open(path: &Path, metrics: Arc<DnsMetrics>) -> io::Result<Self> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        let (tx, rx) = std::sync::mpsc::sync_channel::<String>(QUEUE);
        std::thread::Builder::new()
            .name("kubebid-dns-querylog".into())
            .spawn(move || write_log(file, &rx, &metrics))?;
        Ok(Self { tx })
    }

    /// Logs one answered query: who asked, for what, the answer's code, why it was denied (if it was)
    /// and where the answer came from.
    pub fn query(
        &self,
        client: SocketAddr,
        request: &Message,
        response: &Message,
        decision: &Decision,
        source: Source,
        metrics: &DnsMetrics,
    ) {
        let q = request.queries.first();
        let line = serde_json::json!({
            "time": jiff::Timestamp::now().to_string(),
            "client": client.ip().to_string(),
            "tenant": decision.tenant,
            "name": q.map(|q| q.name().to_ascii()),
            "type": q.map(|q| q.query_type().to_string()),
            "rcode": response_code_name(response.metadata.response_code),
            "denied": decision.denial.map(Denial::as_str),
            "source": source.as_str(),
        });
        self.record(line.to_string(), metrics);
    }

    /// Queues one line, or counts it dropped when the writer is behind.
    fn record(&self, line: String, metrics: &DnsMetrics) {
        if let Err(TrySendError::Full(_)) = self.tx.try_send(line) {
            metrics.discard(Dropped::QueryLogFull);
        }
    }
}

/// The writer thread: appends lines as they come, flushes when idle, ends when the sender is dropped.
fn write_log(file: std::fs::File, rx: &Receiver<String>, metrics: &DnsMetrics) {
    let mut out = io::BufWriter::new(file);
    loop {
        match rx.recv_timeout(FLUSH_EVERY) {
            Ok(line) => {
                if writeln!(out, "{line}").is_err() {
                    metrics.discard(Dropped::QueryLogWrite);
                }
            }
            Err(RecvTimeoutError::Timeout) => {
                let _ = out.flush();
            }
            Err(RecvTimeoutError::Disconnected) => {
                let _ = out.flush();
                return;
            }
        }
    }
}

/// The response code as dig prints it.
fn response_code_name(code: ResponseCode) -> String {
    match code {
        ResponseCode::NoError => "NOERROR".into(),
        ResponseCode::NXDomain => "NXDOMAIN".into(),
        ResponseCode::ServFail => "SERVFAIL".into(),
        ResponseCode::FormErr => "FORMERR".into(),
        ResponseCode::NotImp => "NOTIMP".into(),
        ResponseCode::Refused => "REFUSED".into(),
        other => u16::from(other).to_string(),
    }
}
