//! Assembling the HTTP application.

use std::sync::Arc;

use poem::{Endpoint, EndpointExt, Route};
use poem_openapi::OpenApiService;
use records::Records;

use crate::fhir::{FhirApi, PublicBase};
use crate::front::{RouteTable, front};
use crate::health::HealthApi;
use crate::payload::BodyLimit;

pub(crate) const DEFAULT_BODY_LIMIT: usize = 16 * 1024 * 1024;

/// Settings of the HTTP front.
#[derive(Debug, Clone)]
pub struct HttpConfig {
    /// The largest request body accepted, in bytes (default 16 MiB).
    pub body_limit: usize,
    /// The base URL clients reach the server at (e.g. `https://fhir.example.org`), for
    /// `Location` headers. `None`: taken from each request's Host.
    pub public_base_url: Option<String>,
    /// Serve the interactive API UI at `/docs`.
    pub docs: bool,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            body_limit: DEFAULT_BODY_LIMIT,
            public_base_url: None,
            docs: true,
        }
    }
}

fn service(records: Records) -> OpenApiService<(FhirApi, HealthApi), ()> {
    OpenApiService::new(
        (
            FhirApi {
                records: records.clone(),
                started: time::OffsetDateTime::now_utc(),
            },
            HealthApi { records },
        ),
        "Cairn",
        env!("CARGO_PKG_VERSION"),
    )
    .description(
        "Cairn: a compliance-first FHIR R4 server for patient and immunization records. \
         FHIR interactions live under /fhir and speak application/fhir+json; every error is a \
         FHIR OperationOutcome.",
    )
}

/// The OpenAPI document, as served at `/openapi.json` (built over in-memory fakes: the document
/// depends on the routes, not on the data). Fails only if the system RNG does.
pub fn openapi_json() -> Result<String, phi_crypto::CryptoError> {
    let store = Arc::new(records::fakes::MemoryStore::default());
    let keyring = phi_crypto::Keyring::generate(time::OffsetDateTime::UNIX_EPOCH)?;
    let vault = phi_crypto::Vault::new(
        store.keys(),
        Arc::new(phi_crypto::FixedKeyring(Arc::new(keyring))),
    );
    let records = Records::new(
        store,
        vault,
        Arc::new(records::SystemClock),
        Arc::new(records::RandomIds),
    );
    Ok(service(records).spec())
}

/// The whole HTTP application over `records`.
pub fn app(records: Records, config: &HttpConfig) -> impl Endpoint + 'static {
    let api = service(records);
    let spec = api.spec();
    let routes = Arc::new(
        serde_json::from_str(&spec)
            .map(|value| RouteTable::from_openapi(&value))
            .unwrap_or_default(),
    );
    let mut route = Route::new();
    if config.docs {
        route = route.nest("/docs", api.swagger_ui());
    }
    route
        .at("/openapi.json", api.spec_endpoint())
        .nest("/", api)
        .data(BodyLimit(config.body_limit))
        .data(PublicBase(config.public_base_url.clone()))
        .around(move |next, request| front(next, request, Arc::clone(&routes)))
}
