//! The offline verifier: given every sequenced entry (its bytes and the hashes stored with it)
//! and the signed checkpoints, decide whether the log is sound, or name the first entry or
//! checkpoint that is not. Needs no database: `cairn audit verify` feeds it rows, and
//! `cairn audit verify --file` an export.

use std::collections::HashMap;

use time::OffsetDateTime;

use crate::entry::{AuditEntry, canonical_time};
use crate::hash::{CHAIN_START, Hash, chain_hash, leaf_hash};
use crate::merkle::{Frontier, Node, NodeId};
use crate::note::{Checkpoint, NoteError, VerifierKey};

/// One sequenced entry as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogRecord {
    pub index: u64,
    /// The id the entry is stored (and fetched) under.
    pub id: String,
    /// The canonical bytes hashed into the leaf.
    pub body: Vec<u8>,
    pub leaf_hash: Hash,
    pub chain_hash: Hash,
    /// The columns the store searches entries by, when the record comes from a store that
    /// keeps them (an export file has none).
    pub columns: Option<EntryColumns>,
}

/// What a store keeps beside an entry's bytes so that it can find entries by them (an
/// accounting of disclosures by patient, an AuditEvent search by time and action). The
/// signature covers only the bytes: a verifier derives these again and compares, so that a
/// changed column cannot hide an entry from those searches while the log still verifies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryColumns {
    /// `None` when the stored value is not an instant at all.
    pub recorded_at: Option<OffsetDateTime>,
    pub action: String,
    pub patient: Option<String>,
}

/// The first thing found wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Tamper {
    #[error("entry {id} (index {index}): its bytes do not hash to its leaf hash: it was altered")]
    Altered { index: u64, id: String },
    #[error("entry {id} (index {index}): the hash chain breaks here")]
    ChainBroken { index: u64, id: String },
    #[error("index {expected} is missing: the next entry, {id}, has index {found}")]
    Missing {
        expected: u64,
        found: u64,
        id: String,
    },
    #[error("entry {id} has index {found}, already used or out of order (expected {expected})")]
    OutOfOrder {
        expected: u64,
        found: u64,
        id: String,
    },
    #[error("checkpoint {position} (size {size:?}): {error}")]
    BadCheckpoint {
        position: usize,
        size: Option<u64>,
        error: NoteError,
    },
    #[error(
        "checkpoint of size {size}: the root recomputed from entries 0..{size} differs from the signed root"
    )]
    RootMismatch { size: u64 },
    #[error("entry at index {index}: its bytes are not a canonical audit entry: it was altered")]
    Unreadable { index: u64 },
    #[error(
        "entry {id} (index {index}): its stored {column} differs from its signed bytes: the row was altered"
    )]
    ColumnMismatch {
        index: u64,
        id: String,
        column: &'static str,
    },
    #[error(
        "tree node (level {level}, index {index}) differs from the node recomputed from the entries: inclusion proofs built from it would not verify"
    )]
    NodeMismatch { level: u8, index: u64 },
    #[error(
        "tree node (level {level}, index {index}) is missing: proofs that need it cannot be built"
    )]
    NodeMissing { level: u8, index: u64 },
    #[error("checkpoints of size {size} disagree about its root")]
    Forked { size: u64 },
    #[error("checkpoint of size {size} covers entries the log does not have (it has {entries})")]
    Truncated { size: u64, entries: u64 },
}

/// What a sound log amounts to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub entries: u64,
    pub checkpoints: usize,
    /// The newest checkpoint's size (entries after it are sound but not yet signed).
    pub signed_size: u64,
    pub root: Hash,
    pub chain_head: Hash,
}

/// Checks a log entry by entry, in index order, with bounded memory.
#[derive(Debug, Clone)]
pub struct LogVerifier {
    checkpoints: Vec<Checkpoint>,
    next_checkpoint: usize,
    frontier: Frontier,
    chain: Hash,
    /// The tree nodes (above the leaves) completed since the caller last took them, to be
    /// compared with the nodes a store keeps ([`LogVerifier::check_nodes`]).
    completed: Vec<Node>,
}

impl LogVerifier {
    /// Opens every checkpoint note with `key` for the log named `origin`.
    pub fn new(key: &VerifierKey, origin: &str, notes: &[String]) -> Result<Self, Tamper> {
        let mut checkpoints = Vec::with_capacity(notes.len());
        for (position, note) in notes.iter().enumerate() {
            let checkpoint =
                key.open_checkpoint(note, origin)
                    .map_err(|error| Tamper::BadCheckpoint {
                        position,
                        size: Checkpoint::parse_body(note).ok().map(|c| c.size),
                        error,
                    })?;
            checkpoints.push(checkpoint);
        }
        checkpoints.sort_by_key(|c| c.size);
        for pair in checkpoints.windows(2) {
            if pair[0].size == pair[1].size && pair[0].root != pair[1].root {
                return Err(Tamper::Forked { size: pair[0].size });
            }
        }
        checkpoints.dedup_by_key(|c| c.size);
        let mut verifier = Self {
            checkpoints,
            next_checkpoint: 0,
            frontier: Frontier::new(),
            chain: CHAIN_START,
            completed: Vec::new(),
        };
        verifier.check_reached_checkpoints()?;
        Ok(verifier)
    }

    /// Checks the next entry.
    pub fn push(&mut self, record: &LogRecord) -> Result<(), Tamper> {
        let expected = self.frontier.size();
        if record.index != expected {
            return Err(if record.index > expected {
                Tamper::Missing {
                    expected,
                    found: record.index,
                    id: record.id.clone(),
                }
            } else {
                Tamper::OutOfOrder {
                    expected,
                    found: record.index,
                    id: record.id.clone(),
                }
            });
        }
        let leaf = leaf_hash(&record.body);
        if leaf != record.leaf_hash {
            return Err(Tamper::Altered {
                index: record.index,
                id: record.id.clone(),
            });
        }
        let chain = chain_hash(&self.chain, &leaf);
        if chain != record.chain_hash {
            return Err(Tamper::ChainBroken {
                index: record.index,
                id: record.id.clone(),
            });
        }
        let entry =
            AuditEntry::from_canonical_bytes(&record.body).map_err(|_| Tamper::Unreadable {
                index: record.index,
            })?;
        check_columns(record, &entry)?;
        self.chain = chain;
        let completed = &mut self.completed;
        self.frontier.push(leaf, |node| {
            if node.id.level > 0 {
                completed.push(node);
            }
        });
        self.check_reached_checkpoints()
    }

    /// The tree nodes above the leaves completed by the entries pushed since the last call.
    pub fn take_completed_nodes(&mut self) -> Vec<NodeId> {
        self.completed.iter().map(|node| node.id).collect()
    }

    /// Compares the nodes completed since the last call with `stored` (a store's answer to
    /// [`AuditLog::nodes`](crate::AuditLog::nodes) for [`LogVerifier::take_completed_nodes`],
    /// the nodes its proofs would use), then forgets them. Every one must be there.
    pub fn check_nodes(&mut self, stored: &HashMap<NodeId, Hash>) -> Result<(), Tamper> {
        for node in self.completed.drain(..) {
            match stored.get(&node.id) {
                Some(hash) if *hash == node.hash => {}
                Some(_) => {
                    return Err(Tamper::NodeMismatch {
                        level: node.id.level,
                        index: node.id.index,
                    });
                }
                None => {
                    return Err(Tamper::NodeMissing {
                        level: node.id.level,
                        index: node.id.index,
                    });
                }
            }
        }
        Ok(())
    }

    fn check_reached_checkpoints(&mut self) -> Result<(), Tamper> {
        while let Some(checkpoint) = self.checkpoints.get(self.next_checkpoint) {
            if checkpoint.size != self.frontier.size() {
                break;
            }
            if checkpoint.root != self.frontier.root() {
                return Err(Tamper::RootMismatch {
                    size: checkpoint.size,
                });
            }
            self.next_checkpoint += 1;
        }
        Ok(())
    }

    /// Ends the check: every checkpoint must have been reached.
    pub fn finish(self) -> Result<Verified, Tamper> {
        if let Some(checkpoint) = self.checkpoints.get(self.next_checkpoint) {
            return Err(Tamper::Truncated {
                size: checkpoint.size,
                entries: self.frontier.size(),
            });
        }
        Ok(Verified {
            entries: self.frontier.size(),
            checkpoints: self.checkpoints.len(),
            signed_size: self.checkpoints.last().map_or(0, |c| c.size),
            root: self.frontier.root(),
            chain_head: self.chain,
        })
    }
}

/// The record's id and, if it has them, its columns, against the entry its bytes hold.
fn check_columns(record: &LogRecord, entry: &AuditEntry) -> Result<(), Tamper> {
    let mismatch = |column| Tamper::ColumnMismatch {
        index: record.index,
        id: entry.id.clone(),
        column,
    };
    if record.id != entry.id {
        return Err(mismatch("id"));
    }
    let Some(columns) = &record.columns else {
        return Ok(());
    };
    if columns.recorded_at != Some(canonical_time(entry.recorded)) {
        return Err(mismatch("recorded_at"));
    }
    if columns.action != entry.action.as_str() {
        return Err(mismatch("action"));
    }
    if columns.patient != entry.patient {
        return Err(mismatch("patient"));
    }
    Ok(())
}

/// Verifies a whole log in one call.
pub fn verify_log<'a>(
    key: &VerifierKey,
    origin: &str,
    notes: &[String],
    records: impl IntoIterator<Item = &'a LogRecord>,
) -> Result<Verified, Tamper> {
    let mut verifier = LogVerifier::new(key, origin, notes)?;
    for record in records {
        verifier.push(record)?;
    }
    verifier.finish()
}
