//! Access control end to end: tokens on the wire, roles × interactions, compartment escapes,
//! expired, tampered, attenuated and revoked tokens, revocation across instances, the rate
//! limit and the security headers.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tests::{TestApp, client_with, fhir_json};

fn patient(id: &str) -> Value {
    json!({"resourceType": "Patient", "id": id, "name": [{"family": "Access"}]})
}

fn shot(patient: &str) -> Value {
    json!({"resourceType": "Immunization", "status": "completed",
        "vaccineCode": {"coding": [{"system": "http://hl7.org/fhir/sid/cvx", "code": "207"}]},
        "patient": {"reference": format!("Patient/{patient}")},
        "occurrenceDateTime": "2026-01-01"})
}

async fn status(request: reqwest::RequestBuilder) -> u16 {
    request.send().await.unwrap().status().as_u16()
}

async fn put(client: &reqwest::Client, url: String, body: &Value) -> u16 {
    status(
        client
            .put(url)
            .header("content-type", "application/fhir+json")
            .body(body.to_string()),
    )
    .await
}

async fn post(client: &reqwest::Client, url: String, body: &Value) -> reqwest::Response {
    client
        .post(url)
        .header("content-type", "application/fhir+json")
        .body(body.to_string())
        .send()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_without_a_valid_token_get_401_and_every_response_is_hardened() {
    for app in TestApp::on_every_backend().await {
        let backend = app.backend();
        // No token, a malformed one, a tampered one.
        let mut tampered = app.token.clone().into_bytes();
        let middle = tampered.len() / 2;
        tampered[middle] = if tampered[middle] == b'A' { b'B' } else { b'A' };
        let tampered = String::from_utf8(tampered).unwrap();
        for client in [
            app.anonymous.clone(),
            client_with("not-a-token"),
            client_with(&tampered),
        ] {
            for path in [
                "/fhir/Patient/x",
                "/fhir/Patient",
                "/fhir/metadata",
                "/admin/tokens",
            ] {
                let response = client.get(app.url(path)).send().await.unwrap();
                assert_eq!(response.status(), 401, "{backend} {path}");
                let challenge = response.headers()["www-authenticate"].to_str().unwrap();
                assert!(
                    challenge.starts_with("Bearer realm=\"cairn\""),
                    "{challenge}"
                );
                let body = fhir_json(response).await;
                assert_eq!(body["resourceType"], "OperationOutcome");
                assert_eq!(body["issue"][0]["code"], "login");
            }
        }
        // Health and the OpenAPI document need no token.
        for path in ["/health/live", "/health/ready", "/openapi.json"] {
            assert_eq!(
                status(app.anonymous.get(app.url(path))).await,
                200,
                "{path}"
            );
        }
        // Security headers on every response; no-store where PHI may be.
        let response = app.get("/fhir/Patient?_count=1").await;
        let headers = response.headers();
        assert_eq!(headers["x-content-type-options"], "nosniff");
        assert_eq!(headers["referrer-policy"], "no-referrer");
        assert_eq!(headers["cache-control"], "no-store");
        assert!(
            headers["content-security-policy"]
                .to_str()
                .unwrap()
                .contains("default-src 'none'")
        );
        let docs = app.anonymous.get(app.url("/docs")).send().await.unwrap();
        assert!(
            docs.headers()["content-security-policy"]
                .to_str()
                .unwrap()
                .contains("'unsafe-inline'")
        );
        app.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_role_gets_what_it_may_and_403_for_the_rest() {
    for app in TestApp::on_every_backend().await {
        let backend = app.backend();
        let fhir = |path: &str| app.url(&format!("/fhir/{path}"));
        assert_eq!(
            put(&app.client, fhir("Patient/r1"), &patient("r1")).await,
            201
        );

        let registrar = client_with(&app.token_for("user:reg", "registrar", &[], None).await);
        assert_eq!(
            post(&registrar, fhir("Immunization"), &shot("r1"))
                .await
                .status(),
            201
        );
        assert_eq!(
            put(&registrar, fhir("Patient/r1"), &patient("r1")).await,
            200
        );
        assert_eq!(status(registrar.get(fhir("Patient?_id=r1"))).await, 200);
        let denied = registrar.delete(fhir("Patient/r1")).send().await.unwrap();
        assert_eq!(denied.status(), 403, "{backend}: registrars never delete");
        let body = fhir_json(denied).await;
        assert_eq!(body["issue"][0]["code"], "forbidden");
        assert!(
            body["issue"][0]["diagnostics"]
                .as_str()
                .unwrap()
                .contains("registrar")
        );
        assert_eq!(
            post(&registrar, fhir("Observation"), &json!({}))
                .await
                .status(),
            403
        );

        let clinician = client_with(&app.token_for("user:doc", "clinician", &[], None).await);
        assert_eq!(status(clinician.get(fhir("Patient/r1"))).await, 200);
        assert_eq!(status(clinician.get(fhir("_history"))).await, 200);

        // Scopes narrow: read-only scope on Patient, nothing on Immunization.
        let narrow = client_with(
            &app.token_for("user:doc2", "clinician", &["user/Patient.rs"], None)
                .await,
        );
        assert_eq!(status(narrow.get(fhir("Patient/r1"))).await, 200);
        assert_eq!(put(&narrow, fhir("Patient/r1"), &patient("r1")).await, 403);
        assert_eq!(status(narrow.get(fhir("Immunization"))).await, 403);

        // Auditors and admins see no clinical data; the token list is theirs.
        let auditor = client_with(&app.token_for("user:aud", "auditor", &[], None).await);
        assert_eq!(status(auditor.get(fhir("Patient/r1"))).await, 403);
        assert_eq!(status(app.admin.get(fhir("Patient/r1"))).await, 403);
        assert_eq!(status(app.admin.delete(fhir("Patient/r1"))).await, 403);
        let listed: Value = auditor
            .get(app.url("/admin/tokens?subject=user:reg"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(listed[0]["role"], "registrar");
        assert_eq!(listed[0]["active"], true);
        assert!(!listed.to_string().contains(&app.token));
        assert_eq!(status(clinician.get(app.url("/admin/tokens"))).await, 403);
        assert_eq!(status(clinician.post(fhir("Patient/r1/$erase"))).await, 403);
        app.stop().await;
    }
}

/// The roles of the matrix below, in column order.
const MATRIX_ROLES: [&str; 6] = [
    "admin",
    "auditor",
    "clinician",
    "registrar",
    "patient",
    "system (Immunization.rs)",
];

/// One interaction of the matrix: what to send, and the status each role gets, in
/// [`MATRIX_ROLES`] order. `{own}` is the patient token's own Patient, `{shot}` an
/// Immunization made for the row, `{erasable}` a Patient made for the row.
struct Row {
    interaction: &'static str,
    method: &'static str,
    path: &'static str,
    body: Option<&'static str>,
    expect: [u16; 6],
}

const PATIENT_BODY: &str = r#"{"resourceType":"Patient","id":"own","name":[{"family":"Matrix"}]}"#;
const SHOT_BODY: &str = r#"{"resourceType":"Immunization","status":"completed","vaccineCode":{"coding":[{"system":"http://hl7.org/fhir/sid/cvx","code":"207"}]},"patient":{"reference":"Patient/own"},"occurrenceDateTime":"2026-01-01"}"#;

const MATRIX: &[Row] = &[
    Row {
        interaction: "create",
        method: "POST",
        path: "Immunization",
        body: Some(SHOT_BODY),
        expect: [403, 403, 201, 201, 403, 403],
    },
    Row {
        interaction: "read",
        method: "GET",
        path: "Patient/own",
        body: None,
        expect: [403, 403, 200, 200, 200, 403],
    },
    Row {
        interaction: "read (Immunization)",
        method: "GET",
        path: "Immunization/{shot}",
        body: None,
        expect: [403, 403, 200, 200, 200, 200],
    },
    Row {
        interaction: "vread",
        method: "GET",
        path: "Patient/own/_history/1",
        body: None,
        expect: [403, 403, 200, 200, 200, 403],
    },
    Row {
        interaction: "update",
        method: "PUT",
        path: "Patient/own",
        body: Some(PATIENT_BODY),
        expect: [403, 403, 200, 200, 403, 403],
    },
    Row {
        interaction: "conditional update",
        method: "PUT",
        path: "Patient?_id=own",
        body: Some(PATIENT_BODY),
        expect: [403, 403, 200, 200, 403, 403],
    },
    Row {
        interaction: "delete",
        method: "DELETE",
        path: "Immunization/{shot}",
        body: None,
        expect: [403, 403, 204, 403, 403, 403],
    },
    Row {
        interaction: "search",
        method: "GET",
        path: "Immunization?patient=Patient/own",
        body: None,
        expect: [403, 403, 200, 200, 200, 200],
    },
    Row {
        interaction: "instance history",
        method: "GET",
        path: "Patient/own/_history",
        body: None,
        expect: [403, 403, 200, 200, 200, 403],
    },
    Row {
        interaction: "type history",
        method: "GET",
        path: "Immunization/_history",
        body: None,
        expect: [403, 403, 200, 200, 200, 200],
    },
    Row {
        interaction: "system history",
        method: "GET",
        path: "_history",
        body: None,
        expect: [403, 403, 200, 403, 200, 403],
    },
    Row {
        interaction: "$series-status",
        method: "GET",
        path: "Patient/own/$series-status",
        body: None,
        expect: [403, 403, 200, 200, 200, 403],
    },
    Row {
        interaction: "$validate",
        method: "POST",
        path: "Patient/$validate",
        body: Some(PATIENT_BODY),
        expect: [403, 403, 200, 200, 403, 403],
    },
    Row {
        interaction: "capabilities",
        method: "GET",
        path: "metadata",
        body: None,
        expect: [200, 200, 200, 200, 200, 200],
    },
    Row {
        interaction: "access review",
        method: "GET",
        path: "/admin/tokens",
        body: None,
        expect: [200, 200, 403, 403, 403, 403],
    },
    Row {
        interaction: "$erase",
        method: "POST",
        path: "Patient/{erasable}/$erase",
        body: None,
        expect: [200, 403, 403, 403, 403, 403],
    },
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_role_meets_every_interaction_as_the_policy_says() {
    for app in TestApp::on_every_backend().await {
        let backend = app.backend();
        let fhir = |path: &str| app.url(&format!("/fhir/{path}"));
        assert_eq!(
            put(&app.client, fhir("Patient/own"), &patient("own")).await,
            201
        );
        let clients = [
            app.admin.clone(),
            client_with(&app.token_for("user:m-aud", "auditor", &[], None).await),
            client_with(&app.token_for("user:m-doc", "clinician", &[], None).await),
            client_with(&app.token_for("user:m-reg", "registrar", &[], None).await),
            client_with(
                &app.token_for("patient:own", "patient", &[], Some("Patient/own"))
                    .await,
            ),
            client_with(
                &app.token_for(
                    "service:m-feed",
                    "system",
                    &["system/Immunization.rs"],
                    None,
                )
                .await,
            ),
        ];
        let mut mismatches = Vec::new();
        for (row_number, row) in MATRIX.iter().enumerate() {
            for (column, client) in clients.iter().enumerate() {
                // Rows that change or destroy something get their own target per cell.
                let mut path = row.path.to_owned();
                if path.contains("{shot}") {
                    let made =
                        fhir_json(post(&app.client, fhir("Immunization"), &shot("own")).await)
                            .await;
                    path = path.replace("{shot}", made["id"].as_str().unwrap());
                }
                if path.contains("{erasable}") {
                    let id = format!("erasable-{row_number}-{column}");
                    assert_eq!(
                        put(&app.client, fhir(&format!("Patient/{id}")), &patient(&id)).await,
                        201
                    );
                    path = path.replace("{erasable}", &id);
                }
                let url = if path.starts_with('/') {
                    app.url(&path)
                } else {
                    fhir(&path)
                };
                let method = reqwest::Method::from_bytes(row.method.as_bytes()).unwrap();
                let mut request = client.request(method, url);
                if let Some(body) = row.body {
                    request = request
                        .header("content-type", "application/fhir+json")
                        .body(body);
                }
                let got = status(request).await;
                let want = row.expect[column];
                if got != want {
                    mismatches.push(format!(
                        "{} as {}: got {got}, want {want}",
                        row.interaction, MATRIX_ROLES[column]
                    ));
                }
            }
        }
        assert!(
            mismatches.is_empty(),
            "{backend}:\n{}",
            mismatches.join("\n")
        );
        app.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_patient_token_cannot_escape_its_compartment() {
    for app in TestApp::on_every_backend().await {
        let backend = app.backend();
        let fhir = |path: &str| app.url(&format!("/fhir/{path}"));
        for id in ["mine", "theirs"] {
            assert_eq!(
                put(&app.client, fhir(&format!("Patient/{id}")), &patient(id)).await,
                201
            );
        }
        let my_shot = fhir_json(post(&app.client, fhir("Immunization"), &shot("mine")).await).await;
        let their_shot =
            fhir_json(post(&app.client, fhir("Immunization"), &shot("theirs")).await).await;
        let their_id = their_shot["id"].as_str().unwrap();
        let me = client_with(
            &app.token_for("patient:mine", "patient", &[], Some("Patient/mine"))
                .await,
        );

        assert_eq!(status(me.get(fhir("Patient/mine"))).await, 200);
        for path in [
            "Patient/theirs".to_owned(),
            "Patient/theirs/_history/1".to_owned(),
            "Patient/theirs/_history".to_owned(),
            format!("Immunization/{their_id}"),
            "Patient/theirs/$series-status".to_owned(),
        ] {
            assert_eq!(status(me.get(fhir(&path))).await, 404, "{backend}: {path}");
        }
        let ids = |bundle: &Value| -> Vec<String> {
            bundle["entry"]
                .as_array()
                .map(|entries| {
                    entries
                        .iter()
                        .map(|e| e["resource"]["id"].as_str().unwrap().to_owned())
                        .collect()
                })
                .unwrap_or_default()
        };
        let get = |path: String| {
            let me = me.clone();
            async move { fhir_json(me.get(path).send().await.unwrap()).await }
        };
        let all = get(fhir(
            "Immunization?_total=accurate&_include=Immunization:patient",
        ))
        .await;
        assert_eq!(
            ids(&all),
            [my_shot["id"].as_str().unwrap(), "mine"],
            "{backend}"
        );
        assert_eq!(all["total"], 1);
        let escape = get(fhir(
            "Immunization?patient=Patient/theirs&_include=Immunization:patient",
        ))
        .await;
        assert!(ids(&escape).is_empty(), "{backend}: {escape}");
        let rev = get(fhir("Patient?_revinclude=Immunization:patient")).await;
        assert_eq!(ids(&rev), ["mine", my_shot["id"].as_str().unwrap()]);
        let history = get(fhir("Immunization/_history")).await;
        assert_eq!(ids(&history), [my_shot["id"].as_str().unwrap()]);
        // Read-only: no writes, even inside the compartment.
        assert_eq!(
            post(&me, fhir("Immunization"), &shot("mine"))
                .await
                .status(),
            403
        );
        app.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attenuated_and_expired_tokens_are_honoured() {
    for app in TestApp::on_every_backend().await {
        let backend = app.backend();
        let fhir = |path: &str| app.url(&format!("/fhir/{path}"));
        for id in ["a1", "a2"] {
            assert_eq!(
                put(&app.client, fhir(&format!("Patient/{id}")), &patient(id)).await,
                201
            );
        }
        // Narrowed offline to one patient, read-only: reads there, nothing else.
        let narrowed =
            cairn::tokens::attenuate(&app.token, Some("Patient/a1".into()), Some("1h"), true)
                .unwrap();
        let narrowed = client_with(narrowed.expose());
        assert_eq!(status(narrowed.get(fhir("Patient/a1"))).await, 200);
        assert_eq!(
            status(narrowed.get(fhir("Patient/a2"))).await,
            404,
            "{backend}"
        );
        assert_eq!(
            put(&narrowed, fhir("Patient/a1"), &patient("a1")).await,
            403
        );
        let page = fhir_json(narrowed.get(fhir("Patient")).send().await.unwrap()).await;
        assert_eq!(page["entry"].as_array().unwrap().len(), 1);

        // A token that expires: accepted, then 401 with the reason. Biscuit
        // dates have whole seconds, so a lifetime shorter than a few seconds
        // can end before a loaded CI machine makes the first request.
        let short = app
            .issue(cairn::tokens::IssueRequest {
                subject: "user:brief".into(),
                role: "clinician".into(),
                ttl: "3s".into(),
                ..Default::default()
            })
            .await;
        let short = client_with(&short);
        assert_eq!(status(short.get(fhir("Patient/a1"))).await, 200);
        tokio::time::sleep(Duration::from_millis(4100)).await;
        let response = short.get(fhir("Patient/a1")).send().await.unwrap();
        assert_eq!(response.status(), 401);
        assert!(
            response.headers()["www-authenticate"]
                .to_str()
                .unwrap()
                .contains("expired")
        );
        app.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_reaches_every_instance_within_a_second() {
    for app in TestApp::on_every_backend().await {
        let backend = app.backend();
        // A second instance on the same database and keyring.
        let mut config = app.config.clone();
        config.listen = "127.0.0.1:0".into();
        let other = cairn::start(&config).await.unwrap();
        let bases = [app.base.clone(), format!("http://{}", other.local_addr)];
        let token = app.token_for("user:leaver", "clinician", &[], None).await;
        let narrowed = cairn::tokens::attenuate(&token, None, Some("1h"), true).unwrap();
        let keep = app.token_for("user:stayer", "clinician", &[], None).await;
        for t in [&token, narrowed.expose(), &keep] {
            for base in &bases {
                let url = format!("{base}/fhir/Patient?_count=1");
                assert_eq!(status(client_with(t).get(url)).await, 200);
            }
        }
        let revoked = cairn::tokens::revoke(
            &app.config,
            &cairn::tokens::Revoke::Subject("user:leaver".into()),
            "left",
        )
        .await
        .unwrap();
        assert_eq!(revoked, 1);
        let started = Instant::now();
        for base in &bases {
            for t in [&token, narrowed.expose()] {
                let url = format!("{base}/fhir/Patient?_count=1");
                loop {
                    let code = status(client_with(t).get(&url)).await;
                    if code == 401 {
                        break;
                    }
                    assert!(
                        started.elapsed() < Duration::from_secs(1),
                        "{backend}: still {code}"
                    );
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
            let url = format!("{base}/fhir/Patient?_count=1");
            assert_eq!(status(client_with(&keep).get(url)).await, 200);
        }
        eprintln!(
            "{backend}: revocation effective everywhere after {:?}",
            started.elapsed()
        );
        other.stop().await.unwrap();
        app.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_over_its_rate_gets_429_with_retry_after() {
    let db = store_sql::testing::TestDatabase::sqlite();
    let app = TestApp::start_with(db, |config| {
        config.rate_limit_per_second = 1;
        config.rate_limit_burst = 3;
    })
    .await;
    let mut codes = Vec::new();
    for _ in 0..4 {
        let response = app.get("/fhir/Patient?_count=1").await;
        codes.push(response.status().as_u16());
        if response.status() == 429 {
            assert_eq!(response.headers()["retry-after"], "1");
            let body = fhir_json(response).await;
            assert_eq!(body["issue"][0]["code"], "throttled");
        }
    }
    assert_eq!(codes, [200, 200, 200, 429]);
    // Another token has its own budget.
    assert_eq!(status(app.admin.get(app.url("/admin/tokens"))).await, 200);
    app.stop().await;
}
