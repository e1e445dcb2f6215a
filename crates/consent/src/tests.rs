#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use serde_json::{Value, json};
use time::OffsetDateTime;
use time::macros::datetime;

use crate::{
    Baseline, Baselines, Code, CompiledConsent, ConsentError, Context, Decision, Effect, Facts,
    Reason, compile, decide,
};

const NOW: OffsetDateTime = datetime!(2026-12-08 12:00 UTC);
const ACTIONS: &str = "http://terminology.hl7.org/CodeSystem/consentaction";
const PARTICIPATION: &str = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType";

fn consent(id: &str, policy: &str, provision: Value) -> Value {
    json!({
        "resourceType": "Consent",
        "id": id,
        "status": "active",
        "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "patient-privacy"}]},
        "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
        "patient": {"reference": "Patient/p1"},
        "dateTime": "2026-01-01",
        "policyRule": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": policy}]},
        "provision": provision,
    })
}

fn recipient(reference: &str) -> Value {
    json!({"role": {"coding": [{"system": PARTICIPATION, "code": "PRCP"}]}, "reference": {"reference": reference}})
}

fn custodian(reference: &str) -> Value {
    json!({"role": {"coding": [{"system": PARTICIPATION, "code": "CST"}]}, "reference": {"reference": reference}})
}

/// A request: the caller's references, purpose and action.
struct Ask {
    caller: Vec<String>,
    purpose: Option<Code>,
    action: Code,
    at: OffsetDateTime,
}

fn ask(caller: &[&str]) -> Ask {
    Ask {
        caller: caller.iter().map(|s| (*s).to_owned()).collect(),
        purpose: Some(Code::new(None, "TREAT")),
        action: Code::new(Some(ACTIONS), "access"),
        at: NOW,
    }
}

/// A resource's facts, owned.
struct Held {
    resource_type: String,
    reference: String,
    dates: Vec<(OffsetDateTime, OffsetDateTime)>,
    codes: Vec<Code>,
    labels: Vec<Code>,
    references: Vec<String>,
    sources: Vec<String>,
}

fn observation(id: &str) -> Held {
    Held {
        resource_type: "Observation".into(),
        reference: format!("Observation/{id}"),
        dates: vec![(
            datetime!(2026-03-01 00:00 UTC),
            datetime!(2026-03-02 00:00 UTC),
        )],
        codes: vec![Code::new(Some("http://loinc.org"), "8480-6")],
        labels: Vec::new(),
        references: vec!["Patient/p1".into()],
        sources: vec!["Organization/clinic".into()],
    }
}

fn run(consents: &[CompiledConsent], baselines: &Baselines, ask: &Ask, held: &Held) -> Decision {
    let context = Context {
        caller: &ask.caller,
        purpose: ask.purpose.as_ref(),
        action: &ask.action,
        at: ask.at,
    };
    let facts = Facts {
        resource_type: &held.resource_type,
        reference: &held.reference,
        dates: &held.dates,
        codes: &held.codes,
        security_labels: &held.labels,
        references: &held.references,
        sources: &held.sources,
    };
    decide(consents, baselines, &context, &facts)
}

fn opt_out() -> Baselines {
    Baselines {
        default: Baseline::OptOut,
        by_purpose: vec![("PUBHLTH".into(), Baseline::Mandated)],
    }
}

fn opt_in() -> Baselines {
    Baselines {
        default: Baseline::OptIn,
        by_purpose: Vec::new(),
    }
}

#[test]
fn what_is_not_an_enforceable_privacy_consent_is_refused_without_its_values() {
    assert_eq!(
        compile(&json!({"resourceType": "Patient", "id": "x"}), 1),
        Err(ConsentError::NotConsent)
    );
    let mut research = consent("c1", "OPTIN", json!({}));
    research["scope"] = json!({"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "research"}]});
    assert_eq!(compile(&research, 1), Err(ConsentError::NotPrivacy));
    let mut no_patient = consent("c1", "OPTIN", json!({}));
    no_patient.as_object_mut().unwrap().remove("patient");
    assert_eq!(
        compile(&no_patient, 1),
        Err(ConsentError::Missing { element: "patient" })
    );
    let mut no_policy = consent("c1", "OPTIN", json!({}));
    no_policy.as_object_mut().unwrap().remove("policyRule");
    assert_eq!(
        compile(&no_policy, 1),
        Err(ConsentError::Missing {
            element: "policyRule"
        })
    );
    let bad_period = consent("c1", "OPTIN", json!({"period": {"start": "2026-02-30"}}));
    let err = compile(&bad_period, 1).unwrap_err();
    assert_eq!(
        err,
        ConsentError::Invalid {
            element: "provision.period.start".into()
        }
    );
    assert!(!err.to_string().contains("2026"), "no values in errors");
    let bad_actor = consent(
        "c1",
        "OPTIN",
        json!({"provision": [{"type": "deny", "actor": [{"reference": {"reference": "nobody"}}]}]}),
    );
    assert_eq!(
        compile(&bad_actor, 1),
        Err(ConsentError::Invalid {
            element: "provision.provision[0].actor[0].reference".into()
        })
    );
}

#[test]
fn a_withholding_denies_the_named_recipient_only() {
    let withheld = compile(
        &consent(
            "c1",
            "OPTOUT",
            json!({"actor": [recipient("Practitioner/nurse")]}),
        ),
        3,
    )
    .unwrap();
    assert_eq!(withheld.patient, "p1");
    let denied = run(
        std::slice::from_ref(&withheld),
        &opt_out(),
        &ask(&["Practitioner/nurse", "Organization/clinic"]),
        &observation("o1"),
    );
    assert_eq!(denied.effect, Effect::Deny);
    assert_eq!(denied.reason, Reason::Withheld);
    assert_eq!(denied.applied[0].id, "c1");
    assert_eq!(denied.applied[0].version, 3);
    let other = run(
        &[withheld],
        &opt_out(),
        &ask(&["Practitioner/doctor"]),
        &observation("o1"),
    );
    assert_eq!(other.effect, Effect::Permit);
    assert_eq!(other.reason, Reason::Baseline(Baseline::OptOut));
    assert!(other.applied.is_empty());
}

#[test]
fn the_baseline_decides_when_no_consent_applies_and_public_health_is_mandated() {
    let none: &[CompiledConsent] = &[];
    let clinician = ask(&["Practitioner/doctor"]);
    assert!(run(none, &opt_out(), &clinician, &observation("o1")).permits());
    assert!(!run(none, &opt_in(), &clinician, &observation("o1")).permits());
    // A total opt-out does not hold back public-health reporting where the law mandates it.
    let everything = compile(&consent("c1", "OPTOUT", json!({})), 1).unwrap();
    let mut registry = ask(&["Organization/health-department"]);
    registry.purpose = Some(Code::new(None, "PUBHLTH"));
    let reported = run(
        std::slice::from_ref(&everything),
        &opt_out(),
        &registry,
        &observation("o1"),
    );
    assert_eq!(reported.reason, Reason::Baseline(Baseline::Mandated));
    assert!(reported.permits());
    assert!(!run(&[everything], &opt_out(), &clinician, &observation("o1")).permits());
}

#[test]
fn an_opt_in_permits_what_it_names_and_exceptions_carve_out_of_it() {
    // Permit access to the record, except Observations labelled restricted, except again for
    // the patient's own nurse.
    let given = compile(
        &consent(
            "c1",
            "OPTIN",
            json!({
                "type": "permit",
                "action": [{"coding": [{"system": ACTIONS, "code": "access"}]}],
                "provision": [{
                    "type": "deny",
                    "class": [{"system": "http://hl7.org/fhir/resource-types", "code": "Observation"}],
                    "securityLabel": [{"system": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality", "code": "R"}],
                    "provision": [{"type": "permit", "actor": [recipient("Practitioner/nurse")]}],
                }],
            }),
        ),
        1,
    )
    .unwrap();
    let consents = std::slice::from_ref(&given);
    let mut restricted = observation("o2");
    restricted.labels = vec![Code::new(
        Some("http://terminology.hl7.org/CodeSystem/v3-Confidentiality"),
        "R",
    )];
    let doctor = ask(&["Practitioner/doctor"]);
    let plain = run(consents, &opt_in(), &doctor, &observation("o1"));
    assert_eq!(
        (plain.effect, plain.reason),
        (Effect::Permit, Reason::Consented)
    );
    assert!(!run(consents, &opt_in(), &doctor, &restricted).permits());
    assert!(
        run(
            consents,
            &opt_in(),
            &ask(&["Practitioner/nurse"]),
            &restricted
        )
        .permits()
    );
    // Another action than the one consented to: the consent says nothing, opt-in denies.
    let mut correct = ask(&["Practitioner/doctor"]);
    correct.action = Code::new(Some(ACTIONS), "correct");
    let refused = run(consents, &opt_in(), &correct, &observation("o1"));
    assert_eq!(refused.reason, Reason::Baseline(Baseline::OptIn));
}

#[test]
fn a_deny_of_any_consent_wins_and_only_active_consents_in_their_period_count() {
    let permit = compile(&consent("a-permit", "OPTIN", json!({})), 1).unwrap();
    let deny = compile(
        &consent(
            "b-deny",
            "OPTOUT",
            json!({"type": "deny", "actor": [recipient("Practitioner/doctor")]}),
        ),
        2,
    )
    .unwrap();
    let doctor = ask(&["Practitioner/doctor"]);
    let both = run(
        &[permit.clone(), deny.clone()],
        &opt_in(),
        &doctor,
        &observation("o1"),
    );
    assert_eq!(both.effect, Effect::Deny);
    assert_eq!(both.applied.len(), 1);
    assert_eq!(both.applied[0].id, "b-deny");
    let mut withdrawn = deny.clone();
    withdrawn.active = false;
    assert!(
        run(
            &[permit.clone(), withdrawn],
            &opt_in(),
            &doctor,
            &observation("o1")
        )
        .permits()
    );
    let expired = compile(
        &consent(
            "c-old",
            "OPTOUT",
            json!({"period": {"start": "2020-01-01", "end": "2025-12-31"}}),
        ),
        1,
    )
    .unwrap();
    assert!(
        run(
            std::slice::from_ref(&expired),
            &opt_out(),
            &doctor,
            &observation("o1")
        )
        .permits()
    );
    let mut then = ask(&["Practitioner/doctor"]);
    then.at = datetime!(2025-12-31 23:59 UTC);
    assert!(!run(&[expired], &opt_out(), &then, &observation("o1")).permits());
}

#[test]
fn data_rules_select_by_record_dates_codes_custodian_and_reference() {
    let by_dates = compile(
        &consent(
            "c1",
            "OPTOUT",
            json!({"dataPeriod": {"start": "2026-02", "end": "2026-03"}}),
        ),
        1,
    )
    .unwrap();
    let doctor = ask(&["Practitioner/doctor"]);
    let mut april = observation("o2");
    april.dates = vec![(
        datetime!(2026-04-01 00:00 UTC),
        datetime!(2026-04-02 00:00 UTC),
    )];
    assert!(
        !run(
            std::slice::from_ref(&by_dates),
            &opt_out(),
            &doctor,
            &observation("o1")
        )
        .permits()
    );
    assert!(run(std::slice::from_ref(&by_dates), &opt_out(), &doctor, &april).permits());
    let mut undated = observation("o3");
    undated.dates.clear();
    assert!(run(&[by_dates], &opt_out(), &doctor, &undated).permits());

    let by_code = compile(
        &consent(
            "c2",
            "OPTOUT",
            json!({"code": [{"coding": [{"system": "http://loinc.org", "code": "8480-6"}]}]}),
        ),
        1,
    )
    .unwrap();
    assert!(
        !run(
            std::slice::from_ref(&by_code),
            &opt_out(),
            &doctor,
            &observation("o1")
        )
        .permits()
    );
    let mut other_code = observation("o4");
    other_code.codes = vec![Code::new(Some("http://loinc.org"), "2339-0")];
    assert!(run(&[by_code], &opt_out(), &doctor, &other_code).permits());

    // A custodian actor is where the data comes from, not who asks.
    let by_custodian = compile(
        &consent(
            "c3",
            "OPTOUT",
            json!({"actor": [custodian("Organization/clinic")]}),
        ),
        1,
    )
    .unwrap();
    assert!(
        !run(
            std::slice::from_ref(&by_custodian),
            &opt_out(),
            &doctor,
            &observation("o1")
        )
        .permits()
    );
    let mut elsewhere = observation("o5");
    elsewhere.sources = vec!["Organization/hospital".into()];
    assert!(run(&[by_custodian], &opt_out(), &doctor, &elsewhere).permits());

    let one_record = compile(
        &consent(
            "c4",
            "OPTOUT",
            json!({"data": [{"meaning": "related", "reference": {"reference": "Encounter/e1"}}]}),
        ),
        1,
    )
    .unwrap();
    let mut in_encounter = observation("o6");
    in_encounter.references.push("Encounter/e1".into());
    assert!(
        !run(
            std::slice::from_ref(&one_record),
            &opt_out(),
            &doctor,
            &in_encounter
        )
        .permits()
    );
    assert!(run(&[one_record], &opt_out(), &doctor, &observation("o1")).permits());
}

#[test]
fn a_purpose_bound_permit_needs_that_purpose() {
    let emergency_only = compile(
        &consent(
            "c1",
            "OPTIN",
            json!({"purpose": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActReason", "code": "ETREAT"}]}),
        ),
        1,
    )
    .unwrap();
    let consents = std::slice::from_ref(&emergency_only);
    let mut emergency = ask(&["Practitioner/doctor"]);
    emergency.purpose = Some(Code::new(
        Some("http://terminology.hl7.org/CodeSystem/v3-ActReason"),
        "ETREAT",
    ));
    assert!(run(consents, &opt_in(), &emergency, &observation("o1")).permits());
    assert!(
        !run(
            consents,
            &opt_in(),
            &ask(&["Practitioner/doctor"]),
            &observation("o1")
        )
        .permits()
    );
    let mut no_purpose = ask(&["Practitioner/doctor"]);
    no_purpose.purpose = None;
    assert!(!run(consents, &opt_in(), &no_purpose, &observation("o1")).permits());
}

#[test]
fn a_consent_without_a_type_departs_from_the_baseline() {
    let about_nurse = compile(
        &consent(
            "c1",
            "OPTIN",
            json!({"actor": [recipient("Practitioner/nurse")]}),
        ),
        1,
    )
    .unwrap();
    let consents = std::slice::from_ref(&about_nurse);
    let nurse = ask(&["Practitioner/nurse"]);
    // Where everyone may see by default, naming the nurse withholds from her...
    let withheld = run(consents, &opt_out(), &nurse, &observation("o1"));
    assert_eq!(
        (withheld.effect, withheld.reason),
        (Effect::Deny, Reason::Withheld)
    );
    // ...and where no one may, it grants her.
    let granted = run(consents, &opt_in(), &nurse, &observation("o1"));
    assert_eq!(
        (granted.effect, granted.reason),
        (Effect::Permit, Reason::Consented)
    );
    // Others keep the baseline either way.
    let doctor = ask(&["Practitioner/doctor"]);
    assert!(run(consents, &opt_out(), &doctor, &observation("o1")).permits());
    assert!(!run(consents, &opt_in(), &doctor, &observation("o1")).permits());
}
