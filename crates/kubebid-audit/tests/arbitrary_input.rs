//! Arbitrary bytes as a batch, a segment or a proof: an error or a value, never a panic.

// Test fixtures fail the test loudly.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use kubebid_audit::event::parse_batch;
use kubebid_audit::head::{PublicKey, SignedHead};
use kubebid_audit::segment::{Records, decode_header};
use proptest::prelude::*;

const BATCH: &str = r#"{"kind":"EventList","apiVersion":"audit.k8s.io/v1","items":[{"auditID":"a","stage":"ResponseComplete","verb":"get","user":{"username":"u","groups":["g"]},"objectRef":{"resource":"pods","namespace":"n"}}]}"#;

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn any_text_as_a_batch(text in ".{0,400}") {
        let _ = parse_batch(&text);
    }

    #[test]
    fn a_mutated_batch(at in 0usize..BATCH.len(), with in any::<char>()) {
        let mut s: Vec<char> = BATCH.chars().collect();
        s[at] = with;
        let s: String = s.into_iter().collect();
        if let Ok(b) = parse_batch(&s) {
            for (range, _) in b.events {
                let starts = s.get(range).is_some_and(|e| e.starts_with('{'));
                prop_assert!(starts, "an event range must hold an object");
            }
        }
    }

    #[test]
    fn any_bytes_as_a_segment(bytes in proptest::collection::vec(any::<u8>(), 0..600), prefix in any::<bool>()) {
        let mut b = if prefix { b"KBAUDIT1".to_vec() } else { Vec::new() };
        b.extend_from_slice(&bytes);
        if let Ok((_, start)) = decode_header(&b) {
            for r in Records::new(&b, start) {
                if r.is_err() { break; }
            }
        }
        for r in Records::new(&b, 0) {
            if r.is_err() { break; }
        }
        let _ = SignedHead::decode(&bytes);
    }

    #[test]
    fn any_bytes_as_a_proof(bytes in proptest::collection::vec(any::<u8>(), 0..400), text in ".{0,300}") {
        let key = PublicKey([7; 32]);
        prop_assert!(kubebid_audit::proof::check(&bytes, &key).is_err());
        prop_assert!(kubebid_audit::proof::check(text.as_bytes(), &key).is_err());
        let _ = PublicKey::from_pem(&bytes, "fuzz");
    }
}
