//! Deterministic, Synthea-shaped FHIR R4 test data for tests and benchmarks.
//!
//! [`patient_record`] makes one patient's record — a Patient, their Encounters, and the
//! Conditions, Observations, Procedures, MedicationRequests and Immunizations (CVX codes, with
//! `protocolApplied` series and dose numbers) of those encounters — in Synthea's proportions:
//! tens to a few hundred resources per patient. The same seed and number always give the same
//! record, byte for byte. Every value is made up; none is anyone's data.
//!
//! A record is a transaction Bundle ([`PatientRecord::transaction`]: POST entries linked by
//! `urn:uuid:` fullUrls, as Synthea writes) or resources with ids and relative references
//! ([`PatientRecord::resources`], what a Bulk Data NDJSON export holds).

mod random;
mod record;

pub use random::Random;
pub use record::{PatientRecord, patient_record};
