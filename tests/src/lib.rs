//! The end-to-end harness: the real server, started through the same `cairn::start` the binary
//! uses, on a fresh database and a free port, and a client for it.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use cairn::{Config, Running};
use store_sql::testing::TestDatabase;

/// A running server on its own database.
#[derive(Debug)]
pub struct TestApp {
    pub base: String,
    /// Sends a `system` token with `system/*.cruds`: every clinical interaction.
    pub client: reqwest::Client,
    /// Sends an `admin` token: token management and erasure, no clinical data.
    pub admin: reqwest::Client,
    /// Sends no token.
    pub anonymous: reqwest::Client,
    /// The token `client` sends.
    pub token: String,
    pub db: TestDatabase,
    /// The configuration the server runs with (its keyring is in a temporary directory).
    pub config: Config,
    running: Option<Running>,
    _keys: tempfile::TempDir,
}

impl TestApp {
    /// Starts the server on `db` with `adjust` applied to the default configuration.
    pub async fn start_with(db: TestDatabase, adjust: impl FnOnce(&mut Config)) -> Self {
        let keys = tempfile::tempdir().expect("keyring directory");
        let mut config = Config {
            database_url: db.url().to_owned(),
            listen: "127.0.0.1:0".to_owned(),
            keyring: keys.path().join("keyring.json"),
            // Load tests send thousands of requests with one token; the limit has its own test.
            rate_limit_per_second: 1_000_000,
            rate_limit_burst: 1_000_000,
            ..Config::default()
        };
        adjust(&mut config);
        if config.master_key.is_none() && !config.keyring.exists() {
            cairn::keys::init(&config).expect("keyring created");
        }
        let running = cairn::start(&config).await.expect("server starts");
        let base = format!("http://{}", running.local_addr);
        let feed = request_for("service:test-feed", "system", &["system/*.cruds"], None);
        let token = issue(&config, &feed).await;
        let admin = issue(&config, &request_for("user:test-admin", "admin", &[], None)).await;
        Self {
            base,
            client: client_with(&token),
            admin: client_with(&admin),
            anonymous: reqwest::Client::new(),
            token,
            db,
            config,
            running: Some(running),
            _keys: keys,
        }
    }

    pub async fn start(db: TestDatabase) -> Self {
        Self::start_with(db, |_| {}).await
    }

    /// One server per backend: SQLite always, PostgreSQL when configured.
    pub async fn on_every_backend() -> Vec<Self> {
        let mut apps = Vec::new();
        for db in TestDatabase::all().await {
            apps.push(Self::start(db).await);
        }
        apps
    }

    /// Issues a token through `cairn token issue`'s code path (recorded in the database).
    pub async fn issue(&self, request: cairn::tokens::IssueRequest) -> String {
        issue(&self.config, &request).await
    }

    /// A token of `role` for `subject`, with `scopes` and a `patient` if given.
    pub async fn token_for(
        &self,
        subject: &str,
        role: &str,
        scopes: &[&str],
        patient: Option<&str>,
    ) -> String {
        issue(&self.config, &request_for(subject, role, scopes, patient)).await
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn backend(&self) -> &'static str {
        self.db.backend_name()
    }

    /// POSTs FHIR JSON.
    pub async fn post(&self, path: &str, body: &serde_json::Value) -> reqwest::Response {
        self.client
            .post(self.url(path))
            .header("content-type", "application/fhir+json")
            .body(body.to_string())
            .send()
            .await
            .expect("request sent")
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(self.url(path))
            .send()
            .await
            .expect("request sent")
    }

    /// Stops the server gracefully.
    pub async fn stop(mut self) {
        if let Some(running) = self.running.take() {
            running.stop().await.expect("clean stop");
        }
    }

    pub fn take_running(&mut self) -> Running {
        self.running.take().expect("running")
    }
}

/// An hour-long token request of `role` for `subject`, with `scopes` and a `patient` if given.
fn request_for(
    subject: &str,
    role: &str,
    scopes: &[&str],
    patient: Option<&str>,
) -> cairn::tokens::IssueRequest {
    cairn::tokens::IssueRequest {
        subject: subject.to_owned(),
        role: role.to_owned(),
        scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
        patient: patient.map(str::to_owned),
        ttl: "1h".to_owned(),
        ..Default::default()
    }
}

async fn issue(config: &Config, request: &cairn::tokens::IssueRequest) -> String {
    cairn::tokens::issue(config, request)
        .await
        .expect("token issued")
        .token
        .expose()
        .to_owned()
}

/// A client that sends `token` as its bearer token on every request.
pub fn client_with(token: &str) -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    let mut value =
        reqwest::header::HeaderValue::from_str(&format!("Bearer {token}")).expect("header");
    value.set_sensitive(true);
    headers.insert(reqwest::header::AUTHORIZATION, value);
    reqwest::Client::builder()
        .default_headers(headers)
        .build()
        .expect("client")
}

/// The JSON body of a response, after checking it is FHIR JSON.
pub async fn fhir_json(response: reqwest::Response) -> serde_json::Value {
    let content_type = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned());
    assert_eq!(
        content_type.as_deref(),
        Some("application/fhir+json; charset=utf-8")
    );
    response.json().await.expect("JSON body")
}

/// The independent FHIR tools (`cargo xtask conformance-tools` makes them): a Python with the
/// validators and client of `tests/conformance/requirements.txt`, and the FHIR R4 JSON schema.
#[derive(Debug, Clone)]
pub struct ConformanceTools {
    pub python: std::path::PathBuf,
    pub schema: std::path::PathBuf,
}

impl ConformanceTools {
    /// The tools named by `CAIRN_TEST_PYTHON` and `CAIRN_TEST_FHIR_SCHEMA`. Without them the test
    /// is skipped with a notice, unless `CAIRN_TEST_REQUIRE_CONFORMANCE=1` (as `cargo xtask ci`
    /// sets) turns the skip into a failure.
    pub fn from_env() -> Option<Self> {
        let python = std::env::var_os("CAIRN_TEST_PYTHON");
        let schema = std::env::var_os("CAIRN_TEST_FHIR_SCHEMA");
        match (python, schema) {
            (Some(python), Some(schema)) => Some(Self {
                python: python.into(),
                schema: schema.into(),
            }),
            _ => {
                assert!(
                    std::env::var("CAIRN_TEST_REQUIRE_CONFORMANCE").as_deref() != Ok("1"),
                    "CAIRN_TEST_REQUIRE_CONFORMANCE=1 but CAIRN_TEST_PYTHON or \
                     CAIRN_TEST_FHIR_SCHEMA is not set (run `cargo xtask conformance-tools`)"
                );
                eprintln!(
                    "conformance tools not configured: skipped (`eval \"$(cargo xtask \
                     conformance-tools)\"` sets them up)"
                );
                None
            }
        }
    }

    /// Runs `tests/conformance/<script>` with `args` and `stdin`; returns (success, output).
    pub async fn run(&self, script: &str, args: &[&str], stdin: Vec<u8>) -> (bool, String) {
        use std::io::Write;
        use std::process::{Command, Stdio};
        let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("conformance")
            .join(script);
        let python = self.python.clone();
        let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
        tokio::task::spawn_blocking(move || {
            let mut child = Command::new(&python)
                .arg(&script)
                .args(&args)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("the conformance Python starts");
            child
                .stdin
                .take()
                .expect("stdin")
                .write_all(&stdin)
                .expect("stdin written");
            let output = child.wait_with_output().expect("the script finishes");
            let text = format!(
                "{}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
            (output.status.success(), text)
        })
        .await
        .expect("the script's thread")
    }
}
