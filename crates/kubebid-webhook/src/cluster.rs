//! The webhook's context from the cluster: kube-runtime reflectors over `KubeBidConfig`, `Tenant` and
//! `PolicyException` objects. Until every reflector has listed once, no policy is published (so `/readyz`
//! fails and reviews are denied); after that the policy is rebuilt on every change. Conflicts (two tenants
//! claiming one namespace, say) are resolved by the tenancy model, the older Tenant keeping its claim, and
//! logged. The webhook only reads: it never writes to the API server.

use futures::StreamExt;
use kube::Client;
use kube::runtime::reflector::Store;
use kubebid_model::config::{KubeBidConfig, PolicyException, Tenant};
use kubebid_model::load::ConfigSet;
use kubebid_policy::PolicySet;
use kubebid_server::watch::{owned, watch_kind};
use tokio::sync::watch;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Source {
    Config,
    Tenants,
    Exceptions,
}

struct Stores {
    configs: Store<KubeBidConfig>,
    tenants: Store<Tenant>,
    exceptions: Store<PolicyException>,
}

/// Rebuilds the policy from the stores. A namespace belongs to the tenant whose spec lists it, never to the
/// one its labels name: labels can be changed by whoever edits the namespace. Problems (a Tenant that takes
/// an older one's namespace, an unknown rule ID) are logged and resolved towards isolation, as the operator
/// and the DNS server resolve them, through the same tenancy model.
fn build(stores: &Stores) -> PolicySet {
    let (set, invalid) = ConfigSet::from_cluster(
        owned(&stores.configs),
        owned(&stores.tenants),
        owned(&stores.exceptions),
    );
    for e in &invalid {
        tracing::warn!(error = %e, "invalid configuration object left out");
    }
    let (policy, warnings) = PolicySet::from_cluster(&set);
    for w in warnings {
        tracing::warn!(problem = %w, "configuration from the cluster resolved towards isolation");
    }
    policy
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
    let stores = Stores {
        configs,
        tenants,
        exceptions,
    };
    let mut events = futures::stream::select_all([s1.boxed(), s2.boxed(), s3.boxed()]);
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
        if synced.len() < 3 {
            continue;
        }
        let policy = build(&stores);
        let first = tx.borrow().is_none();
        tx.send_replace(Some(policy));
        if first {
            tracing::info!("all caches synced; serving reviews");
        }
    }
}
