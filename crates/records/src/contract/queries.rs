//! The contract's query checks: every clause kind, `:missing` and `_lastUpdated`, sorting and
//! keyset paging, single-token pages, and chains.

use super::*;

pub(super) async fn search_matches_every_clause_kind(store: &dyn ResourceStore) {
    let imm = ResourceType::IMMUNIZATION;
    let rows = |n: u8| IndexRows {
        blind: vec![BlindRow {
            param: "x-blind",
            token: BlindToken([n; 8]),
        }],
        tokens: vec![TokenRow {
            param: "status",
            system: n.is_multiple_of(2).then(|| "urn:s".to_owned()),
            code: format!("code{}", n % 3),
        }],
        references: vec![ReferenceRow {
            param: "patient",
            target_type: "Patient".into(),
            target_id: format!("p{}", n % 2),
        }],
        dates: vec![DateRow {
            param: "date",
            low: datetime!(2021-01-01 0:00 UTC) + time::Duration::days(i64::from(n)),
            high: datetime!(2021-01-01 0:00 UTC) + time::Duration::days(i64::from(n) + 1),
        }],
        strings: vec![StringRow {
            param: "series",
            folded: format!("series {n}"),
        }],
    };
    for n in 0..6u8 {
        store
            .create(indexed(&format!("s{n}"), "system", rows(n)))
            .await
            .unwrap();
    }
    let ids = |clauses: Vec<Clause>| async move {
        let query = SearchQuery {
            resource_type: imm,
            clauses,
            order: Order::default(),
            after: None,
            limit: 100,
        };
        store
            .search(&query)
            .await
            .unwrap()
            .into_iter()
            .filter(|v| v.version.id.starts_with('s'))
            .map(|v| v.version.id)
            .collect::<Vec<_>>()
    };
    assert_eq!(
        ids(vec![Clause::Blind {
            param: "x-blind",
            any_of: vec![BlindToken([2; 8]), BlindToken([4; 8])]
        }])
        .await,
        ["s2", "s4"]
    );
    assert!(
        ids(vec![Clause::Blind {
            param: "other",
            any_of: vec![BlindToken([2; 8])]
        }])
        .await
        .is_empty()
    );
    let token = |system: Option<Option<&str>>, code: Option<&str>| Clause::Token {
        param: "status",
        any_of: vec![TokenMatch {
            system: system.map(|s| s.map(str::to_owned)),
            code: code.map(str::to_owned),
        }],
    };
    assert_eq!(ids(vec![token(None, Some("code0"))]).await, ["s0", "s3"]);
    assert_eq!(
        ids(vec![token(Some(Some("urn:s")), Some("code0"))]).await,
        ["s0"]
    );
    assert_eq!(ids(vec![token(Some(None), Some("code0"))]).await, ["s3"]);
    assert_eq!(
        ids(vec![token(Some(Some("urn:s")), None)]).await,
        ["s0", "s2", "s4"]
    );
    let reference = |t: Option<&str>, id: &str| Clause::Reference {
        param: "patient",
        any_of: vec![ReferenceMatch {
            target_type: t.map(str::to_owned),
            target_id: id.into(),
        }],
    };
    assert_eq!(
        ids(vec![reference(Some("Patient"), "p1")]).await,
        ["s1", "s3", "s5"]
    );
    assert_eq!(ids(vec![reference(None, "p0")]).await, ["s0", "s2", "s4"]);
    assert!(ids(vec![reference(Some("Group"), "p0")]).await.is_empty());
    let date = |comparator, low, high| Clause::Date {
        param: "date",
        any_of: vec![DateMatch {
            comparator,
            low,
            high,
        }],
    };
    let jan = (
        datetime!(2021-01-01 0:00 UTC),
        datetime!(2021-02-01 0:00 UTC),
    );
    let jan3 = (
        datetime!(2021-01-03 0:00 UTC),
        datetime!(2021-01-04 0:00 UTC),
    );
    assert_eq!(
        ids(vec![date(DateComparator::Eq, jan.0, jan.1)])
            .await
            .len(),
        6
    );
    assert_eq!(
        ids(vec![date(DateComparator::Eq, jan3.0, jan3.1)]).await,
        ["s2"]
    );
    assert_eq!(
        ids(vec![date(DateComparator::Gt, jan3.0, jan3.1)]).await,
        ["s3", "s4", "s5"]
    );
    assert_eq!(
        ids(vec![date(DateComparator::Ge, jan3.0, jan3.1)]).await,
        ["s2", "s3", "s4", "s5"]
    );
    assert_eq!(
        ids(vec![date(DateComparator::Lt, jan3.0, jan3.1)]).await,
        ["s0", "s1"]
    );
    assert_eq!(
        ids(vec![date(DateComparator::Le, jan3.0, jan3.1)]).await,
        ["s0", "s1", "s2"]
    );
    let series = |prefix: &str| Clause::String {
        param: "series",
        any_of: vec![prefix.into()],
        how: crate::index::StringMatch::Start,
    };
    assert_eq!(ids(vec![series("series 4")]).await, ["s4"]);
    assert_eq!(ids(vec![series("seri")]).await.len(), 6);
    assert!(ids(vec![series("eries")]).await.is_empty());
    // Clauses AND together; ids restrict too.
    assert_eq!(
        ids(vec![reference(None, "p0"), token(None, Some("code1"))]).await,
        ["s4"]
    );
    assert_eq!(
        ids(vec![Clause::Id(vec![
            "s1".into(),
            "s5".into(),
            "zz".into()
        ])])
        .await,
        ["s1", "s5"]
    );
    // Keyset paging in id order.
    let page = store
        .search(&SearchQuery {
            resource_type: imm,
            clauses: vec![reference(None, "p1")],
            order: Order::default(),
            after: Some(Position {
                value: None,
                id: "s1".into(),
            }),
            limit: 1,
        })
        .await
        .unwrap();
    assert_eq!(
        page.iter()
            .map(|v| v.version.id.as_str())
            .collect::<Vec<_>>(),
        ["s3"]
    );
    // Wildcard-looking text is matched literally.
    assert!(ids(vec![series("%")]).await.is_empty());
    assert!(ids(vec![series("series _")]).await.is_empty());
}

pub(super) async fn missing_and_last_updated_clauses(store: &dyn ResourceStore) {
    use crate::index::IndexTable;
    let device = ResourceType::parse("Device").unwrap();
    let with_status = NewVersion {
        index: IndexRows {
            tokens: vec![TokenRow {
                param: "status",
                system: None,
                code: "active".into(),
            }],
            ..IndexRows::default()
        },
        ..version(device, "d-with", b"x")
    };
    store.create(with_status).await.unwrap();
    store
        .create(version(device, "d-without", b"x"))
        .await
        .unwrap();
    let ids = |clauses: Vec<Clause>| async move {
        store
            .search(&SearchQuery {
                resource_type: device,
                clauses,
                order: Order::default(),
                after: None,
                limit: 10,
            })
            .await
            .unwrap()
            .into_iter()
            .map(|v| v.version.id)
            .collect::<Vec<_>>()
    };
    let missing = |missing| Clause::Missing {
        param: "status",
        table: IndexTable::Token,
        missing,
    };
    assert_eq!(ids(vec![missing(true)]).await, ["d-without"]);
    let all_devices = SearchQuery {
        resource_type: device,
        clauses: vec![],
        order: Order::default(),
        after: Some(Position {
            value: None,
            id: "d-with".into(),
        }),
        limit: 1,
    };
    assert_eq!(
        store.count(&all_devices).await.unwrap(),
        2,
        "paging does not change the count"
    );
    assert_eq!(ids(vec![missing(false)]).await, ["d-with"]);
    // Both were stored at 2026-11-22T10:00:00.123456Z.
    let day = (
        datetime!(2026-11-22 0:00 UTC),
        datetime!(2026-11-23 0:00 UTC),
    );
    let updated = |comparator| {
        Clause::LastUpdated(vec![DateMatch {
            comparator,
            low: day.0,
            high: day.1,
        }])
    };
    assert_eq!(ids(vec![updated(DateComparator::Eq)]).await.len(), 2);
    assert_eq!(ids(vec![updated(DateComparator::Ge)]).await.len(), 2);
    assert!(ids(vec![updated(DateComparator::Lt)]).await.is_empty());
    assert!(ids(vec![updated(DateComparator::Gt)]).await.is_empty());
    assert_eq!(ids(vec![updated(DateComparator::Le)]).await.len(), 2);
}

pub(super) async fn sorting_by_last_updated_pages_by_time_then_id(store: &dyn ResourceStore) {
    let location = ResourceType::parse("Location").unwrap();
    // Two share a time: the tie goes by id, in the sort's direction.
    for (id, minute) in [("l-a", 3), ("l-b", 1), ("l-c", 2), ("l-d", 2)] {
        let mut v = version(location, id, b"x");
        v.last_updated = datetime!(2027-01-01 10:00 UTC) + time::Duration::minutes(minute);
        store.create(v).await.unwrap();
    }
    let at = |minute: i64| datetime!(2027-01-01 10:00 UTC) + time::Duration::minutes(minute);
    let page = |descending: bool, after: Option<(&'static str, i64)>, limit: u64| async move {
        let query = SearchQuery {
            resource_type: location,
            clauses: vec![],
            order: Order {
                key: SortKey::LastUpdated,
                descending,
            },
            after: after.map(|(id, minute)| Position {
                value: Some(at(minute)),
                id: id.to_owned(),
            }),
            limit,
        };
        let found = store.search(&query).await.unwrap();
        for m in &found {
            assert_eq!(m.sort_value, Some(m.version.last_updated), "the sort value");
        }
        found.into_iter().map(|v| v.version.id).collect::<Vec<_>>()
    };
    assert_eq!(page(false, None, 10).await, ["l-b", "l-c", "l-d", "l-a"]);
    assert_eq!(page(true, None, 10).await, ["l-a", "l-d", "l-c", "l-b"]);
    assert_eq!(page(false, Some(("l-c", 2)), 10).await, ["l-d", "l-a"]);
    assert_eq!(page(true, Some(("l-c", 2)), 10).await, ["l-b"]);
    assert_eq!(page(true, Some(("l-a", 3)), 1).await, ["l-d"]);
}

pub(super) async fn one_token_pages_in_id_order_both_ways(store: &dyn ResourceStore) {
    // A search for one blind token may be answered from the blind index alone (the SQL store
    // does): the same matches, order and paging as any other search.
    let organization = ResourceType::parse("Organization").unwrap();
    let rows = |token: u8| IndexRows {
        blind: vec![BlindRow {
            param: "x-one",
            token: BlindToken([token; 8]),
        }],
        ..IndexRows::default()
    };
    for (id, token) in [("o-c", 1), ("o-a", 1), ("o-e", 1), ("o-b", 2), ("o-d", 1)] {
        store
            .create(NewVersion {
                index: rows(token),
                ..version(organization, id, b"x")
            })
            .await
            .unwrap();
    }
    // o-e is deleted: its index rows go with it.
    store
        .update(
            NewVersion {
                version: 2,
                deleted: true,
                body: Vec::new(),
                new_key: None,
                ..version(organization, "o-e", b"")
            },
            1,
        )
        .await
        .unwrap();
    let page = |descending: bool, after: Option<&'static str>, limit: u64| async move {
        let query = SearchQuery {
            resource_type: organization,
            clauses: vec![Clause::Blind {
                param: "x-one",
                any_of: vec![BlindToken([1; 8])],
            }],
            order: Order {
                key: SortKey::Id,
                descending,
            },
            after: after.map(|id| Position {
                value: None,
                id: id.to_owned(),
            }),
            limit,
        };
        let found = store.search(&query).await.unwrap();
        for m in &found {
            assert_eq!(m.sort_value, None);
            assert!(m.version.key.is_some(), "with its key");
        }
        found.into_iter().map(|m| m.version.id).collect::<Vec<_>>()
    };
    assert_eq!(page(false, None, 10).await, ["o-a", "o-c", "o-d"]);
    assert_eq!(page(false, None, 2).await, ["o-a", "o-c"]);
    assert_eq!(page(false, Some("o-c"), 2).await, ["o-d"]);
    assert_eq!(page(true, None, 2).await, ["o-d", "o-c"]);
    assert_eq!(page(true, Some("o-c"), 2).await, ["o-a"]);
    assert!(page(true, Some("o-a"), 2).await.is_empty());
}

pub(super) async fn sorting_by_a_date_uses_its_extremes_and_puts_the_undated_last(
    store: &dyn ResourceStore,
) {
    let procedure = ResourceType::parse("Procedure").unwrap();
    let day = |d: u8| {
        time::Date::from_calendar_date(2021, time::Month::March, d)
            .unwrap()
            .midnight()
            .assume_utc()
    };
    // p-wide spans the 1st to the 9th; p-mid is the 5th; p-late the 7th; p-none has no date.
    let dated = |id: &str, ranges: &[(u8, u8)]| NewVersion {
        index: IndexRows {
            dates: ranges
                .iter()
                .map(|&(low, high)| DateRow {
                    param: "date",
                    low: day(low),
                    high: day(high),
                })
                .collect(),
            ..IndexRows::default()
        },
        ..version(procedure, id, b"x")
    };
    for v in [
        dated("p-wide", &[(1, 2), (9, 10)]),
        dated("p-mid", &[(5, 6)]),
        dated("p-late", &[(7, 8)]),
        dated("p-none", &[]),
        dated("p-mid2", &[(5, 6)]),
    ] {
        store.create(v).await.unwrap();
    }
    let sorted = |key: SortKey, descending: bool, after: Option<Position>, limit: u64| async move {
        let query = SearchQuery {
            resource_type: procedure,
            clauses: vec![],
            order: Order { key, descending },
            after,
            limit,
        };
        store.search(&query).await.unwrap()
    };
    let ids = |found: &[crate::SearchMatch]| {
        found
            .iter()
            .map(|m| m.version.id.clone())
            .collect::<Vec<_>>()
    };
    let ascending = sorted(SortKey::DateLow("date"), false, None, 10).await;
    assert_eq!(
        ids(&ascending),
        ["p-wide", "p-mid", "p-mid2", "p-late", "p-none"]
    );
    assert_eq!(ascending[0].sort_value, Some(day(1)));
    assert_eq!(
        ascending[4].sort_value,
        SortKey::DateLow("date").missing_value()
    );
    let descending = sorted(SortKey::DateHigh("date"), true, None, 10).await;
    assert_eq!(
        ids(&descending),
        ["p-wide", "p-late", "p-mid2", "p-mid", "p-none"]
    );
    assert_eq!(descending[0].sort_value, Some(day(10)));
    // Paging from a position inside a tie, both ways, and across the undated.
    let after_mid = Some(Position {
        value: Some(day(5)),
        id: "p-mid".into(),
    });
    assert_eq!(
        ids(&sorted(SortKey::DateLow("date"), false, after_mid.clone(), 2).await),
        ["p-mid2", "p-late"]
    );
    assert_eq!(
        ids(&sorted(SortKey::DateLow("date"), true, after_mid, 10).await),
        ["p-wide"]
    );
    let after_late = Some(Position {
        value: Some(day(8)),
        id: "p-late".into(),
    });
    assert_eq!(
        ids(&sorted(SortKey::DateHigh("date"), true, after_late, 10).await),
        ["p-mid2", "p-mid", "p-none"]
    );
}

pub(super) async fn chained_clauses_follow_references_to_live_targets(store: &dyn ResourceStore) {
    let practitioner = ResourceType::parse("PractitionerRole").unwrap();
    let group = ResourceType::parse("Group").unwrap();
    let token = BlindToken([0xAB; 8]);
    let target = |id: &str, tagged: bool| NewVersion {
        index: IndexRows {
            blind: if tagged {
                vec![BlindRow {
                    param: "identifier",
                    token,
                }]
            } else {
                vec![]
            },
            ..IndexRows::default()
        },
        ..version(group, id, b"x")
    };
    store.create(target("ch-p1", true)).await.unwrap();
    store.create(target("ch-p2", false)).await.unwrap();
    for (id, points_at) in [("ch-i1", "ch-p1"), ("ch-i2", "ch-p2"), ("ch-i3", "missing")] {
        let v = NewVersion {
            index: IndexRows {
                references: vec![ReferenceRow {
                    param: "patient",
                    target_type: "Group".into(),
                    target_id: points_at.into(),
                }],
                ..IndexRows::default()
            },
            ..version(practitioner, id, b"x")
        };
        store.create(v).await.unwrap();
    }
    let chained = || SearchQuery {
        resource_type: practitioner,
        clauses: vec![Clause::Chain {
            param: "patient",
            target_type: group,
            inner: Box::new(Clause::Blind {
                param: "identifier",
                any_of: vec![token],
            }),
        }],
        order: Order::default(),
        after: None,
        limit: 10,
    };
    let ids = |found: Vec<crate::SearchMatch>| {
        found.into_iter().map(|v| v.version.id).collect::<Vec<_>>()
    };
    assert_eq!(ids(store.search(&chained()).await.unwrap()), ["ch-i1"]);
    // A deleted target no longer satisfies the chain.
    let mut deletion = version(group, "ch-p1", b"");
    deletion.version = 2;
    deletion.deleted = true;
    deletion.new_key = None;
    store.update(deletion, 1).await.unwrap();
    assert!(store.search(&chained()).await.unwrap().is_empty());
}
