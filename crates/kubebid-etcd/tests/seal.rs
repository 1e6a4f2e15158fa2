//! Sealing and opening: where a value opens and where it does not, rotation, and crypto-shredding.

mod common;

use std::sync::Arc;
use std::sync::atomic::Ordering;

use common::FakeHsm;
use kubebid_etcd::seal::{MAGIC, SealError, Sealer, sealed_for};

fn setup() -> (Arc<FakeHsm>, Sealer) {
    let hsm = Arc::new(FakeHsm::default());
    hsm.add("acme");
    hsm.add("globex");
    let sealer = Sealer::new(hsm.clone());
    (hsm, sealer)
}

const KEY: &[u8] = b"/registry/secrets/acme-prod/db";

#[test]
fn a_value_opens_where_it_was_sealed_and_nowhere_else() {
    let (hsm, s) = setup();
    let v = s
        .seal("acme", KEY, b"k8s:enc:kms:v2:kubebid-kms:...")
        .unwrap_or_default();
    assert!(v.starts_with(MAGIC));
    assert!(
        !v.windows(10).any(|w| w == b"kubebid-km"),
        "no plaintext in the sealed value"
    );
    assert_eq!(sealed_for(&v), Some("acme"));
    assert_eq!(
        s.open("acme", KEY, &v).map(|p| p.to_vec()),
        Ok(b"k8s:enc:kms:v2:kubebid-kms:...".to_vec())
    );
    // Copied under another key: does not open.
    assert!(matches!(
        s.open("acme", b"/registry/secrets/acme-prod/other", &v),
        Err(SealError::Authentication { .. })
    ));
    // Under another tenant's namespace: refused by name, and relabelled it does not open either.
    assert!(matches!(
        s.open("globex", KEY, &v),
        Err(SealError::WrongTenant { .. })
    ));
    let mut relabelled = v.clone();
    let at = MAGIC.len() + 1;
    relabelled[at..at + 4].copy_from_slice(b"glob");
    assert!(s.open("glob", KEY, &relabelled).is_err());
    // Two seals of one value differ (fresh nonces); a fresh sealer opens both through the HSM once.
    let w = s
        .seal("acme", KEY, b"k8s:enc:kms:v2:kubebid-kms:...")
        .unwrap_or_default();
    assert_ne!(v, w);
    let fresh = Sealer::new(hsm.clone());
    let before = hsm.unwraps.load(Ordering::Relaxed);
    assert!(fresh.open("acme", KEY, &v).is_ok() && fresh.open("acme", KEY, &w).is_ok());
    assert_eq!(
        hsm.unwraps.load(Ordering::Relaxed) - before,
        1,
        "one unwrap per data key, then the cache"
    );
    assert_eq!(s.open("acme", KEY, b"plain"), Err(SealError::NotSealed));
}

#[test]
fn rotation_seals_new_values_under_the_new_key_and_old_ones_still_open() {
    let (hsm, s) = setup();
    let old = s.seal("acme", KEY, b"one").unwrap_or_default();
    assert!(s.is_current("acme", &old));
    hsm.add("acme");
    s.rotate("acme");
    let new = s.seal("acme", KEY, b"two").unwrap_or_default();
    assert!(s.is_current("acme", &new) && !s.is_current("acme", &old));
    assert_eq!(
        s.open("acme", KEY, &old).map(|p| p.to_vec()),
        Ok(b"one".to_vec())
    );
}

#[test]
fn a_destroyed_tenant_key_shreds_that_tenant_only_and_sealing_fails_closed() {
    let (hsm, s) = setup();
    let acme = s.seal("acme", KEY, b"a").unwrap_or_default();
    let gk = b"/registry/secrets/globex/db";
    let globex = s.seal("globex", gk, b"g").unwrap_or_default();
    hsm.destroy("acme");
    s.forget("acme");
    assert!(matches!(
        s.open("acme", KEY, &acme),
        Err(SealError::KeyGone { .. })
    ));
    // Asked once: the answer is remembered for that wrapped key.
    let asked = hsm.unwraps.load(std::sync::atomic::Ordering::Relaxed);
    assert!(s.open("acme", KEY, &acme).is_err());
    assert_eq!(
        hsm.unwraps.load(std::sync::atomic::Ordering::Relaxed),
        asked
    );
    assert!(
        matches!(s.seal("acme", KEY, b"again"), Err(SealError::Key { .. })),
        "nothing is written unsealed"
    );
    assert_eq!(
        s.open("globex", gk, &globex).map(|p| p.to_vec()),
        Ok(b"g".to_vec())
    );
}
