//! The sequencer: gives unsequenced entries their leaf index, extends the hash chain and the
//! tree, and signs a checkpoint when the log grew and the last one is old enough. One round is
//! one exclusive session of the [`AuditLog`]; a round that fails changes nothing.

use std::collections::HashMap;
use std::sync::Arc;

use time::{Duration, OffsetDateTime};

use crate::hash::{chain_hash, leaf_hash};
use crate::merkle::ProofPlan;
use crate::note::{Checkpoint, CheckpointSigner, VerifierKey, sign_checkpoint};
use crate::ports::{Assigned, AuditFailure, AuditLog, SequencerSession, StoredCheckpoint};
use crate::receipt::Receipt;

/// What one round did.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Round {
    /// Entries given an index.
    pub sequenced: usize,
    /// The checkpoint signed, if one was.
    pub checkpoint: Option<Checkpoint>,
    /// Another sequencer held the log.
    pub skipped: bool,
}

/// Full rounds [`Sequencer::catch_up`] runs before it gives up.
const MAX_CATCH_UP_ROUNDS: usize = 10;

/// Sequences and checkpoints the log named `origin`.
#[derive(Clone)]
pub struct Sequencer {
    origin: String,
    signer: Arc<dyn CheckpointSigner>,
    /// Entries per round, at most.
    pub batch: usize,
    /// A new checkpoint no sooner than this after the last one (unless forced).
    pub checkpoint_interval: Duration,
}

impl std::fmt::Debug for Sequencer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sequencer")
            .field("origin", &self.origin)
            .field("key", self.signer.verifier())
            .finish_non_exhaustive()
    }
}

impl Sequencer {
    pub fn new(origin: impl Into<String>, signer: Arc<dyn CheckpointSigner>) -> Self {
        Self {
            origin: origin.into(),
            signer,
            batch: 10_000,
            checkpoint_interval: Duration::seconds(1),
        }
    }

    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// The key that verifies this sequencer's checkpoints.
    pub fn verifier(&self) -> &VerifierKey {
        self.signer.verifier()
    }

    /// One round at `now`, unless another sequencer holds the log (then `skipped`).
    /// `force_checkpoint` signs even if the last checkpoint is recent (shutdown, tests),
    /// provided the log grew.
    pub async fn run_once(
        &self,
        log: &dyn AuditLog,
        now: OffsetDateTime,
        force_checkpoint: bool,
    ) -> Result<Round, AuditFailure> {
        match log.sequencer().await? {
            Some(session) => self.round(session, now, force_checkpoint).await,
            None => Ok(Round {
                skipped: true,
                ..Round::default()
            }),
        }
    }

    /// Sequences every entry recorded before the call, waiting for another sequencer's round
    /// if one is running, so that what [`AuditLog::find`] answers next is complete. Gives up
    /// after `MAX_CATCH_UP_ROUNDS` full rounds: a log that far behind has a sequencer that
    /// keeps failing, and a reader must not wait for it indefinitely.
    pub async fn catch_up(
        &self,
        log: &dyn AuditLog,
        now: OffsetDateTime,
    ) -> Result<(), AuditFailure> {
        self.rounds_until_empty(log, now, false).await.map(|_| ())
    }

    /// Sequences everything recorded so far and signs a checkpoint over it: what an instance
    /// does as it stops, so that its last entries are not left unsigned. Waits for another
    /// sequencer's round rather than skipping (a round of this instance's periodic task may
    /// still be running), and gives up after `MAX_CATCH_UP_ROUNDS` full rounds.
    pub async fn drain(
        &self,
        log: &dyn AuditLog,
        now: OffsetDateTime,
    ) -> Result<u64, AuditFailure> {
        self.rounds_until_empty(log, now, true).await
    }

    /// Runs rounds, each waiting for the lock, until one leaves the intake empty; how many
    /// entries they sequenced. Gives up after `MAX_CATCH_UP_ROUNDS` full rounds.
    async fn rounds_until_empty(
        &self,
        log: &dyn AuditLog,
        now: OffsetDateTime,
        force_checkpoint: bool,
    ) -> Result<u64, AuditFailure> {
        let mut sequenced = 0;
        for _ in 0..MAX_CATCH_UP_ROUNDS {
            let session = log.sequencer_when_free().await?;
            let round = self.round(session, now, force_checkpoint).await?;
            sequenced += round.sequenced as u64;
            if round.sequenced < self.batch {
                return Ok(sequenced);
            }
        }
        Err(AuditFailure(format!(
            "the audit log is more than {} entries behind",
            MAX_CATCH_UP_ROUNDS * self.batch
        )))
    }

    async fn round(
        &self,
        mut session: Box<dyn SequencerSession>,
        now: OffsetDateTime,
        force_checkpoint: bool,
    ) -> Result<Round, AuditFailure> {
        let mut head = session.head().await?;
        let pending = session.pending(self.batch).await?;
        let mut assigned = Vec::with_capacity(pending.len());
        let mut nodes = Vec::with_capacity(pending.len() * 2);
        for entry in &pending {
            let leaf = leaf_hash(&entry.body);
            let index = head.frontier.size();
            head.chain = chain_hash(&head.chain, &leaf);
            head.frontier.push(leaf, |node| nodes.push(node));
            assigned.push(Assigned {
                key: entry.key,
                index,
                leaf_hash: leaf,
                chain_hash: head.chain,
            });
        }
        if !assigned.is_empty() {
            session.store(&assigned, &nodes).await?;
        }
        let last = session.latest_checkpoint().await?;
        let signed_size = last.as_ref().map_or(0, |c| c.checkpoint.size);
        let due = last
            .as_ref()
            .is_none_or(|c| force_checkpoint || now - c.signed_at >= self.checkpoint_interval);
        let mut checkpoint = None;
        if head.frontier.size() > signed_size && due {
            let body = Checkpoint {
                origin: self.origin.clone(),
                size: head.frontier.size(),
                root: head.frontier.root(),
            };
            let note = sign_checkpoint(&body, self.signer.as_ref())
                .map_err(|e| AuditFailure(e.to_string()))?;
            session
                .store_checkpoint(&StoredCheckpoint {
                    checkpoint: body.clone(),
                    note,
                    signed_at: now,
                })
                .await?;
            checkpoint = Some(body);
        }
        session.commit().await?;
        Ok(Round {
            sequenced: assigned.len(),
            checkpoint,
            skipped: false,
        })
    }
}

/// Why no receipt could be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReceiptUnavailable {
    #[error("no such audit entry")]
    Unknown,
    #[error("the entry is not yet in a signed checkpoint (one is signed every second)")]
    NotYetSigned,
    #[error(transparent)]
    Failure(#[from] AuditFailure),
}

/// The `tlog-proof` of entry `id` against the latest checkpoint.
pub async fn receipt(log: &dyn AuditLog, id: &str) -> Result<Receipt, ReceiptUnavailable> {
    let entry = log.entry(id).await?.ok_or(ReceiptUnavailable::Unknown)?;
    let index = entry.index.ok_or(ReceiptUnavailable::NotYetSigned)?;
    let latest = log
        .latest_checkpoint()
        .await?
        .filter(|c| c.checkpoint.size > index)
        .ok_or(ReceiptUnavailable::NotYetSigned)?;
    let plan = ProofPlan::inclusion(index, latest.checkpoint.size)
        .ok_or(ReceiptUnavailable::NotYetSigned)?;
    let path = fetch(log, &plan).await?;
    Ok(Receipt {
        index,
        path,
        checkpoint: latest.note,
    })
}

/// The consistency proof between two sizes of the log.
pub async fn consistency_proof(
    log: &dyn AuditLog,
    old: u64,
    new: u64,
) -> Result<Vec<crate::Hash>, AuditFailure> {
    let plan = ProofPlan::consistency(old, new)
        .ok_or_else(|| AuditFailure(format!("size {old} is larger than {new}")))?;
    fetch(log, &plan).await
}

async fn fetch(log: &dyn AuditLog, plan: &ProofPlan) -> Result<Vec<crate::Hash>, AuditFailure> {
    let nodes: HashMap<_, _> = log.nodes(&plan.nodes()).await?;
    plan.assemble(|id| nodes.get(&id).copied())
        .ok_or_else(|| AuditFailure("a tree node the proof needs is missing".into()))
}
