//! The core's create path over in-memory ports: parse, validate, data key, seal, blind and
//! plain index rows. No database, so the crypto share shown here is the largest it can be; a
//! real create adds a durable commit. `cargo bench -p records`; figures in docs/performance.md.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::hint::black_box;
use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use fhir_model::ResourceType;
use futures_executor::block_on;
use phi_crypto::{FixedKeyring, Keyring, Vault};
use records::fakes::{MemoryStore, SequentialIds};
use records::{Records, SystemClock};

/// A realistic registry Patient, about 1 KiB of JSON.
const PATIENT: &str = r#"{"resourceType":"Patient",
 "identifier":[{"system":"urn:oid:2.16.840.1.113883.4.3.25","value":"MA-000123456"},
               {"system":"http://hospital.example.org/mrn","value":"MRN-998877"}],
 "active":true,
 "name":[{"use":"official","family":"Rodríguez-Smith","given":["María","José"]},
         {"use":"maiden","family":"Rodríguez"}],
 "telecom":[{"system":"phone","value":"+1 (617) 555-0142","use":"mobile"},
            {"system":"email","value":"maria.rodriguez@example.org"}],
 "gender":"female","birthDate":"1984-06-23",
 "address":[{"use":"home","line":["77 Massachusetts Ave","Apt 4B"],"city":"Cambridge",
             "state":"MA","postalCode":"02139","country":"US"}],
 "contact":[{"relationship":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/v2-0131","code":"N"}]}],
             "name":{"family":"Smith","given":["John"]},"telecom":[{"system":"phone","value":"+1 617 555 0199"}]}],
 "communication":[{"language":{"coding":[{"system":"urn:ietf:bcp:47","code":"es"}]},"preferred":true}],
 "managingOrganization":{"reference":"Organization/org-1"}}"#;

fn create(c: &mut Criterion) {
    let store = Arc::new(MemoryStore::default());
    let keyring = Keyring::generate(time::OffsetDateTime::now_utc()).unwrap();
    let vault = Vault::new(store.keys(), Arc::new(FixedKeyring(Arc::new(keyring))));
    let audit = Arc::new(store.audit_log());
    let records = Records::new(
        store,
        vault,
        Arc::new(SystemClock),
        Arc::new(SequentialIds::default()),
        audit,
    );
    c.bench_function(
        "records: create Patient (1 KiB, new compartment, in memory)",
        |b| {
            b.iter(|| {
                block_on(records.create(ResourceType::PATIENT, black_box(PATIENT.as_bytes())))
                    .unwrap()
            })
        },
    );
    let created = block_on(records.create(ResourceType::PATIENT, PATIENT.as_bytes())).unwrap();
    c.bench_function("records: read Patient (find key, unwrap, open)", |b| {
        b.iter(|| block_on(records.read(ResourceType::PATIENT, black_box(&created.id))).unwrap())
    });
}

criterion_group!(benches, create);
criterion_main!(benches);
