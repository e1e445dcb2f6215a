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
use serde_json::{Value, json};
use store_sql::GroupCommit;

use crate::config::Config;
use sources::{Entry, Unreadable};

/// The base `fullUrl`s and request urls are relative to in an import.
const BASE: &str = "urn:cairn:import";

/// What to do with a resource that cannot be stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OnError {
    /// Stop at the first: its chunk is not stored, the chunks before it are.
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
    let mut import = Import {
        records,
        options,
        summary: ImportSummary::default(),
        progress: progress::Progress::new(total),
        started: Instant::now(),
    };
    let outcome = import.files(&files).await;
    import.summary.elapsed = import.started.elapsed();
    import.progress.finish(&import.summary);
    // Sign what was recorded, so the imported resources' audit entries are covered by a
    // checkpoint even if no server runs.
    let signer = crate::audit_log::signer(config, master.as_ref())?;
    Sequencer::new(config.audit_origin(), Arc::new(signer))
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
                    self.commit(&mut chunk).await?;
                }
            }
            if chunk.len() >= self.options.chunk {
                self.commit(&mut chunk).await?;
            }
        }
        self.commit(&mut chunk).await
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

    /// Stores `chunk` in one transaction (emptying it). A failing entry is reported and, when
    /// skipping, left out of another attempt.
    async fn commit(&mut self, chunk: &mut Vec<Entry>) -> anyhow::Result<()> {
        while !chunk.is_empty() {
            let entries: Vec<&Value> = chunk.iter().map(|e| &e.entry).collect();
            let bundle = json!({"resourceType": "Bundle", "type": "transaction", "entry": entries});
            let bytes = serde_json::to_vec(&bundle)?;
            let failure = match read_bundle(&bytes, BASE, usize::MAX) {
                Err(BundleRequestError::Invalid { issues }) => {
                    let (index, why) = first_entry_issue(&issues);
                    Some((index, why))
                }
                Err(other) => anyhow::bail!("an import chunk was refused: {other}"),
                Ok(request) => match self.records.import(&request, BASE).await {
                    Ok(outcomes) => {
                        self.count(&outcomes);
                        chunk.clear();
                        None
                    }
                    Err(RecordsError::InEntry { index, error }) => {
                        Some((Some(index), describe(&error)))
                    }
                    Err(other) => {
                        return Err(anyhow::Error::new(other).context("the import stopped"));
                    }
                },
            };
            if let Some((index, why)) = failure {
                let index = index.filter(|i| *i < chunk.len()).unwrap_or(0);
                let entry = chunk.remove(index);
                self.failed(&Unreadable {
                    source: entry.source,
                    why,
                })?;
            }
        }
        Ok(())
    }

    fn count(&mut self, outcomes: &[EntryOutcome]) {
        for outcome in outcomes {
            match outcome {
                EntryOutcome::Unchanged(_) | EntryOutcome::Existing(_) => {
                    self.summary.unchanged += 1
                }
                _ => self.summary.stored += 1,
            }
        }
        self.progress.advance(outcomes.len() as u64, &self.summary);
    }
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
