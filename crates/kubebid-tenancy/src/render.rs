//! The renderer: pure functions from configuration objects to Kubernetes objects (as JSON, in apply order).

use std::collections::BTreeMap;

use kubebid_model::config::{
    AuditLevel, KubeBidConfigSpec, MANAGED_LABEL, OwnerKind, Profile, SECURE_RUNTIME_LABEL,
    TENANT_LABEL, Tenant,
};
use serde_json::{Value, json};

/// The tenant's administrator Role, in each of its namespaces.
pub const ADMIN_ROLE: &str = "tenant-admin";

fn labels(tenant: &str) -> Value {
    json!({ TENANT_LABEL: tenant, MANAGED_LABEL: "true" })
}

fn meta(name: &str, namespace: &str, tenant: &str) -> Value {
    json!({"name": name, "namespace": namespace, "labels": labels(tenant)})
}

fn pss_level(profile: Profile) -> &'static str {
    match profile {
        Profile::Baseline => "baseline",
        Profile::Restricted | Profile::ZeroTrust => "restricted",
    }
}

fn network_policy(name: &str, ns: &str, tenant: &str, spec: Value) -> Value {
    let mut np = json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": meta(name, ns, tenant)});
    np["spec"] = spec;
    np
}

fn namespace_is(ns: &str) -> Value {
    json!({"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": ns}}})
}

/// Every namespaced object of `tenant`, namespaces first.
#[must_use]
pub fn tenant(tenant: &Tenant, cluster: &KubeBidConfigSpec) -> Vec<Value> {
    let name = tenant.metadata.name.as_deref().unwrap_or_default();
    let spec = &tenant.spec;
    let level = pss_level(spec.profile.unwrap_or(cluster.default_profile));
    let mut out = Vec::new();
    for ns in &spec.namespaces {
        let mut ns_labels = labels(name);
        for mode in ["enforce", "audit", "warn"] {
            ns_labels[format!("pod-security.kubernetes.io/{mode}")] = json!(level);
            ns_labels[format!("pod-security.kubernetes.io/{mode}-version")] =
                json!(cluster.pod_security_version);
        }
        out.push(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns, "labels": ns_labels}}));
    }
    for ns in &spec.namespaces {
        out.extend(namespace_objects(name, ns, tenant, cluster));
    }
    out
}

fn namespace_objects(
    name: &str,
    ns: &str,
    tenant: &Tenant,
    cluster: &KubeBidConfigSpec,
) -> Vec<Value> {
    let spec = &tenant.spec;
    let mut out = vec![
        network_policy(
            "default-deny-all",
            ns,
            name,
            json!({"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}),
        ),
        // A default deny that also blocks DNS breaks every pod: allow the cluster DNS, and only it.
        network_policy(
            "allow-cluster-dns",
            ns,
            name,
            json!({"podSelector": {}, "policyTypes": ["Egress"], "egress": [{
                "to": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
                        "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}}}],
                "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]}]}),
        ),
    ];
    if spec.network.intra_tenant {
        let same = json!([{"namespaceSelector": {"matchLabels": {TENANT_LABEL: name}}}]);
        out.push(network_policy(
            "allow-same-tenant",
            ns,
            name,
            json!({"podSelector": {}, "policyTypes": ["Ingress", "Egress"], "ingress": [{"from": same}], "egress": [{"to": same}]}),
        ));
    }
    if spec.network.from_ingress_controllers {
        let (k, v) = (
            &cluster.ingress_controller_label.key,
            &cluster.ingress_controller_label.value,
        );
        out.push(network_policy(
            "allow-ingress-controllers",
            ns,
            name,
            json!({"podSelector": {}, "policyTypes": ["Ingress"], "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {k: v}}}]}]}),
        ));
    }
    let mut shared: Vec<&str> = cluster
        .shared_namespaces
        .iter()
        .map(String::as_str)
        .collect();
    for s in &spec.network.shared_services {
        if let Some((sns, _)) = s.split_once('/') {
            shared.push(sns);
        }
    }
    shared.sort_unstable();
    shared.dedup();
    if !shared.is_empty() {
        let to: Vec<Value> = shared.iter().map(|s| namespace_is(s)).collect();
        out.push(network_policy(
            "allow-shared-services",
            ns,
            name,
            json!({"podSelector": {}, "policyTypes": ["Egress"], "egress": [{"to": to}]}),
        ));
    }
    if let Some(cidrs) = spec.egress_cidrs.as_ref().filter(|c| !c.is_empty()) {
        let to: Vec<Value> = cidrs
            .iter()
            .map(|c| json!({"ipBlock": {"cidr": c}}))
            .collect();
        out.push(network_policy(
            "allow-egress-cidrs",
            ns,
            name,
            json!({"podSelector": {}, "policyTypes": ["Egress"], "egress": [{"to": to}]}),
        ));
    }
    out.push(json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": meta(ADMIN_ROLE, ns, name),
        "rules": [
            {"apiGroups": ["", "apps", "batch"], "resources": ["*"], "verbs": ["*"]},
            {"apiGroups": ["networking.k8s.io"], "resources": ["networkpolicies"], "verbs": ["get", "list", "create", "update", "delete"]},
            // Not in the mission's role, but a Tenant has ingress domains: its admins publish through Ingresses.
            {"apiGroups": ["networking.k8s.io"], "resources": ["ingresses"], "verbs": ["*"]}
        ]
    }));
    let subjects: Vec<Value> = spec
        .owners
        .iter()
        .map(|o| match o.kind {
            OwnerKind::User => {
                json!({"kind": "User", "name": o.name, "apiGroup": "rbac.authorization.k8s.io"})
            }
            OwnerKind::Group => {
                json!({"kind": "Group", "name": o.name, "apiGroup": "rbac.authorization.k8s.io"})
            }
            OwnerKind::ServiceAccount => {
                json!({"kind": "ServiceAccount", "name": o.name, "namespace": o.namespace})
            }
        })
        .collect();
    if !subjects.is_empty() {
        out.push(json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": meta("tenant-admin-owners", ns, name),
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": ADMIN_ROLE},
            "subjects": subjects
        }));
    }
    let hard: BTreeMap<&str, &str> = spec
        .quota
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    out.push(json!({"apiVersion": "v1", "kind": "ResourceQuota", "metadata": meta("tenant-quota", ns, name), "spec": {"hard": hard}}));
    let l = &spec.limits;
    out.push(json!({"apiVersion": "v1", "kind": "LimitRange", "metadata": meta("tenant-limits", ns, name), "spec": {"limits": [{
        "type": "Container",
        "defaultRequest": {"cpu": l.default_request_cpu, "memory": l.default_request_memory},
        "default": {"cpu": l.default_cpu, "memory": l.default_memory},
        "max": {"cpu": l.max_cpu, "memory": l.max_memory}
    }]}}));
    out
}

fn cluster_meta(name: &str) -> Value {
    json!({"name": name, "labels": {MANAGED_LABEL: "true"}})
}

/// Cluster-wide objects, once: the secure `RuntimeClass`, the encrypted `StorageClass` and the Cilium policy
/// that refuses unencrypted pod traffic.
#[must_use]
pub fn cluster() -> Vec<Value> {
    vec![
        json!({"apiVersion": "node.k8s.io/v1", "kind": "RuntimeClass", "metadata": cluster_meta("kubebid-secure"),
            "handler": "kata-fc",
            "overhead": {"podFixed": {"memory": "160Mi", "cpu": "250m"}},
            "scheduling": {"nodeSelector": {SECURE_RUNTIME_LABEL: "true"}}}),
        json!({"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass", "metadata": cluster_meta("encrypted-ssd"),
            "provisioner": "kubebid.io/csi-driver",
            "parameters": {"type": "ssd", "encryption": "true", "encryptionKeySource": "tenant-kms", "fsType": "ext4"},
            "reclaimPolicy": "Delete", "volumeBindingMode": "WaitForFirstConsumer", "allowVolumeExpansion": true}),
        json!({"apiVersion": "cilium.io/v2", "kind": "CiliumClusterwideNetworkPolicy", "metadata": cluster_meta("encrypt-all"),
            "spec": {"endpointSelector": {}, "egressDeny": [{"toEndpoints": [{"matchLabels": {"io.cilium.k8s.policy.unencrypted": "true"}}]}]}}),
    ]
}

fn audit_level(l: AuditLevel) -> &'static str {
    match l {
        AuditLevel::Metadata => "Metadata",
        AuditLevel::Request => "Request",
        AuditLevel::RequestResponse => "RequestResponse",
    }
}

/// The API server's audit `Policy` (`--audit-policy-file`): secrets at Metadata (never their bodies), exec
/// and attach at Request, tenants that ask for more at their level, everything else at Metadata.
#[must_use]
pub fn audit_policy(tenants: &[Tenant]) -> Value {
    let mut rules = vec![
        json!({"level": "Metadata", "resources": [{"group": "", "resources": ["secrets", "configmaps"]}]}),
        json!({"level": "Request", "resources": [{"group": "", "resources": ["pods/exec", "pods/attach", "pods/portforward"]}]}),
    ];
    for t in tenants {
        if t.spec.audit_level != AuditLevel::Metadata {
            rules.push(
                json!({"level": audit_level(t.spec.audit_level), "namespaces": t.spec.namespaces}),
            );
        }
    }
    rules.push(json!({"level": "Metadata", "omitStages": ["RequestReceived"]}));
    json!({"apiVersion": "audit.k8s.io/v1", "kind": "Policy", "omitStages": ["RequestReceived"], "rules": rules})
}

/// Directory of the KMS plugin's sockets on a control-plane node.
pub const KMS_SOCKET_DIR: &str = "/var/run/kmsplugin";

/// The API server's `EncryptionConfiguration` (`--encryption-provider-config`): Secrets through the KMS v2
/// plugin `kubebid-kms`; `identity` last, only to read Secrets written before encryption was turned on.
#[must_use]
pub fn encryption_config() -> Value {
    json!({"apiVersion": "apiserver.config.k8s.io/v1", "kind": "EncryptionConfiguration", "resources": [{
    "resources": ["secrets"],
    "providers": [
        {"kms": {"apiVersion": "v2", "name": "kubebid-kms", "endpoint": format!("unix://{KMS_SOCKET_DIR}/socket.sock"), "timeout": "3s"}},
        {"identity": {}}
    ]}]})
}

/// The KMS plugin as a static pod for each control-plane node (`/etc/kubernetes/manifests/`): the kubelet
/// starts it before the API server needs it, with no cluster to schedule it. It listens where
/// [`encryption_config`] points, and serves the tenant key service beside it. The HSM is reached through
/// the PKCS#11 module and configuration mounted from the node (SoftHSM2's paths here; a network HSM's
/// module and client configuration take their place), the PIN from a root-only file on the node. Root in
/// the container, for the node's root-owned socket directory and token files, but with every capability
/// dropped, a read-only root file system and the runtime's seccomp profile.
#[must_use]
pub fn kms_static_pod(image: &str) -> Value {
    let host = |name: &str, path: &str, kind: &str| json!({"name": name, "hostPath": {"path": path, "type": kind}});
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "kubebid-kms", "namespace": "kube-system", "labels": {
            "app.kubernetes.io/name": "kubebid", "app.kubernetes.io/component": "kms",
            "kubebid.io/managed": "true"}},
        "spec": {
            "hostNetwork": true,
            "priorityClassName": "system-node-critical",
            "securityContext": {"seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [{
                "name": "kms",
                "image": image,
                "args": [
                    "serve", "kms",
                    "--socket", format!("{KMS_SOCKET_DIR}/socket.sock"),
                    "--tenant-socket", format!("{KMS_SOCKET_DIR}/tenant-keys.sock"),
                    "--pkcs11-module", "/usr/lib/softhsm/libsofthsm2.so",
                    "--token", "kubebid",
                    "--pin-file", "/etc/kubebid/kms/pin",
                    "--metrics-listen", "127.0.0.1:9154",
                ],
                "env": [{"name": "SOFTHSM2_CONF", "value": "/etc/softhsm/softhsm2.conf"}],
                "securityContext": {
                    "allowPrivilegeEscalation": false,
                    "readOnlyRootFilesystem": true,
                    "capabilities": {"drop": ["ALL"]},
                },
                "livenessProbe": {"httpGet": {"host": "127.0.0.1", "port": 9154, "path": "/healthz"},
                                  "periodSeconds": 10, "failureThreshold": 3},
                "resources": {"requests": {"cpu": "50m", "memory": "32Mi"}, "limits": {"memory": "128Mi"}},
                "volumeMounts": [
                    {"name": "sockets", "mountPath": KMS_SOCKET_DIR},
                    {"name": "pin", "mountPath": "/etc/kubebid/kms", "readOnly": true},
                    {"name": "pkcs11-module", "mountPath": "/usr/lib/softhsm", "readOnly": true},
                    {"name": "hsm-config", "mountPath": "/etc/softhsm", "readOnly": true},
                    {"name": "hsm-tokens", "mountPath": "/var/lib/softhsm/tokens"},
                ],
            }],
            "volumes": [
                host("sockets", KMS_SOCKET_DIR, "DirectoryOrCreate"),
                host("pin", "/etc/kubebid/kms", "Directory"),
                host("pkcs11-module", "/usr/lib/softhsm", "Directory"),
                host("hsm-config", "/etc/softhsm", "Directory"),
                host("hsm-tokens", "/var/lib/softhsm/tokens", "Directory"),
            ],
        },
    })
}

/// Makes the Tenant the owner of `objects`, so that deleting the Tenant lets the garbage collector remove
/// them and so that an edit of one wakes the operator. Namespaces are owned only when the Tenant sets
/// `deleteNamespaces`: otherwise they, and the tenant's data in them, outlive the Tenant.
pub fn owned_by(objects: &mut [Value], tenant: &Tenant) {
    let (Some(name), Some(uid)) = (
        tenant.metadata.name.as_deref(),
        tenant.metadata.uid.as_deref(),
    ) else {
        return;
    };
    let reference = json!([{
        "apiVersion": "kubebid.io/v1alpha1", "kind": "Tenant", "name": name, "uid": uid,
        "controller": true, "blockOwnerDeletion": true
    }]);
    for o in objects {
        if o["kind"] == "Namespace" && !tenant.spec.delete_namespaces {
            continue;
        }
        o["metadata"]["ownerReferences"] = reference.clone();
    }
}
