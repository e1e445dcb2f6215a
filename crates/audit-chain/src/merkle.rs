//! The RFC 6962 Merkle tree (RFC 9162 §2.1): tree hashes, inclusion and consistency proofs,
//! and their verification.
//!
//! Storage sees the tree as *perfect subtrees*: a [`NodeId`] names the hash of 2^level leaves
//! starting at leaf `index × 2^level`. Every such node, once its leaves exist, never changes,
//! so a store can persist each one as it is completed ([`Frontier::append`] says which) and
//! answer any proof with a handful of lookups ([`ProofPlan`]), never re-reading the leaves.

use crate::hash::{Hash, leaf_hash, node_hash};

/// A perfect subtree: 2^`level` leaves starting at leaf `index << level`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId {
    pub level: u8,
    pub index: u64,
}

impl NodeId {
    pub fn new(level: u8, index: u64) -> Self {
        Self { level, index }
    }

    fn start(self) -> u64 {
        self.index << self.level
    }

    fn size(self) -> u64 {
        1 << self.level
    }

    /// The indexes of the leaves it covers (a store that keeps only the higher levels computes
    /// a low node from them with [`root_of`]).
    pub fn leaves(self) -> std::ops::Range<u64> {
        self.start()..self.start() + self.size()
    }
}

/// A node and its hash, as [`Frontier::append`] reports new ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Node {
    pub id: NodeId,
    pub hash: Hash,
}

/// The largest power of two smaller than `n` (n ≥ 2): where RFC 6962 splits a tree of n leaves.
fn split(n: u64) -> u64 {
    debug_assert!(n >= 2);
    1 << (63 - (n - 1).leading_zeros())
}

/// The Merkle tree hash of `leaves` (already leaf-hashed), computed directly (RFC 6962 §2.1).
pub fn root_of(leaves: &[Hash]) -> Hash {
    match leaves.len() {
        0 => Hash::empty(),
        1 => leaves[0],
        n => {
            let k = usize::try_from(split(n as u64)).unwrap_or(usize::MAX);
            node_hash(&root_of(&leaves[..k]), &root_of(&leaves[k..]))
        }
    }
}

/// The perfect subtrees that make up leaves `[start, end)`, left to right, largest first.
/// `start` must be aligned as it is for every range an RFC 6962 proof names (a multiple of the
/// smallest power of two not below the range's length), which makes each piece a [`NodeId`].
fn range_nodes(start: u64, end: u64) -> Vec<NodeId> {
    let mut nodes = Vec::new();
    let mut at = start;
    while at < end {
        let remaining = end - at;
        let mut level = 63 - remaining.leading_zeros();
        if at != 0 {
            // Never straddle a boundary `at` is not aligned to (it always is, for proofs).
            level = level.min(at.trailing_zeros());
        }
        let level = u8::try_from(level).unwrap_or(63);
        nodes.push(NodeId::new(level, at >> level));
        at += 1 << level;
    }
    nodes
}

/// The hash of leaves `[start, end)` from the hashes of its perfect pieces (right to left).
fn fold_right(pieces: &[Hash]) -> Option<Hash> {
    let (last, rest) = pieces.split_last()?;
    Some(
        rest.iter()
            .rev()
            .fold(*last, |acc, left| node_hash(left, &acc)),
    )
}

/// What a proof needs: a list of leaf ranges whose tree hashes, in order, are the proof.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProofPlan {
    ranges: Vec<(u64, u64)>,
}

impl ProofPlan {
    /// The inclusion proof of leaf `index` in the tree of `size` leaves (RFC 6962 §2.1.1
    /// PATH): from the leaf's sibling up to the root's child. `None` if `index >= size`.
    pub fn inclusion(index: u64, size: u64) -> Option<Self> {
        if index >= size {
            return None;
        }
        let mut ranges = Vec::new();
        path(index, 0, size, &mut ranges);
        ranges.reverse();
        Some(Self { ranges })
    }

    /// The consistency proof between the trees of `old` and `new` leaves (RFC 6962 §2.1.2
    /// PROOF). Empty when `old` is 0 or equals `new`; `None` if `old > new`.
    pub fn consistency(old: u64, new: u64) -> Option<Self> {
        if old > new {
            return None;
        }
        let mut ranges = Vec::new();
        if old > 0 && old < new {
            subproof(old, 0, new, true, &mut ranges);
            ranges.reverse();
        }
        Some(Self { ranges })
    }

    /// Every perfect node the proof is made of, each once, in ascending order: what a store
    /// fetches.
    pub fn nodes(&self) -> Vec<NodeId> {
        let mut nodes: Vec<NodeId> = self
            .ranges
            .iter()
            .flat_map(|&(start, end)| range_nodes(start, end))
            .collect();
        nodes.sort_unstable();
        nodes.dedup();
        nodes
    }

    /// The proof's hashes, from the nodes `lookup` finds; `None` if one is missing.
    pub fn assemble(&self, lookup: impl Fn(NodeId) -> Option<Hash>) -> Option<Vec<Hash>> {
        self.ranges
            .iter()
            .map(|&(start, end)| {
                let pieces = range_nodes(start, end)
                    .into_iter()
                    .map(&lookup)
                    .collect::<Option<Vec<_>>>()?;
                fold_right(&pieces)
            })
            .collect()
    }
}

/// PATH(m, D[start:end]) with elements pushed root-side first (reversed by the caller).
fn path(m: u64, start: u64, end: u64, out: &mut Vec<(u64, u64)>) {
    let n = end - start;
    if n <= 1 {
        return;
    }
    let k = split(n);
    if m < k {
        out.push((start + k, end));
        path(m, start, start + k, out);
    } else {
        out.push((start, start + k));
        path(m - k, start + k, end, out);
    }
}

/// SUBPROOF(m, D[start:end], complete) with elements pushed root-side first.
fn subproof(m: u64, start: u64, end: u64, complete: bool, out: &mut Vec<(u64, u64)>) {
    let n = end - start;
    if m == n {
        if !complete {
            out.push((start, end));
        }
        return;
    }
    let k = split(n);
    if m <= k {
        out.push((start + k, end));
        subproof(m, start, start + k, complete, out);
    } else {
        out.push((start, start + k));
        subproof(m - k, start + k, end, false, out);
    }
}

/// Checks that `proof` shows the leaf with hash `leaf` at `index` in the tree of `size` leaves
/// whose root is `root` (RFC 9162 §2.1.3.2).
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

/// Checks that the tree of `new_size` leaves with root `new_root` extends the tree of
/// `old_size` leaves with root `old_root` (RFC 9162 §2.1.4.2).
pub fn verify_consistency(
    old_size: u64,
    new_size: u64,
    old_root: &Hash,
    new_root: &Hash,
    proof: &[Hash],
) -> bool {
    if old_size > new_size {
        return false;
    }
    if old_size == new_size {
        return proof.is_empty() && old_root == new_root;
    }
    if old_size == 0 {
        // Every tree extends the empty one.
        return proof.is_empty();
    }
    if proof.is_empty() {
        return false;
    }
    let mut path: Vec<Hash> = Vec::with_capacity(proof.len() + 1);
    if old_size.is_power_of_two() {
        path.push(*old_root);
    }
    path.extend_from_slice(proof);
    let (mut f, mut s) = (old_size - 1, new_size - 1);
    while f & 1 == 1 {
        f >>= 1;
        s >>= 1;
    }
    let (mut fr, mut sr) = (path[0], path[0]);
    for c in &path[1..] {
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
    fr == *old_root && sr == *new_root && s == 0
}

/// The right edge of a tree: the roots of its perfect subtrees, largest (leftmost) first, one
/// per set bit of its size. Enough to append leaves and compute the root without the rest.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Frontier {
    size: u64,
    nodes: Vec<Hash>,
}

impl Frontier {
    pub fn new() -> Self {
        Self::default()
    }

    /// The nodes that make up the frontier of a tree of `size` leaves, left to right.
    pub fn ids(size: u64) -> Vec<NodeId> {
        range_nodes(0, size)
    }

    /// A frontier from the hashes of the nodes [`Frontier::ids`] names, in that order.
    pub fn from_nodes(size: u64, nodes: Vec<Hash>) -> Option<Self> {
        (nodes.len() == size.count_ones() as usize).then_some(Self { size, nodes })
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    /// Appends a leaf (its data, not yet hashed); returns every node this completes, the leaf
    /// itself first.
    pub fn append(&mut self, data: &[u8]) -> Vec<Node> {
        self.append_hash(leaf_hash(data))
    }

    /// As [`Frontier::append`], for a leaf already hashed.
    pub fn append_hash(&mut self, leaf: Hash) -> Vec<Node> {
        let mut completed = Vec::with_capacity(2);
        self.push(leaf, |node| completed.push(node));
        completed
    }

    /// Appends a leaf hash, handing each completed node (the leaf first) to `completed`;
    /// allocates nothing (the verifier's hot path).
    pub fn push(&mut self, leaf: Hash, mut completed: impl FnMut(Node)) {
        let mut node = Node {
            id: NodeId::new(0, self.size),
            hash: leaf,
        };
        completed(node);
        while node.id.index & 1 == 1 {
            let Some(left) = self.nodes.pop() else { break };
            node = Node {
                id: NodeId::new(node.id.level + 1, node.id.index >> 1),
                hash: node_hash(&left, &node.hash),
            };
            completed(node);
        }
        self.nodes.push(node.hash);
        self.size += 1;
    }

    /// The root of the tree so far.
    pub fn root(&self) -> Hash {
        fold_right(&self.nodes).unwrap_or_else(Hash::empty)
    }
}

/// A whole tree in memory: every perfect node, level by level. For tests, fakes and the
/// offline verifier's proofs.
#[derive(Debug, Clone, Default)]
pub struct MemoryTree {
    levels: Vec<Vec<Hash>>,
    frontier: Frontier,
}

impl MemoryTree {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn size(&self) -> u64 {
        self.frontier.size()
    }

    pub fn append(&mut self, data: &[u8]) -> Hash {
        self.append_hash(leaf_hash(data))
    }

    pub fn append_hash(&mut self, leaf: Hash) -> Hash {
        for node in self.frontier.append_hash(leaf) {
            let level = usize::from(node.id.level);
            if self.levels.len() <= level {
                self.levels.push(Vec::new());
            }
            self.levels[level].push(node.hash);
        }
        leaf
    }

    pub fn root(&self) -> Hash {
        self.frontier.root()
    }

    /// The root the tree had at `size` leaves.
    pub fn root_at(&self, size: u64) -> Option<Hash> {
        if size > self.size() {
            return None;
        }
        let pieces = range_nodes(0, size)
            .into_iter()
            .map(|id| self.node(id))
            .collect::<Option<Vec<_>>>()?;
        Some(fold_right(&pieces).unwrap_or_else(Hash::empty))
    }

    pub fn node(&self, id: NodeId) -> Option<Hash> {
        let start = id.start();
        if start.checked_add(id.size())? > self.size() {
            return None;
        }
        let index = usize::try_from(id.index).ok()?;
        self.levels.get(usize::from(id.level))?.get(index).copied()
    }

    pub fn inclusion_proof(&self, index: u64, size: u64) -> Option<Vec<Hash>> {
        if size > self.size() {
            return None;
        }
        ProofPlan::inclusion(index, size)?.assemble(|id| self.node(id))
    }

    pub fn consistency_proof(&self, old: u64, new: u64) -> Option<Vec<Hash>> {
        if new > self.size() {
            return None;
        }
        ProofPlan::consistency(old, new)?.assemble(|id| self.node(id))
    }
}
