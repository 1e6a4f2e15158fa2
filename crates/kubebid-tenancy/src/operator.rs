//! The operator: a kube-runtime controller over Tenants that keeps every rendered object in place. It
//! applies with server-side apply (field manager `kubebid`), restores deleted or edited objects (it owns
//! them, so their changes wake it), lets the garbage collector remove them when the Tenant goes, records
//! Events and status conditions, and requeues with backoff on errors.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{LimitRange, ResourceQuota};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::WatchStreamExt;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::{self, Store};
use kube::runtime::watcher;
use kube::{Client, Resource, ResourceExt};
use kubebid_model::config::{
    KubeBidConfig, KubeBidConfigSpec, NamespaceState, Tenant, TenantStatus,
};

use crate::reconcile::{FIELD_MANAGER, Outcome, ReconcileError, apply_all};
use crate::render;

/// Shared state of the controller.
pub struct Context {
    pub client: Client,
    pub configs: Store<KubeBidConfig>,
    pub recorder: Recorder,
    pub metrics: Arc<crate::metrics::OperatorMetrics>,
    pub backoff: Backoff,
}

/// Per-Tenant exponential backoff for failed reconciles: 5 s after the first failure, doubling up to five
/// minutes; a success resets it. A Tenant that keeps failing (a missing CRD, RBAC it lacks) stops costing
/// API requests every few seconds, while one transient error is retried quickly.
#[derive(Debug, Default)]
pub struct Backoff {
    failures: std::sync::Mutex<std::collections::HashMap<String, u32>>,
}

impl Backoff {
    pub const FIRST: Duration = Duration::from_secs(5);
    pub const MAX: Duration = Duration::from_secs(300);

    /// Records a failure of `key` and returns how long to wait before the next attempt.
    pub fn failed(&self, key: &str) -> Duration {
        let mut failures = self
            .failures
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let n = failures.entry(key.to_owned()).or_insert(0);
        *n = n.saturating_add(1);
        let factor = 1u32.checked_shl(n.saturating_sub(1)).unwrap_or(u32::MAX);
        Self::FIRST.saturating_mul(factor).min(Self::MAX)
    }

    /// Records a success of `key`: the next failure starts from the first delay again.
    pub fn succeeded(&self, key: &str) {
        self.failures
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(key);
    }
}

fn cluster_config(store: &Store<KubeBidConfig>) -> KubeBidConfigSpec {
    let mut all = store.state();
    all.sort_by_key(|c| (c.metadata.name.as_deref() != Some("kubebid"), c.name_any()));
    all.first().map(|c| c.spec.clone()).unwrap_or_default()
}

fn condition(
    type_: &str,
    ok: bool,
    reason: &str,
    message: String,
    generation: Option<i64>,
    previous: Option<&Condition>,
) -> Condition {
    let status = if ok { "True" } else { "False" };
    // The transition time changes only when the status does, so an unchanged Tenant writes no status.
    let last = match previous {
        Some(p) if p.status == status => p.last_transition_time.clone(),
        _ => Time(jiff::Timestamp::now()),
    };
    Condition {
        type_: type_.into(),
        status: status.into(),
        reason: reason.into(),
        message,
        observed_generation: generation,
        last_transition_time: last,
    }
}

/// The status a reconcile result gives, keeping transition times of conditions whose status did not change.
#[must_use]
pub fn status_for(tenant: &Tenant, result: &Result<Outcome, ReconcileError>) -> TenantStatus {
    let generation = tenant.metadata.generation;
    let previous = tenant.status.as_ref();
    let prev = |t: &str| previous.and_then(|s| s.conditions.iter().find(|c| c.type_ == t));
    let (ready, degraded) = match result {
        Ok(_) => (
            condition(
                "Ready",
                true,
                "Applied",
                "every managed object is in place".into(),
                generation,
                prev("Ready"),
            ),
            condition(
                "Degraded",
                false,
                "Applied",
                String::new(),
                generation,
                prev("Degraded"),
            ),
        ),
        Err(e) => (
            condition(
                "Ready",
                false,
                "ApplyFailed",
                e.to_string(),
                generation,
                prev("Ready"),
            ),
            condition(
                "Degraded",
                true,
                "ApplyFailed",
                e.to_string(),
                generation,
                prev("Degraded"),
            ),
        ),
    };
    TenantStatus {
        conditions: vec![ready, degraded],
        namespaces: tenant
            .spec
            .namespaces
            .iter()
            .map(|n| NamespaceState {
                name: n.clone(),
                ready: result.is_ok(),
            })
            .collect(),
        observed_generation: generation,
    }
}

/// One reconcile of one Tenant: apply, then write the status if (and only if) it changed.
///
/// # Errors
/// The apply error (after the Degraded status is recorded), or a status write error.
pub async fn reconcile_tenant(
    tenant: &Tenant,
    cluster: &KubeBidConfigSpec,
    client: &Client,
) -> Result<Outcome, ReconcileError> {
    let mut desired = render::tenant(tenant, cluster);
    render::owned_by(&mut desired, tenant);
    let result = apply_all(client, &desired).await;
    let status = status_for(tenant, &result);
    if tenant.status.as_ref() != Some(&status) {
        let name = tenant.name_any();
        let api: Api<Tenant> = Api::all(client.clone());
        let patch = serde_json::json!({"apiVersion": "kubebid.io/v1alpha1", "kind": "Tenant", "status": status});
        api.patch_status(
            &name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&patch),
        )
        .await
        .map_err(|source| ReconcileError::Api {
            object: format!("Tenant {name} status"),
            source,
        })?;
    }
    result
}

async fn reconcile(tenant: Arc<Tenant>, ctx: Arc<Context>) -> Result<Action, ReconcileError> {
    let cluster = cluster_config(&ctx.configs);
    let started = std::time::Instant::now();
    let outcome = reconcile_tenant(&tenant, &cluster, &ctx.client).await;
    ctx.metrics
        .record(&outcome, started.elapsed().as_secs_f64());
    let reference = tenant.object_ref(&());
    match &outcome {
        Ok(o) if !o.created.is_empty() || !o.repaired.is_empty() => {
            let note = format!("created {}, restored {}", o.created.len(), o.repaired.len());
            let event = Event {
                type_: EventType::Normal,
                reason: "Applied".into(),
                note: Some(note),
                action: "Reconcile".into(),
                secondary: None,
            };
            if let Err(e) = ctx.recorder.publish(&event, &reference).await {
                tracing::warn!(error = %e, "could not record an Event");
            }
        }
        Ok(_) => {}
        Err(e) => {
            let event = Event {
                type_: EventType::Warning,
                reason: "ApplyFailed".into(),
                note: Some(e.to_string()),
                action: "Reconcile".into(),
                secondary: None,
            };
            let _ = ctx.recorder.publish(&event, &reference).await;
        }
    }
    outcome?;
    ctx.backoff.succeeded(&tenant.name_any());
    // Re-check periodically even without events, to catch what a missed watch event would hide.
    Ok(Action::requeue(Duration::from_secs(300)))
}

// kube-runtime's controller calls error policies with owned `Arc`s.
#[allow(clippy::needless_pass_by_value)]
fn error_policy(tenant: Arc<Tenant>, error: &ReconcileError, ctx: Arc<Context>) -> Action {
    let name = tenant.name_any();
    let delay = ctx.backoff.failed(&name);
    tracing::warn!(tenant = %name, %error, retry_in_seconds = delay.as_secs(), "reconcile failed; retrying");
    Action::requeue(delay)
}

/// Runs the controller until `shutdown` completes (reconciles in flight finish first).
pub async fn run(
    client: Client,
    metrics: Arc<crate::metrics::OperatorMetrics>,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) {
    let (configs, writer) = reflector::store::<KubeBidConfig>();
    let config_watch = reflector::reflector(
        writer,
        watcher::watcher(
            Api::<KubeBidConfig>::all(client.clone()),
            watcher::Config::default(),
        ),
    )
    .default_backoff()
    .for_each(|_| std::future::ready(()));
    tokio::spawn(config_watch);
    let reporter = Reporter {
        controller: "kubebid-operator".into(),
        instance: std::env::var("POD_NAME").ok(),
    };
    let ctx = Arc::new(Context {
        client: client.clone(),
        configs,
        recorder: Recorder::new(client.clone(), reporter),
        metrics,
        backoff: Backoff::default(),
    });
    let owned = watcher::Config::default().labels("kubebid.io/managed=true");
    Controller::new(
        Api::<Tenant>::all(client.clone()),
        watcher::Config::default(),
    )
    .owns(Api::<NetworkPolicy>::all(client.clone()), owned.clone())
    .owns(Api::<Role>::all(client.clone()), owned.clone())
    .owns(Api::<RoleBinding>::all(client.clone()), owned.clone())
    .owns(Api::<ResourceQuota>::all(client.clone()), owned.clone())
    .owns(Api::<LimitRange>::all(client.clone()), owned)
    .graceful_shutdown_on(shutdown)
    .run(reconcile, error_policy, ctx)
    .for_each(|r| async move {
        match r {
            Ok((o, _)) => tracing::debug!(tenant = %o.name, "reconciled"),
            Err(e) => tracing::debug!(error = %e, "reconcile error"),
        }
    })
    .await;
}

/// Runs the controller only while this replica holds the `kubebid-operator` Lease in `namespace`. Waits to
/// lead, renews every third of the lease's duration, and stops reconciling (returning an error, so the
/// process restarts and campaigns again) when the lease is lost.
///
/// # Errors
/// Leadership was lost.
pub async fn run_elected(
    client: Client,
    namespace: &str,
    identity: String,
    metrics: Arc<crate::metrics::OperatorMetrics>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), String> {
    use crate::lease::LeaseLock;
    let lock = LeaseLock {
        api: Api::namespaced(client.clone(), namespace),
        name: "kubebid-operator".into(),
        identity,
        duration: Duration::from_secs(15),
    };
    let every = lock.duration / 3;
    let mut shutdown = Box::pin(shutdown);
    loop {
        match lock.try_lead().await {
            Ok(true) => break,
            Ok(false) => tracing::info!("another replica leads; waiting"),
            Err(e) => tracing::warn!(error = %e, "lease check failed"),
        }
        tokio::select! {
            () = tokio::time::sleep(every) => {}
            () = &mut shutdown => return Ok(()),
        }
    }
    tracing::info!(identity = %lock.identity, "leading");
    metrics.leading.set(1);
    let (lost_tx, lost_rx) = tokio::sync::oneshot::channel::<()>();
    let renew = tokio::spawn(async move {
        let mut failures = 0;
        loop {
            tokio::time::sleep(every).await;
            match lock.try_lead().await {
                Ok(true) => failures = 0,
                // A few failed renewals in a row still leave the lease ours until it expires.
                Err(e) if failures < 2 => {
                    failures += 1;
                    tracing::warn!(error = %e, "lease renewal failed");
                }
                Ok(false) | Err(_) => break,
            }
        }
        let _ = lost_tx.send(());
    });
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<bool>();
    let watcher = tokio::spawn(async move {
        let lost = tokio::select! {
            () = &mut shutdown => false,
            _ = lost_rx => true,
        };
        let _ = stop_tx.send(lost);
    });
    let (lost_flag_tx, lost_flag_rx) = tokio::sync::oneshot::channel::<bool>();
    run(client, metrics.clone(), async move {
        let lost = stop_rx.await.unwrap_or(false);
        let _ = lost_flag_tx.send(lost);
    })
    .await;
    metrics.leading.set(0);
    renew.abort();
    watcher.abort();
    if lost_flag_rx.await.unwrap_or(false) {
        Err("lost the leader lease".into())
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::Backoff;

    #[test]
    fn backoff_doubles_per_tenant_up_to_the_cap_and_resets_on_success() {
        let b = Backoff::default();
        let delays: Vec<u64> = (0..9).map(|_| b.failed("acme").as_secs()).collect();
        assert_eq!(delays, [5, 10, 20, 40, 80, 160, 300, 300, 300]);
        // Another tenant's failures are counted apart.
        assert_eq!(b.failed("globex"), Duration::from_secs(5));
        b.succeeded("acme");
        assert_eq!(b.failed("acme"), Backoff::FIRST);
        // Far past any shift width, still the cap and no overflow.
        for _ in 0..100 {
            b.failed("initech");
        }
        assert_eq!(b.failed("initech"), Backoff::MAX);
    }
}
