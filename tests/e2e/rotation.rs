//! Master-key rotation while the server serves: nothing is lost, old versions retire only
//! when unused.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use serde_json::json;
use store_sql::testing::TestDatabase;
use tests::{TestApp, fhir_json};
use tokio::sync::Mutex;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rotating_under_load_loses_nothing() {
    for db in TestDatabase::all().await {
        let app = Arc::new(TestApp::start(db).await);
        let backend = app.backend();
        let config = app.config.clone();
        // Some data before the rotation starts.
        let created = Arc::new(Mutex::new(Vec::<String>::new()));
        for n in 0..20 {
            let body =
                json!({"resourceType": "Patient", "name": [{"family": format!("Before{n}")}]});
            let id = fhir_json(app.post("/fhir/Patient", &body).await).await["id"]
                .as_str()
                .unwrap()
                .to_owned();
            created.lock().await.push(id);
        }
        let retire_active = cairn::keys::retire(&config, 1).await.unwrap_err();
        assert!(
            retire_active.to_string().contains("active"),
            "{retire_active}"
        );

        let stop = Arc::new(AtomicBool::new(false));
        let failures = Arc::new(AtomicUsize::new(0));
        let operations = Arc::new(AtomicUsize::new(0));
        let mut load = Vec::new();
        for worker in 0..4 {
            let (app, stop, failures, operations, created) = (
                app.clone(),
                stop.clone(),
                failures.clone(),
                operations.clone(),
                created.clone(),
            );
            load.push(tokio::spawn(async move {
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    if worker % 2 == 0 {
                        let body = json!({"resourceType": "Patient", "name": [{"family": format!("During{worker}x{n}")}]});
                        let response = app.post("/fhir/Patient", &body).await;
                        if response.status() == 201 {
                            let value: serde_json::Value = response.json().await.unwrap();
                            created.lock().await.push(value["id"].as_str().unwrap().to_owned());
                        } else {
                            failures.fetch_add(1, Ordering::Relaxed);
                        }
                    } else {
                        let id = {
                            let ids = created.lock().await;
                            ids[n % ids.len()].clone()
                        };
                        if app.get(&format!("/fhir/Patient/{id}")).await.status() != 200 {
                            failures.fetch_add(1, Ordering::Relaxed);
                        }
                        if app.get("/fhir/Patient?family=before1").await.status() != 200 {
                            failures.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    operations.fetch_add(1, Ordering::Relaxed);
                }
            }));
        }

        let (version, report) = cairn::keys::rotate(&config).await.unwrap();
        assert_eq!(version, 2);
        assert!(report.rewrapped >= 20, "{backend}: {report:?}");
        // Keep the load on a moment after the rotation, against the new version only.
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        stop.store(true, Ordering::Relaxed);
        for task in load {
            task.await.unwrap();
        }
        assert_eq!(failures.load(Ordering::Relaxed), 0, "{backend}");
        assert!(
            operations.load(Ordering::Relaxed) > 20,
            "{backend}: the load ran"
        );

        let status = cairn::keys::status(&config).await.unwrap();
        let total: u64 = status.iter().map(|v| v.data_keys).sum();
        let ids = created.lock().await.clone();
        assert_eq!(
            total,
            ids.len() as u64,
            "{backend}: one data key per patient"
        );
        let old = status.iter().find(|v| v.version == 1).unwrap();
        if old.data_keys > 0 {
            // A writer created a key under version 1 after the second pass: a rotate picks
            // it up, and retiring is refused until then.
            assert!(cairn::keys::retire(&config, 1).await.is_err());
            cairn::keys::rotate(&config).await.unwrap();
        }
        // Every patient ever created reads back.
        for id in &ids {
            assert_eq!(
                app.get(&format!("/fhir/Patient/{id}")).await.status(),
                200,
                "{backend}"
            );
        }
        let latest = cairn::keys::status(&config).await.unwrap();
        let active = latest.iter().find(|v| v.active).unwrap().version;
        for v in latest.iter().filter(|v| !v.active) {
            assert_eq!(v.data_keys, 0, "{backend}: {latest:?}");
            cairn::keys::retire(&config, v.version).await.unwrap();
        }
        let after = cairn::keys::status(&config).await.unwrap();
        assert_eq!(after.len(), 1);
        assert_eq!(after[0].version, active);
        // The running server picks up the slimmer keyring and keeps reading and writing.
        tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
        for id in ids.iter().take(5) {
            assert_eq!(app.get(&format!("/fhir/Patient/{id}")).await.status(), 200);
        }
        let body = json!({"resourceType": "Patient", "name": [{"family": "After"}]});
        assert_eq!(app.post("/fhir/Patient", &body).await.status(), 201);
        Arc::into_inner(app).unwrap().stop().await;
    }
}

#[tokio::test]
async fn a_production_database_without_a_keyring_does_not_start() {
    let Some(db) = TestDatabase::postgres().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let config = cairn::Config {
        database_url: db.url().to_owned(),
        listen: "127.0.0.1:0".into(),
        keyring: dir.path().join("missing.json"),
        ..cairn::Config::default()
    };
    let err = cairn::start(&config).await.unwrap_err();
    assert!(format!("{err:#}").contains("cairn keys init"), "{err:#}");
    assert!(!config.keyring.exists(), "no key is invented for Postgres");
}

#[tokio::test]
async fn a_lost_keyring_is_not_silently_replaced() {
    let mut app = TestApp::start(TestDatabase::sqlite()).await;
    let body = json!({"resourceType": "Patient", "name": [{"family": "Kept"}]});
    assert_eq!(app.post("/fhir/Patient", &body).await.status(), 201);
    app.take_running().stop().await.unwrap();
    // The same database, restarted with its keyring file gone.
    let mut config = app.config.clone();
    config.keyring = config.keyring.with_file_name("gone.json");
    let err = cairn::start(&config).await.unwrap_err();
    assert!(
        format!("{err:#}").contains("restore the keyring"),
        "{err:#}"
    );
    assert!(
        !config.keyring.exists(),
        "no replacement keyring was written"
    );
}
