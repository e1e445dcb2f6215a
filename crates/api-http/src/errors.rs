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
    /// `If-Match` named another version than the current one, or conditional criteria matched
    /// more than one resource.
    #[oai(status = 412)]
    PreconditionFailed(FhirJson),
    /// A JSON Patch could not be applied, or left the resource invalid; nothing was stored.
    #[oai(status = 422)]
    Unprocessable(FhirJson),
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
            RecordsError::InEntry { index, error } => {
                Self::from_records(*error, request_id).in_entry(index)
            }
            RecordsError::SameTarget { .. } | RecordsError::BadPatch { .. } => {
                Self::BadRequest(single(IssueType::Invalid, err.to_string()))
            }
            RecordsError::BadReference { ref location, .. } => {
                let mut outcome = OperationOutcome::single(
                    IssueSeverity::Error,
                    IssueType::Invalid,
                    err.to_string(),
                );
                if let Some(issue) = outcome.issue.first_mut() {
                    issue.expression = vec![location.clone()];
                }
                Self::BadRequest(outcome_json(outcome))
            }
            RecordsError::NoMatch { .. } => {
                Self::NotFound(single(IssueType::NotFound, err.to_string()))
            }
            RecordsError::PatchFailed { .. } => {
                Self::Unprocessable(single(IssueType::Processing, err.to_string()))
            }
            RecordsError::PatchedInvalid { issues } => {
                Self::Unprocessable(outcome_json(OperationOutcome::from_issues(&issues)))
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

impl FhirError {
    /// The HTTP status and the OperationOutcome, for a Bundle entry's `response`.
    pub(crate) fn status_and_outcome(&self) -> (u16, &FhirJson) {
        match self {
            Self::BadRequest(body) => (400, body),
            Self::Unauthorized(body, _) => (401, body),
            Self::Forbidden(body) => (403, body),
            Self::NotFound(body) => (404, body),
            Self::NotAcceptable(body) => (406, body),
            Self::Conflict(body) => (409, body),
            Self::Gone(body) => (410, body),
            Self::PreconditionFailed(body) => (412, body),
            Self::PayloadTooLarge(body) => (413, body),
            Self::UnsupportedMediaType(body) => (415, body),
            Self::Unprocessable(body) => (422, body),
            Self::TooManyRequests(body, _) => (429, body),
            Self::Internal(body) => (500, body),
            Self::Unavailable(body) => (503, body),
        }
    }

    /// The same failure, about `Bundle.entry[index]`: issues that name no element of the
    /// entry get the entry as their expression, and every diagnostic names it.
    fn in_entry(mut self, index: usize) -> Self {
        let entry = format!("Bundle.entry[{index}]");
        let body = match &mut self {
            Self::BadRequest(body)
            | Self::Unauthorized(body, _)
            | Self::Forbidden(body)
            | Self::NotFound(body)
            | Self::NotAcceptable(body)
            | Self::Conflict(body)
            | Self::Gone(body)
            | Self::PreconditionFailed(body)
            | Self::PayloadTooLarge(body)
            | Self::UnsupportedMediaType(body)
            | Self::Unprocessable(body)
            | Self::TooManyRequests(body, _)
            | Self::Internal(body)
            | Self::Unavailable(body) => body,
        };
        if let Ok(serde_json::Value::Object(mut outcome)) =
            serde_json::from_slice::<serde_json::Value>(&body.0)
        {
            if let Some(serde_json::Value::Array(issues)) = outcome.get_mut("issue") {
                for issue in issues.iter_mut() {
                    if issue.get("expression").is_none() {
                        issue["expression"] = serde_json::json!([entry]);
                    }
                    let said = issue
                        .get("diagnostics")
                        .and_then(serde_json::Value::as_str)
                        .unwrap_or_default();
                    if !said.starts_with(&entry) {
                        issue["diagnostics"] = serde_json::json!(format!("{entry}: {said}"));
                    }
                }
            }
            body.0 = serde_json::to_vec(&outcome).unwrap_or_default();
        }
        self
    }
}
