//! Issue 22's ingest phases, each on a fresh PostgreSQL database: `--ingest-patients`
//! generated patients (the `testdata` records) posted as one transaction Bundle each by
//! `--clients` concurrent clients, and `cairn import` of the same patients' NDJSON. Each is
//! judged against the raw floor measured in the same run: COPY of the very rows it wrote (every
//! table it wrote, the audit log's included) into `LIKE` copies of those tables, in one
//! transaction, with nothing else (no HTTP, JSON, validation, encryption or index computing).

use std::fmt::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use super::server::{Server, free_port, fresh_postgres_database_named};
use super::workload::http_client;

pub(super) const BUNDLES: &str = "ingest transaction Bundles";
pub(super) const IMPORT: &str = "cairn import NDJSON";

/// The tables an ingest writes rows to.
const TABLES: [&str; 11] = [
    "resource",
    "resource_version",
    "data_key",
    "search_blind",
    "search_token",
    "search_reference",
    "search_date",
    "search_string",
    "conditional_claim",
    "audit_intake",
    "audit_entry",
];

const SCHEMA: &str = "bench_copy";

/// One ingest phase's figures.
pub(super) struct Ingested {
    pub(super) name: &'static str,
    pub(super) resources: u64,
    pub(super) seconds: f64,
    /// The raw floor: the same rows COPYed, in resources per second.
    pub(super) raw_per_second: f64,
    pub(super) rows: u64,
}

impl Ingested {
    pub(super) fn per_second(&self) -> f64 {
        self.resources as f64 / self.seconds.max(1e-9)
    }
}

/// The generated patients, as Bundles and NDJSON, written once under `work`.
pub(super) struct Data {
    bundles: Vec<String>,
    ndjson: std::path::PathBuf,
    resources: u64,
}

pub(super) fn data(work: &Path, patients: u64) -> anyhow::Result<Data> {
    let dir = work.join("ingest-data");
    let resources = crate::gen_data::write(&dir, 22, patients)? as u64;
    let mut bundles = Vec::new();
    let mut files: Vec<_> = std::fs::read_dir(dir.join("bundles"))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    files.sort();
    for file in files {
        bundles.push(std::fs::read_to_string(file)?);
    }
    Ok(Data {
        bundles,
        ndjson: dir.join("ndjson"),
        resources,
    })
}

/// Posts every Bundle of `data` from `clients` concurrent clients to a fresh server.
pub(super) async fn bundles(
    binary: &Path,
    admin: &str,
    work: &Path,
    data: &Data,
    clients: u64,
) -> anyhow::Result<Ingested> {
    let url = fresh_postgres_database_named(admin, "cairn_bench_ingest")?;
    let dir = work.join("ingest-bundles");
    std::fs::create_dir_all(&dir)?;
    let port = free_port()?;
    let server = Server::start(binary, &dir, &url, port, true, true)?;
    let client = http_client(&server.1, clients)?;
    let endpoint = Arc::new(format!("http://127.0.0.1:{port}/fhir"));
    let bundles = Arc::new(data.bundles.clone());
    let next = Arc::new(AtomicUsize::new(0));
    eprintln!(
        "bench: {BUNDLES}: {} patients, {} resources, {clients} clients",
        bundles.len(),
        data.resources
    );
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (client, endpoint, bundles, next) = (
            client.clone(),
            Arc::clone(&endpoint),
            Arc::clone(&bundles),
            Arc::clone(&next),
        );
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(bundle) = bundles.get(i) else {
                    return anyhow::Ok(());
                };
                let answer = client
                    .post(endpoint.as_str())
                    .header("content-type", "application/fhir+json")
                    .header("prefer", "return=minimal")
                    .body(bundle.clone())
                    .send()
                    .await?;
                if answer.status() != 200 {
                    bail!("a transaction answered {}", answer.status());
                }
            }
        }));
    }
    for task in tasks {
        task.await??;
    }
    let seconds = started.elapsed().as_secs_f64();
    drop(server);
    let (raw_seconds, rows) = raw_copy(&url, &dir)?;
    Ok(Ingested {
        name: BUNDLES,
        resources: data.resources,
        seconds,
        raw_per_second: data.resources as f64 / raw_seconds,
        rows,
    })
}

/// `cairn import` of `data`'s NDJSON into a fresh database (migrated before the clock starts).
pub(super) fn import(
    binary: &Path,
    admin: &str,
    work: &Path,
    data: &Data,
) -> anyhow::Result<Ingested> {
    let url = fresh_postgres_database_named(admin, "cairn_bench_import")?;
    let dir = work.join("ingest-import");
    std::fs::create_dir_all(&dir)?;
    let env = [
        ("CAIRN_DATABASE_URL", url.clone()),
        (
            "CAIRN_KEYRING",
            dir.join("keyring.json").display().to_string(),
        ),
        ("CAIRN_LOG_FORMAT", "json".to_owned()),
    ];
    for args in [&["keys", "init"][..], &["migrate"][..]] {
        let status = Command::new(binary)
            .args(args)
            .envs(env.clone())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()?;
        if !status.success() {
            bail!("cairn {} failed", args.join(" "));
        }
    }
    eprintln!("bench: {IMPORT}: {} resources", data.resources);
    let started = Instant::now();
    let output = Command::new(binary)
        .arg("import")
        .arg(&data.ndjson)
        .envs(env)
        .stdout(Stdio::null())
        .output()?;
    let seconds = started.elapsed().as_secs_f64();
    let said = String::from_utf8_lossy(&output.stderr);
    if !output.status.success() {
        bail!("cairn import failed: {said}");
    }
    eprintln!("bench: {}", said.lines().last().unwrap_or_default());
    let (raw_seconds, rows) = raw_copy(&url, &dir)?;
    Ok(Ingested {
        name: IMPORT,
        resources: data.resources,
        seconds,
        raw_per_second: data.resources as f64 / raw_seconds,
        rows,
    })
}

/// COPYs every row of [`TABLES`] out of `url`, then times COPYing them into `LIKE` copies in
/// one transaction. Returns the seconds that took and the rows.
fn raw_copy(url: &str, work: &Path) -> anyhow::Result<(f64, u64)> {
    // The sequencer may still be moving the last entries from the intake: let it finish.
    std::thread::sleep(Duration::from_secs(2));
    let mut setup = format!("DROP SCHEMA IF EXISTS {SCHEMA} CASCADE; CREATE SCHEMA {SCHEMA};");
    let mut load = String::from("BEGIN;\n");
    let mut rows = 0;
    for table in TABLES {
        let file = work.join(format!("{table}.copy"));
        psql(
            url,
            &format!("\\copy public.{table} TO '{}'", file.display()),
        )?;
        rows += std::fs::read(&file)?
            .iter()
            .filter(|b| **b == b'\n')
            .count() as u64;
        write!(
            setup,
            "CREATE TABLE {SCHEMA}.{table} (LIKE public.{table} INCLUDING ALL);"
        )?;
        writeln!(load, "\\copy {SCHEMA}.{table} FROM '{}'", file.display())?;
    }
    load.push_str("COMMIT;\n");
    psql(url, &setup)?;
    let script = work.join("raw-copy.sql");
    std::fs::write(&script, load)?;
    eprintln!("bench: raw COPY of the same {rows} rows");
    let started = Instant::now();
    let status = Command::new("psql")
        .args([url, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-f"])
        .arg(&script)
        .status()
        .context("psql")?;
    let seconds = started.elapsed().as_secs_f64();
    if !status.success() {
        bail!("the raw COPY failed");
    }
    psql(url, &format!("DROP SCHEMA {SCHEMA} CASCADE"))?;
    Ok((seconds, rows))
}

fn psql(url: &str, sql: &str) -> anyhow::Result<()> {
    let output = Command::new("psql")
        .args([url, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-c", sql])
        .output()
        .context("psql")?;
    if !output.status.success() {
        bail!("psql failed: {}", String::from_utf8_lossy(&output.stderr));
    }
    Ok(())
}

/// Rows for the targets table.
pub(super) fn verdicts(ingested: &[Ingested]) -> String {
    let mut out = String::new();
    for figure in ingested {
        let target = if figure.name == BUNDLES {
            5_000.0
        } else {
            10_000.0
        };
        let ratio = figure.per_second() / figure.raw_per_second;
        let met = figure.per_second() >= target && ratio >= 0.5;
        let _ = writeln!(
            out,
            "| {} | {:.0} resources/s ({} in {:.1} s) | raw COPY of its {} rows: {:.0} resources/s | {ratio:.2} | ≥ {target:.0} resources/s and ≥ 0.5 | {} |",
            figure.name,
            figure.per_second(),
            figure.resources,
            figure.seconds,
            figure.rows,
            figure.raw_per_second,
            if met { "yes" } else { "no" }
        );
    }
    out
}
