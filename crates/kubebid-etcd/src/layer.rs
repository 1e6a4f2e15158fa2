//! The tenant layer on etcd's messages: seal what is written under a tenant namespace's Secret keys,
//! open what comes back (Range results, Txn results at any depth, Watch events and every `prev_kv`).
//!
//! Each function reports whether it changed the message, so that a message with nothing of a tenant in it
//! is forwarded as the very bytes that came in.

use std::sync::Arc;

use crate::metrics::ProxyFamilies;
use crate::path::SecretKeys;
use crate::proto::{
    DeleteRangeResponse, KeyValue, PutRequest, PutResponse, RangeRequest, RangeResponse, RequestOp,
    TxnRequest, TxnResponse, WatchResponse, compare, request_op, response_op,
};
use crate::seal::{SealError, Sealer, sealed_for};

/// The tenant that owns a namespace, as the tenancy model answers it.
pub type TenantOf = Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// Why a message could not pass.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LayerError {
    #[error("{key}: {error}")]
    Seal { key: String, error: SealError },
    #[error("{key}: a transaction may not compare the value of a tenant's Secret (it is sealed)")]
    ValueCompare { key: String },
    #[error(
        "{key}: a range may not sort by value where it reaches tenants' Secrets (their stored values are sealed, so etcd's order would not be the values' order)"
    )]
    ValueSort { key: String },
    #[error(
        "{key}: the value is already sealed by KubeBid (a value read through an etcd proxy, written back through one)"
    )]
    AlreadySealed { key: String },
}

/// Opens each item with `open`, leaving out the ones that can never open ([`LayerError::is_permanent`],
/// logged); any other failure fails them all. Whether anything was opened.
fn keep_openable<T>(
    items: &mut Vec<T>,
    mut open: impl FnMut(&mut T) -> Result<bool, LayerError>,
) -> Result<bool, LayerError> {
    let mut changed = false;
    let mut failed = None;
    items.retain_mut(|item| {
        if failed.is_some() {
            return true;
        }
        match open(item) {
            Ok(c) => {
                changed |= c;
                true
            }
            Err(e) if e.is_permanent() => {
                tracing::warn!(error = %e, "a value that can never open here is left out of a list or watch");
                false
            }
            Err(e) => {
                failed = Some(e);
                true
            }
        }
    });
    match failed {
        Some(e) => Err(e),
        None => Ok(changed),
    }
}

impl LayerError {
    /// Whether the value's tenant key is destroyed (its Secrets are crypto-shredded).
    #[must_use]
    pub fn is_key_gone(&self) -> bool {
        matches!(
            self,
            Self::Seal {
                error: SealError::KeyGone { .. },
                ..
            }
        )
    }

    /// Whether the value can never open here, whatever is retried: shredded, another tenant's, tampered
    /// with, moved, malformed, or sealed under a namespace no tenant owns. Not so for a key service that
    /// did not answer ([`SealError::Key`]), which may answer next time.
    #[must_use]
    pub fn is_permanent(&self) -> bool {
        matches!(
            self,
            Self::Seal {
                error: SealError::KeyGone { .. }
                    | SealError::WrongTenant { .. }
                    | SealError::Authentication { .. }
                    | SealError::Malformed(_)
                    | SealError::NotSealed,
                ..
            }
        )
    }
}

/// Compare target `VALUE` in etcd's `Compare.CompareTarget`.
const COMPARE_VALUE: i32 = 3;
/// Sort target `VALUE` in etcd's `RangeRequest.SortTarget`.
const SORT_VALUE: i32 = 4;

/// Seals and opens values of the keys that belong to tenants.
#[derive(Clone)]
pub struct Layer {
    keys: SecretKeys,
    tenant_of: TenantOf,
    sealer: Arc<Sealer>,
    metrics: Option<Arc<ProxyFamilies>>,
    finder: Arc<memchr::memmem::Finder<'static>>,
}

fn shown(key: &[u8]) -> String {
    String::from_utf8_lossy(key).into_owned()
}

impl Layer {
    #[must_use]
    pub fn new(keys: SecretKeys, tenant_of: TenantOf, sealer: Arc<Sealer>) -> Self {
        let finder = Arc::new(memchr::memmem::Finder::new(keys.all()).into_owned());
        Self {
            finder,
            keys,
            tenant_of,
            sealer,
            metrics: None,
        }
    }

    /// Counts seals and opens per tenant in `metrics`.
    #[must_use]
    pub fn with_metrics(mut self, metrics: Arc<ProxyFamilies>) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// Where seals, opens and calls are counted, if anywhere.
    #[must_use]
    pub fn metrics(&self) -> Option<&ProxyFamilies> {
        self.metrics.as_deref()
    }

    /// The sealer (its cached keys).
    #[must_use]
    pub fn sealer(&self) -> &Arc<Sealer> {
        &self.sealer
    }

    /// Whether `message` (the bytes of an etcd message) may hold a key under the Secret prefix: false only
    /// when the prefix does not occur in it at all.
    #[must_use]
    pub fn may_concern(&self, message: &[u8]) -> bool {
        self.finder.find(message).is_some()
    }

    /// The tenant whose Secret `key` is, if any.
    #[must_use]
    pub fn tenant(&self, key: &[u8]) -> Option<String> {
        self.keys.namespace(key).and_then(|ns| (self.tenant_of)(ns))
    }

    /// Seals a written value. A write that cannot be sealed fails: nothing is written in the clear.
    ///
    /// # Errors
    /// The tenant's key cannot be used.
    pub fn put_request(&self, put: &mut PutRequest) -> Result<bool, LayerError> {
        let Some(tenant) = self.tenant(&put.key) else {
            return Ok(false);
        };
        if put.ignore_value {
            // The stored (sealed) value stays; a value sent beside the flag is refused, never stored.
            return if put.value.is_empty() {
                Ok(false)
            } else {
                Err(LayerError::AlreadySealed {
                    key: shown(&put.key),
                })
            };
        }
        // Sealed twice, a value would reach the API server still sealed once: refused, not stored.
        if put.value.starts_with(crate::seal::MAGIC) {
            return Err(LayerError::AlreadySealed {
                key: shown(&put.key),
            });
        }
        let sealed = self.sealer.seal(&tenant, &put.key, &put.value);
        if let Some(m) = &self.metrics {
            m.sealed(&tenant, sealed.is_ok());
        }
        put.value = sealed.map_err(|error| LayerError::Seal {
            key: shown(&put.key),
            error,
        })?;
        Ok(true)
    }

    /// Seals the writes of a transaction, at every depth, and refuses comparisons of sealed values.
    ///
    /// # Errors
    /// A write that cannot be sealed, or a value comparison on a tenant's Secret.
    pub fn txn_request(&self, txn: &mut TxnRequest) -> Result<bool, LayerError> {
        for c in &txn.compare {
            if c.target == COMPARE_VALUE
                && matches!(c.target_union, Some(compare::TargetUnion::Value(_)))
                && (self.tenant(&c.key).is_some() || self.covers_secrets(&c.key, &c.range_end))
            {
                return Err(LayerError::ValueCompare { key: shown(&c.key) });
            }
        }
        let mut changed = false;
        for op in txn.success.iter_mut().chain(txn.failure.iter_mut()) {
            changed |= self.request_op(op)?;
        }
        Ok(changed)
    }

    /// Whether the range `key..range_end` can reach Secret keys.
    fn covers_secrets(&self, key: &[u8], range_end: &[u8]) -> bool {
        if range_end.is_empty() {
            return false;
        }
        let all = self.keys.all();
        // [key, range_end) meets [all, all+) unless it ends before `all` or starts past every Secret.
        let ends_before = range_end != b"\0" && range_end <= all;
        let starts_after = key > all && !key.starts_with(all);
        !(ends_before || starts_after)
    }

    /// Refuses a Range that sorts by value over keys that can be tenants' Secrets: etcd sorts what it
    /// stores, sealed bytes, so the order (and, with a limit, which keys come back) would differ from a
    /// sort of the values. Nothing else of a Range needs the layer before it is sent.
    ///
    /// # Errors
    /// Such a sort.
    pub fn range_request(&self, r: &RangeRequest) -> Result<(), LayerError> {
        if r.sort_target == SORT_VALUE
            && (self.tenant(&r.key).is_some() || self.covers_secrets(&r.key, &r.range_end))
        {
            return Err(LayerError::ValueSort { key: shown(&r.key) });
        }
        Ok(())
    }

    fn request_op(&self, op: &mut RequestOp) -> Result<bool, LayerError> {
        match &mut op.request {
            Some(request_op::Request::RequestRange(r)) => {
                self.range_request(r)?;
                Ok(false)
            }
            Some(request_op::Request::RequestPut(p)) => self.put_request(p),
            Some(request_op::Request::RequestTxn(t)) => self.txn_request(t),
            _ => Ok(false),
        }
    }

    /// Opens one key-value. A value that is not sealed (written before the layer) passes as it is; one
    /// sealed for another tenant, moved, tampered with, or whose tenant key is gone, fails.
    ///
    /// # Errors
    /// The value does not open for the tenant that owns its key.
    pub fn open(&self, kv: &mut KeyValue) -> Result<bool, LayerError> {
        if kv.value.is_empty() {
            return Ok(false);
        }
        let fail = |error| LayerError::Seal {
            key: shown(&kv.key),
            error,
        };
        match self.tenant(&kv.key) {
            Some(tenant) => {
                if sealed_for(&kv.value).is_none() {
                    return Ok(false);
                }
                let plain = self.sealer.open(&tenant, &kv.key, &kv.value);
                if let Some(m) = &self.metrics {
                    m.opened(&tenant, plain.is_ok());
                }
                let plain = plain.map_err(fail)?;
                kv.value = plain.to_vec();
                Ok(true)
            }
            // A sealed value under a key no tenant owns (a namespace handed back): never given out sealed
            // as if it were the value.
            None if sealed_for(&kv.value).is_some() && self.keys.namespace(&kv.key).is_some() => {
                Err(fail(SealError::WrongTenant {
                    expected: String::new(),
                    found: sealed_for(&kv.value).unwrap_or_default().to_owned(),
                }))
            }
            None => Ok(false),
        }
    }

    fn open_all<'a>(
        &self,
        kvs: impl Iterator<Item = &'a mut KeyValue>,
    ) -> Result<bool, LayerError> {
        let mut changed = false;
        for kv in kvs {
            changed |= self.open(kv)?;
        }
        Ok(changed)
    }

    /// # Errors
    /// A value does not open.
    pub fn range_response(&self, r: &mut RangeResponse) -> Result<bool, LayerError> {
        self.open_all(r.kvs.iter_mut())
    }

    /// The answer to a Range over many keys (a list): as [`Layer::range_response`], except that a value
    /// whose tenant key is destroyed is left out (and out of the count). A crypto-shredded tenant's
    /// Secrets read as gone, so that lists of every Secret (the API server's, its controllers') go on
    /// working for everyone else. Any other failure still fails the whole answer.
    ///
    /// # Errors
    /// A value does not open for another reason than a destroyed key.
    pub fn range_listing_response(&self, r: &mut RangeResponse) -> Result<bool, LayerError> {
        let before = r.kvs.len();
        let changed = keep_openable(&mut r.kvs, |kv| self.open(kv))?;
        let dropped = before - r.kvs.len();
        if dropped > 0 {
            r.count = r
                .count
                .saturating_sub(i64::try_from(dropped).unwrap_or(i64::MAX))
                .max(0);
        }
        Ok(changed || dropped > 0)
    }

    /// # Errors
    /// The previous value does not open.
    pub fn put_response(&self, r: &mut PutResponse) -> Result<bool, LayerError> {
        self.open_all(r.prev_kv.iter_mut())
    }

    /// # Errors
    /// A previous value does not open.
    pub fn delete_response(&self, r: &mut DeleteRangeResponse) -> Result<bool, LayerError> {
        self.open_all(r.prev_kvs.iter_mut())
    }

    /// # Errors
    /// A value at any depth does not open.
    pub fn txn_response(&self, r: &mut TxnResponse) -> Result<bool, LayerError> {
        let mut changed = false;
        for op in &mut r.responses {
            changed |= match &mut op.response {
                Some(response_op::Response::ResponseRange(x)) => self.range_response(x)?,
                Some(response_op::Response::ResponsePut(x)) => self.put_response(x)?,
                Some(response_op::Response::ResponseDeleteRange(x)) => self.delete_response(x)?,
                Some(response_op::Response::ResponseTxn(x)) => self.txn_response(x)?,
                None => false,
            };
        }
        Ok(changed)
    }

    /// # Errors
    /// A value of an event does not open.
    ///
    /// An event whose value or previous value belongs to a crypto-shredded tenant is left out, as in
    /// [`Layer::range_listing_response`]: the API server watches every Secret.
    pub fn watch_response(&self, r: &mut WatchResponse) -> Result<bool, LayerError> {
        let before = r.events.len();
        let changed = keep_openable(&mut r.events, |e| {
            self.open_all(e.kv.iter_mut().chain(e.prev_kv.iter_mut()))
        })?;
        Ok(changed || r.events.len() != before)
    }
}
