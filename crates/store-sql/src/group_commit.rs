//! Group commit for the audit log: the entries of concurrent requests share one INSERT and one
//! commit, so recording every read before it is answered does not cap throughput at one
//! commit (one fsync on SQLite) per request.
//!
//! A few writer tasks take turns at the queue: each takes whatever has queued, up to
//! [`GroupCommit::MAX_BATCH`] entries, and commits it as one statement while the next writer
//! collects the following batch. Under load the batches grow, at rest each entry commits alone
//! at once, and no request waits behind a commit other than its own. Every caller waits for
//! its own batch's commit and sees its failure.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use audit_chain::{
    AuditEntry, AuditFailure, AuditLog, EntryQuery, FoundEntry, Hash, LogRecord, NodeId,
    SequencerSession, StoredCheckpoint, StoredEntry,
};
use tokio::sync::{Mutex, mpsc, oneshot};

struct Job {
    entries: Vec<AuditEntry>,
    done: oneshot::Sender<Result<(), AuditFailure>>,
}

/// An [`AuditLog`] whose appends are batched; everything else goes straight to the log.
#[derive(Clone)]
pub struct GroupCommit {
    log: Arc<dyn AuditLog>,
    jobs: mpsc::Sender<Job>,
}

impl std::fmt::Debug for GroupCommit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("GroupCommit")
    }
}

impl GroupCommit {
    /// Entries per commit, at most.
    pub const MAX_BATCH: usize = 1_000;

    /// Starts `writers` writer tasks on the current tokio runtime (give `log` a connection for
    /// each). They end when the last clone of the returned value is dropped, after committing
    /// what was queued.
    pub fn start(log: Arc<dyn AuditLog>, writers: usize) -> Self {
        let (jobs, queue) = mpsc::channel(4 * Self::MAX_BATCH);
        let queue = Arc::new(Mutex::new(queue));
        for _ in 0..writers.max(1) {
            tokio::spawn(write_batches(Arc::clone(&log), Arc::clone(&queue)));
        }
        Self { log, jobs }
    }
}

/// How many times a writer under load lets the other tasks run before committing what it has:
/// requests being answered meanwhile join the batch instead of each paying for a commit.
const GATHERING_TURNS: u32 = 3;

/// The next batch: the first job to arrive and whatever else queues, up to the limit. When the
/// last batch had company (`busy`), the writer gives the runtime a few turns to gather more;
/// alone, an entry commits at once.
async fn next_batch(queue: &Mutex<mpsc::Receiver<Job>>, busy: bool) -> Option<Vec<Job>> {
    let mut queue = queue.lock().await;
    let first = queue.recv().await?;
    let mut size = first.entries.len();
    let mut batch = vec![first];
    let mut turns = if busy { GATHERING_TURNS } else { 0 };
    while size < GroupCommit::MAX_BATCH {
        match queue.try_recv() {
            Ok(job) => {
                size += job.entries.len();
                batch.push(job);
            }
            Err(_) if turns > 0 => {
                turns -= 1;
                tokio::task::yield_now().await;
            }
            Err(_) => break,
        }
    }
    Some(batch)
}

async fn write_batches(log: Arc<dyn AuditLog>, queue: Arc<Mutex<mpsc::Receiver<Job>>>) {
    // The queue's lock is released before committing, so the next writer collects meanwhile.
    let mut busy = false;
    while let Some(mut batch) = next_batch(&queue, busy).await {
        busy = batch.len() > 1;
        let entries: Vec<AuditEntry> = batch
            .iter_mut()
            .flat_map(|job| std::mem::take(&mut job.entries))
            .collect();
        let result = log.append(&entries).await;
        if let Err(err) = &result {
            tracing::error!(error = %err, entries = entries.len(), "audit group commit failed");
        }
        for job in batch {
            // A caller that gave up (its request was cancelled) no longer listens.
            let _ = job.done.send(result.clone());
        }
    }
}

#[async_trait]
impl AuditLog for GroupCommit {
    async fn append(&self, entries: &[AuditEntry]) -> Result<(), AuditFailure> {
        if entries.is_empty() {
            return Ok(());
        }
        let (done, committed) = oneshot::channel();
        let job = Job {
            entries: entries.to_vec(),
            done,
        };
        self.jobs
            .send(job)
            .await
            .map_err(|_| AuditFailure("the audit writer has stopped".into()))?;
        committed
            .await
            .map_err(|_| AuditFailure("the audit writer has stopped".into()))?
    }

    async fn sequencer(&self) -> Result<Option<Box<dyn SequencerSession>>, AuditFailure> {
        self.log.sequencer().await
    }

    async fn entry(&self, id: &str) -> Result<Option<StoredEntry>, AuditFailure> {
        self.log.entry(id).await
    }

    async fn find(&self, query: &EntryQuery) -> Result<Vec<FoundEntry>, AuditFailure> {
        self.log.find(query).await
    }

    async fn nodes(&self, ids: &[NodeId]) -> Result<HashMap<NodeId, Hash>, AuditFailure> {
        self.log.nodes(ids).await
    }

    async fn latest_checkpoint(&self) -> Result<Option<StoredCheckpoint>, AuditFailure> {
        self.log.latest_checkpoint().await
    }

    async fn checkpoints(
        &self,
        from_size: u64,
        to_size: u64,
        limit: usize,
    ) -> Result<Vec<StoredCheckpoint>, AuditFailure> {
        self.log.checkpoints(from_size, to_size, limit).await
    }

    async fn records(&self, from_index: u64, limit: usize) -> Result<Vec<LogRecord>, AuditFailure> {
        self.log.records(from_index, limit).await
    }
}
