//! Standalone data: the cluster state as a Kubernetes `List` (what `kubectl get ns,svc,endpointslices,pods
//! -A -o yaml` prints) and KubeBid's configuration objects, read from files or directories and watched for
//! changes. A file that does not parse leaves the previous zone in place.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use kubebid_model::config::{KubeBidConfigSpec, Tenant};
use kubebid_model::load::{ConfigSet, manifest_items};
use serde::de::DeserializeOwned;

use crate::zone::ClusterObjects;

/// The files of `path`: itself, or the `.yaml`, `.yml` and `.json` files directly in it, sorted.
///
/// # Errors
/// The path cannot be read.
pub fn files_of(path: &Path) -> Result<Vec<PathBuf>, String> {
    let meta = std::fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if !meta.is_dir() {
        return Ok(vec![path.to_owned()]);
    }
    let mut out: Vec<PathBuf> = std::fs::read_dir(path)
        .map_err(|e| format!("{}: {e}", path.display()))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| matches!(e, "yaml" | "yml" | "json"))
        })
        .collect();
    out.sort();
    Ok(out)
}

/// What the files looked like: name, modification time and length of each. A change means reload.
#[must_use]
pub fn fingerprint(paths: &[PathBuf]) -> Vec<(PathBuf, Option<SystemTime>, u64)> {
    let mut out = Vec::new();
    for p in paths {
        match files_of(p) {
            Ok(files) => {
                for f in files {
                    let meta = std::fs::metadata(&f).ok();
                    out.push((
                        f,
                        meta.as_ref().and_then(|m| m.modified().ok()),
                        meta.map_or(0, |m| m.len()),
                    ));
                }
            }
            Err(_) => out.push((p.clone(), None, 0)),
        }
    }
    out
}

fn typed<T: DeserializeOwned>(
    value: &serde_json::Value,
    origin: &kubebid_model::load::Origin,
    kind: &str,
    errors: &mut Vec<String>,
) -> Option<T> {
    match serde_path_to_error::deserialize::<_, T>(value) {
        Ok(t) => Some(t),
        Err(e) => {
            let field = kubebid_model::load::path_of(e.path());
            errors.push(
                origin
                    .error(&field, format!("{kind}: {}", e.into_inner()))
                    .to_string(),
            );
            None
        }
    }
}

/// The name and text of every file of `paths`, and what could not be read.
fn read_files(paths: &[PathBuf]) -> (Vec<(String, String)>, Vec<String>) {
    let mut out = Vec::new();
    let mut errors = Vec::new();
    for p in paths {
        match files_of(p) {
            Ok(files) => {
                for f in files {
                    match std::fs::read_to_string(&f) {
                        Ok(text) => out.push((f.display().to_string(), text)),
                        Err(e) => errors.push(format!("{}: {e}", f.display())),
                    }
                }
            }
            Err(e) => errors.push(e),
        }
    }
    (out, errors)
}

/// Reads the cluster state from `paths`. Objects of other kinds are ignored.
///
/// # Errors
/// Every problem, each naming its file and line; nothing is returned then, so a half-written file does
/// not replace a good zone.
pub fn load_state(paths: &[PathBuf]) -> Result<ClusterObjects, Vec<String>> {
    let mut objects = ClusterObjects::default();
    let (files, mut errors) = read_files(paths);
    for (f, text) in files {
        let (items, problems) = manifest_items(&f, &text);
        errors.extend(problems.iter().map(ToString::to_string));
        for item in items {
            let api = item.value["apiVersion"].as_str().unwrap_or_default();
            let kind = item.value["kind"].as_str().unwrap_or_default();
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
                _ => {}
            }
        }
    }
    if errors.is_empty() {
        Ok(objects)
    } else {
        Err(errors)
    }
}

/// Reads `KubeBidConfig` and Tenant objects from `paths` (other kinds are ignored).
///
/// # Errors
/// Every problem, each naming its file, line and field.
pub fn load_config(paths: &[PathBuf]) -> Result<(KubeBidConfigSpec, Vec<Tenant>), Vec<String>> {
    let mut set = ConfigSet::default();
    let (files, mut errors) = read_files(paths);
    for (f, text) in files {
        errors.extend(set.add_text(&f, &text).iter().map(ToString::to_string));
    }
    errors.extend(set.cross_check().iter().map(ToString::to_string));
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
    unknown: crate::zone::UnknownClients,
) -> Result<crate::zone::Zone, Vec<String>> {
    let objects = load_state(state);
    let tenancy = load_config(config);
    match (objects, tenancy) {
        (Ok(objects), Ok((cluster, tenants))) => Ok(crate::zone::Zone::build(
            &objects, &cluster, &tenants, unknown,
        )),
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
    unknown: crate::zone::UnknownClients,
    every: std::time::Duration,
    publish: impl Fn(crate::zone::Zone) + Send,
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
                for e in errors {
                    tracing::error!(error = %e, "state change not applied; the previous zone stays");
                }
            }
        }
    }
}
