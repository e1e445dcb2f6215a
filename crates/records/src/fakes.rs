//! In-memory fakes of the ports, for tests of the core and for anyone embedding it.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use audit_chain::AuditEntry;
use audit_chain::fakes::MemoryAuditLog;
use fhir_model::ResourceType;
use phi_crypto::fakes::MemoryKeyStore;
use phi_crypto::{KeyOwner, KeyState, KeyStore};
use time::OffsetDateTime;

use crate::index::{Clause, IndexRows, IndexTable, SearchQuery, SortKey, blind_row_params};
use crate::ports::{
    Changes, Clock, Erasure, HistoryPosition, IdGenerator, NewVersion, ResourceStore,
    SealedVersion, SearchMatch, StoreError, Write,
};

type Key = (ResourceType, String);

#[derive(Debug, Default)]
struct Entry {
    versions: Vec<SealedVersion>,
    index: IndexRows,
}

/// A [`ResourceStore`] in a `BTreeMap`, every version kept, with its own in-memory key store
/// (erasure must touch both, as the SQL store does in one transaction).
#[derive(Debug, Default)]
pub struct MemoryStore {
    entries: Mutex<BTreeMap<Key, Entry>>,
    claims: Mutex<BTreeMap<(ResourceType, phi_crypto::BlindToken), String>>,
    keys: Arc<MemoryKeyStore>,
    audit: MemoryAuditLog,
    /// The index rules' generation; `None` until set: a new store's rows are the current
    /// rules' (it has none).
    generation: Mutex<Option<u32>>,
}

impl MemoryStore {
    /// The audit log that writes append their entries to (as the SQL store does in the
    /// write's transaction); give it to `Records` too.
    pub fn audit_log(&self) -> MemoryAuditLog {
        self.audit.clone()
    }

    /// The key store that erasure destroys keys in; give it to the `Vault`.
    pub fn keys(&self) -> Arc<MemoryKeyStore> {
        self.keys.clone()
    }

    /// Commits `changes`: every write is checked against the state the earlier writes of the
    /// unit leave, and only when all pass is anything applied.
    async fn apply(&self, changes: Changes) -> Result<(), StoreError> {
        for write in &changes.writes {
            if !write.version.deleted {
                self.check_key(&write.version).await?;
            }
        }
        let mut entries = self.lock()?;
        let mut claims = self.claims.lock().map_err(|_| {
            StoreError::Unavailable("the in-memory store was poisoned by a panic".into())
        })?;
        // The unit's view: each touched resource's current version, and the claims as the
        // unit changes them.
        let mut current: BTreeMap<Key, u64> = BTreeMap::new();
        let mut staged_claims = claims.clone();
        for Write { version, expected } in &changes.writes {
            let key = (version.resource_type, version.id.clone());
            let now = current.get(&key).copied().or_else(|| {
                entries
                    .get(&key)
                    .and_then(|entry| entry.versions.last().map(|v| v.version))
            });
            match (expected, now) {
                (None, Some(_)) => {
                    return Err(StoreError::AlreadyExists {
                        resource_type: version.resource_type,
                        id: version.id.clone(),
                    });
                }
                (Some(expected), now) if now != Some(*expected) => {
                    return Err(StoreError::VersionConflict {
                        resource_type: version.resource_type,
                        id: version.id.clone(),
                    });
                }
                _ => {}
            }
            current.insert(key, version.version);
            // Claims stay through updates and go with a deletion.
            if version.deleted {
                staged_claims
                    .retain(|(rt, _), id| !(*rt == version.resource_type && *id == version.id));
            }
            if let Some(claim) = version.claim {
                if staged_claims.contains_key(&(version.resource_type, claim)) {
                    return Err(StoreError::ClaimTaken {
                        resource_type: version.resource_type,
                    });
                }
                staged_claims.insert((version.resource_type, claim), version.id.clone());
            }
        }
        let mut audit: Vec<AuditEntry> = changes
            .writes
            .iter()
            .filter_map(|w| w.version.audit.clone())
            .collect();
        audit.extend(changes.audit);
        if !audit.is_empty() {
            self.audit
                .append_now(&audit)
                .map_err(|e| StoreError::Unavailable(Box::new(e)))?;
        }
        *claims = staged_claims;
        for Write { version, .. } in changes.writes {
            let entry = entries
                .entry((version.resource_type, version.id.clone()))
                .or_default();
            entry.versions.push(SealedVersion {
                resource_type: version.resource_type,
                id: version.id,
                version: version.version,
                last_updated: version.last_updated,
                deleted: version.deleted,
                key_owner: version.key_owner,
                key: None,
                body: version.body,
            });
            entry.index = version.index;
        }
        Ok(())
    }

    /// The body must be sealed under the owner's stored (or newly given) live key.
    async fn check_key(&self, version: &NewVersion) -> Result<(), StoreError> {
        let unavailable = StoreError::Unavailable;
        let owner = &version.key_owner;
        // Checked before anything is written, as the SQL store checks before committing. (The
        // fake is not atomic across its two maps; it is for tests of the core, not for races.)
        let stored = match self.keys.find(owner).await.map_err(unavailable)? {
            Some(record) => Some(record),
            None => match &version.new_key {
                Some(new_key) => Some(
                    self.keys
                        .insert_if_absent(new_key.clone())
                        .await
                        .map_err(unavailable)?,
                ),
                None => None,
            },
        };
        match stored {
            Some(record) if matches!(record.state, KeyState::Destroyed { .. }) => {
                Err(StoreError::Erased {
                    key_owner: version.key_owner.clone(),
                })
            }
            Some(record) if record.key_id == version.key_id => Ok(()),
            _ => Err(StoreError::KeyChanged {
                key_owner: version.key_owner.clone(),
            }),
        }
    }

    /// The current versions matching `query`, in its order, without their keys.
    fn current_matches(&self, query: &SearchQuery) -> Result<Vec<SearchMatch>, StoreError> {
        let entries = self.lock()?;
        let mut found: Vec<SearchMatch> = entries
            .iter()
            .filter(|((rt, _), _)| *rt == query.resource_type)
            .filter_map(|((_, id), entry)| {
                let current = entry.versions.last()?;
                let all = query
                    .clauses
                    .iter()
                    .all(|c| matches(c, id, current, &entry.index, &entries));
                (!current.deleted && all).then(|| SearchMatch {
                    sort_value: sort_value(query.order.key, current, &entry.index),
                    version: current.clone(),
                })
            })
            .filter(|m| {
                query
                    .after
                    .as_ref()
                    .is_none_or(|after| query.order.is_after(m.sort_value, &m.version.id, after))
            })
            .collect();
        found.sort_by(|a, b| {
            query
                .order
                .compare((a.sort_value, &a.version.id), (b.sort_value, &b.version.id))
        });
        found.truncate(usize::try_from(query.limit).unwrap_or(usize::MAX));
        Ok(found)
    }

    /// The version with its owner's current key record, as the SQL store joins it.
    async fn keyed(&self, mut version: SealedVersion) -> Result<SealedVersion, StoreError> {
        version.key = match Some(&version.key_owner) {
            Some(owner) => self
                .keys
                .find(owner)
                .await
                .map_err(StoreError::Unavailable)?,
            None => None,
        };
        Ok(version)
    }

    async fn all_keyed(
        &self,
        versions: Vec<SealedVersion>,
    ) -> Result<Vec<SealedVersion>, StoreError> {
        let mut keyed = Vec::with_capacity(versions.len());
        for version in versions {
            keyed.push(self.keyed(version).await?);
        }
        Ok(keyed)
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, BTreeMap<Key, Entry>>, StoreError> {
        self.entries.lock().map_err(|_| {
            StoreError::Unavailable("the in-memory store was poisoned by a panic".into())
        })
    }
}

#[async_trait]
impl ResourceStore for MemoryStore {
    async fn commit(&self, changes: Changes) -> Result<(), StoreError> {
        self.apply(changes).await
    }

    async fn read_version(
        &self,
        resource_type: ResourceType,
        id: &str,
        version: u64,
    ) -> Result<Option<SealedVersion>, StoreError> {
        let found = self
            .lock()?
            .get(&(resource_type, id.to_owned()))
            .and_then(|entry| {
                entry
                    .versions
                    .iter()
                    .find(|v| v.version == version)
                    .cloned()
            });
        match found {
            Some(version) => self.keyed(version).await.map(Some),
            None => Ok(None),
        }
    }

    async fn history(
        &self,
        resource_type: ResourceType,
        id: &str,
        since: Option<OffsetDateTime>,
        limit: u64,
    ) -> Result<Vec<SealedVersion>, StoreError> {
        let found = self
            .lock()?
            .get(&(resource_type, id.to_owned()))
            .map(|entry| {
                entry
                    .versions
                    .iter()
                    .rev()
                    .filter(|v| since.is_none_or(|since| v.last_updated >= since))
                    .take(usize::try_from(limit).unwrap_or(usize::MAX))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        self.all_keyed(found).await
    }

    async fn history_all(
        &self,
        resource_type: Option<ResourceType>,
        since: Option<OffsetDateTime>,
        after: Option<&HistoryPosition>,
        limit: u64,
    ) -> Result<Vec<SealedVersion>, StoreError> {
        let mut all: Vec<SealedVersion> = self
            .lock()?
            .iter()
            .filter(|((rt, _), _)| resource_type.is_none_or(|wanted| *rt == wanted))
            .flat_map(|(_, entry)| entry.versions.iter().cloned())
            .filter(|v| since.is_none_or(|since| v.last_updated >= since))
            .filter(|v| after.is_none_or(|after| after.is_before(v)))
            .collect();
        all.sort_by(|a, b| {
            (b.last_updated, b.resource_type.as_str(), &b.id, b.version).cmp(&(
                a.last_updated,
                a.resource_type.as_str(),
                &a.id,
                a.version,
            ))
        });
        all.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
        self.all_keyed(all).await
    }

    async fn read_currents(
        &self,
        resource_type: ResourceType,
        ids: &[String],
    ) -> Result<Vec<SealedVersion>, StoreError> {
        let mut found = Vec::new();
        for id in ids {
            found.extend(self.read_current(resource_type, id).await?);
        }
        Ok(found)
    }

    async fn read_current(
        &self,
        resource_type: ResourceType,
        id: &str,
    ) -> Result<Option<SealedVersion>, StoreError> {
        let found = self
            .lock()?
            .get(&(resource_type, id.to_owned()))
            .and_then(|entry| entry.versions.last().cloned());
        match found {
            Some(version) => self.keyed(version).await.map(Some),
            None => Ok(None),
        }
    }

    async fn search(&self, query: &SearchQuery) -> Result<Vec<SearchMatch>, StoreError> {
        let mut found = self.current_matches(query)?;
        for found in &mut found {
            found.version = self.keyed(found.version.clone()).await?;
        }
        Ok(found)
    }

    async fn claim_holder(
        &self,
        resource_type: ResourceType,
        claim: phi_crypto::BlindToken,
    ) -> Result<Option<String>, StoreError> {
        let claims = self.claims.lock().map_err(|_| {
            StoreError::Unavailable("the in-memory store was poisoned by a panic".into())
        })?;
        Ok(claims.get(&(resource_type, claim)).cloned())
    }

    async fn release_claim(
        &self,
        resource_type: ResourceType,
        claim: phi_crypto::BlindToken,
        holder: &str,
    ) -> Result<(), StoreError> {
        let mut claims = self.claims.lock().map_err(|_| {
            StoreError::Unavailable("the in-memory store was poisoned by a panic".into())
        })?;
        if claims
            .get(&(resource_type, claim))
            .is_some_and(|id| id == holder)
        {
            claims.remove(&(resource_type, claim));
        }
        Ok(())
    }

    async fn count(&self, query: &SearchQuery) -> Result<u64, StoreError> {
        let everything = SearchQuery {
            after: None,
            limit: u64::MAX,
            ..query.clone()
        };
        let found = self.search(&everything).await?;
        Ok(u64::try_from(found.len()).unwrap_or(u64::MAX))
    }

    async fn erase(
        &self,
        key_owner: &KeyOwner,
        at: OffsetDateTime,
        audit: &AuditEntry,
    ) -> Result<Erasure, StoreError> {
        self.audit
            .append_now(std::slice::from_ref(audit))
            .map_err(|e| StoreError::Unavailable(Box::new(e)))?;
        self.keys
            .destroy(key_owner, at)
            .await
            .map_err(StoreError::Unavailable)?;
        let mut erasure = Erasure::default();
        let mut erased = Vec::new();
        for ((rt, id), entry) in self.lock()?.iter_mut() {
            if entry
                .versions
                .last()
                .is_some_and(|v| v.key_owner == *key_owner)
            {
                erasure.resources += 1;
                erased.push((*rt, id.clone()));
                erasure.versions += u64::try_from(entry.versions.len()).unwrap_or(0);
                entry.index = IndexRows::default();
                if let Some(current) = entry.versions.last_mut() {
                    current.deleted = true;
                }
            }
        }
        if let Ok(mut claims) = self.claims.lock() {
            claims.retain(|(rt, _), id| !erased.contains(&(*rt, id.clone())));
        }
        Ok(erasure)
    }

    async fn replace_index(
        &self,
        resource_type: ResourceType,
        id: &str,
        version: u64,
        index: IndexRows,
    ) -> Result<bool, StoreError> {
        let mut entries = self.lock()?;
        let Some(entry) = entries.get_mut(&(resource_type, id.to_owned())) else {
            return Ok(false);
        };
        if entry
            .versions
            .last()
            .is_none_or(|v| v.version != version || v.deleted)
        {
            return Ok(false);
        }
        entry.index = index;
        Ok(true)
    }

    async fn index_generation(&self) -> Result<u32, StoreError> {
        Ok(self
            .generation
            .lock()
            .ok()
            .and_then(|g| *g)
            .unwrap_or(crate::index::INDEX_GENERATION))
    }

    async fn set_index_generation(&self, generation: u32) -> Result<(), StoreError> {
        if let Ok(mut g) = self.generation.lock() {
            *g = Some(generation);
        }
        Ok(())
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.lock().map(|_| ())
    }
}

/// A resource's value of a sort key, as the SQL store computes it.
fn sort_value(key: SortKey, current: &SealedVersion, index: &IndexRows) -> Option<OffsetDateTime> {
    let dates = |param: &'static str| index.dates.iter().filter(move |d| d.param == param);
    match key {
        SortKey::Id => None,
        SortKey::LastUpdated => Some(current.last_updated),
        SortKey::DateLow(param) => dates(param).map(|d| d.low).min().or(key.missing_value()),
        SortKey::DateHigh(param) => dates(param).map(|d| d.high).max().or(key.missing_value()),
    }
}

fn matches(
    clause: &Clause,
    id: &str,
    current: &SealedVersion,
    index: &IndexRows,
    entries: &BTreeMap<Key, Entry>,
) -> bool {
    match clause {
        Clause::Id(ids) => ids.iter().any(|wanted| wanted == id),
        Clause::Compartment(owner) => current.key_owner.as_str() == owner.as_str(),
        Clause::Blind { param, any_of } => {
            let params = blind_row_params(current.resource_type, param);
            index
                .blind
                .iter()
                .any(|row| params.contains(&row.param) && any_of.contains(&row.token))
        }
        Clause::Token { param, any_of } => index.tokens.iter().any(|row| {
            row.param == *param
                && any_of.iter().any(|m| {
                    m.system.as_ref().is_none_or(|s| *s == row.system)
                        && m.code.as_ref().is_none_or(|c| *c == row.code)
                })
        }),
        Clause::Reference { param, any_of } => index.references.iter().any(|row| {
            row.param == *param
                && any_of.iter().any(|m| {
                    m.target_id == row.target_id
                        && m.target_type.as_ref().is_none_or(|t| *t == row.target_type)
                })
        }),
        Clause::Date { param, any_of } => index
            .dates
            .iter()
            .any(|row| row.param == *param && any_of.iter().any(|m| m.matches(row.low, row.high))),
        Clause::LastUpdated(any_of) => any_of
            .iter()
            .any(|m| m.matches_instant(current.last_updated)),
        Clause::Chain {
            param,
            target_type,
            inner,
        } => index.references.iter().any(|row| {
            row.param == *param
                && row.target_type == target_type.as_str()
                && entries
                    .get(&(*target_type, row.target_id.clone()))
                    .and_then(|target| target.versions.last().map(|v| (target, v)))
                    .is_some_and(|(target, current)| {
                        !current.deleted
                            && matches(inner, &row.target_id, current, &target.index, entries)
                    })
        }),
        Clause::Missing {
            param,
            table,
            missing,
        } => {
            let present = match table {
                IndexTable::Blind => {
                    let params = blind_row_params(current.resource_type, param);
                    index.blind.iter().any(|r| params.contains(&r.param))
                }
                IndexTable::Token => index.tokens.iter().any(|r| r.param == *param),
                IndexTable::Reference => index.references.iter().any(|r| r.param == *param),
                IndexTable::Date => index.dates.iter().any(|r| r.param == *param),
                IndexTable::String => index.strings.iter().any(|r| r.param == *param),
            };
            present != *missing
        }
        Clause::String { param, any_of, how } => index
            .strings
            .iter()
            .any(|row| row.param == *param && any_of.iter().any(|p| how.matches(&row.folded, p))),
        Clause::Not(inner) => !matches(inner, id, current, index, entries),
        Clause::Has {
            source_type,
            param,
            inner,
        } => entries.iter().any(|((rt, source_id), source)| {
            *rt == *source_type
                && source.versions.last().is_some_and(|v| !v.deleted)
                && source.index.references.iter().any(|row| {
                    row.param == *param
                        && row.target_type == current.resource_type.as_str()
                        && row.target_id == id
                })
                && source
                    .versions
                    .last()
                    .is_some_and(|v| matches(inner, source_id, v, &source.index, entries))
        }),
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
