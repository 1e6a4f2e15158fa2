//! Renderer tests: golden output for the example tenants, every rendered object decodes as its Kubernetes
//! kind, and what KubeBid renders for a tenant passes KubeBid's own rules for that tenant ("one policy,
//! many doors": the platform never writes what it would refuse from a tenant, labels aside).

// Test helpers fail the test by panicking on broken fixtures; that is their job.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::path::PathBuf;

use kubebid_model::emit::to_yaml_stream;
use kubebid_model::load::ConfigSet;
use kubebid_model::{KubeBidConfigSpec, Object};
use kubebid_policy::{PolicySet, Request};
use kubebid_tenancy::render;

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
    set.config
        .as_ref()
        .map(|c| c.object.spec.clone())
        .unwrap_or_default()
}

#[test]
fn golden_output_for_the_example_tenants() {
    let set = example();
    let cluster = cluster_of(&set);
    let update = std::env::var_os("KUBEBID_UPDATE_GOLDEN").is_some();
    let mut files = vec![("cluster.yaml", to_yaml_stream(&render::cluster()).unwrap())];
    let mut names = Vec::new();
    for t in &set.tenants {
        let name = t.object.metadata.name.clone().unwrap();
        names.push(format!("tenant-{name}.yaml"));
        files.push((
            Box::leak(names.last().unwrap().clone().into_boxed_str()),
            to_yaml_stream(&render::tenant(&t.object, &cluster)).unwrap(),
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
    for t in &set.tenants {
        let name = t.object.metadata.name.clone().unwrap();
        let objects = render::tenant(&t.object, &cluster);
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
    for o in render::cluster() {
        assert_eq!(o["metadata"]["labels"]["kubebid.io/managed"], "true");
    }
    let rc = &render::cluster()[0];
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
    let cluster = cluster_of(&set);
    let policy = PolicySet::from_config(&set).unwrap();
    // Labels aside: managed objects and quotas are the platform's to write, which is exactly what those
    // two rules say.
    let platform_only = ["tenant/managed-object", "tenant/quota-change"];
    for t in &set.tenants {
        for o in render::tenant(&t.object, &cluster) {
            let object = Object::from_value(o.clone()).unwrap();
            let d = policy.evaluate(&Request::create(&object));
            let problems: Vec<_> = d
                .findings
                .iter()
                .filter(|f| !platform_only.contains(&f.rule.id))
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
