//! The ports the core needs, named for what it needs them for.

use std::fmt;

use async_trait::async_trait;
use fhir_model::ResourceType;
use time::OffsetDateTime;

use phi_crypto::{KeyId, KeyOwner, KeyRecord};

use crate::index::{IndexRows, SearchQuery};

/// One version of a resource, ready to be stored. The body is sealed ciphertext, opaque to the
/// store; the index rows hold no plaintext PHI (identifying values are blind tokens).
#[derive(Clone, PartialEq, Eq)]
pub struct NewVersion {
    pub resource_type: ResourceType,
    pub id: String,
    pub version: u64,
    pub last_updated: OffsetDateTime,
    /// Whose data key sealed the body: a patient's compartment or the system.
    pub key_owner: KeyOwner,
    /// The id of the data key that sealed the body; the store commits only if it is the
    /// owner's stored key.
    pub key_id: KeyId,
    /// A new owner's wrapped data key, to insert (if the owner has none) in the same
    /// transaction.
    pub new_key: Option<KeyRecord>,
    pub body: Vec<u8>,
    /// The search index rows of this version; they replace the resource's previous rows.
    pub index: IndexRows,
    /// A deletion marker: no body (empty), no index rows, and no key check.
    pub deleted: bool,
    /// For a conditional create: the keyed hash of its criteria, unique per type while the
    /// resource is unchanged. A second create with the same claim fails with
    /// [`StoreError::ClaimTaken`].
    pub claim: Option<phi_crypto::BlindToken>,
    /// The audit entry of this write: stored in the same transaction, so a write is on the
    /// audit log exactly when it happened.
    pub audit: Option<audit_chain::AuditEntry>,
}

/// One write of a unit of work: a new resource (`expected` = `None`) or a later version of one
/// whose current version must be `expected`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Write {
    pub version: NewVersion,
    pub expected: Option<u64>,
}

/// Everything one use case writes: versions (each with its index rows, key checks, claim and
/// audit entry) and audit entries of the whole, committed together or not at all. A single
/// create or update is `Changes` of one write; a transaction Bundle is one `Changes`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Changes {
    /// In the order they are applied: a later write may update what an earlier one created.
    pub writes: Vec<Write>,
    /// Entries about the unit as a whole, stored in the same transaction.
    pub audit: Vec<audit_chain::AuditEntry>,
}

impl Changes {
    /// A create of `version`.
    pub fn create(version: NewVersion) -> Self {
        Self {
            writes: vec![Write {
                version,
                expected: None,
            }],
            audit: Vec::new(),
        }
    }

    /// An update of a resource whose current version is `expected`.
    pub fn update(version: NewVersion, expected: u64) -> Self {
        Self {
            writes: vec![Write {
                version,
                expected: Some(expected),
            }],
            audit: Vec::new(),
        }
    }
}

/// A version as the store returns it.
#[derive(Clone, PartialEq, Eq)]
pub struct SealedVersion {
    pub resource_type: ResourceType,
    pub id: String,
    pub version: u64,
    pub last_updated: OffsetDateTime,
    pub deleted: bool,
    pub key_owner: KeyOwner,
    /// The owner's data-key record (wrapped, or the tombstone left by an erasure), read in the
    /// same statement as the version: a read is one round trip, and the key and the body come
    /// from one snapshot. `None` if the owner has no key record.
    pub key: Option<KeyRecord>,
    pub body: Vec<u8>,
}

/// A search result: the current version, and its value of the query's sort key (`None` when
/// sorted by id), which positions the paging cursors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchMatch {
    pub version: SealedVersion,
    pub sort_value: Option<OffsetDateTime>,
}

/// Where a page of type or system history ended: the last version it showed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryPosition {
    pub last_updated: OffsetDateTime,
    pub resource_type: String,
    pub id: String,
    pub version: u64,
}

impl HistoryPosition {
    pub fn of(version: &SealedVersion) -> Self {
        Self {
            last_updated: version.last_updated,
            resource_type: version.resource_type.as_str().to_owned(),
            id: version.id.clone(),
            version: version.version,
        }
    }

    /// Whether `version` comes after this position in newest-first order.
    pub fn is_before(&self, version: &SealedVersion) -> bool {
        let key = (
            version.last_updated,
            version.resource_type.as_str(),
            version.id.as_str(),
            version.version,
        );
        key < (
            self.last_updated,
            self.resource_type.as_str(),
            self.id.as_str(),
            self.version,
        )
    }
}

/// What an erasure removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Erasure {
    /// Resources in the compartment, now unreadable.
    pub resources: u64,
    /// Their versions, all sealed under the destroyed key.
    pub versions: u64,
}

// Bodies are PHI: Debug shows their size, never their bytes.
impl fmt::Debug for NewVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewVersion")
            .field("resource_type", &self.resource_type)
            .field("id", &self.id)
            .field("version", &self.version)
            .field("last_updated", &self.last_updated)
            .field("key_owner", &self.key_owner)
            .field("body_len", &self.body.len())
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for SealedVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SealedVersion")
            .field("resource_type", &self.resource_type)
            .field("id", &self.id)
            .field("version", &self.version)
            .field("last_updated", &self.last_updated)
            .field("deleted", &self.deleted)
            .field("key_owner", &self.key_owner)
            .field("key_id", &self.key.as_ref().map(|key| key.key_id))
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
    /// The compartment's data key was destroyed: nothing more is written for that patient.
    #[error("the compartment {key_owner} was erased")]
    Erased { key_owner: KeyOwner },
    /// A conditional create with the same criteria created its resource first; nothing was
    /// written.
    #[error("a conditional create with the same criteria won the race for {resource_type}")]
    ClaimTaken { resource_type: ResourceType },
    /// The resource's current version is not the one the write expected (a concurrent write
    /// won); nothing was written.
    #[error("{resource_type}/{id} changed meanwhile")]
    VersionConflict {
        resource_type: ResourceType,
        id: String,
    },
    /// The body was sealed under a key that is not the owner's stored key (another writer
    /// created the owner's key first); nothing was written, seal again and retry.
    #[error("the data key of {key_owner} changed while writing")]
    KeyChanged { key_owner: KeyOwner },
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
    /// Commits a unit of work: every write in order, with its index rows, claim, audit entry
    /// and (if given and the owner has none) its owner's new data key, and the unit's own audit
    /// entries, in one transaction, or nothing. A write fails the whole unit with
    /// [`StoreError::AlreadyExists`] (a create of a type and id that exists),
    /// [`StoreError::VersionConflict`] (an update whose resource is not at `expected`),
    /// [`StoreError::ClaimTaken`] (a conditional create whose claim another holds),
    /// [`StoreError::Erased`] (the key owner was erased) or [`StoreError::KeyChanged`] (the
    /// owner's stored key is not `key_id`; deletion markers skip the key checks). The key
    /// checks happen in the same transaction under a shared lock on the key row, so a write
    /// racing an erasure either lands before it (and is erased with the rest) or fails.
    async fn commit(&self, changes: Changes) -> Result<(), StoreError>;

    /// Stores version 1 of a new resource: a unit of one write (see [`Self::commit`]).
    async fn create(&self, version: NewVersion) -> Result<(), StoreError> {
        self.commit(Changes::create(version)).await
    }

    /// Stores a later version of an existing resource whose current version is `expected`,
    /// replacing its index rows: a unit of one write (see [`Self::commit`]).
    async fn update(&self, version: NewVersion, expected: u64) -> Result<(), StoreError> {
        self.commit(Changes::update(version, expected)).await
    }

    /// One version of a resource, or `None` if it never existed.
    async fn read_version(
        &self,
        resource_type: ResourceType,
        id: &str,
        version: u64,
    ) -> Result<Option<SealedVersion>, StoreError>;

    /// A resource's versions, newest first, at most `limit`, only those updated at or after
    /// `since` if given.
    async fn history(
        &self,
        resource_type: ResourceType,
        id: &str,
        since: Option<OffsetDateTime>,
        limit: u64,
    ) -> Result<Vec<SealedVersion>, StoreError>;

    /// Versions of every resource of `resource_type` (or of every type), newest first by
    /// (last updated, type, id, version), strictly after `after` in that order, at most
    /// `limit`, only those updated at or after `since` if given.
    async fn history_all(
        &self,
        resource_type: Option<ResourceType>,
        since: Option<OffsetDateTime>,
        after: Option<&HistoryPosition>,
        limit: u64,
    ) -> Result<Vec<SealedVersion>, StoreError>;

    /// The newest version of a resource, deleted or not, or `None` if it never existed.
    async fn read_current(
        &self,
        resource_type: ResourceType,
        id: &str,
    ) -> Result<Option<SealedVersion>, StoreError>;

    /// [`ResourceStore::read_current`] of many resources of one type in one call: the newest
    /// version of each of `ids` that exists, deleted or not, in any order. A transaction
    /// Bundle's or an import chunk's PUT entries are resolved with it, in one round trip
    /// instead of one per entry.
    async fn read_currents(
        &self,
        resource_type: ResourceType,
        ids: &[String],
    ) -> Result<Vec<SealedVersion>, StoreError>;

    /// The current, non-deleted versions of resources matching every clause of `query`, in
    /// `query.order` strictly after `query.after`, at most `query.limit` of them.
    async fn search(&self, query: &SearchQuery) -> Result<Vec<SearchMatch>, StoreError>;

    /// The resource holding a conditional-create claim, if any.
    async fn claim_holder(
        &self,
        resource_type: ResourceType,
        claim: phi_crypto::BlindToken,
    ) -> Result<Option<String>, StoreError>;

    /// Releases `holder`'s claim (a no-op if another resource holds it now). Claims stay with
    /// their resource through updates and go with its deletion; a holder that no longer
    /// matches its criteria is released by the next conditional write that meets it.
    async fn release_claim(
        &self,
        resource_type: ResourceType,
        claim: phi_crypto::BlindToken,
        holder: &str,
    ) -> Result<(), StoreError>;

    /// How many current, non-deleted resources match every clause (paging ignored).
    async fn count(&self, query: &SearchQuery) -> Result<u64, StoreError>;

    /// Crypto-shredding of a patient compartment, in one transaction: destroys the data key of
    /// `key_owner` (leaving a tombstone), deletes the index rows of every resource sealed under
    /// it, and marks those resources deleted. The sealed versions stay, unreadable. `audit` is
    /// stored in the same transaction.
    async fn erase(
        &self,
        key_owner: &KeyOwner,
        at: OffsetDateTime,
        audit: &audit_chain::AuditEntry,
    ) -> Result<Erasure, StoreError>;

    /// Replaces the search index rows of a resource with `index`, only if `version` is still
    /// its current version and it is not deleted (its conditional claims stay). `false`, and
    /// nothing written, when the resource moved on: its newer version brought its own rows.
    async fn replace_index(
        &self,
        resource_type: ResourceType,
        id: &str,
        version: u64,
        index: IndexRows,
    ) -> Result<bool, StoreError>;

    /// Which generation of the index rules the stored index rows were made by (see
    /// [`crate::index::INDEX_GENERATION`]); 1 for a store that never said.
    async fn index_generation(&self) -> Result<u32, StoreError>;

    /// Records that every index row is now made by `generation`'s rules.
    async fn set_index_generation(&self, generation: u32) -> Result<(), StoreError>;

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
