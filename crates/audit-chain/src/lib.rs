//! Cairn's tamper-evident audit log, in the style of Certificate Transparency.
//!
//! - [`AuditEntry`]: who did what to which record, when and why, with PHI never in it; its
//!   [`AuditEntry::canonical_bytes`] are the log's leaves.
//! - [`merkle`]: the RFC 6962 tree (leaf `SHA-256(0x00‖entry)`, node `SHA-256(0x01‖l‖r)`),
//!   inclusion and consistency proofs and their RFC 9162 verification; a parallel hash chain
//!   ([`chain_hash`]) is checked independently.
//! - [`note`]: checkpoints (`origin\nsize\nbase64 root\n`) as C2SP signed notes, Ed25519
//!   signatures and `vkey` verifier keys; [`Receipt`]: per-entry `tlog-proof`s.
//! - [`LogVerifier`]: checks a whole log offline and names the first bad entry or checkpoint.
//! - Ports [`AuditLog`] (storage, with the sequencer's exclusive session) and
//!   [`CheckpointSigner`]; [`Sequencer`] assigns indexes and signs checkpoints through them.
//!
//! No IO, no async runtime, no global state: an auditor's tool can verify Cairn's log with
//! this crate, the exported log and the log's public key alone.

mod entry;
pub mod fakes;
mod hash;
pub mod merkle;
pub mod note;
mod ports;
mod receipt;
mod sequencer;
mod verify;

pub use entry::{Action, AuditEntry, BlindParam, EntryError, Outcome, canonical_time};
pub use hash::{CHAIN_START, Hash, chain_hash, leaf_hash, node_hash};
pub use merkle::{
    Frontier, MemoryTree, Node, NodeId, ProofPlan, verify_consistency, verify_inclusion,
};
pub use note::{
    Checkpoint, CheckpointSigner, Ed25519Signer, NoteError, VerifierKey, sign_checkpoint,
};
pub use ports::{
    Assigned, AuditFailure, AuditLog, AuditTrail, EntryQuery, FoundEntry, Head, Pending,
    SequencerSession, StoredCheckpoint, StoredEntry,
};
pub use receipt::{Receipt, ReceiptError};
pub use sequencer::{ReceiptUnavailable, Round, Sequencer, consistency_proof, receipt};
pub use verify::{EntryColumns, LogRecord, LogVerifier, Tamper, Verified, verify_log};

#[cfg(test)]
mod tests;
