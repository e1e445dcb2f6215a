//! The one place the binary opens its database: the records' pool (migrated first), the audit
//! log's own pool, the private data directory of the embedded default, and the record of an
//! administrative act done from the CLI.

use anyhow::Context;
use audit_chain::{Action, AuditLog};
use store_sql::{SqlStore, StoreOptions};
use time::OffsetDateTime;

use crate::config::Config;

/// Opens the configured database (creating the embedded SQLite directory if needed) and
/// applies pending migrations.
pub async fn open_store(config: &Config) -> anyhow::Result<SqlStore> {
    open_store_with(config, None).await
}

/// As [`open_store`], for the server: no statement of a request outlives the request's time
/// limit (on PostgreSQL; see [`StoreOptions::statement_timeout`]).
pub(crate) async fn open_serving_store(config: &Config) -> anyhow::Result<SqlStore> {
    let limit = std::time::Duration::from_secs(config.request_timeout_seconds);
    open_store_with(config, Some(limit)).await
}

async fn open_store_with(
    config: &Config,
    statement_timeout: Option<std::time::Duration>,
) -> anyhow::Result<SqlStore> {
    if let Some(dir) = config.sqlite_dir() {
        create_private_dir(&dir)
            .with_context(|| format!("cannot create the data directory {}", dir.display()))?;
    }
    let options = StoreOptions {
        max_connections: config.max_connections,
        statement_timeout,
        ..StoreOptions::default()
    };
    SqlStore::open(&config.database_url, &options)
        .await
        .context("cannot open and migrate the database")
}

/// Connections of the audit log's own pool: its group-commit writers and the sequencer.
///
/// One writer: it gathers while the others' requests are answered, and one larger commit
/// costs the database less than two smaller ones in parallel (measured: 5–8% more reads/s at
/// 32 clients than two writers). SQLite has one writer at a time anyway.
pub(crate) const AUDIT_WRITERS: u32 = 1;

/// A second pool on the database, for the audit log. Every read waits for its entry's commit;
/// were those commits to take connections from the pool the reads use, recording would cut
/// the reads' concurrency by a connection or more (measured: a third of read throughput with
/// the default four connections).
pub(crate) async fn open_audit_store(config: &Config) -> anyhow::Result<SqlStore> {
    let options = StoreOptions {
        max_connections: AUDIT_WRITERS + 1,
        ..StoreOptions::default()
    };
    SqlStore::connect(&config.database_url, &options)
        .await
        .context("cannot open the audit log's connections")
}

/// The data directory holds PHI: readable by its owner only.
pub(crate) fn create_private_dir(dir: &std::path::Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}

/// Records an administrative act (token issued or revoked, key rotated) done from the CLI, at
/// the machine's clock (the CLI's).
pub async fn record_admin(
    log: &dyn AuditLog,
    action: Action,
    token_id: Option<&str>,
    detail: Option<&str>,
) -> anyhow::Result<()> {
    let entry =
        records::audit_entries::admin_act(action, token_id, detail, OffsetDateTime::now_utc());
    log.append(&[entry])
        .await
        .map_err(|err| anyhow::anyhow!(err))
        .context("cannot record this on the audit log")
}
