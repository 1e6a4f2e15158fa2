//! Per-tenant volume keys, without sockets. A volume's data key is wrapped (AES-256-GCM, inside the HSM)
//! by its tenant's newest key, `kubebid-tenant-<tenant>-v<N>`. The additional data binds the wrapped key to
//! the tenant and the volume, so a wrapped key copied to another volume, or presented in another tenant's
//! name, does not unwrap; a key ID that is not one of the tenant's own versions is refused before the HSM
//! is asked. Older versions keep unwrapping after `kubebid kms tenant-key rotate`.
//!
//! Which version is a tenant's newest is remembered for [`REFRESH`]: a token holds every tenant's keys,
//! and finding them all on every call would make each call as slow as the token is big. After that, one
//! exact lookup notices a newer version; `KeyStatus` always looks.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use zeroize::Zeroizing;

use crate::keystore::{KeyError, KeyStore, newest_from, tenant_prefix, version_of};

/// How long a tenant's newest version is trusted before the token is asked again: a rotation made by
/// `kubebid kms tenant-key rotate` is used for new wraps within this time.
pub const REFRESH: Duration = Duration::from_secs(5);
/// Tenants remembered at most; beyond, the memory starts afresh.
const MAX_CACHED: usize = 65_536;

/// Smallest data key accepted: 128 bits.
pub const MIN_DATA_KEY: usize = 16;
/// Largest data key accepted (a LUKS passphrase may be up to 512 bytes).
pub const MAX_DATA_KEY: usize = 512;
/// Longest volume ID accepted (a CSI volume handle).
pub const MAX_VOLUME_ID: usize = 253;
/// Nonce and tag around a wrapped key.
const WRAP_OVERHEAD: usize = 12 + 16;

/// Why a request failed. Messages name what is wrong, never key material.
#[derive(Debug, thiserror::Error)]
pub enum TenantKeyError {
    #[error("tenant {0:?} is not a DNS label")]
    BadTenant(String),
    #[error("volume_id: {0}")]
    BadVolume(&'static str),
    #[error("plaintext: a data key of {0} bytes; give {MIN_DATA_KEY} to {MAX_DATA_KEY}")]
    BadDataKey(usize),
    #[error("wrapped: {0} bytes cannot be a wrapped data key")]
    BadWrapped(usize),
    #[error("tenant {0} has no key; create one with `kubebid kms tenant-key create {0}`")]
    NoKey(String),
    #[error("key ID {key_id:?} is not a key of tenant {tenant}")]
    NotTenantKey { tenant: String, key_id: String },
    #[error("unknown key {0:?}")]
    UnknownKey(String),
    #[error(
        "the wrapped key does not authenticate for this tenant and volume (tampered, moved, or another key's)"
    )]
    Tampered,
    #[error(transparent)]
    Store(KeyError),
}

impl From<KeyError> for TenantKeyError {
    fn from(e: KeyError) -> Self {
        match e {
            KeyError::TenantName(t) => Self::BadTenant(t),
            KeyError::UnknownKey(k) => Self::UnknownKey(k),
            KeyError::Unwrap(_) => Self::Tampered,
            other => Self::Store(other),
        }
    }
}

/// A wrapped data key and the tenant key version that wrapped it.
pub struct Wrapped {
    pub key_id: String,
    pub wrapped: Vec<u8>,
}

/// The tenant's key versions: the newest (used to wrap) and all of them, oldest first.
pub struct KeyVersions {
    pub current: String,
    pub all: Vec<String>,
}

fn check_volume(volume_id: &str) -> Result<(), TenantKeyError> {
    if volume_id.is_empty() {
        return Err(TenantKeyError::BadVolume("empty"));
    }
    if volume_id.len() > MAX_VOLUME_ID {
        return Err(TenantKeyError::BadVolume("longer than 253 bytes"));
    }
    if !volume_id.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(TenantKeyError::BadVolume(
            "only printable ASCII without spaces is allowed",
        ));
    }
    Ok(())
}

/// The additional authenticated data of a wrapped key: what it is, whose, and for which volume. Tenant
/// names are DNS labels and volume IDs printable ASCII, so the NUL separators cannot be forged.
fn aad(tenant: &str, volume_id: &str) -> Vec<u8> {
    let mut out = b"kubebid.io/volume-key\0".to_vec();
    out.extend_from_slice(tenant.as_bytes());
    out.push(0);
    out.extend_from_slice(volume_id.as_bytes());
    out
}

/// A tenant's versions as last read, and when.
struct Known {
    versions: Vec<String>,
    read: Instant,
}

/// Wraps and unwraps volume keys under tenants' keys in a [`KeyStore`].
pub struct TenantKeys {
    store: Arc<dyn KeyStore>,
    known: Mutex<HashMap<String, Known>>,
}

impl TenantKeys {
    #[must_use]
    pub fn new(store: Arc<dyn KeyStore>) -> Self {
        Self {
            store,
            known: Mutex::new(HashMap::new()),
        }
    }

    fn known(&self) -> std::sync::MutexGuard<'_, HashMap<String, Known>> {
        self.known
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The tenant's versions from the token: the versions known so far plus any newer ones (one exact
    /// lookup each), or the whole list the first time or when the newest known one is gone.
    fn read(&self, tenant: &str) -> Result<Vec<String>, TenantKeyError> {
        let prefix = tenant_prefix(tenant)?;
        let mut versions = self
            .known()
            .get(tenant)
            .map(|k| k.versions.clone())
            .unwrap_or_default();
        match versions.last().cloned() {
            Some(last) if self.store.exists(&last)? => {
                let n = version_of(&last, &prefix).unwrap_or(0);
                let newest = newest_from(self.store.as_ref(), &prefix, n)?;
                versions.extend((n + 1..=newest).map(|v| format!("{prefix}{v}")));
            }
            _ => versions = self.store.tenant_keys(tenant)?,
        }
        let mut known = self.known();
        if known.len() >= MAX_CACHED {
            known.clear();
        }
        known.insert(
            tenant.to_owned(),
            Known {
                versions: versions.clone(),
                read: Instant::now(),
            },
        );
        Ok(versions)
    }

    /// The tenant's key versions, read from the token now.
    ///
    /// # Errors
    /// Bad tenant name, no key, or the store failed.
    pub fn versions(&self, tenant: &str) -> Result<KeyVersions, TenantKeyError> {
        let all = self.read(tenant)?;
        let current = all
            .last()
            .cloned()
            .ok_or_else(|| TenantKeyError::NoKey(tenant.to_owned()))?;
        Ok(KeyVersions { current, all })
    }

    /// The version to wrap with: remembered for [`REFRESH`], then read again. A tenant without a key is
    /// read again every time, so a key just created is used at once.
    fn current(&self, tenant: &str) -> Result<String, TenantKeyError> {
        let remembered = self
            .known()
            .get(tenant)
            .filter(|k| k.read.elapsed() < REFRESH)
            .and_then(|k| k.versions.last().cloned());
        let current = match remembered {
            Some(c) => Some(c),
            None => self.read(tenant)?.last().cloned(),
        };
        current.ok_or_else(|| TenantKeyError::NoKey(tenant.to_owned()))
    }

    /// Wraps `plaintext` for `volume_id` under the tenant's newest key.
    ///
    /// # Errors
    /// Bad input, no key, or the store failed.
    pub fn wrap(
        &self,
        tenant: &str,
        volume_id: &str,
        plaintext: &[u8],
    ) -> Result<Wrapped, TenantKeyError> {
        tenant_prefix(tenant)?;
        check_volume(volume_id)?;
        if !(MIN_DATA_KEY..=MAX_DATA_KEY).contains(&plaintext.len()) {
            return Err(TenantKeyError::BadDataKey(plaintext.len()));
        }
        let key_id = self.current(tenant)?;
        let wrapped = self
            .store
            .seal(&key_id, plaintext, &aad(tenant, volume_id))?;
        Ok(Wrapped { key_id, wrapped })
    }

    /// Unwraps what [`TenantKeys::wrap`] returned, for the same tenant and volume.
    ///
    /// # Errors
    /// Bad input, a key ID that is not the tenant's, a wrapped key that does not authenticate, or the
    /// store failed.
    pub fn unwrap(
        &self,
        tenant: &str,
        volume_id: &str,
        key_id: &str,
        wrapped: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, TenantKeyError> {
        let prefix = tenant_prefix(tenant)?;
        check_volume(volume_id)?;
        // Only the tenant's own versions: `kubebid-tenant-<tenant>-v<digits>`. A prefix test alone would
        // let tenant `a` name `kubebid-tenant-a-v1-v1`, which is tenant `a-v1`'s key.
        let own = version_of(key_id, &prefix).is_some();
        if !own {
            return Err(TenantKeyError::NotTenantKey {
                tenant: tenant.to_owned(),
                key_id: key_id.chars().take(80).collect(),
            });
        }
        if !(MIN_DATA_KEY + WRAP_OVERHEAD..=MAX_DATA_KEY + WRAP_OVERHEAD).contains(&wrapped.len()) {
            return Err(TenantKeyError::BadWrapped(wrapped.len()));
        }
        Ok(self.store.open(key_id, wrapped, &aad(tenant, volume_id))?)
    }

    /// Whether the keys are in hardware.
    #[must_use]
    pub fn hsm_backed(&self) -> bool {
        self.store.hsm_backed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keystore::SoftwareStore;

    fn keys(name: &str) -> (TenantKeys, Arc<dyn KeyStore>, std::path::PathBuf) {
        let dir =
            std::env::temp_dir().join(format!("kubebid-tenant-keys-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let store: Arc<dyn KeyStore> = Arc::new(SoftwareStore::open(&dir).unwrap());
        (TenantKeys::new(store.clone()), store, dir)
    }

    #[test]
    fn wraps_per_tenant_and_volume_and_survives_rotation() {
        let (k, store, dir) = keys("basic");
        assert!(matches!(
            k.wrap("acme", "vol-1", &[7; 32]),
            Err(TenantKeyError::NoKey(t)) if t == "acme"
        ));
        store.rotate_tenant("acme").unwrap();
        store.rotate_tenant("acme-b").unwrap();
        let w = k.wrap("acme", "vol-1", &[7; 32]).unwrap();
        assert_eq!(w.key_id, "kubebid-tenant-acme-v1");
        assert_eq!(
            &k.unwrap("acme", "vol-1", &w.key_id, &w.wrapped).unwrap()[..],
            &[7; 32]
        );
        // Moved to another volume of the same tenant.
        assert!(matches!(
            k.unwrap("acme", "vol-2", &w.key_id, &w.wrapped),
            Err(TenantKeyError::Tampered)
        ));
        // Another tenant naming its own key, or acme's.
        assert!(matches!(
            k.unwrap("acme-b", "vol-1", "kubebid-tenant-acme-b-v1", &w.wrapped),
            Err(TenantKeyError::Tampered)
        ));
        assert!(matches!(
            k.unwrap("acme-b", "vol-1", &w.key_id, &w.wrapped),
            Err(TenantKeyError::NotTenantKey { .. })
        ));
        // Tenant acme-v1's key starts with acme's prefix, `kubebid-tenant-acme-v`: still not acme's.
        store.rotate_tenant("acme-v1").unwrap();
        let other = k.wrap("acme-v1", "vol-1", &[7; 32]).unwrap();
        assert_eq!(other.key_id, "kubebid-tenant-acme-v1-v1");
        assert!(matches!(
            k.unwrap("acme", "vol-1", &other.key_id, &other.wrapped),
            Err(TenantKeyError::NotTenantKey { .. })
        ));
        assert_eq!(k.versions("acme").unwrap().all, ["kubebid-tenant-acme-v1"]);
        // Rotation: new wraps use v2, v1 still unwraps.
        store.rotate_tenant("acme").unwrap();
        let v = k.versions("acme").unwrap();
        assert_eq!(v.current, "kubebid-tenant-acme-v2");
        assert_eq!(v.all.len(), 2);
        let w2 = k.wrap("acme", "vol-1", &[9; 64]).unwrap();
        assert_eq!(w2.key_id, "kubebid-tenant-acme-v2");
        assert_eq!(
            &k.unwrap("acme", "vol-1", &w.key_id, &w.wrapped).unwrap()[..],
            &[7; 32]
        );
        assert!(matches!(
            k.unwrap("acme", "vol-1", "kubebid-tenant-acme-v9", &w.wrapped),
            Err(TenantKeyError::UnknownKey(_))
        ));
        // Crypto-shredding: every version goes, and with them every wrapped key; other tenants stay.
        assert_eq!(
            store.destroy_tenant("acme").unwrap(),
            ["kubebid-tenant-acme-v1", "kubebid-tenant-acme-v2"]
        );
        for (key_id, wrapped) in [(&w.key_id, &w.wrapped), (&w2.key_id, &w2.wrapped)] {
            assert!(matches!(
                k.unwrap("acme", "vol-1", key_id, wrapped),
                Err(TenantKeyError::UnknownKey(_))
            ));
        }
        assert!(matches!(k.versions("acme"), Err(TenantKeyError::NoKey(_))));
        assert_eq!(k.versions("acme-b").unwrap().all.len(), 1);
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn refuses_bad_input_by_name() {
        let (k, store, dir) = keys("bad");
        store.rotate_tenant("acme").unwrap();
        let cases: Vec<(Result<Wrapped, TenantKeyError>, &str)> = vec![
            (k.wrap("Acme", "v", &[1; 32]), "not a DNS label"),
            (k.wrap("acme", "", &[1; 32]), "volume_id: empty"),
            (k.wrap("acme", "a b", &[1; 32]), "printable ASCII"),
            (k.wrap("acme", &"v".repeat(254), &[1; 32]), "253 bytes"),
            (k.wrap("acme", "v", &[1; 15]), "15 bytes"),
            (k.wrap("acme", "v", &[1; 513]), "513 bytes"),
        ];
        for (result, message) in cases {
            let e = result.err().unwrap().to_string();
            assert!(e.contains(message), "{e:?} should contain {message:?}");
        }
        let e = k
            .unwrap("acme", "v", "kubebid-tenant-acme-v1", &[0; 10])
            .err()
            .unwrap();
        assert!(e.to_string().contains("10 bytes"), "{e}");
        let _ = std::fs::remove_dir_all(dir);
    }
}

#[cfg(test)]
mod properties {
    use super::*;
    use crate::keystore::SoftwareStore;
    use proptest::prelude::*;

    /// One directory per test: the tests run in parallel and each writes its key file.
    fn keys(test: &str) -> TenantKeys {
        let dir = std::env::temp_dir().join(format!(
            "kubebid-tenant-props-{test}-{}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let store = SoftwareStore::open(&dir).unwrap();
        if store.tenant_keys("t").unwrap().is_empty() {
            store.rotate_tenant("t").unwrap();
        }
        TenantKeys::new(Arc::new(store))
    }

    proptest! {
        #[test]
        fn any_data_key_round_trips_and_any_flipped_bit_is_refused(
            key in proptest::collection::vec(any::<u8>(), MIN_DATA_KEY..=MAX_DATA_KEY),
            volume in "[a-z0-9-]{1,40}",
            flip in any::<usize>(),
        ) {
            let k = keys("round-trip");
            let w = k.wrap("t", &volume, &key).unwrap();
            prop_assert_eq!(&k.unwrap("t", &volume, &w.key_id, &w.wrapped).unwrap()[..], &key[..]);
            let mut bad = w.wrapped.clone();
            let bit = flip % (bad.len() * 8);
            bad[bit / 8] ^= 1 << (bit % 8);
            prop_assert!(matches!(
                k.unwrap("t", &volume, &w.key_id, &bad),
                Err(TenantKeyError::Tampered | TenantKeyError::BadWrapped(_))
            ));
        }

        #[test]
        fn arbitrary_requests_never_panic(
            tenant in "\\PC{0,70}",
            volume in "\\PC{0,300}",
            key_id in "\\PC{0,90}",
            wrapped in proptest::collection::vec(any::<u8>(), 0..600),
        ) {
            let k = keys("arbitrary");
            let _ = k.wrap(&tenant, &volume, &wrapped);
            prop_assert!(k.unwrap(&tenant, &volume, &key_id, &wrapped).is_err());
        }
    }
}
