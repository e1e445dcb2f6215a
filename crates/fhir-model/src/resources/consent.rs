//! The rules of an R4 `Consent` that Cairn enforces before storing one (Consent is kept as JSON,
//! [`crate::resource::GenericResource`]): its required elements, the codes of its required
//! bindings, and invariants ppc-1 to ppc-5. Patient consent is enforced from what is stored, so
//! a Consent that breaks these is refused rather than stored and half-understood.

use serde_json::{Map, Value};

use crate::outcome::IssueType;
use crate::validation::{Issues, Location};

const STATUS: &[&str] = &[
    "draft",
    "proposed",
    "active",
    "rejected",
    "inactive",
    "entered-in-error",
];
const PROVISION_TYPE: &[&str] = &["deny", "permit"];
const DATA_MEANING: &[&str] = &["instance", "related", "dependents", "authoredby"];
/// The `consentscope` codes that ppc-2 to ppc-5 tie to a patient: every scope R4 defines.
const SCOPES_WITH_PATIENT: &[&str] = &["patient-privacy", "research", "adr", "treatment"];

pub(crate) fn validate_consent(consent: &Map<String, Value>, at: &Location, issues: &mut Issues) {
    code(consent.get("status"), at, "status", STATUS, true, issues);
    let Some(scope) = consent.get("scope") else {
        issues.push(IssueType::Required, &at.child("scope"), "scope is required");
        return;
    };
    if consent
        .get("category")
        .and_then(Value::as_array)
        .is_none_or(Vec::is_empty)
    {
        issues.push(
            IssueType::Required,
            &at.child("category"),
            "at least one category is required",
        );
    }
    if consent.get("policy").is_none() && consent.get("policyRule").is_none() {
        issues.push(
            IssueType::Invariant,
            at,
            "ppc-1: a Consent has a policy or a policyRule",
        );
    }
    let scope_codes: Vec<&str> = scope
        .get("coding")
        .and_then(Value::as_array)
        .map(|codings| {
            codings
                .iter()
                .filter_map(|c| c.get("code").and_then(Value::as_str))
                .collect()
        })
        .unwrap_or_default();
    if consent.get("patient").is_none()
        && let Some(scope) = scope_codes.iter().find(|c| SCOPES_WITH_PATIENT.contains(c))
    {
        let rule = match *scope {
            "patient-privacy" => "ppc-2",
            "research" => "ppc-3",
            "adr" => "ppc-4",
            _ => "ppc-5",
        };
        issues.push(
            IssueType::Invariant,
            at,
            format!("{rule}: a Consent of scope {scope} names its patient"),
        );
    }
    if let Some(provision) = consent.get("provision") {
        validate_provision(provision, &at.child("provision"), issues);
    }
}

fn validate_provision(provision: &Value, at: &Location, issues: &mut Issues) {
    if !provision.is_object() {
        issues.push(IssueType::Structure, at, "a provision is an object");
        return;
    }
    code(
        provision.get("type"),
        at,
        "type",
        PROVISION_TYPE,
        false,
        issues,
    );
    for (n, actor) in array(provision, "actor").iter().enumerate() {
        let here = at.item("actor", n);
        for element in ["role", "reference"] {
            if actor.get(element).is_none() {
                issues.push(
                    IssueType::Required,
                    &here.child(element),
                    format!("{element} is required"),
                );
            }
        }
    }
    for (n, data) in array(provision, "data").iter().enumerate() {
        let here = at.item("data", n);
        code(
            data.get("meaning"),
            &here,
            "meaning",
            DATA_MEANING,
            true,
            issues,
        );
        if data.get("reference").is_none() {
            issues.push(
                IssueType::Required,
                &here.child("reference"),
                "reference is required",
            );
        }
    }
    for (n, nested) in array(provision, "provision").iter().enumerate() {
        validate_provision(nested, &at.item("provision", n), issues);
    }
}

fn array<'a>(value: &'a Value, name: &str) -> &'a [Value] {
    value
        .get(name)
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

/// A code of a required binding: present when `required`, and one of `allowed`.
fn code(
    value: Option<&Value>,
    at: &Location,
    name: &str,
    allowed: &[&str],
    required: bool,
    issues: &mut Issues,
) {
    match value {
        None if required => issues.push(
            IssueType::Required,
            &at.child(name),
            format!("{name} is required"),
        ),
        None => {}
        Some(Value::String(code)) if allowed.contains(&code.as_str()) => {}
        Some(_) => issues.push(
            IssueType::CodeInvalid,
            &at.child(name),
            format!("{name} must be one of {}", allowed.join(", ")),
        ),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]

    use serde_json::json;

    use crate::resource::Resource;

    fn issues(consent: serde_json::Value) -> Vec<(String, String)> {
        Resource::from_value(consent)
            .unwrap()
            .validate()
            .into_iter()
            .map(|i| (i.location.unwrap_or_default(), i.diagnostics))
            .collect()
    }

    fn privacy() -> serde_json::Value {
        json!({
            "resourceType": "Consent",
            "status": "active",
            "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "patient-privacy"}]},
            "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
            "patient": {"reference": "Patient/p1"},
            "policyRule": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "OPTOUT"}]},
            "provision": {"type": "deny", "provision": [{"type": "permit", "data": [{"meaning": "instance", "reference": {"reference": "Observation/o1"}}]}]},
        })
    }

    #[test]
    fn a_well_formed_privacy_consent_passes() {
        assert_eq!(issues(privacy()), Vec::new());
    }

    #[test]
    fn required_elements_bindings_and_invariants_are_named() {
        let mut consent = privacy();
        let map = consent.as_object_mut().unwrap();
        map.remove("category");
        map.remove("patient");
        map.remove("policyRule");
        map.insert("status".into(), json!("signed"));
        map.insert(
            "provision".into(),
            json!({"type": "maybe", "actor": [{"reference": {"reference": "Practitioner/x"}}],
                   "provision": [{"data": [{"reference": {"reference": "Task/t"}}]}]}),
        );
        let found = issues(consent);
        let at = |location: &str| {
            found
                .iter()
                .find(|(l, _)| l == location)
                .map(|(_, d)| d.as_str())
                .unwrap_or_else(|| panic!("no issue at {location}: {found:?}"))
        };
        assert!(at("Consent.status").contains("must be one of"));
        assert!(at("Consent.category").contains("required"));
        assert!(
            found
                .iter()
                .any(|(l, d)| l == "Consent" && d.starts_with("ppc-1"))
        );
        assert!(
            found
                .iter()
                .any(|(l, d)| l == "Consent" && d.starts_with("ppc-2"))
        );
        assert!(at("Consent.provision.type").contains("deny, permit"));
        assert!(at("Consent.provision.actor[0].role").contains("required"));
        assert!(at("Consent.provision.provision[0].data[0].meaning").contains("required"));
        let mut research = privacy();
        research["scope"]["coding"][0]["code"] = json!("research");
        research.as_object_mut().unwrap().remove("patient");
        assert!(issues(research).iter().any(|(_, d)| d.starts_with("ppc-3")));
    }
}
