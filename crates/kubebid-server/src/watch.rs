//! A reflector over all objects of one kind, as a store and a stream of `(tag, initial_list_done)`.

use std::fmt::Debug;

use futures::StreamExt;
use kube::runtime::WatchStreamExt;
use kube::runtime::reflector::{self, Store};
use kube::runtime::watcher::{self, Event};
use kube::{Api, Client, Resource};
use serde::de::DeserializeOwned;

/// Watches every `K` in the cluster into a store. The stream yields `(tag, true)` when the first list has
/// completed and `(tag, false)` on every later change; watch errors are logged and retried with backoff.
pub fn watch_kind<K, T>(
    client: &Client,
    tag: T,
) -> (
    Store<K>,
    impl futures::Stream<Item = (T, bool)> + Send + use<K, T>,
)
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    T: Copy + Debug + Send + Sync + 'static,
{
    let (store, writer) = reflector::store::<K>();
    let stream = reflector::reflector(
        writer,
        watcher::watcher(Api::<K>::all(client.clone()), watcher::Config::default()),
    )
    .default_backoff()
    .filter_map(move |event| async move {
        match event {
            Ok(Event::InitDone) => Some((tag, true)),
            Ok(Event::Apply(_) | Event::Delete(_)) => Some((tag, false)),
            Ok(Event::Init | Event::InitApply(_)) => None,
            Err(e) => {
                tracing::warn!(source = ?tag, error = %e, "watch failed; retrying with backoff");
                None
            }
        }
    });
    (store, stream)
}

/// Every object in `store`, owned.
#[must_use]
pub fn owned<K>(store: &Store<K>) -> Vec<K>
where
    K: Resource<DynamicType = ()> + Clone + 'static,
{
    store.state().iter().map(|o| (**o).clone()).collect()
}
