//! An in-memory [`AuditLog`] for tests of this crate and of its users. It behaves like the
//! SQL store: appends are immediately durable, one sequencer session at a time, and a session
//! changes nothing until it commits.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;

use crate::entry::AuditEntry;
use crate::hash::{CHAIN_START, Hash};
use crate::merkle::{Frontier, Node, NodeId};
use crate::ports::{
    Assigned, AuditFailure, AuditLog, AuditTrail, EntryQuery, FoundEntry, Head, Pending,
    SequencerSession, StoredCheckpoint, StoredEntry,
};
use crate::verify::LogRecord;

#[derive(Debug, Default)]
struct Row {
    id: String,
    body: Vec<u8>,
    sequenced: Option<(u64, Hash, Hash)>,
}

#[derive(Debug, Default)]
struct State {
    rows: BTreeMap<i64, Row>,
    next_key: i64,
    by_index: BTreeMap<u64, i64>,
    nodes: HashMap<NodeId, Hash>,
    checkpoints: Vec<StoredCheckpoint>,
}

/// The fake log. Clones share the same log.
#[derive(Debug, Clone, Default)]
pub struct MemoryAuditLog {
    state: Arc<Mutex<State>>,
    sequencing: Arc<AtomicBool>,
    /// When set, every call fails (to test that callers fail closed).
    pub unavailable: Arc<AtomicBool>,
}

impl MemoryAuditLog {
    pub fn new() -> Self {
        Self::default()
    }

    fn state(&self) -> Result<MutexGuard<'_, State>, AuditFailure> {
        if self.unavailable.load(Ordering::SeqCst) {
            return Err(AuditFailure("the fake log is unavailable".into()));
        }
        self.state
            .lock()
            .map_err(|_| AuditFailure("the fake log's lock is poisoned".into()))
    }

    /// Every entry's id, in append order (tests).
    pub fn ids(&self) -> Vec<String> {
        self.state()
            .map(|s| s.rows.values().map(|r| r.id.clone()).collect())
            .unwrap_or_default()
    }

    /// Rewrites a stored entry's bytes (tests of tamper detection).
    pub fn tamper_body(&self, index: u64, body: Vec<u8>) {
        if let Ok(mut state) = self.state()
            && let Some(key) = state.by_index.get(&index).copied()
            && let Some(row) = state.rows.get_mut(&key)
        {
            row.body = body;
        }
    }
}

impl MemoryAuditLog {
    /// [`AuditLog::append`] without awaiting (for other fakes that write entries under their
    /// own locks, as a SQL store does in its transaction).
    pub fn append_now(&self, entries: &[AuditEntry]) -> Result<(), AuditFailure> {
        let mut state = self.state()?;
        for entry in entries {
            if state.rows.values().any(|r| r.id == entry.id) {
                return Err(AuditFailure(format!("entry {} already exists", entry.id)));
            }
        }
        for entry in entries {
            let key = state.next_key;
            state.next_key += 1;
            state.rows.insert(
                key,
                Row {
                    id: entry.id.clone(),
                    body: entry.canonical_bytes(),
                    sequenced: None,
                },
            );
        }
        Ok(())
    }

    /// Every stored entry, sequenced or not, in append order (tests).
    pub fn entries(&self) -> Vec<AuditEntry> {
        self.state()
            .map(|s| {
                s.rows
                    .values()
                    .filter_map(|r| AuditEntry::from_canonical_bytes(&r.body).ok())
                    .collect()
            })
            .unwrap_or_default()
    }
}

#[async_trait]
impl AuditTrail for MemoryAuditLog {
    async fn append(&self, entries: &[AuditEntry]) -> Result<(), AuditFailure> {
        self.append_now(entries)
    }
}

#[async_trait]
impl AuditLog for MemoryAuditLog {
    async fn sequencer(&self) -> Result<Option<Box<dyn SequencerSession>>, AuditFailure> {
        drop(self.state()?);
        if self.sequencing.swap(true, Ordering::SeqCst) {
            return Ok(None);
        }
        Ok(Some(Box::new(MemorySession {
            log: self.clone(),
            assigned: Vec::new(),
            nodes: Vec::new(),
            checkpoint: None,
        })))
    }

    /// The fake cannot wait (it has no runtime to wait on): its sessions are never held
    /// across another task's await in tests, so a held one is a test's mistake.
    async fn sequencer_when_free(&self) -> Result<Box<dyn SequencerSession>, AuditFailure> {
        self.sequencer()
            .await?
            .ok_or_else(|| AuditFailure("another sequencer holds the fake log".into()))
    }

    async fn entry(&self, id: &str) -> Result<Option<StoredEntry>, AuditFailure> {
        Ok(self
            .state()?
            .rows
            .values()
            .find(|r| r.id == id)
            .map(|r| StoredEntry {
                id: r.id.clone(),
                body: r.body.clone(),
                index: r.sequenced.map(|(index, _, _)| index),
            }))
    }

    async fn find(&self, query: &EntryQuery) -> Result<Vec<FoundEntry>, AuditFailure> {
        let state = self.state()?;
        let mut found = Vec::new();
        for (index, key) in state.by_index.iter().rev() {
            if found.len() >= query.limit {
                break;
            }
            let position = i64::try_from(*index).unwrap_or(i64::MAX);
            if query.after.is_some_and(|after| position >= after) {
                continue;
            }
            let Some(row) = state.rows.get(key) else {
                continue;
            };
            let Ok(entry) = AuditEntry::from_canonical_bytes(&row.body) else {
                continue;
            };
            let matches = query
                .patient
                .as_ref()
                .is_none_or(|p| entry.patient.as_ref() == Some(p))
                && query.since.is_none_or(|since| entry.recorded >= since)
                && query.before.is_none_or(|before| entry.recorded < before)
                && (query.actions.is_empty() || query.actions.contains(&entry.action));
            if matches {
                found.push(FoundEntry {
                    position,
                    entry: StoredEntry {
                        id: row.id.clone(),
                        body: row.body.clone(),
                        index: row.sequenced.map(|(index, _, _)| index),
                    },
                });
            }
        }
        Ok(found)
    }

    async fn nodes(&self, ids: &[NodeId]) -> Result<HashMap<NodeId, Hash>, AuditFailure> {
        let state = self.state()?;
        Ok(ids
            .iter()
            .filter_map(|id| state.nodes.get(id).map(|h| (*id, *h)))
            .collect())
    }

    async fn latest_checkpoint(&self) -> Result<Option<StoredCheckpoint>, AuditFailure> {
        Ok(self.state()?.checkpoints.last().cloned())
    }

    async fn checkpoints(
        &self,
        from_size: u64,
        to_size: u64,
        limit: usize,
    ) -> Result<Vec<StoredCheckpoint>, AuditFailure> {
        Ok(self
            .state()?
            .checkpoints
            .iter()
            .filter(|c| (from_size..=to_size).contains(&c.checkpoint.size))
            .take(limit)
            .cloned()
            .collect())
    }

    async fn records(&self, from_index: u64, limit: usize) -> Result<Vec<LogRecord>, AuditFailure> {
        let state = self.state()?;
        Ok(state
            .by_index
            .range(from_index..)
            .take(limit)
            .filter_map(|(_, key)| {
                let row = state.rows.get(key)?;
                let (index, leaf_hash, chain_hash) = row.sequenced?;
                Some(LogRecord {
                    index,
                    id: row.id.clone(),
                    body: row.body.clone(),
                    leaf_hash,
                    chain_hash,
                    columns: None,
                })
            })
            .collect())
    }
}

struct MemorySession {
    log: MemoryAuditLog,
    assigned: Vec<Assigned>,
    nodes: Vec<Node>,
    checkpoint: Option<StoredCheckpoint>,
}

impl Drop for MemorySession {
    fn drop(&mut self) {
        self.log.sequencing.store(false, Ordering::SeqCst);
    }
}

#[async_trait]
impl SequencerSession for MemorySession {
    async fn head(&mut self) -> Result<Head, AuditFailure> {
        let state = self.log.state()?;
        let size = state.by_index.len() as u64;
        let frontier_nodes = Frontier::ids(size)
            .into_iter()
            .map(|id| state.nodes.get(&id).copied())
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| AuditFailure("a frontier node is missing".into()))?;
        let frontier = Frontier::from_nodes(size, frontier_nodes)
            .ok_or_else(|| AuditFailure("the frontier does not match the size".into()))?;
        let chain = match size.checked_sub(1) {
            None => CHAIN_START,
            Some(last) => state
                .by_index
                .get(&last)
                .and_then(|key| state.rows.get(key))
                .and_then(|row| row.sequenced)
                .map(|(_, _, chain)| chain)
                .ok_or_else(|| AuditFailure("the last entry is missing".into()))?,
        };
        Ok(Head { frontier, chain })
    }

    async fn pending(&mut self, limit: usize) -> Result<Vec<Pending>, AuditFailure> {
        Ok(self
            .log
            .state()?
            .rows
            .iter()
            .filter(|(_, row)| row.sequenced.is_none())
            .take(limit)
            .map(|(key, row)| Pending {
                key: *key,
                body: row.body.clone(),
            })
            .collect())
    }

    async fn store(&mut self, assigned: &[Assigned], nodes: &[Node]) -> Result<(), AuditFailure> {
        self.assigned.extend_from_slice(assigned);
        self.nodes.extend_from_slice(nodes);
        Ok(())
    }

    async fn latest_checkpoint(&mut self) -> Result<Option<StoredCheckpoint>, AuditFailure> {
        self.log.latest_checkpoint().await
    }

    async fn store_checkpoint(
        &mut self,
        checkpoint: &StoredCheckpoint,
    ) -> Result<(), AuditFailure> {
        self.checkpoint = Some(checkpoint.clone());
        Ok(())
    }

    async fn commit(mut self: Box<Self>) -> Result<(), AuditFailure> {
        let mut state = self.log.state()?;
        for a in self.assigned.drain(..) {
            if let Some(row) = state.rows.get_mut(&a.key) {
                row.sequenced = Some((a.index, a.leaf_hash, a.chain_hash));
            }
            state.by_index.insert(a.index, a.key);
        }
        for node in self.nodes.drain(..) {
            state.nodes.insert(node.id, node.hash);
        }
        if let Some(checkpoint) = self.checkpoint.take() {
            state.checkpoints.push(checkpoint);
        }
        Ok(())
    }
}
