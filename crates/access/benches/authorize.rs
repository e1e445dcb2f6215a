//! What access control adds to a request: verifying a token (signatures, revocation, claims)
//! and deciding the request. `cargo bench -p access`; figures in docs/performance.md.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::hint::black_box;

use access::{
    Action, ClaimRequest, Claims, Gate, Narrowing, Need, Purpose, RevokedIds, Role, Scope,
    SigningKey, Subject, attenuate,
};
use criterion::{Criterion, criterion_group, criterion_main};
use time::{Duration, OffsetDateTime};

fn token(role: Role, patient: Option<&str>, scopes: &[&str]) -> String {
    let key = SigningKey::from_seed(&[3; 32]).unwrap();
    let claims = Claims::new(ClaimRequest {
        subject: Subject::parse("user:alice").unwrap(),
        role,
        organization: Some("Organization/1".into()),
        patient: patient.map(str::to_owned),
        scopes: scopes.iter().map(|s| Scope::parse(s).unwrap()).collect(),
        purpose: (role == Role::Clinician).then(|| Purpose::parse("TREAT").unwrap()),
        issued_at: OffsetDateTime::now_utc(),
        lifetime: Duration::hours(8),
    })
    .unwrap();
    key.issue(&claims).unwrap().token.expose().to_owned()
}

fn gate_costs(c: &mut Criterion) {
    let gate = Gate::new(SigningKey::from_seed(&[3; 32]).unwrap().verifying_key()).unwrap();
    // A revocation list of realistic size: a thousand revoked tokens.
    let revoked = RevokedIds::new((0..1000).map(|i| format!("{i:0128x}")));
    let now = OffsetDateTime::now_utc();
    let clinician = token(Role::Clinician, None, &[]);
    let patient = token(Role::Patient, Some("Patient/p1"), &[]);
    let attenuated = attenuate(
        &token(
            Role::System,
            None,
            &["system/Patient.rs", "system/Immunization.cruds"],
        ),
        &Narrowing {
            patient: Some("Patient/p1".into()),
            expires_at: Some(now + Duration::hours(1)),
            read_only: true,
        },
    )
    .unwrap();
    let read = [Need::data("Patient", Action::Read)];

    let mut group = c.benchmark_group("access");
    for (name, token) in [
        ("clinician", clinician.as_str()),
        ("patient", patient.as_str()),
        ("attenuated system", attenuated.expose()),
    ] {
        group.bench_function(format!("authenticate + authorize a read ({name})"), |b| {
            b.iter(|| {
                let caller = gate.authenticate(black_box(token), now, &revoked).unwrap();
                gate.authorize(&caller, black_box(&read), now).unwrap()
            });
        });
    }
    let caller = gate.authenticate(&clinician, now, &revoked).unwrap();
    group.bench_function("authenticate only, token seen before (clinician)", |b| {
        b.iter(|| {
            gate.authenticate(black_box(&clinician), now, &revoked)
                .unwrap()
        });
    });
    group.bench_function("verify a token on first sight (clinician)", |b| {
        b.iter(|| gate.verify(black_box(&clinician)).unwrap());
    });
    group.bench_function("verify a token on first sight (attenuated system)", |b| {
        b.iter(|| gate.verify(black_box(attenuated.expose())).unwrap());
    });
    group.bench_function("authorize only (clinician)", |b| {
        b.iter(|| gate.authorize(&caller, black_box(&read), now).unwrap());
    });
    group.finish();
}

criterion_group!(benches, gate_costs);
criterion_main!(benches);
