//! The webhook's context from the cluster: kube-runtime reflectors over `KubeBidConfig`, `Tenant`,
//! `PolicyException` and `Namespace` objects. Until every reflector has listed once, no policy is published
//! (so `/readyz` fails and reviews are denied); after that the policy is rebuilt on every change. A change
//! that makes the configuration invalid (two tenants claiming one namespace, say) is logged and the last
//! good policy stays in force. The webhook only reads: it never writes to the API server.

use std::collections::BTreeMap;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Namespace;
use kube::Client;
use kube::runtime::reflector::Store;
use kubebid_model::config::{KubeBidConfig, PolicyException, TENANT_LABEL, Tenant};
use kubebid_model::load::ConfigSet;
use kubebid_policy::PolicySet;
use kubebid_runtime::watch::watch_kind;
use tokio::sync::watch;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Source {
    Config,
    Tenants,
    Exceptions,
    Namespaces,
}

struct Stores {
    configs: Store<KubeBidConfig>,
    tenants: Store<Tenant>,
    exceptions: Store<PolicyException>,
    namespaces: Store<Namespace>,
}

/// Rebuilds the policy from the stores. Namespaces labelled `kubebid.io/tenant: X` count as tenant X's when
/// the Tenant `X` exists, in addition to the namespaces it lists.
fn build(stores: &Stores) -> Result<PolicySet, Vec<String>> {
    let mut tenants: Vec<Tenant> = stores
        .tenants
        .state()
        .iter()
        .map(|t| (**t).clone())
        .collect();
    let mut by_name: BTreeMap<String, usize> = BTreeMap::new();
    for (i, t) in tenants.iter().enumerate() {
        if let Some(n) = &t.metadata.name {
            by_name.insert(n.clone(), i);
        }
    }
    for ns in stores.namespaces.state() {
        let (Some(name), Some(owner)) = (
            ns.metadata.name.as_ref(),
            ns.metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(TENANT_LABEL)),
        ) else {
            continue;
        };
        if let Some(&i) = by_name.get(owner)
            && !tenants[i].spec.namespaces.contains(name)
        {
            tenants[i].spec.namespaces.push(name.clone());
        }
    }
    let configs = stores
        .configs
        .state()
        .iter()
        .map(|c| (**c).clone())
        .collect();
    let exceptions = stores
        .exceptions
        .state()
        .iter()
        .map(|e| (**e).clone())
        .collect();
    let (set, invalid) = ConfigSet::from_cluster(configs, tenants, exceptions);
    for e in &invalid {
        tracing::warn!(error = %e, "invalid configuration object left out");
    }
    PolicySet::from_config(&set).map_err(|errs| errs.iter().map(ToString::to_string).collect())
}

/// Watches the cluster and publishes the policy on `tx` until `shutdown` completes.
pub async fn run(
    client: Client,
    tx: watch::Sender<Option<PolicySet>>,
    shutdown: impl Future<Output = ()>,
) {
    let (configs, s1) = watch_kind::<KubeBidConfig, _>(&client, Source::Config);
    let (tenants, s2) = watch_kind::<Tenant, _>(&client, Source::Tenants);
    let (exceptions, s3) = watch_kind::<PolicyException, _>(&client, Source::Exceptions);
    let (namespaces, s4) = watch_kind::<Namespace, _>(&client, Source::Namespaces);
    let stores = Stores {
        configs,
        tenants,
        exceptions,
        namespaces,
    };
    let mut events = futures::stream::select_all([s1.boxed(), s2.boxed(), s3.boxed(), s4.boxed()]);
    let mut synced = std::collections::BTreeSet::new();
    tokio::pin!(shutdown);
    loop {
        let (source, init_done) = tokio::select! {
            e = events.next() => match e { Some(e) => e, None => return },
            () = &mut shutdown => return,
        };
        if init_done && synced.insert(source) {
            tracing::info!(?source, "cache synced");
        }
        if synced.len() < 4 {
            continue;
        }
        match build(&stores) {
            Ok(policy) => {
                let first = tx.borrow().is_none();
                tx.send_replace(Some(policy));
                if first {
                    tracing::info!("all caches synced; serving reviews");
                }
            }
            Err(errors) => {
                for e in errors {
                    tracing::error!(error = %e, "configuration from the cluster is invalid; keeping the last good policy");
                }
            }
        }
    }
}
