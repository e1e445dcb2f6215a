//! In-memory fakes of the ports, for tests of the core and for anyone embedding it.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use fhir_model::ResourceType;
use time::OffsetDateTime;

use crate::ports::{Clock, IdGenerator, NewVersion, ResourceStore, StoreError, StoredVersion};

type Key = (ResourceType, String);

/// A [`ResourceStore`] in a `BTreeMap`, every version kept.
#[derive(Debug, Default)]
pub struct MemoryStore {
    versions: Mutex<BTreeMap<Key, Vec<StoredVersion>>>,
}

impl MemoryStore {
    fn lock(
        &self,
    ) -> Result<std::sync::MutexGuard<'_, BTreeMap<Key, Vec<StoredVersion>>>, StoreError> {
        self.versions.lock().map_err(|_| {
            StoreError::Unavailable("the in-memory store was poisoned by a panic".into())
        })
    }
}

#[async_trait]
impl ResourceStore for MemoryStore {
    async fn create(&self, version: NewVersion) -> Result<(), StoreError> {
        let mut versions = self.lock()?;
        let key = (version.resource_type, version.id.clone());
        if versions.contains_key(&key) {
            return Err(StoreError::AlreadyExists {
                resource_type: version.resource_type,
                id: version.id,
            });
        }
        versions.insert(
            key,
            vec![StoredVersion {
                resource_type: version.resource_type,
                id: version.id,
                version: version.version,
                last_updated: version.last_updated,
                deleted: false,
                body: version.body,
            }],
        );
        Ok(())
    }

    async fn read_current(
        &self,
        resource_type: ResourceType,
        id: &str,
    ) -> Result<Option<StoredVersion>, StoreError> {
        let versions = self.lock()?;
        Ok(versions
            .get(&(resource_type, id.to_owned()))
            .and_then(|all| all.last().cloned()))
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.lock().map(|_| ())
    }
}

/// A clock that stands still until moved.
#[derive(Debug)]
pub struct FixedClock(Mutex<OffsetDateTime>);

impl FixedClock {
    pub fn at(time: OffsetDateTime) -> Self {
        Self(Mutex::new(time))
    }

    pub fn advance(&self, by: time::Duration) {
        if let Ok(mut now) = self.0.lock() {
            *now += by;
        }
    }
}

impl Clock for FixedClock {
    fn now(&self) -> OffsetDateTime {
        self.0
            .lock()
            .map(|now| *now)
            .unwrap_or(OffsetDateTime::UNIX_EPOCH)
    }
}

/// Ids `id-1`, `id-2`, … in order.
#[derive(Debug, Default)]
pub struct SequentialIds(AtomicU64);

impl IdGenerator for SequentialIds {
    fn new_id(&self) -> String {
        format!("id-{}", self.0.fetch_add(1, Ordering::Relaxed) + 1)
    }
}
