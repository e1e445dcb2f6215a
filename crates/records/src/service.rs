//! The use cases: `Records` and what every use case shares (who acts, the audit of outcomes,
//! compartment confinement, opening sealed versions). The use cases live by job in the
//! submodules: `write` (create, update, delete, conditional writes), `read` (read, vread,
//! history), `search`, `erase`, `series_status` and `reindex`.

use std::sync::Arc;

use fhir_model::search::patient_compartment;
use fhir_model::{Id, Instant, Resource, ResourceType};
use phi_crypto::{CryptoError, KeyId, KeyOwner, SealContext, Vault, open, seal};
use time::OffsetDateTime;

use audit_chain::{Action, AuditEntry, AuditTrail, Outcome};

use crate::audit_entries::{self, Actor, blind_query, patient_of, per_patient};
use crate::error::RecordsError;
use crate::index::{IndexRows, Position, index_rows};
use crate::ports::{
    Clock, Erasure, HistoryPosition, IdGenerator, NewVersion, ResourceStore, SealedVersion,
    SearchMatch, StoreError,
};
use crate::search::encode_cursor;

/// A resource as stored: its body is the complete FHIR JSON, `meta` included.
#[derive(Clone, PartialEq, Eq)]
pub struct StoredResource {
    pub resource_type: ResourceType,
    pub id: String,
    pub version: u64,
    pub last_updated: OffsetDateTime,
    /// Whose data key seals it: a patient's compartment or the system.
    pub key_owner: KeyOwner,
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

/// The FHIR record use cases, over the ports they need.
#[derive(Clone)]
pub struct Records {
    store: Arc<dyn ResourceStore>,
    vault: Vault,
    clock: Arc<dyn Clock>,
    ids: Arc<dyn IdGenerator>,
    /// `Patient/{id}` when the caller may touch only that patient's compartment.
    confinement: Option<KeyOwner>,
    /// Where every touch of the records is written down.
    audit: Arc<dyn AuditTrail>,
    /// Who the entries name.
    actor: Arc<Actor>,
    /// The access policy sessions are decided by (see [`crate::Session`]).
    pub(crate) gate: Option<Arc<access::Gate>>,
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
            gate: None,
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
        key_owner: Option<&KeyOwner>,
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
    pub async fn append_audit(&self, entries: &[AuditEntry]) -> Result<(), RecordsError> {
        self.audit
            .append(entries)
            .await
            .map_err(RecordsError::AuditUnavailable)
    }

    /// Runs a use case's `work` and records its failure (after its rollback: nothing it tried
    /// is stored), passing the result on; if the log is down too, the original error still
    /// goes back. Every public use case is its work inside `audited`, and the work records its
    /// own success (in the write's transaction, or before returning what it read).
    async fn audited<T>(
        &self,
        action: Action,
        resource_type: Option<ResourceType>,
        id: Option<&str>,
        work: impl Future<Output = Result<T, RecordsError>>,
    ) -> Result<T, RecordsError> {
        let result = work.await;
        if let Err(err) = &result
            && !matches!(err, RecordsError::AuditUnavailable(_))
        {
            let (outcome, reason) = audit_entries::failure(err);
            let mut entry = self.audit_entry(action, outcome);
            entry.resource_type = resource_type.map(|t| t.as_str().to_owned());
            entry.resource_id = id.map(str::to_owned);
            entry.reason = Some(reason.to_owned());
            // The caller gets the original error either way; a failure to record it shows
            // up as the log's own unavailability on the next request.
            let _ = self.append_audit(&[entry]).await;
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
        owners: impl IntoIterator<Item = &'a KeyOwner>,
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
            confinement: Some(KeyOwner::Patient(patient_id.to_owned())),
            ..self.clone()
        }
    }

    /// Whether a stored version is visible to the caller.
    fn visible(&self, key_owner: &KeyOwner) -> bool {
        self.confinement
            .as_ref()
            .is_none_or(|owner| owner == key_owner)
    }

    /// Adds the caller's compartment to a query, if confined.
    fn confine(&self, query: &mut crate::index::SearchQuery) {
        if let Some(owner) = &self.confinement {
            query.clauses.push(crate::index::Clause::Compartment(
                owner.as_str().into_owned(),
            ));
        }
    }

    /// The core's clock, for use cases outside `Records` that must keep its time.
    pub fn clock(&self) -> Arc<dyn Clock> {
        Arc::clone(&self.clock)
    }

    /// The core's clock as it is (decisions compare it with token expiries).
    pub(crate) fn clock_now(&self) -> OffsetDateTime {
        self.clock.now()
    }

    /// Now, cut to microseconds: stored timestamps have that precision (Postgres), so the body
    /// and the row agree exactly.
    pub(crate) fn now(&self) -> OffsetDateTime {
        let now = self.clock.now();
        now.replace_nanosecond(now.microsecond() * 1_000)
            .unwrap_or(now)
    }

    /// FHIR `$validate`: every issue `body` has as a `resource_type`, without storing anything.
    /// Empty when it is valid. (Warnings do not make it invalid.)
    pub fn validate(&self, resource_type: ResourceType, body: &[u8]) -> Vec<fhir_model::Issue> {
        match parse_for(resource_type, body) {
            Ok(resource) => issues_of(&resource),
            Err(RecordsError::Invalid { issues }) => issues,
            Err(other) => vec![fhir_model::Issue::error(
                fhir_model::IssueType::Invalid,
                Some(&fhir_model::Location::root("Resource").child("resourceType")),
                other.to_string(),
            )],
        }
    }

    /// Opens a stored version with its owner's data key (read with it) and checks the
    /// ciphertext belongs to exactly this type, id and version.
    fn open_version(&self, mut stored: SealedVersion) -> Result<StoredResource, RecordsError> {
        let resource_type = stored.resource_type;
        if !self.visible(&stored.key_owner) {
            return Err(RecordsError::NotFound {
                resource_type,
                id: stored.id,
            });
        }
        let owner = stored.key_owner.clone();
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
    let issues = issues_of(&resource);
    if issues.iter().any(fhir_model::Issue::is_error) {
        return Err(RecordsError::Invalid { issues });
    }
    Ok(resource)
}

/// Every issue of `resource`: R4's rules (`fhir-model`), and for a privacy Consent whatever
/// keeps it from being enforced (`consent::check`): Cairn stores no patient consent it cannot
/// honour.
pub(crate) fn issues_of(resource: &Resource) -> Vec<fhir_model::Issue> {
    let mut issues = resource.validate();
    if resource.resource_type().as_str() == "Consent"
        && !issues.iter().any(fhir_model::Issue::is_error)
    {
        let root = fhir_model::Location::root("Consent");
        let located = |element: &str| {
            element
                .split('.')
                .fold(root.clone(), |at, part| at.child(part))
        };
        let value = serde_json::to_value(resource).unwrap_or_default();
        match consent::check(&value) {
            Ok(()) | Err(consent::ConsentError::NotPrivacy) => {}
            Err(err) => {
                let (code, at) = match &err {
                    consent::ConsentError::Missing { element } => {
                        (fhir_model::IssueType::Required, located(element))
                    }
                    consent::ConsentError::Invalid { element } => {
                        (fhir_model::IssueType::Invalid, located(element))
                    }
                    _ => (fhir_model::IssueType::Invalid, root.clone()),
                };
                issues.push(fhir_model::Issue::error(code, Some(&at), err.to_string()));
            }
        }
    }
    issues
}

/// An FHIR `instant` in UTC, always to the microsecond: `2026-11-22T16:26:00.120000Z`. The
/// width is fixed because FHIR reads a value's precision from its digits: `…00.12Z` would stand
/// for a hundredth of a second, and `_lastUpdated` with a resource's own `meta.lastUpdated`
/// would then match others stored in that hundredth.
pub fn instant(at: OffsetDateTime) -> String {
    let utc = at.to_offset(time::UtcOffset::UTC);
    let format = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]Z"
    );
    // Formatting only fails for years outside 0..=9999, which no clock gives.
    utc.format(&format)
        .unwrap_or_else(|_| String::from("1970-01-01T00:00:00.000000Z"))
}

mod erase;
mod patch;
mod read;
mod references;
mod reindex;
mod search;
mod series_status;
mod transaction;
mod write;

pub(crate) use patch::patch_bytes_in_binary;
pub use patch::{JSON_PATCH, parse_patch};
pub use read::{HistoryEntry, HistoryPage};
pub(crate) use references::Identities;
pub use reindex::ReindexReport;
pub use search::SearchPage;
pub use transaction::EntryOutcome;
pub(crate) use transaction::parse_if_match;

#[cfg(test)]
mod tests;
