//! Assembling the HTTP application.

use std::sync::Arc;
use std::time::Duration;

use poem::{Endpoint, EndpointExt, Route};
use poem_openapi::OpenApiService;
use records::Records;

use crate::admin::AdminApi;
use audit_chain::{AuditLog, Sequencer};

use crate::audit_api::AuditApi;
use crate::auth::{AccessControl, RateLimit};
use crate::batch_api::{BatchApi, MaxBundleEntries};
use crate::context::PublicBase;
use crate::fhir::FhirApi;
use crate::front::{Front, RouteTable, front};
use crate::health::HealthApi;
use crate::payload::{BodyLimit, DEFAULT_BODY_LIMIT};
use crate::smart::SmartApi;

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
    /// Whether clients reach the server over TLS (adds `Strict-Transport-Security`).
    pub tls: bool,
    /// The largest request target, and separately the largest sum of header field sizes, in
    /// bytes (414 and 431 beyond).
    pub max_header_bytes: usize,
    /// How long one request may take before it is answered 408 (its body was still arriving)
    /// or 503 (the server was too slow).
    pub request_timeout: Duration,
    /// The most entries one transaction or batch Bundle may have (413 beyond).
    pub max_bundle_entries: usize,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            body_limit: DEFAULT_BODY_LIMIT,
            public_base_url: None,
            docs: true,
            tls: false,
            max_header_bytes: 32 * 1024,
            request_timeout: Duration::from_secs(30),
            max_bundle_entries: crate::batch_api::DEFAULT_MAX_BUNDLE_ENTRIES,
        }
    }
}

fn service(
    records: Records,
    access: AccessControl,
    sequencer: Sequencer,
    log: Arc<dyn AuditLog>,
) -> OpenApiService<(FhirApi, BatchApi, AuditApi, AdminApi, HealthApi, SmartApi), ()> {
    OpenApiService::new(
        (
            FhirApi {
                records: records.clone(),
                started: time::OffsetDateTime::now_utc(),
            },
            BatchApi {
                records: records.clone(),
            },
            AuditApi {
                events: records::audit_events::AuditEvents::new(
                    Arc::clone(&log),
                    sequencer.clone(),
                ),
                log,
                records: records.clone(),
                sequencer,
            },
            AdminApi {
                tokens: records.tokens(Arc::clone(access.registry())),
                records: records.clone(),
            },
            HealthApi { records },
            SmartApi,
        ),
        "Cairn",
        env!("CARGO_PKG_VERSION"),
    )
    .description(
        "Cairn: a compliance-first FHIR R4 server for patient and immunization records. \
         FHIR interactions live under /fhir and speak application/fhir+json; every error is a \
         FHIR OperationOutcome. Every FHIR and admin operation needs `Authorization: Bearer` \
         with a biscuit token (`cairn token issue`); /health/*, /openapi.json and \
         /fhir/.well-known/smart-configuration do not.",
    )
}

/// The OpenAPI document, as served at `/openapi.json` (built over in-memory fakes: the document
/// depends on the routes, not on the data). Fails only if the system RNG does.
pub fn openapi_json() -> Result<String, Box<dyn std::error::Error + Send + Sync>> {
    let store = Arc::new(records::fakes::MemoryStore::default());
    let keyring = phi_crypto::Keyring::generate(time::OffsetDateTime::UNIX_EPOCH)?;
    let vault = phi_crypto::Vault::new(
        store.keys(),
        Arc::new(phi_crypto::FixedKeyring(Arc::new(keyring))),
    );
    let audit = Arc::new(store.audit_log());
    let records = Records::new(
        store,
        vault,
        Arc::new(records::SystemClock),
        Arc::new(records::RandomIds),
        audit.clone(),
    );
    let signer = audit_chain::Ed25519Signer::from_seed("cairn", &[0; 32])?;
    let sequencer = Sequencer::new("cairn", Arc::new(signer));
    Ok(service(records, document_access()?, sequencer, audit).spec())
}

/// Access control for building the document only: a throwaway key, an empty registry.
fn document_access() -> Result<AccessControl, access::AccessError> {
    let gate = access::Gate::new(access::SigningKey::from_seed(&[0; 32])?.verifying_key())?;
    Ok(AccessControl::new(
        gate,
        Arc::new(access::fakes::MemoryTokenRegistry::default()),
        RateLimit::default(),
    ))
}

/// The whole HTTP application over `records`, guarded by `access`; `log` is the audit log the
/// records write to (read back by `/audit/*` and AuditEvent), `sequencer` its sequencer (its
/// name and key, and catching up before the log is read).
pub fn app(
    records: Records,
    access: AccessControl,
    sequencer: Sequencer,
    log: Arc<dyn AuditLog>,
    config: &HttpConfig,
) -> impl Endpoint + 'static {
    let access = access.recording_refusals_with(records.clone());
    let api = service(records, access.clone(), sequencer, log);
    let spec = api.spec();
    let front_config = Arc::new(Front {
        routes: serde_json::from_str(&spec)
            .map(|value| RouteTable::from_openapi(&value))
            .unwrap_or_default(),
        tls: config.tls,
        max_header_bytes: config.max_header_bytes,
        request_timeout: config.request_timeout,
        access: Some(access.clone()),
    });
    let mut route = Route::new();
    if config.docs {
        route = route.nest("/docs", api.swagger_ui());
    }
    route
        .at("/openapi.json", api.spec_endpoint())
        .nest("/", api)
        .data(BodyLimit(config.body_limit))
        .data(MaxBundleEntries(config.max_bundle_entries))
        .data(access)
        .data(PublicBase(config.public_base_url.clone()))
        .around(move |next, request| front(next, request, Arc::clone(&front_config)))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use crate::capability::{
        AUDIT_EVENT_INTERACTIONS, INTERACTIONS, OPERATIONS, SYSTEM_INTERACTIONS,
    };

    #[test]
    fn every_advertised_interaction_and_operation_has_its_route() {
        let spec: serde_json::Value =
            serde_json::from_str(&super::openapi_json().unwrap()).unwrap();
        for (code, method, path) in INTERACTIONS
            .iter()
            .chain(SYSTEM_INTERACTIONS)
            .chain(AUDIT_EVENT_INTERACTIONS)
        {
            assert!(
                spec["paths"][path][method].is_object(),
                "{code}: {method} {path}"
            );
        }
        for (name, _, method, path, _) in OPERATIONS {
            assert!(
                spec["paths"][path][method].is_object(),
                "{name}: {method} {path}"
            );
        }
    }
}
