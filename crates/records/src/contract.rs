//! The contract every [`ResourceStore`] must meet, as a suite an adapter's tests run against
//! its implementation (the in-memory fake runs it in this crate's tests).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use fhir_model::ResourceType;
use time::macros::datetime;

use crate::ports::{NewVersion, ResourceStore, StoreError};

fn version(resource_type: ResourceType, id: &str, body: &[u8]) -> NewVersion {
    NewVersion {
        resource_type,
        id: id.to_owned(),
        version: 1,
        last_updated: datetime!(2026-11-22 10:00:00.123456 UTC),
        body: body.to_vec(),
    }
}

/// Runs every check of the contract against `store`, which must be empty.
pub async fn resource_store(store: &dyn ResourceStore) {
    store.ping().await.unwrap();
    created_versions_read_back_exactly(store).await;
    creating_twice_conflicts_and_keeps_the_first(store).await;
    missing_resources_are_none(store).await;
    types_and_ids_are_separate_keys(store).await;
}

async fn created_versions_read_back_exactly(store: &dyn ResourceStore) {
    // Bodies are opaque bytes: not UTF-8, with NULs, as sealed ciphertext will be.
    let body: Vec<u8> = (0..=255u8).chain([0, 0, 255]).collect();
    store
        .create(version(ResourceType::PATIENT, "c1", &body))
        .await
        .unwrap();
    let read = store
        .read_current(ResourceType::PATIENT, "c1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(read.body, body);
    assert_eq!(
        (read.id.as_str(), read.version, read.deleted),
        ("c1", 1, false)
    );
    assert_eq!(read.resource_type, ResourceType::PATIENT);
    assert_eq!(read.last_updated, datetime!(2026-11-22 10:00:00.123456 UTC));

    let big = vec![7u8; 4 * 1024 * 1024];
    store
        .create(version(ResourceType::PATIENT, "big", &big))
        .await
        .unwrap();
    assert_eq!(
        store
            .read_current(ResourceType::PATIENT, "big")
            .await
            .unwrap()
            .unwrap()
            .body,
        big
    );
}

async fn creating_twice_conflicts_and_keeps_the_first(store: &dyn ResourceStore) {
    store
        .create(version(ResourceType::IMMUNIZATION, "dup", b"first"))
        .await
        .unwrap();
    let again = store
        .create(version(ResourceType::IMMUNIZATION, "dup", b"second"))
        .await;
    assert!(
        matches!(again, Err(StoreError::AlreadyExists { .. })),
        "{again:?}"
    );
    let read = store
        .read_current(ResourceType::IMMUNIZATION, "dup")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(read.body, b"first");
}

async fn missing_resources_are_none(store: &dyn ResourceStore) {
    assert!(
        store
            .read_current(ResourceType::PATIENT, "never")
            .await
            .unwrap()
            .is_none()
    );
}

async fn types_and_ids_are_separate_keys(store: &dyn ResourceStore) {
    store
        .create(version(ResourceType::PATIENT, "same", b"patient"))
        .await
        .unwrap();
    let observation = ResourceType::parse("Observation").unwrap();
    store
        .create(version(observation, "same", b"observation"))
        .await
        .unwrap();
    store
        .create(version(ResourceType::PATIENT, "Same", b"upper"))
        .await
        .unwrap();
    let body =
        |t, id: &'static str| async move { store.read_current(t, id).await.unwrap().unwrap().body };
    assert_eq!(body(ResourceType::PATIENT, "same").await, b"patient");
    assert_eq!(body(observation, "same").await, b"observation");
    assert_eq!(body(ResourceType::PATIENT, "Same").await, b"upper");
}
