//! Where the root keys live. In production an HSM through PKCS#11: AES-256 keys generated inside the token,
//! sensitive and not extractable, labelled `kubebid-root-v<N>` (the cluster's root key versions) and
//! `kubebid-tenant-<tenant>-v<N>` (per-tenant keys); the plugin only ever asks the token to encrypt or
//! decrypt a key-encryption key with them (AES-GCM). For `kubebid up`, a software store in a file, which is
//! not HSM-backed and says so.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::RvError;
use cryptoki::mechanism::Mechanism;
use cryptoki::mechanism::aead::GcmParams;
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::types::AuthPin;
use ring::aead::{AES_256_GCM, LessSafeKey, NONCE_LEN, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};
use zeroize::Zeroizing;

/// Prefix of the cluster's root key labels.
pub const ROOT_PREFIX: &str = "kubebid-root-v";

/// Errors of a key store. Messages never carry key material.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("HSM: {0}")]
    Hsm(String),
    #[error("no root key in the key store; create one with `kubebid kms rotate`")]
    NoRootKey,
    #[error("unknown key {0:?}")]
    UnknownKey(String),
    #[error(
        "the wrapped key does not authenticate under {0} (tampered, or wrapped by another key)"
    )]
    Unwrap(String),
    #[error("key store file {path}: {message}")]
    File { path: String, message: String },
    #[error("tenant name {0:?} is not a DNS label")]
    TenantName(String),
}

fn hsm(e: impl std::fmt::Display) -> KeyError {
    KeyError::Hsm(e.to_string())
}

/// Labels of a family (`prefix` + version number), sorted by version.
fn versions(labels: impl Iterator<Item = String>, prefix: &str) -> Vec<(u32, String)> {
    let mut v: Vec<(u32, String)> = labels
        .filter_map(|l| version_of(&l, prefix).map(|n| (n, l)))
        .collect();
    v.sort();
    v
}

pub(crate) fn tenant_prefix(tenant: &str) -> Result<String, KeyError> {
    let ok = !tenant.is_empty()
        && tenant.len() <= 63
        && tenant
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !tenant.starts_with('-')
        && !tenant.ends_with('-');
    if ok {
        Ok(format!("kubebid-tenant-{tenant}-v"))
    } else {
        Err(KeyError::TenantName(tenant.to_owned()))
    }
}

/// A store of named AES-256 keys that encrypts and decrypts small secrets (key-encryption keys) with them
/// and never hands the keys out.
pub trait KeyStore: Send + Sync {
    /// Labels of every key.
    ///
    /// # Errors
    /// The store cannot be read.
    fn labels(&self) -> Result<Vec<String>, KeyError>;
    /// Creates a key.
    ///
    /// # Errors
    /// The store refused.
    fn create(&self, label: &str) -> Result<(), KeyError>;
    /// AES-256-GCM under `label`: `nonce || ciphertext || tag`.
    ///
    /// # Errors
    /// Unknown key, or the store failed.
    fn seal(&self, label: &str, plaintext: &[u8], aad: &[u8]) -> Result<Vec<u8>, KeyError>;
    /// The inverse of [`KeyStore::seal`].
    ///
    /// # Errors
    /// Unknown key, a sealed value that does not authenticate, or the store failed.
    fn open(&self, label: &str, sealed: &[u8], aad: &[u8]) -> Result<Zeroizing<Vec<u8>>, KeyError>;
    /// Destroys the key labelled `label`: whatever it sealed can never be opened again.
    ///
    /// # Errors
    /// Unknown key, or the store refused.
    fn destroy(&self, label: &str) -> Result<(), KeyError>;
    /// Whether a key labelled `label` exists now. Cheaper than [`KeyStore::labels`]: one exact lookup.
    ///
    /// # Errors
    /// The store failed.
    fn exists(&self, label: &str) -> Result<bool, KeyError>;
    /// Whether the store answers (for `Status`).
    ///
    /// # Errors
    /// It does not.
    fn check(&self) -> Result<(), KeyError>;
    /// Whether keys live in hardware.
    fn hsm_backed(&self) -> bool;

    /// The newest root key version.
    ///
    /// # Errors
    /// None exists, or the store failed.
    fn current_root(&self) -> Result<String, KeyError> {
        versions(self.labels()?.into_iter(), ROOT_PREFIX)
            .pop()
            .map(|(_, l)| l)
            .ok_or(KeyError::NoRootKey)
    }

    /// Creates the next root key version and returns its label.
    ///
    /// # Errors
    /// The store refused.
    fn rotate_root(&self) -> Result<String, KeyError> {
        next(self, ROOT_PREFIX)
    }

    /// The tenant's key versions, oldest first.
    ///
    /// # Errors
    /// Bad tenant name, or the store failed.
    fn tenant_keys(&self, tenant: &str) -> Result<Vec<String>, KeyError> {
        let prefix = tenant_prefix(tenant)?;
        Ok(versions(self.labels()?.into_iter(), &prefix)
            .into_iter()
            .map(|(_, l)| l)
            .collect())
    }

    /// Destroys every version of the tenant's key (crypto-shredding): every volume key wrapped by them
    /// becomes unreadable. Returns the labels destroyed.
    ///
    /// # Errors
    /// Bad tenant name, or the store refused.
    fn destroy_tenant(&self, tenant: &str) -> Result<Vec<String>, KeyError> {
        let labels = self.tenant_keys(tenant)?;
        for l in &labels {
            self.destroy(l)?;
        }
        Ok(labels)
    }

    /// Creates the tenant's next key version (the first one when it has none).
    ///
    /// # Errors
    /// Bad tenant name, or the store refused.
    fn rotate_tenant(&self, tenant: &str) -> Result<String, KeyError> {
        next(self, &tenant_prefix(tenant)?)
    }
}

fn next<S: KeyStore + ?Sized>(store: &S, prefix: &str) -> Result<String, KeyError> {
    let n = versions(store.labels()?.into_iter(), prefix)
        .last()
        .map_or(1, |(n, _)| n + 1);
    let label = format!("{prefix}{n}");
    store.create(&label)?;
    Ok(label)
}

/// The version number of `label` in the family `prefix`.
#[must_use]
pub fn version_of(label: &str, prefix: &str) -> Option<u32> {
    label
        .strip_prefix(prefix)
        .filter(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|n| n.parse().ok())
}

/// The newest version of the family `prefix` at or after `known`: probes `known + 1`, `known + 2`, … by
/// exact label until one is missing. A rotation made by another process is found with one lookup per new
/// version, instead of listing every key in the token.
///
/// # Errors
/// The store failed.
pub fn newest_from<S: KeyStore + ?Sized>(
    store: &S,
    prefix: &str,
    known: u32,
) -> Result<u32, KeyError> {
    let mut n = known;
    while store.exists(&format!("{prefix}{}", n + 1))? {
        n += 1;
    }
    Ok(n)
}

/// A PKCS#11 token (an HSM, or SoftHSM2 in tests).
pub struct Pkcs11Store {
    // The session is used by one caller at a time; PKCS#11 sessions are not shareable across threads.
    session: Mutex<Session>,
    /// Handles of the keys found so far, by label. A token searches its objects one by one (SoftHSM2
    /// reads each object's file), so a lookup per call would make every call as slow as the token is
    /// big; a handle stays valid for the session, and a key deleted since is looked up again.
    handles: Mutex<HashMap<String, ObjectHandle>>,
    _context: Pkcs11,
}

impl Pkcs11Store {
    /// Opens the token labelled `token` through `module` and logs in as its user.
    ///
    /// # Errors
    /// The module does not load, no such token, or the PIN is refused.
    pub fn open(module: &Path, token: &str, pin: &Zeroizing<String>) -> Result<Self, KeyError> {
        let context =
            Pkcs11::new(module).map_err(|e| KeyError::Hsm(format!("{}: {e}", module.display())))?;
        context
            .initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK))
            .map_err(hsm)?;
        let slot = context
            .get_slots_with_token()
            .map_err(hsm)?
            .into_iter()
            .find(|s| {
                context
                    .get_token_info(*s)
                    .is_ok_and(|i| i.label().trim_end() == token)
            })
            .ok_or_else(|| KeyError::Hsm(format!("no token labelled {token:?}")))?;
        let session = context.open_rw_session(slot).map_err(hsm)?;
        session
            .login(UserType::User, Some(&AuthPin::new(pin.as_str().into())))
            .map_err(|e| KeyError::Hsm(format!("login to token {token:?}: {e}")))?;
        Ok(Self {
            session: Mutex::new(session),
            handles: Mutex::new(HashMap::new()),
            _context: context,
        })
    }

    fn session(&self) -> std::sync::MutexGuard<'_, Session> {
        self.session
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn find(session: &Session, label: &str) -> Result<Option<ObjectHandle>, KeyError> {
        Ok(session
            .find_objects(&[
                Attribute::Class(ObjectClass::SECRET_KEY),
                Attribute::Label(label.as_bytes().to_vec()),
            ])
            .map_err(hsm)?
            .into_iter()
            .next())
    }

    fn handles(&self) -> std::sync::MutexGuard<'_, HashMap<String, ObjectHandle>> {
        self.handles
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The key's handle, from the cache or the token; `fresh` skips the cache.
    fn handle(
        &self,
        session: &Session,
        label: &str,
        fresh: bool,
    ) -> Result<Option<ObjectHandle>, KeyError> {
        if !fresh && let Some(h) = self.handles().get(label) {
            return Ok(Some(*h));
        }
        let found = Self::find(session, label)?;
        let mut handles = self.handles();
        match found {
            Some(h) => {
                handles.insert(label.to_owned(), h);
            }
            None => {
                handles.remove(label);
            }
        }
        Ok(found)
    }

    /// Runs `op` with the key's handle; when the token says the cached handle is no longer valid (the key
    /// was deleted, or the token reloaded), looks the label up again once.
    fn with_key<T>(
        &self,
        label: &str,
        op: impl Fn(&Session, ObjectHandle) -> Result<T, cryptoki::error::Error>,
    ) -> Result<Result<T, cryptoki::error::Error>, KeyError> {
        let session = self.session();
        let mut fresh = false;
        loop {
            let handle = self
                .handle(&session, label, fresh)?
                .ok_or_else(|| KeyError::UnknownKey(label.to_owned()))?;
            match op(&session, handle) {
                Err(cryptoki::error::Error::Pkcs11(
                    RvError::KeyHandleInvalid | RvError::ObjectHandleInvalid,
                    _,
                )) if !fresh => fresh = true,
                other => return Ok(other),
            }
        }
    }
}

/// DER of the Ed25519 curve's object identifier (1.3.101.112), the `CKA_EC_PARAMS` of its keys.
const ED25519_OID: [u8; 5] = [0x06, 0x03, 0x2b, 0x65, 0x70];

/// Ed25519 signing keys in the token: the audit sink's tree-head key lives here, and never leaves it.
impl Pkcs11Store {
    fn find_class(
        session: &Session,
        class: ObjectClass,
        label: &str,
    ) -> Result<Option<ObjectHandle>, KeyError> {
        Ok(session
            .find_objects(&[
                Attribute::Class(class),
                Attribute::Label(label.as_bytes().to_vec()),
            ])
            .map_err(hsm)?
            .into_iter()
            .next())
    }

    /// Creates an Ed25519 key pair labelled `label`: the private half sensitive and not extractable.
    /// Returns the public key.
    ///
    /// # Errors
    /// A key of that label exists, or the token refuses.
    pub fn create_ed25519(&self, label: &str) -> Result<[u8; 32], KeyError> {
        let session = self.session();
        if Self::find_class(&session, ObjectClass::PRIVATE_KEY, label)?.is_some() {
            return Err(KeyError::Hsm(format!(
                "a key labelled {label:?} exists already"
            )));
        }
        let public = [
            Attribute::Token(true),
            Attribute::Private(false),
            Attribute::Verify(true),
            Attribute::EcParams(ED25519_OID.to_vec()),
            Attribute::Label(label.as_bytes().to_vec()),
        ];
        let private = [
            Attribute::Token(true),
            Attribute::Private(true),
            Attribute::Sensitive(true),
            Attribute::Extractable(false),
            Attribute::Sign(true),
            Attribute::Label(label.as_bytes().to_vec()),
        ];
        let (pub_handle, _) = session
            .generate_key_pair(&Mechanism::EccEdwardsKeyPairGen, &public, &private)
            .map_err(hsm)?;
        Self::point(&session, pub_handle)
    }

    /// The public key of the Ed25519 pair labelled `label`, if there is one.
    ///
    /// # Errors
    /// The token refuses, or the key is not an Ed25519 key.
    pub fn ed25519_public(&self, label: &str) -> Result<Option<[u8; 32]>, KeyError> {
        let session = self.session();
        match Self::find_class(&session, ObjectClass::PUBLIC_KEY, label)? {
            Some(h) => Self::point(&session, h).map(Some),
            None => Ok(None),
        }
    }

    fn point(session: &Session, handle: ObjectHandle) -> Result<[u8; 32], KeyError> {
        let attrs = session
            .get_attributes(handle, &[AttributeType::EcPoint])
            .map_err(hsm)?;
        let Some(Attribute::EcPoint(p)) = attrs.into_iter().next() else {
            return Err(KeyError::Hsm("the public key has no EC point".into()));
        };
        // Tokens give the point raw or as a DER OCTET STRING (04 20 ...).
        let raw = match p.as_slice() {
            [0x04, 0x20, rest @ ..] if rest.len() == 32 => rest,
            raw if raw.len() == 32 => raw,
            _ => {
                return Err(KeyError::Hsm(
                    "the public key is not an Ed25519 point".into(),
                ));
            }
        };
        let mut out = [0u8; 32];
        out.copy_from_slice(raw);
        Ok(out)
    }

    /// Signs `message` with the Ed25519 private key labelled `label` (pure `EdDSA`).
    ///
    /// # Errors
    /// No such key, or the token refuses.
    pub fn sign_ed25519(&self, label: &str, message: &[u8]) -> Result<[u8; 64], KeyError> {
        let session = self.session();
        // The handle is cached like the root keys' (a token search per signature would cost more than
        // the signature); a stale one is looked up again once.
        let cache_key = format!("ed25519-private:{label}");
        let mechanism = Mechanism::Eddsa(cryptoki::mechanism::eddsa::EddsaParams::new(
            cryptoki::mechanism::eddsa::EddsaSignatureScheme::Pure,
        ));
        let cached = self.handles().get(&cache_key).copied();
        let sig = if let Some(Ok(sig)) = cached.map(|h| session.sign(&mechanism, h, message)) {
            sig
        } else {
            let key =
                Self::find_class(&session, ObjectClass::PRIVATE_KEY, label)?.ok_or_else(|| {
                    KeyError::Hsm(format!("no signing key labelled {label:?} in the token"))
                })?;
            self.handles().insert(cache_key, key);
            session.sign(&mechanism, key, message).map_err(hsm)?
        };
        sig.as_slice()
            .try_into()
            .map_err(|_| KeyError::Hsm(format!("the token gave a {}-byte signature", sig.len())))
    }
}

impl KeyStore for Pkcs11Store {
    fn labels(&self) -> Result<Vec<String>, KeyError> {
        let session = self.session();
        let handles = session
            .find_objects(&[Attribute::Class(ObjectClass::SECRET_KEY)])
            .map_err(hsm)?;
        let mut out = Vec::new();
        for h in handles {
            for a in session
                .get_attributes(h, &[AttributeType::Label])
                .map_err(hsm)?
            {
                if let Attribute::Label(l) = a {
                    out.push(String::from_utf8_lossy(&l).into_owned());
                }
            }
        }
        Ok(out)
    }

    fn create(&self, label: &str) -> Result<(), KeyError> {
        self.session()
            .generate_key(
                &Mechanism::AesKeyGen,
                &[
                    Attribute::Class(ObjectClass::SECRET_KEY),
                    Attribute::KeyType(KeyType::AES),
                    Attribute::ValueLen(32.into()),
                    Attribute::Token(true),
                    Attribute::Private(true),
                    Attribute::Sensitive(true),
                    Attribute::Extractable(false),
                    Attribute::Encrypt(true),
                    Attribute::Decrypt(true),
                    Attribute::Label(label.as_bytes().to_vec()),
                ],
            )
            .map_err(hsm)?;
        Ok(())
    }

    fn seal(&self, label: &str, plaintext: &[u8], aad: &[u8]) -> Result<Vec<u8>, KeyError> {
        let mut iv = [0u8; NONCE_LEN];
        SystemRandom::new()
            .fill(&mut iv)
            .map_err(|_| KeyError::Hsm("no randomness".into()))?;
        let sealed = self
            .with_key(label, |session, key| {
                let mut iv = iv;
                let params = GcmParams::new(&mut iv, aad, 128.into())?;
                session.encrypt(&Mechanism::AesGcm(params), key, plaintext)
            })?
            .map_err(hsm)?;
        let mut out = iv.to_vec();
        out.extend_from_slice(&sealed);
        Ok(out)
    }

    fn open(&self, label: &str, sealed: &[u8], aad: &[u8]) -> Result<Zeroizing<Vec<u8>>, KeyError> {
        if sealed.len() < NONCE_LEN + 16 {
            return Err(KeyError::Unwrap(label.to_owned()));
        }
        let mut iv = [0u8; NONCE_LEN];
        iv.copy_from_slice(&sealed[..NONCE_LEN]);
        self.with_key(label, |session, key| {
            let mut iv = iv;
            let params = GcmParams::new(&mut iv, aad, 128.into())?;
            session.decrypt(&Mechanism::AesGcm(params), key, &sealed[NONCE_LEN..])
        })?
        .map(Zeroizing::new)
        .map_err(|_| KeyError::Unwrap(label.to_owned()))
    }

    fn destroy(&self, label: &str) -> Result<(), KeyError> {
        let session = self.session();
        let handle =
            Self::find(&session, label)?.ok_or_else(|| KeyError::UnknownKey(label.to_owned()))?;
        self.handles().remove(label);
        session.destroy_object(handle).map_err(hsm)
    }

    fn exists(&self, label: &str) -> Result<bool, KeyError> {
        // Always asks the token: callers use it to notice keys made or destroyed by another process. A
        // cached handle is checked by reading its label (one object); only a miss searches the token.
        let session = self.session();
        let cached = self.handles().get(label).copied();
        if let Some(h) = cached
            && let Ok(attributes) = session.get_attributes(h, &[AttributeType::Label])
            && attributes
                .iter()
                .any(|a| matches!(a, Attribute::Label(l) if l == label.as_bytes()))
        {
            return Ok(true);
        }
        Ok(self.handle(&session, label, true)?.is_some())
    }

    fn check(&self) -> Result<(), KeyError> {
        self.session().get_session_info().map(|_| ()).map_err(hsm)
    }

    fn hsm_backed(&self) -> bool {
        true
    }
}

/// Keys in a file (mode 0600) in a directory: for development only. The keys are on disk in the clear.
pub struct SoftwareStore {
    path: PathBuf,
    keys: Mutex<BTreeMap<String, Zeroizing<Vec<u8>>>>,
}

impl SoftwareStore {
    /// Opens (or creates) `dir/root-keys.json`.
    ///
    /// # Errors
    /// The file cannot be read or is not a key file.
    pub fn open(dir: &Path) -> Result<Self, KeyError> {
        let path = dir.join("root-keys.json");
        let err = |message: String| KeyError::File {
            path: path.display().to_string(),
            message,
        };
        let mut keys = BTreeMap::new();
        match std::fs::read(&path) {
            Ok(bytes) => {
                let bytes = Zeroizing::new(bytes);
                let map: BTreeMap<String, String> =
                    serde_json::from_slice(&bytes).map_err(|e| err(e.to_string()))?;
                for (label, hex) in map {
                    let hex = Zeroizing::new(hex);
                    let key = decode_hex(&hex)
                        .ok_or_else(|| err(format!("{label}: not a 32-byte hex key")))?;
                    keys.insert(label, key);
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(err(e.to_string())),
        }
        Ok(Self {
            path,
            keys: Mutex::new(keys),
        })
    }

    fn save(&self, keys: &BTreeMap<String, Zeroizing<Vec<u8>>>) -> Result<(), KeyError> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let err = |e: std::io::Error| KeyError::File {
            path: self.path.display().to_string(),
            message: e.to_string(),
        };
        // Written by hand so that no intermediate copy of a key escapes zeroizing.
        let mut text = Zeroizing::new(String::from("{\n"));
        for (i, (label, key)) in keys.iter().enumerate() {
            let label = serde_json::to_string(label).map_err(|e| err(std::io::Error::other(e)))?;
            text.push_str("  ");
            text.push_str(&label);
            text.push_str(": \"");
            for b in key.iter() {
                text.push(char::from(b"0123456789abcdef"[usize::from(b >> 4)]));
                text.push(char::from(b"0123456789abcdef"[usize::from(b & 15)]));
            }
            text.push('"');
            text.push_str(if i + 1 < keys.len() { ",\n" } else { "\n" });
        }
        text.push_str("}\n");
        let tmp = self.path.with_extension("json.tmp");
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(err)?;
        f.write_all(text.as_bytes()).map_err(err)?;
        f.sync_all().map_err(err)?;
        std::fs::rename(&tmp, &self.path).map_err(err)
    }

    fn key(&self, label: &str) -> Result<LessSafeKey, KeyError> {
        let keys = self
            .keys
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let k = keys
            .get(label)
            .ok_or_else(|| KeyError::UnknownKey(label.to_owned()))?;
        UnboundKey::new(&AES_256_GCM, k)
            .map(LessSafeKey::new)
            .map_err(|_| KeyError::UnknownKey(label.to_owned()))
    }
}

fn decode_hex(s: &str) -> Option<Zeroizing<Vec<u8>>> {
    if s.len() != 64 {
        return None;
    }
    let mut out = Zeroizing::new(Vec::with_capacity(32));
    for pair in s.as_bytes().chunks(2) {
        let text = std::str::from_utf8(pair).ok()?;
        out.push(u8::from_str_radix(text, 16).ok()?);
    }
    Some(out)
}

impl KeyStore for SoftwareStore {
    fn labels(&self) -> Result<Vec<String>, KeyError> {
        Ok(self
            .keys
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .keys()
            .cloned()
            .collect())
    }

    fn create(&self, label: &str) -> Result<(), KeyError> {
        let mut key = Zeroizing::new(vec![0u8; 32]);
        SystemRandom::new()
            .fill(&mut key)
            .map_err(|_| KeyError::Hsm("no randomness".into()))?;
        let mut keys = self
            .keys
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        keys.insert(label.to_owned(), key);
        self.save(&keys)
    }

    fn seal(&self, label: &str, plaintext: &[u8], aad: &[u8]) -> Result<Vec<u8>, KeyError> {
        crate::envelope::seal(&self.key(label)?, plaintext, aad)
    }

    fn open(&self, label: &str, sealed: &[u8], aad: &[u8]) -> Result<Zeroizing<Vec<u8>>, KeyError> {
        crate::envelope::open(&self.key(label)?, sealed, aad)
            .ok_or_else(|| KeyError::Unwrap(label.to_owned()))
    }

    fn destroy(&self, label: &str) -> Result<(), KeyError> {
        let mut keys = self
            .keys
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if keys.remove(label).is_none() {
            return Err(KeyError::UnknownKey(label.to_owned()));
        }
        self.save(&keys)
    }

    fn exists(&self, label: &str) -> Result<bool, KeyError> {
        Ok(self
            .keys
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .contains_key(label))
    }

    fn check(&self) -> Result<(), KeyError> {
        Ok(())
    }

    fn hsm_backed(&self) -> bool {
        false
    }
}
