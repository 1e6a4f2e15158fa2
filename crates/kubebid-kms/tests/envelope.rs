//! The key hierarchy without sockets, over the development key store in a temporary directory: round trips
//! of any data key, any flipped bit refused, a new process decrypting, rotation, and the store file's mode.

// Test helpers fail the test by panicking on broken fixtures; that is their job.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use kubebid_kms::envelope::{Envelope, EnvelopeError, KEK_ANNOTATION, MAX_PLAINTEXT};
use kubebid_kms::keystore::{KeyStore, SoftwareStore};
use proptest::prelude::*;

fn dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("kubebid-envelope-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn store(name: &str) -> Arc<dyn KeyStore> {
    let s = SoftwareStore::open(&dir(name)).unwrap();
    s.rotate_root().unwrap();
    Arc::new(s)
}

fn shared() -> &'static Envelope {
    static E: OnceLock<Envelope> = OnceLock::new();
    E.get_or_init(|| Envelope::new(store("shared")).unwrap())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn any_data_key_round_trips(plaintext in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let e = shared();
        let s = e.encrypt(&plaintext).unwrap();
        prop_assert_eq!(&e.decrypt(&s.ciphertext, &s.key_id, &s.annotations).unwrap()[..], &plaintext[..]);
    }

    #[test]
    fn any_flipped_bit_is_refused(at in any::<prop::sample::Index>(), bit in 0u8..8, in_kek in any::<bool>()) {
        let e = shared();
        let mut s = e.encrypt(&[42u8; 32]).unwrap();
        if in_kek {
            let kek = s.annotations.get_mut(KEK_ANNOTATION).unwrap();
            let i = at.index(kek.len());
            kek[i] ^= 1 << bit;
        } else {
            let i = at.index(s.ciphertext.len());
            s.ciphertext[i] ^= 1 << bit;
        }
        prop_assert!(e.decrypt(&s.ciphertext, &s.key_id, &s.annotations).is_err());
    }
}

#[test]
fn a_new_process_decrypts_and_rotation_keeps_old_ciphertexts() {
    let d = dir("rotate");
    let first = Arc::new(SoftwareStore::open(&d).unwrap());
    first.rotate_root().unwrap();
    let e1 = Envelope::new(first).unwrap();
    let s1 = e1.encrypt(b"dek-1").unwrap();
    // Another process: the same store file, a fresh KEK.
    let reopened: Arc<dyn KeyStore> = Arc::new(SoftwareStore::open(&d).unwrap());
    let e2 = Envelope::new(reopened.clone()).unwrap();
    assert_eq!(
        &e2.decrypt(&s1.ciphertext, &s1.key_id, &s1.annotations)
            .unwrap()[..],
        b"dek-1"
    );
    assert_eq!(e2.unwraps.load(std::sync::atomic::Ordering::Relaxed), 1);
    // A second decrypt of the same KEK does not go to the store again.
    e2.decrypt(&s1.ciphertext, &s1.key_id, &s1.annotations)
        .unwrap();
    assert_eq!(e2.unwraps.load(std::sync::atomic::Ordering::Relaxed), 1);
    // Rotation.
    assert_eq!(reopened.rotate_root().unwrap(), "kubebid-root-v2");
    assert_eq!(e2.status().unwrap(), "kubebid-root-v2");
    let s2 = e2.encrypt(b"dek-2").unwrap();
    assert_eq!(s2.key_id, "kubebid-root-v2");
    assert_eq!(
        &e2.decrypt(&s1.ciphertext, &s1.key_id, &s1.annotations)
            .unwrap()[..],
        b"dek-1"
    );
    assert_eq!(
        &e2.decrypt(&s2.ciphertext, &s2.key_id, &s2.annotations)
            .unwrap()[..],
        b"dek-2"
    );
    // The store file is the owner's only.
    let mode = std::fs::metadata(d.join("root-keys.json"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    assert!(!reopened.hsm_backed());
}

#[test]
fn bad_input_is_named() {
    let e = shared();
    assert!(matches!(
        e.encrypt(&vec![0; MAX_PLAINTEXT + 1]),
        Err(EnvelopeError::TooLarge(_))
    ));
    let s = e.encrypt(b"x").unwrap();
    assert!(matches!(
        e.decrypt(&s.ciphertext, "not-ours", &s.annotations),
        Err(EnvelopeError::BadKeyId(_))
    ));
    assert!(matches!(
        e.decrypt(
            &s.ciphertext,
            &"kubebid-root-v1".repeat(100),
            &s.annotations
        ),
        Err(EnvelopeError::BadKeyId(_))
    ));
    assert!(matches!(
        e.decrypt(&[], &s.key_id, &s.annotations),
        Err(EnvelopeError::Malformed(_))
    ));
    assert!(matches!(
        e.decrypt(&s.ciphertext, &s.key_id, &Default::default()),
        Err(EnvelopeError::NoKek)
    ));
    let mut other = s.ciphertext.clone();
    other[0] = 9;
    assert!(matches!(
        e.decrypt(&other, &s.key_id, &s.annotations),
        Err(EnvelopeError::Malformed(_))
    ));
}

#[test]
fn status_finds_new_root_versions_and_falls_back_when_the_current_one_is_gone() {
    let s = store("status");
    let e = Envelope::new(s.clone()).unwrap();
    assert_eq!(e.status().unwrap(), "kubebid-root-v1");
    // Two rotations since the last Status: both found by exact lookups.
    s.rotate_root().unwrap();
    s.rotate_root().unwrap();
    assert_eq!(e.status().unwrap(), "kubebid-root-v3");
    assert_eq!(e.encrypt(b"dek").unwrap().key_id, "kubebid-root-v3");
    // The current version destroyed: the newest one left takes over, and new ciphertexts use it.
    s.destroy("kubebid-root-v3").unwrap();
    assert_eq!(e.status().unwrap(), "kubebid-root-v2");
    let sealed = e.encrypt(b"dek").unwrap();
    assert_eq!(sealed.key_id, "kubebid-root-v2");
    assert_eq!(
        &e.decrypt(&sealed.ciphertext, &sealed.key_id, &sealed.annotations)
            .unwrap()[..],
        b"dek"
    );
    // None left: Status fails, which the API server sees as unhealthy.
    s.destroy("kubebid-root-v2").unwrap();
    s.destroy("kubebid-root-v1").unwrap();
    assert!(matches!(
        e.status(),
        Err(EnvelopeError::Key(
            kubebid_kms::keystore::KeyError::NoRootKey
        ))
    ));
}
