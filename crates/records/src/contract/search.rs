//! The contract's search checks added with R4's date rules and modifiers: instants compared as
//! instants whatever offset they carry, precision to the microsecond, sorted paging that
//! repeats and skips nothing, `:not`, `_has`, string matching, and index replacement.

use fhir_model::ResourceType;
use time::macros::datetime;
use time::{Duration, OffsetDateTime};

use super::{indexed, version};
use crate::index::{
    Clause, DateComparator, DateMatch, DateRow, INDEX_GENERATION, IndexRows, Order, Position,
    ReferenceRow, SearchQuery, SortKey, StringMatch, StringRow, TokenMatch, TokenRow,
};
use crate::ports::ResourceStore;

fn dated(
    resource_type: ResourceType,
    id: &str,
    low: OffsetDateTime,
    width: Duration,
) -> crate::NewVersion {
    crate::NewVersion {
        resource_type,
        index: IndexRows {
            dates: vec![DateRow {
                param: "date",
                low,
                high: low + width,
            }],
            ..IndexRows::default()
        },
        ..version(resource_type, id, b"x")
    }
}

async fn ids(store: &dyn ResourceStore, query: SearchQuery) -> Vec<String> {
    store
        .search(&query)
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.version.id)
        .collect()
}

fn query(resource_type: ResourceType, clauses: Vec<Clause>) -> SearchQuery {
    SearchQuery {
        resource_type,
        clauses,
        order: Order::default(),
        after: None,
        limit: 100,
    }
}

fn date(comparator: DateComparator, low: OffsetDateTime, high: OffsetDateTime) -> Clause {
    Clause::Date {
        param: "date",
        any_of: vec![DateMatch {
            comparator,
            low,
            high,
        }],
    }
}

/// Every page of a search sorted by a date, each after the last one's position: (sort value,
/// id) in the order the pages gave them.
async fn walk_sorted(
    store: &dyn ResourceStore,
    query: SearchQuery,
) -> Vec<(OffsetDateTime, String)> {
    let mut walked = Vec::new();
    let mut after = None;
    loop {
        let page = store
            .search(&SearchQuery {
                after: after.take(),
                ..query.clone()
            })
            .await
            .unwrap();
        let Some(last) = page.last() else { break };
        after = Some(Position {
            value: last.sort_value,
            id: last.version.id.clone(),
        });
        walked.extend(
            page.into_iter()
                .map(|m| (m.sort_value.unwrap(), m.version.id)),
        );
    }
    walked
}

/// Dates stored with offsets east and west of UTC and fractions of a second compare as the
/// instants they are, and sort so.
pub(super) async fn dates_compare_as_instants_whatever_their_offset(store: &dyn ResourceStore) {
    let procedure = ResourceType::parse("Condition").unwrap();
    let second = Duration::SECOND;
    // Created out of order; their instants, earliest first: east, west, day, tenth, milli.
    for version in [
        // 2021-03-20 22:00:00.123 UTC, a millisecond wide.
        dated(
            procedure,
            "p-milli",
            datetime!(2021-03-20 17:00:00.123 -05:00),
            Duration::MILLISECOND,
        ),
        // 2021-03-01 01:30 UTC: 28 February in New York.
        dated(
            procedure,
            "p-west",
            datetime!(2021-02-28 20:30:00 -05:00),
            second,
        ),
        // 2021-02-28 23:30 UTC: 1 March in Kolkata.
        dated(
            procedure,
            "p-east",
            datetime!(2021-03-01 05:00:00 +05:30),
            second,
        ),
        // 2021-03-20 22:00:00.1 UTC, a tenth of a second wide.
        dated(
            procedure,
            "p-tenth",
            datetime!(2021-03-20 22:00:00.1 UTC),
            Duration::milliseconds(100),
        ),
        dated(
            procedure,
            "p-day",
            datetime!(2021-03-20 0:00 UTC),
            Duration::DAY,
        ),
    ] {
        store.create(version).await.unwrap();
    }
    let march = (
        datetime!(2021-03-01 0:00 UTC),
        datetime!(2021-04-01 0:00 UTC),
    );
    let sorted = |mut found: Vec<String>| {
        found.sort();
        found
    };
    assert_eq!(
        sorted(
            ids(
                store,
                query(procedure, vec![date(DateComparator::Eq, march.0, march.1)])
            )
            .await
        ),
        ["p-day", "p-milli", "p-tenth", "p-west"]
    );
    assert_eq!(
        ids(
            store,
            query(procedure, vec![date(DateComparator::Lt, march.0, march.1)])
        )
        .await,
        ["p-east"]
    );
    // The second 22:00:00 UTC holds the tenth and the millisecond (written at 17:00 -05:00).
    let at_22 = (
        datetime!(2021-03-20 22:00 UTC),
        datetime!(2021-03-20 22:00:01 UTC),
    );
    assert_eq!(
        sorted(
            ids(
                store,
                query(procedure, vec![date(DateComparator::Eq, at_22.0, at_22.1)])
            )
            .await
        ),
        ["p-milli", "p-tenth"]
    );
    // After the tenth's end (.2): only the day reaches past it; .1 < .123 in time.
    let tenth_end = datetime!(2021-03-20 22:00:00.2 UTC);
    assert_eq!(
        sorted(
            ids(
                store,
                query(
                    procedure,
                    vec![date(
                        DateComparator::Gt,
                        datetime!(2021-03-20 22:00:00.1 UTC),
                        tenth_end
                    )]
                )
            )
            .await
        ),
        ["p-day"]
    );
    assert_eq!(
        sorted(
            ids(
                store,
                query(
                    procedure,
                    vec![date(
                        DateComparator::Sa,
                        datetime!(2021-03-20 22:00:00.1 UTC),
                        datetime!(2021-03-20 22:00:00.12 UTC)
                    )]
                )
            )
            .await
        ),
        ["p-milli"]
    );
    assert_eq!(
        sorted(
            ids(
                store,
                query(procedure, vec![date(DateComparator::Eb, march.0, march.1)])
            )
            .await
        ),
        ["p-east"]
    );
    assert_eq!(
        sorted(
            ids(
                store,
                query(procedure, vec![date(DateComparator::Ne, march.0, march.1)])
            )
            .await
        ),
        ["p-east"]
    );
    // Sorted by date both ways, a page of one at a time, from either end.
    let order = ["p-east", "p-west", "p-day", "p-tenth", "p-milli"];
    for descending in [false, true] {
        let key = if descending {
            SortKey::DateHigh("date")
        } else {
            SortKey::DateLow("date")
        };
        let mut after = None;
        let mut walked = Vec::new();
        loop {
            let page = store
                .search(&SearchQuery {
                    resource_type: procedure,
                    clauses: vec![],
                    order: Order { key, descending },
                    after: after.take(),
                    limit: 1,
                })
                .await
                .unwrap();
            let Some(last) = page.last() else { break };
            after = Some(Position {
                value: last.sort_value,
                id: last.version.id.clone(),
            });
            walked.extend(page.into_iter().map(|m| m.version.id));
            assert!(walked.len() <= order.len(), "paging repeats: {walked:?}");
        }
        let mut expected: Vec<&str> = order.to_vec();
        if descending {
            // By the latest end: the day ends on 21 March, the tenth at .2, the milli at .124.
            expected = vec!["p-day", "p-tenth", "p-milli", "p-west", "p-east"];
        }
        assert_eq!(walked, expected, "descending: {descending}");
    }
}

/// `_lastUpdated` compares to the microsecond, whatever offset the time was given in.
pub(super) async fn last_updated_compares_to_the_microsecond(store: &dyn ResourceStore) {
    let specimen = ResourceType::parse("Specimen").unwrap();
    let base = datetime!(2026-11-22 10:00:00 UTC);
    let times = [
        ("s-0", base),
        ("s-1", base + Duration::microseconds(120_000)),
        ("s-2", base + Duration::microseconds(123_000)),
        ("s-3", base + Duration::microseconds(123_456)),
        ("s-4", base + Duration::SECOND),
    ];
    for (id, at) in times {
        let mut v = version(specimen, id, b"x");
        // Written in another offset: the store keeps the instant.
        v.last_updated = at.to_offset(time::macros::offset!(-05:00));
        store.create(v).await.unwrap();
    }
    let updated = |comparator, low: OffsetDateTime, high: OffsetDateTime| {
        Clause::LastUpdated(vec![DateMatch {
            comparator,
            low,
            high,
        }])
    };
    for (id, at) in times {
        let exact = updated(DateComparator::Eq, at, at + Duration::MICROSECOND);
        assert_eq!(ids(store, query(specimen, vec![exact])).await, [id]);
    }
    let third = times[3].1;
    let after_third = updated(DateComparator::Gt, third, third + Duration::MICROSECOND);
    assert_eq!(
        ids(store, query(specimen, vec![after_third])).await,
        ["s-4"]
    );
    let from_second = updated(
        DateComparator::Ge,
        times[2].1,
        times[2].1 + Duration::MICROSECOND,
    );
    assert_eq!(
        ids(store, query(specimen, vec![from_second])).await,
        ["s-2", "s-3", "s-4"]
    );
    // The millisecond .123 holds .123000 and .123456.
    let milli = updated(
        DateComparator::Eq,
        base + Duration::milliseconds(123),
        base + Duration::milliseconds(124),
    );
    assert_eq!(
        ids(store, query(specimen, vec![milli])).await,
        ["s-2", "s-3"]
    );
    let before = updated(
        DateComparator::Lt,
        times[1].1,
        times[1].1 + Duration::MICROSECOND,
    );
    assert_eq!(ids(store, query(specimen, vec![before])).await, ["s-0"]);
}

/// Many resources whose dates carry different offsets page by date with no resource twice and
/// none left out, both ways.
pub(super) async fn sorted_paging_through_mixed_offsets_is_exact(store: &dyn ResourceStore) {
    let encounter = ResourceType::parse("Encounter").unwrap();
    let offsets = [
        time::macros::offset!(UTC),
        time::macros::offset!(-05:00),
        time::macros::offset!(-04:00),
        time::macros::offset!(+05:30),
        time::macros::offset!(+14:00),
        time::macros::offset!(-12:00),
    ];
    let count = 120;
    for n in 0..count {
        // Seven minutes apart, some on the same instant (n and n + 60 share one), written in
        // rotating offsets, with fractions now and then.
        let at = datetime!(2021-03-01 0:00 UTC)
            + Duration::minutes(7 * (n % 60))
            + Duration::microseconds(if n % 4 == 0 { 120_000 } else { 0 });
        let at = at.to_offset(offsets[usize::try_from(n).unwrap() % offsets.len()]);
        store
            .create(dated(encounter, &format!("e-{n:03}"), at, Duration::SECOND))
            .await
            .unwrap();
    }
    for descending in [false, true] {
        let key = if descending {
            SortKey::DateHigh("date")
        } else {
            SortKey::DateLow("date")
        };
        let walked = walk_sorted(
            store,
            SearchQuery {
                resource_type: encounter,
                clauses: vec![],
                order: Order { key, descending },
                after: None,
                limit: 7,
            },
        )
        .await;
        let mut expected = walked.clone();
        expected.sort();
        if descending {
            expected.reverse();
        }
        assert_eq!(
            walked.len(),
            usize::try_from(count).unwrap(),
            "descending: {descending}"
        );
        assert_eq!(walked, expected, "descending: {descending}");
    }
}

/// `:not`, `_has`, and the three ways of matching folded text.
pub(super) async fn negation_reverse_chains_and_string_matches(store: &dyn ResourceStore) {
    let patient = ResourceType::PATIENT;
    let immunization = ResourceType::IMMUNIZATION;
    for id in ["h-p1", "h-p2", "h-p3"] {
        store.create(version(patient, id, b"x")).await.unwrap();
    }
    // Other checks store Patients and Immunizations too: look at this check's only.
    let mine = |query| async move {
        let mut found = ids(store, query).await;
        found.retain(|id| id.starts_with("h-"));
        found
    };
    let dose = |id: &str, patient_id: &str, code: &str, text: &str, lot: &str| {
        indexed(
            id,
            "system",
            IndexRows {
                tokens: vec![TokenRow {
                    param: "vaccine-code",
                    system: Some("http://hl7.org/fhir/sid/cvx".into()),
                    code: code.into(),
                }],
                references: vec![ReferenceRow {
                    param: "patient",
                    target_type: "Patient".into(),
                    target_id: patient_id.into(),
                }],
                strings: vec![
                    StringRow {
                        param: "vaccine-code",
                        folded: text.into(),
                    },
                    StringRow {
                        param: "lot-number",
                        folded: lot.into(),
                    },
                ],
                ..IndexRows::default()
            },
        )
    };
    store
        .create(dose("h-i1", "h-p1", "208", "covid 19 mrna", "ab 123"))
        .await
        .unwrap();
    store
        .create(dose("h-i2", "h-p2", "140", "influenza seasonal", "xab9"))
        .await
        .unwrap();
    store
        .create(indexed("h-i3", "system", IndexRows::default()))
        .await
        .unwrap();
    let code = |c: &str| Clause::Token {
        param: "vaccine-code",
        any_of: vec![TokenMatch {
            system: None,
            code: Some(c.into()),
        }],
    };
    assert_eq!(
        mine(query(
            immunization,
            vec![Clause::Not(Box::new(code("208")))]
        ))
        .await,
        ["h-i2", "h-i3"],
        ":not keeps those without a value"
    );
    let has = |inner| Clause::Has {
        source_type: immunization,
        param: "patient",
        inner: Box::new(inner),
    };
    assert_eq!(mine(query(patient, vec![has(code("208"))])).await, ["h-p1"]);
    assert_eq!(
        mine(query(
            patient,
            vec![Clause::Not(Box::new(has(code("208"))))]
        ))
        .await,
        ["h-p2", "h-p3"]
    );
    let text = |param: &'static str, how, value: &str| Clause::String {
        param,
        any_of: vec![value.into()],
        how,
    };
    let cases = [
        (text("lot-number", StringMatch::Start, "ab"), vec!["h-i1"]),
        (
            text("lot-number", StringMatch::Contains, "ab"),
            vec!["h-i1", "h-i2"],
        ),
        (
            text("lot-number", StringMatch::Contains, "b 1"),
            vec!["h-i1"],
        ),
        (
            text("vaccine-code", StringMatch::WordStart, "mrn"),
            vec!["h-i1"],
        ),
        (
            text("vaccine-code", StringMatch::WordStart, "seas"),
            vec!["h-i2"],
        ),
        (
            text("vaccine-code", StringMatch::WordStart, "eason"),
            vec![],
        ),
        // LIKE's wildcards in the text are matched literally.
        (text("lot-number", StringMatch::Contains, "%"), vec![]),
        (text("lot-number", StringMatch::Start, "_b"), vec![]),
    ];
    for (clause, expected) in cases {
        let described = format!("{clause:?}");
        assert_eq!(
            mine(query(immunization, vec![clause])).await,
            expected,
            "{described}"
        );
    }
}

/// Index rows are replaced only on the version they were made from; the generation is kept.
pub(super) async fn index_rows_are_replaced_on_the_current_version_only(store: &dyn ResourceStore) {
    let media = ResourceType::parse("Media").unwrap();
    let token = |code: &str| IndexRows {
        tokens: vec![TokenRow {
            param: "status",
            system: None,
            code: code.into(),
        }],
        ..IndexRows::default()
    };
    let status = |code: &str| Clause::Token {
        param: "status",
        any_of: vec![TokenMatch {
            system: None,
            code: Some(code.into()),
        }],
    };
    store
        .create(crate::NewVersion {
            index: token("old"),
            ..version(media, "m-1", b"x")
        })
        .await
        .unwrap();
    assert!(
        store
            .replace_index(media, "m-1", 1, token("new"))
            .await
            .unwrap()
    );
    assert_eq!(ids(store, query(media, vec![status("new")])).await, ["m-1"]);
    assert!(
        ids(store, query(media, vec![status("old")]))
            .await
            .is_empty()
    );
    // A version that is no longer current, and a resource that does not exist, are left.
    assert!(
        !store
            .replace_index(media, "m-1", 2, token("other"))
            .await
            .unwrap()
    );
    assert!(
        !store
            .replace_index(media, "m-none", 1, token("other"))
            .await
            .unwrap()
    );
    assert!(
        ids(store, query(media, vec![status("other")]))
            .await
            .is_empty()
    );
    let before = store.index_generation().await.unwrap();
    assert!(before >= 1);
    store.set_index_generation(INDEX_GENERATION).await.unwrap();
    assert_eq!(store.index_generation().await.unwrap(), INDEX_GENERATION);
}

/// Searches with several index clauses (a blind token, a code, a date, a string) give exactly
/// the resources every clause holds for, once each, alongside other clauses, counted, and
/// paged in id order both ways and in date order without repeats or gaps.
pub(super) async fn compound_searches_match_every_clause_and_page_exactly(
    store: &dyn ResourceStore,
) {
    let practitioner = ResourceType::parse("Practitioner").unwrap();
    let blind = |n: u8| phi_crypto::BlindToken([n; 8]);
    let start = datetime!(2022-01-01 0:00 UTC);
    let count: u8 = 48;
    for n in 0..count {
        let mut index = IndexRows {
            // Two tokens for some, so that a search for both must not repeat them.
            blind: vec![
                crate::index::BlindRow {
                    param: "c-name",
                    token: blind(n % 2),
                },
                crate::index::BlindRow {
                    param: "c-other",
                    token: blind(10 + n % 3),
                },
            ],
            tokens: vec![TokenRow {
                param: "c-code",
                system: None,
                code: format!("{}", n % 3),
            }],
            dates: vec![DateRow {
                param: "date",
                low: start + Duration::days(i64::from(n % 5)),
                high: start + Duration::days(i64::from(n % 5) + 1),
            }],
            strings: vec![StringRow {
                param: "c-text",
                folded: if n % 4 == 0 {
                    "alpha".into()
                } else {
                    "beta".into()
                },
            }],
            ..IndexRows::default()
        };
        if n % 6 == 0 {
            index.blind.push(crate::index::BlindRow {
                param: "c-name",
                token: blind(7),
            });
        }
        let owner = if n % 2 == 0 {
            "Patient/c-even"
        } else {
            "system"
        };
        store
            .create(crate::NewVersion {
                resource_type: practitioner,
                index,
                ..super::owned_version(practitioner, &format!("c-{n:02}"), b"x", owner)
            })
            .await
            .unwrap();
    }
    let name = |tokens: &[u8]| Clause::Blind {
        param: "c-name",
        any_of: tokens.iter().map(|t| blind(*t)).collect(),
    };
    let other = |t: u8| Clause::Blind {
        param: "c-other",
        any_of: vec![blind(10 + t)],
    };
    let code = |c: &str| Clause::Token {
        param: "c-code",
        any_of: vec![TokenMatch {
            system: None,
            code: Some(c.into()),
        }],
    };
    let on_day = |day: i64| {
        let low = start + Duration::days(day);
        date(DateComparator::Eq, low, low + Duration::days(1))
    };
    let text = |t: &str| Clause::String {
        param: "c-text",
        any_of: vec![t.into()],
        how: StringMatch::Start,
    };
    let expect = |keep: &dyn Fn(u8) -> bool| -> Vec<String> {
        (0..count)
            .filter(|n| keep(*n))
            .map(|n| format!("c-{n:02}"))
            .collect()
    };
    let cases: Vec<(Vec<Clause>, Vec<String>)> = vec![
        (
            vec![name(&[0]), code("0")],
            expect(&|n| n % 2 == 0 && n % 3 == 0),
        ),
        (
            vec![name(&[0, 7]), code("0")],
            expect(&|n| n % 2 == 0 && n % 3 == 0),
        ),
        (
            vec![name(&[1]), code("1"), on_day(2)],
            expect(&|n| n % 2 == 1 && n % 3 == 1 && n % 5 == 2),
        ),
        (
            vec![code("2"), text("alp"), on_day(0)],
            expect(&|n| n % 3 == 2 && n % 4 == 0 && n % 5 == 0),
        ),
        (
            vec![
                name(&[0, 1]),
                code("0"),
                Clause::Not(Box::new(on_day(3))),
                Clause::Compartment("Patient/c-even".into()),
            ],
            expect(&|n| n % 3 == 0 && n % 5 != 3 && n % 2 == 0),
        ),
        (vec![name(&[7]), code("1")], vec![]),
        // Single-token blind clauses only: joined in the index, counted from it.
        (
            vec![name(&[1]), other(2)],
            expect(&|n| n % 2 == 1 && n % 3 == 2),
        ),
        (
            vec![other(0), name(&[7]), name(&[0])],
            expect(&|n| n % 6 == 0),
        ),
        (vec![other(1)], expect(&|n| n % 3 == 1)),
        (vec![other(1), name(&[7])], vec![]),
    ];
    for (clauses, expected) in cases {
        let described = format!("{clauses:?}");
        let all = query(practitioner, clauses.clone());
        assert_eq!(ids(store, all.clone()).await, expected, "{described}");
        assert_eq!(
            store.count(&all).await.unwrap(),
            u64::try_from(expected.len()).unwrap(),
            "{described}"
        );
        for descending in [false, true] {
            let mut walked = Vec::new();
            let mut after = None;
            loop {
                let page = ids(
                    store,
                    SearchQuery {
                        order: Order {
                            key: SortKey::Id,
                            descending,
                        },
                        after: after.take(),
                        limit: 3,
                        ..all.clone()
                    },
                )
                .await;
                let Some(last) = page.last() else { break };
                after = Some(Position {
                    value: None,
                    id: last.clone(),
                });
                walked.extend(page);
            }
            let mut want = expected.clone();
            if descending {
                want.reverse();
            }
            assert_eq!(walked, want, "{described}, descending: {descending}");
        }
    }
    // By date, then id: a page boundary inside a run of equal dates repeats nothing.
    let by_date = SearchQuery {
        order: Order {
            key: SortKey::DateLow("date"),
            descending: false,
        },
        limit: 2,
        ..query(practitioner, vec![name(&[0]), code("0")])
    };
    let walked = walk_sorted(store, by_date).await;
    let mut expected: Vec<(OffsetDateTime, String)> = (0..count)
        .filter(|n| n % 6 == 0)
        .map(|n| {
            (
                start + Duration::days(i64::from(n % 5)),
                format!("c-{n:02}"),
            )
        })
        .collect();
    expected.sort();
    assert_eq!(walked, expected);
}
