//! One request must not take the server down, and odd input gets a clear 4xx: bodies built to
//! amplify, JSON that FHIR forbids, answers in formats the server does not speak, bodies over
//! the limit, repeated search parameters and resources with huge arrays.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use store_sql::testing::TestDatabase;
use tests::{TestApp, fhir_json};

async fn refused(response: reqwest::Response, status: u16) -> Value {
    assert_eq!(response.status(), status);
    let body = fhir_json(response).await;
    assert_eq!(body["resourceType"], "OperationOutcome", "{body}");
    body
}

async fn post_raw(app: &TestApp, path: &str, body: impl Into<reqwest::Body>) -> reqwest::Response {
    app.client
        .post(app.url(path))
        .header("content-type", "application/fhir+json")
        .body(body)
        .send()
        .await
        .unwrap()
}

async fn patient_count(app: &TestApp) -> u64 {
    let body = fhir_json(app.get("/fhir/Patient?_summary=count").await).await;
    body["total"].as_u64().unwrap()
}

#[tokio::test]
async fn json_fhir_forbids_is_refused_naming_the_element() {
    for db in TestDatabase::all().await {
        let app = TestApp::start(db).await;
        let cases = [
            (
                r#"{"resourceType": "Patient", "gender": "male", "gender": "female"}"#,
                "Patient.gender",
                "more than once",
            ),
            (
                r#"{"resourceType": "Patient", "name": [{"family": "Nul\u0000l"}]}"#,
                "Patient.name[0].family",
                "control character",
            ),
            (
                r#"{"resourceType": "Observation", "status": "final", "code": {"text": "x"}, "valueQuantity": {"value": 1e400}}"#,
                "Observation.valueQuantity.value",
                "outside the range",
            ),
        ];
        for (body, location, words) in cases {
            let path = if body.contains("Observation") {
                "/fhir/Observation"
            } else {
                "/fhir/Patient"
            };
            let outcome = refused(post_raw(&app, path, body).await, 400).await;
            assert_eq!(outcome["issue"][0]["expression"][0], location, "{outcome}");
            let diagnostics = outcome["issue"][0]["diagnostics"].as_str().unwrap();
            assert!(diagnostics.contains(words), "{diagnostics}");
            assert!(!outcome.to_string().contains("Nul"), "no value echoed");
        }
        assert_eq!(patient_count(&app).await, 0);
        app.stop().await;
    }
}

#[tokio::test]
async fn an_amplifying_body_is_answered_at_once_while_others_are_served() {
    for db in TestDatabase::all().await {
        let app = TestApp::start(db).await;
        // 16.5 MB (under the 16 MiB limit), five and a half million empty objects.
        let body = format!(
            r#"{{"resourceType": "Patient", "extension": [{}]}}"#,
            vec!["{}"; 5_500_000].join(",")
        );
        assert!(body.len() < 16 * 1024 * 1024);
        let started = Instant::now();
        let (amplified, read) = tokio::join!(
            async {
                let outcome = refused(post_raw(&app, "/fhir/Patient", body).await, 400).await;
                (outcome, started.elapsed())
            },
            async {
                let response = app.get("/fhir/Patient?_count=1").await;
                (response.status(), started.elapsed())
            }
        );
        let (outcome, took) = amplified;
        assert!(took < Duration::from_secs(10), "{took:?}");
        let issues = outcome["issue"].as_array().unwrap();
        assert_eq!(
            issues.len(),
            101,
            "a hundred issues and one that says reading stopped"
        );
        assert_eq!(issues[100]["code"], "too-costly");
        assert!(outcome.to_string().len() < 64 * 1024);
        assert_eq!(read.0, 200);

        // Valid in shape but built to amplify: refused for cost, naming the limit.
        let body = format!(
            r#"{{"resourceType": "Patient", "extension": [{}]}}"#,
            vec![r#"{"url":"a"}"#; 1_000_000].join(",")
        );
        let outcome = refused(post_raw(&app, "/fhir/Patient", body).await, 400).await;
        assert_eq!(outcome["issue"][0]["code"], "too-costly");
        assert!(
            outcome["issue"][0]["diagnostics"]
                .as_str()
                .unwrap()
                .contains("16 times its size")
        );
        assert_eq!(patient_count(&app).await, 0);
        app.stop().await;
    }
}

#[tokio::test]
async fn accept_is_honoured_like_format() {
    let app = TestApp::start(TestDatabase::sqlite()).await;
    for accept in ["application/fhir+xml", "application/xml", "text/turtle"] {
        let response = app
            .client
            .get(app.url("/fhir/Patient"))
            .header("accept", accept)
            .send()
            .await
            .unwrap();
        let outcome = refused(response, 406).await;
        assert_eq!(outcome["issue"][0]["code"], "not-supported");
    }
    for accept in [
        "application/fhir+json",
        "application/json",
        "application/json+fhir",
        "*/*",
        "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
    ] {
        let response = app
            .client
            .get(app.url("/fhir/metadata"))
            .header("accept", accept)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{accept}");
    }
    // `_format` wins over Accept, as FHIR says.
    let response = app
        .client
        .get(app.url("/fhir/metadata?_format=json"))
        .header("accept", "application/fhir+xml")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    refused(app.get("/fhir/metadata?_format=xml").await, 406).await;
    app.stop().await;
}

#[tokio::test]
async fn a_body_over_the_limit_gets_its_413_not_a_broken_pipe() {
    let app = TestApp::start_with(TestDatabase::sqlite(), |config| {
        config.body_limit = 1024 * 1024
    })
    .await;
    let big = format!(
        r#"{{"resourceType": "Patient", "id": "{}"}}"#,
        "x".repeat(3 * 1024 * 1024)
    );
    // With a length, and chunked (no length known in advance).
    let outcome = refused(post_raw(&app, "/fhir/Patient", big.clone()).await, 413).await;
    assert_eq!(outcome["issue"][0]["code"], "too-long");
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> = big
        .into_bytes()
        .chunks(64 * 1024)
        .map(|c| Ok(c.to_vec()))
        .collect();
    let body = reqwest::Body::wrap_stream(futures::stream::iter(chunks));
    refused(post_raw(&app, "/fhir/Patient", body).await, 413).await;
    // The server is fine, and a body within the limit is stored.
    let response = app
        .post(
            "/fhir/Patient",
            &json!({"resourceType": "Patient", "active": true}),
        )
        .await;
    assert_eq!(response.status(), 201);
    app.stop().await;
}

#[tokio::test]
async fn resources_with_thousands_of_identifiers_or_names_are_stored_and_found() {
    for db in TestDatabase::all().await {
        let app = TestApp::start(db).await;
        let identifiers: Vec<Value> = (0..10_000)
            .map(|i| json!({"system": "http://example.org/mrn", "value": format!("MRN-{i:06}")}))
            .collect();
        let names: Vec<Value> = (0..2_000)
            .map(|i| json!({"family": format!("Family{i}"), "given": [format!("Given{i}")]}))
            .collect();
        for patient in [
            json!({"resourceType": "Patient", "identifier": identifiers}),
            json!({"resourceType": "Patient", "name": names}),
        ] {
            let response = app.post("/fhir/Patient", &patient).await;
            assert_eq!(response.status(), 201, "{}", app.backend());
        }
        for query in [
            "identifier=http://example.org/mrn|MRN-009999",
            "family=Family1999",
            "given=Given1234",
        ] {
            let found = fhir_json(app.get(&format!("/fhir/Patient?{query}")).await).await;
            let entries = found["entry"].as_array().map_or(0, Vec::len);
            assert_eq!(entries, 1, "{query} on {}", app.backend());
        }
        app.stop().await;
    }
}

#[tokio::test]
async fn a_search_with_hundreds_of_parameters_is_refused_at_once() {
    for db in TestDatabase::all().await {
        let app = TestApp::start(db).await;
        let query = vec!["family=smith"; 300].join("&");
        let started = Instant::now();
        let outcome = refused(app.get(&format!("/fhir/Patient?{query}")).await, 400).await;
        assert!(started.elapsed() < Duration::from_secs(2));
        let diagnostics = outcome["issue"][0]["diagnostics"].as_str().unwrap();
        assert!(diagnostics.contains("at most 20"), "{diagnostics}");
        // As a form body too, where no URL length limit applies.
        let ids: Vec<String> = (0..5000).map(|i| format!("id{i}")).collect();
        let response = app
            .client
            .post(app.url("/fhir/Patient/_search"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!("_id={}", ids.join(",")))
            .send()
            .await
            .unwrap();
        let outcome = refused(response, 400).await;
        let diagnostics = outcome["issue"][0]["diagnostics"].as_str().unwrap();
        assert!(diagnostics.contains("at most 1000 values"), "{diagnostics}");
        app.stop().await;
    }
}

/// Four searches that cannot finish (the resource table is locked by another session) neither
/// take the readiness check's connection nor outlive their requests in the database.
#[tokio::test]
async fn stuck_searches_do_not_hold_the_pool_or_the_database() {
    use sea_orm::{ConnectionTrait, Database, TransactionTrait};

    let Some(db) = TestDatabase::postgres().await else {
        return;
    };
    let app = TestApp::start_with(db, |config| {
        config.request_timeout_seconds = 2;
        config.max_connections = 4;
    })
    .await;
    let response = app
        .post(
            "/fhir/Patient",
            &json!({"resourceType": "Patient", "name": [{"family": "Smith"}]}),
        )
        .await;
    assert_eq!(response.status(), 201);

    let other = Database::connect(app.db.url()).await.unwrap();
    let lock = other.begin().await.unwrap();
    lock.execute_unprepared("LOCK TABLE resource IN ACCESS EXCLUSIVE MODE")
        .await
        .unwrap();
    let searches = futures::future::join_all((0..4).map(|_| app.get("/fhir/Patient?family=smi")));
    let readiness = async {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let started = Instant::now();
        let response = app
            .anonymous
            .get(app.url("/health/ready"))
            .send()
            .await
            .unwrap();
        (response.status(), started.elapsed())
    };
    let (answers, (ready, took)) = tokio::join!(searches, readiness);
    assert_eq!(ready, 200);
    assert!(took < Duration::from_secs(1), "{took:?}");
    for answer in answers {
        assert_eq!(answer.status(), 503);
    }
    // The database ends each statement when it has run as long as a request may (a statement
    // that started just before its request ran out of time ends up to that long after).
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let active = other
        .query_one_raw(sea_orm::Statement::from_string(
            sea_orm::DatabaseBackend::Postgres,
            "SELECT count(*) AS n, string_agg(left(query, 200), ' | ') AS q FROM pg_stat_activity \
             WHERE datname = current_database() AND state = 'active' AND wait_event_type = 'Lock'",
        ))
        .await
        .unwrap()
        .unwrap();
    let waiting: i64 = active.try_get("", "n").unwrap();
    let queries: Option<String> = active.try_get("", "q").unwrap();
    assert_eq!(
        waiting, 0,
        "statements still waiting after their requests ended: {queries:?}"
    );
    lock.rollback().await.unwrap();
    let found = fhir_json(app.get("/fhir/Patient?family=smi").await).await;
    assert_eq!(found["entry"].as_array().map_or(0, Vec::len), 1);
    app.stop().await;
}
