//! FHIR R4 resources as Rust types: JSON in and out without losing anything, and validation that
//! reports every problem as an OperationOutcome issue with a FHIRPath-like location.
//!
//! The crate does no IO and knows nothing of storage or HTTP; other services can use it alone.
//!
//! - [`Resource`] is any R4 resource. Patient, Immunization, Bundle, OperationOutcome and
//!   CapabilityStatement are typed; every other R4 type is a [`GenericResource`] (resourceType,
//!   id, meta, and the rest kept as JSON).
//! - [`Resource::from_json`] parses and checks structure; [`Resource::validate`] checks the rules
//!   (required elements, primitive formats, required bindings, invariants).
//! - Every typed element keeps the members it does not model in `extra`, so unknown elements,
//!   primitive extensions (`_birthDate`) and newer elements survive a parse → serialize round trip.

#[macro_use]
mod element;
pub mod bundle_request;
mod datatypes;
pub mod json_reader;
mod outcome;
mod primitives;
mod resource;
mod resource_type;
mod resources;
pub mod search;
pub mod summary;
mod summary_elements;
mod validation;

pub use datatypes::*;
pub use element::Extra;
pub use outcome::{IssueSeverity, IssueType};
pub use primitives::*;
pub use resource::{ParseError, Resource};
pub use resource_type::{ResourceType, UnknownResourceType};
pub use resources::*;
pub use validation::{Issue, Location};
