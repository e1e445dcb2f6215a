//! [`AuditLog`] on sea-orm: `audit_entry`, `audit_node`, `audit_checkpoint`.
//!
//! Every table is insert-only: an entry is inserted once (a trigger queues it on
//! `audit_pending`), and sequencing inserts its `audit_leaf` row and takes it off the queue.
//! No row is ever updated, so the log leaves no dead row versions behind.
//!
//! One sequencer at a time: on PostgreSQL a transaction-scoped advisory lock (so several
//! `cairn serve` instances on one database produce one log), on SQLite an in-process flag and
//! an immediate (write-locked) transaction.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use async_trait::async_trait;
use audit_chain::{
    Assigned, AuditEntry, AuditFailure, AuditLog, AuditTrail, CHAIN_START, Checkpoint, EntryQuery,
    FoundEntry, Frontier, Hash, Head, LogRecord, Node, NodeId, Pending, SequencerSession,
    StoredCheckpoint, StoredEntry,
};
use sea_orm::sea_query::{Cond, Expr, ExprTrait, InsertStatement, Order, Query};
use sea_orm::{
    ConnectionTrait, DatabaseTransaction, DbBackend, DbErr, QueryResult, SqliteTransactionMode,
    Statement, TransactionOptions, TransactionTrait,
};
use time::OffsetDateTime;

use crate::connect::{Backend, SqlStore};
use crate::tables::{
    AUDIT_CHECKPOINT, AUDIT_ENTRY, AUDIT_LEAF, AUDIT_NODE, AUDIT_PENDING, col, name,
};

/// The sequencer's work: the oldest queued entries (see `pending`). Each body is fetched by
/// key in a scalar subquery: joined, PostgreSQL merge-joins the queue with the entries'
/// primary key from the log's first entry, reading the whole log every round (measured:
/// 163 ms a round at 340,000 entries, a core's worth of work at 5 rounds a second).
const PENDING_SQL: &str = "SELECT p.seq, \
     (SELECT e.body FROM audit_entry AS e WHERE e.seq = p.seq) AS body \
     FROM (SELECT seq FROM audit_pending ORDER BY seq LIMIT ?) AS p ORDER BY p.seq";

/// Sequenced entries from a leaf index on (see `records`): the page of leaves, then each
/// entry by key (on PostgreSQL a lateral lookup, for the same reason as `PENDING_SQL`;
/// SQLite always joins by nested lookups, and has no LATERAL).
const RECORDS_SQL_POSTGRES: &str = "SELECT l.leaf_index, l.leaf_hash, l.chain_hash, e.id, e.body \
     FROM (SELECT leaf_index, seq, leaf_hash, chain_hash FROM audit_leaf \
           WHERE leaf_index >= $1 ORDER BY leaf_index LIMIT $2) AS l \
     CROSS JOIN LATERAL (SELECT id, body FROM audit_entry WHERE seq = l.seq) AS e \
     ORDER BY l.leaf_index";
const RECORDS_SQL_SQLITE: &str = "SELECT l.leaf_index, l.leaf_hash, l.chain_hash, e.id, e.body \
     FROM (SELECT leaf_index, seq, leaf_hash, chain_hash FROM audit_leaf \
           WHERE leaf_index >= ? ORDER BY leaf_index LIMIT ?) AS l \
     JOIN audit_entry AS e ON e.seq = l.seq ORDER BY l.leaf_index";

/// How many entries leave PostgreSQL's queue between two `VACUUM audit_pending` runs.
///
/// Every dequeued row is a dead tuple until vacuumed, and the queue's scan walks them all: at
/// 240,000 dead rows it read 900 pages a round. The cluster's autovacuum may be off, and at
/// its default thresholds it would let a minute of traffic pile up, so the sequencer keeps
/// its own queue small. Vacuuming a few thousand dead rows takes milliseconds and blocks no
/// insert or delete.
const VACUUM_QUEUE_EVERY: u64 = 20_000;

/// The advisory lock key of the sequencer ("cairnAUD" as a big-endian integer).
const SEQUENCER_LOCK: i64 = 0x6361_6972_6e41_5544;

/// Rows per multi-row statement: well under both backends' bound-parameter limits.
const ROWS_PER_STATEMENT: usize = 1_000;

fn failure(err: impl std::fmt::Display) -> AuditFailure {
    // Database errors name tables and constraints, never entry content (entries are PHI-free
    // anyway).
    AuditFailure(err.to_string())
}

/// The insert of `entries` as unsequenced rows, or `None` if there are none.
pub(crate) fn insert_entries(entries: &[AuditEntry]) -> Result<Option<InsertStatement>, DbErr> {
    if entries.is_empty() {
        return Ok(None);
    }
    let mut insert = Query::insert();
    insert
        .into_table(name(AUDIT_ENTRY))
        .columns(["id", "body", "recorded_at", "action", "patient"].map(name));
    for entry in entries {
        insert
            .values([
                entry.id.as_str().into(),
                entry.canonical_bytes().into(),
                audit_chain::canonical_time(entry.recorded).into(),
                entry.action.as_str().into(),
                entry.patient.clone().into(),
            ])
            .map_err(|e| DbErr::Custom(e.to_string()))?;
    }
    Ok(Some(insert.to_owned()))
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
    // Level 0 is the leaves: their hashes are in `audit_leaf`, not stored twice.
    let (leaves, inner): (Vec<NodeId>, Vec<NodeId>) = ids.iter().partition(|id| id.level == 0);
    for chunk in leaves.chunks(ROWS_PER_STATEMENT) {
        let select = Query::select()
            .columns(["leaf_index", "leaf_hash"].map(name))
            .from(name(AUDIT_LEAF))
            .and_where(Expr::col(name("leaf_index")).is_in(chunk.iter().map(|id| to_db(id.index))))
            .to_owned();
        for row in db.query_all(&select).await.map_err(failure)? {
            found.insert(
                NodeId::new(0, index_of(&row, "leaf_index")?),
                hash_of(&row, "leaf_hash")?,
            );
        }
    }
    for chunk in inner.chunks(ROWS_PER_STATEMENT / 2) {
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

/// Entries with their leaf index if sequenced: `seq`, `id`, `body`, `leaf_index`.
fn with_leaf(
    mut select: sea_orm::sea_query::SelectStatement,
) -> sea_orm::sea_query::SelectStatement {
    select
        .columns(["seq", "id", "body"].map(|c| (name(AUDIT_ENTRY), name(c))))
        .column((name(AUDIT_LEAF), name("leaf_index")))
        .from(name(AUDIT_ENTRY))
        .left_join(
            name(AUDIT_LEAF),
            col(AUDIT_LEAF, "seq").equals((name(AUDIT_ENTRY), name("seq"))),
        );
    select
}

#[async_trait]
impl AuditTrail for SqlStore {
    async fn append(&self, entries: &[AuditEntry]) -> Result<(), AuditFailure> {
        if let Some(insert) = insert_entries(entries).map_err(failure)? {
            // One statement: the entries are committed together or not at all.
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
                Ok(Some(Box::new(SqlSequencer {
                    txn,
                    _flag: None,
                    queue: Some(QueueUpkeep {
                        db: self.db.clone(),
                        dequeued: Arc::clone(&self.dequeued),
                        this_round: 0,
                    }),
                })))
            }
            Backend::Sqlite => {
                let Some(flag) = SequencerFlag::take(&self.sequencing) else {
                    return Ok(None);
                };
                // Immediate: the write lock is taken now, so the head read below cannot be
                // overtaken by another writer's commit before the session writes.
                let txn = self
                    .db
                    .begin_with_options(TransactionOptions {
                        sqlite_transaction_mode: Some(SqliteTransactionMode::Immediate),
                        ..TransactionOptions::default()
                    })
                    .await
                    .map_err(failure)?;
                Ok(Some(Box::new(SqlSequencer {
                    txn,
                    _flag: Some(flag),
                    // SQLite frees a deleted row's space at once: nothing to vacuum.
                    queue: None,
                })))
            }
        }
    }

    async fn entry(&self, id: &str) -> Result<Option<StoredEntry>, AuditFailure> {
        let select = with_leaf(Query::select())
            .and_where(col(AUDIT_ENTRY, "id").eq(id))
            .to_owned();
        let Some(row) = self.db.query_one(&select).await.map_err(failure)? else {
            return Ok(None);
        };
        let index: Option<i64> = row.try_get("", "leaf_index").map_err(failure)?;
        Ok(Some(StoredEntry {
            id: row.try_get("", "id").map_err(failure)?,
            body: row.try_get("", "body").map_err(failure)?,
            index: index.map(u64::try_from).transpose().map_err(failure)?,
        }))
    }

    async fn find(&self, query: &EntryQuery) -> Result<Vec<FoundEntry>, AuditFailure> {
        let mut select = with_leaf(Query::select());
        select
            .order_by((name(AUDIT_ENTRY), name("seq")), Order::Desc)
            .limit(u64::try_from(query.limit).unwrap_or(u64::MAX));
        if let Some(patient) = &query.patient {
            select.and_where(col(AUDIT_ENTRY, "patient").eq(patient.as_str()));
        }
        if let Some(since) = query.since {
            select.and_where(col(AUDIT_ENTRY, "recorded_at").gte(since));
        }
        if let Some(before) = query.before {
            select.and_where(col(AUDIT_ENTRY, "recorded_at").lt(before));
        }
        if !query.actions.is_empty() {
            select.and_where(
                col(AUDIT_ENTRY, "action").is_in(query.actions.iter().map(|a| a.as_str())),
            );
        }
        if let Some(after) = query.after {
            select.and_where(col(AUDIT_ENTRY, "seq").lt(after));
        }
        let rows = self.db.query_all(&select).await.map_err(failure)?;
        rows.iter()
            .map(|row| {
                let index: Option<i64> = row.try_get("", "leaf_index").map_err(failure)?;
                Ok(FoundEntry {
                    position: row.try_get("", "seq").map_err(failure)?,
                    entry: StoredEntry {
                        id: row.try_get("", "id").map_err(failure)?,
                        body: row.try_get("", "body").map_err(failure)?,
                        index: index.map(u64::try_from).transpose().map_err(failure)?,
                    },
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
        let backend = self.db.get_database_backend();
        let sql = match backend {
            DbBackend::Postgres => RECORDS_SQL_POSTGRES,
            _ => RECORDS_SQL_SQLITE,
        };
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = self
            .db
            .query_all_raw(Statement::from_sql_and_values(
                backend,
                sql,
                [to_db(from_index).into(), limit.into()],
            ))
            .await
            .map_err(failure)?;
        rows.iter()
            .map(|row| {
                Ok(LogRecord {
                    index: index_of(row, "leaf_index")?,
                    id: row.try_get("", "id").map_err(failure)?,
                    body: row.try_get("", "body").map_err(failure)?,
                    leaf_hash: hash_of(row, "leaf_hash")?,
                    chain_hash: hash_of(row, "chain_hash")?,
                })
            })
            .collect()
    }
}

/// SQLite's in-process sequencer lock, released when the session ends however it ends.
struct SequencerFlag(Arc<AtomicBool>);

impl SequencerFlag {
    fn take(flag: &Arc<AtomicBool>) -> Option<Self> {
        (!flag.swap(true, Ordering::AcqRel)).then(|| Self(Arc::clone(flag)))
    }
}

impl Drop for SequencerFlag {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

/// One sequencer round: a transaction holding the sequencer lock. Dropped without commit, it
/// rolls back.
struct SqlSequencer {
    txn: DatabaseTransaction,
    _flag: Option<SequencerFlag>,
    queue: Option<QueueUpkeep>,
}

/// Keeping PostgreSQL's queue free of dead rows (see [`VACUUM_QUEUE_EVERY`]).
struct QueueUpkeep {
    db: sea_orm::DatabaseConnection,
    /// Dequeued since the last vacuum, by every round of this store.
    dequeued: Arc<AtomicU64>,
    /// Dequeued by this round (counted once it commits).
    this_round: u64,
}

impl QueueUpkeep {
    /// After a round commits: vacuums the queue if enough rows left it since the last time.
    async fn after_commit(self) {
        let total = self.dequeued.fetch_add(self.this_round, Ordering::AcqRel) + self.this_round;
        if total < VACUUM_QUEUE_EVERY {
            return;
        }
        self.dequeued.store(0, Ordering::Release);
        // VACUUM cannot run in a transaction: it runs on its own pooled connection. A failure
        // (another vacuum holding the table, a role that does not own it) costs only speed.
        // TRUNCATE false: giving the emptied pages back to the file system would take an
        // exclusive lock, stalling every append meanwhile; the free pages are reused instead.
        if let Err(err) = self
            .db
            .execute_unprepared("VACUUM (TRUNCATE false) audit_pending")
            .await
        {
            tracing::warn!(error = %err, "could not vacuum the audit queue");
        }
    }
}

#[async_trait]
impl SequencerSession for SqlSequencer {
    async fn head(&mut self) -> Result<Head, AuditFailure> {
        let last = Query::select()
            .columns(["leaf_index", "chain_hash"].map(name))
            .from(name(AUDIT_LEAF))
            .order_by(name("leaf_index"), Order::Desc)
            .limit(1)
            .to_owned();
        let (size, chain) = match self.txn.query_one(&last).await.map_err(failure)? {
            None => (0, CHAIN_START),
            Some(row) => (
                index_of(&row, "leaf_index")? + 1,
                hash_of(&row, "chain_hash")?,
            ),
        };
        let ids = Frontier::ids(size);
        let found = nodes(&self.txn, &ids).await?;
        let hashes = ids
            .iter()
            .map(|id| found.get(id).copied())
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| AuditFailure("a frontier node of the tree is missing".into()))?;
        let frontier = Frontier::from_nodes(size, hashes)
            .ok_or_else(|| AuditFailure("the stored frontier does not fit the log size".into()))?;
        Ok(Head { frontier, chain })
    }

    async fn pending(&mut self, limit: usize) -> Result<Vec<Pending>, AuditFailure> {
        // The queue's first rows first, then their entries by key: joined whole, PostgreSQL
        // may merge-join the queue with the entries' primary key from its start, reading the
        // whole log every round.
        let backend = self.txn.get_database_backend();
        let sql = match backend {
            DbBackend::Postgres => PENDING_SQL.replace('?', "$1"),
            _ => PENDING_SQL.to_owned(),
        };
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = self
            .txn
            .query_all_raw(Statement::from_sql_and_values(backend, sql, [limit.into()]))
            .await
            .map_err(failure)?;
        rows.iter()
            .map(|row| {
                Ok(Pending {
                    key: row.try_get("", "seq").map_err(failure)?,
                    body: row.try_get("", "body").map_err(failure)?,
                })
            })
            .collect()
    }

    async fn store(&mut self, assigned: &[Assigned], nodes: &[Node]) -> Result<(), AuditFailure> {
        // Multi-row statements: a round trip per thousand entries.
        for chunk in assigned.chunks(ROWS_PER_STATEMENT) {
            let mut insert = Query::insert();
            insert
                .into_table(name(AUDIT_LEAF))
                .columns(["leaf_index", "seq", "leaf_hash", "chain_hash"].map(name));
            for a in chunk {
                insert
                    .values([
                        to_db(a.index).into(),
                        a.key.into(),
                        a.leaf_hash.0.to_vec().into(),
                        a.chain_hash.0.to_vec().into(),
                    ])
                    .map_err(failure)?;
            }
            self.txn.execute(&insert).await.map_err(failure)?;
            let dequeue = Query::delete()
                .from_table(name(AUDIT_PENDING))
                .and_where(Expr::col(name("seq")).is_in(chunk.iter().map(|a| a.key)))
                .to_owned();
            let result = self.txn.execute(&dequeue).await.map_err(failure)?;
            if result.rows_affected() != chunk.len() as u64 {
                return Err(AuditFailure(
                    "an entry to sequence left the queue meanwhile".into(),
                ));
            }
            if let Some(queue) = &mut self.queue {
                queue.this_round += result.rows_affected();
            }
        }
        // Leaves (level 0) are in `audit_leaf` already.
        let inner: Vec<&Node> = nodes.iter().filter(|node| node.id.level > 0).collect();
        for chunk in inner.chunks(ROWS_PER_STATEMENT) {
            let mut insert = Query::insert();
            insert
                .into_table(name(AUDIT_NODE))
                .columns(["level", "idx", "hash"].map(name));
            for node in chunk {
                insert
                    .values([
                        i16::from(node.id.level).into(),
                        to_db(node.id.index).into(),
                        node.hash.0.to_vec().into(),
                    ])
                    .map_err(failure)?;
            }
            self.txn.execute(&insert).await.map_err(failure)?;
        }
        Ok(())
    }

    async fn latest_checkpoint(&mut self) -> Result<Option<StoredCheckpoint>, AuditFailure> {
        latest_checkpoint(&self.txn).await
    }

    async fn store_checkpoint(
        &mut self,
        checkpoint: &StoredCheckpoint,
    ) -> Result<(), AuditFailure> {
        let insert = Query::insert()
            .into_table(name(AUDIT_CHECKPOINT))
            .columns(["size", "root", "note", "signed_at"].map(name))
            .values([
                to_db(checkpoint.checkpoint.size).into(),
                checkpoint.checkpoint.root.0.to_vec().into(),
                checkpoint.note.as_str().into(),
                checkpoint.signed_at.into(),
            ])
            .map_err(failure)?
            .to_owned();
        self.txn.execute(&insert).await.map_err(failure)?;
        Ok(())
    }

    async fn commit(self: Box<Self>) -> Result<(), AuditFailure> {
        let SqlSequencer {
            txn,
            _flag: flag,
            queue,
        } = *self;
        txn.commit().await.map_err(failure)?;
        // The lock is released with the commit; SQLite's flag with this session.
        drop(flag);
        if let Some(queue) = queue {
            queue.after_commit().await;
        }
        Ok(())
    }
}
