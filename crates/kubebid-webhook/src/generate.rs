//! The webhook configurations the API server needs to call KubeBid: which requests go to `/validate` and
//! `/mutate`, and what happens when the webhook cannot answer (fail closed).
//!
//! Selectors never rest on a label a namespace's editor can change. Namespaced requests are sent for every
//! namespace but the platform's, matched by `kubernetes.io/metadata.name` (set by the API server, which
//! overwrites any other value); the webhook itself decides, through the tenancy model, whose namespace it is.
//! A `namespaceSelector` on the tenant label would be matched against the *new* labels of a Namespace UPDATE,
//! so the UPDATE that removes the label would never reach KubeBid. Cluster-scoped objects attributed to a
//! tenant by label use an `objectSelector`, which the API server matches against the old and the new object.

use k8s_openapi::ByteString;
use k8s_openapi::api::admissionregistration::v1::{
    MatchCondition, MutatingWebhook, MutatingWebhookConfiguration, RuleWithOperations,
    ServiceReference, ValidatingWebhook, ValidatingWebhookConfiguration, WebhookClientConfig,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{
    LabelSelector, LabelSelectorRequirement, ObjectMeta,
};
use kubebid_model::Tenancy;
use kubebid_model::config::{MANAGED_LABEL, NAMESPACE_NAME_LABEL, TENANT_LABEL};
use kubebid_model::podspec;

/// Where the API server reaches the webhook.
#[derive(Clone, Debug)]
pub enum Target {
    /// An in-cluster Service, `namespace/name`, port 443.
    Service { namespace: String, name: String },
    /// An HTTPS URL (out-of-cluster development).
    Url(String),
}

/// Settings of the generated configurations.
#[derive(Clone, Debug)]
pub struct WebhookSettings {
    pub target: Target,
    /// PEM of the CA that signed the webhook's serving certificate.
    pub ca_bundle: Vec<u8>,
    /// KubeBid's own service account, as a username: its requests skip the webhook.
    pub service_account_user: String,
    /// The platform's namespaces: every other namespace is sent to the webhook.
    pub excluded_namespaces: Vec<String>,
    pub timeout_seconds: i32,
}

impl WebhookSettings {
    /// Settings for `tenancy`'s cluster: its excluded namespaces and KubeBid's own account.
    #[must_use]
    pub fn for_cluster(
        tenancy: &Tenancy,
        target: Target,
        ca_bundle: Vec<u8>,
        timeout_seconds: i32,
    ) -> Self {
        let cluster = tenancy.cluster();
        Self {
            target,
            ca_bundle,
            service_account_user: cluster.kubebid_user.clone(),
            excluded_namespaces: cluster.excluded.iter().cloned().collect(),
            timeout_seconds,
        }
    }
}

fn rule(
    groups: &[&str],
    resources: &[&str],
    operations: &[&str],
    scope: &str,
) -> RuleWithOperations {
    let v = |x: &[&str]| Some(x.iter().map(|s| (*s).to_owned()).collect());
    RuleWithOperations {
        api_groups: v(groups),
        api_versions: v(&["*"]),
        operations: v(operations),
        resources: v(resources),
        scope: Some(scope.to_owned()),
    }
}

fn client(s: &WebhookSettings, path: &str) -> WebhookClientConfig {
    let (service, url) = match &s.target {
        Target::Service { namespace, name } => (
            Some(ServiceReference {
                namespace: namespace.clone(),
                name: name.clone(),
                path: Some(path.to_owned()),
                port: Some(443),
            }),
            None,
        ),
        Target::Url(u) => (None, Some(format!("{}{path}", u.trim_end_matches('/')))),
    };
    WebhookClientConfig {
        ca_bundle: Some(ByteString(s.ca_bundle.clone())),
        service,
        url,
    }
}

/// Every namespace but the platform's, by the name label nobody can change.
fn judged_namespaces(s: &WebhookSettings) -> LabelSelector {
    LabelSelector {
        match_expressions: Some(vec![LabelSelectorRequirement {
            key: NAMESPACE_NAME_LABEL.into(),
            operator: "NotIn".into(),
            values: Some(s.excluded_namespaces.clone()),
        }]),
        match_labels: None,
    }
}

/// Cluster-scoped objects that carry the tenant label (matched on the old and the new object).
fn labelled_for_a_tenant() -> LabelSelector {
    LabelSelector {
        match_expressions: Some(vec![LabelSelectorRequirement {
            key: TENANT_LABEL.into(),
            operator: "Exists".into(),
            values: None,
        }]),
        match_labels: None,
    }
}

fn skip_self(s: &WebhookSettings) -> MatchCondition {
    MatchCondition {
        name: "not-kubebid-itself".into(),
        expression: format!(
            "request.userInfo.username != '{}'",
            s.service_account_user.replace('\'', "")
        ),
    }
}

/// Rules that bind tenants only are not sent for the platform's own identities: the webhook would let them
/// pass anyway, and this way garbage collection, namespace deletion and endpoint updates never wait on it.
fn tenants_only() -> MatchCondition {
    MatchCondition {
        name: "not-the-platform".into(),
        expression: format!("!({})", Tenancy::platform_actor_cel()),
    }
}

/// Deletions by Kubernetes' controllers and cluster admins (garbage collection, namespace deletion) pass the
/// webhook anyway; skipping them keeps a Tenant's or a namespace's deletion working while it is down.
fn not_platform_deletes() -> MatchCondition {
    MatchCondition {
        name: "not-platform-deletes".into(),
        expression: format!(
            "!(request.operation == 'DELETE' && ({}))",
            Tenancy::platform_actor_cel()
        ),
    }
}

fn namespaced_rules() -> Vec<RuleWithOperations> {
    let cud = ["CREATE", "UPDATE", "DELETE"];
    let mut core: Vec<&str> = podspec::resources_of("");
    core.extend([
        "services",
        "persistentvolumeclaims",
        "resourcequotas",
        "limitranges",
        "serviceaccounts",
    ]);
    let mut rules = vec![
        rule(&[""], &core, &cud, "Namespaced"),
        rule(
            &[""],
            &["pods/ephemeralcontainers"],
            &["UPDATE"],
            "Namespaced",
        ),
        rule(
            &[""],
            &["pods/exec", "pods/attach", "pods/portforward"],
            &["CONNECT"],
            "Namespaced",
        ),
    ];
    for group in podspec::groups().into_iter().filter(|g| !g.is_empty()) {
        rules.push(rule(
            &[group],
            &podspec::resources_of(group),
            &cud,
            "Namespaced",
        ));
    }
    rules.extend([
        rule(
            &["networking.k8s.io"],
            &["networkpolicies", "ingresses"],
            &cud,
            "Namespaced",
        ),
        rule(
            &["rbac.authorization.k8s.io"],
            &["roles", "rolebindings"],
            &cud,
            "Namespaced",
        ),
    ]);
    rules
}

/// The `ValidatingWebhookConfiguration`.
#[must_use]
pub fn validating(s: &WebhookSettings) -> ValidatingWebhookConfiguration {
    let common = |name: &str,
                  rules: Vec<RuleWithOperations>,
                  namespace_selector: Option<LabelSelector>,
                  conditions: Vec<MatchCondition>| ValidatingWebhook {
        name: name.into(),
        admission_review_versions: vec!["v1".into()],
        client_config: client(s, "/validate"),
        failure_policy: Some("Fail".into()),
        match_policy: Some("Equivalent".into()),
        match_conditions: Some(conditions),
        namespace_selector,
        object_selector: None,
        rules: Some(rules),
        side_effects: "None".into(),
        timeout_seconds: Some(s.timeout_seconds),
    };
    ValidatingWebhookConfiguration {
        metadata: ObjectMeta {
            name: Some("kubebid-validate".into()),
            labels: Some([(MANAGED_LABEL.to_owned(), "true".to_owned())].into()),
            ..ObjectMeta::default()
        },
        webhooks: Some(vec![
            // What may be in a namespace: judged whoever sends it.
            common(
                "tenants.validate.kubebid.io",
                namespaced_rules(),
                Some(judged_namespaces(s)),
                vec![skip_self(s), not_platform_deletes()],
            ),
            // Namespaces themselves: a tenant may not create, relabel or delete its own. The selector is
            // matched against the Namespace itself, by its name label.
            common(
                "namespaces.validate.kubebid.io",
                vec![rule(
                    &[""],
                    &["namespaces"],
                    &["CREATE", "UPDATE", "DELETE"],
                    "Cluster",
                )],
                Some(judged_namespaces(s)),
                vec![skip_self(s), tenants_only()],
            ),
            // What only Kubernetes' controllers may write: endpoints and node bindings.
            common(
                "endpoints.validate.kubebid.io",
                vec![
                    rule(&[""], &["endpoints"], &["CREATE", "UPDATE"], "Namespaced"),
                    rule(
                        &["discovery.k8s.io"],
                        &["endpointslices"],
                        &["CREATE", "UPDATE"],
                        "Namespaced",
                    ),
                    rule(
                        &[""],
                        &["bindings", "pods/binding"],
                        &["CREATE"],
                        "Namespaced",
                    ),
                ],
                Some(judged_namespaces(s)),
                vec![skip_self(s), tenants_only()],
            ),
            // KubeBid's own configuration: a Tenant may not claim another tenant's namespace, domain or owner.
            common(
                "config.validate.kubebid.io",
                vec![rule(
                    &["kubebid.io"],
                    &["tenants"],
                    &["CREATE", "UPDATE"],
                    "Cluster",
                )],
                None,
                vec![skip_self(s)],
            ),
            ValidatingWebhook {
                // Cluster-scoped objects attributed to a tenant. Platform components' own ClusterRoles carry
                // no tenant label and do not come here.
                object_selector: Some(labelled_for_a_tenant()),
                ..common(
                    "cluster.validate.kubebid.io",
                    vec![
                        rule(
                            &[""],
                            &["persistentvolumes"],
                            &["CREATE", "UPDATE"],
                            "Cluster",
                        ),
                        rule(
                            &["rbac.authorization.k8s.io"],
                            &["clusterroles", "clusterrolebindings"],
                            &["CREATE", "UPDATE"],
                            "Cluster",
                        ),
                    ],
                    None,
                    vec![skip_self(s), tenants_only()],
                )
            },
        ]),
    }
}

/// The `MutatingWebhookConfiguration`: secure defaults for pods and pod templates.
#[must_use]
pub fn mutating(s: &WebhookSettings) -> MutatingWebhookConfiguration {
    let mut rules = Vec::new();
    for group in podspec::groups() {
        rules.push(rule(
            &[group],
            &podspec::resources_of(group),
            &["CREATE", "UPDATE"],
            "Namespaced",
        ));
    }
    // Ephemeral containers pull images too.
    rules.push(rule(
        &[""],
        &["pods/ephemeralcontainers"],
        &["UPDATE"],
        "Namespaced",
    ));
    MutatingWebhookConfiguration {
        metadata: ObjectMeta {
            name: Some("kubebid-mutate".into()),
            labels: Some([(MANAGED_LABEL.to_owned(), "true".to_owned())].into()),
            ..ObjectMeta::default()
        },
        webhooks: Some(vec![MutatingWebhook {
            name: "tenants.mutate.kubebid.io".into(),
            admission_review_versions: vec!["v1".into()],
            client_config: client(s, "/mutate"),
            failure_policy: Some("Fail".into()),
            match_policy: Some("Equivalent".into()),
            match_conditions: Some(vec![skip_self(s)]),
            namespace_selector: Some(judged_namespaces(s)),
            object_selector: None,
            reinvocation_policy: Some("IfNeeded".into()),
            rules: Some(rules),
            side_effects: "None".into(),
            timeout_seconds: Some(s.timeout_seconds),
        }]),
    }
}
