//! The data probe: Secrets as etcd holds them, read straight from etcd (below the API server, as a thief of
//! its disk or backups would see them).
//!
//! For each tenant a sample of the stored Secrets of each of its namespaces is read, and every value must
//! be encrypted by the KMS v2 plugin (`k8s:enc:kms:v2:<provider>:`), never in the clear and never under a
//! key the API server holds itself (`aescbc`, `aesgcm`, `secretbox`) or KMS v1. Where KubeBid's tenant
//! layer is deployed (any sampled value carries its prefix), every value of a tenant must be sealed for
//! that tenant: one left out is a Secret the layer missed, one sealed for another tenant is a value moved.
//! Under the tenant layer, the KMS v2 value is inside the sealed one and cannot be seen without the
//! tenant's key; the evidence says so.

use kubebid_etcd::client::Client;
use kubebid_etcd::proto::RangeRequest;
use kubebid_etcd::rewrap::prefix_end;
use kubebid_etcd::seal::{MAGIC, sealed_for};
use kubebid_model::tenancy::Tenancy;

use crate::{Finding, VerifyError};

/// How a stored value is protected.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Stored {
    /// Under KubeBid's tenant layer, sealed for this tenant.
    TenantLayer(String),
    /// Encrypted by the KMS v2 plugin named here.
    KmsV2(String),
    /// Something else, and why that is not enough.
    Weak(String),
}

const KMS_V2: &[u8] = b"k8s:enc:kms:v2:";

/// What protects `value`.
#[must_use]
pub fn classify(value: &[u8]) -> Stored {
    if value.starts_with(MAGIC) {
        return match sealed_for(value) {
            Some(t) => Stored::TenantLayer(t.to_owned()),
            None => Stored::Weak("carries the tenant layer's prefix but does not parse".into()),
        };
    }
    if let Some(rest) = value.strip_prefix(KMS_V2) {
        let name = rest.split(|b| *b == b':').next().unwrap_or_default();
        return Stored::KmsV2(String::from_utf8_lossy(name).into_owned());
    }
    let weak = |why: &str| Stored::Weak(why.to_owned());
    if value.starts_with(b"k8s:enc:kms:v1:") {
        weak("encrypted by KMS v1 (deprecated: one remote call per read, no key hierarchy)")
    } else if let Some(rest) = value.strip_prefix(b"k8s:enc:") {
        let scheme = rest.split(|b| *b == b':').next().unwrap_or_default();
        Stored::Weak(format!(
            "encrypted by {:?}, a key in the API server's own configuration rather than the KMS",
            String::from_utf8_lossy(scheme)
        ))
    } else if value.starts_with(b"k8s\0") {
        weak("stored in the clear (protobuf)")
    } else if value.first() == Some(&b'{') {
        weak("stored in the clear (JSON)")
    } else {
        weak("in no format the API server writes")
    }
}

/// The Secrets sampled in one namespace: name and protection.
type Sampled = Vec<(String, Stored)>;

/// What was not checked, for each tenant (or `only`): no `--etcd` was given.
#[must_use]
pub fn not_checked(tenancy: &Tenancy, only: Option<&str>) -> Vec<Finding> {
    tenancy
        .tenants()
        .iter()
        .filter(|t| only.is_none_or(|o| o == t.name))
        .map(|t| Finding {
            skipped: true,
            ..Finding::by_verifier(
                "data/secrets-at-rest",
                t.name.clone(),
                None,
                true,
                vec!["not checked: no --etcd given, so how Secrets are stored was not read".into()],
            )
        })
        .collect()
}

/// Secrets read per etcd request when reading a namespace's all.
pub const PAGE: i64 = 500;

/// Up to `sample` of `ns`'s stored Secrets (every one with 0), page by page: each name and protection.
async fn secrets_of(
    etcd: &Client,
    prefix: &str,
    ns: &str,
    sample: i64,
) -> Result<Sampled, VerifyError> {
    let first = format!("{prefix}/secrets/{ns}/").into_bytes();
    let end = prefix_end(&first);
    let mut key = first;
    let mut out: Sampled = Vec::new();
    loop {
        let left = if sample > 0 {
            sample - i64::try_from(out.len()).unwrap_or(i64::MAX)
        } else {
            PAGE
        };
        if left <= 0 {
            return Ok(out);
        }
        let answer = etcd
            .range(&RangeRequest {
                key: key.clone(),
                range_end: end.clone(),
                limit: left.min(PAGE),
                ..RangeRequest::default()
            })
            .await
            .map_err(|e| VerifyError::Answer(format!("etcd range of {ns}'s Secrets: {e}")))?;
        out.extend(answer.kvs.iter().map(|kv| {
            let name = String::from_utf8_lossy(&kv.key);
            let name = name.rsplit('/').next().unwrap_or_default().to_owned();
            (name, classify(&kv.value))
        }));
        match answer.kvs.last() {
            // The next page starts just past the last key read.
            Some(last) if answer.more => {
                key.clone_from(&last.key);
                key.push(0);
            }
            _ => return Ok(out),
        }
    }
}

/// The data probe: up to `sample` Secrets (every one with 0) of each namespace of every tenant (or
/// `only`), read from etcd under `prefix` (the API server's `--etcd-prefix`).
///
/// # Errors
/// etcd refused or did not answer a read.
pub async fn probe(
    etcd: &Client,
    prefix: &str,
    tenancy: &Tenancy,
    only: Option<&str>,
    sample: i64,
) -> Result<Vec<Finding>, VerifyError> {
    let prefix = prefix.trim_end_matches('/');
    // (tenant, namespace, each sampled Secret's name and protection)
    let mut read: Vec<(String, String, Sampled)> = Vec::new();
    for t in tenancy.tenants() {
        if only.is_some_and(|o| o != t.name) {
            continue;
        }
        for ns in &t.namespaces {
            let values = secrets_of(etcd, prefix, ns, sample).await?;
            read.push((t.name.clone(), ns.clone(), values));
        }
    }
    let layered = read
        .iter()
        .flat_map(|(_, _, v)| v)
        .any(|(_, s)| matches!(s, Stored::TenantLayer(_)));
    let mut out: Vec<Finding> = Vec::new();
    for (tenant, ns, values) in read {
        let mut failures = Vec::new();
        let (mut sealed, mut kms) = (0, 0);
        for (name, stored) in &values {
            match stored {
                Stored::TenantLayer(t) if *t == tenant => sealed += 1,
                Stored::TenantLayer(t) => {
                    failures.push(format!("{ns}/{name}: sealed for tenant {t:?}, not {tenant:?}"));
                }
                Stored::KmsV2(_) if layered => failures.push(format!(
                    "{ns}/{name}: encrypted by the KMS but not under the tenant layer, which is deployed"
                )),
                Stored::KmsV2(_) => kms += 1,
                Stored::Weak(why) => failures.push(format!("{ns}/{name}: {why}")),
            }
        }
        let mut providers: Vec<&str> = values
            .iter()
            .filter_map(|(_, s)| match s {
                Stored::KmsV2(p) => Some(p.as_str()),
                _ => None,
            })
            .collect();
        providers.sort_unstable();
        providers.dedup();
        let summary = match (values.len(), sealed, kms) {
            (0, _, _) => format!("{ns}: no Secrets stored to sample"),
            (n, s, 0) if s == n => format!(
                "{ns}: {n} sampled, all sealed for {tenant} by the tenant layer (the KMS v2 value inside is not readable without the tenant's key)"
            ),
            (n, _, k) if k == n => format!(
                "{ns}: {n} sampled, all encrypted by KMS v2 ({})",
                providers.join(", ")
            ),
            (n, _, _) => format!(
                "{ns}: {n} sampled, {} not protected as required",
                failures.len()
            ),
        };
        let sampled = !values.is_empty();
        match out.last_mut() {
            Some(f) if f.tenant == tenant => {
                f.passed &= failures.is_empty();
                f.skipped &= !sampled;
                f.evidence.push(summary);
                f.evidence.extend(failures);
            }
            _ => out.push(Finding {
                skipped: !sampled,
                ..Finding::by_verifier(
                    "data/secrets-at-rest",
                    tenant,
                    None,
                    failures.is_empty(),
                    std::iter::once(summary).chain(failures).collect(),
                )
            }),
        }
    }
    Ok(out)
}
