//! Cairn's application core: the FHIR record use cases (create, read, …) written against ports.
//!
//! It parses and validates with `fhir-model`, stamps server metadata, and hands opaque bodies to
//! a [`ResourceStore`]. It does no IO of its own: storage, time and ids come through ports, so the
//! whole core runs in tests against the in-memory fakes in [`fakes`].

#[cfg(any(test, feature = "contract"))]
pub mod contract;
mod error;
pub mod fakes;
mod ports;
mod service;

pub use error::RecordsError;
pub use ports::{
    Clock, IdGenerator, NewVersion, RandomIds, ResourceStore, StoreError, StoredVersion,
    SystemClock,
};
pub use service::{Records, StoredResource};
