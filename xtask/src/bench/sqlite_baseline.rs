//! The raw-INSERT floor under a create on SQLite: the rows one of the bench's creates wrote,
//! copied into a database file of their own with the server's schema and settings (WAL,
//! `synchronous=FULL`), then inserted again and again with a fresh id, one transaction per
//! create. One connection: SQLite has one writer, and more connections would only queue on its
//! lock.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context;
use sqlx::Connection;
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqliteSynchronous};

use super::baseline::{RawInserts, TABLES};

/// Replays the rows of patient `sample` from the server's database file `source` for `seconds`.
pub(super) async fn raw_inserts(
    source: &Path,
    sample: &str,
    seconds: u64,
    work: &Path,
) -> anyhow::Result<RawInserts> {
    let file = work.join("raw-inserts.db");
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", file.display()));
    }
    let mut db = SqliteConnection::connect_with(
        &SqliteConnectOptions::new()
            .filename(&file)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full),
    )
    .await?;
    sqlx::query("ATTACH DATABASE ?1 AS src")
        .bind(format!("file:{}?mode=ro", source.display()))
        .execute(&mut db)
        .await
        .context("attaching the server's database")?;
    let tables = TABLES.map(|(table, _)| table);
    let mut inserts = Vec::new();
    let mut rows = 1; // the audit intake row
    for table in tables.iter().chain(&["audit_intake"]) {
        // The table and its indexes, as the server's migrations made them.
        let schema: Vec<(String,)> = sqlx::query_as(
            "SELECT sql FROM src.sqlite_master WHERE tbl_name = ?1 AND sql IS NOT NULL \
             ORDER BY type = 'index'",
        )
        .bind(table)
        .fetch_all(&mut db)
        .await?;
        for (sql,) in schema {
            sqlx::query(ours(sql)).execute(&mut db).await?;
        }
    }
    for (table, sampled) in TABLES {
        let columns: Vec<(String,)> = sqlx::query_as("SELECT name FROM pragma_table_info(?1)")
            .bind(table)
            .fetch_all(&mut db)
            .await?;
        let key = sampled.replace("$ID", "?1");
        sqlx::query(ours(format!(
            "CREATE TEMP TABLE sample_{table} AS SELECT * FROM src.{table} WHERE {key}"
        )))
        .bind(sample)
        .execute(&mut db)
        .await?;
        let (count,): (i64,) = sqlx::query_as(ours(format!("SELECT count(*) FROM sample_{table}")))
            .fetch_one(&mut db)
            .await?;
        if count == 0 {
            continue;
        }
        rows += usize::try_from(count)?;
        let values: Vec<String> = columns
            .iter()
            .map(|(column,)| match column.as_str() {
                "id" => "?1".to_owned(),
                "owner" if table == "data_key" => "'Patient/' || ?1".to_owned(),
                other => format!("\"{other}\""),
            })
            .collect();
        let names: Vec<String> = columns.iter().map(|(c,)| format!("\"{c}\"")).collect();
        inserts.push(format!(
            "INSERT INTO main.{table} ({}) SELECT {} FROM temp.sample_{table}",
            names.join(", "),
            values.join(", ")
        ));
    }
    let (entry,): (i64,) = sqlx::query_as(
        "SELECT coalesce(max(length(body)), 0) FROM src.audit_entry WHERE action = 'create'",
    )
    .fetch_one(&mut db)
    .await?;
    let entry = format!("[{}]", "x".repeat(usize::try_from(entry)?));
    sqlx::query("DETACH DATABASE src").execute(&mut db).await?;

    eprintln!("bench: raw INSERT of a create's {rows} rows for {seconds} s (SQLite)");
    let started = Instant::now();
    let mut creates: u32 = 0;
    while started.elapsed() < Duration::from_secs(seconds) {
        let id = format!("b-{creates}");
        let mut txn = db.begin().await?;
        for insert in &inserts {
            sqlx::query(ours(insert.clone()))
                .bind(&id)
                .execute(&mut *txn)
                .await?;
        }
        sqlx::query("INSERT INTO main.audit_intake (entries) VALUES (?1)")
            .bind(&entry)
            .execute(&mut *txn)
            .await?;
        txn.commit().await?;
        creates += 1;
    }
    let elapsed = started.elapsed();
    db.close().await?;
    Ok(RawInserts {
        per_second: f64::from(creates) / elapsed.as_secs_f64(),
        latency_ms: elapsed.as_secs_f64() * 1000.0 / f64::from(creates.max(1)),
        rows,
    })
}

/// SQL text built here from the server's own schema, table and column names (never from
/// input), which sqlx asks to be marked as checked.
fn ours(sql: String) -> sqlx::AssertSqlSafe<String> {
    sqlx::AssertSqlSafe(sql)
}
