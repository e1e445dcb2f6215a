//! `FhirJson`: a FHIR resource as JSON, in requests and responses; `SearchForm`: search
//! parameters as a form body.
//!
//! Requests are taken as raw bytes (up to the configured limit, chunked or not) so that the
//! core can report malformed JSON as an OperationOutcome instead of poem's plain-text error.

use poem::http::StatusCode;
use poem::{IntoResponse, Request, RequestBody, Response};
use poem_openapi::impl_apirequest_for_payload;
use poem_openapi::payload::{ParsePayload, Payload};
use poem_openapi::registry::{MetaSchema, MetaSchemaRef};

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// The body limit when none is configured: 16 MiB.
pub(crate) const DEFAULT_BODY_LIMIT: usize = 16 * 1024 * 1024;

/// Set on a request that declares a body; the payload reader marks it read, so a timeout can
/// tell a client still sending (408) from a server too slow to answer (503).
#[derive(Debug, Clone, Default)]
pub(crate) struct BodyArrival(Arc<AtomicBool>);

impl BodyArrival {
    pub(crate) fn mark_read(&self) {
        self.0.store(true, Ordering::Release);
    }

    pub(crate) fn is_read(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

/// The most bytes a request body may have; set by [`crate::HttpConfig`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct BodyLimit(pub usize);

/// A FHIR resource in JSON (`application/fhir+json`; plain `application/json` is accepted).
#[derive(Debug, Clone)]
pub struct FhirJson(pub Vec<u8>);

pub(crate) const FHIR_JSON: &str = "application/fhir+json; charset=utf-8";

impl Payload for FhirJson {
    const CONTENT_TYPE: &'static str = "application/fhir+json";

    fn check_content_type(content_type: &str) -> bool {
        let essence = content_type
            .split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase();
        matches!(
            essence.as_str(),
            "application/fhir+json" | "application/json"
        )
    }

    fn schema_ref() -> MetaSchemaRef {
        MetaSchemaRef::Inline(Box::new(MetaSchema {
            title: Some("FHIR R4 resource".to_owned()),
            description: Some(
                "A FHIR R4 resource in JSON (http://hl7.org/fhir/R4/json.html). `resourceType` names \
                 the type; the rest follows that type's definition.",
            ),
            required: vec!["resourceType"],
            properties: vec![(
                "resourceType",
                MetaSchemaRef::Inline(Box::new(MetaSchema::new("string"))),
            )],
            additional_properties: Some(Box::new(MetaSchemaRef::Inline(Box::new(MetaSchema::ANY)))),
            ..MetaSchema::new("object")
        }))
    }
}

impl ParsePayload for FhirJson {
    const IS_REQUIRED: bool = true;

    async fn from_request(request: &Request, body: &mut RequestBody) -> poem::Result<Self> {
        read_limited(request, body).await.map(Self)
    }
}

impl_apirequest_for_payload!(FhirJson);

/// Search parameters as a form body (`POST [type]/_search`).
#[derive(Debug, Clone)]
pub struct SearchForm(pub Vec<u8>);

impl Payload for SearchForm {
    const CONTENT_TYPE: &'static str = "application/x-www-form-urlencoded";

    fn check_content_type(content_type: &str) -> bool {
        content_type
            .split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .eq_ignore_ascii_case(Self::CONTENT_TYPE)
    }

    fn schema_ref() -> MetaSchemaRef {
        MetaSchemaRef::Inline(Box::new(MetaSchema {
            description: Some(
                "FHIR search parameters, URL-encoded as in a query string \
                 (family=smith&birthdate=1970).",
            ),
            ..MetaSchema::new("string")
        }))
    }
}

impl ParsePayload for SearchForm {
    // An empty body is a search without parameters.
    const IS_REQUIRED: bool = false;

    async fn from_request(request: &Request, body: &mut RequestBody) -> poem::Result<Self> {
        read_limited(request, body).await.map(Self)
    }
}

impl_apirequest_for_payload!(SearchForm);

/// The request body, up to the configured limit (413 past it), chunked or not.
async fn read_limited(request: &Request, body: &mut RequestBody) -> poem::Result<Vec<u8>> {
    let limit = request
        .data::<BodyLimit>()
        .map_or(DEFAULT_BODY_LIMIT, |l| l.0);
    let bytes = body.take()?.into_bytes_limit(limit).await;
    if let Some(arrival) = request.data::<BodyArrival>() {
        arrival.mark_read();
    }
    let bytes = bytes.map_err(|err| match err {
        poem::error::ReadBodyError::PayloadTooLarge => poem::Error::from_string(
            format!("the request body is larger than the limit of {limit} bytes"),
            StatusCode::PAYLOAD_TOO_LARGE,
        ),
        other => poem::Error::from_string(
            format!("the request body could not be read: {other}"),
            StatusCode::BAD_REQUEST,
        ),
    })?;
    Ok(bytes.to_vec())
}

impl IntoResponse for FhirJson {
    fn into_response(self) -> Response {
        Response::builder().content_type(FHIR_JSON).body(self.0)
    }
}
