//! Standalone data: the cluster state as a Kubernetes `List` (what `kubectl get ns,svc,endpointslices,pods
//! -A -o yaml` prints) and KubeBid's configuration objects, read from files or directories and watched for
//! changes. Paths are found as every `kubebid` command finds its inputs ([`kubebid_model::input`]:
//! directories walked recursively, hidden entries skipped, files capped in size), so `--state DIR` and
//! `--config DIR` mean the same files here as anywhere else.
//!
//! Each kind has one place: configuration objects given as state (a Tenant in `--state`, which would leave
//! every pod of its namespaces seeing every tenant's names) and state given as configuration are refused,
//! naming the object and where it belongs. A file that does not load leaves the previous zone in place.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::SystemTime;

use kubebid_model::config::{GROUP, KubeBidConfigSpec, Tenant};
use kubebid_model::input::{self, Input, InputError};
use kubebid_model::load::{ConfigSet, ManifestItem, Origin, SourceError, manifest_items};
use serde::de::DeserializeOwned;

use crate::zone::{ClusterObjects, UnknownClients, Zone};

/// Where an object was found: file, line, and its place in a `List` when it was an item of one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Place {
    /// The file as given or found.
    pub file: Arc<str>,
    /// Index of the YAML document in the file (from 0).
    pub document: usize,
    /// Line where the object starts (from 1).
    pub line: usize,
    /// `items[3]` for an item of a `List`, empty otherwise.
    pub item: String,
}

impl Place {
    fn of(origin: &Origin) -> Self {
        Self {
            file: origin.file.clone(),
            document: origin.document,
            line: origin.line,
            item: origin.prefix.clone(),
        }
    }
}

impl fmt::Display for Place {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file, self.line)?;
        if self.document > 0 {
            write!(f, " (document {})", self.document + 1)?;
        }
        if !self.item.is_empty() {
            write!(f, ": {}", self.item)?;
        }
        Ok(())
    }
}

/// Why the state or configuration files did not load.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// A path or file could not be found or read.
    #[error(transparent)]
    Input(#[from] InputError),
    /// `-`: standard input cannot be read again when the files change.
    #[error("-: standard input cannot be watched for changes; give a file or directory")]
    Stdin,
    /// A file does not parse, or an object in it is not valid.
    #[error(transparent)]
    Source(#[from] SourceError),
    /// A KubeBid configuration object among the cluster state.
    #[error(
        "{at}: {kind} {name:?} is KubeBid configuration, not cluster state: {kind} objects belong in --config"
    )]
    ConfigInState {
        at: Place,
        kind: String,
        name: String,
    },
    /// A cluster-state object among the configuration.
    #[error(
        "{at}: {kind} {name:?} is cluster state, not KubeBid configuration: {kind} objects belong in --state"
    )]
    StateInConfig {
        at: Place,
        kind: String,
        name: String,
    },
}

/// What the state files held.
#[derive(Debug, Default)]
pub struct LoadedState {
    /// The objects the zone is built from.
    pub objects: ClusterObjects,
    /// How many objects were of kinds the zone does not use (ignored).
    pub ignored: usize,
    /// One line about the ignored objects, when there were any: how many of each kind, and where the
    /// first of each was.
    pub warnings: Vec<String>,
}

/// The kinds the zone is built from, as (apiVersion, kind).
const STATE_KINDS: [(&str, &str); 4] = [
    ("v1", "Namespace"),
    ("v1", "Service"),
    ("discovery.k8s.io/v1", "EndpointSlice"),
    ("v1", "Pod"),
];

/// KubeBid's configuration kinds, whatever version they are given with.
const CONFIG_KINDS: [&str; 3] = ["KubeBidConfig", "Tenant", "PolicyException"];

/// The apiVersion, kind and name of a manifest object (empty when missing).
fn identity(item: &ManifestItem) -> (&str, &str, &str) {
    let v = &item.value;
    (
        v["apiVersion"].as_str().unwrap_or_default(),
        v["kind"].as_str().unwrap_or_default(),
        v["metadata"]["name"].as_str().unwrap_or_default(),
    )
}

/// Whether an object is KubeBid configuration: of its API group, or of one of its kinds.
fn is_config_kind(api: &str, kind: &str) -> bool {
    api.split('/').next() == Some(GROUP) || CONFIG_KINDS.contains(&kind)
}

/// Whether an object is one of the kinds the zone is built from.
fn is_state_kind(api: &str, kind: &str) -> bool {
    STATE_KINDS.contains(&(api, kind))
}

/// The files `paths` stand for, found as every command finds its inputs (directories walked recursively
/// for `.yaml`, `.yml` and `.json` files, sorted, hidden entries skipped, links not followed), and the
/// paths that could not be. Standard input is refused: it cannot be read again on a change.
#[must_use]
pub fn files_of(paths: &[PathBuf]) -> (Vec<PathBuf>, Vec<StateError>) {
    let (inputs, errors) = input::expand(paths);
    let mut errors: Vec<StateError> = errors.into_iter().map(StateError::from).collect();
    let mut files = Vec::new();
    for i in inputs {
        match i {
            Input::File(f) => files.push(f),
            Input::Stdin => errors.push(StateError::Stdin),
        }
    }
    (files, errors)
}

/// What the files looked like: name, modification time and length of each. A change means reload.
#[must_use]
pub fn fingerprint(paths: &[PathBuf]) -> Vec<(PathBuf, Option<SystemTime>, u64)> {
    let mut out = Vec::new();
    for p in paths {
        let (files, errors) = files_of(std::slice::from_ref(p));
        for f in files {
            let meta = std::fs::metadata(&f).ok();
            out.push((
                f,
                meta.as_ref().and_then(|m| m.modified().ok()),
                meta.map_or(0, |m| m.len()),
            ));
        }
        if !errors.is_empty() {
            out.push((p.clone(), None, 0));
        }
    }
    out
}

fn typed<T: DeserializeOwned>(
    value: &serde_json::Value,
    origin: &Origin,
    kind: &str,
    errors: &mut Vec<StateError>,
) -> Option<T> {
    match serde_path_to_error::deserialize::<_, T>(value) {
        Ok(t) => Some(t),
        Err(e) => {
            let field = kubebid_model::load::path_of(e.path());
            errors.push(
                origin
                    .error(&field, format!("{kind}: {}", e.into_inner()))
                    .into(),
            );
            None
        }
    }
}

/// Every object in the files of `paths`, and what could not be read or parsed.
fn read_items(paths: &[PathBuf]) -> (Vec<ManifestItem>, Vec<StateError>) {
    let (files, mut errors) = files_of(paths);
    let mut items = Vec::new();
    for f in files {
        match input::read(&Input::File(f.clone())) {
            Ok(text) => {
                let (found, problems) = manifest_items(&f.display().to_string(), &text);
                items.extend(found);
                errors.extend(problems.into_iter().map(StateError::from));
            }
            Err(e) => errors.push(e.into()),
        }
    }
    (items, errors)
}

/// Objects of kinds the zone does not use: how many of each kind, and where the first was.
#[derive(Default)]
struct Ignored(BTreeMap<String, (usize, Place)>);

impl Ignored {
    fn add(&mut self, kind: &str, origin: &Origin) {
        self.0
            .entry(if kind.is_empty() { "(no kind)" } else { kind }.to_owned())
            .or_insert_with(|| (0, Place::of(origin)))
            .0 += 1;
    }

    fn count(&self) -> usize {
        self.0.values().map(|(n, _)| n).sum()
    }

    /// The one warning about them, if any.
    fn warning(&self) -> Option<String> {
        if self.0.is_empty() {
            return None;
        }
        let kinds: Vec<String> = self
            .0
            .iter()
            .map(|(kind, (n, first))| format!("{kind} x{n} (first at {first})"))
            .collect();
        Some(format!(
            "{} objects of kinds the DNS server does not use were ignored (it reads Namespace, Service, EndpointSlice and Pod): {}",
            self.count(),
            kinds.join(", ")
        ))
    }
}

/// Reads the cluster state from `paths`. KubeBid configuration objects are refused (they belong in
/// `--config`); objects of other kinds the zone does not use are ignored, counted and warned about once.
///
/// # Errors
/// Every problem, each naming its file and line; nothing is returned then, so a half-written file does
/// not replace a good zone.
pub fn load_state(paths: &[PathBuf]) -> Result<LoadedState, Vec<StateError>> {
    let mut objects = ClusterObjects::default();
    let mut ignored = Ignored::default();
    let (items, mut errors) = read_items(paths);
    for item in &items {
        let (api, kind, name) = identity(item);
        let (value, origin, e) = (&item.value, &item.origin, &mut errors);
        match (api, kind) {
            ("v1", "Namespace") => objects.namespaces.extend(typed(value, origin, kind, e)),
            ("v1", "Service") => objects.services.extend(typed(value, origin, kind, e)),
            ("discovery.k8s.io/v1", "EndpointSlice") => {
                objects
                    .endpoint_slices
                    .extend(typed(value, origin, kind, e));
            }
            ("v1", "Pod") => objects.pods.extend(typed(value, origin, kind, e)),
            _ if is_config_kind(api, kind) => errors.push(StateError::ConfigInState {
                at: Place::of(origin),
                kind: kind.to_owned(),
                name: name.to_owned(),
            }),
            _ => ignored.add(kind, origin),
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    let warning = ignored.warning();
    if let Some(w) = &warning {
        tracing::warn!(ignored = ignored.count(), "{w}");
    }
    Ok(LoadedState {
        objects,
        ignored: ignored.count(),
        warnings: warning.into_iter().collect(),
    })
}

/// Reads `KubeBidConfig`, Tenant and `PolicyException` objects from `paths`. Cluster state (a Pod, a
/// Service...) is refused: it belongs in `--state`; so is any other kind.
///
/// # Errors
/// Every problem, each naming its file, line and field.
pub fn load_config(paths: &[PathBuf]) -> Result<(KubeBidConfigSpec, Vec<Tenant>), Vec<StateError>> {
    let mut set = ConfigSet::default();
    let (items, mut errors) = read_items(paths);
    for item in items {
        let (api, kind, name) = identity(&item);
        if is_state_kind(api, kind) {
            errors.push(StateError::StateInConfig {
                at: Place::of(&item.origin),
                kind: kind.to_owned(),
                name: name.to_owned(),
            });
            continue;
        }
        if let Err(problems) = set.add_item(item) {
            errors.extend(problems.into_iter().map(StateError::from));
        }
    }
    errors.extend(set.cross_check().into_iter().map(StateError::from));
    if !errors.is_empty() {
        return Err(errors);
    }
    let cluster = set.config.map(|c| c.object.spec).unwrap_or_default();
    Ok((cluster, set.tenants.into_iter().map(|t| t.object).collect()))
}

/// Builds the zone from state and configuration files.
///
/// # Errors
/// Any file problem; see [`load_state`] and [`load_config`].
pub fn build_zone(
    state: &[PathBuf],
    config: &[PathBuf],
    unknown: UnknownClients,
) -> Result<Zone, Vec<StateError>> {
    let objects = load_state(state);
    let tenancy = load_config(config);
    match (objects, tenancy) {
        (Ok(state), Ok((cluster, tenants))) => {
            Ok(Zone::build(&state.objects, &cluster, &tenants, unknown))
        }
        (a, b) => Err(a
            .err()
            .into_iter()
            .flatten()
            .chain(b.err().into_iter().flatten())
            .collect()),
    }
}

/// Polls the files every `every` and publishes a rebuilt zone when they change, until `shutdown`. A
/// change that does not load is logged and the zone in service stays.
pub async fn watch(
    state: Vec<PathBuf>,
    config: Vec<PathBuf>,
    unknown: UnknownClients,
    every: std::time::Duration,
    publish: impl Fn(Zone) + Send,
    shutdown: impl std::future::Future<Output = ()>,
) {
    watch_reporting(state, config, unknown, every, publish, |_| {}, shutdown).await;
}

/// As [`watch`], also handing `failed` the errors of each change that did not load (already logged), to
/// count them.
pub async fn watch_reporting(
    state: Vec<PathBuf>,
    config: Vec<PathBuf>,
    unknown: UnknownClients,
    every: std::time::Duration,
    publish: impl Fn(Zone) + Send,
    failed: impl Fn(&[StateError]) + Send,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let all: Vec<PathBuf> = state.iter().chain(&config).cloned().collect();
    let mut seen = fingerprint(&all);
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = tokio::time::sleep(every) => {}
            () = &mut shutdown => return,
        }
        let now = fingerprint(&all);
        if now == seen {
            continue;
        }
        seen = now;
        match build_zone(&state, &config, unknown) {
            Ok(zone) => {
                tracing::info!(names = zone.len(), "state changed; zone rebuilt");
                for w in &zone.warnings {
                    tracing::warn!(warning = %w, "object skipped");
                }
                publish(zone);
            }
            Err(errors) => {
                for e in &errors {
                    tracing::error!(error = %e, "state change not applied; the previous zone stays");
                }
                failed(&errors);
            }
        }
    }
}
