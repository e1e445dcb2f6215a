//! The contract's unit-of-work checks: several versions commit together or not at all.

use fhir_model::ResourceType;

use super::version;
use crate::index::{IndexRows, TokenRow};
use crate::ports::{Changes, ResourceStore, StoreError, Write};

fn tagged(resource_type: ResourceType, id: &str, version_number: u64, tag: &str) -> Write {
    let mut version = version(resource_type, id, tag.as_bytes());
    version.version = version_number;
    version.index = IndexRows {
        tokens: vec![TokenRow {
            param: "status",
            system: None,
            code: tag.into(),
        }],
        ..IndexRows::default()
    };
    Write {
        version,
        expected: version_number.checked_sub(1).filter(|v| *v > 0),
    }
}

async fn current(
    store: &dyn ResourceStore,
    resource_type: ResourceType,
    id: &str,
) -> Option<(u64, Vec<u8>)> {
    store
        .read_current(resource_type, id)
        .await
        .unwrap()
        .map(|v| (v.version, v.body))
}

/// A unit of several writes (creates, and an update of what the unit itself created) lands
/// whole; a unit with one failing write leaves nothing of any of its writes.
pub(super) async fn a_unit_of_work_commits_whole_or_not_at_all(store: &dyn ResourceStore) {
    let basic = ResourceType::parse("Basic").unwrap();
    let whole = Changes {
        writes: vec![
            tagged(basic, "u-a", 1, "a1"),
            tagged(basic, "u-b", 1, "b1"),
            tagged(basic, "u-a", 2, "a2"),
        ],
        audit: vec![super::audit_entry(audit_chain::Action::Create)],
    };
    store.commit(whole).await.unwrap();
    assert_eq!(
        current(store, basic, "u-a").await,
        Some((2, b"a2".to_vec()))
    );
    assert_eq!(
        current(store, basic, "u-b").await,
        Some((1, b"b1".to_vec()))
    );
    assert_eq!(
        store
            .read_version(basic, "u-a", 1)
            .await
            .unwrap()
            .map(|v| v.body),
        Some(b"a1".to_vec())
    );
    // Read back together: each current version once, the missing id absent.
    let ids = ["u-b", "never", "u-a"].map(str::to_owned);
    let mut currents: Vec<_> = store
        .read_currents(basic, &ids)
        .await
        .unwrap()
        .into_iter()
        .map(|v| (v.id, v.version, v.body))
        .collect();
    currents.sort();
    assert_eq!(
        currents,
        [
            ("u-a".to_owned(), 2, b"a2".to_vec()),
            ("u-b".to_owned(), 1, b"b1".to_vec())
        ]
    );
    assert!(store.read_currents(basic, &[]).await.unwrap().is_empty());

    // An update of a version that is not current fails the unit: the create before it and the
    // update after it are not there.
    let stale = Changes {
        writes: vec![
            tagged(basic, "u-c", 1, "c1"),
            tagged(basic, "u-b", 3, "b3"),
            tagged(basic, "u-a", 3, "a3"),
        ],
        audit: Vec::new(),
    };
    assert!(matches!(
        store.commit(stale).await,
        Err(StoreError::VersionConflict { .. })
    ));
    assert_eq!(current(store, basic, "u-c").await, None);
    assert_eq!(
        current(store, basic, "u-a").await,
        Some((2, b"a2".to_vec()))
    );
    assert_eq!(
        current(store, basic, "u-b").await,
        Some((1, b"b1".to_vec()))
    );

    // A create of an id that exists fails the unit the same way.
    let duplicate = Changes {
        writes: vec![
            tagged(basic, "u-d", 1, "d1"),
            tagged(basic, "u-a", 1, "again"),
        ],
        audit: Vec::new(),
    };
    assert!(matches!(
        store.commit(duplicate).await,
        Err(StoreError::AlreadyExists { .. })
    ));
    assert_eq!(current(store, basic, "u-d").await, None);
    assert_eq!(
        current(store, basic, "u-a").await,
        Some((2, b"a2".to_vec()))
    );

    // The index rows are the last write's, of committed units only.
    let status = |code: &str| crate::index::Clause::Token {
        param: "status",
        any_of: vec![crate::index::TokenMatch {
            system: None,
            code: Some(code.into()),
        }],
    };
    for (code, expected) in [("a2", 1), ("a1", 0), ("a3", 0), ("c1", 0), ("d1", 0)] {
        let query = crate::index::SearchQuery {
            resource_type: basic,
            clauses: vec![status(code)],
            order: crate::index::Order::default(),
            after: None,
            limit: 10,
        };
        assert_eq!(store.count(&query).await.unwrap(), expected, "{code}");
    }
}
