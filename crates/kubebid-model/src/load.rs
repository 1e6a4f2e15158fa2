//! Turns parsed documents into manifest items and configuration objects, with file, line and field for
//! every error.

use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::config::{
    API_VERSION, FieldError, KubeBidConfig, PolicyException, Tenant, is_dns_label, is_dns_subdomain,
};
use crate::path;
use crate::yaml::{self, Document, LineIndex};

/// Formats a `serde_path_to_error` path in `KubeBid`'s path spelling.
#[must_use]
pub fn path_of(p: &serde_path_to_error::Path) -> String {
    let mut out = String::new();
    for seg in p {
        match seg {
            serde_path_to_error::Segment::Seq { index } => path::push_index(&mut out, *index),
            serde_path_to_error::Segment::Map { key } => path::push_key(&mut out, key),
            serde_path_to_error::Segment::Enum { variant } => path::push_key(&mut out, variant),
            serde_path_to_error::Segment::Unknown => path::push_key(&mut out, "?"),
        }
    }
    out
}

/// Where an object came from.
#[derive(Clone, Debug)]
pub struct Origin {
    /// File name as given (`-` for standard input).
    pub file: Arc<str>,
    /// Index of the document in the file.
    pub document: usize,
    /// Path prefix inside the document (`items[3]` for an item of a `kind: List`), empty otherwise.
    pub prefix: String,
    /// Line where the object starts.
    pub line: usize,
    /// Lines of the document's fields.
    pub lines: Arc<LineIndex>,
}

impl Origin {
    /// An error about `field` of this object (a path relative to the object).
    #[must_use]
    pub fn error(&self, field: &str, message: String) -> SourceError {
        let full = match (self.prefix.is_empty(), field.is_empty()) {
            (true, _) => field.to_owned(),
            (false, true) => self.prefix.clone(),
            (false, false) => format!("{}.{field}", self.prefix),
        };
        SourceError {
            file: self.file.clone(),
            document: self.document,
            line: self.line_of(field),
            field: full,
            message,
        }
    }

    /// Line of `field` of this object (or of its closest ancestor present in the source).
    #[must_use]
    pub fn line_of(&self, field: &str) -> usize {
        if self.prefix.is_empty() {
            return self.lines.line_of(field).map_or(self.line, |l| l as usize);
        }
        let mut full = self.prefix.clone();
        if !field.is_empty() && !field.starts_with('[') {
            full.push('.');
        }
        full.push_str(field);
        self.lines.line_of(&full).map_or(self.line, |l| l as usize)
    }
}

/// One object found in a manifest file.
#[derive(Clone, Debug)]
pub struct ManifestItem {
    /// Where it came from.
    pub origin: Origin,
    /// The object as JSON.
    pub value: Value,
}

/// An error in a file, with its place.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SourceError {
    /// File name as given.
    pub file: Arc<str>,
    /// Index of the document in the file.
    pub document: usize,
    /// Line (from 1).
    pub line: usize,
    /// Field path, empty when the problem is not in one field.
    pub field: String,
    /// What is wrong.
    pub message: String,
}

impl std::fmt::Display for SourceError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.field.is_empty() {
            write!(f, "{}:{}: {}", self.file, self.line, self.message)
        } else {
            write!(
                f,
                "{}:{}: {}: {}",
                self.file, self.line, self.field, self.message
            )
        }
    }
}

impl std::error::Error for SourceError {}

/// Reads every object of a manifest file: documents, and the items of `kind: List` documents.
/// Documents that cannot be parsed are returned as errors; the others are still read.
#[must_use]
pub fn manifest_items(file: &str, text: &str) -> (Vec<ManifestItem>, Vec<SourceError>) {
    let file: Arc<str> = Arc::from(file);
    let mut items = Vec::new();
    let mut errors = Vec::new();
    for doc in yaml::parse_documents(text) {
        match doc {
            Ok(doc) => split_document(&file, doc, &mut items, &mut errors),
            Err(e) => errors.push(SourceError {
                file: file.clone(),
                document: e.index,
                line: e.line,
                field: String::new(),
                message: e.message,
            }),
        }
    }
    (items, errors)
}

fn split_document(
    file: &Arc<str>,
    doc: Document,
    items: &mut Vec<ManifestItem>,
    errors: &mut Vec<SourceError>,
) {
    let Document {
        index,
        line,
        value,
        lines,
    } = doc;
    let lines = Arc::new(lines);
    let origin = Origin {
        file: file.clone(),
        document: index,
        prefix: String::new(),
        line,
        lines,
    };
    flatten(origin, value, items, errors, 0);
}

fn flatten(
    origin: Origin,
    value: Value,
    items: &mut Vec<ManifestItem>,
    errors: &mut Vec<SourceError>,
    depth: usize,
) {
    let is_list = matches!(&value, Value::Object(m)
        if m.get("kind").and_then(Value::as_str).is_some_and(|k| k == "List" || k.ends_with("List"))
            && m.get("apiVersion").and_then(Value::as_str) == Some("v1")
            && m.contains_key("items"));
    if !is_list {
        items.push(ManifestItem { origin, value });
        return;
    }
    let Value::Object(mut map) = value else {
        return;
    };
    match map.remove("items") {
        Some(Value::Array(list)) if depth < 4 => {
            for (i, item) in list.into_iter().enumerate() {
                let prefix = path::index(&path::join(&origin.prefix, "items"), i);
                let line = origin
                    .lines
                    .line_of(&prefix)
                    .map_or(origin.line, |l| l as usize);
                let o = Origin {
                    prefix,
                    line,
                    ..origin.clone()
                };
                flatten(o, item, items, errors, depth + 1);
            }
        }
        Some(Value::Null) => {}
        _ => errors.push(origin.error(
            "items",
            "a List's items must be a list of objects (nested at most 4 deep)".into(),
        )),
    }
}

/// A configuration object with its origin.
#[derive(Clone, Debug)]
pub struct Loaded<T> {
    /// The object.
    pub object: T,
    /// Where it was read.
    pub origin: Origin,
}

/// Every configuration object read from `--config`.
#[derive(Clone, Debug, Default)]
pub struct ConfigSet {
    /// The cluster-wide settings, if given.
    pub config: Option<Loaded<KubeBidConfig>>,
    /// Tenants.
    pub tenants: Vec<Loaded<Tenant>>,
    /// Policy exceptions.
    pub exceptions: Vec<Loaded<PolicyException>>,
}

/// Keeps a valid object, reports the problems of an invalid one.
fn keep<T>(
    object: T,
    origin: Origin,
    problems: Vec<FieldError>,
    errors: &mut Vec<SourceError>,
) -> Option<Loaded<T>> {
    if problems.is_empty() {
        return Some(Loaded { object, origin });
    }
    errors.extend(
        problems
            .into_iter()
            .map(|e| origin.error(&e.path, e.message)),
    );
    None
}

const TOP_LEVEL: [&str; 5] = ["apiVersion", "kind", "metadata", "spec", "status"];

impl ConfigSet {
    /// Adds the configuration objects in `text`. Returns every problem found; objects with problems are not added.
    pub fn add_text(&mut self, file: &str, text: &str) -> Vec<SourceError> {
        let (items, mut errors) = manifest_items(file, text);
        for item in items {
            if let Err(e) = self.add_item(item) {
                errors.extend(e);
            }
        }
        errors
    }

    /// Adds one configuration object read from a file.
    ///
    /// # Errors
    /// Every problem of the object, with its place; the object is not added.
    // One match arm per configuration kind, each short; the arms share the origin and the error list.
    #[allow(clippy::too_many_lines)]
    pub fn add_item(&mut self, item: ManifestItem) -> Result<(), Vec<SourceError>> {
        let ManifestItem { origin, value } = item;
        let at = |field: &str, message: String| origin.error(field, message);
        let Value::Object(map) = &value else {
            return Err(vec![at(
                "",
                "a configuration object must be a mapping".into(),
            )]);
        };
        let mut errs = Vec::new();
        for key in map.keys() {
            if !TOP_LEVEL.contains(&key.as_str()) {
                errs.push(at(
                    key,
                    format!(
                        "unknown field {key:?} (expected one of apiVersion, kind, metadata, spec)"
                    ),
                ));
            }
        }
        let api_version = map
            .get("apiVersion")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let kind = map
            .get("kind")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        if api_version != API_VERSION {
            errs.push(at(
                "apiVersion",
                format!("{api_version:?}: KubeBid configuration objects are {API_VERSION}"),
            ));
        }
        let name = map
            .get("metadata")
            .and_then(|m| m.get("name"))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        if name.is_empty() {
            errs.push(at(
                "metadata.name",
                "every configuration object needs a name".into(),
            ));
        } else if !is_dns_subdomain(&name) || (kind == "Tenant" && !is_dns_label(&name)) {
            errs.push(at("metadata.name", format!("{name:?} is not a valid name")));
        }
        if map
            .get("metadata")
            .and_then(|m| m.get("namespace"))
            .is_some()
        {
            errs.push(at(
                "metadata.namespace",
                format!("{kind} is cluster-scoped and has no namespace"),
            ));
        }
        if !errs.is_empty() {
            return Err(errs);
        }
        match kind.as_str() {
            "KubeBidConfig" => {
                let object: KubeBidConfig = decode_config(value, &at)?;
                check(object.spec.validate(), &at)?;
                if let Some(existing) = &self.config {
                    return Err(vec![at(
                        "",
                        format!(
                            "a second KubeBidConfig; the first is at {}:{}",
                            existing.origin.file, existing.origin.line
                        ),
                    )]);
                }
                self.config = Some(Loaded { object, origin });
            }
            "Tenant" => {
                let object: Tenant = decode_config(value, &at)?;
                check(object.spec.validate(), &at)?;
                if let Some(other) = self
                    .tenants
                    .iter()
                    .find(|t| t.object.metadata.name == object.metadata.name)
                {
                    return Err(vec![at(
                        "metadata.name",
                        format!(
                            "Tenant {name:?} is defined twice; the first is at {}:{}",
                            other.origin.file, other.origin.line
                        ),
                    )]);
                }
                self.tenants.push(Loaded { object, origin });
            }
            "PolicyException" => {
                let object: PolicyException = decode_config(value, &at)?;
                check(object.spec.validate(), &at)?;
                self.exceptions.push(Loaded { object, origin });
            }
            other => {
                return Err(vec![at(
                    "kind",
                    format!(
                        "{other:?} is not a KubeBid configuration kind (KubeBidConfig, Tenant, PolicyException)"
                    ),
                )]);
            }
        }
        Ok(())
    }

    /// Builds a set from objects read from the cluster. Objects that fail validation are left out and
    /// reported; of several `KubeBidConfig` objects the one named `kubebid` (else the first by name) is used.
    #[must_use]
    pub fn from_cluster(
        mut configs: Vec<KubeBidConfig>,
        tenants: Vec<Tenant>,
        exceptions: Vec<PolicyException>,
    ) -> (Self, Vec<SourceError>) {
        let origin = |kind: &str, name: &str| Origin {
            file: Arc::from(format!("cluster:{kind}/{name}")),
            document: 0,
            prefix: String::new(),
            line: 0,
            lines: Arc::new(LineIndex::default()),
        };
        let name_of = |m: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta| {
            m.name.clone().unwrap_or_default()
        };
        let mut set = ConfigSet::default();
        let mut errors = Vec::new();
        configs.sort_by_key(|c| {
            (
                c.metadata.name.as_deref() != Some("kubebid"),
                name_of(&c.metadata),
            )
        });
        if let Some(c) = configs.into_iter().next() {
            let (o, problems) = (
                origin("KubeBidConfig", &name_of(&c.metadata)),
                c.spec.validate(),
            );
            set.config = keep(c, o, problems, &mut errors);
        }
        for t in tenants {
            let (o, problems) = (origin("Tenant", &name_of(&t.metadata)), t.spec.validate());
            set.tenants.extend(keep(t, o, problems, &mut errors));
        }
        for e in exceptions {
            let (o, problems) = (
                origin("PolicyException", &name_of(&e.metadata)),
                e.spec.validate(),
            );
            set.exceptions.extend(keep(e, o, problems, &mut errors));
        }
        (set, errors)
    }

    /// Checks what spans objects, through the tenancy model: a namespace, an ingress domain or an owner
    /// belongs to one tenant only, and no tenant claims a reserved namespace.
    #[must_use]
    pub fn cross_check(&self) -> Vec<SourceError> {
        let tenants: Vec<Tenant> = self.tenants.iter().map(|t| t.object.clone()).collect();
        let model = crate::tenancy::Tenancy::new(&self.cluster_spec(), &tenants);
        let mut errs = Vec::new();
        for r in model.rejected() {
            if let Some(t) = self
                .tenants
                .iter()
                .find(|t| t.object.metadata.name.as_deref() == Some(r.tenant.as_str()))
            {
                errs.extend(
                    r.problems
                        .iter()
                        .map(|p| t.origin.error(&p.path, p.message.clone())),
                );
            }
        }
        errs
    }

    /// The cluster settings: the `KubeBidConfig` given, or the defaults.
    #[must_use]
    pub fn cluster_spec(&self) -> crate::config::KubeBidConfigSpec {
        self.config
            .as_ref()
            .map(|c| c.object.spec.clone())
            .unwrap_or_default()
    }

    /// The tenancy model of this configuration.
    #[must_use]
    pub fn tenancy(&self) -> crate::tenancy::Tenancy {
        let tenants: Vec<Tenant> = self.tenants.iter().map(|t| t.object.clone()).collect();
        crate::tenancy::Tenancy::new(&self.cluster_spec(), &tenants)
    }
}

fn decode_config<T: DeserializeOwned>(
    value: Value,
    at: &impl Fn(&str, String) -> SourceError,
) -> Result<T, Vec<SourceError>> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let field = path_of(e.path());
        vec![at(&field, e.into_inner().to_string())]
    })
}

fn check(
    errs: Vec<FieldError>,
    at: &impl Fn(&str, String) -> SourceError,
) -> Result<(), Vec<SourceError>> {
    if errs.is_empty() {
        Ok(())
    } else {
        Err(errs.into_iter().map(|e| at(&e.path, e.message)).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_fields_and_bad_values_name_file_line_and_field() {
        let text = "apiVersion: kubebid.io/v1alpha1\nkind: Tenant\nmetadata:\n  name: acme\nspec:\n  namespaces: [acme]\n  registires: [ghcr.io]\n---\napiVersion: kubebid.io/v1alpha1\nkind: Tenant\nmetadata:\n  name: beta\nspec:\n  namespaces:\n  - beta\n  egressCidrs:\n  - 10.0.0.0/40\n";
        let mut set = ConfigSet::default();
        let errs = set.add_text("tenants.yaml", text);
        assert_eq!(errs.len(), 2, "{errs:?}");
        assert_eq!(errs[0].line, 7);
        assert_eq!(errs[0].field, "spec.registires");
        assert!(
            errs[0].message.contains("unknown field"),
            "{}",
            errs[0].message
        );
        assert_eq!(errs[1].line, 17);
        assert_eq!(errs[1].field, "spec.egressCidrs[0]");
        assert_eq!(
            errs[1].to_string(),
            "tenants.yaml:17: spec.egressCidrs[0]: \"10.0.0.0/40\" is not a CIDR (a.b.c.d/n or x::/n)"
        );
    }

    #[test]
    fn lists_are_flattened_with_item_paths() {
        let text = "apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: Pod\n  metadata: {name: a}\n- apiVersion: v1\n  kind: Pod\n  metadata:\n    name: b\n";
        let (items, errs) = manifest_items("l.yaml", text);
        assert!(errs.is_empty());
        assert_eq!(items.len(), 2);
        assert_eq!(items[1].origin.prefix, "items[1]");
        assert_eq!(items[1].origin.line, 7);
        assert_eq!(items[1].origin.line_of("metadata.name"), 10);
    }

    #[test]
    fn a_namespace_belongs_to_one_tenant() {
        let t = |n: &str, ns: &str| {
            format!(
                "apiVersion: kubebid.io/v1alpha1\nkind: Tenant\nmetadata:\n  name: {n}\nspec:\n  namespaces: [{ns}]\n---\n"
            )
        };
        let mut set = ConfigSet::default();
        assert!(
            set.add_text("t.yaml", &(t("a", "shared") + &t("b", "shared")))
                .is_empty()
        );
        let errs = set.cross_check();
        assert_eq!(errs.len(), 1);
        assert!(errs[0].message.contains("already belongs to tenant \"a\""));
    }
}
