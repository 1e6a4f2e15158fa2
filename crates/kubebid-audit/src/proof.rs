//! Inclusion and consistency proofs out of a stored log, and their offline check.
//!
//! A proof file holds the event's exact bytes, its index, the audit path and the signed tree head it
//! leads to. An auditor checks it with the sink's public key alone, without the log.
//!
//! With retention the oldest leaves are gone, but every subtree a proof needs to their left is one of the
//! perfect subtrees whose roots the first kept segment's header holds (or is built from them), so proofs
//! for every kept event still work.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::head::{PublicKey, SignedHead, hex32};
use crate::merkle::{Frontier, Hash, leaf_hash, node_hash, verify_inclusion};
use crate::store::Trail;
use crate::verify::{TrailReport, scan};

/// The file an auditor receives.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct InclusionProof {
    pub api_version: String,
    pub kind: String,
    /// The trail (tenant name, or `_platform`).
    pub trail: String,
    pub index: u64,
    /// The event's JSON, exactly as stored.
    pub event: String,
    /// The audit path, leaf to root.
    pub path: Vec<String>,
    /// The signed head the path leads to.
    pub head: SignedHead,
}

const API_VERSION: &str = "kubebid.io/v1";
const KIND: &str = "AuditInclusionProof";

/// Why a proof could not be made or does not hold.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ProofError {
    #[error("the log does not verify; no proof is made from it: {0}")]
    Unverified(String),
    #[error("event {index} is not in the log (it holds events {oldest}..{size})")]
    OutOfRange { index: u64, oldest: u64, size: u64 },
    #[error("the log has no signed tree head yet")]
    NoHead,
    #[error("reading the log: {0}")]
    Io(String),
    #[error("the proof file is malformed: {0}")]
    Malformed(String),
    #[error("the tree head's signature does not verify with this key")]
    Signature,
    #[error("the event is not at index {index} of the signed tree: the proof does not hold")]
    NotIncluded { index: u64 },
    #[error(
        "the tree of {size} events this head signed is not a prefix of the log: history was rewritten"
    )]
    Diverged { size: u64 },
}

/// The leaves of a log from its oldest kept event, and the perfect subtrees before it.
pub struct Tree {
    frontier: Frontier,
    leaves: Vec<Hash>,
}

impl Tree {
    /// A tree of `leaves` that follow the tree described by `frontier`.
    #[must_use]
    pub fn new(frontier: Frontier, leaves: Vec<Hash>) -> Self {
        Self { frontier, leaves }
    }

    /// Leaves in the whole tree.
    #[must_use]
    pub fn size(&self) -> u64 {
        self.frontier.size() + self.leaves.len() as u64
    }

    /// The perfect subtrees before the kept leaves, as (start, len, hash).
    fn before(&self) -> impl Iterator<Item = (u64, u64, &Hash)> {
        let size = self.frontier.size();
        let mut start = 0u64;
        let bits = (0..64).rev().filter(move |b| size & (1u64 << b) != 0);
        bits.zip(self.frontier.hashes()).map(move |(b, h)| {
            let s = start;
            start += 1u64 << b;
            (s, 1u64 << b, h)
        })
    }

    /// The root of leaves `lo..hi` (RFC 9162's MTH), when the log still has what it takes.
    #[must_use]
    pub fn mth(&self, lo: u64, hi: u64) -> Option<Hash> {
        let kept = self.frontier.size();
        let n = hi.checked_sub(lo)?;
        if hi > self.size() {
            return None;
        }
        if lo >= kept {
            let a = usize::try_from(lo - kept).ok()?;
            let b = usize::try_from(hi - kept).ok()?;
            return Some(crate::merkle::root_of(self.leaves.get(a..b)?));
        }
        if let Some((_, _, h)) = self.before().find(|&(s, l, _)| s == lo && l == n) {
            return Some(*h);
        }
        if n <= 1 {
            return None;
        }
        let k = largest_power_below(n);
        Some(node_hash(&self.mth(lo, lo + k)?, &self.mth(lo + k, hi)?))
    }

    /// The audit path of leaf `index` in the tree of the first `size` leaves.
    #[must_use]
    pub fn inclusion(&self, index: u64, size: u64) -> Option<Vec<Hash>> {
        fn path(t: &Tree, m: u64, lo: u64, hi: u64, out: &mut Vec<Hash>) -> Option<()> {
            let n = hi - lo;
            if n <= 1 {
                return Some(());
            }
            let k = largest_power_below(n);
            if m < k {
                path(t, m, lo, lo + k, out)?;
                out.push(t.mth(lo + k, hi)?);
            } else {
                path(t, m - k, lo + k, hi, out)?;
                out.push(t.mth(lo, lo + k)?);
            }
            Some(())
        }
        if index >= size || size > self.size() {
            return None;
        }
        let mut out = Vec::new();
        path(self, index, 0, size, &mut out)?;
        Some(out)
    }

    /// The consistency proof from the tree of `first` leaves to the tree of `second`.
    #[must_use]
    pub fn consistency(&self, first: u64, second: u64) -> Option<Vec<Hash>> {
        fn sub(t: &Tree, m: u64, lo: u64, hi: u64, whole: bool, out: &mut Vec<Hash>) -> Option<()> {
            let n = hi - lo;
            if m == n {
                if !whole {
                    out.push(t.mth(lo, hi)?);
                }
                return Some(());
            }
            let k = largest_power_below(n);
            if m <= k {
                sub(t, m, lo, lo + k, whole, out)?;
                out.push(t.mth(lo + k, hi)?);
            } else {
                sub(t, m - k, lo + k, hi, false, out)?;
                out.push(t.mth(lo, lo + k)?);
            }
            Some(())
        }
        if first > second || second > self.size() {
            return None;
        }
        let mut out = Vec::new();
        if first > 0 && first < second {
            sub(self, first, 0, second, true, &mut out)?;
        }
        Some(out)
    }
}

fn largest_power_below(n: u64) -> u64 {
    // n >= 2
    1u64 << (63 - (n - 1).leading_zeros())
}

/// Reads `trail`'s log under `root`, verifies it, and returns the tree, the event at `want` (if asked)
/// and the report.
pub fn load_tree(
    root: &Path,
    trail: &Trail,
    key: &PublicKey,
    want: Option<u64>,
) -> Result<(Tree, Option<Vec<u8>>, TrailReport), ProofError> {
    let mut leaves = Vec::new();
    let mut event = None;
    let report = scan(root, trail, key, |i, e| {
        leaves.push(leaf_hash(e));
        if Some(i) == want {
            event = Some(e.to_vec());
        }
    })
    .map_err(|e| ProofError::Io(e.to_string()))?;
    if !report.ok() {
        let first = report
            .problems
            .first()
            .map(|p| format!("{} at event {}: {}", p.segment, p.index, p.what))
            .unwrap_or_default();
        return Err(ProofError::Unverified(first));
    }
    let first = crate::log::list_segments(&crate::store::trail_dir(root, trail))
        .map_err(|e| ProofError::Io(e.to_string()))?
        .into_iter()
        .next()
        .ok_or(ProofError::NoHead)?
        .1;
    let start = crate::segment::read_header(&first)
        .map_err(|e| ProofError::Io(e.to_string()))?
        .map_err(|e| ProofError::Io(e.to_string()))?
        .0
        .frontier;
    Ok((Tree::new(start, leaves), event, report))
}

/// Makes the inclusion proof of event `index` of `trail` against its last signed head.
pub fn prove(
    root: &Path,
    trail: &Trail,
    key: &PublicKey,
    index: u64,
) -> Result<InclusionProof, ProofError> {
    let (tree, event, report) = load_tree(root, trail, key, Some(index))?;
    let head = report.last_head.clone().ok_or(ProofError::NoHead)?;
    let (Some(event), true) = (event, index < head.tree_size) else {
        return Err(ProofError::OutOfRange {
            index,
            oldest: report.oldest,
            size: head.tree_size,
        });
    };
    let path = tree
        .inclusion(index, head.tree_size)
        .ok_or(ProofError::OutOfRange {
            index,
            oldest: report.oldest,
            size: head.tree_size,
        })?;
    Ok(InclusionProof {
        api_version: API_VERSION.into(),
        kind: KIND.into(),
        trail: trail.name().to_owned(),
        index,
        event: String::from_utf8_lossy(&event).into_owned(),
        path: path.iter().map(|h| hex32::to_hex(h)).collect(),
        head,
    })
}

/// Reads a proof file of `kind`.
fn read<P: serde::de::DeserializeOwned>(
    bytes: &[u8],
    kind: &str,
    type_of: impl Fn(&P) -> (&String, &String),
) -> Result<P, ProofError> {
    let proof: P =
        serde_json::from_slice(bytes).map_err(|e| ProofError::Malformed(e.to_string()))?;
    let (api_version, k) = type_of(&proof);
    if api_version != API_VERSION || k != kind {
        return Err(ProofError::Malformed(format!(
            "expected apiVersion {API_VERSION} kind {kind}"
        )));
    }
    Ok(proof)
}

/// An audit path from its hex form.
fn hashes(path: &[String]) -> Result<Vec<Hash>, ProofError> {
    path.iter()
        .enumerate()
        .map(|(i, h)| {
            hex32::from_hex(h)
                .ok_or_else(|| ProofError::Malformed(format!("path[{i}] is not 64 hex digits")))
        })
        .collect()
}

/// Checks a proof file's bytes with the sink's public key, offline. Returns the proof when it holds.
pub fn check(bytes: &[u8], key: &PublicKey) -> Result<InclusionProof, ProofError> {
    let proof: InclusionProof = read(bytes, KIND, |p: &InclusionProof| (&p.api_version, &p.kind))?;
    let path = hashes(&proof.path)?;
    let signed = crate::verify::trail_named(&proof.trail).signed_name();
    if !proof.head.verify(&signed, key) {
        return Err(ProofError::Signature);
    }
    let leaf = leaf_hash(proof.event.as_bytes());
    if !verify_inclusion(
        proof.index,
        proof.head.tree_size,
        &leaf,
        &path,
        &proof.head.root,
    ) {
        return Err(ProofError::NotIncluded { index: proof.index });
    }
    Ok(proof)
}

/// The file that shows an auditor's earlier head is a prefix of the log's current one: nothing signed
/// then was changed or removed since.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ConsistencyProof {
    pub api_version: String,
    pub kind: String,
    pub trail: String,
    /// The earlier head (the auditor's).
    pub first: SignedHead,
    /// The log's last head.
    pub second: SignedHead,
    /// RFC 9162's consistency proof between them.
    pub path: Vec<String>,
}

const CONSISTENCY_KIND: &str = "AuditConsistencyProof";

/// Makes the consistency proof from `first` (a head of `trail` kept earlier) to the log's last head.
pub fn prove_consistency(
    root: &Path,
    trail: &Trail,
    key: &PublicKey,
    first: &SignedHead,
) -> Result<ConsistencyProof, ProofError> {
    let signed = trail.signed_name();
    if !first.verify(&signed, key) {
        return Err(ProofError::Signature);
    }
    let (tree, _, report) = load_tree(root, trail, key, None)?;
    let second = report.last_head.clone().ok_or(ProofError::NoHead)?;
    let path =
        tree.consistency(first.tree_size, second.tree_size)
            .ok_or(ProofError::OutOfRange {
                index: first.tree_size,
                oldest: report.oldest,
                size: second.tree_size,
            })?;
    if first.tree_size > 0 && tree.mth(0, first.tree_size) != Some(first.root) {
        return Err(ProofError::Diverged {
            size: first.tree_size,
        });
    }
    Ok(ConsistencyProof {
        api_version: API_VERSION.into(),
        kind: CONSISTENCY_KIND.into(),
        trail: trail.name().to_owned(),
        first: first.clone(),
        second,
        path: path.iter().map(|h| hex32::to_hex(h)).collect(),
    })
}

/// Checks a consistency proof's bytes with the sink's public key, offline.
pub fn check_consistency(bytes: &[u8], key: &PublicKey) -> Result<ConsistencyProof, ProofError> {
    let proof: ConsistencyProof = read(bytes, CONSISTENCY_KIND, |p: &ConsistencyProof| {
        (&p.api_version, &p.kind)
    })?;
    let path = hashes(&proof.path)?;
    let signed = crate::verify::trail_named(&proof.trail).signed_name();
    if !proof.first.verify(&signed, key) || !proof.second.verify(&signed, key) {
        return Err(ProofError::Signature);
    }
    let (a, b) = (&proof.first, &proof.second);
    if !crate::merkle::verify_consistency(a.tree_size, b.tree_size, &a.root, &b.root, &path) {
        return Err(ProofError::Diverged { size: a.tree_size });
    }
    Ok(proof)
}

/// The kind a proof file says it is.
#[must_use]
pub fn kind_of(bytes: &[u8]) -> Option<String> {
    #[derive(Deserialize)]
    struct Kind {
        kind: String,
    }
    serde_json::from_slice::<Kind>(bytes).ok().map(|k| k.kind)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::merkle::{consistency_proof, inclusion_proof, root_of, verify_consistency};

    fn leaves(n: u64) -> Vec<Hash> {
        (0..n).map(|i| leaf_hash(&i.to_le_bytes())).collect()
    }

    #[test]
    fn a_pruned_tree_proves_what_the_whole_tree_proves() {
        for n in 1..40u64 {
            let all = leaves(n);
            for kept_from in 0..=n {
                let mut f = Frontier::new();
                for l in &all[..kept_from as usize] {
                    f.push(*l);
                }
                let t = Tree::new(f, all[kept_from as usize..].to_vec());
                assert_eq!(t.mth(0, n), Some(root_of(&all)));
                for i in kept_from..n {
                    let want = inclusion_proof(i as usize, &all);
                    assert_eq!(
                        t.inclusion(i, n),
                        want,
                        "leaf {i} of {n}, kept from {kept_from}"
                    );
                }
                for m in kept_from..=n {
                    let p = t.consistency(m, n);
                    assert_eq!(
                        p,
                        consistency_proof(m as usize, &all),
                        "{m} -> {n}, kept from {kept_from}"
                    );
                    let old = root_of(&all[..m as usize]);
                    assert!(verify_consistency(
                        m,
                        n,
                        &old,
                        &root_of(&all),
                        &p.unwrap_or_default()
                    ));
                }
            }
        }
    }
}
