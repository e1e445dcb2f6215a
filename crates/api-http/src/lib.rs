//! The HTTP front of Cairn (poem-openapi): the FHIR REST API under `/fhir`, health checks, the
//! OpenAPI document and its interactive UI.
//!
//! Only this crate knows the wire: status codes, headers, content types. Every error leaves as
//! a FHIR OperationOutcome, including the ones poem itself produces (unknown route, wrong
//! method, wrong content type), and a 5xx says nothing internal, only a correlation id.

mod admin;
mod app;
mod audit_api;
mod auth;
mod batch_api;
mod bundles;
mod capability;
mod context;
mod errors;
mod fhir;
mod front;
mod health;
mod negotiation;
mod params;
mod payload;
mod responses;
mod shaping;
mod smart;

pub use app::{HttpConfig, app, openapi_json};
pub use auth::{AccessControl, RateLimit};
pub use batch_api::DEFAULT_MAX_BUNDLE_ENTRIES;
pub use context::RequestId;
