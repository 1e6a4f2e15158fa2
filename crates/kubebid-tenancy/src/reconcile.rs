//! Applying what the renderer produces. Each object is read and written only when it is missing or has
//! drifted from what KubeBid wants, so an unchanged Tenant reconciles without a single write.
//!
//! Drift is judged on the whole managed part of an object, not just on the fields KubeBid wrote: an egress
//! rule someone added to `default-deny-all` is drift. Repairs apply with server-side apply, forced, as field
//! manager `kubebid`; server-side apply cannot remove a field another manager added without claiming it, so
//! whatever is still off after the apply is replaced by a JSON patch guarded by the object's
//! `resourceVersion`. Objects the render no longer contains (a narrowed Tenant's allow policies) are pruned.

use std::collections::BTreeSet;

use kube::Client;
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, Patch,
    PatchParams, PostParams,
};
use kubebid_model::config::{MANAGED_LABEL, TENANT_LABEL};
use kubebid_model::quantity::Quantity;
use serde_json::{Value, json};

use crate::render::is_floor;

/// The field manager of every write.
pub const FIELD_MANAGER: &str = "kubebid";

/// Every data field of the kinds KubeBid writes, so that a field someone else adds counts as drift. Kinds
/// not listed are compared on the fields KubeBid renders.
fn managed_fields(kind: &str) -> Option<&'static [&'static str]> {
    Some(match kind {
        "NetworkPolicy" | "ResourceQuota" | "LimitRange" => &["spec"],
        "Role" | "ClusterRole" => &["rules", "aggregationRule"],
        "RoleBinding" | "ClusterRoleBinding" => &["roleRef", "subjects"],
        "RuntimeClass" => &["handler", "overhead", "scheduling"],
        "StorageClass" => &[
            "provisioner",
            "parameters",
            "reclaimPolicy",
            "volumeBindingMode",
            "allowVolumeExpansion",
            "mountOptions",
            "allowedTopologies",
        ],
        "Namespace" => &[],
        _ => return None,
    })
}

/// Label prefixes that are KubeBid's to set: an extra label under them is drift.
const GUARDED_LABELS: &[&str] = &["kubebid.io/", "pod-security.kubernetes.io/"];

/// Whether two values are the same once the API server's normalisation is allowed for: a missing field, a
/// `null`, an empty string, list or map are all "unset"; quantities compare by value (`1000m` is `1`).
#[must_use]
pub fn equivalent(observed: &Value, desired: &Value) -> bool {
    match (observed, desired) {
        (Value::Object(o), Value::Object(d)) => o.keys().chain(d.keys()).all(|k| {
            equivalent(
                o.get(k).unwrap_or(&Value::Null),
                d.get(k).unwrap_or(&Value::Null),
            )
        }),
        (Value::Array(o), Value::Array(d)) => {
            o.len() == d.len() && o.iter().zip(d).all(|(a, b)| equivalent(a, b))
        }
        (Value::String(a), Value::String(b)) if a != b => {
            matches!((Quantity::parse(a), Quantity::parse(b)), (Some(x), Some(y)) if x == y)
        }
        (o, d) => o == d || (is_unset(o) && is_unset(d)),
    }
}

fn is_unset(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(m) => m.is_empty(),
        _ => false,
    }
}

/// One way an object differs from what KubeBid wants.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Drift {
    /// A managed top-level field (`spec`, `rules`, ...).
    Field(String),
    /// A label under a KubeBid or pod-security prefix.
    Label(String),
    /// The object's owner references (missing, or a Tenant's where none belongs).
    Owners,
}

/// How `observed` differs from `desired`; empty when it holds everything KubeBid wants and nothing more.
#[must_use]
pub fn drift(observed: &Value, desired: &Value) -> Vec<Drift> {
    let mut out = Vec::new();
    let kind = desired["kind"].as_str().unwrap_or_default();
    let skip = ["apiVersion", "kind", "metadata", "status"];
    let mut fields: BTreeSet<&str> = desired
        .as_object()
        .into_iter()
        .flat_map(|m| m.keys().map(String::as_str))
        .filter(|k| !skip.contains(k))
        .collect();
    if let Some(all) = managed_fields(kind) {
        fields.extend(all.iter().copied());
    }
    for f in fields {
        let o = observed.get(f).unwrap_or(&Value::Null);
        let d = desired.get(f).unwrap_or(&Value::Null);
        if !equivalent(o, d) {
            out.push(Drift::Field(f.to_owned()));
        }
    }
    let labels = |v: &Value| {
        v["metadata"]["labels"]
            .as_object()
            .cloned()
            .unwrap_or_default()
    };
    let (ol, dl) = (labels(observed), labels(desired));
    let guarded = |k: &str| GUARDED_LABELS.iter().any(|p| k.starts_with(p));
    let keys: BTreeSet<&String> = dl.keys().chain(ol.keys().filter(|k| guarded(k))).collect();
    for k in keys {
        if ol.get(k) != dl.get(k) {
            out.push(Drift::Label(k.clone()));
        }
    }
    let tenant_refs = |v: &Value| -> Vec<Value> {
        v["metadata"]["ownerReferences"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|r| {
                r["kind"] == "Tenant"
                    && r["apiVersion"]
                        .as_str()
                        .is_some_and(|a| a.starts_with("kubebid.io/"))
            })
            .map(|r| json!({"uid": r["uid"], "name": r["name"]}))
            .collect()
    };
    if tenant_refs(observed) != tenant_refs(desired) {
        out.push(Drift::Owners);
    }
    out
}

/// Whether `observed` already is what `desired` wants.
#[must_use]
pub fn holds(observed: &Value, desired: &Value) -> bool {
    drift(observed, desired).is_empty()
}

/// What one reconcile did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    /// Objects that did not exist and were created.
    pub created: Vec<String>,
    /// Objects that existed but differed, and were restored.
    pub repaired: Vec<String>,
    /// Objects the render no longer contains, deleted.
    pub pruned: Vec<String>,
    /// Namespaces the Tenant no longer lists, let go (no longer owned by it).
    pub released: Vec<String>,
    /// Objects already as desired (no request beyond the read).
    pub unchanged: usize,
}

/// A reconcile failure, naming the object.
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error("{object}: {message}")]
    Object { object: String, message: String },
    #[error("{object}: {}", describe_error(.source))]
    Api { object: String, source: kube::Error },
}

/// A kube error as a person reads it: the API server's status code, reason and message, not a debug dump.
#[must_use]
pub fn describe_error(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(status) => {
            let mut s = format!("{} {}", status.code, status.reason);
            if !status.message.is_empty() {
                s.push_str(": ");
                s.push_str(&status.message);
            }
            s
        }
        other => other.to_string(),
    }
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

fn resource_of(api_version: &str, kind: &str) -> ApiResource {
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    ApiResource::from_gvk(&GroupVersionKind::gvk(group, version, kind))
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
    let resource = resource_of(api_version, kind);
    let api = match object["metadata"]["namespace"].as_str() {
        Some(ns) => Api::namespaced_with(client.clone(), ns, &resource),
        None => Api::all_with(client.clone(), &resource),
    };
    Ok((api, name))
}

/// JSON pointer segment escaping (RFC 6901).
fn pointer_segment(s: &str) -> String {
    s.replace('~', "~0").replace('/', "~1")
}

/// The JSON patch that turns what remains of `drift` in `observed` into `desired`, guarded by its
/// `resourceVersion` so that a concurrent writer makes it fail instead of being overwritten.
fn repair_patch(observed: &Value, desired: &Value, drift: &[Drift]) -> Value {
    let mut ops = vec![
        json!({"op": "test", "path": "/metadata/resourceVersion", "value": observed["metadata"]["resourceVersion"]}),
    ];
    for d in drift {
        match d {
            Drift::Field(f) => {
                let path = format!("/{}", pointer_segment(f));
                match (observed.get(f), desired.get(f)) {
                    (_, Some(v)) => ops.push(json!({"op": "add", "path": path, "value": v})),
                    (Some(_), None) => ops.push(json!({"op": "remove", "path": path})),
                    (None, None) => {}
                }
            }
            Drift::Label(k) => {
                let path = format!("/metadata/labels/{}", pointer_segment(k));
                match desired["metadata"]["labels"].get(k) {
                    Some(v) => {
                        if observed["metadata"]["labels"].is_null() {
                            ops.push(json!({"op": "add", "path": "/metadata/labels", "value": {}}));
                        }
                        ops.push(json!({"op": "add", "path": path, "value": v}));
                    }
                    None => ops.push(json!({"op": "remove", "path": path})),
                }
            }
            Drift::Owners => {
                let keep: Vec<Value> = observed["metadata"]["ownerReferences"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter(|r| r["kind"] != "Tenant")
                    .cloned()
                    .chain(
                        desired["metadata"]["ownerReferences"]
                            .as_array()
                            .into_iter()
                            .flatten()
                            .cloned(),
                    )
                    .collect();
                ops.push(json!({"op": "add", "path": "/metadata/ownerReferences", "value": keep}));
            }
        }
    }
    Value::Array(ops)
}

/// Kinds whose drifted fields the API server refuses to change in place: they are deleted and created again.
const RECREATED: &[&str] = &["RuntimeClass", "StorageClass"];

/// What bringing one object to its desired state took.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Applied {
    /// It was as desired: no write.
    Unchanged,
    /// It was missing.
    Created,
    /// It had drifted.
    Repaired,
}

impl Applied {
    fn as_str(self) -> &'static str {
        match self {
            Applied::Unchanged => "unchanged",
            Applied::Created => "created",
            Applied::Repaired => "repaired",
        }
    }
}

/// Brings one object to its desired state.
async fn apply_one(client: &Client, object: &Value) -> Result<Applied, ReconcileError> {
    let (api, name) = api_for(client, object)?;
    let api_err = |source| ReconcileError::Api {
        object: describe(object),
        source,
    };
    let observed = api
        .get_opt(&name)
        .await
        .map_err(api_err)?
        .map(|o| serde_json::to_value(o).unwrap_or(Value::Null));
    let action = match &observed {
        Some(o) if holds(o, object) => return Ok(Applied::Unchanged),
        Some(_) => Applied::Repaired,
        None => Applied::Created,
    };
    let params = PatchParams::apply(FIELD_MANAGER).force();
    let applied = match api.patch(&name, &params, &Patch::Apply(object)).await {
        Ok(a) => a,
        Err(kube::Error::Api(s))
            if s.code == 422
                && RECREATED.contains(&object["kind"].as_str().unwrap_or_default()) =>
        {
            tracing::info!(object = %describe(object), "immutable fields drifted; recreating");
            api.delete(&name, &DeleteParams::default())
                .await
                .map_err(api_err)?;
            api.create(
                &PostParams {
                    field_manager: Some(FIELD_MANAGER.into()),
                    ..PostParams::default()
                },
                &serde_json::from_value(object.clone()).map_err(|e| ReconcileError::Object {
                    object: describe(object),
                    message: e.to_string(),
                })?,
            )
            .await
            .map_err(api_err)?
        }
        Err(e) => return Err(api_err(e)),
    };
    let applied = serde_json::to_value(applied).unwrap_or(Value::Null);
    let left = drift(&applied, object);
    if !left.is_empty() {
        // Fields another manager owns survive a forced apply that does not name them.
        let patch: json_patch::Patch =
            serde_json::from_value(repair_patch(&applied, object, &left)).map_err(|e| {
                ReconcileError::Object {
                    object: describe(object),
                    message: e.to_string(),
                }
            })?;
        api.patch(
            &name,
            &PatchParams {
                field_manager: Some(FIELD_MANAGER.into()),
                ..PatchParams::default()
            },
            &Patch::<()>::Json(patch),
        )
        .await
        .map_err(api_err)?;
    }
    tracing::info!(object = %describe(object), action = action.as_str(), "applied");
    Ok(action)
}

/// Brings every object in `desired` (in order: namespaces before what lives in them) to its desired state.
///
/// # Errors
/// The first object that could not be read or written; objects before it are already applied, and the
/// next reconcile continues from there.
pub async fn apply_all(client: &Client, desired: &[Value]) -> Result<Outcome, ReconcileError> {
    let mut outcome = Outcome::default();
    for object in desired {
        match apply_one(client, object).await? {
            Applied::Unchanged => outcome.unchanged += 1,
            Applied::Created => outcome.created.push(describe(object)),
            Applied::Repaired => outcome.repaired.push(describe(object)),
        }
    }
    Ok(outcome)
}

/// The namespaced kinds a Tenant's render holds, for pruning: (apiVersion, kind).
pub const PRUNED_KINDS: &[(&str, &str)] = &[
    ("networking.k8s.io/v1", "NetworkPolicy"),
    ("rbac.authorization.k8s.io/v1", "Role"),
    ("rbac.authorization.k8s.io/v1", "RoleBinding"),
    ("v1", "ResourceQuota"),
    ("v1", "LimitRange"),
];

/// Deletes what KubeBid once rendered for `tenant` (labelled `kubebid.io/tenant`, managed) that `desired` no
/// longer holds, and lets go of namespaces the Tenant no longer lists: they lose the Tenant's owner
/// reference, so deleting the Tenant does not delete them, and keep their [floor](crate::render::FLOOR)
/// objects, so they stay isolated. Nothing is pruned from the namespaces the Tenant still lists but for what
/// its render dropped.
///
/// # Errors
/// The first list, delete or patch that failed.
pub async fn prune(
    client: &Client,
    tenant: &str,
    namespaces: &BTreeSet<String>,
    desired: &[Value],
    outcome: &mut Outcome,
) -> Result<(), ReconcileError> {
    let wanted: BTreeSet<String> = desired.iter().map(describe).collect();
    let selector = format!("{MANAGED_LABEL}=true,{TENANT_LABEL}={tenant}");
    let lp = ListParams::default().labels(&selector);
    for (api_version, kind) in PRUNED_KINDS {
        let resource = resource_of(api_version, kind);
        let api: Api<DynamicObject> = Api::all_with(client.clone(), &resource);
        let list = api.list(&lp).await.map_err(|source| ReconcileError::Api {
            object: format!("{kind} list"),
            source,
        })?;
        for item in list.items {
            let (Some(ns), Some(name)) =
                (item.metadata.namespace.clone(), item.metadata.name.clone())
            else {
                continue;
            };
            let key = format!("{kind} {ns}/{name}");
            if wanted.contains(&key) || (!namespaces.contains(&ns) && is_floor(kind, &name)) {
                continue;
            }
            let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), &ns, &resource);
            match api.delete(&name, &DeleteParams::default()).await {
                Ok(_) => {}
                Err(kube::Error::Api(s)) if s.code == 404 => {}
                Err(source) => {
                    return Err(ReconcileError::Api {
                        object: key,
                        source,
                    });
                }
            }
            tracing::info!(object = %key, "pruned");
            outcome.pruned.push(key);
        }
    }
    let namespaces_api: Api<DynamicObject> =
        Api::all_with(client.clone(), &resource_of("v1", "Namespace"));
    let list = namespaces_api
        .list(&lp)
        .await
        .map_err(|source| ReconcileError::Api {
            object: "Namespace list".into(),
            source,
        })?;
    for ns in list.items {
        let Some(name) = ns.metadata.name.clone() else {
            continue;
        };
        let owned = ns
            .metadata
            .owner_references
            .iter()
            .flatten()
            .any(|r| r.kind == "Tenant" && r.name == tenant);
        if namespaces.contains(&name) || !owned {
            continue;
        }
        let keep: Vec<Value> = ns
            .metadata
            .owner_references
            .iter()
            .flatten()
            .filter(|r| r.kind != "Tenant")
            .map(|r| serde_json::to_value(r).unwrap_or(Value::Null))
            .collect();
        let patch = json!({"metadata": {"ownerReferences": keep}});
        namespaces_api
            .patch(
                &name,
                &PatchParams {
                    field_manager: Some(FIELD_MANAGER.into()),
                    ..PatchParams::default()
                },
                &Patch::Merge(&patch),
            )
            .await
            .map_err(|source| ReconcileError::Api {
                object: format!("Namespace {name}"),
                source,
            })?;
        tracing::info!(namespace = %name, %tenant, "namespace let go");
        outcome.released.push(name);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::{Drift, drift, equivalent, holds};

    #[test]
    fn server_normalisation_is_not_drift_but_additions_and_changes_are() {
        let desired = json!({"kind": "NetworkPolicy", "metadata": {"name": "a", "labels": {"kubebid.io/tenant": "x"}},
            "spec": {"podSelector": {}, "policyTypes": ["Ingress", "Egress"], "ingress": [], "egress": []}});
        let observed = json!({"kind": "NetworkPolicy", "metadata": {"name": "a", "uid": "u", "labels": {"kubebid.io/tenant": "x", "team": "y"}},
            "spec": {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}, "status": {}});
        assert!(holds(&observed, &desired));
        let mut added = observed.clone();
        added["spec"]["egress"] = json!([{"to": [{"ipBlock": {"cidr": "0.0.0.0/0"}}]}]);
        assert_eq!(drift(&added, &desired), [Drift::Field("spec".into())]);
        let mut narrowed = observed.clone();
        narrowed["spec"]["podSelector"] = json!({"matchLabels": {"a": "b"}});
        assert!(!holds(&narrowed, &desired));
        let mut relabelled = observed.clone();
        relabelled["metadata"]["labels"]["kubebid.io/managed"] = json!("false");
        assert_eq!(
            drift(&relabelled, &desired),
            [Drift::Label("kubebid.io/managed".into())]
        );
        let mut owned = observed;
        owned["metadata"]["ownerReferences"] = json!([{"apiVersion": "kubebid.io/v1alpha1", "kind": "Tenant", "name": "x", "uid": "1"}]);
        assert_eq!(drift(&owned, &desired), [Drift::Owners]);
    }

    #[test]
    fn quantities_compare_by_value() {
        assert!(equivalent(&json!({"cpu": "1000m"}), &json!({"cpu": "1"})));
        assert!(!equivalent(&json!({"cpu": "2"}), &json!({"cpu": "1"})));
        assert!(!equivalent(&json!("abc"), &json!("abd")));
    }
}
