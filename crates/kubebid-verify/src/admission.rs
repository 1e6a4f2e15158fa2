//! The admission probes' corpus: hostile objects a tenant must never get admitted into its own namespace,
//! and compliant ones it must, each sent with server-side dry run (`dryRun=All`: admission runs in full,
//! nothing is stored). A hostile object that is admitted means a webhook, a rule or a kind is missing; a
//! compliant one that is refused means over-blocking.
//!
//! `{ns}` is the tenant's namespace, `{other}` another tenant's. Each hostile object is one way out,
//! tried through its neighbours too: the same pod spec as a Pod, a Deployment, a CronJob and a
//! PodTemplate (which keeps it in `template.spec`).

/// What the cluster must do with an object.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Must {
    Refuse,
    Admit,
}

/// One object of the corpus.
#[derive(Clone, Copy, Debug)]
pub struct Case {
    pub name: &'static str,
    pub must: Must,
    /// The collection it is created in, with `{ns}`.
    pub path: &'static str,
    /// The object, with `{ns}` and `{other}`.
    pub body: &'static str,
}

const PRIVILEGED: &str = r#"{"containers": [{"name": "c", "image": "registry.k8s.io/pause:3.10", "securityContext": {"privileged": true}}]}"#;

/// The corpus.
pub const CORPUS: &[Case] = &[
    Case {
        name: "privileged pod",
        must: Must::Refuse,
        path: "/api/v1/namespaces/{ns}/pods",
        body: r#"{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "kubebid-verify-privileged", "namespace": "{ns}"}, "spec": {PRIVILEGED}}"#,
    },
    Case {
        name: "privileged pod in a Deployment",
        must: Must::Refuse,
        path: "/apis/apps/v1/namespaces/{ns}/deployments",
        body: r#"{"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "kubebid-verify-privileged", "namespace": "{ns}"}, "spec": {"selector": {"matchLabels": {"app": "v"}}, "template": {"metadata": {"labels": {"app": "v"}}, "spec": {PRIVILEGED}}}}"#,
    },
    Case {
        name: "privileged pod in a CronJob",
        must: Must::Refuse,
        path: "/apis/batch/v1/namespaces/{ns}/cronjobs",
        body: r#"{"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "kubebid-verify-privileged", "namespace": "{ns}"}, "spec": {"schedule": "0 0 1 1 *", "jobTemplate": {"spec": {"template": {"spec": {PRIVILEGED}}}}}}"#,
    },
    Case {
        name: "privileged pod in a PodTemplate",
        must: Must::Refuse,
        path: "/api/v1/namespaces/{ns}/podtemplates",
        body: r#"{"apiVersion": "v1", "kind": "PodTemplate", "metadata": {"name": "kubebid-verify-privileged", "namespace": "{ns}"}, "template": {"spec": {PRIVILEGED}}}"#,
    },
    Case {
        name: "the node's root file system mounted",
        must: Must::Refuse,
        path: "/api/v1/namespaces/{ns}/pods",
        body: r#"{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "kubebid-verify-hostpath", "namespace": "{ns}"}, "spec": {"containers": [{"name": "c", "image": "registry.k8s.io/pause:3.10", "volumeMounts": [{"name": "root", "mountPath": "/host"}]}], "volumes": [{"name": "root", "hostPath": {"path": "/"}}]}}"#,
    },
    Case {
        name: "the node's network and process namespaces",
        must: Must::Refuse,
        path: "/api/v1/namespaces/{ns}/pods",
        body: r#"{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "kubebid-verify-hostns", "namespace": "{ns}"}, "spec": {"hostNetwork": true, "hostPID": true, "containers": [{"name": "c", "image": "registry.k8s.io/pause:3.10"}]}}"#,
    },
    Case {
        name: "the shared host kernel (runtimeClassName runc)",
        must: Must::Refuse,
        path: "/api/v1/namespaces/{ns}/pods",
        body: r#"{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "kubebid-verify-runc", "namespace": "{ns}"}, "spec": {"runtimeClassName": "runc", "containers": [{"name": "c", "image": "registry.k8s.io/pause:3.10"}]}}"#,
    },
    Case {
        name: "a node chosen past the scheduler",
        must: Must::Refuse,
        path: "/api/v1/namespaces/{ns}/pods",
        body: r#"{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "kubebid-verify-nodename", "namespace": "{ns}"}, "spec": {"nodeName": "any-node", "containers": [{"name": "c", "image": "registry.k8s.io/pause:3.10"}]}}"#,
    },
    Case {
        name: "every taint tolerated",
        must: Must::Refuse,
        path: "/api/v1/namespaces/{ns}/pods",
        body: r#"{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "kubebid-verify-tolerate", "namespace": "{ns}"}, "spec": {"tolerations": [{"operator": "Exists"}], "containers": [{"name": "c", "image": "registry.k8s.io/pause:3.10"}]}}"#,
    },
    Case {
        name: "a NodePort Service",
        must: Must::Refuse,
        path: "/api/v1/namespaces/{ns}/services",
        body: r#"{"apiVersion": "v1", "kind": "Service", "metadata": {"name": "kubebid-verify-nodeport", "namespace": "{ns}"}, "spec": {"type": "NodePort", "ports": [{"port": 80}], "selector": {"app": "v"}}}"#,
    },
    Case {
        name: "an ExternalName Service aliasing another tenant's",
        must: Must::Refuse,
        path: "/api/v1/namespaces/{ns}/services",
        body: r#"{"apiVersion": "v1", "kind": "Service", "metadata": {"name": "kubebid-verify-alias", "namespace": "{ns}"}, "spec": {"type": "ExternalName", "externalName": "db.{other}.svc.cluster.local"}}"#,
    },
    Case {
        name: "a NetworkPolicy opening egress to another tenant",
        must: Must::Refuse,
        path: "/apis/networking.k8s.io/v1/namespaces/{ns}/networkpolicies",
        body: r#"{"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": {"name": "kubebid-verify-reach", "namespace": "{ns}"}, "spec": {"podSelector": {}, "policyTypes": ["Egress"], "egress": [{"to": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "{other}"}}}]}]}}"#,
    },
    Case {
        name: "cluster-admin bound in the namespace",
        must: Must::Refuse,
        path: "/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/rolebindings",
        body: r#"{"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": {"name": "kubebid-verify-admin", "namespace": "{ns}"}, "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"}, "subjects": [{"kind": "ServiceAccount", "name": "default", "namespace": "{ns}"}]}"#,
    },
    Case {
        name: "a ConfigMap",
        must: Must::Admit,
        path: "/api/v1/namespaces/{ns}/configmaps",
        body: r#"{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "kubebid-verify-config", "namespace": "{ns}"}, "data": {"k": "v"}}"#,
    },
    Case {
        name: "a ClusterIP Service",
        must: Must::Admit,
        path: "/api/v1/namespaces/{ns}/services",
        body: r#"{"apiVersion": "v1", "kind": "Service", "metadata": {"name": "kubebid-verify-web", "namespace": "{ns}"}, "spec": {"ports": [{"port": 80}], "selector": {"app": "v"}}}"#,
    },
    Case {
        name: "a NetworkPolicy within the namespace",
        must: Must::Admit,
        path: "/apis/networking.k8s.io/v1/namespaces/{ns}/networkpolicies",
        body: r#"{"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": {"name": "kubebid-verify-own", "namespace": "{ns}"}, "spec": {"podSelector": {}, "ingress": [{"from": [{"podSelector": {}}]}]}}"#,
    },
];

impl Case {
    /// The request path and body for namespace `ns`, with `other` another tenant's namespace.
    #[must_use]
    pub fn render(&self, ns: &str, other: &str) -> (String, String) {
        (
            format!("{}?dryRun=All", self.path.replace("{ns}", ns)),
            self.body
                .replace("{PRIVILEGED}", PRIVILEGED)
                .replace("{ns}", ns)
                .replace("{other}", other),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_case_renders_to_an_object_in_the_namespace() {
        for c in CORPUS {
            let (path, body) = c.render("acme-prod", "globex");
            assert!(path.contains("/namespaces/acme-prod/") && path.ends_with("?dryRun=All"));
            let v: serde_json::Value =
                serde_json::from_str(&body).unwrap_or_else(|e| panic!("{}: {e}: {body}", c.name));
            assert_eq!(v["metadata"]["namespace"], "acme-prod", "{}", c.name);
            assert!(!body.contains('{') || !body.contains("{ns}"), "{}", c.name);
        }
        assert!(CORPUS.iter().any(|c| c.must == Must::Admit));
    }
}
