//! The key hierarchy, without sockets. The API server's data keys are encrypted (AES-256-GCM) under a local
//! key-encryption key (KEK) held in memory. The KEK exists outside memory only sealed by the HSM's root
//! key, and that sealed KEK travels with every ciphertext in its annotations, so any replica, or this one
//! after a restart, can decrypt with nothing but the HSM. The key ID is the root key's version: when it
//! changes (`kubebid kms rotate`), a new KEK is made under the new root and the API server, seeing a new
//! key ID in `Status`, re-encrypts; older ciphertexts still decrypt under their own root version.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};
use zeroize::Zeroizing;

use crate::keystore::{KeyError, KeyStore, ROOT_PREFIX, newest_from, version_of};

/// Annotation carrying the KEK sealed by the root key.
pub const KEK_ANNOTATION: &str = "kek.kms.kubebid.io";
/// Largest plaintext accepted (the API server sends 32-byte data key seeds).
pub const MAX_PLAINTEXT: usize = 64 * 1024;
/// Largest key ID the API server accepts.
pub const MAX_KEY_ID: usize = 1024;
/// Encryptions under one KEK before a fresh one is made, far below the random-nonce limit of AES-GCM.
pub const KEK_USES: u64 = 1 << 24;

const FORMAT: u8 = 1;
const TAG_LEN: usize = 16;

/// Why a request failed. Messages name what is wrong, never key material or plaintext.
#[derive(Debug, thiserror::Error)]
pub enum EnvelopeError {
    #[error("plaintext of {0} bytes exceeds the {MAX_PLAINTEXT}-byte limit")]
    TooLarge(usize),
    #[error("ciphertext is malformed: {0}")]
    Malformed(&'static str),
    #[error("annotation {KEK_ANNOTATION} is missing: the ciphertext was not made by this plugin")]
    NoKek,
    #[error("key ID {0:?} is not a KubeBid root key version")]
    BadKeyId(String),
    #[error("ciphertext does not authenticate (tampered, or another key's)")]
    Tampered,
    #[error(transparent)]
    Key(#[from] KeyError),
}

/// AES-256-GCM: `nonce || ciphertext || tag`.
///
/// # Errors
/// Only when the system has no randomness.
pub fn seal(key: &LessSafeKey, plaintext: &[u8], aad: &[u8]) -> Result<Vec<u8>, KeyError> {
    let mut nonce = [0u8; NONCE_LEN];
    SystemRandom::new()
        .fill(&mut nonce)
        .map_err(|_| KeyError::Hsm("no randomness".into()))?;
    let mut out = Vec::with_capacity(NONCE_LEN + plaintext.len() + TAG_LEN);
    out.extend_from_slice(&nonce);
    out.extend_from_slice(plaintext);
    let tag = key
        .seal_in_place_separate_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(aad),
            &mut out[NONCE_LEN..],
        )
        .map_err(|_| KeyError::Hsm("encryption failed".into()))?;
    out.extend_from_slice(tag.as_ref());
    Ok(out)
}

/// The inverse of [`seal`]; `None` when it does not authenticate.
#[must_use]
pub fn open(key: &LessSafeKey, sealed: &[u8], aad: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
    let nonce = sealed.get(..NONCE_LEN)?;
    let body = sealed.get(NONCE_LEN..)?;
    if body.len() < TAG_LEN {
        return None;
    }
    let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
    let mut buf = Zeroizing::new(body.to_vec());
    let n = key
        .open_in_place(nonce, Aad::from(aad), &mut buf[..])
        .ok()?
        .len();
    buf.truncate(n);
    Some(buf)
}

fn digest(bytes: &[u8]) -> [u8; 32] {
    let d = ring::digest::digest(&ring::digest::SHA256, bytes);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// A KEK in memory: its AES key, the root version that sealed it and the sealed bytes.
struct Kek {
    root: String,
    sealed: Vec<u8>,
    key: LessSafeKey,
    uses: AtomicU64,
}

fn kek_from(bytes: &[u8]) -> Result<LessSafeKey, EnvelopeError> {
    UnboundKey::new(&AES_256_GCM, bytes)
        .map(LessSafeKey::new)
        .map_err(|_| EnvelopeError::Tampered)
}

/// What an encryption gives back: the ciphertext, the key ID and the annotations to store beside it.
pub struct Sealed {
    pub ciphertext: Vec<u8>,
    pub key_id: String,
    pub annotations: HashMap<String, Vec<u8>>,
}

/// The plugin's keys.
pub struct Envelope {
    store: Arc<dyn KeyStore>,
    current: RwLock<Arc<Kek>>,
    /// KEKs opened for decryption, by the digest of their sealed form.
    opened: Mutex<HashMap<[u8; 32], Arc<Kek>>>,
    /// Calls to the key store to open a KEK (each is an HSM round trip).
    pub unwraps: AtomicU64,
}

impl Envelope {
    /// Starts with a fresh KEK under the newest root key.
    ///
    /// # Errors
    /// No root key, or the store failed.
    pub fn new(store: Arc<dyn KeyStore>) -> Result<Self, EnvelopeError> {
        let root = store.current_root()?;
        let kek = Self::fresh(store.as_ref(), root)?;
        Ok(Self {
            store,
            current: RwLock::new(Arc::new(kek)),
            opened: Mutex::new(HashMap::new()),
            unwraps: AtomicU64::new(0),
        })
    }

    fn fresh(store: &dyn KeyStore, root: String) -> Result<Kek, EnvelopeError> {
        let mut bytes = Zeroizing::new([0u8; 32]);
        SystemRandom::new()
            .fill(&mut bytes[..])
            .map_err(|_| KeyError::Hsm("no randomness".into()))?;
        let sealed = store.seal(&root, &bytes[..], root.as_bytes())?;
        let key = kek_from(&bytes[..])?;
        Ok(Kek {
            root,
            sealed,
            key,
            uses: AtomicU64::new(0),
        })
    }

    fn current(&self) -> Arc<Kek> {
        self.current
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Whether the key store answers, and the current key ID. A new root version (after a rotation)
    /// is picked up here, with a fresh KEK under it.
    ///
    /// # Errors
    /// The store does not answer or has no root key: the health check fails with this message.
    pub fn status(&self) -> Result<String, EnvelopeError> {
        self.store.check()?;
        // Two exact lookups (is the current root still there, is there a newer one), not a listing of
        // every key in the token: the token also holds every tenant's keys. Only when the current root
        // is gone does the whole list decide which version is current.
        let known = self.current().root.clone();
        let root = match version_of(&known, ROOT_PREFIX) {
            Some(n) if self.store.exists(&known)? => {
                let newest = newest_from(self.store.as_ref(), ROOT_PREFIX, n)?;
                format!("{ROOT_PREFIX}{newest}")
            }
            _ => self.store.current_root()?,
        };
        if known != root {
            let kek = Self::fresh(self.store.as_ref(), root.clone())?;
            tracing::info!(key_id = %root, "new root key version: new KEK");
            *self
                .current
                .write()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(kek);
        }
        Ok(root)
    }

    /// Encrypts a data key: the ciphertext, the key ID and the annotations to store beside it.
    ///
    /// # Errors
    /// Too large, or a fresh KEK could not be sealed.
    pub fn encrypt(&self, plaintext: &[u8]) -> Result<Sealed, EnvelopeError> {
        if plaintext.len() > MAX_PLAINTEXT {
            return Err(EnvelopeError::TooLarge(plaintext.len()));
        }
        let mut kek = self.current();
        if kek.uses.fetch_add(1, Ordering::Relaxed) >= KEK_USES {
            let fresh = Arc::new(Self::fresh(self.store.as_ref(), kek.root.clone())?);
            *self
                .current
                .write()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = fresh.clone();
            kek = fresh;
        }
        let mut out = vec![FORMAT];
        out.extend(seal(&kek.key, plaintext, kek.root.as_bytes())?);
        Ok(Sealed {
            ciphertext: out,
            key_id: kek.root.clone(),
            annotations: HashMap::from([(KEK_ANNOTATION.to_owned(), kek.sealed.clone())]),
        })
    }

    /// Decrypts what [`Envelope::encrypt`] produced, under the root version named by `key_id`. May ask the
    /// HSM (to open a KEK not seen yet): call it off the async workers.
    ///
    /// # Errors
    /// Malformed input, an unknown key ID, or a ciphertext or sealed KEK that does not authenticate.
    pub fn decrypt(
        &self,
        ciphertext: &[u8],
        key_id: &str,
        annotations: &HashMap<String, Vec<u8>>,
    ) -> Result<Zeroizing<Vec<u8>>, EnvelopeError> {
        let (body, sealed) = Self::check(ciphertext, key_id, annotations)?;
        let kek = self.kek(key_id, sealed)?;
        open(&kek.key, body, key_id.as_bytes()).ok_or(EnvelopeError::Tampered)
    }

    /// [`decrypt`](Self::decrypt) if it needs no HSM call (the KEK is open already, the common case):
    /// microseconds of CPU, fine on an async worker. `None` when the KEK must be opened first.
    ///
    /// # Errors
    /// As [`decrypt`](Self::decrypt).
    pub fn decrypt_cached(
        &self,
        ciphertext: &[u8],
        key_id: &str,
        annotations: &HashMap<String, Vec<u8>>,
    ) -> Option<Result<Zeroizing<Vec<u8>>, EnvelopeError>> {
        let (body, sealed) = match Self::check(ciphertext, key_id, annotations) {
            Ok(x) => x,
            Err(e) => return Some(Err(e)),
        };
        let kek = self.cached_kek(key_id, sealed)?;
        Some(open(&kek.key, body, key_id.as_bytes()).ok_or(EnvelopeError::Tampered))
    }

    /// The checks of a decrypt request: the sealed body and the sealed KEK.
    fn check<'a>(
        ciphertext: &'a [u8],
        key_id: &str,
        annotations: &'a HashMap<String, Vec<u8>>,
    ) -> Result<(&'a [u8], &'a [u8]), EnvelopeError> {
        if key_id.len() > MAX_KEY_ID || !key_id.starts_with(ROOT_PREFIX) {
            return Err(EnvelopeError::BadKeyId(key_id.chars().take(80).collect()));
        }
        let (&format, body) = ciphertext
            .split_first()
            .ok_or(EnvelopeError::Malformed("empty"))?;
        if format != FORMAT {
            return Err(EnvelopeError::Malformed("unknown format version"));
        }
        if body.len() < NONCE_LEN + TAG_LEN {
            return Err(EnvelopeError::Malformed("shorter than a nonce and a tag"));
        }
        let sealed = annotations
            .get(KEK_ANNOTATION)
            .ok_or(EnvelopeError::NoKek)?;
        Ok((body, sealed))
    }

    /// The digest a KEK is cached under. It covers the root version too: the same sealed bytes under
    /// another key ID must not find a KEK opened for its real one.
    fn cache_id(root: &str, sealed: &[u8]) -> [u8; 32] {
        let mut id = sealed.to_vec();
        id.extend_from_slice(root.as_bytes());
        digest(&id)
    }

    /// The KEK sealed as `sealed` under `root`, if it is open already.
    fn cached_kek(&self, root: &str, sealed: &[u8]) -> Option<Arc<Kek>> {
        let current = self.current();
        if current.root == root && current.sealed == sealed {
            return Some(current);
        }
        self.opened
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&Self::cache_id(root, sealed))
            .cloned()
    }

    fn kek(&self, root: &str, sealed: &[u8]) -> Result<Arc<Kek>, EnvelopeError> {
        if let Some(k) = self.cached_kek(root, sealed) {
            return Ok(k);
        }
        let id = Self::cache_id(root, sealed);
        self.unwraps.fetch_add(1, Ordering::Relaxed);
        let bytes = self
            .store
            .open(root, sealed, root.as_bytes())
            .map_err(|e| match e {
                KeyError::Unwrap(_) => EnvelopeError::Tampered,
                other => EnvelopeError::Key(other),
            })?;
        let kek = Arc::new(Kek {
            root: root.to_owned(),
            sealed: sealed.to_vec(),
            key: kek_from(&bytes)?,
            uses: AtomicU64::new(0),
        });
        let mut opened = self
            .opened
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if opened.len() >= 4096 {
            opened.clear();
        }
        opened.insert(id, kek.clone());
        Ok(kek)
    }

    /// Whether the root keys are in hardware.
    #[must_use]
    pub fn hsm_backed(&self) -> bool {
        self.store.hsm_backed()
    }
}
