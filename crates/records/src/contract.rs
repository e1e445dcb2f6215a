//! The contract every [`ResourceStore`] must meet, as a suite an adapter's tests run against
//! its implementation (the in-memory fake runs it in this crate's tests).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use fhir_model::ResourceType;
use phi_crypto::{
    BlindToken, KekUsage, KeyId, KeyOwner, KeyRecord, KeyState, KeyStore, WrappedKey,
};
use time::macros::datetime;

use crate::index::{
    BlindRow, Clause, DateComparator, DateMatch, DateRow, IndexRows, Order, Position,
    ReferenceMatch, ReferenceRow, SearchQuery, SortKey, StringRow, TokenMatch, TokenRow,
};
use crate::ports::{Erasure, NewVersion, ResourceStore, StoreError};

mod queries;
mod search;
mod unit;

/// The contract's data key for an owner: a fixed id per owner, wrapped bytes that are never
/// opened (the store does not look inside).
fn key_of(key_owner: &str) -> KeyRecord {
    let byte = key_owner
        .bytes()
        .fold(7u8, |acc, b| acc.wrapping_mul(31).wrapping_add(b));
    KeyRecord {
        owner: KeyOwner::parse(key_owner).unwrap(),
        key_id: KeyId::from_bytes(&[byte; 16]).unwrap(),
        created: datetime!(2026-11-22 10:00 UTC),
        state: KeyState::Wrapped(WrappedKey {
            kek_version: 1,
            bytes: vec![1; 61],
        }),
    }
}

fn version(resource_type: ResourceType, id: &str, body: &[u8]) -> NewVersion {
    owned_version(resource_type, id, body, "system")
}

fn owned_version(
    resource_type: ResourceType,
    id: &str,
    body: &[u8],
    key_owner: &str,
) -> NewVersion {
    let key = key_of(key_owner);
    NewVersion {
        resource_type,
        id: id.to_owned(),
        version: 1,
        last_updated: datetime!(2026-11-22 10:00:00.123456 UTC),
        key_owner: KeyOwner::parse(key_owner).unwrap(),
        key_id: key.key_id,
        new_key: Some(key),
        body: body.to_vec(),
        index: IndexRows::default(),
        deleted: false,
        claim: None,
        audit: Some(audit_entry(audit_chain::Action::Create)),
    }
}

/// An audit entry with a fresh id: every write of the suite stores one, as the core's do.
fn audit_entry(action: audit_chain::Action) -> audit_chain::AuditEntry {
    audit_chain::AuditEntry::new(
        uuid::Uuid::new_v4().to_string(),
        datetime!(2026-11-22 10:00:00.123456 UTC),
        action,
        audit_chain::Outcome::Success,
    )
}

/// Runs every check of the contract against `store`, which must be empty; `keys` is the key
/// store erasure destroys keys in (the same database for the SQL store).
pub async fn resource_store(store: &dyn ResourceStore, keys: &dyn KeyStore) {
    store.ping().await.unwrap();
    created_versions_read_back_exactly(store).await;
    creating_twice_conflicts_and_keeps_the_first(store).await;
    missing_resources_are_none(store).await;
    types_and_ids_are_separate_keys(store).await;
    queries::search_matches_every_clause_kind(store).await;
    a_new_owners_key_is_stored_with_the_data_and_a_rival_key_is_refused(store, keys).await;
    updates_move_versions_and_keep_history(store).await;
    type_and_system_history_page_newest_first(store).await;
    a_conditional_claim_admits_one_create_until_the_resource_changes(store).await;
    queries::missing_and_last_updated_clauses(store).await;
    queries::sorting_by_last_updated_pages_by_time_then_id(store).await;
    queries::sorting_by_a_date_uses_its_extremes_and_puts_the_undated_last(store).await;
    queries::one_token_pages_in_id_order_both_ways(store).await;
    queries::chained_clauses_follow_references_to_live_targets(store).await;
    search::dates_compare_as_instants_whatever_their_offset(store).await;
    search::last_updated_compares_to_the_microsecond(store).await;
    search::sorted_paging_through_mixed_offsets_is_exact(store).await;
    search::negation_reverse_chains_and_string_matches(store).await;
    search::index_rows_are_replaced_on_the_current_version_only(store).await;
    search::compound_searches_match_every_clause_and_page_exactly(store).await;
    unit::a_unit_of_work_commits_whole_or_not_at_all(store).await;
    erasure_destroys_the_key_and_hides_the_compartment(store, keys).await;
}

/// The contract of a [`KeyStore`], on an empty store.
pub async fn key_store(keys: &dyn KeyStore) {
    let owner = |n: u32| KeyOwner::Patient(format!("k{n:03}"));
    let wrapped = |v: u32, byte: u8| WrappedKey {
        kek_version: v,
        bytes: vec![byte; 61],
    };
    let record = |n: u32, v: u32| KeyRecord {
        owner: owner(n),
        key_id: KeyId::from_bytes(&[u8::try_from(n % 256).unwrap(); 16]).unwrap(),
        created: datetime!(2026-11-22 10:00 UTC),
        state: KeyState::Wrapped(wrapped(v, 1)),
    };
    assert!(keys.find(&owner(1)).await.unwrap().is_none());
    let first = keys.insert_if_absent(record(1, 1)).await.unwrap();
    assert_eq!(first, record(1, 1));
    let mut rival = record(1, 1);
    rival.key_id = KeyId::from_bytes(&[99; 16]).unwrap();
    assert_eq!(keys.insert_if_absent(rival).await.unwrap(), record(1, 1));
    for n in 2..=5 {
        keys.insert_if_absent(record(n, 1)).await.unwrap();
    }
    keys.insert_if_absent(record(6, 2)).await.unwrap();
    assert_eq!(
        keys.usage().await.unwrap(),
        vec![
            KekUsage {
                kek_version: 1,
                data_keys: 5
            },
            KekUsage {
                kek_version: 2,
                data_keys: 1
            },
        ]
    );
    let page = keys.wrapped_by_other_than(2, None, 3).await.unwrap();
    assert_eq!(
        page.iter().map(|r| r.owner.clone()).collect::<Vec<_>>(),
        [owner(1), owner(2), owner(3)]
    );
    let rest = keys
        .wrapped_by_other_than(2, Some(&owner(3)), 10)
        .await
        .unwrap();
    assert_eq!(rest.len(), 2);
    let id1 = record(1, 1).key_id;
    assert!(
        keys.replace_wrapping(&owner(1), id1, 1, wrapped(2, 7))
            .await
            .unwrap()
    );
    assert!(
        !keys
            .replace_wrapping(&owner(1), id1, 1, wrapped(2, 8))
            .await
            .unwrap()
    );
    assert_eq!(
        keys.find(&owner(1)).await.unwrap().unwrap().state,
        KeyState::Wrapped(wrapped(2, 7))
    );
    let at = datetime!(2026-11-23 10:00 UTC);
    keys.destroy(&owner(2), at).await.unwrap();
    keys.destroy(&owner(42), at).await.unwrap();
    for n in [2, 42] {
        assert_eq!(
            keys.find(&owner(n)).await.unwrap().unwrap().state,
            KeyState::Destroyed { at }
        );
    }
    // Many owners at once: each stored record (live or destroyed) once, the unknown left out.
    let mut many = keys
        .find_many(&[owner(3), owner(2), owner(77), owner(1)])
        .await
        .unwrap();
    many.sort_by(|a, b| a.owner.as_str().cmp(&b.owner.as_str()));
    assert_eq!(
        many.iter().map(|r| r.owner.clone()).collect::<Vec<_>>(),
        [owner(1), owner(2), owner(3)]
    );
    assert_eq!(many[1].state, KeyState::Destroyed { at });
    assert_eq!(many[2], record(3, 1));
    assert!(keys.find_many(&[]).await.unwrap().is_empty());
    assert!(
        !keys
            .replace_wrapping(&owner(2), record(2, 1).key_id, 1, wrapped(2, 1))
            .await
            .unwrap()
    );
    assert_eq!(
        keys.usage().await.unwrap(),
        vec![
            KekUsage {
                kek_version: 1,
                data_keys: 3
            },
            KekUsage {
                kek_version: 2,
                data_keys: 2
            },
        ]
    );
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
    assert_eq!(
        read.key,
        Some(key_of("system")),
        "a version comes with its owner's key record"
    );

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

fn indexed(id: &str, key_owner: &str, index: IndexRows) -> NewVersion {
    NewVersion {
        index,
        ..owned_version(ResourceType::IMMUNIZATION, id, b"sealed", key_owner)
    }
}

async fn a_new_owners_key_is_stored_with_the_data_and_a_rival_key_is_refused(
    store: &dyn ResourceStore,
    keys: &dyn KeyStore,
) {
    let owner = KeyOwner::Patient("k-new".into());
    store
        .create(owned_version(
            ResourceType::PATIENT,
            "k-new",
            b"sealed",
            "Patient/k-new",
        ))
        .await
        .unwrap();
    assert_eq!(
        keys.find(&owner).await.unwrap(),
        Some(key_of("Patient/k-new"))
    );
    // A writer that sealed under a different fresh key for the same owner loses, writing nothing.
    let mut rival = owned_version(
        ResourceType::IMMUNIZATION,
        "k-rival",
        b"sealed",
        "Patient/k-new",
    );
    let other_id = KeyId::from_bytes(&[0xEE; 16]).unwrap();
    rival.key_id = other_id;
    if let Some(key) = rival.new_key.as_mut() {
        key.key_id = other_id;
    }
    let refused = store.create(rival).await;
    assert!(
        matches!(refused, Err(StoreError::KeyChanged { .. })),
        "{refused:?}"
    );
    assert!(
        store
            .read_current(ResourceType::IMMUNIZATION, "k-rival")
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(
        keys.find(&owner).await.unwrap(),
        Some(key_of("Patient/k-new"))
    );
    // Writing under the stored key, with no new key, works.
    let mut follower = owned_version(
        ResourceType::IMMUNIZATION,
        "k-follow",
        b"sealed",
        "Patient/k-new",
    );
    follower.new_key = None;
    store.create(follower).await.unwrap();
}

async fn erasure_destroys_the_key_and_hides_the_compartment(
    store: &dyn ResourceStore,
    keys: &dyn KeyStore,
) {
    let owner = KeyOwner::Patient("e1".into());
    keys.insert_if_absent(key_of("Patient/e1")).await.unwrap();
    let rows = IndexRows {
        blind: vec![BlindRow {
            param: "x-blind",
            token: BlindToken([77; 8]),
        }],
        ..IndexRows::default()
    };
    store
        .create(indexed("e-imm-1", "Patient/e1", rows.clone()))
        .await
        .unwrap();
    store
        .create(indexed("e-imm-2", "Patient/e1", rows.clone()))
        .await
        .unwrap();
    store
        .create(indexed("e-other", "Patient/e2", rows.clone()))
        .await
        .unwrap();
    let blind = || SearchQuery {
        resource_type: ResourceType::IMMUNIZATION,
        clauses: vec![Clause::Blind {
            param: "x-blind",
            any_of: vec![BlindToken([77; 8])],
        }],
        order: Order::default(),
        after: None,
        limit: 10,
    };
    assert_eq!(store.search(&blind()).await.unwrap().len(), 3);
    let at = datetime!(2026-11-24 10:00 UTC);
    let erasure = store
        .erase(
            &KeyOwner::parse("Patient/e1").unwrap(),
            at,
            &audit_entry(audit_chain::Action::Erase),
        )
        .await
        .unwrap();
    assert_eq!(
        erasure,
        Erasure {
            resources: 2,
            versions: 2
        }
    );
    assert_eq!(
        keys.find(&owner).await.unwrap().unwrap().state,
        KeyState::Destroyed { at }
    );
    let left = store.search(&blind()).await.unwrap();
    assert_eq!(
        left.iter()
            .map(|v| v.version.id.as_str())
            .collect::<Vec<_>>(),
        ["e-other"]
    );
    let sealed = store
        .read_current(ResourceType::IMMUNIZATION, "e-imm-1")
        .await
        .unwrap();
    let sealed = sealed.expect("the sealed versions stay; the destroyed key guards them");
    assert_eq!(
        sealed.key.map(|key| key.state),
        Some(KeyState::Destroyed { at }),
        "an erased version comes with its key's tombstone"
    );
    for version in store
        .history(ResourceType::IMMUNIZATION, "e-imm-1", None, 10)
        .await
        .unwrap()
        .into_iter()
        .chain(
            store
                .read_version(ResourceType::IMMUNIZATION, "e-imm-1", 1)
                .await
                .unwrap(),
        )
        .chain(
            store
                .history_all(Some(ResourceType::IMMUNIZATION), None, None, 100)
                .await
                .unwrap()
                .into_iter()
                .filter(|v| v.key_owner.as_str() == "Patient/e1"),
        )
    {
        assert!(
            matches!(
                version.key.map(|key| key.state),
                Some(KeyState::Destroyed { .. })
            ),
            "every read of an erased version carries the tombstone"
        );
    }
    let other = &left[0].version;
    assert_eq!(
        other.key.as_ref().map(|key| &key.owner),
        Some(&KeyOwner::Patient("e2".into())),
        "search results come with their own owner's key"
    );
    let late = store.create(indexed("e-imm-3", "Patient/e1", rows)).await;
    assert!(matches!(late, Err(StoreError::Erased { .. })), "{late:?}");
    assert!(
        store
            .read_current(ResourceType::IMMUNIZATION, "e-imm-3")
            .await
            .unwrap()
            .is_none()
    );
}

async fn updates_move_versions_and_keep_history(store: &dyn ResourceStore) {
    let p = ResourceType::PATIENT;
    let at = |minute: i64| datetime!(2026-11-22 10:00:00 UTC) + time::Duration::minutes(minute);
    let rows = |n: u8| IndexRows {
        blind: vec![BlindRow {
            param: "h-blind",
            token: BlindToken([n; 8]),
        }],
        ..IndexRows::default()
    };
    let next = |version: u64, body: &[u8], index: IndexRows, deleted: bool| NewVersion {
        version,
        last_updated: at(i64::try_from(version).unwrap()),
        index,
        deleted,
        ..owned_version(p, "h1", body, "system")
    };
    let find = |n: u8| async move {
        store
            .search(&SearchQuery {
                resource_type: p,
                clauses: vec![Clause::Blind {
                    param: "h-blind",
                    any_of: vec![BlindToken([n; 8])],
                }],
                order: Order::default(),
                after: None,
                limit: 10,
            })
            .await
            .unwrap()
            .into_iter()
            .map(|v| (v.version.id, v.version.version))
            .collect::<Vec<_>>()
    };
    store.create(next(1, b"one", rows(1), false)).await.unwrap();
    store
        .update(next(2, b"two", rows(2), false), 1)
        .await
        .unwrap();
    // A second writer that also read version 1 loses, writing nothing.
    let stale = store.update(next(2, b"stale", rows(9), false), 1).await;
    assert!(
        matches!(stale, Err(StoreError::VersionConflict { .. })),
        "{stale:?}"
    );
    assert!(find(9).await.is_empty());
    assert!(
        find(1).await.is_empty(),
        "the old version's index rows are gone"
    );
    assert_eq!(find(2).await, [("h1".to_owned(), 2)]);
    let current = store.read_current(p, "h1").await.unwrap().unwrap();
    assert_eq!(
        (current.version, current.body.as_slice()),
        (2, b"two".as_slice())
    );
    let first = store.read_version(p, "h1", 1).await.unwrap().unwrap();
    assert_eq!(first.body, b"one");
    assert!(store.read_version(p, "h1", 7).await.unwrap().is_none());
    // A deletion marker: no body, no index rows; the history keeps everything.
    store
        .update(next(3, b"", IndexRows::default(), true), 2)
        .await
        .unwrap();
    assert!(find(2).await.is_empty());
    let deleted = store.read_current(p, "h1").await.unwrap().unwrap();
    assert!(deleted.deleted && deleted.body.is_empty());
    let history = store.history(p, "h1", None, 10).await.unwrap();
    assert_eq!(
        history
            .iter()
            .map(|v| (v.version, v.deleted))
            .collect::<Vec<_>>(),
        [(3, true), (2, false), (1, false)]
    );
    let recent = store.history(p, "h1", Some(at(2)), 10).await.unwrap();
    assert_eq!(recent.iter().map(|v| v.version).collect::<Vec<_>>(), [3, 2]);
    assert_eq!(store.history(p, "h1", None, 1).await.unwrap().len(), 1);
    assert!(
        store
            .history(p, "nobody", None, 10)
            .await
            .unwrap()
            .is_empty()
    );
    // Updating after a delete brings it back.
    store
        .update(next(4, b"four", rows(4), false), 3)
        .await
        .unwrap();
    assert_eq!(find(4).await, [("h1".to_owned(), 4)]);
    let missing = store
        .update(next(2, b"x", rows(5), false).with_id("never"), 1)
        .await;
    assert!(
        matches!(missing, Err(StoreError::VersionConflict { .. })),
        "{missing:?}"
    );
}

trait WithId {
    fn with_id(self, id: &str) -> Self;
}

impl WithId for NewVersion {
    fn with_id(mut self, id: &str) -> Self {
        self.id = id.to_owned();
        self
    }
}

async fn type_and_system_history_page_newest_first(store: &dyn ResourceStore) {
    // A type no other contract check writes, so the counts are exact.
    let practitioner = ResourceType::parse("Practitioner").unwrap();
    let at = |minute: i64| datetime!(2030-01-01 10:00:00 UTC) + time::Duration::minutes(minute);
    for (n, minute) in [(0, 1), (1, 2), (2, 2), (3, 3)] {
        let mut version = version(practitioner, &format!("pr{n}"), b"x");
        version.last_updated = at(minute);
        store.create(version).await.unwrap();
    }
    let mut update = version(practitioner, "pr0", b"y");
    update.version = 2;
    update.last_updated = at(4);
    update.new_key = None;
    store.update(update, 1).await.unwrap();
    let key = |v: &crate::SealedVersion| (v.id.clone(), v.version);
    let all = store
        .history_all(Some(practitioner), None, None, 100)
        .await
        .unwrap();
    assert_eq!(
        all.iter().map(key).collect::<Vec<_>>(),
        [
            ("pr0".to_owned(), 2),
            ("pr3".to_owned(), 1),
            ("pr2".to_owned(), 1),
            ("pr1".to_owned(), 1),
            ("pr0".to_owned(), 1)
        ]
    );
    // Paging by position visits each version once, in the same order.
    let mut seen = Vec::new();
    let mut after: Option<crate::HistoryPosition> = None;
    loop {
        let page = store
            .history_all(Some(practitioner), None, after.as_ref(), 2)
            .await
            .unwrap();
        let Some(last) = page.last() else { break };
        after = Some(crate::HistoryPosition::of(last));
        seen.extend(page.iter().map(key));
    }
    assert_eq!(seen, all.iter().map(key).collect::<Vec<_>>());
    let recent = store
        .history_all(Some(practitioner), Some(at(3)), None, 100)
        .await
        .unwrap();
    assert_eq!(recent.len(), 2);
    // System history includes every type, newest first.
    let system = store
        .history_all(None, Some(at(1)), None, 100)
        .await
        .unwrap();
    assert!(system.len() >= 5);
    assert!(
        system
            .windows(2)
            .all(|w| w[0].last_updated >= w[1].last_updated)
    );
}

async fn a_conditional_claim_admits_one_create_until_the_resource_changes(
    store: &dyn ResourceStore,
) {
    let p = ResourceType::PATIENT;
    let claimed = |id: &str| NewVersion {
        claim: Some(BlindToken([0xC1; 8])),
        ..version(p, id, b"x")
    };
    store.create(claimed("c-first")).await.unwrap();
    let second = store.create(claimed("c-second")).await;
    assert!(
        matches!(second, Err(StoreError::ClaimTaken { .. })),
        "{second:?}"
    );
    assert!(
        store.read_current(p, "c-second").await.unwrap().is_none(),
        "nothing written"
    );
    // Same claim, other type: independent.
    let observation = ResourceType::parse("Observation").unwrap();
    store
        .create(NewVersion {
            claim: Some(BlindToken([0xC1; 8])),
            ..version(observation, "c-obs", b"x")
        })
        .await
        .unwrap();
    // An update keeps the claim; a deletion releases it; release_claim frees a stale one.
    let mut update = version(p, "c-first", b"y");
    update.version = 2;
    update.new_key = None;
    store.update(update, 1).await.unwrap();
    assert!(matches!(
        store.create(claimed("c-third")).await,
        Err(StoreError::ClaimTaken { .. })
    ));
    let claim = BlindToken([0xC1; 8]);
    assert_eq!(
        store.claim_holder(p, claim).await.unwrap().as_deref(),
        Some("c-first")
    );
    store.release_claim(p, claim, "someone-else").await.unwrap();
    assert_eq!(
        store.claim_holder(p, claim).await.unwrap().as_deref(),
        Some("c-first")
    );
    store.release_claim(p, claim, "c-first").await.unwrap();
    store.create(claimed("c-third")).await.unwrap();
    let mut deletion = version(p, "c-third", b"");
    deletion.version = 2;
    deletion.deleted = true;
    deletion.new_key = None;
    store.update(deletion, 1).await.unwrap();
    assert!(store.claim_holder(p, claim).await.unwrap().is_none());
    store.create(claimed("c-fourth")).await.unwrap();
}
