//! The audit log in the running system: its identity (origin and signing key from the
//! keyring), the sequencer loop every `cairn serve` runs (one of them sequences at a time),
//! and `cairn audit verify | export`.

use std::io::{BufRead, Write};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use audit_chain::{
    AuditEntry, AuditFailure, AuditLog, CheckpointSigner, Ed25519Signer, Hash, LogRecord,
    LogVerifier, Sequencer, Tamper, Verified, VerifierKey,
};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::config::Config;

/// Entries read per query while verifying or exporting.
const PAGE: usize = 10_000;

/// The checkpoint signer: Ed25519 from the keyring's audit seed, named by the log's origin.
pub fn signer(
    config: &Config,
    master: &dyn phi_crypto::MasterKeys,
) -> anyhow::Result<Ed25519Signer> {
    Ed25519Signer::from_seed(
        &config.audit_origin(),
        master.keyring().audit_signing_seed(),
    )
    .map_err(|err| anyhow::anyhow!("the audit origin cannot name a signing key: {err}"))
}

/// Which log this is and how to check its signatures.
#[derive(Debug, Clone)]
pub struct LogIdentity {
    /// The checkpoints' origin line.
    pub origin: String,
    /// The checkpoint signing key's public half.
    pub key: VerifierKey,
}

/// The log's identity, as exports and `cairn audit key` publish it.
pub fn identity(config: &Config, signer: &Ed25519Signer) -> LogIdentity {
    LogIdentity {
        origin: config.audit_origin(),
        key: signer.verifier().clone(),
    }
}

/// Sequences the log every `every` until the task is aborted. Every instance runs this; the
/// log's sequencer lock lets one round run at a time, so instances share one log. A failed
/// round changes nothing and is retried; it is logged once per failure streak. Each round is
/// a task of its own, so that a round that panics (a bug) is a failed round, not the end of
/// sequencing with nothing said.
pub async fn keep_sequencing(sequencer: Sequencer, log: Arc<dyn AuditLog>, every: Duration) {
    let mut ticker = tokio::time::interval(every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failing = false;
    loop {
        ticker.tick().await;
        let (sequencer, log) = (sequencer.clone(), Arc::clone(&log));
        let round = tokio::spawn(async move {
            sequencer
                .run_once(log.as_ref(), OffsetDateTime::now_utc(), false)
                .await
        })
        .await
        .unwrap_or_else(|_| Err(AuditFailure("a sequencer round panicked".into())));
        match round {
            Ok(round) => {
                if failing {
                    tracing::info!("the audit sequencer recovered");
                }
                failing = false;
                if let Some(checkpoint) = round.checkpoint {
                    tracing::debug!(
                        size = checkpoint.size,
                        sequenced = round.sequenced,
                        "audit checkpoint signed"
                    );
                }
            }
            Err(err) if !failing => {
                failing = true;
                tracing::error!(error = %err, "the audit sequencer failed; retrying");
            }
            Err(_) => {}
        }
    }
}

/// One line of an export file.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "kind")]
enum ExportLine {
    /// First: which log, and the key its checkpoints verify with.
    Log {
        format: String,
        origin: String,
        vkey: String,
        exported_at: String,
    },
    /// Then every signed checkpoint note, oldest first.
    Checkpoint { note: String },
    /// Then every sequenced entry, in index order.
    Entry {
        index: u64,
        id: String,
        /// The canonical bytes, base64.
        body: String,
        leaf_hash: String,
        chain_hash: String,
    },
}

const EXPORT_FORMAT: &str = "cairn-audit-export/1";

/// Every signed checkpoint note, oldest first.
async fn all_notes(log: &dyn AuditLog) -> anyhow::Result<Vec<String>> {
    let mut notes = Vec::new();
    let mut from = 0;
    loop {
        let page = log
            .checkpoints(from, u64::MAX, PAGE)
            .await
            .map_err(|err| anyhow::anyhow!(err))?;
        let full = page.len() == PAGE;
        from = page.last().map_or(from, |c| c.checkpoint.size + 1);
        notes.extend(page.into_iter().map(|c| c.note));
        if !full {
            return Ok(notes);
        }
    }
}

/// Verifies the log in the database: every checkpoint signature, every entry's bytes against
/// its leaf and chain hashes, no index missing or repeated, each checkpoint's root against the
/// tree recomputed from all entries (which also proves consecutive checkpoints consistent),
/// and everything the server reads without checking a signature, derived again from the
/// signed bytes: each row's id, time, action and patient (what the audit searches and the
/// accounting of disclosures select by) and every tree node its proofs are built from.
pub async fn verify_database(
    log: &dyn AuditLog,
    key: &VerifierKey,
    origin: &str,
) -> anyhow::Result<Result<Verified, Tamper>> {
    let notes = all_notes(log).await?;
    let mut verifier = match LogVerifier::new(key, origin, &notes) {
        Ok(verifier) => verifier,
        Err(tamper) => return Ok(Err(tamper)),
    };
    let mut pages = RecordPages::new();
    while let Some(page) = pages.next(log).await? {
        for record in &page {
            if let Err(tamper) = verifier.push(record) {
                return Ok(Err(tamper));
            }
        }
        let completed = verifier.take_completed_nodes();
        let stored = log
            .nodes(&completed)
            .await
            .map_err(|err| anyhow::anyhow!(err))?;
        if let Err(tamper) = verifier.check_nodes(&stored) {
            return Ok(Err(tamper));
        }
    }
    Ok(verifier.finish())
}

/// Every sequenced entry in index order, a page of rows at a time.
#[derive(Debug)]
struct RecordPages {
    /// The index the next page starts at; `None` once the last page was read.
    next: Option<u64>,
}

impl RecordPages {
    fn new() -> Self {
        Self { next: Some(0) }
    }

    async fn next(&mut self, log: &dyn AuditLog) -> anyhow::Result<Option<Vec<LogRecord>>> {
        let Some(from) = self.next else {
            return Ok(None);
        };
        let page = log
            .records(from, PAGE)
            .await
            .map_err(|err| anyhow::anyhow!(err))?;
        self.next = match page.last() {
            Some(last) if page.len() == PAGE => Some(last.index + 1),
            _ => None,
        };
        Ok(Some(page))
    }
}

/// Writes the whole sequenced log (checkpoints, then entries) as JSON lines to `out`; returns
/// how many entries.
pub async fn export(
    log: &dyn AuditLog,
    identity: &LogIdentity,
    out: &mut dyn Write,
) -> anyhow::Result<u64> {
    let line = |out: &mut dyn Write, line: &ExportLine| -> anyhow::Result<()> {
        serde_json::to_writer(&mut *out, line)?;
        out.write_all(b"\n")?;
        Ok(())
    };
    line(
        out,
        &ExportLine::Log {
            format: EXPORT_FORMAT.to_owned(),
            origin: identity.origin.clone(),
            vkey: identity.key.to_vkey(),
            exported_at: records::instant(OffsetDateTime::now_utc()),
        },
    )?;
    for note in all_notes(log).await? {
        line(out, &ExportLine::Checkpoint { note })?;
    }
    let mut count = 0;
    let mut pages = RecordPages::new();
    while let Some(page) = pages.next(log).await? {
        for record in &page {
            count += 1;
            line(
                out,
                &ExportLine::Entry {
                    index: record.index,
                    id: record.id.clone(),
                    body: BASE64.encode(&record.body),
                    leaf_hash: record.leaf_hash.to_hex(),
                    chain_hash: record.chain_hash.to_hex(),
                },
            )?;
        }
    }
    out.flush()?;
    Ok(count)
}

/// What an export file says about itself.
#[derive(Debug, Clone)]
pub struct ExportHeader {
    pub origin: String,
    pub vkey: String,
}

/// Verifies an export file with no database. `key`: the log's verifier key as published (the
/// file's own key is used if none is given, and the caller should say so).
pub fn verify_file(
    path: &Path,
    key: Option<&VerifierKey>,
) -> anyhow::Result<(ExportHeader, Result<Verified, Tamper>)> {
    let file =
        std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut lines = std::io::BufReader::new(file).lines();
    let header = match lines.next() {
        Some(line) => serde_json::from_str::<ExportLine>(&line?)
            .context("the first line is not an export header")?,
        None => bail!("{} is empty", path.display()),
    };
    let ExportLine::Log {
        format,
        origin,
        vkey,
        ..
    } = header
    else {
        bail!("the first line is not an export header");
    };
    if format != EXPORT_FORMAT {
        bail!("unknown export format {format} (expected {EXPORT_FORMAT})");
    }
    let own_key = VerifierKey::parse(&vkey).context("the export's vkey is not valid")?;
    let key = key.unwrap_or(&own_key).clone();
    let header = ExportHeader { origin, vkey };
    let mut notes = Vec::new();
    let mut verifier: Option<LogVerifier> = None;
    for (number, line) in lines.enumerate() {
        let line = line?;
        let parsed: ExportLine = serde_json::from_str(&line)
            .with_context(|| format!("line {} is not an export line", number + 2))?;
        match parsed {
            ExportLine::Checkpoint { note } => {
                if verifier.is_some() {
                    bail!("line {}: a checkpoint after the entries", number + 2);
                }
                notes.push(note);
            }
            ExportLine::Entry {
                index,
                id,
                body,
                leaf_hash,
                chain_hash,
            } => {
                if verifier.is_none() {
                    match LogVerifier::new(&key, &header.origin, &notes) {
                        Ok(v) => verifier = Some(v),
                        Err(tamper) => return Ok((header, Err(tamper))),
                    }
                }
                let record = LogRecord {
                    index,
                    id,
                    body: BASE64
                        .decode(body)
                        .with_context(|| format!("line {}: body is not base64", number + 2))?,
                    leaf_hash: Hash::from_hex(&leaf_hash)
                        .with_context(|| format!("line {}: bad leaf hash", number + 2))?,
                    chain_hash: Hash::from_hex(&chain_hash)
                        .with_context(|| format!("line {}: bad chain hash", number + 2))?,
                    // An export holds the entries, not the columns a database searches by.
                    columns: None,
                };
                if let Some(verifier) = verifier.as_mut()
                    && let Err(tamper) = verifier.push(&record)
                {
                    return Ok((header, Err(tamper)));
                }
            }
            ExportLine::Log { .. } => bail!("line {}: a second header", number + 2),
        }
    }
    let verifier = match verifier {
        Some(verifier) => verifier,
        None => match LogVerifier::new(&key, &header.origin, &notes) {
            Ok(v) => v,
            Err(tamper) => return Ok((header, Err(tamper))),
        },
    };
    Ok((header, verifier.finish()))
}

/// Opens the store and the log's identity for the CLI.
pub async fn open(config: &Config) -> anyhow::Result<(store_sql::SqlStore, LogIdentity)> {
    let store = crate::store::open_store(config).await?;
    let master = crate::keys::server_master_keys(config, &store).await?;
    let signer = signer(config, master.as_ref())?;
    Ok((store, identity(config, &signer)))
}

/// Whether this is a benchmark build told to skip recording (`unaudited-benchmark` feature and
/// `CAIRN_UNAUDITED_BENCHMARK=1`). Always false in a normal build.
pub fn unaudited_benchmark() -> bool {
    cfg!(feature = "unaudited-benchmark")
        && std::env::var("CAIRN_UNAUDITED_BENCHMARK").is_ok_and(|v| v == "1")
}

/// A trail that drops what it is given: what `cargo xtask bench` compares recording against.
/// Writes still carry their entries in their own transactions.
#[derive(Debug)]
pub struct Unrecorded;

#[async_trait::async_trait]
impl audit_chain::AuditTrail for Unrecorded {
    async fn append(&self, _: &[AuditEntry]) -> Result<(), audit_chain::AuditFailure> {
        Ok(())
    }
}
