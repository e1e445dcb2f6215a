//! The store on real databases: SQLite and PostgreSQL, a fresh database for each test.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use fhir_model::ResourceType;
use records::{NewVersion, ResourceStore, StoreError};
use store_sql::testing::TestDatabase;
use store_sql::{ConnectError, SqlStore, StoreOptions};
use time::macros::datetime;

#[tokio::test]
async fn meets_the_resource_store_contract() {
    for db in TestDatabase::all().await {
        let store = db.store().await;
        records::contract::resource_store(&store, &store).await;
        eprintln!("contract holds on {}", db.backend_name());
    }
}

#[tokio::test]
async fn meets_the_token_registry_contract() {
    for db in TestDatabase::all().await {
        let store = db.store().await;
        access::contract::token_registry(&store).await;
    }
}

#[tokio::test]
async fn meets_the_key_store_contract() {
    for db in TestDatabase::all().await {
        let store = db.store().await;
        records::contract::key_store(&store).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_writers_share_one_data_key() {
    use phi_crypto::{FixedKeyring, KeyOwner, Keyring, Vault};
    for db in TestDatabase::all().await {
        let store = Arc::new(db.store().await);
        let keyring = Arc::new(Keyring::generate(datetime!(2026-11-22 10:00 UTC)).unwrap());
        let vault = Vault::new(store.clone(), Arc::new(FixedKeyring(keyring)));
        let owner = KeyOwner::Patient("shared".into());
        let tasks = (0..16).map(|_| {
            let (vault, owner) = (vault.clone(), owner.clone());
            tokio::spawn(async move {
                vault
                    .key_for_writing(&owner, datetime!(2026-11-22 10:00 UTC))
                    .await
                    .unwrap()
                    .id()
            })
        });
        let ids: Vec<_> = futures::future::join_all(tasks)
            .await
            .into_iter()
            .map(Result::unwrap)
            .collect();
        assert!(ids.iter().all(|id| *id == ids[0]), "{}", db.backend_name());
        assert_eq!(db.row_count("data_key").await, 1);
    }
}

#[tokio::test]
async fn migrating_twice_is_harmless() {
    for db in TestDatabase::all().await {
        let store = db.store().await;
        store.migrate().await.unwrap();
        store.ping().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_creates_of_one_id_store_exactly_one() {
    for db in TestDatabase::all().await {
        let store = Arc::new(db.store().await);
        let attempts = (0..24u8).map(|n| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                store
                    .create(NewVersion {
                        resource_type: ResourceType::PATIENT,
                        id: "contended".into(),
                        version: 1,
                        last_updated: datetime!(2026-11-22 10:00 UTC),
                        key_owner: "system".into(),
                        key_id: system_key().key_id,
                        new_key: Some(system_key()),
                        body: vec![n],
                        index: records::index::IndexRows::default(),
                        deleted: false,
                        claim: None,
                        audit: None,
                    })
                    .await
            })
        });
        let results = futures::future::join_all(attempts).await;
        let won: Vec<_> = results.iter().filter(|r| matches!(r, Ok(Ok(())))).collect();
        let lost = results
            .iter()
            .filter(|r| matches!(r, Ok(Err(StoreError::AlreadyExists { .. }))))
            .count();
        assert_eq!(
            (won.len(), lost),
            (1, 23),
            "{}: {results:?}",
            db.backend_name()
        );
        let stored = store
            .read_current(ResourceType::PATIENT, "contended")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(stored.body.len(), 1);
    }
}

#[tokio::test]
async fn unreachable_databases_fail_cleanly() {
    let options = StoreOptions {
        acquire_timeout: std::time::Duration::from_millis(500),
        ..StoreOptions::default()
    };
    let err = SqlStore::connect("postgres://postgres@127.0.0.1:1/none", &options)
        .await
        .unwrap_err();
    assert!(matches!(err, ConnectError::Connect(..)), "{err:?}");
    let err = SqlStore::connect("mysql://x", &options).await.unwrap_err();
    assert!(matches!(err, ConnectError::UnsupportedUrl));
}

fn system_key() -> phi_crypto::KeyRecord {
    phi_crypto::KeyRecord {
        owner: phi_crypto::KeyOwner::System,
        key_id: phi_crypto::KeyId::from_bytes(&[3; 16]).unwrap(),
        created: datetime!(2026-11-22 10:00 UTC),
        state: phi_crypto::KeyState::Wrapped(phi_crypto::WrappedKey {
            kek_version: 1,
            bytes: vec![0; 61],
        }),
    }
}
