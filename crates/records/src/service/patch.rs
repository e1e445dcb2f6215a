//! FHIR `patch` with RFC 6902 JSON Patch: the current version, patched, validated like an
//! update, stored as the next version. A patch that fails or leaves the resource invalid stores
//! nothing.

use base64::Engine;
use serde_json::Value;

use super::*;
use crate::service::write::MAX_CONCURRENT_RETRIES;

/// The content type of a JSON Patch document (RFC 6902).
pub const JSON_PATCH: &str = "application/json-patch+json";

impl Records {
    /// FHIR `patch`: applies `patch` (a JSON Patch document) to the current version of
    /// `resource_type/id` and stores the result as the next version. With `if_match`, only if
    /// the current version is that one; without it, a concurrent write makes the patch apply
    /// again to the newer version, so no write is lost.
    pub async fn patch(
        &self,
        resource_type: ResourceType,
        id: &str,
        patch: &[u8],
        if_match: Option<u64>,
    ) -> Result<StoredResource, RecordsError> {
        self.audited(Action::Update, Some(resource_type), Some(id), async {
            let operations = parse_patch(patch)?;
            self.patch_version(resource_type, id, &operations, if_match)
                .await
        })
        .await
    }

    /// Conditional patch (`PATCH [type]?criteria`): the one resource matching the criteria is
    /// patched; none is [`RecordsError::NoMatch`], several [`RecordsError::MultipleMatches`].
    pub async fn patch_conditional(
        &self,
        resource_type: ResourceType,
        criteria: &[(String, String)],
        patch: &[u8],
        if_match: Option<u64>,
    ) -> Result<StoredResource, RecordsError> {
        self.audited(Action::Update, Some(resource_type), None, async {
            let operations = parse_patch(patch)?;
            let (query, _) = self.conditional_query(resource_type, criteria, "criteria")?;
            let Some(target) = self.single_match(&query).await? else {
                return Err(RecordsError::NoMatch {
                    resource_type,
                    what: "the patch's criteria".to_owned(),
                });
            };
            self.patch_version(resource_type, &target.id, &operations, if_match)
                .await
        })
        .await
    }

    async fn patch_version(
        &self,
        resource_type: ResourceType,
        id: &str,
        operations: &json_patch::Patch,
        if_match: Option<u64>,
    ) -> Result<StoredResource, RecordsError> {
        let mut attempts = 0;
        loop {
            attempts += 1;
            let current = self.patchable(resource_type, id, if_match).await?;
            let expected = current.version;
            let opened = self.open_version(current)?;
            let patched = patched(resource_type, id, &opened.body, operations)?;
            match self
                .update_version(resource_type, id, &patched.to_json(), Some(expected))
                .await
            {
                Ok((stored, _)) => return Ok(stored),
                // Someone wrote meanwhile: without If-Match, patch the newer version.
                Err(RecordsError::VersionMismatch { .. })
                    if if_match.is_none() && attempts < MAX_CONCURRENT_RETRIES => {}
                Err(other) => return Err(other),
            }
        }
    }

    /// The current version of a resource about to be patched: it must exist, be visible, not
    /// be deleted, and be `if_match` if given.
    pub(super) async fn patchable(
        &self,
        resource_type: ResourceType,
        id: &str,
        if_match: Option<u64>,
    ) -> Result<SealedVersion, RecordsError> {
        let current = self
            .store
            .read_current(resource_type, id)
            .await?
            .filter(|c| self.visible(&c.key_owner))
            .ok_or_else(|| RecordsError::NotFound {
                resource_type,
                id: id.to_owned(),
            })?;
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
            return Err(RecordsError::Deleted {
                resource_type,
                id: id.to_owned(),
                version: current.version,
            });
        }
        Ok(current)
    }
}

/// A JSON Patch document: an array of RFC 6902 operations.
pub fn parse_patch(bytes: &[u8]) -> Result<json_patch::Patch, RecordsError> {
    // serde's messages may quote the document's values (PHI): say only where it went wrong.
    serde_json::from_slice(bytes).map_err(|err| RecordsError::BadPatch {
        why: format!(
            "expected an array of RFC 6902 operations (op, path, value, from); the document \
             departs from it at line {}, column {}",
            err.line(),
            err.column()
        ),
    })
}

/// The JSON Patch document a Bundle's PATCH entry carries, as bytes (see [`patch_in_binary`]).
pub(crate) fn patch_bytes_in_binary(binary: &Value) -> Result<Vec<u8>, RecordsError> {
    let patch = patch_in_binary(binary)?;
    Ok(serde_json::to_vec(&patch).unwrap_or_default())
}

/// The JSON Patch a Bundle's PATCH entry carries: a Binary of [`JSON_PATCH`], its `data` the
/// document in base64 (as R4 specifies for patches in Bundles).
pub(crate) fn patch_in_binary(binary: &Value) -> Result<json_patch::Patch, RecordsError> {
    let bad = |why: &str| RecordsError::BadPatch {
        why: why.to_owned(),
    };
    let content_type = binary.get("contentType").and_then(Value::as_str);
    if content_type.map(|t| t.split(';').next().unwrap_or_default().trim()) != Some(JSON_PATCH) {
        return Err(bad(
            "a PATCH entry's Binary must have contentType application/json-patch+json",
        ));
    }
    let data = binary
        .get("data")
        .and_then(Value::as_str)
        .ok_or_else(|| bad("a PATCH entry's Binary must carry the patch in data (base64)"))?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(data)
        .map_err(|_| bad("the Binary's data is not base64"))?;
    parse_patch(&bytes)
}

/// `body` (the current version of `resource_type/id`) with `operations` applied, parsed and
/// validated. A failed operation is [`RecordsError::PatchFailed`]; a result that is invalid, or
/// another type or id, is [`RecordsError::PatchedInvalid`].
pub(crate) fn patched(
    resource_type: ResourceType,
    id: &str,
    body: &[u8],
    operations: &json_patch::Patch,
) -> Result<Resource, RecordsError> {
    let mut document: Value =
        serde_json::from_slice(body).map_err(|_| RecordsError::Integrity {
            resource_type,
            id: id.to_owned(),
            version: 0,
            cause: CryptoError::Integrity {
                what: "a stored body is not JSON",
            },
        })?;
    // The document is dropped on failure, so the undo the checked variant keeps is not needed.
    json_patch::patch_unsafe(&mut document, operations).map_err(|err| {
        RecordsError::PatchFailed {
            operation: err.operation,
            why: match err.kind {
                json_patch::PatchErrorKind::TestFailed => "a test operation found another value",
                json_patch::PatchErrorKind::InvalidFromPointer => "its from path does not exist",
                json_patch::PatchErrorKind::InvalidPointer => "its path does not exist",
                json_patch::PatchErrorKind::CannotMoveInsideItself => {
                    "it moves a value inside itself"
                }
                _ => "it does not apply to this resource",
            },
        }
    })?;
    let root = fhir_model::Location::root(resource_type.as_str());
    let resource = parse_for(
        resource_type,
        &serde_json::to_vec(&document).unwrap_or_default(),
    )
    .map_err(|err| match err {
        RecordsError::Invalid { issues } => RecordsError::PatchedInvalid { issues },
        RecordsError::WrongType { .. } => RecordsError::PatchedInvalid {
            issues: vec![fhir_model::Issue::error(
                fhir_model::IssueType::Invalid,
                Some(&root.child("resourceType")),
                "a patch cannot change the resource's type",
            )],
        },
        other => other,
    })?;
    if resource.id().map(|i| i.as_str()) != Some(id) {
        return Err(RecordsError::PatchedInvalid {
            issues: vec![fhir_model::Issue::error(
                fhir_model::IssueType::Invalid,
                Some(&root.child("id")),
                "a patch cannot change or remove the resource's id",
            )],
        });
    }
    Ok(resource)
}
