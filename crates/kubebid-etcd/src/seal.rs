//! Sealing a tenant's Secret values for etcd, and opening them.
//!
//! A sealed value is
//!
//! ```text
//! "k8s:enc:kubebid-tenant:v1:" | tenant length u8 | tenant | wrapped key length u16 BE | wrapped key
//!                              | nonce (12) | AES-256-GCM ciphertext and tag
//! ```
//!
//! The data key is random, one per tenant at a time, and travels wrapped by the tenant's key in the HSM
//! (through [`KeyWrapper`], the tenant key service), so the sealer keeps no state that a restart loses:
//! any proxy opens any value by unwrapping its key once and caching it. The associated data binds the
//! value to its tenant and its etcd key: a value copied under another key, or relabelled for another
//! tenant, does not open. Forgetting a tenant drops its cached keys, so once its HSM key is destroyed
//! nothing of it opens again.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};
use zeroize::Zeroizing;

/// The first bytes of every sealed value.
pub const MAGIC: &[u8] = b"k8s:enc:kubebid-tenant:v1:";
const AAD_DOMAIN: &[u8] = b"kubebid.io/etcd-secret/v1\0";
/// Seals under one data key before the next is made: far below the 2^32 random nonces AES-GCM allows.
pub const MAX_USES: u64 = 1 << 30;

/// Wraps and unwraps data keys with a tenant's key in the HSM.
pub trait KeyWrapper: Send + Sync {
    /// Wraps `key` under `tenant`'s newest key version.
    ///
    /// # Errors
    /// The tenant has no usable key.
    fn wrap(&self, tenant: &str, key: &[u8]) -> Result<Vec<u8>, SealError>;

    /// Unwraps a key `wrap` gave for `tenant`.
    ///
    /// # Errors
    /// The tenant's key is gone (destroyed) or the wrapped key is not the tenant's.
    fn unwrap(&self, tenant: &str, wrapped: &[u8]) -> Result<Zeroizing<Vec<u8>>, SealError>;
}

/// Why a value could not be sealed or opened.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    #[error("tenant {tenant}: its key cannot be used: {reason}")]
    Key { tenant: String, reason: String },
    #[error(
        "tenant {tenant}: the key that wrapped this value's data key is destroyed (crypto-shredded)"
    )]
    KeyGone { tenant: String },
    #[error("the value is not sealed by KubeBid")]
    NotSealed,
    #[error("malformed sealed value: {0}")]
    Malformed(&'static str),
    #[error(
        "the value is sealed for tenant {found}, but its etcd key belongs to tenant {expected}"
    )]
    WrongTenant { expected: String, found: String },
    #[error(
        "the value does not open under tenant {tenant}'s key at this etcd key (moved, tampered with, or not this tenant's)"
    )]
    Authentication { tenant: String },
    #[error("no randomness for a data key or a nonce")]
    Random,
}

struct DataKey {
    key: LessSafeKey,
    wrapped: Vec<u8>,
    uses: AtomicU64,
}

impl DataKey {
    fn new(raw: &[u8], wrapped: Vec<u8>) -> Result<Self, SealError> {
        let unbound = UnboundKey::new(&AES_256_GCM, raw)
            .map_err(|_| SealError::Malformed("the data key is not 32 bytes"))?;
        Ok(Self {
            key: LessSafeKey::new(unbound),
            wrapped,
            uses: AtomicU64::new(0),
        })
    }
}

/// Data keys by tenant and wrapped bytes.
type Opened = HashMap<(String, Vec<u8>), Arc<DataKey>>;

/// Seals and opens tenants' values; cheap to share.
pub struct Sealer {
    wrapper: Arc<dyn KeyWrapper>,
    /// The data key each tenant's new values are sealed with.
    current: Mutex<HashMap<String, Arc<DataKey>>>,
    /// Every data key unwrapped so far, by tenant and wrapped bytes.
    opened: Mutex<Opened>,
    /// Tenants whose key the key service's status says is destroyed: their values are shredded.
    destroyed: Mutex<std::collections::HashSet<String>>,
    rng: SystemRandom,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn aad(tenant: &str, etcd_key: &[u8]) -> Vec<u8> {
    let mut a = Vec::with_capacity(AAD_DOMAIN.len() + tenant.len() + 1 + etcd_key.len());
    a.extend_from_slice(AAD_DOMAIN);
    a.extend_from_slice(tenant.as_bytes());
    a.push(0);
    a.extend_from_slice(etcd_key);
    a
}

/// A sealed value's parts, borrowed.
struct Parts<'v> {
    tenant: &'v str,
    wrapped: &'v [u8],
    nonce: [u8; NONCE_LEN],
    sealed: &'v [u8],
}

fn parse(value: &[u8]) -> Result<Parts<'_>, SealError> {
    let rest = value.strip_prefix(MAGIC).ok_or(SealError::NotSealed)?;
    let (&tlen, rest) = rest
        .split_first()
        .ok_or(SealError::Malformed("cut short"))?;
    let (tenant, rest) = rest
        .split_at_checked(usize::from(tlen))
        .ok_or(SealError::Malformed("cut short in the tenant"))?;
    let tenant =
        std::str::from_utf8(tenant).map_err(|_| SealError::Malformed("the tenant is not UTF-8"))?;
    let (wlen, rest) = rest
        .split_at_checked(2)
        .ok_or(SealError::Malformed("cut short"))?;
    let wlen = usize::from(u16::from_be_bytes([wlen[0], wlen[1]]));
    let (wrapped, rest) = rest
        .split_at_checked(wlen)
        .ok_or(SealError::Malformed("cut short in the wrapped key"))?;
    let (nonce, sealed) = rest
        .split_at_checked(NONCE_LEN)
        .ok_or(SealError::Malformed("cut short in the nonce"))?;
    if sealed.len() < AES_256_GCM.tag_len() {
        return Err(SealError::Malformed("cut short in the ciphertext"));
    }
    let mut n = [0u8; NONCE_LEN];
    n.copy_from_slice(nonce);
    Ok(Parts {
        tenant,
        wrapped,
        nonce: n,
        sealed,
    })
}

/// Whether `value` is a sealed value (its tenant, if so).
#[must_use]
pub fn sealed_for(value: &[u8]) -> Option<&str> {
    parse(value).ok().map(|p| p.tenant)
}

impl Sealer {
    /// A sealer whose data keys `wrapper` wraps.
    #[must_use]
    pub fn new(wrapper: Arc<dyn KeyWrapper>) -> Self {
        Self {
            wrapper,
            current: Mutex::new(HashMap::new()),
            opened: Mutex::new(HashMap::new()),
            destroyed: Mutex::new(std::collections::HashSet::new()),
            rng: SystemRandom::new(),
        }
    }

    fn current_key(&self, tenant: &str) -> Result<Arc<DataKey>, SealError> {
        if let Some(k) = lock(&self.current).get(tenant)
            && k.uses.load(Ordering::Relaxed) < MAX_USES
        {
            return Ok(k.clone());
        }
        let mut raw = Zeroizing::new([0u8; 32]);
        self.rng.fill(&mut raw[..]).map_err(|_| SealError::Random)?;
        let wrapped = self.wrapper.wrap(tenant, &raw[..])?;
        let key = Arc::new(DataKey::new(&raw[..], wrapped.clone())?);
        lock(&self.opened).insert((tenant.to_owned(), wrapped), key.clone());
        lock(&self.current).insert(tenant.to_owned(), key.clone());
        Ok(key)
    }

    /// Seals `plaintext` for `tenant`, to be stored at `etcd_key`.
    ///
    /// # Errors
    /// The tenant's key cannot wrap a data key (then nothing is written: fail closed).
    pub fn seal(
        &self,
        tenant: &str,
        etcd_key: &[u8],
        plaintext: &[u8],
    ) -> Result<Vec<u8>, SealError> {
        let tlen =
            u8::try_from(tenant.len()).map_err(|_| SealError::Malformed("tenant name too long"))?;
        let key = self.current_key(tenant)?;
        key.uses.fetch_add(1, Ordering::Relaxed);
        let wlen = u16::try_from(key.wrapped.len())
            .map_err(|_| SealError::Malformed("wrapped key too long"))?;
        let mut nonce = [0u8; NONCE_LEN];
        self.rng.fill(&mut nonce).map_err(|_| SealError::Random)?;
        let mut out = Vec::with_capacity(
            MAGIC.len() + 3 + tenant.len() + key.wrapped.len() + NONCE_LEN + plaintext.len() + 16,
        );
        out.extend_from_slice(MAGIC);
        out.push(tlen);
        out.extend_from_slice(tenant.as_bytes());
        out.extend_from_slice(&wlen.to_be_bytes());
        out.extend_from_slice(&key.wrapped);
        out.extend_from_slice(&nonce);
        let start = out.len();
        out.extend_from_slice(plaintext);
        let mut body = out.split_off(start);
        key.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad(tenant, etcd_key)),
                &mut body,
            )
            .map_err(|_| SealError::Malformed("sealing failed"))?;
        out.extend_from_slice(&body);
        Ok(out)
    }

    /// Opens a value stored at `etcd_key`, which belongs to `tenant`.
    ///
    /// # Errors
    /// Not sealed, malformed, another tenant's, moved or tampered with, or the tenant's key is gone.
    pub fn open(
        &self,
        tenant: &str,
        etcd_key: &[u8],
        value: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, SealError> {
        let p = parse(value)?;
        if p.tenant != tenant {
            return Err(SealError::WrongTenant {
                expected: tenant.to_owned(),
                found: p.tenant.to_owned(),
            });
        }
        let cache_key = (tenant.to_owned(), p.wrapped.to_vec());
        let cached = lock(&self.opened).get(&cache_key).cloned();
        let key = if let Some(k) = cached {
            k
        } else {
            if lock(&self.destroyed).contains(tenant) {
                return Err(SealError::KeyGone {
                    tenant: tenant.to_owned(),
                });
            }
            let raw = self.wrapper.unwrap(tenant, p.wrapped)?;
            let k = Arc::new(DataKey::new(&raw, p.wrapped.to_vec())?);
            lock(&self.opened).insert(cache_key, k.clone());
            k
        };
        let mut body = Zeroizing::new(p.sealed.to_vec());
        let n = key
            .key
            .open_in_place(
                Nonce::assume_unique_for_key(p.nonce),
                Aad::from(aad(tenant, etcd_key)),
                &mut body,
            )
            .map_err(|_| SealError::Authentication {
                tenant: tenant.to_owned(),
            })?
            .len();
        body.truncate(n);
        Ok(body)
    }

    /// New values of `tenant` get a new data key, wrapped by its newest key version (after a rotation).
    pub fn rotate(&self, tenant: &str) {
        lock(&self.current).remove(tenant);
    }

    /// The tenants whose keys are cached (to check for rotation or destruction).
    #[must_use]
    pub fn tenants(&self) -> Vec<String> {
        let mut t: Vec<String> = lock(&self.opened).keys().map(|(t, _)| t.clone()).collect();
        t.sort();
        t.dedup();
        t
    }

    /// Drops every cached key of `tenant` and marks it destroyed: after its HSM key is destroyed (as the key
    /// service's status confirms), nothing of it opens again, and its values read as shredded
    /// ([`SealError::KeyGone`]) without asking the service.
    pub fn forget(&self, tenant: &str) {
        lock(&self.destroyed).insert(tenant.to_owned());
        lock(&self.current).remove(tenant);
        lock(&self.opened).retain(|(t, _), _| t != tenant);
    }

    /// The tenant has a key again (its status answers): its values are asked about as usual.
    pub fn revive(&self, tenant: &str) {
        lock(&self.destroyed).remove(tenant);
    }

    /// The wrapped bytes of the data key new values of `tenant` are sealed with, if one is made yet.
    #[must_use]
    pub fn current_wrapped(&self, tenant: &str) -> Option<Vec<u8>> {
        lock(&self.current).get(tenant).map(|k| k.wrapped.clone())
    }

    /// Whether `value`, stored at `etcd_key` for `tenant`, is sealed with the data key new values get (so a
    /// rewrap can leave it).
    #[must_use]
    pub fn is_current(&self, tenant: &str, value: &[u8]) -> bool {
        let Ok(p) = parse(value) else { return false };
        lock(&self.current)
            .get(tenant)
            .is_some_and(|k| p.tenant == tenant && k.wrapped == p.wrapped)
    }
}

/// The wrapped data key a sealed value carries (to tell which tenant key version wrapped it).
#[must_use]
pub fn wrapped_key(value: &[u8]) -> Option<&[u8]> {
    parse(value).ok().map(|p| p.wrapped)
}
