//! The reconciler against a real API server, when KUBECONFIG is set (a kind or k3d cluster will do; the
//! account needs to create CRDs, namespaces and RBAC). Without it every test here says so and passes
//! without doing anything; `scripts/test` prints a line about it.
//!
//! The suite installs KubeBid's CRDs, creates a Tenant with a unique name, reconciles it (everything is
//! created), reconciles again (no writes), deletes and edits managed objects (restored), and finally
//! deletes the Tenant and its namespace.

// Test helpers fail the test by panicking on broken fixtures; that is their job.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::{Client, CustomResourceExt};
use kubebid_model::config::{KubeBidConfig, PolicyException, Tenant};
use kubebid_tenancy::operator::reconcile_tenant;
use serde_json::json;

async fn cluster() -> Option<Client> {
    if std::env::var_os("KUBECONFIG").is_none() {
        eprintln!("SKIPPED real_cluster: KUBECONFIG is not set");
        return None;
    }
    Some(Client::try_default().await.expect("kubeconfig loads"))
}

async fn install_crds(client: &Client) {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    for crd in [KubeBidConfig::crd(), Tenant::crd(), PolicyException::crd()] {
        let name = crd.metadata.name.clone().unwrap();
        crds.patch(
            &name,
            &PatchParams::apply("kubebid-test").force(),
            &Patch::Apply(&crd),
        )
        .await
        .unwrap();
    }
    // Established before use.
    for _ in 0..60 {
        let t = crds.get("tenants.kubebid.io").await.unwrap();
        let established = t.status.and_then(|s| s.conditions).is_some_and(|c| {
            c.iter()
                .any(|c| c.type_ == "Established" && c.status == "True")
        });
        if established {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
    panic!("the Tenant CRD was not established");
}

#[tokio::test]
async fn real_cluster_create_no_op_repair_and_delete() {
    let Some(client) = cluster().await else {
        return;
    };
    install_crds(&client).await;
    let suffix = format!("{:x}", std::process::id());
    let name = format!("kubebid-e2e-{suffix}");
    let ns = format!("kubebid-e2e-{suffix}");
    let tenants: Api<Tenant> = Api::all(client.clone());
    let tenant: Tenant = serde_json::from_value(json!({
        "apiVersion": "kubebid.io/v1alpha1", "kind": "Tenant", "metadata": {"name": name},
        "spec": {"namespaces": [ns], "owners": [{"kind": "User", "name": "e2e@example.com"}], "deleteNamespaces": true}
    }))
    .unwrap();
    let tenant = tenants
        .create(&PostParams::default(), &tenant)
        .await
        .unwrap();
    let cluster_spec = Default::default();

    let first = reconcile_tenant(&tenant, &cluster_spec, &client)
        .await
        .unwrap();
    assert!(!first.created.is_empty(), "{first:?}");
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let created = namespaces.get(&ns).await.unwrap();
    assert_eq!(
        created.metadata.labels.unwrap()["kubebid.io/tenant"],
        name.as_str()
    );

    // The Tenant as stored now, with its status: nothing to write.
    let tenant = tenants.get(&name).await.unwrap();
    let again = reconcile_tenant(&tenant, &cluster_spec, &client)
        .await
        .unwrap();
    assert!(
        again.created.is_empty() && again.repaired.is_empty(),
        "{again:?}"
    );

    // Drift: the default deny is deleted; the next reconcile creates it again.
    let policies: Api<NetworkPolicy> = Api::namespaced(client.clone(), &ns);
    policies
        .delete("default-deny-all", &DeleteParams::default())
        .await
        .unwrap();
    let repaired = reconcile_tenant(&tenant, &cluster_spec, &client)
        .await
        .unwrap();
    assert_eq!(
        repaired.created,
        [format!("NetworkPolicy {ns}/default-deny-all")]
    );
    policies.get("default-deny-all").await.unwrap();

    // Deletion: the Tenant goes; the garbage collector removes what it owned, namespace included.
    tenants
        .delete(&name, &DeleteParams::foreground())
        .await
        .unwrap();
    for _ in 0..120 {
        match namespaces.get_opt(&ns).await.unwrap() {
            None => return,
            Some(n) if n.metadata.deletion_timestamp.is_some() => return,
            Some(_) => tokio::time::sleep(std::time::Duration::from_millis(500)).await,
        }
    }
    panic!("namespace {ns} outlived its Tenant");
}
