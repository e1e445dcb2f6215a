//! `cairn`: the Cairn FHIR server and its administration commands.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use cairn::{Config, LogFormat};
use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

/// Cairn: a compliance-first FHIR R4 server for patient and immunization records.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    /// A configuration file (default: ./cairn.toml if it exists). CAIRN_* variables override it.
    #[arg(long, global = true, env = "CAIRN_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the server (migrating the database first). Stops gracefully on Ctrl-C or SIGTERM.
    Serve,
    /// Apply pending database migrations and exit.
    Migrate,
    /// Master keys: create, inspect, rotate, retire.
    #[command(subcommand)]
    Keys(KeysCommand),
}

#[derive(Debug, Subcommand)]
enum KeysCommand {
    /// Create the keyring file with a fresh random master key (refuses to overwrite).
    Init,
    /// Master-key versions, their age, and how many data keys each wraps.
    Status,
    /// Add a new master-key version and rewrap every data key under it, online.
    Rotate,
    /// Remove master-key version V from the keyring; refused while any data key uses it.
    Retire {
        /// The version to retire.
        version: u32,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let config = Config::load(cli.config.as_deref())?;
    init_tracing(config.log_format);
    match cli.command {
        Command::Serve => serve(&config).await,
        Command::Keys(command) => keys(&config, command).await,
        Command::Migrate => {
            let store = cairn::open_store(&config).await?;
            tracing::info!(backend = ?store.backend(), "migrations applied");
            store.close().await;
            Ok(())
        }
    }
}

async fn keys(config: &Config, command: KeysCommand) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    match command {
        KeysCommand::Init => {
            cairn::keys::init(config)?;
            writeln!(
                out,
                "created {}; back it up now, apart from the database",
                config.keyring.display()
            )?;
        }
        KeysCommand::Status => {
            let now = time::OffsetDateTime::now_utc();
            writeln!(
                out,
                "{:>7}  {:<6}  {:>9}  {:>10}  created",
                "version", "state", "data keys", "age (days)"
            )?;
            for v in cairn::keys::status(config).await? {
                let state = if v.active { "active" } else { "old" };
                let (age, created) = match v.created {
                    Some(at) => ((now - at).whole_days().to_string(), records::instant(at)),
                    None if v.data_keys > 0 && !v.active => {
                        ("?".to_owned(), "MISSING FROM KEYRING".to_owned())
                    }
                    None => ("?".to_owned(), "from CAIRN_MASTER_KEY".to_owned()),
                };
                writeln!(
                    out,
                    "{:>7}  {state:<6}  {:>9}  {age:>10}  {created}",
                    v.version, v.data_keys
                )?;
            }
        }
        KeysCommand::Rotate => {
            let (version, report) = cairn::keys::rotate(config).await?;
            writeln!(
                out,
                "master key version {version} is active; {} data key(s) rewrapped ({} changed meanwhile)",
                report.rewrapped, report.skipped
            )?;
        }
        KeysCommand::Retire { version } => {
            cairn::keys::retire(config, version).await?;
            writeln!(out, "master key version {version} retired")?;
        }
    }
    Ok(())
}

async fn serve(config: &Config) -> anyhow::Result<()> {
    let mut running = cairn::start(config).await?;
    if let Some(trigger) = running.take_shutdown_trigger() {
        tokio::spawn(async move {
            shutdown_signal().await;
            tracing::info!("shutdown signal received; finishing in-flight requests");
            let _ = trigger.send(());
        });
    }
    running
        .wait()
        .await
        .context("cairn stopped with an error")?;
    tracing::info!("cairn stopped");
    Ok(())
}

/// Ctrl-C, or SIGTERM on Unix.
async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
}

/// Logs to stderr: human-readable by default, JSON lines with CAIRN_LOG_FORMAT=json. RUST_LOG
/// filters (default: info for Cairn, warnings for the database drivers).
fn init_tracing(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn,sea_orm=warn,sea_orm_migration=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .init(),
        LogFormat::Human => builder.init(),
    }
}
