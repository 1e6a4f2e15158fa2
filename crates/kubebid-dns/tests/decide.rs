//! The policy matrix on the sans-IO core: the example cluster (`examples/dns/cluster-state.yaml`) and
//! tenants (`examples/config`), every kind of client against every kind of name.

// Test helpers fail the test by panicking on broken fixtures; that is their job.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, RecordType};
use kubebid_dns::answer::{Action, Denial, decide, parse_request};
use kubebid_dns::zone::{UnknownClients, Zone};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn zone(unknown: UnknownClients) -> Zone {
    let z = kubebid_dns::state::build_zone(
        &[root().join("examples/dns/cluster-state.yaml")],
        &[root().join("examples/config")],
        unknown,
    )
    .unwrap();
    assert!(z.warnings.is_empty(), "{:?}", z.warnings);
    z
}

const ACME: u8 = 11;
const ACME_STAGING: u8 = 12;
const GLOBEX: u8 = 21;
const INITECH: u8 = 31;
const PLATFORM: u8 = 41;
const UNKNOWN: u8 = 99;

fn client(last: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, last))
}

fn request(name: &str, qtype: RecordType) -> Message {
    let mut m = Message::query();
    m.metadata.id = 4242;
    m.metadata.recursion_desired = true;
    m.add_query(Query::query(Name::from_ascii(name).unwrap(), qtype));
    m
}

/// The response's rcode and answer data as text, or "FORWARD".
fn ask(z: &Zone, from: u8, name: &str, qtype: RecordType) -> (String, Vec<String>, Option<Denial>) {
    let d = decide(z, client(from), &request(name, qtype));
    match d.action {
        Action::Reply(m) => (
            m.metadata.response_code.to_string(),
            m.answers.iter().map(|r| r.data.to_string()).collect(),
            d.denial,
        ),
        Action::Forward(_) => ("FORWARD".into(), vec![], d.denial),
        Action::Drop => ("DROP".into(), vec![], d.denial),
    }
}

fn rcode(z: &Zone, from: u8, name: &str) -> String {
    ask(z, from, name, RecordType::A).0
}

#[test]
fn the_policy_matrix() {
    let z = zone(UnknownClients::Deny);
    let nx = "Non-Existent Domain";
    let ok = "No Error";
    let names = [
        "web.tenant-acme.svc.cluster.local.",
        "web.tenant-acme-staging.svc.cluster.local.",
        "api.tenant-globex.svc.cluster.local.",
        "app.tenant-initech.svc.cluster.local.",
        "prometheus.monitoring.svc.cluster.local.",
        "registry.platform.svc.cluster.local.",
        "internal.platform.svc.cluster.local.",
        "kube-dns.kube-system.svc.cluster.local.",
    ];
    // Rows: clients; columns: names above.
    let matrix: [(u8, [&str; 8]); 6] = [
        (ACME, [ok, ok, nx, nx, ok, nx, nx, nx]),
        (ACME_STAGING, [ok, ok, nx, nx, ok, nx, nx, nx]),
        (GLOBEX, [nx, nx, ok, nx, ok, ok, nx, nx]),
        (INITECH, [nx, nx, nx, ok, ok, nx, nx, nx]),
        (PLATFORM, [ok, ok, ok, ok, ok, ok, ok, ok]),
        (UNKNOWN, [nx, nx, nx, nx, nx, nx, nx, nx]),
    ];
    for (from, row) in matrix {
        for (name, want) in names.iter().zip(row) {
            let (got, answers, denial) = ask(&z, from, name, RecordType::A);
            assert_eq!(got, want, "client .{from} asking {name}");
            // Every name in the table exists: a NXDOMAIN here is a policy denial, and counted as one.
            assert_eq!(denial.is_some(), want == nx, "client .{from} asking {name}");
            if want == ok {
                assert_eq!(answers.len(), 1, "{name}");
            }
        }
    }
    // With unknown clients allowed, the unknown row sees everything.
    let open = zone(UnknownClients::Allow);
    for name in names {
        assert_eq!(ask(&open, UNKNOWN, name, RecordType::A).0, ok, "{name}");
    }
}

#[test]
fn a_denied_name_answers_exactly_like_a_name_that_does_not_exist() {
    let z = zone(UnknownClients::Deny);
    let denied = decide(
        &z,
        client(ACME),
        &request("api.tenant-globex.svc.cluster.local.", RecordType::A),
    );
    let missing = decide(
        &z,
        client(ACME),
        &request("nope.tenant-globex.svc.cluster.local.", RecordType::A),
    );
    let (Action::Reply(mut a), Action::Reply(mut b)) = (denied.action, missing.action) else {
        panic!("replies expected");
    };
    assert_eq!(denied.denial, Some(Denial::OtherTenant));
    assert_eq!(missing.denial, None);
    // Byte for byte, once the question (which differs by name) is the same.
    a.queries.clear();
    b.queries.clear();
    assert_eq!(a.to_vec().unwrap(), b.to_vec().unwrap());
    assert_eq!(a.metadata.response_code, ResponseCode::NXDomain);
    assert!(a.metadata.authoritative);
    assert_eq!(a.authorities.len(), 1, "SOA for negative caching");
    // The same for a whole namespace of another tenant, which exists, and one that does not.
    for (name, qtype) in [
        ("tenant-globex.svc.cluster.local.", RecordType::A),
        ("tenant-nobody.svc.cluster.local.", RecordType::A),
        (
            "_https._tcp.api.tenant-globex.svc.cluster.local.",
            RecordType::SRV,
        ),
    ] {
        assert_eq!(
            ask(&z, ACME, name, qtype).0,
            "Non-Existent Domain",
            "{name}"
        );
    }
}

#[test]
fn service_discovery_records() {
    let z = zone(UnknownClients::Deny);
    // SRV for a named port of a ClusterIP service, with the address in the additional section.
    let d = decide(
        &z,
        client(ACME),
        &request(
            "_http._tcp.web.tenant-acme.svc.cluster.local.",
            RecordType::SRV,
        ),
    );
    let Action::Reply(m) = d.action else { panic!() };
    assert_eq!(m.answers.len(), 1);
    assert_eq!(
        m.answers[0].data.to_string(),
        "0 100 80 web.tenant-acme.svc.cluster.local."
    );
    assert_eq!(m.additionals[0].data.to_string(), "10.96.10.10");
    // Headless: the ready endpoints only, each with its own name and SRV target.
    let (_, mut ips, _) = ask(&z, ACME, "db.tenant-acme.svc.cluster.local.", RecordType::A);
    ips.sort();
    assert_eq!(ips, ["10.244.1.10", "10.244.1.11"]);
    assert_eq!(
        ask(
            &z,
            ACME,
            "db-1.db.tenant-acme.svc.cluster.local.",
            RecordType::A
        )
        .1,
        ["10.244.1.11"]
    );
    assert_eq!(
        ask(
            &z,
            ACME,
            "db-2.db.tenant-acme.svc.cluster.local.",
            RecordType::A
        )
        .0,
        "Non-Existent Domain"
    );
    let (_, mut srv, _) = ask(
        &z,
        ACME,
        "_postgres._tcp.db.tenant-acme.svc.cluster.local.",
        RecordType::SRV,
    );
    srv.sort();
    assert_eq!(
        srv,
        [
            "0 100 5432 db-0.db.tenant-acme.svc.cluster.local.",
            "0 100 5432 db-1.db.tenant-acme.svc.cluster.local."
        ]
    );
    // ExternalName: a CNAME whatever the type asked.
    for qtype in [RecordType::A, RecordType::AAAA, RecordType::CNAME] {
        assert_eq!(
            ask(&z, GLOBEX, "legacy.tenant-globex.svc.cluster.local.", qtype).1,
            ["legacy.globex.example."]
        );
    }
    // Pod records, verified against the pods that exist.
    assert_eq!(
        ask(
            &z,
            ACME,
            "127-0-0-11.tenant-acme.pod.cluster.local.",
            RecordType::A
        )
        .1,
        ["127.0.0.11"]
    );
    assert_eq!(
        ask(
            &z,
            ACME,
            "10-9-9-9.tenant-acme.pod.cluster.local.",
            RecordType::A
        )
        .0,
        "Non-Existent Domain"
    );
    assert_eq!(
        ask(
            &z,
            ACME,
            "127-0-0-21.tenant-globex.pod.cluster.local.",
            RecordType::A
        )
        .0,
        "Non-Existent Domain"
    );
    // A dual-stack pod has an AAAA record too, named as CoreDNS names it, and its PTR; both only for
    // its own tenant.
    let v6 = "fd00-10-244--21.tenant-globex.pod.cluster.local.";
    assert_eq!(ask(&z, GLOBEX, v6, RecordType::AAAA).1, ["fd00:10:244::21"]);
    assert_eq!(ask(&z, ACME, v6, RecordType::AAAA).0, "Non-Existent Domain");
    let ptr = "1.2.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.4.4.2.0.0.1.0.0.0.0.d.f.ip6.arpa.";
    assert_eq!(ask(&z, GLOBEX, ptr, RecordType::PTR).1, [v6]);
    let (code, answers, denial) = ask(&z, ACME, ptr, RecordType::PTR);
    assert_eq!(
        (code.as_str(), answers.len(), denial),
        ("Non-Existent Domain", 0, Some(Denial::Reverse))
    );
    // NODATA: the name exists, not the type.
    let (code, answers, _) = ask(
        &z,
        ACME,
        "web.tenant-acme.svc.cluster.local.",
        RecordType::AAAA,
    );
    assert_eq!((code.as_str(), answers.len()), ("No Error", 0));
    // Names are case-insensitive.
    assert_eq!(
        ask(
            &z,
            ACME,
            "WEB.Tenant-Acme.SVC.cluster.LOCAL.",
            RecordType::A
        )
        .1,
        ["10.96.10.10"]
    );
    // The schema version, to anyone.
    assert_eq!(
        ask(&z, UNKNOWN, "dns-version.cluster.local.", RecordType::TXT).1,
        ["1.1.0"]
    );
    // Search-path expansions of a short name end in NXDOMAIN inside the zone, never forwarded.
    for n in [
        "web.svc.cluster.local.",
        "web.cluster.local.",
        "web.tenant-acme.cluster.local.",
    ] {
        assert_eq!(rcode(&z, ACME, n), "Non-Existent Domain", "{n}");
    }
}

#[test]
fn enumeration_wildcards_and_reverse_lookups() {
    let z = zone(UnknownClients::Deny);
    for (name, qtype) in [
        ("cluster.local.", RecordType::AXFR),
        ("cluster.local.", RecordType::IXFR),
        ("web.tenant-acme.svc.cluster.local.", RecordType::ANY),
    ] {
        let (code, _, denial) = ask(&z, PLATFORM, name, qtype);
        assert_eq!(
            (code.as_str(), denial),
            ("Non-Existent Domain", Some(Denial::Enumeration)),
            "{qtype}"
        );
    }
    for name in [
        "*.tenant-acme.svc.cluster.local.",
        "*.*.svc.cluster.local.",
        "_http._tcp.*.tenant-acme.svc.cluster.local.",
    ] {
        let (code, _, denial) = ask(&z, ACME, name, RecordType::A);
        assert_eq!(
            (code.as_str(), denial),
            ("Non-Existent Domain", Some(Denial::Wildcard)),
            "{name}"
        );
    }
    // PTR: own service yes, another tenant's no, an unused cluster address the same no.
    assert_eq!(
        ask(&z, ACME, "10.10.96.10.in-addr.arpa.", RecordType::PTR).1,
        ["web.tenant-acme.svc.cluster.local."]
    );
    assert_eq!(
        ask(&z, ACME, "10.1.244.10.in-addr.arpa.", RecordType::PTR).1,
        ["db-0.db.tenant-acme.svc.cluster.local."]
    );
    let other = ask(&z, ACME, "10.20.96.10.in-addr.arpa.", RecordType::PTR);
    assert_eq!(
        (other.0.as_str(), other.2),
        ("Non-Existent Domain", Some(Denial::Reverse))
    );
    let unused = ask(&z, ACME, "99.99.96.10.in-addr.arpa.", RecordType::PTR);
    assert_eq!((unused.0.as_str(), unused.2), ("Non-Existent Domain", None));
    // An address outside the cluster goes upstream.
    assert_eq!(
        ask(&z, ACME, "10.2.0.192.in-addr.arpa.", RecordType::PTR).0,
        "FORWARD"
    );
}

#[test]
fn external_names_follow_the_tenant() {
    let z = zone(UnknownClients::Deny);
    for from in [ACME, GLOBEX, PLATFORM, UNKNOWN] {
        assert_eq!(
            rcode(&z, from, "www.example.test."),
            "FORWARD",
            "client .{from}"
        );
    }
    let (code, _, denial) = ask(&z, INITECH, "www.example.test.", RecordType::A);
    assert_eq!(
        (code.as_str(), denial),
        ("Non-Existent Domain", Some(Denial::External))
    );
}

#[test]
fn malformed_and_unsupported_requests() {
    let z = zone(UnknownClients::Deny);
    // Too short for a header: dropped. A header with garbage after it: FORMERR with its ID.
    assert_eq!(parse_request(&[1, 2, 3]).unwrap_err(), None);
    let mut garbage = vec![0x12, 0x34, 0x01, 0x00, 0x00, 0x01, 0, 0, 0, 0, 0, 0];
    garbage.extend_from_slice(&[0x3f, b'a']);
    assert_eq!(parse_request(&garbage).unwrap_err(), Some(0x1234));
    // A response is never answered (no reflection loops).
    let mut response = request("web.tenant-acme.svc.cluster.local.", RecordType::A);
    response.metadata.message_type = MessageType::Response;
    assert!(matches!(
        decide(&z, client(ACME), &response).action,
        Action::Drop
    ));
    // Two questions: FORMERR. A NOTIFY: NOTIMP. Class CH: NOTIMP.
    let mut two = request("a.cluster.local.", RecordType::A);
    two.add_query(Query::query(
        Name::from_ascii("b.cluster.local.").unwrap(),
        RecordType::A,
    ));
    let code = |m: &Message| match decide(&z, client(ACME), m).action {
        Action::Reply(r) => r.metadata.response_code,
        other => panic!("{other:?}"),
    };
    assert_eq!(code(&two), ResponseCode::FormErr);
    let mut notify = request("cluster.local.", RecordType::SOA);
    notify.metadata.op_code = OpCode::Notify;
    assert_eq!(code(&notify), ResponseCode::NotImp);
    let mut chaos = request("version.bind.", RecordType::TXT);
    chaos.queries[0].set_query_class(hickory_proto::rr::DNSClass::CH);
    assert_eq!(code(&chaos), ResponseCode::NotImp);
    // EDNS in, EDNS out.
    let mut with_edns = request("web.tenant-acme.svc.cluster.local.", RecordType::A);
    let mut e = Edns::new();
    e.set_max_payload(4096);
    with_edns.set_edns(e);
    let Action::Reply(r) = decide(&z, client(ACME), &with_edns).action else {
        panic!()
    };
    assert_eq!(
        r.edns.map(|e| e.max_payload()),
        Some(kubebid_dns::answer::EDNS_PAYLOAD)
    );
    assert!(matches!(&r.answers[0].data, RData::A(_)));
}
