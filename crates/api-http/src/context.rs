//! What a handler knows about its request besides its parameters: its id and the server's
//! public address.

use poem::Request;

/// The id of one request: taken from a well-formed `X-Request-Id` header, or generated.
/// Returned as `X-Request-Id` and in every log line and 5xx body for that request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestId(pub String);

impl RequestId {
    pub fn generate() -> Self {
        Self(uuid::Uuid::new_v4().simple().to_string())
    }

    /// The id `front` gave this request (a fresh one outside `front`, as in unit tests).
    pub(crate) fn of(request: &Request) -> Self {
        request
            .data::<RequestId>()
            .cloned()
            .unwrap_or_else(RequestId::generate)
    }

    pub(crate) fn from_header(request: &Request) -> Option<Self> {
        let value = request.headers().get("x-request-id")?.to_str().ok()?;
        let well_formed = (1..=64).contains(&value.len())
            && value
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.');
        well_formed.then(|| Self(value.to_owned()))
    }
}

/// Where the server is reachable, for absolute `Location` headers; from [`crate::HttpConfig`].
#[derive(Debug, Clone)]
pub(crate) struct PublicBase(pub Option<String>);

/// The configured public base, or else the scheme and Host of the request.
pub(crate) fn base_url(request: &Request) -> String {
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
