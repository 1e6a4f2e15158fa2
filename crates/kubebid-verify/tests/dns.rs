//! The DNS probe over real sockets on loopback: KubeBid's own DNS server, started on the cluster state of
//! `examples/dns/cluster-state.yaml` (whose pods have 127.0.0.x addresses, so the probe can send as
//! them), and the same pods and Services served by a mock API server. Then a server that answers every
//! name, which must be caught, and pods whose addresses are not local, which must be skipped and say so.

// Test fixtures fail the test loudly.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hickory_proto::op::{Message, MessageType};
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{RData, Record};
use http_body_util::Full;
use hyper::{Request, Response};
use kubebid_dns::metrics::DnsMetrics;
use kubebid_dns::server::{Limits, Running, Shared, start};
use kubebid_dns::upstream::Upstreams;
use kubebid_dns::zone::UnknownClients;
use kubebid_model::load::ConfigSet;
use kubebid_verify::Verifier;
use kubebid_verify::dns::DnsTarget;
use serde_json::{Value, json};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn state() -> Vec<Value> {
    let text = std::fs::read_to_string(root().join("examples/dns/cluster-state.yaml")).unwrap();
    let list: Value = serde_saphyr::from_str(&text).unwrap();
    list["items"].as_array().unwrap().clone()
}

fn config() -> ConfigSet {
    let text = std::fs::read_to_string(root().join("examples/config/kubebid.yaml")).unwrap();
    common::config(&text)
}

/// The mock API server: each namespace's pods and Services from the cluster state, edited by `change`.
fn api(change: impl Fn(&mut Vec<Value>)) -> kube::Client {
    let mut items = state();
    change(&mut items);
    let (mock, mut handle) =
        tower_test::mock::pair::<Request<kube::client::Body>, Response<Full<Bytes>>>();
    tokio::spawn(async move {
        while let Some((req, send)) = handle.next_request().await {
            let path = req.uri().path().to_owned();
            let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
            let body = match parts.as_slice() {
                ["api", "v1", "namespaces", ns, kind @ ("pods" | "services")] => {
                    let kind = if *kind == "pods" { "Pod" } else { "Service" };
                    json!({"kind": format!("{kind}List"), "metadata": {}, "items": items.iter()
                        .filter(|o| o["kind"] == kind && o["metadata"]["namespace"] == *ns)
                        .cloned().collect::<Vec<_>>()})
                }
                _ => panic!("unexpected request {path}"),
            };
            send.send_response(common::respond(200, &body));
        }
    });
    kube::Client::new(mock, "default")
}

/// KubeBid's DNS server on the same cluster state.
async fn kubebid_dns() -> Running {
    let zone = kubebid_dns::state::build_zone(
        &[root().join("examples/dns/cluster-state.yaml")],
        &[root().join("examples/config")],
        UnknownClients::Deny,
    )
    .unwrap();
    // No upstream answers: the probe asks only for cluster names.
    let dead = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let shared = Shared::new(
        zone,
        Upstreams {
            servers: vec![dead],
            timeout: Duration::from_millis(200),
        },
        Limits {
            client_qps: 0,
            udp_workers: 1,
            ..Limits::default()
        },
        Arc::new(DnsMetrics::default()),
    );
    start(Arc::new(shared), "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap()
}

/// A server that answers every name with an address: what a resolver without tenancy does (with `code`
/// as its response code).
async fn open_resolver(code: hickory_proto::op::ResponseCode) -> SocketAddr {
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = sock.local_addr().unwrap();
    tokio::spawn(async move {
        let mut buf = vec![0u8; 4096];
        while let Ok((n, peer)) = sock.recv_from(&mut buf).await {
            let mut m = Message::from_vec(&buf[..n]).unwrap();
            m.metadata.message_type = MessageType::Response;
            m.metadata.response_code = code;
            let name = m.queries[0].name().clone();
            m.add_answer(Record::from_rdata(
                name,
                30,
                RData::A(A::new(10, 96, 0, 99)),
            ));
            let _ = sock.send_to(&m.to_vec().unwrap(), peer).await;
        }
    });
    addr
}

fn target(server: SocketAddr) -> DnsTarget {
    DnsTarget {
        server,
        domain: "cluster.local".into(),
        timeout: Duration::from_secs(2),
    }
}

#[tokio::test]
async fn kubebid_dns_answers_nxdomain_for_every_other_tenant_s_names() {
    let server = kubebid_dns().await;
    let set = config();
    let found = Verifier::new(api(|_| {}), 4)
        .dns(&set.tenancy(), None, Some(&target(server.addr)))
        .await
        .unwrap();
    // acme, globex and initech, each against the two others.
    assert_eq!(found.len(), 6, "{found:#?}");
    for f in &found {
        assert!(f.passed && !f.skipped, "{f:#?}");
        assert!(f.evidence[0].starts_with("control: "), "{f:?}");
        assert!(
            f.evidence[1..].iter().all(|e| e.ends_with(": NXDOMAIN")),
            "{f:?}"
        );
    }
    let acme_globex = found
        .iter()
        .find(|f| f.tenant == "acme" && f.other.as_deref() == Some("globex"))
        .unwrap();
    assert_eq!(acme_globex.identity, "(pod address 127.0.0.11)");
    assert!(
        acme_globex
            .evidence
            .contains(&"api.tenant-globex.svc.cluster.local. AAAA: NXDOMAIN".to_owned())
    );
    // The reverse name of globex's Service address gives nothing away either.
    assert!(
        acme_globex
            .evidence
            .iter()
            .any(|e| e.ends_with(" PTR: NXDOMAIN")),
        "{acme_globex:?}"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn a_resolver_that_answers_every_name_fails_the_probe() {
    let server = open_resolver(hickory_proto::op::ResponseCode::NoError).await;
    let set = config();
    let found = Verifier::new(api(|_| {}), 4)
        .dns(&set.tenancy(), Some("globex"), Some(&target(server)))
        .await
        .unwrap();
    assert_eq!(found.len(), 2);
    for f in &found {
        assert!(!f.passed, "{f:#?}");
        assert!(
            f.evidence
                .iter()
                .any(|e| e.contains("resolved to 10.96.0.99")),
            "{f:?}"
        );
    }
    // NXDOMAIN that still carries the address is no NXDOMAIN.
    let server = open_resolver(hickory_proto::op::ResponseCode::NXDomain).await;
    let found = Verifier::new(api(|_| {}), 4)
        .dns(&set.tenancy(), Some("globex"), Some(&target(server)))
        .await
        .unwrap();
    assert!(found.iter().all(|f| !f.passed), "{found:#?}");
    assert!(
        found[0]
            .evidence
            .iter()
            .any(|e| e.contains("NXDOMAIN, yet with answers: 10.96.0.99")),
        "{:?}",
        found[0]
    );
}

#[tokio::test]
async fn without_a_local_pod_address_or_a_server_the_probe_says_why_it_was_skipped() {
    let set = config();
    // Every pod on the pod network, none on this host.
    let found = Verifier::new(
        api(|items| {
            for o in items.iter_mut().filter(|o| o["kind"] == "Pod") {
                o["status"]["podIP"] = json!("10.244.9.9");
                o["status"]["podIPs"] = json!([{"ip": "10.244.9.9"}]);
            }
        }),
        2,
    )
    .dns(
        &set.tenancy(),
        Some("acme"),
        Some(&target("127.0.0.1:9".parse().unwrap())),
    )
    .await
    .unwrap();
    assert_eq!(found.len(), 1);
    assert!(found[0].skipped && found[0].passed);
    assert!(
        found[0].evidence[0].contains("no address of acme's pods (10.244.9.9) is local here"),
        "{:?}",
        found[0]
    );

    let found = Verifier::new(api(|_| {}), 2)
        .dns(&set.tenancy(), None, None)
        .await
        .unwrap();
    assert_eq!(found.len(), 3);
    assert!(
        found
            .iter()
            .all(|f| f.skipped && f.evidence[0].contains("no --dns given"))
    );
}
