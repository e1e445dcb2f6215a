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

/// An RFC 6902 JSON Patch document (`application/json-patch+json`), for FHIR `patch`.
#[derive(Debug, Clone)]
pub struct JsonPatch(pub Vec<u8>);

impl Payload for JsonPatch {
    const CONTENT_TYPE: &'static str = records::JSON_PATCH;

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
                "An RFC 6902 JSON Patch: an array of operations (add, remove, replace, move, \
                 copy, test), each with op, path and, as the op needs, value or from.",
            ),
            items: Some(Box::new(MetaSchemaRef::Inline(Box::new(MetaSchema::new(
                "object",
            ))))),
            ..MetaSchema::new("array")
        }))
    }
}

impl ParsePayload for JsonPatch {
    const IS_REQUIRED: bool = true;

    async fn from_request(request: &Request, body: &mut RequestBody) -> poem::Result<Self> {
        read_limited(request, body).await.map(Self)
    }
}

impl_apirequest_for_payload!(JsonPatch);

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

// As poem-openapi's `impl_apirequest_for_payload!`, but a request without a body needs no
// Content-Type: a POST `_search` without parameters is a search for everything.
impl<'a> poem_openapi::ApiExtractor<'a> for SearchForm {
    const TYPES: &'static [poem_openapi::ApiExtractorType] =
        &[poem_openapi::ApiExtractorType::RequestObject];

    type ParamType = ();
    type ParamRawType = ();

    fn register(registry: &mut poem_openapi::registry::Registry) {
        <Self as Payload>::register(registry);
    }

    fn request_meta() -> Option<poem_openapi::registry::MetaRequest> {
        Some(poem_openapi::registry::MetaRequest {
            description: None,
            content: vec![poem_openapi::registry::MetaMediaType {
                content_type: <Self as Payload>::CONTENT_TYPE,
                schema: <Self as Payload>::schema_ref(),
            }],
            required: <Self as ParsePayload>::IS_REQUIRED,
        })
    }

    async fn from_request(
        request: &'a Request,
        body: &mut RequestBody,
        _options: poem_openapi::ExtractParamOptions<Self::ParamType>,
    ) -> poem::Result<Self> {
        match request.content_type() {
            Some(content_type) if Self::check_content_type(content_type) => {
                <Self as ParsePayload>::from_request(request, body).await
            }
            Some(content_type) => Err(poem_openapi::error::ContentTypeError::NotSupported {
                content_type: content_type.to_owned(),
            }
            .into()),
            None => {
                let bytes = read_limited(request, body).await?;
                if bytes.is_empty() {
                    Ok(Self(bytes))
                } else {
                    Err(poem_openapi::error::ContentTypeError::ExpectContentType.into())
                }
            }
        }
    }
}

/// The most bytes of an oversize body read and thrown away so that the client, which sends its
/// whole body before it reads the answer, sees the 413 and not a broken connection. Past this
/// the connection is closed; the request timeout bounds the time it may take.
const DRAIN_LIMIT: u64 = 64 * 1024 * 1024;

/// The request body, up to the configured limit, chunked or not. Past the limit: 413, after
/// the rest of the body was drained (unless the client waits on `Expect: 100-continue`, which
/// the 413 answers at once) and with `Connection: close`.
async fn read_limited(request: &Request, body: &mut RequestBody) -> poem::Result<Vec<u8>> {
    use tokio::io::AsyncReadExt as _;

    let limit = request
        .data::<BodyLimit>()
        .map_or(DEFAULT_BODY_LIMIT, |l| l.0);
    let declared = request
        .headers()
        .get(poem::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    let mut reader = body.take()?.into_async_read();
    let too_large = |drained: bool| {
        if let Some(arrival) = request.data::<BodyArrival>() {
            arrival.mark_read();
        }
        let mut response = crate::errors::refusal(
            StatusCode::PAYLOAD_TOO_LARGE,
            fhir_model::IssueType::TooLong,
            format!("the request body is larger than the limit of {limit} bytes"),
        );
        if !drained {
            response.headers_mut().insert(
                poem::http::header::CONNECTION,
                poem::http::HeaderValue::from_static("close"),
            );
        }
        poem::Error::from_response(response)
    };
    if declared.is_some_and(|length| length > limit as u64) {
        let waits = request
            .headers()
            .get(poem::http::header::EXPECT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.eq_ignore_ascii_case("100-continue"));
        let drained = !waits && drain(&mut reader).await;
        return Err(too_large(drained));
    }
    let capacity = declared.map_or(0, |length| length.min(limit as u64) as usize);
    let mut bytes = Vec::with_capacity(capacity);
    let read = (&mut reader)
        .take(limit as u64 + 1)
        .read_to_end(&mut bytes)
        .await;
    if let Some(arrival) = request.data::<BodyArrival>() {
        arrival.mark_read();
    }
    read.map_err(|err| {
        poem::Error::from_string(
            format!("the request body could not be read: {err}"),
            StatusCode::BAD_REQUEST,
        )
    })?;
    if bytes.len() > limit {
        drop(bytes);
        let drained = drain(&mut reader).await;
        return Err(too_large(drained));
    }
    Ok(bytes)
}

/// Reads and discards what is left of a body, up to [`DRAIN_LIMIT`]; whether it all came.
async fn drain(reader: &mut (impl tokio::io::AsyncRead + Unpin)) -> bool {
    use tokio::io::AsyncReadExt as _;
    let mut sink = tokio::io::sink();
    match tokio::io::copy(&mut reader.take(DRAIN_LIMIT + 1), &mut sink).await {
        Ok(copied) => copied <= DRAIN_LIMIT,
        Err(_) => false,
    }
}

impl IntoResponse for FhirJson {
    fn into_response(self) -> Response {
        Response::builder().content_type(FHIR_JSON).body(self.0)
    }
}
