#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use time::UtcOffset;
use time::macros::datetime;

use super::*;

fn patient() -> Resource {
    Resource::from_json(
        r#"{"resourceType":"Patient","id":"p1",
        "identifier":[{"system":"urn:mrn","value":"123"},{"value":"no-system"}],
        "name":[{"family":"Ríos","given":["Ana","María"],"prefix":["Dr"],"text":"Dr Ana Ríos"}],
        "telecom":[{"system":"phone","value":"555-0101"}],
        "gender":"female","birthDate":"1970-03","active":true,
        "address":[{"postalCode":"02139"}],
        "generalPractitioner":[{"reference":"Practitioner/d1"},{"reference":"http://x/y/Z/1"}]}"#
            .as_bytes(),
    )
    .unwrap()
}

fn values(code: &str, resource: &Resource) -> Vec<IndexValue> {
    search_param(resource.resource_type(), code)
        .unwrap()
        .values(resource)
}

#[test]
fn patient_parameters_extract_their_elements() {
    let p = patient();
    assert_eq!(values("family", &p), vec![IndexValue::Text("Ríos".into())]);
    assert_eq!(values("given", &p).len(), 2);
    assert_eq!(values("name", &p).len(), 5);
    assert_eq!(
        values("identifier", &p),
        vec![
            IndexValue::Token {
                system: Some("urn:mrn".into()),
                code: "123".into()
            },
            IndexValue::Token {
                system: None,
                code: "no-system".into()
            },
        ]
    );
    assert_eq!(
        values("birthdate", &p),
        vec![IndexValue::Date {
            text: "1970-03".into(),
            low: datetime!(1970-03-01 0:00 UTC),
            high: datetime!(1970-04-01 0:00 UTC),
        }]
    );
    assert_eq!(
        values("general-practitioner", &p),
        vec![IndexValue::Reference {
            target_type: "Practitioner".into(),
            id: "d1".into()
        }]
    );
    assert_eq!(
        values("address-postalcode", &p),
        vec![IndexValue::Text("02139".into())]
    );
    assert_eq!(patient_compartment(&p).as_deref(), Some("p1"));
    assert!(!format!("{:?}", values("name", &p)).contains("Ríos"));
}

#[test]
fn every_identifying_patient_parameter_is_blind() {
    for code in [
        "identifier",
        "name",
        "family",
        "given",
        "birthdate",
        "telecom",
        "address-postalcode",
    ] {
        assert_eq!(
            search_param(ResourceType::PATIENT, code)
                .unwrap()
                .protection,
            Protection::Blind,
            "{code}"
        );
    }
    for param in SEARCH_PARAMETERS {
        assert!(!param.rationale.is_empty());
        assert_eq!(
            SEARCH_PARAMETERS
                .iter()
                .filter(|p| p.resource_type == param.resource_type && p.code == param.code)
                .count(),
            1
        );
    }
}

#[test]
fn an_immunization_belongs_to_its_patients_compartment() {
    let imm = Resource::from_json(
        br#"{"resourceType":"Immunization","status":"completed",
        "vaccineCode":{"coding":[{"system":"http://hl7.org/fhir/sid/cvx","code":"208"}]},
        "patient":{"reference":"Patient/p1"},"occurrenceDateTime":"2021-04-01T10:30:00+02:00",
        "protocolApplied":[{"series":"primary","doseNumberPositiveInt":1,"targetDisease":[{"coding":[{"code":"840539006"}]}]}]}"#,
    )
    .unwrap();
    assert_eq!(patient_compartment(&imm).as_deref(), Some("p1"));
    assert_eq!(
        values("date", &imm),
        vec![IndexValue::Date {
            text: "2021-04-01T10:30:00+02:00".into(),
            low: datetime!(2021-04-01 8:30 UTC),
            high: datetime!(2021-04-01 8:30:01 UTC),
        }]
    );
    assert_eq!(values("target-disease", &imm).len(), 1);
    assert_eq!(
        values("series", &imm),
        vec![IndexValue::Text("primary".into())]
    );
}

#[test]
fn date_ranges_cover_their_precision() {
    assert_eq!(
        date_range("2020"),
        Some((
            datetime!(2020-01-01 0:00 UTC),
            datetime!(2021-01-01 0:00 UTC)
        ))
    );
    assert_eq!(
        date_range("2020-12"),
        Some((
            datetime!(2020-12-01 0:00 UTC),
            datetime!(2021-01-01 0:00 UTC)
        ))
    );
    assert_eq!(
        date_range("2020-02-29"),
        Some((
            datetime!(2020-02-29 0:00 UTC),
            datetime!(2020-03-01 0:00 UTC)
        ))
    );
    assert_eq!(date_range("2021-02-29"), None);
    assert_eq!(date_range("nonsense"), None);
}

#[test]
fn date_times_are_instants_in_utc_as_wide_as_their_precision() {
    let range = |text| date_range(text).unwrap();
    let is_utc = |(low, high): (OffsetDateTime, OffsetDateTime)| {
        low.offset() == UtcOffset::UTC && high.offset() == UtcOffset::UTC
    };
    // West of UTC: the evening of 28 February in New York is 1 March in UTC.
    let west = range("2021-02-28T20:30:00-05:00");
    assert_eq!(west.0, datetime!(2021-03-01 1:30:00 UTC));
    assert_eq!(west.1, datetime!(2021-03-01 1:30:01 UTC));
    assert!(is_utc(west));
    // East of UTC, and the largest offsets FHIR allows.
    assert_eq!(
        range("2021-03-01T05:30:00+05:30").0,
        datetime!(2021-03-01 0:00 UTC)
    );
    assert_eq!(
        range("2021-03-01T00:00:00+14:00").0,
        datetime!(2021-02-28 10:00 UTC)
    );
    assert_eq!(
        range("2021-03-01T00:00:00-12:00").0,
        datetime!(2021-03-01 12:00 UTC)
    );
    // The same instant written with the two offsets of one zone across a DST change.
    assert_eq!(
        range("2021-03-14T01:30:00-05:00").0 + time::Duration::HOUR,
        range("2021-03-14T03:30:00-04:00").0
    );
    // Fractions set the width: a tenth, a millisecond, a microsecond; finer stays in its µs.
    assert_eq!(
        range("2021-03-01T10:00:00.1Z"),
        (
            datetime!(2021-03-01 10:00:00.1 UTC),
            datetime!(2021-03-01 10:00:00.2 UTC)
        )
    );
    assert_eq!(
        range("2021-03-01T10:00:00.123Z").1,
        datetime!(2021-03-01 10:00:00.124 UTC)
    );
    assert_eq!(
        range("2021-03-01T10:00:00.123456Z"),
        (
            datetime!(2021-03-01 10:00:00.123456 UTC),
            datetime!(2021-03-01 10:00:00.123457 UTC)
        )
    );
    assert_eq!(
        range("2021-03-01T10:00:00.1234567Z"),
        (
            datetime!(2021-03-01 10:00:00.123456 UTC),
            datetime!(2021-03-01 10:00:00.123457 UTC)
        )
    );
    // A search value may stop at the minute, or leave out the zone (UTC, the server's zone).
    assert_eq!(
        range("2021-03-01T10:00Z"),
        (
            datetime!(2021-03-01 10:00 UTC),
            datetime!(2021-03-01 10:01 UTC)
        )
    );
    assert_eq!(range("2021-03-01T10:00:00"), range("2021-03-01T10:00:00Z"));
    // A leap second is the last microsecond of its minute.
    assert_eq!(
        range("2016-12-31T23:59:60Z").0,
        datetime!(2016-12-31 23:59:59.999999 UTC)
    );
    for bad in [
        "2021-03-01T",
        "2021-03-01T10",
        "2021-03-01T25:00Z",
        "2021-03-01T10:00:00+15:00",
        "2021-03-01T10:00:00.Z",
        "2021-03-01T10:00:00Zjunk",
        "2021-3-01",
        "20210301",
        "2021-03-01 10:00:00Z",
    ] {
        assert_eq!(date_range(bad), None, "{bad}");
    }
}

#[test]
fn the_classification_document_matches_the_table() {
    let doc = include_str!("../../../../docs/security/phi-classification.md");
    for param in SEARCH_PARAMETERS {
        let protection = match param.protection {
            Protection::Plain => "plain",
            Protection::Blind => "blind",
        };
        let row = format!(
            "| {} | `{}` | {} | **{protection}** | `{}` |",
            param.resource_type,
            param.code,
            param.kind.code(),
            param.expression
        );
        assert!(
            doc.contains(&row),
            "docs/security/phi-classification.md lacks: {row}"
        );
    }
    let rows = doc
        .lines()
        .filter(|l| l.starts_with("| Patient |") || l.starts_with("| Immunization |"))
        .count();
    assert_eq!(
        rows,
        SEARCH_PARAMETERS.len(),
        "the document lists parameters the code does not"
    );
}

/// Every parameter has the type, targets, expression and canonical URL of the official R4
/// SearchParameter it implements (`search-parameters.json` of the FHIR 4.0.1 definitions,
/// which `cargo xtask conformance-tools` fetches and pins).
#[test]
fn every_parameter_matches_its_official_r4_definition() {
    let Some(path) = std::env::var_os("CAIRN_TEST_FHIR_SEARCH_PARAMETERS") else {
        assert!(
            std::env::var("CAIRN_TEST_REQUIRE_CONFORMANCE").as_deref() != Ok("1"),
            "CAIRN_TEST_REQUIRE_CONFORMANCE=1 but CAIRN_TEST_FHIR_SEARCH_PARAMETERS is not set"
        );
        eprintln!(
            "the R4 SearchParameter definitions are not configured: skipped (`eval \"$(cargo \
             xtask conformance-tools)\"` sets them up)"
        );
        return;
    };
    let bundle: serde_json::Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    let definitions: Vec<&serde_json::Value> = bundle["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|entry| &entry["resource"])
        .collect();
    assert!(definitions.len() > 1000, "the whole R4 set");
    for param in SEARCH_PARAMETERS {
        let official = definitions
            .iter()
            .find(|d| {
                d["code"] == param.code
                    && d["base"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .any(|b| b == param.resource_type.as_str())
            })
            .unwrap_or_else(|| panic!("{param:?} is not an R4 search parameter"));
        assert_eq!(official["type"], param.kind.code(), "{param:?}: type");
        assert_eq!(official["url"], param.definition_url(), "{param:?}: url");
        let expressions: Vec<&str> = official["expression"]
            .as_str()
            .unwrap()
            .split('|')
            .map(str::trim)
            .collect();
        assert!(
            expressions.contains(&param.expression),
            "{param:?}: {} is not among {expressions:?}",
            param.expression
        );
        let mut targets: Vec<&str> = official["target"]
            .as_array()
            .map(|t| t.iter().filter_map(|t| t.as_str()).collect())
            .unwrap_or_default();
        targets.sort_unstable();
        let mut ours = param.targets.to_vec();
        ours.sort_unstable();
        assert_eq!(ours, targets, "{param:?}: targets");
    }
}

#[test]
fn clinical_resources_belong_to_the_patient_they_are_about() {
    let parse = |json: &str| Resource::from_json(json.as_bytes()).unwrap();
    let observation = parse(
        r#"{"resourceType":"Observation","status":"final","subject":{"reference":"Patient/p1"}}"#,
    );
    assert_eq!(patient_compartment(&observation).as_deref(), Some("p1"));
    let allergy =
        parse(r#"{"resourceType":"AllergyIntolerance","patient":{"reference":"Patient/p2"}}"#);
    assert_eq!(patient_compartment(&allergy).as_deref(), Some("p2"));
    let about_a_group = parse(
        r#"{"resourceType":"Observation","status":"final","subject":{"reference":"Group/g"}}"#,
    );
    assert_eq!(patient_compartment(&about_a_group), None);
    let not_clinical =
        parse(r#"{"resourceType":"Organization","partOf":{"reference":"Patient/p1"}}"#);
    assert_eq!(patient_compartment(&not_clinical), None);
}
