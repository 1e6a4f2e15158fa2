//! The Kubernetes objects `KubeBid` decides on, decoded into k8s-openapi's types.
//!
//! Decoding is strict about types (a `privileged: "maybe"` is an error naming the field), and an object
//! that cannot be decoded is never silently passed: the caller gets a [`DecodeError`] and fails closed.

use k8s_openapi::api::apps::v1 as apps;
use k8s_openapi::api::batch::v1 as batch;
use k8s_openapi::api::core::v1 as core;
use k8s_openapi::api::discovery::v1 as discovery;
use k8s_openapi::api::networking::v1 as net;
use k8s_openapi::api::rbac::v1 as rbac;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::de::DeserializeOwned;
use serde_json::Value;

/// A decoded object of a kind `KubeBid` has rules for, or any other kind.
#[derive(Clone, Debug)]
pub enum Resource {
    Pod(Box<core::Pod>),
    Deployment(Box<apps::Deployment>),
    ReplicaSet(Box<apps::ReplicaSet>),
    StatefulSet(Box<apps::StatefulSet>),
    DaemonSet(Box<apps::DaemonSet>),
    Job(Box<batch::Job>),
    CronJob(Box<batch::CronJob>),
    ReplicationController(Box<core::ReplicationController>),
    PodTemplate(Box<core::PodTemplate>),
    Service(Box<core::Service>),
    Ingress(Box<net::Ingress>),
    NetworkPolicy(Box<net::NetworkPolicy>),
    Role(Box<rbac::Role>),
    ClusterRole(Box<rbac::ClusterRole>),
    RoleBinding(Box<rbac::RoleBinding>),
    ClusterRoleBinding(Box<rbac::ClusterRoleBinding>),
    PersistentVolume(Box<core::PersistentVolume>),
    PersistentVolumeClaim(Box<core::PersistentVolumeClaim>),
    Namespace(Box<core::Namespace>),
    ResourceQuota(Box<core::ResourceQuota>),
    LimitRange(Box<core::LimitRange>),
    ServiceAccount(Box<core::ServiceAccount>),
    Endpoints(Box<core::Endpoints>),
    EndpointSlice(Box<discovery::EndpointSlice>),
    /// A pod bound to a node (`pods/binding`, `bindings`).
    Binding(Box<core::Binding>),
    /// A kind without rules; only its metadata is read.
    Other(Box<ObjectMeta>),
}

/// An object with its type information.
#[derive(Clone, Debug)]
pub struct Object {
    /// `apiVersion` as written.
    pub api_version: String,
    /// `kind` as written.
    pub kind: String,
    /// The decoded object.
    pub resource: Resource,
}

/// Why an object could not be decoded.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {message}")]
pub struct DecodeError {
    /// Field path of the problem (empty for the whole object).
    pub path: String,
    /// What is wrong.
    pub message: String,
}

/// A pod spec inside an object, with its metadata and where it stands.
#[derive(Clone, Copy, Debug)]
pub struct PodTemplateRef<'a> {
    /// Metadata of the pod (the template's metadata for controllers).
    pub meta: &'a ObjectMeta,
    /// The pod spec.
    pub spec: &'a core::PodSpec,
    /// Path of the pod spec, e.g. `spec.template.spec`.
    pub spec_path: &'static str,
    /// Path of the pod metadata, e.g. `spec.template.metadata`.
    pub meta_path: &'static str,
}

static EMPTY_META: ObjectMeta = ObjectMeta {
    annotations: None,
    creation_timestamp: None,
    deletion_grace_period_seconds: None,
    deletion_timestamp: None,
    finalizers: None,
    generate_name: None,
    generation: None,
    labels: None,
    managed_fields: None,
    name: None,
    namespace: None,
    owner_references: None,
    resource_version: None,
    self_link: None,
    uid: None,
};

/// Where an object is decoded from: a JSON value already parsed, or the JSON text itself (the admission
/// path, which decodes straight from the request's bytes into the typed object, once).
trait Source: Sized {
    /// Decodes the whole object as `T`.
    fn decode<T: DeserializeOwned>(self) -> Result<Box<T>, DecodeError>;
    /// Decodes only `metadata` (absent: empty).
    fn metadata(self) -> Result<Box<ObjectMeta>, DecodeError>;
}

impl Source for Value {
    fn decode<T: DeserializeOwned>(self) -> Result<Box<T>, DecodeError> {
        serde_path_to_error::deserialize(self)
            .map(Box::new)
            .map_err(|e| DecodeError {
                path: crate::load::path_of(e.path()),
                message: e.into_inner().to_string(),
            })
    }

    fn metadata(self) -> Result<Box<ObjectMeta>, DecodeError> {
        let Value::Object(mut map) = self else {
            return Ok(Box::default());
        };
        match map.remove("metadata") {
            Some(m) => m.decode::<ObjectMeta>().map_err(|e| DecodeError {
                path: if e.path.is_empty() {
                    "metadata".into()
                } else {
                    format!("metadata.{}", e.path)
                },
                message: e.message,
            }),
            None => Ok(Box::default()),
        }
    }
}

impl Source for &str {
    fn decode<T: DeserializeOwned>(self) -> Result<Box<T>, DecodeError> {
        // The fast path tracks no field path; only an object that fails is decoded again to name the
        // field.
        serde_json::from_str(self).map(Box::new).map_err(|_| {
            let mut de = serde_json::Deserializer::from_str(self);
            match serde_path_to_error::deserialize::<_, T>(&mut de) {
                Err(e) => DecodeError {
                    path: crate::load::path_of(e.path()),
                    message: strip_position(&e.into_inner().to_string()),
                },
                Ok(_) => DecodeError {
                    path: String::new(),
                    message: "not a JSON object".into(),
                },
            }
        })
    }

    fn metadata(self) -> Result<Box<ObjectMeta>, DecodeError> {
        #[derive(serde::Deserialize)]
        struct OnlyMeta {
            // Absent is empty; `null` is refused, as in a parsed value.
            #[serde(default)]
            metadata: ObjectMeta,
        }
        // The field path already starts at `metadata`.
        self.decode::<OnlyMeta>().map(|m| Box::new(m.metadata))
    }
}

/// `serde_json`'s messages from text end with ` at line L column C`; the field path says more.
fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(i) => message[..i].to_owned(),
        None => message.to_owned(),
    }
}

/// `apiVersion` and `kind` when they are the object's first two members, plain strings without escapes,
/// as the API server writes every object: read in a glance instead of a pass over the whole text. Anything
/// else (`None`) takes the full pass of [`TypeFields`]. The typed decode that follows reads both fields
/// again and refuses values that do not fit the kind, so a glance that is wrong cannot pick a lenient
/// kind: `kind_mismatch` compares them with the request, and k8s-openapi checks them per type.
fn leading_type(text: &str) -> Option<(&str, &str)> {
    fn ws(s: &str) -> &str {
        s.trim_start_matches([' ', '\t', '\n', '\r'])
    }
    /// A `"key": "value"` member without escapes; the rest after it.
    fn member(s: &str) -> Option<(&str, &str, &str)> {
        let s = ws(s).strip_prefix('"')?;
        let (key, s) = s.split_once('"')?;
        let s = ws(ws(s).strip_prefix(':')?).strip_prefix('"')?;
        let (value, s) = s.split_once('"')?;
        if key.contains('\\') || value.contains('\\') || value.is_empty() {
            return None;
        }
        Some((key, value, ws(s)))
    }
    let (k1, v1, rest) = member(ws(text).strip_prefix('{')?)?;
    let (k2, v2, rest) = member(rest.strip_prefix(',')?)?;
    if !(rest.starts_with(',') || rest.starts_with('}')) {
        return None;
    }
    match (k1, k2) {
        ("apiVersion", "kind") => Some((v1, v2)),
        ("kind", "apiVersion") => Some((v2, v1)),
        _ => None,
    }
}

/// `apiVersion` and `kind` of an object in JSON text, read without decoding the rest.
#[derive(serde::Deserialize)]
struct TypeFields<'a> {
    #[serde(rename = "apiVersion", borrow, default)]
    api_version: Option<TypeField<'a>>,
    #[serde(borrow, default)]
    kind: Option<TypeField<'a>>,
}

/// A string field, or something else (which is an error, named by the caller).
#[derive(serde::Deserialize)]
#[serde(untagged)]
enum TypeField<'a> {
    Text(#[serde(borrow)] std::borrow::Cow<'a, str>),
    Other(serde::de::IgnoredAny),
}

fn type_field(field: Option<TypeField<'_>>, name: &str) -> Result<String, DecodeError> {
    match field {
        Some(TypeField::Text(s)) if !s.is_empty() => Ok(s.into_owned()),
        Some(_) => Err(err(name, "must be a non-empty string")),
        None => Err(err(name, "missing")),
    }
}

impl Object {
    /// Decodes an object. `apiVersion` and `kind` must be strings; kinds without rules keep their metadata.
    ///
    /// # Errors
    /// A [`DecodeError`] naming the first field that does not fit the kind's schema.
    pub fn from_value(value: Value) -> Result<Self, DecodeError> {
        let Value::Object(map) = &value else {
            return Err(DecodeError {
                path: String::new(),
                message: "a Kubernetes object must be a mapping".into(),
            });
        };
        let text = |field: &str| match map.get(field) {
            Some(Value::String(s)) if !s.is_empty() => Ok(s.clone()),
            Some(_) => Err(err(field, "must be a non-empty string")),
            None => Err(err(field, "missing")),
        };
        let api_version = text("apiVersion")?;
        let kind = text("kind")?;
        Self::decode_as(api_version, kind, value)
    }

    /// Decodes an object from its JSON text, straight into the kind's type: no intermediate JSON value.
    /// The same checks and errors as [`from_value`](Self::from_value).
    ///
    /// # Errors
    /// A [`DecodeError`] naming the first field that does not fit the kind's schema.
    pub fn from_json(text: &str) -> Result<Self, DecodeError> {
        // A struct also decodes from a JSON array (by position): only a mapping is an object.
        if !text.trim_start().starts_with('{') {
            return Err(DecodeError {
                path: String::new(),
                message: "a Kubernetes object must be a mapping".into(),
            });
        }
        let (api_version, kind) = if let Some((v, k)) = leading_type(text) {
            (v.to_owned(), k.to_owned())
        } else {
            let fields: TypeFields<'_> = serde_json::from_str(text).map_err(|_| DecodeError {
                path: String::new(),
                message: "a Kubernetes object must be a mapping".into(),
            })?;
            (
                type_field(fields.api_version, "apiVersion")?,
                type_field(fields.kind, "kind")?,
            )
        };
        Self::decode_as(api_version, kind, text)
    }

    fn decode_as(
        api_version: String,
        kind: String,
        source: impl Source,
    ) -> Result<Self, DecodeError> {
        let value = source;
        let resource = match (api_version.as_str(), kind.as_str()) {
            ("v1", "Pod") => Resource::Pod(value.decode()?),
            ("apps/v1", "Deployment") => Resource::Deployment(value.decode()?),
            ("apps/v1", "ReplicaSet") => Resource::ReplicaSet(value.decode()?),
            ("apps/v1", "StatefulSet") => Resource::StatefulSet(value.decode()?),
            ("apps/v1", "DaemonSet") => Resource::DaemonSet(value.decode()?),
            ("batch/v1", "Job") => Resource::Job(value.decode()?),
            ("batch/v1", "CronJob") => Resource::CronJob(value.decode()?),
            ("v1", "ReplicationController") => Resource::ReplicationController(value.decode()?),
            ("v1", "PodTemplate") => Resource::PodTemplate(value.decode()?),
            ("v1", "Service") => Resource::Service(value.decode()?),
            ("networking.k8s.io/v1", "Ingress") => Resource::Ingress(value.decode()?),
            ("networking.k8s.io/v1", "NetworkPolicy") => Resource::NetworkPolicy(value.decode()?),
            ("rbac.authorization.k8s.io/v1", "Role") => Resource::Role(value.decode()?),
            ("rbac.authorization.k8s.io/v1", "ClusterRole") => {
                Resource::ClusterRole(value.decode()?)
            }
            ("rbac.authorization.k8s.io/v1", "RoleBinding") => {
                Resource::RoleBinding(value.decode()?)
            }
            ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding") => {
                Resource::ClusterRoleBinding(value.decode()?)
            }
            ("v1", "PersistentVolume") => Resource::PersistentVolume(value.decode()?),
            ("v1", "PersistentVolumeClaim") => Resource::PersistentVolumeClaim(value.decode()?),
            ("v1", "Namespace") => Resource::Namespace(value.decode()?),
            ("v1", "ResourceQuota") => Resource::ResourceQuota(value.decode()?),
            ("v1", "LimitRange") => Resource::LimitRange(value.decode()?),
            ("v1", "ServiceAccount") => Resource::ServiceAccount(value.decode()?),
            ("v1", "Endpoints") => Resource::Endpoints(value.decode()?),
            ("discovery.k8s.io/v1", "EndpointSlice") => Resource::EndpointSlice(value.decode()?),
            ("v1", "Binding") => Resource::Binding(value.decode()?),
            _ => Resource::Other(value.metadata()?),
        };
        Ok(Self {
            api_version,
            kind,
            resource,
        })
    }

    /// The object's metadata.
    #[must_use]
    pub fn meta(&self) -> &ObjectMeta {
        match &self.resource {
            Resource::Pod(o) => &o.metadata,
            Resource::Deployment(o) => &o.metadata,
            Resource::ReplicaSet(o) => &o.metadata,
            Resource::StatefulSet(o) => &o.metadata,
            Resource::DaemonSet(o) => &o.metadata,
            Resource::Job(o) => &o.metadata,
            Resource::CronJob(o) => &o.metadata,
            Resource::ReplicationController(o) => &o.metadata,
            Resource::PodTemplate(o) => &o.metadata,
            Resource::Service(o) => &o.metadata,
            Resource::Ingress(o) => &o.metadata,
            Resource::NetworkPolicy(o) => &o.metadata,
            Resource::Role(o) => &o.metadata,
            Resource::ClusterRole(o) => &o.metadata,
            Resource::RoleBinding(o) => &o.metadata,
            Resource::ClusterRoleBinding(o) => &o.metadata,
            Resource::PersistentVolume(o) => &o.metadata,
            Resource::PersistentVolumeClaim(o) => &o.metadata,
            Resource::Namespace(o) => &o.metadata,
            Resource::ResourceQuota(o) => &o.metadata,
            Resource::LimitRange(o) => &o.metadata,
            Resource::ServiceAccount(o) => &o.metadata,
            Resource::Endpoints(o) => &o.metadata,
            Resource::EndpointSlice(o) => &o.metadata,
            Resource::Binding(o) => &o.metadata,
            Resource::Other(m) => m,
        }
    }

    /// `metadata.name`, or `metadata.generateName`, or empty.
    #[must_use]
    pub fn name(&self) -> &str {
        let m = self.meta();
        m.name
            .as_deref()
            .or(m.generate_name.as_deref())
            .unwrap_or_default()
    }

    /// `metadata.namespace`, if written.
    #[must_use]
    pub fn namespace(&self) -> Option<&str> {
        self.meta().namespace.as_deref()
    }

    /// The value of label `key`.
    #[must_use]
    pub fn label(&self, key: &str) -> Option<&str> {
        self.meta().labels.as_ref()?.get(key).map(String::as_str)
    }

    /// Whether the kind is one `KubeBid` has rules for.
    #[must_use]
    pub fn is_known_kind(&self) -> bool {
        !matches!(self.resource, Resource::Other(_))
    }

    /// For a kind `KubeBid` has rules for but under an API version it does not decode (e.g. `extensions/v1beta1`
    /// Deployment) or in another spelling (`pod`), the kind as Kubernetes spells it and the version
    /// `KubeBid` decodes.
    #[must_use]
    pub fn unsupported_version_of_known_kind(&self) -> Option<(&'static str, &'static str)> {
        const JUDGED: &[(&str, &str)] = &[
            ("Pod", "v1"),
            ("ReplicationController", "v1"),
            ("PodTemplate", "v1"),
            ("Service", "v1"),
            ("PersistentVolume", "v1"),
            ("PersistentVolumeClaim", "v1"),
            ("Namespace", "v1"),
            ("ResourceQuota", "v1"),
            ("LimitRange", "v1"),
            ("ServiceAccount", "v1"),
            ("Endpoints", "v1"),
            ("Binding", "v1"),
            ("EndpointSlice", "discovery.k8s.io/v1"),
            ("Deployment", "apps/v1"),
            ("ReplicaSet", "apps/v1"),
            ("StatefulSet", "apps/v1"),
            ("DaemonSet", "apps/v1"),
            ("Job", "batch/v1"),
            ("CronJob", "batch/v1"),
            ("Ingress", "networking.k8s.io/v1"),
            ("NetworkPolicy", "networking.k8s.io/v1"),
            ("Role", "rbac.authorization.k8s.io/v1"),
            ("ClusterRole", "rbac.authorization.k8s.io/v1"),
            ("RoleBinding", "rbac.authorization.k8s.io/v1"),
            ("ClusterRoleBinding", "rbac.authorization.k8s.io/v1"),
        ];
        if self.is_known_kind() {
            return None;
        }
        JUDGED
            .iter()
            .find(|(kind, _)| kind.eq_ignore_ascii_case(&self.kind))
            .copied()
    }

    /// Whether objects of this kind live outside namespaces.
    #[must_use]
    pub fn is_cluster_scoped(&self) -> bool {
        matches!(
            self.resource,
            Resource::ClusterRole(_)
                | Resource::ClusterRoleBinding(_)
                | Resource::PersistentVolume(_)
                | Resource::Namespace(_)
        )
    }

    /// The pod spec this object runs, if any (Pods and every pod-template kind), at the place
    /// [`podspec`](crate::podspec) says the kind keeps it.
    #[must_use]
    pub fn pod_template<'a>(&'a self) -> Option<PodTemplateRef<'a>> {
        let at = crate::podspec::location(&self.api_version, &self.kind)?;
        let tpl = |t: &'a core::PodTemplateSpec| -> Option<PodTemplateRef<'a>> {
            Some(PodTemplateRef {
                meta: t.metadata.as_ref().unwrap_or(&EMPTY_META),
                spec: t.spec.as_ref()?,
                spec_path: at.spec_path,
                meta_path: at.meta_path,
            })
        };
        match &self.resource {
            Resource::Pod(p) => Some(PodTemplateRef {
                meta: &p.metadata,
                spec: p.spec.as_ref()?,
                spec_path: at.spec_path,
                meta_path: at.meta_path,
            }),
            Resource::Deployment(o) => tpl(&o.spec.template),
            Resource::ReplicaSet(o) => tpl(o.spec.template.as_ref()?),
            Resource::StatefulSet(o) => tpl(&o.spec.template),
            Resource::DaemonSet(o) => tpl(&o.spec.template),
            Resource::Job(o) => tpl(&o.spec.as_ref()?.template),
            Resource::ReplicationController(o) => tpl(o.spec.as_ref()?.template.as_ref()?),
            Resource::PodTemplate(o) => tpl(o.template.as_ref()?),
            Resource::CronJob(o) => tpl(&o.spec.job_template.spec.as_ref()?.template),
            _ => None,
        }
    }
}

fn err(path: &str, message: &str) -> DecodeError {
    DecodeError {
        path: path.into(),
        message: message.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn decodes_pod_templates_with_their_paths() {
        let cj = json!({"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "c", "namespace": "a"},
            "spec": {"schedule": "* * * * *", "jobTemplate": {"spec": {"template": {"metadata": {"labels": {"x": "y"}},
            "spec": {"containers": [{"name": "c", "image": "i"}]}}}}}});
        let o = Object::from_value(cj).expect("decodes");
        let t = o.pod_template().expect("has a pod");
        assert_eq!(t.spec_path, "spec.jobTemplate.spec.template.spec");
        assert_eq!(t.spec.containers[0].name, "c");
        assert_eq!(o.namespace(), Some("a"));
    }

    #[test]
    fn type_errors_name_the_field() {
        let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
            "spec": {"containers": [{"name": "c", "securityContext": {"privileged": "maybe"}}]}});
        let e = Object::from_value(pod).expect_err("bad type");
        assert_eq!(e.path, "spec.containers[0].securityContext.privileged");
    }

    #[test]
    fn other_kinds_keep_metadata() {
        let o = Object::from_value(
            json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}}),
        )
        .expect("decodes");
        assert!(!o.is_known_kind());
        assert_eq!(o.name(), "w");
        assert!(Object::from_value(json!({"kind": "Pod"})).is_err());
        assert!(Object::from_value(json!([1])).is_err());
    }
}
