//! Fresh databases for tests: a temporary SQLite file, or a new PostgreSQL database that is
//! dropped when the handle is. Used by this crate's tests and by the end-to-end suite.
//!
//! PostgreSQL comes from `CAIRN_TEST_POSTGRES_URL` (a URL whose database the tests may use to
//! create others, e.g. `postgres://postgres@127.0.0.1:5432/postgres`). When it is unset the
//! Postgres half of each test is skipped with a notice on stderr — unless
//! `CAIRN_TEST_REQUIRE_POSTGRES=1` (CI sets it), which turns a skip into a failure.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use sea_orm::{ConnectionTrait, Database, Statement};

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
        let db = Database::connect(&self.url).await.expect("connect");
        let sql = format!("SELECT COUNT(*) FROM {table}");
        let row = db
            .query_one_raw(Statement::from_string(db.get_database_backend(), sql))
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

    /// A migrated store on this database.
    pub async fn store(&self) -> SqlStore {
        let store = SqlStore::connect(&self.url, &StoreOptions::default())
            .await
            .expect("connect");
        store.migrate().await.expect("migrate");
        store
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
