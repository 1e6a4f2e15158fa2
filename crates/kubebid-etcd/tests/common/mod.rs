//! The HSM's stand-in for these tests: a per-tenant, versioned, destroyable AES-GCM key that wraps data keys.

pub mod etcd;

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use kubebid_etcd::seal::{KeyWrapper, SealError};
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};
use zeroize::Zeroizing;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Wraps with a per-tenant AES-GCM key held here, versioned, destroyable: the HSM's stand-in.
#[derive(Default)]
pub struct FakeHsm {
    keys: Mutex<HashMap<String, Vec<[u8; 32]>>>,
    pub unwraps: AtomicU64,
}

#[allow(dead_code)] // not every test file destroys keys
impl FakeHsm {
    pub fn add(&self, tenant: &str) {
        let mut k = [0u8; 32];
        let _ = SystemRandom::new().fill(&mut k);
        lock(&self.keys)
            .entry(tenant.to_owned())
            .or_default()
            .push(k);
    }
    pub fn destroy(&self, tenant: &str) {
        lock(&self.keys).remove(tenant);
    }
    fn key(&self, tenant: &str, version: usize) -> Result<LessSafeKey, SealError> {
        let keys = lock(&self.keys);
        let k = keys
            .get(tenant)
            .and_then(|v| v.get(version))
            .ok_or_else(|| SealError::Key {
                tenant: tenant.into(),
                reason: "no such key".into(),
            })?;
        Ok(LessSafeKey::new(
            UnboundKey::new(&AES_256_GCM, k).map_err(|_| SealError::Random)?,
        ))
    }
}

impl KeyWrapper for FakeHsm {
    fn wrap(&self, tenant: &str, key: &[u8]) -> Result<Vec<u8>, SealError> {
        let version = lock(&self.keys)
            .get(tenant)
            .map_or(0, Vec::len)
            .checked_sub(1)
            .ok_or_else(|| SealError::Key {
                tenant: tenant.into(),
                reason: "no key".into(),
            })?;
        let mut out = key.to_vec();
        self.key(tenant, version)?
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key([0; 12]),
                Aad::from(tenant.as_bytes()),
                &mut out,
            )
            .map_err(|_| SealError::Random)?;
        out.insert(0, u8::try_from(version).unwrap_or(u8::MAX));
        Ok(out)
    }
    fn unwrap(&self, tenant: &str, wrapped: &[u8]) -> Result<Zeroizing<Vec<u8>>, SealError> {
        self.unwraps.fetch_add(1, Ordering::Relaxed);
        // As the tenant key service answers for a destroyed key (NOT_FOUND).
        if !lock(&self.keys).contains_key(tenant) {
            return Err(SealError::KeyGone {
                tenant: tenant.into(),
            });
        }
        let (&v, rest) = wrapped.split_first().ok_or(SealError::Malformed("empty"))?;
        let mut body = rest.to_vec();
        let n = self
            .key(tenant, usize::from(v))?
            .open_in_place(
                Nonce::assume_unique_for_key([0; 12]),
                Aad::from(tenant.as_bytes()),
                &mut body,
            )
            .map_err(|_| SealError::Key {
                tenant: tenant.into(),
                reason: "does not unwrap".into(),
            })?
            .len();
        body.truncate(n);
        Ok(Zeroizing::new(body))
    }
}
