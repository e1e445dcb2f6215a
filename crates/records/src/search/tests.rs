#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use phi_crypto::Keyring;
use time::macros::datetime;

use super::*;

fn params(pairs: &[(&str, String)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(n, v)| ((*n).to_owned(), v.clone()))
        .collect()
}

fn parsed(pairs: &[(&str, String)]) -> Result<SearchQuery, SearchError> {
    let blind = BlindIndex::new(&Keyring::generate(datetime!(2026-01-01 0:00 UTC)).unwrap());
    parse(
        ResourceType::PATIENT,
        &params(pairs),
        &blind,
        datetime!(2026-06-01 0:00 UTC),
    )
}

#[test]
fn past_twenty_filtering_parameters_a_search_is_refused_naming_the_limit() {
    let twenty: Vec<(&str, String)> = (0..20).map(|i| ("family", format!("fam{i}"))).collect();
    assert_eq!(parsed(&twenty).unwrap().clauses.len(), 20);
    let many: Vec<(&str, String)> = (0..300).map(|_| ("family", "smith".to_owned())).collect();
    let err = parsed(&many).unwrap_err();
    assert!(err.reason.contains("at most 20"), "{err}");
    assert!(err.reason.contains("has 300"), "{err}");
    // Shaping and paging are not filters.
    let mut shaped = twenty.clone();
    shaped.extend([
        ("_count", "5".to_owned()),
        ("_sort", "-_lastUpdated".to_owned()),
    ]);
    parsed(&shaped).unwrap();
}

#[test]
fn past_a_thousand_values_a_search_is_refused() {
    let ids: Vec<String> = (0..1001).map(|i| format!("id{i}")).collect();
    let err = parsed(&[("_id", ids.join(","))]).unwrap_err();
    assert!(err.reason.contains("at most 1000 values"), "{err}");
    assert!(parsed(&[("_id", ids[..1000].join(","))]).is_ok());
}

#[test]
fn a_repeated_clause_is_asked_once() {
    let query = parsed(&[
        ("family", "smith".to_owned()),
        ("family", "smith".to_owned()),
        ("gender", "female".to_owned()),
        ("family", "jones".to_owned()),
    ])
    .unwrap();
    assert_eq!(query.clauses.len(), 3);
}

#[test]
fn past_ten_includes_a_search_is_refused() {
    let includes: Vec<(&str, String)> = (0..11)
        .map(|_| ("_revinclude", "Immunization:patient".to_owned()))
        .collect();
    assert!(parsed(&includes).unwrap_err().reason.contains("at most 10"));
}
