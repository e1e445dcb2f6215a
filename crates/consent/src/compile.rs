//! Reading a FHIR R4 Consent into a [`CompiledConsent`].

use fhir_model::search::date_range;
use serde_json::Value;

use crate::error::ConsentError;
use crate::model::{
    ActorRule, Code, CompiledConsent, ConsentRef, DataMeaning, DataRule, Effect, Provision, Window,
};

const CONSENT_SCOPE: &str = "http://terminology.hl7.org/CodeSystem/consentscope";

/// Compiles version `version` of a Consent (its JSON). Only `patient-privacy` consents are
/// compiled: any other scope is [`ConsentError::NotPrivacy`].
pub fn compile(consent: &Value, version: u64) -> Result<CompiledConsent, ConsentError> {
    let read = read(consent)?;
    let id = consent
        .get("id")
        .and_then(Value::as_str)
        .ok_or(ConsentError::Missing { element: "id" })?;
    Ok(CompiledConsent {
        consent: ConsentRef {
            id: id.to_owned(),
            version,
        },
        patient: read.patient,
        active: read.active,
        given: read.given,
        root: read.root,
    })
}

/// Whether a Consent about to be stored (without its id yet, perhaps) can be enforced: what
/// [`compile`] would refuse, except for a missing id. A Consent of another scope than
/// `patient-privacy` is [`ConsentError::NotPrivacy`]: valid, but nothing to enforce.
pub fn check(consent: &Value) -> Result<(), ConsentError> {
    read(consent).map(|_| ())
}

/// What a Consent says, its id aside.
struct Read {
    patient: String,
    active: bool,
    given: Option<time::OffsetDateTime>,
    root: Provision,
}

fn read(consent: &Value) -> Result<Read, ConsentError> {
    if consent.get("resourceType").and_then(Value::as_str) != Some("Consent") {
        return Err(ConsentError::NotConsent);
    }
    let status = consent
        .get("status")
        .and_then(Value::as_str)
        .ok_or(ConsentError::Missing { element: "status" })?;
    let scope = consent
        .get("scope")
        .ok_or(ConsentError::Missing { element: "scope" })?;
    let privacy = codes_of_concept(scope, "scope")?.iter().any(|c| {
        c.code == "patient-privacy" && c.system.as_deref().is_none_or(|s| s == CONSENT_SCOPE)
    });
    if !privacy {
        return Err(ConsentError::NotPrivacy);
    }
    // ppc-2: a privacy consent names its patient.
    let patient = consent
        .get("patient")
        .and_then(|p| p.get("reference"))
        .and_then(Value::as_str)
        .ok_or(ConsentError::Missing { element: "patient" })?;
    let patient = patient
        .strip_prefix("Patient/")
        .filter(|id| fhir_model::is_valid_id(id))
        .ok_or_else(|| invalid("patient"))?
        .to_owned();
    // ppc-1: a consent rests on a policy or a policy rule.
    let policy_rule = match consent.get("policyRule") {
        Some(rule) => codes_of_concept(rule, "policyRule")?,
        None if consent.get("policy").is_some() => Vec::new(),
        None => {
            return Err(ConsentError::Missing {
                element: "policyRule",
            });
        }
    };
    // The policy rule names the regulation the consent was made under; it is required (and
    // must be readable) but does not set the effect: the R4 examples write OPTIN and OPTOUT over
    // withholdings and grants alike (see the crate's documentation).
    drop(policy_rule);
    let given = match consent.get("dateTime") {
        None => None,
        Some(v) => Some(
            v.as_str()
                .and_then(date_range)
                .ok_or_else(|| invalid("dateTime"))?
                .0,
        ),
    };
    let root = match consent.get("provision") {
        Some(provision) => read_provision(provision, "provision")?,
        None => Provision {
            effect: None,
            period: None,
            actors: Vec::new(),
            actions: Vec::new(),
            security_labels: Vec::new(),
            purposes: Vec::new(),
            classes: Vec::new(),
            codes: Vec::new(),
            data_period: None,
            data: Vec::new(),
            exceptions: Vec::new(),
        },
    };
    Ok(Read {
        patient,
        active: status == "active",
        given,
        root,
    })
}

/// A provision and its exceptions.
fn read_provision(value: &Value, at: &str) -> Result<Provision, ConsentError> {
    if !value.is_object() {
        return Err(invalid(at));
    }
    let effect = match value.get("type").map(|t| t.as_str()) {
        None => None,
        Some(Some("permit")) => Some(Effect::Permit),
        Some(Some("deny")) => Some(Effect::Deny),
        Some(_) => return Err(invalid(&format!("{at}.type"))),
    };
    let mut actors = Vec::new();
    for (n, actor) in items(value, "actor", at)?.iter().enumerate() {
        let here = format!("{at}.actor[{n}]");
        let role = match actor.get("role") {
            Some(role) => codes_of_concept(role, &format!("{here}.role"))?,
            None => Vec::new(),
        };
        let reference = reference(actor.get("reference"), &format!("{here}.reference"))?;
        actors.push(ActorRule { role, reference });
    }
    let mut actions = Vec::new();
    for (n, action) in items(value, "action", at)?.iter().enumerate() {
        actions.extend(codes_of_concept(action, &format!("{at}.action[{n}]"))?);
    }
    let mut codes = Vec::new();
    for (n, code) in items(value, "code", at)?.iter().enumerate() {
        codes.extend(codes_of_concept(code, &format!("{at}.code[{n}]"))?);
    }
    let mut data = Vec::new();
    for (n, item) in items(value, "data", at)?.iter().enumerate() {
        let here = format!("{at}.data[{n}]");
        let meaning = match item.get("meaning").and_then(Value::as_str) {
            Some("instance") => DataMeaning::Instance,
            Some("related") => DataMeaning::Related,
            Some("dependents") => DataMeaning::Dependents,
            Some("authoredby") => DataMeaning::AuthoredBy,
            _ => return Err(invalid(&format!("{here}.meaning"))),
        };
        let reference = reference(item.get("reference"), &format!("{here}.reference"))?;
        data.push(DataRule { meaning, reference });
    }
    let mut exceptions = Vec::new();
    for (n, nested) in items(value, "provision", at)?.iter().enumerate() {
        exceptions.push(read_provision(nested, &format!("{at}.provision[{n}]"))?);
    }
    Ok(Provision {
        effect,
        period: window(value.get("period"), &format!("{at}.period"))?,
        actors,
        actions,
        security_labels: codings(value, "securityLabel", at)?,
        purposes: codings(value, "purpose", at)?,
        classes: codings(value, "class", at)?,
        codes,
        data_period: window(value.get("dataPeriod"), &format!("{at}.dataPeriod"))?,
        data,
        exceptions,
    })
}

/// The array `name` of `value` (absent: empty).
fn items<'a>(value: &'a Value, name: &str, at: &str) -> Result<&'a [Value], ConsentError> {
    match value.get(name) {
        None => Ok(&[]),
        Some(Value::Array(items)) => Ok(items),
        Some(_) => Err(invalid(&format!("{at}.{name}"))),
    }
}

/// The codes of a CodeableConcept.
fn codes_of_concept(concept: &Value, at: &str) -> Result<Vec<Code>, ConsentError> {
    items(concept, "coding", at)?
        .iter()
        .enumerate()
        .map(|(n, coding)| coding_code(coding, &format!("{at}.coding[{n}]")))
        .collect()
}

/// The array of Codings `name` of `value`.
fn codings(value: &Value, name: &str, at: &str) -> Result<Vec<Code>, ConsentError> {
    items(value, name, at)?
        .iter()
        .enumerate()
        .map(|(n, coding)| coding_code(coding, &format!("{at}.{name}[{n}]")))
        .collect()
}

fn coding_code(coding: &Value, at: &str) -> Result<Code, ConsentError> {
    let code = coding
        .get("code")
        .and_then(Value::as_str)
        .ok_or_else(|| invalid(&format!("{at}.code")))?;
    Ok(Code::new(
        coding.get("system").and_then(Value::as_str),
        code,
    ))
}

/// A Reference's relative `Type/id`.
fn reference(value: Option<&Value>, at: &str) -> Result<String, ConsentError> {
    let text = value
        .and_then(|r| r.get("reference"))
        .and_then(Value::as_str)
        .ok_or_else(|| invalid(at))?;
    let (resource_type, id) = text.split_once('/').ok_or_else(|| invalid(at))?;
    if fhir_model::ResourceType::parse(resource_type).is_err() || !fhir_model::is_valid_id(id) {
        return Err(invalid(at));
    }
    Ok(text.to_owned())
}

/// A Period as the instants it covers: from the start of `start` to the end of `end`.
fn window(value: Option<&Value>, at: &str) -> Result<Option<Window>, ConsentError> {
    let Some(period) = value else {
        return Ok(None);
    };
    let bound = |name: &str| match period.get(name) {
        None => Ok(None),
        Some(v) => v
            .as_str()
            .and_then(date_range)
            .map(Some)
            .ok_or_else(|| invalid(&format!("{at}.{name}"))),
    };
    let window = Window {
        start: bound("start")?.map(|(low, _)| low),
        end: bound("end")?.map(|(_, high)| high),
    };
    if let (Some(start), Some(end)) = (window.start, window.end)
        && end <= start
    {
        return Err(invalid(at));
    }
    Ok(Some(window))
}

fn invalid(element: &str) -> ConsentError {
    ConsentError::Invalid {
        element: element.to_owned(),
    }
}
