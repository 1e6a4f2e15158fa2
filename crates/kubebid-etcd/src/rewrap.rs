//! Re-sealing tenants' Secrets in place, online: after a tenant key rotation (values whose data key an
//! older key version wrapped) and for values still in the clear (written before the proxy, or before the
//! namespace was a tenant's). Each value is rewritten in a transaction that compares the key's
//! `mod_revision` with the one read, so a write the API server makes meanwhile is never overwritten (that
//! key already carries a fresh seal, and is counted as changed concurrently).

use std::fmt::Write as _;

use crate::client::{Client, Status};
use crate::layer::TenantOf;
use crate::path::SecretKeys;
use crate::proto::{
    Compare, KeyValue, PutRequest, RangeRequest, RequestOp, TxnRequest, compare, request_op,
};
use crate::seal::{Sealer, sealed_for, wrapped_key};

/// Keys read per Range.
pub const PAGE: i64 = 500;

/// `Compare.CompareTarget` `MOD` and `Compare.CompareResult` `EQUAL`.
const TARGET_MOD: i32 = 2;
const RESULT_EQUAL: i32 = 0;

/// What a rewrap did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// Secret keys read.
    pub scanned: u64,
    /// Keys of no tenant (or not of the tenant asked for): left as they are.
    pub not_selected: u64,
    /// Already sealed under the tenant's current key version.
    pub current: u64,
    /// Re-sealed from an older key version.
    pub resealed: u64,
    /// Found in the clear and sealed.
    pub sealed: u64,
    /// Written by someone else between the read and the rewrite: left to that write.
    pub changed_concurrently: u64,
    /// Keys that could not be rewritten, and why (no value is shown).
    pub failed: Vec<(String, String)>,
}

impl Report {
    /// One line per figure.
    #[must_use]
    pub fn summary(&self) -> String {
        let mut s = format!(
            "scanned {}, re-sealed {}, sealed from the clear {}, already current {}, changed concurrently {}, not selected {}, failed {}",
            self.scanned,
            self.resealed,
            self.sealed,
            self.current,
            self.changed_concurrently,
            self.not_selected,
            self.failed.len()
        );
        for (key, why) in &self.failed {
            let _ = write!(s, "\n  {key}: {why}");
        }
        s
    }
}

/// The first key past every key that starts with `prefix`.
#[must_use]
pub fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

/// What decides and does the rewrap.
pub struct Rewrap<'a> {
    pub client: &'a Client,
    pub keys: &'a SecretKeys,
    pub tenant_of: &'a TenantOf,
    pub sealer: &'a Sealer,
    /// Only this tenant's Secrets, if set.
    pub only: Option<&'a str>,
    /// Whether a wrapped data key of a tenant is wrapped by its current key version.
    pub is_current: &'a (dyn Fn(&str, &[u8]) -> bool + Sync),
}

enum Outcome {
    NotSelected,
    Current,
    Resealed,
    Sealed,
    Concurrent,
}

impl Rewrap<'_> {
    /// Walks every Secret key, page by page, and re-seals what needs it. `progress` is called after each
    /// page with the report so far and the number of Secret keys when the walk started.
    ///
    /// # Errors
    /// etcd refused a Range (a failed rewrite of one key is in the report instead).
    pub async fn run(&self, mut progress: impl FnMut(&Report, u64)) -> Result<Report, Status> {
        let start = self.keys.all().to_vec();
        let end = prefix_end(&start);
        let total = self
            .client
            .range(&RangeRequest {
                key: start.clone(),
                range_end: end.clone(),
                count_only: true,
                ..RangeRequest::default()
            })
            .await?
            .count;
        let total = u64::try_from(total).unwrap_or(0);
        let mut report = Report::default();
        let mut from = start;
        loop {
            let page = self
                .client
                .range(&RangeRequest {
                    key: from.clone(),
                    range_end: end.clone(),
                    limit: PAGE,
                    ..RangeRequest::default()
                })
                .await?;
            for kv in &page.kvs {
                report.scanned += 1;
                match self.one(kv).await {
                    Ok(Outcome::NotSelected) => report.not_selected += 1,
                    Ok(Outcome::Current) => report.current += 1,
                    Ok(Outcome::Resealed) => report.resealed += 1,
                    Ok(Outcome::Sealed) => report.sealed += 1,
                    Ok(Outcome::Concurrent) => report.changed_concurrently += 1,
                    Err(why) => report
                        .failed
                        .push((String::from_utf8_lossy(&kv.key).into_owned(), why)),
                }
            }
            progress(&report, total);
            match page.kvs.last() {
                Some(last) if page.more => {
                    from.clone_from(&last.key);
                    from.push(0);
                }
                _ => break,
            }
        }
        Ok(report)
    }

    async fn one(&self, kv: &KeyValue) -> Result<Outcome, String> {
        let Some(tenant) = self
            .keys
            .namespace(&kv.key)
            .and_then(|ns| (self.tenant_of)(ns))
        else {
            return Ok(Outcome::NotSelected);
        };
        if self.only.is_some_and(|t| t != tenant) || kv.value.is_empty() {
            return Ok(Outcome::NotSelected);
        }
        let (plain, was_sealed) = match sealed_for(&kv.value) {
            Some(owner) if owner != tenant => {
                return Err(format!(
                    "sealed for tenant {owner:?}, but the namespace is {tenant:?}'s: left as it is"
                ));
            }
            Some(_) => {
                if wrapped_key(&kv.value).is_some_and(|w| (self.is_current)(&tenant, w)) {
                    return Ok(Outcome::Current);
                }
                let plain = self
                    .sealer
                    .open(&tenant, &kv.key, &kv.value)
                    .map_err(|e| e.to_string())?;
                (plain, true)
            }
            None => (zeroize::Zeroizing::new(kv.value.clone()), false),
        };
        let sealed = self
            .sealer
            .seal(&tenant, &kv.key, &plain)
            .map_err(|e| e.to_string())?;
        let txn = TxnRequest {
            compare: vec![Compare {
                result: RESULT_EQUAL,
                target: TARGET_MOD,
                key: kv.key.clone(),
                target_union: Some(compare::TargetUnion::ModRevision(kv.mod_revision)),
                range_end: Vec::new(),
            }],
            success: vec![RequestOp {
                request: Some(request_op::Request::RequestPut(PutRequest {
                    key: kv.key.clone(),
                    value: sealed,
                    lease: kv.lease,
                    ..PutRequest::default()
                })),
            }],
            failure: Vec::new(),
        };
        let res = self.client.txn(&txn).await.map_err(|e| e.to_string())?;
        Ok(if !res.succeeded {
            Outcome::Concurrent
        } else if was_sealed {
            Outcome::Resealed
        } else {
            Outcome::Sealed
        })
    }
}
