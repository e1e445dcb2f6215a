//! Configuration: built-in defaults (the embedded SQLite setup), then an optional `cairn.toml`,
//! then `CAIRN_*` environment variables, each overriding the one before.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::tls::TlsFiles;

/// Where the embedded default keeps its data, relative to the working directory.
pub const DEFAULT_DATA_DIR: &str = "cairn-data";

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// For people at a terminal.
    Human,
    /// One JSON object per line, for log pipelines.
    Json,
}

/// `CAIRN_MASTER_KEY`: a base64 master key given by the environment (a secret manager, a KMS
/// agent). Debug never shows it; it is read from the environment only, never from `cairn.toml`.
#[derive(Clone, PartialEq, Eq)]
pub struct MasterKeySecret(pub String);

impl std::fmt::Debug for MasterKeySecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKeySecret(<redacted>)")
    }
}

/// Everything `cairn serve` needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// `postgres://…` or `sqlite://…`.
    pub database_url: String,
    /// Address to listen on, e.g. `127.0.0.1:8080`.
    pub listen: String,
    /// The largest request body, in bytes.
    pub body_limit: usize,
    /// The most entries one transaction or batch Bundle may have.
    pub max_bundle_entries: usize,
    /// The URL clients reach the server at, for `Location` headers.
    pub public_base_url: Option<String>,
    pub log_format: LogFormat,
    /// Serve the API UI at `/docs`.
    pub docs: bool,
    /// Largest number of database connections. By default twice this host's cores: more
    /// connections than the database has cores to run them only queue inside it (measured in
    /// `docs/performance.md`: 16 connections on 2 cores served 9% fewer reads than 4, with a
    /// longer tail). With the database on its own host, size it from that host's cores.
    pub max_connections: u32,
    /// Seconds in-flight requests get to finish after a shutdown signal.
    pub shutdown_grace_seconds: u64,
    /// The keyring file (master keys and the blind-index key). Never inside the database.
    pub keyring: PathBuf,
    /// A master key from the environment, used instead of the keyring file when set.
    pub master_key: Option<MasterKeySecret>,
    /// Requests per second one token (with its attenuations) may make, sustained.
    pub rate_limit_per_second: u32,
    /// Requests one token may make at once before the per-second rate applies.
    pub rate_limit_burst: u32,
    /// How often each instance re-reads the revocation list, in milliseconds: a revocation
    /// (by `cairn token revoke` or another instance) takes effect within this time.
    pub revocation_poll_ms: u64,
    /// Serve HTTPS with this certificate and key (`CAIRN_TLS_CERT`, `CAIRN_TLS_KEY`).
    pub tls: Option<TlsFiles>,
    /// The largest request head: the request target, and separately all header fields
    /// together, in bytes. Larger gets 414 or 431.
    pub max_header_bytes: usize,
    /// Seconds a request may take from its head arriving to its response leaving.
    pub request_timeout_seconds: u64,
    /// The audit log's name, the first line of every checkpoint and its key's name. Set it once
    /// and keep it: checkpoints signed under another origin no longer verify. `None`: the
    /// public base URL's host followed by `/audit`, or `cairn.local/audit`.
    pub audit_origin: Option<String>,
    /// How often each instance runs the audit sequencer, in milliseconds (one instance at a
    /// time sequences; checkpoints are signed at most once a second).
    pub audit_sequence_ms: u64,
}

/// Twice the cores this process may use, at least 2.
fn default_max_connections() -> u32 {
    std::thread::available_parallelism()
        .map_or(2, |cores| u32::try_from(cores.get()).unwrap_or(u32::MAX))
        .saturating_mul(2)
        .max(2)
}

impl Default for Config {
    fn default() -> Self {
        Self {
            database_url: format!("sqlite://./{DEFAULT_DATA_DIR}/cairn.db?mode=rwc"),
            listen: "127.0.0.1:8080".to_owned(),
            body_limit: 16 * 1024 * 1024,
            max_bundle_entries: api_http::DEFAULT_MAX_BUNDLE_ENTRIES,
            public_base_url: None,
            log_format: LogFormat::Human,
            docs: true,
            max_connections: default_max_connections(),
            shutdown_grace_seconds: 30,
            keyring: Path::new(DEFAULT_DATA_DIR).join("keyring.json"),
            master_key: None,
            rate_limit_per_second: 1000,
            rate_limit_burst: 2000,
            revocation_poll_ms: 250,
            tls: None,
            max_header_bytes: 32 * 1024,
            request_timeout_seconds: 30,
            audit_origin: None,
            audit_sequence_ms: 100,
        }
    }
}

/// Why the configuration could not be read. Never includes secrets from it.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("config file {path} is not valid: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("environment variable {name} is not valid: {message}")]
    Env { name: &'static str, message: String },
    #[error("the audit origin {0:?} is not usable: it must be non-empty, with no spaces or '+'")]
    AuditOrigin(String),
    #[error(
        "TLS needs both a certificate and a key (CAIRN_TLS_CERT and CAIRN_TLS_KEY); only the {given} is set"
    )]
    HalfTls { given: &'static str },
}

/// The keys `cairn.toml` may have; all optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    database_url: Option<String>,
    listen: Option<String>,
    body_limit: Option<usize>,
    max_bundle_entries: Option<usize>,
    public_base_url: Option<String>,
    log_format: Option<LogFormat>,
    docs: Option<bool>,
    max_connections: Option<u32>,
    shutdown_grace_seconds: Option<u64>,
    keyring: Option<PathBuf>,
    rate_limit_per_second: Option<u32>,
    rate_limit_burst: Option<u32>,
    revocation_poll_ms: Option<u64>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    max_header_bytes: Option<usize>,
    request_timeout_seconds: Option<u64>,
    audit_origin: Option<String>,
    audit_sequence_ms: Option<u64>,
}

impl Config {
    /// Defaults ← `file` (or `./cairn.toml` if it exists) ← the environment.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        Self::load_from(file, |name| std::env::var(name).ok())
    }

    /// As [`Config::load`], with the environment given (tests).
    pub fn load_from(
        file: Option<&Path>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let mut config = Self::default();
        let default_file = Path::new("cairn.toml");
        let file = file.or_else(|| default_file.exists().then_some(default_file));
        if let Some(path) = file {
            let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                path: path.to_owned(),
                source,
            })?;
            let parsed: FileConfig = toml::from_str(&text).map_err(|e| ConfigError::Parse {
                path: path.to_owned(),
                message: e.message().to_owned(),
            })?;
            config.apply(parsed);
        }
        // An empty variable counts as unset.
        let parse = |name: &str| env(name).filter(|v| !v.is_empty());
        let number = |name: &'static str| -> Result<Option<u64>, ConfigError> {
            parse(name)
                .map(|v| {
                    v.parse::<u64>().map_err(|e| ConfigError::Env {
                        name,
                        message: e.to_string(),
                    })
                })
                .transpose()
        };
        let env_config = FileConfig {
            database_url: parse("CAIRN_DATABASE_URL"),
            listen: parse("CAIRN_LISTEN"),
            body_limit: number("CAIRN_BODY_LIMIT")?
                .map(|n| usize::try_from(n).unwrap_or(usize::MAX)),
            max_bundle_entries: number("CAIRN_MAX_BUNDLE_ENTRIES")?
                .map(|n| usize::try_from(n).unwrap_or(usize::MAX)),
            public_base_url: parse("CAIRN_PUBLIC_BASE_URL"),
            log_format: parse("CAIRN_LOG_FORMAT")
                .map(|v| match v.to_ascii_lowercase().as_str() {
                    "json" => Ok(LogFormat::Json),
                    "human" | "text" => Ok(LogFormat::Human),
                    _ => Err(ConfigError::Env {
                        name: "CAIRN_LOG_FORMAT",
                        message: "use json or human".into(),
                    }),
                })
                .transpose()?,
            docs: parse("CAIRN_DOCS")
                .map(|v| match v.as_str() {
                    "1" | "true" | "on" => Ok(true),
                    "0" | "false" | "off" => Ok(false),
                    _ => Err(ConfigError::Env {
                        name: "CAIRN_DOCS",
                        message: "use true or false".into(),
                    }),
                })
                .transpose()?,
            max_connections: number("CAIRN_MAX_CONNECTIONS")?
                .map(|n| u32::try_from(n).unwrap_or(u32::MAX)),
            shutdown_grace_seconds: number("CAIRN_SHUTDOWN_GRACE_SECONDS")?,
            keyring: parse("CAIRN_KEYRING").map(PathBuf::from),
            rate_limit_per_second: number("CAIRN_RATE_LIMIT_PER_SECOND")?
                .map(|n| u32::try_from(n).unwrap_or(u32::MAX)),
            rate_limit_burst: number("CAIRN_RATE_LIMIT_BURST")?
                .map(|n| u32::try_from(n).unwrap_or(u32::MAX)),
            revocation_poll_ms: number("CAIRN_REVOCATION_POLL_MS")?,
            tls_cert: parse("CAIRN_TLS_CERT").map(PathBuf::from),
            tls_key: parse("CAIRN_TLS_KEY").map(PathBuf::from),
            max_header_bytes: number("CAIRN_MAX_HEADER_BYTES")?
                .map(|n| usize::try_from(n).unwrap_or(usize::MAX)),
            request_timeout_seconds: number("CAIRN_REQUEST_TIMEOUT_SECONDS")?,
            audit_origin: parse("CAIRN_AUDIT_ORIGIN"),
            audit_sequence_ms: number("CAIRN_AUDIT_SEQUENCE_MS")?,
        };
        config.apply(env_config);
        config.master_key = parse("CAIRN_MASTER_KEY").map(MasterKeySecret);
        if let Some(tls) = &config.tls {
            let missing = |p: &Path| p.as_os_str().is_empty();
            if missing(&tls.cert) || missing(&tls.key) {
                let given = if missing(&tls.key) {
                    "certificate"
                } else {
                    "key"
                };
                return Err(ConfigError::HalfTls { given });
            }
        }
        if let Some(origin) = &config.audit_origin
            && (origin.chars().any(|c| c.is_whitespace() || c == '+') || origin.is_empty())
        {
            return Err(ConfigError::AuditOrigin(origin.clone()));
        }
        Ok(config)
    }

    /// The audit log's origin (see [`Config::audit_origin`]).
    pub fn audit_origin(&self) -> String {
        if let Some(origin) = &self.audit_origin {
            return origin.clone();
        }
        let host = self.public_base_url.as_deref().and_then(|url| {
            let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
            let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
            (!host.is_empty() && !host.contains(|c: char| c.is_whitespace() || c == '+'))
                .then(|| host.to_owned())
        });
        format!("{}/audit", host.as_deref().unwrap_or("cairn.local"))
    }

    fn apply(&mut self, file: FileConfig) {
        let FileConfig {
            database_url,
            listen,
            body_limit,
            max_bundle_entries,
            public_base_url,
            log_format,
            docs,
            max_connections,
            shutdown_grace_seconds,
            keyring,
            rate_limit_per_second,
            rate_limit_burst,
            revocation_poll_ms,
            tls_cert,
            tls_key,
            max_header_bytes,
            request_timeout_seconds,
            audit_origin,
            audit_sequence_ms,
        } = file;
        if let Some(v) = audit_origin {
            self.audit_origin = Some(v);
        }
        if let Some(v) = audit_sequence_ms {
            self.audit_sequence_ms = v.clamp(10, 1000);
        }
        if tls_cert.is_some() || tls_key.is_some() {
            // Either half may come from a different layer; an empty path marks the half not
            // given (yet), checked once every layer is applied.
            let tls = self.tls.get_or_insert_with(|| TlsFiles {
                cert: PathBuf::new(),
                key: PathBuf::new(),
            });
            if let Some(cert) = tls_cert {
                tls.cert = cert;
            }
            if let Some(key) = tls_key {
                tls.key = key;
            }
        }
        if let Some(v) = max_header_bytes {
            // Below 1 KiB even an ordinary browser request would not fit.
            self.max_header_bytes = v.max(1024);
        }
        if let Some(v) = request_timeout_seconds {
            self.request_timeout_seconds = v.max(1);
        }
        if let Some(v) = rate_limit_per_second {
            self.rate_limit_per_second = v.max(1);
        }
        if let Some(v) = rate_limit_burst {
            self.rate_limit_burst = v.max(1);
        }
        if let Some(v) = revocation_poll_ms {
            self.revocation_poll_ms = v.clamp(10, 1000);
        }
        if let Some(v) = keyring {
            self.keyring = v;
        }
        if let Some(v) = database_url {
            self.database_url = v;
        }
        if let Some(v) = listen {
            self.listen = v;
        }
        if let Some(v) = body_limit {
            self.body_limit = v;
        }
        if let Some(v) = max_bundle_entries {
            self.max_bundle_entries = v;
        }
        if let Some(v) = public_base_url {
            self.public_base_url = Some(v);
        }
        if let Some(v) = log_format {
            self.log_format = v;
        }
        if let Some(v) = docs {
            self.docs = v;
        }
        if let Some(v) = max_connections {
            self.max_connections = v;
        }
        if let Some(v) = shutdown_grace_seconds {
            self.shutdown_grace_seconds = v;
        }
    }

    /// Whether the database is SQLite (the embedded default).
    pub fn is_sqlite(&self) -> bool {
        self.database_url.starts_with("sqlite:")
    }

    /// The directory a `sqlite://` URL's file lives in, so it can be created first.
    pub(crate) fn sqlite_dir(&self) -> Option<PathBuf> {
        let path = self
            .database_url
            .strip_prefix("sqlite://")
            .or_else(|| self.database_url.strip_prefix("sqlite:"))?;
        let path = path.split('?').next().unwrap_or_default();
        if path.is_empty() || path == ":memory:" {
            return None;
        }
        Path::new(path)
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .map(Path::to_path_buf)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn layers_override_in_order() {
        let dir = std::env::temp_dir().join(format!("cairn-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("cairn.toml");
        std::fs::write(
            &file,
            "listen = \"0.0.0.0:9000\"\nbody_limit = 1024\ndocs = false\n",
        )
        .unwrap();
        let env = |name: &str| match name {
            "CAIRN_LISTEN" => Some("127.0.0.1:7000".to_owned()),
            "CAIRN_LOG_FORMAT" => Some("json".to_owned()),
            "CAIRN_MASTER_KEY" => Some("c2VjcmV0".to_owned()),
            _ => None,
        };
        let config = Config::load_from(Some(&file), env).unwrap();
        assert_eq!(config.listen, "127.0.0.1:7000");
        assert_eq!(config.body_limit, 1024);
        assert!(!config.docs);
        assert_eq!(config.log_format, LogFormat::Json);
        assert_eq!(config.database_url, Config::default().database_url);
        assert!(!format!("{config:?}").contains("c2VjcmV0"));
        assert_eq!(config.master_key, Some(MasterKeySecret("c2VjcmV0".into())));

        std::fs::write(&file, "listen_on = 1\n").unwrap();
        assert!(matches!(
            Config::load_from(Some(&file), |_| None),
            Err(ConfigError::Parse { .. })
        ));
        let bad_env = |name: &str| (name == "CAIRN_BODY_LIMIT").then(|| "lots".to_owned());
        assert!(matches!(
            Config::load_from(Some(&dir.join("none.toml")), bad_env),
            Err(ConfigError::Read { .. })
        ));
        assert!(matches!(
            Config::load_from(None, bad_env),
            Err(ConfigError::Env {
                name: "CAIRN_BODY_LIMIT",
                ..
            })
        ));
        std::fs::remove_dir_all(dir).ok();
    }

    #[test]
    fn tls_needs_both_halves_and_limits_have_floors() {
        let env = |vars: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                vars.iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| (*v).to_owned())
            }
        };
        let config = Config::load_from(
            None,
            env(&[
                ("CAIRN_TLS_CERT", "/etc/cairn/cert.pem"),
                ("CAIRN_TLS_KEY", "/etc/cairn/key.pem"),
                ("CAIRN_MAX_HEADER_BYTES", "10"),
                ("CAIRN_REQUEST_TIMEOUT_SECONDS", "0"),
            ]),
        )
        .unwrap();
        assert_eq!(
            config.tls,
            Some(TlsFiles {
                cert: "/etc/cairn/cert.pem".into(),
                key: "/etc/cairn/key.pem".into()
            })
        );
        assert_eq!(config.max_header_bytes, 1024);
        assert_eq!(config.request_timeout_seconds, 1);
        assert!(matches!(
            Config::load_from(None, env(&[("CAIRN_TLS_CERT", "/c.pem")])),
            Err(ConfigError::HalfTls {
                given: "certificate"
            })
        ));
        assert!(matches!(
            Config::load_from(None, env(&[("CAIRN_TLS_KEY", "/k.pem")])),
            Err(ConfigError::HalfTls { given: "key" })
        ));
        assert_eq!(Config::load_from(None, env(&[])).unwrap().tls, None);
    }

    #[test]
    fn sqlite_dirs() {
        let with = |url: &str| {
            Config {
                database_url: url.to_owned(),
                ..Config::default()
            }
            .sqlite_dir()
        };
        assert_eq!(
            with("sqlite://./cairn-data/cairn.db?mode=rwc"),
            Some(PathBuf::from("./cairn-data"))
        );
        assert_eq!(
            with("sqlite:///var/lib/cairn/c.db"),
            Some(PathBuf::from("/var/lib/cairn"))
        );
        assert_eq!(with("sqlite::memory:"), None);
        assert_eq!(with("postgres://x/y"), None);
    }
}
