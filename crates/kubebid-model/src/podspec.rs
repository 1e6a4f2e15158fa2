//! Where each kind keeps its pod spec. Defined once: the engine reads pod specs through it, mutation writes
//! through it, the generated `ValidatingAdmissionPolicy` CEL and the webhook rules are built from it. A
//! `PodTemplate` keeps its spec at `template.spec`, a `CronJob` two levels deeper than a `Deployment`: a
//! door that guesses gets one of them wrong.

/// One pod-bearing kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PodSpecLocation {
    /// API group (`""` for the core group).
    pub group: &'static str,
    /// `apiVersion` KubeBid decodes.
    pub api_version: &'static str,
    /// Kind.
    pub kind: &'static str,
    /// Plural resource name.
    pub resource: &'static str,
    /// Path of the pod spec in KubeBid's path spelling, e.g. `spec.template.spec`.
    pub spec_path: &'static str,
    /// Path of the pod metadata.
    pub meta_path: &'static str,
    /// The pod spec's segments, for JSON pointers and CEL (`["spec", "template", "spec"]`).
    pub segments: &'static [&'static str],
}

impl PodSpecLocation {
    /// RFC 6901 JSON pointer of the pod spec, e.g. `/spec/template/spec`.
    #[must_use]
    pub fn pointer(&self) -> String {
        self.segments.iter().fold(String::new(), |mut p, s| {
            p.push('/');
            p.push_str(s);
            p
        })
    }

    /// A minimal object of this kind in `namespace` carrying `spec` as its pod spec and `meta` (or nothing,
    /// when null) as the pod's metadata, with the fields the kind requires (a selector, a schedule): one pod
    /// spec put into every pod-bearing kind. A Pod takes `meta` as its own metadata; the others are named `w`.
    #[must_use]
    pub fn object(
        &self,
        namespace: &str,
        meta: serde_json::Value,
        spec: &serde_json::Value,
    ) -> serde_json::Value {
        use serde_json::{Value, json};
        let Some((_, parent)) = self.segments.split_last() else {
            return Value::Null;
        };
        let own = json!({"name": "w", "namespace": namespace});
        if parent.is_empty() {
            let mut metadata = if meta.is_object() { meta } else { own };
            metadata["namespace"] = json!(namespace);
            return json!({"apiVersion": self.api_version, "kind": self.kind, "metadata": metadata, "spec": spec});
        }
        let mut o = json!({"apiVersion": self.api_version, "kind": self.kind, "metadata": own});
        let mut at = &mut o;
        for seg in parent {
            if let Value::Object(map) = at {
                at = map.entry((*seg).to_owned()).or_insert_with(|| json!({}));
            }
        }
        *at = if meta.is_null() {
            json!({"spec": spec})
        } else {
            json!({"metadata": meta, "spec": spec})
        };
        match self.kind {
            "Deployment" | "ReplicaSet" | "DaemonSet" => o["spec"]["selector"] = json!({}),
            "StatefulSet" => {
                o["spec"]["selector"] = json!({});
                o["spec"]["serviceName"] = json!("s");
            }
            "CronJob" => o["spec"]["schedule"] = json!("@daily"),
            _ => {}
        }
        o
    }

    /// CEL selecting the pod spec of `root` (`object` or `oldObject`), e.g. `object.spec.template.spec`.
    #[must_use]
    pub fn cel(&self, root: &str) -> String {
        self.segments.iter().fold(root.to_owned(), |mut p, s| {
            p.push('.');
            p.push_str(s);
            p
        })
    }
}

const TEMPLATE: &[&str] = &["spec", "template", "spec"];

/// Every kind that carries a pod spec, the Pod first.
pub const POD_BEARING: &[PodSpecLocation] = &[
    PodSpecLocation {
        group: "",
        api_version: "v1",
        kind: "Pod",
        resource: "pods",
        spec_path: "spec",
        meta_path: "metadata",
        segments: &["spec"],
    },
    PodSpecLocation {
        group: "",
        api_version: "v1",
        kind: "PodTemplate",
        resource: "podtemplates",
        spec_path: "template.spec",
        meta_path: "template.metadata",
        segments: &["template", "spec"],
    },
    PodSpecLocation {
        group: "",
        api_version: "v1",
        kind: "ReplicationController",
        resource: "replicationcontrollers",
        spec_path: "spec.template.spec",
        meta_path: "spec.template.metadata",
        segments: TEMPLATE,
    },
    PodSpecLocation {
        group: "apps",
        api_version: "apps/v1",
        kind: "Deployment",
        resource: "deployments",
        spec_path: "spec.template.spec",
        meta_path: "spec.template.metadata",
        segments: TEMPLATE,
    },
    PodSpecLocation {
        group: "apps",
        api_version: "apps/v1",
        kind: "ReplicaSet",
        resource: "replicasets",
        spec_path: "spec.template.spec",
        meta_path: "spec.template.metadata",
        segments: TEMPLATE,
    },
    PodSpecLocation {
        group: "apps",
        api_version: "apps/v1",
        kind: "StatefulSet",
        resource: "statefulsets",
        spec_path: "spec.template.spec",
        meta_path: "spec.template.metadata",
        segments: TEMPLATE,
    },
    PodSpecLocation {
        group: "apps",
        api_version: "apps/v1",
        kind: "DaemonSet",
        resource: "daemonsets",
        spec_path: "spec.template.spec",
        meta_path: "spec.template.metadata",
        segments: TEMPLATE,
    },
    PodSpecLocation {
        group: "batch",
        api_version: "batch/v1",
        kind: "Job",
        resource: "jobs",
        spec_path: "spec.template.spec",
        meta_path: "spec.template.metadata",
        segments: TEMPLATE,
    },
    PodSpecLocation {
        group: "batch",
        api_version: "batch/v1",
        kind: "CronJob",
        resource: "cronjobs",
        spec_path: "spec.jobTemplate.spec.template.spec",
        meta_path: "spec.jobTemplate.spec.template.metadata",
        segments: &["spec", "jobTemplate", "spec", "template", "spec"],
    },
];

/// Where `kind` (at `api_version`) keeps its pod spec.
#[must_use]
pub fn location(api_version: &str, kind: &str) -> Option<&'static PodSpecLocation> {
    POD_BEARING
        .iter()
        .find(|l| l.kind == kind && l.api_version == api_version)
}

/// The pod-bearing resources of one API group, for webhook and policy match rules.
#[must_use]
pub fn resources_of(group: &str) -> Vec<&'static str> {
    POD_BEARING
        .iter()
        .filter(|l| l.group == group)
        .map(|l| l.resource)
        .collect()
}

/// The API groups that hold pod-bearing kinds, in table order.
#[must_use]
pub fn groups() -> Vec<&'static str> {
    let mut out: Vec<&'static str> = Vec::new();
    for l in POD_BEARING {
        if !out.contains(&l.group) {
            out.push(l.group);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_pointers_and_cel_agree() {
        for l in POD_BEARING {
            assert_eq!(
                l.pointer().trim_start_matches('/').replace('/', "."),
                l.spec_path
            );
            assert_eq!(l.cel("object"), format!("object.{}", l.spec_path));
            assert!(l.meta_path.ends_with("metadata"));
        }
        assert_eq!(
            location("v1", "PodTemplate").map(PodSpecLocation::pointer),
            Some("/template/spec".to_owned())
        );
        assert_eq!(groups(), ["", "apps", "batch"]);
        assert_eq!(resources_of("batch"), ["jobs", "cronjobs"]);
    }

    #[test]
    fn objects_decode_with_the_spec_where_the_kind_keeps_it() {
        let spec = serde_json::json!({"containers": [{"name": "c", "image": "x"}]});
        for l in POD_BEARING {
            let o = l.object("ns", serde_json::json!({"labels": {"a": "b"}}), &spec);
            assert_eq!(o.pointer(&l.pointer()), Some(&spec), "{}", l.kind);
            let decoded = crate::Object::from_value(o).expect("decodes");
            assert!(decoded.pod_template().is_some(), "{}", l.kind);
            assert_eq!(decoded.namespace(), Some("ns"), "{}", l.kind);
        }
    }
}
