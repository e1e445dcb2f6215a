//! `cairn import`: loads NDJSON and Bundle files through the same use case as a transaction
//! Bundle (validation, sealing under each patient's key, index rows, an audit entry per
//! resource), in chunks of one database transaction each.
//!
//! Every resource is stored under a stable id (see `sources`) and a chunk's resources that equal
//! what is stored write nothing, so an interrupted import (even by `kill -9`) is finished by
//! running the same command again: the chunks that committed are found unchanged, the one that
//! was cut off was rolled back by the database, and the rest load.

mod progress;
mod sources;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use audit_chain::{AuditTrail, Sequencer};
use fhir_model::bundle_request::{BundleRequestError, read_bundle};
use records::{Actor, EntryOutcome, RandomIds, Records, RecordsError, SystemClock};
use store_sql::GroupCommit;
use tokio::task::JoinSet;

use crate::config::Config;
use sources::{Entry, Unreadable};

/// The base `fullUrl`s and request urls are relative to in an import.
const BASE: &str = "urn:cairn:import";

/// What to do with a resource that cannot be stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OnError {
    /// Stop at the first: its chunk is not stored, the chunks before it are (and the few
    /// already in flight with it finish; running the command again after a fix completes the
    /// import either way).
    Stop,
    /// Report it and go on: its chunk is stored without it.
    Skip,
}

/// What to import, and how.
#[derive(Debug, Clone)]
pub struct ImportOptions {
    pub paths: Vec<PathBuf>,
    pub on_error: OnError,
    /// Resources per database transaction (a Bundle file is never split).
    pub chunk: usize,
    /// Chunks in flight at once: while one commits (the database writing and syncing), the
    /// next is validated and sealed.
    pub jobs: usize,
}

/// What an import did.
#[derive(Debug, Clone, Default)]
pub struct ImportSummary {
    /// Resources created or given a new version.
    pub stored: u64,
    /// Resources that were already stored as they are.
    pub unchanged: u64,
    /// Resources not stored: `file:line` (or `file#entry[n]`) and why.
    pub errors: Vec<String>,
    pub elapsed: Duration,
}

impl ImportSummary {
    pub fn resources_per_second(&self) -> f64 {
        (self.stored + self.unchanged) as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// Runs an import; an error stops it (after `--on-error stop`, the failure is the last of
/// `summary.errors` and the result is an error naming it).
pub async fn run(config: &Config, options: &ImportOptions) -> anyhow::Result<ImportSummary> {
    let files = sources::files(&options.paths)?;
    let mut total = 0;
    for file in &files {
        total += sources::count(file)?;
    }
    let store = crate::store::open_store(config).await?;
    let master = crate::keys::server_master_keys(config, &store).await?;
    let audit_store = crate::store::open_audit_store(config).await?;
    let audit: Arc<dyn AuditTrail> = Arc::new(GroupCommit::start(Arc::new(audit_store.clone()), 1));
    let vault = phi_crypto::Vault::new(Arc::new(store.clone()), Arc::clone(&master));
    let records = Records::new(
        Arc::new(store.clone()),
        vault,
        Arc::new(SystemClock),
        Arc::new(RandomIds),
        audit,
    )
    .acting_for(Actor::system("import"));
    records
        .ensure_index_current()
        .await
        .context("cannot bring the search index up to date")?;
    // Sequence as the import goes, as a server does, so that little is left for the end.
    let signer = crate::audit_log::signer(config, master.as_ref())?;
    let sequencer = Sequencer::new(config.audit_origin(), Arc::new(signer));
    let sequencing = tokio::spawn(crate::audit_log::keep_sequencing(
        sequencer.clone(),
        Arc::new(audit_store.clone()),
        Duration::from_millis(config.audit_sequence_ms),
    ));
    let mut import = Import {
        records,
        options,
        summary: ImportSummary::default(),
        progress: progress::Progress::new(total),
        started: Instant::now(),
        running: JoinSet::new(),
    };
    let outcome = import.files(&files).await;
    // On an error, let the chunks in flight finish (they are whole transactions either way).
    while import.collect().await.is_some() {}
    import.summary.elapsed = import.started.elapsed();
    import.progress.finish(&import.summary);
    // Sign what was recorded, so the imported resources' audit entries are covered by a
    // checkpoint even if no server runs. (A round of the periodic task still running finishes
    // on its own: the drain waits for it.)
    sequencing.abort();
    sequencer
        .drain(&audit_store, time::OffsetDateTime::now_utc())
        .await
        .context("cannot sequence the audit log")?;
    audit_store.close().await;
    store.close().await;
    outcome.map(|()| import.summary)
}

struct Import<'a> {
    records: Records,
    options: &'a ImportOptions,
    summary: ImportSummary,
    progress: progress::Progress,
    started: Instant,
    /// The chunks being stored, at most `options.jobs`.
    running: JoinSet<Stored>,
}

/// What storing one chunk did.
struct Stored {
    outcomes: Vec<EntryOutcome>,
    /// The entries left out (`--on-error skip`), or the one that stopped the chunk.
    failures: Vec<Unreadable>,
    /// An error that is not an entry's (the database is unreachable, say).
    fatal: Option<anyhow::Error>,
}

impl Import<'_> {
    async fn files(&mut self, files: &[PathBuf]) -> anyhow::Result<()> {
        let mut chunk: Vec<Entry> = Vec::new();
        for file in files {
            let whole = sources::is_bundle(file);
            for item in sources::read(file)? {
                match item? {
                    Ok(entry) => chunk.push(entry),
                    Err(unreadable) => self.failed(&unreadable)?,
                }
                if !whole && chunk.len() >= self.options.chunk {
                    self.submit(std::mem::take(&mut chunk)).await?;
                }
            }
            if chunk.len() >= self.options.chunk {
                self.submit(std::mem::take(&mut chunk)).await?;
            }
        }
        if !chunk.is_empty() {
            self.submit(chunk).await?;
        }
        while let Some(done) = self.collect().await {
            done?;
        }
        Ok(())
    }

    /// Starts storing `chunk`, after waiting for a job to be free.
    async fn submit(&mut self, chunk: Vec<Entry>) -> anyhow::Result<()> {
        while self.running.len() >= self.options.jobs.max(1) {
            if let Some(done) = self.collect().await {
                done?;
            }
        }
        self.running
            .spawn(store(self.records.clone(), chunk, self.options.on_error));
        Ok(())
    }

    /// Waits for the next chunk to be stored and counts what it did; `None` when none runs.
    async fn collect(&mut self) -> Option<anyhow::Result<()>> {
        let joined = self.running.join_next().await?;
        Some(match joined {
            Err(panicked) => Err(anyhow::anyhow!("an import job failed: {panicked}")),
            Ok(stored) => self.count(stored),
        })
    }

    /// Records a resource that cannot be stored; an error under `--on-error stop`.
    fn failed(&mut self, unreadable: &Unreadable) -> anyhow::Result<()> {
        let report = format!("{}: {}", unreadable.source, unreadable.why);
        self.progress.error(&report);
        self.summary.errors.push(report.clone());
        match self.options.on_error {
            OnError::Stop => Err(anyhow::anyhow!("{report}")),
            OnError::Skip => Ok(()),
        }
    }

    fn count(&mut self, stored: Stored) -> anyhow::Result<()> {
        for outcome in &stored.outcomes {
            match outcome {
                EntryOutcome::Unchanged(_) | EntryOutcome::Existing(_) => {
                    self.summary.unchanged += 1
                }
                _ => self.summary.stored += 1,
            }
        }
        self.progress
            .advance(stored.outcomes.len() as u64, &self.summary);
        for failure in &stored.failures {
            self.failed(failure)?;
        }
        match stored.fatal {
            Some(fatal) => Err(fatal),
            None => Ok(()),
        }
    }
}

/// Stores `chunk` in one transaction. A failing entry is left out of another attempt when
/// skipping; when stopping, nothing of the chunk is stored.
async fn store(records: Records, mut chunk: Vec<Entry>, on_error: OnError) -> Stored {
    let mut stored = Stored {
        outcomes: Vec::new(),
        failures: Vec::new(),
        fatal: None,
    };
    while !chunk.is_empty() {
        let bytes = chunk_bundle(&chunk);
        let (index, why) = match read_bundle(&bytes, BASE, usize::MAX) {
            Err(BundleRequestError::Invalid { issues }) => first_entry_issue(&issues),
            Err(other) => {
                stored.fatal = Some(anyhow::anyhow!("an import chunk was refused: {other}"));
                return stored;
            }
            Ok(request) => match records.import(&request, BASE).await {
                Ok(outcomes) => {
                    stored.outcomes = outcomes;
                    return stored;
                }
                Err(RecordsError::InEntry { index, error }) => (Some(index), describe(&error)),
                Err(other) => {
                    stored.fatal = Some(anyhow::Error::new(other).context("the import stopped"));
                    return stored;
                }
            },
        };
        let index = index.filter(|i| *i < chunk.len()).unwrap_or(0);
        let entry = chunk.remove(index);
        stored.failures.push(Unreadable {
            source: entry.source,
            why,
        });
        if on_error == OnError::Stop {
            return stored;
        }
    }
    stored
}

/// A transaction Bundle of `chunk`'s entries, as JSON text.
fn chunk_bundle(chunk: &[Entry]) -> Vec<u8> {
    const HEAD: &str = r#"{"resourceType":"Bundle","type":"transaction","entry":["#;
    let size = chunk.iter().map(|e| e.entry.len() + 1).sum::<usize>();
    let mut bytes = Vec::with_capacity(HEAD.len() + size + 2);
    bytes.extend_from_slice(HEAD.as_bytes());
    for (n, entry) in chunk.iter().enumerate() {
        if n > 0 {
            bytes.push(b',');
        }
        bytes.extend_from_slice(entry.entry.as_bytes());
    }
    bytes.extend_from_slice(b"]}");
    bytes
}

/// Which entry the first issue is about (`Bundle.entry[3]…`), and the issue in words.
fn first_entry_issue(issues: &[fhir_model::Issue]) -> (Option<usize>, String) {
    let Some(issue) = issues.first() else {
        return (None, "the chunk is not a valid Bundle".to_owned());
    };
    let location = issue.location.as_deref().unwrap_or_default();
    let index = location
        .strip_prefix("Bundle.entry[")
        .and_then(|rest| rest.split(']').next())
        .and_then(|n| n.parse().ok());
    (index, issue_text(issue))
}

/// An entry's error in words: each validation issue with its location in the resource.
fn describe(error: &RecordsError) -> String {
    match error {
        RecordsError::Invalid { issues } | RecordsError::PatchedInvalid { issues } => issues
            .iter()
            .filter(|i| i.is_error())
            .map(issue_text)
            .collect::<Vec<_>>()
            .join("; "),
        other => other.to_string(),
    }
}

/// `Patient.birthDate: …`, located in the resource rather than in the import's chunk.
fn issue_text(issue: &fhir_model::Issue) -> String {
    match issue.location.as_deref() {
        Some(location) => {
            let inside = location
                .split_once("].resource")
                .map_or(location, |(_, rest)| rest.trim_start_matches('.'));
            format!(
                "{}: {}",
                if inside.is_empty() {
                    "resource"
                } else {
                    inside
                },
                issue.diagnostics
            )
        }
        None => issue.diagnostics.clone(),
    }
}
