//! The scanner service: keeps the PolicyReports of [`crate::scan`] up to date as objects change.
//!
//! A metadata-only watch on every scanned kind marks the namespace of each object added, changed or
//! deleted; after a short quiet period (`debounce`) the marked namespaces are scanned again, each alone,
//! and their reports applied. A change to a Namespace (its labels decide its tenant), a change of the
//! policy (KubeBidConfig, Tenants, PolicyExceptions), a watch that had to start over, and the periodic
//! resync (`resync`: exceptions expire with time, not with an event) scan the whole cluster. A scan that
//! fails is logged and counted, and the next event or resync tries again.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures::StreamExt as _;
use kube::api::{Api, ApiResource, DynamicObject, PartialObjectMeta};
use kube::runtime::WatchStreamExt as _;
use kube::runtime::watcher::{self, Event};
use kubebid_policy::PolicySet;
use kubebid_server::metrics::{Component, Registered};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::{mpsc, watch};

use crate::scan::{Target, apply, scan, targets};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ScopeLabels {
    /// `cluster` or `namespace`.
    pub scope: &'static str,
    /// `ok` or `error`.
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct VerdictLabels {
    pub result: &'static str,
}

/// The scanner's metrics, registered in the process's registry.
pub type ScannerMetrics = Registered<ScannerFamilies>;

/// The scanner's families.
pub struct ScannerFamilies {
    pub scans: Family<ScopeLabels, Counter>,
    pub reports_applied: Counter,
    pub apply_failures: Counter,
    /// Results in the last whole-cluster scan, by result.
    pub results: Family<VerdictLabels, Gauge>,
    pub watch_errors: Counter,
}

impl Component for ScannerFamilies {
    const PREFIX: &'static str = "kubebid_scanner";

    fn register(registry: &mut prometheus_client::registry::Registry) -> Self {
        let this = Self {
            scans: Family::default(),
            reports_applied: Counter::default(),
            apply_failures: Counter::default(),
            results: Family::default(),
            watch_errors: Counter::default(),
        };
        registry.register("scans", "Scans by scope and outcome", this.scans.clone());
        registry.register(
            "reports_applied",
            "PolicyReports and ClusterPolicyReports written",
            this.reports_applied.clone(),
        );
        registry.register(
            "apply_failures",
            "Reports the API server refused",
            this.apply_failures.clone(),
        );
        registry.register(
            "results",
            "Results of the last whole-cluster scan, by result",
            this.results.clone(),
        );
        registry.register(
            "watch_errors",
            "Errors of the object watches (each is retried with backoff)",
            this.watch_errors.clone(),
        );
        this
    }
}

/// How often and how soon the scanner scans.
#[derive(Clone, Copy, Debug)]
pub struct ScannerConfig {
    /// The whole cluster, at least this often.
    pub resync: Duration,
    /// The quiet time after a change before its namespaces are scanned.
    pub debounce: Duration,
}

/// What a watch event asks to scan again.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Dirty {
    All,
    Namespace(String),
}

fn api_resource(t: &Target) -> ApiResource {
    let (group, version) = t
        .api_version
        .rsplit_once('/')
        .unwrap_or(("", t.api_version));
    ApiResource {
        group: group.into(),
        version: version.into(),
        api_version: t.api_version.into(),
        kind: t.kind.into(),
        plural: t.resource.into(),
    }
}

/// Watches the metadata of every object of `t`, sending what each change makes dirty.
fn watch_kind(
    client: kube::Client,
    t: Target,
    tx: mpsc::Sender<Dirty>,
    overflow: Arc<AtomicBool>,
    metrics: Arc<ScannerMetrics>,
) {
    tokio::spawn(async move {
        // Metadata only: the namespace is all a change is needed for.
        let api = Api::<PartialObjectMeta<DynamicObject>>::all_with(client, &api_resource(&t));
        let stream = watcher::watcher(api, watcher::Config::default()).default_backoff();
        let mut stream = std::pin::pin!(stream);
        let mut starts = 0u32;
        while let Some(event) = stream.next().await {
            let dirty = match event {
                Ok(Event::Apply(m) | Event::Delete(m)) => match m.metadata.namespace {
                    Some(ns) if t.namespaced() => Dirty::Namespace(ns),
                    _ => Dirty::All,
                },
                // A watch that started over may have missed deletions: scan everything once it has listed.
                Ok(Event::InitDone) => {
                    starts += 1;
                    if starts == 1 {
                        continue;
                    }
                    Dirty::All
                }
                Ok(Event::Init | Event::InitApply(_)) => continue,
                Err(e) => {
                    metrics.watch_errors.inc();
                    tracing::warn!(kind = t.kind, error = %e, "watch failed; retrying with backoff");
                    continue;
                }
            };
            if tx.try_send(dirty).is_err() {
                overflow.store(true, Ordering::Relaxed);
            }
        }
    });
}

/// One scan (the cluster, or `namespace`) and its reports applied.
async fn scan_and_apply(
    client: &kube::Client,
    policy: &PolicySet,
    namespace: Option<&str>,
    metrics: &ScannerMetrics,
) {
    let scope = if namespace.is_some() {
        "namespace"
    } else {
        "cluster"
    };
    let now = jiff::Timestamp::now();
    let outcome = match scan(client, policy, namespace, now, &|_| {}).await {
        Ok(mut s) => {
            for u in &s.unreadable {
                tracing::warn!(object = %u, "an object could not be read");
            }
            if namespace.is_none() {
                match crate::scan::stale(client, &s.reports, now).await {
                    Ok(empty) => s.reports.extend(empty),
                    Err(e) => tracing::warn!(error = %e, "earlier reports could not be listed"),
                }
            }
            for r in &s.reports {
                match apply(client, r).await {
                    Ok(()) => {
                        metrics.reports_applied.inc();
                    }
                    Err(e) => {
                        metrics.apply_failures.inc();
                        tracing::warn!(error = %e, "a report was not written");
                    }
                }
            }
            if namespace.is_none() {
                for result in ["pass", "fail", "warn", "skip"] {
                    let n = s
                        .judged
                        .iter()
                        .flat_map(|j| &j.verdicts)
                        .filter(|v| v.result == result)
                        .count();
                    metrics
                        .results
                        .get_or_create(&VerdictLabels { result })
                        .set(i64::try_from(n).unwrap_or(i64::MAX));
                }
            }
            tracing::info!(
                scope,
                namespace = namespace.unwrap_or(""),
                objects = s.judged.len(),
                reports = s.reports.len(),
                "scanned"
            );
            "ok"
        }
        Err(e) => {
            tracing::warn!(scope, error = %e, "scan failed; the next change or resync tries again");
            "error"
        }
    };
    metrics
        .scans
        .get_or_create(&ScopeLabels { scope, outcome })
        .inc();
}

/// Runs the scanner until `shutdown`: a whole-cluster scan once the policy is known, then scans as
/// objects, the policy and time change.
pub async fn run(
    client: kube::Client,
    mut policy: watch::Receiver<Option<PolicySet>>,
    config: ScannerConfig,
    metrics: Arc<ScannerMetrics>,
    shutdown: impl Future<Output = ()>,
) {
    let mut shutdown = std::pin::pin!(shutdown);
    let (tx, mut rx) = mpsc::channel(4096);
    let overflow = Arc::new(AtomicBool::new(false));
    for t in targets() {
        watch_kind(
            client.clone(),
            t,
            tx.clone(),
            overflow.clone(),
            metrics.clone(),
        );
    }
    drop(tx);
    let current = |p: &watch::Receiver<Option<PolicySet>>| p.borrow().clone();
    let mut set = loop {
        if let Some(p) = current(&policy) {
            break p;
        }
        tokio::select! {
            () = &mut shutdown => return,
            changed = policy.changed() => if changed.is_err() { return },
        }
    };
    scan_and_apply(&client, &set, None, &metrics).await;
    let mut resync = tokio::time::interval(config.resync);
    resync.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    resync.tick().await;
    loop {
        let mut dirty: BTreeSet<String> = BTreeSet::new();
        let mut all = false;
        tokio::select! {
            () = &mut shutdown => return,
            changed = policy.changed() => {
                if changed.is_err() {
                    return;
                }
                all = true;
            }
            _ = resync.tick() => all = true,
            first = rx.recv() => {
                let Some(first) = first else { return };
                tokio::time::sleep(config.debounce).await;
                let mut next = Some(first);
                while let Some(d) = next {
                    match d {
                        Dirty::All => all = true,
                        Dirty::Namespace(ns) => {
                            dirty.insert(ns);
                        }
                    }
                    next = rx.try_recv().ok();
                }
            }
        }
        all |= overflow.swap(false, Ordering::Relaxed);
        if let Some(p) = current(&policy) {
            set = p;
        }
        if all {
            scan_and_apply(&client, &set, None, &metrics).await;
            resync.reset();
        } else {
            for ns in &dirty {
                scan_and_apply(&client, &set, Some(ns), &metrics).await;
            }
        }
    }
}
