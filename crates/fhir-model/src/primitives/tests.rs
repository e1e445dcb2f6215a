use super::*;

fn check<T: From<String>>(valid: impl Fn(&T) -> bool, cases: &[(&str, bool)]) {
    for (input, expected) in cases {
        assert_eq!(valid(&T::from((*input).to_owned())), *expected, "{input:?}");
    }
}

#[test]
fn dates() {
    check(
        Date::is_valid,
        &[
            ("1970", true),
            ("1970-03", true),
            ("1970-03-14", true),
            ("2024-02-29", true),
            ("2023-02-29", false),
            ("1970-13", false),
            ("1970-3-14", false),
            ("0000", false),
            ("70", false),
            ("1970-03-14T10:00:00Z", false),
            ("", false),
        ],
    );
}

#[test]
fn date_times() {
    check(
        DateTime::is_valid,
        &[
            ("2021", true),
            ("2021-04-01", true),
            ("2021-04-01T10:30:00Z", true),
            ("2021-04-01T10:30:00.123+02:00", true),
            ("2021-04-01T10:30:00-05:00", true),
            ("2021-04-01T10:30Z", false),
            ("2021-04-01T10:30:00", false),
            ("2021-04-01T24:00:00Z", false),
            ("2021-04-01T10:30:00.Z", false),
            ("2021-04-01 10:30:00Z", false),
        ],
    );
}

#[test]
fn instants() {
    check(
        Instant::is_valid,
        &[
            ("2021-04-01T10:30:00Z", true),
            ("2021-04-01T10:30:00.000001+00:00", true),
            ("2021-04-01", false),
            ("2021", false),
        ],
    );
}

#[test]
fn ids_codes_uris() {
    check(
        Id::is_valid,
        &[
            ("abc-123.x", true),
            ("a_b", false),
            ("", false),
            (&"x".repeat(64), true),
            (&"x".repeat(65), false),
        ],
    );
    check(
        Code::is_valid,
        &[
            ("completed", true),
            ("two words", true),
            (" lead", false),
            ("trail ", false),
            ("two  spaces", false),
        ],
    );
    check(
        Uri::is_valid,
        &[
            ("http://x.org/a", true),
            ("urn:oid:1.2", true),
            ("a b", false),
        ],
    );
}

#[test]
fn base64() {
    check(
        Base64Binary::is_valid,
        &[
            ("aGVsbG8=", true),
            ("aGVsbA==", true),
            ("aGVs bG8h", true),
            ("abc", false),
            ("a*==", false),
        ],
    );
}
