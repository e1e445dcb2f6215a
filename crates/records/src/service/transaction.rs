//! Transaction Bundles: every entry's change in one unit of work, or none.
//!
//! In three passes over the entries, in FHIR's processing order (DELETE, POST, PUT/PATCH,
//! GET/HEAD): *resolve* what each write touches (conditional criteria searched, new ids drawn,
//! `If-Match` checked) and refuse two entries that touch one resource; *rewrite* references
//! to the Bundle's `fullUrl`s and conditional references to the ids they resolved to; *prepare*
//! each version (validated, stamped, sealed under its patient's key, indexed, audited) and
//! commit them all as one [`Changes`]. A race with another writer (a conditional create's claim,
//! a version, a new data key) starts the transaction over from the first pass, so it never
//! commits on stale decisions. GET entries are answered after the commit, so they see the
//! transaction's writes.

use std::collections::HashMap;

use fhir_model::bundle_request::{BundleRequest, EntryRequest, Method};
use phi_crypto::{DataKey, KeyRecord};
use serde_json::Value;

use super::patch::{patch_in_binary, patched};
use super::references::Identities;
use super::write::{compartment_erased, key_owner};
use super::*;
use crate::ports::{Changes, Write};

/// How often a transaction starts over after losing a race to another writer.
const MAX_TRANSACTION_ATTEMPTS: u32 = 8;

/// What one entry of a transaction or batch came to, for its `response`.
#[derive(Debug)]
pub enum EntryOutcome {
    /// A resource was created (201).
    Created(StoredResource),
    /// A new version of a resource was stored (200).
    Updated(StoredResource),
    /// An import's resource equals the current version; nothing was written (200).
    Unchanged(StoredResource),
    /// A conditional create found its one match; nothing was written (200).
    Existing(StoredResource),
    /// The resource was deleted (its deletion's version), or there was nothing to delete (204).
    Deleted(Option<u64>),
    /// A read or vread (200).
    Read(StoredResource),
    /// A search (200).
    Searched(SearchPage),
    /// The entry failed (a batch entry, or a GET answered after a transaction's commit).
    Failed(RecordsError),
}

/// The current versions of the resources a transaction names by id.
type Currents = HashMap<(ResourceType, String), SealedVersion>;

/// A write entry's new version, ready to be sealed under its owner's key.
struct Unsealed {
    resource: Resource,
    version: u64,
    expected: Option<u64>,
    claim: Option<phi_crypto::BlindToken>,
    owner: KeyOwner,
}

/// What preparing a write entry gave.
enum Prepared {
    /// Nothing to seal: the entry's outcome (its write or audit entry, if any, is in the
    /// changes).
    Done(EntryOutcome),
    Unsealed(Unsealed),
}

/// What a write entry resolved to, before anything is prepared.
enum Step {
    Create {
        id: String,
        claim: Option<phi_crypto::BlindToken>,
    },
    Existing(StoredResource),
    Update {
        id: String,
        expected: Option<u64>,
        /// The current version, kept when unchanged resources are skipped (an import).
        current: Option<SealedVersion>,
    },
    Patch {
        id: String,
        current: SealedVersion,
    },
    Delete {
        id: String,
        current: SealedVersion,
    },
    NothingToDelete,
}

impl Step {
    /// The resource the step touches, if any.
    fn target(&self) -> Option<&str> {
        match self {
            Self::Create { id, .. }
            | Self::Update { id, .. }
            | Self::Patch { id, .. }
            | Self::Delete { id, .. } => Some(id),
            Self::Existing(stored) => Some(&stored.id),
            Self::NothingToDelete => None,
        }
    }
}

impl Records {
    /// Carries out a transaction Bundle: every write entry's change commits in one unit of work
    /// (each version with its audit entry), or nothing is stored and the first failing entry's
    /// error is returned (as [`RecordsError::InEntry`]). GET entries are then answered, each
    /// with its own outcome. Outcomes come in Bundle order. `base` is this server's FHIR base
    /// URL, under which a `fullUrl` is this server's. The caller has been allowed every entry.
    pub async fn transaction(
        &self,
        request: &BundleRequest,
        base: &str,
    ) -> Result<Vec<EntryOutcome>, RecordsError> {
        self.run_transaction(request, base, false).await
    }

    /// A chunk of an import, as a transaction whose PUT entries that equal their resource's
    /// current version (meta aside) write nothing ([`EntryOutcome::Unchanged`]): importing the
    /// same data again, after an interruption or not, adds no version.
    pub async fn import(
        &self,
        request: &BundleRequest,
        base: &str,
    ) -> Result<Vec<EntryOutcome>, RecordsError> {
        self.run_transaction(request, base, true).await
    }

    async fn run_transaction(
        &self,
        request: &BundleRequest,
        base: &str,
        skip_unchanged: bool,
    ) -> Result<Vec<EntryOutcome>, RecordsError> {
        self.audited(Action::Transaction, None, None, async {
            let mut attempts = 0;
            let mut outcomes = loop {
                attempts += 1;
                match self.try_transaction(request, base, skip_unchanged).await {
                    Err(err) if attempts < MAX_TRANSACTION_ATTEMPTS && lost_race(&err) => {}
                    other => break other?,
                }
            };
            for entry in &request.entries {
                if !entry.method.writes() {
                    outcomes[entry.index] = Some(self.answer_read(entry).await);
                }
            }
            Ok(outcomes
                .into_iter()
                .map(|o| o.unwrap_or(EntryOutcome::Deleted(None)))
                .collect())
        })
        .await
    }

    /// One attempt: resolve, rewrite, prepare, commit. `None` for the GET entries.
    async fn try_transaction(
        &self,
        request: &BundleRequest,
        base: &str,
        skip_unchanged: bool,
    ) -> Result<Vec<Option<EntryOutcome>>, RecordsError> {
        let order = request.processing_order();
        let writes: Vec<&EntryRequest> = order
            .iter()
            .map(|&i| &request.entries[i])
            .filter(|e| e.method.writes())
            .collect();
        let mut identities = Identities::new(base);
        let mut steps = Vec::with_capacity(writes.len());
        let mut touched: HashMap<(ResourceType, String), usize> = HashMap::new();
        let currents = self.current_versions(&writes).await?;
        for entry in &writes {
            let step = self
                .resolve_step(entry, skip_unchanged, &currents)
                .await
                .map_err(|e| e.in_entry(entry.index))?;
            if let Some(id) = step.target() {
                let key = (entry.target.resource_type, id.to_owned());
                if let Some(other) = touched.insert(key, entry.index) {
                    return Err(RecordsError::SameTarget {
                        resource_type: entry.target.resource_type,
                        id: id.to_owned(),
                        other,
                    }
                    .in_entry(entry.index));
                }
                if let Some(full_url) = &entry.full_url {
                    identities.insert(full_url, format!("{}/{id}", entry.target.resource_type));
                }
            }
            steps.push(step);
        }
        let now = self.now();
        let mut changes = Changes::default();
        let mut outcomes: Vec<Option<EntryOutcome>> =
            (0..request.entries.len()).map(|_| None).collect();
        let mut unsealed = Vec::new();
        for (entry, step) in writes.into_iter().zip(steps) {
            match self
                .prepare_step(entry, step, &identities, now, &mut changes)
                .await
                .map_err(|e| e.in_entry(entry.index))?
            {
                Prepared::Done(outcome) => outcomes[entry.index] = Some(outcome),
                Prepared::Unsealed(version) => unsealed.push((entry.index, version)),
            }
        }
        let mut keys = self.owners_keys(&unsealed, now).await?;
        for (index, version) in unsealed {
            let outcome = self
                .seal_step(version, now, &mut keys, &mut changes)
                .map_err(|e| e.in_entry(index))?;
            outcomes[index] = Some(outcome);
        }
        self.store.commit(changes).await.map_err(|err| match err {
            StoreError::AlreadyExists { resource_type, id } => {
                let conflict = RecordsError::Conflict {
                    resource_type,
                    id: id.clone(),
                };
                match request.entries.iter().find(|e| {
                    e.target.resource_type == resource_type && e.target.id.as_deref() == Some(&id)
                }) {
                    Some(entry) => conflict.in_entry(entry.index),
                    None => conflict,
                }
            }
            other => other.into(),
        })?;
        Ok(outcomes)
    }

    /// The current versions of the resources that PUT and DELETE entries name by id, read
    /// together (one round trip per type, not one per entry).
    async fn current_versions(&self, writes: &[&EntryRequest]) -> Result<Currents, RecordsError> {
        let mut named: HashMap<ResourceType, Vec<String>> = HashMap::new();
        for entry in writes {
            if let (Method::Put | Method::Delete, Some(id)) = (entry.method, &entry.target.id) {
                named
                    .entry(entry.target.resource_type)
                    .or_default()
                    .push(id.clone());
            }
        }
        let mut currents = Currents::new();
        for (resource_type, ids) in named {
            for version in self.store.read_currents(resource_type, &ids).await? {
                currents.insert((resource_type, version.id.clone()), version);
            }
        }
        Ok(currents)
    }

    /// What a write entry touches, decided from what is stored now (`currents`: see
    /// [`Records::current_versions`]).
    async fn resolve_step(
        &self,
        entry: &EntryRequest,
        skip_unchanged: bool,
        currents: &Currents,
    ) -> Result<Step, RecordsError> {
        let resource_type = entry.target.resource_type;
        let if_match = entry.if_match.as_deref().map(parse_if_match).transpose()?;
        let criteria = &entry.target.query;
        Ok(match entry.method {
            Method::Post => match &entry.if_none_exist {
                None => Step::Create {
                    id: self.ids.new_id(),
                    claim: None,
                },
                Some(criteria) => {
                    let (query, claim) =
                        self.conditional_query(resource_type, criteria, "ifNoneExist")?;
                    match self.single_match(&query).await? {
                        Some(existing) => Step::Existing(existing),
                        None => Step::Create {
                            id: self.ids.new_id(),
                            claim: Some(claim),
                        },
                    }
                }
            },
            Method::Put => match &entry.target.id {
                Some(id) => {
                    let current = currents.get(&(resource_type, id.clone())).cloned();
                    if current
                        .as_ref()
                        .is_some_and(|c| !self.visible(&c.key_owner))
                    {
                        return Err(RecordsError::NotFound {
                            resource_type,
                            id: id.clone(),
                        });
                    }
                    let expected = current.as_ref().map(|c| c.version);
                    check_if_match(resource_type, id, if_match, expected)?;
                    Step::Update {
                        id: id.clone(),
                        expected,
                        current: current.filter(|c| skip_unchanged && !c.deleted),
                    }
                }
                None => {
                    let (query, claim) = self.conditional_query(resource_type, criteria, "url")?;
                    match self.single_match(&query).await? {
                        Some(existing) => {
                            check_if_match(
                                resource_type,
                                &existing.id,
                                if_match,
                                Some(existing.version),
                            )?;
                            Step::Update {
                                id: existing.id,
                                expected: Some(existing.version),
                                current: None,
                            }
                        }
                        None => {
                            let body_id = entry
                                .resource
                                .as_ref()
                                .and_then(|r| r.get("id"))
                                .and_then(Value::as_str)
                                .map(str::to_owned);
                            Step::Create {
                                id: body_id.unwrap_or_else(|| self.ids.new_id()),
                                claim: Some(claim),
                            }
                        }
                    }
                }
            },
            Method::Patch => {
                let id = match &entry.target.id {
                    Some(id) => id.clone(),
                    None => {
                        let (query, _) = self.conditional_query(resource_type, criteria, "url")?;
                        self.single_match(&query)
                            .await?
                            .ok_or_else(|| RecordsError::NoMatch {
                                resource_type,
                                what: "the patch's criteria".to_owned(),
                            })?
                            .id
                    }
                };
                let current = self.patchable(resource_type, &id, if_match).await?;
                Step::Patch { id, current }
            }
            Method::Delete => {
                let current = match &entry.target.id {
                    Some(id) => Some(
                        currents
                            .get(&(resource_type, id.clone()))
                            .cloned()
                            .filter(|c| self.visible(&c.key_owner))
                            .ok_or_else(|| RecordsError::NotFound {
                                resource_type,
                                id: id.clone(),
                            })?,
                    ),
                    None => {
                        let (query, _) = self.conditional_query(resource_type, criteria, "url")?;
                        let mut found = self.store.search(&query).await?;
                        if found.len() > 1 {
                            return Err(RecordsError::MultipleMatches { resource_type });
                        }
                        found.pop().map(|m| m.version)
                    }
                };
                match current {
                    Some(current) => {
                        check_if_match(
                            resource_type,
                            &current.id,
                            if_match,
                            Some(current.version),
                        )?;
                        if current.deleted {
                            Step::NothingToDelete
                        } else {
                            Step::Delete {
                                id: current.id.clone(),
                                current,
                            }
                        }
                    }
                    None => Step::NothingToDelete,
                }
            }
            Method::Get | Method::Head => Step::NothingToDelete,
        })
    }

    /// What a resolved step writes: a deletion marker or an audit entry added to `changes`
    /// with the entry's outcome, or the new version of a resource, to be sealed once every
    /// entry's key owner is known.
    async fn prepare_step(
        &self,
        entry: &EntryRequest,
        step: Step,
        identities: &Identities,
        now: OffsetDateTime,
        changes: &mut Changes,
    ) -> Result<Prepared, RecordsError> {
        let resource_type = entry.target.resource_type;
        let (resource, id, version, expected, claim) = match step {
            Step::NothingToDelete => return Ok(Prepared::Done(EntryOutcome::Deleted(None))),
            Step::Existing(existing) => {
                // The match goes back to the caller: a disclosure, recorded with the unit.
                let mut audit = self.entry_about(
                    Action::Read,
                    resource_type,
                    &existing.id,
                    Some(existing.version),
                    Some(&existing.key_owner),
                );
                audit.operation = Some("conditional-create".to_owned());
                changes.audit.push(audit);
                return Ok(Prepared::Done(EntryOutcome::Existing(existing)));
            }
            Step::Delete { id, current } => {
                let mut marker = self.deletion_marker(
                    resource_type,
                    &id,
                    current.version + 1,
                    current.key_owner,
                )?;
                marker.last_updated = now;
                let version = marker.version;
                changes.writes.push(Write {
                    version: marker,
                    expected: Some(current.version),
                });
                return Ok(Prepared::Done(EntryOutcome::Deleted(Some(version))));
            }
            Step::Create { id, claim } => {
                let resource = self.entry_resource(entry, identities).await?;
                (resource, id, 1, None, claim)
            }
            Step::Update {
                id,
                expected,
                current,
            } => {
                let resource = self.entry_resource(entry, identities).await?;
                if resource.id().map(|i| i.as_str()) != Some(id.as_str())
                    && (entry.target.id.is_some() || resource.id().is_some())
                {
                    return Err(RecordsError::IdMismatch { id });
                }
                if let Some(current) = current {
                    let current = self.open_version(current)?;
                    if same_content(&current.body, &resource) {
                        return Ok(Prepared::Done(EntryOutcome::Unchanged(current)));
                    }
                }
                (resource, id, expected.map_or(1, |v| v + 1), expected, None)
            }
            Step::Patch { id, current } => {
                let operations = patch_in_binary(entry.resource.as_ref().unwrap_or(&Value::Null))?;
                let expected = current.version;
                let opened = self.open_version(current)?;
                let resource = patched(resource_type, &id, &opened.body, &operations)?;
                (resource, id, expected + 1, Some(expected), None)
            }
        };
        let mut resource = resource;
        if !fhir_model::is_valid_id(&id) {
            return Err(RecordsError::BadId { id });
        }
        resource.set_id(Some(Id::from(id.as_str())));
        let meta = resource.meta_mut();
        meta.version_id = Some(Id::from(version.to_string()));
        meta.last_updated = Some(Instant::from(instant(now)));
        let owner = key_owner(&resource);
        if !self.visible(&owner) {
            return Err(RecordsError::OutsideCompartment { resource_type });
        }
        Ok(Prepared::Unsealed(Unsealed {
            resource,
            version,
            expected,
            claim,
            owner,
        }))
    }

    /// The data keys of the owners of `unsealed` versions, read (or made) together: one round
    /// trip for a chunk that spans hundreds of patients. A new owner's key record comes with
    /// it, to be stored with the first version sealed under it.
    async fn owners_keys(
        &self,
        unsealed: &[(usize, Unsealed)],
        now: OffsetDateTime,
    ) -> Result<HashMap<KeyOwner, (DataKey, Option<KeyRecord>)>, RecordsError> {
        let mut first: HashMap<&KeyOwner, usize> = HashMap::new();
        let mut owners = Vec::new();
        for (index, version) in unsealed {
            if !first.contains_key(&version.owner) {
                first.insert(&version.owner, *index);
                owners.push(version.owner.clone());
            }
        }
        let prepared = self.vault.prepare_keys(&owners, now).await?;
        let mut keys = HashMap::with_capacity(owners.len());
        for (owner, prepared) in owners.into_iter().zip(prepared) {
            let index = first.get(&owner).copied().unwrap_or_default();
            match prepared {
                Ok(key) => {
                    keys.insert(owner, key);
                }
                Err(CryptoError::Erased) => return Err(compartment_erased(&owner).in_entry(index)),
                Err(other) => return Err(RecordsError::from(other).in_entry(index)),
            }
        }
        Ok(keys)
    }

    /// Seals a prepared version under its owner's key and adds it to `changes`.
    fn seal_step(
        &self,
        unsealed: Unsealed,
        now: OffsetDateTime,
        keys: &mut HashMap<KeyOwner, (DataKey, Option<KeyRecord>)>,
        changes: &mut Changes,
    ) -> Result<EntryOutcome, RecordsError> {
        let Unsealed {
            resource,
            version,
            expected,
            claim,
            owner,
        } = unsealed;
        let (key, new_key) =
            keys.get_mut(&owner)
                .ok_or(RecordsError::Crypto(CryptoError::Integrity {
                    what: "a data key went missing",
                }))?;
        // The new owner's key record is stored once, with the first version sealed under it.
        let new_key = new_key.take();
        let action = if expected.is_some() {
            Action::Update
        } else {
            Action::Create
        };
        let (version, body) =
            self.sealed_version(&resource, version, now, claim, action, key, new_key)?;
        let stored = StoredResource {
            resource_type: resource.resource_type(),
            id: version.id.clone(),
            version: version.version,
            last_updated: now,
            key_owner: owner,
            body,
        };
        changes.writes.push(Write { version, expected });
        Ok(if expected.is_some() {
            EntryOutcome::Updated(stored)
        } else {
            EntryOutcome::Created(stored)
        })
    }

    /// An entry's resource with its references resolved, parsed and validated.
    async fn entry_resource(
        &self,
        entry: &EntryRequest,
        identities: &Identities,
    ) -> Result<Resource, RecordsError> {
        let mut value = entry.resource.clone().unwrap_or(Value::Null);
        self.resolve_references(&mut value, entry.index, identities)
            .await?;
        let resource = Resource::from_value(value)
            .map_err(|err| RecordsError::Invalid { issues: err.issues })?;
        let issues = super::issues_of(&resource);
        if issues.iter().any(fhir_model::Issue::is_error) {
            return Err(RecordsError::Invalid { issues });
        }
        Ok(resource)
    }

    /// A GET or HEAD entry, answered as the interaction it names (it records its own audit
    /// entry); its failure is its own.
    pub(crate) async fn answer_read(&self, entry: &EntryRequest) -> EntryOutcome {
        let target = &entry.target;
        let answered = match (&target.id, &target.version) {
            (Some(id), Some(version)) => self
                .vread(target.resource_type, id, version)
                .await
                .map(EntryOutcome::Read),
            (Some(id), None) => self
                .read(target.resource_type, id)
                .await
                .map(EntryOutcome::Read),
            (None, _) => self
                .search(target.resource_type, &target.query)
                .await
                .map(EntryOutcome::Searched),
        };
        answered.unwrap_or_else(|err| EntryOutcome::Failed(err.in_entry(entry.index)))
    }
}

/// Whether a transaction's failure was a race lost to another writer, after which it starts
/// over: a claim, a version, an id or a data key taken between resolving and committing (the
/// next attempt resolves against what the other writer stored).
fn lost_race(err: &RecordsError) -> bool {
    match err {
        RecordsError::InEntry { error, .. } => lost_race(error),
        RecordsError::ClaimTaken { .. }
        | RecordsError::VersionConflict { .. }
        | RecordsError::Conflict { .. }
        | RecordsError::Store(StoreError::KeyChanged { .. }) => true,
        _ => false,
    }
}

/// Whether a stored body and a resource say the same, `meta.versionId` and `meta.lastUpdated`
/// aside (the server's stamps, not the sender's content).
fn same_content(stored: &[u8], resource: &Resource) -> bool {
    let without_stamps = |mut value: Value| {
        if let Some(meta) = value.get_mut("meta").and_then(Value::as_object_mut) {
            meta.remove("versionId");
            meta.remove("lastUpdated");
            if meta.is_empty() {
                value.as_object_mut().map(|r| r.remove("meta"));
            }
        }
        value
    };
    match (
        serde_json::from_slice::<Value>(stored),
        serde_json::from_slice::<Value>(&resource.to_json()),
    ) {
        (Ok(stored), Ok(new)) => without_stamps(stored) == without_stamps(new),
        _ => false,
    }
}

/// `W/"3"` (or `"3"`, or `3`) as a version.
pub(crate) fn parse_if_match(etag: &str) -> Result<u64, RecordsError> {
    etag.trim()
        .trim_start_matches("W/")
        .trim_matches('"')
        .parse()
        .map_err(|_| {
            RecordsError::Search(crate::search::SearchError {
                param: "ifMatch".to_owned(),
                reason: "must be an ETag of a version, W/\"n\"".to_owned(),
            })
        })
}

fn check_if_match(
    resource_type: ResourceType,
    id: &str,
    if_match: Option<u64>,
    current: Option<u64>,
) -> Result<(), RecordsError> {
    match if_match {
        Some(wanted) if current != Some(wanted) => Err(RecordsError::VersionMismatch {
            resource_type,
            id: id.to_owned(),
            expected: wanted,
            current,
        }),
        _ => Ok(()),
    }
}
