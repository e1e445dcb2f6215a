//! [`AuditLog`] on sea-orm: `audit_intake`, `audit_entry`, `audit_node`, `audit_checkpoint`.
//!
//! Recording is one row: a batch of entries (a group commit's, or a write's one) goes into
//! `audit_intake` as a JSON array of their exact canonical bytes, with nothing but its key
//! indexed, so a read waits for as little as possible to be written and flushed. The
//! sequencer takes intake rows oldest first and, in one transaction, inserts each entry's
//! `audit_entry` row (leaf index, id, bytes, the columns queries need, leaf and chain hash),
//! the tree nodes the new leaves complete, a signed checkpoint when one is due, and deletes
//! the intake rows. `audit_entry`, `audit_node` and `audit_checkpoint` are insert-only.
//!
//! One sequencer at a time: on PostgreSQL a transaction-scoped advisory lock (so several
//! `cairn serve` instances on one database produce one log), on SQLite an in-process lock
//! and an immediate (write-locked) transaction.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use audit_chain::{
    Assigned, AuditEntry, AuditFailure, AuditLog, AuditTrail, CHAIN_START, Checkpoint,
    EntryColumns, EntryQuery, FoundEntry, Frontier, Hash, Head, LogRecord, Node, NodeId, Pending,
    SequencerSession, StoredCheckpoint, StoredEntry,
};
use sea_orm::sea_query::{ArrayType, Cond, Expr, ExprTrait, InsertStatement, Order, Query};
use sea_orm::{
    ConnectionTrait, DatabaseTransaction, DbBackend, DbErr, QueryResult, SqliteTransactionMode,
    Statement, TransactionOptions, TransactionTrait,
};
use time::OffsetDateTime;
use tokio::sync::OwnedMutexGuard;

use crate::connect::{Backend, SqlStore};
use crate::tables::{AUDIT_CHECKPOINT, AUDIT_ENTRY, AUDIT_INTAKE, AUDIT_NODE, name};

mod sequencer;

/// How many batches leave PostgreSQL's intake between two `VACUUM audit_intake` runs.
///
/// Every sequenced batch is a dead tuple until vacuumed, and the intake's scan walks them: a
/// queue of 240,000 dead rows once read 900 pages a round. The cluster's autovacuum may be
/// off, and at its default thresholds it would let a minute of traffic pile up, so the
/// sequencer keeps its own queue small. Vacuuming a few thousand dead rows takes milliseconds
/// and blocks no insert or delete.
const VACUUM_INTAKE_EVERY: u64 = 5_000;

/// Intake rows read per statement by the sequencer (a batch holds up to
/// [`crate::GroupCommit::MAX_BATCH`] entries).
const INTAKE_PAGE: i64 = 256;

/// The advisory lock key of the sequencer ("cairnAUD" as a big-endian integer).
const SEQUENCER_LOCK: i64 = 0x6361_6972_6e41_5544;

/// The lowest level of the tree whose nodes are stored in `audit_node`.
///
/// Level 0 is the leaves, whose hashes `audit_entry` holds. A node of levels 1 to 3 covers at
/// most eight leaves, and a proof needs at most one of each level: it is computed from their
/// hashes, one small index range, when asked for. Storing them cost a row for almost every
/// entry sequenced (seven in eight of all nodes); from level 4 up it is one in eight entries.
/// (Logs sequenced before kept their rows of levels 1 to 3; they are no longer read.)
const FIRST_STORED_LEVEL: u8 = 4;

/// Rows per multi-row statement: well under both backends' bound-parameter limits (eight
/// columns per entry row).
const ROWS_PER_STATEMENT: usize = 1_000;

fn failure(err: impl std::fmt::Display) -> AuditFailure {
    // Database errors name tables and constraints, never entry content (entries are PHI-free
    // anyway).
    AuditFailure(err.to_string())
}

/// A time as `recorded_at` holds it on `backend`: the entry's canonical time, written as every
/// searchable instant is (fixed-width UTC text on SQLite, so text order is time order).
fn time_value(backend: DbBackend, at: OffsetDateTime) -> sea_orm::Value {
    let backend = match backend {
        DbBackend::Sqlite => Backend::Sqlite,
        _ => Backend::Postgres,
    };
    crate::instants::instant(backend, audit_chain::canonical_time(at))
}

/// The intake row of `entries`, recorded together, or `None` if there are none.
pub(crate) fn insert_entries(entries: &[AuditEntry]) -> Result<Option<InsertStatement>, DbErr> {
    if entries.is_empty() {
        return Ok(None);
    }
    let batch = batch_text(entries)?;
    let insert = Query::insert()
        .into_table(name(AUDIT_INTAKE))
        .columns([name("entries")])
        .values([batch.into()])
        .map_err(|e| DbErr::Custom(e.to_string()))?
        .to_owned();
    Ok(Some(insert))
}

/// `entries` as one intake batch: a JSON array of their canonical bytes, nothing between them
/// but commas (what [`batch_entries`] reads back, and the intake's guard compares).
fn batch_text(entries: &[AuditEntry]) -> Result<String, DbErr> {
    let mut batch = Vec::with_capacity(entries.len() * 512);
    batch.push(b'[');
    for (n, entry) in entries.iter().enumerate() {
        if n > 0 {
            batch.push(b',');
        }
        entry.write_canonical(&mut batch);
    }
    batch.push(b']');
    String::from_utf8(batch).map_err(|_| DbErr::Custom("an audit entry is not UTF-8".to_owned()))
}

/// An entry as recorded: its exact bytes, and what they say.
struct Recorded {
    body: Vec<u8>,
    entry: AuditEntry,
}

/// The entries of intake row `seq`, exactly as recorded. Anything but a JSON array of
/// canonical entries, written as [`insert_entries`] writes it (no space between them), is
/// refused, naming the row: only tampering can put one there, and the sequencer must stop at
/// it rather than leave entries out of the log. (The intake's guard compares the batch's text
/// with the placed entries' bytes, so a batch written any other way could not leave it.)
fn batch_entries(seq: i64, batch: &str) -> Result<Vec<Recorded>, AuditFailure> {
    let malformed = || AuditFailure(format!("audit intake row {seq} is not a batch of entries"));
    let raw: Vec<&serde_json::value::RawValue> =
        serde_json::from_str(batch).map_err(|_| malformed())?;
    if raw.is_empty() || !written_as_recorded(batch, &raw) {
        return Err(malformed());
    }
    raw.into_iter()
        .map(|raw| {
            let body = raw.get().as_bytes().to_vec();
            let entry = AuditEntry::from_canonical_bytes(&body).map_err(|_| malformed())?;
            Ok(Recorded { body, entry })
        })
        .collect()
}

/// Whether `batch`, which parsed as the JSON array `parts`, is exactly `[` + the parts joined by
/// `,` + `]`. Raw values exclude the whitespace around them, and an array cannot be written
/// in fewer bytes than its elements, brackets and commas: any space makes it longer.
fn written_as_recorded(batch: &str, parts: &[&serde_json::value::RawValue]) -> bool {
    let elements: usize = parts.iter().map(|part| part.get().len()).sum();
    batch.len() == elements + parts.len() + 1
}

fn hash_of(row: &QueryResult, column: &str) -> Result<Hash, AuditFailure> {
    let bytes: Vec<u8> = row.try_get("", column).map_err(failure)?;
    Hash::from_slice(&bytes).ok_or_else(|| AuditFailure(format!("{column} is not a SHA-256 hash")))
}

fn index_of(row: &QueryResult, column: &str) -> Result<u64, AuditFailure> {
    let index: i64 = row.try_get("", column).map_err(failure)?;
    u64::try_from(index).map_err(|_| AuditFailure(format!("{column} is negative")))
}

fn to_db(index: u64) -> i64 {
    i64::try_from(index).unwrap_or(i64::MAX)
}

fn checkpoint_of(row: &QueryResult) -> Result<StoredCheckpoint, AuditFailure> {
    let note: String = row.try_get("", "note").map_err(failure)?;
    let signed_at: OffsetDateTime = row.try_get("", "signed_at").map_err(failure)?;
    // The signed note is what counts: the size and root columns are for queries. A row whose
    // columns disagree with its note (or whose note does not parse) is returned as it is, so
    // the verifier can name it, rather than hiding it behind a read failure.
    let (size, root) = (index_of(row, "size")?, hash_of(row, "root")?);
    let body = note
        .split_once("\n\n")
        .map_or(note.as_str(), |(body, _)| body);
    let checkpoint = match Checkpoint::parse_body(body) {
        Ok(parsed) => {
            if parsed.size != size || parsed.root != root {
                tracing::warn!(
                    size,
                    "an audit checkpoint row disagrees with its signed note"
                );
            }
            parsed
        }
        Err(_) => {
            tracing::warn!(size, "an audit checkpoint's note does not parse");
            Checkpoint {
                origin: String::new(),
                size,
                root,
            }
        }
    };
    Ok(StoredCheckpoint {
        checkpoint,
        note,
        signed_at,
    })
}

fn checkpoints_select() -> sea_orm::sea_query::SelectStatement {
    Query::select()
        .columns(["size", "root", "note", "signed_at"].map(name))
        .from(name(AUDIT_CHECKPOINT))
        .to_owned()
}

async fn latest_checkpoint(
    db: &impl ConnectionTrait,
) -> Result<Option<StoredCheckpoint>, AuditFailure> {
    let select = checkpoints_select()
        .order_by(name("size"), Order::Desc)
        .limit(1)
        .to_owned();
    db.query_one(&select)
        .await
        .map_err(failure)?
        .as_ref()
        .map(checkpoint_of)
        .transpose()
}

async fn nodes(
    db: &impl ConnectionTrait,
    ids: &[NodeId],
) -> Result<HashMap<NodeId, Hash>, AuditFailure> {
    let mut found = HashMap::with_capacity(ids.len());
    // Level 0 is the leaves, whose hashes are in `audit_entry`; the levels below
    // FIRST_STORED_LEVEL are computed from them.
    let (computed, stored): (Vec<NodeId>, Vec<NodeId>) =
        ids.iter().partition(|id| id.level < FIRST_STORED_LEVEL);
    let mut leaf_indexes: Vec<u64> = computed.iter().flat_map(|id| id.leaves()).collect();
    leaf_indexes.sort_unstable();
    leaf_indexes.dedup();
    let mut leaves = HashMap::with_capacity(leaf_indexes.len());
    for chunk in leaf_indexes.chunks(ROWS_PER_STATEMENT) {
        let select = Query::select()
            .columns(["leaf_index", "leaf_hash"].map(name))
            .from(name(AUDIT_ENTRY))
            .and_where(Expr::col(name("leaf_index")).is_in(chunk.iter().map(|&i| to_db(i))))
            .to_owned();
        for row in db.query_all(&select).await.map_err(failure)? {
            leaves.insert(index_of(&row, "leaf_index")?, hash_of(&row, "leaf_hash")?);
        }
    }
    for id in computed {
        let hashes: Option<Vec<Hash>> = id
            .leaves()
            .map(|index| leaves.get(&index).copied())
            .collect();
        if let Some(hashes) = hashes {
            found.insert(id, audit_chain::merkle::root_of(&hashes));
        }
    }
    for chunk in stored.chunks(ROWS_PER_STATEMENT / 2) {
        let mut any = Cond::any();
        for id in chunk {
            any = any.add(
                Expr::col(name("level"))
                    .eq(i16::from(id.level))
                    .and(Expr::col(name("idx")).eq(to_db(id.index))),
            );
        }
        let select = Query::select()
            .columns(["level", "idx", "hash"].map(name))
            .from(name(AUDIT_NODE))
            .cond_where(any)
            .to_owned();
        for row in db.query_all(&select).await.map_err(failure)? {
            let level: i16 = row.try_get("", "level").map_err(failure)?;
            let level = u8::try_from(level).map_err(failure)?;
            found.insert(
                NodeId::new(level, index_of(&row, "idx")?),
                hash_of(&row, "hash")?,
            );
        }
    }
    Ok(found)
}

/// A sequenced entry's row as [`StoredEntry`] (`leaf_index`, `id`, `body`).
fn sequenced_entry(row: &QueryResult) -> Result<StoredEntry, AuditFailure> {
    Ok(StoredEntry {
        id: row.try_get("", "id").map_err(failure)?,
        body: row.try_get("", "body").map_err(failure)?,
        index: Some(index_of(row, "leaf_index")?),
    })
}

impl SqlStore {
    /// An entry still in the intake (recorded, not yet sequenced). The intake holds about a
    /// sequencer interval's worth of batches, scanned for the entry's opening bytes.
    async fn intake_entry(&self, id: &str) -> Result<Option<StoredEntry>, AuditFailure> {
        let backend = self.db.get_database_backend();
        let sql = match backend {
            DbBackend::Postgres => {
                "SELECT seq, entries FROM audit_intake WHERE strpos(entries, $1) > 0"
            }
            _ => "SELECT seq, entries FROM audit_intake WHERE instr(entries, ?) > 0",
        };
        // Every canonical entry opens with its id.
        let opening = format!("{{\"id\":{}", serde_json::Value::from(id));
        let rows = self
            .db
            .query_all_raw(Statement::from_sql_and_values(
                backend,
                sql,
                [opening.into()],
            ))
            .await
            .map_err(failure)?;
        for row in rows {
            let seq: i64 = row.try_get("", "seq").map_err(failure)?;
            let batch: String = row.try_get("", "entries").map_err(failure)?;
            if let Some(found) = batch_entries(seq, &batch)?
                .into_iter()
                .find(|recorded| recorded.entry.id == id)
            {
                return Ok(Some(StoredEntry {
                    id: found.entry.id,
                    body: found.body,
                    index: None,
                }));
            }
        }
        Ok(None)
    }
}

#[async_trait]
impl AuditTrail for SqlStore {
    async fn append(&self, entries: &[AuditEntry]) -> Result<(), AuditFailure> {
        if let Some(insert) = insert_entries(entries).map_err(failure)? {
            // One row: the entries are committed together or not at all.
            self.db.execute(&insert).await.map_err(failure)?;
        }
        Ok(())
    }
}

#[async_trait]
impl AuditLog for SqlStore {
    async fn sequencer(&self) -> Result<Option<Box<dyn SequencerSession>>, AuditFailure> {
        match self.backend() {
            Backend::Postgres => {
                let txn = self.db.begin().await.map_err(failure)?;
                let row = txn
                    .query_one_raw(Statement::from_sql_and_values(
                        DbBackend::Postgres,
                        "SELECT pg_try_advisory_xact_lock($1) AS locked",
                        [SEQUENCER_LOCK.into()],
                    ))
                    .await
                    .map_err(failure)?;
                let locked: bool = row
                    .as_ref()
                    .map(|r| r.try_get("", "locked"))
                    .transpose()
                    .map_err(failure)?
                    .unwrap_or(false);
                if !locked {
                    // Rolls back on drop; nothing was done.
                    return Ok(None);
                }
                Ok(Some(self.postgres_session(txn)))
            }
            Backend::Sqlite => match Arc::clone(&self.sequencing).try_lock_owned() {
                Ok(lock) => self.sqlite_session(lock).await.map(Some),
                Err(_) => Ok(None),
            },
        }
    }

    async fn sequencer_when_free(&self) -> Result<Box<dyn SequencerSession>, AuditFailure> {
        match self.backend() {
            Backend::Postgres => {
                let txn = self.db.begin().await.map_err(failure)?;
                txn.execute_raw(Statement::from_sql_and_values(
                    DbBackend::Postgres,
                    "SELECT pg_advisory_xact_lock($1)",
                    [SEQUENCER_LOCK.into()],
                ))
                .await
                .map_err(failure)?;
                Ok(self.postgres_session(txn))
            }
            Backend::Sqlite => {
                let lock = Arc::clone(&self.sequencing).lock_owned().await;
                self.sqlite_session(lock).await
            }
        }
    }

    async fn entry(&self, id: &str) -> Result<Option<StoredEntry>, AuditFailure> {
        let select = Query::select()
            .columns(["leaf_index", "id", "body"].map(name))
            .from(name(AUDIT_ENTRY))
            .and_where(Expr::col(name("id")).eq(id))
            .to_owned();
        match self.db.query_one(&select).await.map_err(failure)? {
            Some(row) => sequenced_entry(&row).map(Some),
            None => self.intake_entry(id).await,
        }
    }

    async fn find(&self, query: &EntryQuery) -> Result<Vec<FoundEntry>, AuditFailure> {
        let backend = self.db.get_database_backend();
        let mut select = Query::select();
        select
            .columns(["leaf_index", "id", "body"].map(name))
            .from(name(AUDIT_ENTRY))
            .order_by(name("leaf_index"), Order::Desc)
            .limit(u64::try_from(query.limit).unwrap_or(u64::MAX));
        if let Some(patient) = &query.patient {
            select.and_where(Expr::col(name("patient")).eq(patient.as_str()));
        }
        if let Some(since) = query.since {
            select.and_where(Expr::col(name("recorded_at")).gte(time_value(backend, since)));
        }
        if let Some(before) = query.before {
            select.and_where(Expr::col(name("recorded_at")).lt(time_value(backend, before)));
        }
        if !query.actions.is_empty() {
            select.and_where(
                Expr::col(name("action")).is_in(query.actions.iter().map(|a| a.as_str())),
            );
        }
        if let Some(after) = query.after {
            select.and_where(Expr::col(name("leaf_index")).lt(after));
        }
        let rows = self.db.query_all(&select).await.map_err(failure)?;
        rows.iter()
            .map(|row| {
                let entry = sequenced_entry(row)?;
                Ok(FoundEntry {
                    position: entry.index.map_or(i64::MAX, to_db),
                    entry,
                })
            })
            .collect()
    }

    async fn nodes(&self, ids: &[NodeId]) -> Result<HashMap<NodeId, Hash>, AuditFailure> {
        nodes(&self.db, ids).await
    }

    async fn latest_checkpoint(&self) -> Result<Option<StoredCheckpoint>, AuditFailure> {
        latest_checkpoint(&self.db).await
    }

    async fn checkpoints(
        &self,
        from_size: u64,
        to_size: u64,
        limit: usize,
    ) -> Result<Vec<StoredCheckpoint>, AuditFailure> {
        let select = checkpoints_select()
            .and_where(Expr::col(name("size")).gte(to_db(from_size)))
            .and_where(Expr::col(name("size")).lte(to_db(to_size)))
            .order_by(name("size"), Order::Asc)
            .limit(u64::try_from(limit).unwrap_or(u64::MAX))
            .to_owned();
        let rows = self.db.query_all(&select).await.map_err(failure)?;
        rows.iter().map(checkpoint_of).collect()
    }

    async fn records(&self, from_index: u64, limit: usize) -> Result<Vec<LogRecord>, AuditFailure> {
        let select = Query::select()
            .columns(
                [
                    "leaf_index",
                    "leaf_hash",
                    "chain_hash",
                    "id",
                    "body",
                    "recorded_at",
                    "action",
                    "patient",
                ]
                .map(name),
            )
            .from(name(AUDIT_ENTRY))
            .and_where(Expr::col(name("leaf_index")).gte(to_db(from_index)))
            .order_by(name("leaf_index"), Order::Asc)
            .limit(u64::try_from(limit).unwrap_or(u64::MAX))
            .to_owned();
        let rows = self.db.query_all(&select).await.map_err(failure)?;
        rows.iter()
            .map(|row| {
                Ok(LogRecord {
                    index: index_of(row, "leaf_index")?,
                    id: row.try_get("", "id").map_err(failure)?,
                    body: row.try_get("", "body").map_err(failure)?,
                    leaf_hash: hash_of(row, "leaf_hash")?,
                    chain_hash: hash_of(row, "chain_hash")?,
                    columns: Some(EntryColumns {
                        recorded_at: recorded_at_of(row, self.backend()),
                        action: row.try_get("", "action").map_err(failure)?,
                        patient: row.try_get("", "patient").map_err(failure)?,
                    }),
                })
            })
            .collect()
    }
}

/// A row's `recorded_at` as the instant it stands for; `None` if it is not one (a verifier
/// then reports the row).
fn recorded_at_of(row: &QueryResult, backend: Backend) -> Option<time::OffsetDateTime> {
    match backend {
        Backend::Postgres => row.try_get("", "recorded_at").ok(),
        // Fixed-width UTC text (`instants::sqlite_text`), an RFC 3339 instant.
        Backend::Sqlite => {
            let text: String = row.try_get("", "recorded_at").ok()?;
            time::OffsetDateTime::parse(&text, &time::format_description::well_known::Rfc3339).ok()
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use audit_chain::{Action, Outcome};
    use time::macros::datetime;

    use super::*;

    fn entry(n: u32) -> String {
        let mut entry = AuditEntry::new(
            format!("entry-{n}"),
            datetime!(2026-11-29 22:00:00.123456 UTC),
            Action::Read,
            Outcome::Success,
        );
        entry.patient = Some(format!("Patient/p{n}"));
        String::from_utf8(entry.canonical_bytes()).unwrap()
    }

    #[test]
    fn a_batch_is_read_back_only_as_the_recorder_wrote_it() {
        let (a, b) = (entry(1), entry(2));
        let batch = batch_text(&[
            AuditEntry::from_canonical_bytes(a.as_bytes()).unwrap(),
            AuditEntry::from_canonical_bytes(b.as_bytes()).unwrap(),
        ])
        .unwrap();
        assert_eq!(batch, format!("[{a},{b}]"));
        assert!(insert_entries(&[]).unwrap().is_none());
        let read = batch_entries(7, &batch).unwrap();
        assert_eq!(read.len(), 2);
        assert_eq!(read[0].body, a.as_bytes());
        assert_eq!(read[1].entry.id, "entry-2");

        // The same entries spelled any other way, or anything else: refused, naming the row.
        for other in [
            format!("[{a}, {b}]"),
            format!(" [{a},{b}]"),
            format!("[{a},{b}]\n"),
            format!("[\n{a},{b}]"),
            format!("[{a},{b} ]"),
            "[]".to_owned(),
            "[1]".to_owned(),
            format!("[{}]", a.replacen(',', ", ", 1)),
            format!("{{\"entries\":[{a}]}}"),
        ] {
            let refused = batch_entries(7, &other).err();
            assert_eq!(
                refused.map(|e| e.0),
                Some("audit intake row 7 is not a batch of entries".to_owned()),
                "{other}"
            );
        }
    }
}
