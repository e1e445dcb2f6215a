//! The audit log takes entries in batches and indexes them when it sequences them.
//!
//! Until now every entry was a row of `audit_entry` from the moment it was recorded, indexed
//! four ways and queued by a trigger on `audit_pending`; the sequencer then added its
//! `audit_leaf` row and dequeued it. A read waited for all of that to be written and flushed:
//! measured with pgbench on this project's 2-core machine, committing 19 read entries took
//! 1.76 ms that way, against 0.72 ms as one row of a plain table (4 clients: 18,500 against
//! 62,000 entries/s).
//!
//! Now:
//! - `audit_intake` is the queue: one row per recorded batch (a group commit's entries, or a
//!   write's one), `entries` holding the batch as a JSON array of the entries' exact canonical
//!   bytes. Nothing but its primary key is indexed.
//! - `audit_entry` holds sequenced entries only, one row each: leaf index (its key), id, bytes,
//!   the columns queries need (taken from the bytes, so they cannot disagree with them), leaf
//!   hash and chain hash. The sequencer inserts these rows and deletes the intake rows in one
//!   transaction. `audit_leaf` and `audit_pending` are gone.
//! - A trigger lets an intake row go only once every entry in it is in `audit_entry` (on
//!   PostgreSQL with the same bytes), so no entry can be dropped from the log by dequeuing it.
//!   The intake refuses UPDATE and TRUNCATE; `audit_entry` stays append-only.
//! - On SQLite `recorded_at` is fixed-width UTC text to the microsecond
//!   (`2026-11-29T17:04:51.702360Z`), so text order is time order; before, trailing zeros were
//!   trimmed and `.022Z` sorted before `.02Z`.
//!
//! Existing entries move: sequenced ones into the new `audit_entry` with their leaf and chain
//! hashes, unsequenced ones into `audit_intake` in their old order, one batch each.
//!
//! Written as SQL per backend: it moves data and swaps tables, which the schema builder does not
//! express.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::{ConnectionTrait, DbBackend};

#[derive(DeriveMigrationName)]
pub struct Migration;

const POSTGRES_UP: &str = r#"
CREATE TABLE audit_entry_sequenced (
    leaf_index bigint PRIMARY KEY,
    -- Compared byte by byte: an id is a UUID, and the database's locale need not collate it.
    id varchar(64) COLLATE "C" NOT NULL,
    body bytea NOT NULL,
    recorded_at timestamptz NOT NULL,
    action varchar(32) NOT NULL,
    patient varchar(64),
    leaf_hash bytea NOT NULL,
    chain_hash bytea NOT NULL
);
INSERT INTO audit_entry_sequenced
    SELECT l.leaf_index, e.id, e.body, e.recorded_at, e.action, e.patient, l.leaf_hash, l.chain_hash
    FROM audit_leaf AS l JOIN audit_entry AS e ON e.seq = l.seq;
-- A batch of 19 read entries is about 7.5 kB: kept in the row uncompressed, not in TOAST.
-- Larger ones are compressed with lz4 where the server has it (pgbench, batches of 19 at 4
-- clients: 3,540 commits/s against 3,220 with the default pglz, 254 against 304 µs of
-- PostgreSQL's CPU each).
CREATE TABLE audit_intake (
    seq bigserial PRIMARY KEY,
    entries text NOT NULL
) WITH (toast_tuple_target = 8160);
DO $lz4$ BEGIN
    ALTER TABLE audit_intake ALTER COLUMN entries SET COMPRESSION lz4;
EXCEPTION WHEN feature_not_supported THEN NULL;
END $lz4$;
INSERT INTO audit_intake (entries)
    SELECT '[' || convert_from(e.body, 'UTF8') || ']'
    FROM audit_pending AS p JOIN audit_entry AS e ON e.seq = p.seq ORDER BY p.seq;
DROP TABLE audit_pending, audit_leaf, audit_entry;
DROP FUNCTION audit_enqueue(), audit_dequeue();
ALTER TABLE audit_entry_sequenced RENAME TO audit_entry;
ALTER INDEX audit_entry_sequenced_pkey RENAME TO audit_entry_pkey;
CREATE UNIQUE INDEX audit_entry_id ON audit_entry (id);
CREATE INDEX audit_entry_by_patient ON audit_entry USING hash (patient);
CREATE FUNCTION audit_release() RETURNS trigger LANGUAGE plpgsql AS $$
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
CREATE TRIGGER audit_intake_release AFTER DELETE ON audit_intake
    REFERENCING OLD TABLE AS removed FOR EACH STATEMENT EXECUTE FUNCTION audit_release();
CREATE TRIGGER audit_intake_no_update BEFORE UPDATE ON audit_intake
    FOR EACH ROW EXECUTE FUNCTION audit_refuse();
CREATE TRIGGER audit_intake_no_truncate BEFORE TRUNCATE ON audit_intake
    FOR EACH STATEMENT EXECUTE FUNCTION audit_refuse();
CREATE TRIGGER audit_entry_append_only BEFORE UPDATE OR DELETE ON audit_entry
    FOR EACH ROW EXECUTE FUNCTION audit_refuse();
CREATE TRIGGER audit_entry_no_truncate BEFORE TRUNCATE ON audit_entry
    FOR EACH STATEMENT EXECUTE FUNCTION audit_refuse();
"#;

const POSTGRES_DOWN: &str = r#"
CREATE TABLE audit_entry_v1 (
    seq bigserial PRIMARY KEY,
    id varchar(64) NOT NULL UNIQUE,
    body bytea NOT NULL,
    recorded_at timestamptz NOT NULL,
    action varchar(32) NOT NULL,
    patient varchar(64)
);
CREATE TABLE audit_pending (seq bigint PRIMARY KEY);
CREATE TABLE audit_leaf (
    leaf_index bigint PRIMARY KEY,
    seq bigint NOT NULL UNIQUE,
    leaf_hash bytea NOT NULL,
    chain_hash bytea NOT NULL
);
INSERT INTO audit_entry_v1 (id, body, recorded_at, action, patient)
    SELECT id, body, recorded_at, action, patient FROM audit_entry ORDER BY leaf_index;
INSERT INTO audit_leaf
    SELECT e.leaf_index, v.seq, e.leaf_hash, e.chain_hash
    FROM audit_entry AS e JOIN audit_entry_v1 AS v ON v.id = e.id;
INSERT INTO audit_entry_v1 (id, body, recorded_at, action, patient)
    SELECT x.entry->>'id', convert_to(x.entry::text, 'UTF8'), (x.entry->>'recorded')::timestamptz,
           x.entry->>'action', x.entry->>'patient'
    FROM audit_intake AS i, json_array_elements(i.entries::json) WITH ORDINALITY AS x(entry, n)
    ORDER BY i.seq, x.n;
INSERT INTO audit_pending
    SELECT seq FROM audit_entry_v1 WHERE seq NOT IN (SELECT seq FROM audit_leaf);
DROP TABLE audit_intake, audit_entry;
DROP FUNCTION audit_release();
ALTER TABLE audit_entry_v1 RENAME TO audit_entry;
ALTER SEQUENCE audit_entry_v1_seq_seq RENAME TO audit_entry_seq_seq;
ALTER INDEX audit_entry_v1_pkey RENAME TO audit_entry_pkey;
ALTER INDEX audit_entry_v1_id_key RENAME TO audit_entry_id_key;
CREATE INDEX audit_entry_by_patient ON audit_entry USING hash (patient);
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
CREATE TRIGGER audit_entry_append_only BEFORE UPDATE OR DELETE ON audit_entry
    FOR EACH ROW EXECUTE FUNCTION audit_refuse();
CREATE TRIGGER audit_entry_no_truncate BEFORE TRUNCATE ON audit_entry
    FOR EACH STATEMENT EXECUTE FUNCTION audit_refuse();
CREATE TRIGGER audit_leaf_append_only BEFORE UPDATE OR DELETE ON audit_leaf
    FOR EACH ROW EXECUTE FUNCTION audit_refuse();
CREATE TRIGGER audit_leaf_no_truncate BEFORE TRUNCATE ON audit_leaf
    FOR EACH STATEMENT EXECUTE FUNCTION audit_refuse();
"#;

/// The canonical `recorded` time of an entry's bytes (RFC 3339, UTC, fraction trimmed of
/// trailing zeros or absent) as fixed-width text with six fractional digits. `{r}` is the
/// expression giving the trimmed text.
fn sqlite_fixed_width(r: &str) -> String {
    format!(
        "substr({r}, 1, 19) || '.' || substr(CASE WHEN length({r}) > 20 \
         THEN substr({r}, 21, length({r}) - 21) ELSE '' END || '000000', 1, 6) || 'Z'"
    )
}

fn sqlite_up() -> String {
    let recorded = sqlite_fixed_width("json_extract(CAST(e.body AS TEXT), '$.recorded')");
    format!(
        r#"
CREATE TABLE audit_entry_sequenced (
    leaf_index bigint PRIMARY KEY,
    id varchar(64) NOT NULL,
    body blob NOT NULL,
    recorded_at text NOT NULL,
    action varchar(32) NOT NULL,
    patient varchar(64),
    leaf_hash blob NOT NULL,
    chain_hash blob NOT NULL
);
INSERT INTO audit_entry_sequenced
    SELECT l.leaf_index, e.id, e.body, {recorded}, e.action, e.patient, l.leaf_hash, l.chain_hash
    FROM audit_leaf AS l JOIN audit_entry AS e ON e.seq = l.seq;
CREATE TABLE audit_intake (
    seq integer PRIMARY KEY AUTOINCREMENT,
    entries text NOT NULL
);
INSERT INTO audit_intake (entries)
    SELECT '[' || CAST(e.body AS TEXT) || ']'
    FROM audit_pending AS p JOIN audit_entry AS e ON e.seq = p.seq ORDER BY p.seq;
DROP TABLE audit_pending;
DROP TABLE audit_leaf;
DROP TABLE audit_entry;
ALTER TABLE audit_entry_sequenced RENAME TO audit_entry;
CREATE UNIQUE INDEX audit_entry_id ON audit_entry (id);
-- A patient's entries in log order. (The leaf index is not the rowid, `integer PRIMARY KEY`:
-- SQLite then names a result column selected as "leaf_index" by its quoted text.)
CREATE INDEX audit_entry_by_patient ON audit_entry (patient, leaf_index);
CREATE TRIGGER audit_intake_release BEFORE DELETE ON audit_intake
WHEN EXISTS (SELECT 1 FROM json_each(OLD.entries) AS x
             WHERE NOT EXISTS (SELECT 1 FROM audit_entry AS e
                               WHERE e.id = json_extract(x.value, '$.id')))
BEGIN SELECT RAISE(ABORT, 'an audit entry leaves the intake only once it has its place in the log'); END;
CREATE TRIGGER audit_intake_no_update BEFORE UPDATE ON audit_intake
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER audit_entry_no_delete BEFORE DELETE ON audit_entry
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER audit_entry_no_update BEFORE UPDATE ON audit_entry
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
"#
    )
}

const SQLITE_DOWN: &str = r#"
CREATE TABLE audit_entry_v1 (
    seq integer PRIMARY KEY AUTOINCREMENT,
    id varchar(64) NOT NULL UNIQUE,
    body blob NOT NULL,
    recorded_at text NOT NULL,
    action varchar(32) NOT NULL,
    patient varchar(64)
);
CREATE TABLE audit_pending (seq bigint PRIMARY KEY);
CREATE TABLE audit_leaf (
    leaf_index bigint PRIMARY KEY,
    seq bigint NOT NULL UNIQUE,
    leaf_hash blob NOT NULL,
    chain_hash blob NOT NULL
);
INSERT INTO audit_entry_v1 (id, body, recorded_at, action, patient)
    SELECT id, body, recorded_at, action, patient FROM audit_entry ORDER BY leaf_index;
INSERT INTO audit_leaf
    SELECT e.leaf_index, v.seq, e.leaf_hash, e.chain_hash
    FROM audit_entry AS e JOIN audit_entry_v1 AS v ON v.id = e.id;
INSERT INTO audit_entry_v1 (id, body, recorded_at, action, patient)
    SELECT json_extract(x.value, '$.id'), CAST(x.value AS BLOB), json_extract(x.value, '$.recorded'),
           json_extract(x.value, '$.action'), json_extract(x.value, '$.patient')
    FROM audit_intake AS i, json_each(i.entries) AS x ORDER BY i.seq, x.key;
INSERT INTO audit_pending
    SELECT seq FROM audit_entry_v1 WHERE seq NOT IN (SELECT seq FROM audit_leaf);
DROP TABLE audit_intake;
DROP TABLE audit_entry;
ALTER TABLE audit_entry_v1 RENAME TO audit_entry;
CREATE INDEX audit_entry_by_patient ON audit_entry (patient, recorded_at);
CREATE TRIGGER audit_entry_enqueue AFTER INSERT ON audit_entry
BEGIN INSERT INTO audit_pending (seq) VALUES (NEW.seq); END;
CREATE TRIGGER audit_pending_dequeue BEFORE DELETE ON audit_pending
WHEN NOT EXISTS (SELECT 1 FROM audit_leaf WHERE seq = OLD.seq)
BEGIN SELECT RAISE(ABORT, 'an audit entry leaves the queue only once it has its place in the log'); END;
CREATE TRIGGER audit_pending_no_update BEFORE UPDATE ON audit_pending
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER audit_entry_no_delete BEFORE DELETE ON audit_entry
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER audit_entry_no_update BEFORE UPDATE ON audit_entry
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER audit_leaf_no_delete BEFORE DELETE ON audit_leaf
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER audit_leaf_no_update BEFORE UPDATE ON audit_leaf
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
"#;

async fn run(manager: &SchemaManager<'_>, postgres: &str, sqlite: &str) -> Result<(), DbErr> {
    let sql = match manager.get_database_backend() {
        DbBackend::Postgres => postgres,
        DbBackend::Sqlite => sqlite,
        _ => return Err(DbErr::Migration("unsupported database".to_owned())),
    };
    manager.get_connection().execute_unprepared(sql).await?;
    Ok(())
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    /// All of it or none, on SQLite too: it moves the log's rows between tables.
    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }

    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        run(manager, POSTGRES_UP, &sqlite_up()).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        run(manager, POSTGRES_DOWN, SQLITE_DOWN).await
    }
}
