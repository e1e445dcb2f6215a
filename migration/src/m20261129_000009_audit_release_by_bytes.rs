//! On PostgreSQL, the intake's guard compares bytes instead of parsing JSON.
//!
//! Migration 8's guard let a batch leave `audit_intake` only once every entry in it was in
//! `audit_entry` with the same bytes, and checked that by parsing each removed batch as JSON
//! and looking every entry up by id: 8–12 µs an entry in the store bench and 27 µs in the
//! server with two million entries logged (`pg_stat_statements`), spent in the sequencer's
//! transaction for every read the server answers. Compared as bytes: 3 µs.
//!
//! The sequencer places a round's entries at the end of the log and then removes their
//! batches, so the same guarantee is a comparison of bytes: the removed batches, each without
//! its brackets, joined with commas in intake order, must equal the bodies of the log's entries
//! from the round's first leaf to its end, joined with commas in leaf order. The sequencer
//! names that first leaf in the transaction-local setting `cairn.audit_round_start`. Naming a
//! wrong one gains nothing: the comparison then fails and the delete is refused, and an entry
//! can only pass it if its exact bytes are in the log. Without the setting nothing can be
//! removed.
//!
//! SQLite keeps its guard (its intake holds what the embedded default records; it has no roles
//! to keep apart, and parsing there is no one's bottleneck).

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::{ConnectionTrait, DbBackend};

#[derive(DeriveMigrationName)]
pub struct Migration;

const POSTGRES_UP: &str = r#"
CREATE OR REPLACE FUNCTION audit_release() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    first_leaf bigint := nullif(current_setting('cairn.audit_round_start', true), '')::bigint;
    taken bytea;
    placed bytea;
BEGIN
    -- As bytes: `substr` and `length` of text count characters, walking every byte of
    -- UTF-8 (three times as slow here).
    SELECT string_agg(substring(x.b FROM 2 FOR octet_length(x.b) - 2), '\x2c'::bytea
                      ORDER BY r.seq)
        INTO taken
        FROM removed AS r, LATERAL (SELECT convert_to(r.entries, 'UTF8') AS b) AS x;
    IF taken IS NULL THEN
        RETURN NULL;
    END IF;
    SELECT string_agg(e.body, '\x2c'::bytea ORDER BY e.leaf_index)
        INTO placed FROM audit_entry AS e WHERE e.leaf_index >= first_leaf;
    IF placed IS DISTINCT FROM taken THEN
        RAISE EXCEPTION 'an audit entry leaves the intake only once it has its place in the log'
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN NULL;
END
$$;
"#;

/// Migration 8's guard, as it was.
const POSTGRES_DOWN: &str = r#"
CREATE OR REPLACE FUNCTION audit_release() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM removed AS r, json_array_elements(r.entries::json) AS x(entry)
               WHERE NOT EXISTS (SELECT 1 FROM audit_entry AS e
                                 WHERE e.id = x.entry->>'id'
                                   AND e.body = convert_to(x.entry::text, 'UTF8'))) THEN
        RAISE EXCEPTION 'an audit entry leaves the intake only once it has its place in the log'
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN NULL;
END
$$;
"#;

async fn run(manager: &SchemaManager<'_>, postgres: &str) -> Result<(), DbErr> {
    match manager.get_database_backend() {
        DbBackend::Postgres => {
            manager
                .get_connection()
                .execute_unprepared(postgres)
                .await?;
            Ok(())
        }
        DbBackend::Sqlite => Ok(()),
        _ => Err(DbErr::Migration("unsupported database".to_owned())),
    }
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        run(manager, POSTGRES_UP).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        run(manager, POSTGRES_DOWN).await
    }
}
