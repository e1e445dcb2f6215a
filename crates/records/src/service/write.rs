//! Writes: create, conditional create and update, update, delete; each stores its version
//! and its audit entry in one unit of work.

use super::*;

/// How often an update or delete without `If-Match` starts over after a concurrent write to
/// the same resource. Each failed attempt means another writer committed, so a writer retries
/// at most as often as others succeed meanwhile; the bound only stops pathological contention.
pub(super) const MAX_CONCURRENT_RETRIES: u32 = 64;

pub(super) fn compartment_erased(owner: &KeyOwner) -> RecordsError {
    RecordsError::CompartmentErased {
        patient: owner.patient_id().unwrap_or_default().to_owned(),
    }
}

/// Whose data key seals a resource: its patient's compartment, or the system key.
pub(super) fn key_owner(resource: &Resource) -> KeyOwner {
    patient_compartment(resource).map_or(KeyOwner::System, KeyOwner::Patient)
}

impl Records {
    /// FHIR `create`: validates, assigns a new id (any id in the body is ignored, as the spec
    /// says), stamps `meta.versionId` = 1 and `meta.lastUpdated`, seals the body under its
    /// patient compartment's data key, and stores version 1 with its index rows.
    pub async fn create(
        &self,
        resource_type: ResourceType,
        body: &[u8],
    ) -> Result<StoredResource, RecordsError> {
        let id = self.ids.new_id();
        let created = self.create_version_one(resource_type, body, &id, None);
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
        self.audited(Action::Create, Some(resource_type), None, async {
            let (query, claim) =
                self.conditional_query(resource_type, criteria, "If-None-Exist")?;
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
                    self.append_audit(&[entry]).await?;
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
        })
        .await
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
        self.audited(Action::Update, Some(resource_type), None, async {
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
                            .update_version(resource_type, &existing.id, &resource.to_json(), None)
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
        })
        .await
    }

    /// The create branch of a conditional write: version 1 holding `claim`, or `None` if
    /// another conditional write with these criteria committed first (its resource is then
    /// visible to the caller's next search; a stale claim is released for the next attempt).
    pub(super) async fn create_claimed(
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
    pub(super) async fn release_stale_claim(
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
    pub(super) fn conditional_query(
        &self,
        resource_type: ResourceType,
        criteria: &[(String, String)],
        what: &str,
    ) -> Result<(crate::index::SearchQuery, phi_crypto::BlindToken), RecordsError> {
        let blind = self.vault.blind_index();
        let mut query = crate::search::parse(resource_type, criteria, &blind, self.now())?;
        if query.clauses.is_empty() {
            return Err(RecordsError::Search(crate::search::SearchError {
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
    pub(super) async fn create_version_one(
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
    pub(super) async fn single_match(
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
        let work = self.update_version(resource_type, id, body, if_match);
        self.audited(Action::Update, Some(resource_type), Some(id), work)
            .await
    }

    /// The work of [`Self::update`], which a conditional update does as part of its own.
    pub(super) async fn update_version(
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
        let work = self.delete_version(resource_type, id, if_match);
        self.audited(Action::Delete, Some(resource_type), Some(id), work)
            .await
    }

    /// FHIR conditional delete (`DELETE [type]?criteria`): the one matching resource is
    /// deleted (its deletion's version); no match deletes nothing (`None`); several are
    /// [`RecordsError::MultipleMatches`].
    pub async fn delete_conditional(
        &self,
        resource_type: ResourceType,
        criteria: &[(String, String)],
    ) -> Result<Option<u64>, RecordsError> {
        self.audited(Action::Delete, Some(resource_type), None, async {
            let (query, _) = self.conditional_query(resource_type, criteria, "criteria")?;
            match self.single_match(&query).await? {
                Some(found) => self.delete_version(resource_type, &found.id, None).await,
                None => Ok(None),
            }
        })
        .await
    }

    /// The work of [`Self::delete`].
    async fn delete_version(
        &self,
        resource_type: ResourceType,
        id: &str,
        if_match: Option<u64>,
    ) -> Result<Option<u64>, RecordsError> {
        {
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
                let marker = self.deletion_marker(
                    resource_type,
                    id,
                    current.version + 1,
                    current.key_owner,
                )?;
                let version = marker.version;
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
    }

    /// The version that marks `resource_type/id` deleted: no body to seal, no index rows, and
    /// the delete's audit entry.
    pub(super) fn deletion_marker(
        &self,
        resource_type: ResourceType,
        id: &str,
        version: u64,
        key_owner: KeyOwner,
    ) -> Result<NewVersion, RecordsError> {
        let audit = self.entry_about(
            Action::Delete,
            resource_type,
            id,
            Some(version),
            Some(&key_owner),
        );
        Ok(NewVersion {
            resource_type,
            id: id.to_owned(),
            version,
            last_updated: self.now(),
            key_owner,
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
        })
    }

    /// Seals a stamped resource (its type and id are where it is stored) under its
    /// compartment's key and stores it as `version` (`expected` = the version it replaces, or
    /// `None` to create). A new compartment's key is
    /// stored in the same transaction; if another writer stored a different key for the owner
    /// first, the store refuses and the next attempt uses that key. Returns the plaintext body.
    pub(super) async fn store_version(
        &self,
        resource: &Resource,
        version: u64,
        last_updated: OffsetDateTime,
        expected: Option<u64>,
        claim: Option<phi_crypto::BlindToken>,
        action: Action,
    ) -> Result<(Vec<u8>, KeyOwner), RecordsError> {
        let owner = key_owner(resource);
        if !self.visible(&owner) {
            return Err(RecordsError::OutsideCompartment {
                resource_type: resource.resource_type(),
            });
        }
        let mut attempts = 0;
        loop {
            attempts += 1;
            let (key, new_key) = match self.vault.prepare_key(&owner, last_updated).await {
                Err(CryptoError::Erased) => return Err(compartment_erased(&owner)),
                other => other?,
            };
            let (new_version, body) = self.sealed_version(
                resource,
                version,
                last_updated,
                claim,
                action,
                &key,
                new_key,
            )?;
            let written = match expected {
                None => self.store.create(new_version).await,
                Some(expected) => self.store.update(new_version, expected).await,
            };
            match written {
                Err(StoreError::KeyChanged { .. }) if attempts < 3 => {}
                other => {
                    other?;
                    return Ok((body, owner));
                }
            }
        }
    }

    /// A stamped resource sealed under `key` (its owner's) as `version`, with its index rows,
    /// claim and audit entry; `new_key` goes with it when the owner's key is new. Returns the
    /// version and the plaintext body.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn sealed_version(
        &self,
        resource: &Resource,
        version: u64,
        last_updated: OffsetDateTime,
        claim: Option<phi_crypto::BlindToken>,
        action: Action,
        key: &phi_crypto::DataKey,
        new_key: Option<phi_crypto::KeyRecord>,
    ) -> Result<(NewVersion, Vec<u8>), RecordsError> {
        let resource_type = resource.resource_type();
        let id = resource.id().map(|id| id.as_str()).unwrap_or_default();
        let owner = key_owner(resource);
        let body = resource.to_json();
        let context = SealContext {
            resource_type: resource_type.as_str(),
            id,
            version,
        };
        let audit = self.entry_about(action, resource_type, id, Some(version), Some(&owner));
        let new_version = NewVersion {
            resource_type,
            id: id.to_owned(),
            version,
            last_updated,
            key_owner: owner,
            key_id: key.id(),
            new_key,
            body: seal(key, context, &body)?,
            index: index_rows(resource, &self.vault.blind_index()),
            deleted: false,
            claim,
            audit: Some(audit),
        };
        Ok((new_version, body))
    }
}
