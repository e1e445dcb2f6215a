#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use fhir_model::ResourceType;
use futures_executor::block_on;
use serde_json::{Value, json};
use time::macros::datetime;

use crate::fakes::{FixedClock, MemoryStore, SequentialIds};
use crate::{Records, RecordsError};

fn records() -> Records {
    Records::new(
        Arc::new(MemoryStore::default()),
        Arc::new(FixedClock::at(datetime!(2026-11-22 10:00:00.123456789 UTC))),
        Arc::new(SequentialIds::default()),
    )
}

#[test]
fn create_assigns_id_and_meta_and_read_returns_it() {
    let records = records();
    let body = json!({"resourceType": "Patient", "id": "client-chosen", "gender": "female",
        "meta": {"versionId": "77", "tag": [{"code": "kept"}]}});
    let created =
        block_on(records.create(ResourceType::PATIENT, body.to_string().as_bytes())).unwrap();
    assert_eq!((created.id.as_str(), created.version), ("id-1", 1));
    let stored: Value = serde_json::from_slice(&created.body).unwrap();
    assert_eq!(stored["id"], "id-1");
    assert_eq!(stored["meta"]["versionId"], "1");
    assert_eq!(stored["meta"]["lastUpdated"], "2026-11-22T10:00:00.123456Z");
    assert_eq!(stored["meta"]["tag"][0]["code"], "kept");
    assert_eq!(stored["gender"], "female");

    let read = block_on(records.read(ResourceType::PATIENT, "id-1")).unwrap();
    assert_eq!(read, created);
}

#[test]
fn invalid_and_mismatched_bodies_are_refused_and_nothing_is_stored() {
    let records = records();
    let wrong =
        block_on(records.create(ResourceType::IMMUNIZATION, br#"{"resourceType":"Patient"}"#));
    assert!(
        matches!(wrong, Err(RecordsError::WrongType { .. })),
        "{wrong:?}"
    );
    let invalid = block_on(records.create(
        ResourceType::IMMUNIZATION,
        br#"{"resourceType":"Immunization"}"#,
    ));
    let Err(RecordsError::Invalid { issues }) = invalid else {
        panic!("{invalid:?}")
    };
    assert_eq!(issues.len(), 4);
    for id in ["id-1", "id-2"] {
        assert!(matches!(
            block_on(records.read(ResourceType::IMMUNIZATION, id)),
            Err(RecordsError::NotFound { .. })
        ));
    }
}

#[test]
fn reading_unknown_or_malformed_ids_is_not_found() {
    let records = records();
    for id in ["nope", "../etc", ""] {
        assert!(
            matches!(
                block_on(records.read(ResourceType::PATIENT, id)),
                Err(RecordsError::NotFound { .. })
            ),
            "{id}"
        );
    }
}

#[test]
fn the_memory_store_meets_the_contract() {
    block_on(crate::contract::resource_store(&MemoryStore::default()));
}
