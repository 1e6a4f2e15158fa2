//! The renderer: pure functions from configuration objects to Kubernetes objects (as JSON, in apply order).
//! Who may reach what comes from the tenancy model ([`Tenancy`]), the same answers the webhook and the DNS
//! server give; peers are selected by `kubernetes.io/metadata.name`, the one namespace label nobody can
//! change.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Service;
use kubebid_model::config::{
    AuditLevel, FieldError, KubeBidConfigSpec, MANAGED_LABEL, MEMORY_ENCRYPTION_LABEL,
    NAMESPACE_NAME_LABEL, OwnerKind, Profile, SECURE_RUNTIME_LABEL, SNP_RUNTIME_CLASS,
    TDX_RUNTIME_CLASS, TENANT_LABEL, Tenant,
};
use kubebid_model::{Party, Tenancy, TenantScope};
use serde_json::{Value, json};

/// The tenant's administrator Role, in each of its namespaces.
pub const ADMIN_ROLE: &str = "tenant-admin";

/// Objects that stay in a namespace when its Tenant is deleted or lets it go: what keeps it isolated and
/// within bounds (default deny with its DNS exception, quotas, limits). They are not owned by the Tenant, so
/// the garbage collector leaves them; everything that grants (allow policies, RBAC) goes.
pub const FLOOR: &[(&str, &str)] = &[
    ("NetworkPolicy", "default-deny-all"),
    ("NetworkPolicy", "allow-cluster-dns"),
    ("ResourceQuota", "tenant-quota"),
    ("ResourceQuota", "tenant-priority"),
    ("LimitRange", "tenant-limits"),
];

/// Whether `kind`/`name` is one of the [`FLOOR`] objects.
#[must_use]
pub fn is_floor(kind: &str, name: &str) -> bool {
    FLOOR.iter().any(|(k, n)| *k == kind && *n == name)
}

/// Verbs that read, and verbs that read and write.
const READ: &[&str] = &["get", "list", "watch"];
const READ_WRITE: &[&str] = &[
    "get",
    "list",
    "watch",
    "create",
    "update",
    "patch",
    "delete",
    "deletecollection",
];

/// The `tenant-admin` Role, written out resource by resource the way Kubernetes' own `admin` and `edit` roles
/// are: no wildcard, because `*` also grants every subresource (`pods/binding`, `*/status`) and every
/// resource a later Kubernetes adds. Left out on purpose: the Namespace object (a namespaced Role covering
/// `namespaces` grants the namespace itself), `bindings` and `pods/binding` (placing pods past the scheduler),
/// every `/status` (quota usage, pod addresses), writes of `endpoints` and `endpointslices` (CVE-2021-25740),
/// writes of quotas and limit ranges, `impersonate`, the API server's proxies, and `poddisruptionbudgets`
/// (which could block the platform's node maintenance).
pub const TENANT_ADMIN_RULES: &[(&[&str], &[&str], &[&str])] = &[
    (
        &[""],
        &[
            "pods",
            "configmaps",
            "secrets",
            "services",
            "serviceaccounts",
            "persistentvolumeclaims",
            "replicationcontrollers",
            "podtemplates",
        ],
        READ_WRITE,
    ),
    (
        &[""],
        &["pods/exec", "pods/attach", "pods/portforward"],
        &["get", "create"],
    ),
    (&[""], &["pods/log"], READ),
    (&[""], &["pods/eviction"], &["create"]),
    (
        &[""],
        &["pods/ephemeralcontainers"],
        &["get", "patch", "update"],
    ),
    (
        &[""],
        &["replicationcontrollers/scale"],
        &["get", "patch", "update"],
    ),
    (&[""], &["serviceaccounts/token"], &["create"]),
    (
        &[""],
        &["endpoints", "events", "limitranges", "resourcequotas"],
        READ,
    ),
    // Applications report what they do; events are written in the tenant's own namespace only.
    (&["", "events.k8s.io"], &["events"], &["create", "patch"]),
    // Leader election of the tenant's own controllers.
    (&["coordination.k8s.io"], &["leases"], READ_WRITE),
    (
        &["apps"],
        &["deployments", "replicasets", "statefulsets", "daemonsets"],
        READ_WRITE,
    ),
    (
        &["apps"],
        &[
            "deployments/scale",
            "replicasets/scale",
            "statefulsets/scale",
        ],
        &["get", "patch", "update"],
    ),
    (&["apps"], &["controllerrevisions"], READ),
    (&["batch"], &["jobs", "cronjobs"], READ_WRITE),
    (&["autoscaling"], &["horizontalpodautoscalers"], READ_WRITE),
    (
        &["networking.k8s.io"],
        &["networkpolicies", "ingresses"],
        READ_WRITE,
    ),
    (&["discovery.k8s.io"], &["endpointslices"], READ),
    (&["events.k8s.io"], &["events"], READ),
    (
        &["rbac.authorization.k8s.io"],
        &["roles", "rolebindings"],
        READ_WRITE,
    ),
];

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

/// Namespaces by name: the label the API server sets and overwrites.
fn namespaces_named<'a>(names: impl IntoIterator<Item = &'a String>) -> Value {
    let values: Vec<&String> = names.into_iter().collect();
    json!({"namespaceSelector": {"matchExpressions": [{"key": NAMESPACE_NAME_LABEL, "operator": "In", "values": values}]}})
}

/// What rendering one Tenant gives.
#[derive(Clone, Debug, Default)]
pub struct Rendered {
    /// The objects, namespaces first.
    pub objects: Vec<Value>,
    /// What could not be rendered and was left closed (a shared Service that does not exist, say).
    pub warnings: Vec<String>,
}

/// Renders Tenants against one tenancy model.
pub struct TenantRenderer<'a> {
    cluster: &'a KubeBidConfigSpec,
    model: &'a Tenancy,
    services: &'a [Service],
}

impl<'a> TenantRenderer<'a> {
    /// A renderer for `cluster`'s settings and the tenancy `model` built from them.
    #[must_use]
    pub fn new(cluster: &'a KubeBidConfigSpec, model: &'a Tenancy) -> Self {
        Self {
            cluster,
            model,
            services: &[],
        }
    }

    /// The Services that tenants' `sharedServices` grants name: egress is opened to their pods and ports
    /// only. A granted Service not given here gets no egress (and a warning).
    #[must_use]
    pub fn with_services(mut self, services: &'a [Service]) -> Self {
        self.services = services;
        self
    }

    /// `bind` on exactly the `ClusterRole`s tenants may bind: without it, the API server refuses a binding
    /// to a `ClusterRole` (`view`) holding anything tenant-admin lacks. An empty `resourceNames` would mean
    /// every `ClusterRole`, so none is granted when the list is empty.
    fn bind_rule(&self) -> Option<Value> {
        let names = &self.cluster.allowed_cluster_roles;
        (!names.is_empty()).then(|| {
            json!({"apiGroups": ["rbac.authorization.k8s.io"], "resources": ["clusterroles"], "verbs": ["bind"], "resourceNames": names})
        })
    }

    /// Every namespaced object of `tenant`, namespaces first.
    ///
    /// # Errors
    /// The problems that keep the Tenant out of the tenancy model (a reserved namespace, a namespace or
    /// domain another tenant holds): nothing is rendered for it.
    pub fn render(&self, tenant: &Tenant) -> Result<Rendered, Vec<FieldError>> {
        let name = tenant.metadata.name.as_deref().unwrap_or_default();
        let Some(scope) = self.model.tenant(name) else {
            return Err(self
                .model
                .rejected()
                .iter()
                .find(|r| r.tenant == name)
                .map_or_else(
                    || {
                        vec![FieldError {
                            path: "metadata.name".into(),
                            message: format!("tenant {name:?} is not in the tenancy model"),
                        }]
                    },
                    |r| r.problems.clone(),
                ));
        };
        let spec = &tenant.spec;
        let level = pss_level(spec.profile.unwrap_or(self.cluster.default_profile));
        let mut out = Rendered::default();
        for ns in &spec.namespaces {
            let mut ns_labels = labels(name);
            for mode in ["enforce", "audit", "warn"] {
                ns_labels[format!("pod-security.kubernetes.io/{mode}")] = json!(level);
                ns_labels[format!("pod-security.kubernetes.io/{mode}-version")] =
                    json!(self.cluster.pod_security_version);
            }
            out.objects.push(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns, "labels": ns_labels}}));
        }
        for ns in &spec.namespaces {
            self.namespace_objects(scope, ns, tenant, &mut out);
        }
        Ok(out)
    }

    // One object literal per rendered object, as the cluster will hold it.
    #[allow(clippy::too_many_lines)]
    fn namespace_objects(
        &self,
        scope: &TenantScope,
        ns: &str,
        tenant: &Tenant,
        out: &mut Rendered,
    ) {
        let name = scope.name.as_str();
        let spec = &tenant.spec;
        let cluster = self.model.cluster();
        let objects = &mut out.objects;
        // Every list is written out, empty ones included: applying them makes KubeBid the owner of each, so a
        // rule added by someone else is replaced at the next repair.
        objects.push(network_policy(
            "default-deny-all",
            ns,
            name,
            json!({"podSelector": {}, "policyTypes": ["Ingress", "Egress"], "ingress": [], "egress": []}),
        ));
        // A default deny that also blocks DNS breaks every pod: allow the cluster DNS, and only it.
        objects.push(network_policy(
            "allow-cluster-dns",
            ns,
            name,
            json!({"podSelector": {}, "policyTypes": ["Egress"], "ingress": [], "egress": [{
                "to": [{"namespaceSelector": {"matchLabels": {NAMESPACE_NAME_LABEL: "kube-system"}},
                        "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}}}],
                "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]}]}),
        ));
        if scope.intra_tenant {
            let same = json!([namespaces_named(&scope.namespaces)]);
            objects.push(network_policy(
                "allow-same-tenant",
                ns,
                name,
                json!({"podSelector": {}, "policyTypes": ["Ingress", "Egress"], "ingress": [{"from": same}], "egress": [{"to": same}]}),
            ));
        }
        if scope.from_ingress_controllers && !cluster.ingress_controllers.is_empty() {
            objects.push(network_policy(
                "allow-ingress-controllers",
                ns,
                name,
                json!({"podSelector": {}, "policyTypes": ["Ingress"], "ingress": [{"from": [namespaces_named(&cluster.ingress_controllers)]}], "egress": []}),
            ));
        }
        // Whole namespaces: the cluster's shared ones and `namespace/*` grants.
        let whole: Vec<&String> = cluster
            .shared_namespaces
            .iter()
            .chain(&scope.shared_namespaces)
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        if !whole.is_empty() {
            objects.push(network_policy(
                "allow-shared-namespaces",
                ns,
                name,
                json!({"podSelector": {}, "policyTypes": ["Egress"], "ingress": [], "egress": [{"to": [namespaces_named(whole)]}]}),
            ));
        }
        // `namespace/service` grants: that Service's pods and ports, nothing else of its namespace.
        let mut rules = Vec::new();
        for (sns, svc) in &scope.shared_services {
            // The whole namespace is open already, or it is the tenant's own (which `intraTenant` decides).
            if cluster.shared_namespaces.contains(sns)
                || scope.shared_namespaces.contains(sns)
                || scope.namespaces.contains(sns)
            {
                continue;
            }
            match self.services.iter().find(|s| {
                s.metadata.namespace.as_deref() == Some(sns.as_str())
                    && s.metadata.name.as_deref() == Some(svc.as_str())
            }) {
                Some(s) => match service_peer(s) {
                    Ok((selector, ports)) => rules.push(json!({
                        "to": [{"namespaceSelector": {"matchLabels": {NAMESPACE_NAME_LABEL: sns}},
                                "podSelector": {"matchLabels": selector}}],
                        "ports": ports})),
                    Err(why) => out.warnings.push(format!(
                        "sharedServices {sns}/{svc}: {why}; no egress to it"
                    )),
                },
                None => out.warnings.push(format!(
                    "sharedServices {sns}/{svc}: the Service does not exist; no egress to it"
                )),
            }
        }
        let objects = &mut out.objects;
        if !rules.is_empty() {
            objects.push(network_policy(
                "allow-shared-services",
                ns,
                name,
                json!({"podSelector": {}, "policyTypes": ["Egress"], "ingress": [], "egress": rules}),
            ));
        }
        if let Some(cidrs) = scope.egress_cidrs.as_ref().filter(|c| !c.is_empty()) {
            let to: Vec<Value> = cidrs
                .iter()
                .map(|c| {
                    // Every protected range inside the CIDR is cut out: `0.0.0.0/0` means the internet, not
                    // the metadata service or other tenants' pods.
                    let except: Vec<String> = cluster
                        .protected
                        .excepts_for(*c)
                        .iter()
                        .map(ToString::to_string)
                        .collect();
                    if except.is_empty() {
                        json!({"ipBlock": {"cidr": c.to_string()}})
                    } else {
                        json!({"ipBlock": {"cidr": c.to_string(), "except": except}})
                    }
                })
                .collect();
            objects.push(network_policy(
                "allow-egress-cidrs",
                ns,
                name,
                json!({"podSelector": {}, "policyTypes": ["Egress"], "ingress": [], "egress": [{"to": to}]}),
            ));
        }
        let rules: Vec<Value> = TENANT_ADMIN_RULES
            .iter()
            .map(|(groups, resources, verbs)| {
                json!({"apiGroups": groups, "resources": resources, "verbs": verbs})
            })
            .chain(self.bind_rule())
            .collect();
        objects.push(json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": meta(ADMIN_ROLE, ns, name),
            "rules": rules
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
            objects.push(json!({
                "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": meta("tenant-admin-owners", ns, name),
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": ADMIN_ROLE},
                "subjects": subjects
            }));
        }
        let mut hard: BTreeMap<&str, &str> = spec
            .quota
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        // Node ports are never a tenant's, nor load balancers unless the Tenant allows them: the API server
        // enforces that too, even with the webhook down.
        hard.insert("services.nodeports", "0");
        if !spec.allow_load_balancer {
            hard.insert("services.loadbalancers", "0");
        }
        objects.push(json!({"apiVersion": "v1", "kind": "ResourceQuota", "metadata": meta("tenant-quota", ns, name), "spec": {"hard": hard}}));
        // No pod may name a PriorityClass outside the tenant's list: a quota of zero pods over them, which the
        // API server enforces even when the webhook is down.
        let allowed: Vec<String> = self
            .model
            .priority_classes(Party::Tenant(scope))
            .into_iter()
            .collect();
        let mut scope_expressions =
            vec![json!({"scopeName": "PriorityClass", "operator": "Exists"})];
        if !allowed.is_empty() {
            scope_expressions.push(
                json!({"scopeName": "PriorityClass", "operator": "NotIn", "values": allowed}),
            );
        }
        objects.push(json!({"apiVersion": "v1", "kind": "ResourceQuota", "metadata": meta("tenant-priority", ns, name),
            "spec": {"hard": {"pods": "0"}, "scopeSelector": {"matchExpressions": scope_expressions}}}));
        let l = &spec.limits;
        objects.push(json!({"apiVersion": "v1", "kind": "LimitRange", "metadata": meta("tenant-limits", ns, name), "spec": {"limits": [{
            "type": "Container",
            "defaultRequest": {"cpu": l.default_request_cpu, "memory": l.default_request_memory, "ephemeral-storage": l.default_request_ephemeral_storage},
            "default": {"cpu": l.default_cpu, "memory": l.default_memory, "ephemeral-storage": l.default_ephemeral_storage},
            "max": {"cpu": l.max_cpu, "memory": l.max_memory, "ephemeral-storage": l.max_ephemeral_storage}
        }]}}));
    }
}

/// The pods and ports of a Service, as a `NetworkPolicy` peer: its selector and the ports its pods listen on
/// (`targetPort`, by number or by name, else `port`).
fn service_peer(s: &Service) -> Result<(Value, Vec<Value>), String> {
    let spec = s.spec.as_ref().ok_or("the Service has no spec")?;
    let selector = spec
        .selector
        .as_ref()
        .filter(|m| !m.is_empty())
        .ok_or("the Service has no selector (its endpoints are hand-written)")?;
    let ports: Vec<Value> = spec
        .ports
        .iter()
        .flatten()
        .map(|p| {
            let port = match &p.target_port {
                Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(n)) => json!(n),
                Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::String(n)) => {
                    json!(n)
                }
                None => json!(p.port),
            };
            json!({"protocol": p.protocol.as_deref().unwrap_or("TCP"), "port": port})
        })
        .collect();
    if ports.is_empty() {
        return Err("the Service has no ports".into());
    }
    Ok((json!(selector), ports))
}

/// Every namespaced object of `tenant` under `cluster`, in a model of that tenant alone (offline rendering and
/// tests); objects for `sharedServices` grants need [`TenantRenderer::with_services`].
///
/// # Errors
/// As [`TenantRenderer::render`].
pub fn tenant(tenant: &Tenant, cluster: &KubeBidConfigSpec) -> Result<Vec<Value>, Vec<FieldError>> {
    let model = Tenancy::new(cluster, std::slice::from_ref(tenant));
    TenantRenderer::new(cluster, &model)
        .render(tenant)
        .map(|r| r.objects)
}

fn cluster_meta(name: &str) -> Value {
    json!({"name": name, "labels": {MANAGED_LABEL: "true"}})
}

/// Cluster-wide objects, once: the secure `RuntimeClass`, the encrypted `StorageClass` and, when the cluster
/// asks for it, the Cilium policy that refuses unencrypted pod traffic. The operator keeps them in place,
/// whatever installed it.
#[must_use]
pub fn cluster(spec: &KubeBidConfigSpec) -> Vec<Value> {
    let mut out = vec![
        json!({"apiVersion": "node.k8s.io/v1", "kind": "RuntimeClass", "metadata": cluster_meta(kubebid_model::config::DEFAULT_RUNTIME_CLASS),
            "handler": "kata-fc",
            "overhead": {"podFixed": {"memory": "160Mi", "cpu": "250m"}},
            "scheduling": {"nodeSelector": {SECURE_RUNTIME_LABEL: "true"}}}),
        confidential_runtime_class(SNP_RUNTIME_CLASS, "kata-qemu-snp", "sev-snp"),
        confidential_runtime_class(TDX_RUNTIME_CLASS, "kata-qemu-tdx", "tdx"),
        json!({"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass", "metadata": cluster_meta(kubebid_model::config::DEFAULT_STORAGE_CLASS),
            "provisioner": spec.storage_provisioner,
            "parameters": {"type": "ssd", "encryption": "true", "encryptionKeySource": "tenant-kms", "fsType": "ext4"},
            "reclaimPolicy": "Delete", "volumeBindingMode": "WaitForFirstConsumer", "allowVolumeExpansion": true}),
    ];
    if spec.cilium_encryption {
        out.push(json!({"apiVersion": "cilium.io/v2", "kind": "CiliumClusterwideNetworkPolicy", "metadata": cluster_meta("encrypt-all"),
            "spec": {"endpointSelector": {}, "egressDeny": [{"toEndpoints": [{"matchLabels": {"io.cilium.k8s.policy.unencrypted": "true"}}]}]}}));
    }
    out
}

/// The `RuntimeClass` of a confidential microVM on nodes the node agent attested for `technology`. Kata runs
/// SEV-SNP and TDX guests with QEMU (Firecracker runs neither), under its own handler. An encrypted guest's
/// memory cannot be hot-plugged, so its fixed overhead is the guest's whole boot allocation.
fn confidential_runtime_class(name: &str, handler: &str, technology: &str) -> Value {
    json!({"apiVersion": "node.k8s.io/v1", "kind": "RuntimeClass", "metadata": cluster_meta(name),
        "handler": handler,
        "overhead": {"podFixed": {"memory": "2048Mi", "cpu": "1"}},
        "scheduling": {"nodeSelector": {SECURE_RUNTIME_LABEL: "true", MEMORY_ENCRYPTION_LABEL: technology}}})
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

/// Where the API server's files for KubeBid live on a control-plane node.
pub const API_SERVER_DIR: &str = "/etc/kubernetes/kubebid";

/// The kubeconfig of the API server's audit webhook backend (`--audit-webhook-config-file`): KubeBid's
/// audit sink at `server` (its `/events` endpoint), trusted through the sink's CA, with the client
/// certificate the sink's `--client-ca` accepts. The paths are under [`API_SERVER_DIR`].
#[must_use]
pub fn audit_webhook_kubeconfig(server: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{"name": "kubebid-audit", "cluster": {
            "server": server,
            "certificate-authority": format!("{API_SERVER_DIR}/audit-ca.crt")}}],
        "users": [{"name": "kube-apiserver", "user": {
            "client-certificate": format!("{API_SERVER_DIR}/audit-client.crt"),
            "client-key": format!("{API_SERVER_DIR}/audit-client.key")}}],
        "contexts": [{"name": "kubebid-audit", "context": {"cluster": "kubebid-audit", "user": "kube-apiserver"}}],
        "current-context": "kubebid-audit"
    })
}

/// The API server flags that send every audit event to KubeBid's sink, in batches, under the rendered
/// policy; one per line, to add to the kube-apiserver static pod's command.
#[must_use]
pub fn audit_flags() -> String {
    [
        format!("--audit-policy-file={API_SERVER_DIR}/audit-policy.yaml"),
        format!("--audit-webhook-config-file={API_SERVER_DIR}/audit-webhook.kubeconfig"),
        "--audit-webhook-mode=batch".into(),
        "--audit-webhook-version=audit.k8s.io/v1".into(),
        "--audit-webhook-batch-max-size=400".into(),
        "--audit-webhook-batch-max-wait=5s".into(),
        "--audit-webhook-batch-buffer-size=10000".into(),
        "--audit-webhook-initial-backoff=1s".into(),
        format!("--encryption-provider-config={API_SERVER_DIR}/encryption-config.yaml"),
    ]
    .join("\n")
        + "\n"
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

/// Where the etcd proxy listens on a control-plane node: the API server's `--etcd-servers`.
pub const ETCD_PROXY_LISTEN: &str = "127.0.0.1:2378";

/// The API server flag that sends its etcd traffic through the proxy on the same node. Its other etcd
/// flags stay: `--etcd-cafile` (etcd's CA, which signed the proxy's serving certificate too) and the
/// client certificate it presents with `--etcd-certfile` and `--etcd-keyfile`, which the proxy checks.
#[must_use]
pub fn etcd_proxy_flags() -> String {
    format!("--etcd-servers=https://{ETCD_PROXY_LISTEN}\n")
}

/// The etcd proxy as a static pod for each control-plane node, beside the KMS plugin whose tenant key
/// socket it uses. It serves the API server on loopback with mutual TLS (a serving certificate for
/// 127.0.0.1 issued by etcd's CA, the API server's etcd client certificate required) and reaches the
/// local etcd with the API server's own etcd client certificate (kubeadm's paths). Tenants come from
/// `tenants.yaml` under [`API_SERVER_DIR`], re-read when it changes; `tenants_sha256` is recorded as an
/// annotation so the manifest changes with them. Stateless, no capabilities, read-only root.
#[must_use]
pub fn etcd_proxy_static_pod(image: &str, tenants_sha256: &str) -> Value {
    let host = |name: &str, path: &str, kind: &str| json!({"name": name, "hostPath": {"path": path, "type": kind}});
    let port = ETCD_PROXY_LISTEN.rsplit(':').next().unwrap_or("2378");
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "kubebid-etcd-proxy", "namespace": "kube-system",
            "labels": {"app.kubernetes.io/name": "kubebid", "app.kubernetes.io/component": "etcd-proxy",
                       "kubebid.io/managed": "true"},
            "annotations": {"kubebid.io/tenants-sha256": tenants_sha256}},
        "spec": {
            "hostNetwork": true,
            "priorityClassName": "system-node-critical",
            "securityContext": {"seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [{
                "name": "etcd-proxy",
                "image": image,
                "args": [
                    "serve", "etcd-proxy",
                    "--listen", ETCD_PROXY_LISTEN,
                    "--tls-cert", format!("{API_SERVER_DIR}/etcd-proxy/tls.crt"),
                    "--tls-key", format!("{API_SERVER_DIR}/etcd-proxy/tls.key"),
                    "--client-ca", "/etc/kubernetes/pki/etcd/ca.crt",
                    "--etcd", "https://127.0.0.1:2379",
                    "--etcd-ca", "/etc/kubernetes/pki/etcd/ca.crt",
                    "--etcd-cert", "/etc/kubernetes/pki/apiserver-etcd-client.crt",
                    "--etcd-key", "/etc/kubernetes/pki/apiserver-etcd-client.key",
                    "--etcd-prefix", "/registry",
                    "--tenant-key-socket", format!("{KMS_SOCKET_DIR}/tenant-keys.sock"),
                    "-c", format!("{API_SERVER_DIR}/tenants.yaml"),
                    "--metrics-listen", "127.0.0.1:9155",
                ],
                "ports": [{"name": "etcd", "containerPort": port.parse::<u16>().unwrap_or(2378), "hostIP": "127.0.0.1"}],
                "securityContext": {
                    "allowPrivilegeEscalation": false,
                    "readOnlyRootFilesystem": true,
                    "capabilities": {"drop": ["ALL"]},
                },
                "livenessProbe": {"httpGet": {"host": "127.0.0.1", "port": 9155, "path": "/healthz"},
                                  "periodSeconds": 10, "failureThreshold": 3},
                // No memory limit: a list of every Secret is held whole while it is opened, and a proxy
                // killed for it would take the API server's only path to etcd with it. Like etcd's and
                // the API server's own static pods, it is sized by the node.
                "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}},
                "volumeMounts": [
                    {"name": "kms-sockets", "mountPath": KMS_SOCKET_DIR},
                    {"name": "kubebid", "mountPath": API_SERVER_DIR, "readOnly": true},
                    {"name": "etcd-ca", "mountPath": "/etc/kubernetes/pki/etcd/ca.crt", "readOnly": true},
                    {"name": "etcd-client-cert", "mountPath": "/etc/kubernetes/pki/apiserver-etcd-client.crt", "readOnly": true},
                    {"name": "etcd-client-key", "mountPath": "/etc/kubernetes/pki/apiserver-etcd-client.key", "readOnly": true},
                ],
            }],
            "volumes": [
                host("kms-sockets", KMS_SOCKET_DIR, "DirectoryOrCreate"),
                host("kubebid", API_SERVER_DIR, "Directory"),
                // Only the three files it needs: not the cluster's CA keys beside them.
                host("etcd-ca", "/etc/kubernetes/pki/etcd/ca.crt", "File"),
                host("etcd-client-cert", "/etc/kubernetes/pki/apiserver-etcd-client.crt", "File"),
                host("etcd-client-key", "/etc/kubernetes/pki/apiserver-etcd-client.key", "File"),
            ],
        },
    })
}

/// Makes the Tenant the owner of `objects`, so that deleting the Tenant lets the garbage collector remove
/// them. Namespaces are owned only when the Tenant sets `deleteNamespaces`: otherwise they, and the tenant's
/// data in them, outlive the Tenant. The [`FLOOR`] objects are never owned: a namespace that outlives its
/// Tenant stays isolated and bounded.
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
        let kind = o["kind"].as_str().unwrap_or_default();
        let name = o["metadata"]["name"].as_str().unwrap_or_default();
        if (kind == "Namespace" && !tenant.spec.delete_namespaces) || is_floor(kind, name) {
            continue;
        }
        o["metadata"]["ownerReferences"] = reference.clone();
    }
}
