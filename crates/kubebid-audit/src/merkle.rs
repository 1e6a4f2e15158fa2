//! The Merkle tree of RFC 9162 (Certificate Transparency 2.0, section 2.1): leaf and node hashes, the
//! tree's root grown one leaf at a time, inclusion and consistency proofs and their verification.
//!
//! A tree of `n` leaves splits at the largest power of two below `n`, so its left part is always a
//! perfect subtree. The [`Frontier`] keeps the roots of the perfect subtrees that make up the tree so far
//! (one per set bit of `n`): appending is amortised O(1), the root is O(log n), and the frontier at a
//! segment's first index lets a log drop its older segments and still prove everything after them.

use ring::digest::{Context, SHA256};

/// A SHA-256 hash.
pub type Hash = [u8; 32];

/// The hash of the empty tree: SHA-256 of nothing.
#[must_use]
pub fn empty_root() -> Hash {
    finish(Context::new(&SHA256))
}

/// The hash of one leaf: SHA-256(0x00 || data).
#[must_use]
pub fn leaf_hash(data: &[u8]) -> Hash {
    let mut c = Context::new(&SHA256);
    c.update(&[0]);
    c.update(data);
    finish(c)
}

/// The hash of an interior node: SHA-256(0x01 || left || right).
#[must_use]
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut c = Context::new(&SHA256);
    c.update(&[1]);
    c.update(left);
    c.update(right);
    finish(c)
}

fn finish(c: Context) -> Hash {
    let mut out = [0u8; 32];
    out.copy_from_slice(c.finish().as_ref());
    out
}

/// The roots of the perfect subtrees that make up a tree of `size` leaves, largest (leftmost) first.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Frontier {
    size: u64,
    /// One hash per set bit of `size`, from the highest bit down.
    hashes: Vec<Hash>,
}

impl Frontier {
    /// The frontier of the empty tree.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// A frontier read back from storage: `hashes` must have one entry per set bit of `size`.
    #[must_use]
    pub fn from_parts(size: u64, hashes: Vec<Hash>) -> Option<Self> {
        (hashes.len() == size.count_ones() as usize).then_some(Self { size, hashes })
    }

    /// Number of leaves.
    #[must_use]
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The subtree roots, largest first.
    #[must_use]
    pub fn hashes(&self) -> &[Hash] {
        &self.hashes
    }

    /// Appends a leaf by its hash.
    pub fn push(&mut self, leaf: Hash) {
        let mut h = leaf;
        // Each trailing one bit of the old size is a perfect subtree of the new leaf's size that merges.
        let mut merges = self.size.trailing_ones();
        while merges > 0 {
            let Some(left) = self.hashes.pop() else {
                break;
            };
            h = node_hash(&left, &h);
            merges -= 1;
        }
        self.hashes.push(h);
        self.size += 1;
    }

    /// The tree's root (RFC 9162's MTH).
    #[must_use]
    pub fn root(&self) -> Hash {
        let mut it = self.hashes.iter().rev();
        let Some(last) = it.next() else {
            return empty_root();
        };
        it.fold(*last, |right, left| node_hash(left, &right))
    }
}

/// The root of a tree over `leaves` (hashes), computed directly.
#[must_use]
pub fn root_of(leaves: &[Hash]) -> Hash {
    match leaves.len() {
        0 => empty_root(),
        1 => leaves[0],
        n => {
            let k = split(n);
            node_hash(&root_of(&leaves[..k]), &root_of(&leaves[k..]))
        }
    }
}

/// The largest power of two smaller than `n` (`n >= 2`).
fn split(n: usize) -> usize {
    let mut k = 1;
    while k << 1 < n {
        k <<= 1;
    }
    k
}

/// The audit path of leaf `index` in the tree over `leaves` (RFC 9162 `PATH`), or `None` when out of range.
#[must_use]
pub fn inclusion_proof(index: usize, leaves: &[Hash]) -> Option<Vec<Hash>> {
    fn path(m: usize, d: &[Hash], out: &mut Vec<Hash>) {
        if d.len() <= 1 {
            return;
        }
        let k = split(d.len());
        if m < k {
            path(m, &d[..k], out);
            out.push(root_of(&d[k..]));
        } else {
            path(m - k, &d[k..], out);
            out.push(root_of(&d[..k]));
        }
    }
    if index >= leaves.len() {
        return None;
    }
    let mut out = Vec::new();
    path(index, leaves, &mut out);
    Some(out)
}

/// The consistency proof between the tree of the first `first` leaves and the tree over all `leaves`
/// (RFC 9162 `PROOF`), or `None` when `first` is larger than the tree.
#[must_use]
pub fn consistency_proof(first: usize, leaves: &[Hash]) -> Option<Vec<Hash>> {
    fn sub(m: usize, d: &[Hash], whole: bool, out: &mut Vec<Hash>) {
        if m == d.len() {
            if !whole {
                out.push(root_of(d));
            }
            return;
        }
        let k = split(d.len());
        if m <= k {
            sub(m, &d[..k], whole, out);
            out.push(root_of(&d[k..]));
        } else {
            sub(m - k, &d[k..], false, out);
            out.push(root_of(&d[..k]));
        }
    }
    if first > leaves.len() {
        return None;
    }
    let mut out = Vec::new();
    if first > 0 && first < leaves.len() {
        sub(first, leaves, true, &mut out);
    }
    Some(out)
}

/// Whether `proof` shows that the leaf with hash `leaf` sits at `index` in the tree of `size` leaves whose
/// root is `root` (RFC 9162 section 2.1.3.2).
#[must_use]
pub fn verify_inclusion(index: u64, size: u64, leaf: &Hash, proof: &[Hash], root: &Hash) -> bool {
    if index >= size {
        return false;
    }
    let (mut f, mut s) = (index, size - 1);
    let mut r = *leaf;
    for p in proof {
        if s == 0 {
            return false;
        }
        if f & 1 == 1 || f == s {
            r = node_hash(p, &r);
            while f & 1 == 0 && f != 0 {
                f >>= 1;
                s >>= 1;
            }
        } else {
            r = node_hash(&r, p);
        }
        f >>= 1;
        s >>= 1;
    }
    s == 0 && r == *root
}

/// Whether `proof` shows that the tree of `first` leaves with root `first_root` is a prefix of the tree of
/// `second` leaves with root `second_root` (RFC 9162 section 2.1.4.2).
#[must_use]
pub fn verify_consistency(
    first: u64,
    second: u64,
    first_root: &Hash,
    second_root: &Hash,
    proof: &[Hash],
) -> bool {
    if first > second {
        return false;
    }
    if first == second {
        return proof.is_empty() && first_root == second_root;
    }
    if first == 0 {
        // Every tree extends the empty one.
        return proof.is_empty();
    }
    let mut path: Vec<Hash> = Vec::with_capacity(proof.len() + 1);
    if first.is_power_of_two() {
        path.push(*first_root);
    }
    path.extend_from_slice(proof);
    let (mut f, mut s) = (first - 1, second - 1);
    while f & 1 == 1 {
        f >>= 1;
        s >>= 1;
    }
    let Some((head, rest)) = path.split_first() else {
        return false;
    };
    let (mut fr, mut sr) = (*head, *head);
    for c in rest {
        if s == 0 {
            return false;
        }
        if f & 1 == 1 || f == s {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            while f & 1 == 0 && f != 0 {
                f >>= 1;
                s >>= 1;
            }
        } else {
            sr = node_hash(&sr, c);
        }
        f >>= 1;
        s >>= 1;
    }
    fr == *first_root && sr == *second_root && s == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaves(n: usize) -> Vec<Hash> {
        (0..n)
            .map(|i| leaf_hash(format!("event {i}").as_bytes()))
            .collect()
    }

    #[test]
    fn frontier_root_matches_the_recursive_definition_at_every_size() {
        let all = leaves(70);
        let mut f = Frontier::new();
        assert_eq!(f.root(), empty_root());
        for (i, l) in all.iter().enumerate() {
            f.push(*l);
            assert_eq!(f.root(), root_of(&all[..=i]), "size {}", i + 1);
            assert_eq!(f.hashes().len(), (i + 1).count_ones() as usize);
        }
    }

    #[test]
    fn empty_root_is_sha256_of_nothing() {
        // RFC 9162: MTH({}) = SHA-256().
        let hex: String = empty_root().iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            hex,
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn every_inclusion_proof_verifies_and_a_wrong_one_does_not() {
        for n in 1..=33 {
            let all = leaves(n);
            let root = root_of(&all);
            for i in 0..n {
                let proof = inclusion_proof(i, &all).unwrap_or_default();
                assert!(
                    verify_inclusion(i as u64, n as u64, &all[i], &proof, &root),
                    "{i} of {n}"
                );
                let other = leaf_hash(b"forged");
                assert!(!verify_inclusion(i as u64, n as u64, &other, &proof, &root));
                if n > 1 {
                    let j = (i + 1) % n;
                    assert!(!verify_inclusion(
                        j as u64, n as u64, &all[i], &proof, &root
                    ));
                }
            }
            assert!(inclusion_proof(n, &all).is_none());
        }
    }

    #[test]
    fn every_consistency_proof_verifies_and_a_rewritten_history_does_not() {
        for n in 1..=33 {
            let all = leaves(n);
            let root = root_of(&all);
            for m in 0..=n {
                let proof = consistency_proof(m, &all).unwrap_or_default();
                let old = root_of(&all[..m]);
                assert!(
                    verify_consistency(m as u64, n as u64, &old, &root, &proof),
                    "{m} -> {n}"
                );
                if m > 0 && m < n {
                    let mut forged = all.clone();
                    forged[m - 1] = leaf_hash(b"rewritten");
                    let forged_old = root_of(&forged[..m]);
                    assert!(!verify_consistency(
                        m as u64,
                        n as u64,
                        &forged_old,
                        &root,
                        &proof
                    ));
                }
            }
        }
    }
}
