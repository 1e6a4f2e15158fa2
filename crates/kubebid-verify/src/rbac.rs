//! What an identity may do, judged from the API server's own answers: `SelfSubjectRulesReview` rules
//! (one review per identity and namespace) and `SelfSubjectAccessReview` for cluster-scoped requests.
//! Pure functions: rules in, findings out.

use serde::Deserialize;

/// One resource rule of a rules review.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Rule {
    #[serde(default)]
    pub verbs: Vec<String>,
    #[serde(default)]
    pub api_groups: Vec<String>,
    #[serde(default)]
    pub resources: Vec<String>,
    #[serde(default)]
    pub resource_names: Vec<String>,
}

impl Rule {
    fn verb(&self, v: &str) -> bool {
        self.verbs.iter().any(|x| x == v || x == "*")
    }

    fn any_verb(&self, vs: &[&str]) -> bool {
        vs.iter().any(|v| self.verb(v))
    }

    /// Whether the rule covers `resource` (`pods/binding`): exactly, by `*`, or by `pods/*` / `*/binding`.
    fn resource(&self, resource: &str) -> bool {
        let (base, sub) = resource.split_once('/').unwrap_or((resource, ""));
        self.resources.iter().any(|r| {
            if r == "*" || r == resource {
                return true;
            }
            match r.split_once('/') {
                Some((b, s)) => {
                    (b == "*" || b == base) && (s == "*" || s == sub) && !sub.is_empty()
                }
                None => false,
            }
        })
    }

    fn group(&self, g: &str) -> bool {
        self.api_groups.iter().any(|x| x == g || x == "*")
    }

    /// As the API server writes it in messages.
    #[must_use]
    pub fn describe(&self) -> String {
        format!(
            "{} on {}{}{}",
            self.verbs.join(","),
            self.resources.join(","),
            if self.api_groups.iter().all(String::is_empty) {
                String::new()
            } else {
                format!(" ({})", self.api_groups.join(","))
            },
            if self.resource_names.is_empty() {
                String::new()
            } else {
                format!(" named {}", self.resource_names.join(","))
            }
        )
    }
}

const WRITE: &[&str] = &["create", "update", "patch", "delete", "deletecollection"];

/// What a tenant's identity must never be able to do in its own namespace, with why. `bind` on
/// ClusterRoles named in `bindable` (the configuration's `allowedClusterRoles`, which KubeBid grants so that
/// tenants can bind `view` and the like in their namespaces) is expected; on anything else it is not.
#[must_use]
pub fn forbidden_in_own(rules: &[Rule], bindable: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    for r in rules {
        let what = r.describe();
        let granted_bind = r.verbs.iter().all(|v| v == "bind")
            && r.api_groups
                .iter()
                .all(|g| g == "rbac.authorization.k8s.io")
            && r.resources.iter().all(|x| x == "clusterroles")
            && !r.resource_names.is_empty()
            && r.resource_names.iter().all(|n| bindable.contains(n));
        if r.any_verb(&["escalate", "bind", "impersonate"]) && !granted_bind {
            out.push(format!(
                "{what}: escalate, bind or impersonate give more than the role holds"
            ));
        }
        if r.group("") && r.resource("pods/binding") && r.verb("create") {
            out.push(format!(
                "{what}: pods/binding places pods on any node, past the scheduler"
            ));
        }
        if r.group("") && r.resource("bindings") && r.verb("create") {
            out.push(format!(
                "{what}: Binding places pods on any node, past the scheduler"
            ));
        }
        if r.resources
            .iter()
            .any(|x| x == "*" || x.ends_with("/status") || x.ends_with("/*"))
            && r.any_verb(&["update", "patch"])
        {
            out.push(format!(
                "{what}: writing a status forges what controllers and users read"
            ));
        }
        if r.group("") && r.resource("namespaces") && r.any_verb(WRITE) {
            out.push(format!(
                "{what}: the tenant's Namespace objects are the platform's (their labels select policies)"
            ));
        }
        if r.group("") && r.resource("endpoints") && r.any_verb(&["create", "update", "patch"]) {
            out.push(format!(
                "{what}: hand-written Endpoints send a Service's traffic anywhere"
            ));
        }
        if r.group("discovery.k8s.io")
            && r.resource("endpointslices")
            && r.any_verb(&["create", "update", "patch"])
        {
            out.push(format!(
                "{what}: hand-written EndpointSlices send a Service's traffic anywhere"
            ));
        }
    }
    out
}

/// The rules in `rules` beyond what Kubernetes itself grants every authenticated user
/// (`system:basic-user`: creating reviews of one's own access and identity), as the API server writes
/// them. Anything else in a namespace's baseline was granted to everyone by someone.
#[must_use]
pub fn beyond_defaults(rules: &[Rule]) -> Vec<String> {
    const OWN_REVIEWS: &[&str] = &[
        "selfsubjectaccessreviews",
        "selfsubjectrulesreviews",
        "selfsubjectreviews",
    ];
    rules
        .iter()
        .filter(|r| !r.verbs.is_empty() && !r.resources.is_empty())
        .filter(|r| {
            !(r.verbs.iter().all(|v| v == "create")
                && r.api_groups
                    .iter()
                    .all(|g| g == "authorization.k8s.io" || g == "authentication.k8s.io")
                && r.resources
                    .iter()
                    .all(|x| OWN_REVIEWS.contains(&x.as_str())))
        })
        .map(Rule::describe)
        .collect()
}

/// What an identity may do in a namespace beyond what every authenticated user may (`baseline`).
#[must_use]
pub fn beyond_baseline(rules: &[Rule], baseline: &[Rule]) -> Vec<String> {
    rules
        .iter()
        .filter(|r| !baseline.contains(r))
        .filter(|r| !r.verbs.is_empty() && !r.resources.is_empty())
        .map(Rule::describe)
        .collect()
}

/// A request: (verb, API group, resource, subresource).
pub type Request = (&'static str, &'static str, &'static str, &'static str);

/// The cluster-scoped requests no tenant identity may be allowed.
pub const CLUSTER_REQUESTS: &[Request] = &[
    ("create", "", "namespaces", ""),
    ("update", "", "nodes", ""),
    ("get", "", "nodes", "proxy"),
    ("create", "", "persistentvolumes", ""),
    ("create", "rbac.authorization.k8s.io", "clusterroles", ""),
    (
        "create",
        "rbac.authorization.k8s.io",
        "clusterrolebindings",
        "",
    ),
    (
        "create",
        "apiextensions.k8s.io",
        "customresourcedefinitions",
        "",
    ),
    (
        "create",
        "admissionregistration.k8s.io",
        "validatingwebhookconfigurations",
        "",
    ),
    (
        "create",
        "admissionregistration.k8s.io",
        "mutatingwebhookconfigurations",
        "",
    ),
    (
        "delete",
        "admissionregistration.k8s.io",
        "validatingadmissionpolicies",
        "",
    ),
    ("create", "scheduling.k8s.io", "priorityclasses", ""),
    ("create", "storage.k8s.io", "storageclasses", ""),
    ("create", "node.k8s.io", "runtimeclasses", ""),
    ("create", "kubebid.io", "tenants", ""),
    ("create", "kubebid.io", "policyexceptions", ""),
    ("impersonate", "", "users", ""),
    ("impersonate", "", "groups", ""),
];

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(verbs: &[&str], groups: &[&str], resources: &[&str]) -> Rule {
        Rule {
            verbs: verbs.iter().map(|s| (*s).to_owned()).collect(),
            api_groups: groups.iter().map(|s| (*s).to_owned()).collect(),
            resources: resources.iter().map(|s| (*s).to_owned()).collect(),
            resource_names: Vec::new(),
        }
    }

    #[test]
    fn wildcards_reach_every_subresource() {
        // `*` grants pods/binding and every */status: the neighbours of a rule, not just its name.
        let star = rule(&["*"], &["*"], &["*"]);
        let f = forbidden_in_own(&[star], &[]);
        assert!(f.iter().any(|x| x.contains("pods/binding")));
        assert!(f.iter().any(|x| x.contains("status")));
        assert!(f.iter().any(|x| x.contains("Namespace objects")));
        assert!(f.iter().any(|x| x.contains("escalate")));
        let pods_star = rule(&["create"], &[""], &["pods/*"]);
        assert!(
            forbidden_in_own(&[pods_star], &[])
                .iter()
                .any(|x| x.contains("pods/binding"))
        );
        // What a tenant-admin should hold passes.
        let fine = [
            rule(
                &[
                    "get", "list", "watch", "create", "update", "patch", "delete",
                ],
                &[""],
                &["pods", "services", "configmaps", "secrets"],
            ),
            rule(&["create"], &[""], &["pods/exec"]),
            rule(&["get"], &[""], &["namespaces"]),
        ];
        assert_eq!(forbidden_in_own(&fine, &[]), Vec::<String>::new());
    }

    #[test]
    fn bind_is_expected_only_on_the_cluster_roles_tenants_may_bind() {
        let view = vec!["view".to_owned()];
        let mut bind_view = rule(&["bind"], &["rbac.authorization.k8s.io"], &["clusterroles"]);
        bind_view.resource_names = view.clone();
        assert!(forbidden_in_own(std::slice::from_ref(&bind_view), &view).is_empty());
        // Not in the configuration's list: a finding.
        assert_eq!(
            forbidden_in_own(std::slice::from_ref(&bind_view), &[]).len(),
            1
        );
        // On every ClusterRole (no names), or with escalate beside it: a finding whatever the list.
        let mut any = bind_view.clone();
        any.resource_names.clear();
        assert_eq!(forbidden_in_own(&[any], &view).len(), 1);
        let mut escalate = bind_view;
        escalate.verbs.push("escalate".into());
        assert_eq!(forbidden_in_own(&[escalate], &view).len(), 1);
    }

    #[test]
    fn only_what_everyone_has_is_allowed_elsewhere() {
        let base = vec![rule(
            &["create"],
            &["authorization.k8s.io"],
            &["selfsubjectrulesreviews"],
        )];
        let mut mine = base.clone();
        assert!(beyond_baseline(&mine, &base).is_empty());
        mine.push(rule(&["get"], &[""], &["secrets"]));
        assert_eq!(
            beyond_baseline(&mine, &base),
            vec!["get on secrets".to_owned()]
        );
    }
}
