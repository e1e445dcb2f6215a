//! The use cases.

use std::sync::Arc;

use fhir_model::{Id, Instant, Resource, ResourceType};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::error::RecordsError;
use crate::ports::{Clock, IdGenerator, NewVersion, ResourceStore};

/// A resource as stored: its body is the complete FHIR JSON, `meta` included.
#[derive(Clone, PartialEq, Eq)]
pub struct StoredResource {
    pub resource_type: ResourceType,
    pub id: String,
    pub version: u64,
    pub last_updated: OffsetDateTime,
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
    clock: Arc<dyn Clock>,
    ids: Arc<dyn IdGenerator>,
}

impl std::fmt::Debug for Records {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Records")
    }
}

impl Records {
    pub fn new(
        store: Arc<dyn ResourceStore>,
        clock: Arc<dyn Clock>,
        ids: Arc<dyn IdGenerator>,
    ) -> Self {
        Self { store, clock, ids }
    }

    /// FHIR `create`: validates, assigns a new id (any id in the body is ignored, as the spec
    /// says), stamps `meta.versionId` = 1 and `meta.lastUpdated`, and stores version 1.
    pub async fn create(
        &self,
        resource_type: ResourceType,
        body: &[u8],
    ) -> Result<StoredResource, RecordsError> {
        let mut resource = parse_for(resource_type, body)?;
        let id = self.ids.new_id();
        // Stored timestamps have microsecond precision (Postgres); cut here so the body and the
        // row agree exactly.
        let now = self.clock.now();
        let last_updated = now
            .replace_nanosecond(now.microsecond() * 1_000)
            .unwrap_or(now);
        resource.set_id(Some(Id::from(id.as_str())));
        let meta = resource.meta_mut();
        meta.version_id = Some(Id::from("1"));
        meta.last_updated = Some(Instant::from(instant(last_updated)));
        let body = resource.to_json();
        self.store
            .create(NewVersion {
                resource_type,
                id: id.clone(),
                version: 1,
                last_updated,
                body: body.clone(),
            })
            .await?;
        Ok(StoredResource {
            resource_type,
            id,
            version: 1,
            last_updated,
            body,
        })
    }

    /// FHIR `read`: the current version.
    pub async fn read(
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
        if stored.deleted {
            return Err(RecordsError::Deleted {
                resource_type,
                id: stored.id,
                version: stored.version,
            });
        }
        Ok(StoredResource {
            resource_type,
            id: stored.id,
            version: stored.version,
            last_updated: stored.last_updated,
            body: stored.body,
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

#[cfg(test)]
mod tests;
