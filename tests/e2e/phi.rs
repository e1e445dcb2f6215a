//! PHI protection end to end: nothing identifying reaches the database in plaintext, blind
//! indexes still find patients, tampering is caught, erasure shreds, rotation loses nothing.

use serde_json::{Value, json};
use tests::{TestApp, fhir_json};

/// A Patient with a unique canary in every PHI element.
fn canary_patient() -> Value {
    json!({
        "resourceType": "Patient",
        "text": {"status": "generated", "div": "<div xmlns=\"http://www.w3.org/1999/xhtml\">CanaryNarrative41</div>"},
        "identifier": [
            {"system": "urn:oid:2.16.840.1.113883.4.1", "value": "CanarySSN42"},
            {"value": "CanaryMRN43"}
        ],
        "name": [{"use": "official", "family": "Canaryfamíly44", "given": ["Canarygiven45", "Canarymiddle46"],
                  "prefix": ["CanaryPrefix47"], "suffix": ["CanarySuffix48"], "text": "CanaryText49"}],
        "telecom": [{"system": "phone", "value": "+1 (555) 014-9750"},
                    {"system": "email", "value": "canary51@example.org"}],
        "gender": "female",
        "birthDate": "1923-07-19",
        "address": [{"line": ["CanaryStreet52"], "city": "CanaryCity53", "district": "CanaryDistrict54",
                     "state": "CanaryState55", "postalCode": "CZ5656", "country": "CanaryCountry57"}],
        "contact": [{"name": {"family": "CanaryContact58"}, "telecom": [{"system": "phone", "value": "555-0159"}]}],
        "photo": [{"contentType": "image/png", "data": "Q2FuYXJ5UGhvdG82MA=="}]
    })
}

fn canary_immunization(patient: &str, n: u32) -> Value {
    json!({
        "resourceType": "Immunization",
        "status": "completed",
        "vaccineCode": {"coding": [{"system": "http://hl7.org/fhir/sid/cvx", "code": "208"}], "text": format!("CanaryVaccineText{n}")},
        "patient": {"reference": format!("Patient/{patient}"), "display": format!("CanaryPatientDisplay{n}")},
        "occurrenceDateTime": "2021-04-01T10:30:00Z",
        "performer": [{"actor": {"reference": "Practitioner/pr1", "display": format!("CanaryPerformer{n}")}}],
        "note": [{"text": format!("CanaryNote{n}")}],
        "reaction": [{"detail": {"display": format!("CanaryReaction{n}")}}],
        "protocolApplied": [{"series": "primary", "doseNumberPositiveInt": 1}]
    })
}

/// Every canary planted above, as it would appear in plaintext.
const CANARIES: &[&str] = &[
    "CanaryNarrative41",
    "CanarySSN42",
    "CanaryMRN43",
    "Canaryfam",
    "Canarygiven45",
    "Canarymiddle46",
    "CanaryPrefix47",
    "CanarySuffix48",
    "CanaryText49",
    "014-9750",
    "5550149750",
    "canary51",
    "1923-07-19",
    "CanaryStreet52",
    "CanaryCity53",
    "CanaryDistrict54",
    "CanaryState55",
    "CZ5656",
    "CanaryCountry57",
    "CanaryContact58",
    "555-0159",
    "Q2FuYXJ5UGhvdG82MA",
    "CanaryVaccineText",
    "CanaryPatientDisplay",
    "CanaryPerformer",
    "CanaryNote",
    "CanaryReaction",
];

async fn search(app: &TestApp, query: &str) -> (u16, Value) {
    let response = app.get(&format!("/fhir/Patient?{query}")).await;
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

fn ids(bundle: &Value) -> Vec<String> {
    bundle["entry"]
        .as_array()
        .map(|entries| {
            entries
                .iter()
                .map(|e| e["resource"]["id"].as_str().unwrap().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn no_canary_reaches_the_database_and_blind_indexes_find_the_patient() {
    for app in TestApp::on_every_backend().await {
        let backend = app.backend();
        let created = fhir_json(app.post("/fhir/Patient", &canary_patient()).await).await;
        let id = created["id"].as_str().unwrap().to_owned();
        // A second patient sharing nothing but a name prefix, to show searches discriminate.
        let other = json!({"resourceType": "Patient", "name": [{"family": "Canarybird"}], "birthDate": "1923-08-01"});
        let other_id = fhir_json(app.post("/fhir/Patient", &other).await).await["id"]
            .as_str()
            .unwrap()
            .to_owned();
        for n in 0..2 {
            let response = app
                .post("/fhir/Immunization", &canary_immunization(&id, n))
                .await;
            assert_eq!(response.status(), 201, "{backend}");
        }

        let (status, found) = search(&app, "_count=5").await;
        assert_eq!(status, 200);
        assert_eq!(found["type"], "searchset");
        for (query, expected) in [
            (
                "identifier=urn:oid:2.16.840.1.113883.4.1|CanarySSN42",
                vec![&id],
            ),
            ("identifier=CanarySSN42", vec![&id]),
            ("identifier=|CanaryMRN43", vec![&id]),
            ("identifier=urn:oid:2.16.840.1.113883.4.1|", vec![&id]),
            ("identifier=urn:other|CanarySSN42", vec![]),
            ("family=canaryfamily", vec![&id]),
            ("family=CANARYFAMÍ", vec![&id]),
            ("family:exact=Canaryfamíly44", vec![&id]),
            ("family:exact=canaryfamily44", vec![]),
            ("family=canaryb", vec![&other_id]),
            ("given=canarymid", vec![&id]),
            ("name=canarysuffix", vec![&id]),
            ("name=canarytext49", vec![&id]),
            ("birthdate=1923", vec![&id, &other_id]),
            ("birthdate=1923-07", vec![&id]),
            ("birthdate=1923-07-19", vec![&id]),
            ("birthdate=eq1923-07-19", vec![&id]),
            ("telecom=phone|%2B15550149750", vec![&id]),
            ("telecom=%2B1%20555%20014%209750", vec![&id]),
            ("telecom=CANARY51@example.org", vec![&id]),
            ("address-postalcode=cz5", vec![&id]),
            ("address-postalcode=CZ5656", vec![&id]),
            ("family=canary&birthdate=1923-08", vec![&other_id]),
            ("gender=female&identifier=CanaryMRN43", vec![&id]),
        ] {
            let (status, bundle) = search(&app, query).await;
            assert_eq!(status, 200, "{backend} {query}: {bundle}");
            let mut want: Vec<String> = expected.into_iter().cloned().collect();
            want.sort();
            assert_eq!(ids(&bundle), want, "{backend} {query}");
        }
        let immunizations = app
            .get(&format!("/fhir/Immunization?patient=Patient/{id}"))
            .await;
        assert_eq!(ids(&fhir_json(immunizations).await).len(), 2, "{backend}");

        for (query, says) in [
            ("birthdate=gt1923-01-01", "only equality"),
            ("family=ca", "3 or more"),
            ("family:contains=nary", ":contains is not supported"),
        ] {
            let (status, outcome) = search(&app, query).await;
            assert_eq!(status, 400, "{backend} {query}");
            assert_eq!(outcome["resourceType"], "OperationOutcome");
            let diagnostics = outcome["issue"][0]["diagnostics"].as_str().unwrap();
            assert!(diagnostics.contains(says), "{query}: {diagnostics}");
        }

        let db = &app.db;
        let raw = db.raw_contents().await;
        for canary in CANARIES {
            assert!(
                !raw.windows(canary.len()).any(|w| w == canary.as_bytes()),
                "{backend}: {canary} found in the database in plaintext"
            );
        }
        // The plain (non-identifying) index values are there, as the classification says.
        assert!(raw.windows(7).any(|w| w == b"primary"), "{backend}");
        app.stop().await;
    }
}

#[tokio::test]
async fn tampered_ciphertexts_are_integrity_failures_and_nothing_else_breaks() {
    for app in TestApp::on_every_backend().await {
        let backend = app.backend();
        let create =
            |family: &str| json!({"resourceType": "Patient", "name": [{"family": family}]});
        let a = fhir_json(app.post("/fhir/Patient", &create("Alpha")).await).await["id"]
            .as_str()
            .unwrap()
            .to_owned();
        let b = fhir_json(app.post("/fhir/Patient", &create("Bravo")).await).await["id"]
            .as_str()
            .unwrap()
            .to_owned();
        let c = fhir_json(app.post("/fhir/Patient", &create("Charlie")).await).await["id"]
            .as_str()
            .unwrap()
            .to_owned();
        let db = &app.db;
        let body_a = db.sealed_body("Patient", &a, 1).await;
        let body_b = db.sealed_body("Patient", &b, 1).await;

        let expect_integrity_failure = |id: String, what: &'static str| {
            let app = &app;
            async move {
                let response = app.get(&format!("/fhir/Patient/{id}")).await;
                assert_eq!(response.status(), 500, "{backend} {what}");
                let outcome: Value = response.json().await.unwrap();
                let text = outcome["issue"][0]["diagnostics"].as_str().unwrap();
                assert!(text.contains("integrity failure"), "{what}: {text}");
                assert!(text.contains(&id), "names the resource: {text}");
                assert!(!text.contains("Alpha") && !text.contains("Bravo"), "{text}");
            }
        };
        let readable = |id: String| {
            let app = &app;
            async move {
                assert_eq!(
                    app.get(&format!("/fhir/Patient/{id}")).await.status(),
                    200,
                    "{backend}"
                );
            }
        };

        // One flipped byte.
        let mut flipped = body_a.clone();
        let middle = flipped.len() / 2;
        flipped[middle] ^= 0x01;
        db.set_sealed_body("Patient", &a, 1, flipped).await;
        expect_integrity_failure(a.clone(), "flipped byte").await;
        readable(b.clone()).await;
        db.set_sealed_body("Patient", &a, 1, body_a.clone()).await;
        readable(a.clone()).await;

        // Two rows' ciphertexts swapped (different compartments, different ids).
        db.set_sealed_body("Patient", &a, 1, body_b.clone()).await;
        db.set_sealed_body("Patient", &b, 1, body_a.clone()).await;
        expect_integrity_failure(a.clone(), "swapped into a").await;
        expect_integrity_failure(b.clone(), "swapped into b").await;
        readable(c.clone()).await;
        let (status, bundle) = search(&app, "family=charlie").await;
        assert_eq!((status, ids(&bundle)), (200, vec![c.clone()]), "{backend}");
        db.set_sealed_body("Patient", &a, 1, body_a.clone()).await;
        db.set_sealed_body("Patient", &b, 1, body_b.clone()).await;

        // An old version's ciphertext replayed as the current version: version 2 of `a` whose
        // body is version 1's sealed bytes.
        db.execute(
            "INSERT INTO resource_version (resource_type, id, version, last_updated, deleted, key_owner, body) \
             SELECT resource_type, id, 2, last_updated, deleted, key_owner, body FROM resource_version \
             WHERE resource_type = 'Patient' AND id = $1 AND version = 1",
            vec![a.as_str().into()],
        )
        .await;
        db.execute(
            "UPDATE resource SET version = 2 WHERE resource_type = 'Patient' AND id = $1",
            vec![a.as_str().into()],
        )
        .await;
        expect_integrity_failure(a.clone(), "replayed version").await;
        readable(b).await;
        readable(c).await;
        // The server still takes writes.
        assert_eq!(
            app.post("/fhir/Patient", &create("Delta")).await.status(),
            201
        );
        app.stop().await;
    }
}

#[tokio::test]
async fn erasing_a_patient_shreds_every_version_of_their_compartment() {
    for app in TestApp::on_every_backend().await {
        let backend = app.backend();
        let patient = fhir_json(app.post("/fhir/Patient", &canary_patient()).await).await;
        let id = patient["id"].as_str().unwrap().to_owned();
        let mut immunizations = Vec::new();
        for n in 0..2 {
            let created = fhir_json(
                app.post("/fhir/Immunization", &canary_immunization(&id, n))
                    .await,
            )
            .await;
            immunizations.push(created["id"].as_str().unwrap().to_owned());
        }
        let bystander = fhir_json(
            app.post(
                "/fhir/Patient",
                &json!({"resourceType": "Patient", "name": [{"family": "Canarystays"}]}),
            )
            .await,
        )
        .await;
        let bystander = bystander["id"].as_str().unwrap().to_owned();
        let blind_before = app.db.row_count("search_blind").await;

        let response = app
            .admin
            .delete(app.url(&format!("/fhir/Patient/{id}/$erase")))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{backend}");
        let outcome: Value = response.json().await.unwrap();
        let text = outcome["issue"][0]["diagnostics"].as_str().unwrap();
        assert!(text.contains("3 resource(s)"), "{text}");

        assert_eq!(app.get(&format!("/fhir/Patient/{id}")).await.status(), 410);
        for imm in &immunizations {
            assert_eq!(
                app.get(&format!("/fhir/Immunization/{imm}")).await.status(),
                410,
                "{backend}"
            );
        }
        for query in ["identifier=CanarySSN42", "family=canary", "birthdate=1923"] {
            let (status, bundle) = search(&app, query).await;
            assert_eq!(status, 200);
            let found = ids(&bundle);
            assert!(!found.contains(&id), "{backend} {query}");
        }
        let (_, bundle) = search(&app, "family=canary").await;
        assert_eq!(ids(&bundle), vec![bystander.clone()]);
        let imm_search = app.get(&format!("/fhir/Immunization?patient={id}")).await;
        assert!(ids(&fhir_json(imm_search).await).is_empty());

        // Straight from the database: the key is gone, its index rows too, a tombstone stays.
        let db = &app.db;
        assert_eq!(
            db.execute(
                "UPDATE data_key SET owner = owner WHERE owner = $1 AND wrapped IS NULL AND destroyed_at IS NOT NULL",
                vec![format!("Patient/{id}").into()],
            )
            .await,
            1,
            "{backend}: tombstone without key bytes"
        );
        let blind_after = db.row_count("search_blind").await;
        assert!(blind_after < blind_before, "{backend}");
        assert_eq!(
            db.execute(
                "DELETE FROM search_blind WHERE id = $1",
                vec![id.as_str().into()],
            )
            .await,
            0,
            "{backend}: no blind rows left for the erased patient"
        );
        // Every sealed version is still in the table, now undecryptable by anyone.
        assert!(!db.sealed_body("Patient", &id, 1).await.is_empty());

        // Erasing twice answers Gone; writing into the erased compartment is refused.
        let again = app
            .admin
            .post(app.url(&format!("/fhir/Patient/{id}/$erase")))
            .send()
            .await
            .unwrap();
        assert_eq!(again.status(), 410);
        let late = app
            .post("/fhir/Immunization", &canary_immunization(&id, 9))
            .await;
        assert_eq!(late.status(), 409, "{backend}");
        let unknown = app
            .admin
            .post(app.url("/fhir/Patient/no-such-patient/$erase"))
            .send()
            .await
            .unwrap();
        assert_eq!(unknown.status(), 404);
        assert_eq!(
            app.get(&format!("/fhir/Patient/{bystander}"))
                .await
                .status(),
            200
        );
        app.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_first_writes_for_one_patient_share_one_data_key() {
    for app in TestApp::on_every_backend().await {
        let backend = app.backend();
        // No Patient yet: each Immunization's create races to create the compartment's key.
        let patient = "not-yet-registered";
        let creates = (0..16).map(|n| {
            let body = canary_immunization(patient, n);
            let app = &app;
            async move {
                app.post("/fhir/Immunization", &body)
                    .await
                    .status()
                    .as_u16()
            }
        });
        let statuses = futures::future::join_all(creates).await;
        assert!(
            statuses.iter().all(|s| *s == 201),
            "{backend}: {statuses:?}"
        );
        assert_eq!(
            app.db
                .execute(
                    "UPDATE data_key SET owner = owner WHERE owner = $1",
                    vec![format!("Patient/{patient}").into()],
                )
                .await,
            1,
            "{backend}: one key for the compartment"
        );
        let found = app
            .get(&format!("/fhir/Immunization?patient={patient}&_count=100"))
            .await;
        let bundle = fhir_json(found).await;
        assert_eq!(ids(&bundle).len(), 16, "{backend}: every dose reads back");
        app.stop().await;
    }
}
