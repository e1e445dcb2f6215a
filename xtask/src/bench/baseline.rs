//! The floor under a create on PostgreSQL (SQLite: `sqlite_baseline.rs`): the database inserting the very rows one of the bench's creates
//! wrote, and nothing else (no HTTP, JSON, validation, encryption, key lookup or audit
//! sequencing), one transaction per create and one `INSERT` per table, as Cairn's create does.
//!
//! The rows are copied from a patient the load created, into tables made `LIKE` the server's
//! (same columns, defaults and indexes; no foreign keys) in a schema of their own, and replayed
//! by `pgbench` with prepared statements, the same number of connections, a fresh id each time.
//! The sealed body, wrapped key and blind tokens are the real ones: they are ciphertext and
//! keyed hashes, and the bench's patients are synthetic.

use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;

use anyhow::{Context, bail};

/// The tables a create writes rows to, with how the sample's rows are found in each (`$ID`
/// stands for the sample's id: a quoted literal for psql, the bound `?1` on SQLite).
pub(super) const TABLES: [(&str, &str); 8] = [
    ("resource", "resource_type = 'Patient' AND id = $ID"),
    ("resource_version", "resource_type = 'Patient' AND id = $ID"),
    ("data_key", "owner = 'Patient/' || $ID"),
    ("search_blind", "resource_type = 'Patient' AND id = $ID"),
    ("search_token", "resource_type = 'Patient' AND id = $ID"),
    ("search_reference", "resource_type = 'Patient' AND id = $ID"),
    ("search_date", "resource_type = 'Patient' AND id = $ID"),
    ("search_string", "resource_type = 'Patient' AND id = $ID"),
];

const SCHEMA: &str = "bench_baseline";

/// What `pgbench` measured.
pub(super) struct RawInserts {
    pub(super) per_second: f64,
    pub(super) latency_ms: f64,
    /// Rows per transaction (the create's, and its audit intake row).
    pub(super) rows: usize,
}

/// Replays the rows of patient `sample` (an id the load created) for `seconds` on `clients`
/// connections.
pub(super) fn raw_inserts(
    url: &str,
    sample: &str,
    clients: u64,
    seconds: u64,
    work: &Path,
) -> anyhow::Result<RawInserts> {
    let mut setup = format!("DROP SCHEMA IF EXISTS {SCHEMA} CASCADE; CREATE SCHEMA {SCHEMA};");
    for (table, _) in TABLES {
        write!(
            setup,
            "CREATE TABLE {SCHEMA}.{table} (LIKE public.{table} INCLUDING ALL);"
        )?;
    }
    write!(
        setup,
        "CREATE TABLE {SCHEMA}.audit_intake (seq bigserial PRIMARY KEY, entries text NOT NULL);"
    )?;
    psql(url, &setup)?;

    let id = quote(sample);
    let mut script = String::from("\\set n random(1, 9000000000000000000)\nBEGIN;\n");
    let mut rows = 0;
    for (table, sampled) in TABLES {
        let found = psql(
            url,
            &format!(
                "SELECT coalesce(json_agg(t), '[]') FROM public.{table} t WHERE {}",
                sampled.replace("$ID", &id)
            ),
        )?;
        let found: Vec<serde_json::Map<String, serde_json::Value>> =
            serde_json::from_str(found.trim()).context("the sample's rows as JSON")?;
        if found.is_empty() {
            continue;
        }
        rows += found.len();
        script.push_str(&insert(table, &found)?);
    }
    // The create's audit entry goes in as one intake row, of the same size.
    let entry = psql(
        url,
        "SELECT coalesce(max(length(body)), 0) FROM audit_entry WHERE action = 'create'",
    )?;
    let entry: usize = entry.trim().parse().context("an audit entry's length")?;
    writeln!(
        script,
        "INSERT INTO {SCHEMA}.audit_intake (entries) VALUES ('[{}]');",
        "x".repeat(entry)
    )?;
    rows += 1;
    script.push_str("COMMIT;\n");
    let script_file = work.join("raw-inserts.sql");
    std::fs::write(&script_file, script)?;

    eprintln!("bench: raw INSERT of a create's {rows} rows for {seconds} s (pgbench)");
    let output = Command::new("pgbench")
        .args(["--no-vacuum", "--protocol=prepared", "--jobs=2"])
        .arg(format!("--client={clients}"))
        .arg(format!("--time={seconds}"))
        .arg(format!("--file={}", script_file.display()))
        .arg(url)
        .output()
        .context("pgbench (Debian: postgresql-client)")?;
    let report = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        bail!(
            "pgbench failed: {}{}",
            report,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let figure = |prefix: &str| -> anyhow::Result<f64> {
        let line = report
            .lines()
            .find(|l| l.starts_with(prefix))
            .with_context(|| format!("pgbench printed no `{prefix}`"))?;
        let number = line[prefix.len()..]
            .split_whitespace()
            .next()
            .context("a number")?;
        Ok(number.parse()?)
    };
    let measured = RawInserts {
        per_second: figure("tps = ")?,
        latency_ms: figure("latency average = ")?,
        rows,
    };
    psql(url, &format!("DROP SCHEMA {SCHEMA} CASCADE"))?;
    Ok(measured)
}

/// One multi-row `INSERT` of `rows` into the schema's copy of `table`, with the sample's id
/// replaced by a fresh one per transaction.
fn insert(
    table: &str,
    rows: &[serde_json::Map<String, serde_json::Value>],
) -> anyhow::Result<String> {
    let columns: Vec<&String> = rows[0].keys().collect();
    let fresh_id = "'b-' || :client_id || '-' || :n";
    let mut values = Vec::new();
    for row in rows {
        let mut literals = Vec::new();
        for column in &columns {
            let value = &row[column.as_str()];
            literals.push(match (column.as_str(), value) {
                ("id", _) => fresh_id.to_owned(),
                ("owner", _) if table == "data_key" => format!("'Patient/' || {fresh_id}"),
                (_, serde_json::Value::Null) => "NULL".to_owned(),
                (_, serde_json::Value::String(text)) => quote(text),
                (_, other) => other.to_string(),
            });
        }
        values.push(format!("({})", literals.join(", ")));
    }
    let columns: Vec<&str> = columns.iter().map(|c| c.as_str()).collect();
    Ok(format!(
        "INSERT INTO {SCHEMA}.{table} ({}) VALUES {};\n",
        columns.join(", "),
        values.join(", ")
    ))
}

/// A SQL string literal.
fn quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// Runs `sql` with psql; its unaligned output.
fn psql(url: &str, sql: &str) -> anyhow::Result<String> {
    let output = Command::new("psql")
        .args([
            url,
            "-X",
            "-q",
            "-A",
            "-t",
            "-v",
            "ON_ERROR_STOP=1",
            "-c",
            sql,
        ])
        .output()?;
    if !output.status.success() {
        bail!("psql failed: {}", String::from_utf8_lossy(&output.stderr));
    }
    Ok(String::from_utf8(output.stdout)?)
}
