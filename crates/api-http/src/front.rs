//! What every request passes through: a request id, one log line, security headers, and the
//! guarantee that an error leaves as an OperationOutcome (with `Allow` on 405 and
//! `WWW-Authenticate` on 401).

use std::sync::Arc;
use std::time::{Duration, Instant};

use fhir_model::{IssueType, OperationOutcome};
use poem::PathPattern;
use poem::http::{HeaderValue, StatusCode, header};
use poem::{Endpoint, IntoResponse, Request, Response};
use tracing::Instrument;

use crate::context::RequestId;
use crate::errors::{outcome_json, refusal};
use crate::payload::BodyArrival;

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

    /// The route a path belongs to: of the templates that match it, the one whose first
    /// difference from the others is a literal segment (`/fhir/AuditEvent/{id}` over
    /// `/fhir/{resource_type}/{id}`), as the router itself chooses.
    fn find(&self, path: &str) -> Option<&Route> {
        let segments: Vec<&str> = path.split('/').collect();
        self.0
            .iter()
            .filter_map(|route| {
                if route.segments.len() != segments.len() {
                    return None;
                }
                // One bit per segment, the first the highest: comparing the masks compares
                // where the literal segments are, first difference first.
                let mut literals: u64 = 0;
                for (position, (template, segment)) in
                    route.segments.iter().zip(&segments).enumerate()
                {
                    if template == segment {
                        literals |= 1 << (63 - position.min(63));
                    } else if !(template.starts_with('{')
                        && template.ends_with('}')
                        && !segment.is_empty())
                    {
                        return None;
                    }
                }
                Some((literals, route))
            })
            .max_by_key(|(literals, _)| *literals)
            .map(|(_, route)| route)
    }
}

/// What `front` enforces and adds beyond the routes.
#[derive(Debug)]
pub(crate) struct Front {
    pub(crate) routes: RouteTable,
    /// Clients come over TLS: send HSTS.
    pub(crate) tls: bool,
    pub(crate) max_header_bytes: usize,
    pub(crate) request_timeout: Duration,
    /// Records requests refused for having no token at all (poem-openapi answers those
    /// before any handler runs).
    pub(crate) access: Option<crate::auth::AccessControl>,
}

/// Wraps the app: request ids, limits on the request head and on time, logging, security
/// headers, and OperationOutcome for every error.
pub(crate) async fn front<E: Endpoint + 'static>(
    next: Arc<E>,
    mut request: Request,
    front: Arc<Front>,
) -> poem::Result<Response> {
    let request_id = RequestId::from_header(&request).unwrap_or_else(RequestId::generate);
    request.set_data(request_id.clone());
    // FHIR clients post Bundles to the base with or without its trailing slash (fhirpy
    // appends one): both are the base.
    if request.uri().path() == "/fhir/" {
        let target = match request.uri().query() {
            Some(query) => format!("/fhir?{query}"),
            None => "/fhir".to_owned(),
        };
        if let Ok(uri) = target.parse() {
            *request.uri_mut() = uri;
        }
    }
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let started = Instant::now();
    let span = tracing::info_span!("request", request_id = %request_id.0);
    let arrival = declares_body(&request).then(|| {
        let arrival = BodyArrival::default();
        request.set_data(arrival.clone());
        arrival
    });
    let mut response = match oversized_head(&request, front.max_header_bytes) {
        Some(refusal) => refusal,
        None if path.starts_with("/fhir") && !crate::negotiation::accepts_json(&request) => {
            refusal(
                StatusCode::NOT_ACCEPTABLE,
                IssueType::NotSupported,
                "Accept: this server answers FHIR JSON only (application/fhir+json)".to_owned(),
            )
        }
        None => {
            // The handler runs as its own task, which a timeout (or a client that hangs up)
            // leaves to finish instead of dropping it halfway: database connections are not
            // safe to abandon mid-statement (sqlx cannot always return them to the pool), and
            // on PostgreSQL the statement timeout ends whatever is still running. A handler
            // still waiting for its body has done no database work yet: that one is stopped,
            // so the connection closes instead of waiting on a body that is not coming.
            let mut answer = tokio::spawn(
                async move { next.get_response(request).await }.instrument(span.clone()),
            );
            let finished = tokio::time::timeout(front.request_timeout, &mut answer).await;
            if finished.is_err() && arrival.as_ref().is_some_and(|a| !a.is_read()) {
                answer.abort();
            }
            match finished {
                Ok(Ok(response)) => response,
                Ok(Err(failed)) => {
                    tracing::error!(request_id = %request_id.0, panicked = failed.is_panic(), "request handler failed");
                    let mut response =
                        outcome_json(OperationOutcome::internal_error(&request_id.0))
                            .into_response();
                    response.set_status(StatusCode::INTERNAL_SERVER_ERROR);
                    response
                }
                Err(_) => timed_out(arrival.as_ref(), front.request_timeout),
            }
        }
    };

    // The route's template, never the raw path or query: those can carry identifiers.
    let route = match (front.routes.find(&path), response.data::<PathPattern>()) {
        (Some(route), _) => route.template.clone(),
        (None, Some(pattern)) => pattern.0.to_string(),
        (None, None) => "(no route)".to_owned(),
    };
    let status = response.status();
    if status == StatusCode::UNAUTHORIZED
        && !is_designed(&response)
        && let Some(access) = &front.access
    {
        access.record_login_failure(&request_id, "no-token").await;
    }
    if status.is_client_error() || status.is_server_error() {
        response = as_operation_outcome(response, &request_id, &path, &front.routes).await;
    }
    if let Ok(value) = HeaderValue::from_str(&request_id.0) {
        response.headers_mut().insert("x-request-id", value);
    }
    security_headers(&mut response, &path, front.tls);
    let latency_ms = started.elapsed().as_secs_f64() * 1000.0;
    span.in_scope(|| {
        tracing::info!(method = %method, route = %route, status = status.as_u16(), latency_ms, "request");
    });
    Ok(response)
}

fn declares_body(request: &Request) -> bool {
    let headers = request.headers();
    headers.contains_key(header::TRANSFER_ENCODING)
        || headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim() != "0")
}

/// 414 for a request target over `limit` bytes, 431 for header fields over `limit` in all.
/// hyper has its own, much larger bound on the whole head; this one is the configured policy.
fn oversized_head(request: &Request, limit: usize) -> Option<Response> {
    let target = request
        .uri()
        .path_and_query()
        .map_or(0, |p| p.as_str().len());
    if target > limit {
        return Some(refusal(
            StatusCode::URI_TOO_LONG,
            IssueType::TooLong,
            format!("the request target is {target} bytes, over the limit of {limit}"),
        ));
    }
    // As HTTP/2 counts a header list: name, value and 32 bytes of overhead per field.
    let fields: usize = request
        .headers()
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len() + 32)
        .sum();
    (fields > limit).then(|| {
        refusal(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            IssueType::TooLong,
            format!("the request's header fields are {fields} bytes, over the limit of {limit}"),
        )
    })
}

/// The answer to a request that ran out of time: 408 if its body had not all arrived (and the
/// connection is closed, since the rest of the body may still be coming), 503 otherwise. A
/// write cut off here was rolled back unless it had committed; a client retrying should use a
/// conditional interaction or read first.
fn timed_out(arrival: Option<&BodyArrival>, limit: Duration) -> Response {
    let seconds = limit.as_secs();
    if arrival.is_some_and(|arrival| !arrival.is_read()) {
        let mut response = refusal(
            StatusCode::REQUEST_TIMEOUT,
            IssueType::Timeout,
            format!("the request body did not arrive within {seconds} s"),
        );
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
        return response;
    }
    tracing::warn!(seconds, "request timed out");
    refusal(
        StatusCode::SERVICE_UNAVAILABLE,
        IssueType::Timeout,
        format!(
            "the server did not answer within {seconds} s; a write may or may not have taken \
             effect, so read before retrying or retry conditionally"
        ),
    )
}

/// The interactive docs run the Swagger UI's inline script and styles; nothing else needs any.
const DOCS_POLICY: &str = "default-src 'self'; script-src 'self' 'unsafe-inline'; \
     style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; \
     frame-ancestors 'none'; base-uri 'none'; form-action 'none'";
const API_POLICY: &str = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'";

/// Headers every response carries: no MIME sniffing, no referrer, a content security policy,
/// HSTS behind TLS, and `no-store` wherever PHI or access records may be in the body.
fn security_headers(response: &mut Response, path: &str, tls: bool) {
    let headers = response.headers_mut();
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    let policy = if path == "/docs" || path.starts_with("/docs/") {
        DOCS_POLICY
    } else {
        API_POLICY
    };
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(policy),
    );
    if tls {
        headers.insert(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static("max-age=63072000; includeSubDomains"),
        );
    }
    if path.starts_with("/fhir") || path.starts_with("/admin") {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
}

/// Whether an endpoint wrote this response (JSON), rather than poem itself (plain text).
fn is_designed(response: &Response) -> bool {
    response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(';')
                .next()
                .is_some_and(|essence| essence.trim().ends_with("json"))
        })
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
    if is_designed(&response) {
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
        StatusCode::UNAUTHORIZED => (
            IssueType::Login,
            "this endpoint needs a token: send `Authorization: Bearer <token>` (cairn token issue)"
                .to_owned(),
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
    let mut out = refusal(status, code, diagnostics);
    if status == StatusCode::UNAUTHORIZED {
        // No token at all (poem-openapi refused before any handler ran).
        out.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static(crate::auth::BARE_CHALLENGE),
        );
    }
    if status == StatusCode::METHOD_NOT_ALLOWED
        && let Some(route) = routes.find(path)
        && let Ok(value) = HeaderValue::from_str(&route.methods)
    {
        out.headers_mut().insert(header::ALLOW, value);
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn front_with_timeout(timeout: Duration) -> Arc<Front> {
        Arc::new(Front {
            routes: RouteTable::default(),
            tls: false,
            max_header_bytes: 1024,
            request_timeout: timeout,
            access: None,
        })
    }

    #[tokio::test]
    async fn a_slow_answer_is_503_timeout_and_a_slow_body_408() {
        let slow = Arc::new(poem::endpoint::make(|_| async {
            tokio::time::sleep(Duration::from_secs(5)).await;
            "late"
        }));
        let config = front_with_timeout(Duration::from_millis(50));
        let response = front(
            Arc::clone(&slow),
            Request::builder().finish(),
            Arc::clone(&config),
        )
        .await
        .unwrap();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        let body = response.into_body().into_string().await.unwrap();
        assert!(body.contains("\"timeout\""), "{body}");

        let upload = Request::builder()
            .method(poem::http::Method::POST)
            .header(header::CONTENT_LENGTH, "10")
            .finish();
        let response = front(Arc::clone(&slow), upload, config).await.unwrap();
        assert_eq!(response.status(), StatusCode::REQUEST_TIMEOUT);
        assert_eq!(response.headers()[header::CONNECTION], "close");
    }

    #[test]
    fn a_path_belongs_to_the_route_whose_first_difference_is_literal() {
        let routes = RouteTable::from_openapi(&serde_json::json!({"paths": {
            "/fhir/{resource_type}/{id}": {"get": {}, "put": {}, "delete": {}},
            "/fhir/AuditEvent/{id}": {"get": {}},
            "/fhir/{resource_type}/$validate": {"post": {}},
            "/fhir/Patient/{id}/$erase": {"post": {}, "delete": {}},
        }}));
        let methods = |path: &str| routes.find(path).map(|r| r.methods.clone());
        assert_eq!(methods("/fhir/AuditEvent/7").as_deref(), Some("GET"));
        assert_eq!(
            methods("/fhir/Patient/7").as_deref(),
            Some("DELETE, GET, PUT")
        );
        assert_eq!(methods("/fhir/Patient/$validate").as_deref(), Some("POST"));
        assert_eq!(
            methods("/fhir/Patient/7/$erase").as_deref(),
            Some("DELETE, POST")
        );
        assert_eq!(methods("/fhir/Patient/7/x"), None);
    }

    #[tokio::test]
    async fn heads_over_the_limit_never_reach_the_app() {
        let app = Arc::new(poem::endpoint::make(|_| async { "reached" }));
        let config = front_with_timeout(Duration::from_secs(1));
        let long = format!("/fhir/Patient?name={}", "x".repeat(1024));
        let response = front(
            Arc::clone(&app),
            Request::builder().uri_str(&long).finish(),
            Arc::clone(&config),
        )
        .await
        .unwrap();
        assert_eq!(response.status(), StatusCode::URI_TOO_LONG);
        let response = front(
            Arc::clone(&app),
            Request::builder()
                .header("x-big", "y".repeat(1000))
                .finish(),
            Arc::clone(&config),
        )
        .await
        .unwrap();
        assert_eq!(
            response.status(),
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE
        );
        let response = front(
            Arc::clone(&app),
            Request::builder().uri_str("/fhir/Patient").finish(),
            config,
        )
        .await
        .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
    }
}
