//! Reads: read, vread, and instance, type and system history.

use super::*;

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

pub(super) fn encode_history_cursor(position: &HistoryPosition) -> String {
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

pub(super) fn decode_history_cursor(cursor: &str) -> Option<HistoryPosition> {
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

impl Records {
    /// FHIR `vread`: one version. A deletion marker answers [`RecordsError::Deleted`].
    pub async fn vread(
        &self,
        resource_type: ResourceType,
        id: &str,
        version: &str,
    ) -> Result<StoredResource, RecordsError> {
        self.audited(Action::Vread, Some(resource_type), Some(id), async {
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
            self.append_audit(&[self.entry_about(
                Action::Vread,
                resource_type,
                id,
                Some(opened.version),
                Some(&opened.key_owner),
            )])
            .await?;
            Ok(opened)
        })
        .await
    }

    /// FHIR instance `history`: versions newest first, at most `count`, since `since`.
    pub async fn history(
        &self,
        resource_type: ResourceType,
        id: &str,
        since: Option<OffsetDateTime>,
        count: u64,
    ) -> Result<Vec<HistoryEntry>, RecordsError> {
        self.audited(Action::History, Some(resource_type), Some(id), async {
            let not_found = || RecordsError::NotFound {
                resource_type,
                id: id.to_owned(),
            };
            if !fhir_model::is_valid_id(id) {
                return Err(not_found());
            }
            let versions = self
                .store
                .history(
                    resource_type,
                    id,
                    since,
                    count.min(crate::search::MAX_COUNT),
                )
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
                self.entry_about(Action::History, resource_type, id, None, owner.as_ref());
            entry.result_count = Some(u64::try_from(entries.len()).unwrap_or(u64::MAX));
            self.append_audit(&[entry]).await?;
            Ok(entries)
        })
        .await
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
        self.audited(Action::History, resource_type, None, async {
            let after = cursor
                .map(|c| {
                    decode_history_cursor(c).ok_or_else(|| crate::search::SearchError {
                        param: "_cursor".to_owned(),
                        reason: "is not a cursor this server issued".to_owned(),
                    })
                })
                .transpose()?;
            let limit = count.min(crate::search::MAX_COUNT);
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
            let audit =
                self.disclosure_entries(Action::History, resource_type, &query, owners.iter());
            self.append_audit(&audit).await?;
            Ok(HistoryPage {
                entries,
                next_cursor,
            })
        })
        .await
    }

    /// FHIR `read`: the current version.
    pub async fn read(
        &self,
        resource_type: ResourceType,
        id: &str,
    ) -> Result<StoredResource, RecordsError> {
        self.audited(Action::Read, Some(resource_type), Some(id), async {
            let resource = self.read_unaudited(resource_type, id).await?;
            self.append_audit(&[self.entry_about(
                Action::Read,
                resource_type,
                id,
                Some(resource.version),
                Some(&resource.key_owner),
            )])
            .await?;
            Ok(resource)
        })
        .await
    }

    /// A read that writes no entry: for what a recorded use case reads on the way (a
    /// search's `_include` targets, `$series-status`'s patient), which its own entries cover.
    pub(super) async fn read_unaudited(
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
}
