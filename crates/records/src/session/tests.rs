#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use access::{ClaimRequest, Claims, Gate, Purpose, RevokedIds, Role, Scope, SigningKey, Subject};
use audit_chain::{Action, Outcome};
use fhir_model::ResourceType;
use futures_executor::block_on;
use phi_crypto::{FixedKeyring, Keyring, Vault};
use time::macros::datetime;
use time::{Duration, OffsetDateTime};

use crate::ResourceStore;
use crate::fakes::{FixedClock, MemoryStore, SequentialIds};
use crate::{Records, RecordsError};

/// The core's clock, nowhere near the machine's: every decision and entry must use it.
const CORE_TIME: OffsetDateTime = datetime!(2031-05-06 07:08:09.123456 UTC);

fn key() -> SigningKey {
    SigningKey::from_seed(&[9; 32]).unwrap()
}

fn records_on(store: &Arc<MemoryStore>, clock: Arc<FixedClock>) -> Records {
    let keyring = Keyring::generate(datetime!(2026-01-01 0:00 UTC)).unwrap();
    let vault = Vault::new(store.keys(), Arc::new(FixedKeyring(Arc::new(keyring))));
    Records::new(
        store.clone(),
        vault,
        clock,
        Arc::new(SequentialIds::default()),
        Arc::new(store.audit_log()),
    )
}

fn guarded() -> (Records, Arc<MemoryStore>, Arc<FixedClock>) {
    let store = Arc::new(MemoryStore::default());
    let clock = Arc::new(FixedClock::at(CORE_TIME));
    let records =
        records_on(&store, clock.clone()).guarded_by(Gate::new(key().verifying_key()).unwrap());
    (records, store, clock)
}

/// A caller of `role`, issued an hour before the core's time for eight hours.
fn caller(role: Role, patient: Option<&str>, scopes: &[&str]) -> access::Caller {
    let claims = Claims::new(ClaimRequest {
        subject: Subject::parse("user:session-test").unwrap(),
        role,
        organization: None,
        patient: patient.map(|id| format!("Patient/{id}")),
        scopes: scopes.iter().map(|s| Scope::parse(s).unwrap()).collect(),
        purpose: (role == Role::Clinician).then(|| Purpose::parse("TREAT").unwrap()),
        issued_at: CORE_TIME - Duration::HOUR,
        lifetime: Duration::hours(8),
    })
    .unwrap();
    let token = key().issue(&claims).unwrap();
    Gate::new(key().verifying_key())
        .unwrap()
        .authenticate(token.token.expose(), CORE_TIME, &RevokedIds::default())
        .unwrap()
}

fn patient_body() -> Vec<u8> {
    br#"{"resourceType":"Patient","name":[{"family":"Session"}]}"#.to_vec()
}

#[test]
fn a_refusal_is_recorded_at_the_core_clocks_time_and_names_the_caller() {
    let (records, store, _) = guarded();
    let auditor = records.session(caller(Role::Auditor, None, &[]), "req-1");
    let refused = block_on(auditor.create(ResourceType::PATIENT, &patient_body())).unwrap_err();
    let RecordsError::Refused(err) = &refused else {
        panic!("{refused:?}")
    };
    assert!(!err.is_authentication());
    let entries = store.audit_log().entries();
    let denied: Vec<_> = entries
        .iter()
        .filter(|e| e.action == Action::AccessDenied)
        .collect();
    assert_eq!(denied.len(), 1, "{entries:?}");
    let entry = denied[0];
    assert_eq!(
        entry.recorded, CORE_TIME,
        "the core clock's time, not the machine's"
    );
    assert_eq!(entry.outcome, Outcome::Denied);
    assert_eq!(entry.subject.as_deref(), Some("user:session-test"));
    assert_eq!(entry.role.as_deref(), Some("auditor"));
    assert_eq!(entry.request_id.as_deref(), Some("req-1"));
    assert_eq!(entry.resource_type.as_deref(), Some("Patient"));
    assert_eq!(entry.reason.as_deref(), Some(err.code()));
    // Nothing was written.
    let all_patients = crate::index::SearchQuery {
        resource_type: ResourceType::PATIENT,
        clauses: vec![],
        order: crate::index::Order::default(),
        after: None,
        limit: 10,
    };
    assert_eq!(block_on(store.count(&all_patients)).unwrap(), 0);
}

#[test]
fn a_token_past_its_expiry_by_the_core_clock_is_a_login_failure() {
    let (records, store, clock) = guarded();
    let session = records.session(caller(Role::Clinician, None, &[]), "req-2");
    assert!(block_on(session.create(ResourceType::PATIENT, &patient_body())).is_ok());
    // Eight hours later by the core's clock (the machine's has barely moved).
    clock.advance(Duration::hours(8));
    let refused = block_on(session.read(ResourceType::PATIENT, "id-1")).unwrap_err();
    let RecordsError::Refused(err) = refused else {
        panic!("{refused:?}")
    };
    assert!(err.is_authentication(), "{err}");
    let entries = store.audit_log().entries();
    let failure = entries
        .iter()
        .find(|e| e.action == Action::LoginFailure)
        .unwrap();
    assert_eq!(failure.recorded, CORE_TIME + Duration::hours(8));
}

#[test]
fn a_refused_credential_is_recorded_at_the_core_clocks_time_naming_no_one() {
    let (records, store, _) = guarded();
    block_on(records.record_login_failure("req-0", "bad-signature"));
    let entries = store.audit_log().entries();
    let [entry] = entries.as_slice() else {
        panic!("{entries:?}")
    };
    assert_eq!(entry.action, Action::LoginFailure);
    assert_eq!(entry.recorded, CORE_TIME);
    assert_eq!(entry.subject, None);
    assert_eq!(entry.request_id.as_deref(), Some("req-0"));
    assert_eq!(entry.reason.as_deref(), Some("bad-signature"));
}

#[test]
fn the_session_decides_each_use_case_and_confines_a_patient() {
    let (records, _, _) = guarded();
    let clinician = records.session(caller(Role::Clinician, None, &[]), "req-3");
    let ann = block_on(clinician.create(ResourceType::PATIENT, &patient_body())).unwrap();
    let bob = block_on(clinician.create(ResourceType::PATIENT, &patient_body())).unwrap();
    // A registrar may create and read but never delete.
    let registrar = records.session(caller(Role::Registrar, None, &[]), "req-4");
    assert!(block_on(registrar.read(ResourceType::PATIENT, &ann.id)).is_ok());
    assert!(matches!(
        block_on(registrar.delete(ResourceType::PATIENT, &ann.id, None)),
        Err(RecordsError::Refused(_))
    ));
    // A scope narrows: read-only on Patient.
    let narrowed = records.session(caller(Role::Clinician, None, &["user/Patient.rs"]), "req-5");
    assert!(block_on(narrowed.read(ResourceType::PATIENT, &ann.id)).is_ok());
    assert!(matches!(
        block_on(narrowed.create(ResourceType::PATIENT, &patient_body())),
        Err(RecordsError::Refused(_))
    ));
    // A patient sees their own compartment only; another patient does not exist for them.
    let patient = records.session(caller(Role::Patient, Some(&ann.id), &[]), "req-6");
    assert!(block_on(patient.read(ResourceType::PATIENT, &ann.id)).is_ok());
    assert!(matches!(
        block_on(patient.read(ResourceType::PATIENT, &bob.id)),
        Err(RecordsError::NotFound { .. })
    ));
    // Erasure is its own operation: an admin's, not a clinician's.
    assert!(matches!(
        block_on(clinician.erase_patient(&bob.id)),
        Err(RecordsError::Refused(_))
    ));
    let admin = records.session(caller(Role::Admin, None, &[]), "req-7");
    assert!(block_on(admin.erase_patient(&bob.id)).is_ok());
    // The log is the auditor's; neither an admin nor a clinician reads it.
    let auditor = records.session(caller(Role::Auditor, None, &[]), "req-9");
    assert!(block_on(auditor.allow_audit_reading()).is_ok());
    assert!(block_on(admin.allow_audit_reading()).is_err());
    assert!(block_on(clinician.allow_audit_reading()).is_err());
    assert!(block_on(patient.allow_disclosures(&ann.id)).is_ok());
    assert!(block_on(patient.allow_disclosures(&bob.id)).is_err());
}

#[test]
fn records_without_a_policy_refuse_every_session() {
    let store = Arc::new(MemoryStore::default());
    let records = records_on(&store, Arc::new(FixedClock::at(CORE_TIME)));
    let session = records.session(caller(Role::Clinician, None, &[]), "req-8");
    assert!(matches!(
        block_on(session.read(ResourceType::PATIENT, "x")),
        Err(RecordsError::Refused(_))
    ));
}
