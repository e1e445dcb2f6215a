//! The use cases.

use std::sync::Arc;

use fhir_model::search::patient_compartment;
use fhir_model::{Id, Instant, Resource, ResourceType};
use phi_crypto::{CryptoError, KeyId, KeyOwner, SealContext, Vault, open, seal};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use audit_chain::{Action, AuditEntry, AuditTrail, Outcome};

use crate::audit::{self, Actor, blind_query, patient_of, per_patient};
use crate::error::RecordsError;
use crate::index::{IndexRows, Position, index_rows};
use crate::ports::{
    Clock, Erasure, HistoryPosition, IdGenerator, NewVersion, ResourceStore, SearchMatch,
    StoreError, StoredVersion,
};
use crate::search::{self, encode_cursor};

/// A resource as stored: its body is the complete FHIR JSON, `meta` included.
#[derive(Clone, PartialEq, Eq)]
pub struct StoredResource {
    pub resource_type: ResourceType,
    pub id: String,
    pub version: u64,
    pub last_updated: OffsetDateTime,
    /// Whose data key seals it: `Patient/{id}` or `system`.
    pub key_owner: String,
    pub body: Vec<u8>,
}

impl std::fmt::Debug for StoredResource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredResource")
            .field("resource_type", &self.resource_type)
            .field("id", &self.id)
            .field("version", &self.version)
            .field("body_len", &self.body.len())
            .finish()
    }
}

/// How often an update or delete without `If-Match` starts over after a concurrent write to
/// the same resource. Each failed attempt means another writer committed, so a writer retries
/// at most as often as others succeed meanwhile; the bound only stops pathological contention.
const MAX_CONCURRENT_RETRIES: u32 = 64;

/// One version in a resource's history; a deletion has no body.
#[derive(Clone, PartialEq, Eq)]
pub struct HistoryEntry {
    pub resource_type: ResourceType,
    pub id: String,
    pub version: u64,
    pub last_updated: OffsetDateTime,
    pub body: Option<Vec<u8>>,
}

impl std::fmt::Debug for HistoryEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HistoryEntry")
            .field("resource_type", &self.resource_type)
            .field("id", &self.id)
            .field("version", &self.version)
            .field("deleted", &self.body.is_none())
            .finish_non_exhaustive()
    }
}

/// One page of type or system history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryPage {
    pub entries: Vec<HistoryEntry>,
    /// The cursor of the next page, if there may be one.
    pub next_cursor: Option<String>,
}

fn encode_history_cursor(position: &HistoryPosition) -> String {
    use base64::Engine;
    let text = format!(
        "h:{}:{}:{}:{}",
        position.last_updated.unix_timestamp_nanos(),
        position.resource_type,
        position.version,
        position.id
    );
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(text)
}

fn decode_history_cursor(cursor: &str) -> Option<HistoryPosition> {
    use base64::Engine;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(cursor)
        .ok()?;
    let text = String::from_utf8(bytes).ok()?;
    let mut parts = text.strip_prefix("h:")?.splitn(4, ':');
    let nanos: i128 = parts.next()?.parse().ok()?;
    let resource_type = ResourceType::parse(parts.next()?).ok()?;
    let version: u64 = parts.next()?.parse().ok()?;
    let id = parts.next()?;
    if !fhir_model::is_valid_id(id) {
        return None;
    }
    Some(HistoryPosition {
        last_updated: OffsetDateTime::from_unix_timestamp_nanos(nanos).ok()?,
        resource_type: resource_type.as_str().to_owned(),
        id: id.to_owned(),
        version,
    })
}

/// One page of search results.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchPage {
    pub resources: Vec<StoredResource>,
    /// The cursor of the next page, if there may be one.
    pub next_cursor: Option<String>,
    /// The cursor of the previous page, if this page is not the first.
    pub previous_cursor: Option<String>,
    /// Parameters left out under lenient handling (unknown for the type).
    pub ignored: Vec<String>,
    /// Every match, when `_total` asked for it.
    pub total: Option<u64>,
    /// Resources added by `_include` / `_revinclude` (search mode `include`).
    pub included: Vec<StoredResource>,
}

/// The FHIR record use cases, over the ports they need.
#[derive(Clone)]
pub struct Records {
    store: Arc<dyn ResourceStore>,
    vault: Vault,
    clock: Arc<dyn Clock>,
    ids: Arc<dyn IdGenerator>,
    /// `Patient/{id}` when the caller may touch only that patient's compartment.
    confinement: Option<String>,
    /// Where every touch of the records is written down.
    audit: Arc<dyn AuditTrail>,
    /// Who the entries name.
    actor: Arc<Actor>,
}

impl std::fmt::Debug for Records {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Records")
    }
}

impl Records {
    pub fn new(
        store: Arc<dyn ResourceStore>,
        vault: Vault,
        clock: Arc<dyn Clock>,
        ids: Arc<dyn IdGenerator>,
        audit: Arc<dyn AuditTrail>,
    ) -> Self {
        Self {
            store,
            vault,
            clock,
            ids,
            confinement: None,
            audit,
            actor: Arc::new(Actor::system("cairn")),
        }
    }

    /// The same use cases, written on the audit log as done by `actor`.
    pub fn acting_for(&self, actor: Actor) -> Self {
        Self {
            actor: Arc::new(actor),
            ..self.clone()
        }
    }

    /// The audit trail the use cases write to.
    pub fn audit_trail(&self) -> &Arc<dyn AuditTrail> {
        &self.audit
    }

    /// A new entry by the current actor.
    pub fn audit_entry(&self, action: Action, outcome: Outcome) -> AuditEntry {
        // Entry ids are the log's, not the records': time-ordered (UUIDv7), so the id index
        // grows at its right edge instead of touching a random page per entry.
        let id = uuid::Uuid::now_v7().to_string();
        let mut entry = AuditEntry::new(id, self.now(), action, outcome);
        self.actor.stamp(&mut entry);
        entry
    }

    /// An entry about one resource.
    fn entry_about(
        &self,
        action: Action,
        resource_type: ResourceType,
        id: &str,
        version: Option<u64>,
        key_owner: Option<&str>,
    ) -> AuditEntry {
        let mut entry = self.audit_entry(action, Outcome::Success);
        entry.resource_type = Some(resource_type.as_str().to_owned());
        entry.resource_id = Some(id.to_owned());
        entry.version = version;
        entry.patient = key_owner.and_then(patient_of);
        entry
    }

    /// Commits `entries` before anything is returned: if the log cannot take them, the
    /// caller gets [`RecordsError::AuditUnavailable`] instead of the data.
    pub async fn record(&self, entries: &[AuditEntry]) -> Result<(), RecordsError> {
        self.audit
            .append(entries)
            .await
            .map_err(RecordsError::AuditUnavailable)
    }

    /// Records a use case's failure (after its rollback: nothing it tried is stored) and
    /// passes the result on. If the log is down too, the original error still goes back.
    /// Each public use case is `audited(try_…)`: the `try_` half records its own success
    /// (in the write's transaction, or before returning what it read).
    async fn audited<T>(
        &self,
        action: Action,
        resource_type: Option<ResourceType>,
        id: Option<&str>,
        result: Result<T, RecordsError>,
    ) -> Result<T, RecordsError> {
        if let Err(err) = &result
            && !matches!(err, RecordsError::AuditUnavailable(_))
        {
            let (outcome, reason) = audit::failure(err);
            let mut entry = self.audit_entry(action, outcome);
            entry.resource_type = resource_type.map(|t| t.as_str().to_owned());
            entry.resource_id = id.map(str::to_owned);
            entry.reason = Some(reason.to_owned());
            // The caller gets the original error either way; a failure to record it shows
            // up as the log's own unavailability on the next request.
            let _ = self.record(&[entry]).await;
        }
        result
    }

    /// Entries for a set of disclosed resources: one per patient whose data it holds (so each
    /// patient's accounting of disclosures sees it), or one without a patient if none.
    fn disclosure_entries<'a>(
        &self,
        action: Action,
        resource_type: Option<ResourceType>,
        query: &[(String, String)],
        owners: impl IntoIterator<Item = &'a str>,
    ) -> Vec<AuditEntry> {
        let counts = per_patient(owners);
        let query = blind_query(&self.vault.blind_index(), query);
        let mut groups: Vec<(Option<String>, u64)> = counts.into_iter().collect();
        if groups.is_empty() {
            groups.push((None, 0));
        }
        groups
            .into_iter()
            .map(|(patient, count)| {
                let mut entry = self.audit_entry(action, Outcome::Success);
                entry.resource_type = resource_type.map(|t| t.as_str().to_owned());
                entry.patient = patient;
                entry.result_count = Some(count);
                entry.query.clone_from(&query);
                entry
            })
            .collect()
    }

    /// The same use cases for a caller who may touch only `patient_id`'s compartment: a
    /// resource outside it does not exist for them (reads, vreads and history answer 404, and
    /// searches, `_include`, `_revinclude`, `_total` and type or system history leave it out),
    /// and a write outside it is refused.
    pub fn confined_to_patient(&self, patient_id: &str) -> Self {
        Self {
            confinement: Some(
                KeyOwner::Patient(patient_id.to_owned())
                    .as_str()
                    .into_owned(),
            ),
            ..self.clone()
        }
    }

    /// Whether a stored version is visible to the caller.
    fn visible(&self, key_owner: &str) -> bool {
        self.confinement
            .as_deref()
            .is_none_or(|owner| owner == key_owner)
    }

    /// Adds the caller's compartment to a query, if confined.
    fn confine(&self, query: &mut crate::index::SearchQuery) {
        if let Some(owner) = &self.confinement {
            query
                .clauses
                .push(crate::index::Clause::Compartment(owner.clone()));
        }
    }

    /// FHIR `create`: validates, assigns a new id (any id in the body is ignored, as the spec
    /// says), stamps `meta.versionId` = 1 and `meta.lastUpdated`, seals the body under its
    /// patient compartment's data key, and stores version 1 with its index rows.
    pub async fn create(
        &self,
        resource_type: ResourceType,
        body: &[u8],
    ) -> Result<StoredResource, RecordsError> {
        let id = self.ids.new_id();
        let created = self
            .create_version_one(resource_type, body, &id, None)
            .await;
        self.audited(Action::Create, Some(resource_type), None, created)
            .await
    }

    /// FHIR conditional create (`If-None-Exist: criteria`): if exactly one resource matches the
    /// criteria, it is returned unchanged (`false`); if none, `body` is created (`true`); more
    /// than one is [`RecordsError::MultipleMatches`]. Race-free for equal criteria: the create
    /// stores a keyed hash of the criteria under a unique key in its own transaction, so of
    /// concurrent conditional creates exactly one creates and the others return its resource.
    pub async fn create_conditional(
        &self,
        resource_type: ResourceType,
        body: &[u8],
        criteria: &[(String, String)],
    ) -> Result<(StoredResource, bool), RecordsError> {
        let result = self
            .try_create_conditional(resource_type, body, criteria)
            .await;
        self.audited(Action::Create, Some(resource_type), None, result)
            .await
    }

    async fn try_create_conditional(
        &self,
        resource_type: ResourceType,
        body: &[u8],
        criteria: &[(String, String)],
    ) -> Result<(StoredResource, bool), RecordsError> {
        let (query, claim) = self.conditional_query(resource_type, criteria, "If-None-Exist")?;
        for _ in 0..4 {
            if let Some(existing) = self.single_match(&query).await? {
                // The existing resource goes back to the caller: a disclosure.
                let mut entry = self.entry_about(
                    Action::Read,
                    resource_type,
                    &existing.id,
                    Some(existing.version),
                    Some(&existing.key_owner),
                );
                entry.operation = Some("conditional-create".to_owned());
                self.record(&[entry]).await?;
                return Ok((existing, false));
            }
            let id = self.ids.new_id();
            if let Some(stored) = self.create_claimed(&query, claim, body, &id).await? {
                return Ok((stored, true));
            }
        }
        Err(RecordsError::VersionConflict {
            resource_type,
            id: "(conditional create)".to_owned(),
        })
    }

    /// FHIR conditional update (`PUT [type]?criteria`): one match is updated (the body's id,
    /// if any, must be that resource's); no match creates the resource (with the body's id if
    /// it has one), race-free for equal criteria as for conditional create; several matches
    /// are [`RecordsError::MultipleMatches`]. Returns the stored version and whether it was
    /// created.
    pub async fn update_conditional(
        &self,
        resource_type: ResourceType,
        body: &[u8],
        criteria: &[(String, String)],
    ) -> Result<(StoredResource, bool), RecordsError> {
        let result = self
            .try_update_conditional(resource_type, body, criteria)
            .await;
        self.audited(Action::Update, Some(resource_type), None, result)
            .await
    }

    async fn try_update_conditional(
        &self,
        resource_type: ResourceType,
        body: &[u8],
        criteria: &[(String, String)],
    ) -> Result<(StoredResource, bool), RecordsError> {
        let (query, claim) = self.conditional_query(resource_type, criteria, "criteria")?;
        let resource = parse_for(resource_type, body)?;
        let body_id = resource.id().map(|id| id.as_str().to_owned());
        for _ in 0..4 {
            match self.single_match(&query).await? {
                Some(existing) => {
                    if body_id.as_ref().is_some_and(|id| *id != existing.id) {
                        return Err(RecordsError::IdMismatch { id: existing.id });
                    }
                    let mut resource = resource.clone();
                    resource.set_id(Some(Id::from(existing.id.as_str())));
                    return self
                        .try_update(resource_type, &existing.id, &resource.to_json(), None)
                        .await;
                }
                None => {
                    let id = body_id.clone().unwrap_or_else(|| self.ids.new_id());
                    if let Some(stored) = self.create_claimed(&query, claim, body, &id).await? {
                        return Ok((stored, true));
                    }
                }
            }
        }
        Err(RecordsError::VersionConflict {
            resource_type,
            id: "(conditional update)".to_owned(),
        })
    }

    /// The create branch of a conditional write: version 1 holding `claim`, or `None` if
    /// another conditional write with these criteria committed first (its resource is then
    /// visible to the caller's next search; a stale claim is released for the next attempt).
    async fn create_claimed(
        &self,
        query: &crate::index::SearchQuery,
        claim: phi_crypto::BlindToken,
        body: &[u8],
        id: &str,
    ) -> Result<Option<StoredResource>, RecordsError> {
        match self
            .create_version_one(query.resource_type, body, id, Some(claim))
            .await
        {
            Ok(stored) => Ok(Some(stored)),
            Err(RecordsError::ClaimTaken { .. }) => {
                self.release_stale_claim(query, claim).await?;
                Ok(None)
            }
            Err(other) => Err(other),
        }
    }

    /// After losing a claim race: if the claim's holder no longer matches the criteria (it was
    /// updated to other values), the claim is stale and is released so the next attempt can
    /// take it. A holder that still matches is found by the next attempt's search.
    async fn release_stale_claim(
        &self,
        query: &crate::index::SearchQuery,
        claim: phi_crypto::BlindToken,
    ) -> Result<(), RecordsError> {
        let Some(holder) = self.store.claim_holder(query.resource_type, claim).await? else {
            return Ok(());
        };
        let mut holder_query = query.clone();
        holder_query
            .clauses
            .push(crate::index::Clause::Id(vec![holder.clone()]));
        if self.store.search(&holder_query).await?.is_empty() {
            self.store
                .release_claim(query.resource_type, claim, &holder)
                .await?;
        }
        Ok(())
    }

    /// The query of a conditional interaction's criteria (at most two matches matter) and the
    /// claim that makes equal criteria race on a unique key.
    fn conditional_query(
        &self,
        resource_type: ResourceType,
        criteria: &[(String, String)],
        what: &str,
    ) -> Result<(crate::index::SearchQuery, phi_crypto::BlindToken), RecordsError> {
        let blind = self.vault.blind_index();
        let mut query = search::parse(resource_type, criteria, &blind, self.now())?;
        if query.clauses.is_empty() {
            return Err(RecordsError::Search(search::SearchError {
                param: what.to_owned(),
                reason: "names no search criteria".to_owned(),
            }));
        }
        query.after = None;
        query.limit = 2;
        query.order = crate::index::Order::default();
        let claim = blind
            .key(&format!("{resource_type}.conditional-create"))
            .digest(&query.canonical());
        // After the claim: equal criteria claim alike whoever asks.
        self.confine(&mut query);
        Ok((query, claim))
    }

    /// Creates version 1 of `body` with `id` (holding `claim`, for a conditional create):
    /// validates, stamps id, `meta.versionId` = 1 and `meta.lastUpdated`, seals, stores.
    async fn create_version_one(
        &self,
        resource_type: ResourceType,
        body: &[u8],
        id: &str,
        claim: Option<phi_crypto::BlindToken>,
    ) -> Result<StoredResource, RecordsError> {
        if !fhir_model::is_valid_id(id) {
            return Err(RecordsError::BadId { id: id.to_owned() });
        }
        let mut resource = parse_for(resource_type, body)?;
        let last_updated = self.now();
        resource.set_id(Some(Id::from(id)));
        let meta = resource.meta_mut();
        meta.version_id = Some(Id::from("1"));
        meta.last_updated = Some(Instant::from(instant(last_updated)));
        let (body, key_owner) = self
            .store_version(&resource, 1, last_updated, None, claim, Action::Create)
            .await?;
        Ok(StoredResource {
            resource_type,
            id: id.to_owned(),
            version: 1,
            last_updated,
            key_owner,
            body,
        })
    }

    /// The one resource matching `query`, `None` if none, an error if several.
    async fn single_match(
        &self,
        query: &crate::index::SearchQuery,
    ) -> Result<Option<StoredResource>, RecordsError> {
        let mut found = self.store.search(query).await?;
        match found.len() {
            0 => Ok(None),
            1 => match found.pop() {
                Some(found) => self.open_version(found.version).map(Some),
                None => Ok(None),
            },
            _ => Err(RecordsError::MultipleMatches {
                resource_type: query.resource_type,
            }),
        }
    }

    /// FHIR `update`: stores `body` as the next version of `resource_type/id`, or as version 1
    /// if there is none (update as create, with the client's id). With `if_match`, only if the
    /// current version is that one ([`RecordsError::VersionMismatch`] otherwise). Without it,
    /// a concurrent update is retried on the newer version, so no write is lost. Returns the
    /// stored resource and whether it was created.
    pub async fn update(
        &self,
        resource_type: ResourceType,
        id: &str,
        body: &[u8],
        if_match: Option<u64>,
    ) -> Result<(StoredResource, bool), RecordsError> {
        let result = self.try_update(resource_type, id, body, if_match).await;
        self.audited(Action::Update, Some(resource_type), Some(id), result)
            .await
    }

    async fn try_update(
        &self,
        resource_type: ResourceType,
        id: &str,
        body: &[u8],
        if_match: Option<u64>,
    ) -> Result<(StoredResource, bool), RecordsError> {
        if !fhir_model::is_valid_id(id) {
            return Err(RecordsError::BadId { id: id.to_owned() });
        }
        let mut resource = parse_for(resource_type, body)?;
        if resource.id().map(|i| i.as_str()) != Some(id) {
            return Err(RecordsError::IdMismatch { id: id.to_owned() });
        }
        let mut attempts = 0;
        loop {
            attempts += 1;
            let current = self.store.read_current(resource_type, id).await?;
            if current
                .as_ref()
                .is_some_and(|c| !self.visible(&c.key_owner))
            {
                return Err(RecordsError::NotFound {
                    resource_type,
                    id: id.to_owned(),
                });
            }
            let current_version = current.as_ref().map(|c| c.version);
            if let Some(wanted) = if_match
                && current_version != Some(wanted)
            {
                return Err(RecordsError::VersionMismatch {
                    resource_type,
                    id: id.to_owned(),
                    expected: wanted,
                    current: current_version,
                });
            }
            let version = current_version.map_or(1, |v| v + 1);
            let last_updated = self.now();
            let meta = resource.meta_mut();
            meta.version_id = Some(Id::from(version.to_string()));
            meta.last_updated = Some(Instant::from(instant(last_updated)));
            let action = if current_version.is_some() {
                Action::Update
            } else {
                Action::Create
            };
            let written = self
                .store_version(
                    &resource,
                    version,
                    last_updated,
                    current_version,
                    None,
                    action,
                )
                .await;
            match written {
                Ok((body, key_owner)) => {
                    let stored = StoredResource {
                        resource_type,
                        id: id.to_owned(),
                        version,
                        last_updated,
                        key_owner,
                        body,
                    };
                    return Ok((stored, current_version.is_none()));
                }
                // Another writer got there first: with If-Match the client's precondition no
                // longer holds; without it, try again on top of the newer version.
                Err(RecordsError::Conflict { .. } | RecordsError::VersionConflict { .. })
                    if if_match.is_none() && attempts < MAX_CONCURRENT_RETRIES => {}
                Err(RecordsError::Conflict { .. } | RecordsError::VersionConflict { .. })
                    if if_match.is_some() =>
                {
                    return Err(RecordsError::VersionMismatch {
                        resource_type,
                        id: id.to_owned(),
                        expected: if_match.unwrap_or_default(),
                        current: None,
                    });
                }
                Err(other) => return Err(other),
            }
        }
    }

    /// FHIR `delete`: a new version that marks the resource deleted (reads then answer 410;
    /// history keeps every version). Deleting a deleted resource changes nothing. Returns the
    /// deletion's version, or `None` if it was already deleted.
    pub async fn delete(
        &self,
        resource_type: ResourceType,
        id: &str,
        if_match: Option<u64>,
    ) -> Result<Option<u64>, RecordsError> {
        let result = self.try_delete(resource_type, id, if_match).await;
        self.audited(Action::Delete, Some(resource_type), Some(id), result)
            .await
    }

    async fn try_delete(
        &self,
        resource_type: ResourceType,
        id: &str,
        if_match: Option<u64>,
    ) -> Result<Option<u64>, RecordsError> {
        let not_found = || RecordsError::NotFound {
            resource_type,
            id: id.to_owned(),
        };
        if !fhir_model::is_valid_id(id) {
            return Err(not_found());
        }
        let mut attempts = 0;
        loop {
            attempts += 1;
            let current = self
                .store
                .read_current(resource_type, id)
                .await?
                .filter(|c| self.visible(&c.key_owner))
                .ok_or_else(not_found)?;
            if let Some(wanted) = if_match
                && current.version != wanted
            {
                return Err(RecordsError::VersionMismatch {
                    resource_type,
                    id: id.to_owned(),
                    expected: wanted,
                    current: Some(current.version),
                });
            }
            if current.deleted {
                return Ok(None);
            }
            let version = current.version + 1;
            let audit = self.entry_about(
                Action::Delete,
                resource_type,
                id,
                Some(version),
                Some(&current.key_owner),
            );
            let marker = NewVersion {
                resource_type,
                id: id.to_owned(),
                version,
                last_updated: self.now(),
                key_owner: current.key_owner,
                // Unused: a deletion marker has no body to seal.
                key_id: KeyId::from_bytes(&[0; KeyId::LEN]).ok_or(RecordsError::Crypto(
                    CryptoError::Integrity {
                        what: "key id length",
                    },
                ))?,
                new_key: None,
                body: Vec::new(),
                index: IndexRows::default(),
                deleted: true,
                claim: None,
                audit: Some(audit),
            };
            match self.store.update(marker, current.version).await {
                Ok(()) => return Ok(Some(version)),
                Err(StoreError::VersionConflict { .. })
                    if if_match.is_none() && attempts < MAX_CONCURRENT_RETRIES => {}
                Err(StoreError::VersionConflict { .. }) if if_match.is_some() => {
                    return Err(RecordsError::VersionMismatch {
                        resource_type,
                        id: id.to_owned(),
                        expected: if_match.unwrap_or_default(),
                        current: None,
                    });
                }
                Err(other) => return Err(other.into()),
            }
        }
    }

    /// FHIR `vread`: one version. A deletion marker answers [`RecordsError::Deleted`].
    pub async fn vread(
        &self,
        resource_type: ResourceType,
        id: &str,
        version: &str,
    ) -> Result<StoredResource, RecordsError> {
        let result = self.try_vread(resource_type, id, version).await;
        self.audited(Action::Vread, Some(resource_type), Some(id), result)
            .await
    }

    async fn try_vread(
        &self,
        resource_type: ResourceType,
        id: &str,
        version: &str,
    ) -> Result<StoredResource, RecordsError> {
        let not_found = || RecordsError::NotFound {
            resource_type,
            id: id.to_owned(),
        };
        let version: u64 = version.parse().map_err(|_| not_found())?;
        if !fhir_model::is_valid_id(id) {
            return Err(not_found());
        }
        let stored = self
            .store
            .read_version(resource_type, id, version)
            .await?
            .ok_or_else(not_found)?;
        let opened = self.open_version(stored)?;
        self.record(&[self.entry_about(
            Action::Vread,
            resource_type,
            id,
            Some(opened.version),
            Some(&opened.key_owner),
        )])
        .await?;
        Ok(opened)
    }

    /// FHIR instance `history`: versions newest first, at most `count`, since `since`.
    pub async fn history(
        &self,
        resource_type: ResourceType,
        id: &str,
        since: Option<OffsetDateTime>,
        count: u64,
    ) -> Result<Vec<HistoryEntry>, RecordsError> {
        let result = self.try_history(resource_type, id, since, count).await;
        self.audited(Action::History, Some(resource_type), Some(id), result)
            .await
    }

    async fn try_history(
        &self,
        resource_type: ResourceType,
        id: &str,
        since: Option<OffsetDateTime>,
        count: u64,
    ) -> Result<Vec<HistoryEntry>, RecordsError> {
        let not_found = || RecordsError::NotFound {
            resource_type,
            id: id.to_owned(),
        };
        if !fhir_model::is_valid_id(id) {
            return Err(not_found());
        }
        let versions = self
            .store
            .history(resource_type, id, since, count.min(search::MAX_COUNT))
            .await?;
        // No versions: either the resource never existed, or none is recent enough for
        // `_since` (an empty history). Only then is the extra lookup needed.
        if versions.is_empty()
            && self
                .store
                .read_current(resource_type, id)
                .await?
                .is_none_or(|current| !self.visible(&current.key_owner))
        {
            return Err(not_found());
        }
        if versions.iter().any(|v| !self.visible(&v.key_owner)) {
            return Err(not_found());
        }
        let owner = versions.first().map(|v| v.key_owner.clone());
        let mut entries = Vec::with_capacity(versions.len());
        for stored in versions {
            let (version, last_updated) = (stored.version, stored.last_updated);
            let body = if stored.deleted {
                None
            } else {
                Some(self.open_version(stored)?.body)
            };
            entries.push(HistoryEntry {
                resource_type,
                id: id.to_owned(),
                version,
                last_updated,
                body,
            });
        }
        let mut entry =
            self.entry_about(Action::History, resource_type, id, None, owner.as_deref());
        entry.result_count = Some(u64::try_from(entries.len()).unwrap_or(u64::MAX));
        self.record(&[entry]).await?;
        Ok(entries)
    }

    /// FHIR type history (`resource_type`) or system history (`None`): versions newest first,
    /// at most `count` per page, since `since`, after the page `cursor` ended. Versions in
    /// erased compartments are left out: they no longer exist for anyone.
    pub async fn history_all(
        &self,
        resource_type: Option<ResourceType>,
        since: Option<OffsetDateTime>,
        count: u64,
        cursor: Option<&str>,
    ) -> Result<HistoryPage, RecordsError> {
        let result = self
            .try_history_all(resource_type, since, count, cursor)
            .await;
        self.audited(Action::History, resource_type, None, result)
            .await
    }

    async fn try_history_all(
        &self,
        resource_type: Option<ResourceType>,
        since: Option<OffsetDateTime>,
        count: u64,
        cursor: Option<&str>,
    ) -> Result<HistoryPage, RecordsError> {
        let after = cursor
            .map(|c| {
                decode_history_cursor(c).ok_or_else(|| search::SearchError {
                    param: "_cursor".to_owned(),
                    reason: "is not a cursor this server issued".to_owned(),
                })
            })
            .transpose()?;
        let limit = count.min(search::MAX_COUNT);
        let mut versions = self
            .store
            .history_all(
                resource_type,
                since,
                after.as_ref(),
                limit.saturating_add(1),
            )
            .await?;
        let more = u64::try_from(versions.len()).unwrap_or(u64::MAX) > limit;
        versions.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
        let next_cursor = if more {
            versions
                .last()
                .map(|last| encode_history_cursor(&HistoryPosition::of(last)))
        } else {
            None
        };
        let mut entries = Vec::with_capacity(versions.len());
        let mut owners = Vec::with_capacity(versions.len());
        for stored in versions {
            if !self.visible(&stored.key_owner) {
                continue;
            }
            let owner = stored.key_owner.clone();
            let (rt, id, version, last_updated) = (
                stored.resource_type,
                stored.id.clone(),
                stored.version,
                stored.last_updated,
            );
            let body = if stored.deleted {
                None
            } else {
                match self.open_version(stored) {
                    Ok(opened) => Some(opened.body),
                    Err(RecordsError::Erased { .. }) => continue,
                    Err(other) => return Err(other),
                }
            };
            owners.push(owner);
            entries.push(HistoryEntry {
                resource_type: rt,
                id,
                version,
                last_updated,
                body,
            });
        }
        let mut query = Vec::new();
        if let Some(since) = since {
            query.push(("_since".to_owned(), instant(since)));
        }
        let audit = self.disclosure_entries(
            Action::History,
            resource_type,
            &query,
            owners.iter().map(String::as_str),
        );
        self.record(&audit).await?;
        Ok(HistoryPage {
            entries,
            next_cursor,
        })
    }

    /// FHIR `$series-status` of a patient: per series and target disease, the doses that
    /// count, the doses required, whether it is complete, and the dose dates; from the
    /// patient's current Immunizations (entered-in-error and not-done doses do not count).
    pub async fn series_status(
        &self,
        patient_id: &str,
    ) -> Result<Vec<crate::series::SeriesStatus>, RecordsError> {
        let result = self.try_series_status(patient_id).await;
        self.audited(
            Action::Read,
            Some(ResourceType::PATIENT),
            Some(patient_id),
            result,
        )
        .await
    }

    async fn try_series_status(
        &self,
        patient_id: &str,
    ) -> Result<Vec<crate::series::SeriesStatus>, RecordsError> {
        // The patient must be readable (404, 410 as for a read).
        let patient = self
            .read_unaudited(ResourceType::PATIENT, patient_id)
            .await?;
        let mut immunizations = Vec::new();
        let mut after = None;
        loop {
            let query = crate::index::SearchQuery {
                resource_type: ResourceType::IMMUNIZATION,
                clauses: vec![crate::index::Clause::Reference {
                    param: "patient",
                    any_of: vec![crate::index::ReferenceMatch {
                        target_type: Some("Patient".to_owned()),
                        target_id: patient_id.to_owned(),
                    }],
                }],
                order: crate::index::Order::default(),
                after: after.take(),
                limit: search::MAX_COUNT,
            };
            let page = self.store.search(&query).await?;
            let full = u64::try_from(page.len()).unwrap_or(0) == search::MAX_COUNT;
            after = page.last().map(|last| crate::index::Position {
                value: None,
                id: last.version.id.clone(),
            });
            for found in page {
                let opened = self.open_version(found.version)?;
                if let Ok(Resource::Immunization(immunization)) = Resource::from_json(&opened.body)
                {
                    immunizations.push(*immunization);
                }
            }
            if !full {
                break;
            }
        }
        let mut entry = self.entry_about(
            Action::Read,
            ResourceType::PATIENT,
            patient_id,
            None,
            Some(&patient.key_owner),
        );
        entry.operation = Some("$series-status".to_owned());
        entry.result_count = Some(u64::try_from(immunizations.len()).unwrap_or(u64::MAX));
        self.record(&[entry]).await?;
        Ok(crate::series::series_status(&immunizations))
    }

    /// Now, cut to microseconds: stored timestamps have that precision (Postgres), so the body
    /// and the row agree exactly.
    fn now(&self) -> OffsetDateTime {
        let now = self.clock.now();
        now.replace_nanosecond(now.microsecond() * 1_000)
            .unwrap_or(now)
    }

    /// Seals a stamped resource (its type and id are where it is stored) under its
    /// compartment's key and stores it as `version` (`expected` = the version it replaces, or
    /// `None` to create). A new compartment's key is
    /// stored in the same transaction; if another writer stored a different key for the owner
    /// first, the store refuses and the next attempt uses that key. Returns the plaintext body.
    async fn store_version(
        &self,
        resource: &Resource,
        version: u64,
        last_updated: OffsetDateTime,
        expected: Option<u64>,
        claim: Option<phi_crypto::BlindToken>,
        action: Action,
    ) -> Result<(Vec<u8>, String), RecordsError> {
        let resource_type = resource.resource_type();
        let id = resource.id().map(|id| id.as_str()).unwrap_or_default();
        let owner = key_owner(resource);
        if !self.visible(&owner.as_str()) {
            return Err(RecordsError::OutsideCompartment { resource_type });
        }
        let body = resource.to_json();
        let index = index_rows(resource, &self.vault.blind_index());
        let context = SealContext {
            resource_type: resource_type.as_str(),
            id,
            version,
        };
        let owner_name = owner.as_str().into_owned();
        let audit = self.entry_about(action, resource_type, id, Some(version), Some(&owner_name));
        let mut attempts = 0;
        loop {
            attempts += 1;
            let (key, new_key) = match self.vault.prepare_key(&owner, last_updated).await {
                Err(CryptoError::Erased) => return Err(compartment_erased(&owner)),
                other => other?,
            };
            let new_version = NewVersion {
                resource_type,
                id: id.to_owned(),
                version,
                last_updated,
                key_owner: owner_name.clone(),
                key_id: key.id(),
                new_key,
                body: seal(&key, context, &body)?,
                index: index.clone(),
                deleted: false,
                claim,
                audit: Some(audit.clone()),
            };
            let written = match expected {
                None => self.store.create(new_version).await,
                Some(expected) => self.store.update(new_version, expected).await,
            };
            match written {
                Err(StoreError::KeyChanged { .. }) if attempts < 3 => {}
                other => {
                    other?;
                    return Ok((body, owner_name));
                }
            }
        }
    }

    /// FHIR `$validate`: every issue `body` has as a `resource_type`, without storing anything.
    /// Empty when it is valid. (Warnings do not make it invalid.)
    pub fn validate(&self, resource_type: ResourceType, body: &[u8]) -> Vec<fhir_model::Issue> {
        match parse_for(resource_type, body) {
            Ok(resource) => resource.validate(),
            Err(RecordsError::Invalid { issues }) => issues,
            Err(other) => vec![fhir_model::Issue::error(
                fhir_model::IssueType::Invalid,
                Some(&fhir_model::Location::root("Resource").child("resourceType")),
                other.to_string(),
            )],
        }
    }

    /// FHIR `read`: the current version.
    pub async fn read(
        &self,
        resource_type: ResourceType,
        id: &str,
    ) -> Result<StoredResource, RecordsError> {
        let result = self.try_read(resource_type, id).await;
        self.audited(Action::Read, Some(resource_type), Some(id), result)
            .await
    }

    async fn try_read(
        &self,
        resource_type: ResourceType,
        id: &str,
    ) -> Result<StoredResource, RecordsError> {
        let resource = self.read_unaudited(resource_type, id).await?;
        self.record(&[self.entry_about(
            Action::Read,
            resource_type,
            id,
            Some(resource.version),
            Some(&resource.key_owner),
        )])
        .await?;
        Ok(resource)
    }

    /// A read that writes no entry: for what a recorded use case reads on the way (a
    /// search's `_include` targets, `$series-status`'s patient), which its own entries cover.
    async fn read_unaudited(
        &self,
        resource_type: ResourceType,
        id: &str,
    ) -> Result<StoredResource, RecordsError> {
        let not_found = || RecordsError::NotFound {
            resource_type,
            id: id.to_owned(),
        };
        if !fhir_model::is_valid_id(id) {
            return Err(not_found());
        }
        let stored = self
            .store
            .read_current(resource_type, id)
            .await?
            .ok_or_else(not_found)?;
        // The key is checked before the deleted flag: an erased resource answers 410 "erased".
        let resource = self.open_version(stored)?;
        Ok(resource)
    }

    /// FHIR `search` on one type: `params` are the URL's (name, value) pairs.
    pub async fn search(
        &self,
        resource_type: ResourceType,
        params: &[(String, String)],
    ) -> Result<SearchPage, RecordsError> {
        self.search_with(resource_type, params, false).await
    }

    /// As [`Records::search`]; `lenient` leaves out unknown parameters (listed in the page's
    /// `ignored`) instead of refusing them.
    pub async fn search_with(
        &self,
        resource_type: ResourceType,
        params: &[(String, String)],
        lenient: bool,
    ) -> Result<SearchPage, RecordsError> {
        let result = self.try_search(resource_type, params, lenient).await;
        self.audited(Action::Search, Some(resource_type), None, result)
            .await
    }

    async fn try_search(
        &self,
        resource_type: ResourceType,
        params: &[(String, String)],
        lenient: bool,
    ) -> Result<SearchPage, RecordsError> {
        let search::Parsed {
            mut query,
            direction,
            ignored,
            total,
            includes,
            revincludes,
        } = search::parse_with(
            resource_type,
            params,
            &search::Rules {
                blind: &self.vault.blind_index(),
                now: self.now(),
                lenient,
            },
        )?;
        self.confine(&mut query);
        let total = if total {
            Some(self.store.count(&query).await?)
        } else {
            None
        };
        let limit = query.limit;
        let forward = query.order;
        // A previous page is the page after the cursor in the reverse order, turned around.
        if direction == search::Direction::Backward {
            query.order = forward.reversed();
        }
        // One more than asked says whether a further page exists that way.
        query.limit = limit.saturating_add(1);
        let mut found = self.store.search(&query).await?;
        let further = u64::try_from(found.len()).unwrap_or(u64::MAX) > limit;
        found.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
        if direction == search::Direction::Backward {
            found.reverse();
        }
        let position = |m: &SearchMatch| Position {
            value: m.sort_value,
            id: m.version.id.clone(),
        };
        let came_from_cursor = query.after.is_some();
        let (has_next, has_previous) = match direction {
            search::Direction::Forward => (further, came_from_cursor),
            search::Direction::Backward => (came_from_cursor, further),
        };
        // An empty page reached through a cursor (every match that way deleted since) still
        // links back: to the first page (nothing is before its cursor) or the last (nothing
        // after it).
        let next_cursor = match (found.last(), has_next, direction) {
            (Some(last), true, _) => Some(Some(position(last))),
            (None, true, search::Direction::Backward) => Some(None),
            _ => None,
        }
        .map(|at| encode_cursor(search::Direction::Forward, at.as_ref()));
        let previous_cursor = match (found.first(), has_previous, direction) {
            (Some(first), true, _) => Some(Some(position(first))),
            (None, true, search::Direction::Forward) => Some(None),
            _ => None,
        }
        .map(|at| encode_cursor(search::Direction::Backward, at.as_ref()));
        let found: Vec<StoredVersion> = found.into_iter().map(|m| m.version).collect();
        let mut resources = Vec::with_capacity(found.len());
        for stored in found {
            resources.push(self.open_version(stored)?);
        }
        let included = self.included(&resources, &includes, &revincludes).await?;
        // One entry per patient disclosed, with only the parameters that were used: an
        // ignored unknown name is the client's text, not a parameter.
        let used: Vec<(String, String)> = params
            .iter()
            .filter(|(name, _)| !ignored.contains(name))
            .cloned()
            .collect();
        let entries = self.disclosure_entries(
            Action::Search,
            Some(resource_type),
            &used,
            resources
                .iter()
                .chain(&included)
                .map(|r| r.key_owner.as_str()),
        );
        self.record(&entries).await?;
        Ok(SearchPage {
            resources,
            next_cursor,
            previous_cursor,
            ignored,
            total,
            included,
        })
    }

    /// The resources `_include` and `_revinclude` add to a page: the targets of the matches'
    /// references, and the resources referring to the matches. Each once, none of the matches,
    /// none deleted or erased.
    async fn included(
        &self,
        matches: &[StoredResource],
        includes: &[&'static fhir_model::search::SearchParam],
        revincludes: &[&'static fhir_model::search::SearchParam],
    ) -> Result<Vec<StoredResource>, RecordsError> {
        use fhir_model::search::IndexValue;
        let mut seen: std::collections::BTreeSet<(ResourceType, String)> = matches
            .iter()
            .map(|m| (m.resource_type, m.id.clone()))
            .collect();
        let mut included = Vec::new();
        if !includes.is_empty() {
            for found in matches {
                let resource = Resource::from_json(&found.body)
                    .map_err(|err| RecordsError::Invalid { issues: err.issues })?;
                for param in includes {
                    for value in param.values(&resource) {
                        let IndexValue::Reference { target_type, id } = value else {
                            continue;
                        };
                        let Ok(target_type) = ResourceType::parse(&target_type) else {
                            continue;
                        };
                        if !seen.insert((target_type, id.clone())) {
                            continue;
                        }
                        match self.read_unaudited(target_type, &id).await {
                            Ok(target) => included.push(target),
                            // A dangling, deleted or erased target is simply not included.
                            Err(
                                RecordsError::NotFound { .. }
                                | RecordsError::Deleted { .. }
                                | RecordsError::Erased { .. },
                            ) => {}
                            Err(other) => return Err(other),
                        }
                    }
                }
            }
        }
        for param in revincludes {
            let any_of = matches
                .iter()
                .map(|m| crate::index::ReferenceMatch {
                    target_type: Some(m.resource_type.as_str().to_owned()),
                    target_id: m.id.clone(),
                })
                .collect::<Vec<_>>();
            if any_of.is_empty() {
                continue;
            }
            let mut query = crate::index::SearchQuery {
                resource_type: param.resource_type,
                clauses: vec![crate::index::Clause::Reference {
                    param: param.code,
                    any_of,
                }],
                order: crate::index::Order::default(),
                after: None,
                limit: search::MAX_COUNT,
            };
            self.confine(&mut query);
            for found in self.store.search(&query).await? {
                let stored = found.version;
                if seen.insert((stored.resource_type, stored.id.clone())) {
                    included.push(self.open_version(stored)?);
                }
            }
        }
        Ok(included)
    }

    /// GDPR erasure of a patient: destroys their compartment's data key (every version of every
    /// resource sealed under it becomes unreadable, also straight from the database), their
    /// index rows, and leaves a tombstone. Answers [`RecordsError::Erased`] if already done.
    pub async fn erase_patient(&self, id: &str) -> Result<Erasure, RecordsError> {
        let result = self.try_erase(id).await;
        self.audited(Action::Erase, Some(ResourceType::PATIENT), Some(id), result)
            .await
    }

    async fn try_erase(&self, id: &str) -> Result<Erasure, RecordsError> {
        let resource_type = ResourceType::PATIENT;
        let not_found = || RecordsError::NotFound {
            resource_type,
            id: id.to_owned(),
        };
        if !fhir_model::is_valid_id(id) {
            return Err(not_found());
        }
        self.store
            .read_current(resource_type, id)
            .await?
            .ok_or_else(not_found)?;
        let owner = KeyOwner::Patient(id.to_owned());
        if let Err(CryptoError::Erased) = self.vault.key_for_reading(&owner).await {
            return Err(RecordsError::Erased {
                resource_type,
                id: id.to_owned(),
            });
        }
        let mut entry = self.entry_about(
            Action::Erase,
            resource_type,
            id,
            None,
            Some(&owner.as_str()),
        );
        entry.operation = Some("$erase".to_owned());
        let erasure = self
            .store
            .erase(&owner.as_str(), self.clock.now(), &entry)
            .await?;
        Ok(erasure)
    }

    /// Opens a stored version with its owner's data key (read with it) and checks the
    /// ciphertext belongs to exactly this type, id and version.
    fn open_version(&self, mut stored: StoredVersion) -> Result<StoredResource, RecordsError> {
        let resource_type = stored.resource_type;
        if !self.visible(&stored.key_owner) {
            return Err(RecordsError::NotFound {
                resource_type,
                id: stored.id,
            });
        }
        let owner = KeyOwner::parse(&stored.key_owner).ok_or_else(|| RecordsError::Integrity {
            resource_type,
            id: stored.id.clone(),
            version: stored.version,
            cause: CryptoError::Integrity {
                what: "unknown key owner",
            },
        })?;
        let record = stored.key.take();
        if record.as_ref().is_some_and(|record| record.owner != owner) {
            return Err(RecordsError::Integrity {
                resource_type,
                id: stored.id,
                version: stored.version,
                cause: CryptoError::Integrity {
                    what: "the store returned another owner's key",
                },
            });
        }
        let key = match self.vault.key_from_record(record) {
            Ok(Some(key)) => key,
            Err(CryptoError::Erased) => {
                return Err(RecordsError::Erased {
                    resource_type,
                    id: stored.id,
                });
            }
            Ok(None) => {
                return Err(RecordsError::Integrity {
                    resource_type,
                    id: stored.id,
                    version: stored.version,
                    cause: CryptoError::Integrity {
                        what: "the key owner has no data key",
                    },
                });
            }
            Err(other) => return Err(other.into()),
        };
        if stored.deleted {
            return Err(RecordsError::Deleted {
                resource_type,
                id: stored.id,
                version: stored.version,
            });
        }
        let context = SealContext {
            resource_type: resource_type.as_str(),
            id: &stored.id,
            version: stored.version,
        };
        let body = open(&key, context, &stored.body).map_err(|cause| match cause {
            CryptoError::Store(_) | CryptoError::UnknownMasterKey(_) => RecordsError::from(cause),
            cause => RecordsError::Integrity {
                resource_type,
                id: stored.id.clone(),
                version: stored.version,
                cause,
            },
        })?;
        Ok(StoredResource {
            resource_type,
            id: stored.id,
            version: stored.version,
            last_updated: stored.last_updated,
            key_owner: stored.key_owner,
            body: body.into_exposed(),
        })
    }

    /// Whether the system can serve requests (the store answers).
    pub async fn ready(&self) -> Result<(), RecordsError> {
        Ok(self.store.ping().await?)
    }
}

fn compartment_erased(owner: &KeyOwner) -> RecordsError {
    RecordsError::CompartmentErased {
        patient: owner.patient_id().unwrap_or_default().to_owned(),
    }
}

/// Whose data key seals a resource: its patient's compartment, or the system key.
fn key_owner(resource: &Resource) -> KeyOwner {
    patient_compartment(resource).map_or(KeyOwner::System, KeyOwner::Patient)
}

/// Parses and validates `body` as a resource of `resource_type`.
pub(crate) fn parse_for(
    resource_type: ResourceType,
    body: &[u8],
) -> Result<Resource, RecordsError> {
    let resource =
        Resource::from_json(body).map_err(|err| RecordsError::Invalid { issues: err.issues })?;
    if resource.resource_type() != resource_type {
        return Err(RecordsError::WrongType {
            expected: resource_type,
            found: resource.resource_type(),
        });
    }
    let issues = resource.validate();
    if issues.iter().any(fhir_model::Issue::is_error) {
        return Err(RecordsError::Invalid { issues });
    }
    Ok(resource)
}

/// An FHIR `instant` in UTC: `2026-11-22T16:26:00.123456Z`.
pub fn instant(at: OffsetDateTime) -> String {
    let utc = at.to_offset(time::UtcOffset::UTC);
    // Formatting a valid OffsetDateTime as RFC 3339 only fails for years outside 0..=9999.
    utc.format(&Rfc3339)
        .unwrap_or_else(|_| String::from("1970-01-01T00:00:00Z"))
}

mod reindex;

pub use reindex::ReindexReport;

#[cfg(test)]
mod tests;
