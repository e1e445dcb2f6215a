//! The core's errors. Each names the resource by type and id, never by content.

use fhir_model::{Issue, ResourceType};
use phi_crypto::CryptoError;

use crate::ports::StoreError;
use crate::search::SearchError;

#[derive(Debug, thiserror::Error)]
pub enum RecordsError {
    /// The caller may not do this (their token lapsed meanwhile, or does not allow it); the
    /// refusal is on the audit log.
    #[error("{0}")]
    Refused(access::AccessError),
    /// The submitted resource is not valid FHIR; `issues` lists every problem.
    #[error("the resource is invalid ({} issue(s))", issues.len())]
    Invalid { issues: Vec<Issue> },
    /// The body's resourceType is not the type named in the URL.
    #[error("the body is a {found} but the URL is for {expected}")]
    WrongType {
        expected: ResourceType,
        found: ResourceType,
    },
    #[error("{resource_type}/{id} is not known")]
    NotFound {
        resource_type: ResourceType,
        id: String,
    },
    #[error("{resource_type}/{id} was deleted")]
    Deleted {
        resource_type: ResourceType,
        id: String,
        version: u64,
    },
    #[error("{resource_type}/{id} already exists")]
    Conflict {
        resource_type: ResourceType,
        id: String,
    },
    /// The id in the URL is not a FHIR id.
    #[error("{id:?} is not a valid id (1-64 of A-Z a-z 0-9 - .)")]
    BadId { id: String },
    /// An update's body has no id, or another id than the URL.
    #[error("the resource's id must be present and equal the id in the URL ({id})")]
    IdMismatch { id: String },
    /// `If-Match` named another version than the current one.
    #[error("{resource_type}/{id}: If-Match expected version {expected}, but the current version is {}", current.map_or_else(|| "none".to_owned(), |v| v.to_string()))]
    VersionMismatch {
        resource_type: ResourceType,
        id: String,
        expected: u64,
        current: Option<u64>,
    },
    /// A conditional create's criteria match more than one resource.
    #[error("the criteria match more than one {resource_type}; make them more selective")]
    MultipleMatches { resource_type: ResourceType },
    /// A conditional create with the same criteria won (internal: the loser looks again).
    #[error("a conditional create with the same criteria created {resource_type} first")]
    ClaimTaken { resource_type: ResourceType },
    /// A concurrent write changed the resource and retrying did not settle it.
    #[error("{resource_type}/{id} is being changed concurrently; retry")]
    VersionConflict {
        resource_type: ResourceType,
        id: String,
    },
    /// Every version of the resource was crypto-shredded with its patient's compartment.
    #[error("{resource_type}/{id} was erased")]
    Erased {
        resource_type: ResourceType,
        id: String,
    },
    /// A caller confined to one patient's compartment wrote a resource outside it.
    #[error(
        "this {resource_type} would be outside the only patient compartment the caller may write to"
    )]
    OutsideCompartment { resource_type: ResourceType },
    /// A write for a patient whose compartment was erased.
    #[error("Patient/{patient} was erased; nothing more can be recorded for them")]
    CompartmentErased { patient: String },
    /// A stored version failed to open: it was altered or moved (tampering or corruption).
    #[error("integrity failure reading {resource_type}/{id} version {version}: {cause}")]
    Integrity {
        resource_type: ResourceType,
        id: String,
        version: u64,
        cause: CryptoError,
    },
    /// An entry of a transaction or batch Bundle failed (the Bundle's position of the entry;
    /// `error` says why).
    #[error("Bundle.entry[{index}]: {error}")]
    InEntry {
        index: usize,
        error: Box<RecordsError>,
    },
    /// Two entries of a transaction resolve to the same resource.
    #[error(
        "{resource_type}/{id} is also the target of Bundle.entry[{other}]; a transaction touches each resource once"
    )]
    SameTarget {
        resource_type: ResourceType,
        id: String,
        other: usize,
    },
    /// A reference in a Bundle entry cannot be resolved (`location` is the element's path).
    #[error("{location} {why}")]
    BadReference { location: String, why: &'static str },
    /// A conditional reference or a conditional patch matched no resource.
    #[error("{what} matches no {resource_type}")]
    NoMatch {
        resource_type: ResourceType,
        what: String,
    },
    /// A JSON Patch document is not one (not an array of RFC 6902 operations).
    #[error("the JSON Patch document is invalid: {why}")]
    BadPatch { why: String },
    /// A JSON Patch operation could not be applied (a failed `test`, a path that does not
    /// exist); nothing was stored.
    #[error("JSON Patch operation {operation} could not be applied: {why}")]
    PatchFailed { operation: usize, why: &'static str },
    /// The patched resource is not valid (or changed its type or id); nothing was stored.
    #[error("the patched resource is invalid ({} issue(s))", issues.len())]
    PatchedInvalid { issues: Vec<Issue> },
    /// The search request cannot be answered.
    #[error(transparent)]
    Search(#[from] SearchError),
    /// Keys could not be used (keyring, randomness); never about the data's content.
    #[error(transparent)]
    Crypto(CryptoError),
    #[error(transparent)]
    Store(StoreError),
    /// The audit log could not record the access, so nothing was disclosed or changed.
    #[error(transparent)]
    AuditUnavailable(audit_chain::AuditFailure),
}

impl RecordsError {
    /// A short code for the audit log's `reason`: the kind of failure, never its details.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Refused(err) => err.code(),
            Self::Invalid { .. } => "invalid",
            Self::WrongType { .. } => "wrong-type",
            Self::NotFound { .. } => "not-found",
            Self::Deleted { .. } => "deleted",
            Self::Conflict { .. } => "conflict",
            Self::BadId { .. } => "bad-id",
            Self::IdMismatch { .. } => "id-mismatch",
            Self::VersionMismatch { .. } => "version-mismatch",
            Self::MultipleMatches { .. } => "multiple-matches",
            Self::ClaimTaken { .. } | Self::VersionConflict { .. } => "concurrent-change",
            Self::Erased { .. } => "erased",
            Self::OutsideCompartment { .. } => "outside-compartment",
            Self::CompartmentErased { .. } => "compartment-erased",
            Self::Integrity { .. } => "integrity",
            Self::InEntry { error, .. } => error.code(),
            Self::SameTarget { .. } => "same-target",
            Self::BadReference { .. } => "bad-reference",
            Self::NoMatch { .. } => "no-match",
            Self::BadPatch { .. } => "bad-patch",
            Self::PatchFailed { .. } => "patch-failed",
            Self::PatchedInvalid { .. } => "patched-invalid",
            Self::Search(_) => "bad-search",
            Self::Crypto(_) => "key-failure",
            Self::Store(_) => "store-failure",
            Self::AuditUnavailable(_) => "audit-unavailable",
        }
    }

    /// Whether the server failed (rather than the request being refused).
    pub fn is_server_failure(&self) -> bool {
        if let Self::InEntry { error, .. } = self {
            return error.is_server_failure();
        }
        matches!(
            self,
            Self::Integrity { .. }
                | Self::Crypto(_)
                | Self::Store(_)
                | Self::AuditUnavailable(_)
                | Self::VersionConflict { .. }
                | Self::ClaimTaken { .. }
        )
    }
}

impl RecordsError {
    /// This error as the failure of `Bundle.entry[index]`: issues located in its resource
    /// (`Patient.birthDate`) are located in the Bundle (`Bundle.entry[3].resource.birthDate`).
    pub fn in_entry(self, index: usize) -> Self {
        let relocate = |issues: Vec<Issue>| -> Vec<Issue> {
            let prefix = format!("Bundle.entry[{index}].resource");
            issues
                .into_iter()
                .map(|mut issue| {
                    if let Some(location) = issue.location.take() {
                        let rest = location.find(['.', '[']).map_or("", |at| &location[at..]);
                        issue.location = Some(format!("{prefix}{rest}"));
                    }
                    issue
                })
                .collect()
        };
        let error = match self {
            Self::InEntry { .. } => return self,
            Self::Invalid { issues } => Self::Invalid {
                issues: relocate(issues),
            },
            Self::PatchedInvalid { issues } => Self::PatchedInvalid {
                issues: relocate(issues),
            },
            other => other,
        };
        Self::InEntry {
            index,
            error: Box::new(error),
        }
    }
}

impl From<CryptoError> for RecordsError {
    fn from(err: CryptoError) -> Self {
        match err {
            CryptoError::Store(source) => Self::Store(StoreError::Unavailable(source)),
            other => Self::Crypto(other),
        }
    }
}

impl From<StoreError> for RecordsError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::AlreadyExists { resource_type, id } => Self::Conflict { resource_type, id },
            StoreError::ClaimTaken { resource_type } => Self::ClaimTaken { resource_type },
            StoreError::VersionConflict { resource_type, id } => {
                Self::VersionConflict { resource_type, id }
            }
            StoreError::Erased { key_owner } => Self::CompartmentErased {
                patient: key_owner.patient_id().unwrap_or_default().to_owned(),
            },
            other => Self::Store(other),
        }
    }
}
