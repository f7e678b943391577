//! The RFC 9162 (§2.1) Merkle tree: hashing, the incremental frontier, and inclusion and
//! consistency proofs built from complete-subtree hashes.
//!
//! Leaf `i` of the tree is log position `i + 1`. A store keeps the hash of every *complete*
//! subtree ([`NodeId`]); those never change once written, because the log only grows. Any
//! subtree the RFC recursion needs that is not complete (the right edge of a tree whose size
//! is not a power of two) is folded here from the complete subtrees that tile it, so every
//! proof and root needs O(log n) stored hashes, which the `*_ids` functions name up front so
//! the caller can fetch them in one query.

use std::collections::HashMap;

use sha2::{Digest as _, Sha256};

pub type Hash = [u8; 32];

/// Domain separation (RFC 9162 §2.1.1): a leaf can never be mistaken for an interior node.
const LEAF_PREFIX: u8 = 0x00;
const NODE_PREFIX: u8 = 0x01;

/// SHA-256(0x00 ‖ leaf bytes).
pub fn leaf_hash(leaf_bytes: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([LEAF_PREFIX]);
    h.update(leaf_bytes);
    h.finalize().into()
}

/// SHA-256(0x01 ‖ left ‖ right).
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([NODE_PREFIX]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// The root of the empty tree, SHA-256 of the empty string.
pub fn empty_root() -> Hash {
    Sha256::digest([]).into()
}

/// A complete subtree: leaves [index << level, (index + 1) << level).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId {
    pub level: u8,
    pub index: u64,
}

impl NodeId {
    /// The first leaf the subtree covers.
    pub fn start(self) -> u64 {
        self.index << self.level
    }

    /// One past the last leaf the subtree covers.
    pub fn end(self) -> u64 {
        (self.index + 1) << self.level
    }
}

/// Why a proof could not be built or did not verify. A closed set: callers match on it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProofError {
    #[error("leaf index {index} is not below tree size {size}")]
    IndexOutOfRange { index: u64, size: u64 },
    #[error("tree size {second} is smaller than tree size {first}")]
    SizesOutOfOrder { first: u64, second: u64 },
    #[error("a consistency proof from the empty tree proves nothing")]
    EmptyFirstTree,
    #[error("the proof has {got} hashes, a tree of this shape needs {want}")]
    WrongProofLength { got: usize, want: usize },
    #[error("the proof does not lead to the expected root")]
    RootMismatch,
    #[error("subtree {level}/{index} is needed but was not provided", level = .0.level, index = .0.index)]
    MissingNode(NodeId),
    #[error("{got} frontier hashes do not fit a tree of {size} leaves (it has {want} complete subtrees)")]
    FrontierShape { size: u64, got: usize, want: usize },
    #[error("the tree is full (2^64 - 1 leaves)")]
    TreeFull,
}

/// The complete subtrees tiling leaves [start, start + len), largest first, for a range whose
/// `start` is a multiple of a power of two at least `len` (every range the RFC recursion and
/// a tree's frontier produce is one).
fn tiling(start: u64, len: u64) -> Vec<NodeId> {
    let mut ids = Vec::with_capacity(len.count_ones() as usize);
    let mut offset = start;
    for level in (0..64u8).rev() {
        if len & (1u64 << level) != 0 {
            ids.push(NodeId {
                level,
                index: offset >> level,
            });
            offset += 1u64 << level;
        }
    }
    ids
}

/// Folds tiling hashes (largest first) into the RFC 9162 hash of the range they tile: the
/// RFC splits off the largest power of two on the left each time, so the fold runs from the
/// right.
fn fold_right(hashes: impl DoubleEndedIterator<Item = Hash>) -> Option<Hash> {
    let mut rev = hashes.rev();
    let last = rev.next()?;
    Some(rev.fold(last, |acc, left| node_hash(&left, &acc)))
}

fn lookup(nodes: &HashMap<NodeId, Hash>, id: NodeId) -> Result<Hash, ProofError> {
    nodes.get(&id).copied().ok_or(ProofError::MissingNode(id))
}

/// The hash of leaves [start, end) from stored complete subtrees.
fn range_hash(start: u64, end: u64, nodes: &HashMap<NodeId, Hash>) -> Result<Hash, ProofError> {
    let hashes = tiling(start, end - start)
        .into_iter()
        .map(|id| lookup(nodes, id))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(fold_right(hashes.into_iter()).unwrap_or_else(empty_root))
}

/// The largest power of two strictly below `n` (n ≥ 2).
fn split_point(n: u64) -> u64 {
    debug_assert!(n >= 2);
    1u64 << (63 - (n - 1).leading_zeros())
}

/// The compact range of a tree: the roots of its complete subtrees, one per set bit of the
/// size, largest (leftmost) first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frontier {
    size: u64,
    roots: Vec<Hash>,
}

impl Frontier {
    pub fn empty() -> Self {
        Frontier {
            size: 0,
            roots: Vec::new(),
        }
    }

    /// Restores a frontier from its roots (highest level first), as [`Frontier::nodes`] gave
    /// them.
    pub fn from_nodes(size: u64, roots: Vec<Hash>) -> Result<Self, ProofError> {
        let want = size.count_ones() as usize;
        if roots.len() != want {
            return Err(ProofError::FrontierShape {
                size,
                got: roots.len(),
                want,
            });
        }
        Ok(Frontier { size, roots })
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    /// The current roots with their ids, highest level first.
    pub fn nodes(&self) -> Vec<(NodeId, Hash)> {
        frontier_ids(self.size)
            .into_iter()
            .zip(self.roots.iter().copied())
            .collect()
    }

    /// Appends a leaf hash and returns every subtree it completes, the leaf itself (level 0)
    /// first, so a store can persist them all.
    pub fn push(&mut self, leaf: Hash) -> Vec<(NodeId, Hash)> {
        self.try_push(leaf)
            .expect("a log of 2^64 - 1 entries cannot be reached")
    }

    /// [`Frontier::push`] that reports a full tree instead of panicking.
    pub fn try_push(&mut self, leaf: Hash) -> Result<Vec<(NodeId, Hash)>, ProofError> {
        if self.size == u64::MAX {
            return Err(ProofError::TreeFull);
        }
        let mut id = NodeId {
            level: 0,
            index: self.size,
        };
        let mut hash = leaf;
        let mut completed = vec![(id, hash)];
        // Like a binary increment: each trailing one bit of the size is a root of the same
        // level that the new node merges with.
        while self.size & (1u64 << id.level) != 0 {
            let left = self.roots.pop().expect("one root per set bit of the size");
            hash = node_hash(&left, &hash);
            id = NodeId {
                level: id.level + 1,
                index: id.index >> 1,
            };
            completed.push((id, hash));
        }
        self.roots.push(hash);
        self.size += 1;
        Ok(completed)
    }

    /// The tree's root hash (the empty root for size 0).
    pub fn root(&self) -> Hash {
        fold_right(self.roots.iter().copied()).unwrap_or_else(empty_root)
    }
}

/// Which complete subtrees make up a tree of `size` leaves, highest level first.
pub fn frontier_ids(size: u64) -> Vec<NodeId> {
    tiling(0, size)
}

/// The stored nodes [`root`] needs.
pub fn root_ids(size: u64) -> Vec<NodeId> {
    frontier_ids(size)
}

/// The root of the tree of `size` leaves, from stored complete subtrees.
pub fn root(size: u64, nodes: &HashMap<NodeId, Hash>) -> Result<Hash, ProofError> {
    range_hash(0, size, nodes)
}

/// The ranges whose hashes make up the inclusion proof (RFC 9162 §2.1.3.1), leaf side first.
fn inclusion_ranges(index: u64, size: u64) -> Result<Vec<(u64, u64)>, ProofError> {
    if index >= size {
        return Err(ProofError::IndexOutOfRange { index, size });
    }
    let (mut lo, mut hi) = (0u64, size);
    let mut ranges = Vec::new();
    while hi - lo > 1 {
        let mid = lo + split_point(hi - lo);
        if index < mid {
            ranges.push((mid, hi));
            hi = mid;
        } else {
            ranges.push((lo, mid));
            lo = mid;
        }
    }
    ranges.reverse();
    Ok(ranges)
}

/// The ranges whose hashes make up the consistency proof (RFC 9162 §2.1.4.1), in proof order.
fn consistency_ranges(m: u64, n: u64) -> Result<Vec<(u64, u64)>, ProofError> {
    if m > n {
        return Err(ProofError::SizesOutOfOrder {
            first: m,
            second: n,
        });
    }
    if m == 0 {
        return Err(ProofError::EmptyFirstTree);
    }
    let (mut lo, mut hi) = (0u64, n);
    // True while the recursion is still on the left edge, where the old root is known to the
    // verifier and is not sent (the RFC's `b` flag).
    let mut on_left_edge = true;
    let mut siblings = Vec::new();
    while m != hi {
        let mid = lo + split_point(hi - lo);
        if m <= mid {
            siblings.push((mid, hi));
            hi = mid;
        } else {
            siblings.push((lo, mid));
            lo = mid;
            on_left_edge = false;
        }
    }
    let mut ranges = Vec::with_capacity(siblings.len() + 1);
    if !on_left_edge {
        ranges.push((lo, hi));
    }
    ranges.extend(siblings.into_iter().rev());
    Ok(ranges)
}

fn ids_of(ranges: &[(u64, u64)]) -> Vec<NodeId> {
    let mut ids: Vec<NodeId> = ranges
        .iter()
        .flat_map(|&(start, end)| tiling(start, end - start))
        .collect();
    ids.sort_unstable();
    ids.dedup();
    ids
}

fn hashes_of(
    ranges: &[(u64, u64)],
    nodes: &HashMap<NodeId, Hash>,
) -> Result<Vec<Hash>, ProofError> {
    ranges
        .iter()
        .map(|&(start, end)| range_hash(start, end, nodes))
        .collect()
}

/// Every stored node [`inclusion_proof`] reads (sorted, no duplicates).
pub fn inclusion_proof_ids(index: u64, size: u64) -> Result<Vec<NodeId>, ProofError> {
    Ok(ids_of(&inclusion_ranges(index, size)?))
}

/// The inclusion proof of leaf `index` in the tree of `size` leaves.
pub fn inclusion_proof(
    index: u64,
    size: u64,
    nodes: &HashMap<NodeId, Hash>,
) -> Result<Vec<Hash>, ProofError> {
    hashes_of(&inclusion_ranges(index, size)?, nodes)
}

/// Every stored node [`consistency_proof`] reads (sorted, no duplicates). Empty when m == n.
pub fn consistency_proof_ids(m: u64, n: u64) -> Result<Vec<NodeId>, ProofError> {
    Ok(ids_of(&consistency_ranges(m, n)?))
}

/// The consistency proof that the tree of `m` leaves is a prefix of the tree of `n` leaves.
pub fn consistency_proof(
    m: u64,
    n: u64,
    nodes: &HashMap<NodeId, Hash>,
) -> Result<Vec<Hash>, ProofError> {
    hashes_of(&consistency_ranges(m, n)?, nodes)
}

/// Which side of the running hash the next proof hash goes.
enum Side {
    Left,
    Right,
}

/// The RFC 9162 verifiers' walk up the tree: `fnode` is the node whose hash is being built,
/// `snode` the last node of the tree at the same level.
struct Walk {
    fnode: u64,
    snode: u64,
}

impl Walk {
    fn shift(&mut self) {
        self.fnode >>= 1;
        self.snode >>= 1;
    }

    /// Where the next proof hash goes, moving one level up (more on the right edge, where a
    /// node has no sibling until the next level at which it is a right child).
    fn next(&mut self) -> Result<Side, ProofError> {
        if self.snode == 0 {
            return Err(ProofError::RootMismatch);
        }
        let side = if self.fnode & 1 == 1 || self.fnode == self.snode {
            while self.fnode & 1 == 0 && self.fnode != 0 {
                self.shift();
            }
            Side::Left
        } else {
            Side::Right
        };
        self.shift();
        Ok(side)
    }

    fn at_root(&self) -> bool {
        self.snode == 0
    }
}

/// RFC 9162 §2.1.3.2. Every check is needed: dropping the final `sn == 0` test, for one,
/// accepts proofs for a wrong tree size.
pub fn verify_inclusion(
    index: u64,
    size: u64,
    leaf: &Hash,
    proof: &[Hash],
    root: &Hash,
) -> Result<(), ProofError> {
    if index >= size {
        return Err(ProofError::IndexOutOfRange { index, size });
    }
    let want = inclusion_proof_len(index, size);
    if proof.len() != want {
        return Err(ProofError::WrongProofLength {
            got: proof.len(),
            want,
        });
    }
    let mut walk = Walk {
        fnode: index,
        snode: size - 1,
    };
    let mut r = *leaf;
    for p in proof {
        r = match walk.next()? {
            Side::Left => node_hash(p, &r),
            Side::Right => node_hash(&r, p),
        };
    }
    if !walk.at_root() || r != *root {
        return Err(ProofError::RootMismatch);
    }
    Ok(())
}

/// How many hashes an inclusion proof has: one per level below the point where the leaf's
/// path and the right edge part, plus one per set bit of the right edge above it.
fn inclusion_proof_len(index: u64, size: u64) -> usize {
    let last = size - 1;
    let inner = 64 - (index ^ last).leading_zeros();
    let border = (index >> inner).count_ones();
    (inner + border) as usize
}

/// RFC 9162 §2.1.4.2. A first tree of size 0 is rejected: every tree extends it, so such a
/// "proof" would prove nothing, and accepting it hides a caller that lost its state.
pub fn verify_consistency(
    m: u64,
    n: u64,
    root_m: &Hash,
    root_n: &Hash,
    proof: &[Hash],
) -> Result<(), ProofError> {
    if m > n {
        return Err(ProofError::SizesOutOfOrder {
            first: m,
            second: n,
        });
    }
    if m == 0 {
        return Err(ProofError::EmptyFirstTree);
    }
    if m == n {
        if !proof.is_empty() {
            return Err(ProofError::WrongProofLength {
                got: proof.len(),
                want: 0,
            });
        }
        return if root_m == root_n {
            Ok(())
        } else {
            Err(ProofError::RootMismatch)
        };
    }
    let want = consistency_proof_len(m, n);
    if proof.len() != want {
        return Err(ProofError::WrongProofLength {
            got: proof.len(),
            want,
        });
    }
    // Step 2: when m is a power of two the old root is itself the first node of the path.
    let mut path = Vec::with_capacity(proof.len() + 1);
    if m.is_power_of_two() {
        path.push(*root_m);
    }
    path.extend_from_slice(proof);
    let mut walk = Walk {
        fnode: m - 1,
        snode: n - 1,
    };
    // Below the lowest zero bit of m - 1 the old tree is complete and path[0] covers it.
    while walk.fnode & 1 == 1 {
        walk.shift();
    }
    let (mut fr, mut sr) = (path[0], path[0]);
    for c in &path[1..] {
        match walk.next()? {
            Side::Left => {
                fr = node_hash(c, &fr);
                sr = node_hash(c, &sr);
            }
            // Hashes right of the old tree only go into the new root.
            Side::Right => sr = node_hash(&sr, c),
        }
    }
    if !walk.at_root() || fr != *root_m || sr != *root_n {
        return Err(ProofError::RootMismatch);
    }
    Ok(())
}

/// How many hashes a consistency proof for 0 < m < n has: the inclusion path of leaf m - 1
/// from level `trailing_zeros(m)` up (below it the old tree is complete and known), plus the
/// root of that complete subtree unless it is the whole old tree.
fn consistency_proof_len(m: u64, n: u64) -> usize {
    let index = m - 1;
    let inner = 64 - (index ^ (n - 1)).leading_zeros();
    let border = (index >> inner).count_ones();
    let shift = m.trailing_zeros();
    let seed = usize::from(!m.is_power_of_two());
    (inner - shift) as usize + border as usize + seed
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod vectors;
