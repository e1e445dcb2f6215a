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
    /// The raw floors, in resources per second.
    pub(super) raw: Raw,
}

/// How fast PostgreSQL alone takes the rows an ingest wrote.
pub(super) struct Raw {
    pub(super) rows: u64,
    /// Multi-row INSERTs of them (1,000 rows per statement), one transaction: the baseline the
    /// target is judged against, the statement Cairn itself uses.
    pub(super) insert_seconds: f64,
    /// COPY of them, one transaction: the fastest way into PostgreSQL, shown for scale.
    pub(super) copy_seconds: f64,
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
    eprintln!(
        "bench: {BUNDLES}: {:.1} s, {:.0} resources/s",
        seconds,
        data.resources as f64 / seconds
    );
    drop(server);
    Ok(Ingested {
        name: BUNDLES,
        resources: data.resources,
        seconds,
        raw: raw_floors(&url, &dir)?,
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
    Ok(Ingested {
        name: IMPORT,
        resources: data.resources,
        seconds,
        raw: raw_floors(&url, &dir)?,
    })
}

/// Dumps every row of [`TABLES`] out of `url`, then times loading them into `LIKE` copies
/// (in a schema of their own), once by multi-row INSERTs and once by COPY, each in one
/// transaction.
fn raw_floors(url: &str, work: &Path) -> anyhow::Result<Raw> {
    // The sequencer may still be moving the last entries from the intake: let it finish.
    std::thread::sleep(Duration::from_secs(2));
    // Each script runs in one transaction (`psql -1`).
    let mut copy = String::new();
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
        writeln!(copy, "\\copy {SCHEMA}.{table} FROM '{}'", file.display())?;
    }
    let copy_script = work.join("raw-copy.sql");
    std::fs::write(&copy_script, copy)?;
    let insert_script = work.join("raw-insert.sql");
    let mut dump = Command::new("pg_dump");
    dump.args([
        "--data-only",
        "--inserts",
        "--rows-per-insert=1000",
        "--no-owner",
    ]);
    for table in TABLES {
        dump.arg(format!("--table=public.{table}"));
    }
    let dumped = dump.arg(url).output().context("pg_dump")?;
    if !dumped.status.success() {
        bail!(
            "pg_dump failed: {}",
            String::from_utf8_lossy(&dumped.stderr)
        );
    }
    let inserts = String::from_utf8(dumped.stdout)?
        .replace("INSERT INTO public.", &format!("INSERT INTO {SCHEMA}."));
    std::fs::write(&insert_script, inserts)?;
    eprintln!("bench: raw INSERT and COPY of the same {rows} rows");
    let timed = |script: &Path| -> anyhow::Result<f64> {
        let mut setup = format!("DROP SCHEMA IF EXISTS {SCHEMA} CASCADE; CREATE SCHEMA {SCHEMA};");
        for table in TABLES {
            write!(
                setup,
                "CREATE TABLE {SCHEMA}.{table} (LIKE public.{table} INCLUDING ALL);"
            )?;
        }
        psql(url, &setup)?;
        let started = Instant::now();
        let status = Command::new("psql")
            .args([url, "-X", "-q", "-1", "-v", "ON_ERROR_STOP=1", "-f"])
            .arg(script)
            .stdout(Stdio::null())
            .status()
            .context("psql")?;
        let seconds = started.elapsed().as_secs_f64();
        if !status.success() {
            bail!("the raw load {} failed", script.display());
        }
        Ok(seconds)
    };
    let insert_seconds = timed(&insert_script)?;
    let copy_seconds = timed(&copy_script)?;
    psql(url, &format!("DROP SCHEMA {SCHEMA} CASCADE"))?;
    Ok(Raw {
        rows,
        insert_seconds,
        copy_seconds,
    })
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
        let rate = |seconds: f64| figure.resources as f64 / seconds.max(1e-9);
        let (insert, copy) = (
            rate(figure.raw.insert_seconds),
            rate(figure.raw.copy_seconds),
        );
        let ratio = figure.per_second() / insert;
        let met = figure.per_second() >= target && ratio >= 0.5;
        let _ = writeln!(
            out,
            "| {} | {:.0} resources/s ({} in {:.1} s) | multi-row INSERT of its {} rows: {insert:.0} resources/s (COPY: {copy:.0}, ratio {:.2}) | {ratio:.2} | ≥ {target:.0} resources/s and ≥ 0.5 | {} |",
            figure.name,
            figure.per_second(),
            figure.resources,
            figure.seconds,
            figure.raw.rows,
            figure.per_second() / copy,
            if met { "yes" } else { "no" }
        );
    }
    out
}
