//! The audit log: entries, their places in the log, the Merkle tree's stored nodes, and signed
//! checkpoints. Every table is insert-only, so the log never makes dead row versions.
//!
//! - `audit_entry`: one row per entry (its canonical bytes and the columns queries need),
//!   inserted by writes in the transaction of the change and by reads through a group commit.
//!   An insert trigger puts each new entry's `seq` on `audit_pending`.
//! - `audit_pending`: the sequencer's queue. The sequencer takes entries in `seq` order, records
//!   each one's leaf index, leaf hash and chain hash in `audit_leaf`, the perfect subtrees they
//!   complete in `audit_node`, signs checkpoints into `audit_checkpoint`, and removes the queue
//!   rows it sequenced, all in one transaction.
//!
//! Triggers refuse UPDATE, DELETE and TRUNCATE on every table, except removing a queue row whose
//! entry has its leaf; the server's own database role cannot rewrite history (a superuser can,
//! and `cairn audit verify` catches it).

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;
use sea_orm_migration::sea_orm::{ConnectionTrait, DbBackend};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum AuditEntry {
    Table,
    Seq,
    Id,
    Body,
    RecordedAt,
    Action,
    Patient,
}

#[derive(DeriveIden)]
enum AuditPending {
    Table,
    Seq,
}

#[derive(DeriveIden)]
enum AuditLeaf {
    Table,
    LeafIndex,
    Seq,
    LeafHash,
    ChainHash,
}

#[derive(DeriveIden)]
enum AuditNode {
    Table,
    Level,
    Idx,
    Hash,
}

#[derive(DeriveIden)]
enum AuditCheckpoint {
    Table,
    Size,
    Root,
    Note,
    SignedAt,
}

const POSTGRES_GUARD: &str = r#"
CREATE FUNCTION audit_refuse() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the audit log is append-only (% on %)', TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'insufficient_privilege';
END
$$;
CREATE FUNCTION audit_enqueue() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO audit_pending (seq) SELECT seq FROM inserted;
    RETURN NULL;
END
$$;
CREATE FUNCTION audit_dequeue() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM removed r
               WHERE NOT EXISTS (SELECT 1 FROM audit_leaf l WHERE l.seq = r.seq)) THEN
        RAISE EXCEPTION 'an audit entry leaves the queue only once it has its place in the log'
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER audit_entry_enqueue AFTER INSERT ON audit_entry
    REFERENCING NEW TABLE AS inserted FOR EACH STATEMENT EXECUTE FUNCTION audit_enqueue();
CREATE TRIGGER audit_pending_dequeue AFTER DELETE ON audit_pending
    REFERENCING OLD TABLE AS removed FOR EACH STATEMENT EXECUTE FUNCTION audit_dequeue();
CREATE TRIGGER audit_pending_no_update BEFORE UPDATE ON audit_pending
    FOR EACH ROW EXECUTE FUNCTION audit_refuse();
CREATE TRIGGER audit_pending_no_truncate BEFORE TRUNCATE ON audit_pending
    FOR EACH STATEMENT EXECUTE FUNCTION audit_refuse();
"#;

/// The append-only guard of one table on PostgreSQL.
fn postgres_append_only(table: &str) -> String {
    format!(
        "CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} \
         FOR EACH ROW EXECUTE FUNCTION audit_refuse();
         CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} \
         FOR EACH STATEMENT EXECUTE FUNCTION audit_refuse();"
    )
}

// SQLite has no roles: whoever holds the file can do anything. The triggers still keep the
// server's own code (and a careless operator) from rewriting the log.
const SQLITE_GUARD: &str = r#"
CREATE TRIGGER audit_entry_enqueue AFTER INSERT ON audit_entry
BEGIN INSERT INTO audit_pending (seq) VALUES (NEW.seq); END;
CREATE TRIGGER audit_pending_dequeue BEFORE DELETE ON audit_pending
WHEN NOT EXISTS (SELECT 1 FROM audit_leaf WHERE seq = OLD.seq)
BEGIN SELECT RAISE(ABORT, 'an audit entry leaves the queue only once it has its place in the log'); END;
CREATE TRIGGER audit_pending_no_update BEFORE UPDATE ON audit_pending
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
"#;

/// The append-only guard of one table on SQLite.
fn sqlite_append_only(table: &str) -> String {
    format!(
        "CREATE TRIGGER {table}_no_delete BEFORE DELETE ON {table}
         BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
         CREATE TRIGGER {table}_no_update BEFORE UPDATE ON {table}
         BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;"
    )
}

/// The tables no row of which may change or go.
const APPEND_ONLY: [&str; 4] = [
    "audit_entry",
    "audit_leaf",
    "audit_node",
    "audit_checkpoint",
];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(AuditEntry::Table)
                    .col(big_pk_auto(AuditEntry::Seq))
                    .col(string_len_uniq(AuditEntry::Id, 64))
                    .col(binary(AuditEntry::Body))
                    .col(timestamp_with_time_zone(AuditEntry::RecordedAt))
                    .col(string_len(AuditEntry::Action, 32))
                    .col(string_len_null(AuditEntry::Patient, 64))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(AuditPending::Table)
                    .col(big_integer(AuditPending::Seq).primary_key())
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(AuditLeaf::Table)
                    .col(big_integer(AuditLeaf::LeafIndex).primary_key())
                    .col(big_integer_uniq(AuditLeaf::Seq))
                    .col(binary(AuditLeaf::LeafHash))
                    .col(binary(AuditLeaf::ChainHash))
                    .to_owned(),
            )
            .await?;
        // Accounting of disclosures and AuditEvent searches: by patient, then time.
        manager
            .create_index(
                Index::create()
                    .name("audit_entry_by_patient")
                    .table(AuditEntry::Table)
                    .col(AuditEntry::Patient)
                    .col(AuditEntry::RecordedAt)
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(AuditNode::Table)
                    .col(small_integer(AuditNode::Level))
                    .col(big_integer(AuditNode::Idx))
                    .col(binary(AuditNode::Hash))
                    .primary_key(Index::create().col(AuditNode::Level).col(AuditNode::Idx))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(AuditCheckpoint::Table)
                    .col(big_integer(AuditCheckpoint::Size).primary_key())
                    .col(binary(AuditCheckpoint::Root))
                    .col(text(AuditCheckpoint::Note))
                    .col(timestamp_with_time_zone(AuditCheckpoint::SignedAt))
                    .to_owned(),
            )
            .await?;
        let db = manager.get_connection();
        match manager.get_database_backend() {
            DbBackend::Postgres => {
                db.execute_unprepared(POSTGRES_GUARD).await?;
                for table in APPEND_ONLY {
                    db.execute_unprepared(&postgres_append_only(table)).await?;
                }
            }
            DbBackend::Sqlite => {
                db.execute_unprepared(SQLITE_GUARD).await?;
                for table in APPEND_ONLY {
                    db.execute_unprepared(&sqlite_append_only(table)).await?;
                }
            }
            _ => return Err(DbErr::Migration("unsupported database".to_owned())),
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            AuditCheckpoint::Table.into_iden(),
            AuditNode::Table.into_iden(),
            AuditLeaf::Table.into_iden(),
            AuditPending::Table.into_iden(),
            AuditEntry::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        if manager.get_database_backend() == DbBackend::Postgres {
            manager
                .get_connection()
                .execute_unprepared(
                    "DROP FUNCTION IF EXISTS audit_refuse(), audit_enqueue(), audit_dequeue()",
                )
                .await?;
        }
        Ok(())
    }
}
