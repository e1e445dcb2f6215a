#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use time::macros::datetime;

use super::*;

fn index() -> BlindIndex {
    BlindIndex::new(&Keyring::generate(datetime!(2026-01-01 0:00 UTC)).unwrap())
}

fn phi(value: &str) -> Phi<String> {
    Phi::new(value.to_owned())
}

#[test]
fn folding_ignores_case_accents_and_punctuation() {
    assert_eq!(fold("  Ríos-GARCÍA,  José "), "rios garcia jose");
    assert_eq!(fold("O'Brien"), "obrien");
    assert_eq!(fold("Ǆemal"), "dzemal");
    assert_eq!(normalize_telecom("+1 (555) 010-9999"), "+15550109999");
    assert_eq!(normalize_telecom("Ann@Example.ORG"), "ann@exampleorg");
}

#[test]
fn string_search_is_a_folded_starts_with_on_the_value_only_unless_words_are_asked_for() {
    let key = index().key("Patient.family");
    let terms = key.string_terms(&phi("van der Müller"), false);
    for query in ["van", "VAN D", "van der mu", "Van der Müller"] {
        let token = key.string_query(query).unwrap();
        assert!(terms.contains(&token), "{query} should match");
    }
    for query in ["der", "mul", "muller", "vander"] {
        let token = key.string_query(query).unwrap();
        assert!(!terms.contains(&token), "{query} should not match");
    }
}

#[test]
fn string_search_is_a_folded_starts_with_on_the_value_and_each_word() {
    let key = index().key("Patient.name");
    let terms = key.string_terms(&phi("van der Müller"), true);
    for query in [
        "van",
        "VAN D",
        "van der mu",
        "Van der Müller",
        "mul",
        "MÜLLER",
        "der",
    ] {
        let token = key.string_query(query).unwrap();
        assert!(terms.contains(&token), "{query} should match");
    }
    for query in ["muller x", "vander", "ull", "smith"] {
        let token = key.string_query(query).unwrap();
        assert!(!terms.contains(&token), "{query} should not match");
    }
    assert_eq!(key.string_query("mu"), Err(BlindQueryError::PrefixTooShort));
    assert_eq!(key.string_query(" - "), Err(BlindQueryError::Empty));
    assert!(terms.contains(&key.exact_query("van der Müller")));
    assert!(!terms.contains(&key.exact_query("van der muller")));
}

#[test]
fn purposes_have_unrelated_keys() {
    let blind = index();
    let name = blind.key("Patient.name").string_query("smith").unwrap();
    let family = blind.key("Patient.family").string_query("smith").unwrap();
    assert_ne!(name, family);
    assert_eq!(
        name,
        blind.key("Patient.name").string_query("SMITH").unwrap()
    );
    let other_keyring = index();
    assert_ne!(
        name,
        other_keyring
            .key("Patient.name")
            .string_query("smith")
            .unwrap()
    );
}

#[test]
fn token_terms_answer_each_fhir_token_form() {
    let key = index().key("Patient.identifier");
    let with_system = key.token_terms(Some("urn:mrn"), &phi("12345"));
    let without_system = key.token_terms(None, &phi("777"));
    assert!(with_system.contains(&key.token_query(Some("urn:mrn"), Some("12345"))));
    assert!(with_system.contains(&key.token_query(None, Some("12345"))));
    assert!(with_system.contains(&key.token_query(Some("urn:mrn"), None)));
    assert!(!with_system.contains(&key.token_query(Some(""), Some("12345"))));
    assert!(!with_system.contains(&key.token_query(Some("urn:other"), Some("12345"))));
    // `|777` asks for an identifier without a system.
    assert!(without_system.contains(&key.token_query(Some(""), Some("777"))));
    assert!(without_system.contains(&key.token_query(None, Some("777"))));
}

#[test]
fn date_buckets_follow_fhir_precision() {
    let key = index().key("Patient.birthdate");
    let full = key.date_terms(&phi("1970-03-14"));
    let month = key.date_terms(&phi("1970-03"));
    for query in ["1970", "1970-03", "1970-03-14"] {
        assert!(full.contains(&key.date_query(query).unwrap()), "{query}");
    }
    assert!(month.contains(&key.date_query("1970").unwrap()));
    assert!(month.contains(&key.date_query("1970-03").unwrap()));
    assert!(!month.contains(&key.date_query("1970-03-14").unwrap()));
    assert!(!full.contains(&key.date_query("1971").unwrap()));
    for bad in ["70", "1970-3", "1970-03-14T00:00:00Z", "19700314", "abcd"] {
        assert_eq!(key.date_query(bad), Err(BlindQueryError::NotADate), "{bad}");
    }
}
