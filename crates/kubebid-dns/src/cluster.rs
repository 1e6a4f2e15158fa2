//! In a cluster: kube-runtime reflectors over Namespaces, Services, EndpointSlices, Pods, Tenants and the
//! `KubeBidConfig`. Once every list has completed the zone is built and published; after that it is rebuilt
//! whenever one of them changes, at most every 200 ms (a rollout changes many objects at once), and no
//! more often than twice the time the last build took.

use std::collections::BTreeSet;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::Client;
use kubebid_model::config::{KubeBidConfig, Tenant};
use kubebid_model::load::ConfigSet;
use kubebid_server::watch::{owned, watch_kind};

use crate::zone::{ClusterObjects, UnknownClients, Zone};

/// How often the zone may be rebuilt while objects keep changing.
pub const REBUILD_EVERY: Duration = Duration::from_millis(200);

/// Watches the cluster and calls `publish` with every rebuilt zone until `shutdown` completes.
pub async fn run(
    client: Client,
    unknown: UnknownClients,
    publish: impl Fn(Zone) + Send,
    shutdown: impl Future<Output = ()>,
) {
    let (namespaces, s0) = watch_kind::<Namespace, _>(&client, 0);
    let (services, s1) = watch_kind::<Service, _>(&client, 1);
    let (slices, s2) = watch_kind::<EndpointSlice, _>(&client, 2);
    let (pods, s3) = watch_kind::<Pod, _>(&client, 3);
    let (tenants, s4) = watch_kind::<Tenant, _>(&client, 4);
    let (configs, s5) = watch_kind::<KubeBidConfig, _>(&client, 5);
    let mut events = futures::stream::select_all([
        s0.boxed(),
        s1.boxed(),
        s2.boxed(),
        s3.boxed(),
        s4.boxed(),
        s5.boxed(),
    ]);
    let mut synced = BTreeSet::new();
    let mut dirty = false;
    let mut tick = tokio::time::interval(REBUILD_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            e = events.next() => match e {
                Some((index, init_done)) => {
                    if init_done {
                        synced.insert(index);
                    }
                    dirty = true;
                }
                None => return,
            },
            _ = tick.tick() => {
                if !dirty || synced.len() < 6 {
                    continue;
                }
                dirty = false;
                let objects = ClusterObjects {
                    namespaces: owned(&namespaces),
                    services: owned(&services),
                    endpoint_slices: owned(&slices),
                    pods: owned(&pods),
                };
                let (set, invalid) = ConfigSet::from_cluster(owned(&configs), owned(&tenants), Vec::new());
                for e in &invalid {
                    tracing::warn!(error = %e, "invalid configuration object left out");
                }
                let cluster = set.config.map(|c| c.object.spec).unwrap_or_default();
                let tenants: Vec<Tenant> = set.tenants.into_iter().map(|t| t.object).collect();
                let started = std::time::Instant::now();
                let zone = Zone::build(&objects, &cluster, &tenants, unknown);
                // A big cluster under constant churn: rebuilding takes long, so wait twice that before the
                // next one, which bounds the CPU spent on rebuilds to a third of a core.
                let took = started.elapsed();
                if took * 2 > REBUILD_EVERY {
                    tick.reset_after(took * 2);
                }
                for w in &zone.warnings {
                    tracing::warn!(warning = %w, "cluster object skipped");
                }
                tracing::debug!(names = zone.len(), "zone rebuilt");
                publish(zone);
            }
            () = &mut shutdown => return,
        }
    }
}

/// Keeps `shared`'s zone current from the cluster.
pub async fn feed(
    client: Client,
    unknown: UnknownClients,
    shared: Arc<crate::server::Shared>,
    ready: tokio::sync::watch::Sender<bool>,
    shutdown: impl Future<Output = ()>,
) {
    run(
        client,
        unknown,
        move |zone| {
            shared.set_zone(zone);
            ready.send_replace(true);
        },
        shutdown,
    )
    .await;
}
