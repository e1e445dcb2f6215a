//! The sequencer's session on SQL: one transaction holding the sequencer lock, in which a
//! round reads the intake, places its entries and tree nodes, and removes the batches it placed.

use super::*;

impl SqlStore {
    /// A round in `txn`, which holds the advisory lock.
    pub(super) fn postgres_session(&self, txn: DatabaseTransaction) -> Box<dyn SequencerSession> {
        Box::new(SqlSequencer {
            txn,
            _lock: None,
            upkeep: Some(IntakeUpkeep {
                db: self.db.clone(),
                dequeued: Arc::clone(&self.dequeued),
                this_round: 0,
            }),
            taken: Vec::new(),
        })
    }

    /// A round holding SQLite's in-process `lock` and the database's write lock.
    pub(super) async fn sqlite_session(
        &self,
        lock: OwnedMutexGuard<()>,
    ) -> Result<Box<dyn SequencerSession>, AuditFailure> {
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
        Ok(Box::new(SqlSequencer {
            txn,
            _lock: Some(lock),
            // SQLite frees a deleted row's space at once: nothing to vacuum.
            upkeep: None,
            taken: Vec::new(),
        }))
    }
}

/// One sequencer round: a transaction holding the sequencer lock. Dropped without commit, it
/// rolls back.
struct SqlSequencer {
    txn: DatabaseTransaction,
    /// SQLite's in-process lock, released when the session ends however it ends.
    _lock: Option<OwnedMutexGuard<()>>,
    upkeep: Option<IntakeUpkeep>,
    /// The intake rows handed out by `pending`, in order, with their entries.
    taken: Vec<(i64, Vec<Recorded>)>,
}

/// Keeping PostgreSQL's intake free of dead rows (see [`VACUUM_INTAKE_EVERY`]).
struct IntakeUpkeep {
    db: sea_orm::DatabaseConnection,
    /// Batches dequeued since the last vacuum, by every round of this store.
    dequeued: Arc<AtomicU64>,
    /// Batches dequeued by this round (counted once it commits).
    this_round: u64,
}

impl IntakeUpkeep {
    /// After a round commits: vacuums the intake if enough rows left it since the last time.
    async fn after_commit(self) {
        let total = self.dequeued.fetch_add(self.this_round, Ordering::AcqRel) + self.this_round;
        if total < VACUUM_INTAKE_EVERY {
            return;
        }
        self.dequeued.store(0, Ordering::Release);
        // VACUUM cannot run in a transaction: it runs on its own pooled connection. A failure
        // (another vacuum holding the table, a role that does not own it) costs only speed.
        // TRUNCATE false: giving the emptied pages back to the file system would take an
        // exclusive lock, stalling every append meanwhile; the free pages are reused instead.
        if let Err(err) = self
            .db
            .execute_unprepared("VACUUM (TRUNCATE false) audit_intake")
            .await
        {
            tracing::warn!(error = %err, "could not vacuum the audit intake");
        }
    }
}

impl SqlSequencer {
    /// The entries handed out this round, in order.
    fn taken_entries(&self) -> impl Iterator<Item = &Recorded> {
        self.taken.iter().flat_map(|(_, entries)| entries)
    }
}

/// An entry placed in the log, with its bytes.
type Placed<'a> = (&'a Assigned, &'a Recorded);

/// The entry columns, in the order both insert paths write them.
const ENTRY_COLUMNS: [&str; 8] = [
    "leaf_index",
    "id",
    "body",
    "recorded_at",
    "action",
    "patient",
    "leaf_hash",
    "chain_hash",
];

/// On PostgreSQL, a round is three statements whatever its size: each takes its rows as
/// arrays, so the statement is prepared once and reused (a multi-row VALUES of a different
/// length every round was parsed and planned every time, and its thousands of parameters
/// built one by one: measured, 12–25 µs of an entry's 25–38 µs of storing). sea-query binds
/// no NULL inside an array: an entry without a patient is sent as '', which no patient
/// reference is.
const POSTGRES_INSERT_ENTRIES: &str = "INSERT INTO audit_entry \
     (leaf_index, id, body, recorded_at, action, patient, leaf_hash, chain_hash) \
     SELECT i, d, b, t, a, NULLIF(p, ''), l, c \
     FROM unnest($1::bigint[], $2::text[], $3::bytea[], $4::timestamptz[], \
     $5::text[], $6::text[], $7::bytea[], $8::bytea[]) AS x(i, d, b, t, a, p, l, c)";
const POSTGRES_INSERT_NODES: &str = "INSERT INTO audit_node (level, idx, hash) \
     SELECT * FROM unnest($1::smallint[], $2::bigint[], $3::bytea[])";
/// The intake's guard (migration 9) lets batches go only if, joined, they are byte for byte the
/// log's entries from the leaf this names to the end: the first leaf this round placed.
const POSTGRES_ROUND_START: &str = "SELECT set_config('cairn.audit_round_start', $1, true)";
const POSTGRES_DEQUEUE: &str = "DELETE FROM audit_intake WHERE seq = ANY($1::bigint[])";

fn array(kind: ArrayType, values: Vec<sea_orm::Value>) -> sea_orm::Value {
    sea_orm::Value::Array(kind, Some(Box::new(values)))
}

/// Stores a round's entries and nodes and dequeues its batches on PostgreSQL; returns how
/// many batches left the intake.
async fn store_postgres(
    txn: &DatabaseTransaction,
    rows: &[Placed<'_>],
    nodes: &[&Node],
    seqs: &[i64],
) -> Result<u64, AuditFailure> {
    let column = |value: fn(&Placed<'_>) -> sea_orm::Value| rows.iter().map(value).collect();
    let entries = [
        array(ArrayType::BigInt, column(|(a, _)| to_db(a.index).into())),
        array(
            ArrayType::String,
            column(|(_, r)| r.entry.id.clone().into()),
        ),
        array(ArrayType::Bytes, column(|(_, r)| r.body.clone().into())),
        array(
            ArrayType::TimeDateTimeWithTimeZone,
            column(|(_, r)| audit_chain::canonical_time(r.entry.recorded).into()),
        ),
        array(
            ArrayType::String,
            column(|(_, r)| r.entry.action.as_str().into()),
        ),
        array(
            ArrayType::String,
            column(|(_, r)| r.entry.patient.clone().unwrap_or_default().into()),
        ),
        array(
            ArrayType::Bytes,
            column(|(a, _)| a.leaf_hash.0.to_vec().into()),
        ),
        array(
            ArrayType::Bytes,
            column(|(a, _)| a.chain_hash.0.to_vec().into()),
        ),
    ];
    let run = |sql: &str, values: Vec<sea_orm::Value>| {
        txn.execute_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            sql,
            values,
        ))
    };
    run(POSTGRES_INSERT_ENTRIES, entries.into())
        .await
        .map_err(failure)?;
    if !nodes.is_empty() {
        let levels = nodes.iter().map(|n| i16::from(n.id.level).into()).collect();
        let indexes = nodes.iter().map(|n| to_db(n.id.index).into()).collect();
        let hashes = nodes.iter().map(|n| n.hash.0.to_vec().into()).collect();
        run(
            POSTGRES_INSERT_NODES,
            vec![
                array(ArrayType::SmallInt, levels),
                array(ArrayType::BigInt, indexes),
                array(ArrayType::Bytes, hashes),
            ],
        )
        .await
        .map_err(failure)?;
    }
    if let Some(first) = rows.iter().map(|(a, _)| a.index).min() {
        run(POSTGRES_ROUND_START, vec![first.to_string().into()])
            .await
            .map_err(failure)?;
    }
    let seqs = seqs.iter().map(|&seq| seq.into()).collect();
    let result = run(POSTGRES_DEQUEUE, vec![array(ArrayType::BigInt, seqs)])
        .await
        .map_err(failure)?;
    Ok(result.rows_affected())
}

/// The same on SQLite: multi-row statements of at most [`ROWS_PER_STATEMENT`] rows (SQLite
/// parses a statement in microseconds; it has no arrays to bind).
async fn store_in_chunks(
    txn: &DatabaseTransaction,
    backend: DbBackend,
    rows: &[Placed<'_>],
    nodes: &[&Node],
    seqs: &[i64],
) -> Result<u64, AuditFailure> {
    for chunk in rows.chunks(ROWS_PER_STATEMENT) {
        let mut insert = Query::insert();
        insert
            .into_table(name(AUDIT_ENTRY))
            .columns(ENTRY_COLUMNS.map(name));
        for (a, recorded) in chunk {
            let entry = &recorded.entry;
            insert
                .values([
                    to_db(a.index).into(),
                    entry.id.as_str().into(),
                    recorded.body.clone().into(),
                    time_value(backend, entry.recorded).into(),
                    entry.action.as_str().into(),
                    entry.patient.clone().into(),
                    a.leaf_hash.0.to_vec().into(),
                    a.chain_hash.0.to_vec().into(),
                ])
                .map_err(failure)?;
        }
        txn.execute(&insert).await.map_err(failure)?;
    }
    for chunk in nodes.chunks(ROWS_PER_STATEMENT) {
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
        txn.execute(&insert).await.map_err(failure)?;
    }
    let mut dequeued = 0;
    for chunk in seqs.chunks(ROWS_PER_STATEMENT) {
        let dequeue = Query::delete()
            .from_table(name(AUDIT_INTAKE))
            .and_where(Expr::col(name("seq")).is_in(chunk.iter().copied()))
            .to_owned();
        dequeued += txn
            .execute(&dequeue)
            .await
            .map_err(failure)?
            .rows_affected();
    }
    Ok(dequeued)
}

#[async_trait]
impl SequencerSession for SqlSequencer {
    async fn head(&mut self) -> Result<Head, AuditFailure> {
        let last = Query::select()
            .columns(["leaf_index", "chain_hash"].map(name))
            .from(name(AUDIT_ENTRY))
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
        let backend = self.txn.get_database_backend();
        let sql = match backend {
            DbBackend::Postgres => {
                "SELECT seq, entries FROM audit_intake WHERE seq > $1 ORDER BY seq LIMIT $2"
            }
            _ => "SELECT seq, entries FROM audit_intake WHERE seq > ? ORDER BY seq LIMIT ?",
        };
        let mut count = self.taken_entries().count();
        let mut after = self.taken.last().map_or(i64::MIN, |(seq, _)| *seq);
        'pages: while count < limit {
            let rows = self
                .txn
                .query_all_raw(Statement::from_sql_and_values(
                    backend,
                    sql,
                    [after.into(), INTAKE_PAGE.into()],
                ))
                .await
                .map_err(failure)?;
            let last_page = rows.len() < usize::try_from(INTAKE_PAGE).unwrap_or(usize::MAX);
            for row in rows {
                let seq: i64 = row.try_get("", "seq").map_err(failure)?;
                let batch: String = row.try_get("", "entries").map_err(failure)?;
                let entries = batch_entries(seq, &batch)?;
                count += entries.len();
                after = seq;
                self.taken.push((seq, entries));
                if count >= limit {
                    break 'pages;
                }
            }
            if last_page {
                break;
            }
        }
        Ok(self
            .taken_entries()
            .enumerate()
            .map(|(key, recorded)| Pending {
                key: i64::try_from(key).unwrap_or(i64::MAX),
                body: recorded.body.clone(),
            })
            .collect())
    }

    async fn store(&mut self, assigned: &[Assigned], nodes: &[Node]) -> Result<(), AuditFailure> {
        let taken: Vec<&Recorded> = self.taken_entries().collect();
        if assigned.len() != taken.len() {
            return Err(AuditFailure(
                "every entry taken from the intake must be placed in the log".into(),
            ));
        }
        let rows = assigned
            .iter()
            .map(|a| {
                let recorded = usize::try_from(a.key)
                    .ok()
                    .and_then(|key| taken.get(key))
                    .ok_or_else(|| AuditFailure("an assignment names no taken entry".into()))?;
                Ok((a, *recorded))
            })
            .collect::<Result<Vec<_>, AuditFailure>>()?;
        let stored: Vec<&Node> = nodes
            .iter()
            .filter(|node| node.id.level >= FIRST_STORED_LEVEL)
            .collect();
        let seqs: Vec<i64> = self.taken.iter().map(|(seq, _)| *seq).collect();
        let dequeued = match self.txn.get_database_backend() {
            DbBackend::Postgres => store_postgres(&self.txn, &rows, &stored, &seqs).await?,
            backend => store_in_chunks(&self.txn, backend, &rows, &stored, &seqs).await?,
        };
        if dequeued != seqs.len() as u64 {
            return Err(AuditFailure(
                "a batch to sequence left the intake meanwhile".into(),
            ));
        }
        if let Some(upkeep) = &mut self.upkeep {
            upkeep.this_round += dequeued;
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
            txn, _lock, upkeep, ..
        } = *self;
        txn.commit().await.map_err(failure)?;
        // The advisory lock is released with the commit; SQLite's with this session.
        drop(_lock);
        if let Some(upkeep) = upkeep {
            upkeep.after_commit().await;
        }
        Ok(())
    }
}
