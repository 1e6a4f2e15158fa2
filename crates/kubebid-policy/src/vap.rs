//! The in-API-server backstop: `ValidatingAdmissionPolicy` objects whose CEL expresses the core rules that
//! CEL can (privileged, host namespaces, hostPath, host ports, added capabilities, runtime class, `NodePort`),
//! so the API server still enforces them if the webhook is unreachable. Each validation's message starts
//! with the rule ID it mirrors; a test evaluates this CEL against the native engine on the PSA corpus.

use k8s_openapi::api::admissionregistration::v1::{
    MatchResources, NamedRuleWithOperations, ValidatingAdmissionPolicy,
    ValidatingAdmissionPolicyBinding, ValidatingAdmissionPolicyBindingSpec,
    ValidatingAdmissionPolicySpec, Validation,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{
    LabelSelector, LabelSelectorRequirement, ObjectMeta,
};
use kubebid_model::config::{MANAGED_LABEL, TENANT_LABEL};

/// The pod spec of a Pod or of any pod-template kind.
const POD_SPEC: &str = "(object.kind == 'Pod' ? object.spec : (object.kind == 'CronJob' ? object.spec.jobTemplate.spec.template.spec : object.spec.template.spec))";

fn containers() -> String {
    let p = POD_SPEC;
    format!(
        "({p}.containers + (has({p}.initContainers) ? {p}.initContainers : []) + (has({p}.ephemeralContainers) ? {p}.ephemeralContainers : []))"
    )
}

/// Capabilities a container runtime grants by default (Pod Security Standards, baseline).
const DEFAULT_CAPABILITIES: &str = "['AUDIT_WRITE', 'CHOWN', 'DAC_OVERRIDE', 'FOWNER', 'FSETID', 'KILL', 'MKNOD', 'NET_BIND_SERVICE', 'SETFCAP', 'SETGID', 'SETPCAP', 'SETUID', 'SYS_CHROOT']";

/// One validation: (rule ID, CEL expression that must hold, message).
#[must_use]
pub fn pod_validations(runtime_classes: &[String]) -> Vec<(&'static str, String, &'static str)> {
    let c = containers();
    let p = POD_SPEC;
    let classes = runtime_classes
        .iter()
        .map(|r| format!("'{}'", r.replace('\'', "")))
        .collect::<Vec<_>>()
        .join(", ");
    vec![
        (
            "pss/privileged",
            format!(
                "{c}.all(c, !has(c.securityContext) || !has(c.securityContext.privileged) || c.securityContext.privileged == false)"
            ),
            "containers must not set securityContext.privileged=true",
        ),
        (
            "pss/hostNamespaces",
            format!(
                "!(has({p}.hostNetwork) && {p}.hostNetwork) && !(has({p}.hostPID) && {p}.hostPID) && !(has({p}.hostIPC) && {p}.hostIPC)"
            ),
            "hostNetwork, hostPID and hostIPC must not be true",
        ),
        (
            "pss/hostPathVolumes",
            format!("!has({p}.volumes) || {p}.volumes.all(v, !has(v.hostPath))"),
            "hostPath volumes are forbidden",
        ),
        (
            "pss/hostPorts",
            format!(
                "{c}.all(c, !has(c.ports) || c.ports.all(port, !has(port.hostPort) || port.hostPort == 0))"
            ),
            "containers must not use hostPort",
        ),
        (
            "pss/capabilities_baseline",
            format!(
                "{c}.all(c, !has(c.securityContext) || !has(c.securityContext.capabilities) || !has(c.securityContext.capabilities.add) || c.securityContext.capabilities.add.all(cap, cap in {DEFAULT_CAPABILITIES}))"
            ),
            "containers must not add capabilities beyond the default set",
        ),
        (
            "tenant/runtime-class",
            format!("has({p}.runtimeClassName) && {p}.runtimeClassName in [{classes}]"),
            "tenant pods must run in a secure runtime class",
        ),
    ]
}

/// Validations for Services.
#[must_use]
pub fn service_validations() -> Vec<(&'static str, String, &'static str)> {
    vec![(
        "tenant/service-nodeport",
        "!has(object.spec.type) || object.spec.type != 'NodePort'".to_owned(),
        "NodePort services are forbidden",
    )]
}

fn named_rule(groups: &[&str], resources: &[&str]) -> NamedRuleWithOperations {
    let v = |x: &[&str]| Some(x.iter().map(|s| (*s).to_owned()).collect());
    NamedRuleWithOperations {
        api_groups: v(groups),
        api_versions: v(&["*"]),
        operations: v(&["CREATE", "UPDATE"]),
        resources: v(resources),
        resource_names: None,
        scope: Some("Namespaced".into()),
    }
}

fn meta(name: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.into()),
        labels: Some([(MANAGED_LABEL.to_owned(), "true".to_owned())].into()),
        ..ObjectMeta::default()
    }
}

fn policy(
    name: &str,
    rules: Vec<NamedRuleWithOperations>,
    validations: Vec<(&'static str, String, &'static str)>,
) -> ValidatingAdmissionPolicy {
    ValidatingAdmissionPolicy {
        metadata: meta(name),
        spec: Some(ValidatingAdmissionPolicySpec {
            failure_policy: Some("Fail".into()),
            match_constraints: Some(MatchResources {
                resource_rules: Some(rules),
                ..MatchResources::default()
            }),
            validations: Some(
                validations
                    .into_iter()
                    .map(|(id, expression, message)| Validation {
                        expression,
                        message: Some(format!("[{id}] {message} (KubeBid backstop)")),
                        message_expression: None,
                        reason: Some("Forbidden".into()),
                    })
                    .collect(),
            ),
            ..ValidatingAdmissionPolicySpec::default()
        }),
        status: None,
    }
}

fn binding(policy: &str) -> ValidatingAdmissionPolicyBinding {
    ValidatingAdmissionPolicyBinding {
        metadata: meta(policy),
        spec: ValidatingAdmissionPolicyBindingSpec {
            policy_name: policy.into(),
            validation_actions: vec!["Deny".into()],
            match_resources: Some(MatchResources {
                namespace_selector: Some(LabelSelector {
                    match_expressions: Some(vec![LabelSelectorRequirement {
                        key: TENANT_LABEL.into(),
                        operator: "Exists".into(),
                        values: None,
                    }]),
                    match_labels: None,
                }),
                ..MatchResources::default()
            }),
            param_ref: None,
        },
    }
}

/// The policies and their bindings (tenant namespaces only). `runtime_classes` is every class some tenant
/// may use: a single in-server policy cannot tell tenants apart, the webhook does.
#[must_use]
pub fn policies(
    runtime_classes: &[String],
) -> (
    Vec<ValidatingAdmissionPolicy>,
    Vec<ValidatingAdmissionPolicyBinding>,
) {
    let pods = policy(
        "kubebid-pods",
        vec![
            named_rule(&[""], &["pods", "replicationcontrollers", "podtemplates"]),
            named_rule(
                &["apps"],
                &["deployments", "replicasets", "statefulsets", "daemonsets"],
            ),
            named_rule(&["batch"], &["jobs", "cronjobs"]),
        ],
        pod_validations(runtime_classes),
    );
    let services = policy(
        "kubebid-services",
        vec![named_rule(&[""], &["services"])],
        service_validations(),
    );
    (
        vec![pods, services],
        vec![binding("kubebid-pods"), binding("kubebid-services")],
    )
}
