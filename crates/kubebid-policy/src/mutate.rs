//! Mutation: the secure defaults the mutating webhook fills in where a pod leaves them unset. Only unset
//! fields are written, with one exception: every container's `imagePullPolicy` becomes `Always`, as
//! Kubernetes' `AlwaysPullImages` does (the API server has defaulted it before any webhook sees it). The pod
//! spec is found where [`kubebid_model::podspec`] says each kind keeps it, the same table the rules and the
//! generated CEL use.

use kubebid_model::config::Mutations;
use serde_json::{Value, json};

/// What of a pod spec a mutation may touch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reach {
    /// A new object or a controller's template: everything.
    Whole,
    /// `pods/ephemeralcontainers`: the rest of a running pod's spec is immutable.
    EphemeralContainers,
}

/// Applies the tenant's mutations to `object` in place. Returns whether anything changed.
pub fn apply(object: &mut Value, m: &Mutations, default_runtime_class: Option<&str>) -> bool {
    apply_within(object, m, default_runtime_class, Reach::Whole)
}

/// [`apply`], limited to what `reach` allows.
pub fn apply_within(
    object: &mut Value,
    m: &Mutations,
    default_runtime_class: Option<&str>,
    reach: Reach,
) -> bool {
    let whole = reach == Reach::Whole;
    let api_version = object
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let kind = object
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let Some(at) = kubebid_model::podspec::location(&api_version, &kind) else {
        return false;
    };
    let Some(Value::Object(spec)) = object.pointer_mut(&at.pointer()) else {
        return false;
    };
    let mut changed = false;
    if whole
        && m.runtime_class_name
        && let Some(rc) = default_runtime_class
        && spec.get("runtimeClassName").is_none_or(Value::is_null)
    {
        spec.insert("runtimeClassName".into(), json!(rc));
        changed = true;
    }
    if whole && m.seccomp_profile {
        let sc = spec.entry("securityContext").or_insert_with(|| json!({}));
        if let Value::Object(sc) = sc
            && sc.get("seccompProfile").is_none_or(Value::is_null)
        {
            sc.insert("seccompProfile".into(), json!({"type": "RuntimeDefault"}));
            changed = true;
        }
    }
    if whole
        && m.image_pull_policy
        && let Some(Value::Array(volumes)) = spec.get_mut("volumes")
    {
        for image in volumes
            .iter_mut()
            .filter_map(|v| v.get_mut("image"))
            .filter_map(Value::as_object_mut)
        {
            if image.get("pullPolicy").and_then(Value::as_str) != Some("Always") {
                image.insert("pullPolicy".into(), json!("Always"));
                changed = true;
            }
        }
    }
    for list in ["initContainers", "containers", "ephemeralContainers"] {
        if !whole && list != "ephemeralContainers" {
            continue;
        }
        let Some(Value::Array(containers)) = spec.get_mut(list) else {
            continue;
        };
        for c in containers.iter_mut().filter_map(Value::as_object_mut) {
            if m.image_pull_policy
                && c.get("imagePullPolicy").and_then(Value::as_str) != Some("Always")
            {
                c.insert("imagePullPolicy".into(), json!("Always"));
                changed = true;
            }
            let sc = c.entry("securityContext").or_insert_with(|| json!({}));
            let Value::Object(sc) = sc else { continue };
            // The API server refuses allowPrivilegeEscalation=false next to privileged or CAP_SYS_ADMIN;
            // validation denies those containers anyway, with a clearer reason.
            let privileged = sc.get("privileged").and_then(Value::as_bool) == Some(true);
            let sys_admin = sc
                .get("capabilities")
                .and_then(|c| c.get("add"))
                .and_then(Value::as_array)
                .is_some_and(|a| {
                    a.iter()
                        .any(|c| matches!(c.as_str(), Some("SYS_ADMIN" | "CAP_SYS_ADMIN")))
                });
            if m.allow_privilege_escalation
                && !privileged
                && !sys_admin
                && sc
                    .get("allowPrivilegeEscalation")
                    .is_none_or(Value::is_null)
            {
                sc.insert("allowPrivilegeEscalation".into(), json!(false));
                changed = true;
            }
            if m.drop_capabilities {
                let caps = sc.entry("capabilities").or_insert_with(|| json!({}));
                if let Value::Object(caps) = caps
                    && caps.get("drop").is_none_or(Value::is_null)
                {
                    caps.insert("drop".into(), json!(["ALL"]));
                    changed = true;
                }
            }
        }
    }
    changed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fills_only_what_is_unset() {
        let mut pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {
        "containers": [
            {"name": "a", "image": "x"},
            {"name": "b", "image": "x", "securityContext": {"allowPrivilegeEscalation": true, "capabilities": {"drop": ["NET_RAW"]}}},
            {"name": "c", "image": "x", "securityContext": {"privileged": true}}
        ]}});
        assert!(apply(
            &mut pod,
            &Mutations::default(),
            Some("kubebid-secure")
        ));
        let spec = &pod["spec"];
        assert_eq!(spec["runtimeClassName"], "kubebid-secure");
        assert_eq!(
            spec["securityContext"]["seccompProfile"]["type"],
            "RuntimeDefault"
        );
        assert_eq!(
            spec["containers"][0]["securityContext"],
            json!({"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}})
        );
        assert_eq!(
            spec["containers"][1]["securityContext"],
            json!({"allowPrivilegeEscalation": true, "capabilities": {"drop": ["NET_RAW"]}})
        );
        assert!(
            spec["containers"][2]["securityContext"]
                .get("allowPrivilegeEscalation")
                .is_none()
        );
        assert!(
            !apply(&mut pod, &Mutations::default(), Some("kubebid-secure")),
            "idempotent"
        );
    }

    #[test]
    fn every_image_is_pulled_whatever_the_policy_was() {
        let mut pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {
            "initContainers": [{"name": "i", "image": "x", "imagePullPolicy": "IfNotPresent"}],
            "containers": [{"name": "a", "image": "x", "imagePullPolicy": "Never"}, {"name": "b", "image": "x"}],
            "volumes": [{"name": "v", "image": {"reference": "x", "pullPolicy": "IfNotPresent"}}, {"name": "e", "emptyDir": {}}]
        }});
        assert!(apply(&mut pod, &Mutations::default(), None));
        let spec = &pod["spec"];
        for c in [
            &spec["initContainers"][0],
            &spec["containers"][0],
            &spec["containers"][1],
        ] {
            assert_eq!(c["imagePullPolicy"], "Always", "{c}");
        }
        assert_eq!(spec["volumes"][0]["image"]["pullPolicy"], "Always");
        assert!(spec["volumes"][1].get("image").is_none());
        let off = Mutations {
            image_pull_policy: false,
            ..Mutations::default()
        };
        let mut kept = json!({"apiVersion": "v1", "kind": "Pod", "spec": {"containers": [{"name": "a", "imagePullPolicy": "IfNotPresent"}]}});
        apply(&mut kept, &off, None);
        assert_eq!(
            kept["spec"]["containers"][0]["imagePullPolicy"],
            "IfNotPresent"
        );
    }

    /// Through `pods/ephemeralcontainers` only the ephemeral containers may change: a patch touching the
    /// rest of a running pod's spec would make the API server refuse the request.
    #[test]
    fn ephemeral_reach_touches_only_ephemeral_containers() {
        let mut pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {
            "containers": [{"name": "a", "image": "x", "imagePullPolicy": "IfNotPresent"}],
            "ephemeralContainers": [{"name": "debug", "image": "busybox", "imagePullPolicy": "IfNotPresent"}]
        }});
        assert!(apply_within(
            &mut pod,
            &Mutations::default(),
            Some("kubebid-secure"),
            Reach::EphemeralContainers
        ));
        let spec = &pod["spec"];
        assert!(spec.get("runtimeClassName").is_none());
        assert!(spec.get("securityContext").is_none());
        assert_eq!(
            spec["containers"][0],
            json!({"name": "a", "image": "x", "imagePullPolicy": "IfNotPresent"})
        );
        assert_eq!(spec["ephemeralContainers"][0]["imagePullPolicy"], "Always");
        assert_eq!(
            spec["ephemeralContainers"][0]["securityContext"],
            json!({"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}})
        );
    }

    #[test]
    fn switches_and_kinds() {
        let mut cj = json!({"apiVersion": "batch/v1", "kind": "CronJob", "spec": {"jobTemplate": {"spec": {"template": {"spec": {"containers": [{"name": "a"}]}}}}}});
        let off = Mutations {
            runtime_class_name: false,
            seccomp_profile: false,
            allow_privilege_escalation: true,
            drop_capabilities: false,
            image_pull_policy: false,
        };
        assert!(apply(&mut cj, &off, Some("kubebid-secure")));
        let spec = &cj["spec"]["jobTemplate"]["spec"]["template"]["spec"];
        assert!(spec.get("runtimeClassName").is_none());
        assert_eq!(
            spec["containers"][0]["securityContext"],
            json!({"allowPrivilegeEscalation": false})
        );
        let mut svc = json!({"apiVersion": "v1", "kind": "Service", "spec": {}});
        assert!(!apply(&mut svc, &Mutations::default(), Some("x")));
    }
}
