//! Master keys from the keyring file or `CAIRN_MASTER_KEY`, and the `cairn keys` commands.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, bail};
use phi_crypto::{CryptoError, FixedKeyring, KekUsage, Keyring, MasterKeys, RewrapReport, Vault};
use time::OffsetDateTime;

use crate::config::Config;
use crate::store::open_store;

/// How often a running server looks at the keyring file for a rotation by `cairn keys rotate`.
const RELOAD_CHECK: Duration = Duration::from_secs(1);
/// How long `rotate` waits before its second pass, so servers have picked up the new version.
const SETTLE: Duration = Duration::from_secs(3);

/// The keyring file, re-read when it changes (a rotation or retirement by another process).
pub struct KeyringFile {
    path: PathBuf,
    current: RwLock<Arc<Keyring>>,
    /// The file's modification time when last read, and when it was last looked at.
    checked: Mutex<(Option<SystemTime>, Instant)>,
}

impl std::fmt::Debug for KeyringFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyringFile")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl KeyringFile {
    pub fn open(path: &Path) -> Result<Self, CryptoError> {
        let (keyring, modified) = read_keyring(path)?;
        Ok(Self {
            path: path.to_owned(),
            current: RwLock::new(Arc::new(keyring)),
            checked: Mutex::new((modified, Instant::now())),
        })
    }

    fn cached(&self) -> Arc<Keyring> {
        match self.current.read() {
            Ok(current) => current.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }
}

fn read_keyring(path: &Path) -> Result<(Keyring, Option<SystemTime>), CryptoError> {
    let bytes =
        zeroize::Zeroizing::new(std::fs::read(path).map_err(|err| {
            CryptoError::Keyring(format!("cannot read {}: {err}", path.display()))
        })?);
    let modified = std::fs::metadata(path).and_then(|m| m.modified()).ok();
    Ok((Keyring::from_json(&bytes)?, modified))
}

impl MasterKeys for KeyringFile {
    fn keyring(&self) -> Arc<Keyring> {
        // At most once a second, a stat of the file decides whether to re-read it.
        let stale = match self.checked.lock() {
            Ok(mut checked) if checked.1.elapsed() >= RELOAD_CHECK => {
                checked.1 = Instant::now();
                let modified = std::fs::metadata(&self.path)
                    .and_then(|m| m.modified())
                    .ok();
                modified.is_some() && modified != checked.0
            }
            _ => false,
        };
        if stale {
            if let Ok(fresh) = self.reload() {
                return fresh;
            }
            tracing::error!(path = %self.path.display(), "the keyring file changed but cannot be read; keeping the loaded keys");
        }
        self.cached()
    }

    fn reload(&self) -> Result<Arc<Keyring>, CryptoError> {
        let (keyring, modified) = read_keyring(&self.path)?;
        let keyring = Arc::new(keyring);
        if let Ok(mut current) = self.current.write() {
            *current = keyring.clone();
        }
        if let Ok(mut checked) = self.checked.lock() {
            *checked = (modified, Instant::now());
        }
        tracing::info!(active = keyring.active_version(), "keyring loaded");
        Ok(keyring)
    }
}

/// Writes a keyring file atomically (temporary file, fsync, rename), readable by its owner only.
pub fn write_keyring(path: &Path, keyring: &Keyring) -> anyhow::Result<()> {
    let json = keyring.to_json()?;
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty());
    if let Some(dir) = dir {
        crate::store::create_private_dir(dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let tmp = path.with_extension("json.tmp");
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options
        .open(&tmp)
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    file.write_all(&json)?;
    file.sync_all()?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot replace {}", path.display()))?;
    Ok(())
}

/// The master keys for `config`: `CAIRN_MASTER_KEY` if set, else the keyring file. With
/// `create_if_missing` (the embedded SQLite default on first start) a missing file is created
/// with a fresh random key, loudly.
pub fn master_keys(
    config: &Config,
    create_if_missing: bool,
) -> anyhow::Result<Arc<dyn MasterKeys>> {
    if let Some(secret) = &config.master_key {
        let keyring = Keyring::from_master_key_base64(&secret.0)?;
        return Ok(Arc::new(FixedKeyring(Arc::new(keyring))));
    }
    if !config.keyring.exists() {
        if !create_if_missing {
            bail!(
                "no master key: the keyring file {} does not exist and CAIRN_MASTER_KEY is not \
                 set. Create one with `cairn keys init` (and back it up apart from the database), \
                 or set CAIRN_MASTER_KEY to a base64 256-bit key",
                config.keyring.display()
            );
        }
        write_keyring(
            &config.keyring,
            &Keyring::generate(OffsetDateTime::now_utc())?,
        )?;
        tracing::warn!(
            path = %config.keyring.display(),
            "CREATED A NEW KEYRING with a random master key. Every record is encrypted under it: \
             back this file up now, apart from the database. Lose it and the data is unreadable; \
             leak it and the encryption protects nothing"
        );
    }
    Ok(Arc::new(KeyringFile::open(&config.keyring)?))
}

/// The master keys `cairn serve` uses. A missing keyring file is created only for the embedded
/// SQLite default, and only while the database holds no data key: a fresh key for a database
/// already encrypted under a lost one would make every record unreadable and mix two keyrings.
pub async fn server_master_keys(
    config: &Config,
    store: &store_sql::SqlStore,
) -> anyhow::Result<Arc<dyn MasterKeys>> {
    let may_create = config.is_sqlite() && config.master_key.is_none() && !config.keyring.exists();
    if may_create {
        let in_use: u64 = phi_crypto::KeyStore::usage(store)
            .await
            .map_err(|err| anyhow::anyhow!(err))
            .context("cannot count data keys")?
            .iter()
            .map(|usage| usage.data_keys)
            .sum();
        if in_use > 0 {
            bail!(
                "the keyring file {} is missing but the database holds {in_use} data key(s) \
                 wrapped by it; restore the keyring from its backup (a new one cannot read them)",
                config.keyring.display()
            );
        }
    }
    master_keys(config, may_create)
}

/// `cairn keys init`: creates the keyring file; refuses to overwrite one.
pub fn init(config: &Config) -> anyhow::Result<()> {
    if config.keyring.exists() {
        bail!(
            "{} already exists; not overwriting a keyring",
            config.keyring.display()
        );
    }
    write_keyring(
        &config.keyring,
        &Keyring::generate(OffsetDateTime::now_utc())?,
    )
}

/// One master-key version in `cairn keys status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionStatus {
    pub version: u32,
    pub active: bool,
    pub created: Option<OffsetDateTime>,
    pub data_keys: u64,
}

async fn vault(config: &Config) -> anyhow::Result<(Vault, store_sql::SqlStore)> {
    let store = open_store(config).await?;
    let vault = Vault::new(Arc::new(store.clone()), master_keys(config, false)?);
    Ok((vault, store))
}

/// `cairn keys status`: every master-key version and how many data keys it wraps.
pub async fn status(config: &Config) -> anyhow::Result<Vec<VersionStatus>> {
    let (vault, store) = vault(config).await?;
    let usage = vault.usage().await;
    store.close().await;
    let usage = usage?;
    let keyring = vault.keyring();
    let mut out: Vec<VersionStatus> = keyring
        .versions()
        .into_iter()
        .map(|info| VersionStatus {
            version: info.version,
            active: info.active,
            created: info.created,
            data_keys: count(&usage, info.version),
        })
        .collect();
    // Data keys wrapped by a version the keyring lacks are unreadable: show them loudly.
    for u in usage.iter().filter(|u| !keyring.has_version(u.kek_version)) {
        out.push(VersionStatus {
            version: u.kek_version,
            active: false,
            created: None,
            data_keys: u.data_keys,
        });
    }
    Ok(out)
}

fn count(usage: &[KekUsage], version: u32) -> u64 {
    usage
        .iter()
        .find(|u| u.kek_version == version)
        .map_or(0, |u| u.data_keys)
}

/// `cairn keys rotate`: a new active master-key version, then every data key rewrapped under
/// it, online. A second pass after servers have seen the new version catches keys they created
/// meanwhile under the old one.
pub async fn rotate(config: &Config) -> anyhow::Result<(u32, RewrapReport)> {
    if config.master_key.is_some() {
        bail!(
            "CAIRN_MASTER_KEY is set: rotate it in the secret manager that provides it; \
             `cairn keys rotate` rotates the keyring file"
        );
    }
    let keyring = KeyringFile::open(&config.keyring)?.reload()?;
    let rotated = keyring.rotated(OffsetDateTime::now_utc())?;
    let version = rotated.active_version();
    write_keyring(&config.keyring, &rotated)?;
    tracing::info!(
        version,
        "new master key version is active; rewrapping data keys"
    );
    let (vault, store) = vault(config).await?;
    let result = async {
        let mut report = vault.rewrap_all(500).await?;
        tokio::time::sleep(SETTLE).await;
        let second = vault.rewrap_all(500).await?;
        report.rewrapped += second.rewrapped;
        report.skipped = second.skipped;
        Ok::<_, anyhow::Error>(report)
    }
    .await;
    let recorded = crate::store::record_admin(
        &store,
        audit_chain::Action::KeyRotated,
        None,
        Some(&format!("master-key-v{version}")),
    )
    .await;
    store.close().await;
    recorded?;
    Ok((version, result?))
}

/// `cairn keys retire V`: drops master key `V` from the keyring, only if it is not active and
/// wraps no data key.
pub async fn retire(config: &Config, version: u32) -> anyhow::Result<()> {
    let (vault, store) = vault(config).await?;
    let check = vault.check_retirable(version).await;
    store.close().await;
    check?;
    let keyring = KeyringFile::open(&config.keyring)?.reload()?;
    write_keyring(&config.keyring, &keyring.without(version)?)
}
