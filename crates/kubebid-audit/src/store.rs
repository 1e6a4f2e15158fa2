//! Every tenant's log, and the group commit that makes batches durable before they are acknowledged.
//!
//! One writer thread owns the logs. It takes every batch that is waiting, stages each event in its
//! tenant's log, seals one signed head per touched log, writes each log once and `fdatasync`s them (in
//! parallel when more than one), and only then answers each batch. Under load many batches share one
//! sync; idle, a batch costs one write and one sync per tenant it touches.
//!
//! Layout under the data directory: `tenants/<tenant>/` for each tenant, `platform/` for everything no
//! tenant owns, `damaged/<name>-<time>/` for a log that failed its checks on opening (kept as evidence;
//! the tenant starts a new log and ingest goes on), `signing-key.pub` for verifiers.

use std::collections::HashMap;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};

use crate::head::Signer;
use crate::log::{LogConfig, LogError, Recovery, TenantLog};
use crate::metrics::AuditMetrics;

/// Whose log an event goes to.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Trail {
    Tenant(Arc<str>),
    Platform,
}

impl Trail {
    /// The name used in file names, metrics and output: the tenant's, or [`PLATFORM`], which no tenant
    /// can be named (tenants are DNS labels; `platform` is one, so it cannot stand for the platform).
    #[must_use]
    pub fn name(&self) -> &str {
        match self {
            Self::Tenant(t) => t,
            Self::Platform => PLATFORM,
        }
    }

    /// The name signed into this trail's tree heads.
    #[must_use]
    pub fn signed_name(&self) -> String {
        match self {
            Self::Tenant(t) => t.to_string(),
            Self::Platform => PLATFORM_SIGNED.to_owned(),
        }
    }
}

/// The platform trail's name: not a DNS label, so not a tenant's.
pub const PLATFORM: &str = "_platform";

/// The platform trail's name inside signatures: not a valid tenant name.
pub const PLATFORM_SIGNED: &str = "@platform";

/// The directory of a trail under the data directory.
#[must_use]
pub fn trail_dir(root: &Path, trail: &Trail) -> PathBuf {
    match trail {
        Trail::Tenant(t) => root.join("tenants").join(&**t),
        Trail::Platform => root.join("platform"),
    }
}

/// A validated batch: the request body and, for each event, its trail and its bytes in the body.
#[derive(Clone)]
pub struct Batch {
    pub body: Bytes,
    pub events: Vec<(Trail, Range<usize>)>,
}

/// Why a batch was not stored.
#[derive(Debug, thiserror::Error)]
pub enum CommitError {
    #[error("the audit store is shutting down")]
    Closed,
    #[error("storing failed: {0}")]
    Storage(String),
}

struct Pending {
    batch: Batch,
    done: oneshot::Sender<Result<(), CommitError>>,
}

/// How long a trail is kept: asked at every retention pass, so a tenant's setting applies as it changes.
pub type Retention = Arc<dyn Fn(&Trail) -> Option<std::time::Duration> + Send + Sync>;

enum Msg {
    Batch(Pending),
    /// Per-trail retention instead of the configuration's one.
    Retention(Retention),
    /// Time for rotation, retention and the witness heads.
    Tick,
}

/// The handle servers use to store batches.
#[derive(Clone)]
pub struct Store {
    tx: mpsc::Sender<Msg>,
}

/// What the store found when it started.
#[derive(Debug, Default)]
pub struct StartReport {
    /// Logs opened, with what their recovery cut.
    pub recovered: Vec<(String, Recovery)>,
    /// Logs that failed their checks and were moved aside.
    pub damaged: Vec<(String, PathBuf, String)>,
}

impl Store {
    /// Opens every existing log under `root` (recovering torn tails) and starts the writer thread.
    pub fn start(
        root: &Path,
        config: LogConfig,
        signer: Arc<dyn Signer>,
        metrics: AuditMetrics,
    ) -> Result<(Self, StartReport, std::thread::JoinHandle<()>), LogError> {
        std::fs::create_dir_all(root.join("tenants")).map_err(|source| LogError::Io {
            path: root.display().to_string(),
            source,
        })?;
        let key_path = root.join("signing-key.pub");
        std::fs::write(&key_path, signer.public_key().to_pem()).map_err(|source| LogError::Io {
            path: key_path.display().to_string(),
            source,
        })?;
        let mut writer = Writer {
            root: root.to_owned(),
            config,
            signer,
            logs: HashMap::new(),
            metrics,
            retention: None,
        };
        let mut report = StartReport::default();
        let mut trails = vec![Trail::Platform];
        if let Ok(dir) = std::fs::read_dir(root.join("tenants")) {
            for entry in dir.flatten() {
                if let Some(name) = entry.file_name().to_str() {
                    trails.push(Trail::Tenant(Arc::from(name)));
                }
            }
        }
        for trail in trails {
            if !trail_dir(root, &trail).exists() {
                continue;
            }
            writer.open(&trail, &mut report)?;
        }
        let (tx, rx) = mpsc::channel(4096);
        let thread = std::thread::Builder::new()
            .name("audit-writer".into())
            .spawn(move || writer.run(rx))
            .map_err(|source| LogError::Io {
                path: "audit writer thread".into(),
                source,
            })?;
        Ok((Self { tx }, report, thread))
    }

    /// Stores a batch; resolves once every event of it is durable and covered by a signed head.
    pub async fn commit(&self, batch: Batch) -> Result<(), CommitError> {
        let (done, wait) = oneshot::channel();
        self.tx
            .send(Msg::Batch(Pending { batch, done }))
            .await
            .map_err(|_| CommitError::Closed)?;
        wait.await.map_err(|_| CommitError::Closed)?
    }

    /// Keeps each trail as long as `retention` says (instead of [`LogConfig::retention`] for all).
    pub async fn set_retention(&self, retention: Retention) {
        let _ = self.tx.send(Msg::Retention(retention)).await;
    }

    /// Asks the writer for rotation, retention and the witness heads (the sink does so every second).
    pub async fn tick(&self) {
        let _ = self.tx.send(Msg::Tick).await;
    }
}

struct Writer {
    root: PathBuf,
    config: LogConfig,
    signer: Arc<dyn Signer>,
    logs: HashMap<Trail, TenantLog>,
    metrics: AuditMetrics,
    retention: Option<Retention>,
}

fn now_ms() -> i64 {
    jiff::Timestamp::now().as_millisecond()
}

impl Writer {
    /// Opens `trail`'s log; a log that fails its checks is moved aside and a new one started.
    fn open(&mut self, trail: &Trail, report: &mut StartReport) -> Result<(), LogError> {
        let dir = trail_dir(&self.root, trail);
        let name = trail.signed_name();
        let opened = TenantLog::open(&dir, &name, self.config.clone(), &*self.signer, now_ms())
            .and_then(|(log, recovery)| {
                // What the witness saw signed must still be there: a log cut behind it (a truncation
                // dressed as a torn tail, or a rewritten length) is damage, not a crash to repair.
                match witness_of(&self.root, trail) {
                    Some(w) if w.tree_size > log.size() || (w.tree_size == log.size() && log.last_head().is_some_and(|h| h.root != w.root)) => {
                        Err(LogError::Integrity {
                            tenant: name.clone(),
                            segment: String::new(),
                            index: log.size(),
                            what: format!(
                                "the log ends at {} events but its witness head signed {}: it was cut behind a signed head",
                                log.size(),
                                w.tree_size
                            ),
                        })
                    }
                    _ => Ok((log, recovery)),
                }
            });
        match opened {
            Ok((log, recovery)) => {
                if recovery != Recovery::default() {
                    tracing::warn!(
                        trail = trail.name(),
                        torn_bytes = recovery.torn_bytes,
                        unsigned_events = recovery.unsigned_events,
                        "cut an unacknowledged tail left by a crash"
                    );
                }
                report.recovered.push((trail.name().to_owned(), recovery));
                self.logs.insert(trail.clone(), log);
                Ok(())
            }
            Err(e @ (LogError::Format { .. } | LogError::Integrity { .. })) => {
                let aside =
                    self.root
                        .join("damaged")
                        .join(format!("{}-{}", trail.name(), now_ms()));
                tracing::error!(trail = trail.name(), error = %e, moved_to = %aside.display(),
                    "the log failed its checks; it is kept aside as evidence and a new log begins");
                self.metrics.damaged_logs.inc();
                if let Some(parent) = aside.parent() {
                    std::fs::create_dir_all(parent).map_err(|source| LogError::Io {
                        path: parent.display().to_string(),
                        source,
                    })?;
                }
                std::fs::rename(&dir, &aside).map_err(|source| LogError::Io {
                    path: dir.display().to_string(),
                    source,
                })?;
                // Its witness head belongs to the old log: keep it with it.
                let witness = crate::verify::witness_path(&self.root, trail);
                if witness.exists() {
                    let _ = std::fs::rename(&witness, aside.join("witness.json"));
                }
                report
                    .damaged
                    .push((trail.name().to_owned(), aside, e.to_string()));
                let (log, _) =
                    TenantLog::open(&dir, &name, self.config.clone(), &*self.signer, now_ms())?;
                self.logs.insert(trail.clone(), log);
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    fn run(mut self, mut rx: mpsc::Receiver<Msg>) {
        let mut round: Vec<Pending> = Vec::new();
        while let Some(first) = rx.blocking_recv() {
            let mut tick = false;
            let mut retention = None;
            let mut take = |m: Msg, round: &mut Vec<Pending>| match m {
                Msg::Batch(p) => round.push(p),
                Msg::Tick => tick = true,
                Msg::Retention(r) => retention = Some(r),
            };
            take(first, &mut round);
            while round.len() < 1024 {
                match rx.try_recv() {
                    Ok(m) => take(m, &mut round),
                    Err(_) => break,
                }
            }
            if !round.is_empty() {
                let started = Instant::now();
                let outcome = self.commit_round(&round);
                self.metrics.observe_round(round.len(), started.elapsed());
                for p in round.drain(..) {
                    let r = match &outcome {
                        Ok(()) => Ok(()),
                        Err(e) => Err(CommitError::Storage(e.clone())),
                    };
                    let _ = p.done.send(r);
                }
            }
            if let Some(r) = retention {
                self.retention = Some(r);
            }
            if tick {
                self.maintain();
            }
        }
        // Closed: everything acknowledged is durable; leave the witness heads current.
        self.maintain();
    }

    fn commit_round(&mut self, round: &[Pending]) -> Result<(), String> {
        let now = now_ms();
        let mut touched: Vec<Trail> = Vec::new();
        // Every log the round needs is open before anything is staged, so a failure leaves none staged.
        for p in round {
            for (trail, _) in &p.batch.events {
                if !self.logs.contains_key(trail) {
                    let mut report = StartReport::default();
                    self.open(trail, &mut report).map_err(|e| e.to_string())?;
                }
            }
        }
        for p in round {
            for (trail, range) in &p.batch.events {
                let Some(log) = self.logs.get_mut(trail) else {
                    return Err(format!("no log for {}", trail.name()));
                };
                let Some(event) = p.batch.body.get(range.clone()) else {
                    continue;
                };
                log.stage(event);
                if !touched.contains(trail) {
                    touched.push(trail.clone());
                }
                self.metrics.event(trail.name());
            }
        }
        let mut failed = None;
        for trail in &touched {
            let Some(log) = self.logs.get_mut(trail) else {
                continue;
            };
            let r = log.seal(&*self.signer, now).and_then(|_| log.write());
            if let Err(e) = r {
                log.rollback();
                failed = Some(e.to_string());
            }
        }
        if let Some(e) = failed {
            for trail in &touched {
                if let Some(log) = self.logs.get_mut(trail) {
                    log.rollback();
                }
            }
            return Err(e);
        }
        self.sync(&touched)
    }

    fn sync(&mut self, touched: &[Trail]) -> Result<(), String> {
        let mut logs: Vec<&mut TenantLog> = self
            .logs
            .iter_mut()
            .filter(|(t, _)| touched.contains(t))
            .map(|(_, l)| l)
            .collect();
        let results: Vec<Result<(), LogError>> = if logs.len() > 1 {
            std::thread::scope(|s| {
                let handles: Vec<_> = logs.iter_mut().map(|l| s.spawn(move || l.sync())).collect();
                handles
                    .into_iter()
                    .map(|h| {
                        h.join().unwrap_or_else(|_| {
                            Err(LogError::Io {
                                path: "sync".into(),
                                source: std::io::Error::other("sync thread failed"),
                            })
                        })
                    })
                    .collect()
            })
        } else {
            logs.iter_mut().map(|l| l.sync()).collect()
        };
        let failed = results.into_iter().find_map(Result::err);
        for log in logs {
            if failed.is_some() {
                log.rollback();
            } else {
                log.committed();
            }
        }
        match failed {
            Some(e) => {
                self.metrics.sync_failures.inc();
                Err(e.to_string())
            }
            None => Ok(()),
        }
    }

    /// Rotation, retention (with a new head carrying the new oldest index) and the witness heads,
    /// between rounds.
    fn maintain(&mut self) {
        let now = now_ms();
        let witness_dir = self.root.join("witness");
        let _ = std::fs::create_dir_all(&witness_dir);
        for (trail, log) in &mut self.logs {
            if let Some(r) = &self.retention {
                log.set_retention(r(trail));
            }
            if let Err(e) = log.rotate_if_due(now) {
                tracing::error!(trail = trail.name(), error = %e, "rotating a segment failed");
            }
            match log.prune(now) {
                Ok(0) => {}
                Ok(n) => {
                    let sealed = log
                        .seal(&*self.signer, now)
                        .and_then(|_| log.write())
                        .and_then(|()| log.sync());
                    match sealed {
                        Ok(()) => log.committed(),
                        Err(e) => {
                            log.rollback();
                            tracing::error!(trail = trail.name(), error = %e, "signing after retention failed");
                        }
                    }
                    tracing::info!(
                        trail = trail.name(),
                        segments = n,
                        "retention removed old segments"
                    );
                }
                Err(e) => tracing::error!(trail = trail.name(), error = %e, "retention failed"),
            }
            if let Some(head) = log.last_head()
                && let Err(e) = write_witness(&crate::verify::witness_path(&self.root, trail), head)
            {
                tracing::warn!(trail = trail.name(), error = %e, "writing the witness head failed");
            }
        }
    }
}

/// The witness head of `trail`, if the sink wrote one.
fn witness_of(root: &Path, trail: &Trail) -> Option<crate::head::SignedHead> {
    let bytes = std::fs::read(crate::verify::witness_path(root, trail)).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// Replaces the witness file with `head` (write to a temporary name, then rename).
fn write_witness(path: &Path, head: &crate::head::SignedHead) -> std::io::Result<()> {
    let tmp = path.with_extension("json.tmp");
    std::fs::write(
        &tmp,
        serde_json::to_vec(head).map_err(std::io::Error::other)?,
    )?;
    std::fs::rename(&tmp, path)
}
