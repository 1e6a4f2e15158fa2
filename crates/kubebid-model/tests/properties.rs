//! Property tests: the loader never panics, and reads back any JSON value it is given.

// Test helpers fail the test by panicking on broken fixtures; that is their job.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use kubebid_model::Object;
use kubebid_model::load::{ConfigSet, manifest_items};
use kubebid_model::yaml::parse_documents;
use proptest::prelude::*;
use serde_json::{Map, Value};

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        "[a-zA-Z0-9 :#'\"\\-_./*&!|>{}\\[\\],%@`~\\\\\n\t]{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(5, 64, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map("[a-zA-Z0-9_./-]{1,10}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_text_never_panics(text in "\\PC{0,300}") {
        let _ = parse_documents(&text);
        let (items, _) = manifest_items("fuzz.yaml", &text);
        for item in items {
            let _ = Object::from_value(item.value);
        }
        let mut set = ConfigSet::default();
        let _ = set.add_text("fuzz.yaml", &text);
        let _ = set.cross_check();
    }

    #[test]
    fn yaml_looking_text_never_panics(lines in prop::collection::vec("( {0,4})([a-z]{1,6}: ?|- |--- ?|&a |\\*a|<<: |\\[|\\]|\\{|\\}|'|\"|#|\\|)[a-z0-9 ,:]{0,8}", 0..20)) {
        let text = lines.join("\n");
        let _ = parse_documents(&text);
    }

    #[test]
    fn emitted_yaml_reads_back_unchanged(v in json_value()) {
        prop_assume!(v.is_object());
        let text = kubebid_model::emit::to_yaml(&v).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let docs = parse_documents(&text);
        let doc = docs.into_iter().next().ok_or_else(|| TestCaseError::fail("no document"))?;
        let doc = doc.map_err(|e| TestCaseError::fail(format!("{e}: {text}")))?;
        prop_assert_eq!(doc.value, v, "{}", text);
    }

    #[test]
    fn any_json_value_reads_back_unchanged(v in json_value()) {
        let text = serde_json::to_string_pretty(&v).expect("serialises");
        let docs = parse_documents(&text);
        prop_assert_eq!(docs.len(), usize::from(!v.is_null()));
        if let Some(doc) = docs.into_iter().next() {
            let doc = doc.map_err(|e| TestCaseError::fail(format!("{e}: {text}")))?;
            prop_assert_eq!(doc.value, v);
        }
    }
}

/// Addresses a tenant writes (ExternalNames, URLs, ipBlocks) are read as resolvers and network plugins read
/// them: every numeric spelling of an IPv4 address is that address, arbitrary text never panics, and the
/// excepts rendered for any block leave only a block that is wholly protected.
mod addresses {
    use std::net::{IpAddr, Ipv4Addr};

    use ipnet::IpNet;
    use kubebid_model::address::{ProtectedRanges, canonical, parse_host_address};
    use proptest::prelude::*;

    fn ranges() -> ProtectedRanges {
        let n = |s: &str| s.parse::<IpNet>().expect("cidr");
        ProtectedRanges::new(
            &[n("10.244.0.0/16")],
            &[n("10.96.0.0/12")],
            &[n("172.18.0.0/16")],
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

        #[test]
        fn any_text_parses_without_panicking(text in "\\PC{0,40}") {
            let _ = parse_host_address(&text);
        }

        #[test]
        fn every_numeric_spelling_is_the_same_address(
            octets in any::<[u8; 4]>(),
            zeros in 0usize..12,
            trailing_dot in any::<bool>(),
        ) {
            let ip = Ipv4Addr::from(octets);
            let n = u32::from(ip);
            let pad = "0".repeat(zeros);
            let [a, b, c, d] = octets;
            let spellings = [
                format!("{a}.{b}.{c}.{d}"),
                format!("{n}"),
                format!("0x{n:x}"),
                format!("0{pad}{n:o}"),
                format!("0x{pad}{a:x}.0{pad}{b:o}.{c}.{d}"),
                format!("{a}.{b}.{}", u32::from(c) << 8 | u32::from(d)),
                format!("{a}.{}", n & 0x00ff_ffff),
                format!("::ffff:{ip}"),
                format!("64:ff9b::{ip}"),
            ];
            for s in spellings {
                let s = if trailing_dot { format!("{s}.") } else { s };
                prop_assert_eq!(parse_host_address(&s).map(canonical), Some(IpAddr::V4(ip)), "{}", s);
            }
        }

        #[test]
        fn rendered_excepts_leave_only_wholly_protected_blocks(
            v4 in any::<[u8; 4]>(),
            len4 in 0u8..=32,
            v6 in any::<[u16; 8]>(),
            len6 in 0u8..=128,
        ) {
            let r = ranges();
            let blocks = [
                ipnet::Ipv4Net::new(Ipv4Addr::from(v4), len4).map(|n| IpNet::V4(n.trunc())),
                ipnet::Ipv6Net::new(std::net::Ipv6Addr::from(v6), len6).map(|n| IpNet::V6(n.trunc())),
            ];
            for block in blocks.into_iter().flatten() {
                let excepts = r.excepts_for(block);
                for e in &excepts {
                    prop_assert!(block.contains(e) && *e != block, "{} not inside {}", e, block);
                    prop_assert_eq!(matches!(e, IpNet::V4(_)), matches!(block, IpNet::V4(_)));
                }
                for (overlap, _, _) in r.uncovered(block, &excepts) {
                    // What is left is the block itself, inside one protected range.
                    prop_assert_eq!(
                        overlap,
                        kubebid_model::address::canonical_net(block),
                        "{} leaves {}",
                        block,
                        overlap
                    );
                }
            }
        }
    }
}
