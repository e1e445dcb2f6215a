//! Health, OpenAPI, request ids and graceful shutdown.

use std::time::Duration;

use serde_json::Value;
use store_sql::testing::TestDatabase;
use tests::TestApp;

#[tokio::test]
async fn health_checks_follow_the_database() {
    for app in TestApp::on_every_backend().await {
        assert_eq!(app.get("/health/live").await.status(), 200);
        let ready = app.get("/health/ready").await;
        assert_eq!(ready.status(), 200);
        assert_eq!(ready.json::<Value>().await.unwrap()["status"], "ready");
        if app.db.make_unreachable().await {
            let ready = app.get("/health/ready").await;
            assert_eq!(ready.status(), 503);
            assert_eq!(
                ready.json::<Value>().await.unwrap()["status"],
                "unavailable"
            );
            assert_eq!(
                app.get("/health/live").await.status(),
                200,
                "liveness does not depend on the database"
            );
            // A FHIR request now fails with 503 and an OperationOutcome, not a 500.
            let read = app.get("/fhir/Patient/x").await;
            assert_eq!(read.status(), 503);
            let body: Value = read.json().await.unwrap();
            assert_eq!(body["issue"][0]["code"], "transient");
        }
        app.stop().await;
    }
}

#[tokio::test]
async fn the_openapi_document_describes_every_endpoint_and_the_ui_is_served() {
    let app = TestApp::start(TestDatabase::sqlite()).await;
    let spec: Value = app.get("/openapi.json").await.json().await.unwrap();
    assert!(spec["openapi"].as_str().unwrap().starts_with("3."));
    let paths = spec["paths"].as_object().unwrap();
    for (path, method) in [
        ("/fhir/{resource_type}", "post"),
        ("/fhir/{resource_type}/{id}", "get"),
        ("/health/live", "get"),
        ("/health/ready", "get"),
    ] {
        let operation = &paths[path][method];
        assert!(operation.is_object(), "{method} {path} is not described");
        assert!(
            operation["summary"].is_string(),
            "{method} {path} has no summary"
        );
    }
    // The bearer scheme on every protected operation, and only on those: all but the health
    // probes and SMART discovery (which tells clients how to get a token).
    assert_eq!(
        spec["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
    for (path, item) in paths {
        for (method, operation) in item.as_object().unwrap() {
            let protected =
                !path.starts_with("/health/") && path != "/fhir/.well-known/smart-configuration";
            assert_eq!(
                operation["security"] == serde_json::json!([{"bearer": []}]),
                protected,
                "{method} {path}: security {}",
                operation["security"]
            );
            if protected {
                assert!(
                    operation["responses"]["401"].is_object(),
                    "{method} {path}: no 401"
                );
            }
        }
    }
    let create = &paths["/fhir/{resource_type}"]["post"];
    assert!(create["requestBody"]["content"]["application/fhir+json"].is_object());
    for status in ["201", "400", "404", "413", "415", "503"] {
        assert!(
            create["responses"][status].is_object(),
            "create does not document {status}"
        );
    }
    assert_eq!(
        spec,
        serde_json::from_str::<Value>(&api_openapi()).unwrap(),
        "served spec differs from the generated one"
    );

    let docs = app.get("/docs").await;
    assert_eq!(docs.status(), 200);
    assert!(docs.text().await.unwrap().contains("swagger"));
    app.stop().await;
}

fn api_openapi() -> String {
    let path = format!("{}/../docs/api/openapi.json", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(path)
        .expect("docs/api/openapi.json exists (cargo xtask openapi writes it)")
}

#[tokio::test]
async fn docs_can_be_turned_off() {
    let app = TestApp::start_with(TestDatabase::sqlite(), |config| config.docs = false).await;
    assert_eq!(app.get("/docs").await.status(), 404);
    assert_eq!(app.get("/openapi.json").await.status(), 200);
    app.stop().await;
}

#[tokio::test]
async fn every_response_has_a_request_id() {
    let app = TestApp::start(TestDatabase::sqlite()).await;
    let generated = app.get("/health/live").await;
    let id = generated.headers()["x-request-id"].to_str().unwrap();
    assert_eq!(id.len(), 32);
    let echoed = app
        .client
        .get(app.url("/fhir/Patient/none"))
        .header("x-request-id", "client-123")
        .send()
        .await
        .unwrap();
    assert_eq!(echoed.headers()["x-request-id"], "client-123");
    let refused = app
        .client
        .get(app.url("/health/live"))
        .header("x-request-id", "bad id with spaces")
        .send()
        .await
        .unwrap();
    assert_ne!(refused.headers()["x-request-id"], "bad id with spaces");
    app.stop().await;
}

#[tokio::test]
async fn shutdown_lets_in_flight_requests_finish() {
    let mut app = TestApp::start(TestDatabase::sqlite()).await;
    let running = app.take_running();
    // A create whose body arrives slowly: it is in flight when the shutdown starts.
    let (sender, receiver) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(4);
    let body = reqwest::Body::wrap_stream(futures::stream::unfold(receiver, |mut rx| async move {
        rx.recv().await.map(|chunk| (chunk, rx))
    }));
    let request = app
        .client
        .post(app.url("/fhir/Patient"))
        .header("content-type", "application/fhir+json")
        .body(body)
        .send();
    let in_flight = tokio::spawn(request);
    sender
        .send(Ok(b"{\"resourceType\":".to_vec()))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let stopping = tokio::spawn(running.stop());
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !stopping.is_finished(),
        "the server must wait for the request in flight"
    );
    sender
        .send(Ok(b"\"Patient\",\"active\":true}".to_vec()))
        .await
        .unwrap();
    drop(sender);
    let response = in_flight.await.unwrap().unwrap();
    assert_eq!(response.status(), 201);
    stopping.await.unwrap().unwrap();
    // And no new connections are accepted afterwards.
    assert!(
        app.client
            .get(app.url("/health/live"))
            .send()
            .await
            .is_err()
    );
}
