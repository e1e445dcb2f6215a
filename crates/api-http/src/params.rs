//! What the FHIR handlers read from a request besides their typed parameters: the resource
//! type in the path, conditional-create criteria, `Prefer`, `If-Match`, history's `_count` and
//! `_since`, and read shaping, each refused with a 400 naming the parameter.

use fhir_model::ResourceType;
use poem::Request;
use time::OffsetDateTime;

use crate::errors::FhirError;
use crate::shaping::{Shaping, Summary};

/// The answer to an update: 201 if it created the resource, else 200; the body per `Prefer`.
/// A create's conditional criteria: `If-None-Exist` (`identifier=…`, `?identifier=…` or
/// `Patient?identifier=…`), or search parameters in the URL's query, which some clients send
/// instead (fhirpy's `save(search_params=…)`); both at once are refused rather than one
/// silently ignored. `_format` and `_pretty` in the query only shape the answer.
pub(crate) fn create_criteria(
    request: &Request,
    if_none_exist: Option<&str>,
) -> Result<Option<Vec<(String, String)>>, FhirError> {
    let mut query: Vec<(String, String)> = request
        .params()
        .map_err(|_| bad_parameter("query", "is not valid URL encoding"))?;
    query.retain(|(name, _)| !matches!(name.as_str(), "_format" | "_pretty"));
    match (if_none_exist, query.is_empty()) {
        (None, true) => Ok(None),
        (None, false) => Ok(Some(query)),
        (Some(criteria), true) => {
            let query = criteria.rsplit_once('?').map_or(criteria, |(_, q)| q);
            Ok(Some(
                form_urlencoded::parse(query.as_bytes())
                    .into_owned()
                    .collect(),
            ))
        }
        (Some(_), false) => Err(bad_parameter(
            "If-None-Exist",
            "and search parameters in the URL both ask for a conditional create; give the \
             criteria once",
        )),
    }
}

/// `_format`, `_pretty`, `_summary`, `_elements` of a read (other parameters are ignored, as
/// a read has none).
pub(crate) fn read_shaping(request: &Request) -> Result<Shaping, FhirError> {
    let mut params: Vec<(String, String)> = request
        .params()
        .map_err(|_| bad_parameter("query", "is not valid URL encoding"))?;
    let shaping = Shaping::take(&mut params)?;
    if shaping.summary() == Summary::Count {
        return Err(bad_parameter("_summary", "=count applies to searches only"));
    }
    Ok(shaping)
}

/// The value of one preference in the `Prefer` header (`return=minimal, handling=lenient`).
pub(crate) fn preference(request: &Request, name: &str) -> Option<String> {
    request
        .headers()
        .get_all("prefer")
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split([',', ';']))
        .filter_map(|pref| pref.trim().split_once('='))
        .find(|(key, _)| key.trim().eq_ignore_ascii_case(name))
        .map(|(_, value)| value.trim().trim_matches('"').to_owned())
}

/// `_count` and `_since` of a history request.
pub(crate) fn history_params(
    count: Option<&str>,
    since: Option<&str>,
) -> Result<(u64, Option<OffsetDateTime>), FhirError> {
    let count = match count {
        None => records::search::DEFAULT_COUNT,
        Some(text) => text
            .parse::<u64>()
            .map_err(|_| bad_parameter("_count", "must be a whole number"))?,
    };
    let since = since
        .map(|text| {
            OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339).map_err(
                |_| bad_parameter("_since", "must be an instant such as 2026-11-22T10:00:00Z"),
            )
        })
        .transpose()?;
    Ok((count, since))
}

/// `W/"3"`, `"3"` or `3` → 3.
pub(crate) fn parse_etag(text: &str) -> Result<u64, FhirError> {
    let trimmed = text.trim();
    let inner = trimmed.strip_prefix("W/").unwrap_or(trimmed);
    let inner = inner
        .strip_prefix('"')
        .and_then(|i| i.strip_suffix('"'))
        .unwrap_or(inner);
    inner
        .parse()
        .map_err(|_| bad_parameter("If-Match", "must be a version ETag such as W/\"3\""))
}

pub(crate) fn bad_parameter(name: &str, rule: &str) -> FhirError {
    let mut outcome = fhir_model::OperationOutcome::single(
        fhir_model::IssueSeverity::Error,
        fhir_model::IssueType::Invalid,
        format!("{name} {rule}"),
    );
    if let Some(issue) = outcome.issue.first_mut() {
        issue.expression = vec![name.to_owned()];
    }
    FhirError::BadRequest(crate::errors::outcome_json(outcome))
}

/// A resource type the record store serves. AuditEvent is not one: the audit log is written
/// by the server alone and read at `/fhir/AuditEvent` (writes there answer 405).
pub(crate) fn stored_type(text: &str) -> Result<ResourceType, FhirError> {
    let resource_type = ResourceType::parse(text).map_err(FhirError::unknown_type)?;
    if resource_type.as_str() == crate::audit_api::AUDIT_EVENT {
        return Err(FhirError::NotFound(crate::errors::single(
            fhir_model::IssueType::NotSupported,
            "AuditEvents are the server's audit log: search them at /fhir/AuditEvent and read              one at /fhir/AuditEvent/{id}; they cannot be written, versioned or validated here",
        )));
    }
    Ok(resource_type)
}

/// The URL's criteria (without `_format` and `_pretty`).
pub(crate) fn criteria(request: &Request) -> Result<Vec<(String, String)>, FhirError> {
    let mut criteria: Vec<(String, String)> = request
        .params()
        .map_err(|_| bad_parameter("criteria", "are not valid URL encoding"))?;
    criteria.retain(|(name, _)| !matches!(name.as_str(), "_format" | "_pretty"));
    Ok(criteria)
}
