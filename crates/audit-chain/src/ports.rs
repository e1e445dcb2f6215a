//! Port: where the log lives. The store adapter implements [`AuditLog`] on SQL (one sequencer
//! at a time by an advisory lock on PostgreSQL, in-process on SQLite); [`crate::fakes`] in
//! memory.

use std::collections::HashMap;

use async_trait::async_trait;
use time::OffsetDateTime;

use crate::entry::AuditEntry;
use crate::hash::Hash;
use crate::merkle::{Frontier, Node, NodeId};
use crate::note::Checkpoint;
use crate::verify::LogRecord;

/// The log's storage failed. Carries no entry content.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("audit log unavailable: {0}")]
pub struct AuditFailure(pub String);

/// An entry as stored: its bytes and, once sequenced, its place in the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEntry {
    pub id: String,
    pub body: Vec<u8>,
    /// `None` until the sequencer reaches it (within about a second).
    pub index: Option<u64>,
}

/// Which entries to list (an accounting of disclosures, an AuditEvent search): all of the
/// given kinds, newest first.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct EntryQuery {
    /// `Patient/<id>`: only entries about that patient.
    pub patient: Option<String>,
    /// Recorded at or after.
    pub since: Option<OffsetDateTime>,
    /// Recorded before.
    pub before: Option<OffsetDateTime>,
    /// Only these actions (all if empty).
    pub actions: Vec<crate::entry::Action>,
    /// Continue after this position (the `position` of the last entry of the previous page).
    pub after: Option<i64>,
    pub limit: usize,
}

impl EntryQuery {
    /// Whether `entry` is one the query asks for, judged from the entry itself: a store finds
    /// entries by columns the signature does not cover, so a reader checks what it was given.
    pub fn matches(&self, entry: &crate::entry::AuditEntry) -> bool {
        let at = crate::entry::canonical_time(entry.recorded);
        self.patient
            .as_ref()
            .is_none_or(|patient| entry.patient.as_ref() == Some(patient))
            && self.since.is_none_or(|since| at >= since)
            && self.before.is_none_or(|before| at < before)
            && (self.actions.is_empty() || self.actions.contains(&entry.action))
    }
}

/// An entry found by [`AuditLog::find`], with its position for paging.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FoundEntry {
    /// Its leaf index (`after` of the next page).
    pub position: i64,
    pub entry: StoredEntry,
}

/// An entry waiting for the sequencer: a key the session gave it (the sequencer hands it
/// back in [`Assigned`]) and its bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pending {
    pub key: i64,
    pub body: Vec<u8>,
}

/// What the sequencer decided for one entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assigned {
    pub key: i64,
    pub index: u64,
    pub leaf_hash: Hash,
    pub chain_hash: Hash,
}

/// The sequenced end of the log, as the sequencer needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    pub frontier: Frontier,
    pub chain: Hash,
}

/// A signed checkpoint as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredCheckpoint {
    pub checkpoint: Checkpoint,
    pub note: String,
    pub signed_at: OffsetDateTime,
}

/// Where entries are recorded: all a recorder needs (the records core, the HTTP front).
#[async_trait]
pub trait AuditTrail: Send + Sync {
    /// Makes `entries` durable, unsequenced. Returns only once they are committed.
    async fn append(&self, entries: &[AuditEntry]) -> Result<(), AuditFailure>;
}

/// The audit log's storage: what is recorded, sequenced, and read back.
#[async_trait]
pub trait AuditLog: AuditTrail {
    /// Opens the sequencer's exclusive session; `None` if another sequencer holds it.
    async fn sequencer(&self) -> Result<Option<Box<dyn SequencerSession>>, AuditFailure>;

    /// Opens the sequencer's exclusive session, waiting for another sequencer's round to end
    /// if one holds it.
    async fn sequencer_when_free(&self) -> Result<Box<dyn SequencerSession>, AuditFailure>;

    async fn entry(&self, id: &str) -> Result<Option<StoredEntry>, AuditFailure>;

    /// Sequenced entries matching `query`, newest first (by leaf index, which is their
    /// `position`). Entries recorded but not yet sequenced are not found: a reader that must
    /// see everything recorded so far calls [`crate::Sequencer::catch_up`] first.
    async fn find(&self, query: &EntryQuery) -> Result<Vec<FoundEntry>, AuditFailure>;

    /// The stored hashes of `ids` (those that exist).
    async fn nodes(&self, ids: &[NodeId]) -> Result<HashMap<NodeId, Hash>, AuditFailure>;

    async fn latest_checkpoint(&self) -> Result<Option<StoredCheckpoint>, AuditFailure>;

    /// Checkpoints with `from_size <= size <= to_size`, oldest first, at most `limit`.
    async fn checkpoints(
        &self,
        from_size: u64,
        to_size: u64,
        limit: usize,
    ) -> Result<Vec<StoredCheckpoint>, AuditFailure>;

    /// Sequenced entries from `from_index` on, in index order, at most `limit` (verification
    /// and export).
    async fn records(&self, from_index: u64, limit: usize) -> Result<Vec<LogRecord>, AuditFailure>;
}

/// The sequencer's exclusive session: everything in it commits together or not at all.
#[async_trait]
pub trait SequencerSession: Send {
    async fn head(&mut self) -> Result<Head, AuditFailure>;

    /// Unsequenced entries in the order they were recorded: all of them if fewer than `limit`
    /// are waiting, else `limit` (a store that keeps entries in batches may hand out a few
    /// more rather than split a batch). Fewer than `limit` means none was left waiting. Every
    /// entry handed out must be assigned in [`SequencerSession::store`] before the session
    /// commits.
    async fn pending(&mut self, limit: usize) -> Result<Vec<Pending>, AuditFailure>;

    /// Records the assignments and the tree nodes they completed.
    async fn store(&mut self, assigned: &[Assigned], nodes: &[Node]) -> Result<(), AuditFailure>;

    async fn latest_checkpoint(&mut self) -> Result<Option<StoredCheckpoint>, AuditFailure>;

    async fn store_checkpoint(&mut self, checkpoint: &StoredCheckpoint)
    -> Result<(), AuditFailure>;

    async fn commit(self: Box<Self>) -> Result<(), AuditFailure>;
}
