#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::*;

/// Parses and validates `input`; returns the issues as "location code: diagnostics" lines.
fn problems(input: &str) -> Vec<String> {
    let issues = match Resource::from_json(input.as_bytes()) {
        Ok(resource) => resource.validate(),
        Err(err) => err.issues,
    };
    issues
        .iter()
        .map(|i| {
            format!(
                "{} {}: {}",
                i.location.as_deref().unwrap_or("-"),
                i.code.code(),
                i.diagnostics
            )
        })
        .collect()
}

fn check(input: &str, expected: &[&str]) {
    assert_eq!(problems(input), expected, "input: {input}");
}

#[test]
fn body_level_problems() {
    check(
        "",
        &["- structure: the body is empty; a FHIR resource in JSON was expected"],
    );
    check(
        "[1]",
        &["- structure: a FHIR resource must be a JSON object"],
    );
    check(
        r#"{"resourceType": 5}"#,
        &["Resource.resourceType structure: resourceType must be a string"],
    );
    check(
        r#"{"id": "x"}"#,
        &["Resource.resourceType required: resourceType is required"],
    );
    check(
        r#"{"resourceType": "Pasient"}"#,
        &["Resource.resourceType not-supported: \"Pasient\" is not a FHIR R4 resource type"],
    );
    let syntax = problems(r#"{"resourceType": "Patient",}"#);
    assert_eq!(syntax.len(), 1);
    assert!(
        syntax[0].starts_with("- structure: the body is not valid JSON: trailing comma at line 1"),
        "{syntax:?}"
    );
}

#[test]
fn required_elements_and_bindings_of_immunization_all_reported() {
    check(
        r#"{"resourceType": "Immunization", "status": "given", "protocolApplied": [{"series": "a"}]}"#,
        &[
            "Immunization.status code-invalid: status must be one of: completed, entered-in-error, not-done",
            "Immunization.vaccineCode required: vaccineCode is required",
            "Immunization.patient required: patient is required",
            "Immunization.occurrence[x] required: occurrence[x] is required (occurrenceDateTime or occurrenceString)",
            "Immunization.protocolApplied[0].doseNumber[x] required: doseNumber[x] is required (doseNumberPositiveInt or doseNumberString)",
        ],
    );
    check(
        r#"{"resourceType": "Immunization", "vaccineCode": {"text": "x"}, "patient": {"reference": "Patient/1"},
            "occurrenceDateTime": "2021-02-30", "occurrenceString": "last week"}"#,
        &[
            "Immunization.status required: status is required",
            "Immunization.occurrence[x] structure: occurrence[x] may have only one type, but several were given",
            "Immunization.occurrenceDateTime value: not a valid dateTime (a date, or YYYY-MM-DDThh:mm:ss with a time zone such as Z or +01:00)",
        ],
    );
}

#[test]
fn patient_formats_and_invariants() {
    check(
        r#"{"resourceType": "Patient", "id": "no_underscores", "gender": "M", "birthDate": "1970-3-1",
            "telecom": [{"value": "555"}], "contact": [{"gender": "female"}],
            "name": [{"use": "official", "period": {"start": "2020-01-01", "end": "2019-01-01"}}]}"#,
        &[
            "Patient.id value: not a valid id (1-64 characters of A-Z, a-z, 0-9, '-', '.')",
            "Patient.name[0].period invariant: per-1: the start must not be after the end",
            "Patient.telecom[0] invariant: cpt-2: a system is required if a value is provided",
            "Patient.gender code-invalid: gender must be one of: male, female, other, unknown",
            "Patient.birthDate value: not a valid date (YYYY, YYYY-MM or YYYY-MM-DD, a real calendar date)",
            "Patient.contact[0] invariant: pat-1: a contact has at least a name, telecom, address or organization",
        ],
    );
}

#[test]
fn type_errors_have_exact_paths_and_never_echo_values() {
    check(
        r#"{"resourceType": "Patient", "name": [{"family": "Secretname", "given": "Alice"}]}"#,
        &["Patient.name[0].given structure: invalid type: expected a sequence"],
    );
    check(
        r#"{"resourceType": "Patient", "multipleBirthInteger": "Alice"}"#,
        &["Patient.multipleBirthInteger structure: invalid type: expected i32"],
    );
    check(
        r#"{"resourceType": "Patient", "active": "yes"}"#,
        &["Patient.active structure: invalid type: expected a boolean"],
    );
    check(
        r#"{"resourceType": "Bundle", "type": "collection", "entry": [{"resource": {"resourceType": "Patient", "gender": ["Alice"]}}]}"#,
        &["Bundle.entry[0].resource.gender structure: invalid type: expected a string"],
    );
    check(
        r#"{"resourceType": "Patient", "contained": [{"resourceType": "Patient", "name": {"family": "Alice"}}]}"#,
        &["Patient.contained[0].name structure: invalid type: expected a sequence"],
    );
}

#[test]
fn json_rules_apply_to_every_element() {
    check(
        r#"{"resourceType": "Observation", "status": null, "code": {}, "note": []}"#,
        &[
            "Observation.status structure: null is not allowed here (leave the element out instead)",
            "Observation.code structure: an object must have at least one member",
            "Observation.note structure: an array must not be empty",
        ],
    );
}

#[test]
fn bundle_invariants() {
    check(
        r#"{"resourceType": "Bundle", "type": "transaction", "total": 2, "entry": [
            {"fullUrl": "urn:uuid:1", "resource": {"resourceType": "Patient"}, "search": {"mode": "match"}},
            {"fullUrl": "urn:uuid:1", "request": {"method": "FETCH"}}]}"#,
        &[
            "Bundle.entry[1].request.method code-invalid: method must be one of: GET, HEAD, POST, PUT, DELETE, PATCH",
            "Bundle.entry[1].request.url required: url is required",
            "Bundle.total invariant: bdl-1: total only when a search or history",
            "Bundle.entry[0] invariant: bdl-2: entry.search only when a search",
            "Bundle.entry[0] invariant: bdl-3: entry.request is mandatory for batch, transaction and history",
            "Bundle.entry[1].fullUrl invariant: bdl-7: fullUrl must be unique in a bundle, or else entries with the same fullUrl must have different meta.versionId",
        ],
    );
}

#[test]
fn nested_resources_are_validated_with_their_path() {
    check(
        r#"{"resourceType": "Bundle", "type": "collection", "entry": [{"resource": {"resourceType": "Immunization", "status": "completed",
            "vaccineCode": {"text": "x"}, "patient": {"reference": "Patient/1"}, "occurrenceString": "2020",
            "contained": [{"resourceType": "Patient", "meta": {"versionId": "1"}}]}}]}"#,
        &[
            "Bundle.entry[0].resource.contained[0] invariant: dom-4: a contained resource has no meta.versionId or meta.lastUpdated",
        ],
    );
}

#[test]
fn server_meta_can_be_set() {
    let mut resource =
        Resource::from_json(br#"{"resourceType":"Patient","meta":{"tag":[{"code":"t"}]}}"#)
            .unwrap();
    resource.set_id(Some(Id::from("abc")));
    resource.meta_mut().version_id = Some(Id::from("1"));
    let out: Value = serde_json::from_slice(&resource.to_json()).unwrap();
    assert_eq!(out["id"], "abc");
    assert_eq!(out["meta"]["versionId"], "1");
    assert_eq!(out["meta"]["tag"][0]["code"], "t");
    assert_eq!(
        out.as_object().unwrap().keys().next().map(String::as_str),
        Some("resourceType")
    );
}

#[test]
fn operation_outcome_from_issues() {
    let err = Resource::from_json(br#"{"resourceType":"Patient","gender":"x"}"#)
        .unwrap()
        .validate();
    let outcome = OperationOutcome::from_issues(&err);
    let json: Value = serde_json::to_value(&outcome).unwrap();
    assert_eq!(json["resourceType"], "OperationOutcome");
    assert_eq!(json["issue"][0]["severity"], "error");
    assert_eq!(json["issue"][0]["code"], "code-invalid");
    assert_eq!(json["issue"][0]["expression"][0], "Patient.gender");
    assert!(
        Resource::OperationOutcome(Box::new(outcome))
            .validate()
            .is_empty()
    );
}

#[test]
fn debug_output_never_shows_values() {
    let json = br#"{"resourceType":"Patient","id":"p1",
        "name":[{"family":"Canaryfamily","given":["Canarygiven"]}],
        "birthDate":"1923-07-19","telecom":[{"system":"phone","value":"555-0199"}],
        "unknownThing":"Canaryextra"}"#;
    let patient = Resource::from_json(json).unwrap();
    let other =
        Resource::from_json(br#"{"resourceType":"Observation","note":[{"text":"Canarynote"}]}"#)
            .unwrap();
    for shown in [
        format!("{patient:?}"),
        format!("{patient:#?}"),
        format!("{other:?}"),
    ] {
        for secret in ["Canary", "1923", "555-0199"] {
            assert!(!shown.contains(secret), "{secret} leaked in {shown}");
        }
    }
    assert!(format!("{patient:?}").contains("birthDate"));
}
