//! Create and read, checked to the byte on both backends.

use serde_json::{Value, json};
use tests::{TestApp, fhir_json};

fn example(name: &str) -> Value {
    let path = format!(
        "{}/../crates/fhir-model/tests/examples/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// What the server must return for a posted `sent`: the same resource, with the new id and meta.
fn expected(sent: &Value, id: &str, last_updated: &Value) -> Value {
    let mut expected = sent.clone();
    let object = expected.as_object_mut().unwrap();
    object.insert("id".into(), json!(id));
    object.insert(
        "meta".into(),
        json!({"versionId": "1", "lastUpdated": last_updated}),
    );
    expected
}

#[tokio::test]
async fn a_patient_and_an_immunization_are_read_back_equal_plus_meta() {
    for app in TestApp::on_every_backend().await {
        let backend = app.backend();
        let mut patient = example("patient-example.json");
        patient.as_object_mut().unwrap().remove("id");
        let response = app.post("/fhir/Patient", &patient).await;
        assert_eq!(response.status(), 201, "{backend}");
        let headers = response.headers().clone();
        let created = fhir_json(response).await;
        let id = created["id"].as_str().unwrap().to_owned();
        assert_eq!(id.len(), 36, "a server-assigned UUID");
        assert_eq!(
            created,
            expected(&patient, &id, &created["meta"]["lastUpdated"]),
            "{backend}"
        );
        let location = headers["location"].to_str().unwrap();
        assert_eq!(location, app.url(&format!("/fhir/Patient/{id}/_history/1")));
        assert_eq!(headers["etag"], "W/\"1\"");
        assert!(headers["last-modified"].to_str().unwrap().ends_with(" GMT"));

        let read = app.get(&format!("/fhir/Patient/{id}")).await;
        assert_eq!(read.status(), 200);
        assert_eq!(read.headers()["etag"], "W/\"1\"");
        assert_eq!(read.headers()["last-modified"], headers["last-modified"]);
        assert_eq!(
            fhir_json(read).await,
            created,
            "{backend}: read differs from create"
        );

        let mut immunization = example("immunization-example.json");
        let object = immunization.as_object_mut().unwrap();
        object.remove("id");
        object.insert(
            "patient".into(),
            json!({"reference": format!("Patient/{id}")}),
        );
        let response = app.post("/fhir/Immunization", &immunization).await;
        assert_eq!(response.status(), 201, "{backend}");
        let created_imm = fhir_json(response).await;
        let imm_id = created_imm["id"].as_str().unwrap();
        assert_eq!(
            created_imm,
            expected(&immunization, imm_id, &created_imm["meta"]["lastUpdated"])
        );
        // Decimal precision survives storage: "5.0" is not "5".
        let raw = app
            .get(&format!("/fhir/Immunization/{imm_id}"))
            .await
            .text()
            .await
            .unwrap();
        assert!(raw.contains("\"doseQuantity\":{\"value\":5.0,"), "{raw}");
        let read: Value = serde_json::from_str(&raw).unwrap();
        assert_eq!(read, created_imm, "{backend}");
        assert_eq!(read["patient"]["reference"], format!("Patient/{id}"));
        app.stop().await;
    }
}

#[tokio::test]
async fn any_r4_type_is_stored_generically_and_client_ids_are_replaced() {
    for app in TestApp::on_every_backend().await {
        let observation = json!({"resourceType": "Observation", "id": "mine", "status": "final",
            "code": {"text": "glucose"}, "valueQuantity": {"value": 6.30, "unit": "mmol/l"}, "customElement": [1, 2]});
        let response = app.post("/fhir/Observation", &observation).await;
        assert_eq!(response.status(), 201);
        let created = fhir_json(response).await;
        assert_ne!(created["id"], "mine");
        assert_eq!(created["customElement"], json!([1, 2]));
        let read = fhir_json(
            app.get(&format!(
                "/fhir/Observation/{}",
                created["id"].as_str().unwrap()
            ))
            .await,
        )
        .await;
        assert_eq!(read, created);
        app.stop().await;
    }
}

#[tokio::test]
async fn plain_application_json_is_accepted() {
    let app = TestApp::start(store_sql::testing::TestDatabase::sqlite()).await;
    let response = app
        .client
        .post(app.url("/fhir/Patient"))
        .header("content-type", "application/json")
        .body(r#"{"resourceType":"Patient","active":true}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    app.stop().await;
}
