//! `cargo xtask bench`: Cairn's HTTP performance on a realistic data set, measured the way a
//! client sees it, each figure judged against its target and, where it has one, a baseline
//! measured in the same run.
//!
//! Builds the release binary, starts `cairn serve` on a fresh database (PostgreSQL by default,
//! or the embedded SQLite) and creates `--patients` Patients (default 100,000) through the API
//! with `--clients` concurrent clients (default 16). On PostgreSQL it then replays one create's
//! rows with `pgbench`, on SQLite through one connection (the raw INSERT baseline,
//! `baseline.rs`, `sqlite_baseline.rs`). Then, for `--seconds` each
//! (default 20), the phases of [`PHASES`]: reads, identifier searches, compound and name
//! searches, a counted search, paced loads; last the reads again from a server restarted with
//! audit off (the reads' baseline). Prints every phase's throughput and latency percentiles,
//! then the targets met or not (`targets.rs`), as Markdown tables.
//!
//! Options: `--patients N`, `--clients N`, `--seconds N`, `--sqlite`,
//! `--postgres URL` (an admin URL; default `postgres://postgres@localhost/postgres?host=/var/run/postgresql`,
//! the local server's Unix socket, as a co-located database is reached),
//! `--only TEXT` (only the phases whose name contains TEXT, e.g. `search`, or the one phase
//! named TEXT in full, e.g. `read Patient`; several separated by `;`, e.g. `read Patient;read
//! Patient, audit off`),
//! `--reuse` (measure again on the previous run's database and keyring, without loading),
//! `--ingest-patients N` (default 300: the generated patients of the ingest phases, `ingest.rs`,
//! which run on PostgreSQL on databases of their own; `--only ingest;import` runs just them).

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};

mod baseline;
mod clients;
mod ingest;
mod server;
mod sqlite_baseline;
mod targets;
mod workload;

use clients::{Phase, paced, server_latencies, timed};
use server::{Server, database_url, free_port, fresh_postgres_database, release_build};
use workload::{Ask, Load, http_client, load, read_ids, write_ids};

const BENCH_DATABASE: &str = "cairn_bench";
/// The local PostgreSQL through its Unix socket: no TCP stack and no TLS between two processes
/// on one host (over TCP, libpq and sqlx negotiate TLS when the server offers it).
const DEFAULT_POSTGRES: &str = "postgres://postgres@localhost/postgres?host=/var/run/postgresql";
/// The loaded patients, `n<TAB>id` per line, for `--reuse`.
const IDS_FILE: &str = "patients.tsv";
/// The server's database file in the work directory, with `--sqlite`.
const SQLITE_FILE: &str = "cairn.db";

/// The measured phases after the load, in the order they run, with what each asks and how.
/// `--only` with one of these names in full runs that phase alone (`read Patient` is also part
/// of other names); other text selects every phase whose name contains it. The audited `read
/// Patient` runs last, just before the server is restarted without audit for its baseline, so
/// that the two are measured minutes apart at most.
const PHASES: [(&str, Ask, Load); 10] = [
    ("read Patient, 1 client", Ask::Read, Load::Closed(1)),
    (
        "search identifier=system|value",
        Ask::Identifier,
        Load::Closed(0),
    ),
    (
        "search identifier=system|value, 1 client",
        Ask::Identifier,
        Load::Closed(1),
    ),
    (
        "search family=prefix & birthdate=year",
        Ask::FamilyAndBirthYear,
        Load::Closed(0),
    ),
    ("search name=prefix", Ask::NamePrefix, Load::Closed(0)),
    (
        "search given & family",
        Ask::GivenAndFamily,
        Load::Closed(0),
    ),
    (
        "search given, _total=accurate, 1 client",
        Ask::GivenTotal,
        Load::Closed(1),
    ),
    (
        "read Patient, 2,000/s over the clients",
        Ask::Read,
        Load::Paced(2_000),
    ),
    (
        "search identifier, 1,000/s over the clients",
        Ask::Identifier,
        Load::Paced(1_000),
    ),
    ("read Patient", Ask::Read, Load::Closed(0)),
];
/// The baseline of `read Patient`: the same reads from a server that records none.
const UNAUDITED_READ: &str = "read Patient, audit off";
const CREATE: &str = "create Patient";

struct Options {
    patients: u64,
    clients: u64,
    seconds: u64,
    postgres: Option<String>,
    reuse: bool,
    /// Only the phases whose name contains this.
    only: Option<String>,
    /// Patients for the ingest phases (transaction Bundles, `cairn import`).
    ingest_patients: u64,
}

fn options(args: &[String]) -> anyhow::Result<Options> {
    let mut options = Options {
        patients: 100_000,
        clients: 16,
        seconds: 20,
        postgres: Some(DEFAULT_POSTGRES.to_owned()),
        reuse: false,
        only: None,
        ingest_patients: 1_000,
    };
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        let mut value = || args.next().context("a value after the option");
        match arg.as_str() {
            "--patients" => options.patients = value()?.parse()?,
            "--clients" => options.clients = value()?.parse()?,
            "--seconds" => options.seconds = value()?.parse()?,
            "--sqlite" => options.postgres = None,
            "--postgres" => options.postgres = Some(value()?.clone()),
            "--reuse" => options.reuse = true,
            "--only" => options.only = Some(value()?.clone()),
            "--ingest-patients" => options.ingest_patients = value()?.parse()?,
            other => bail!("unknown option {other}"),
        }
    }
    if options.patients == 0 || options.clients == 0 {
        bail!("--patients and --clients must be at least 1");
    }
    Ok(options)
}

pub fn run(root: &Path, args: &[String]) -> anyhow::Result<()> {
    let options = options(args)?;
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| root.join("target"), std::path::PathBuf::from);
    if cfg!(debug_assertions) {
        // `cargo xtask` is a debug build, and the load generator shares the two cores with the
        // server and PostgreSQL: unoptimized, it took a third of the CPU and queued the very
        // requests it timed. Measure from an optimized build of this same command instead.
        // (Two builds, not one `-p cairn -p xtask`: that would unify their dependencies'
        // features and the server measured would not be the one `cargo build -p cairn` makes.)
        // The server with the `unaudited-benchmark` switch (inert unless
        // CAIRN_UNAUDITED_BENCHMARK=1), so one build measures reads with and without audit.
        release_build(root, "cairn", &["--features", "unaudited-benchmark"])?;
        release_build(root, "xtask", &[])?;
        let status = Command::new(target.join("release/xtask"))
            .arg("bench")
            .args(args)
            .current_dir(root)
            .status()?;
        if !status.success() {
            bail!("the bench failed");
        }
        return Ok(());
    }
    let binary = target.join("release/cairn");
    // One work directory per backend: `--reuse` must find the ids of the database it reuses,
    // not those of the other backend's last run (their patients' ids differ: 404s).
    let work = target.join(if options.postgres.is_some() {
        "bench-run"
    } else {
        "bench-run-sqlite"
    });
    if options.reuse {
        if !work.join(IDS_FILE).exists() {
            bail!(
                "--reuse needs a previous complete run in {}",
                work.display()
            );
        }
    } else {
        if work.exists() {
            std::fs::remove_dir_all(&work)?;
        }
        std::fs::create_dir_all(&work)?;
    }
    let database_url = match &options.postgres {
        Some(admin) if options.reuse => database_url(admin),
        Some(admin) => fresh_postgres_database(admin)?,
        None => format!("sqlite://{}?mode=rwc", work.join(SQLITE_FILE).display()),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let run = Run {
        options: &options,
        binary: &binary,
        work: &work,
        database_url: &database_url,
    };
    let main_wanted = PHASES
        .iter()
        .map(|(name, ..)| *name)
        .chain([CREATE, UNAUDITED_READ])
        .any(|name| run.wanted(name));
    let (mut phases, raw) = if main_wanted {
        runtime.block_on(run.measure())?
    } else {
        (Vec::new(), None)
    };
    let ingested = runtime.block_on(run.ingest())?;
    if main_wanted {
        server_latencies(&work.join("server.log"), &mut phases)?;
    }
    let mut report = String::from(
        "| phase | requests | per second | p50 ms | p90 ms | p99 ms | max ms | server p50 ms | \
         server p99 ms |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for phase in &mut phases {
        report.push_str(&phase.row());
        report.push('\n');
    }
    if let Some(raw) = &raw {
        report.push_str(&format!(
            "| raw INSERT of a create's {} rows | | {:.0} | {:.2} (average) | | | | | |\n",
            raw.rows, raw.per_second, raw.latency_ms
        ));
    }
    let backend = if options.postgres.is_some() {
        "PostgreSQL"
    } else {
        "SQLite"
    };
    let mut verdicts = targets::verdicts(&mut phases, raw.as_ref(), options.patients);
    verdicts.push_str(&ingest::verdicts(&ingested));
    #[allow(clippy::print_stdout)] // the report is the command's output
    {
        println!(
            "\n{backend}, {} patients, {} concurrent clients, {} s per phase\n",
            options.patients, options.clients, options.seconds
        );
        println!("{report}");
        println!("{verdicts}");
    }
    Ok(())
}

/// One bench run: its options, the server binary, its work directory and database.
struct Run<'a> {
    options: &'a Options,
    binary: &'a Path,
    work: &'a Path,
    database_url: &'a str,
}

impl Run<'_> {
    /// Whether `--only` selects the phase `name`: any of its `;`-separated selections, each
    /// a phase's full name (that phase) or other text (every phase whose name contains it).
    fn wanted(&self, name: &str) -> bool {
        self.options.only.as_ref().is_none_or(|only| {
            let full_names: Vec<&str> = PHASES
                .iter()
                .map(|(n, ..)| *n)
                .chain([CREATE, UNAUDITED_READ, ingest::BUNDLES, ingest::IMPORT])
                .collect();
            only.split(';').map(str::trim).any(|selection| {
                if full_names.contains(&selection) {
                    name == selection
                } else {
                    name.contains(selection)
                }
            })
        })
    }

    /// Runs one phase of `ask` for the bench's `--seconds`.
    async fn phase(
        &self,
        name: &'static str,
        ask: Ask,
        load: Load,
        client: &reqwest::Client,
        base: &Arc<String>,
        ids: &Arc<Vec<(u64, String)>>,
    ) -> anyhow::Result<Phase> {
        eprintln!("bench: {name} for {} s", self.options.seconds);
        let duration = Duration::from_secs(self.options.seconds);
        let step = ask.step(base, ids);
        let measured = match load {
            Load::Closed(0) => timed(self.options.clients, client, duration, step).await?,
            Load::Closed(clients) => timed(clients, client, duration, step).await?,
            Load::Paced(rate) => paced(self.options.clients, rate, client, duration, step).await?,
        };
        Ok(phase(name, measured))
    }

    fn postgres(&self) -> bool {
        self.options.postgres.is_some()
    }

    /// The ingest phases (PostgreSQL only: their floor is a COPY), each on its own database.
    async fn ingest(&self) -> anyhow::Result<Vec<ingest::Ingested>> {
        let Some(admin) = &self.options.postgres else {
            return Ok(Vec::new());
        };
        let (bundles, import) = (self.wanted(ingest::BUNDLES), self.wanted(ingest::IMPORT));
        if !bundles && !import {
            return Ok(Vec::new());
        }
        let data = ingest::data(self.work, self.options.ingest_patients)?;
        let mut figures = Vec::new();
        if bundles {
            figures.push(
                ingest::bundles(self.binary, admin, self.work, &data, self.options.clients).await?,
            );
        }
        if import {
            figures.push(ingest::import(self.binary, admin, self.work, &data)?);
        }
        Ok(figures)
    }

    /// Loads (unless `--reuse`), measures the raw INSERT baseline and every wanted phase, then
    /// restarts the server without audit for the reads' baseline.
    async fn measure(&self) -> anyhow::Result<(Vec<Phase>, Option<baseline::RawInserts>)> {
        let options = self.options;
        let port = free_port()?;
        let base = Arc::new(format!("http://127.0.0.1:{port}"));
        let server = Server::start(
            self.binary,
            self.work,
            self.database_url,
            port,
            !options.reuse,
            true,
        )?;
        let client = http_client(&server.1, options.clients)?;
        let mut phases = Vec::new();
        let mut raw = None;
        let ids = if options.reuse {
            read_ids(&self.work.join(IDS_FILE))?
        } else {
            let (create, ids) = load(options, &client, &base).await?;
            phases.push(phase(CREATE, create));
            write_ids(&self.work.join(IDS_FILE), &ids)?;
            let sample = &ids.first().context("a created patient")?.1;
            if self.postgres() {
                self.vacuum_analyze()?;
                raw = Some(baseline::raw_inserts(
                    self.database_url,
                    sample,
                    options.clients,
                    options.seconds,
                    self.work,
                )?);
            } else if self.wanted(CREATE) {
                let file = self.work.join(SQLITE_FILE);
                raw = Some(
                    sqlite_baseline::raw_inserts(&file, sample, options.seconds, self.work).await?,
                );
            }
            ids
        };
        let ids = Arc::new(ids);
        self.warm_up(&client, &base, &ids).await?;
        for (name, ask, load) in PHASES {
            if self.wanted(name) {
                phases.push(self.phase(name, ask, load, &client, &base, &ids).await?);
            }
        }
        drop(server);
        if self.wanted(UNAUDITED_READ) {
            let server = Server::start(
                self.binary,
                self.work,
                self.database_url,
                port,
                false,
                false,
            )?;
            let client = http_client(&server.1, options.clients)?;
            let warm = Duration::from_millis(1_500);
            timed(options.clients, &client, warm, Ask::Read.step(&base, &ids)).await?;
            let load = Load::Closed(0);
            phases.push(
                self.phase(UNAUDITED_READ, Ask::Read, load, &client, &base, &ids)
                    .await?,
            );
        }
        Ok((phases, raw))
    }

    /// What autovacuum does in the minutes after a bulk load: statistics for the planner
    /// (without them it plans for empty tables) and visibility maps and hint bits for the new
    /// rows (without them the first reads of each page write it, and autovacuum competes with
    /// the measured phases). The server measured is one that has settled, not one still
    /// digesting its load.
    fn vacuum_analyze(&self) -> anyhow::Result<()> {
        eprintln!("bench: VACUUM ANALYZE after the load");
        let status = Command::new("psql")
            .args([self.database_url, "-q", "-c", "VACUUM (ANALYZE)"])
            .status()?;
        if !status.success() {
            bail!("VACUUM ANALYZE failed");
        }
        Ok(())
    }

    /// Not measured: opens the server's database connections and prepares its statements, and
    /// brings the data into the database's buffers, as a server that has been up a while has.
    async fn warm_up(
        &self,
        client: &reqwest::Client,
        base: &Arc<String>,
        ids: &Arc<Vec<(u64, String)>>,
    ) -> anyhow::Result<()> {
        eprintln!("bench: warming up");
        let warm = Duration::from_millis(1_000);
        for ask in [
            Ask::Read,
            Ask::Identifier,
            Ask::FamilyAndBirthYear,
            Ask::GivenAndFamily,
        ] {
            timed(self.options.clients, client, warm, ask.step(base, ids)).await?;
        }
        Ok(())
    }
}

/// `measured`, named.
fn phase(name: &'static str, measured: Phase) -> Phase {
    Phase { name, ..measured }
}
