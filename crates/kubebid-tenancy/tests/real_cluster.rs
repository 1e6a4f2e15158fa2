//! The reconciler against a real API server, when KUBECONFIG is set (a kind or k3d cluster will do). Without it
//! every test here prints SKIPPED and passes without doing anything; `scripts/test` prints a line about it.
//!
//! The account needs to create CRDs, namespaces and RBAC, and to impersonate users. KubeBid may be installed
//! in the cluster (its webhook judging these requests): the account must then act for the platform (a
//! cluster admin, `system:masters`), as the operator's own account does.
//!
//! The suite installs KubeBid's CRDs, creates a Tenant with a unique name and owner, reconciles it, checks
//! that a second reconcile writes nothing, that deleted and widened managed objects are restored, that a
//! narrowed Tenant is pruned, that the rendered `tenant-admin` Role does not let its owner touch the
//! Namespace, bind pods to nodes or write quota status or endpoints, and finally deletes the Tenant and its
//! namespace. Whatever happens, it cleans up after itself, and it removes what earlier failed runs left.

// Test helpers fail the test by panicking on broken fixtures; that is their job.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::time::Duration;

use futures::FutureExt;
use k8s_openapi::api::core::v1::{Endpoints, Namespace, Pod, ResourceQuota};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, CustomResourceExt};
use kubebid_model::config::{KubeBidConfig, PolicyException, Tenant};
use kubebid_tenancy::operator::{TenantOutcome, cluster_config, reconcile_tenant};
use kubebid_tenancy::reconcile::Outcome;
use serde_json::json;

/// Label on everything this suite creates, so that a later run can remove what a failed one left.
const E2E_LABEL: &str = "kubebid.io/e2e";

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
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    panic!("the Tenant CRD was not established");
}

/// Deletes every Tenant (and namespace) an earlier run of this suite left behind: by label, and by name
/// for runs from before the label.
async fn remove_leftovers(client: &Client) {
    let ours = |name: Option<&str>| name.is_some_and(|n| n.starts_with("kubebid-e2e-"));
    let tenants: Api<Tenant> = Api::all(client.clone());
    for t in tenants.list(&ListParams::default()).await.unwrap() {
        let labelled = t
            .metadata
            .labels
            .as_ref()
            .is_some_and(|l| l.contains_key(E2E_LABEL));
        if labelled || ours(t.metadata.name.as_deref()) {
            let _ = tenants
                .delete(
                    t.metadata.name.as_deref().unwrap(),
                    &DeleteParams::foreground(),
                )
                .await;
        }
    }
    let namespaces: Api<Namespace> = Api::all(client.clone());
    for ns in namespaces.list(&ListParams::default()).await.unwrap() {
        if ours(ns.metadata.name.as_deref()) {
            let _ = namespaces
                .delete(
                    ns.metadata.name.as_deref().unwrap(),
                    &DeleteParams::default(),
                )
                .await;
        }
    }
}

async fn reconcile(client: &Client, name: &str) -> Outcome {
    let tenants: Api<Tenant> = Api::all(client.clone());
    let all: Vec<Tenant> = tenants.list(&ListParams::default()).await.unwrap().items;
    let configs: Api<KubeBidConfig> = Api::all(client.clone());
    let (store, mut writer) = kube::runtime::reflector::store::<KubeBidConfig>();
    for c in configs.list(&ListParams::default()).await.unwrap().items {
        writer.apply_watcher_event(&kube::runtime::watcher::Event::Apply(c));
    }
    let spec = cluster_config(&store);
    let model = kubebid_model::Tenancy::new(&spec, &all);
    let tenant = tenants.get(name).await.unwrap();
    match reconcile_tenant(&tenant, &spec, &model, client)
        .await
        .unwrap()
    {
        TenantOutcome::Applied { outcome, .. } => outcome,
        TenantOutcome::Invalid(problems) => panic!("the test Tenant is invalid here: {problems:?}"),
    }
}

/// A client that acts as `user` (impersonation), as a tenant owner would.
async fn as_user(user: &str) -> Client {
    let mut config = kube::Config::infer().await.unwrap();
    config.auth_info.impersonate = Some(user.to_owned());
    Client::try_from(config).unwrap()
}

fn forbidden<T: std::fmt::Debug>(r: Result<T, kube::Error>, what: &str) {
    match r {
        Err(kube::Error::Api(s)) if s.code == 403 => {}
        other => panic!("{what}: expected 403 Forbidden, got {other:?}"),
    }
}

async fn scenario(client: Client, name: String, ns: String, owner: String) {
    let tenants: Api<Tenant> = Api::all(client.clone());
    let tenant: Tenant = serde_json::from_value(json!({
        "apiVersion": "kubebid.io/v1alpha1", "kind": "Tenant",
        "metadata": {"name": name, "labels": {E2E_LABEL: "true"}},
        "spec": {"namespaces": [ns], "owners": [{"kind": "User", "name": owner}], "deleteNamespaces": true,
                 "egressCidrs": ["203.0.113.0/24"]}
    }))
    .unwrap();
    tenants
        .create(&PostParams::default(), &tenant)
        .await
        .unwrap();

    let first = reconcile(&client, &name).await;
    assert!(!first.created.is_empty(), "{first:?}");
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let created = namespaces.get(&ns).await.unwrap();
    assert_eq!(
        created.metadata.labels.unwrap()["kubebid.io/tenant"],
        name.as_str()
    );
    let again = reconcile(&client, &name).await;
    assert!(
        again.created.is_empty() && again.repaired.is_empty() && again.pruned.is_empty(),
        "{again:?}"
    );

    // Drift: the default deny is deleted, then widened by an added rule; each is restored.
    let policies: Api<NetworkPolicy> = Api::namespaced(client.clone(), &ns);
    policies
        .delete("default-deny-all", &DeleteParams::default())
        .await
        .unwrap();
    let repaired = reconcile(&client, &name).await;
    assert_eq!(
        repaired.created,
        [format!("NetworkPolicy {ns}/default-deny-all")]
    );
    policies
        .patch(
            "default-deny-all",
            &PatchParams::default(),
            &Patch::Merge(
                json!({"spec": {"egress": [{"to": [{"ipBlock": {"cidr": "0.0.0.0/0"}}]}],
                "podSelector": {"matchLabels": {"app": "nothing"}}}}),
            ),
        )
        .await
        .unwrap();
    let repaired = reconcile(&client, &name).await;
    assert_eq!(
        repaired.repaired,
        [format!("NetworkPolicy {ns}/default-deny-all")]
    );
    let np = policies
        .get("default-deny-all")
        .await
        .unwrap()
        .spec
        .unwrap();
    assert!(np.egress.unwrap_or_default().is_empty());
    assert!(
        np.pod_selector
            .unwrap_or_default()
            .match_labels
            .unwrap_or_default()
            .is_empty()
    );

    // Narrowing: without egress CIDRs the allow policy goes.
    tenants
        .patch(
            &name,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"egressCidrs": null}})),
        )
        .await
        .unwrap();
    let narrowed = reconcile(&client, &name).await;
    assert_eq!(
        narrowed.pruned,
        [format!("NetworkPolicy {ns}/allow-egress-cidrs")]
    );

    // The owner holds tenant-admin, and it does not reach past the tenant's box.
    let tenant_client = as_user(&owner).await;
    let own_ns: Api<Namespace> = Api::all(tenant_client.clone());
    forbidden(
        own_ns
            .patch(
                &ns,
                &PatchParams::default(),
                &Patch::Merge(json!({"metadata": {"labels": {"kubebid.io/tenant": null}}})),
            )
            .await,
        "relabelling its own namespace",
    );
    forbidden(
        own_ns.delete(&ns, &DeleteParams::default()).await,
        "deleting its own namespace",
    );
    let quotas: Api<ResourceQuota> = Api::namespaced(tenant_client.clone(), &ns);
    forbidden(
        quotas
            .patch_status(
                "tenant-quota",
                &PatchParams::default(),
                &Patch::Merge(json!({"status": {"used": {"pods": "0"}}})),
            )
            .await,
        "writing quota status",
    );
    let endpoints: Api<Endpoints> = Api::namespaced(tenant_client.clone(), &ns);
    forbidden(
        endpoints
            .create(&PostParams::default(), &serde_json::from_value(json!({"metadata": {"name": "x"}, "subsets": [{"addresses": [{"ip": "10.244.0.9"}], "ports": [{"port": 80}]}]})).unwrap())
            .await,
        "writing endpoints",
    );
    let pods: Api<Pod> = Api::namespaced(tenant_client.clone(), &ns);
    forbidden(
        pods.create_subresource::<_, serde_json::Value>(
            "binding",
            "any",
            &PostParams::default(),
            &json!({"apiVersion": "v1", "kind": "Binding", "metadata": {"name": "any"}, "target": {"kind": "Node", "name": "control-plane"}}),
        )
        .await,
        "binding a pod to a node",
    );
    // What it may do: read its quota.
    quotas.get("tenant-quota").await.unwrap();

    // Deletion: the Tenant goes; the garbage collector removes what it owned, namespace included.
    tenants
        .delete(&name, &DeleteParams::foreground())
        .await
        .unwrap();
    for _ in 0..120 {
        match namespaces.get_opt(&ns).await.unwrap() {
            None => return,
            Some(n) if n.metadata.deletion_timestamp.is_some() => return,
            Some(_) => tokio::time::sleep(Duration::from_millis(500)).await,
        }
    }
    panic!("namespace {ns} outlived its Tenant");
}

#[tokio::test]
async fn real_cluster_create_no_op_repair_prune_rbac_and_delete() {
    let Some(client) = cluster().await else {
        return;
    };
    install_crds(&client).await;
    remove_leftovers(&client).await;
    let suffix = format!(
        "{:x}{:x}",
        std::process::id(),
        jiff::Timestamp::now().as_second()
    );
    let name = format!("kubebid-e2e-{suffix}");
    let ns = name.clone();
    let owner = format!("e2e-{suffix}@example.com");
    let run =
        std::panic::AssertUnwindSafe(scenario(client.clone(), name.clone(), ns.clone(), owner))
            .catch_unwind()
            .await;
    // Cleanup whatever happened, then report.
    let tenants: Api<Tenant> = Api::all(client.clone());
    let _ = tenants.delete(&name, &DeleteParams::foreground()).await;
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let _ = namespaces.delete(&ns, &DeleteParams::default()).await;
    if let Err(panic) = run {
        std::panic::resume_unwind(panic);
    }
}
