//! The webhook configurations the API server needs to call KubeBid: which requests go to `/validate` and
//! `/mutate`, and what happens when the webhook cannot answer (fail closed for tenant namespaces).

use k8s_openapi::ByteString;
use k8s_openapi::api::admissionregistration::v1::{
    MatchCondition, MutatingWebhook, MutatingWebhookConfiguration, RuleWithOperations,
    ServiceReference, ValidatingWebhook, ValidatingWebhookConfiguration, WebhookClientConfig,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{
    LabelSelector, LabelSelectorRequirement, ObjectMeta,
};
use kubebid_model::config::{MANAGED_LABEL, TENANT_LABEL};

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
    pub timeout_seconds: i32,
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

fn tenant_namespaces() -> LabelSelector {
    LabelSelector {
        match_expressions: Some(vec![LabelSelectorRequirement {
            key: TENANT_LABEL.into(),
            operator: "Exists".into(),
            values: None,
        }]),
        match_labels: None,
    }
}

fn not_cluster_admin() -> MatchCondition {
    MatchCondition {
        name: "not-cluster-admins".into(),
        expression: "!('system:masters' in request.userInfo.groups)".into(),
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

const WORKLOADS: &[&str] = &["deployments", "replicasets", "statefulsets", "daemonsets"];

fn namespaced_rules() -> Vec<RuleWithOperations> {
    let cud = ["CREATE", "UPDATE", "DELETE"];
    vec![
        rule(
            &[""],
            &[
                "pods",
                "replicationcontrollers",
                "podtemplates",
                "services",
                "persistentvolumeclaims",
                "resourcequotas",
                "limitranges",
                "serviceaccounts",
            ],
            &cud,
            "Namespaced",
        ),
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
        rule(&["apps"], WORKLOADS, &cud, "Namespaced"),
        rule(&["batch"], &["jobs", "cronjobs"], &cud, "Namespaced"),
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
    ]
}

/// The `ValidatingWebhookConfiguration`: tenant namespaces (failure policy Fail), and the cluster-scoped
/// kinds the rules need (tenant namespaces' labels, cluster RBAC, persistent volumes).
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
            common(
                "tenants.validate.kubebid.io",
                namespaced_rules(),
                Some(tenant_namespaces()),
                vec![skip_self(s)],
            ),
            common(
                "namespaces.validate.kubebid.io",
                vec![rule(
                    &[""],
                    &["namespaces"],
                    &["UPDATE", "DELETE"],
                    "Cluster",
                )],
                // A Namespace is matched on its own labels (on UPDATE, old or new): only tenant namespaces.
                Some(tenant_namespaces()),
                vec![skip_self(s), not_cluster_admin()],
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
                object_selector: Some(tenant_namespaces()),
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
                    vec![skip_self(s), not_cluster_admin()],
                )
            },
        ]),
    }
}

/// The `MutatingWebhookConfiguration`: secure defaults for tenant pods and pod templates.
#[must_use]
pub fn mutating(s: &WebhookSettings) -> MutatingWebhookConfiguration {
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
            namespace_selector: Some(tenant_namespaces()),
            object_selector: None,
            reinvocation_policy: Some("IfNeeded".into()),
            rules: Some(vec![
                rule(
                    &[""],
                    &["pods", "replicationcontrollers", "podtemplates"],
                    &["CREATE", "UPDATE"],
                    "Namespaced",
                ),
                rule(&["apps"], WORKLOADS, &["CREATE", "UPDATE"], "Namespaced"),
                rule(
                    &["batch"],
                    &["jobs", "cronjobs"],
                    &["CREATE", "UPDATE"],
                    "Namespaced",
                ),
            ]),
            side_effects: "None".into(),
            timeout_seconds: Some(s.timeout_seconds),
        }]),
    }
}
