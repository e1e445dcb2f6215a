//! The audit log: entries, the Merkle tree's stored nodes, and signed checkpoints.
//!
//! `audit_entry` rows arrive unsequenced (`leaf_index` NULL): writes insert theirs in the
//! transaction of the change, reads through a group commit. The one sequencer fills
//! `leaf_index`, `leaf_hash` and `chain_hash` in `seq` order, stores the perfect subtrees the
//! new leaves complete in `audit_node`, and signs checkpoints into `audit_checkpoint`.
//!
//! The rows are append-only. Triggers refuse DELETE, TRUNCATE and any UPDATE except the
//! sequencer's one-time filling of an entry's NULL sequencing columns, so the server's own
//! database role cannot rewrite history (a superuser can, and `cairn audit verify` catches it).

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
    LeafIndex,
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
CREATE TRIGGER audit_entry_sequence_once BEFORE UPDATE ON audit_entry FOR EACH ROW
    WHEN (NOT (OLD.leaf_index IS NULL AND OLD.leaf_hash IS NULL AND OLD.chain_hash IS NULL
        AND NEW.leaf_index IS NOT NULL AND NEW.leaf_hash IS NOT NULL AND NEW.chain_hash IS NOT NULL
        AND NEW.seq = OLD.seq AND NEW.id = OLD.id AND NEW.body = OLD.body
        AND NEW.recorded_at = OLD.recorded_at AND NEW.action = OLD.action
        AND NEW.patient IS NOT DISTINCT FROM OLD.patient))
    EXECUTE FUNCTION audit_refuse();
CREATE TRIGGER audit_entry_no_delete BEFORE DELETE ON audit_entry
    FOR EACH ROW EXECUTE FUNCTION audit_refuse();
CREATE TRIGGER audit_entry_no_truncate BEFORE TRUNCATE ON audit_entry
    FOR EACH STATEMENT EXECUTE FUNCTION audit_refuse();
CREATE TRIGGER audit_node_append_only BEFORE UPDATE OR DELETE ON audit_node
    FOR EACH ROW EXECUTE FUNCTION audit_refuse();
CREATE TRIGGER audit_node_no_truncate BEFORE TRUNCATE ON audit_node
    FOR EACH STATEMENT EXECUTE FUNCTION audit_refuse();
CREATE TRIGGER audit_checkpoint_append_only BEFORE UPDATE OR DELETE ON audit_checkpoint
    FOR EACH ROW EXECUTE FUNCTION audit_refuse();
CREATE TRIGGER audit_checkpoint_no_truncate BEFORE TRUNCATE ON audit_checkpoint
    FOR EACH STATEMENT EXECUTE FUNCTION audit_refuse();
"#;

// The sequencer's one allowed update is told apart in the trigger's WHEN clause, evaluated
// without entering PL/pgSQL: the function runs only to refuse.

// SQLite has no roles: whoever holds the file can do anything. The triggers still keep the
// server's own code (and a careless operator) from rewriting the log.
const SQLITE_GUARD: &str = r#"
CREATE TRIGGER audit_entry_no_delete BEFORE DELETE ON audit_entry
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER audit_entry_sequence_once BEFORE UPDATE ON audit_entry
WHEN NOT (OLD.leaf_index IS NULL AND OLD.leaf_hash IS NULL AND OLD.chain_hash IS NULL
    AND NEW.leaf_index IS NOT NULL AND NEW.leaf_hash IS NOT NULL AND NEW.chain_hash IS NOT NULL
    AND NEW.seq = OLD.seq AND NEW.id = OLD.id AND NEW.body = OLD.body
    AND NEW.recorded_at = OLD.recorded_at AND NEW.action = OLD.action
    AND NEW.patient IS OLD.patient)
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER audit_node_no_delete BEFORE DELETE ON audit_node
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER audit_node_no_update BEFORE UPDATE ON audit_node
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER audit_checkpoint_no_delete BEFORE DELETE ON audit_checkpoint
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER audit_checkpoint_no_update BEFORE UPDATE ON audit_checkpoint
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
"#;

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
                    .col(big_integer_null(AuditEntry::LeafIndex).unique_key())
                    .col(binary_null(AuditEntry::LeafHash))
                    .col(binary_null(AuditEntry::ChainHash))
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
        // The sequencer's work queue: only the unsequenced rows, in seq order (both backends
        // have partial indexes).
        db.execute_unprepared(
            "CREATE INDEX audit_entry_pending ON audit_entry (seq) WHERE leaf_index IS NULL",
        )
        .await?;
        match manager.get_database_backend() {
            DbBackend::Postgres => db.execute_unprepared(POSTGRES_GUARD).await?,
            DbBackend::Sqlite => db.execute_unprepared(SQLITE_GUARD).await?,
            _ => return Err(DbErr::Migration("unsupported database".to_owned())),
        };
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            AuditCheckpoint::Table.into_iden(),
            AuditNode::Table.into_iden(),
            AuditEntry::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        if manager.get_database_backend() == DbBackend::Postgres {
            manager
                .get_connection()
                .execute_unprepared("DROP FUNCTION IF EXISTS audit_refuse()")
                .await?;
        }
        Ok(())
    }
}
