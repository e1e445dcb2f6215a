//! What consent adds per resource once a patient's consents are compiled: one decision for a
//! patient with three consents (an opt-in with nested exceptions, a withholding from one
//! recipient, a withdrawn one), the target being under 5 µs. `cargo bench -p consent`.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::hint::black_box;

use consent::{Baseline, Baselines, Code, Context, Facts, compile, decide};
use criterion::{Criterion, criterion_group, criterion_main};
use serde_json::{Value, json};
use time::macros::datetime;

fn consent(id: &str, status: &str, policy: &str, provision: Value) -> Value {
    json!({
        "resourceType": "Consent", "id": id, "status": status,
        "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "patient-privacy"}]},
        "patient": {"reference": "Patient/p1"},
        "policyRule": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": policy}]},
        "provision": provision,
    })
}

fn bench(c: &mut Criterion) {
    let recipient = |r: &str| json!({"role": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "code": "PRCP"}]}, "reference": {"reference": r}});
    let consents = [
        consent("a", "active", "OPTIN", json!({
            "type": "permit",
            "period": {"start": "2020-01-01"},
            "action": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentaction", "code": "access"}]}],
            "provision": [{
                "type": "deny",
                "class": [{"system": "http://hl7.org/fhir/resource-types", "code": "Observation"}],
                "securityLabel": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "PSY"}],
                "provision": [{"type": "permit", "actor": [recipient("Practitioner/psychiatrist")]}],
            }],
        })),
        consent("b", "active", "OPTOUT", json!({"actor": [recipient("Practitioner/nurse")]})),
        consent("c", "inactive", "OPTOUT", json!({})),
    ]
    .map(|c| compile(&c, 1).unwrap());
    let baselines = Baselines {
        default: Baseline::OptOut,
        by_purpose: vec![("PUBHLTH".into(), Baseline::Mandated)],
    };
    let caller = [
        "Practitioner/doctor".to_owned(),
        "Organization/clinic".to_owned(),
    ];
    let purpose = Code::new(None, "TREAT");
    let action = Code::new(
        Some("http://terminology.hl7.org/CodeSystem/consentaction"),
        "access",
    );
    let dates = [(
        datetime!(2026-03-01 00:00 UTC),
        datetime!(2026-03-02 00:00 UTC),
    )];
    let codes = [Code::new(Some("http://loinc.org"), "8480-6")];
    let labels = [Code::new(
        Some("http://terminology.hl7.org/CodeSystem/v3-ActCode"),
        "PSY",
    )];
    let references = ["Patient/p1".to_owned(), "Encounter/e1".to_owned()];
    let sources = ["Organization/clinic".to_owned()];
    let context = Context {
        caller: &caller,
        purpose: Some(&purpose),
        action: &action,
        at: datetime!(2026-12-08 12:00 UTC),
    };
    let facts = Facts {
        resource_type: "Observation",
        reference: "Observation/o1",
        dates: &dates,
        codes: &codes,
        security_labels: &labels,
        references: &references,
        sources: &sources,
    };
    c.bench_function("decide: three consents, nested exceptions", |b| {
        b.iter(|| {
            decide(
                black_box(&consents),
                &baselines,
                black_box(&context),
                black_box(&facts),
            )
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
