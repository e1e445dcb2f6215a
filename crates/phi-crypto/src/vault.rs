//! [`Vault`]: data keys for writing and reading, rotation, retirement and erasure, over the
//! [`KeyStore`] and [`MasterKeys`] ports.

use std::collections::HashMap;
use std::sync::Arc;

use ring::rand::SystemRandom;
use time::OffsetDateTime;

use crate::blind::BlindIndex;
use crate::data_key::{DataKey, KeyId, KeyOwner, KeyRecord, KeyState};
use crate::error::CryptoError;
use crate::keyring::{Keyring, random_secret};
use crate::ports::{KekUsage, KeyStore, MasterKeys};

/// The outcome of a rewrap pass.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RewrapReport {
    /// Keys now wrapped by the active master key that were not before.
    pub rewrapped: u64,
    /// Keys that changed while being rewrapped (another rotation, or erasure); a later pass
    /// picks them up if they still need it.
    pub skipped: u64,
}

/// Data keys: created on first write for an owner, unwrapped on every use (a few microseconds),
/// never cached, so an erasure anywhere takes effect on the next read everywhere.
#[derive(Clone)]
pub struct Vault {
    store: Arc<dyn KeyStore>,
    master: Arc<dyn MasterKeys>,
}

impl std::fmt::Debug for Vault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Vault")
    }
}

impl Vault {
    pub fn new(store: Arc<dyn KeyStore>, master: Arc<dyn MasterKeys>) -> Self {
        Self { store, master }
    }

    /// The blind-index keys of the current keyring.
    pub fn blind_index(&self) -> BlindIndex {
        BlindIndex::new(&self.master.keyring())
    }

    pub fn keyring(&self) -> Arc<Keyring> {
        self.master.keyring()
    }

    /// The owner's data key, created (and stored wrapped) if the owner has none yet. Fails with
    /// [`CryptoError::Erased`] if the owner was erased: nothing new is written for them.
    pub async fn key_for_writing(
        &self,
        owner: &KeyOwner,
        now: OffsetDateTime,
    ) -> Result<DataKey, CryptoError> {
        let (key, new_record) = self.prepare_key(owner, now).await?;
        let Some(record) = new_record else {
            return Ok(key);
        };
        let stored = self
            .store
            .insert_if_absent(record)
            .await
            .map_err(CryptoError::Store)?;
        if stored.key_id == key.id() {
            Ok(key)
        } else {
            // Another writer created the owner's key first: use theirs.
            self.unwrap(stored)
        }
    }

    /// The owner's data key for a write that stores the key itself in the same transaction as
    /// the data: the owner's existing key with `None`, or a fresh key with the wrapped record
    /// to insert (if absent) alongside the data. The caller's store must then confirm that the
    /// owner's stored key is this one before committing (another writer may have won the race),
    /// so nothing is ever sealed under a key that is not stored. Saves a commit per new owner.
    pub async fn prepare_key(
        &self,
        owner: &KeyOwner,
        now: OffsetDateTime,
    ) -> Result<(DataKey, Option<KeyRecord>), CryptoError> {
        match self.store.find(owner).await.map_err(CryptoError::Store)? {
            Some(record) => Ok((self.unwrap(record)?, None)),
            None => self.new_key(owner, now),
        }
    }

    /// [`Vault::prepare_key`] for many owners, their stored keys read at once: each owner's
    /// key, in `owners`' order, or why that owner has none ([`CryptoError::Erased`]). The
    /// outer error is the key store's.
    pub async fn prepare_keys(
        &self,
        owners: &[KeyOwner],
        now: OffsetDateTime,
    ) -> Result<Vec<Result<(DataKey, Option<KeyRecord>), CryptoError>>, CryptoError> {
        let stored: HashMap<KeyOwner, KeyRecord> = self
            .store
            .find_many(owners)
            .await
            .map_err(CryptoError::Store)?
            .into_iter()
            .map(|record| (record.owner.clone(), record))
            .collect();
        Ok(owners
            .iter()
            .map(|owner| match stored.get(owner) {
                Some(record) => self.unwrap(record.clone()).map(|key| (key, None)),
                None => self.new_key(owner, now),
            })
            .collect())
    }

    /// A fresh key for `owner`, with its wrapped record to store.
    fn new_key(
        &self,
        owner: &KeyOwner,
        now: OffsetDateTime,
    ) -> Result<(DataKey, Option<KeyRecord>), CryptoError> {
        let secret = random_secret(&SystemRandom::new())?;
        let key_id = KeyId::random()?;
        let wrapped = self.master.keyring().wrap(owner, &key_id, &secret)?;
        let record = KeyRecord {
            owner: owner.clone(),
            key_id,
            created: now,
            state: KeyState::Wrapped(wrapped),
        };
        Ok((
            DataKey::from_secret(owner.clone(), key_id, &secret)?,
            Some(record),
        ))
    }

    /// The owner's data key for opening what it sealed. [`CryptoError::Erased`] if destroyed.
    /// `Ok(None)` if the owner never had a key (nothing can have been sealed for them).
    pub async fn key_for_reading(&self, owner: &KeyOwner) -> Result<Option<DataKey>, CryptoError> {
        let record = self.store.find(owner).await.map_err(CryptoError::Store)?;
        self.key_from_record(record)
    }

    /// As [`Vault::key_for_reading`], from a key record the caller read itself, typically in
    /// the same statement as the data it opens (one round trip instead of two). The record
    /// must come from the key store as it is now, never from a cache: that is what makes an
    /// erasure take effect on the next read everywhere.
    pub fn key_from_record(
        &self,
        record: Option<KeyRecord>,
    ) -> Result<Option<DataKey>, CryptoError> {
        record.map(|record| self.unwrap(record)).transpose()
    }

    fn unwrap(&self, record: KeyRecord) -> Result<DataKey, CryptoError> {
        let KeyState::Wrapped(wrapped) = &record.state else {
            return Err(CryptoError::Erased);
        };
        let mut keyring = self.master.keyring();
        if !keyring.has_version(wrapped.kek_version) {
            // Another process rotated to a version this one has not loaded yet.
            keyring = self.master.reload()?;
        }
        let secret = keyring.unwrap(&record.owner, &record.key_id, wrapped)?;
        DataKey::from_secret(record.owner, record.key_id, &secret)
    }

    /// Rewraps every live data key not wrapped by the active master key, in batches. Touches no
    /// PHI: only 32-byte keys are unwrapped and wrapped again. Safe to run while the server
    /// serves; readers keep opening either wrapping until the swap, which is atomic per key.
    pub async fn rewrap_all(&self, batch: u64) -> Result<RewrapReport, CryptoError> {
        let keyring = self.master.reload()?;
        let active = keyring.active_version();
        let mut report = RewrapReport::default();
        let mut after: Option<KeyOwner> = None;
        loop {
            let records = self
                .store
                .wrapped_by_other_than(active, after.as_ref(), batch.max(1))
                .await
                .map_err(CryptoError::Store)?;
            let Some(last) = records.last() else {
                return Ok(report);
            };
            after = Some(last.owner.clone());
            for record in records {
                let KeyState::Wrapped(old) = &record.state else {
                    continue;
                };
                let secret = keyring.unwrap(&record.owner, &record.key_id, old)?;
                let new = keyring.wrap(&record.owner, &record.key_id, &secret)?;
                let swapped = self
                    .store
                    .replace_wrapping(&record.owner, record.key_id, old.kek_version, new)
                    .await
                    .map_err(CryptoError::Store)?;
                if swapped {
                    report.rewrapped += 1;
                } else {
                    report.skipped += 1;
                }
            }
        }
    }

    /// Live data keys per master-key version.
    pub async fn usage(&self) -> Result<Vec<KekUsage>, CryptoError> {
        self.store.usage().await.map_err(CryptoError::Store)
    }

    /// Proves that master key `version` can be retired: it is not active and wraps no live
    /// data key. Only then may the keyring drop it ([`Keyring::without`]).
    pub async fn check_retirable(&self, version: u32) -> Result<(), CryptoError> {
        let keyring = self.master.reload()?;
        if !keyring.has_version(version) {
            return Err(CryptoError::UnknownMasterKey(version));
        }
        if keyring.active_version() == version {
            return Err(CryptoError::NotRetirable {
                version,
                reason: "it is the active version; rotate first".into(),
            });
        }
        let in_use = self
            .usage()
            .await?
            .into_iter()
            .find(|usage| usage.kek_version == version)
            .map_or(0, |usage| usage.data_keys);
        if in_use > 0 {
            return Err(CryptoError::NotRetirable {
                version,
                reason: format!("it still wraps {in_use} data key(s); run `cairn keys rotate`"),
            });
        }
        Ok(())
    }

    /// Destroys the owner's data key (crypto-shredding).
    pub async fn destroy(&self, owner: &KeyOwner, at: OffsetDateTime) -> Result<(), CryptoError> {
        self.store
            .destroy(owner, at)
            .await
            .map_err(CryptoError::Store)
    }
}

#[cfg(test)]
mod tests;
