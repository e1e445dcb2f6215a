//! Every failure as an HTTP status and a FHIR OperationOutcome.

use fhir_model::{Issue, IssueSeverity, IssueType, OperationOutcome, Resource};
use poem_openapi::ApiResponse;
use records::{RecordsError, StoreError};

use crate::context::RequestId;
use crate::payload::FhirJson;

/// The error responses of the FHIR API. Each body is an OperationOutcome.
#[derive(Debug, ApiResponse)]
pub enum FhirError {
    /// The request or the resource in it is malformed or invalid; the issues say where and why.
    #[oai(status = 400)]
    BadRequest(FhirJson),
    /// No valid bearer token: missing, malformed, tampered, expired or revoked.
    #[oai(status = 401)]
    Unauthorized(
        FhirJson,
        /// The RFC 6750 challenge, saying why the token was refused.
        #[oai(header = "WWW-Authenticate")]
        String,
    ),
    /// The token is valid but does not allow this request; the OperationOutcome says which
    /// rule or check refused it.
    #[oai(status = 403)]
    Forbidden(FhirJson),
    /// No such resource, or no such resource type (also a resource outside the only patient
    /// compartment the token may see: its existence is not admitted).
    #[oai(status = 404)]
    NotFound(FhirJson),
    /// The resource conflicts with one already stored.
    #[oai(status = 409)]
    Conflict(FhirJson),
    /// The requested `_format` is not one this server answers in.
    #[oai(status = 406)]
    NotAcceptable(FhirJson),
    /// The resource was deleted.
    #[oai(status = 410)]
    Gone(FhirJson),
    /// `If-Match` named another version than the current one.
    #[oai(status = 412)]
    PreconditionFailed(FhirJson),
    /// This token sent more requests than its rate allows; retry after `Retry-After` seconds.
    #[oai(status = 429)]
    TooManyRequests(
        FhirJson,
        /// Seconds until the token's next request is accepted.
        #[oai(header = "Retry-After")]
        String,
    ),
    /// The request body is larger than the server accepts.
    #[oai(status = 413)]
    PayloadTooLarge(FhirJson),
    /// The request body is not `application/fhir+json` or `application/json`.
    #[oai(status = 415)]
    UnsupportedMediaType(FhirJson),
    /// An unexpected failure; the OperationOutcome carries a correlation id for the operator.
    #[oai(status = 500)]
    Internal(FhirJson),
    /// The database is unavailable; retry later.
    #[oai(status = 503)]
    Unavailable(FhirJson),
}

pub(crate) fn outcome_json(outcome: OperationOutcome) -> FhirJson {
    FhirJson(Resource::OperationOutcome(Box::new(outcome)).to_json())
}

/// A response with `status` and an OperationOutcome of one error issue.
pub(crate) fn refusal(
    status: poem::http::StatusCode,
    code: IssueType,
    diagnostics: String,
) -> poem::Response {
    let mut response = poem::IntoResponse::into_response(single(code, diagnostics));
    response.set_status(status);
    response
}

pub(crate) fn single(code: IssueType, diagnostics: impl Into<String>) -> FhirJson {
    outcome_json(OperationOutcome::single(
        IssueSeverity::Error,
        code,
        diagnostics,
    ))
}

impl FhirError {
    pub(crate) fn unknown_type(err: fhir_model::UnknownResourceType) -> Self {
        Self::NotFound(single(IssueType::NotSupported, err.to_string()))
    }

    /// A store failure outside the records (e.g. the token registry): logged, answered 503.
    pub(crate) fn unavailable(cause: &str, request_id: &RequestId) -> Self {
        tracing::error!(request_id = %request_id.0, error = %cause, "store unavailable");
        Self::Unavailable(single(
            IssueType::Transient,
            format!(
                "the database is unavailable; retry later (correlation id {})",
                request_id.0
            ),
        ))
    }

    /// 401 for a refused token, with the RFC 6750 challenge saying why.
    pub(crate) fn unauthorized(err: &access::AccessError) -> Self {
        let body = outcome_json(OperationOutcome::single(
            IssueSeverity::Error,
            IssueType::Login,
            err.to_string(),
        ));
        let challenge = format!(
            "Bearer realm=\"cairn\", error=\"invalid_token\", error_description=\"{}\"",
            err.to_string().replace('"', "'")
        );
        Self::Unauthorized(body, challenge)
    }

    pub(crate) fn invalid(issues: &[Issue]) -> Self {
        Self::BadRequest(outcome_json(OperationOutcome::from_issues(issues)))
    }

    /// Maps a core error; server-side failures are logged here, with the request id, and
    /// answered without internal detail.
    pub(crate) fn from_records(err: RecordsError, request_id: &RequestId) -> Self {
        match err {
            RecordsError::Refused(err) if err.is_authentication() => Self::unauthorized(&err),
            RecordsError::Refused(err) => Self::Forbidden(outcome_json(OperationOutcome::single(
                IssueSeverity::Error,
                IssueType::Forbidden,
                err.to_string(),
            ))),
            RecordsError::Invalid { issues } => Self::invalid(&issues),
            RecordsError::WrongType { .. } => {
                Self::BadRequest(outcome_json(OperationOutcome::from_issues([
                    &Issue::error(
                        IssueType::Invalid,
                        Some(&fhir_model::Location::root("Resource").child("resourceType")),
                        err.to_string(),
                    ),
                ])))
            }
            RecordsError::NotFound { .. } => {
                Self::NotFound(single(IssueType::NotFound, err.to_string()))
            }
            RecordsError::Deleted { .. } => Self::Gone(single(IssueType::Deleted, err.to_string())),
            RecordsError::Conflict { .. } => {
                Self::Conflict(single(IssueType::Duplicate, err.to_string()))
            }
            RecordsError::Erased { .. } => Self::Gone(single(IssueType::Deleted, err.to_string())),
            RecordsError::BadId { .. } | RecordsError::IdMismatch { .. } => {
                Self::BadRequest(single(IssueType::Invalid, err.to_string()))
            }
            RecordsError::VersionMismatch { .. } | RecordsError::MultipleMatches { .. } => {
                Self::PreconditionFailed(single(IssueType::Conflict, err.to_string()))
            }
            RecordsError::VersionConflict { .. } | RecordsError::ClaimTaken { .. } => {
                Self::Conflict(single(IssueType::Conflict, err.to_string()))
            }
            RecordsError::CompartmentErased { .. } => {
                Self::Conflict(single(IssueType::Conflict, err.to_string()))
            }
            RecordsError::OutsideCompartment { .. } => {
                Self::Forbidden(single(IssueType::Forbidden, err.to_string()))
            }
            RecordsError::Search(search) => {
                let mut outcome = OperationOutcome::single(
                    IssueSeverity::Error,
                    IssueType::Invalid,
                    search.to_string(),
                );
                if let Some(issue) = outcome.issue.first_mut() {
                    issue.expression = vec![search.param.clone()];
                }
                Self::BadRequest(outcome_json(outcome))
            }
            RecordsError::Integrity {
                resource_type,
                id,
                version,
                cause,
            } => {
                // Ids and the kind of failure only: the cause never carries plaintext.
                tracing::error!(
                    request_id = %request_id.0, %resource_type, %id, version, %cause,
                    "integrity failure: stored data did not authenticate"
                );
                Self::Internal(single(
                    IssueType::Exception,
                    format!(
                        "integrity failure: the stored data of {resource_type}/{id} version \
                         {version} did not pass its integrity check and was not returned \
                         (correlation id {})",
                        request_id.0
                    ),
                ))
            }
            RecordsError::Crypto(cause) => {
                tracing::error!(request_id = %request_id.0, error = %cause, "key failure");
                Self::Internal(outcome_json(OperationOutcome::internal_error(
                    &request_id.0,
                )))
            }
            RecordsError::AuditUnavailable(cause) => {
                // Nothing is disclosed or changed without its audit entry.
                tracing::error!(request_id = %request_id.0, error = %cause, "audit log unavailable");
                Self::Unavailable(single(
                    IssueType::Transient,
                    format!(
                        "the audit log is unavailable, so the request was not carried out; \
                         retry later (correlation id {})",
                        request_id.0
                    ),
                ))
            }
            RecordsError::Store(StoreError::Unavailable(source)) => {
                tracing::error!(request_id = %request_id.0, error = %source, "record store unavailable");
                Self::Unavailable(single(
                    IssueType::Transient,
                    format!(
                        "the database is unavailable; retry later (correlation id {})",
                        request_id.0
                    ),
                ))
            }
            RecordsError::Store(
                err @ (StoreError::Corrupt { .. }
                | StoreError::AlreadyExists { .. }
                | StoreError::Erased { .. }
                | StoreError::KeyChanged { .. }
                | StoreError::VersionConflict { .. }
                | StoreError::ClaimTaken { .. }),
            ) => {
                tracing::error!(request_id = %request_id.0, error = %err, "record store failure");
                Self::Internal(outcome_json(OperationOutcome::internal_error(
                    &request_id.0,
                )))
            }
        }
    }
}
