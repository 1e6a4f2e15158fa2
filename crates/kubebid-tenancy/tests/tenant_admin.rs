//! The rendered `tenant-admin` Role, enumerated grant by grant: every (group, resource, verb) it gives, checked
//! against what a tenant must never hold. A namespaced Role that covers `namespaces` grants the Namespace
//! object itself; `*` grants every subresource (`pods/binding`, `*/status`, `serviceaccounts/token`) and every
//! resource a later Kubernetes adds. The same check fails on the wildcard Role KubeBid used to render.

// Test helpers fail the test by panicking on broken fixtures; that is their job.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::collections::BTreeSet;

use kubebid_model::KubeBidConfigSpec;
use kubebid_model::load::ConfigSet;
use kubebid_tenancy::render;
use serde_json::{Value, json};

const WRITE: &[&str] = &["create", "update", "patch", "delete", "deletecollection"];

/// Resources of the core groups a Kubernetes 1.35 API server serves in a namespace or cluster-wide, with their
/// subresources (`kubectl api-resources` and the discovery documents): what `*` would grant.
const CATALOGUE: &[(&str, &str)] = &[
    ("", "bindings"),
    ("", "configmaps"),
    ("", "endpoints"),
    ("", "events"),
    ("", "limitranges"),
    ("", "limitranges/status"),
    ("", "namespaces"),
    ("", "namespaces/finalize"),
    ("", "namespaces/status"),
    ("", "nodes"),
    ("", "nodes/proxy"),
    ("", "nodes/status"),
    ("", "persistentvolumeclaims"),
    ("", "persistentvolumeclaims/status"),
    ("", "persistentvolumes"),
    ("", "pods"),
    ("", "pods/attach"),
    ("", "pods/binding"),
    ("", "pods/ephemeralcontainers"),
    ("", "pods/eviction"),
    ("", "pods/exec"),
    ("", "pods/log"),
    ("", "pods/portforward"),
    ("", "pods/proxy"),
    ("", "pods/resize"),
    ("", "pods/status"),
    ("", "podtemplates"),
    ("", "replicationcontrollers"),
    ("", "replicationcontrollers/scale"),
    ("", "replicationcontrollers/status"),
    ("", "resourcequotas"),
    ("", "resourcequotas/status"),
    ("", "secrets"),
    ("", "serviceaccounts"),
    ("", "serviceaccounts/token"),
    ("", "services"),
    ("", "services/proxy"),
    ("", "services/status"),
    ("apps", "controllerrevisions"),
    ("apps", "daemonsets"),
    ("apps", "daemonsets/status"),
    ("apps", "deployments"),
    ("apps", "deployments/scale"),
    ("apps", "deployments/status"),
    ("apps", "replicasets"),
    ("apps", "replicasets/scale"),
    ("apps", "replicasets/status"),
    ("apps", "statefulsets"),
    ("apps", "statefulsets/scale"),
    ("apps", "statefulsets/status"),
    ("batch", "cronjobs"),
    ("batch", "cronjobs/status"),
    ("batch", "jobs"),
    ("batch", "jobs/status"),
    ("discovery.k8s.io", "endpointslices"),
    ("networking.k8s.io", "ingresses"),
    ("networking.k8s.io", "ingresses/status"),
    ("networking.k8s.io", "networkpolicies"),
    ("autoscaling", "horizontalpodautoscalers"),
    ("autoscaling", "horizontalpodautoscalers/status"),
    ("rbac.authorization.k8s.io", "roles"),
    ("rbac.authorization.k8s.io", "rolebindings"),
    ("rbac.authorization.k8s.io", "clusterroles"),
    ("rbac.authorization.k8s.io", "clusterrolebindings"),
];

/// Cluster-scoped resources: a tenant holds none of them.
const CLUSTER_SCOPED: &[&str] = &[
    "namespaces",
    "nodes",
    "persistentvolumes",
    "clusterroles",
    "clusterrolebindings",
];

/// Every (group, resource, verb) a Role's rules grant, `*` expanded against the catalogue (and kept, so that
/// a wildcard itself is seen).
fn grants(rules: &[Value]) -> BTreeSet<(String, String, String)> {
    let mut out = BTreeSet::new();
    let verbs_all = [
        "get",
        "list",
        "watch",
        "create",
        "update",
        "patch",
        "delete",
        "deletecollection",
        "escalate",
        "bind",
        "impersonate",
    ];
    for r in rules {
        let list = |k: &str| -> Vec<String> {
            r[k].as_array()
                .into_iter()
                .flatten()
                .map(|v| v.as_str().unwrap().to_owned())
                .collect()
        };
        for g in list("apiGroups") {
            for res in list("resources") {
                for v in list("verbs") {
                    let verbs: Vec<String> = if v == "*" {
                        verbs_all
                            .iter()
                            .map(|s| (*s).to_owned())
                            .chain(["*".into()])
                            .collect()
                    } else {
                        vec![v.clone()]
                    };
                    let resources: Vec<String> = if res == "*" {
                        CATALOGUE
                            .iter()
                            .filter(|(cg, _)| *cg == g || g == "*")
                            .map(|(_, r)| (*r).to_owned())
                            .chain(["*".into()])
                            .collect()
                    } else {
                        vec![res.clone()]
                    };
                    for res in &resources {
                        for v in &verbs {
                            out.insert((g.clone(), res.clone(), v.clone()));
                        }
                    }
                }
            }
        }
    }
    out
}

/// Why a grant must never be a tenant's, if it must not.
fn danger(group: &str, resource: &str, verb: &str) -> Option<&'static str> {
    let write = WRITE.contains(&verb) || verb == "*";
    if group == "*" || resource == "*" || verb == "*" {
        Some("a wildcard grants every present and future resource, subresource or verb")
    } else if CLUSTER_SCOPED.contains(&resource.split('/').next().unwrap_or_default()) {
        Some("cluster-scoped (a namespaced Role covering namespaces grants the Namespace itself)")
    } else if resource == "bindings" || resource == "pods/binding" {
        Some("binds pods to nodes past the scheduler")
    } else if resource.ends_with("/status") || resource == "namespaces/finalize" {
        Some("status is the platform's (quota usage, pod addresses, load-balancer addresses)")
    } else if (resource == "endpoints" || resource == "endpointslices") && write {
        Some("hand-written endpoints reach other tenants' pods (CVE-2021-25740)")
    } else if (resource == "resourcequotas" || resource == "limitranges") && write {
        Some("quotas and limits are the platform's")
    } else if ["impersonate", "escalate", "bind"].contains(&verb) {
        Some("grants more than its holder has")
    } else if resource.ends_with("/proxy") {
        Some("the API server's proxy reaches addresses past network policy")
    } else {
        None
    }
}

/// The one rule that names resources: `bind` on the ClusterRoles tenants may bind, and nothing else. Taken
/// out of the rules so that the remaining ones are checked as wholes.
fn split_bind_rule(rules: Vec<Value>) -> (Vec<Value>, Vec<Value>) {
    rules
        .into_iter()
        .partition(|r| r.get("resourceNames").is_some())
}

fn tenant_admin() -> Vec<Value> {
    tenant_admin_under(&KubeBidConfigSpec::default())
}

fn tenant_admin_under(cluster: &KubeBidConfigSpec) -> Vec<Value> {
    let mut set = ConfigSet::default();
    assert!(
        set.add_text(
            "t.yaml",
            "apiVersion: kubebid.io/v1alpha1\nkind: Tenant\nmetadata: {name: acme}\nspec:\n  namespaces: [acme]\n  owners: [{kind: User, name: alice}]\n"
        )
        .is_empty()
    );
    let objects = render::tenant(&set.tenants[0].object, cluster).unwrap();
    let role = objects
        .iter()
        .find(|o| o["kind"] == "Role" && o["metadata"]["name"] == render::ADMIN_ROLE)
        .unwrap();
    role["rules"].as_array().unwrap().clone()
}

#[test]
fn tenant_admin_grants_nothing_dangerous() {
    let (named, rules) = split_bind_rule(tenant_admin());
    let allowed = KubeBidConfigSpec::default().allowed_cluster_roles;
    assert_eq!(
        named,
        vec![json!({
            "apiGroups": ["rbac.authorization.k8s.io"],
            "resources": ["clusterroles"],
            "verbs": ["bind"],
            "resourceNames": allowed,
        })],
        "only bind on the allowed ClusterRoles may name resources"
    );
    let all = grants(&rules);
    let bad: Vec<String> = all
        .iter()
        .filter_map(|(g, r, v)| danger(g, r, v).map(|why| format!("{v} {g}/{r}: {why}")))
        .collect();
    assert!(bad.is_empty(), "tenant-admin grants:\n{}", bad.join("\n"));
    // What a tenant needs to run workloads is there.
    for (g, r, v) in [
        ("", "pods", "create"),
        ("", "pods/exec", "create"),
        ("", "pods/log", "get"),
        ("", "secrets", "update"),
        ("", "services", "create"),
        ("", "serviceaccounts/token", "create"),
        ("", "resourcequotas", "get"),
        ("apps", "deployments", "patch"),
        ("apps", "deployments/scale", "update"),
        ("batch", "cronjobs", "delete"),
        ("networking.k8s.io", "networkpolicies", "create"),
        ("networking.k8s.io", "ingresses", "update"),
        ("discovery.k8s.io", "endpointslices", "list"),
        ("rbac.authorization.k8s.io", "rolebindings", "create"),
        ("coordination.k8s.io", "leases", "update"),
        ("", "events", "create"),
        ("events.k8s.io", "events", "patch"),
    ] {
        assert!(
            all.contains(&(g.to_owned(), r.to_owned(), v.to_owned())),
            "tenant-admin lacks {v} {g}/{r}"
        );
    }
    // Everything in the catalogue is either granted on purpose or left out: print what is left out.
    let left_out: Vec<String> = CATALOGUE
        .iter()
        .filter(|(g, r)| !all.iter().any(|(ag, ar, _)| ag == g && ar == r))
        .map(|(g, r)| format!("{g}/{r}"))
        .collect();
    println!("tenant-admin leaves out: {}", left_out.join(", "));
    for must in [
        "/namespaces",
        "/bindings",
        "/pods/binding",
        "/resourcequotas/status",
        "/pods/status",
    ] {
        assert!(left_out.iter().any(|l| l.ends_with(must)), "{must} granted");
    }
}

/// The check is not vacuous: the Role KubeBid rendered before (`*` on the core, apps and batch groups) fails
/// it on exactly the grants that were used to escape.
#[test]
fn the_wildcard_role_fails_the_same_check() {
    let old = vec![
        json!({"apiGroups": ["", "apps", "batch"], "resources": ["*"], "verbs": ["*"]}),
        json!({"apiGroups": ["networking.k8s.io"], "resources": ["networkpolicies"], "verbs": ["get", "list", "create", "update", "delete"]}),
    ];
    let bad: BTreeSet<(String, String)> = grants(&old)
        .into_iter()
        .filter(|(g, r, v)| danger(g, r, v).is_some())
        .map(|(g, r, _)| (g, r))
        .collect();
    for (g, r) in [
        ("", "namespaces"),
        ("", "pods/binding"),
        ("", "bindings"),
        ("", "resourcequotas/status"),
        ("", "endpoints"),
        ("", "*"),
    ] {
        assert!(
            bad.contains(&(g.to_owned(), r.to_owned())),
            "{g}/{r} not caught"
        );
    }
}

/// An empty `resourceNames` means every ClusterRole: with no ClusterRole allowed, no `bind` is granted at
/// all rather than one without names.
#[test]
fn no_allowed_cluster_roles_means_no_bind() {
    let cluster = KubeBidConfigSpec {
        allowed_cluster_roles: Vec::new(),
        ..KubeBidConfigSpec::default()
    };
    let rules = tenant_admin_under(&cluster);
    assert!(
        !rules
            .iter()
            .any(|r| r["verbs"].as_array().unwrap().iter().any(|v| v == "bind")),
        "{rules:?}"
    );
}

/// The cluster configuration cannot hand tenants a ClusterRole that is `*` in their namespace.
#[test]
fn cluster_admin_cannot_be_allowed() {
    for role in [
        "cluster-admin",
        "admin",
        "edit",
        "system:controller:namespace-controller",
        "*",
    ] {
        let cluster = KubeBidConfigSpec {
            allowed_cluster_roles: vec!["view".into(), role.into()],
            ..KubeBidConfigSpec::default()
        };
        let errors = cluster.validate();
        assert!(
            errors
                .iter()
                .any(|e| e.path == "spec.allowedClusterRoles[1]"),
            "{role}: {errors:?}"
        );
    }
}

/// Every kind tenant-admin may create is counted by the default quota, so that no tenant can fill the
/// etcd every tenant shares with objects of a kind nobody counts.
#[test]
fn every_kind_tenant_admin_creates_is_counted() {
    let quota = kubebid_model::TenantSpec::builtin_default().quota;
    let rules = tenant_admin();
    let mut uncounted = Vec::new();
    for (g, r, v) in grants(&rules) {
        if v != "create" || r.contains('/') {
            continue;
        }
        let count = if g.is_empty() {
            format!("count/{r}")
        } else {
            format!("count/{r}.{g}")
        };
        // The core kinds quotas have counted by their plain names since before `count/`.
        let legacy = g.is_empty()
            && matches!(
                r.as_str(),
                "pods"
                    | "configmaps"
                    | "secrets"
                    | "services"
                    | "persistentvolumeclaims"
                    | "replicationcontrollers"
            );
        if !(quota.contains_key(&count) || (legacy && quota.contains_key(&r))) {
            uncounted.push(count);
        }
    }
    assert!(
        uncounted.is_empty(),
        "not counted by the default quota: {uncounted:?}"
    );
}
