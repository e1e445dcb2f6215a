//! Cairn's application core: the FHIR record use cases (create, read, …) written against ports.
//!
//! It parses and validates with `fhir-model`, stamps server metadata, seals bodies and computes
//! blind and plain index rows with `phi-crypto`, and hands them to a [`ResourceStore`]. It does no IO of its own: storage, time and ids come through ports, so the
//! whole core runs in tests against the in-memory fakes in [`fakes`].

pub mod audit_entries;
pub mod audit_events;
#[cfg(any(test, feature = "contract"))]
pub mod contract;
mod error;
pub mod fakes;
pub mod index;
mod ports;
pub mod search;
pub mod series;
mod service;
mod session;
pub mod tokens;

pub use audit_entries::Actor;
pub use error::RecordsError;
pub use ports::{
    Changes, Clock, Erasure, HistoryPosition, IdGenerator, NewVersion, RandomIds, ResourceStore,
    SealedVersion, SearchMatch, StoreError, SystemClock, Write,
};
pub use service::{
    EntryOutcome, HistoryEntry, HistoryPage, JSON_PATCH, Records, ReindexReport, SearchPage,
    StoredResource, instant, parse_patch,
};
pub use session::{Session, actor};
