//! `KubeBid`'s configuration: the objects of group `kubebid.io`, version `v1alpha1`.
//!
//! The same types are read from files (`--config`) and, in a cluster, from the API server, and they derive
//! the CRD schemas. Each `*Spec` refuses unknown fields, and [`validate`](KubeBidConfigSpec::validate)
//! checks what a schema cannot (CIDRs, DNS names), naming the field of every problem.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, Time};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// API group of every `KubeBid` object.
pub const GROUP: &str = "kubebid.io";
/// API version of the objects in this module.
pub const VERSION: &str = "v1alpha1";
/// `apiVersion` of the objects in this module.
pub const API_VERSION: &str = "kubebid.io/v1alpha1";

/// Label that names the tenant a namespace (or a managed object) belongs to.
pub const TENANT_LABEL: &str = "kubebid.io/tenant";
/// Label on objects that `KubeBid` creates and guards; tenants may not create, change or delete them.
pub const MANAGED_LABEL: &str = "kubebid.io/managed";
/// Node label of the attested secure pool.
pub const SECURE_RUNTIME_LABEL: &str = "kubebid.io/secure-runtime";
/// The tenant `RuntimeClass`.
pub const DEFAULT_RUNTIME_CLASS: &str = "kubebid-secure";
/// The encrypted `StorageClass`.
pub const DEFAULT_STORAGE_CLASS: &str = "encrypted-ssd";
/// The label the API server sets on every Namespace to its name; nobody can change it, so it is the only label
/// by which KubeBid selects namespaces.
pub const NAMESPACE_NAME_LABEL: &str = "kubernetes.io/metadata.name";
/// The provisioner of the encrypted `StorageClass` when the configuration names none.
pub const DEFAULT_STORAGE_PROVISIONER: &str = "kubebid.io/csi-driver";

/// A named set of rules.
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum Profile {
    /// Pod Security Standards, baseline level.
    Baseline,
    /// Pod Security Standards, restricted level.
    Restricted,
    /// Restricted plus `KubeBid`'s tenant-isolation rules.
    #[default]
    ZeroTrust,
}

impl Profile {
    /// Every profile, weakest first.
    pub const ALL: [Profile; 3] = [Profile::Baseline, Profile::Restricted, Profile::ZeroTrust];

    /// The name used in configuration and on the command line.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Profile::Baseline => "baseline",
            Profile::Restricted => "restricted",
            Profile::ZeroTrust => "zero-trust",
        }
    }

    /// Parses a profile name.
    #[must_use]
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.as_str() == s)
    }
}

impl std::fmt::Display for Profile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What happens when a rule finds something.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// The request is denied (`kubebid check` exits 1).
    Enforce,
    /// Admitted with a warning to the client.
    Warn,
    /// Admitted and recorded in the audit log.
    Audit,
    /// Not evaluated.
    Off,
}

impl<'de> Deserialize<'de> for Action {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Action;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("one of enforce, warn, audit, off")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Action, E> {
                match v {
                    "enforce" => Ok(Action::Enforce),
                    "warn" => Ok(Action::Warn),
                    "audit" => Ok(Action::Audit),
                    "off" => Ok(Action::Off),
                    other => Err(E::invalid_value(serde::de::Unexpected::Str(other), &self)),
                }
            }
            // YAML 1.1 (which Kubernetes tooling speaks) reads a bare `off` as the boolean false.
            fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<Action, E> {
                if v {
                    Err(E::invalid_value(serde::de::Unexpected::Bool(v), &self))
                } else {
                    Ok(Action::Off)
                }
            }
        }
        d.deserialize_any(V)
    }
}

impl Action {
    /// The name used in configuration and output.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Enforce => "enforce",
            Action::Warn => "warn",
            Action::Audit => "audit",
            Action::Off => "off",
        }
    }
}

/// Cluster-wide settings. At most one exists.
#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "kubebid.io",
    version = "v1alpha1",
    kind = "KubeBidConfig",
    crates(kube_core = "::kube::core")
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct KubeBidConfigSpec {
    /// The cluster DNS domain.
    #[serde(default = "default_cluster_domain")]
    pub cluster_domain: String,
    /// Pod network CIDRs. No tenant may address them (`NetworkPolicy` ipBlocks, `ExternalName`, endpoints).
    #[serde(default = "default_pod_cidrs")]
    pub pod_cidrs: Vec<String>,
    /// Service network CIDRs, protected like the pod network.
    #[serde(default = "default_service_cidrs")]
    pub service_cidrs: Vec<String>,
    /// The nodes' own addresses (kubelets, node ports), protected like the pod network.
    #[serde(default)]
    pub node_cidrs: Vec<String>,
    /// Namespaces every tenant may reach and resolve (for example a shared monitoring stack).
    #[serde(default)]
    pub shared_namespaces: Vec<String>,
    /// Namespaces of the ingress controllers, by name: tenants may admit traffic from them.
    #[serde(default = "default_ingress_namespaces")]
    pub ingress_controller_namespaces: Vec<String>,
    /// `PriorityClasses` every tenant's pods may name (the cluster's `globalDefault` class, if it has one).
    #[serde(default)]
    pub shared_priority_classes: Vec<String>,
    /// Provisioner of the `encrypted-ssd` `StorageClass` the operator keeps in place.
    #[serde(default = "default_storage_provisioner")]
    pub storage_provisioner: String,
    /// Whether the operator keeps Cilium's `encrypt-all` policy in place (needs Cilium's CRDs).
    #[serde(default)]
    pub cilium_encryption: bool,
    /// Profile for tenants that do not name one.
    #[serde(default)]
    pub default_profile: Profile,
    /// Pod Security Standards version: `latest` or `v1.N`.
    #[serde(default = "default_pss_version")]
    pub pod_security_version: String,
    /// Platform namespaces that are not tenant namespaces and are not checked.
    #[serde(default = "default_excluded_namespaces")]
    pub excluded_namespaces: Vec<String>,
    /// `ClusterRoles` a tenant `RoleBinding` may refer to. Tenant owners hold `bind` on them, so each must be
    /// no broader than `tenant-admin`: `cluster-admin`, `admin`, `edit` and `system:*` are refused.
    #[serde(default = "default_cluster_roles")]
    pub allowed_cluster_roles: Vec<String>,
    /// Per-rule action overrides, by rule ID.
    #[serde(default)]
    pub rules: BTreeMap<String, Action>,
    /// KubeBid's own service account (`namespace/name`), whose requests the webhook does not judge.
    #[serde(default = "default_service_account")]
    pub service_account: String,
    /// Further users whose requests the webhook does not judge (e.g. `system:kube-controller-manager`).
    #[serde(default)]
    pub exempt_users: Vec<String>,
    /// CSI drivers tenants' pods may use as inline (`csi:`) volumes, which skip the `StorageClass`, its
    /// encryption and the claim quota: none by default (e.g. `secrets-store.csi.k8s.io`).
    #[serde(default)]
    pub inline_csi_drivers: Vec<String>,
    /// Image registries every tenant's pods may pull from besides their own `registries`: those of what the
    /// platform injects into tenants' pods (a service mesh's proxy, cert-manager's HTTP-01 solver).
    #[serde(default)]
    pub shared_registries: Vec<String>,
    /// Domains the platform keeps for itself: no tenant may publish a host under them, whatever its own
    /// `ingressDomains` (e.g. the platform's registry or console).
    #[serde(default)]
    pub reserved_domains: Vec<String>,
}

fn default_service_account() -> String {
    "kubebid-system/kubebid".into()
}

fn default_cluster_domain() -> String {
    "cluster.local".into()
}
fn default_pod_cidrs() -> Vec<String> {
    vec!["10.244.0.0/16".into()]
}
fn default_service_cidrs() -> Vec<String> {
    vec!["10.96.0.0/12".into()]
}
fn default_ingress_namespaces() -> Vec<String> {
    vec!["ingress-nginx".into()]
}
fn default_storage_provisioner() -> String {
    DEFAULT_STORAGE_PROVISIONER.into()
}
fn default_pss_version() -> String {
    "latest".into()
}
fn default_excluded_namespaces() -> Vec<String> {
    [
        "kube-system",
        "kube-public",
        "kube-node-lease",
        "kubebid-system",
    ]
    .map(String::from)
    .to_vec()
}
fn default_cluster_roles() -> Vec<String> {
    vec!["view".into()]
}

impl Default for KubeBidConfigSpec {
    fn default() -> Self {
        Self {
            cluster_domain: default_cluster_domain(),
            pod_cidrs: default_pod_cidrs(),
            service_cidrs: default_service_cidrs(),
            node_cidrs: Vec::new(),
            shared_namespaces: Vec::new(),
            ingress_controller_namespaces: default_ingress_namespaces(),
            shared_priority_classes: Vec::new(),
            storage_provisioner: default_storage_provisioner(),
            cilium_encryption: false,
            default_profile: Profile::ZeroTrust,
            pod_security_version: default_pss_version(),
            excluded_namespaces: default_excluded_namespaces(),
            allowed_cluster_roles: default_cluster_roles(),
            rules: BTreeMap::new(),
            service_account: default_service_account(),
            exempt_users: Vec::new(),
            inline_csi_drivers: Vec::new(),
            shared_registries: Vec::new(),
            reserved_domains: Vec::new(),
        }
    }
}

/// A problem with one field of a configuration object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldError {
    /// Path of the field, e.g. `spec.podCidrs[1]`.
    pub path: String,
    /// What is wrong.
    pub message: String,
}

impl FieldError {
    fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            message: message.into(),
        }
    }
}

impl KubeBidConfigSpec {
    /// Checks what the schema cannot.
    #[must_use]
    pub fn validate(&self) -> Vec<FieldError> {
        let mut errs = Vec::new();
        if !is_dns_subdomain(&self.cluster_domain) {
            errs.push(FieldError::new(
                "spec.clusterDomain",
                format!("{:?} is not a DNS name", self.cluster_domain),
            ));
        }
        check_cidrs(&self.pod_cidrs, "spec.podCidrs", &mut errs);
        check_cidrs(&self.service_cidrs, "spec.serviceCidrs", &mut errs);
        check_cidrs(&self.node_cidrs, "spec.nodeCidrs", &mut errs);
        check_namespaces(&self.shared_namespaces, "spec.sharedNamespaces", &mut errs);
        check_namespaces(
            &self.excluded_namespaces,
            "spec.excludedNamespaces",
            &mut errs,
        );
        check_namespaces(
            &self.ingress_controller_namespaces,
            "spec.ingressControllerNamespaces",
            &mut errs,
        );
        check_priority_classes(
            &self.shared_priority_classes,
            "spec.sharedPriorityClasses",
            &mut errs,
        );
        if !is_qualified_name(&self.storage_provisioner) {
            errs.push(FieldError::new(
                "spec.storageProvisioner",
                format!(
                    "{:?} is not a provisioner name (example.com/driver or driver)",
                    self.storage_provisioner
                ),
            ));
        }
        if PssVersion::parse(&self.pod_security_version).is_none() {
            errs.push(FieldError::new(
                "spec.podSecurityVersion",
                format!(
                    "{:?}: must be \"latest\" or \"v1.N\"",
                    self.pod_security_version
                ),
            ));
        }
        match self.service_account.split_once('/') {
            Some((ns, name)) if is_dns_label(ns) && is_dns_subdomain(name) => {}
            _ => errs.push(FieldError::new(
                "spec.serviceAccount",
                format!("{:?}: expected namespace/name", self.service_account),
            )),
        }
        for (i, role) in self.allowed_cluster_roles.iter().enumerate() {
            let path = format!("spec.allowedClusterRoles[{i}]");
            if role.is_empty() {
                errs.push(FieldError::new(path, "empty role name"));
            } else if matches!(role.as_str(), "cluster-admin" | "admin" | "edit" | "*")
                || role.starts_with("system:")
            {
                // Tenant owners hold `bind` on every allowed role, so each is one they can give themselves.
                // Bound in a namespace cluster-admin still grants `*` there (the Namespace object, quota
                // status, pod bindings); admin and edit add the API server's pod and service proxies,
                // impersonation of service accounts and PodDisruptionBudgets; system:* are the control
                // plane's own identities.
                errs.push(FieldError::new(
                    path,
                    format!(
                        "{role:?} grants more than any tenant may hold, even in its own namespace"
                    ),
                ));
            }
        }
        errs
    }
}

/// A Pod Security Standards version: `v1.N`, or latest.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PssVersion {
    /// Minor version of Kubernetes 1.x; `u16::MAX` means latest.
    pub minor: u16,
}

impl PssVersion {
    /// The newest version whatever it is.
    pub const LATEST: PssVersion = PssVersion { minor: u16::MAX };

    /// `v1.N`.
    #[must_use]
    pub const fn v1(minor: u16) -> Self {
        Self { minor }
    }

    /// Parses `latest` or `v1.N`.
    #[must_use]
    pub fn parse(s: &str) -> Option<Self> {
        if s == "latest" {
            return Some(Self::LATEST);
        }
        let minor = s.strip_prefix("v1.")?;
        if minor.is_empty() || minor.len() > 4 || !minor.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        minor.parse().ok().map(Self::v1)
    }
}

impl std::fmt::Display for PssVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if *self == Self::LATEST {
            f.write_str("latest")
        } else {
            write!(f, "v1.{}", self.minor)
        }
    }
}

/// Who administers a tenant.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TenantOwner {
    /// `User`, `Group` or `ServiceAccount`.
    pub kind: OwnerKind,
    /// The user, group or service account name.
    pub name: String,
    /// Namespace of a `ServiceAccount` owner.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

/// Kind of a tenant owner.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum OwnerKind {
    /// A user.
    User,
    /// A group.
    Group,
    /// A service account.
    ServiceAccount,
}

/// `RuntimeClasses` a tenant's pods may use.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RuntimeClasses {
    /// Allowed `RuntimeClass` names.
    pub allowed: Vec<String>,
    /// The class mutation sets when a pod names none; must be one of `allowed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<String>,
}

impl Default for RuntimeClasses {
    fn default() -> Self {
        Self {
            allowed: vec![DEFAULT_RUNTIME_CLASS.into()],
            default: Some(DEFAULT_RUNTIME_CLASS.into()),
        }
    }
}

/// A tenant: a set of namespaces isolated from every other tenant's.
#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "kubebid.io",
    version = "v1alpha1",
    kind = "Tenant",
    status = "TenantStatus",
    crates(kube_core = "::kube::core")
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TenantSpec {
    /// The tenant's namespaces. A namespace belongs to at most one tenant.
    pub namespaces: Vec<String>,
    /// Users, groups and service accounts that administer the tenant.
    #[serde(default)]
    pub owners: Vec<TenantOwner>,
    /// Rule profile; the cluster default when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<Profile>,
    /// `RuntimeClasses` the tenant's pods may use.
    #[serde(default)]
    pub runtime_classes: RuntimeClasses,
    /// Image registries (host, or host/path prefix) pods may pull from; any when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registries: Option<Vec<String>>,
    /// DNS domains under which the tenant's Ingress hosts must fall; any non-wildcard host when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ingress_domains: Option<Vec<String>>,
    /// `StorageClasses` the tenant's claims may use.
    #[serde(default = "default_storage_classes")]
    pub storage_classes: Vec<String>,
    /// External CIDRs `NetworkPolicy` egress ipBlocks may name; any outside the cluster when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub egress_cidrs: Option<Vec<String>>,
    /// Whether the tenant may create `LoadBalancer` Services.
    #[serde(default)]
    pub allow_load_balancer: bool,
    /// `PriorityClasses` the tenant's pods may name, on top of the cluster's `sharedPriorityClasses`. None by
    /// default: a class that ranks a tenant's pods above others' lets them preempt other tenants.
    #[serde(default)]
    pub priority_classes: Vec<String>,
    /// Resources beyond cpu, memory and ephemeral-storage the tenant's containers may ask for
    /// (`hugepages-2Mi`, `nvidia.com/gpu`, a device plugin's): none by default. Bound each in `quota`.
    #[serde(default)]
    pub extended_resources: Vec<String>,
    /// Per-rule action overrides for this tenant, over the cluster's (e.g. `tenant/pod-connect: enforce`
    /// forbids `kubectl exec`).
    #[serde(default)]
    pub rules: BTreeMap<String, Action>,
    /// What the mutating webhook fills in for this tenant's pods.
    #[serde(default)]
    pub mutate: Mutations,
    /// Compute isolation beyond the runtime class.
    #[serde(default)]
    pub isolation: Isolation,
    /// Network paths the tenant's namespaces are opened to, on top of default-deny.
    #[serde(default)]
    pub network: TenantNetwork,
    /// `ResourceQuota` hard limits per namespace, by resource name. `services.nodeports` is always 0, and
    /// `services.loadbalancers` is 0 unless `allowLoadBalancer` is set.
    #[serde(default = "default_quota")]
    pub quota: BTreeMap<String, String>,
    /// Container defaults and maxima (`LimitRange`) per namespace.
    #[serde(default)]
    pub limits: ContainerLimits,
    /// Name of the tenant's key in the KMS, for its encrypted volumes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kms_key: Option<String>,
    /// Audit level for the tenant's requests.
    #[serde(default)]
    pub audit_level: AuditLevel,
    /// Days the audit sink keeps this tenant's trail; unset: the sink's `--retention-days`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub audit_retention_days: Option<u32>,
    /// Whether deleting the Tenant deletes its namespaces (and everything in them).
    #[serde(default)]
    pub delete_namespaces: bool,
}

/// What the operator last saw of a tenant.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TenantStatus {
    /// `Ready` (everything applied) and `Degraded` (with the reason), as Kubernetes conditions.
    #[serde(default)]
    pub conditions: Vec<k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition>,
    /// Per namespace: whether its objects are in place.
    #[serde(default)]
    pub namespaces: Vec<NamespaceState>,
    /// The Tenant generation these conditions describe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

/// The state of one tenant namespace.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NamespaceState {
    pub name: String,
    pub ready: bool,
}

/// Compute isolation settings.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Isolation {
    /// Pods get whole dedicated cores: admission requires the Guaranteed class with whole CPU requests, which the
    /// kubelet's static CPU manager pins to cores no other pod shares.
    #[serde(default)]
    pub dedicated_cores: bool,
    /// Pods run in confidential microVMs on nodes attested for memory encryption: `required` (AMD SEV-SNP
    /// or Intel TDX), `sev-snp` or `tdx`. Admission then allows only the matching `RuntimeClasses`
    /// (`kubebid-secure-snp`, `kubebid-secure-tdx`), whatever `runtimeClasses` says.
    #[serde(default)]
    pub memory_encryption: MemoryEncryption,
    /// An exclusive share of the L3 cache on every node the tenant's pods run on (resctrl cache
    /// allocation), against cache side channels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_partition: Option<CachePartition>,
}

/// Memory encryption a tenant requires.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum MemoryEncryption {
    /// None beyond the microVM.
    #[default]
    None,
    /// SEV-SNP or TDX, whichever the node has.
    Required,
    /// AMD SEV-SNP.
    SevSnp,
    /// Intel TDX.
    Tdx,
}

/// The `RuntimeClass` of an SEV-SNP confidential microVM.
pub const SNP_RUNTIME_CLASS: &str = "kubebid-secure-snp";
/// The `RuntimeClass` of a TDX confidential microVM.
pub const TDX_RUNTIME_CLASS: &str = "kubebid-secure-tdx";
/// The node label the node agent sets to the memory encryption it attested (`sev-snp`, `tdx`).
pub const MEMORY_ENCRYPTION_LABEL: &str = "kubebid.io/memory-encryption";
/// The node label the node agent sets when it attested cache partitioning.
pub const CACHE_PARTITIONING_LABEL: &str = "kubebid.io/cache-partitioning";

impl MemoryEncryption {
    /// The `RuntimeClasses` that give it; empty for none.
    #[must_use]
    pub fn runtime_classes(self) -> &'static [&'static str] {
        match self {
            Self::None => &[],
            Self::Required => &[SNP_RUNTIME_CLASS, TDX_RUNTIME_CLASS],
            Self::SevSnp => &[SNP_RUNTIME_CLASS],
            Self::Tdx => &[TDX_RUNTIME_CLASS],
        }
    }
}

/// A tenant's cache partition.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CachePartition {
    /// The tenant's share of each node's L3 cache ways, in percent (1 to 90; at least one way). The shares
    /// of all tenants together may not pass 90: the rest stays with the node and other pods.
    pub share: u8,
}

/// Most of the L3 cache all tenants' partitions may take together, in percent.
pub const MAX_CACHE_SHARE: u32 = 90;

/// Network settings of a tenant.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TenantNetwork {
    /// Whether pods may talk to the tenant's other pods (in any of its namespaces).
    #[serde(default = "yes")]
    pub intra_tenant: bool,
    /// Whether the ingress controllers (the cluster's `ingressControllerNamespaces`) may reach the tenant's
    /// pods.
    #[serde(default = "yes")]
    pub from_ingress_controllers: bool,
    /// Services of shared namespaces the tenant may reach, as `namespace/service` (`namespace/*` for all).
    #[serde(default)]
    pub shared_services: Vec<String>,
    /// Whether the tenant's pods may resolve external (non-cluster) names.
    #[serde(default = "yes")]
    pub external_dns: bool,
}

impl Default for TenantNetwork {
    fn default() -> Self {
        Self {
            intra_tenant: true,
            from_ingress_controllers: true,
            shared_services: Vec::new(),
            external_dns: true,
        }
    }
}

/// `LimitRange` settings for containers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ContainerLimits {
    /// Default CPU request.
    #[serde(default = "default_request_cpu")]
    pub default_request_cpu: String,
    /// Default memory request.
    #[serde(default = "default_request_memory")]
    pub default_request_memory: String,
    /// Default CPU limit.
    #[serde(default = "default_limit_cpu")]
    pub default_cpu: String,
    /// Default memory limit.
    #[serde(default = "default_limit_memory")]
    pub default_memory: String,
    /// Largest CPU limit of one container.
    #[serde(default = "default_max_cpu")]
    pub max_cpu: String,
    /// Largest memory limit of one container.
    #[serde(default = "default_max_memory")]
    pub max_memory: String,
    /// Default local ephemeral storage request (writable layer, logs, `emptyDir`).
    #[serde(default = "default_request_ephemeral_storage")]
    pub default_request_ephemeral_storage: String,
    /// Default local ephemeral storage limit: a container writing more is evicted, before it fills the
    /// node's disk under other tenants' pods.
    #[serde(default = "default_limit_ephemeral_storage")]
    pub default_ephemeral_storage: String,
    /// Largest local ephemeral storage limit of one container.
    #[serde(default = "default_max_ephemeral_storage")]
    pub max_ephemeral_storage: String,
}

fn default_request_cpu() -> String {
    "100m".into()
}
fn default_request_memory() -> String {
    "128Mi".into()
}
fn default_limit_cpu() -> String {
    "500m".into()
}
fn default_limit_memory() -> String {
    "512Mi".into()
}
fn default_max_cpu() -> String {
    "4".into()
}
fn default_max_memory() -> String {
    "8Gi".into()
}
fn default_request_ephemeral_storage() -> String {
    "100Mi".into()
}
fn default_limit_ephemeral_storage() -> String {
    "1Gi".into()
}
fn default_max_ephemeral_storage() -> String {
    "10Gi".into()
}

impl Default for ContainerLimits {
    fn default() -> Self {
        Self {
            default_request_cpu: default_request_cpu(),
            default_request_memory: default_request_memory(),
            default_cpu: default_limit_cpu(),
            default_memory: default_limit_memory(),
            max_cpu: default_max_cpu(),
            max_memory: default_max_memory(),
            default_request_ephemeral_storage: default_request_ephemeral_storage(),
            default_ephemeral_storage: default_limit_ephemeral_storage(),
            max_ephemeral_storage: default_max_ephemeral_storage(),
        }
    }
}

fn default_quota() -> BTreeMap<String, String> {
    [
        ("requests.cpu", "8"),
        ("requests.memory", "16Gi"),
        ("limits.cpu", "16"),
        ("limits.memory", "32Gi"),
        ("pods", "100"),
        ("persistentvolumeclaims", "20"),
        ("requests.storage", "500Gi"),
        // Local disk is shared with other tenants' pods on the node; the LimitRange gives every container a
        // request and a limit.
        ("requests.ephemeral-storage", "20Gi"),
        ("limits.ephemeral-storage", "50Gi"),
        // Objects cost the API server and etcd that every tenant shares: every kind tenant-admin may write
        // is counted (each object is at most etcd's request limit, 1.5 MiB).
        ("configmaps", "100"),
        ("secrets", "100"),
        ("services", "50"),
        ("replicationcontrollers", "20"),
        ("count/podtemplates", "20"),
        ("count/serviceaccounts", "50"),
        ("count/events", "2000"),
        ("count/events.events.k8s.io", "2000"),
        ("count/leases.coordination.k8s.io", "50"),
        ("count/deployments.apps", "100"),
        ("count/replicasets.apps", "500"),
        ("count/statefulsets.apps", "50"),
        // Written by the StatefulSet and DaemonSet controllers, one per template change kept in history.
        ("count/controllerrevisions.apps", "200"),
        ("count/daemonsets.apps", "10"),
        ("count/jobs.batch", "200"),
        ("count/cronjobs.batch", "50"),
        ("count/horizontalpodautoscalers.autoscaling", "50"),
        ("count/networkpolicies.networking.k8s.io", "50"),
        ("count/ingresses.networking.k8s.io", "50"),
        ("count/roles.rbac.authorization.k8s.io", "50"),
        ("count/rolebindings.rbac.authorization.k8s.io", "50"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

/// Audit level of a tenant's requests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum AuditLevel {
    /// Request metadata only.
    #[default]
    Metadata,
    /// Metadata and request bodies.
    Request,
    /// Metadata, request and response bodies.
    RequestResponse,
}

/// Defaults the mutating webhook sets on a tenant's pods where the fields are unset (and the image pull
/// policy, whatever it was).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[allow(clippy::struct_excessive_bools)] // independent switches, each a field in the CRD
pub struct Mutations {
    /// Set `runtimeClassName` to the tenant's default class.
    #[serde(default = "yes")]
    pub runtime_class_name: bool,
    /// Set the pod's `seccompProfile` to `RuntimeDefault`.
    #[serde(default = "yes")]
    pub seccomp_profile: bool,
    /// Set each container's `allowPrivilegeEscalation: false`.
    #[serde(default = "yes")]
    pub allow_privilege_escalation: bool,
    /// Set each container's `capabilities.drop: [ALL]`.
    #[serde(default = "yes")]
    pub drop_capabilities: bool,
    /// Set every container's `imagePullPolicy` to `Always`, whatever it was (the API server has already
    /// defaulted it): a node's image cache must never hand one tenant another's private image. Off, the
    /// tenant's pods must say `Always` themselves (rule `tenant/image-pull-policy`).
    #[serde(default = "yes")]
    pub image_pull_policy: bool,
}

fn yes() -> bool {
    true
}

impl Default for Mutations {
    fn default() -> Self {
        Self {
            runtime_class_name: true,
            seccomp_profile: true,
            allow_privilege_escalation: true,
            drop_capabilities: true,
            image_pull_policy: true,
        }
    }
}

fn default_storage_classes() -> Vec<String> {
    vec![DEFAULT_STORAGE_CLASS.into()]
}

impl TenantSpec {
    /// The `RuntimeClasses` the tenant's pods may use, and the one mutation sets: those of its memory
    /// encryption when it requires one, else `runtimeClasses`.
    #[must_use]
    pub fn effective_runtime_classes(&self) -> RuntimeClasses {
        match self.isolation.memory_encryption.runtime_classes() {
            [] => self.runtime_classes.clone(),
            classes => RuntimeClasses {
                allowed: classes.iter().map(|c| (*c).to_owned()).collect(),
                default: classes.first().map(|c| (*c).to_owned()),
            },
        }
    }

    /// The settings used when no configuration is given: every namespace is a tenant namespace.
    #[must_use]
    pub fn builtin_default() -> Self {
        Self {
            namespaces: Vec::new(),
            owners: Vec::new(),
            profile: None,
            runtime_classes: RuntimeClasses::default(),
            registries: None,
            ingress_domains: None,
            storage_classes: default_storage_classes(),
            egress_cidrs: None,
            allow_load_balancer: false,
            extended_resources: Vec::new(),
            priority_classes: Vec::new(),
            rules: BTreeMap::new(),
            mutate: Mutations::default(),
            isolation: Isolation::default(),
            network: TenantNetwork::default(),
            quota: default_quota(),
            limits: ContainerLimits::default(),
            kms_key: None,
            audit_level: AuditLevel::default(),
            audit_retention_days: None,
            delete_namespaces: false,
        }
    }

    /// Checks what the schema cannot.
    #[must_use]
    pub fn validate(&self) -> Vec<FieldError> {
        let mut errs = Vec::new();
        if self.namespaces.is_empty() {
            errs.push(FieldError::new(
                "spec.namespaces",
                "a tenant needs at least one namespace",
            ));
        }
        check_namespaces(&self.namespaces, "spec.namespaces", &mut errs);
        for (i, o) in self.owners.iter().enumerate() {
            let p = format!("spec.owners[{i}]");
            if o.name.is_empty() {
                errs.push(FieldError::new(format!("{p}.name"), "empty name"));
            }
            match (o.kind, &o.namespace) {
                (OwnerKind::ServiceAccount, None) => errs.push(FieldError::new(
                    format!("{p}.namespace"),
                    "a ServiceAccount owner needs a namespace",
                )),
                (OwnerKind::ServiceAccount, Some(ns)) if !is_dns_label(ns) => {
                    errs.push(FieldError::new(
                        format!("{p}.namespace"),
                        format!("{ns:?} is not a namespace name"),
                    ));
                }
                (OwnerKind::User | OwnerKind::Group, Some(_)) => errs.push(FieldError::new(
                    format!("{p}.namespace"),
                    "only ServiceAccount owners have a namespace",
                )),
                _ => {}
            }
            if o.name.starts_with("system:") {
                errs.push(FieldError::new(
                    format!("{p}.name"),
                    "system: users and groups are Kubernetes' own and cannot own a tenant",
                ));
            }
        }
        if let Some(c) = self.isolation.cache_partition
            && !(1..=MAX_CACHE_SHARE).contains(&u32::from(c.share))
        {
            errs.push(FieldError::new(
                "spec.isolation.cachePartition.share",
                format!(
                    "{} is not a share from 1 to {MAX_CACHE_SHARE} percent",
                    c.share
                ),
            ));
        }
        if self.runtime_classes.allowed.is_empty() {
            errs.push(FieldError::new(
                "spec.runtimeClasses.allowed",
                "at least one RuntimeClass is needed",
            ));
        }
        if let Some(d) = &self.runtime_classes.default
            && !self.runtime_classes.allowed.contains(d)
        {
            errs.push(FieldError::new(
                "spec.runtimeClasses.default",
                format!("{d:?} is not in spec.runtimeClasses.allowed"),
            ));
        }
        if let Some(regs) = &self.registries {
            for (i, r) in regs.iter().enumerate() {
                if !is_registry_prefix(r) {
                    errs.push(FieldError::new(
                        format!("spec.registries[{i}]"),
                        format!("{r:?} is not a registry host or host/path (no scheme, no tag)"),
                    ));
                }
            }
        }
        if let Some(domains) = &self.ingress_domains {
            for (i, d) in domains.iter().enumerate() {
                if !is_dns_subdomain(d) {
                    errs.push(FieldError::new(
                        format!("spec.ingressDomains[{i}]"),
                        format!("{d:?} is not a DNS name"),
                    ));
                }
            }
        }
        if let Some(cidrs) = &self.egress_cidrs {
            check_cidrs(cidrs, "spec.egressCidrs", &mut errs);
        }
        check_priority_classes(&self.priority_classes, "spec.priorityClasses", &mut errs);
        for (i, s) in self.network.shared_services.iter().enumerate() {
            let ok = s
                .split_once('/')
                .is_some_and(|(ns, svc)| is_dns_label(ns) && (svc == "*" || is_dns_label(svc)));
            if !ok {
                errs.push(FieldError::new(
                    format!("spec.network.sharedServices[{i}]"),
                    format!("{s:?}: expected namespace/service or namespace/*"),
                ));
            }
        }
        for (k, v) in &self.quota {
            if !is_quantity(v) {
                errs.push(FieldError::new(
                    format!("spec.quota[\"{k}\"]"),
                    format!("{v:?} is not a quantity"),
                ));
            }
        }
        let l = &self.limits;
        for (field, v) in [
            ("defaultRequestCpu", &l.default_request_cpu),
            ("defaultRequestMemory", &l.default_request_memory),
            ("defaultCpu", &l.default_cpu),
            ("defaultMemory", &l.default_memory),
            ("maxCpu", &l.max_cpu),
            ("maxMemory", &l.max_memory),
            (
                "defaultRequestEphemeralStorage",
                &l.default_request_ephemeral_storage,
            ),
            ("defaultEphemeralStorage", &l.default_ephemeral_storage),
            ("maxEphemeralStorage", &l.max_ephemeral_storage),
        ] {
            if !is_quantity(v) {
                errs.push(FieldError::new(
                    format!("spec.limits.{field}"),
                    format!("{v:?} is not a quantity"),
                ));
            }
        }
        if let Some(k) = &self.kms_key
            && (k.is_empty()
                || k.len() > 253
                || !k
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'/')))
        {
            errs.push(FieldError::new(
                "spec.kmsKey",
                format!("{k:?} is not a key name"),
            ));
        }
        errs
    }
}

/// Where a [`PolicyException`] applies. Every non-empty list must match.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ExceptionMatch {
    /// Namespaces of the objects.
    #[serde(default)]
    pub namespaces: Vec<String>,
    /// Kinds, e.g. `Deployment`.
    #[serde(default)]
    pub kinds: Vec<String>,
    /// Object names; a trailing `*` matches any suffix.
    #[serde(default)]
    pub names: Vec<String>,
    /// Labels of the object. Only with `namespaces`: a selector alone would let any tenant exempt its own
    /// objects by labelling them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<LabelSelector>,
}

/// A platform administrator's exemption of some objects from some rules. Cluster-scoped, so tenants
/// (who only hold namespaced rights) cannot write one.
#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "kubebid.io",
    version = "v1alpha1",
    kind = "PolicyException",
    crates(kube_core = "::kube::core")
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PolicyExceptionSpec {
    /// Rule IDs this exception lifts.
    pub rules: Vec<String>,
    /// Which objects.
    #[serde(rename = "match")]
    pub matches: ExceptionMatch,
    /// Why; shown next to every finding the exception lifts.
    pub reason: String,
    /// When the exception stops applying (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<Time>,
}

impl PolicyExceptionSpec {
    /// Checks what the schema cannot (rule IDs are checked against the rule set by the policy engine).
    #[must_use]
    pub fn validate(&self) -> Vec<FieldError> {
        let mut errs = Vec::new();
        if self.rules.is_empty() {
            errs.push(FieldError::new("spec.rules", "name at least one rule ID"));
        }
        if self.reason.trim().is_empty() {
            errs.push(FieldError::new(
                "spec.reason",
                "an exception needs a reason",
            ));
        }
        let m = &self.matches;
        if m.namespaces.is_empty()
            && m.kinds.is_empty()
            && m.names.is_empty()
            && m.selector.is_none()
        {
            errs.push(FieldError::new(
                "spec.match",
                "an empty match would exempt every object; name what it covers",
            ));
        }
        if m.selector.is_some() && m.namespaces.is_empty() {
            errs.push(FieldError::new(
                "spec.match.selector",
                "a label selector needs spec.match.namespaces too: tenants set their own labels",
            ));
        }
        check_namespaces(&m.namespaces, "spec.match.namespaces", &mut errs);
        errs
    }
}

fn check_cidrs(cidrs: &[String], field: &str, errs: &mut Vec<FieldError>) {
    for (i, c) in cidrs.iter().enumerate() {
        if c.parse::<ipnet::IpNet>().is_err() {
            errs.push(FieldError::new(
                format!("{field}[{i}]"),
                format!("{c:?} is not a CIDR (a.b.c.d/n or x::/n)"),
            ));
        }
    }
}

fn check_namespaces(names: &[String], field: &str, errs: &mut Vec<FieldError>) {
    for (i, n) in names.iter().enumerate() {
        if !is_dns_label(n) {
            errs.push(FieldError::new(
                format!("{field}[{i}]"),
                format!(
                    "{n:?} is not a namespace name (lower-case letters, digits and '-', at most 63)"
                ),
            ));
        }
    }
}

/// RFC 1123 label, as Kubernetes namespace names.
#[must_use]
pub fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// RFC 1123 subdomain.
#[must_use]
pub fn is_dns_subdomain(s: &str) -> bool {
    !s.is_empty() && s.len() <= 253 && s.split('.').all(is_dns_label)
}

/// A Kubernetes qualified name: an optional DNS-subdomain prefix and `/`, then up to 63 letters, digits, `-`,
/// `_` and `.`, starting and ending with a letter or digit (label keys, provisioner names).
fn is_qualified_name(s: &str) -> bool {
    let (prefix, name) = match s.split_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, s),
    };
    let b = name.as_bytes();
    prefix.is_none_or(is_dns_subdomain)
        && !name.is_empty()
        && name.len() <= 63
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
}

/// `PriorityClass` names tenants may be given: DNS subdomains, never Kubernetes' own `system-` classes.
fn check_priority_classes(names: &[String], field: &str, errs: &mut Vec<FieldError>) {
    for (i, n) in names.iter().enumerate() {
        if n.starts_with("system-") {
            errs.push(FieldError::new(
                format!("{field}[{i}]"),
                format!(
                    "{n:?} is one of Kubernetes' system classes, which preempt every other pod"
                ),
            ));
        } else if !is_dns_subdomain(n) {
            errs.push(FieldError::new(
                format!("{field}[{i}]"),
                format!("{n:?} is not a PriorityClass name"),
            ));
        }
    }
}

/// A non-negative Kubernetes resource quantity.
fn is_quantity(s: &str) -> bool {
    crate::quantity::Quantity::parse(s).is_some_and(|q| q.nanos() >= 0)
}

fn is_registry_prefix(s: &str) -> bool {
    if s.is_empty() || s.contains("://") || s.contains('@') || s.ends_with('/') {
        return false;
    }
    let host = s.split('/').next().unwrap_or_default();
    let host_only = host.rsplit_once(':').map_or(host, |(h, port)| {
        if port.bytes().all(|b| b.is_ascii_digit()) {
            h
        } else {
            ""
        }
    });
    !host_only.is_empty()
        && host_only
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
        && s.split('/').skip(1).all(|seg| {
            !seg.is_empty()
                && seg.bytes().all(|b| {
                    b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-')
                })
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pss_versions() {
        assert_eq!(PssVersion::parse("latest"), Some(PssVersion::LATEST));
        assert_eq!(PssVersion::parse("v1.25"), Some(PssVersion::v1(25)));
        assert_eq!(PssVersion::parse("v1."), None);
        assert_eq!(PssVersion::parse("1.25"), None);
        assert_eq!(PssVersion::parse("v1.2x"), None);
        assert!(PssVersion::v1(3) < PssVersion::LATEST);
    }

    #[test]
    fn tenant_validation_names_fields() {
        let mut t = TenantSpec::builtin_default();
        t.namespaces = vec!["ok".into(), "Not_OK".into()];
        t.egress_cidrs = Some(vec!["10.0.0.0/33".into()]);
        t.registries = Some(vec!["https://ghcr.io".into(), "ghcr.io/acme".into()]);
        t.runtime_classes.default = Some("runc".into());
        let errs = t.validate();
        let paths: Vec<_> = errs.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "spec.namespaces[1]",
                "spec.runtimeClasses.default",
                "spec.registries[0]",
                "spec.egressCidrs[0]"
            ]
        );
    }

    #[test]
    fn exceptions_cannot_hang_on_labels_alone() {
        let e = PolicyExceptionSpec {
            rules: vec!["pss/privileged".into()],
            matches: ExceptionMatch {
                selector: Some(LabelSelector::default()),
                ..Default::default()
            },
            reason: "node agent".into(),
            expires: None,
        };
        assert!(e.validate().iter().any(|e| e.path == "spec.match.selector"));
    }
}

#[cfg(test)]
mod crd_tests {
    use kube::CustomResourceExt;

    use super::*;

    #[test]
    fn crds_are_cluster_scoped_kubebid_objects_with_schemas() {
        for (crd, plural) in [
            (KubeBidConfig::crd(), "kubebidconfigs"),
            (Tenant::crd(), "tenants"),
            (PolicyException::crd(), "policyexceptions"),
        ] {
            assert_eq!(crd.spec.group, GROUP);
            assert_eq!(
                crd.spec.scope, "Cluster",
                "{plural}: tenants must not be able to write these"
            );
            assert_eq!(crd.spec.names.plural, plural);
            let v = &crd.spec.versions[0];
            assert_eq!(v.name, VERSION);
            let schema = serde_json::to_value(
                v.schema
                    .as_ref()
                    .and_then(|s| s.open_api_v3_schema.as_ref()),
            )
            .expect("schema");
            assert!(
                schema["properties"]["spec"]["properties"].is_object(),
                "{plural}: {schema}"
            );
        }
        let t = serde_json::to_value(Tenant::crd()).expect("json");
        let spec = &t["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"];
        assert!(
            spec["required"]
                .as_array()
                .expect("required")
                .contains(&serde_json::json!("namespaces"))
        );
        assert!(spec["properties"]["allowLoadBalancer"]["type"] == "boolean");
    }
}
