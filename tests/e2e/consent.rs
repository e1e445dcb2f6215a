//! Patient consent (issue 23): a Consent is stored only when it is valid and, for the
//! `patient-privacy` scope, enforceable; it is sealed in its patient's compartment.

use serde_json::{Value, json};
use store_sql::testing::TestDatabase;
use tests::{TestApp, fhir_json};

fn consent(provision: Value) -> Value {
    json!({
        "resourceType": "Consent",
        "status": "active",
        "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "patient-privacy"}]},
        "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
        "patient": {"reference": "Patient/c1"},
        "policyRule": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "OPTOUT"}]},
        "provision": provision,
    })
}

/// The `expression`s of an OperationOutcome's issues.
fn expressions(outcome: &Value) -> Vec<String> {
    outcome["issue"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|i| i["expression"][0].as_str().map(str::to_owned))
        .collect()
}

#[tokio::test]
async fn only_valid_enforceable_consents_are_stored_and_in_their_patients_compartment() {
    for db in TestDatabase::all().await {
        let backend = db.backend_name();
        let app = TestApp::start(db).await;
        let good = consent(json!({
            "type": "deny",
            "actor": [{"role": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "code": "PRCP"}]},
                       "reference": {"reference": "Practitioner/nurse"}}],
        }));
        let created = app.post("/fhir/Consent", &good).await;
        assert_eq!(created.status(), 201, "{backend}");
        // Sealed under the patient's own data key, like the rest of their record.
        let in_compartment = app
            .db
            .execute(
                "UPDATE resource SET key_owner = key_owner \
                 WHERE resource_type = 'Consent' AND key_owner = $1",
                vec!["Patient/c1".into()],
            )
            .await;
        assert_eq!(in_compartment, 1, "{backend}");

        let unreadable_actor = consent(json!({
            "type": "deny",
            "actor": [{"role": {"coding": [{"code": "PRCP"}]}, "reference": {"reference": "the nurse"}}],
        }));
        let refused = app.post("/fhir/Consent", &unreadable_actor).await;
        assert_eq!(refused.status(), 400, "{backend}");
        let outcome = fhir_json(refused).await;
        assert_eq!(
            expressions(&outcome),
            ["Consent.provision.actor[0].reference"],
            "{backend}: {outcome}"
        );
        assert!(!outcome.to_string().contains("the nurse"), "no values");

        let mut no_patient = good.clone();
        no_patient.as_object_mut().unwrap().remove("patient");
        let refused = app.post("/fhir/Consent", &no_patient).await;
        assert_eq!(refused.status(), 400, "{backend}");
        let outcome = fhir_json(refused).await;
        assert!(
            outcome["issue"][0]["diagnostics"]
                .as_str()
                .unwrap()
                .starts_with("ppc-2"),
            "{backend}: {outcome}"
        );
        assert_eq!(app.db.row_count("resource").await, 1, "{backend}");
    }
}
