//! The audit log end to end: every touch of PHI and every refusal is on it, each entry gets a
//! receipt an outside verifier checks, and the log verifies (and names tampering) from the
//! database and from an export.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use futures::StreamExt;
use serde_json::{Value, json};
use tests::{ConformanceTools, TestApp, client_with};

fn patient(family: &str) -> Value {
    json!({"resourceType": "Patient", "name": [{"family": family, "given": ["Ada"]}],
           "birthDate": "2019-12-10", "identifier": [{"system": "urn:mrn", "value": "MRN-4412"}]})
}

async fn create_patient(app: &TestApp, family: &str) -> String {
    let created: Value = app
        .post("/fhir/Patient", &patient(family))
        .await
        .json()
        .await
        .unwrap();
    created["id"].as_str().unwrap().to_owned()
}

/// Every AuditEvent the search finds, following `next` links.
async fn audit_events(auditor: &reqwest::Client, first: String) -> Vec<Value> {
    let mut events = Vec::new();
    let mut url = Some(first);
    while let Some(next) = url.take() {
        let response = auditor.get(&next).send().await.unwrap();
        assert_eq!(response.status(), 200, "{next}");
        let bundle: Value = response.json().await.unwrap();
        for entry in bundle["entry"].as_array().into_iter().flatten() {
            events.push(entry["resource"].clone());
        }
        url = bundle["link"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["relation"] == "next")
            .map(|l| l["url"].as_str().unwrap().to_owned());
    }
    events
}

/// An entry's exact bytes and its `tlog-proof`, as an auditor fetches them.
async fn entry_and_proof(app: &TestApp, auditor: &reqwest::Client, id: &str) -> (Vec<u8>, String) {
    let get = |path: String| auditor.get(app.url(&path)).send();
    let bytes = get(format!("/audit/entries/{id}"))
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let proof = get(format!("/audit/entries/{id}/proof"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    (bytes.to_vec(), proof)
}

fn action(event: &Value) -> &str {
    event["subtype"][0]["code"].as_str().unwrap()
}

async fn get_json(client: &reqwest::Client, url: String) -> Value {
    client.get(url).send().await.unwrap().json().await.unwrap()
}

/// Waits until a signed checkpoint covers every entry recorded so far (the sequencer signs
/// about once a second).
async fn signed(app: &TestApp, auditor: &reqwest::Client, entries: i64) {
    for _ in 0..100 {
        let body: Value = get_json(auditor, app.url("/audit/checkpoints")).await;
        let size = body["checkpoints"][0]["size"].as_i64().unwrap_or(0);
        if size >= entries {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("no checkpoint covered {entries} entries within 10 s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_thousand_concurrent_reads_leave_a_thousand_entries_each_with_a_verifying_receipt() {
    for app in TestApp::on_every_backend().await {
        let id = create_patient(&app, "Thousand").await;
        let reads = futures::stream::iter(0..1000)
            .map(|_| {
                let (client, url) = (app.client.clone(), app.url(&format!("/fhir/Patient/{id}")));
                async move { client.get(url).send().await.unwrap().status().as_u16() }
            })
            .buffer_unordered(64)
            .collect::<Vec<_>>()
            .await;
        assert!(reads.iter().all(|s| *s == 200), "every read succeeded");
        let auditor = client_with(&app.token_for("user:auditor", "auditor", &[], None).await);
        let events = audit_events(
            &auditor,
            app.url(&format!("/fhir/AuditEvent?patient=Patient/{id}&_count=400")),
        )
        .await;
        let read_events: Vec<&Value> = events.iter().filter(|e| action(e) == "read").collect();
        assert_eq!(
            read_events.len(),
            1000,
            "{}: exactly one entry per read",
            app.backend()
        );
        assert_eq!(events.iter().filter(|e| action(e) == "create").count(), 1);
        let key = audit_chain::VerifierKey::parse(
            &auditor
                .get(app.url("/audit/key"))
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap(),
        )
        .unwrap();
        let origin: Value = get_json(&auditor, app.url("/audit/checkpoints")).await;
        let origin = origin["origin"].as_str().unwrap().to_owned();
        signed(&app, &auditor, app.db.recorded_audit_entries().await).await;
        let mut indexes = std::collections::BTreeSet::new();
        for event in &read_events {
            let entry_id = event["id"].as_str().unwrap();
            assert_eq!(event["agent"][0]["who"]["display"], "service:test-feed");
            assert_eq!(
                event["entity"][0]["what"]["reference"],
                format!("Patient/{id}")
            );
            let (bytes, proof) = entry_and_proof(&app, &auditor, entry_id).await;
            let receipt = audit_chain::Receipt::parse(&proof).unwrap();
            receipt.verify(&bytes, &key, &origin).unwrap();
            indexes.insert(receipt.index);
        }
        assert_eq!(indexes.len(), 1000, "each read has its own leaf");
        eprintln!(
            "{}: 1000 reads, 1000 entries, 1000 receipts verified",
            app.backend()
        );
        app.stop().await;
    }
}

#[tokio::test]
async fn an_outside_verifier_checks_entries_with_only_the_three_answers() {
    let Some(tools) = ConformanceTools::from_env() else {
        return;
    };
    for app in TestApp::on_every_backend().await {
        let id = create_patient(&app, "Outside").await;
        for _ in 0..5 {
            assert_eq!(app.get(&format!("/fhir/Patient/{id}")).await.status(), 200);
        }
        let auditor = client_with(&app.token_for("user:auditor", "auditor", &[], None).await);
        let events =
            audit_events(&auditor, app.url(&format!("/fhir/AuditEvent?patient={id}"))).await;
        signed(&app, &auditor, app.db.recorded_audit_entries().await).await;
        let vkey = auditor
            .get(app.url("/audit/key"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let origin = vkey.split('+').next().unwrap().to_owned();
        let mut entries = Vec::new();
        for event in &events {
            let entry_id = event["id"].as_str().unwrap();
            let (bytes, proof) = entry_and_proof(&app, &auditor, entry_id).await;
            entries.push(json!({"id": entry_id, "body": BASE64.encode(&bytes), "proof": proof}));
        }
        assert_eq!(entries.len(), 6);
        // One forged entry: its bytes are changed, so its proof must fail.
        let mut forged = entries[0].clone();
        let mut bytes = BASE64.decode(forged["body"].as_str().unwrap()).unwrap();
        let at = bytes.len() / 2;
        bytes[at] ^= 1;
        forged["body"] = json!(BASE64.encode(&bytes));
        let request = json!({"vkey": vkey, "origin": origin, "entries": entries});
        let (ok, output) = tools
            .run("verify_receipt.py", &[], request.to_string().into_bytes())
            .await;
        assert!(ok, "{}: {output}", app.backend());
        assert_eq!(output.lines().filter(|l| l.starts_with("ok ")).count(), 6);
        let request = json!({"vkey": vkey, "origin": origin, "entries": [forged]});
        let (ok, output) = tools
            .run("verify_receipt.py", &[], request.to_string().into_bytes())
            .await;
        assert!(
            !ok && output.contains("FAILED"),
            "a forged entry passed: {output}"
        );
        app.stop().await;
    }
}

#[tokio::test]
async fn refusals_failures_and_every_kind_of_access_are_recorded() {
    for app in TestApp::on_every_backend().await {
        let id = create_patient(&app, "Recorded").await;
        let auditor = client_with(&app.token_for("user:auditor", "auditor", &[], None).await);
        // No token, a bad token, a forbidden read (the auditor has no clinical access).
        assert_eq!(
            app.anonymous
                .get(app.url("/fhir/Patient"))
                .send()
                .await
                .unwrap()
                .status(),
            401
        );
        let forged = client_with("not-a-token");
        assert_eq!(
            forged
                .get(app.url("/fhir/Patient"))
                .send()
                .await
                .unwrap()
                .status(),
            401
        );
        assert_eq!(
            auditor
                .get(app.url(&format!("/fhir/Patient/{id}")))
                .send()
                .await
                .unwrap()
                .status(),
            403
        );
        // Every kind of access to the patient.
        for path in [
            format!("/fhir/Patient/{id}"),
            format!("/fhir/Patient/{id}/_history/1"),
            format!("/fhir/Patient/{id}/_history"),
            "/fhir/Patient?family=Recorded".to_owned(),
            format!("/fhir/Patient/{id}/$series-status"),
        ] {
            assert_eq!(app.get(&path).await.status(), 200, "{path}");
        }
        // A failed write: refused, and recorded as such, with no success entry.
        let invalid = json!({"resourceType": "Patient", "birthDate": "not-a-date"});
        assert_eq!(app.post("/fhir/Patient", &invalid).await.status(), 400);
        let all = audit_events(&auditor, app.url("/fhir/AuditEvent?_count=1000")).await;
        let count = |kind: &str, outcome: &str| {
            all.iter()
                .filter(|e| action(e) == kind && e["outcome"] == outcome)
                .count()
        };
        assert_eq!(
            count("login-failure", "4"),
            2,
            "{}: two 401s",
            app.backend()
        );
        let reasons: Vec<&str> = all
            .iter()
            .filter(|e| action(e) == "login-failure")
            .map(|e| e["outcomeDesc"].as_str().unwrap())
            .collect();
        assert!(reasons.contains(&"no-token") && reasons.contains(&"malformed-token"));
        assert_eq!(count("access-denied", "4"), 1, "the auditor's read");
        assert_eq!(count("create", "0"), 1);
        assert_eq!(
            count("create", "4"),
            1,
            "the invalid create, recorded after rollback"
        );
        assert_eq!(count("read", "0"), 2, "the read and $series-status");
        assert_eq!(count("vread", "0"), 1);
        assert_eq!(count("history", "0"), 1);
        assert_eq!(count("search", "0"), 1);
        let search = all.iter().find(|e| action(e) == "search").unwrap();
        let text = search.to_string();
        assert!(
            !text.contains("Recorded"),
            "search values are blinded: {text}"
        );
        assert!(text.contains("param:family"));
        // No PHI anywhere in the log.
        for event in &all {
            let text = event.to_string();
            for phi in ["Recorded", "Ada", "2019-12-10", "MRN-4412"] {
                assert!(!text.contains(phi), "PHI {phi} in {text}");
            }
        }
        // The accounting of disclosures lists who read the record, when, and why.
        let disclosures: Value = get_json(
            &auditor,
            app.url(&format!("/fhir/Patient/{id}/$disclosures")),
        )
        .await;
        let listed = disclosures["entry"].as_array().unwrap();
        assert_eq!(
            listed.len(),
            5,
            "read, vread, history, search, $series-status"
        );
        assert!(
            listed
                .iter()
                .all(|e| e["resource"]["agent"][0]["who"]["display"] == "service:test-feed")
        );
        // The patient may see their own accounting, and no one else's.
        let other = create_patient(&app, "Other").await;
        let own = client_with(
            &app.token_for(
                "patient:ada",
                "patient",
                &["patient/*.rs"],
                Some(&format!("Patient/{id}")),
            )
            .await,
        );
        let status = |path: String| {
            let own = own.clone();
            async move { own.get(path).send().await.unwrap().status().as_u16() }
        };
        assert_eq!(
            status(app.url(&format!("/fhir/Patient/{id}/$disclosures"))).await,
            200
        );
        assert_eq!(
            status(app.url(&format!("/fhir/Patient/{other}/$disclosures"))).await,
            403
        );
        assert_eq!(status(app.url("/fhir/AuditEvent")).await, 403);
        app.stop().await;
    }
}

#[tokio::test]
async fn the_log_verifies_from_the_database_and_from_an_export_and_names_tampering() {
    for app in TestApp::on_every_backend().await {
        let id = create_patient(&app, "Exported").await;
        for _ in 0..20 {
            assert_eq!(app.get(&format!("/fhir/Patient/{id}")).await.status(), 200);
        }
        let auditor = client_with(&app.token_for("user:auditor", "auditor", &[], None).await);
        signed(&app, &auditor, app.db.recorded_audit_entries().await).await;
        let config = app.config.clone();
        let (store, identity) = cairn::audit_log::open(&config).await.unwrap();
        let verified = cairn::audit_log::verify_database(&store, &identity.key, &identity.origin)
            .await
            .unwrap()
            .unwrap();
        assert!(verified.entries >= 21);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let mut file = std::fs::File::create(&path).unwrap();
        let written = cairn::audit_log::export(&store, &identity, &mut file)
            .await
            .unwrap();
        assert_eq!(written, verified.entries);
        let (_, outcome) = cairn::audit_log::verify_file(&path, Some(&identity.key)).unwrap();
        assert_eq!(outcome.unwrap().entries, verified.entries);
        // Change one entry in the export: the offline check names it.
        let text = std::fs::read_to_string(&path).unwrap();
        let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
        let target = lines
            .iter()
            .position(|l| l.contains("\"index\":7,"))
            .unwrap();
        let mut line: Value = serde_json::from_str(&lines[target]).unwrap();
        let mut body = BASE64.decode(line["body"].as_str().unwrap()).unwrap();
        body[10] ^= 1;
        line["body"] = json!(BASE64.encode(&body));
        let victim = line["id"].as_str().unwrap().to_owned();
        lines[target] = line.to_string();
        std::fs::write(&path, lines.join("\n") + "\n").unwrap();
        let (_, outcome) = cairn::audit_log::verify_file(&path, Some(&identity.key)).unwrap();
        let tamper = outcome.unwrap_err().to_string();
        assert!(
            tamper.contains(&victim) && tamper.contains("index 7"),
            "{tamper}"
        );
        // And in the database: an entry deleted by a superuser is named by the gap.
        app.db
            .bypassing_audit_guard(&[("DELETE FROM audit_entry WHERE leaf_index = 3", vec![])])
            .await;
        let tamper = cairn::audit_log::verify_database(&store, &identity.key, &identity.origin)
            .await
            .unwrap()
            .unwrap_err();
        assert!(
            tamper.to_string().contains("index 3 is missing"),
            "{tamper}"
        );
        store.close().await;
        app.stop().await;
    }
}

#[tokio::test]
async fn when_the_audit_log_cannot_record_nothing_is_disclosed() {
    for app in TestApp::on_every_backend().await {
        let id = create_patient(&app, "Unrecorded").await;
        // The audit intake becomes unwritable (as a full disk or a revoked grant would make it).
        app.db
            .bypassing_audit_guard(&[(
                "ALTER TABLE audit_intake RENAME TO audit_intake_away",
                vec![],
            )])
            .await;
        let response = app.get(&format!("/fhir/Patient/{id}")).await;
        assert_eq!(response.status(), 503, "{}", app.backend());
        let body = response.text().await.unwrap();
        assert!(
            !body.contains("Unrecorded") && body.contains("audit log"),
            "{body}"
        );
        let search = app.get("/fhir/Patient?family=Unrecorded").await;
        assert_eq!(search.status(), 503);
        // A write cannot happen without its entry either.
        assert_eq!(
            app.post("/fhir/Patient", &patient("Later")).await.status(),
            503
        );
        app.db
            .bypassing_audit_guard(&[(
                "ALTER TABLE audit_intake_away RENAME TO audit_intake",
                vec![],
            )])
            .await;
        assert_eq!(app.get(&format!("/fhir/Patient/{id}")).await.status(), 200);
        app.stop().await;
    }
}

/// `verify` derives every column the server finds entries by, and every stored tree node,
/// from the signed bytes: changing one is named, and the read paths do not trust it meanwhile.
#[tokio::test]
async fn verify_names_an_altered_column_or_tree_node() {
    use sea_orm::{ConnectionTrait, Database, Statement};

    for app in TestApp::on_every_backend().await {
        let id = create_patient(&app, "Columns").await;
        let other = create_patient(&app, "Other").await;
        for _ in 0..40 {
            assert_eq!(app.get(&format!("/fhir/Patient/{id}")).await.status(), 200);
        }
        let auditor = client_with(&app.token_for("user:auditor", "auditor", &[], None).await);
        signed(&app, &auditor, app.db.recorded_audit_entries().await).await;
        let (store, identity) = cairn::audit_log::open(&app.config).await.unwrap();
        let verify = || async {
            cairn::audit_log::verify_database(&store, &identity.key, &identity.origin)
                .await
                .unwrap()
        };
        verify().await.unwrap();

        let db = Database::connect(app.db.url()).await.unwrap();
        let backend = db.get_database_backend();
        let row = db
            .query_one_raw(Statement::from_string(
                backend,
                format!(
                    "SELECT leaf_index, id FROM audit_entry WHERE patient = 'Patient/{id}' \
                     AND action = 'read' ORDER BY leaf_index LIMIT 1 OFFSET 10"
                ),
            ))
            .await
            .unwrap()
            .unwrap();
        let index: i64 = row.try_get("", "leaf_index").unwrap();
        let entry_id: String = row.try_get("", "id").unwrap();
        let disclosures = |patient: String| {
            let auditor = auditor.clone();
            let url = app.url(&format!("/fhir/Patient/{patient}/$disclosures?_count=1000"));
            async move {
                let body: Value = get_json(&auditor, url).await;
                body["entry"].as_array().map_or(0, Vec::len)
            }
        };
        let others_before = disclosures(other.clone()).await;

        let tampers = [
            (
                "patient",
                format!("'Patient/{other}'"),
                format!("'Patient/{id}'"),
            ),
            ("id", "'forged-id'".to_owned(), format!("'{entry_id}'")),
            ("action", "'login'".to_owned(), "'read'".to_owned()),
        ];
        for (column, forged, original) in tampers {
            let set = |value: &str| {
                format!("UPDATE audit_entry SET {column} = {value} WHERE leaf_index = {index}")
            };
            app.db
                .bypassing_audit_guard(&[(&set(&forged), vec![])])
                .await;
            let tamper = verify().await.unwrap_err().to_string();
            assert!(
                tamper.contains(&format!("index {index}"))
                    && tamper.contains(&format!("stored {column}")),
                "{} {column}: {tamper}",
                app.backend()
            );
            if column == "patient" {
                // The other patient's accounting does not take on a read of someone else.
                assert_eq!(disclosures(other.clone()).await, others_before);
            }
            if column == "id" {
                let response = auditor
                    .get(app.url("/audit/entries/forged-id"))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(response.status(), 404);
            }
            app.db
                .bypassing_audit_guard(&[(&set(&original), vec![])])
                .await;
            verify().await.unwrap();
        }

        // A stored tree node (level 4 covers entries 0..16) changed: proofs from it would fail.
        let zero = match app.backend() {
            "postgres" => "decode(repeat('00', 32), 'hex')",
            _ => "zeroblob(32)",
        };
        app.db
            .bypassing_audit_guard(&[(
                &format!("UPDATE audit_node SET hash = {zero} WHERE level = 4 AND idx = 0"),
                vec![],
            )])
            .await;
        let tamper = verify().await.unwrap_err().to_string();
        assert!(tamper.contains("level 4, index 0"), "{tamper}");
        db.close().await.unwrap();
        store.close().await;
        app.stop().await;
    }
}

/// Stopped while clients keep reading, the server sequences and signs every entry it recorded
/// before it exits.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_graceful_stop_under_load_leaves_no_unsigned_entry() {
    for mut app in TestApp::on_every_backend().await {
        let id = create_patient(&app, "Stopping").await;
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let readers: Vec<_> = (0..8)
            .map(|_| {
                let (client, url) = (app.client.clone(), app.url(&format!("/fhir/Patient/{id}")));
                let stop = std::sync::Arc::clone(&stop);
                tokio::spawn(async move {
                    let mut answered = 0;
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        match client.get(&url).send().await {
                            Ok(response) if response.status() == 200 => answered += 1,
                            _ => tokio::time::sleep(Duration::from_millis(5)).await,
                        }
                    }
                    answered
                })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(1500)).await;
        app.take_running().stop().await.unwrap();
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let mut answered = 0;
        for reader in readers {
            answered += reader.await.unwrap();
        }
        assert!(answered > 50, "{answered}");
        let recorded = app.db.recorded_audit_entries().await;
        let (store, _) = cairn::audit_log::open(&app.config).await.unwrap();
        let signed = audit_chain::AuditLog::latest_checkpoint(&store)
            .await
            .unwrap()
            .map_or(0, |c| c.checkpoint.size);
        assert_eq!(
            i64::try_from(signed).unwrap(),
            recorded,
            "{}: entries recorded but not signed at shutdown",
            app.backend()
        );
        store.close().await;
    }
}
