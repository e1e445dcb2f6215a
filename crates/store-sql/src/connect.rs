//! Connecting, configuring each backend, and migrating.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use migration::{Migrator, MigratorTrait};
use sea_orm::sqlx::sqlite::{SqliteJournalMode, SqliteSynchronous};
use sea_orm::{ConnectOptions, ConnectionTrait, Database, DatabaseConnection};

/// Which database a store runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Postgres,
    Sqlite,
}

/// Pool and timeout settings.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    pub max_connections: u32,
    pub acquire_timeout: Duration,
    /// PostgreSQL ends any statement that runs longer (its `statement_timeout`), so that a
    /// query whose request has already been answered with a timeout does not hold its
    /// connection on. `None`: no limit (migrations, CLI maintenance). SQLite has no equivalent;
    /// there the bounds on a search keep every statement short.
    pub statement_timeout: Option<Duration>,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            max_connections: 16,
            acquire_timeout: Duration::from_secs(5),
            statement_timeout: None,
        }
    }
}

/// Why a store could not be opened or migrated.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("unsupported database URL scheme (use postgres://… or sqlite://…)")]
    UnsupportedUrl,
    #[error("could not connect to the {0:?} database")]
    Connect(Backend, #[source] sea_orm::DbErr),
    #[error("could not migrate the {0:?} database")]
    Migrate(Backend, #[source] sea_orm::DbErr),
}

/// The sea-orm implementation of Cairn's storage ports.
#[derive(Debug, Clone)]
pub struct SqlStore {
    pub(crate) db: DatabaseConnection,
    backend: Backend,
    /// SQLite's sequencer lock (PostgreSQL uses an advisory lock in the database).
    pub(crate) sequencing: Arc<tokio::sync::Mutex<()>>,
    /// Batches taken off PostgreSQL's audit intake since it was last vacuumed.
    pub(crate) dequeued: Arc<AtomicU64>,
    /// Searches may hold all connections of the pool but one: however many slow searches run,
    /// reads, writes and the readiness check still get a connection.
    pub(crate) searches: Arc<tokio::sync::Semaphore>,
}

impl SqlStore {
    /// Opens a pool on `url` (`postgres://…`, or `sqlite://path?mode=rwc` to create the file).
    /// Does not migrate: call [`SqlStore::migrate`].
    pub async fn connect(url: &str, options: &StoreOptions) -> Result<Self, ConnectError> {
        let backend = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Backend::Postgres
        } else if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else {
            return Err(ConnectError::UnsupportedUrl);
        };
        let mut connect = ConnectOptions::new(url.to_owned());
        connect
            .max_connections(options.max_connections)
            .acquire_timeout(options.acquire_timeout)
            .connect_timeout(options.acquire_timeout)
            // sqlx pings every connection it hands out by default: a round trip per statement
            // that doubled the cost of a read. Ping only connections idle long enough to have
            // been dropped by the server or a middlebox; a connection that breaks in use fails
            // that one request and leaves the pool.
            .test_before_acquire_if_idle_for(Duration::from_secs(30))
            // sqlx would log every statement at info, bound values included: those may be PHI.
            .sqlx_logging(false);
        if let Some(timeout) = options.statement_timeout {
            connect.statement_timeout(timeout);
        }
        if backend == Backend::Sqlite {
            connect.map_sqlx_sqlite_opts(|opts| {
                opts.create_if_missing(true)
                    // WAL lets readers run beside the one writer; FULL syncs the WAL on every
                    // commit, so an acknowledged write survives power loss.
                    .journal_mode(SqliteJournalMode::Wal)
                    .synchronous(SqliteSynchronous::Full)
                    .busy_timeout(Duration::from_secs(10))
                    .foreign_keys(true)
            });
        }
        let db = Database::connect(connect)
            .await
            .map_err(|e| ConnectError::Connect(backend, e))?;
        let searches = options.max_connections.saturating_sub(1).max(1);
        Ok(Self {
            db,
            backend,
            sequencing: Arc::default(),
            dequeued: Arc::default(),
            searches: Arc::new(tokio::sync::Semaphore::new(
                usize::try_from(searches).unwrap_or(1),
            )),
        })
    }

    /// Migrates the database at `url`, then opens the pool on it: what a server does at start.
    ///
    /// The migrations run on a connection of their own, closed before the pool opens. A SQLite
    /// connection keeps the schema it read until it next executes a statement, and prepares
    /// against it: a pool connection that had read the schema before a migration replaced a
    /// table would prepare `SELECT "leaf_index" …` with `"leaf_index"` taken as a string
    /// literal (SQLite's double-quoted-string fallback), and sqlx keeps the column names of
    /// that first preparation.
    pub async fn open(url: &str, options: &StoreOptions) -> Result<Self, ConnectError> {
        let migrator = Self::connect(
            url,
            &StoreOptions {
                max_connections: 1,
                // A migration may rewrite every row; it is not a request.
                statement_timeout: None,
                ..options.clone()
            },
        )
        .await?;
        let migrated = migrator.migrate().await;
        migrator.close().await;
        migrated?;
        Self::connect(url, options).await
    }

    /// Applies every pending migration (see [`SqlStore::open`] for why a server migrates
    /// before it opens its pool).
    pub async fn migrate(&self) -> Result<(), ConnectError> {
        Migrator::up(&self.db, None)
            .await
            .map_err(|e| ConnectError::Migrate(self.backend, e))
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Closes the pool, waiting for connections in use to be returned.
    pub async fn close(self) {
        // Errors on close leave nothing to recover; the pool is gone either way.
        let _ = self.db.close().await;
    }

    pub(crate) async fn ping_db(&self) -> Result<(), sea_orm::DbErr> {
        self.db.execute_unprepared("SELECT 1").await.map(|_| ())
    }
}
