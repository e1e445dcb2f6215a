//! The Consent examples of the R4 specification (`hl7.fhir.r4.examples` 4.0.1, unpacked by
//! `cargo xtask conformance-tools` into `CAIRN_TEST_FHIR_EXAMPLES`): every one compiles, and
//! those whose structure states what their narrative says decide as it says.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;

use consent::{
    Baseline, Baselines, Code, CompiledConsent, Context, Decision, Facts, Reason, compile, decide,
};
use serde_json::Value;
use time::OffsetDateTime;
use time::macros::datetime;

fn examples() -> Option<PathBuf> {
    let Some(dir) = std::env::var_os("CAIRN_TEST_FHIR_EXAMPLES") else {
        assert!(
            std::env::var("CAIRN_TEST_REQUIRE_CONFORMANCE").as_deref() != Ok("1"),
            "CAIRN_TEST_REQUIRE_CONFORMANCE=1 but CAIRN_TEST_FHIR_EXAMPLES is not set"
        );
        eprintln!(
            "the R4 examples are not configured: skipped (`eval \"$(cargo xtask \
             conformance-tools)\"` sets them up)"
        );
        return None;
    };
    Some(PathBuf::from(dir))
}

fn example(dir: &std::path::Path, name: &str) -> CompiledConsent {
    let path = dir.join(format!("Consent-consent-example-{name}.json"));
    let value: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    compile(&value, 1).unwrap_or_else(|e| panic!("{name}: {e}"))
}

const OPT_OUT: Baselines = Baselines {
    default: Baseline::OptOut,
    by_purpose: Vec::new(),
};
const OPT_IN: Baselines = Baselines {
    default: Baseline::OptIn,
    by_purpose: Vec::new(),
};

/// `caller` asks to `access` a MedicationRequest of patient f001 held at `custodian`, at `at`.
fn access(
    consent: &CompiledConsent,
    baselines: &Baselines,
    caller: &[&str],
    custodian: &str,
    at: OffsetDateTime,
) -> Decision {
    Request::new(caller, custodian, at).decide(consent, baselines)
}

/// A request of `caller` to do `action` for `purpose` on a MedicationRequest of patient f001
/// held at `custodian`, which refers to `related` too and carries `labels`.
struct Request<'a> {
    caller: &'a [&'a str],
    action: &'a str,
    purpose: &'a str,
    custodian: &'a str,
    related: &'a [&'a str],
    labels: &'a [Code],
    at: OffsetDateTime,
}

impl<'a> Request<'a> {
    /// An access for treatment, nothing related, no labels.
    fn new(caller: &'a [&'a str], custodian: &'a str, at: OffsetDateTime) -> Self {
        Request {
            caller,
            action: "access",
            purpose: "TREAT",
            custodian,
            related: &[],
            labels: &[],
            at,
        }
    }

    fn decide(&self, consent: &CompiledConsent, baselines: &Baselines) -> Decision {
        let caller: Vec<String> = self.caller.iter().map(|s| (*s).to_owned()).collect();
        let purpose = Code::new(
            Some("http://terminology.hl7.org/CodeSystem/v3-ActReason"),
            self.purpose,
        );
        let action = Code::new(
            Some("http://terminology.hl7.org/CodeSystem/consentaction"),
            self.action,
        );
        let sources = [self.custodian.to_owned()];
        let references: Vec<String> = std::iter::once("Patient/f001")
            .chain(self.related.iter().copied())
            .map(str::to_owned)
            .collect();
        decide(
            std::slice::from_ref(consent),
            baselines,
            &Context {
                caller: &caller,
                purpose: Some(&purpose),
                action: &action,
                at: self.at,
            },
            &Facts {
                resource_type: "MedicationRequest",
                reference: "MedicationRequest/m1",
                dates: &[],
                codes: &[],
                security_labels: self.labels,
                references: &references,
                sources: &sources,
            },
        )
    }
}

const NOW: OffsetDateTime = datetime!(2016-06-23 07:10 UTC);

/// Each is a valid Consent (R4 rules and ppc-1..5, as `fhir-model` checks them before storing
/// one) and compiles.
#[test]
fn every_r4_consent_example_is_valid_and_compiles() {
    let Some(dir) = examples() else { return };
    let mut compiled = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if !name.starts_with("Consent-") {
            continue;
        }
        let value: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        let issues = fhir_model::Resource::from_value(value.clone())
            .unwrap_or_else(|e| panic!("{name}: {e}"))
            .validate();
        assert!(
            !issues.iter().any(fhir_model::Issue::is_error),
            "{name}: {issues:?}"
        );
        let consent = compile(&value, 1).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(consent.active, "{name}");
        compiled += 1;
    }
    assert_eq!(compiled, 12, "the R4 package has twelve Consent examples");
}

/// notOrg: "withhold or withdraw consent for disclosure to a specific provider organization"
/// (Organization/f001), for access and correction.
#[test]
fn not_org_withholds_from_the_organization_only() {
    let Some(dir) = examples() else { return };
    let consent = example(&dir, "notOrg");
    let refused = access(
        &consent,
        &OPT_OUT,
        &["Organization/f001"],
        "Organization/x",
        NOW,
    );
    assert_eq!(refused.reason, Reason::Withheld);
    assert_eq!(refused.applied[0].id, "consent-example-notOrg");
    let other = access(
        &consent,
        &OPT_OUT,
        &["Organization/f002"],
        "Organization/x",
        NOW,
    );
    assert!(other.permits());
}

/// Out: "withhold authorization of sharing data for treatment": no data held at Good Health
/// Psychiatric Hospital (custodian Organization/f001) available; policy rule OPTOUT.
#[test]
fn out_withholds_what_the_custodian_holds() {
    let Some(dir) = examples() else { return };
    let consent = example(&dir, "Out");
    let held_there = access(
        &consent,
        &OPT_OUT,
        &["Practitioner/any"],
        "Organization/f001",
        NOW,
    );
    assert_eq!(held_there.reason, Reason::Withheld);
    let held_elsewhere = access(
        &consent,
        &OPT_OUT,
        &["Practitioner/any"],
        "Organization/f002",
        NOW,
    );
    assert!(held_elsewhere.permits());
}

/// basic: "wishes to have all of the PHI collected at the Good Health Psychiatric Hospital
/// available for normal treatment use", OPTIN, for 1964-01-01 to 2016-01-01.
#[test]
fn basic_permits_within_its_period_and_then_no_longer() {
    let Some(dir) = examples() else { return };
    let consent = example(&dir, "basic");
    let during = access(
        &consent,
        &OPT_IN,
        &["Practitioner/any"],
        "Organization/f001",
        datetime!(2015-06-01 00:00 UTC),
    );
    assert_eq!(during.reason, Reason::Consented);
    let after = access(
        &consent,
        &OPT_IN,
        &["Practitioner/any"],
        "Organization/f001",
        datetime!(2016-01-02 00:00 UTC),
    );
    assert_eq!(after.reason, Reason::Baseline(Baseline::OptIn));
    assert!(!after.permits());
}

/// smartonfhir: an app may read the patient's MedicationRequests for thirty minutes
/// (2016-06-23 17:02:33+10:00 to 17:32:33+10:00), nothing else.
#[test]
fn smart_on_fhir_permits_medication_requests_for_thirty_minutes() {
    let Some(dir) = examples() else { return };
    let consent = example(&dir, "smartonfhir");
    let inside = datetime!(2016-06-23 07:10 UTC);
    assert_eq!(
        access(
            &consent,
            &OPT_IN,
            &["Device/app"],
            "Organization/f001",
            inside
        )
        .reason,
        Reason::Consented
    );
    let later = datetime!(2016-06-23 07:40 UTC);
    assert!(
        !access(
            &consent,
            &OPT_IN,
            &["Device/app"],
            "Organization/f001",
            later
        )
        .permits()
    );
}

// The Canadian scenarios (notThem, notAuthor, notThis, notOrg, Out, notTime) are written, their
// narratives say, for a jurisdiction of implied consent: an opt-out deployment, where each
// withholds.

/// notThem: "withhold or withdraw consent for disclosure to a specific provider agent"
/// (Practitioner/f204, a nurse).
#[test]
fn not_them_withholds_from_the_nurse_only() {
    let Some(dir) = examples() else { return };
    let consent = example(&dir, "notThem");
    let nurse = access(
        &consent,
        &OPT_OUT,
        &["Practitioner/f204", "Organization/f001"],
        "Organization/f001",
        NOW,
    );
    assert_eq!(nurse.reason, Reason::Withheld);
    let colleague = access(
        &consent,
        &OPT_OUT,
        &["Practitioner/f205", "Organization/f001"],
        "Organization/f001",
        NOW,
    );
    assert!(colleague.permits());
}

/// notAuthor: "withhold or withdraw consent for disclosure of records that were authored by a
/// specific organization" (Organization/f001, in the custodian role).
#[test]
fn not_author_withholds_what_the_organization_wrote() {
    let Some(dir) = examples() else { return };
    let consent = example(&dir, "notAuthor");
    assert_eq!(
        access(
            &consent,
            &OPT_OUT,
            &["Practitioner/any"],
            "Organization/f001",
            NOW
        )
        .reason,
        Reason::Withheld
    );
    assert!(
        access(
            &consent,
            &OPT_OUT,
            &["Practitioner/any"],
            "Organization/f002",
            NOW
        )
        .permits()
    );
}

/// notThis: "withhold or withdraw consent for disclosure of a specific record" (Task/example3,
/// and what is related to it).
#[test]
fn not_this_withholds_the_record_and_what_relates_to_it() {
    let Some(dir) = examples() else { return };
    let consent = example(&dir, "notThis");
    let related = Request {
        related: &["Task/example3"],
        ..Request::new(&["Practitioner/any"], "Organization/f001", NOW)
    }
    .decide(&consent, &OPT_OUT);
    assert_eq!(related.reason, Reason::Withheld);
    let unrelated = Request {
        related: &["Task/other"],
        ..Request::new(&["Practitioner/any"], "Organization/f001", NOW)
    }
    .decide(&consent, &OPT_OUT);
    assert!(unrelated.permits());
}

/// grantor: "giving a limited (read-only) access to an individual" (Patient/example, as
/// recipient) to the data at Good Health (custodian Organization/f001): an opt-in deployment,
/// where the consent grants.
#[test]
fn grantor_gives_read_only_access_to_one_person() {
    let Some(dir) = examples() else { return };
    let consent = example(&dir, "grantor");
    let read = Request {
        ..Request::new(&["Patient/example"], "Organization/f001", NOW)
    }
    .decide(&consent, &OPT_IN);
    assert_eq!(read.reason, Reason::Consented);
    let correct = Request {
        action: "correct",
        ..Request::new(&["Patient/example"], "Organization/f001", NOW)
    }
    .decide(&consent, &OPT_IN);
    assert!(!correct.permits(), "read-only");
    let elsewhere = Request {
        ..Request::new(&["Patient/example"], "Organization/f002", NOW)
    }
    .decide(&consent, &OPT_IN);
    assert!(!elsewhere.permits(), "only the data at Good Health");
    let stranger = Request {
        ..Request::new(&["Patient/stranger"], "Organization/f001", NOW)
    }
    .decide(&consent, &OPT_IN);
    assert!(!stranger.permits());
}

/// Emergency: "Patient wishes to have no data at the Good Health Psychiatric Hospital
/// available for Emergency treatment use" (its title; the sentence after it describes an
/// exception the resource does not encode: its nested provision denies).
#[test]
fn emergency_withholds_good_health_data_from_emergency_treatment() {
    let Some(dir) = examples() else { return };
    let consent = example(&dir, "Emergency");
    let decide_for = |purpose, custodian| {
        Request {
            purpose,
            ..Request::new(&["Practitioner/any"], custodian, NOW)
        }
        .decide(&consent, &OPT_OUT)
    };
    assert_eq!(
        decide_for("ETREAT", "Organization/f001").reason,
        Reason::Withheld
    );
    assert!(decide_for("ETREAT", "Organization/f002").permits());
    assert!(decide_for("TREAT", "Organization/f001").permits());
}

/// notTime: "wishes to withhold disclosure of all data from a timeframe to any provider". The
/// resource states the timeframe as the consent's own `period` (R4: "the timeframe in this rule
/// is valid"), so disclosures during it are withheld; a timeframe of the records themselves
/// would be `dataPeriod` (tested in the crate's unit tests).
#[test]
fn not_time_withholds_disclosure_to_any_provider_during_its_timeframe() {
    let Some(dir) = examples() else { return };
    let consent = example(&dir, "notTime");
    let during = datetime!(2015-01-15 12:00 UTC);
    let refused = access(
        &consent,
        &OPT_OUT,
        &["Practitioner/any"],
        "Organization/f001",
        during,
    );
    assert_eq!(refused.reason, Reason::Withheld);
    let after = datetime!(2015-02-02 00:00 UTC);
    assert!(
        access(
            &consent,
            &OPT_OUT,
            &["Practitioner/any"],
            "Organization/f001",
            after
        )
        .permits()
    );
}

/// pkb (a sharing screen of Patients Know Best; no narrative beyond it): Organization/f001 may
/// access what is labelled normal (N), nothing else, and no one else may.
#[test]
fn pkb_shares_normal_data_with_one_organization() {
    let Some(dir) = examples() else { return };
    let consent = example(&dir, "pkb");
    let decide_for = |who: &str, label: &str| {
        let labels = [Code::new(
            Some("http://terminology.hl7.org/CodeSystem/v3-Confidentiality"),
            label,
        )];
        Request {
            labels: &labels,
            ..Request::new(&[who], "Organization/f001", NOW)
        }
        .decide(&consent, &OPT_IN)
    };
    assert_eq!(
        decide_for("Organization/f001", "N").reason,
        Reason::Consented
    );
    assert!(!decide_for("Organization/f001", "R").permits());
    assert!(!decide_for("Organization/f002", "N").permits());
}

/// signature (a generated narrative): Practitioner/13 may see the record from 2015-10-10 to
/// 2016-10-10, and no one else, and not after.
#[test]
fn signature_grants_one_practitioner_for_a_year() {
    let Some(dir) = examples() else { return };
    let consent = example(&dir, "signature");
    let within = datetime!(2016-05-26 04:41 UTC);
    assert_eq!(
        access(
            &consent,
            &OPT_IN,
            &["Practitioner/13"],
            "Organization/f001",
            within
        )
        .reason,
        Reason::Consented
    );
    assert!(
        !access(
            &consent,
            &OPT_IN,
            &["Practitioner/14"],
            "Organization/f001",
            within
        )
        .permits()
    );
    let after = datetime!(2016-10-12 00:00 UTC);
    assert!(
        !access(
            &consent,
            &OPT_IN,
            &["Practitioner/13"],
            "Organization/f001",
            after
        )
        .permits()
    );
}
