//! The server under test: built, started on its own database, stopped.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, bail};

use super::BENCH_DATABASE;

pub(super) fn release_build(root: &Path, package: &str, extra: &[&str]) -> anyhow::Result<()> {
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
pub(super) fn fresh_postgres_database(admin: &str) -> anyhow::Result<String> {
    fresh_postgres_database_named(admin, BENCH_DATABASE)
}

/// Drops and recreates the database `name`; returns its URL.
pub(super) fn fresh_postgres_database_named(admin: &str, name: &str) -> anyhow::Result<String> {
    for sql in [
        format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
        format!("CREATE DATABASE {name}"),
    ] {
        let status = Command::new("psql")
            .args([admin, "-q", "-c", &sql])
            .status()
            .context("cannot run psql")?;
        if !status.success() {
            bail!("psql failed: {sql}");
        }
    }
    Ok(database_url_named(admin, name))
}

/// The bench database's URL on the server of `admin`.
pub(super) fn database_url(admin: &str) -> String {
    database_url_named(admin, BENCH_DATABASE)
}

/// The URL of database `name` on the server of `admin` (its query, such as
/// `?host=/socket/dir`, kept).
fn database_url_named(admin: &str, name: &str) -> String {
    let (location, query) = admin
        .split_once('?')
        .map_or((admin, None), |(location, query)| (location, Some(query)));
    let server = location
        .rsplit_once('/')
        .map_or(location, |(server, _database)| server);
    match query {
        Some(query) => format!("{server}/{name}?{query}"),
        None => format!("{server}/{name}"),
    }
}

pub(super) fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// The server under test (and a bearer token for it); stopped when dropped.
pub(super) struct Server(Child, pub(super) String);

impl Server {
    /// Starts `cairn serve`; `audited: false` starts it with the benchmark build's switch that
    /// records no reads (the baseline reads are measured against).
    pub(super) fn start(
        binary: &Path,
        work: &Path,
        database_url: &str,
        port: u16,
        new_keyring: bool,
        audited: bool,
    ) -> anyhow::Result<Self> {
        let keyring = work.join("keyring.json");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(work.join("server.log"))?;
        let mut env = vec![
            ("CAIRN_DATABASE_URL", database_url.to_owned()),
            ("CAIRN_LISTEN", format!("127.0.0.1:{port}")),
            ("CAIRN_KEYRING", keyring.display().to_string()),
            ("CAIRN_LOG_FORMAT", "json".to_owned()),
            // The bench measures throughput, not the per-token throttle.
            ("CAIRN_RATE_LIMIT_PER_SECOND", "100000000".to_owned()),
            ("CAIRN_RATE_LIMIT_BURST", "100000000".to_owned()),
        ];
        if !audited {
            env.push(("CAIRN_UNAUDITED_BENCHMARK", "1".to_owned()));
        }
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
