//! An in-memory [`KeyStore`], for tests and for services that keep keys elsewhere in memory.

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};

use async_trait::async_trait;
use time::OffsetDateTime;

use crate::data_key::{KeyId, KeyOwner, KeyRecord, KeyState};
use crate::error::StoreFailure;
use crate::keyring::WrappedKey;
use crate::ports::{KekUsage, KeyStore};

#[derive(Debug, Default)]
pub struct MemoryKeyStore {
    records: Mutex<BTreeMap<KeyOwner, KeyRecord>>,
}

impl MemoryKeyStore {
    fn lock(&self) -> Result<MutexGuard<'_, BTreeMap<KeyOwner, KeyRecord>>, StoreFailure> {
        self.records
            .lock()
            .map_err(|_| "the in-memory key store was poisoned".into())
    }
}

#[async_trait]
impl KeyStore for MemoryKeyStore {
    async fn find(&self, owner: &KeyOwner) -> Result<Option<KeyRecord>, StoreFailure> {
        Ok(self.lock()?.get(owner).cloned())
    }

    async fn find_many(&self, owners: &[KeyOwner]) -> Result<Vec<KeyRecord>, StoreFailure> {
        let keys = self.lock()?;
        Ok(owners.iter().filter_map(|o| keys.get(o).cloned()).collect())
    }

    async fn insert_if_absent(&self, record: KeyRecord) -> Result<KeyRecord, StoreFailure> {
        Ok(self
            .lock()?
            .entry(record.owner.clone())
            .or_insert(record)
            .clone())
    }

    async fn replace_wrapping(
        &self,
        owner: &KeyOwner,
        key_id: KeyId,
        expected_kek_version: u32,
        wrapped: WrappedKey,
    ) -> Result<bool, StoreFailure> {
        let mut records = self.lock()?;
        match records.get_mut(owner) {
            Some(record)
                if record.key_id == key_id
                    && matches!(&record.state, KeyState::Wrapped(w) if w.kek_version == expected_kek_version) =>
            {
                record.state = KeyState::Wrapped(wrapped);
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn wrapped_by_other_than(
        &self,
        kek_version: u32,
        after: Option<&KeyOwner>,
        limit: u64,
    ) -> Result<Vec<KeyRecord>, StoreFailure> {
        let records = self.lock()?;
        Ok(records
            .values()
            .filter(|r| after.is_none_or(|after| &r.owner > after))
            .filter(|r| matches!(&r.state, KeyState::Wrapped(w) if w.kek_version != kek_version))
            .take(usize::try_from(limit).unwrap_or(usize::MAX))
            .cloned()
            .collect())
    }

    async fn usage(&self) -> Result<Vec<KekUsage>, StoreFailure> {
        let mut counts = BTreeMap::<u32, u64>::new();
        for record in self.lock()?.values() {
            if let KeyState::Wrapped(w) = &record.state {
                *counts.entry(w.kek_version).or_default() += 1;
            }
        }
        Ok(counts
            .into_iter()
            .map(|(kek_version, data_keys)| KekUsage {
                kek_version,
                data_keys,
            })
            .collect())
    }

    async fn destroy(&self, owner: &KeyOwner, at: OffsetDateTime) -> Result<(), StoreFailure> {
        let mut records = self.lock()?;
        match records.get_mut(owner) {
            Some(record) => {
                if matches!(record.state, KeyState::Wrapped(_)) {
                    record.state = KeyState::Destroyed { at };
                }
            }
            None => {
                records.insert(
                    owner.clone(),
                    KeyRecord {
                        owner: owner.clone(),
                        key_id: KeyId::from_bytes(&[0; KeyId::LEN]).ok_or("key id length")?,
                        created: at,
                        state: KeyState::Destroyed { at },
                    },
                );
            }
        }
        Ok(())
    }
}
