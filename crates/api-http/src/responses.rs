//! The answers of the FHIR interactions: their statuses and headers, and the body a write
//! returns as `Prefer: return` asks.

use poem::Request;
use poem_openapi::ApiResponse;
use records::StoredResource;
use time::OffsetDateTime;
use time::macros::format_description;

use crate::bundles::version_url;
use crate::context::base_url;
use crate::params::preference;
use crate::payload::FhirJson;

#[derive(Debug, ApiResponse)]
pub(crate) enum CreateResponse {
    /// Conditional create: the one resource matching `If-None-Exist` already exists; nothing
    /// was created. The body is that resource.
    #[oai(status = 200)]
    Existing(
        FhirJson,
        /// The existing resource's current version.
        #[oai(header = "Location")]
        String,
        #[oai(header = "ETag")] String,
        #[oai(header = "Last-Modified")] String,
    ),
    /// Created: the body is the stored resource with its server-assigned id and meta.
    #[oai(status = 201)]
    Created(
        FhirJson,
        /// The new version: `[base]/fhir/[type]/[id]/_history/[vid]`.
        #[oai(header = "Location")]
        String,
        /// The version, as a weak ETag: `W/"1"`.
        #[oai(header = "ETag")]
        String,
        #[oai(header = "Last-Modified")] String,
    ),
}

#[derive(Debug, ApiResponse)]
pub(crate) enum ReadResponse {
    /// The current version of the resource.
    #[oai(status = 200)]
    Ok(
        FhirJson,
        /// The version, as a weak ETag: `W/"1"`.
        #[oai(header = "ETag")]
        String,
        #[oai(header = "Last-Modified")] String,
    ),
}

#[derive(Debug, ApiResponse)]
pub(crate) enum UpdateResponse {
    /// Updated: the body is the new version.
    #[oai(status = 200)]
    Updated(
        FhirJson,
        /// The new version: `[base]/fhir/[type]/[id]/_history/[vid]`.
        #[oai(header = "Content-Location")]
        String,
        /// The version, as a weak ETag: `W/"2"`.
        #[oai(header = "ETag")]
        String,
        #[oai(header = "Last-Modified")] String,
    ),
    /// Created with the client's id (update as create).
    #[oai(status = 201)]
    Created(
        FhirJson,
        /// The new version: `[base]/fhir/[type]/[id]/_history/1`.
        #[oai(header = "Location")]
        String,
        /// The version, as a weak ETag: `W/"1"`.
        #[oai(header = "ETag")]
        String,
        #[oai(header = "Last-Modified")] String,
    ),
}

#[derive(Debug, ApiResponse)]
pub(crate) enum DeleteResponse {
    /// Deleted (or already deleted): reads now answer 410 Gone; the history keeps every version.
    #[oai(status = 204)]
    Deleted,
}

#[derive(Debug, ApiResponse)]
pub(crate) enum HistoryResponse {
    /// A `history` Bundle, newest version first.
    #[oai(status = 200)]
    Ok(FhirJson),
}

#[derive(Debug, ApiResponse)]
pub(crate) enum SearchResponse {
    /// A `searchset` Bundle of the matches, with `self` and (if more) `next` links.
    #[oai(status = 200)]
    Ok(FhirJson),
}

#[derive(Debug, ApiResponse)]
pub(crate) enum EraseResponse {
    /// The patient's compartment was crypto-shredded; the OperationOutcome says how much.
    #[oai(status = 200)]
    Ok(FhirJson),
}

#[derive(Debug, ApiResponse)]
pub(crate) enum ValidateResponse {
    /// Validation ran: the OperationOutcome lists every issue (an `information` issue when
    /// there are none). Nothing is stored.
    #[oai(status = 200)]
    Ok(FhirJson),
}

#[derive(Debug, ApiResponse)]
pub(crate) enum SeriesStatusResponse {
    /// A Parameters resource: one `series` parameter per series and target disease.
    #[oai(status = 200)]
    Ok(FhirJson),
}

#[derive(Debug, ApiResponse)]
pub(crate) enum MetadataResponse {
    /// The CapabilityStatement.
    #[oai(status = 200)]
    Ok(FhirJson),
}

pub(crate) fn update_response(
    request: &Request,
    stored: &StoredResource,
    created: bool,
) -> UpdateResponse {
    let location = version_url(&base_url(request), stored);
    let (etag, last_modified) = (etag(stored), http_date(stored.last_updated));
    if created {
        let body = returned(request, stored, "created");
        UpdateResponse::Created(body, location, etag, last_modified)
    } else {
        let body = returned(request, stored, "updated");
        UpdateResponse::Updated(body, location, etag, last_modified)
    }
}

/// The body of a write's answer per `Prefer: return=…`: the resource (`representation`, the
/// default), nothing (`minimal`), or an OperationOutcome saying what happened.
pub(crate) fn returned(request: &Request, stored: &StoredResource, what: &str) -> FhirJson {
    match preference(request, "return").as_deref() {
        Some("minimal") => FhirJson(Vec::new()),
        Some("OperationOutcome") => {
            crate::errors::outcome_json(fhir_model::OperationOutcome::single(
                fhir_model::IssueSeverity::Information,
                fhir_model::IssueType::Informational,
                format!(
                    "{what} {}/{} version {}",
                    stored.resource_type, stored.id, stored.version
                ),
            ))
        }
        _ => FhirJson(stored.body.clone()),
    }
}

pub(crate) fn etag(stored: &StoredResource) -> String {
    format!("W/\"{}\"", stored.version)
}

/// An HTTP-date (RFC 9110 §5.6.7): `Sun, 22 Nov 2026 10:00:00 GMT`.
pub(crate) fn http_date(at: OffsetDateTime) -> String {
    let format = format_description!(
        "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
    );
    at.to_offset(time::UtcOffset::UTC)
        .format(&format)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    #[test]
    fn http_dates() {
        assert_eq!(
            super::http_date(time::macros::datetime!(2026-11-22 10:00:00.5 +02:00)),
            "Sun, 22 Nov 2026 08:00:00 GMT"
        );
    }
}
