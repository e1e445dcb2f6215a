//! The ports phi-crypto needs from its host.

use std::sync::Arc;

use async_trait::async_trait;
use time::OffsetDateTime;

use crate::data_key::{KeyId, KeyOwner, KeyRecord};
use crate::error::{CryptoError, StoreFailure};
use crate::keyring::{Keyring, WrappedKey};

/// How many data keys one master-key version wraps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KekUsage {
    pub kek_version: u32,
    pub data_keys: u64,
}

/// Where wrapped data keys live (a database table, next to the data they protect). The store
/// only ever sees wrapped keys.
#[async_trait]
pub trait KeyStore: Send + Sync {
    /// The owner's key record, live or destroyed; `None` if the owner never had one.
    async fn find(&self, owner: &KeyOwner) -> Result<Option<KeyRecord>, StoreFailure>;

    /// [`KeyStore::find`] of many owners at once: the records of those that have one, in any
    /// order (an import chunk spans hundreds of patients: one round trip, not hundreds).
    async fn find_many(&self, owners: &[KeyOwner]) -> Result<Vec<KeyRecord>, StoreFailure>;

    /// Stores `record` unless the owner already has one, and returns the owner's record either
    /// way: when two writers race to create a key, both end up using the winner's.
    async fn insert_if_absent(&self, record: KeyRecord) -> Result<KeyRecord, StoreFailure>;

    /// Replaces the wrapping of the owner's key `key_id` if it is still wrapped by
    /// `expected_kek_version`; returns whether it did (false: it changed meanwhile).
    async fn replace_wrapping(
        &self,
        owner: &KeyOwner,
        key_id: KeyId,
        expected_kek_version: u32,
        wrapped: WrappedKey,
    ) -> Result<bool, StoreFailure>;

    /// Up to `limit` live keys wrapped by a master-key version other than `kek_version`, in
    /// owner order after `after`.
    async fn wrapped_by_other_than(
        &self,
        kek_version: u32,
        after: Option<&KeyOwner>,
        limit: u64,
    ) -> Result<Vec<KeyRecord>, StoreFailure>;

    /// Live data keys per master-key version.
    async fn usage(&self) -> Result<Vec<KekUsage>, StoreFailure>;

    /// Destroys the owner's key: its wrapped bytes are deleted and a tombstone stays. Destroying
    /// a destroyed or absent key leaves (or creates) a tombstone.
    async fn destroy(&self, owner: &KeyOwner, at: OffsetDateTime) -> Result<(), StoreFailure>;
}

/// Where master keys come from (a keyring file, the environment, a KMS). Never the database.
pub trait MasterKeys: Send + Sync {
    /// The keyring as last loaded.
    fn keyring(&self) -> Arc<Keyring>;

    /// Loads the keyring again, after a wrapped key named a version this process did not know
    /// (another process rotated). Sources that cannot change return the same keyring.
    fn reload(&self) -> Result<Arc<Keyring>, CryptoError> {
        Ok(self.keyring())
    }
}

/// A keyring that never changes (from `CAIRN_MASTER_KEY`, or in tests).
#[derive(Debug, Clone)]
pub struct FixedKeyring(pub Arc<Keyring>);

impl MasterKeys for FixedKeyring {
    fn keyring(&self) -> Arc<Keyring> {
        self.0.clone()
    }
}
