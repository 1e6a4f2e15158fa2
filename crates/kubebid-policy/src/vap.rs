//! The in-API-server backstop: `ValidatingAdmissionPolicy` objects whose CEL carries the rules CEL can express,
//! so the API server still enforces them when the webhook is unreachable. Each validation's message starts
//! with the rule ID it mirrors, and [`CARRIED`] says which rules the backstop carries in full and which only in
//! part; a test evaluates this CEL against the engine on the PSA corpus in every pod-bearing kind.
//!
//! The pod spec of each kind is found through [`kubebid_model::podspec`], the table the engine and mutation
//! use. Tenant-specific settings (runtime classes, priority classes, `LoadBalancer` rights) are compiled in as
//! maps keyed by namespace, so regenerate the policies when Tenants change.

use std::collections::BTreeMap;

use k8s_openapi::api::admissionregistration::v1::{
    MatchResources, NamedRuleWithOperations, ValidatingAdmissionPolicy,
    ValidatingAdmissionPolicyBinding, ValidatingAdmissionPolicyBindingSpec,
    ValidatingAdmissionPolicySpec, Validation,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{
    LabelSelector, LabelSelectorRequirement, ObjectMeta,
};
use kubebid_model::config::{MANAGED_LABEL, NAMESPACE_NAME_LABEL};
use kubebid_model::podspec::{self, POD_BEARING};

use crate::PolicySet;
use crate::settings::TenantSettings;

/// How much of a rule the backstop carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Coverage {
    /// The CEL denies exactly what the engine denies.
    Full,
    /// The CEL denies a subset (the rest needs the webhook), never more.
    Partial,
}

/// Every rule the backstop carries, and how much of it.
pub const CARRIED: &[(&str, Coverage)] = &[
    ("pss/privileged", Coverage::Full),
    ("pss/hostNamespaces", Coverage::Full),
    ("pss/hostPathVolumes", Coverage::Full),
    ("pss/hostPorts", Coverage::Full),
    ("pss/capabilities_baseline", Coverage::Full),
    ("tenant/runtime-class", Coverage::Full),
    ("tenant/node-name", Coverage::Full),
    ("tenant/dns-bypass", Coverage::Full),
    ("tenant/priority-class", Coverage::Full),
    ("tenant/service-nodeport", Coverage::Full),
    // loadBalancerIP is carried; the address annotations of the many implementations are the webhook's.
    ("tenant/service-loadbalancer", Coverage::Partial),
    ("tenant/service-external-ips", Coverage::Full),
    ("tenant/service-externalname", Coverage::Partial),
    ("tenant/netpol-ipblock", Coverage::Partial),
];

/// The pod spec of the object under review, whatever its kind.
fn pod_spec(root: &str) -> String {
    // Pods first; every other kind is tested by name, the last one needs no test.
    let (last, rest) = POD_BEARING
        .split_last()
        .map_or((None, &[][..]), |(l, r)| (Some(l), r));
    let mut cel = last.map_or_else(|| format!("{root}.spec"), |l| l.cel(root));
    for l in rest.iter().rev() {
        cel = format!("({root}.kind == '{}' ? {} : {cel})", l.kind, l.cel(root));
    }
    cel
}

fn containers(p: &str) -> String {
    format!(
        "({p}.containers + (has({p}.initContainers) ? {p}.initContainers : []) + (has({p}.ephemeralContainers) ? {p}.ephemeralContainers : []))"
    )
}

/// Capabilities a container runtime grants by default (Pod Security Standards, baseline).
const DEFAULT_CAPABILITIES: &str = "['AUDIT_WRITE', 'CHOWN', 'DAC_OVERRIDE', 'FOWNER', 'FSETID', 'KILL', 'MKNOD', 'NET_BIND_SERVICE', 'SETFCAP', 'SETGID', 'SETPCAP', 'SETUID', 'SYS_CHROOT']";

fn quote(s: &str) -> String {
    format!("'{}'", s.replace(['\'', '\\'], ""))
}

fn list(items: impl IntoIterator<Item = impl AsRef<str>>) -> String {
    let quoted: Vec<String> = items.into_iter().map(|s| quote(s.as_ref())).collect();
    format!("[{}]", quoted.join(", "))
}

/// `M[request.namespace]` for a map of namespace to list, `default` for namespaces it does not name.
fn per_namespace(map: &BTreeMap<String, Vec<String>>, default: &[String]) -> String {
    if map.is_empty() {
        return list(default);
    }
    let entries: Vec<String> = map
        .iter()
        .map(|(ns, v)| format!("{}: {}", quote(ns), list(v)))
        .collect();
    format!(
        "(request.namespace in {{{m}}} ? {{{m}}}[request.namespace] : {d})",
        m = entries.join(", "),
        d = list(default)
    )
}

/// What the CEL needs of the configuration.
struct Tables {
    runtime_classes: String,
    priority_classes: String,
    load_balancers: String,
    protected: String,
}

fn tables(policy: &PolicySet) -> Tables {
    let tenancy = policy.tenancy();
    let mut runtime = BTreeMap::new();
    let mut priority = BTreeMap::new();
    let mut lb_namespaces = Vec::new();
    for (scope, settings) in policy.tenants() {
        let classes: Vec<String> = tenancy
            .priority_classes(kubebid_model::Party::Tenant(scope))
            .into_iter()
            .collect();
        for ns in &scope.namespaces {
            runtime.insert(ns.clone(), settings.runtime_classes.clone());
            priority.insert(ns.clone(), classes.clone());
            if settings.allow_load_balancer {
                lb_namespaces.push(ns.clone());
            }
        }
    }
    let default: &TenantSettings = policy.default_settings();
    let shared: Vec<String> = tenancy
        .cluster()
        .shared_priority_classes
        .iter()
        .cloned()
        .collect();
    let protected: Vec<String> = tenancy
        .cluster()
        .protected
        .iter()
        .map(|(n, _)| n.to_string())
        .collect();
    Tables {
        runtime_classes: per_namespace(&runtime, &default.runtime_classes),
        priority_classes: per_namespace(&priority, &shared),
        load_balancers: if default.allow_load_balancer {
            "true".into()
        } else {
            format!("request.namespace in {}", list(&lb_namespaces))
        },
        protected: list(&protected),
    }
}

/// One validation: (rule ID, CEL expression that must hold, message).
pub type CelValidation = (&'static str, String, &'static str);

fn pod_validations(t: &Tables) -> Vec<CelValidation> {
    let p = pod_spec("object");
    let c = containers(&p);
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
            format!(
                "has({p}.runtimeClassName) && {p}.runtimeClassName in {}",
                t.runtime_classes
            ),
            "tenant pods must run in one of their tenant's runtime classes",
        ),
        (
            "tenant/node-name",
            format!("!has({p}.nodeName) || {p}.nodeName == ''"),
            "pods must not name their node",
        ),
        (
            "tenant/dns-bypass",
            format!(
                "(!has({p}.dnsPolicy) || !({p}.dnsPolicy in ['None', 'Default'])) && (!has({p}.dnsConfig) || !has({p}.dnsConfig.nameservers) || size({p}.dnsConfig.nameservers) == 0)"
            ),
            "pods must use the cluster DNS",
        ),
        (
            "tenant/priority-class",
            format!(
                "!has({p}.priorityClassName) || {p}.priorityClassName == '' || {p}.priorityClassName in {}",
                t.priority_classes
            ),
            "pods may name only their tenant's priority classes",
        ),
    ]
}

fn service_validations(t: &Tables) -> Vec<CelValidation> {
    let s = "object.spec";
    vec![
        (
            "tenant/service-nodeport",
            format!(
                "(!has({s}.type) || {s}.type != 'NodePort') && (!has({s}.type) || {s}.type != 'LoadBalancer' || (has({s}.allocateLoadBalancerNodePorts) && {s}.allocateLoadBalancerNodePorts == false && (!has({s}.externalTrafficPolicy) || {s}.externalTrafficPolicy != 'Local'))) && (!has({s}.ports) || {s}.ports.all(p, !has(p.nodePort) || p.nodePort == 0)) && (!has({s}.healthCheckNodePort) || {s}.healthCheckNodePort == 0)"
            ),
            "services must not open node ports",
        ),
        (
            "tenant/service-loadbalancer",
            format!(
                "!has({s}.type) || {s}.type != 'LoadBalancer' || ({} && (!has({s}.loadBalancerIP) || {s}.loadBalancerIP == ''))",
                t.load_balancers
            ),
            "only tenants allowed LoadBalancer services may create them, and never with a chosen address",
        ),
        (
            "tenant/service-external-ips",
            format!("!has({s}.externalIPs) || size({s}.externalIPs) == 0"),
            "services must not claim externalIPs",
        ),
        (
            "tenant/service-externalname",
            format!(
                "!has({s}.type) || {s}.type != 'ExternalName' || !has({s}.externalName) || !isIP({s}.externalName) || !{}.exists(r, cidr(r).containsIP({s}.externalName))",
                t.protected
            ),
            "an ExternalName must not be a protected address",
        ),
    ]
}

fn network_policy_validations(t: &Tables) -> Vec<CelValidation> {
    // An ipBlock covering a protected range must except the part it covers.
    let block_ok = format!(
        "{}.all(r, !(cidr(b.cidr).containsCIDR(r) || cidr(r).containsCIDR(b.cidr)) || (has(b.except) && b.except.exists(e, cidr(e).containsCIDR(cidr(b.cidr).containsCIDR(r) ? r : b.cidr))))",
        t.protected
    );
    let peers_ok = |list: &str| {
        format!(
            "(!has(rule.{list}) || rule.{list}.all(peer, !has(peer.ipBlock) || [peer.ipBlock].all(b, {block_ok})))"
        )
    };
    vec![(
        "tenant/netpol-ipblock",
        format!(
            "(!has(object.spec.ingress) || object.spec.ingress.all(rule, {})) && (!has(object.spec.egress) || object.spec.egress.all(rule, {}))",
            peers_ok("from"),
            peers_ok("to")
        ),
        "ipBlocks must except every protected range they cover",
    )]
}

/// The namespaces where a rule does not deny, as a CEL condition that lets the request through there: a
/// tenant whose profile leaves the rule out or whose action is not enforce, and namespaces where a
/// `PolicyException` may lift it (the backstop cannot tell which objects an exception names, so it lets the
/// webhook decide there). `None` when the rule denies everywhere.
fn not_enforced(policy: &PolicySet, rule: &str) -> Option<String> {
    let exceptions = policy.exception_namespaces(rule)?;
    let mut skipped: Vec<String> = exceptions;
    let mut enforced: Vec<String> = Vec::new();
    for (scope, settings) in policy.tenants() {
        let list = if policy.enforces(settings, rule) {
            &mut enforced
        } else {
            &mut skipped
        };
        list.extend(scope.namespaces.iter().cloned());
    }
    enforced.retain(|ns| !skipped.contains(ns));
    skipped.sort();
    skipped.dedup();
    if policy.enforces(policy.default_settings(), rule) {
        (!skipped.is_empty()).then(|| format!("request.namespace in {}", list(&skipped)))
    } else {
        // Denied only in the tenants' namespaces that enforce it.
        Some(format!("!(request.namespace in {})", list(&enforced)))
    }
}

/// Every validation of the backstop, by policy name: (policy, validations). Each expression holds, and the
/// request passes, where the rule does not deny.
#[must_use]
pub fn validations(policy: &PolicySet) -> Vec<(&'static str, Vec<CelValidation>)> {
    let t = tables(policy);
    let scoped = |v: Vec<CelValidation>| -> Vec<CelValidation> {
        v.into_iter()
            .map(|(id, expr, message)| match not_enforced(policy, id) {
                Some(skip) => (id, format!("({skip}) || ({expr})"), message),
                None => (id, expr, message),
            })
            .collect()
    };
    vec![
        ("kubebid-pods", scoped(pod_validations(&t))),
        ("kubebid-services", scoped(service_validations(&t))),
        (
            "kubebid-networkpolicies",
            scoped(network_policy_validations(&t)),
        ),
    ]
}

fn named_rule(group: &str, resources: &[&str]) -> NamedRuleWithOperations {
    let v = |x: &[&str]| Some(x.iter().map(|s| (*s).to_owned()).collect());
    NamedRuleWithOperations {
        api_groups: v(&[group]),
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

fn rules_for(name: &str) -> Vec<NamedRuleWithOperations> {
    match name {
        "kubebid-pods" => podspec::groups()
            .into_iter()
            .map(|g| {
                let mut resources = podspec::resources_of(g);
                if g.is_empty() {
                    // An ephemeral container arrives as an update of the Pod through this subresource.
                    resources.push("pods/ephemeralcontainers");
                }
                named_rule(g, &resources)
            })
            .collect(),
        "kubebid-services" => vec![named_rule("", &["services"])],
        _ => vec![named_rule("networking.k8s.io", &["networkpolicies"])],
    }
}

/// Every namespace but the platform's, by the label the API server sets and nobody can change: a tenant
/// that could relabel its namespace could otherwise step out of the backstop.
#[must_use]
pub fn judged_namespaces(policy: &PolicySet) -> LabelSelector {
    LabelSelector {
        match_expressions: Some(vec![LabelSelectorRequirement {
            key: NAMESPACE_NAME_LABEL.into(),
            operator: "NotIn".into(),
            values: Some(
                policy
                    .tenancy()
                    .cluster()
                    .excluded
                    .iter()
                    .cloned()
                    .collect(),
            ),
        }]),
        match_labels: None,
    }
}

/// The policies and their bindings.
#[must_use]
pub fn policies(
    policy: &PolicySet,
) -> (
    Vec<ValidatingAdmissionPolicy>,
    Vec<ValidatingAdmissionPolicyBinding>,
) {
    let mut policies = Vec::new();
    let mut bindings = Vec::new();
    for (name, validations) in validations(policy) {
        policies.push(ValidatingAdmissionPolicy {
            metadata: meta(name),
            spec: Some(ValidatingAdmissionPolicySpec {
                failure_policy: Some("Fail".into()),
                match_constraints: Some(MatchResources {
                    resource_rules: Some(rules_for(name)),
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
        });
        bindings.push(ValidatingAdmissionPolicyBinding {
            metadata: meta(name),
            spec: ValidatingAdmissionPolicyBindingSpec {
                policy_name: name.into(),
                validation_actions: vec!["Deny".into()],
                match_resources: Some(MatchResources {
                    namespace_selector: Some(judged_namespaces(policy)),
                    ..MatchResources::default()
                }),
                param_ref: None,
            },
        });
    }
    (policies, bindings)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pod_spec_expression_names_every_pod_bearing_kind() {
        let cel = pod_spec("object");
        for l in POD_BEARING {
            assert!(cel.contains(&l.cel("object")), "{}", l.kind);
        }
        assert!(cel.contains("object.kind == 'PodTemplate' ? object.template.spec"));
    }

    #[test]
    fn every_carried_rule_is_a_rule_with_a_validation() {
        let all: Vec<&str> = validations(&PolicySet::builtin())
            .into_iter()
            .flat_map(|(_, v)| v.into_iter().map(|(id, _, _)| id))
            .collect();
        for (id, _) in CARRIED {
            assert!(crate::rules::rule(id).is_some(), "{id}");
            assert!(all.contains(id), "{id} has no validation");
        }
        assert_eq!(all.len(), CARRIED.len());
    }
}
