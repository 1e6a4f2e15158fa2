//! Configuration compiled for evaluation: defaults applied, per-rule actions resolved. Who owns and may reach
//! what is not here: that is the tenancy model's ([`kubebid_model::tenancy`]), which every door shares.

use kubebid_model::config::{KubeBidConfigSpec, Mutations, TenantSpec};
use kubebid_model::{Action, Profile, PssVersion};

use crate::rules::RULES;

/// Cluster-wide settings of the rules.
#[derive(Clone, Debug)]
pub struct ClusterSettings {
    pub allowed_cluster_roles: Vec<String>,
    pub inline_csi_drivers: Vec<String>,
    pub default_profile: Profile,
    pub pss_version: PssVersion,
    /// Action per rule, indexed like [`RULES`].
    pub actions: Vec<Action>,
}

impl ClusterSettings {
    /// Compiles a validated spec.
    #[must_use]
    pub fn from_spec(spec: &KubeBidConfigSpec) -> Self {
        let actions = RULES
            .iter()
            .map(|r| spec.rules.get(r.id).copied().unwrap_or(r.default_action))
            .collect();
        Self {
            allowed_cluster_roles: spec.allowed_cluster_roles.clone(),
            inline_csi_drivers: spec.inline_csi_drivers.clone(),
            default_profile: spec.default_profile,
            pss_version: PssVersion::parse(&spec.pod_security_version)
                .unwrap_or(PssVersion::LATEST),
            actions,
        }
    }
}

/// One tenant's rule settings.
#[derive(Clone, Debug)]
pub struct TenantSettings {
    /// Tenant name; `None` for the default settings of namespaces no tenant claims.
    pub name: Option<String>,
    pub profile: Option<Profile>,
    pub runtime_classes: Vec<String>,
    pub default_runtime_class: Option<String>,
    pub registries: Option<Vec<String>>,
    pub storage_classes: Vec<String>,
    pub allow_load_balancer: bool,
    pub extended_resources: Vec<String>,
    /// Pods must be Guaranteed with whole CPUs (`isolation.dedicatedCores`).
    pub dedicated_cores: bool,
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
            profile: spec.profile,
            runtime_classes: spec.effective_runtime_classes().allowed,
            default_runtime_class: spec.effective_runtime_classes().default,
            dedicated_cores: spec.isolation.dedicated_cores,
            // Normalised once here rather than on every image of every review.
            registries: spec.registries.as_ref().map(|v| {
                v.iter()
                    .map(|r| crate::tenant::normalize_registry(r))
                    .collect()
            }),
            storage_classes: spec.storage_classes.clone(),
            allow_load_balancer: spec.allow_load_balancer,
            extended_resources: spec.extended_resources.clone(),
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
}
