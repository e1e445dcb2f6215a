//! Fresh databases for tests: a temporary SQLite file, or a new PostgreSQL database that is
//! dropped when the handle is. Used by this crate's tests and by the end-to-end suite.
//!
//! PostgreSQL comes from `CAIRN_TEST_POSTGRES_URL` (a URL whose database the tests may use to
//! create others, e.g. `postgres://postgres@127.0.0.1:5432/postgres`). When it is unset the
//! Postgres half of each test is skipped with a notice on stderr — unless
//! `CAIRN_TEST_REQUIRE_POSTGRES=1` (CI sets it), which turns a skip into a failure.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use sea_orm::{ConnectionTrait, Database, Statement, TransactionTrait};

use crate::{SqlStore, StoreOptions};

/// A database that exists for one test.
#[derive(Debug)]
pub struct TestDatabase {
    url: String,
    kind: Kind,
}

#[derive(Debug)]
enum Kind {
    Sqlite { _dir: tempfile::TempDir },
    Postgres { admin_url: String, name: String },
}

impl TestDatabase {
    /// A new SQLite database file in a temporary directory.
    pub fn sqlite() -> Self {
        let dir = tempfile::tempdir().expect("temporary directory");
        let url = format!("sqlite://{}/cairn.db?mode=rwc", dir.path().display());
        Self {
            url,
            kind: Kind::Sqlite { _dir: dir },
        }
    }

    /// A new, empty PostgreSQL database, or `None` (with a notice) when no server is configured.
    pub async fn postgres() -> Option<Self> {
        let Ok(admin_url) = std::env::var("CAIRN_TEST_POSTGRES_URL") else {
            if std::env::var("CAIRN_TEST_REQUIRE_POSTGRES").is_ok_and(|v| v == "1") {
                panic!("CAIRN_TEST_REQUIRE_POSTGRES=1 but CAIRN_TEST_POSTGRES_URL is not set");
            }
            eprintln!(
                "NOTICE: CAIRN_TEST_POSTGRES_URL is not set; skipping the PostgreSQL half of this test"
            );
            return None;
        };
        let name = format!("cairn_test_{}", uuid::Uuid::new_v4().simple());
        let admin = Database::connect(&admin_url)
            .await
            .expect("connect to CAIRN_TEST_POSTGRES_URL");
        admin
            .execute_unprepared(&format!("CREATE DATABASE {name}"))
            .await
            .expect("create test database");
        admin.close().await.ok();
        let url = with_database(&admin_url, &name);
        Some(Self {
            url,
            kind: Kind::Postgres { admin_url, name },
        })
    }

    /// SQLite, and PostgreSQL when configured: the backends every store test runs on.
    pub async fn all() -> Vec<Self> {
        let mut all = vec![Self::sqlite()];
        all.extend(Self::postgres().await);
        all
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn backend_name(&self) -> &'static str {
        match self.kind {
            Kind::Sqlite { .. } => "sqlite",
            Kind::Postgres { .. } => "postgres",
        }
    }

    /// How many rows `table` has (checks that failed requests wrote nothing).
    pub async fn row_count(&self, table: &str) -> i64 {
        assert!(
            table.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
            "plain table names only"
        );
        self.count(&format!("SELECT COUNT(*) FROM {table}")).await
    }

    /// The number a one-row, one-column query answers.
    async fn count(&self, sql: &str) -> i64 {
        let db = Database::connect(&self.url).await.expect("connect");
        let row = db
            .query_one_raw(Statement::from_string(
                db.get_database_backend(),
                sql.to_owned(),
            ))
            .await
            .expect("count")
            .expect("a row");
        let count = row.try_get_by_index::<i64>(0).expect("a number");
        db.close().await.ok();
        count
    }

    /// Drops a PostgreSQL database now, cutting its connections: the server's database becomes
    /// unreachable. Returns false on SQLite, where a file cannot be taken away from open handles.
    pub async fn make_unreachable(&self) -> bool {
        let Kind::Postgres { admin_url, name } = &self.kind else {
            return false;
        };
        let admin = Database::connect(admin_url).await.expect("connect admin");
        admin
            .execute_unprepared(&format!("DROP DATABASE {name} WITH (FORCE)"))
            .await
            .expect("drop");
        admin.close().await.ok();
        true
    }

    /// Everything the database has written to disk, for scanning for plaintext: the SQLite
    /// file with its WAL and shared-memory files, or a `pg_dump` of the PostgreSQL database.
    pub async fn raw_contents(&self) -> Vec<u8> {
        match &self.kind {
            Kind::Sqlite { _dir: dir } => {
                let mut all = Vec::new();
                for entry in std::fs::read_dir(dir.path()).expect("list the database directory") {
                    let path = entry.expect("directory entry").path();
                    all.extend(std::fs::read(&path).expect("read a database file"));
                }
                assert!(all.len() > 4096, "the SQLite files are there");
                all
            }
            Kind::Postgres { .. } => {
                let output = std::process::Command::new("pg_dump")
                    .arg("--dbname")
                    .arg(&self.url)
                    .output()
                    .expect("pg_dump runs (PostgreSQL client tools are installed)");
                assert!(
                    output.status.success(),
                    "pg_dump failed: {}",
                    String::from_utf8_lossy(&output.stderr)
                );
                output.stdout
            }
        }
    }

    /// Runs one SQL statement with `$1`-style parameters (rewritten to `?` for SQLite).
    pub async fn execute(&self, sql: &str, values: Vec<sea_orm::Value>) -> u64 {
        let db = Database::connect(&self.url).await.expect("connect");
        let backend = db.get_database_backend();
        let result = db
            .execute_raw(Statement::from_sql_and_values(
                backend,
                self.placeholders(sql),
                values,
            ))
            .await
            .expect("statement runs");
        db.close().await.ok();
        result.rows_affected()
    }

    /// How many audit entries are recorded: sequenced, and still in the intake's batches.
    pub async fn recorded_audit_entries(&self) -> i64 {
        // The intake's batches are text: PostgreSQL's json_array_length wants json.
        let batch = match self.kind {
            Kind::Postgres { .. } => "entries::json",
            Kind::Sqlite { .. } => "entries",
        };
        self.count(&format!(
            "SELECT (SELECT COUNT(*) FROM audit_entry) \
             + (SELECT COALESCE(SUM(json_array_length({batch})), 0) FROM audit_intake)"
        ))
        .await
    }

    /// Runs statements as a database superuser would, past the audit tables' append-only
    /// guard (tamper tests): on PostgreSQL with triggers disabled for the session
    /// (`session_replication_role = replica`), on SQLite after dropping the guard triggers.
    pub async fn bypassing_audit_guard(&self, statements: &[(&str, Vec<sea_orm::Value>)]) {
        let db = Database::connect(&self.url).await.expect("connect");
        let backend = db.get_database_backend();
        // Immediate on SQLite: the write lock is taken now (waiting for a running server's
        // sequencer), not upgraded later from a read snapshot another commit has outdated.
        let conn = db
            .begin_with_options(sea_orm::TransactionOptions {
                sqlite_transaction_mode: Some(sea_orm::SqliteTransactionMode::Immediate),
                ..sea_orm::TransactionOptions::default()
            })
            .await
            .expect("begin");
        match self.kind {
            Kind::Postgres { .. } => {
                conn.execute_unprepared("SET LOCAL session_replication_role = replica")
                    .await
                    .expect("superuser: disable triggers");
            }
            Kind::Sqlite { .. } => {
                let triggers = conn
                    .query_all_raw(Statement::from_string(
                        backend,
                        "SELECT name FROM sqlite_master WHERE type = 'trigger' AND name LIKE 'audit_%'"
                            .to_owned(),
                    ))
                    .await
                    .expect("list triggers");
                for row in triggers {
                    let trigger: String = row.try_get("", "name").expect("a name");
                    conn.execute_unprepared(&format!("DROP TRIGGER IF EXISTS {trigger}"))
                        .await
                        .expect("drop a guard trigger");
                }
            }
        }
        for (sql, values) in statements {
            conn.execute_raw(Statement::from_sql_and_values(
                backend,
                self.placeholders(sql),
                values.clone(),
            ))
            .await
            .expect("tampering statement runs");
        }
        conn.commit().await.expect("commit");
        db.close().await.ok();
    }

    /// Runs one statement as the server's own role would, returning its error if refused.
    pub async fn try_execute(&self, sql: &str, values: Vec<sea_orm::Value>) -> Result<u64, String> {
        let db = Database::connect(&self.url).await.expect("connect");
        let backend = db.get_database_backend();
        let result = db
            .execute_raw(Statement::from_sql_and_values(
                backend,
                self.placeholders(sql),
                values,
            ))
            .await;
        db.close().await.ok();
        result.map(|r| r.rows_affected()).map_err(|e| e.to_string())
    }

    /// The stored (sealed) body of one resource version.
    pub async fn sealed_body(&self, resource_type: &str, id: &str, version: i64) -> Vec<u8> {
        let db = Database::connect(&self.url).await.expect("connect");
        let sql = self.placeholders(
            "SELECT body FROM resource_version WHERE resource_type = $1 AND id = $2 AND version = $3",
        );
        let row = db
            .query_one_raw(Statement::from_sql_and_values(
                db.get_database_backend(),
                sql,
                [resource_type.into(), id.into(), version.into()],
            ))
            .await
            .expect("query")
            .expect("the version exists");
        db.close().await.ok();
        row.try_get::<Vec<u8>>("", "body").expect("bytes")
    }

    /// Overwrites the stored body of one resource version (tampering, in tests).
    pub async fn set_sealed_body(
        &self,
        resource_type: &str,
        id: &str,
        version: i64,
        body: Vec<u8>,
    ) {
        let changed = self
            .execute(
                "UPDATE resource_version SET body = $1 WHERE resource_type = $2 AND id = $3 AND version = $4",
                vec![body.into(), resource_type.into(), id.into(), version.into()],
            )
            .await;
        assert_eq!(changed, 1);
    }

    fn placeholders(&self, sql: &str) -> String {
        match self.kind {
            Kind::Postgres { .. } => sql.to_owned(),
            Kind::Sqlite { .. } => {
                let mut out = String::with_capacity(sql.len());
                let mut chars = sql.chars().peekable();
                while let Some(c) = chars.next() {
                    if c == '$' && chars.peek().is_some_and(char::is_ascii_digit) {
                        while chars.peek().is_some_and(char::is_ascii_digit) {
                            chars.next();
                        }
                        out.push('?');
                    } else {
                        out.push(c);
                    }
                }
                out
            }
        }
    }

    /// A migrated store on this database.
    pub async fn store(&self) -> SqlStore {
        SqlStore::open(&self.url, &StoreOptions::default())
            .await
            .expect("migrate and connect")
    }
}

/// `postgres://user@host:port/db?opts` with the database replaced.
fn with_database(url: &str, database: &str) -> String {
    let (base, query) = url
        .split_once('?')
        .map_or((url, None), |(b, q)| (b, Some(q)));
    let authority_start = base.find("://").map_or(0, |i| i + 3);
    let base = match base[authority_start..].find('/') {
        Some(slash) => &base[..authority_start + slash],
        None => base,
    };
    match query {
        Some(query) => format!("{base}/{database}?{query}"),
        None => format!("{base}/{database}"),
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let Kind::Postgres { admin_url, name } = &self.kind else {
            return;
        };
        let (admin_url, name) = (admin_url.clone(), name.clone());
        // Drop may run inside a runtime, where blocking on another is not allowed: use a thread.
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtime.block_on(async {
                let admin = Database::connect(&admin_url)
                    .await
                    .map_err(std::io::Error::other)?;
                admin
                    .execute_unprepared(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .await
                    .map_err(std::io::Error::other)?;
                admin.close().await.map_err(std::io::Error::other)
            })
        })
        .join();
        if !matches!(dropped, Ok(Ok(()))) {
            eprintln!("warning: could not drop test database {}", self.url);
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn database_names_are_replaced_in_urls() {
        for (url, expected) in [
            (
                "postgres://postgres@127.0.0.1:5432/postgres",
                "postgres://postgres@127.0.0.1:5432/x",
            ),
            (
                "postgres://u:p@h/db?sslmode=disable",
                "postgres://u:p@h/x?sslmode=disable",
            ),
            ("postgres://h:5432", "postgres://h:5432/x"),
        ] {
            assert_eq!(super::with_database(url, "x"), expected);
        }
    }
}
