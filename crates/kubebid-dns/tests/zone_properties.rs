//! Property tests of the zone builder: arbitrary cluster objects (odd names, broken addresses, headless and
//! ExternalName services, endpoints of every address type, pods) never make it panic, and whatever another
//! tenant's namespace holds, a client of tenant acme learns nothing of it: every name and reverse address
//! built from it answers NXDOMAIN with no records.

// Test helpers fail the test by panicking on broken fixtures; that is their job.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::sync::OnceLock;

use hickory_proto::op::{Message, Query, ResponseCode};
use hickory_proto::rr::{Name, RecordType};
use kubebid_dns::answer::{Action, decide};
use kubebid_dns::zone::{ClusterObjects, UnknownClients, Zone};
use kubebid_model::config::{KubeBidConfigSpec, Tenant};
use proptest::prelude::*;
use serde_json::{Value, json};

const ACME_CLIENT: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 11);
const GLOBEX_CLIENT: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 21);

fn config() -> &'static (KubeBidConfigSpec, Vec<Tenant>) {
    static CONFIG: OnceLock<(KubeBidConfigSpec, Vec<Tenant>)> = OnceLock::new();
    CONFIG.get_or_init(|| {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        kubebid_dns::state::load_config(&[root.join("examples/config")]).unwrap()
    })
}

fn name() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => "[a-z][a-z0-9-]{0,10}",
        1 => "[a-z]{60,70}",
        1 => "\\PC{0,20}",
        1 => Just(String::new()),
        1 => Just("*".to_owned()),
    ]
}

fn ip() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => (0u8..=255, 0u8..=255).prop_map(|(a, b)| format!("10.96.{a}.{b}")),
        2 => (0u16..=0xffff).prop_map(|a| format!("fd00::{a:x}")),
        1 => Just("None".to_owned()),
        1 => Just(String::new()),
        1 => "[0-9.:a-f]{0,20}",
    ]
}

fn namespace() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => Just("tenant-globex".to_owned()),
        1 => Just("tenant-acme".to_owned()),
        1 => Just("platform".to_owned()),
        1 => Just("monitoring".to_owned()),
        1 => name(),
    ]
}

fn port() -> impl Strategy<Value = Value> {
    (
        name(),
        any::<i32>(),
        prop_oneof![Just("TCP"), Just("UDP"), Just("SCTP"), Just("")],
    )
        .prop_map(|(n, p, proto)| json!({"name": n, "port": p, "protocol": proto}))
}

fn service() -> impl Strategy<Value = Value> {
    (
        name(),
        namespace(),
        ip(),
        proptest::collection::vec(ip(), 0..3),
        prop_oneof![
            Just("ClusterIP"),
            Just("ExternalName"),
            Just("NodePort"),
            Just("")
        ],
        name(),
        proptest::collection::vec(port(), 0..3),
    )
        .prop_map(|(n, ns, ip, ips, kind, external, ports)| {
            json!({
                "apiVersion": "v1", "kind": "Service",
                "metadata": {"name": n, "namespace": ns},
                "spec": {"clusterIP": ip, "clusterIPs": ips, "type": kind,
                         "externalName": format!("{external}.example.com"), "ports": ports},
            })
        })
}

fn slice() -> impl Strategy<Value = Value> {
    (
        name(),
        namespace(),
        name(),
        prop_oneof![Just("IPv4"), Just("IPv6"), Just("FQDN")],
        proptest::collection::vec(
            (proptest::collection::vec(ip(), 0..3), name(), any::<Option<bool>>()),
            0..4,
        ),
        proptest::collection::vec(port(), 0..3),
    )
        .prop_map(|(n, ns, svc, family, endpoints, ports)| {
            let endpoints: Vec<Value> = endpoints
                .into_iter()
                .map(|(addresses, host, ready)| {
                    json!({"addresses": addresses, "hostname": host, "conditions": {"ready": ready}})
                })
                .collect();
            json!({
                "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                "metadata": {"name": n, "namespace": ns, "labels": {"kubernetes.io/service-name": svc}},
                "addressType": family, "endpoints": endpoints, "ports": ports,
            })
        })
}

fn pod() -> impl Strategy<Value = Value> {
    (
        name(),
        namespace(),
        ip(),
        proptest::collection::vec(ip(), 0..3),
    )
        .prop_map(|(n, ns, ip, ips)| {
            let ips: Vec<Value> = ips.into_iter().map(|i| json!({"ip": i})).collect();
            json!({
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": n, "namespace": ns},
                "spec": {"containers": [{"name": "c", "image": "i"}]},
                "status": {"podIP": ip, "podIPs": ips, "phase": "Running"},
            })
        })
}

fn typed<T: serde::de::DeserializeOwned>(values: &[Value]) -> Vec<T> {
    values
        .iter()
        .filter_map(|v| serde_json::from_value(v.clone()).ok())
        .collect()
}

fn client_pods() -> Vec<Value> {
    [
        ("acme-client", "tenant-acme", "127.0.0.11"),
        ("globex-client", "tenant-globex", "127.0.0.21"),
    ]
    .into_iter()
    .map(|(n, ns, ip)| {
        json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": n, "namespace": ns},
            "spec": {"containers": [{"name": "c", "image": "i"}]},
            "status": {"podIP": ip, "podIPs": [{"ip": ip}], "phase": "Running"},
        })
    })
    .collect()
}

/// Every name a client could try for `object` in tenant-globex, with the types to ask.
fn names_of(object: &Value) -> Vec<String> {
    let ns = "tenant-globex.svc.cluster.local.";
    let text = |v: &Value| v.as_str().unwrap_or_default().to_owned();
    let mut out = Vec::new();
    let n = text(&object["metadata"]["name"]);
    match object["kind"].as_str() {
        Some("Service") => {
            out.push(format!("{n}.{ns}"));
            for p in object["spec"]["ports"].as_array().into_iter().flatten() {
                let pn = text(&p["name"]);
                for proto in ["tcp", "udp", "sctp"] {
                    out.push(format!("_{pn}._{proto}.{n}.{ns}"));
                }
            }
        }
        Some("EndpointSlice") => {
            let svc = text(&object["metadata"]["labels"]["kubernetes.io/service-name"]);
            out.push(format!("{svc}.{ns}"));
            for e in object["endpoints"].as_array().into_iter().flatten() {
                out.push(format!("{}.{svc}.{ns}", text(&e["hostname"])));
                for a in e["addresses"].as_array().into_iter().flatten() {
                    out.push(format!("{}.{svc}.{ns}", text(a).replace(['.', ':'], "-")));
                }
            }
        }
        Some("Pod") => {
            for ip in std::iter::once(&object["status"]["podIP"]).chain(
                object["status"]["podIPs"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|i| &i["ip"]),
            ) {
                out.push(format!(
                    "{}.tenant-globex.pod.cluster.local.",
                    text(ip).replace(['.', ':'], "-")
                ));
            }
        }
        _ => {}
    }
    out
}

/// Every address `object` carries.
fn addresses_of(object: &Value) -> Vec<IpAddr> {
    let mut out = Vec::new();
    let mut push = |v: &Value| {
        if let Some(ip) = v.as_str().and_then(|s| s.parse().ok()) {
            out.push(ip);
        }
    };
    push(&object["spec"]["clusterIP"]);
    for v in object["spec"]["clusterIPs"]
        .as_array()
        .into_iter()
        .flatten()
    {
        push(v);
    }
    for e in object["endpoints"].as_array().into_iter().flatten() {
        for v in e["addresses"].as_array().into_iter().flatten() {
            push(v);
        }
    }
    push(&object["status"]["podIP"]);
    for v in object["status"]["podIPs"].as_array().into_iter().flatten() {
        push(&v["ip"]);
    }
    out
}

fn decide_for(zone: &Zone, client: Ipv4Addr, name: &Name, t: RecordType) -> Action {
    let mut m = Message::query();
    m.add_query(Query::query(name.clone(), t));
    let action = decide(zone, IpAddr::V4(client), &m).action;
    if let Action::Reply(r) = &action {
        // The reply is well-formed on the wire.
        Message::from_vec(&r.to_vec().unwrap()).unwrap();
    }
    action
}

fn ask(zone: &Zone, name: &Name, t: RecordType) -> Message {
    match decide_for(zone, ACME_CLIENT, name, t) {
        Action::Reply(r) => r,
        other => panic!("{name} {t} was not answered here: {other:?}"),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn any_cluster_state_builds_and_another_tenant_stays_invisible(
        services in proptest::collection::vec(service(), 0..8),
        slices in proptest::collection::vec(slice(), 0..8),
        pods in proptest::collection::vec(pod(), 0..8),
    ) {
        let mut pod_values = pods.clone();
        pod_values.extend(client_pods());
        let objects = ClusterObjects {
            namespaces: Vec::new(),
            services: typed(&services),
            endpoint_slices: typed(&slices),
            pods: typed(&pod_values),
        };
        let (cluster, tenants) = config();
        let zone = Zone::build(&objects, cluster, tenants, UnknownClients::Deny);

        let globex: Vec<&Value> = services
            .iter()
            .chain(&slices)
            .chain(&pods)
            .filter(|o| o["metadata"]["namespace"] == "tenant-globex")
            .collect();
        // Addresses that also belong to something acme may see are not globex's alone.
        let visible: Vec<IpAddr> = services
            .iter()
            .chain(&slices)
            .chain(&pods)
            .filter(|o| o["metadata"]["namespace"] != "tenant-globex")
            .flat_map(addresses_of)
            .collect();
        for object in &globex {
            for text in names_of(object) {
                let Ok(name) = Name::from_ascii(&text) else { continue };
                for t in [RecordType::A, RecordType::AAAA, RecordType::SRV, RecordType::CNAME, RecordType::ANY] {
                    let r = ask(&zone, &name, t);
                    prop_assert_eq!(r.metadata.response_code, ResponseCode::NXDomain, "{} {}", text, t);
                    prop_assert!(r.answers.is_empty() && r.additionals.is_empty(), "{} {}: {:?}", text, t, r.answers);
                }
            }
            for ip in addresses_of(object) {
                if visible.contains(&ip) || ip.is_loopback() {
                    continue;
                }
                let name = Name::from(ip);
                match decide_for(&zone, ACME_CLIENT, &name, RecordType::PTR) {
                    Action::Reply(r) => {
                        prop_assert_eq!(r.metadata.response_code, ResponseCode::NXDomain, "PTR {}", ip);
                        prop_assert!(r.answers.is_empty(), "PTR {}: {:?}", ip, r.answers);
                    }
                    // Only an address the zone holds no name for (an endpoint of a service that does not
                    // exist, outside the cluster ranges) goes upstream: there is nothing of globex's to tell.
                    Action::Forward(_) => prop_assert!(zone.reverse(ip).is_none(), "PTR {} forwarded", ip),
                    Action::Drop => panic!("PTR {ip} dropped"),
                }
                // The owner's own client gets the name when the zone holds one.
                if let Some((_, target)) = zone.reverse(ip)
                    && let Action::Reply(r) = decide_for(&zone, GLOBEX_CLIENT, &name, RecordType::PTR)
                {
                    prop_assert_eq!(r.metadata.response_code, ResponseCode::NoError, "PTR {} for globex", ip);
                    prop_assert!(r.answers.iter().any(|a| a.data.to_string() == target.to_string()), "PTR {}: {:?}", ip, r.answers);
                }
            }
        }
    }
}
