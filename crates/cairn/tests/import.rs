//! `cairn import` and a server killed mid-transaction, run as a user runs them: the `cairn`
//! binary in a child process, on SQLite and on PostgreSQL.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use store_sql::testing::TestDatabase;

/// Tables whose rows an import writes (the audit log aside: its entries are kept forever,
/// failures included).
const TABLES: [&str; 9] = [
    "resource",
    "resource_version",
    "data_key",
    "search_blind",
    "search_token",
    "search_reference",
    "search_date",
    "search_string",
    "conditional_claim",
];

/// A database and a keyring, for the binary to run on.
struct Setup {
    db: TestDatabase,
    dir: tempfile::TempDir,
}

impl Setup {
    async fn all() -> Vec<Self> {
        let mut all = Vec::new();
        for db in TestDatabase::all().await {
            let setup = Self {
                db,
                dir: tempfile::tempdir().unwrap(),
            };
            assert!(setup.cairn(&["keys", "init"]).status.success());
            // Migrated before any test races two processes on it.
            assert!(setup.cairn(&["migrate"]).status.success());
            all.push(setup);
        }
        all
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_cairn"));
        command
            .args(args)
            .current_dir(self.dir.path())
            .env("CAIRN_DATABASE_URL", self.db.url())
            .env("CAIRN_KEYRING", self.dir.path().join("keyring.json"))
            .env("CAIRN_LOG_FORMAT", "json")
            .env_remove("CAIRN_CONFIG")
            .env_remove("CAIRN_MASTER_KEY");
        command
    }

    fn cairn(&self, args: &[&str]) -> Output {
        self.command(args).output().unwrap()
    }

    async fn counts(&self) -> Vec<i64> {
        let mut counts = Vec::new();
        for table in TABLES {
            counts.push(self.db.row_count(table).await);
        }
        counts
    }
}

/// `patients` generated records under a temporary directory, as NDJSON and as Bundles.
fn generated(patients: u64) -> (tempfile::TempDir, PathBuf, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let ndjson = dir.path().join("ndjson");
    let bundles = dir.path().join("bundles");
    std::fs::create_dir_all(&ndjson).unwrap();
    std::fs::create_dir_all(&bundles).unwrap();
    let mut files: std::collections::BTreeMap<String, String> = Default::default();
    for number in 0..patients {
        let record = testdata::patient_record(9, number);
        std::fs::write(
            bundles.join(format!("patient-{number:04}.json")),
            record.transaction().to_string(),
        )
        .unwrap();
        for resource in record.resources() {
            let file = files
                .entry(resource["resourceType"].as_str().unwrap().to_owned())
                .or_default();
            file.push_str(&resource.to_string());
            file.push('\n');
        }
    }
    for (resource_type, lines) in files {
        std::fs::write(ndjson.join(format!("{resource_type}.ndjson")), lines).unwrap();
    }
    (dir, ndjson, bundles)
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[tokio::test]
async fn an_import_loads_once_however_often_it_runs() {
    let (_data, ndjson, bundles) = generated(6);
    let resources: usize = (0..6).map(|n| testdata::patient_record(9, n).len()).sum();
    for setup in Setup::all().await {
        let backend = setup.db.backend_name();
        let output = setup.cairn(&["import", path(&ndjson)]);
        assert!(output.status.success(), "{backend}: {}", stderr(&output));
        assert!(
            stderr(&output).contains(&format!("{resources} stored, 0 already stored, 0 errors")),
            "{backend}: {}",
            stderr(&output)
        );
        let after_first = setup.counts().await;
        assert_eq!(after_first[0], resources as i64, "{backend}");
        // The same data again, as NDJSON and as Synthea's Bundles: nothing new.
        for again in [&ndjson, &bundles] {
            let output = setup.cairn(&["import", path(again)]);
            assert!(output.status.success(), "{backend}: {}", stderr(&output));
            assert!(
                stderr(&output).contains(&format!("0 stored, {resources} already stored")),
                "{backend}: {}",
                stderr(&output)
            );
            assert_eq!(setup.counts().await, after_first, "{backend}");
        }
        // One data key per patient: each resource sealed under its own patient's key.
        assert_eq!(after_first[2], 6, "{backend}");
    }
}

#[tokio::test]
async fn a_bad_resource_is_named_by_file_and_line_and_its_chunk_is_not_stored() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("Patient.ndjson");
    let good =
        |n: u32| format!(r#"{{"resourceType":"Patient","id":"p{n}","birthDate":"1990-01-0{n}"}}"#);
    let bad = r#"{"resourceType":"Patient","id":"bad","birthDate":"1990-13-45"}"#;
    std::fs::write(
        &file,
        format!("{}\n{}\n{bad}\n{}\n", good(1), good(2), good(3)),
    )
    .unwrap();
    for setup in Setup::all().await {
        let backend = setup.db.backend_name();
        let stop = setup.cairn(&["import", "--chunk", "2", path(&file)]);
        assert!(!stop.status.success(), "{backend}");
        let said = stderr(&stop);
        assert!(
            said.contains("Patient.ndjson:3: birthDate"),
            "{backend}: {said}"
        );
        assert!(!said.contains("1990-13-45"), "no PHI in the report");
        assert_eq!(
            setup.db.row_count("resource").await,
            2,
            "{backend}: the chunk before is stored, the failing one is not"
        );
        let skip = setup.cairn(&["import", "--chunk", "2", "--on-error", "skip", path(&file)]);
        assert!(skip.status.success(), "{backend}: {}", stderr(&skip));
        assert!(
            stderr(&skip).contains("1 stored, 2 already stored, 1 errors"),
            "{}",
            stderr(&skip)
        );
        assert_eq!(setup.db.row_count("resource").await, 3, "{backend}");
    }
}

/// Waits until `table` has a row, for at most `limit`.
async fn until_rows(db: &TestDatabase, table: &str, limit: Duration) {
    let started = std::time::Instant::now();
    while started.elapsed() < limit {
        if db.row_count(table).await > 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("no row in {table} after {limit:?}");
}

fn kill(mut child: Child) {
    // SIGKILL: no shutdown, no flush, no rollback by the process.
    child.kill().unwrap();
    child.wait().unwrap();
}

#[tokio::test]
async fn an_import_killed_at_any_point_is_finished_by_running_it_again() {
    let (_data, ndjson, _) = generated(40);
    let reference = {
        let setups = Setup::all().await;
        let mut counts = Vec::new();
        for setup in &setups {
            let output = setup.cairn(&["import", "--chunk", "300", path(&ndjson)]);
            assert!(output.status.success(), "{}", stderr(&output));
            counts.push(setup.counts().await);
        }
        counts
    };
    for (setup, uninterrupted) in Setup::all().await.into_iter().zip(reference) {
        let backend = setup.db.backend_name();
        let child = setup
            .command(&["import", "--chunk", "300", path(&ndjson)])
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        until_rows(&setup.db, "resource", Duration::from_secs(60)).await;
        tokio::time::sleep(Duration::from_millis(150)).await;
        kill(child);
        let cut = setup.db.row_count("resource").await;
        assert!(
            cut > 0 && cut % 300 == 0 || cut == uninterrupted[0],
            "{backend}: whole chunks only, {cut}"
        );
        let output = setup.cairn(&["import", "--chunk", "300", path(&ndjson)]);
        assert!(output.status.success(), "{backend}: {}", stderr(&output));
        assert_eq!(setup.counts().await, uninterrupted, "{backend}");
        assert_eq!(
            setup.db.row_count("resource_version").await,
            uninterrupted[0],
            "{backend}: no version twice"
        );
    }
}

#[tokio::test]
async fn a_server_killed_in_a_large_transaction_stored_none_of_it() {
    for setup in Setup::all().await {
        let backend = setup.db.backend_name();
        let port = free_port();
        let serve = || {
            setup
                .command(&["serve"])
                .env("CAIRN_LISTEN", format!("127.0.0.1:{port}"))
                .stderr(Stdio::null())
                .stdout(Stdio::null())
                .spawn()
                .unwrap()
        };
        let server = serve();
        let token = issue_token(&setup);
        let base = format!("http://127.0.0.1:{port}");
        wait_ready(&base).await;
        let mut entries = Vec::new();
        for number in 0..40 {
            let record = testdata::patient_record(11, number);
            entries.extend(
                record.transaction()["entry"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .cloned(),
            );
        }
        let size = entries.len();
        let bundle =
            serde_json::json!({"resourceType": "Bundle", "type": "transaction", "entry": entries});
        let client = reqwest::Client::new();
        let sent = tokio::spawn(
            client
                .post(format!("{base}/fhir"))
                .bearer_auth(&token)
                .header("content-type", "application/fhir+json")
                .body(bundle.to_string())
                .send(),
        );
        // Kill once the server holds the whole body and is working through the entries.
        tokio::time::sleep(Duration::from_millis(400)).await;
        kill(server);
        let answer = sent.await.unwrap();
        assert!(
            answer.is_err() || answer.unwrap().status() != 200,
            "{backend}: the transaction of {size} entries finished before the kill; make it larger"
        );
        let server = serve();
        wait_ready(&base).await;
        assert_eq!(
            setup.db.row_count("resource").await,
            0,
            "{backend}: none of it"
        );
        assert_eq!(setup.db.row_count("data_key").await, 0, "{backend}");
        // The same transaction, uninterrupted, takes longer than the wait before the kill: the
        // kill fell while the server worked through it.
        let started = std::time::Instant::now();
        let answer = client
            .post(format!("{base}/fhir"))
            .bearer_auth(&token)
            .header("content-type", "application/fhir+json")
            .body(bundle.to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 200, "{backend}");
        assert!(
            started.elapsed() > Duration::from_millis(400),
            "{backend}: {:?}",
            started.elapsed()
        );
        assert_eq!(
            setup.db.row_count("resource").await,
            size as i64,
            "{backend}"
        );
        kill(server);
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn issue_token(setup: &Setup) -> String {
    let output = setup.cairn(&[
        "token",
        "issue",
        "--sub",
        "service:kill-test",
        "--role",
        "system",
        "--scope",
        "system/*.cruds",
        "--ttl",
        "1h",
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .find(|l| !l.trim().is_empty())
        .unwrap()
        .trim()
        .to_owned()
}

async fn wait_ready(base: &str) {
    for _ in 0..300 {
        if let Ok(response) = reqwest::get(format!("{base}/health/ready")).await
            && response.status() == 200
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the server did not become ready");
}
