//! Arbitrary bytes as a stored value or an etcd key: an error or a value, never a panic.

use kubebid_etcd::path::SecretKeys;
use kubebid_etcd::seal::{KeyWrapper, MAGIC, SealError, Sealer, sealed_for};
use proptest::prelude::*;
use std::sync::Arc;
use zeroize::Zeroizing;

/// Refuses everything: only parsing is exercised.
struct NoKeys;

impl KeyWrapper for NoKeys {
    fn wrap(&self, tenant: &str, _: &[u8]) -> Result<Vec<u8>, SealError> {
        Err(SealError::Key {
            tenant: tenant.into(),
            reason: "none".into(),
        })
    }
    fn unwrap(&self, tenant: &str, _: &[u8]) -> Result<Zeroizing<Vec<u8>>, SealError> {
        Err(SealError::Key {
            tenant: tenant.into(),
            reason: "none".into(),
        })
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 3000, ..ProptestConfig::default() })]

    #[test]
    fn any_value_opens_or_says_why(bytes in proptest::collection::vec(any::<u8>(), 0..300), magic in any::<bool>()) {
        let mut v = if magic { MAGIC.to_vec() } else { Vec::new() };
        v.extend_from_slice(&bytes);
        let s = Sealer::new(Arc::new(NoKeys));
        prop_assert!(s.open("acme", b"/registry/secrets/a/b", &v).is_err());
        let _ = sealed_for(&v);
        prop_assert!(!s.is_current("acme", &v));
    }

    #[test]
    fn any_key_is_a_secret_of_one_namespace_or_none(key in proptest::collection::vec(any::<u8>(), 0..80)) {
        let k = SecretKeys::new("/registry");
        if let Some(ns) = k.namespace(&key) {
            prop_assert!(key.starts_with(b"/registry/secrets/"));
            prop_assert!(!ns.is_empty() && !ns.contains('/'));
        }
    }
}
