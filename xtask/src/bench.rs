//! `cargo xtask bench`: Cairn's HTTP performance on a realistic data set, measured the way a
//! client sees it.
//!
//! Builds the release binary, starts `cairn serve` on a fresh database (PostgreSQL by default,
//! or the embedded SQLite), creates `--patients` Patients (default 100,000) through the API
//! with `--clients` concurrent clients (default 16), then for `--seconds` each (default 20)
//! reads random patients and searches random identifiers, with that many clients and with one
//! (latency without queueing), and searches family-name prefixes with birth years.
//! Prints the throughput and latency percentiles of each phase as a Markdown table.
//!
//! Options: `--patients N`, `--clients N`, `--seconds N`, `--sqlite`,
//! `--postgres URL` (an admin URL; default `postgres://postgres@localhost/postgres?host=/var/run/postgresql`,
//! the local server's Unix socket, as a co-located database is reached),
//! `--only TEXT` (only the phases whose name contains TEXT, e.g. `search`, or the one phase
//! named TEXT in full, e.g. `read Patient`),
//! `--reuse` (measure again on the previous run's database and keyring, without loading).

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, bail};

const IDENTIFIER_SYSTEM: &str = "urn:oid:2.16.840.1.113883.3.72.5.9.1";
const BENCH_DATABASE: &str = "cairn_bench";
/// The local PostgreSQL through its Unix socket: no TCP stack and no TLS between two processes
/// on one host (over TCP, libpq and sqlx negotiate TLS when the server offers it).
const DEFAULT_POSTGRES: &str = "postgres://postgres@localhost/postgres?host=/var/run/postgresql";

struct Options {
    patients: u64,
    clients: u64,
    seconds: u64,
    postgres: Option<String>,
    reuse: bool,
    /// Only the phases whose name contains this.
    only: Option<String>,
}

fn options(args: &[String]) -> anyhow::Result<Options> {
    let mut options = Options {
        patients: 100_000,
        clients: 16,
        seconds: 20,
        postgres: Some(DEFAULT_POSTGRES.to_owned()),
        reuse: false,
        only: None,
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
    let work = target.join("bench-run");
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
        None => format!("sqlite://{}/cairn.db?mode=rwc", work.display()),
    };
    let port = free_port()?;
    let server = Server::start(&binary, &work, &database_url, port, !options.reuse)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let analyze_url = options.postgres.is_some().then_some(database_url.as_str());
    let result = runtime.block_on(measure(
        &options,
        &server.1,
        &format!("http://127.0.0.1:{port}"),
        analyze_url,
        &work.join(IDS_FILE),
    ));
    drop(server);
    let mut phases = result?;
    server_latencies(&work.join("server.log"), &mut phases)?;
    let mut report = String::from(
        "| phase | requests | per second | p50 ms | p90 ms | p99 ms | max ms | server p50 ms | \
         server p99 ms |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for phase in &mut phases {
        report.push_str(&phase.row());
        report.push('\n');
    }
    let backend = if options.postgres.is_some() {
        "PostgreSQL"
    } else {
        "SQLite"
    };
    #[allow(clippy::print_stdout)] // the report is the command's output
    {
        println!(
            "\n{backend}, {} patients, {} concurrent clients, {} s per phase\n",
            options.patients, options.clients, options.seconds
        );
        println!("{report}");
    }
    Ok(())
}

fn release_build(root: &Path, package: &str, extra: &[&str]) -> anyhow::Result<()> {
    eprintln!("bench: building {package} (release)");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let status = Command::new(&cargo)
        .args(["build", "--release", "--locked", "-p", package])
        .args(extra)
        .current_dir(root)
        .status()?;
    if !status.success() {
        bail!("cargo build --release -p {package} failed");
    }
    Ok(())
}

/// Drops and recreates the bench database; returns its URL.
fn fresh_postgres_database(admin: &str) -> anyhow::Result<String> {
    for sql in [
        format!("DROP DATABASE IF EXISTS {BENCH_DATABASE} WITH (FORCE)"),
        format!("CREATE DATABASE {BENCH_DATABASE}"),
    ] {
        let status = Command::new("psql")
            .args([admin, "-q", "-c", &sql])
            .status()
            .context("cannot run psql")?;
        if !status.success() {
            bail!("psql failed: {sql}");
        }
    }
    Ok(database_url(admin))
}

/// The bench database's URL on the server of `admin` (its query, such as `?host=/socket/dir`,
/// kept).
fn database_url(admin: &str) -> String {
    let (location, query) = admin
        .split_once('?')
        .map_or((admin, None), |(location, query)| (location, Some(query)));
    let server = location
        .rsplit_once('/')
        .map_or(location, |(server, _database)| server);
    match query {
        Some(query) => format!("{server}/{BENCH_DATABASE}?{query}"),
        None => format!("{server}/{BENCH_DATABASE}"),
    }
}

/// The loaded patients, `n<TAB>id` per line, for `--reuse`.
const IDS_FILE: &str = "patients.tsv";

/// The measured phases, in the order they run. `--only` with one of these names in full runs
/// that phase alone (`read Patient` is also part of other names); other text selects every
/// phase whose name contains it.
const PHASES: [&str; 7] = [
    "read Patient",
    "read Patient, 1 client",
    "search identifier=system|value",
    "search identifier=system|value, 1 client",
    "search family=prefix & birthdate=year",
    "read Patient, 2,000/s over the clients",
    "search identifier, 1,000/s over the clients",
];

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// The server under test (and a bearer token for it); stopped when dropped.
struct Server(Child, String);

impl Server {
    fn start(
        binary: &Path,
        work: &Path,
        database_url: &str,
        port: u16,
        new_keyring: bool,
    ) -> anyhow::Result<Self> {
        let keyring = work.join("keyring.json");
        let log = std::fs::File::create(work.join("server.log"))?;
        let env = [
            ("CAIRN_DATABASE_URL", database_url.to_owned()),
            ("CAIRN_LISTEN", format!("127.0.0.1:{port}")),
            ("CAIRN_KEYRING", keyring.display().to_string()),
            ("CAIRN_LOG_FORMAT", "json".to_owned()),
            // The bench measures throughput, not the per-token throttle.
            ("CAIRN_RATE_LIMIT_PER_SECOND", "100000000".to_owned()),
            ("CAIRN_RATE_LIMIT_BURST", "100000000".to_owned()),
        ];
        if new_keyring {
            let status = Command::new(binary)
                .args(["keys", "init"])
                .envs(env.clone())
                .stdout(Stdio::null())
                .stderr(log.try_clone()?)
                .status()?;
            if !status.success() {
                bail!("cairn keys init failed (see {})", work.display());
            }
        }
        // A system token, as an integration feeding a registry would hold.
        let issued = Command::new(binary)
            .args([
                "token",
                "issue",
                "--sub",
                "service:bench",
                "--role",
                "system",
            ])
            .args(["--scope", "system/*.cruds", "--ttl", "1d"])
            .envs(env.clone())
            .stderr(log.try_clone()?)
            .output()?;
        if !issued.status.success() {
            bail!("cairn token issue failed (see {})", work.display());
        }
        let token = String::from_utf8(issued.stdout)?.trim().to_owned();
        let child = Command::new(binary)
            .arg("serve")
            .envs(env)
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()?;
        let server = Self(child, token);
        for _ in 0..300 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Ok(server);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        bail!(
            "the server did not start (see {}/server.log)",
            work.display()
        )
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Latencies of one phase, in microseconds, as the client saw them and as the server logged
/// them (from request arrival to response, without the client's side and the network).
struct Phase {
    name: &'static str,
    latencies: Vec<u64>,
    server: Vec<u64>,
    elapsed: Duration,
    window: (SystemTime, SystemTime),
}

/// The `q` quantile of sorted microseconds, in milliseconds.
fn quantile(sorted: &[u64], q: f64) -> f64 {
    let n = sorted.len();
    if n == 0 {
        return 0.0;
    }
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss
    )]
    let i = ((n as f64 * q).ceil() as usize).clamp(1, n) - 1;
    #[allow(clippy::cast_precision_loss)]
    let ms = sorted.get(i).copied().unwrap_or_default() as f64 / 1000.0;
    ms
}

impl Phase {
    fn row(&mut self) -> String {
        self.latencies.sort_unstable();
        self.server.sort_unstable();
        #[allow(clippy::cast_precision_loss)]
        let rate = self.latencies.len() as f64 / self.elapsed.as_secs_f64();
        format!(
            "| {} | {} | {rate:.0} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} |",
            self.name,
            self.latencies.len(),
            quantile(&self.latencies, 0.50),
            quantile(&self.latencies, 0.90),
            quantile(&self.latencies, 0.99),
            quantile(&self.latencies, 1.0),
            quantile(&self.server, 0.50),
            quantile(&self.server, 0.99),
        )
    }
}

/// Adds the server's logged latency of each request to the phase it fell in.
fn server_latencies(log: &Path, phases: &mut [Phase]) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(log)?;
    for line in text.lines() {
        let Ok(entry) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        let (Some("request"), Some(latency_ms), Some(at)) = (
            entry["message"].as_str(),
            entry["latency_ms"].as_f64(),
            entry["timestamp"].as_str(),
        ) else {
            continue;
        };
        let at: SystemTime =
            time::OffsetDateTime::parse(at, &time::format_description::well_known::Rfc3339)?.into();
        if let Some(phase) = phases
            .iter_mut()
            .find(|p| p.window.0 <= at && at <= p.window.1)
        {
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            phase.server.push((latency_ms * 1000.0) as u64);
        }
    }
    Ok(())
}

async fn measure(
    options: &Options,
    token: &str,
    base: &str,
    analyze_url: Option<&str>,
    ids_file: &Path,
) -> anyhow::Result<Vec<Phase>> {
    let mut headers = reqwest::header::HeaderMap::new();
    let mut bearer = reqwest::header::HeaderValue::from_str(&format!("Bearer {token}"))?;
    bearer.set_sensitive(true);
    headers.insert(reqwest::header::AUTHORIZATION, bearer);
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(usize::try_from(options.clients)?)
        .default_headers(headers)
        .build()?;
    let base = Arc::new(base.to_owned());

    let mut phases = Vec::new();
    let ids = if options.reuse {
        read_ids(ids_file)?
    } else {
        let (create, ids) = load(options, &client, &base).await?;
        phases.push(Phase {
            name: "create Patient",
            ..create
        });
        write_ids(ids_file, &ids)?;
        if let Some(url) = analyze_url {
            // What autovacuum does in the minutes after a bulk load: statistics for the
            // planner (without them it plans for empty tables) and visibility maps and hint
            // bits for the new rows (without them the first reads of each page write it, and
            // autovacuum competes with the measured phases). The server measured is one that
            // has settled, not one still digesting its load.
            eprintln!("bench: VACUUM ANALYZE after the load");
            let status = Command::new("psql")
                .args([url, "-q", "-c", "VACUUM (ANALYZE)"])
                .status()?;
            if !status.success() {
                bail!("VACUUM ANALYZE failed");
            }
        }
        ids
    };
    let ids = Arc::new(ids);
    let deadline = Duration::from_secs(options.seconds);
    let read = |base: Arc<String>, ids: Arc<Vec<(u64, String)>>| {
        move |client: reqwest::Client, seed: u64| {
            let (base, ids) = (base.clone(), ids.clone());
            async move {
                let (_, id) = &ids[pick(seed, ids.len())];
                let response = client
                    .get(format!("{base}/fhir/Patient/{id}"))
                    .send()
                    .await?;
                if response.status() != 200 {
                    bail!("read answered {}", response.status());
                }
                response.bytes().await?;
                Ok(())
            }
        }
    };
    let identifier = |base: Arc<String>, ids: Arc<Vec<(u64, String)>>| {
        move |client: reqwest::Client, seed: u64| {
            let (base, ids) = (base.clone(), ids.clone());
            async move {
                let (n, id) = &ids[pick(seed, ids.len())];
                let response = client
                    .get(format!(
                        "{base}/fhir/Patient?identifier={IDENTIFIER_SYSTEM}|MRN-{n}"
                    ))
                    .send()
                    .await?;
                if response.status() != 200 {
                    bail!("search answered {}", response.status());
                }
                let bundle: serde_json::Value = response.json().await?;
                if bundle["entry"][0]["resource"]["id"].as_str() != Some(id) {
                    bail!("the identifier search did not find patient {n}");
                }
                Ok(())
            }
        }
    };
    let family = {
        let base = base.clone();
        move |client: reqwest::Client, seed: u64| {
            let base = base.clone();
            async move {
                let family = FAMILIES[pick(seed, FAMILIES.len())];
                let prefix = &family[..4];
                let response = client
                    .get(format!(
                        "{base}/fhir/Patient?family={prefix}&birthdate=19{:02}&_count=20",
                        (seed >> 8) % 100
                    ))
                    .send()
                    .await?;
                if response.status() != 200 {
                    bail!("search answered {}", response.status());
                }
                response.bytes().await?;
                Ok(())
            }
        }
    };
    let clients = options.clients;
    let wanted = |name: &str| {
        options.only.as_ref().is_none_or(|only| {
            if PHASES.contains(&only.as_str()) {
                name == only
            } else {
                name.contains(only.as_str())
            }
        })
    };
    // Not measured: opens the server's database connections and prepares its statements,
    // and brings the data into PostgreSQL's buffers, as a server that has been up a while has.
    eprintln!("bench: warming up for 4.5 s");
    for kind in [0, 1, 2] {
        let warm = Duration::from_millis(1_500);
        match kind {
            0 => timed(clients, &client, warm, read(base.clone(), ids.clone())).await?,
            1 => {
                timed(
                    clients,
                    &client,
                    warm,
                    identifier(base.clone(), ids.clone()),
                )
                .await?
            }
            _ => timed(clients, &client, warm, family.clone()).await?,
        };
    }
    for (name, n, kind) in [
        (PHASES[0], clients, 0),
        (PHASES[1], 1, 0),
        (PHASES[2], clients, 1),
        (PHASES[3], 1, 1),
        (PHASES[4], clients, 2),
    ] {
        if !wanted(name) {
            continue;
        }
        eprintln!("bench: {name} for {} s", options.seconds);
        let phase = match kind {
            0 => timed(n, &client, deadline, read(base.clone(), ids.clone())).await?,
            1 => timed(n, &client, deadline, identifier(base.clone(), ids.clone())).await?,
            _ => timed(n, &client, deadline, family.clone()).await?,
        };
        phases.push(Phase { name, ..phase });
    }
    // The same requests offered at a steady rate, as a registry's traffic arrives, rather than
    // as fast as the machine can answer: the latency a client sees below saturation.
    for (name, rate, kind) in [(PHASES[5], 2_000, 0), (PHASES[6], 1_000, 1)] {
        if !wanted(name) {
            continue;
        }
        eprintln!("bench: {name} for {} s", options.seconds);
        let phase = match kind {
            0 => {
                paced(
                    clients,
                    rate,
                    &client,
                    deadline,
                    read(base.clone(), ids.clone()),
                )
                .await?
            }
            _ => {
                let step = identifier(base.clone(), ids.clone());
                paced(clients, rate, &client, deadline, step).await?
            }
        };
        phases.push(Phase { name, ..phase });
    }
    Ok(phases)
}

/// Creates the patients through the API; returns the phase and each patient's (n, id).
async fn load(
    options: &Options,
    client: &reqwest::Client,
    base: &Arc<String>,
) -> anyhow::Result<(Phase, Vec<(u64, String)>)> {
    eprintln!("bench: creating {} patients", options.patients);
    let next = Arc::new(AtomicU64::new(0));
    let ids = Arc::new(std::sync::Mutex::new(Vec::new()));
    let create = {
        let (base, next, ids) = (base.clone(), next.clone(), ids.clone());
        let total = options.patients;
        run_clients(options.clients, client, move |client| {
            let (base, next, ids) = (base.clone(), next.clone(), ids.clone());
            async move {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= total {
                    return Ok(false);
                }
                let response = client
                    .post(format!("{base}/fhir/Patient"))
                    .header("content-type", "application/fhir+json")
                    .header("prefer", "return=minimal")
                    .body(patient(n).to_string())
                    .send()
                    .await?;
                if response.status() != 201 {
                    bail!("create answered {}", response.status());
                }
                let location = response.headers()["location"].to_str()?.to_owned();
                let id = location
                    .split("/Patient/")
                    .nth(1)
                    .and_then(|rest| rest.split('/').next())
                    .context("a Location naming the patient")?
                    .to_owned();
                ids.lock()
                    .map_err(|_| anyhow::anyhow!("poisoned"))?
                    .push((n, id));
                Ok(true)
            }
        })
        .await?
    };
    let ids = ids.lock().map_err(|_| anyhow::anyhow!("poisoned"))?.clone();
    Ok((create, ids))
}

fn write_ids(path: &Path, ids: &[(u64, String)]) -> anyhow::Result<()> {
    let text: String = ids.iter().map(|(n, id)| format!("{n}\t{id}\n")).collect();
    Ok(std::fs::write(path, text)?)
}

fn read_ids(path: &Path) -> anyhow::Result<Vec<(u64, String)>> {
    std::fs::read_to_string(path)?
        .lines()
        .map(|line| {
            let (n, id) = line.split_once('\t').context("n<TAB>id")?;
            Ok((n.parse()?, id.to_owned()))
        })
        .collect()
}

/// Runs `clients` loops of `step` until a step returns `false`; times every step.
async fn run_clients<F, Fut>(
    clients: u64,
    client: &reqwest::Client,
    step: F,
) -> anyhow::Result<Phase>
where
    F: Fn(reqwest::Client) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = anyhow::Result<bool>> + Send,
{
    let started = Instant::now();
    let window_start = SystemTime::now();
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (client, step) = (client.clone(), step.clone());
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            loop {
                let at = Instant::now();
                if !step(client.clone()).await? {
                    return anyhow::Ok(latencies);
                }
                latencies.push(u64::try_from(at.elapsed().as_micros())?);
            }
        }));
    }
    gather(tasks, started, window_start).await
}

/// Runs `clients` loops of `step` for `duration`; times every step.
async fn timed<F, Fut>(
    clients: u64,
    client: &reqwest::Client,
    duration: Duration,
    step: F,
) -> anyhow::Result<Phase>
where
    F: Fn(reqwest::Client, u64) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = anyhow::Result<()>> + Send,
{
    let counter = Arc::new(AtomicU64::new(0));
    let end = Instant::now() + duration;
    run_clients(clients, client, move |client| {
        let (step, counter) = (step.clone(), counter.clone());
        async move {
            if Instant::now() >= end {
                return Ok(false);
            }
            // A different pseudo-random patient each request, the same sequence every run.
            let seed = counter
                .fetch_add(1, Ordering::Relaxed)
                .wrapping_mul(0x9E37_79B9_7F4A_7C15);
            step(client, seed >> 17).await?;
            Ok(true)
        }
    })
    .await
}

/// Runs `clients` concurrent clients that together start `rate` steps a second on a fixed
/// schedule (open loop) for `duration`. A step that could not start on time because its client
/// was still waiting for the previous answer is timed from its scheduled start, so a server
/// that falls behind is charged for the queue it causes (no coordinated omission); one that
/// starts late only because the generator's timer woke late (tokio's timers tick in whole
/// milliseconds) is timed from its actual start.
async fn paced<F, Fut>(
    clients: u64,
    rate: u64,
    client: &reqwest::Client,
    duration: Duration,
    step: F,
) -> anyhow::Result<Phase>
where
    F: Fn(reqwest::Client, u64) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = anyhow::Result<()>> + Send,
{
    let started = Instant::now();
    let window_start = SystemTime::now();
    let interval = Duration::from_secs(1) / u32::try_from(rate.max(1)).unwrap_or(u32::MAX);
    let total = duration.as_nanos() / interval.as_nanos().max(1);
    let total = u64::try_from(total)?;
    let mut tasks = Vec::new();
    for first in 0..clients {
        let (client, step) = (client.clone(), step.clone());
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            // Client `first` takes steps first, first + clients, …: the schedule interleaved.
            let mut n = first;
            let mut free = started;
            while n < total {
                let scheduled = started + interval * u32::try_from(n)?;
                tokio::time::sleep_until(scheduled.into()).await;
                let from = if free > scheduled {
                    scheduled
                } else {
                    Instant::now()
                };
                step(client.clone(), n.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 17).await?;
                free = Instant::now();
                latencies.push(u64::try_from(free.duration_since(from).as_micros())?);
                n += clients;
            }
            anyhow::Ok(latencies)
        }));
    }
    gather(tasks, started, window_start).await
}

/// The phase the client tasks started at `started` measured.
async fn gather(
    tasks: Vec<tokio::task::JoinHandle<anyhow::Result<Vec<u64>>>>,
    started: Instant,
    window_start: SystemTime,
) -> anyhow::Result<Phase> {
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await??);
    }
    Ok(Phase {
        name: "",
        latencies,
        server: Vec::new(),
        elapsed: started.elapsed(),
        window: (window_start, SystemTime::now()),
    })
}

fn pick(seed: u64, len: usize) -> usize {
    usize::try_from(seed % u64::try_from(len).unwrap_or(1)).unwrap_or(0)
}

const FAMILIES: [&str; 16] = [
    "Johnson",
    "Williams",
    "Garcia",
    "Martinez",
    "Anderson",
    "Thompson",
    "Robinson",
    "Rodriguez",
    "Hernandez",
    "Nakamura",
    "Okafor",
    "Kowalski",
    "Lindqvist",
    "Fitzgerald",
    "Castellano",
    "Abernathy",
];
const GIVEN: [&str; 12] = [
    "Olivia", "Liam", "Amara", "Noah", "Sofia", "Mateo", "Aisha", "Lucas", "Yuki", "Elena",
    "Kwame", "Ingrid",
];

/// A realistic registry Patient, different for each `n`.
fn patient(n: u64) -> serde_json::Value {
    let mix = n.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 20;
    // Each attribute from its own bits of `mix`, so that they vary independently.
    let family = FAMILIES[pick(mix, FAMILIES.len())];
    let given = GIVEN[pick(mix >> 4, GIVEN.len())];
    let gender = ["female", "male", "other", "unknown"][pick(mix >> 8, 4)];
    let (year, month, day) = (
        (mix >> 10) % 100,
        1 + (mix >> 17) % 12,
        1 + (mix >> 21) % 28,
    );
    serde_json::json!({
        "resourceType": "Patient",
        "identifier": [
            {"use": "usual", "system": IDENTIFIER_SYSTEM, "value": format!("MRN-{n}")},
            {"system": "http://hl7.org/fhir/sid/us-ssn", "value": format!("{:09}", (mix >> 26) % 1_000_000_000)}
        ],
        "active": true,
        "name": [{"use": "official", "family": family, "given": [given, "Marie"]}],
        "telecom": [{"system": "phone", "value": format!("+1 555 {:04}", n % 10_000), "use": "home"}],
        "gender": gender,
        "birthDate": format!("19{year:02}-{month:02}-{day:02}"),
        "address": [{"line": [format!("{} Main Street", n % 997)], "city": "Springfield",
                     "state": "IL", "postalCode": format!("62{:03}", n % 1000), "country": "US"}],
        "managingOrganization": {"reference": "Organization/registry"}
    })
}
