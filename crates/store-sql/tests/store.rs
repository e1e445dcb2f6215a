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
                        key_owner: phi_crypto::KeyOwner::System,
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

/// Migration 10 rewrites the instants SQLite held as sqlx wrote them (RFC 3339 in the offset
/// given, fractions without trailing zeros, which sort as text out of time order) into UTC text
/// of one width, and searches then compare and sort them as the instants they are.
#[tokio::test]
async fn sqlite_instants_stored_before_migration_10_compare_as_instants_after_it() {
    use migration::{Migrator, MigratorTrait};
    use records::index::{Clause, DateComparator, DateMatch, Order, SearchQuery, SortKey};
    use sea_orm::{ConnectionTrait, Statement};
    let db = TestDatabase::sqlite();
    let conn = sea_orm::Database::connect(db.url()).await.unwrap();
    Migrator::up(&conn, Some(9)).await.unwrap();
    // id, last_updated and the date's low and high as sqlx wrote them.
    let rows = [
        (
            "a",
            "2021-03-20T17:00:00.12-05:00",
            "2021-03-20T17:00:00-05:00",
            "2021-03-20T17:00:01-05:00",
        ),
        (
            "b",
            "2021-03-20T22:00:00.123Z",
            "2021-03-20T20:00:00Z",
            "2021-03-20T20:00:01Z",
        ),
        (
            "c",
            "2021-03-21T03:30:00.5+05:30",
            "2021-03-21T03:30:00+05:30",
            "2021-03-21T03:30:01+05:30",
        ),
    ];
    for (id, updated, low, high) in rows {
        for sql in [
            "INSERT INTO resource (resource_type, id, version, last_updated, deleted, key_owner) \
             VALUES ('Immunization', $1, 1, $2, false, 'system')",
            "INSERT INTO resource_version (resource_type, id, version, last_updated, deleted, \
             key_owner, body) VALUES ('Immunization', $1, 1, $2, false, 'system', x'00')",
        ] {
            db.execute(sql, vec![id.into(), updated.into()]).await;
        }
        db.execute(
            "INSERT INTO search_date (resource_type, id, param, low, high) \
             VALUES ('Immunization', $1, 'date', $2, $3)",
            vec![id.into(), low.into(), high.into()],
        )
        .await;
    }
    Migrator::up(&conn, None).await.unwrap();
    let texts = conn
        .query_all_raw(Statement::from_string(
            sea_orm::DbBackend::Sqlite,
            "SELECT r.id, r.last_updated, v.last_updated, d.low, d.high FROM resource r \
             JOIN resource_version v USING (resource_type, id) \
             JOIN search_date d USING (resource_type, id) ORDER BY r.id",
        ))
        .await
        .unwrap()
        .iter()
        .map(|row| {
            (0..5)
                .map(|i| row.try_get_by_index::<String>(i).unwrap())
                .collect::<Vec<_>>()
        })
        .collect::<Vec<_>>();
    assert_eq!(
        texts,
        [
            [
                "a",
                "2021-03-20T22:00:00.120000Z",
                "2021-03-20T22:00:00.120000Z",
                "2021-03-20T22:00:00.000000Z",
                "2021-03-20T22:00:01.000000Z"
            ],
            [
                "b",
                "2021-03-20T22:00:00.123000Z",
                "2021-03-20T22:00:00.123000Z",
                "2021-03-20T20:00:00.000000Z",
                "2021-03-20T20:00:01.000000Z"
            ],
            [
                "c",
                "2021-03-20T22:00:00.500000Z",
                "2021-03-20T22:00:00.500000Z",
                "2021-03-20T22:00:00.000000Z",
                "2021-03-20T22:00:01.000000Z"
            ],
        ]
    );
    conn.close().await.unwrap();
    // Migrating again changes nothing, and the store sorts and compares them as instants.
    let store = db.store().await;
    let sorted = |key, clauses| SearchQuery {
        resource_type: ResourceType::IMMUNIZATION,
        clauses,
        order: Order {
            key,
            descending: false,
        },
        after: None,
        limit: 10,
    };
    let ids = |query: SearchQuery| {
        let store = &store;
        async move {
            store
                .search(&query)
                .await
                .unwrap()
                .into_iter()
                .map(|m| m.version.id)
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(
        ids(sorted(SortKey::LastUpdated, vec![])).await,
        ["a", "b", "c"]
    );
    assert_eq!(
        ids(sorted(SortKey::DateLow("date"), vec![])).await,
        ["b", "a", "c"]
    );
    let at_22 = Clause::Date {
        param: "date",
        any_of: vec![DateMatch {
            comparator: DateComparator::Eq,
            low: datetime!(2021-03-20 22:00 UTC),
            high: datetime!(2021-03-20 22:01 UTC),
        }],
    };
    assert_eq!(ids(sorted(SortKey::Id, vec![at_22])).await, ["a", "c"]);
}
