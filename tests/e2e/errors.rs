//! Bad input: a 4xx with an OperationOutcome naming the problem, never a 500, nothing written.

use serde_json::{Value, json};
use store_sql::testing::TestDatabase;
use tests::{TestApp, fhir_json};

async fn outcome(response: reqwest::Response, status: u16) -> Value {
    assert_eq!(response.status(), status);
    let body = fhir_json(response).await;
    assert_eq!(body["resourceType"], "OperationOutcome", "{body}");
    assert_eq!(body["issue"][0]["severity"], "error");
    body
}

async fn raw_post(
    app: &TestApp,
    path: &str,
    content_type: &str,
    body: impl Into<reqwest::Body>,
) -> reqwest::Response {
    app.client
        .post(app.url(path))
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn bad_input_is_answered_with_operation_outcomes_and_writes_nothing() {
    for db in TestDatabase::all().await {
        let app = TestApp::start_with(db, |config| config.body_limit = 64 * 1024).await;
        let fhir = "application/fhir+json";

        let body = outcome(
            raw_post(
                &app,
                "/fhir/Patient",
                fhir,
                "{\"resourceType\": \"Patient\",",
            )
            .await,
            400,
        )
        .await;
        assert!(
            body["issue"][0]["diagnostics"]
                .as_str()
                .unwrap()
                .starts_with("the body is not valid JSON")
        );

        let body = outcome(raw_post(&app, "/fhir/Patient", fhir, "").await, 400).await;
        assert_eq!(body["issue"][0]["code"], "structure");

        let body = outcome(
            app.post("/fhir/Immunization", &json!({"resourceType": "Patient"}))
                .await,
            400,
        )
        .await;
        assert_eq!(
            body["issue"][0]["diagnostics"],
            "the body is a Patient but the URL is for Immunization"
        );

        let invalid = json!({"resourceType": "Immunization", "status": "done", "patient": {"reference": "Patient/1"},
            "vaccineCode": {"text": "flu"}, "occurrenceDateTime": "2021-13-01", "note": [{"text": "Secret Name"}]});
        let body = outcome(app.post("/fhir/Immunization", &invalid).await, 400).await;
        let expressions: Vec<&str> = body["issue"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["expression"][0].as_str().unwrap())
            .collect();
        assert_eq!(
            expressions,
            ["Immunization.status", "Immunization.occurrenceDateTime"]
        );
        assert!(
            !body.to_string().contains("Secret Name") && !body.to_string().contains("2021-13-01"),
            "values never echoed"
        );

        let body = outcome(
            app.post(
                "/fhir/Patient",
                &json!({"resourceType": "Patient", "name": {"family": "x"}}),
            )
            .await,
            400,
        )
        .await;
        assert_eq!(body["issue"][0]["expression"][0], "Patient.name");

        let body = outcome(
            app.post("/fhir/Unicorn", &json!({"resourceType": "Unicorn"}))
                .await,
            404,
        )
        .await;
        assert_eq!(body["issue"][0]["code"], "not-supported");
        outcome(app.get("/fhir/Unicorn/1").await, 404).await;

        let oversize = format!(
            "{{\"resourceType\":\"Patient\",\"text\":{{\"status\":\"generated\",\"div\":\"<div>{}</div>\"}}}}",
            "x".repeat(70 * 1024)
        );
        let body = outcome(
            raw_post(&app, "/fhir/Patient", fhir, oversize.clone()).await,
            413,
        )
        .await;
        assert_eq!(body["issue"][0]["code"], "too-long");
        // Chunked (no Content-Length) is limited too.
        let chunks = futures::stream::iter(
            oversize
                .into_bytes()
                .chunks(8192)
                .map(|c| Ok::<_, std::io::Error>(c.to_vec()))
                .collect::<Vec<_>>(),
        );
        outcome(
            raw_post(
                &app,
                "/fhir/Patient",
                fhir,
                reqwest::Body::wrap_stream(chunks),
            )
            .await,
            413,
        )
        .await;

        outcome(
            raw_post(&app, "/fhir/Patient", "text/xml", "<Patient/>").await,
            415,
        )
        .await;

        assert_eq!(
            app.db.row_count("resource").await,
            0,
            "{}: a failed request wrote something",
            app.backend()
        );
        assert_eq!(app.db.row_count("resource_version").await, 0);
        app.stop().await;
    }
}

#[tokio::test]
async fn unknown_routes_and_methods_are_operation_outcomes() {
    let app = TestApp::start(TestDatabase::sqlite()).await;
    let body = outcome(app.get("/nowhere").await, 404).await;
    assert_eq!(body["issue"][0]["code"], "not-found");
    outcome(app.get("/fhir/Patient/a/b/c/d/e").await, 404).await;

    let response = app
        .client
        .post(app.url("/fhir/Patient/1"))
        .header("content-type", "application/fhir+json")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["allow"], "DELETE, GET, PATCH, PUT");
    outcome(response, 405).await;
    let response = app
        .client
        .put(app.url("/fhir"))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["allow"], "POST");
    outcome(response, 405).await;
    app.stop().await;
}

#[tokio::test]
async fn reads_of_unknown_or_malformed_ids_are_404() {
    let app = TestApp::start(TestDatabase::sqlite()).await;
    for id in ["missing", "has%20space", "x".repeat(65).as_str()] {
        let body = outcome(app.get(&format!("/fhir/Patient/{id}")).await, 404).await;
        assert_eq!(body["issue"][0]["code"], "not-found");
    }
    app.stop().await;
}
