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
    /// Access tokens: issue, attenuate, revoke, list.
    #[command(subcommand)]
    Token(TokenCommand),
    /// The tamper-evident audit log: verify, export, print its key.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Load NDJSON (.ndjson, .ndjson.gz) and Bundle (.json) files or directories through the
    /// same checks as the API, in one database transaction per chunk. Re-running the same
    /// command after an interruption finishes the import without duplicating anything.
    Import {
        /// Files or directories (walked in name order).
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// At a resource that cannot be stored: stop (its chunk is not stored; chunks already
        /// in flight finish), or skip it.
        #[arg(long, value_enum, default_value = "stop")]
        on_error: cairn::import::OnError,
        /// Resources per database transaction (a Bundle file is never split).
        #[arg(long, default_value_t = 2000)]
        chunk: usize,
        /// Chunks stored at once, each in its own transaction.
        #[arg(long, default_value_t = 3)]
        jobs: usize,
    },
}

#[derive(Debug, Subcommand)]
enum AuditCommand {
    /// Check every checkpoint signature, every entry against its leaf and chain hashes, that
    /// no entry is missing or out of order, and every checkpoint's root against the tree
    /// recomputed from all entries. Exit 0 when sound; otherwise exit 2 naming the first bad
    /// entry or checkpoint.
    Verify {
        /// Check an export file (from `cairn audit export`) instead; no database needed.
        #[arg(long)]
        file: Option<PathBuf>,
        /// The log's verifier key (vkey) as published; for --file, the file's own key is used
        /// if not given (compare it with the published one).
        #[arg(long)]
        key: Option<String>,
    },
    /// Write every sequenced entry and every checkpoint to a file (JSON lines) that
    /// `cairn audit verify --file` checks with no database.
    Export {
        /// Where to write it.
        #[arg(long)]
        out: PathBuf,
    },
    /// Print the log's verifier key (vkey), to publish to auditors.
    Key,
}

#[derive(Debug, Subcommand)]
enum TokenCommand {
    /// Sign a token and print it; the issuance is recorded (never the token).
    Issue(cairn::tokens::IssueRequest),
    /// Narrow a token offline (no key, no database): print the attenuated token.
    Attenuate {
        /// The token to narrow.
        token: String,
        /// Confine it to one patient's compartment: Patient/<id>.
        #[arg(long)]
        patient: Option<String>,
        /// Expire sooner: 1h, 15m.
        #[arg(long)]
        ttl: Option<String>,
        /// Reads and searches only.
        #[arg(long)]
        read_only: bool,
    },
    /// Revoke every token of a subject, or one revocation id; running servers refuse them
    /// within their revocation poll interval.
    Revoke {
        /// Every token issued to this subject.
        #[arg(long = "sub", conflicts_with = "id", required_unless_present = "id")]
        subject: Option<String>,
        /// One revocation id (hex, from `cairn token list`).
        #[arg(long)]
        id: Option<String>,
        /// Why, for the record.
        #[arg(long, default_value = "revoked by an administrator")]
        reason: String,
    },
    /// Issued tokens for access reviews: active ones, or --all.
    List {
        /// Only this subject's.
        #[arg(long = "sub")]
        subject: Option<String>,
        /// Include expired and revoked tokens.
        #[arg(long)]
        all: bool,
    },
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
        Command::Token(command) => token(&config, command).await,
        Command::Audit(command) => audit(&config, command).await,
        Command::Import {
            paths,
            on_error,
            chunk,
            jobs,
        } => {
            let options = cairn::import::ImportOptions {
                paths,
                on_error,
                chunk: chunk.max(1),
                jobs: jobs.max(1),
            };
            cairn::import::run(&config, &options).await.map(|_| ())
        }
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

async fn token(config: &Config, command: TokenCommand) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    match command {
        TokenCommand::Issue(request) => {
            let issued = cairn::tokens::issue(config, &request).await?;
            writeln!(out, "{}", issued.token.expose())?;
            eprintln!(
                "token id {} (revoke with `cairn token revoke --id {}`), expires {}",
                issued.token_id(),
                issued.token_id(),
                records::instant(issued.claims.expires_at)
            );
        }
        TokenCommand::Attenuate {
            token,
            patient,
            ttl,
            read_only,
        } => {
            let narrowed = cairn::tokens::attenuate(&token, patient, ttl.as_deref(), read_only)?;
            writeln!(out, "{}", narrowed.expose())?;
        }
        TokenCommand::Revoke {
            subject,
            id,
            reason,
        } => {
            let which = match (subject, id) {
                (Some(subject), _) => cairn::tokens::Revoke::Subject(subject),
                (None, Some(id)) => cairn::tokens::Revoke::Id(id),
                (None, None) => anyhow::bail!("give --sub or --id"),
            };
            let added = cairn::tokens::revoke(config, &which, &reason).await?;
            writeln!(out, "{added} revocation id(s) added")?;
        }
        TokenCommand::List { subject, all } => {
            writeln!(
                out,
                "{:<24}  {:<9}  {:<19}  {:<19}  {:<7}  {:<28}  token id",
                "subject", "role", "issued", "expires", "state", "scopes (patient)"
            )?;
            let now = time::OffsetDateTime::now_utc();
            for i in cairn::tokens::list(config, subject.as_deref(), all).await? {
                let state = match (i.revoked_at, i.expires_at < now) {
                    (Some(_), _) => "revoked",
                    (None, true) => "expired",
                    (None, false) => "active",
                };
                let scopes = format!(
                    "{}{}",
                    i.scopes,
                    i.patient.map(|p| format!(" ({p})")).unwrap_or_default()
                );
                let day = |at| records::instant(at).chars().take(19).collect::<String>();
                writeln!(
                    out,
                    "{:<24}  {:<9}  {:<19}  {:<19}  {state:<7}  {scopes:<28}  {}",
                    i.subject,
                    i.role,
                    day(i.issued_at),
                    day(i.expires_at),
                    i.token_id,
                )?;
            }
        }
    }
    Ok(())
}

async fn audit(config: &Config, command: AuditCommand) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    let key = |text: Option<String>| {
        text.map(|k| audit_chain::VerifierKey::parse(&k))
            .transpose()
            .context("--key is not a verifier key (name+keyid+base64)")
    };
    let outcome = match command {
        AuditCommand::Verify {
            file: Some(file),
            key: given,
        } => {
            let given = key(given)?;
            let (header, outcome) = cairn::audit_log::verify_file(&file, given.as_ref())?;
            if given.is_none() {
                eprintln!(
                    "note: verified with the key in the file ({}); compare it with the published key",
                    header.vkey
                );
            }
            outcome
        }
        AuditCommand::Verify {
            file: None,
            key: given,
        } => {
            let (store, identity) = cairn::audit_log::open(config).await?;
            let key = key(given)?.unwrap_or(identity.key);
            let outcome = cairn::audit_log::verify_database(&store, &key, &identity.origin).await;
            store.close().await;
            outcome?
        }
        AuditCommand::Export { out: path } => {
            let (store, identity) = cairn::audit_log::open(config).await?;
            let file = std::fs::File::create(&path)
                .with_context(|| format!("cannot create {}", path.display()))?;
            let mut writer = std::io::BufWriter::new(file);
            let count = cairn::audit_log::export(&store, &identity, &mut writer).await;
            store.close().await;
            writeln!(out, "{} entries written to {}", count?, path.display())?;
            return Ok(());
        }
        AuditCommand::Key => {
            let (store, identity) = cairn::audit_log::open(config).await?;
            store.close().await;
            writeln!(out, "{}", identity.key.to_vkey())?;
            return Ok(());
        }
    };
    match outcome {
        Ok(verified) => {
            writeln!(
                out,
                "sound: {} entries, {} checkpoints (the newest signs {} entries), root {}",
                verified.entries,
                verified.checkpoints,
                verified.signed_size,
                verified.root.to_base64()
            )?;
            Ok(())
        }
        Err(tamper) => {
            writeln!(out, "TAMPERED: {tamper}")?;
            out.flush()?;
            std::process::exit(2);
        }
    }
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
