//! The ports the core needs, named for what it needs them for.

use std::fmt;

use async_trait::async_trait;
use fhir_model::ResourceType;
use time::OffsetDateTime;

/// One version of a resource, ready to be stored. The body is opaque to the store: today FHIR
/// JSON, later sealed ciphertext; the store keeps the bytes and never looks inside.
#[derive(Clone, PartialEq, Eq)]
pub struct NewVersion {
    pub resource_type: ResourceType,
    pub id: String,
    pub version: u64,
    pub last_updated: OffsetDateTime,
    pub body: Vec<u8>,
}

/// A version as the store returns it.
#[derive(Clone, PartialEq, Eq)]
pub struct StoredVersion {
    pub resource_type: ResourceType,
    pub id: String,
    pub version: u64,
    pub last_updated: OffsetDateTime,
    pub deleted: bool,
    pub body: Vec<u8>,
}

// Bodies are PHI: Debug shows their size, never their bytes.
impl fmt::Debug for NewVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewVersion")
            .field("resource_type", &self.resource_type)
            .field("id", &self.id)
            .field("version", &self.version)
            .field("last_updated", &self.last_updated)
            .field("body_len", &self.body.len())
            .finish()
    }
}

impl fmt::Debug for StoredVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoredVersion")
            .field("resource_type", &self.resource_type)
            .field("id", &self.id)
            .field("version", &self.version)
            .field("last_updated", &self.last_updated)
            .field("deleted", &self.deleted)
            .field("body_len", &self.body.len())
            .finish()
    }
}

/// Why the store could not do what was asked. Never carries PHI.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The resource (or that version of it) already exists.
    #[error("{resource_type}/{id} already exists")]
    AlreadyExists {
        resource_type: ResourceType,
        id: String,
    },
    /// The database could not be reached or failed; the source says why (for logs only).
    #[error("the record store is unavailable")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// A stored row cannot be understood (a bug or tampering).
    #[error("stored data for {resource_type}/{id} is corrupt: {what}")]
    Corrupt {
        resource_type: String,
        id: String,
        what: &'static str,
    },
}

/// Where resource versions live. Every version is kept; writes are atomic.
#[async_trait]
pub trait ResourceStore: Send + Sync {
    /// Stores version 1 of a new resource. Fails with [`StoreError::AlreadyExists`] if a resource
    /// with that type and id exists, and then writes nothing.
    async fn create(&self, version: NewVersion) -> Result<(), StoreError>;

    /// The newest version of a resource, deleted or not, or `None` if it never existed.
    async fn read_current(
        &self,
        resource_type: ResourceType,
        id: &str,
    ) -> Result<Option<StoredVersion>, StoreError>;

    /// Whether the store answers (for readiness checks).
    async fn ping(&self) -> Result<(), StoreError>;
}

/// The time, from the core's point of view.
pub trait Clock: Send + Sync {
    fn now(&self) -> OffsetDateTime;
}

/// Ids for new resources.
pub trait IdGenerator: Send + Sync {
    fn new_id(&self) -> String;
}

/// The system's UTC clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> OffsetDateTime {
        OffsetDateTime::now_utc()
    }
}

/// Random (v4) UUIDs: unguessable, so ids reveal nothing about volume or order.
#[derive(Debug, Default, Clone, Copy)]
pub struct RandomIds;

impl IdGenerator for RandomIds {
    fn new_id(&self) -> String {
        uuid::Uuid::new_v4().to_string()
    }
}
