#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use time::macros::datetime;
use time::{Duration, OffsetDateTime};

use super::*;

const NOW: OffsetDateTime = datetime!(2026-11-22 10:00 UTC);

fn key() -> SigningKey {
    SigningKey::from_seed(&[7; 32]).unwrap()
}

fn gate() -> Gate {
    Gate::new(key().verifying_key()).unwrap()
}

struct Ask<'a> {
    role: Role,
    patient: Option<&'a str>,
    scopes: &'a [&'a str],
    purpose: Option<&'a str>,
}

fn ask(role: Role) -> Ask<'static> {
    Ask {
        role,
        patient: None,
        scopes: &[],
        purpose: None,
    }
}

fn issue(ask: &Ask<'_>) -> IssuedToken {
    let claims = Claims::new(ClaimRequest {
        subject: Subject::parse("user:alice").unwrap(),
        role: ask.role,
        organization: None,
        patient: ask.patient.map(str::to_owned),
        scopes: ask
            .scopes
            .iter()
            .map(|s| Scope::parse(s).unwrap())
            .collect(),
        purpose: ask.purpose.map(|p| Purpose::parse(p).unwrap()),
        issued_at: NOW,
        lifetime: Duration::hours(8),
    })
    .unwrap();
    key().issue(&claims).unwrap()
}

fn caller(token: &str) -> Caller {
    gate()
        .authenticate(token, NOW, &RevokedIds::default())
        .unwrap()
}

fn allowed(token: &str, needs: &[Need]) -> Result<Allowed, AccessError> {
    gate().authorize(&caller(token), needs, NOW)
}

fn data(t: &str, a: Action) -> Need {
    Need::data(t, a)
}

#[test]
fn each_role_allows_what_it_says_and_nothing_more() {
    use Action::*;
    let patient_token = issue(&Ask {
        patient: Some("Patient/p1"),
        ..ask(Role::Patient)
    });
    let system = issue(&Ask {
        scopes: &["system/*.cruds"],
        ..ask(Role::System)
    });
    let cases: [(&str, &IssuedToken, &[Action], &[Action]); 4] = [
        (
            "clinician",
            &issue(&ask(Role::Clinician)),
            &[Create, Read, Update, Delete, Search],
            &[],
        ),
        (
            "registrar",
            &issue(&ask(Role::Registrar)),
            &[Create, Read, Update, Search],
            &[Delete],
        ),
        (
            "patient",
            &patient_token,
            &[Read, Search],
            &[Create, Update, Delete],
        ),
        (
            "system",
            &system,
            &[Create, Read, Update, Delete, Search],
            &[],
        ),
    ];
    for (name, token, yes, no) in cases {
        for t in ["Patient", "Immunization"] {
            for a in yes {
                assert!(
                    allowed(token.token.expose(), &[data(t, *a)]).is_ok(),
                    "{name} {a:?} {t}"
                );
            }
            for a in no {
                let err = allowed(token.token.expose(), &[data(t, *a)]).unwrap_err();
                assert!(
                    matches!(err, AccessError::Forbidden { .. }),
                    "{name} {a:?} {t}: {err}"
                );
            }
        }
        for op in [
            Operation::TokenList,
            Operation::PatientErase,
            Operation::AuditRead,
        ] {
            assert!(
                allowed(token.token.expose(), &[Need::Operation(op)]).is_err(),
                "{name} {op:?}"
            );
        }
    }
    // Registrars work on patients and immunizations only.
    let registrar = issue(&ask(Role::Registrar));
    assert!(allowed(registrar.token.expose(), &[data("Observation", Read)]).is_err());
    assert!(allowed(registrar.token.expose(), &[data("*", Search)]).is_err());

    // Admins and auditors: operations, no clinical data.
    let admin = issue(&ask(Role::Admin));
    let auditor = issue(&ask(Role::Auditor));
    for (token, ops_yes, ops_no) in [
        (
            &admin,
            vec![Operation::TokenList, Operation::PatientErase],
            vec![Operation::AuditRead],
        ),
        (
            &auditor,
            vec![Operation::TokenList, Operation::AuditRead],
            vec![Operation::PatientErase],
        ),
    ] {
        for op in ops_yes {
            assert!(allowed(token.token.expose(), &[Need::Operation(op)]).is_ok());
        }
        for op in ops_no {
            assert!(allowed(token.token.expose(), &[Need::Operation(op)]).is_err());
        }
        for a in Action::ALL {
            assert!(allowed(token.token.expose(), &[data("Patient", a)]).is_err());
        }
    }
}

#[test]
fn scopes_narrow_a_role_and_never_widen_it() {
    let narrow = issue(&Ask {
        scopes: &["user/Patient.rs", "user/Immunization.cruds"],
        ..ask(Role::Registrar)
    });
    let t = narrow.token.expose();
    assert!(allowed(t, &[data("Patient", Action::Read)]).is_ok());
    let err = allowed(t, &[data("Patient", Action::Update)]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "not allowed: no scope of the token allows `u` on Patient"
    );
    // The scope says d on Immunization; the registrar role still does not.
    let err = allowed(t, &[data("Immunization", Action::Delete)]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "not allowed: the role `registrar` does not allow `d` on Immunization"
    );
    // All needs on one type must hold together.
    assert!(
        allowed(
            t,
            &[
                data("Patient", Action::Read),
                data("Patient", Action::Create)
            ]
        )
        .is_err()
    );
    assert!(
        allowed(
            t,
            &[
                data("Patient", Action::Read),
                data("Patient", Action::Search)
            ]
        )
        .is_ok()
    );
}

#[test]
fn issuing_follows_each_roles_rules() {
    let base = |role, patient: Option<&str>, scopes: &[&str], purpose: Option<&str>| {
        Claims::new(ClaimRequest {
            subject: Subject::parse("user:bob").unwrap(),
            role,
            organization: Some("Organization/1".into()),
            patient: patient.map(str::to_owned),
            scopes: scopes.iter().map(|s| Scope::parse(s).unwrap()).collect(),
            purpose: purpose.map(|p| Purpose::parse(p).unwrap()),
            issued_at: NOW,
            lifetime: Duration::hours(1),
        })
    };
    assert!(matches!(
        base(Role::Patient, None, &[], None),
        Err(ClaimError::Missing { .. })
    ));
    assert!(matches!(
        base(Role::System, None, &[], None),
        Err(ClaimError::Missing { .. })
    ));
    assert!(matches!(
        base(Role::System, None, &["user/*.rs"], None),
        Err(ClaimError::ScopeContext { .. })
    ));
    assert!(base(Role::Admin, Some("Patient/1"), &[], None).is_err());
    assert!(base(Role::Clinician, None, &[], Some("HPAYMT")).is_err());
    let clinician = base(Role::Clinician, None, &[], None).unwrap();
    assert_eq!(clinician.purpose.unwrap().as_str(), "TREAT");
    assert_eq!(
        clinician.scopes,
        vec![Scope::everything(ScopeContext::User)]
    );
    assert_eq!(clinician.expires_at, NOW + Duration::hours(1));

    for bad in [
        "user/Patient",
        "user/patient.r",
        "foo/*.r",
        "user/*.sr",
        "user/*.rr",
        "user/*.",
    ] {
        assert!(Scope::parse(bad).is_err(), "{bad}");
    }
    assert_eq!(
        Scope::parse("patient/Immunization.rs").unwrap().to_string(),
        "patient/Immunization.rs"
    );
    assert_eq!(
        Scope::parse("user/*.read").unwrap().to_string(),
        "user/*.rs"
    );
    assert_eq!(parse_lifetime("8h").unwrap(), Duration::hours(8));
    assert!(
        parse_lifetime("8x").is_err()
            && parse_lifetime("h").is_err()
            && parse_lifetime("0s").is_err()
    );
    assert!(Subject::parse("alice").is_err() && Subject::parse("user:al ice").is_err());
}

#[test]
fn a_clinician_acts_only_for_treatment_and_break_glass_is_visible() {
    let emergency = issue(&Ask {
        purpose: Some("ETREAT"),
        ..ask(Role::Clinician)
    });
    let c = caller(emergency.token.expose());
    assert!(c.is_break_glass());
    assert!(
        gate()
            .authorize(&c, &[data("Patient", Action::Read)], NOW)
            .is_ok()
    );
}

#[test]
fn tampered_foreign_malformed_expired_and_revoked_tokens_are_refused() {
    let issued = issue(&ask(Role::Clinician));
    let token = issued.token.expose();
    let g = gate();
    let none = RevokedIds::default();

    // Tampered: flip one character in the middle of the signed bytes.
    let mut bytes = token.as_bytes().to_vec();
    let middle = bytes.len() / 2;
    bytes[middle] = if bytes[middle] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(bytes).unwrap();
    let err = g.authenticate(&tampered, NOW, &none).unwrap_err();
    assert!(
        matches!(err, AccessError::BadSignature | AccessError::Malformed),
        "{err}"
    );

    let foreign = SigningKey::from_seed(&[8; 32]).unwrap();
    let claims = issued.claims.clone();
    let other = foreign.issue(&claims).unwrap();
    assert_eq!(
        g.authenticate(other.token.expose(), NOW, &none)
            .unwrap_err(),
        AccessError::BadSignature
    );
    assert_eq!(
        g.authenticate("not a token", NOW, &none).unwrap_err(),
        AccessError::Malformed
    );

    let later = NOW + Duration::hours(9);
    assert_eq!(
        g.authenticate(token, later, &none).unwrap_err(),
        AccessError::Expired
    );

    let revoked = RevokedIds::new([issued.token_id().to_owned()]);
    assert_eq!(
        g.authenticate(token, NOW, &revoked).unwrap_err(),
        AccessError::Revoked
    );
    // An attenuated descendant carries the same first id, so it is revoked too.
    let narrowed = attenuate(
        token,
        &Narrowing {
            read_only: true,
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(
        g.authenticate(narrowed.expose(), NOW, &revoked)
            .unwrap_err(),
        AccessError::Revoked
    );
    // Revoking only the attenuation block's id revokes the descendant, not the original.
    let child = caller(narrowed.expose());
    assert_eq!(child.revocation_ids.len(), 2);
    let only_child = RevokedIds::new([child.revocation_ids[1].clone()]);
    assert!(g.authenticate(token, NOW, &only_child).is_ok());
    assert_eq!(
        g.authenticate(narrowed.expose(), NOW, &only_child)
            .unwrap_err(),
        AccessError::Revoked
    );
    assert!(format!("{issued:?}").contains("BearerToken(…)"));
    assert!(!format!("{issued:?} {child:?}").contains(token));
}

#[test]
fn attenuation_narrows_to_a_patient_a_shorter_life_and_reads() {
    let issued = issue(&ask(Role::Clinician));
    let token = issued.token.expose();
    let narrowed = attenuate(
        token,
        &Narrowing {
            patient: Some("Patient/p9".into()),
            expires_at: Some(NOW + Duration::hours(1)),
            read_only: true,
        },
    )
    .unwrap();
    let c = caller(narrowed.expose());
    assert_eq!(c.confinement, Confinement::Patient("p9".into()));
    assert!(
        gate()
            .authorize(&c, &[data("Patient", Action::Read)], NOW)
            .is_ok()
    );
    let err = gate()
        .authorize(&c, &[data("Patient", Action::Update)], NOW)
        .unwrap_err();
    assert!(err.to_string().contains("block 1"), "{err}");
    // Past the attenuated expiry, before the original's: expired (401), not forbidden.
    let later = NOW + Duration::hours(2);
    let c = gate()
        .authenticate(narrowed.expose(), later, &RevokedIds::default())
        .unwrap();
    assert_eq!(
        gate()
            .authorize(&c, &[data("Patient", Action::Read)], later)
            .unwrap_err(),
        AccessError::Expired
    );
    assert!(attenuate(token, &Narrowing::default()).is_err());
}

#[test]
fn remembered_decisions_answer_only_the_same_token_request_and_second() {
    // One gate throughout, so every decision below can see the ones before it.
    let gate = gate();
    let at = |seconds: i64| NOW + Duration::seconds(seconds);
    let update = [data("Patient", Action::Update)];
    let read = [data("Patient", Action::Read)];
    let issued = issue(&Ask {
        purpose: Some("TREAT"),
        ..ask(Role::Clinician)
    });
    let clinician = gate
        .authenticate(issued.token.expose(), NOW, &RevokedIds::default())
        .unwrap();
    gate.authorize(&clinician, &update, NOW).unwrap();
    gate.authorize(&clinician, &update, NOW).unwrap();
    // An attenuated token descends from the same issued token but is decided on its own.
    let narrowed = attenuate(
        issued.token.expose(),
        &Narrowing {
            patient: Some("Patient/p9".into()),
            expires_at: Some(at(90)),
            read_only: true,
        },
    )
    .unwrap();
    let narrow = gate
        .authenticate(narrowed.expose(), NOW, &RevokedIds::default())
        .unwrap();
    assert_eq!(narrow.token_id(), clinician.token_id());
    assert!(gate.authorize(&narrow, &update, NOW).is_err());
    gate.authorize(&narrow, &read, NOW).unwrap();
    // A remembered read allows no update, and does not outlive its second.
    assert!(gate.authorize(&narrow, &update, NOW).is_err());
    gate.authorize(&narrow, &read, at(89)).unwrap();
    assert_eq!(
        gate.authorize(&narrow, &read, at(91)).unwrap_err(),
        AccessError::Expired
    );
    // The parent's remembered update still holds for the parent alone.
    gate.authorize(&clinician, &update, NOW).unwrap();
}

#[test]
fn a_patient_token_narrowed_to_another_patient_is_left_with_nothing() {
    let own = issue(&Ask {
        patient: Some("Patient/p1"),
        ..ask(Role::Patient)
    });
    assert_eq!(
        caller(own.token.expose()).confinement,
        Confinement::Patient("p1".into())
    );
    let other = attenuate(
        own.token.expose(),
        &Narrowing {
            patient: Some("Patient/p2".into()),
            ..Default::default()
        },
    )
    .unwrap();
    let c = caller(other.expose());
    assert_eq!(c.confinement, Confinement::Contradictory);
    assert!(
        gate()
            .authorize(&c, &[data("Patient", Action::Read)], NOW)
            .is_err()
    );
}

#[test]
fn an_appended_block_cannot_grant_rights() {
    use biscuit_auth::{BlockBuilder, UnverifiedBiscuit};
    let issued = issue(&ask(Role::Registrar));
    let escalate = |code: &str| {
        let block = BlockBuilder::new().code(code).unwrap();
        UnverifiedBiscuit::from_base64(issued.token.expose())
            .unwrap()
            .append(block)
            .unwrap()
            .to_base64()
            .unwrap()
    };
    for code in [
        r#"role("admin"); role("clinician");"#,
        r#"role_grant("registrar", "*", {"c", "r", "u", "d", "s"});"#,
        r#"scope("user", "*", {"d"}); operation_grant("registrar", "patient.erase");"#,
    ] {
        let token = escalate(code);
        let c = caller(&token);
        assert_eq!(c.role, Role::Registrar);
        assert!(
            gate()
                .authorize(&c, &[data("Patient", Action::Delete)], NOW)
                .is_err(),
            "{code}"
        );
        assert!(
            gate()
                .authorize(&c, &[Need::Operation(Operation::PatientErase)], NOW)
                .is_err(),
            "{code}"
        );
    }
}

#[test]
fn the_registry_fake_records_revokes_and_stamps() {
    use futures_executor::block_on;
    let registry = fakes::MemoryTokenRegistry::default();
    let issued = issue(&ask(Role::Clinician));
    block_on(registry.record_issuance(&issued.issuance())).unwrap();
    let before = block_on(registry.revocation_stamp()).unwrap();
    let added = block_on(registry.revoke(&[issued.token_id().to_owned()], NOW, "test")).unwrap();
    assert_eq!(added, 1);
    assert_ne!(block_on(registry.revocation_stamp()).unwrap(), before);
    let listed = block_on(registry.issuances(Some("user:alice"))).unwrap();
    assert_eq!(listed[0].revoked_at, Some(NOW));
    assert!(!listed[0].is_active(NOW));
    assert!(
        block_on(registry.revoked_ids())
            .unwrap()
            .contains(issued.token_id())
    );
}

#[test]
fn the_registry_fake_meets_the_contract() {
    futures_executor::block_on(contract::token_registry(
        &fakes::MemoryTokenRegistry::default(),
    ));
}
