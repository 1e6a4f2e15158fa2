//! Configuration compiled for evaluation: CIDRs parsed, defaults applied, per-rule actions resolved.

use ipnet::IpNet;
use kubebid_model::config::{KubeBidConfigSpec, Mutations, OwnerKind, TenantOwner, TenantSpec};
use kubebid_model::{Action, Profile, PssVersion};

use crate::rules::RULES;

/// Cluster-wide settings.
#[derive(Clone, Debug)]
pub struct ClusterSettings {
    pub cluster_domain: String,
    pub pod_cidrs: Vec<IpNet>,
    pub service_cidrs: Vec<IpNet>,
    pub shared_namespaces: Vec<String>,
    pub ingress_label: (String, String),
    pub excluded_namespaces: Vec<String>,
    pub allowed_cluster_roles: Vec<String>,
    pub default_profile: Profile,
    pub pss_version: PssVersion,
    /// Action per rule, indexed like [`RULES`].
    pub actions: Vec<Action>,
    /// Users whose requests are not judged: KubeBid's own service account and the configured ones.
    pub exempt_users: Vec<String>,
}

impl ClusterSettings {
    /// Compiles a validated spec. Unparseable values (already refused by validation) are dropped.
    #[must_use]
    pub fn from_spec(spec: &KubeBidConfigSpec) -> Self {
        let cidrs = |v: &[String]| v.iter().filter_map(|c| c.parse().ok()).collect();
        let actions = RULES
            .iter()
            .map(|r| spec.rules.get(r.id).copied().unwrap_or(r.default_action))
            .collect();
        Self {
            cluster_domain: spec
                .cluster_domain
                .trim_end_matches('.')
                .to_ascii_lowercase(),
            pod_cidrs: cidrs(&spec.pod_cidrs),
            service_cidrs: cidrs(&spec.service_cidrs),
            shared_namespaces: spec.shared_namespaces.clone(),
            ingress_label: (
                spec.ingress_controller_label.key.clone(),
                spec.ingress_controller_label.value.clone(),
            ),
            excluded_namespaces: spec.excluded_namespaces.clone(),
            allowed_cluster_roles: spec.allowed_cluster_roles.clone(),
            default_profile: spec.default_profile,
            pss_version: PssVersion::parse(&spec.pod_security_version)
                .unwrap_or(PssVersion::LATEST),
            actions,
            exempt_users: std::iter::once(spec.service_account.split_once('/').map_or_else(
                || spec.service_account.clone(),
                |(ns, name)| format!("system:serviceaccount:{ns}:{name}"),
            ))
            .chain(spec.exempt_users.iter().cloned())
            .collect(),
        }
    }

    /// Whether `ns` is a platform namespace that is not checked.
    #[must_use]
    pub fn is_excluded(&self, ns: &str) -> bool {
        self.excluded_namespaces.iter().any(|e| e == ns)
    }
}

/// One tenant's settings.
#[derive(Clone, Debug)]
pub struct TenantSettings {
    /// Tenant name; `None` for the built-in default tenant used without configuration.
    pub name: Option<String>,
    pub namespaces: Vec<String>,
    pub owners: Vec<TenantOwner>,
    pub profile: Option<Profile>,
    pub runtime_classes: Vec<String>,
    pub default_runtime_class: Option<String>,
    pub registries: Option<Vec<String>>,
    pub ingress_domains: Option<Vec<String>>,
    pub storage_classes: Vec<String>,
    pub egress_cidrs: Option<Vec<IpNet>>,
    pub allow_load_balancer: bool,
    /// Namespaces the tenant's `network.sharedServices` name: its network policies may select them.
    pub shared_service_namespaces: Vec<String>,
    /// Per-rule action overrides, indexed like [`RULES`].
    pub actions: Vec<Option<Action>>,
    pub mutate: Mutations,
}

impl TenantSettings {
    /// Compiles a validated spec.
    #[must_use]
    pub fn from_spec(name: Option<String>, spec: &TenantSpec) -> Self {
        Self {
            name,
            namespaces: spec.namespaces.clone(),
            owners: spec.owners.clone(),
            profile: spec.profile,
            runtime_classes: spec.runtime_classes.allowed.clone(),
            default_runtime_class: spec.runtime_classes.default.clone(),
            // Normalised once here rather than on every image of every review.
            registries: spec.registries.as_ref().map(|v| {
                v.iter()
                    .map(|r| crate::tenant::normalize_registry(r))
                    .collect()
            }),
            ingress_domains: spec.ingress_domains.as_ref().map(|d| {
                d.iter()
                    .map(|x| x.trim_end_matches('.').to_ascii_lowercase())
                    .collect()
            }),
            storage_classes: spec.storage_classes.clone(),
            egress_cidrs: spec
                .egress_cidrs
                .as_ref()
                .map(|v| v.iter().filter_map(|c| c.parse().ok()).collect()),
            allow_load_balancer: spec.allow_load_balancer,
            shared_service_namespaces: {
                let mut v: Vec<String> = spec
                    .network
                    .shared_services
                    .iter()
                    .filter_map(|s| s.split_once('/').map(|(ns, _)| ns.to_owned()))
                    .collect();
                v.sort();
                v.dedup();
                v
            },
            actions: RULES
                .iter()
                .map(|r| spec.rules.get(r.id).copied())
                .collect(),
            mutate: spec.mutate.clone(),
        }
    }

    /// The built-in defaults: runtime class `kubebid-secure`, storage class `encrypted-ssd`, no registry
    /// restriction.
    #[must_use]
    pub fn builtin() -> Self {
        Self::from_spec(None, &TenantSpec::builtin_default())
    }

    /// Whether some owner of `kind` is named `name`.
    #[must_use]
    pub fn has_owner(&self, kind: OwnerKind, name: &str) -> bool {
        self.owners.iter().any(|o| o.kind == kind && o.name == name)
    }

    /// Whether owners of users or groups are configured (then bindings may name only them).
    #[must_use]
    pub fn restricts_identities(&self) -> bool {
        self.owners
            .iter()
            .any(|o| matches!(o.kind, OwnerKind::User | OwnerKind::Group))
    }
}
