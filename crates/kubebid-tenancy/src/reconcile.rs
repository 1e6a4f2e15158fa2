//! Applying what the renderer produces: each object is read, and written (server-side apply, field manager
//! `kubebid`) only when it is missing or differs from what KubeBid wants. An unchanged Tenant therefore
//! reconciles without a single write, and a deleted or edited managed object is restored.

use kube::Client;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams};
use serde_json::Value;

/// The field manager of every write.
pub const FIELD_MANAGER: &str = "kubebid";

/// Whether `observed` already holds everything in `desired`: every desired field is present with the same
/// value (objects compared key by key, lists element by element). Fields the server or others added are
/// ignored, so server defaults never cause a write.
#[must_use]
pub fn holds(observed: &Value, desired: &Value) -> bool {
    match (observed, desired) {
        (Value::Object(o), Value::Object(d)) => d
            .iter()
            .all(|(k, dv)| o.get(k).is_some_and(|ov| holds(ov, dv))),
        (Value::Array(o), Value::Array(d)) => {
            o.len() == d.len() && o.iter().zip(d).all(|(ov, dv)| holds(ov, dv))
        }
        (o, d) => o == d,
    }
}

/// What one reconcile did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    /// Objects that did not exist and were created.
    pub created: Vec<String>,
    /// Objects that existed but differed, and were restored.
    pub repaired: Vec<String>,
    /// Objects already as desired (no request beyond the read).
    pub unchanged: usize,
}

/// A reconcile failure, naming the object.
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error("{object}: {message}")]
    Object { object: String, message: String },
    #[error("{object}: API error: {source}")]
    Api { object: String, source: kube::Error },
}

fn describe(v: &Value) -> String {
    let kind = v["kind"].as_str().unwrap_or("?");
    match v["metadata"]["namespace"].as_str() {
        Some(ns) => format!(
            "{kind} {ns}/{}",
            v["metadata"]["name"].as_str().unwrap_or("?")
        ),
        None => format!("{kind} {}", v["metadata"]["name"].as_str().unwrap_or("?")),
    }
}

fn api_for(
    client: &Client,
    object: &Value,
) -> Result<(Api<DynamicObject>, String), ReconcileError> {
    let err = |message: &str| ReconcileError::Object {
        object: describe(object),
        message: message.to_owned(),
    };
    let api_version = object["apiVersion"]
        .as_str()
        .ok_or_else(|| err("no apiVersion"))?;
    let kind = object["kind"].as_str().ok_or_else(|| err("no kind"))?;
    let name = object["metadata"]["name"]
        .as_str()
        .ok_or_else(|| err("no name"))?
        .to_owned();
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    let resource = ApiResource::from_gvk(&GroupVersionKind::gvk(group, version, kind));
    let api = match object["metadata"]["namespace"].as_str() {
        Some(ns) => Api::namespaced_with(client.clone(), ns, &resource),
        None => Api::all_with(client.clone(), &resource),
    };
    Ok((api, name))
}

/// Brings every object in `desired` (in order: namespaces before what lives in them) to its desired state.
///
/// # Errors
/// The first object that could not be read or written; objects before it are already applied, and the
/// next reconcile continues from there.
pub async fn apply_all(client: &Client, desired: &[Value]) -> Result<Outcome, ReconcileError> {
    let mut outcome = Outcome::default();
    for object in desired {
        let (api, name) = api_for(client, object)?;
        let api_err = |source| ReconcileError::Api {
            object: describe(object),
            source,
        };
        let observed = api.get_opt(&name).await.map_err(api_err)?;
        let action = match &observed {
            Some(o) => {
                let as_json = serde_json::to_value(o).map_err(|e| ReconcileError::Object {
                    object: describe(object),
                    message: e.to_string(),
                })?;
                if holds(&as_json, object) {
                    outcome.unchanged += 1;
                    continue;
                }
                "repaired"
            }
            None => "created",
        };
        let params = PatchParams::apply(FIELD_MANAGER).force();
        api.patch(&name, &params, &Patch::Apply(object))
            .await
            .map_err(api_err)?;
        tracing::info!(object = %describe(object), action, "applied");
        if action == "created" {
            outcome.created.push(describe(object));
        } else {
            outcome.repaired.push(describe(object));
        }
    }
    Ok(outcome)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::holds;

    #[test]
    fn server_additions_do_not_count_as_drift_but_changes_do() {
        let desired = json!({"metadata": {"name": "a", "labels": {"x": "1"}}, "spec": {"ports": [{"port": 53}]}});
        let observed = json!({"metadata": {"name": "a", "uid": "u", "labels": {"x": "1", "other": "y"}}, "spec": {"ports": [{"port": 53, "protocol": "TCP"}]}, "status": {}});
        assert!(holds(&observed, &desired));
        let edited = json!({"metadata": {"name": "a", "labels": {"x": "2"}}, "spec": {"ports": [{"port": 53}]}});
        assert!(!holds(&edited, &desired));
        let fewer = json!({"metadata": {"name": "a", "labels": {"x": "1"}}, "spec": {"ports": []}});
        assert!(!holds(&fewer, &desired));
        let missing_label = json!({"metadata": {"name": "a"}, "spec": {"ports": [{"port": 53}]}});
        assert!(!holds(&missing_label, &desired));
    }
}
