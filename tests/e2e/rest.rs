//! The FHIR REST API beyond create and read: update, delete, vread, history, conditional
//! interactions, search features, shaping, operations and metadata, over HTTP on SQLite and
//! PostgreSQL.

use serde_json::{Value, json};
use tests::{TestApp, fhir_json};

fn patient(id: &str, family: &str) -> Value {
    json!({"resourceType": "Patient", "id": id, "name": [{"family": family}]})
}

async fn put(app: &TestApp, path: &str, body: &Value, if_match: Option<&str>) -> reqwest::Response {
    let mut request = app
        .client
        .put(app.url(path))
        .header("content-type", "application/fhir+json")
        .body(body.to_string());
    if let Some(etag) = if_match {
        request = request.header("if-match", etag);
    }
    request.send().await.unwrap()
}

async fn delete(app: &TestApp, path: &str) -> reqwest::Response {
    app.client.delete(app.url(path)).send().await.unwrap()
}

async fn diagnostics(response: reqwest::Response, status: u16) -> String {
    assert_eq!(response.status(), status);
    let outcome = fhir_json(response).await;
    assert_eq!(outcome["resourceType"], "OperationOutcome");
    outcome["issue"][0]["diagnostics"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn update_delete_vread_and_history_behave_as_fhir_says() {
    for app in TestApp::on_every_backend().await {
        let backend = app.backend();
        let created = fhir_json(
            app.post("/fhir/Patient", &patient("ignored", "First"))
                .await,
        )
        .await;
        let id = created["id"].as_str().unwrap().to_owned();
        let path = format!("/fhir/Patient/{id}");

        let response = put(&app, &path, &patient(&id, "Second"), Some("W/\"1\"")).await;
        assert_eq!(response.status(), 200, "{backend}");
        assert_eq!(response.headers()["etag"], "W/\"2\"");
        assert!(
            response.headers()["content-location"]
                .to_str()
                .unwrap()
                .ends_with(&format!("{path}/_history/2"))
        );
        assert!(response.headers().contains_key("last-modified"));
        let updated = fhir_json(response).await;
        assert_eq!(updated["meta"]["versionId"], "2");
        assert_eq!(
            fhir_json(app.get(&path).await).await["name"][0]["family"],
            "Second"
        );

        // A stale If-Match: 412, nothing written.
        let stale = put(&app, &path, &patient(&id, "Stale"), Some("W/\"1\"")).await;
        let text = diagnostics(stale, 412).await;
        assert!(
            text.contains("expected version 1") && text.contains("current version is 2"),
            "{text}"
        );
        assert!(!text.contains("Stale"));
        assert_eq!(
            diagnostics(
                put(&app, &path, &patient(&id, "X"), Some("soon")).await,
                400
            )
            .await,
            "If-Match must be a version ETag such as W/\"3\""
        );
        let mismatch = put(&app, &path, &patient("someone-else", "X"), None).await;
        assert!(
            diagnostics(mismatch, 400)
                .await
                .contains("must be present and equal the id in the URL")
        );

        // vread.
        let v1 = app.get(&format!("{path}/_history/1")).await;
        assert_eq!(v1.status(), 200);
        assert_eq!(v1.headers()["etag"], "W/\"1\"");
        assert_eq!(fhir_json(v1).await["name"][0]["family"], "First");
        assert_eq!(app.get(&format!("{path}/_history/9")).await.status(), 404);
        assert_eq!(app.get(&format!("{path}/_history/abc")).await.status(), 404);

        // Update as create, with the client's id.
        let response = put(
            &app,
            "/fhir/Patient/client-chosen-1",
            &patient("client-chosen-1", "Chosen"),
            None,
        )
        .await;
        assert_eq!(response.status(), 201, "{backend}");
        assert!(
            response.headers()["location"]
                .to_str()
                .unwrap()
                .ends_with("/fhir/Patient/client-chosen-1/_history/1")
        );

        // Delete: 204; read 410; vread of the deletion 410; older versions still readable.
        assert_eq!(delete(&app, &path).await.status(), 204);
        assert_eq!(app.get(&path).await.status(), 410);
        assert_eq!(app.get(&format!("{path}/_history/3")).await.status(), 410);
        assert_eq!(app.get(&format!("{path}/_history/2")).await.status(), 200);
        assert_eq!(
            delete(&app, &path).await.status(),
            204,
            "deleting again is harmless"
        );
        assert_eq!(
            delete(&app, "/fhir/Patient/never-existed").await.status(),
            404
        );
        let found = fhir_json(app.get("/fhir/Patient?family=second").await).await;
        assert!(
            found.get("entry").is_none(),
            "{backend}: a deleted patient is not found"
        );

        // History: newest first, the deletion without a resource.
        let history = fhir_json(app.get(&format!("{path}/_history")).await).await;
        assert_eq!(history["type"], "history");
        let entries = history["entry"].as_array().unwrap();
        let methods: Vec<_> = entries
            .iter()
            .map(|e| e["request"]["method"].as_str().unwrap())
            .collect();
        assert_eq!(methods, ["DELETE", "PUT", "POST"], "{backend}");
        assert!(entries[0].get("resource").is_none());
        assert_eq!(entries[1]["resource"]["name"][0]["family"], "Second");
        assert_eq!(entries[1]["response"]["etag"], "W/\"2\"");
        let one = fhir_json(app.get(&format!("{path}/_history?_count=1")).await).await;
        assert_eq!(one["entry"].as_array().unwrap().len(), 1);
        let since = entries[1]["response"]["lastModified"].as_str().unwrap();
        let recent = fhir_json(app.get(&format!("{path}/_history?_since={since}")).await).await;
        assert_eq!(recent["entry"].as_array().unwrap().len(), 2, "{backend}");
        assert_eq!(
            app.get(&format!("{path}/_history?_since=yesterday"))
                .await
                .status(),
            400
        );
        assert_eq!(app.get("/fhir/Patient/nobody/_history").await.status(), 404);

        // Updating after a delete brings the resource back as the next version.
        let back = put(&app, &path, &patient(&id, "Back"), None).await;
        assert_eq!(back.status(), 200);
        assert_eq!(back.headers()["etag"], "W/\"4\"");
        assert_eq!(app.get(&path).await.status(), 200);
        app.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_updates_lose_nothing_and_if_match_admits_one() {
    for app in TestApp::on_every_backend().await {
        let backend = app.backend();
        let id = "contended-patient";
        let path = format!("/fhir/Patient/{id}");
        assert_eq!(
            put(&app, &path, &patient(id, "Start"), None).await.status(),
            201
        );

        // Without If-Match every update lands, one version each.
        let updates = (0..8).map(|n| {
            let (app, path) = (&app, path.clone());
            async move {
                put(app, &path, &patient(id, &format!("Blind{n}")), None)
                    .await
                    .status()
                    .as_u16()
            }
        });
        let statuses = futures::future::join_all(updates).await;
        assert!(
            statuses.iter().all(|s| *s == 200),
            "{backend}: {statuses:?}"
        );
        let history = fhir_json(app.get(&format!("{path}/_history?_count=100")).await).await;
        assert_eq!(history["entry"].as_array().unwrap().len(), 9, "{backend}");

        // With the same If-Match exactly one wins; the others get 412.
        let guarded = (0..8).map(|n| {
            let (app, path) = (&app, path.clone());
            async move {
                put(
                    app,
                    &path,
                    &patient(id, &format!("Guarded{n}")),
                    Some("W/\"9\""),
                )
                .await
                .status()
                .as_u16()
            }
        });
        let mut statuses = futures::future::join_all(guarded).await;
        statuses.sort_unstable();
        assert_eq!(
            statuses,
            [200, 412, 412, 412, 412, 412, 412, 412],
            "{backend}"
        );
        let current = app.get(&path).await;
        assert_eq!(current.headers()["etag"], "W/\"10\"");
        app.stop().await;
    }
}

#[tokio::test]
async fn metadata_is_a_capability_statement_of_what_the_server_does() {
    let app = TestApp::start(store_sql::testing::TestDatabase::sqlite()).await;
    let statement = fhir_json(app.get("/fhir/metadata").await).await;
    assert_eq!(statement["resourceType"], "CapabilityStatement");
    assert_eq!(statement["fhirVersion"], "4.0.1");
    assert_eq!(statement["kind"], "instance");
    let resources = statement["rest"][0]["resource"].as_array().unwrap();
    let patient_entry = resources.iter().find(|r| r["type"] == "Patient").unwrap();
    let interactions: Vec<_> = patient_entry["interaction"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["code"].as_str().unwrap())
        .collect();
    assert_eq!(
        interactions,
        [
            "read",
            "vread",
            "update",
            "patch",
            "delete",
            "history-instance",
            "history-type",
            "create",
            "search-type"
        ]
    );
    let birthdate = patient_entry["searchParam"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "birthdate")
        .unwrap();
    assert_eq!(birthdate["type"], "date");
    assert!(
        birthdate["documentation"]
            .as_str()
            .unwrap()
            .contains("blind-indexed")
    );
    assert_eq!(patient_entry["operation"][1]["name"], "erase");
    // What the statement says is what the server does: a stored Patient answers every
    // advertised read-side interaction.
    let created = fhir_json(app.post("/fhir/Patient", &patient("x", "Meta")).await).await;
    let id = created["id"].as_str().unwrap();
    for path in [
        format!("/fhir/Patient/{id}"),
        format!("/fhir/Patient/{id}/_history/1"),
        format!("/fhir/Patient/{id}/_history"),
        "/fhir/Patient/_history".to_owned(),
        "/fhir/Patient?family=meta".to_owned(),
    ] {
        assert_eq!(app.get(&path).await.status(), 200, "{path}");
    }
    app.stop().await;
}

#[tokio::test]
async fn type_and_system_history_page_through_every_version() {
    for app in TestApp::on_every_backend().await {
        let backend = app.backend();
        let mut ids = Vec::new();
        for n in 0..5 {
            let created = fhir_json(
                app.post("/fhir/Patient", &patient("x", &format!("Hist{n}")))
                    .await,
            )
            .await;
            ids.push(created["id"].as_str().unwrap().to_owned());
        }
        let path = format!("/fhir/Patient/{}", ids[0]);
        assert_eq!(
            put(&app, &path, &patient(&ids[0], "Hist0b"), None)
                .await
                .status(),
            200
        );
        assert_eq!(
            delete(&app, &format!("/fhir/Patient/{}", ids[1]))
                .await
                .status(),
            204
        );
        let organization = json!({"resourceType": "Organization", "name": "Clinic"});
        assert_eq!(
            app.post("/fhir/Organization", &organization).await.status(),
            201
        );

        // Type history, two at a time, following next links: 7 versions, newest first.
        let mut seen = Vec::new();
        let mut url = app.url("/fhir/Patient/_history?_count=2");
        loop {
            let page = fhir_json(app.client.get(&url).send().await.unwrap()).await;
            assert_eq!(page["type"], "history");
            for entry in page["entry"].as_array().into_iter().flatten() {
                seen.push((
                    entry["response"]["lastModified"]
                        .as_str()
                        .unwrap()
                        .to_owned(),
                    entry["request"]["method"].as_str().unwrap().to_owned(),
                ));
            }
            let next = page["link"]
                .as_array()
                .unwrap()
                .iter()
                .find(|l| l["relation"] == "next")
                .map(|l| l["url"].as_str().unwrap().to_owned());
            match next {
                Some(next) => url = next,
                None => break,
            }
        }
        assert_eq!(seen.len(), 7, "{backend}: {seen:?}");
        assert!(seen.windows(2).all(|w| w[0].0 >= w[1].0), "newest first");
        assert_eq!(seen.iter().filter(|(_, m)| m == "DELETE").count(), 1);

        // System history has the Organization too.
        let system = fhir_json(app.get("/fhir/_history?_count=100").await).await;
        assert_eq!(system["entry"].as_array().unwrap().len(), 8, "{backend}");
        let since = &seen[1].0;
        let recent = fhir_json(app.get(&format!("/fhir/_history?_since={since}")).await).await;
        assert!(recent["entry"].as_array().unwrap().len() >= 2);
        assert_eq!(
            app.get("/fhir/Patient/_history?_cursor=nonsense")
                .await
                .status(),
            400
        );
        assert_eq!(
            app.get("/fhir/Patient/_history?_since=soon").await.status(),
            400
        );
        app.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn thirty_two_concurrent_conditional_creates_make_one_resource() {
    for app in TestApp::on_every_backend().await {
        let backend = app.backend();
        let body = json!({"resourceType": "Patient",
            "identifier": [{"system": "urn:oid:2.16.840.1.113883.4.3.25", "value": "IIS-0042"}]});
        let creates = (0..32).map(|_| {
            let (app, body) = (&app, body.clone());
            async move {
                let response = app
                    .client
                    .post(app.url("/fhir/Patient"))
                    .header("content-type", "application/fhir+json")
                    .header(
                        "if-none-exist",
                        "identifier=urn:oid:2.16.840.1.113883.4.3.25|IIS-0042",
                    )
                    .body(body.to_string())
                    .send()
                    .await
                    .unwrap();
                let status = response.status().as_u16();
                let json: Value = response.json().await.unwrap();
                (status, json["id"].as_str().map(str::to_owned))
            }
        });
        let results = futures::future::join_all(creates).await;
        let created = results.iter().filter(|(s, _)| *s == 201).count();
        let existing = results.iter().filter(|(s, _)| *s == 200).count();
        assert_eq!((created, existing), (1, 31), "{backend}: {results:?}");
        let ids: std::collections::BTreeSet<_> = results.iter().map(|(_, id)| id.clone()).collect();
        assert_eq!(ids.len(), 1, "{backend}: every answer is the same resource");
        let found = fhir_json(app.get("/fhir/Patient?identifier=IIS-0042").await).await;
        assert_eq!(found["entry"].as_array().unwrap().len(), 1, "{backend}");
        // Ambiguous criteria: 412.
        assert_eq!(app.post("/fhir/Patient", &body).await.status(), 201);
        let ambiguous = app
            .client
            .post(app.url("/fhir/Patient"))
            .header("content-type", "application/fhir+json")
            .header("if-none-exist", "identifier=IIS-0042")
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(ambiguous.status(), 412, "{backend}");

        // A claim whose holder no longer matches (its identifier changed) does not block a
        // new conditional create with the old criteria.
        let conditional = |value: &'static str| {
            let body = json!({"resourceType": "Patient", "identifier": [{"system": "urn:x", "value": value}]});
            app.client
                .post(app.url("/fhir/Patient"))
                .header("content-type", "application/fhir+json")
                .header("if-none-exist", format!("identifier=urn:x|{value}"))
                .body(body.to_string())
                .send()
        };
        let first = conditional("OLD-1").await.unwrap();
        assert_eq!(first.status(), 201);
        let mut renamed = fhir_json(first).await;
        renamed["identifier"][0]["value"] = json!("NEW-1");
        let path = format!("/fhir/Patient/{}", renamed["id"].as_str().unwrap());
        assert_eq!(put(&app, &path, &renamed, None).await.status(), 200);
        assert_eq!(
            conditional("OLD-1").await.unwrap().status(),
            201,
            "{backend}"
        );
        assert_eq!(
            conditional("OLD-1").await.unwrap().status(),
            200,
            "{backend}"
        );
        app.stop().await;
    }
}

#[tokio::test]
async fn validate_checks_without_storing() {
    let app = TestApp::start(store_sql::testing::TestDatabase::sqlite()).await;
    let ok = fhir_json(
        app.post("/fhir/Patient/$validate", &patient("v", "Valid"))
            .await,
    )
    .await;
    assert_eq!(ok["issue"][0]["severity"], "information");
    let bad = json!({"resourceType": "Patient", "gender": "sometimes", "birthDate": "1970-13-01"});
    let response = app.post("/fhir/Patient/$validate", &bad).await;
    assert_eq!(response.status(), 200);
    let outcome = fhir_json(response).await;
    let issues = outcome["issue"].as_array().unwrap();
    assert_eq!(issues.len(), 2, "{outcome}");
    assert!(issues.iter().all(|i| i["severity"] == "error"));
    let wrong = fhir_json(
        app.post("/fhir/Immunization/$validate", &patient("v", "X"))
            .await,
    )
    .await;
    assert!(
        wrong["issue"][0]["diagnostics"]
            .as_str()
            .unwrap()
            .contains("URL is for Immunization")
    );
    assert_eq!(app.db.row_count("resource").await, 0, "nothing stored");
    app.stop().await;
}

#[tokio::test]
async fn prefer_shapes_write_answers_and_lenient_search() {
    let app = TestApp::start(store_sql::testing::TestDatabase::sqlite()).await;
    let send = |prefer: &'static str| {
        app.client
            .post(app.url("/fhir/Patient"))
            .header("content-type", "application/fhir+json")
            .header("prefer", prefer)
            .body(patient("p", "Preferred").to_string())
            .send()
    };
    let minimal = send("return=minimal").await.unwrap();
    assert_eq!(minimal.status(), 201);
    let location = minimal.headers()["location"].to_str().unwrap().to_owned();
    assert!(minimal.bytes().await.unwrap().is_empty());
    let outcome = fhir_json(send("return=OperationOutcome").await.unwrap()).await;
    assert_eq!(outcome["resourceType"], "OperationOutcome");
    assert!(
        outcome["issue"][0]["diagnostics"]
            .as_str()
            .unwrap()
            .starts_with("created Patient/")
    );
    let full = fhir_json(send("return=representation").await.unwrap()).await;
    assert_eq!(full["resourceType"], "Patient");
    // Update honours it too.
    let id = location.split('/').rev().nth(2).unwrap().to_owned();
    let updated = app
        .client
        .put(app.url(&format!("/fhir/Patient/{id}")))
        .header("content-type", "application/fhir+json")
        .header("prefer", "return=minimal")
        .body(patient(&id, "Again").to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(updated.status(), 200);
    assert!(updated.bytes().await.unwrap().is_empty());

    // Unknown search parameters: 400 by default, ignored and reported when lenient.
    assert_eq!(
        app.get("/fhir/Patient?family=pref&shoe-size=9")
            .await
            .status(),
        400
    );
    let lenient = app
        .client
        .get(app.url("/fhir/Patient?family=pref&shoe-size=9"))
        .header("prefer", "handling=lenient")
        .send()
        .await
        .unwrap();
    let bundle = fhir_json(lenient).await;
    let entries = bundle["entry"].as_array().unwrap();
    let outcome = entries
        .iter()
        .find(|e| e["search"]["mode"] == "outcome")
        .unwrap();
    assert!(
        outcome["resource"]["issue"][0]["diagnostics"]
            .as_str()
            .unwrap()
            .contains("shoe-size")
    );
    assert_eq!(
        entries
            .iter()
            .filter(|e| e["search"]["mode"] == "match")
            .count(),
        2,
        "three created, one renamed"
    );
    app.stop().await;
}

#[tokio::test]
async fn include_and_revinclude_add_the_related_resources() {
    for app in TestApp::on_every_backend().await {
        let backend = app.backend();
        let mut patients = Vec::new();
        for family in ["Incl", "Other"] {
            let created = fhir_json(app.post("/fhir/Patient", &patient("x", family)).await).await;
            patients.push(created["id"].as_str().unwrap().to_owned());
        }
        for (owner, doses) in [(&patients[0], 2), (&patients[1], 1)] {
            for _ in 0..doses {
                let dose = json!({"resourceType": "Immunization", "status": "completed",
                    "vaccineCode": {"coding": [{"system": "http://hl7.org/fhir/sid/cvx", "code": "208"}]},
                    "patient": {"reference": format!("Patient/{owner}")},
                    "occurrenceDateTime": "2021-04-01"});
                assert_eq!(app.post("/fhir/Immunization", &dose).await.status(), 201);
            }
        }
        let modes = |bundle: &Value| {
            let mut modes: Vec<(String, String)> = bundle["entry"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| {
                    (
                        e["search"]["mode"].as_str().unwrap().to_owned(),
                        e["resource"]["resourceType"].as_str().unwrap().to_owned(),
                    )
                })
                .collect();
            modes.sort();
            modes
        };
        let m = |mode: &str, rt: &str| (mode.to_owned(), rt.to_owned());
        let included = fhir_json(
            app.get(&format!(
                "/fhir/Immunization?patient={}&_include=Immunization:patient",
                patients[0]
            ))
            .await,
        )
        .await;
        assert_eq!(
            modes(&included),
            [
                m("include", "Patient"),
                m("match", "Immunization"),
                m("match", "Immunization")
            ],
            "{backend}"
        );
        let revincluded = fhir_json(
            app.get(&format!(
                "/fhir/Patient?_id={}&_revinclude=Immunization:patient",
                patients[0]
            ))
            .await,
        )
        .await;
        assert_eq!(
            modes(&revincluded),
            [
                m("include", "Immunization"),
                m("include", "Immunization"),
                m("match", "Patient")
            ],
            "{backend}"
        );
        // Chained: immunizations of the patient with this identifier.
        let tagged = json!({"resourceType": "Patient", "id": patients[1],
            "identifier": [{"system": "urn:mrn", "value": "CHAIN-1"}]});
        let path = format!("/fhir/Patient/{}", patients[1]);
        assert_eq!(put(&app, &path, &tagged, None).await.status(), 200);
        let chained = fhir_json(
            app.get("/fhir/Immunization?patient.identifier=urn:mrn|CHAIN-1")
                .await,
        )
        .await;
        assert_eq!(modes(&chained), [m("match", "Immunization")], "{backend}");
        let typed = fhir_json(
            app.get("/fhir/Immunization?patient:Patient.identifier=CHAIN-1")
                .await,
        )
        .await;
        assert_eq!(modes(&typed), [m("match", "Immunization")], "{backend}");
        for bad in [
            "/fhir/Immunization?performer.identifier=x",
            "/fhir/Immunization?patient.shoe-size=9",
            "/fhir/Immunization?patient.organization.name=x",
            "/fhir/Immunization?_include=Patient:organization",
            "/fhir/Immunization?_include=Immunization:status",
            "/fhir/Immunization?_include=nonsense",
            "/fhir/Patient?_revinclude=Nothing:patient",
        ] {
            assert_eq!(app.get(bad).await.status(), 400, "{bad}");
        }
        app.stop().await;
    }
}

#[tokio::test]
async fn series_status_counts_completed_doses_and_follows_changes() {
    for app in TestApp::on_every_backend().await {
        let backend = app.backend();
        let created = fhir_json(app.post("/fhir/Patient", &patient("x", "Series")).await).await;
        let id = created["id"].as_str().unwrap().to_owned();
        let dose = |n: u32, date: &str| {
            json!({"resourceType": "Immunization", "status": "completed",
                "vaccineCode": {"coding": [{"system": "http://hl7.org/fhir/sid/cvx", "code": "208"}]},
                "patient": {"reference": format!("Patient/{id}")}, "occurrenceDateTime": date,
                "protocolApplied": [{"series": "COVID-19 primary", "doseNumberPositiveInt": n,
                    "seriesDosesPositiveInt": 2,
                    "targetDisease": [{"coding": [{"system": "http://snomed.info/sct", "code": "840539006"}]}]}]})
        };
        let first = fhir_json(app.post("/fhir/Immunization", &dose(1, "2021-04-01")).await).await;
        let status_of = |app: &TestApp| {
            let path = format!("/fhir/Patient/{id}/$series-status");
            let client = app.client.clone();
            let url = app.url(&path);
            async move { fhir_json(client.get(url).send().await.unwrap()).await }
        };
        let part = |status: &Value, name: &str| -> Value {
            status["parameter"][0]["part"]
                .as_array()
                .unwrap()
                .iter()
                .find(|p| p["name"] == name)
                .map(|p| {
                    p.as_object()
                        .unwrap()
                        .iter()
                        .find(|(k, _)| k.starts_with("value"))
                        .unwrap()
                        .1
                        .clone()
                })
                .unwrap_or(Value::Null)
        };
        let one = status_of(&app).await;
        assert_eq!(one["resourceType"], "Parameters");
        assert_eq!(part(&one, "dosesGiven"), 1, "{backend}");
        assert_eq!(part(&one, "complete"), false);
        assert_eq!(
            app.post("/fhir/Immunization", &dose(2, "2021-05-01"))
                .await
                .status(),
            201
        );
        let two = status_of(&app).await;
        assert_eq!(
            (part(&two, "dosesGiven"), part(&two, "complete")),
            (json!(2), json!(true))
        );
        // Marking the first dose entered-in-error takes it out of the count at once.
        let mut wrong = first.clone();
        wrong["status"] = json!("entered-in-error");
        let first_path = format!("/fhir/Immunization/{}", first["id"].as_str().unwrap());
        assert_eq!(put(&app, &first_path, &wrong, None).await.status(), 200);
        let after = status_of(&app).await;
        assert_eq!(
            (part(&after, "dosesGiven"), part(&after, "complete")),
            (json!(1), json!(false)),
            "{backend}"
        );
        assert_eq!(
            app.get("/fhir/Patient/nobody/$series-status")
                .await
                .status(),
            404
        );
        app.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn conditional_update_updates_the_match_or_creates_once() {
    for app in TestApp::on_every_backend().await {
        let backend = app.backend();
        let body = |family: &str| {
            json!({"resourceType": "Patient", "name": [{"family": family}],
            "identifier": [{"system": "urn:mrn", "value": "CU-7"}]})
        };
        let path = "/fhir/Patient?identifier=urn:mrn|CU-7";
        // Nothing matches, 8 at once: one creates, the others update what it created.
        let writes = (0..8).map(|n| {
            let app = &app;
            let body = body(&format!("Cond{n}"));
            async move { put(app, path, &body, None).await.status().as_u16() }
        });
        let mut statuses = futures::future::join_all(writes).await;
        statuses.sort_unstable();
        assert_eq!(
            statuses,
            [200, 200, 200, 200, 200, 200, 200, 201],
            "{backend}"
        );
        let found = fhir_json(app.get("/fhir/Patient?identifier=urn:mrn|CU-7").await).await;
        let entries = found["entry"].as_array().unwrap();
        assert_eq!(entries.len(), 1, "{backend}");
        assert_eq!(entries[0]["resource"]["meta"]["versionId"], "8");
        let id = entries[0]["resource"]["id"].as_str().unwrap().to_owned();
        // A body naming another id is refused; several matches are 412.
        let mut other = body("Other");
        other["id"] = json!("someone-else");
        assert_eq!(put(&app, path, &other, None).await.status(), 400);
        assert_eq!(app.post("/fhir/Patient", &body("Twin")).await.status(), 201);
        assert_eq!(put(&app, path, &body("X"), None).await.status(), 412);
        assert_eq!(app.get(&format!("/fhir/Patient/{id}")).await.status(), 200);
        app.stop().await;
    }
}

#[tokio::test]
async fn format_pretty_summary_and_elements_shape_answers() {
    let app = TestApp::start(store_sql::testing::TestDatabase::sqlite()).await;
    let body = json!({"resourceType": "Patient", "gender": "female",
        "text": {"status": "generated", "div": "<div xmlns=\"http://www.w3.org/1999/xhtml\">Shaped</div>"},
        "name": [{"family": "Shaped"}], "birthDate": "1980-01-01"});
    let id = fhir_json(app.post("/fhir/Patient", &body).await).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let path = format!("/fhir/Patient/{id}");
    let subsetted = |resource: &Value| {
        resource["meta"]["tag"]
            .as_array()
            .is_some_and(|tags| tags.iter().any(|t| t["code"] == "SUBSETTED"))
    };
    let elements = fhir_json(app.get(&format!("{path}?_elements=name")).await).await;
    assert_eq!(elements["name"][0]["family"], "Shaped");
    assert!(elements.get("gender").is_none() && elements.get("birthDate").is_none());
    assert!(subsetted(&elements));
    let text = fhir_json(app.get(&format!("{path}?_summary=text")).await).await;
    assert!(text.get("text").is_some() && text.get("name").is_none());
    let data = fhir_json(app.get(&format!("{path}?_summary=data")).await).await;
    assert!(data.get("text").is_none() && data.get("name").is_some());
    let plain = fhir_json(app.get(&path).await).await;
    assert!(!subsetted(&plain), "nothing removed, no tag");
    let pretty = app
        .get(&format!(
            "{path}?_pretty=true&_format=application/fhir%2Bjson"
        ))
        .await;
    assert!(
        String::from_utf8(pretty.bytes().await.unwrap().to_vec())
            .unwrap()
            .contains("\n  \"")
    );
    assert_eq!(app.get(&format!("{path}?_format=xml")).await.status(), 406);
    assert_eq!(
        app.get(&format!("{path}?_pretty=maybe")).await.status(),
        400
    );
    // `_summary=true`: the elements R4 marks isSummary (name, gender, birthDate), not the
    // narrative.
    let summary = fhir_json(app.get(&format!("{path}?_summary=true")).await).await;
    assert_eq!(summary["name"][0]["family"], "Shaped");
    assert_eq!(summary["birthDate"], "1980-01-01");
    assert!(summary.get("text").is_none() && subsetted(&summary));
    assert_eq!(
        app.get(&format!("{path}?_summary=maybe")).await.status(),
        400
    );

    let count = fhir_json(app.get("/fhir/Patient?family=shaped&_summary=count").await).await;
    assert_eq!(count["total"], 1);
    assert!(count.get("entry").is_none());
    let searched = fhir_json(
        app.get("/fhir/Patient?family=shaped&_elements=gender")
            .await,
    )
    .await;
    let resource = &searched["entry"][0]["resource"];
    assert_eq!(resource["gender"], "female");
    assert!(resource.get("name").is_none() && subsetted(resource));
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn paging_through_2500_matches_while_inserting_skips_and_repeats_nothing() {
    use futures::StreamExt;
    use std::collections::BTreeSet;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    for app in TestApp::on_every_backend().await {
        let backend = app.backend();
        let app = Arc::new(app);
        let originals: BTreeSet<String> = futures::stream::iter(0..2500)
            .map(|n| {
                let app = app.clone();
                async move {
                    let body = json!({"resourceType": "Patient", "name": [{"family": format!("Pagetest{n}")}]});
                    let created = fhir_json(app.post("/fhir/Patient", &body).await).await;
                    created["id"].as_str().unwrap().to_owned()
                }
            })
            .buffer_unordered(16)
            .collect()
            .await;
        assert_eq!(originals.len(), 2500);

        // New matches keep arriving while the client pages.
        let stop = Arc::new(AtomicBool::new(false));
        let inserter = {
            let (app, stop) = (app.clone(), stop.clone());
            tokio::spawn(async move {
                let mut inserted = 0;
                while !stop.load(Ordering::Relaxed) {
                    let body =
                        json!({"resourceType": "Patient", "name": [{"family": "PagetestNew"}]});
                    assert_eq!(app.post("/fhir/Patient", &body).await.status(), 201);
                    inserted += 1;
                }
                inserted
            })
        };
        // Let the inserts get going before the first page.
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        let mut seen = Vec::new();
        let mut url = app.url("/fhir/Patient?family=pagetest&_count=100");
        let mut pages = 0;
        loop {
            let page = fhir_json(app.client.get(&url).send().await.unwrap()).await;
            pages += 1;
            for entry in page["entry"].as_array().into_iter().flatten() {
                seen.push(entry["resource"]["id"].as_str().unwrap().to_owned());
            }
            let next = page["link"]
                .as_array()
                .unwrap()
                .iter()
                .find(|l| l["relation"] == "next")
                .map(|l| l["url"].as_str().unwrap().to_owned());
            match next {
                Some(next) => url = next,
                None => break,
            }
        }
        stop.store(true, Ordering::Relaxed);
        let inserted = inserter.await.unwrap();
        let unique: BTreeSet<String> = seen.iter().cloned().collect();
        assert_eq!(unique.len(), seen.len(), "{backend}: no resource twice");
        assert!(
            originals.is_subset(&unique),
            "{backend}: every resource that existed at the start"
        );
        assert!(pages >= 25, "{backend}: {pages} pages");
        assert!(inserted > 0, "{backend}: inserts ran during paging");
        Arc::into_inner(app).unwrap().stop().await;
    }
}

#[tokio::test]
async fn sort_by_date_pages_both_ways_with_next_and_previous_links() {
    for app in TestApp::on_every_backend().await {
        let patient = fhir_json(
            app.post("/fhir/Patient", &patient("sorted-p", "Sorted"))
                .await,
        )
        .await["id"]
            .as_str()
            .unwrap()
            .to_owned();
        // Seven doses: two on one day, and one dated only to the month (it sorts by its start
        // ascending and by its end descending).
        let days = [
            "2021-03-05",
            "2021-03-01",
            "2021-03-09",
            "2021-03-05",
            "2021-02",
            "2021-03-07",
            "2021-03-03",
        ];
        for day in days {
            let dose = json!({"resourceType": "Immunization", "status": "completed",
                "vaccineCode": {"text": "x"}, "patient": {"reference": format!("Patient/{patient}")},
                "occurrenceDateTime": day});
            assert_eq!(app.post("/fhir/Immunization", &dose).await.status(), 201);
        }
        let dates = |bundle: &Value| {
            bundle["entry"]
                .as_array()
                .map(|entries| {
                    entries
                        .iter()
                        .map(|e| {
                            e["resource"]["occurrenceDateTime"]
                                .as_str()
                                .unwrap()
                                .to_owned()
                        })
                        .collect::<Vec<_>>()
                })
                .unwrap_or_default()
        };
        let link = |bundle: &Value, relation: &str| {
            bundle["link"].as_array().unwrap().iter().find_map(|l| {
                (l["relation"] == relation).then(|| {
                    l["url"]
                        .as_str()
                        .unwrap()
                        .strip_prefix(&app.base)
                        .unwrap()
                        .to_owned()
                })
            })
        };
        for (sort, want) in [
            (
                "date",
                [
                    "2021-02",
                    "2021-03-01",
                    "2021-03-03",
                    "2021-03-05",
                    "2021-03-05",
                    "2021-03-07",
                    "2021-03-09",
                ],
            ),
            (
                "-date",
                [
                    "2021-03-09",
                    "2021-03-07",
                    "2021-03-05",
                    "2021-03-05",
                    "2021-03-03",
                    "2021-03-01",
                    "2021-02",
                ],
            ),
        ] {
            let first = format!("/fhir/Immunization?patient={patient}&_sort={sort}&_count=3");
            let mut pages = Vec::new();
            let mut bundle = fhir_json(app.get(&first).await).await;
            assert!(
                link(&bundle, "previous").is_none(),
                "the first page has no previous"
            );
            loop {
                pages.push(dates(&bundle));
                match link(&bundle, "next") {
                    Some(next) => bundle = fhir_json(app.get(&next).await).await,
                    None => break,
                }
            }
            assert_eq!(pages.concat(), want, "{}: _sort={sort}", app.backend());
            // Back from the last page through `previous` links: the same pages.
            let mut back = Vec::new();
            while let Some(previous) = link(&bundle, "previous") {
                bundle = fhir_json(app.get(&previous).await).await;
                assert!(link(&bundle, "next").is_some());
                back.push(dates(&bundle));
            }
            back.reverse();
            assert_eq!(
                back,
                pages[..pages.len() - 1],
                "{}: _sort={sort}",
                app.backend()
            );
        }
        for (sort, says) in [
            ("birthdate", "blind-indexed"),
            ("gender", "not supported"),
            ("shoe-size", "no search parameter"),
            ("_lastUpdated,_id", "one sort key"),
        ] {
            let message =
                diagnostics(app.get(&format!("/fhir/Patient?_sort={sort}")).await, 400).await;
            assert!(
                message.contains("_sort") && message.contains(says),
                "{message}"
            );
        }
        app.stop().await;
    }
}
