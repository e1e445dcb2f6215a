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

#[derive(Debug, ApiResponse)]
enum SearchResponse {
    /// A `searchset` Bundle of the matches, with `self` and (if more) `next` links.
    #[oai(status = 200)]
    Ok(FhirJson),
}

#[derive(Debug, ApiResponse)]
enum EraseResponse {
    /// The patient's compartment was crypto-shredded; the OperationOutcome says how much.
    #[oai(status = 200)]
    Ok(FhirJson),
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

    /// search: resources of a type matching every parameter.
    ///
    /// Identifying parameters (Patient `identifier`, `name`, `family`, `given`, `birthdate`,
    /// `telecom`, `address-postalcode`) are answered from blind indexes: string search is a
    /// case- and accent-insensitive starts-with of 3 or more letters (or `:exact`), `birthdate`
    /// takes `YYYY`, `YYYY-MM` or `YYYY-MM-DD` equality only. `_count` (default 20, at most
    /// 1000) sets the page size; follow the `next` link for more.
    #[oai(path = "/fhir/:resource_type", method = "get")]
    async fn search(
        &self,
        request: &Request,
        resource_type: Path<String>,
    ) -> Result<SearchResponse, FhirError> {
        self.search_impl(request, &resource_type.0).await
    }

    /// $erase: crypto-shred a patient (GDPR Art. 17).
    ///
    /// Destroys the data key of the patient's compartment and their index entries, leaving a
    /// tombstone: afterwards every version of the Patient and of every resource in their
    /// compartment answers 410 Gone and matches no search, also straight from the database.
    #[oai(path = "/fhir/Patient/:id/$erase", method = "delete")]
    async fn erase(&self, request: &Request, id: Path<String>) -> Result<EraseResponse, FhirError> {
        self.erase_impl(request, &id.0).await
    }

    /// $erase (POST form): as `DELETE /fhir/Patient/{id}/$erase`.
    #[oai(path = "/fhir/Patient/:id/$erase", method = "post")]
    async fn erase_post(
        &self,
        request: &Request,
        id: Path<String>,
    ) -> Result<EraseResponse, FhirError> {
        self.erase_impl(request, &id.0).await
    }
}

impl FhirApi {
    async fn search_impl(
        &self,
        request: &Request,
        resource_type: &str,
    ) -> Result<SearchResponse, FhirError> {
        let request_id = request_id(request);
        let resource_type = ResourceType::parse(resource_type).map_err(FhirError::unknown_type)?;
        let params: Vec<(String, String)> = request.params().map_err(|_| {
            FhirError::BadRequest(crate::errors::outcome_json(
                fhir_model::OperationOutcome::single(
                    fhir_model::IssueSeverity::Error,
                    fhir_model::IssueType::Invalid,
                    "the query string is not valid URL encoding",
                ),
            ))
        })?;
        let page = self
            .records
            .search(resource_type, &params)
            .await
            .map_err(|err| FhirError::from_records(err, &request_id))?;
        tracing::info!(%resource_type, matches = page.resources.len(), "searched");
        let base = base_url(request);
        Ok(SearchResponse::Ok(FhirJson(searchset(
            &base,
            resource_type,
            &params,
            page,
        ))))
    }

    async fn erase_impl(&self, request: &Request, id: &str) -> Result<EraseResponse, FhirError> {
        let request_id = request_id(request);
        let erasure = self
            .records
            .erase_patient(id)
            .await
            .map_err(|err| FhirError::from_records(err, &request_id))?;
        tracing::warn!(id = %id, resources = erasure.resources, versions = erasure.versions, "patient compartment erased");
        let outcome = fhir_model::OperationOutcome::single(
            fhir_model::IssueSeverity::Information,
            fhir_model::IssueType::Informational,
            format!(
                "Patient/{id} erased: its data key was destroyed, so {} resource(s) in {} \
                 version(s) can no longer be decrypted, and their index entries were deleted",
                erasure.resources, erasure.versions
            ),
        );
        Ok(EraseResponse::Ok(crate::errors::outcome_json(outcome)))
    }
}

/// A `searchset` Bundle. The `self` link repeats the parameters the server used; `next`
/// carries the opaque cursor of the following page.
fn searchset(
    base: &str,
    resource_type: ResourceType,
    params: &[(String, String)],
    page: records::SearchPage,
) -> Vec<u8> {
    use serde_json::{Value, json};
    let url_for = |extra: Option<(&str, &str)>| {
        let mut query = form_urlencoded::Serializer::new(String::new());
        for (name, value) in params.iter().filter(|(n, _)| n != "_cursor") {
            query.append_pair(name, value);
        }
        if let Some((name, value)) = extra {
            query.append_pair(name, value);
        }
        let query = query.finish();
        if query.is_empty() {
            format!("{base}/fhir/{resource_type}")
        } else {
            format!("{base}/fhir/{resource_type}?{query}")
        }
    };
    let mut links = vec![json!({"relation": "self", "url": url_for(None)})];
    if let Some(cursor) = &page.next_cursor {
        links.push(json!({"relation": "next", "url": url_for(Some(("_cursor", cursor)))}));
    }
    let entries: Vec<Value> = page
        .resources
        .iter()
        .map(|found| {
            // Stored bodies are JSON this server wrote; an unparsable one is reported as null
            // rather than breaking the page (the integrity check already passed).
            let resource: Value = serde_json::from_slice(&found.body).unwrap_or(Value::Null);
            json!({
                "fullUrl": format!("{base}/fhir/{}/{}", found.resource_type, found.id),
                "resource": resource,
                "search": {"mode": "match"},
            })
        })
        .collect();
    let mut bundle = json!({"resourceType": "Bundle", "type": "searchset", "link": links});
    if !entries.is_empty() {
        bundle["entry"] = Value::Array(entries);
    }
    serde_json::to_vec(&bundle).unwrap_or_default()
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
