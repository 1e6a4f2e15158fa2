//! One tenancy model behind every door. Random tenancies (tenants claiming overlapping namespaces, sharing
//! namespaces and single Services, some of them conflicting) are built, and for every (tenant, target) the
//! doors must give the answer an independent oracle computes from the Tenants themselves:
//!
//! - the policy engine: may a `NetworkPolicy` of the tenant name the target namespace, may an
//!   `ExternalName` point at the target Service;
//! - the DNS zone: does a pod of the tenant resolve the target Service's name;
//! - the rendered `NetworkPolicies`, evaluated with Kubernetes' semantics: is egress from the tenant's pod
//!   to the target Service's pod open, and ingress from a pod of the target namespace;
//! - the operator's validation against the webhook's: a Tenant the operator will not act on is exactly one
//!   the webhook would have refused when it was created, given the older ones.

// Test helpers fail the test by panicking on broken fixtures; that is their job.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr};

use hickory_proto::op::{Message, Query, ResponseCode};
use hickory_proto::rr::{Name, RecordType};
use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::api::networking::v1::{NetworkPolicy, NetworkPolicyPeer, NetworkPolicyPort};
use kubebid_dns::answer::{Action, decide};
use kubebid_dns::zone::{ClusterObjects, UnknownClients, Zone};
use kubebid_model::config::{KubeBidConfigSpec, Tenant, TenantSpec};
use kubebid_model::{Object, Party, Tenancy};
use kubebid_policy::{PolicySet, Request, selector_matches};
use kubebid_tenancy::render::TenantRenderer;
use proptest::prelude::*;
use serde_json::json;

/// Namespaces tenants may claim, the shared one, the ingress controllers', and a platform one with Services.
const POOL: &[&str] = &["n0", "n1", "n2", "n3", "n4", "n5"];
const SHARED: &str = "monitoring";
const INGRESS: &str = "ingress-nginx";
const PLATFORM: &str = "plat";
const SERVICES: &[&str] = &["web", "db"];

fn all_namespaces() -> Vec<&'static str> {
    POOL.iter()
        .copied()
        .chain([SHARED, INGRESS, PLATFORM])
        .collect()
}

fn cluster() -> KubeBidConfigSpec {
    KubeBidConfigSpec {
        shared_namespaces: vec![SHARED.into()],
        ingress_controller_namespaces: vec![INGRESS.into()],
        excluded_namespaces: vec![
            "kube-system".into(),
            "kubebid-system".into(),
            INGRESS.into(),
            PLATFORM.into(),
        ],
        ..KubeBidConfigSpec::default()
    }
}

#[derive(Clone, Debug)]
struct TenantDraft {
    namespaces: BTreeSet<usize>,
    grants: Vec<String>,
    intra: bool,
    from_ingress: bool,
    age: u8,
}

fn draft() -> impl Strategy<Value = TenantDraft> {
    let grant = prop_oneof![
        Just(format!("{PLATFORM}/web")),
        Just(format!("{PLATFORM}/db")),
        Just(format!("{PLATFORM}/*")),
        // A tenant's namespace: never shareable, so such a Tenant is invalid.
        (0..POOL.len()).prop_map(|i| format!("{}/web", POOL[i])),
    ];
    (
        prop::collection::btree_set(0..POOL.len(), 1..3),
        prop::collection::vec(grant, 0..3),
        any::<bool>(),
        any::<bool>(),
        any::<u8>(),
    )
        .prop_map(
            |(namespaces, grants, intra, from_ingress, age)| TenantDraft {
                namespaces,
                grants,
                intra,
                from_ingress,
                age,
            },
        )
}

fn tenant(i: usize, d: &TenantDraft) -> Tenant {
    let mut spec = TenantSpec::builtin_default();
    spec.namespaces = d.namespaces.iter().map(|n| POOL[*n].to_owned()).collect();
    spec.network.shared_services.clone_from(&d.grants);
    spec.network.intra_tenant = d.intra;
    spec.network.from_ingress_controllers = d.from_ingress;
    let mut t = Tenant::new(&format!("t{i}"), spec);
    t.metadata.name = Some(format!("t{i}"));
    t.metadata.uid = Some(format!("uid-{i}"));
    let created = jiff::Timestamp::from_second(
        1_700_000_000 + i64::from(d.age) * 60 + i64::try_from(i).unwrap(),
    )
    .unwrap();
    t.metadata.creation_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
        created,
    ));
    t
}

fn service(ns: &str, name: &str, ip: [u8; 4]) -> Service {
    serde_json::from_value(
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": ns},
        "spec": {"clusterIP": Ipv4Addr::from(ip).to_string(), "selector": {"app": name},
                 "ports": [{"port": 80, "targetPort": 8080, "protocol": "TCP"}]}}),
    )
    .unwrap()
}

/// A pod of namespace `ns` backing Service `app`, with its address.
fn pod(ns_index: usize, ns: &str, app_index: usize, app: &str) -> (Pod, IpAddr) {
    let ip = IpAddr::V4(Ipv4Addr::new(
        10,
        244,
        u8::try_from(ns_index).unwrap(),
        10 + u8::try_from(app_index).unwrap(),
    ));
    let p = serde_json::from_value(json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": format!("{app}-0"), "namespace": ns, "labels": {"app": app}},
        "spec": {"containers": [{"name": "c", "ports": [{"containerPort": 8080, "protocol": "TCP"}]}]},
        "status": {"phase": "Running", "podIP": ip.to_string()}}))
    .unwrap();
    (p, ip)
}

/// The oracle: what the Tenants say a tenant (or the namespace of no tenant) may reach, written from the
/// specs without the model.
struct Oracle<'a> {
    accepted: &'a BTreeMap<String, Tenant>,
}

impl Oracle<'_> {
    fn owner(&self, ns: &str) -> Option<&Tenant> {
        self.accepted
            .values()
            .find(|t| t.spec.namespaces.iter().any(|n| n == ns))
    }

    /// May a pod of namespace `from` reach (and resolve) Service `svc` of namespace `ns`?
    fn reaches_service(&self, from: &str, ns: &str, svc: &str) -> bool {
        if ns == SHARED || ns == from {
            return true;
        }
        match self.owner(from) {
            None => false,
            Some(t) => {
                t.spec.namespaces.iter().any(|n| n == ns)
                    || t.spec
                        .network
                        .shared_services
                        .iter()
                        .any(|g| *g == format!("{ns}/*") || *g == format!("{ns}/{svc}"))
            }
        }
    }

    /// May `from`'s tenant name namespace `ns` as a whole (egress peer)?
    fn reaches_namespace(&self, from: &str, ns: &str) -> bool {
        if ns == SHARED || ns == from {
            return true;
        }
        self.owner(from).is_some_and(|t| {
            t.spec.namespaces.iter().any(|n| n == ns)
                || t.spec
                    .network
                    .shared_services
                    .iter()
                    .any(|g| *g == format!("{ns}/*"))
        })
    }
}

/// Kubernetes' `NetworkPolicy` semantics over the objects of this test (namespace and pod selectors, ports by
/// number or name; no ipBlocks are rendered between these pods).
struct Net<'a> {
    policies: &'a [NetworkPolicy],
    pods: &'a [(Pod, IpAddr)],
}

fn ns_labels(ns: &str) -> BTreeMap<String, String> {
    [("kubernetes.io/metadata.name".to_owned(), ns.to_owned())].into()
}

impl Net<'_> {
    fn peer_matches(&self, peer: &NetworkPolicyPeer, policy_ns: &str, other: &Pod) -> bool {
        let ns = other.metadata.namespace.as_deref().unwrap();
        let ns_ok = match &peer.namespace_selector {
            Some(sel) => selector_matches(sel, Some(&ns_labels(ns))),
            None => peer.ip_block.is_none() && ns == policy_ns,
        };
        let pod_ok = peer
            .pod_selector
            .as_ref()
            .is_none_or(|sel| selector_matches(sel, other.metadata.labels.as_ref()));
        peer.ip_block.is_none() && ns_ok && pod_ok
    }

    fn port_matches(ports: Option<&Vec<NetworkPolicyPort>>, target: &Pod) -> bool {
        let Some(ports) = ports.filter(|p| !p.is_empty()) else {
            return true;
        };
        let container_ports: Vec<(i32, Option<String>)> = target
            .spec
            .as_ref()
            .unwrap()
            .containers
            .iter()
            .flat_map(|c| c.ports.iter().flatten())
            .map(|p| (p.container_port, p.name.clone()))
            .collect();
        ports.iter().any(|p| match &p.port {
            None => true,
            Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(n)) => {
                container_ports.iter().any(|(c, _)| c == n)
            }
            Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::String(s)) => {
                container_ports
                    .iter()
                    .any(|(_, name)| name.as_deref() == Some(s))
            }
        })
    }

    /// Is traffic from `src` to `dst` allowed on `direction`'s side (`Egress`: by `src`'s policies,
    /// `Ingress`: by `dst`'s)?
    fn allowed(&self, src: &Pod, dst: &Pod, egress: bool) -> bool {
        let (me, other) = if egress { (src, dst) } else { (dst, src) };
        let my_ns = me.metadata.namespace.as_deref().unwrap();
        let kind = if egress { "Egress" } else { "Ingress" };
        let selecting: Vec<&NetworkPolicy> = self
            .policies
            .iter()
            .filter(|p| p.metadata.namespace.as_deref() == Some(my_ns))
            .filter(|p| {
                let spec = p.spec.as_ref().unwrap();
                selector_matches(
                    spec.pod_selector.as_ref().unwrap(),
                    me.metadata.labels.as_ref(),
                ) && spec.policy_types.iter().flatten().any(|t| t == kind)
            })
            .collect();
        if selecting.is_empty() {
            return true;
        }
        selecting.iter().any(|p| {
            let spec = p.spec.as_ref().unwrap();
            if egress {
                spec.egress.iter().flatten().any(|r| {
                    let peers_ok = r.to.as_ref().is_none_or(Vec::is_empty)
                        || r.to
                            .iter()
                            .flatten()
                            .any(|peer| self.peer_matches(peer, my_ns, other));
                    peers_ok && Self::port_matches(r.ports.as_ref(), dst)
                })
            } else {
                spec.ingress.iter().flatten().any(|r| {
                    let peers_ok = r.from.as_ref().is_none_or(Vec::is_empty)
                        || r.from
                            .iter()
                            .flatten()
                            .any(|peer| self.peer_matches(peer, my_ns, other));
                    peers_ok && Self::port_matches(r.ports.as_ref(), dst)
                })
            }
        })
    }

    fn pod(&self, ns: &str, app: &str) -> &Pod {
        &self
            .pods
            .iter()
            .find(|(p, _)| {
                p.metadata.namespace.as_deref() == Some(ns)
                    && p.metadata.labels.as_ref().unwrap()["app"] == app
            })
            .unwrap()
            .0
    }
}

fn dns_answers(zone: &Zone, from: IpAddr, name: &str) -> bool {
    let mut m = Message::query();
    m.metadata.recursion_desired = true;
    m.add_query(Query::query(Name::from_ascii(name).unwrap(), RecordType::A));
    match decide(zone, from, &m).action {
        Action::Reply(r) => {
            r.metadata.response_code == ResponseCode::NoError && !r.answers.is_empty()
        }
        _ => false,
    }
}

fn check(drafts: &[TenantDraft]) {
    let cluster = cluster();
    let tenants: Vec<Tenant> = drafts
        .iter()
        .enumerate()
        .map(|(i, d)| tenant(i, d))
        .collect();
    let model = Tenancy::new(&cluster, &tenants);

    // The operator's validation and the webhook's refusal agree, Tenant by Tenant in age order.
    let mut by_age: Vec<&Tenant> = tenants.iter().collect();
    by_age.sort_by_key(|t| {
        (
            t.metadata.creation_timestamp.clone().map(|t| t.0),
            t.metadata.name.clone(),
        )
    });
    let mut older: Vec<Tenant> = Vec::new();
    for t in by_age {
        let name = t.metadata.name.as_deref().unwrap();
        // The webhook judges a new Tenant against the policy of the Tenants already in the cluster.
        let webhook = kubebid_policy::PolicySet::from_cluster(&{
            let mut set = kubebid_model::load::ConfigSet::default();
            let (s, _) = kubebid_model::load::ConfigSet::from_cluster(
                vec![kubebid_model::config::KubeBidConfig::new(
                    "kubebid",
                    cluster.clone(),
                )],
                older.clone(),
                vec![],
            );
            set.config = s.config;
            set.tenants = s.tenants;
            set
        })
        .0;
        let refused = !webhook.tenant_conflicts(name, &t.spec).is_empty();
        let rejected = model.rejected().iter().any(|r| r.tenant == name);
        assert_eq!(
            refused, rejected,
            "{name}: webhook refuses {refused}, operator rejects {rejected}"
        );
        if !rejected {
            older.push(t.clone());
        }
    }
    let accepted: BTreeMap<String, Tenant> = older
        .iter()
        .map(|t| (t.metadata.name.clone().unwrap(), t.clone()))
        .collect();
    let oracle = Oracle {
        accepted: &accepted,
    };

    // The cluster: every namespace with its Services and a pod behind each.
    let mut objects = ClusterObjects::default();
    let mut pods = Vec::new();
    for (i, ns) in all_namespaces().iter().enumerate() {
        objects.namespaces.push(
            serde_json::from_value(json!({"metadata": {"name": ns, "labels": ns_labels(ns)}}))
                .unwrap(),
        );
        for (j, svc) in SERVICES.iter().enumerate() {
            objects.services.push(service(
                ns,
                svc,
                [
                    10,
                    96,
                    u8::try_from(i).unwrap(),
                    u8::try_from(j + 1).unwrap(),
                ],
            ));
            pods.push(pod(i, ns, j, svc));
        }
    }
    objects.pods = pods.iter().map(|(p, _)| p.clone()).collect();
    let zone = Zone::build(&objects, &cluster, &tenants, UnknownClients::Deny);
    let policy = PolicySet::from_cluster(&{
        let (s, _) = kubebid_model::load::ConfigSet::from_cluster(
            vec![kubebid_model::config::KubeBidConfig::new(
                "kubebid",
                cluster.clone(),
            )],
            tenants.clone(),
            vec![],
        );
        s
    })
    .0;
    let services: Vec<Service> = objects.services.clone();
    let renderer = TenantRenderer::new(&cluster, &model).with_services(&services);
    let mut policies: Vec<NetworkPolicy> = Vec::new();
    for t in accepted.values() {
        for o in renderer.render(t).unwrap().objects {
            if o["kind"] == "NetworkPolicy" {
                policies.push(serde_json::from_value(o).unwrap());
            }
        }
    }
    let net = Net {
        policies: &policies,
        pods: &pods,
    };

    for from in POOL {
        let src_ip = pods
            .iter()
            .find(|(p, _)| p.metadata.namespace.as_deref() == Some(*from))
            .unwrap()
            .1;
        let party = model.party(from);
        for ns in all_namespaces() {
            // Policy: a NetworkPolicy naming `ns` as an egress peer.
            let np = Object::from_value(json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                "metadata": {"name": "p", "namespace": from},
                "spec": {"podSelector": {}, "policyTypes": ["Egress"],
                         "egress": [{"to": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": ns}}}]}]}}))
            .unwrap();
            let admitted = !policy.evaluate(&Request::create(&np)).denied();
            assert_eq!(
                admitted,
                oracle.reaches_namespace(from, ns),
                "policy: may {from} name namespace {ns} as a peer?"
            );
            for svc in SERVICES {
                let reach = oracle.reaches_service(from, ns, svc);
                assert_eq!(
                    model.reaches_service(party, ns, svc),
                    reach,
                    "model: {from} -> {ns}/{svc}"
                );
                // Policy: an ExternalName to the Service.
                let ext = Object::from_value(json!({"apiVersion": "v1", "kind": "Service",
                    "metadata": {"name": "x", "namespace": from},
                    "spec": {"type": "ExternalName", "externalName": format!("{svc}.{ns}.svc.cluster.local")}}))
                .unwrap();
                assert_eq!(
                    !policy.evaluate(&Request::create(&ext)).denied(),
                    reach,
                    "policy: may {from} point an ExternalName at {ns}/{svc}?"
                );
                // DNS: does a pod of `from` resolve it?
                assert_eq!(
                    dns_answers(&zone, src_ip, &format!("{svc}.{ns}.svc.cluster.local.")),
                    reach,
                    "dns: does a pod of {from} resolve {svc}.{ns}?"
                );
                // Rendered policies: is egress from `from`'s pod to the Service's pod open?
                let Party::Tenant(t) = party else {
                    continue; // no tenant: nothing rendered for it (its namespace keeps only what it had)
                };
                let spec = &accepted[&t.name].spec;
                let own = spec.namespaces.iter().any(|n| n == ns);
                let want = reach && (!own || spec.network.intra_tenant);
                let src = net.pod(from, "web");
                let dst = net.pod(ns, svc);
                assert_eq!(
                    net.allowed(src, dst, true),
                    want,
                    "rendered: egress {from} -> {ns}/{svc} (reach {reach}, own {own})"
                );
            }
            // Rendered policies: is ingress into `from`'s pod open from a pod of `ns`?
            if let Party::Tenant(t) = party {
                let spec = &accepted[&t.name].spec;
                let own = spec.namespaces.iter().any(|n| n == ns);
                let want = (own && spec.network.intra_tenant)
                    || (ns == INGRESS && spec.network.from_ingress_controllers);
                assert_eq!(
                    net.allowed(net.pod(ns, "web"), net.pod(from, "web"), false),
                    want,
                    "rendered: ingress {ns} -> {from}"
                );
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn every_door_gives_the_models_answer(drafts in prop::collection::vec(draft(), 1..5)) {
        check(&drafts);
    }
}

/// A fixed tenancy with every case at once: a conflict, a shared namespace and Service, no intra-tenant
/// traffic, and a namespace of no tenant.
#[test]
fn a_tenancy_with_every_case() {
    let d = |ns: &[usize], grants: &[&str], intra: bool, age: u8| TenantDraft {
        namespaces: ns.iter().copied().collect(),
        grants: grants.iter().map(|s| (*s).to_owned()).collect(),
        intra,
        from_ingress: !intra,
        age,
    };
    check(&[
        d(&[0, 1], &["plat/web"], true, 1),
        d(&[2], &["plat/*"], false, 2),
        d(&[1, 3], &[], true, 3), // takes t0's n1: rejected whole, n3 stays of no tenant
        d(&[4], &["n0/web"], true, 4), // shares a tenant's namespace: rejected
    ]);
}
