//! Signed tree heads: a tenant's log size, its oldest retained index and its root, signed with Ed25519.
//!
//! The signed bytes name the tenant, so a head of one tenant's log cannot be passed off for another's,
//! and the oldest retained index, so deleting a log's oldest segments outside retention shows.

use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use ring::signature::{ED25519, Ed25519KeyPair, KeyPair as _, UnparsedPublicKey};
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{PrivatePkcs8KeyDer, SubjectPublicKeyInfoDer};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::merkle::Hash;

/// The DER prefix of an Ed25519 SubjectPublicKeyInfo (RFC 8410), before the 32 key bytes.
const SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];
const DOMAIN: &[u8] = b"kubebid.io/audit/tree-head/v1\0";
const ENCODED_LEN: usize = 8 + 8 + 8 + 32 + 64;

/// A signed tree head.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SignedHead {
    /// Number of events in the log.
    pub tree_size: u64,
    /// Index of the oldest event still kept (retention removes older segments).
    pub oldest: u64,
    /// When it was signed, in milliseconds since the Unix epoch.
    pub timestamp_ms: i64,
    /// The Merkle tree's root over every event, from index 0.
    #[serde(with = "hex32")]
    pub root: Hash,
    /// Ed25519 over [`SignedHead::message`].
    #[serde(with = "b64sig")]
    pub signature: [u8; 64],
}

impl SignedHead {
    /// The bytes that are signed.
    #[must_use]
    pub fn message(
        tenant: &str,
        tree_size: u64,
        oldest: u64,
        timestamp_ms: i64,
        root: &Hash,
    ) -> Vec<u8> {
        let mut m = Vec::with_capacity(DOMAIN.len() + tenant.len() + 57);
        m.extend_from_slice(DOMAIN);
        m.extend_from_slice(tenant.as_bytes());
        m.push(0);
        m.extend_from_slice(&tree_size.to_be_bytes());
        m.extend_from_slice(&oldest.to_be_bytes());
        m.extend_from_slice(&timestamp_ms.to_be_bytes());
        m.extend_from_slice(root);
        m
    }

    /// Whether the signature is `key`'s over this head of `tenant`'s log.
    #[must_use]
    pub fn verify(&self, tenant: &str, key: &PublicKey) -> bool {
        let m = Self::message(
            tenant,
            self.tree_size,
            self.oldest,
            self.timestamp_ms,
            &self.root,
        );
        UnparsedPublicKey::new(&ED25519, &key.0)
            .verify(&m, &self.signature)
            .is_ok()
    }

    /// The record payload.
    #[must_use]
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(ENCODED_LEN);
        out.extend_from_slice(&self.tree_size.to_le_bytes());
        out.extend_from_slice(&self.oldest.to_le_bytes());
        out.extend_from_slice(&self.timestamp_ms.to_le_bytes());
        out.extend_from_slice(&self.root);
        out.extend_from_slice(&self.signature);
        out
    }

    /// Reads a record payload back.
    #[must_use]
    pub fn decode(b: &[u8]) -> Option<Self> {
        if b.len() != ENCODED_LEN {
            return None;
        }
        Some(Self {
            tree_size: u64::from_le_bytes(b[0..8].try_into().ok()?),
            oldest: u64::from_le_bytes(b[8..16].try_into().ok()?),
            timestamp_ms: i64::from_le_bytes(b[16..24].try_into().ok()?),
            root: b[24..56].try_into().ok()?,
            signature: b[56..120].try_into().ok()?,
        })
    }
}

/// Why a key could not be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("{path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: {what}")]
    Format { path: String, what: &'static str },
    #[error("signing failed: {0}")]
    Sign(String),
}

/// Something that signs tree heads: a key file, or a key held in an HSM.
pub trait Signer: Send + Sync {
    /// Signs `message` with Ed25519.
    fn sign(&self, message: &[u8]) -> Result<[u8; 64], KeyError>;
    /// The public half.
    fn public_key(&self) -> PublicKey;
}

/// An Ed25519 key read from a PKCS#8 PEM file.
pub struct KeyFile {
    pair: Ed25519KeyPair,
}

impl KeyFile {
    /// Reads a PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`) Ed25519 key.
    pub fn load(path: &Path) -> Result<Self, KeyError> {
        let shown = path.display().to_string();
        let pem = Zeroizing::new(std::fs::read(path).map_err(|source| KeyError::Read {
            path: shown.clone(),
            source,
        })?);
        let der = PrivatePkcs8KeyDer::from_pem_slice(&pem).map_err(|_| KeyError::Format {
            path: shown.clone(),
            what: "not a PKCS#8 PEM private key",
        })?;
        let der = Zeroizing::new(der.secret_pkcs8_der().to_vec());
        let pair =
            Ed25519KeyPair::from_pkcs8_maybe_unchecked(&der).map_err(|_| KeyError::Format {
                path: shown,
                what: "not an Ed25519 key",
            })?;
        Ok(Self { pair })
    }

    /// A new key, as PKCS#8 PEM text (to write to a file with mode 0600).
    pub fn generate_pem() -> Result<Zeroizing<String>, KeyError> {
        let rng = ring::rand::SystemRandom::new();
        let doc =
            Ed25519KeyPair::generate_pkcs8(&rng).map_err(|e| KeyError::Sign(e.to_string()))?;
        Ok(pem("PRIVATE KEY", doc.as_ref()))
    }
}

fn pem(label: &str, der: &[u8]) -> Zeroizing<String> {
    let b = Zeroizing::new(B64.encode(der));
    let mut out = Zeroizing::new(format!("-----BEGIN {label}-----\n"));
    for chunk in b.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

impl Signer for KeyFile {
    fn sign(&self, message: &[u8]) -> Result<[u8; 64], KeyError> {
        let sig = self.pair.sign(message);
        sig.as_ref()
            .try_into()
            .map_err(|_| KeyError::Sign("unexpected signature length".into()))
    }

    fn public_key(&self) -> PublicKey {
        let mut k = [0u8; 32];
        k.copy_from_slice(self.pair.public_key().as_ref());
        PublicKey(k)
    }
}

/// An Ed25519 public key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PublicKey(pub [u8; 32]);

impl PublicKey {
    /// As a SubjectPublicKeyInfo PEM (`-----BEGIN PUBLIC KEY-----`), which OpenSSL also reads.
    #[must_use]
    pub fn to_pem(&self) -> String {
        let mut der = SPKI_PREFIX.to_vec();
        der.extend_from_slice(&self.0);
        pem("PUBLIC KEY", &der).to_string()
    }

    /// Reads a SubjectPublicKeyInfo PEM of an Ed25519 key.
    pub fn from_pem(text: &[u8], origin: &str) -> Result<Self, KeyError> {
        let der = SubjectPublicKeyInfoDer::from_pem_slice(text).map_err(|_| KeyError::Format {
            path: origin.into(),
            what: "not a PEM public key",
        })?;
        let der: &[u8] = der.as_ref();
        match der.strip_prefix(&SPKI_PREFIX[..]) {
            Some(k) if k.len() == 32 => {
                let mut out = [0u8; 32];
                out.copy_from_slice(k);
                Ok(Self(out))
            }
            _ => Err(KeyError::Format {
                path: origin.into(),
                what: "not an Ed25519 public key",
            }),
        }
    }

    /// Reads the key from a file.
    pub fn load(path: &Path) -> Result<Self, KeyError> {
        let shown = path.display().to_string();
        let text = std::fs::read(path).map_err(|source| KeyError::Read {
            path: shown.clone(),
            source,
        })?;
        Self::from_pem(&text, &shown)
    }
}

/// Lowercase hex for 32-byte hashes in JSON.
pub mod hex32 {
    use serde::{Deserialize as _, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(h: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&to_hex(h))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 32], D::Error> {
        let s = <std::borrow::Cow<'_, str>>::deserialize(d)?;
        from_hex(&s).ok_or_else(|| serde::de::Error::custom("expected 64 hex digits"))
    }

    /// Lowercase hex.
    #[must_use]
    pub fn to_hex(b: &[u8]) -> String {
        use std::fmt::Write as _;
        b.iter()
            .fold(String::with_capacity(b.len() * 2), |mut s, x| {
                let _ = write!(s, "{x:02x}");
                s
            })
    }

    /// 64 hex digits to 32 bytes.
    #[must_use]
    pub fn from_hex(s: &str) -> Option<[u8; 32]> {
        if s.len() != 64 || !s.is_ascii() {
            return None;
        }
        let mut out = [0u8; 32];
        for (i, o) in out.iter_mut().enumerate() {
            *o = u8::from_str_radix(s.get(i * 2..i * 2 + 2)?, 16).ok()?;
        }
        Some(out)
    }
}

mod b64sig {
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD as B64;
    use serde::{Deserialize as _, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(sig: &[u8; 64], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&B64.encode(sig))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 64], D::Error> {
        let s = <std::borrow::Cow<'_, str>>::deserialize(d)?;
        B64.decode(s.as_bytes())
            .ok()
            .and_then(|v| v.try_into().ok())
            .ok_or_else(|| serde::de::Error::custom("expected a base64 Ed25519 signature"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_head_signs_verifies_and_round_trips_and_names_its_tenant() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = dir.path().join("key.pem");
        let pem = KeyFile::generate_pem().unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(&path, pem.as_bytes()).unwrap_or_else(|e| panic!("{e}"));
        let key = KeyFile::load(&path).unwrap_or_else(|e| panic!("{e}"));
        let root = [7u8; 32];
        let m = SignedHead::message("acme", 10, 0, 5, &root);
        let head = SignedHead {
            tree_size: 10,
            oldest: 0,
            timestamp_ms: 5,
            root,
            signature: key.sign(&m).unwrap_or_else(|e| panic!("{e}")),
        };
        let public = PublicKey::from_pem(key.public_key().to_pem().as_bytes(), "test")
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(head.verify("acme", &public));
        assert!(
            !head.verify("globex", &public),
            "a head is bound to its tenant"
        );
        let mut grown = head.clone();
        grown.tree_size = 11;
        assert!(!grown.verify("acme", &public));
        assert_eq!(SignedHead::decode(&head.encode()), Some(head.clone()));
        let json = serde_json::to_string(&head).unwrap_or_default();
        let back: SignedHead = serde_json::from_str(&json).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(back, head);
    }
}
