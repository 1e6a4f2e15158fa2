//! Renderer tests: golden output for the example tenants, every rendered object decodes as its Kubernetes
//! kind, and what KubeBid renders for a tenant passes KubeBid's own rules for that tenant ("one policy,
//! many doors": the platform never writes what it would refuse from a tenant, labels aside).

// Test helpers fail the test by panicking on broken fixtures; that is their job.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::path::PathBuf;

use k8s_openapi::api::core::v1::Service;
use kubebid_model::emit::to_yaml_stream;
use kubebid_model::load::ConfigSet;
use kubebid_model::{KubeBidConfigSpec, Object};
use kubebid_policy::{PolicySet, Request};
use kubebid_tenancy::render;
use serde_json::{Value, json};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn example() -> ConfigSet {
    let mut set = ConfigSet::default();
    for f in ["kubebid.yaml", "exceptions.yaml"] {
        let p = root().join("examples/config").join(f);
        let errs = set.add_text(
            &p.display().to_string(),
            &std::fs::read_to_string(&p).unwrap(),
        );
        assert!(errs.is_empty(), "{errs:?}");
    }
    set
}

fn cluster_of(set: &ConfigSet) -> KubeBidConfigSpec {
    set.cluster_spec()
}

/// Every tenant of `set` rendered against the model of all of them, with `services` for shared grants.
fn rendered(set: &ConfigSet, services: &[Service]) -> Vec<(String, Vec<Value>)> {
    let cluster = cluster_of(set);
    let model = set.tenancy();
    let renderer = render::TenantRenderer::new(&cluster, &model).with_services(services);
    set.tenants
        .iter()
        .map(|t| {
            (
                t.object.metadata.name.clone().unwrap(),
                renderer.render(&t.object).unwrap().objects,
            )
        })
        .collect()
}

#[test]
fn golden_output_for_the_example_tenants() {
    let set = example();
    let cluster = cluster_of(&set);
    let update = std::env::var_os("KUBEBID_UPDATE_GOLDEN").is_some();
    let mut files = vec![(
        "cluster.yaml",
        to_yaml_stream(&render::cluster(&cluster)).unwrap(),
    )];
    let mut names = Vec::new();
    for (name, objects) in rendered(&set, &[registry()]) {
        names.push(format!("tenant-{name}.yaml"));
        files.push((
            Box::leak(names.last().unwrap().clone().into_boxed_str()),
            to_yaml_stream(&objects).unwrap(),
        ));
    }
    let tenants: Vec<_> = set.tenants.iter().map(|t| t.object.clone()).collect();
    files.push((
        "audit-policy.yaml",
        to_yaml_stream(&[render::audit_policy(&tenants)]).unwrap(),
    ));
    files.push((
        "encryption-config.yaml",
        to_yaml_stream(&[render::encryption_config()]).unwrap(),
    ));
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
    for (file, text) in files {
        let path = dir.join(file);
        if update {
            std::fs::write(&path, &text).unwrap();
        }
        let golden = std::fs::read_to_string(&path).unwrap_or_else(|_| {
            panic!(
                "{} missing; run with KUBEBID_UPDATE_GOLDEN=1",
                path.display()
            )
        });
        assert!(
            golden == text,
            "{} differs from the renderer's output; review, then run with KUBEBID_UPDATE_GOLDEN=1",
            path.display()
        );
    }
}

#[test]
fn every_object_is_labelled_and_decodes_as_its_kind() {
    let set = example();
    let cluster = cluster_of(&set);
    for (t, (name, objects)) in set.tenants.iter().zip(rendered(&set, &[])) {
        // One Namespace per namespace, then the same set of objects in each.
        let namespaces = objects.iter().filter(|o| o["kind"] == "Namespace").count();
        assert_eq!(namespaces, t.object.spec.namespaces.len());
        for o in &objects {
            assert_eq!(o["metadata"]["labels"]["kubebid.io/managed"], "true", "{o}");
            assert_eq!(
                o["metadata"]["labels"]["kubebid.io/tenant"],
                name.as_str(),
                "{o}"
            );
            let decoded =
                Object::from_value(o.clone()).unwrap_or_else(|e| panic!("{}: {e}", o["kind"]));
            assert!(decoded.is_known_kind(), "{}", o["kind"]);
        }
        for ns in &t.object.spec.namespaces {
            for kind_name in [
                ("NetworkPolicy", "default-deny-all"),
                ("NetworkPolicy", "allow-cluster-dns"),
                ("Role", "tenant-admin"),
                ("ResourceQuota", "tenant-quota"),
                ("LimitRange", "tenant-limits"),
            ] {
                assert!(
                    objects.iter().any(|o| o["kind"] == kind_name.0
                        && o["metadata"]["name"] == kind_name.1
                        && o["metadata"]["namespace"] == ns.as_str()),
                    "{name}/{ns}: {kind_name:?}"
                );
            }
        }
    }
    for o in render::cluster(&cluster) {
        assert_eq!(o["metadata"]["labels"]["kubebid.io/managed"], "true");
    }
    let rc = &render::cluster(&cluster)[0];
    assert_eq!(
        (
            rc["handler"].as_str(),
            rc["scheduling"]["nodeSelector"]["kubebid.io/secure-runtime"].as_str()
        ),
        (Some("kata-fc"), Some("true"))
    );
    assert_eq!(
        render::encryption_config()["resources"][0]["providers"][0]["kms"]["name"],
        "kubebid-kms"
    );
}

#[test]
fn what_kubebid_renders_passes_its_own_rules() {
    let set = example();
    let policy = PolicySet::from_config(&set).unwrap();
    // Judged as the platform writes them (a cluster admin here; KubeBid's own account is not judged at
    // all): only the rules on who may touch the platform's objects are set aside.
    let admins = ["system:masters".to_owned()];
    for (_, objects) in rendered(&set, &[registry()]) {
        // Except the one policy no rule can judge on its own: egress to a shared Service's pods, which
        // only the platform (reading the Service) knows. A tenant writing it would be refused.
        for o in objects
            .into_iter()
            .filter(|o| o["metadata"]["name"] != "allow-shared-services")
        {
            let object = Object::from_value(o.clone()).unwrap();
            let d = policy.evaluate(&Request {
                user: Some("admin"),
                groups: &admins,
                ..Request::create(&object)
            });
            let problems: Vec<_> = d
                .findings
                .iter()
                .map(|f| format!("{} {}: {}", f.rule.id, f.path, f.message))
                .collect();
            assert!(
                problems.is_empty(),
                "{} {}/{}: {problems:?}",
                o["kind"],
                o["metadata"]["namespace"],
                o["metadata"]["name"]
            );
        }
    }
}

/// The platform's registry Service that globex's `sharedServices: [platform/registry]` names.
fn registry() -> Service {
    serde_json::from_value(json!({"apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "registry", "namespace": "platform"},
        "spec": {"selector": {"app": "registry"}, "ports": [
            {"name": "https", "port": 443, "targetPort": 5000},
            {"name": "metrics", "port": 9090, "targetPort": "metrics", "protocol": "TCP"}]}}))
    .unwrap()
}

/// Every namespace selector of every rendered policy pins namespaces by `kubernetes.io/metadata.name`, the
/// label the API server sets and nobody can change; none trusts `kubebid.io/tenant` or any other label.
#[test]
fn rendered_policies_select_namespaces_by_name_only() {
    let set = example();
    let mut selectors = 0;
    for (_, objects) in rendered(&set, &[registry()]) {
        for o in objects.iter().filter(|o| o["kind"] == "NetworkPolicy") {
            for dir in ["ingress", "egress"] {
                for rule in o["spec"][dir].as_array().into_iter().flatten() {
                    for peer in rule["from"]
                        .as_array()
                        .or(rule["to"].as_array())
                        .into_iter()
                        .flatten()
                    {
                        let Some(sel) = peer.get("namespaceSelector") else {
                            continue;
                        };
                        selectors += 1;
                        let keys: Vec<&str> = sel["matchLabels"]
                            .as_object()
                            .into_iter()
                            .flat_map(|m| m.keys().map(String::as_str))
                            .chain(
                                sel["matchExpressions"]
                                    .as_array()
                                    .into_iter()
                                    .flatten()
                                    .map(|e| e["key"].as_str().unwrap()),
                            )
                            .collect();
                        assert!(
                            !keys.is_empty()
                                && keys.iter().all(|k| *k == "kubernetes.io/metadata.name"),
                            "{}: {sel}",
                            o["metadata"]["name"]
                        );
                    }
                }
            }
        }
    }
    assert!(selectors > 10, "{selectors}");
}

/// `sharedServices: ns/svc` opens egress to that Service's pods and ports only, never its whole namespace;
/// without the Service (offline, or deleted) nothing is opened and the render says so.
#[test]
fn a_shared_service_opens_its_pods_and_ports_only() {
    let set = example();
    let globex = || {
        rendered(&set, &[registry()])
            .into_iter()
            .find(|(n, _)| n == "globex")
            .unwrap()
            .1
    };
    let objects = globex();
    let shared = objects
        .iter()
        .find(|o| o["metadata"]["name"] == "allow-shared-services")
        .unwrap();
    assert_eq!(
        shared["spec"]["egress"],
        json!([{"to": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "platform"}},
                         "podSelector": {"matchLabels": {"app": "registry"}}}],
                "ports": [{"protocol": "TCP", "port": 5000}, {"protocol": "TCP", "port": "metrics"}]}])
    );
    let cluster = cluster_of(&set);
    let model = set.tenancy();
    let t = set
        .tenants
        .iter()
        .find(|t| t.object.metadata.name.as_deref() == Some("globex"))
        .unwrap();
    let without = render::TenantRenderer::new(&cluster, &model)
        .render(&t.object)
        .unwrap();
    assert!(
        !without
            .objects
            .iter()
            .any(|o| o["metadata"]["name"] == "allow-shared-services")
    );
    assert_eq!(
        without.warnings,
        ["sharedServices platform/registry: the Service does not exist; no egress to it"]
    );
}

/// Egress CIDRs never open what no tenant may reach: `0.0.0.0/0` is rendered with every protected range
/// (metadata, loopback, the cluster's networks) excepted, and a CIDR inside one is refused.
#[test]
fn egress_cidrs_except_protected_ranges() {
    let mut set = ConfigSet::default();
    assert!(set.add_text("t.yaml", "apiVersion: kubebid.io/v1alpha1\nkind: Tenant\nmetadata: {name: a}\nspec:\n  namespaces: [a]\n  egressCidrs: [0.0.0.0/0, 203.0.113.0/24]\n").is_empty());
    let objects = render::tenant(&set.tenants[0].object, &KubeBidConfigSpec::default()).unwrap();
    let egress = objects
        .iter()
        .find(|o| o["metadata"]["name"] == "allow-egress-cidrs")
        .unwrap();
    let to = egress["spec"]["egress"][0]["to"].as_array().unwrap();
    let except: Vec<&str> = to[0]["ipBlock"]["except"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e.as_str().unwrap())
        .collect();
    for range in [
        "169.254.0.0/16",
        "127.0.0.0/8",
        "10.244.0.0/16",
        "10.96.0.0/12",
    ] {
        assert!(except.contains(&range), "{range} not excepted: {except:?}");
    }
    assert!(to[1]["ipBlock"].get("except").is_none());
    let mut inside = set.tenants[0].object.clone();
    inside.spec.egress_cidrs = Some(vec!["169.254.169.254/32".into()]);
    let err = render::tenant(&inside, &KubeBidConfigSpec::default()).unwrap_err();
    assert!(err[0].message.contains("link-local"), "{err:?}");
}

/// The quota agrees with the admission rules: no node ports for anyone, load balancers for the tenants
/// allowed them (globex) and no other, whatever the Tenant's quota says; every container gets an ephemeral
/// storage request and limit, so that the quota on local disk never refuses a pod that names none.
#[test]
fn quotas_agree_with_the_admission_rules() {
    let mut set = example();
    // acme asks for load balancers in its quota without being allowed them.
    for t in &mut set.tenants {
        if t.object.metadata.name.as_deref() == Some("acme") {
            t.object
                .spec
                .quota
                .insert("services.loadbalancers".into(), "5".into());
            t.object
                .spec
                .quota
                .insert("services.nodeports".into(), "3".into());
        }
    }
    for (tenant, objects) in rendered(&set, &[]) {
        for o in objects
            .iter()
            .filter(|o| o["kind"] == "ResourceQuota" && o["metadata"]["name"] == "tenant-quota")
        {
            let hard = &o["spec"]["hard"];
            assert_eq!(hard["services.nodeports"], "0", "{tenant}");
            let lb = &hard["services.loadbalancers"];
            if tenant == "globex" {
                assert!(lb.is_null(), "{tenant}: {lb}");
            } else {
                assert_eq!(lb, "0", "{tenant}");
            }
            assert!(hard["limits.ephemeral-storage"].is_string(), "{tenant}");
        }
        for o in objects.iter().filter(|o| o["kind"] == "LimitRange") {
            let l = &o["spec"]["limits"][0];
            for k in ["default", "defaultRequest", "max"] {
                assert!(l[k]["ephemeral-storage"].is_string(), "{tenant}: {l}");
            }
        }
    }
}
