//! The reconciler at the kube client's HTTP boundary. No API server can run here, so a mock stands in for
//! it (tower-test, `common::ApiServer`) and keeps the objects it is sent; the tests check the exact requests:
//! a new tenant is created with server-side apply (field manager `kubebid`, forced), an unchanged one gets
//! reads only, drift (changed, added or relabelled fields, deleted objects) is repaired object by object,
//! what a narrowed Tenant no longer renders is pruned, an invalid Tenant is not acted on, and an API error or
//! a write conflict stops the reconcile naming the object, with the Tenant marked Degraded.

// Test helpers fail the test by panicking on broken fixtures; that is their job.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

mod common;

use std::sync::{Arc, Mutex};

use common::ApiServer;
use kubebid_model::config::{KubeBidConfigSpec, Tenant};
use kubebid_model::load::ConfigSet;
use kubebid_model::tenancy::Tenancy;
use kubebid_tenancy::operator::{TenantOutcome, reconcile_tenant};
use kubebid_tenancy::reconcile::{ReconcileError, apply_all};
use kubebid_tenancy::render;
use serde_json::json;

fn tenant(text: &str, uid: bool) -> Tenant {
    let mut set = ConfigSet::default();
    let errs = set.add_text("t.yaml", text);
    assert!(errs.is_empty(), "{errs:?}");
    let mut t = set.tenants.remove(0).object;
    if uid {
        t.metadata.uid = Some("5d1c2f7a-0000-4000-8000-00000000abcd".into());
        t.metadata.generation = Some(3);
    }
    t
}

const ACME: &str = "apiVersion: kubebid.io/v1alpha1\nkind: Tenant\nmetadata: {name: acme}\nspec:\n  namespaces: [acme]\n  owners: [{kind: User, name: alice}]\n  egressCidrs: [203.0.113.0/24]\n";

fn acme(uid: bool) -> Tenant {
    tenant(ACME, uid)
}

fn start() -> (Arc<Mutex<ApiServer>>, kube::Client) {
    let state = Arc::new(Mutex::new(ApiServer::default()));
    let client = common::client(state.clone());
    (state, client)
}

const DENY: &str = "/apis/networking.k8s.io/v1/namespaces/acme/networkpolicies/default-deny-all";

#[tokio::test]
async fn create_then_no_op_then_repair_drift_then_stop_on_api_errors() {
    let (state, client) = start();
    let desired = render::tenant(&acme(false), &KubeBidConfigSpec::default()).unwrap();

    // A new tenant: every object is read (404) and then applied.
    let outcome = apply_all(&client, &desired).await.unwrap();
    assert_eq!(outcome.created.len(), desired.len());
    {
        let s = state.lock().unwrap();
        let w = s.writes();
        assert_eq!(w.len(), desired.len());
        for line in &w {
            assert!(line.starts_with("PATCH "), "{line}");
            assert!(
                line.contains("fieldManager=kubebid") && line.contains("force=true"),
                "{line}"
            );
            assert!(line.ends_with("application/apply-patch+yaml"), "{line}");
        }
        assert!(
            s.log[0].starts_with("GET /api/v1/namespaces/acme?"),
            "namespace first: {}",
            s.log[0]
        );
        assert!(
            s.log
                .iter()
                .any(|l| l.starts_with(&format!("PATCH {DENY}?")))
        );
        assert!(s.log.iter().any(|l| l.starts_with("PATCH /apis/rbac.authorization.k8s.io/v1/namespaces/acme/rolebindings/tenant-admin-owners?")));
        assert!(
            s.log
                .iter()
                .any(|l| l.starts_with("PATCH /api/v1/namespaces/acme/limitranges/tenant-limits?"))
        );
    }

    // Unchanged: reads only, not a single write, though the server added fields and defaults.
    state.lock().unwrap().log.clear();
    let outcome = apply_all(&client, &desired).await.unwrap();
    assert_eq!(
        (
            outcome.created.len(),
            outcome.repaired.len(),
            outcome.unchanged
        ),
        (0, 0, desired.len())
    );
    assert!(state.lock().unwrap().writes().is_empty());

    // Drift: the default deny weakened, the limit range deleted. Exactly those two are restored.
    {
        let mut s = state.lock().unwrap();
        s.log.clear();
        s.objects.get_mut(DENY).unwrap()["spec"]["policyTypes"] = json!(["Ingress"]);
        s.objects
            .remove("/api/v1/namespaces/acme/limitranges/tenant-limits");
    }
    let outcome = apply_all(&client, &desired).await.unwrap();
    assert_eq!(outcome.repaired, ["NetworkPolicy acme/default-deny-all"]);
    assert_eq!(outcome.created, ["LimitRange acme/tenant-limits"]);
    {
        let s = state.lock().unwrap();
        assert_eq!(s.writes().len(), 2);
        assert_eq!(
            s.objects[DENY]["spec"]["policyTypes"],
            json!(["Ingress", "Egress"])
        );
    }

    // Drift by addition: an egress rule to the whole internet added to the default deny. The apply names
    // the (atomic) egress list, so it replaces it.
    {
        let mut s = state.lock().unwrap();
        s.log.clear();
        s.objects.get_mut(DENY).unwrap()["spec"]["egress"] =
            json!([{"to": [{"ipBlock": {"cidr": "0.0.0.0/0"}}]}]);
    }
    let outcome = apply_all(&client, &desired).await.unwrap();
    assert_eq!(outcome.repaired, ["NetworkPolicy acme/default-deny-all"]);
    assert!(
        state.lock().unwrap().objects[DENY]["spec"]["egress"]
            .as_array()
            .unwrap()
            .is_empty()
    );

    // Drift the apply cannot undo: the deny narrowed to some pods by a map field KubeBid never wrote, and the
    // managed label flipped. The apply is followed by a JSON patch, guarded by the resourceVersion.
    {
        let mut s = state.lock().unwrap();
        s.log.clear();
        let np = s.objects.get_mut(DENY).unwrap();
        np["spec"]["podSelector"] = json!({"matchLabels": {"app": "nothing"}});
        np["metadata"]["labels"]["kubebid.io/managed"] = json!("false");
        np["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] = json!("privileged");
    }
    let outcome = apply_all(&client, &desired).await.unwrap();
    assert_eq!(outcome.repaired, ["NetworkPolicy acme/default-deny-all"]);
    {
        let s = state.lock().unwrap();
        let w = s.writes();
        assert_eq!(w.len(), 2, "{w:?}");
        assert!(w[0].ends_with("application/apply-patch+yaml"), "{}", w[0]);
        assert!(w[1].ends_with("application/json-patch+json"), "{}", w[1]);
        assert!(w[1].contains("fieldManager=kubebid"), "{}", w[1]);
        let np = &s.objects[DENY];
        assert_eq!(np["spec"]["podSelector"], json!({}));
        assert_eq!(np["metadata"]["labels"]["kubebid.io/managed"], "true");
        assert!(
            np["metadata"]["labels"]
                .get("pod-security.kubernetes.io/enforce")
                .is_none()
        );
    }
    state.lock().unwrap().log.clear();
    assert_eq!(
        apply_all(&client, &desired).await.unwrap().unchanged,
        desired.len()
    );

    // An API error stops the reconcile and names the object as a person reads it; nothing after it is
    // written.
    {
        let mut s = state.lock().unwrap();
        s.log.clear();
        s.objects
            .remove("/apis/rbac.authorization.k8s.io/v1/namespaces/acme/roles/tenant-admin");
        s.fail_path =
            Some("/apis/rbac.authorization.k8s.io/v1/namespaces/acme/roles/tenant-admin".into());
    }
    let err = apply_all(&client, &desired).await.unwrap_err();
    assert!(
        matches!(&err, ReconcileError::Api { object, .. } if object == "Role acme/tenant-admin"),
        "{err}"
    );
    assert_eq!(
        err.to_string(),
        "Role acme/tenant-admin: 500 InternalError: etcd unavailable"
    );
    assert!(state.lock().unwrap().writes().is_empty());
}

fn model(tenants: &[Tenant]) -> Tenancy {
    Tenancy::new(&KubeBidConfigSpec::default(), tenants)
}

async fn reconcile(
    state: &Arc<Mutex<ApiServer>>,
    client: &kube::Client,
    t: &mut Tenant,
    others: &[Tenant],
) -> Result<TenantOutcome, ReconcileError> {
    state.lock().unwrap().objects.insert(
        format!(
            "/apis/kubebid.io/v1alpha1/tenants/{}",
            t.metadata.name.as_deref().unwrap()
        ),
        serde_json::to_value(&*t).unwrap(),
    );
    let mut all = others.to_vec();
    all.push(t.clone());
    let r = reconcile_tenant(t, &KubeBidConfigSpec::default(), &model(&all), client).await;
    // The Tenant as the API server now returns it, with its status.
    let stored = state.lock().unwrap().objects[&format!(
        "/apis/kubebid.io/v1alpha1/tenants/{}",
        t.metadata.name.as_deref().unwrap()
    )]
        .clone();
    t.status = serde_json::from_value(stored["status"].clone()).ok();
    r
}

#[tokio::test]
async fn an_unchanged_tenant_reconciles_without_a_single_write() {
    let (state, client) = start();
    let mut t = acme(true);
    let first = reconcile(&state, &client, &mut t, &[]).await.unwrap();
    assert!(matches!(first, TenantOutcome::Applied { .. }));
    let status_path = "/apis/kubebid.io/v1alpha1/tenants/acme/status";
    let status = {
        let s = state.lock().unwrap();
        assert_eq!(
            s.log
                .iter()
                .filter(|l| l.starts_with(&format!("PATCH {status_path}?")))
                .count(),
            1,
            "{:?}",
            s.log
        );
        s.objects[status_path]["status"].clone()
    };
    assert_eq!(status["conditions"][0]["type"], "Ready");
    assert_eq!(status["conditions"][0]["status"], "True");
    assert_eq!(status["observedGeneration"], 3);
    // What grants is owned by the Tenant (the garbage collector removes it with the Tenant); what keeps the
    // namespace isolated and bounded is not, and the namespace is not (deleteNamespaces is false).
    {
        let s = state.lock().unwrap();
        let owner = |p: &str| s.objects[p]["metadata"]["ownerReferences"][0]["uid"].clone();
        assert_eq!(
            owner("/apis/networking.k8s.io/v1/namespaces/acme/networkpolicies/allow-same-tenant"),
            "5d1c2f7a-0000-4000-8000-00000000abcd"
        );
        assert_eq!(
            owner("/apis/rbac.authorization.k8s.io/v1/namespaces/acme/roles/tenant-admin"),
            "5d1c2f7a-0000-4000-8000-00000000abcd"
        );
        for floor in [
            DENY,
            "/api/v1/namespaces/acme/resourcequotas/tenant-quota",
            "/api/v1/namespaces/acme/limitranges/tenant-limits",
            "/api/v1/namespaces/acme",
        ] {
            assert!(
                s.objects[floor]["metadata"]
                    .get("ownerReferences")
                    .is_none(),
                "{floor}"
            );
        }
    }
    state.lock().unwrap().log.clear();
    reconcile(&state, &client, &mut t, &[]).await.unwrap();
    let s = state.lock().unwrap();
    assert!(s.writes().is_empty(), "{:?}", s.log);
    // Reads: one per rendered object, one list per pruned kind and one of namespaces.
    let rendered = render::tenant(&t, &KubeBidConfigSpec::default())
        .unwrap()
        .len();
    assert_eq!(
        s.log.len(),
        rendered + kubebid_tenancy::reconcile::PRUNED_KINDS.len() + 1
    );
}

#[tokio::test]
async fn narrowing_a_tenant_prunes_what_it_no_longer_renders() {
    let (state, client) = start();
    let mut t = tenant(
        "apiVersion: kubebid.io/v1alpha1\nkind: Tenant\nmetadata: {name: acme}\nspec:\n  namespaces: [acme, acme-2]\n  owners: [{kind: User, name: alice}]\n  egressCidrs: [203.0.113.0/24]\n  deleteNamespaces: true\n",
        true,
    );
    reconcile(&state, &client, &mut t, &[]).await.unwrap();
    let np = |ns: &str, n: &str| {
        format!("/apis/networking.k8s.io/v1/namespaces/{ns}/networkpolicies/{n}")
    };
    assert!(
        state
            .lock()
            .unwrap()
            .objects
            .contains_key(&np("acme", "allow-egress-cidrs"))
    );
    // Narrowed: no intra-tenant traffic, no egress CIDRs, and namespace acme-2 let go.
    t.spec.network.intra_tenant = false;
    t.spec.egress_cidrs = None;
    t.spec.namespaces = vec!["acme".into()];
    state.lock().unwrap().log.clear();
    let TenantOutcome::Applied { outcome, .. } =
        reconcile(&state, &client, &mut t, &[]).await.unwrap()
    else {
        panic!("applied")
    };
    let s = state.lock().unwrap();
    for gone in [
        np("acme", "allow-same-tenant"),
        np("acme", "allow-egress-cidrs"),
        np("acme-2", "allow-same-tenant"),
        np("acme-2", "allow-egress-cidrs"),
        "/apis/rbac.authorization.k8s.io/v1/namespaces/acme-2/roles/tenant-admin".into(),
        "/apis/rbac.authorization.k8s.io/v1/namespaces/acme-2/rolebindings/tenant-admin-owners"
            .into(),
    ] {
        assert!(
            !s.objects.contains_key(&gone),
            "{gone} outlived the narrowing"
        );
        assert!(
            s.log
                .iter()
                .any(|l| l.starts_with(&format!("DELETE {gone}?"))),
            "{gone}"
        );
    }
    assert!(
        outcome
            .pruned
            .contains(&"NetworkPolicy acme/allow-egress-cidrs".to_owned())
    );
    // The namespace let go keeps what isolates it, and no longer belongs to the Tenant.
    for kept in [
        np("acme-2", "default-deny-all"),
        np("acme-2", "allow-cluster-dns"),
        "/api/v1/namespaces/acme-2/resourcequotas/tenant-quota".into(),
        "/api/v1/namespaces/acme-2/limitranges/tenant-limits".into(),
        np("acme", "default-deny-all"),
    ] {
        assert!(s.objects.contains_key(&kept), "{kept} was pruned");
    }
    assert_eq!(outcome.released, ["acme-2"]);
    assert_eq!(
        s.objects["/api/v1/namespaces/acme-2"]["metadata"]["ownerReferences"],
        json!([])
    );
    assert_eq!(
        s.objects["/api/v1/namespaces/acme"]["metadata"]["ownerReferences"][0]["kind"],
        "Tenant"
    );
}

#[tokio::test]
async fn an_invalid_tenant_is_not_acted_on_and_says_why() {
    let (state, client) = start();
    let older = acme(false);
    // Claims kube-system and acme's namespace: the webhook would refuse it, and the operator does not trust
    // that the webhook ran.
    let mut t = tenant(
        "apiVersion: kubebid.io/v1alpha1\nkind: Tenant\nmetadata: {name: evil}\nspec:\n  namespaces: [kube-system, acme]\n",
        true,
    );
    t.metadata.creation_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
        "2030-01-01T00:00:00Z".parse().unwrap(),
    ));
    let outcome = reconcile(&state, &client, &mut t, &[older]).await.unwrap();
    let TenantOutcome::Invalid(problems) = outcome else {
        panic!("acted on an invalid tenant")
    };
    assert_eq!(problems.len(), 2, "{problems:?}");
    let s = state.lock().unwrap();
    // Only its status was written.
    let w = s.writes();
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(w[0].starts_with("PATCH /apis/kubebid.io/v1alpha1/tenants/evil/status?"));
    let status = &s.objects["/apis/kubebid.io/v1alpha1/tenants/evil/status"]["status"];
    let ready = &status["conditions"][0];
    assert_eq!(
        (ready["status"].as_str(), ready["reason"].as_str()),
        (Some("False"), Some("Invalid"))
    );
    let message = ready["message"].as_str().unwrap();
    assert!(
        message.contains("kube-system") && message.contains("already belongs to tenant \"acme\""),
        "{message}"
    );
    assert!(
        !message.contains("FieldError") && !message.contains('{'),
        "no debug output: {message}"
    );
}

#[test]
fn namespaces_are_owned_only_when_the_tenant_asks_for_their_deletion() {
    let mut t = acme(true);
    let mut objects = render::tenant(&t, &KubeBidConfigSpec::default()).unwrap();
    render::owned_by(&mut objects, &t);
    let floor = |o: &serde_json::Value| {
        render::is_floor(
            o["kind"].as_str().unwrap(),
            o["metadata"]["name"].as_str().unwrap(),
        )
    };
    assert!(
        objects
            .iter()
            .filter(|o| o["kind"] == "Namespace" || floor(o))
            .all(|o| o["metadata"].get("ownerReferences").is_none())
    );
    assert!(
        objects
            .iter()
            .filter(|o| o["kind"] != "Namespace" && !floor(o))
            .all(|o| o["metadata"]["ownerReferences"][0]["controller"] == true)
    );
    t.spec.delete_namespaces = true;
    let mut objects = render::tenant(&t, &KubeBidConfigSpec::default()).unwrap();
    render::owned_by(&mut objects, &t);
    assert!(
        objects
            .iter()
            .filter(|o| !floor(o))
            .all(|o| o["metadata"]["ownerReferences"][0]["kind"] == "Tenant")
    );
    // Without a UID (not yet created) nothing is owned.
    let t = acme(false);
    let mut objects = render::tenant(&t, &KubeBidConfigSpec::default()).unwrap();
    render::owned_by(&mut objects, &t);
    assert!(
        objects
            .iter()
            .all(|o| o["metadata"].get("ownerReferences").is_none())
    );
}

#[tokio::test]
async fn a_write_conflict_stops_the_reconcile_and_marks_the_tenant_degraded() {
    let (state, client) = start();
    let mut t = acme(true);
    let quota = "/api/v1/namespaces/acme/resourcequotas/tenant-quota";
    state.lock().unwrap().conflict_path = Some(quota.into());
    let err = reconcile(&state, &client, &mut t, &[]).await.unwrap_err();
    assert!(
        matches!(&err, ReconcileError::Api { object, .. } if object == "ResourceQuota acme/tenant-quota"),
        "{err}"
    );
    let s = state.lock().unwrap();
    // Nothing after the quota was written; the status was.
    assert!(
        !s.log
            .iter()
            .any(|l| l.starts_with("PATCH /api/v1/namespaces/acme/limitranges/")),
        "{:?}",
        s.log
    );
    let status = &s.objects["/apis/kubebid.io/v1alpha1/tenants/acme/status"]["status"];
    let degraded = status["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Degraded")
        .unwrap();
    assert_eq!(degraded["status"], "True");
    assert_eq!(
        degraded["message"],
        "ResourceQuota acme/tenant-quota: 409 Conflict: Operation cannot be fulfilled: the object has been modified"
    );
}
