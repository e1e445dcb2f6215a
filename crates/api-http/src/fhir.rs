//! The FHIR RESTful API (http://hl7.org/fhir/R4/http.html) under `/fhir`.

use fhir_model::ResourceType;
use poem::Request;
use poem_openapi::param::Path;
use poem_openapi::{ApiResponse, OpenApi, Tags};
use records::{Records, StoredResource};
use time::OffsetDateTime;
use time::macros::format_description;

use crate::errors::FhirError;
use crate::front::RequestId;
use crate::payload::FhirJson;

#[derive(Tags)]
enum FhirTags {
    /// FHIR R4 RESTful interactions on any resource type.
    Fhir,
}

/// Where the server is reachable, for absolute `Location` headers; from [`crate::HttpConfig`].
#[derive(Debug, Clone)]
pub(crate) struct PublicBase(pub Option<String>);

#[derive(Debug, ApiResponse)]
enum CreateResponse {
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
enum ReadResponse {
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

pub(crate) struct FhirApi {
    pub records: Records,
}

#[OpenApi(tag = "FhirTags::Fhir")]
impl FhirApi {
    /// create: store a new resource; the server assigns its id.
    ///
    /// Any `id` in the body is ignored. The response carries the stored resource with
    /// `meta.versionId` and `meta.lastUpdated`, and its location.
    #[oai(path = "/fhir/:resource_type", method = "post")]
    async fn create(
        &self,
        request: &Request,
        resource_type: Path<String>,
        body: FhirJson,
    ) -> Result<CreateResponse, FhirError> {
        let request_id = request_id(request);
        let resource_type =
            ResourceType::parse(&resource_type.0).map_err(FhirError::unknown_type)?;
        let stored = self
            .records
            .create(resource_type, &body.0)
            .await
            .map_err(|err| FhirError::from_records(err, &request_id))?;
        tracing::info!(resource_type = %stored.resource_type, id = %stored.id, version = stored.version, "created");
        let location = format!(
            "{}/fhir/{}/{}/_history/{}",
            base_url(request),
            stored.resource_type,
            stored.id,
            stored.version
        );
        let (etag, last_modified) = (etag(&stored), http_date(stored.last_updated));
        Ok(CreateResponse::Created(
            FhirJson(stored.body),
            location,
            etag,
            last_modified,
        ))
    }

    /// read: the current version of a resource.
    #[oai(path = "/fhir/:resource_type/:id", method = "get")]
    async fn read(
        &self,
        request: &Request,
        resource_type: Path<String>,
        id: Path<String>,
    ) -> Result<ReadResponse, FhirError> {
        let request_id = request_id(request);
        let resource_type =
            ResourceType::parse(&resource_type.0).map_err(FhirError::unknown_type)?;
        let stored = self
            .records
            .read(resource_type, &id.0)
            .await
            .map_err(|err| FhirError::from_records(err, &request_id))?;
        let (etag, last_modified) = (etag(&stored), http_date(stored.last_updated));
        Ok(ReadResponse::Ok(FhirJson(stored.body), etag, last_modified))
    }
}

fn request_id(request: &Request) -> RequestId {
    request
        .data::<RequestId>()
        .cloned()
        .unwrap_or_else(RequestId::generate)
}

/// The configured public base, or else the scheme and Host of the request.
fn base_url(request: &Request) -> String {
    if let Some(PublicBase(Some(base))) = request.data::<PublicBase>() {
        return base.trim_end_matches('/').to_owned();
    }
    let host = request
        .headers()
        .get(poem::http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| {
            h.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-.:[]".contains(c))
        })
        .unwrap_or("localhost");
    let scheme = request.uri().scheme_str().unwrap_or("http");
    format!("{scheme}://{host}")
}

fn etag(stored: &StoredResource) -> String {
    format!("W/\"{}\"", stored.version)
}

/// An HTTP-date (RFC 9110 §5.6.7): `Sun, 22 Nov 2026 10:00:00 GMT`.
fn http_date(at: OffsetDateTime) -> String {
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
