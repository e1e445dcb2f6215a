//! What every request passes through: a request id, one log line, and the guarantee that an
//! error leaves as an OperationOutcome (with `Allow` on 405).

use std::sync::Arc;
use std::time::Instant;

use fhir_model::{IssueSeverity, IssueType, OperationOutcome};
use poem::PathPattern;
use poem::http::{HeaderValue, StatusCode, header};
use poem::{Endpoint, IntoResponse, Request, Response};
use tracing::Instrument;

use crate::errors::outcome_json;

/// The id of one request: taken from a well-formed `X-Request-Id` header, or generated.
/// Returned as `X-Request-Id` and in every log line and 5xx body for that request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestId(pub String);

impl RequestId {
    pub fn generate() -> Self {
        Self(uuid::Uuid::new_v4().simple().to_string())
    }

    fn from_header(request: &Request) -> Option<Self> {
        let value = request.headers().get("x-request-id")?.to_str().ok()?;
        let well_formed = (1..=64).contains(&value.len())
            && value
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.');
        well_formed.then(|| Self(value.to_owned()))
    }
}

/// The routes and their methods, read from the OpenAPI document so that the `Allow` header of
/// a 405 and the route named in logs cannot drift from what is served.
#[derive(Debug, Default)]
pub(crate) struct RouteTable(Vec<Route>);

#[derive(Debug)]
struct Route {
    template: String,
    segments: Vec<String>,
    methods: String,
}

impl RouteTable {
    pub(crate) fn from_openapi(spec: &serde_json::Value) -> Self {
        let Some(paths) = spec.get("paths").and_then(|p| p.as_object()) else {
            return Self::default();
        };
        let routes = paths
            .iter()
            .map(|(path, item)| {
                let mut methods: Vec<String> = item
                    .as_object()
                    .map(|ops| ops.keys().map(|m| m.to_ascii_uppercase()).collect())
                    .unwrap_or_default();
                methods.sort();
                Route {
                    template: path.clone(),
                    segments: path.split('/').map(str::to_owned).collect(),
                    methods: methods.join(", "),
                }
            })
            .collect();
        Self(routes)
    }

    /// The route a path belongs to; literal segments win over parameters.
    fn find(&self, path: &str) -> Option<&Route> {
        let segments: Vec<&str> = path.split('/').collect();
        let matching = |literal_only: bool| {
            self.0.iter().find(|route| {
                route.segments.len() == segments.len()
                    && route.segments.iter().zip(&segments).all(|(t, s)| {
                        t == s
                            || (!literal_only
                                && t.starts_with('{')
                                && t.ends_with('}')
                                && !s.is_empty())
                    })
            })
        };
        matching(true).or_else(|| matching(false))
    }
}

/// Wraps the app: request ids, logging, OperationOutcome for every error.
pub(crate) async fn front<E: Endpoint>(
    next: E,
    mut request: Request,
    routes: Arc<RouteTable>,
) -> poem::Result<Response> {
    let request_id = RequestId::from_header(&request).unwrap_or_else(RequestId::generate);
    request.set_data(request_id.clone());
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let started = Instant::now();
    let span = tracing::info_span!("request", request_id = %request_id.0);
    let mut response = next.get_response(request).instrument(span.clone()).await;

    // The route's template, never the raw path or query: those can carry identifiers.
    let route = match (routes.find(&path), response.data::<PathPattern>()) {
        (Some(route), _) => route.template.clone(),
        (None, Some(pattern)) => pattern.0.to_string(),
        (None, None) => "(no route)".to_owned(),
    };
    let status = response.status();
    if status.is_client_error() || status.is_server_error() {
        response = as_operation_outcome(response, &request_id, &path, &routes).await;
    }
    if let Ok(value) = HeaderValue::from_str(&request_id.0) {
        response.headers_mut().insert("x-request-id", value);
    }
    let latency_ms = started.elapsed().as_secs_f64() * 1000.0;
    span.in_scope(|| {
        tracing::info!(method = %method, route = %route, status = status.as_u16(), latency_ms, "request");
    });
    Ok(response)
}

/// Replaces the plain-text error bodies poem and poem-openapi write themselves (unknown route,
/// wrong method, unsupported content type, unreadable body) with an OperationOutcome. JSON that
/// an endpoint designed — FHIR errors, the health checks' status — passes through untouched.
async fn as_operation_outcome(
    response: Response,
    request_id: &RequestId,
    path: &str,
    routes: &RouteTable,
) -> Response {
    let designed = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(';')
                .next()
                .is_some_and(|essence| essence.trim().ends_with("json"))
        });
    if designed {
        return response;
    }
    let status = response.status();
    let (code, diagnostics) = match status {
        StatusCode::NOT_FOUND => (
            IssueType::NotFound,
            "there is no such endpoint; see /openapi.json for what this server serves".to_owned(),
        ),
        StatusCode::METHOD_NOT_ALLOWED => (
            IssueType::NotSupported,
            "this endpoint does not support this HTTP method; see the Allow header".to_owned(),
        ),
        s if s.is_server_error() => {
            tracing::error!(request_id = %request_id.0, status = s.as_u16(), "server error from the HTTP layer");
            (
                IssueType::Exception,
                format!(
                    "internal server error; quote correlation id {} to the operator",
                    request_id.0
                ),
            )
        }
        s => {
            // poem and poem-openapi explain client errors in plain text without echoing bodies
            // (e.g. an unsupported Content-Type, an oversize body); keep their words, bounded.
            let text = response.into_body().into_string().await.unwrap_or_default();
            let text: String = text.chars().take(500).collect();
            let code = match s {
                StatusCode::PAYLOAD_TOO_LARGE => IssueType::TooLong,
                StatusCode::UNSUPPORTED_MEDIA_TYPE => IssueType::NotSupported,
                _ => IssueType::Invalid,
            };
            (
                code,
                if text.is_empty() {
                    s.canonical_reason().unwrap_or("bad request").to_owned()
                } else {
                    text
                },
            )
        }
    };
    let body = outcome_json(OperationOutcome::single(
        IssueSeverity::Error,
        code,
        diagnostics,
    ));
    let mut out = body.into_response();
    out.set_status(status);
    if status == StatusCode::METHOD_NOT_ALLOWED
        && let Some(route) = routes.find(path)
        && let Ok(value) = HeaderValue::from_str(&route.methods)
    {
        out.headers_mut().insert(header::ALLOW, value);
    }
    out
}
