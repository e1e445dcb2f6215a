#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use serde_json::json;

use super::*;

const BASE: &str = "https://cairn.example/fhir";

fn read(bundle: Value) -> Result<BundleRequest, BundleRequestError> {
    read_bundle(&serde_json::to_vec(&bundle).unwrap(), BASE, 100)
}

fn issues(bundle: Value) -> Vec<Issue> {
    match read(bundle) {
        Err(BundleRequestError::Invalid { issues }) => issues,
        other => panic!("expected issues, got {other:?}"),
    }
}

#[test]
fn entries_are_processed_deletes_first_then_creates_then_updates_then_reads() {
    let bundle = read(json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"request": {"method": "GET", "url": "Patient?name=x"}},
        {"resource": {"resourceType": "Patient", "id": "a"}, "request": {"method": "PUT", "url": "Patient/a"}},
        {"resource": {"resourceType": "Patient"}, "request": {"method": "POST", "url": "Patient"}},
        {"request": {"method": "DELETE", "url": "Patient/b"}},
        {"resource": {"resourceType": "Binary", "contentType": "application/json-patch+json"}, "request": {"method": "PATCH", "url": "Patient/c"}},
        {"resource": {"resourceType": "Patient"}, "request": {"method": "POST", "url": "Patient"}},
    ]}))
    .unwrap();
    assert_eq!(bundle.kind, BundleKind::Transaction);
    assert_eq!(bundle.processing_order(), vec![3, 2, 5, 1, 4, 0]);
}

#[test]
fn urls_name_type_id_version_and_decoded_criteria_relative_or_under_the_base() {
    let bundle = read(json!({"resourceType": "Bundle", "type": "batch", "entry": [
        {"request": {"method": "GET", "url": "Patient/1/_history/2"}},
        {"request": {"method": "GET", "url": "https://cairn.example/fhir/Patient?identifier=urn%3Aoid%3A1%7C42&_format=json"}},
        {"request": {"method": "DELETE", "url": "Immunization?patient=Patient/1"},
         "fullUrl": "urn:uuid:9b0e5e2c-3c1e-4b1a-9f0e-2d3c4b5a6f70"},
    ]}))
    .unwrap();
    let [vread, search, delete] = &bundle.entries[..] else {
        panic!()
    };
    assert_eq!(vread.target.id.as_deref(), Some("1"));
    assert_eq!(vread.target.version.as_deref(), Some("2"));
    assert_eq!(search.target.resource_type, ResourceType::PATIENT);
    assert_eq!(
        search.target.query,
        vec![("identifier".to_owned(), "urn:oid:1|42".to_owned())]
    );
    assert!(delete.is_conditional());
    assert!(delete.full_url.is_some());
}

#[test]
fn only_transactions_and_batches_are_accepted_at_the_base() {
    assert!(matches!(
        read(json!({"resourceType": "Bundle", "type": "collection"})),
        Err(BundleRequestError::WrongType { found }) if found == "collection"
    ));
    let issues = issues(json!({"resourceType": "Patient"}));
    assert_eq!(issues[0].location.as_deref(), Some("Bundle.resourceType"));
    let issues = issues_of_missing_type();
    assert_eq!(issues[0].location.as_deref(), Some("Bundle.type"));
}

fn issues_of_missing_type() -> Vec<Issue> {
    issues(json!({"resourceType": "Bundle"}))
}

#[test]
fn too_many_entries_are_refused_before_any_is_read() {
    let entries: Vec<Value> = (0..3)
        .map(|_| json!({"request": {"method": "GET", "url": "Patient"}}))
        .collect();
    let body =
        serde_json::to_vec(&json!({"resourceType": "Bundle", "type": "batch", "entry": entries}))
            .unwrap();
    assert_eq!(
        read_bundle(&body, BASE, 2),
        Err(BundleRequestError::TooManyEntries { count: 3, limit: 2 })
    );
}

#[test]
fn each_malformed_entry_is_named_by_its_position() {
    let issues = issues(
        json!({"resourceType": "Bundle", "type": "transaction", "entry": [
            {"resource": {"resourceType": "Patient"}},
            {"request": {"method": "FETCH", "url": "Patient"}},
            {"request": {"method": "POST", "url": "Patient/1"}, "resource": {"resourceType": "Patient"}},
            {"request": {"method": "POST", "url": "Patient"}},
            {"request": {"method": "PUT", "url": "Patient/1"}, "resource": {"resourceType": "Observation"}},
            {"request": {"method": "PUT", "url": "Patient"}, "resource": {"resourceType": "Patient"}},
            {"request": {"method": "GET", "url": "Patient/$everything"}},
            {"request": {"method": "GET", "url": "http://elsewhere.example/fhir/Patient/1"}},
            {"request": {"method": "PATCH", "url": "Patient/1"}, "resource": {"resourceType": "Patient"}},
            {"request": {"method": "GET", "url": "Nonsense/1"}},
        ]}),
    );
    let at: Vec<&str> = issues
        .iter()
        .filter_map(|i| i.location.as_deref())
        .collect();
    assert_eq!(
        at,
        vec![
            "Bundle.entry[0].request",
            "Bundle.entry[1].request.method",
            "Bundle.entry[2].request.url",
            "Bundle.entry[3].resource",
            "Bundle.entry[4].resource.resourceType",
            "Bundle.entry[5].request.url",
            "Bundle.entry[6].request.url",
            "Bundle.entry[7].request.url",
            "Bundle.entry[8].resource.resourceType",
            "Bundle.entry[9].request.url",
        ]
    );
}

#[test]
fn a_transaction_gives_each_full_url_to_one_entry() {
    let issues = issues(
        json!({"resourceType": "Bundle", "type": "transaction", "entry": [
            {"fullUrl": "urn:uuid:1", "resource": {"resourceType": "Patient"}, "request": {"method": "POST", "url": "Patient"}},
            {"fullUrl": "urn:uuid:1", "resource": {"resourceType": "Patient"}, "request": {"method": "POST", "url": "Patient"}},
        ]}),
    );
    assert_eq!(issues.len(), 1);
    assert_eq!(
        issues[0].location.as_deref(),
        Some("Bundle.entry[1].fullUrl")
    );
    assert!(issues[0].diagnostics.contains("Bundle.entry[0]"));
}

#[test]
fn the_json_rules_hold_for_the_whole_bundle() {
    let body = br#"{"resourceType": "Bundle", "type": "batch", "entry": [{"request": {"method": "GET", "url": "Patient", "url": "Patient"}}]}"#;
    assert!(matches!(
        read_bundle(body, BASE, 10),
        Err(BundleRequestError::Invalid { .. })
    ));
}

#[test]
fn references_are_found_at_any_depth_with_their_location() {
    let mut resource = json!({
        "resourceType": "Immunization",
        "patient": {"reference": "urn:uuid:p"},
        "extension": [{"url": "x", "valueReference": {"reference": "urn:uuid:e"}}],
        "contained": [{"resourceType": "Practitioner", "id": "c",
            "qualification": [{"issuer": {"reference": "Organization/1"}}]}],
        "performer": [{"actor": {"reference": "#c"}}],
        "note": [{"text": "reference"}],
    });
    let mut seen = Vec::new();
    rewrite_references::<()>(
        &mut resource,
        &Location::root("Bundle").item("entry", 2).child("resource"),
        &mut |reference, at| {
            seen.push((reference.to_owned(), at.as_str().to_owned()));
            Ok(reference
                .strip_prefix("urn:uuid:")
                .map(|id| format!("Patient/{id}")))
        },
    )
    .unwrap();
    seen.sort();
    assert_eq!(
        seen,
        vec![
            (
                "#c".to_owned(),
                "Bundle.entry[2].resource.performer[0].actor.reference".to_owned()
            ),
            (
                "Organization/1".to_owned(),
                "Bundle.entry[2].resource.contained[0].qualification[0].issuer.reference"
                    .to_owned()
            ),
            (
                "urn:uuid:e".to_owned(),
                "Bundle.entry[2].resource.extension[0].valueReference.reference".to_owned()
            ),
            (
                "urn:uuid:p".to_owned(),
                "Bundle.entry[2].resource.patient.reference".to_owned()
            ),
        ]
    );
    assert_eq!(resource["patient"]["reference"], "Patient/p");
    assert_eq!(
        resource["extension"][0]["valueReference"]["reference"],
        "Patient/e"
    );
    assert_eq!(
        resource["contained"][0]["qualification"][0]["issuer"]["reference"],
        "Organization/1"
    );
}

#[test]
fn the_first_unresolvable_reference_stops_the_walk() {
    let mut resource = json!({"a": {"reference": "urn:uuid:1"}, "b": {"reference": "urn:uuid:2"}});
    let mut calls = 0;
    let result = rewrite_references(&mut resource, &Location::root("X"), &mut |_, at| {
        calls += 1;
        Err(at.as_str().to_owned())
    });
    assert_eq!(result, Err("X.a.reference".to_owned()));
    assert_eq!(calls, 1);
}
