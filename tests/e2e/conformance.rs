//! Cairn against tools that share no code with it: every kind of answer the FHIR API gives is
//! validated as FHIR R4 JSON by the `fhir.resources` R4 models and by the FHIR 4.0.1 JSON schema,
//! and a real FHIR client library (fhirpy) creates, reads, searches and updates through it.
//! See `tests/conformance/` and `cargo xtask conformance-tools`.

use serde_json::{Value, json};
use tests::{ConformanceTools, TestApp};

/// Collects the FHIR JSON answers of a scenario, each with a label naming the request.
struct Answers {
    app_base: String,
    client: reqwest::Client,
    collected: Vec<Value>,
}

impl Answers {
    async fn send(&mut self, label: &str, request: reqwest::RequestBuilder, status: u16) -> Value {
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), status, "{label}");
        let content_type = response.headers()["content-type"]
            .to_str()
            .unwrap()
            .to_owned();
        assert!(
            content_type.starts_with("application/fhir+json"),
            "{label}: {content_type}"
        );
        let body: Value = response.json().await.unwrap();
        self.collected
            .push(json!({"label": label, "resource": body.clone()}));
        body
    }

    async fn get(&mut self, label: &str, path: &str, status: u16) -> Value {
        let request = self.client.get(format!("{}{path}", self.app_base));
        self.send(label, request, status).await
    }

    fn write(&self, method: reqwest::Method, path: &str, body: &Value) -> reqwest::RequestBuilder {
        self.client
            .request(method, format!("{}{path}", self.app_base))
            .header("content-type", "application/fhir+json")
            .body(body.to_string())
    }
}

fn rich_patient() -> Value {
    json!({
        "resourceType": "Patient",
        "meta": {"profile": ["http://hl7.org/fhir/us/core/StructureDefinition/us-core-patient"]},
        "text": {"status": "generated", "div": "<div xmlns=\"http://www.w3.org/1999/xhtml\">Ada Lovelace</div>"},
        "identifier": [{"use": "usual", "system": "urn:oid:2.16.840.1.113883.4.3.25", "value": "IIS-77"}],
        "active": true,
        "name": [{"use": "official", "family": "Lovelace", "given": ["Ada", "Augusta"]}],
        "telecom": [{"system": "phone", "value": "+44 20 7946 0000", "use": "home"}],
        "gender": "female",
        "birthDate": "2019-12-10",
        "address": [{"line": ["12 St James's Square"], "city": "London", "postalCode": "SW1Y 4JH", "country": "GB"}],
        "contact": [{"relationship": [{"text": "mother"}], "name": {"family": "Byron", "given": ["Anne"]}}],
        "managingOrganization": {"reference": "Organization/registry"},
        "extension": [{"url": "http://example.org/fhir/StructureDefinition/note", "valueString": "x"}]
    })
}

fn dose(patient: &str, day: u32, dose_number: u32) -> Value {
    json!({
        "resourceType": "Immunization",
        "status": "completed",
        "vaccineCode": {"coding": [{"system": "http://hl7.org/fhir/sid/cvx", "code": "20", "display": "DTaP"}]},
        "patient": {"reference": format!("Patient/{patient}")},
        "occurrenceDateTime": format!("2020-0{day}-15T10:30:00+01:00"),
        "primarySource": true,
        "lotNumber": format!("LOT{day}"),
        "performer": [{"function": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0443", "code": "AP"}]}, "actor": {"reference": "Practitioner/nurse"}}],
        "note": [{"text": "left deltoid"}],
        "protocolApplied": [{
            "series": "DTaP primary",
            "targetDisease": [{"coding": [{"system": "http://snomed.info/sct", "code": "397430003"}]}],
            "doseNumberPositiveInt": dose_number,
            "seriesDosesPositiveInt": 3
        }]
    })
}

/// Every kind of answer: resources as created, read, updated and versioned; searchsets with
/// paging, includes, totals, sorting and subsetting; history Bundles; the CapabilityStatement;
/// operation results; and OperationOutcomes for each class of error.
async fn every_kind_of_answer(app: &TestApp) -> Vec<Value> {
    use reqwest::Method;
    let mut a = Answers {
        app_base: app.base.clone(),
        client: app.client.clone(),
        collected: Vec::new(),
    };
    let created = a
        .send(
            "create Patient",
            a.write(Method::POST, "/fhir/Patient", &rich_patient()),
            201,
        )
        .await;
    let id = created["id"].as_str().unwrap().to_owned();
    for (n, day) in [(1, 2), (2, 4), (3, 6)] {
        let label = format!("create Immunization {n}");
        a.send(
            &label,
            a.write(Method::POST, "/fhir/Immunization", &dose(&id, day, n)),
            201,
        )
        .await;
    }
    a.get("read", &format!("/fhir/Patient/{id}"), 200).await;
    let mut changed = created.clone();
    changed["active"] = json!(false);
    a.send(
        "update",
        a.write(Method::PUT, &format!("/fhir/Patient/{id}"), &changed),
        200,
    )
    .await;
    a.get("vread", &format!("/fhir/Patient/{id}/_history/1"), 200)
        .await;
    a.get(
        "instance history",
        &format!("/fhir/Patient/{id}/_history"),
        200,
    )
    .await;
    a.get("type history", "/fhir/Immunization/_history?_count=2", 200)
        .await;
    a.get("system history", "/fhir/_history?_count=2", 200)
        .await;
    let page = a
        .get(
            "search with include, revinclude and total",
            &format!("/fhir/Patient?_id={id}&_revinclude=Immunization:patient&_total=accurate"),
            200,
        )
        .await;
    assert_eq!(page["total"], 1);
    let sorted = a
        .get(
            "sorted, paged search",
            &format!(
                "/fhir/Immunization?patient={id}&_sort=-date&_count=2&_include=Immunization:patient"
            ),
            200,
        )
        .await;
    let next = sorted["link"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["relation"] == "next")
        .unwrap()["url"]
        .as_str()
        .unwrap()
        .strip_prefix(&app.base)
        .unwrap()
        .to_owned();
    a.get("next page (with a previous link)", &next, 200).await;
    a.get(
        "chained search",
        "/fhir/Immunization?patient.identifier=urn:oid:2.16.840.1.113883.4.3.25|IIS-77",
        200,
    )
    .await;
    a.get("_summary=count", "/fhir/Immunization?_summary=count", 200)
        .await;
    a.get(
        "_summary=data",
        &format!("/fhir/Patient/{id}?_summary=data"),
        200,
    )
    .await;
    a.get(
        "_summary=text",
        &format!("/fhir/Patient/{id}?_summary=text"),
        200,
    )
    .await;
    a.get(
        "_summary=true",
        &format!("/fhir/Immunization?patient={id}&_summary=true"),
        200,
    )
    .await;
    // Immunization has mandatory elements (status, vaccineCode, patient, occurrence[x]): the
    // text summary keeps them, or it would not be a valid Immunization.
    let text = a
        .get(
            "_summary=text of a type with mandatory elements",
            &format!("/fhir/Immunization?patient={id}&_summary=text"),
            200,
        )
        .await;
    let doses = text["entry"].as_array().unwrap();
    assert_eq!(doses.len(), 3);
    for dose in doses.iter().map(|e| &e["resource"]) {
        // The validators forgive a subsetted resource its missing required elements; the
        // specification does not forgive _summary=text.
        for kept in ["status", "vaccineCode", "patient", "occurrenceDateTime"] {
            assert!(
                dose.get(kept).is_some(),
                "_summary=text keeps {kept}: {dose}"
            );
        }
        assert!(dose.get("lotNumber").is_none() && dose.get("protocolApplied").is_none());
    }
    a.get(
        "_elements",
        &format!("/fhir/Patient?_id={id}&_elements=birthDate"),
        200,
    )
    .await;
    a.get("metadata", "/fhir/metadata", 200).await;
    a.get(
        "$series-status",
        &format!("/fhir/Patient/{id}/$series-status"),
        200,
    )
    .await;
    a.send(
        "$validate (valid)",
        a.write(Method::POST, "/fhir/Patient/$validate", &rich_patient()),
        200,
    )
    .await;
    let invalid = json!({"resourceType": "Patient", "birthDate": "1974-13-45"});
    a.send(
        "$validate (invalid)",
        a.write(Method::POST, "/fhir/Patient/$validate", &invalid),
        200,
    )
    .await;
    // Conditional create finding the existing one.
    let request = a
        .write(Method::POST, "/fhir/Patient", &rich_patient())
        .header(
            "if-none-exist",
            "identifier=urn:oid:2.16.840.1.113883.4.3.25|IIS-77",
        );
    a.send("conditional create (exists)", request, 200).await;
    let request = a
        .write(
            Method::POST,
            "/fhir/Patient",
            &json!({"resourceType": "Patient"}),
        )
        .header("prefer", "return=OperationOutcome");
    a.send("Prefer: return=OperationOutcome", request, 201)
        .await;
    // Errors.
    a.send(
        "invalid resource",
        a.write(Method::POST, "/fhir/Patient", &invalid),
        400,
    )
    .await;
    a.get("unknown search parameter", "/fhir/Patient?shoe-size=9", 400)
        .await;
    a.get("not found", "/fhir/Patient/nobody", 404).await;
    a.get("unknown route", "/fhir/Patient/a/b/c/d", 404).await;
    a.get("_format=xml", "/fhir/metadata?_format=xml", 406)
        .await;
    let stale = a
        .write(Method::PUT, &format!("/fhir/Patient/{id}"), &changed)
        .header("if-match", "W/\"1\"");
    a.send("stale If-Match", stale, 412).await;
    let unsupported = a
        .client
        .post(format!("{}/fhir/Patient", app.base))
        .header("content-type", "text/plain")
        .body("hello");
    a.send("unsupported media type", unsupported, 415).await;
    let deleted = a.collected[1]["resource"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let delete = a
        .client
        .delete(format!("{}/fhir/Immunization/{deleted}", app.base));
    let response = delete.send().await.unwrap();
    assert_eq!(response.status(), 204);
    a.get(
        "read after delete",
        &format!("/fhir/Immunization/{deleted}"),
        410,
    )
    .await;
    a.send(
        "$erase",
        app.admin
            .post(format!("{}/fhir/Patient/{id}/$erase", app.base)),
        200,
    )
    .await;
    a.get("read after erase", &format!("/fhir/Patient/{id}"), 410)
        .await;
    // The audit log as FHIR: a search, one AuditEvent, and an accounting of disclosures.
    let auditor = tests::client_with(&app.token_for("user:conf-aud", "auditor", &[], None).await);
    a.send(
        "AuditEvent search",
        auditor.get(format!("{}/fhir/AuditEvent?_count=50", app.base)),
        200,
    )
    .await;
    let events = a
        .send(
            "AuditEvent search for the patient",
            auditor.get(format!("{}/fhir/AuditEvent?patient={id}", app.base)),
            200,
        )
        .await;
    let event_id = events["entry"][0]["resource"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    a.send(
        "AuditEvent read",
        auditor.get(format!("{}/fhir/AuditEvent/{event_id}", app.base)),
        200,
    )
    .await;
    a.send(
        "$disclosures",
        auditor.get(format!("{}/fhir/Patient/{id}/$disclosures", app.base)),
        200,
    )
    .await;
    a.collected
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_kind_of_answer_validates_as_fhir_r4() {
    let Some(tools) = ConformanceTools::from_env() else {
        return;
    };
    for app in TestApp::on_every_backend().await {
        let answers = every_kind_of_answer(&app).await;
        let count = answers.len();
        let schema = tools.schema.to_str().unwrap().to_owned();
        let (valid, report) = tools
            .run(
                "validate.py",
                &[&schema],
                serde_json::to_vec(&answers).unwrap(),
            )
            .await;
        assert!(
            valid,
            "{}: answers that are not valid FHIR R4:\n{report}",
            app.backend()
        );
        assert!(
            report.contains(&format!("from {count} responses: 0 failure(s)")),
            "{report}"
        );
        eprintln!("{}: {}", app.backend(), report.trim());
        app.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_validators_catch_what_is_not_fhir() {
    // The validators must be able to fail: a Patient with a bad code and a bad date.
    let Some(tools) = ConformanceTools::from_env() else {
        return;
    };
    let bad = json!([{"label": "bad", "resource": {
        "resourceType": "Bundle", "type": "searchset",
        "entry": [{"resource": {"resourceType": "Patient", "gender": "f", "birthDate": "1970-13-01"}}]
    }}]);
    let schema = tools.schema.to_str().unwrap().to_owned();
    let (valid, report) = tools
        .run("validate.py", &[&schema], serde_json::to_vec(&bad).unwrap())
        .await;
    assert!(!valid, "{report}");
    assert!(
        report.contains("bad.entry[0].resource at /gender"),
        "{report}"
    );
    assert!(
        report.contains("fhir.resources bad.entry[0].resource"),
        "{report}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_fhir_client_creates_reads_searches_and_updates() {
    let Some(tools) = ConformanceTools::from_env() else {
        return;
    };
    for app in TestApp::on_every_backend().await {
        let base = app.url("/fhir");
        // The token goes on stdin: command lines are visible to every user of the machine.
        let (ok, output) = tools
            .run("client.py", &[&base], app.token.clone().into_bytes())
            .await;
        assert!(ok, "{}: fhirpy failed:\n{output}", app.backend());
        eprintln!("{}: {}", app.backend(), output.trim());
        app.stop().await;
    }
}

/// schemathesis, from the server's own OpenAPI document, finds no server error, no answer
/// outside what the document declares, no `Allow` that disagrees with it, and no request the
/// document says is invalid being accepted; as the clinical feed and as an auditor.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_nothing_from_the_openapi_document() {
    let Some(tools) = ConformanceTools::from_env() else {
        return;
    };
    for app in TestApp::on_every_backend().await {
        let auditor = app.token_for("user:auditor", "auditor", &[], None).await;
        for (who, token) in [("feed", app.token.clone()), ("auditor", auditor)] {
            let (ok, output) = tools
                .run("fuzz_openapi.py", &[&app.base, "20"], token.into_bytes())
                .await;
            assert!(
                ok,
                "{} as {who}: schemathesis failed:\n{output}",
                app.backend()
            );
        }
        app.stop().await;
    }
}
