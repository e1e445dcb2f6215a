//! SHA-256 hashes and the RFC 6962 domain separation of leaves and interior nodes.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ring::digest::{Context, SHA256};

/// A SHA-256 hash: a leaf, an interior node, a root, or a link of the hash chain.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Hash(pub [u8; 32]);

impl Hash {
    /// The hash of nothing: the root of the empty tree (RFC 6962 §2.1).
    pub fn empty() -> Self {
        Self::of(&[&[]])
    }

    /// SHA-256 over the concatenation of `parts`.
    fn of(parts: &[&[u8]]) -> Self {
        let mut context = Context::new(&SHA256);
        for part in parts {
            context.update(part);
        }
        let mut out = [0; 32];
        out.copy_from_slice(context.finish().as_ref());
        Self(out)
    }

    pub fn to_base64(&self) -> String {
        STANDARD.encode(self.0)
    }

    pub fn from_base64(text: &str) -> Option<Self> {
        let bytes = STANDARD.decode(text).ok()?;
        Self::from_slice(&bytes)
    }

    pub fn to_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }

    pub fn from_hex(text: &str) -> Option<Self> {
        if text.len() != 64 || !text.is_ascii() {
            return None;
        }
        let mut out = [0; 32];
        for (i, byte) in out.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).ok()?;
        }
        Some(Self(out))
    }

    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        <[u8; 32]>::try_from(bytes).ok().map(Self)
    }
}

impl std::fmt::Debug for Hash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Hash({})", self.to_hex())
    }
}

impl std::fmt::Display for Hash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.to_hex())
    }
}

/// The hash of a leaf: SHA-256(0x00 ‖ data).
pub fn leaf_hash(data: &[u8]) -> Hash {
    Hash::of(&[&[0x00], data])
}

/// The hash of an interior node: SHA-256(0x01 ‖ left ‖ right).
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    Hash::of(&[&[0x01], &left.0, &right.0])
}

/// The next link of the hash chain: SHA-256(previous link ‖ leaf hash). The chain starts from
/// [`CHAIN_START`]. It is verified independently of the tree: a tampered log must fool both.
pub fn chain_hash(previous: &Hash, leaf: &Hash) -> Hash {
    Hash::of(&[&previous.0, &leaf.0])
}

/// The link before the first entry.
pub const CHAIN_START: Hash = Hash([0; 32]);

/// SHA-256 of arbitrary bytes (key ids of signed notes).
pub(crate) fn sha256(parts: &[&[u8]]) -> Hash {
    Hash::of(parts)
}
