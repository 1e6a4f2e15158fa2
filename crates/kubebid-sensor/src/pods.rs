//! The pods running on this node, from a node-local watch (`spec.nodeName=<node>`): the API server sends
//! this node's pods only, not the cluster's.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use futures::StreamExt as _;
use k8s_openapi::api::core::v1::Pod as K8sPod;
use kube::runtime::WatchStreamExt as _;
use kube::runtime::reflector::{self, Store};
use kube::runtime::watcher::{self, Event};

use crate::sensor::Pod;

/// The pods by UID, and how many times they changed (the sensor takes a new copy when it moved).
#[derive(Clone, Debug, Default)]
pub struct NodePods {
    inner: Arc<Mutex<(u64, HashMap<String, Pod>)>>,
}

impl NodePods {
    /// The pods, if they changed since `seen` (and the new generation).
    #[must_use]
    pub fn changed_since(&self, seen: u64) -> Option<(u64, HashMap<String, Pod>)> {
        let g = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        (g.0 != seen).then(|| (g.0, g.1.clone()))
    }

    fn publish(&self, store: &Store<K8sPod>) {
        let pods = store
            .state()
            .iter()
            .filter_map(|p| Some((p.metadata.uid.clone()?, pod(p))))
            .collect();
        let mut g = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        g.0 += 1;
        g.1 = pods;
    }
}

/// What the sensor needs of a pod: its namespace, name, and containers by ID.
#[must_use]
pub fn pod(p: &K8sPod) -> Pod {
    let containers = p
        .status
        .iter()
        .flat_map(|s| {
            s.container_statuses
                .iter()
                .flatten()
                .chain(s.init_container_statuses.iter().flatten())
                .chain(s.ephemeral_container_statuses.iter().flatten())
        })
        .filter_map(|c| {
            let id = c.container_id.as_deref()?;
            let id = id.split_once("://").map_or(id, |(_, id)| id);
            Some((id.to_owned(), c.name.clone()))
        })
        .collect();
    Pod {
        namespace: p.metadata.namespace.clone().unwrap_or_default(),
        name: p.metadata.name.clone().unwrap_or_default(),
        containers,
    }
}

/// Watches the pods of `node` into `out` until the stream ends (it retries with backoff on errors).
pub async fn watch(client: kube::Client, node: &str, out: NodePods) {
    let (store, writer) = reflector::store::<K8sPod>();
    let config = watcher::Config::default().fields(&format!("spec.nodeName={node}"));
    let stream = reflector::reflector(
        writer,
        watcher::watcher(kube::Api::<K8sPod>::all(client), config),
    )
    .default_backoff();
    futures::pin_mut!(stream);
    while let Some(event) = stream.next().await {
        match event {
            Ok(Event::InitDone | Event::Apply(_) | Event::Delete(_)) => out.publish(&store),
            Ok(Event::Init | Event::InitApply(_)) => {}
            Err(e) => tracing::warn!(error = %e, "pod watch failed; retrying with backoff"),
        }
    }
}
