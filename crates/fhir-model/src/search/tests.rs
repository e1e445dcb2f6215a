#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

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
