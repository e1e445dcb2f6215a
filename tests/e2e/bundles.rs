//! Transaction and batch Bundles, PATCH and conditional DELETE, over real HTTP on both
//! backends.

use base64::Engine;
use serde_json::{Value, json};
use tests::{TestApp, client_with, fhir_json};

/// Every table a write touches, to count rows before and after a failed transaction.
const TABLES: [&str; 9] = [
    "resource",
    "resource_version",
    "data_key",
    "search_blind",
    "search_token",
    "search_reference",
    "search_date",
    "search_string",
    "conditional_claim",
];

fn patient(identifier: &str) -> Value {
    json!({
        "resourceType": "Patient",
        "identifier": [{"system": "urn:oid:2.16.840.1.113883.4.1", "value": identifier}],
        "name": [{"family": "Okafor", "given": ["Ada"]}],
        "birthDate": "1990-04-02",
    })
}

fn shot(patient_reference: &str, cvx: &str) -> Value {
    json!({
        "resourceType": "Immunization",
        "status": "completed",
        "vaccineCode": {"coding": [{"system": "http://hl7.org/fhir/sid/cvx", "code": cvx}]},
        "patient": {"reference": patient_reference},
        "occurrenceDateTime": "2021-04-01",
        "protocolApplied": [{"series": "primary", "doseNumberPositiveInt": 1}],
    })
}

fn post_entry(full_url: &str, resource: Value) -> Value {
    json!({"fullUrl": full_url, "resource": resource,
        "request": {"method": "POST", "url": resource_type(&resource)}})
}

fn resource_type(resource: &Value) -> String {
    resource["resourceType"].as_str().unwrap().to_owned()
}

fn bundle(kind: &str, entries: Vec<Value>) -> Value {
    json!({"resourceType": "Bundle", "type": kind, "entry": entries})
}

async fn counts(app: &TestApp) -> Vec<i64> {
    let mut counts = Vec::new();
    for table in TABLES {
        counts.push(app.db.row_count(table).await);
    }
    counts
}

#[tokio::test]
async fn a_transaction_stores_a_patient_and_their_doses_linked_by_urn_uuid() {
    for app in TestApp::on_every_backend().await {
        let backend = app.backend();
        let patient_url = "urn:uuid:61ebe359-bfdc-4613-8bf2-c5e300945f0a";
        let sent = bundle(
            "transaction",
            vec![
                // Before the patient it refers to: order in the Bundle does not matter.
                post_entry(
                    "urn:uuid:1c2a0d2e-0000-4000-8000-000000000001",
                    shot(patient_url, "208"),
                ),
                post_entry(patient_url, patient("tx-1")),
                post_entry("urn:uuid:1c2a0d2e-0000-4000-8000-000000000002", {
                    let mut dose = shot(patient_url, "207");
                    dose["extension"] = json!([{"url": "https://example.org/given-to",
                        "valueReference": {"reference": patient_url}}]);
                    dose
                }),
            ],
        );
        let response = app.post("/fhir", &sent).await;
        assert_eq!(response.status(), 200, "{backend}");
        let answer = fhir_json(response).await;
        assert_eq!(answer["type"], "transaction-response");
        let entries = answer["entry"].as_array().unwrap();
        assert_eq!(entries.len(), 3, "one answer per entry, in request order");
        for entry in entries {
            assert_eq!(entry["response"]["status"], "201 Created", "{backend}");
            assert!(
                entry["response"]["location"]
                    .as_str()
                    .unwrap()
                    .ends_with("/_history/1")
            );
            assert_eq!(entry["response"]["etag"], "W/\"1\"");
            assert!(entry["response"]["lastModified"].is_string());
        }
        assert_eq!(entries[1]["resource"]["resourceType"], "Patient");
        let patient_id = entries[1]["resource"]["id"].as_str().unwrap();
        let reference = format!("Patient/{patient_id}");
        for dose in [&entries[0], &entries[2]] {
            let id = dose["resource"]["id"].as_str().unwrap();
            let read = fhir_json(app.get(&format!("/fhir/Immunization/{id}")).await).await;
            assert_eq!(read["patient"]["reference"], reference, "{backend}");
        }
        assert_eq!(
            entries[2]["resource"]["extension"][0]["valueReference"]["reference"], reference,
            "references are rewritten at any depth"
        );
        // The doses are in the patient's compartment: a search by patient finds both.
        let found = fhir_json(
            app.get(&format!("/fhir/Immunization?patient={reference}"))
                .await,
        )
        .await;
        assert_eq!(found["entry"].as_array().unwrap().len(), 2, "{backend}");
        // One data key for the new patient, created in the same transaction.
        assert_eq!(app.db.row_count("data_key").await, 1, "{backend}");
        app.stop().await;
    }
}

#[tokio::test]
async fn a_transaction_whose_last_entry_fails_stores_nothing() {
    for app in TestApp::on_every_backend().await {
        let backend = app.backend();
        app.post("/fhir/Patient", &patient("before")).await;
        let before = counts(&app).await;
        let audited_before = app.db.recorded_audit_entries().await;
        let mut bad = patient("tx-bad");
        bad["birthDate"] = json!("1990-13-45");
        let sent = bundle(
            "transaction",
            vec![
                post_entry("urn:uuid:a", patient("tx-good")),
                post_entry("urn:uuid:b", shot("urn:uuid:a", "208")),
                post_entry("urn:uuid:c", bad),
            ],
        );
        let response = app.post("/fhir", &sent).await;
        assert_eq!(response.status(), 400, "{backend}");
        let outcome = fhir_json(response).await;
        assert_eq!(outcome["resourceType"], "OperationOutcome");
        assert_eq!(
            outcome["issue"][0]["expression"][0], "Bundle.entry[2].resource.birthDate",
            "{backend}: {outcome}"
        );
        assert!(!outcome.to_string().contains("1990-13-45"), "no PHI echoed");
        assert_eq!(
            counts(&app).await,
            before,
            "{backend}: nothing of the Bundle stored"
        );
        // No success entry: only the failure, recorded after the rollback.
        let mut recorded = app.db.recorded_audit_entries().await;
        for _ in 0..50 {
            if recorded > audited_before {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            recorded = app.db.recorded_audit_entries().await;
        }
        assert_eq!(recorded, audited_before + 1, "{backend}: one failure entry");

        // A reference to a fullUrl that is not in the Bundle names the element.
        let dangling = bundle(
            "transaction",
            vec![post_entry("urn:uuid:x", shot("urn:uuid:nowhere", "208"))],
        );
        let response = app.post("/fhir", &dangling).await;
        assert_eq!(response.status(), 400);
        let outcome = fhir_json(response).await;
        assert_eq!(
            outcome["issue"][0]["expression"][0],
            "Bundle.entry[0].resource.patient.reference"
        );
        assert_eq!(counts(&app).await, before, "{backend}");
        app.stop().await;
    }
}

#[tokio::test]
async fn entries_run_deletes_first_and_reads_last_and_conditionals_resolve() {
    for app in TestApp::on_every_backend().await {
        let backend = app.backend();
        let old = fhir_json(app.post("/fhir/Patient", &patient("old")).await).await;
        let old_id = old["id"].as_str().unwrap();
        let kept = fhir_json(app.post("/fhir/Patient", &patient("kept")).await).await;
        let kept_id = kept["id"].as_str().unwrap();
        let sys = "urn:oid:2.16.840.1.113883.4.1";
        let sent = bundle(
            "transaction",
            vec![
                // Listed first, answered last: it sees the transaction's own writes.
                json!({"request": {"method": "GET",
                    "url": format!("Patient?identifier={sys}|new")}}),
                json!({"fullUrl": "urn:uuid:new", "resource": patient("new"),
                    "request": {"method": "POST", "url": "Patient",
                        "ifNoneExist": format!("identifier={sys}|new")}}),
                json!({"request": {"method": "DELETE", "url": format!("Patient/{old_id}")}}),
                json!({"resource": {"resourceType": "Immunization", "status": "completed",
                        "vaccineCode": {"coding": [{"system": "http://hl7.org/fhir/sid/cvx", "code": "208"}]},
                        "patient": {"reference": format!("Patient?identifier={sys}|kept")},
                        "occurrenceDateTime": "2021-04-01"},
                    "request": {"method": "POST", "url": "Immunization"}}),
                json!({"resource": {"resourceType": "Immunization", "status": "completed",
                        "vaccineCode": {"coding": [{"system": "http://hl7.org/fhir/sid/cvx", "code": "207"}]},
                        "patient": {"reference": "urn:uuid:new"},
                        "occurrenceDateTime": "2021-05-01"},
                    "request": {"method": "PUT",
                        "url": format!("Immunization?lot-number=none-{kept_id}")}}),
            ],
        );
        let response = app.post("/fhir", &sent).await;
        let status = response.status();
        let answer = fhir_json(response).await;
        assert_eq!(status, 200, "{backend}: {answer}");
        let entries = answer["entry"].as_array().unwrap();
        let statuses: Vec<&str> = entries
            .iter()
            .map(|e| e["response"]["status"].as_str().unwrap())
            .collect();
        assert_eq!(
            statuses,
            vec![
                "200 OK",
                "201 Created",
                "204 No Content",
                "201 Created",
                "201 Created"
            ],
            "{backend}"
        );
        let new_id = entries[1]["resource"]["id"].as_str().unwrap();
        let searched = &entries[0]["resource"];
        assert_eq!(searched["type"], "searchset");
        assert_eq!(searched["entry"][0]["resource"]["id"], new_id, "{backend}");
        assert_eq!(
            entries[3]["resource"]["patient"]["reference"],
            format!("Patient/{kept_id}"),
            "the conditional reference resolved to its one match"
        );
        assert_eq!(
            entries[4]["resource"]["patient"]["reference"],
            format!("Patient/{new_id}")
        );
        assert_eq!(
            app.get(&format!("/fhir/Patient/{old_id}")).await.status(),
            410
        );

        // The same conditional create again finds the patient: 200, nothing new.
        let again = bundle(
            "transaction",
            vec![
                json!({"resource": patient("new"), "request": {"method": "POST", "url": "Patient",
                "ifNoneExist": format!("identifier={sys}|new")}}),
            ],
        );
        let answer = fhir_json(app.post("/fhir", &again).await).await;
        assert_eq!(answer["entry"][0]["response"]["status"], "200 OK");
        assert_eq!(answer["entry"][0]["resource"]["id"], new_id);

        // A conditional reference that matches nothing fails the transaction with 404.
        let nowhere = bundle(
            "transaction",
            vec![
                json!({"resource": shot(&format!("Patient?identifier={sys}|nobody"), "208"),
                "request": {"method": "POST", "url": "Immunization"}}),
            ],
        );
        let response = app.post("/fhir", &nowhere).await;
        assert_eq!(response.status(), 404, "{backend}");
        let outcome = fhir_json(response).await;
        assert!(
            outcome["issue"][0]["diagnostics"]
                .as_str()
                .unwrap()
                .starts_with("Bundle.entry[0]")
        );

        // Two entries on one resource: 400.
        let twice = bundle(
            "transaction",
            vec![
                json!({"request": {"method": "DELETE", "url": format!("Patient/{kept_id}")}}),
                json!({"resource": {"resourceType": "Patient", "id": kept_id},
                    "request": {"method": "PUT", "url": format!("Patient/{kept_id}")}}),
            ],
        );
        let response = app.post("/fhir", &twice).await;
        assert_eq!(response.status(), 400, "{backend}");
        assert_eq!(
            app.get(&format!("/fhir/Patient/{kept_id}")).await.status(),
            200
        );
        app.stop().await;
    }
}

#[tokio::test]
async fn concurrent_transactions_with_one_conditional_create_make_one_patient() {
    for app in TestApp::on_every_backend().await {
        let backend = app.backend();
        let sent = bundle(
            "transaction",
            vec![
                json!({"fullUrl": "urn:uuid:p", "resource": patient("race"),
                    "request": {"method": "POST", "url": "Patient",
                        "ifNoneExist": "identifier=urn:oid:2.16.840.1.113883.4.1|race"}}),
                post_entry("urn:uuid:d", shot("urn:uuid:p", "208")),
            ],
        );
        let sends = (0..16).map(|_| {
            let client = app.client.clone();
            let url = app.url("/fhir");
            let body = sent.to_string();
            async move {
                client
                    .post(url)
                    .header("content-type", "application/fhir+json")
                    .body(body)
                    .send()
                    .await
                    .unwrap()
            }
        });
        let answers = futures::future::join_all(sends).await;
        let mut patients = std::collections::HashSet::new();
        for answer in answers {
            assert_eq!(answer.status(), 200, "{backend}");
            let answer = fhir_json(answer).await;
            patients.insert(
                answer["entry"][0]["resource"]["id"]
                    .as_str()
                    .unwrap()
                    .to_owned(),
            );
        }
        assert_eq!(patients.len(), 1, "{backend}: one Patient for all 16");
        let found = fhir_json(
            app.get("/fhir/Patient?identifier=urn:oid:2.16.840.1.113883.4.1|race&_total=accurate")
                .await,
        )
        .await;
        assert_eq!(found["total"], 1, "{backend}");
        assert_eq!(app.db.row_count("data_key").await, 1, "{backend}");
        app.stop().await;
    }
}

#[tokio::test]
async fn a_batch_stores_exactly_its_good_entries() {
    for app in TestApp::on_every_backend().await {
        let backend = app.backend();
        let mut invalid = patient("b-bad");
        invalid["gender"] = json!("robot");
        let sent = bundle(
            "batch",
            vec![
                post_entry("urn:uuid:1", patient("b-good")),
                post_entry("urn:uuid:2", invalid),
                json!({"request": {"method": "GET", "url": "Patient/does-not-exist"}}),
                post_entry("urn:uuid:3", shot("urn:uuid:1", "208")),
                post_entry("urn:uuid:4", patient("b-good-2")),
            ],
        );
        let response = app.post("/fhir", &sent).await;
        assert_eq!(response.status(), 200, "{backend}");
        let answer = fhir_json(response).await;
        assert_eq!(answer["type"], "batch-response");
        let statuses: Vec<&str> = answer["entry"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["response"]["status"].as_str().unwrap())
            .collect();
        assert_eq!(
            statuses,
            vec!["201 Created", "400", "404", "400", "201 Created"],
            "{backend}"
        );
        let outcome = &answer["entry"][1]["response"]["outcome"];
        assert_eq!(
            outcome["issue"][0]["expression"][0],
            "Bundle.entry[1].resource.gender"
        );
        assert!(
            answer["entry"][3]["response"]["outcome"]["issue"][0]["diagnostics"]
                .as_str()
                .unwrap()
                .contains("another entry of the batch"),
            "references between batch entries are refused"
        );
        assert_eq!(
            app.db.row_count("resource").await,
            2,
            "{backend}: exactly the good ones"
        );
        app.stop().await;
    }
}

#[tokio::test]
async fn each_entry_is_authorized_as_if_sent_alone() {
    for app in TestApp::on_every_backend().await {
        let backend = app.backend();
        let kept = fhir_json(app.post("/fhir/Patient", &patient("auth")).await).await;
        let kept_id = kept["id"].as_str().unwrap();
        let registrar = client_with(&app.token_for("user:reg", "registrar", &[], None).await);
        let before = counts(&app).await;
        let sent = bundle(
            "transaction",
            vec![
                post_entry("urn:uuid:1", patient("reg-new")),
                json!({"request": {"method": "DELETE", "url": format!("Patient/{kept_id}")}}),
            ],
        );
        let response = registrar
            .post(app.url("/fhir"))
            .header("content-type", "application/fhir+json")
            .body(sent.to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 403, "{backend}");
        let outcome = fhir_json(response).await;
        assert_eq!(outcome["issue"][0]["expression"][0], "Bundle.entry[1]");
        assert_eq!(counts(&app).await, before, "{backend}: nothing done");
        app.stop().await;
    }
}

#[tokio::test]
async fn bundles_the_base_does_not_take_are_refused_with_a_reason() {
    let app = TestApp::start_with(store_sql::testing::TestDatabase::sqlite(), |config| {
        config.max_bundle_entries = 2;
    })
    .await;
    let collection = bundle("collection", vec![json!({"resource": patient("c")})]);
    let response = app.post("/fhir", &collection).await;
    assert_eq!(response.status(), 400);
    let outcome = fhir_json(response).await;
    assert!(
        outcome["issue"][0]["diagnostics"]
            .as_str()
            .unwrap()
            .contains("transaction or batch")
    );
    let three = bundle(
        "batch",
        (0..3)
            .map(|_| json!({"request": {"method": "GET", "url": "Patient"}}))
            .collect(),
    );
    assert_eq!(app.post("/fhir", &three).await.status(), 413);
    let response = app.post("/fhir", &patient("not-a-bundle")).await;
    assert_eq!(response.status(), 400);
    app.stop().await;
}

async fn patch(
    app: &TestApp,
    path: &str,
    operations: Value,
    if_match: Option<&str>,
) -> reqwest::Response {
    let mut request = app
        .client
        .patch(app.url(path))
        .header("content-type", "application/json-patch+json")
        .body(operations.to_string());
    if let Some(etag) = if_match {
        request = request.header("if-match", etag);
    }
    request.send().await.unwrap()
}

#[tokio::test]
async fn json_patch_changes_a_resource_or_nothing() {
    for app in TestApp::on_every_backend().await {
        let backend = app.backend();
        let created = fhir_json(app.post("/fhir/Patient", &patient("p-1")).await).await;
        let id = created["id"].as_str().unwrap();
        let path = format!("/fhir/Patient/{id}");
        let response = patch(
            &app,
            &path,
            json!([{"op": "replace", "path": "/birthDate", "value": "1991-05-06"},
                   {"op": "add", "path": "/gender", "value": "female"}]),
            Some("W/\"1\""),
        )
        .await;
        assert_eq!(response.status(), 200, "{backend}");
        assert_eq!(response.headers()["etag"], "W/\"2\"");
        let patched = fhir_json(app.get(&path).await).await;
        assert_eq!(patched["birthDate"], "1991-05-06");
        assert_eq!(patched["gender"], "female");
        assert_eq!(patched["meta"]["versionId"], "2");

        let stale = patch(
            &app,
            &path,
            json!([{"op": "remove", "path": "/gender"}]),
            Some("W/\"1\""),
        )
        .await;
        assert_eq!(stale.status(), 412, "{backend}");
        let invalid = patch(
            &app,
            &path,
            json!([{"op": "replace", "path": "/gender", "value": "robot"}]),
            None,
        )
        .await;
        assert_eq!(invalid.status(), 422, "{backend}");
        let outcome = fhir_json(invalid).await;
        assert_eq!(outcome["issue"][0]["expression"][0], "Patient.gender");
        let failed_test = patch(
            &app,
            &path,
            json!([{"op": "test", "path": "/gender", "value": "male"},
            {"op": "remove", "path": "/birthDate"}]),
            None,
        )
        .await;
        assert_eq!(failed_test.status(), 422);
        let new_id = patch(
            &app,
            &path,
            json!([{"op": "replace", "path": "/id", "value": "other"}]),
            None,
        )
        .await;
        assert_eq!(new_id.status(), 422);
        let malformed = patch(&app, &path, json!({"op": "remove"}), None).await;
        assert_eq!(malformed.status(), 400);
        let unknown = patch(&app, "/fhir/Patient/nobody", json!([]), None).await;
        assert_eq!(unknown.status(), 404);
        assert_eq!(
            fhir_json(app.get(&path).await).await["meta"]["versionId"],
            "2",
            "{backend}"
        );

        // Conditional patch, and a PATCH entry of a transaction (a Binary with the patch).
        let conditional = patch(
            &app,
            "/fhir/Patient?identifier=urn:oid:2.16.840.1.113883.4.1|p-1",
            json!([{"op": "replace", "path": "/name/0/family", "value": "Eze"}]),
            None,
        )
        .await;
        assert_eq!(conditional.status(), 200, "{backend}");
        let document = json!([{"op": "add", "path": "/active", "value": true}]).to_string();
        let sent = bundle(
            "transaction",
            vec![json!({"resource": {"resourceType": "Binary",
                    "contentType": "application/json-patch+json",
                    "data": base64::engine::general_purpose::STANDARD.encode(document)},
                "request": {"method": "PATCH", "url": format!("Patient/{id}"), "ifMatch": "W/\"3\""}})],
        );
        let response = app.post("/fhir", &sent).await;
        assert_eq!(response.status(), 200, "{backend}");
        let answer = fhir_json(response).await;
        assert_eq!(answer["entry"][0]["response"]["etag"], "W/\"4\"");
        let read = fhir_json(app.get(&path).await).await;
        assert_eq!(read["active"], true);
        assert_eq!(read["name"][0]["family"], "Eze");

        // Conditional delete: one match deleted; no match deletes nothing.
        let deleted = app
            .client
            .delete(app.url("/fhir/Patient?identifier=urn:oid:2.16.840.1.113883.4.1|p-1"))
            .send()
            .await
            .unwrap();
        assert_eq!(deleted.status(), 204);
        assert_eq!(app.get(&path).await.status(), 410, "{backend}");
        let nothing = app
            .client
            .delete(app.url("/fhir/Patient?identifier=urn:oid:2.16.840.1.113883.4.1|nobody"))
            .send()
            .await
            .unwrap();
        assert_eq!(nothing.status(), 204);
        app.stop().await;
    }
}
