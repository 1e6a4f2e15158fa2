//! Any bytes as a kernel record: decoded or refused with a reason, never a panic; a record's lengths are
//! trusted only as far as the record reaches.

use kubebid_sensor::cgroup::attribute;
use kubebid_sensor::event::{SIZE, arguments, decode};
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig { cases: 3000, ..ProptestConfig::default() })]

    #[test]
    fn any_bytes_decode_or_say_why(bytes in proptest::collection::vec(any::<u8>(), 0..700)) {
        if let Ok(r) = decode(&bytes) {
            prop_assert_eq!(bytes.len(), SIZE);
            let _ = arguments(&r);
        }
    }

    #[test]
    fn any_record_of_the_right_size_with_any_lengths(
        mut bytes in proptest::collection::vec(any::<u8>(), SIZE..=SIZE),
        kind in 1u32..3,
        str_len in any::<u32>(),
        args_len in any::<u32>(),
        nr in any::<u32>(),
    ) {
        bytes[48..52].copy_from_slice(&kind.to_ne_bytes());
        bytes[72..76].copy_from_slice(&str_len.to_ne_bytes());
        bytes[76..80].copy_from_slice(&args_len.to_ne_bytes());
        bytes[80..84].copy_from_slice(&nr.to_ne_bytes());
        let r = decode(&bytes).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert!(r.text.len() <= 256 * 3);
        let _ = arguments(&r);
        let _ = attribute(&r.text);
    }
}
