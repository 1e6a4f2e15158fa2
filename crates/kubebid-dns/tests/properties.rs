//! Property tests: any bytes, any name, any client address. The parser and the decision never panic, an
//! unknown client never learns a tenant's address, and a cluster name is never forwarded.

// Test helpers fail the test by panicking on broken fixtures; that is their job.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::sync::OnceLock;

use hickory_proto::op::{Message, Query};
use hickory_proto::rr::{Name, RecordType};
use kubebid_dns::answer::{Action, decide, parse_request};
use kubebid_dns::zone::{UnknownClients, Zone};
use proptest::prelude::*;

fn zone() -> &'static Zone {
    static ZONE: OnceLock<Zone> = OnceLock::new();
    ZONE.get_or_init(|| {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        kubebid_dns::state::build_zone(
            &[root.join("examples/dns/cluster-state.yaml")],
            &[root.join("examples/config")],
            UnknownClients::Deny,
        )
        .unwrap()
    })
}

fn label() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("web".to_owned()),
        Just("db".to_owned()),
        Just("db-0".to_owned()),
        Just("api".to_owned()),
        Just("svc".to_owned()),
        Just("pod".to_owned()),
        Just("tenant-acme".to_owned()),
        Just("tenant-globex".to_owned()),
        Just("platform".to_owned()),
        Just("*".to_owned()),
        Just("_http".to_owned()),
        Just("_tcp".to_owned()),
        "[a-z0-9-]{1,12}",
    ]
}

fn qtype() -> impl Strategy<Value = RecordType> {
    prop_oneof![
        Just(RecordType::A),
        Just(RecordType::AAAA),
        Just(RecordType::SRV),
        Just(RecordType::PTR),
        Just(RecordType::CNAME),
        Just(RecordType::TXT),
        Just(RecordType::ANY),
        Just(RecordType::AXFR),
        Just(RecordType::SOA),
        Just(RecordType::NS),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn any_bytes_from_any_client_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600), last in any::<u8>()) {
        if let Ok(m) = parse_request(&bytes) {
            let _ = decide(zone(), IpAddr::V4(Ipv4Addr::new(127, 0, 0, last)), &m);
        }
    }

    #[test]
    fn corrupted_queries_never_panic(
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        cut in any::<prop::sample::Index>(),
        t in qtype(),
    ) {
        let mut m = Message::query();
        m.add_query(Query::query(Name::from_ascii("_http._tcp.web.tenant-acme.svc.cluster.local.").unwrap(), t));
        let mut bytes = m.to_vec().unwrap();
        for (at, value) in flips {
            let i = at.index(bytes.len());
            bytes[i] = value;
        }
        bytes.truncate(cut.index(bytes.len() + 1).max(1));
        match parse_request(&bytes) {
            Ok(m) => {
                let d = decide(zone(), IpAddr::V4(Ipv4Addr::new(127, 0, 0, 11)), &m);
                if let Action::Reply(r) = d.action {
                    prop_assert!(r.to_vec().is_ok());
                }
            }
            Err(Some(id)) => prop_assert_eq!(id, u16::from_be_bytes([bytes[0], bytes[1]])),
            Err(None) => {}
        }
    }

    #[test]
    fn cluster_names_are_answered_here_and_unknown_clients_learn_nothing(
        labels in proptest::collection::vec(label(), 0..6),
        t in qtype(),
        last in any::<u8>(),
    ) {
        let text = format!("{}{}cluster.local.", labels.join("."), if labels.is_empty() { "" } else { "." });
        let Ok(name) = Name::from_ascii(&text) else { return Ok(()) };
        let mut m = Message::query();
        m.add_query(Query::query(name, t));
        let client = IpAddr::V4(Ipv4Addr::new(127, 0, 0, last));
        let d = decide(zone(), client, &m);
        let Action::Reply(r) = d.action else {
            panic!("{text} {t} from {client} was not answered here");
        };
        // Round-trips on the wire.
        let bytes = r.to_vec().unwrap();
        prop_assert!(Message::from_vec(&bytes).is_ok());
        if ![11u8, 12, 21, 31, 41].contains(&last) {
            // Unknown clients see only structural names: never an address, a CNAME, a service.
            for a in &r.answers {
                prop_assert!(
                    matches!(a.record_type(), RecordType::SOA | RecordType::NS | RecordType::TXT),
                    "{text} {t}: {a}"
                );
            }
        }
    }
}
