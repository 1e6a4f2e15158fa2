//! The operator: a kube-runtime controller over Tenants that keeps every rendered object in place.
//!
//! - One reconcile per Tenant at a time: every watched object maps to its Tenant's one key (the Tenant's
//!   name), through the tenancy model, never to a key per namespace.
//! - Every managed kind is watched (namespaces, network policies, RBAC, quotas, limit ranges, the Services
//!   that `sharedServices` grants name), so a repair follows a change within a second; a `KubeBidConfig`
//!   change reconciles every Tenant and the cluster-wide objects.
//! - The operator checks Tenants itself, with the same tenancy model the webhook asks: a Tenant that claims a
//!   reserved namespace or another tenant's namespace, domain or owner is not acted on, whether or not the
//!   webhook ran, and its status says why.
//! - Applies are server-side, forced, as field manager `kubebid`; what a Tenant no longer renders is pruned.
//! - Only the replica holding the `kubebid-operator` Lease reconciles; one that loses it (an API server
//!   restart) stops reconciling and campaigns again instead of exiting.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use futures::{FutureExt, StreamExt};
use k8s_openapi::api::core::v1::{LimitRange, Namespace, ResourceQuota, Service};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::node::v1::RuntimeClass;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use k8s_openapi::api::storage::v1::StorageClass;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::api::{Api, PartialObjectMeta, Patch, PatchParams};
use kube::runtime::WatchStreamExt;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Client, Resource, ResourceExt};
use kubebid_model::config::{
    FieldError, KubeBidConfig, KubeBidConfigSpec, MANAGED_LABEL, NamespaceState, TENANT_LABEL,
    Tenant, TenantStatus,
};
use kubebid_model::tenancy::Tenancy;

use crate::reconcile::{FIELD_MANAGER, Outcome, ReconcileError, apply_all, prune};
use crate::render::{self, TenantRenderer};

/// Shared state of the controller.
pub struct Context {
    pub client: Client,
    pub configs: Store<KubeBidConfig>,
    pub tenants: Store<Tenant>,
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

/// The cluster settings in force: the `KubeBidConfig` named `kubebid`, else the first by name, else defaults.
#[must_use]
pub fn cluster_config(store: &Store<KubeBidConfig>) -> KubeBidConfigSpec {
    let mut all = store.state();
    all.sort_by_key(|c| (c.metadata.name.as_deref() != Some("kubebid"), c.name_any()));
    all.first().map(|c| c.spec.clone()).unwrap_or_default()
}

/// The tenancy model of what the stores hold.
#[must_use]
pub fn model_of(cluster: &KubeBidConfigSpec, tenants: &Store<Tenant>) -> Tenancy {
    let all: Vec<Tenant> = tenants.state().iter().map(|t| (**t).clone()).collect();
    Tenancy::new(cluster, &all)
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

/// What a reconcile of one Tenant came to.
#[derive(Debug)]
pub enum TenantOutcome {
    /// Rendered and applied.
    Applied {
        outcome: Outcome,
        /// What the render could not open (a shared Service that does not exist).
        warnings: Vec<String>,
    },
    /// Not acted on: the Tenant is invalid or takes what another holds.
    Invalid(Vec<FieldError>),
}

fn joined(problems: &[FieldError]) -> String {
    problems
        .iter()
        .map(|p| format!("{}: {}", p.path, p.message))
        .collect::<Vec<_>>()
        .join("; ")
}

/// The status a reconcile result gives, keeping transition times of conditions whose status did not change.
#[must_use]
pub fn status_for(tenant: &Tenant, result: &Result<TenantOutcome, ReconcileError>) -> TenantStatus {
    let generation = tenant.metadata.generation;
    let previous = tenant.status.as_ref();
    let prev = |t: &str| previous.and_then(|s| s.conditions.iter().find(|c| c.type_ == t));
    let (ok, reason, message) = match result {
        Ok(TenantOutcome::Applied { warnings, .. }) if warnings.is_empty() => (
            true,
            "Applied",
            "every managed object is in place".to_owned(),
        ),
        Ok(TenantOutcome::Applied { warnings, .. }) => (
            true,
            "Applied",
            format!(
                "every managed object is in place; left closed: {}",
                warnings.join("; ")
            ),
        ),
        Ok(TenantOutcome::Invalid(problems)) => (
            false,
            "Invalid",
            format!("not acted on: {}", joined(problems)),
        ),
        Err(e) => (false, "ApplyFailed", e.to_string()),
    };
    let ready = condition(
        "Ready",
        ok,
        reason,
        message.clone(),
        generation,
        prev("Ready"),
    );
    let degraded = condition(
        "Degraded",
        !ok,
        reason,
        if ok { String::new() } else { message },
        generation,
        prev("Degraded"),
    );
    TenantStatus {
        conditions: vec![ready, degraded],
        namespaces: tenant
            .spec
            .namespaces
            .iter()
            .map(|n| NamespaceState {
                name: n.clone(),
                ready: ok,
            })
            .collect(),
        observed_generation: generation,
    }
}

/// Reads the Services that the Tenant's `sharedServices` grants name; missing ones are left out (the
/// renderer opens nothing for them and says so).
async fn shared_services(
    client: &Client,
    model: &Tenancy,
    name: &str,
) -> Result<Vec<Service>, ReconcileError> {
    let mut out = Vec::new();
    let Some(scope) = model.tenant(name) else {
        return Ok(out);
    };
    for (ns, svc) in &scope.shared_services {
        let api: Api<Service> = Api::namespaced(client.clone(), ns);
        match api.get_opt(svc).await {
            Ok(Some(s)) => out.push(s),
            Ok(None) => {}
            Err(source) => {
                return Err(ReconcileError::Api {
                    object: format!("Service {ns}/{svc}"),
                    source,
                });
            }
        }
    }
    Ok(out)
}

/// One reconcile of one Tenant: check it against the tenancy model, render, apply, prune, then write the
/// status if (and only if) it changed.
///
/// # Errors
/// The apply error (after the Degraded status is recorded), or a status write error.
pub async fn reconcile_tenant(
    tenant: &Tenant,
    cluster: &KubeBidConfigSpec,
    model: &Tenancy,
    client: &Client,
) -> Result<TenantOutcome, ReconcileError> {
    let name = tenant.name_any();
    let result = async {
        let services = shared_services(client, model, &name).await?;
        let rendered = match TenantRenderer::new(cluster, model)
            .with_services(&services)
            .render(tenant)
        {
            Ok(r) => r,
            Err(problems) => return Ok(TenantOutcome::Invalid(problems)),
        };
        let mut desired = rendered.objects;
        render::owned_by(&mut desired, tenant);
        let mut outcome = apply_all(client, &desired).await?;
        let namespaces: BTreeSet<String> = tenant.spec.namespaces.iter().cloned().collect();
        prune(client, &name, &namespaces, &desired, &mut outcome).await?;
        Ok(TenantOutcome::Applied {
            outcome,
            warnings: rendered.warnings,
        })
    }
    .await;
    let status = status_for(tenant, &result);
    if tenant.status.as_ref() != Some(&status) {
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

async fn publish(ctx: &Context, tenant: &Tenant, type_: EventType, reason: &str, note: String) {
    let event = Event {
        type_,
        reason: reason.into(),
        note: Some(note),
        action: "Reconcile".into(),
        secondary: None,
    };
    if let Err(e) = ctx.recorder.publish(&event, &tenant.object_ref(&())).await {
        tracing::warn!(error = %crate::reconcile::describe_error(&e), "could not record an Event");
    }
}

async fn reconcile(tenant: Arc<Tenant>, ctx: Arc<Context>) -> Result<Action, ReconcileError> {
    let cluster = cluster_config(&ctx.configs);
    let model = model_of(&cluster, &ctx.tenants);
    let started = std::time::Instant::now();
    let result = reconcile_tenant(&tenant, &cluster, &model, &ctx.client).await;
    ctx.metrics.record(&result, started.elapsed().as_secs_f64());
    match &result {
        Ok(TenantOutcome::Applied { outcome: o, .. })
            if !(o.created.is_empty()
                && o.repaired.is_empty()
                && o.pruned.is_empty()
                && o.released.is_empty()) =>
        {
            let note = format!(
                "created {}, restored {}, pruned {}, namespaces let go {}",
                o.created.len(),
                o.repaired.len(),
                o.pruned.len(),
                o.released.len()
            );
            publish(&ctx, &tenant, EventType::Normal, "Applied", note).await;
        }
        Ok(TenantOutcome::Invalid(problems)) => {
            let was_invalid = tenant.status.as_ref().is_some_and(|s| {
                s.conditions
                    .iter()
                    .any(|c| c.type_ == "Ready" && c.reason == "Invalid")
            });
            if !was_invalid {
                publish(
                    &ctx,
                    &tenant,
                    EventType::Warning,
                    "Invalid",
                    format!("not acted on: {}", joined(problems)),
                )
                .await;
            }
        }
        Ok(TenantOutcome::Applied { .. }) => {}
        Err(e) => {
            publish(
                &ctx,
                &tenant,
                EventType::Warning,
                "ApplyFailed",
                e.to_string(),
            )
            .await;
        }
    }
    let outcome = result?;
    ctx.backoff.succeeded(&tenant.name_any());
    Ok(match outcome {
        // Another Tenant's deletion or edit can make this one valid: look again soon.
        TenantOutcome::Invalid(_) => Action::requeue(Duration::from_secs(30)),
        // Re-check periodically even without events, to catch what a missed watch event would hide.
        TenantOutcome::Applied { .. } => Action::requeue(Duration::from_secs(300)),
    })
}

// kube-runtime's controller calls error policies with owned `Arc`s.
#[allow(clippy::needless_pass_by_value)]
fn error_policy(tenant: Arc<Tenant>, error: &ReconcileError, ctx: Arc<Context>) -> Action {
    let name = tenant.name_any();
    let delay = ctx.backoff.failed(&name);
    tracing::warn!(tenant = %name, %error, retry_in_seconds = delay.as_secs(), "reconcile failed; retrying");
    Action::requeue(delay)
}

/// The Tenants a namespaced object (or a Namespace, `own_name`) belongs to: the one whose spec lists its
/// namespace, and the one its tenant label names (a namespace a Tenant let go, an object to prune). Always the
/// Tenant's one key, so a Tenant is never reconciled twice at once.
fn tenants_of(
    store: &Store<Tenant>,
    namespace: Option<&str>,
    label: Option<&str>,
) -> Vec<ObjectRef<Tenant>> {
    let mut names: BTreeSet<String> = label.into_iter().map(str::to_owned).collect();
    if let Some(ns) = namespace {
        for t in store.state() {
            if t.spec.namespaces.iter().any(|n| n == ns) {
                names.insert(t.name_any());
            }
        }
    }
    names.into_iter().map(|n| ObjectRef::new(&n)).collect()
}

fn by_namespace<K: Resource>(store: Store<Tenant>) -> impl Fn(K) -> Vec<ObjectRef<Tenant>> {
    move |obj: K| {
        let meta = obj.meta();
        let label = meta.labels.as_ref().and_then(|l| l.get(TENANT_LABEL));
        tenants_of(&store, meta.namespace.as_deref(), label.map(String::as_str))
    }
}

/// Runs the controller until `shutdown` completes (reconciles in flight finish first).
// One watch per managed kind, each mapped to its Tenant: a list, not logic.
#[allow(clippy::too_many_lines)]
pub async fn run(
    client: Client,
    metrics: Arc<crate::metrics::OperatorMetrics>,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) {
    let (configs, writer) = reflector::store::<KubeBidConfig>();
    // Every change of the cluster settings re-renders every Tenant and the cluster-wide objects.
    let (changed_tx, changed_rx) = tokio::sync::watch::channel(());
    let config_watch = reflector::reflector(
        writer,
        watcher::watcher(
            Api::<KubeBidConfig>::all(client.clone()),
            watcher::Config::default(),
        ),
    )
    .default_backoff()
    .for_each(move |e| {
        if matches!(
            e,
            Ok(watcher::Event::Apply(_) | watcher::Event::Delete(_) | watcher::Event::InitDone)
        ) {
            changed_tx.send_replace(());
        }
        std::future::ready(())
    });
    let config_task = tokio::spawn(config_watch);
    let cluster_task = tokio::spawn(keep_cluster_objects(
        client.clone(),
        configs.clone(),
        changed_rx.clone(),
    ));
    let reporter = Reporter {
        controller: "kubebid-operator".into(),
        instance: std::env::var("POD_NAME").ok(),
    };
    let managed = watcher::Config::default().labels(&format!("{MANAGED_LABEL}=true"));
    let controller = Controller::new(
        Api::<Tenant>::all(client.clone()),
        watcher::Config::default(),
    );
    let tenants = controller.store();
    let ctx = Arc::new(Context {
        client: client.clone(),
        configs,
        tenants: tenants.clone(),
        recorder: Recorder::new(client.clone(), reporter),
        metrics,
        backoff: Backoff::default(),
    });
    let services = tenants.clone();
    let config_changes = tokio_stream::wrappers::WatchStream::from_changes(changed_rx);
    controller
        .watches(Api::<Namespace>::all(client.clone()), managed.clone(), {
            let store = tenants.clone();
            move |ns: Namespace| {
                let label = ns.labels().get(TENANT_LABEL).cloned();
                tenants_of(&store, ns.metadata.name.as_deref(), label.as_deref())
            }
        })
        .watches(
            Api::<NetworkPolicy>::all(client.clone()),
            managed.clone(),
            by_namespace(tenants.clone()),
        )
        .watches(
            Api::<Role>::all(client.clone()),
            managed.clone(),
            by_namespace(tenants.clone()),
        )
        .watches(
            Api::<RoleBinding>::all(client.clone()),
            managed.clone(),
            by_namespace(tenants.clone()),
        )
        .watches(
            Api::<ResourceQuota>::all(client.clone()),
            managed.clone(),
            by_namespace(tenants.clone()),
        )
        .watches(
            Api::<LimitRange>::all(client.clone()),
            managed,
            by_namespace(tenants.clone()),
        )
        .watches(
            // Metadata only: a change is all that matters; the reconcile reads the Service it needs.
            Api::<PartialObjectMeta<Service>>::all(client.clone()),
            watcher::Config::default(),
            move |svc: PartialObjectMeta<Service>| {
                let (ns, name) = (
                    svc.metadata.namespace.clone().unwrap_or_default(),
                    svc.metadata.name.clone().unwrap_or_default(),
                );
                let wanted = format!("{ns}/{name}");
                services
                    .state()
                    .iter()
                    .filter(|t| t.spec.network.shared_services.contains(&wanted))
                    .map(|t| ObjectRef::new(&t.name_any()))
                    .collect::<Vec<_>>()
            },
        )
        .reconcile_all_on(config_changes)
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, ctx)
        .for_each(|r| async move {
            match r {
                Ok((o, _)) => tracing::debug!(tenant = %o.name, "reconciled"),
                Err(e) => tracing::debug!(error = %e, "reconcile error"),
            }
        })
        .await;
    config_task.abort();
    cluster_task.abort();
}

/// Keeps the cluster-wide objects (the `kubebid-secure` `RuntimeClass`, the `encrypted-ssd` `StorageClass`,
/// Cilium's `encrypt-all` when asked for) in place, whatever installed KubeBid: at start, on every
/// `KubeBidConfig` change, on every change of one of them, and every five minutes.
async fn keep_cluster_objects(
    client: Client,
    configs: Store<KubeBidConfig>,
    mut config_changed: tokio::sync::watch::Receiver<()>,
) {
    let managed = watcher::Config::default().labels(&format!("{MANAGED_LABEL}=true"));
    let mut changes = futures::stream::select(
        watcher::watcher(
            Api::<PartialObjectMeta<RuntimeClass>>::all(client.clone()),
            managed.clone(),
        )
        .default_backoff()
        .map(|_| ())
        .boxed(),
        watcher::watcher(
            Api::<PartialObjectMeta<StorageClass>>::all(client.clone()),
            managed,
        )
        .default_backoff()
        .map(|_| ())
        .boxed(),
    );
    let mut failures: u32 = 0;
    loop {
        let delay = match apply_all(&client, &render::cluster(&cluster_config(&configs))).await {
            Ok(o) => {
                failures = 0;
                if !o.created.is_empty() || !o.repaired.is_empty() {
                    tracing::info!(created = ?o.created, restored = ?o.repaired, "cluster-wide objects applied");
                }
                Duration::from_secs(300)
            }
            Err(e) => {
                failures = failures.saturating_add(1);
                tracing::warn!(error = %e, "cluster-wide objects not applied; retrying");
                Backoff::FIRST
                    .saturating_mul(1u32.checked_shl(failures.min(6)).unwrap_or(64))
                    .min(Backoff::MAX)
            }
        };
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            r = config_changed.changed() => if r.is_err() { return },
            Some(()) = changes.next() => {}
        }
    }
}

/// Why the operator stopped for good.
#[derive(Debug, thiserror::Error)]
pub enum OperatorError {
    #[error(
        "namespace {0:?} (of the kubebid-operator Lease) does not exist; run in KubeBid's namespace, or set POD_NAMESPACE or --namespace"
    )]
    NoNamespace(String),
}

/// Runs the controller only while this replica holds the `kubebid-operator` Lease in `namespace`. Waits to
/// lead, renews every third of the lease's duration, and when it cannot renew for a whole lease duration (an
/// API server restart, a network partition) stops reconciling and campaigns again: it never exits on its own.
///
/// # Errors
/// The Lease's namespace does not exist.
pub async fn run_elected(
    client: Client,
    namespace: &str,
    identity: String,
    metrics: Arc<crate::metrics::OperatorMetrics>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), OperatorError> {
    use crate::lease::LeaseLock;
    let lock = Arc::new(LeaseLock {
        api: Api::namespaced(client.clone(), namespace),
        name: "kubebid-operator".into(),
        identity,
        duration: Duration::from_secs(15),
    });
    let every = lock.duration / 3;
    let shutdown = shutdown.boxed().shared();
    loop {
        // Campaign.
        loop {
            match lock.try_lead().await {
                Ok(true) => break,
                Ok(false) => {
                    metrics.healthy(Ok(()));
                    tracing::info!("another replica leads; waiting");
                }
                Err(kube::Error::Api(s)) if s.code == 404 => {
                    return Err(OperatorError::NoNamespace(namespace.to_owned()));
                }
                Err(e) => {
                    let e = crate::reconcile::describe_error(&e);
                    tracing::warn!(error = %e, "lease check failed");
                    metrics.healthy(Err(format!("leader election: {e}")));
                }
            }
            tokio::select! {
                () = tokio::time::sleep(every) => {}
                () = shutdown.clone() => return Ok(()),
            }
        }
        tracing::info!(identity = %lock.identity, "leading");
        metrics.leading.set(1);
        metrics.healthy(Ok(()));
        let (lost_tx, lost_rx) = tokio::sync::oneshot::channel::<()>();
        let renewer = {
            let lock = lock.clone();
            let metrics = metrics.clone();
            tokio::spawn(async move {
                let mut renewed = tokio::time::Instant::now();
                loop {
                    tokio::time::sleep(every).await;
                    match lock.try_lead().await {
                        Ok(true) => {
                            renewed = tokio::time::Instant::now();
                            metrics.healthy(Ok(()));
                        }
                        Ok(false) => break,
                        // Until the lease would have expired it is still ours; keep trying.
                        Err(e) => {
                            let e = crate::reconcile::describe_error(&e);
                            tracing::warn!(error = %e, "lease renewal failed");
                            metrics.healthy(Err(format!("lease renewal: {e}")));
                            if renewed.elapsed() >= lock.duration {
                                break;
                            }
                        }
                    }
                }
                let _ = lost_tx.send(());
            })
        };
        let stop = {
            let shutdown = shutdown.clone();
            async move {
                tokio::select! {
                    () = shutdown => {}
                    _ = lost_rx => tracing::warn!("leader lease lost; stopping reconciles and campaigning again"),
                }
            }
        };
        run(client.clone(), metrics.clone(), stop).await;
        metrics.leading.set(0);
        renewer.abort();
        if shutdown.clone().now_or_never().is_some() {
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use kube::runtime::reflector;
    use kube::runtime::watcher::Event;
    use kubebid_model::config::{Tenant, TenantSpec};

    use super::{Backoff, tenants_of};

    /// Every object of a tenant maps to the Tenant's one key (its name, no namespace), so the controller runs
    /// one reconcile of it at a time, not one per namespace it owns.
    #[test]
    fn objects_map_to_their_tenants_single_key() {
        let (store, mut writer) = reflector::store::<Tenant>();
        let mut spec = TenantSpec::builtin_default();
        spec.namespaces = vec!["acme".into(), "acme-dev".into()];
        let mut t = Tenant::new("acme", spec);
        t.metadata.name = Some("acme".into());
        writer.apply_watcher_event(&Event::Apply(t));
        for (ns, label) in [
            (Some("acme"), None),
            (Some("acme-dev"), Some("acme")),
            (None, Some("acme")),
        ] {
            let refs = tenants_of(&store, ns, label);
            assert_eq!(refs.len(), 1, "{ns:?} {label:?}: {refs:?}");
            assert_eq!(refs[0].name, "acme");
            assert_eq!(
                refs[0].namespace, None,
                "a key per namespace would run reconciles side by side"
            );
        }
        // A namespace the Tenant let go still maps to it by label, so its objects get pruned.
        assert_eq!(tenants_of(&store, Some("old"), Some("acme")).len(), 1);
        assert!(tenants_of(&store, Some("other"), None).is_empty());
    }

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
