//! Search parameters: which ones exist, what each extracts from a resource, and whether its
//! index values may be stored as they are or only as blind (keyed-hash) tokens.
//!
//! [`SEARCH_PARAMETERS`] is the one table the server indexes, searches and (later) advertises
//! from; `docs/security/phi-classification.md` explains each classification and what it leaks.

use std::fmt;

use time::OffsetDateTime;

use crate::datatypes::{Address, CodeableConcept, HumanName, Reference};
use crate::resource::Resource;
use crate::resource_type::ResourceType;

mod dates;

pub use dates::{date_range, floor_micros};

/// The FHIR search parameter type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParamKind {
    String,
    Token,
    Date,
    Reference,
}

impl ParamKind {
    pub fn code(self) -> &'static str {
        match self {
            Self::String => "string",
            Self::Token => "token",
            Self::Date => "date",
            Self::Reference => "reference",
        }
    }
}

/// How a parameter's index values are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protection {
    /// Stored as they are: non-identifying (codes, status, references by id, dates of service).
    Plain,
    /// Stored only as keyed-hash tokens: the values identify a person.
    Blind,
}

/// One value a resource yields for a search parameter. It may be PHI: Debug never shows it.
#[derive(Clone, PartialEq, Eq)]
pub enum IndexValue {
    /// A string, as written (folding is the index's business).
    Text(String),
    /// A coded value or identifier: `system|code`.
    Token {
        system: Option<String>,
        code: String,
    },
    /// A date or dateTime as written, with the half-open instant range it covers.
    Date {
        text: String,
        low: OffsetDateTime,
        high: OffsetDateTime,
    },
    /// A relative reference `Type/id`.
    Reference { target_type: String, id: String },
    /// Text that describes a coded value (`CodeableConcept.text`, `Coding.display`): what a
    /// token parameter's `:text` modifier searches.
    TokenText(String),
}

impl fmt::Debug for IndexValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self {
            Self::Text(_) => "Text",
            Self::Token { .. } => "Token",
            Self::Date { .. } => "Date",
            Self::Reference { .. } => "Reference",
            Self::TokenText(_) => "TokenText",
        };
        write!(f, "IndexValue::{kind}(<redacted>)")
    }
}

/// A search parameter Cairn supports.
pub struct SearchParam {
    pub resource_type: ResourceType,
    /// The parameter name in URLs (`birthdate`).
    pub code: &'static str,
    pub kind: ParamKind,
    pub protection: Protection,
    /// The FHIRPath the values come from (as in the R4 SearchParameter).
    pub expression: &'static str,
    /// Why this protection, and what it accepts leaking.
    pub rationale: &'static str,
    /// The resource types a reference parameter may point at (R4's `SearchParameter.target`);
    /// empty for other kinds.
    pub targets: &'static [&'static str],
    extract: fn(&Resource, &mut Vec<IndexValue>),
}

impl fmt::Debug for SearchParam {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SearchParam({}.{})", self.resource_type, self.code)
    }
}

impl SearchParam {
    /// The values `resource` yields for this parameter (none if it is of another type).
    pub fn values(&self, resource: &Resource) -> Vec<IndexValue> {
        let mut out = Vec::new();
        if resource.resource_type() == self.resource_type {
            (self.extract)(resource, &mut out);
        }
        out
    }

    /// Whether a string search may match the start of any word of a value, not only the start
    /// of the value. R4 string search matches where the value starts (`family=der` does not
    /// find "van der Berg"); `Patient.name` is "a server defined search that may match any of
    /// the string fields in the HumanName", and Cairn matches it at the start of any word of
    /// any part, so `name=berg` finds "van der Berg".
    pub fn matches_words(&self) -> bool {
        self.kind == ParamKind::String
            && self.resource_type == ResourceType::PATIENT
            && self.code == "name"
    }

    /// The canonical URL of the R4 SearchParameter this parameter implements. Some are shared
    /// by several types (`individual-family`, `clinical-date`); a test checks every one against
    /// the official definitions.
    pub fn definition_url(&self) -> String {
        let shared = match (self.resource_type.as_str(), self.code) {
            (
                "Patient",
                "family" | "given" | "birthdate" | "gender" | "telecom" | "address-postalcode",
            ) => Some("individual"),
            ("Immunization", "date" | "patient") => Some("clinical"),
            _ => None,
        };
        let prefix = shared.unwrap_or(self.resource_type.as_str());
        format!("http://hl7.org/fhir/SearchParameter/{prefix}-{}", self.code)
    }

    /// The blind-index purpose name, which selects the HMAC key: `Patient.birthdate`.
    ///
    /// `family` and `given` share `Patient.name`'s key: every term of theirs is also a term of
    /// `name` (the same folded starts and exact value), so a name search can find them in their
    /// own rows and `name` keeps rows only for the terms they lack ([`Self::also_searches`]).
    /// What sharing the key reveals is argued in `docs/security/phi-classification.md`.
    pub fn purpose(&self) -> String {
        let code = match (self.resource_type.as_str(), self.code) {
            ("Patient", "family" | "given") => "name",
            (_, code) => code,
        };
        format!("{}.{code}", self.resource_type)
    }

    /// The other parameters whose blind rows a search of this one also looks in: `family` and
    /// `given` for `Patient.name`, whose values are parts of a name; none for the rest.
    pub fn also_searches(&self) -> &'static [&'static str] {
        match (self.resource_type.as_str(), self.code) {
            ("Patient", "name") => &["family", "given"],
            _ => &[],
        }
    }
}

/// The search parameters of a type.
pub fn search_params(resource_type: ResourceType) -> impl Iterator<Item = &'static SearchParam> {
    SEARCH_PARAMETERS
        .iter()
        .filter(move |p| p.resource_type == resource_type)
}

/// One search parameter by type and name.
pub fn search_param(resource_type: ResourceType, code: &str) -> Option<&'static SearchParam> {
    search_params(resource_type).find(|p| p.code == code)
}

/// The patient whose compartment a resource belongs to, if any: a Patient is its own; an
/// Immunization belongs to its `patient`; the clinical types of [`PATIENT_LINKS`] to the
/// patient their link names. Only relative references (`Patient/{id}`) count.
pub fn patient_compartment(resource: &Resource) -> Option<String> {
    let patient = |reference: &Reference| {
        reference
            .relative_target()
            .filter(|(t, _)| *t == "Patient")
            .map(|(_, id)| id.to_owned())
    };
    match resource {
        Resource::Patient(p) => p.id.as_ref().map(|id| id.0.clone()),
        Resource::Immunization(i) => i.patient.as_ref().and_then(patient),
        Resource::Other(other) => {
            let (_, element) = PATIENT_LINKS
                .iter()
                .find(|(t, _)| *t == other.resource_type.as_str())?;
            let reference = other.rest.get(*element)?.get("reference")?.as_str()?;
            patient(&Reference {
                reference: Some(reference.to_owned()),
                ..Reference::default()
            })
        }
        _ => None,
    }
}

/// The element that names the patient a resource is about, for the types of R4's Patient
/// CompartmentDefinition that a patient record is made of (what Synthea and EHR exports send):
/// the first of each type's compartment parameters, the one for the subject of care. A resource
/// whose link names no Patient (a Group, a Device) belongs to no compartment and is sealed under
/// the system key.
pub const PATIENT_LINKS: &[(&str, &str)] = &[
    ("AllergyIntolerance", "patient"),
    ("CarePlan", "subject"),
    ("CareTeam", "subject"),
    ("Claim", "patient"),
    ("ClinicalImpression", "subject"),
    ("Communication", "subject"),
    ("Composition", "subject"),
    ("Condition", "subject"),
    ("Consent", "patient"),
    ("Coverage", "beneficiary"),
    ("DetectedIssue", "patient"),
    ("DeviceRequest", "subject"),
    ("DiagnosticReport", "subject"),
    ("DocumentReference", "subject"),
    ("Encounter", "subject"),
    ("EpisodeOfCare", "patient"),
    ("ExplanationOfBenefit", "patient"),
    ("FamilyMemberHistory", "patient"),
    ("Goal", "subject"),
    ("ImagingStudy", "subject"),
    ("ImmunizationEvaluation", "patient"),
    ("ImmunizationRecommendation", "patient"),
    ("MedicationAdministration", "subject"),
    ("MedicationDispense", "subject"),
    ("MedicationRequest", "subject"),
    ("MedicationStatement", "subject"),
    ("NutritionOrder", "patient"),
    ("Observation", "subject"),
    ("Procedure", "subject"),
    ("QuestionnaireResponse", "subject"),
    ("RiskAssessment", "subject"),
    ("ServiceRequest", "subject"),
    ("Specimen", "subject"),
    ("SupplyDelivery", "patient"),
    ("VisionPrescription", "patient"),
];

macro_rules! param {
    ($rt:ident, $code:literal, $kind:ident, $protection:ident, $expr:literal, $why:literal, $extract:expr) => {
        param!($rt, $code, $kind, $protection, $expr, $why, [], $extract)
    };
    ($rt:ident, $code:literal, $kind:ident, $protection:ident, $expr:literal, $why:literal, [$($target:literal),*], $extract:expr) => {
        SearchParam {
            resource_type: ResourceType::$rt,
            code: $code,
            kind: ParamKind::$kind,
            protection: Protection::$protection,
            expression: $expr,
            rationale: $why,
            targets: &[$($target),*],
            extract: $extract,
        }
    };
}

/// Every search parameter Cairn indexes, with its classification.
pub static SEARCH_PARAMETERS: &[SearchParam] = &[
    param!(
        PATIENT,
        "identifier",
        Token,
        Blind,
        "Patient.identifier",
        "MRNs, SSNs and insurance numbers identify a person directly.",
        |r, out| if let Resource::Patient(p) = r {
            for i in &p.identifier {
                if let Some(value) = &i.value {
                    out.push(IndexValue::Token {
                        system: i.system.as_ref().map(|s| s.0.clone()),
                        code: value.clone(),
                    });
                }
            }
        }
    ),
    param!(
        PATIENT,
        "name",
        String,
        Blind,
        "Patient.name",
        "Names identify a person.",
        |r, out| if let Resource::Patient(p) = r {
            for name in &p.name {
                name_parts(name, true, true, out)
            }
        }
    ),
    param!(
        PATIENT,
        "family",
        String,
        Blind,
        "Patient.name.family",
        "Names identify a person.",
        |r, out| if let Resource::Patient(p) = r {
            for name in &p.name {
                name_parts(name, true, false, out)
            }
        }
    ),
    param!(
        PATIENT,
        "given",
        String,
        Blind,
        "Patient.name.given",
        "Names identify a person.",
        |r, out| if let Resource::Patient(p) = r {
            for name in &p.name {
                name_parts(name, false, true, out)
            }
        }
    ),
    param!(
        PATIENT,
        "birthdate",
        Date,
        Blind,
        "Patient.birthDate",
        "A birth date is a HIPAA identifier; kept as year, year-month and day buckets only.",
        |r, out| if let Resource::Patient(p) = r
            && let Some(date) = &p.birth_date
        {
            push_date(&date.0, out)
        }
    ),
    param!(
        PATIENT,
        "telecom",
        Token,
        Blind,
        "Patient.telecom",
        "Phone numbers and e-mail addresses identify a person.",
        |r, out| if let Resource::Patient(p) = r {
            for t in &p.telecom {
                if let Some(value) = &t.value {
                    out.push(IndexValue::Token {
                        system: t.system.as_ref().map(|s| s.0.clone()),
                        code: value.clone(),
                    });
                }
            }
        }
    ),
    param!(
        PATIENT,
        "address-postalcode",
        String,
        Blind,
        "Patient.address.postalCode",
        "Postal codes narrow a person to a few thousand people or fewer (HIPAA geographic identifier).",
        |r, out| if let Resource::Patient(p) = r {
            out.extend(
                p.address
                    .iter()
                    .filter_map(|a: &Address| a.postal_code.clone())
                    .map(IndexValue::Text),
            );
        }
    ),
    param!(
        PATIENT,
        "gender",
        Token,
        Plain,
        "Patient.gender",
        "Four possible values: identifies no one, and filtering by it is common.",
        |r, out| if let Resource::Patient(p) = r
            && let Some(g) = &p.gender
        {
            out.push(IndexValue::Token {
                system: Some("http://hl7.org/fhir/administrative-gender".into()),
                code: g.0.clone(),
            });
        }
    ),
    param!(
        PATIENT,
        "active",
        Token,
        Plain,
        "Patient.active",
        "A record-management flag, not about the person.",
        |r, out| if let Resource::Patient(p) = r
            && let Some(active) = p.active
        {
            out.push(IndexValue::Token {
                system: None,
                code: active.to_string(),
            });
        }
    ),
    param!(
        PATIENT,
        "general-practitioner",
        Reference,
        Plain,
        "Patient.generalPractitioner",
        "A reference by opaque id to a practitioner or organization; reveals the care relationship only to someone who can already read both.",
        ["Organization", "Practitioner", "PractitionerRole"],
        |r, out| if let Resource::Patient(p) = r {
            references(p.general_practitioner.iter(), out)
        }
    ),
    param!(
        PATIENT,
        "organization",
        Reference,
        Plain,
        "Patient.managingOrganization",
        "A reference by opaque id to the managing organization.",
        ["Organization"],
        |r, out| if let Resource::Patient(p) = r {
            references(p.managing_organization.iter(), out)
        }
    ),
    param!(
        IMMUNIZATION,
        "patient",
        Reference,
        Plain,
        "Immunization.patient",
        "The patient's opaque id (a random UUID), not their identity; needed to list a patient's immunizations.",
        ["Patient"],
        |r, out| if let Resource::Immunization(i) = r {
            references(i.patient.iter(), out)
        }
    ),
    param!(
        IMMUNIZATION,
        "vaccine-code",
        Token,
        Plain,
        "Immunization.vaccineCode",
        "A vaccine product code (CVX, SNOMED): shared by millions of doses.",
        |r, out| if let Resource::Immunization(i) = r {
            codes(i.vaccine_code.iter(), out)
        }
    ),
    param!(
        IMMUNIZATION,
        "date",
        Date,
        Plain,
        "Immunization.occurrence",
        "A date of service, which HIPAA's safe harbour counts as an identifier only together with the patient; kept plain so ranges (gt, lt) work. Accepted leakage: dates of doses per opaque patient id.",
        |r, out| if let Resource::Immunization(i) = r
            && let Some(when) = &i.occurrence_date_time
        {
            push_date(&when.0, out)
        }
    ),
    param!(
        IMMUNIZATION,
        "status",
        Token,
        Plain,
        "Immunization.status",
        "completed, entered-in-error or not-done.",
        |r, out| if let Resource::Immunization(i) = r
            && let Some(s) = &i.status
        {
            out.push(IndexValue::Token {
                system: Some("http://hl7.org/fhir/event-status".into()),
                code: s.0.clone(),
            });
        }
    ),
    param!(
        IMMUNIZATION,
        "status-reason",
        Token,
        Plain,
        "Immunization.statusReason",
        "A coded reason a dose was not given.",
        |r, out| if let Resource::Immunization(i) = r {
            codes(i.status_reason.iter(), out)
        }
    ),
    param!(
        IMMUNIZATION,
        "lot-number",
        String,
        Plain,
        "Immunization.lotNumber",
        "A manufacturer's batch number, shared by thousands of doses; recalls search by it.",
        |r, out| if let Resource::Immunization(i) = r
            && let Some(lot) = &i.lot_number
        {
            out.push(IndexValue::Text(lot.clone()))
        }
    ),
    param!(
        IMMUNIZATION,
        "performer",
        Reference,
        Plain,
        "Immunization.performer.actor",
        "A reference by opaque id to the practitioner or organization that vaccinated.",
        ["Organization", "Practitioner", "PractitionerRole"],
        |r, out| if let Resource::Immunization(i) = r {
            references(i.performer.iter().filter_map(|p| p.actor.as_ref()), out)
        }
    ),
    param!(
        IMMUNIZATION,
        "location",
        Reference,
        Plain,
        "Immunization.location",
        "A reference by opaque id to a clinic.",
        ["Location"],
        |r, out| if let Resource::Immunization(i) = r {
            references(i.location.iter(), out)
        }
    ),
    param!(
        IMMUNIZATION,
        "target-disease",
        Token,
        Plain,
        "Immunization.protocolApplied.targetDisease",
        "A disease code, shared by every dose against it.",
        |r, out| if let Resource::Immunization(i) = r {
            codes(
                i.protocol_applied
                    .iter()
                    .flat_map(|p| p.target_disease.iter()),
                out,
            )
        }
    ),
    param!(
        IMMUNIZATION,
        "series",
        String,
        Plain,
        "Immunization.protocolApplied.series",
        "A series name chosen by the schedule (\"COVID-19 primary\"), not by the patient.",
        |r, out| if let Resource::Immunization(i) = r {
            out.extend(
                i.protocol_applied
                    .iter()
                    .filter_map(|p| p.series.clone())
                    .map(IndexValue::Text),
            );
        }
    ),
    param!(
        IMMUNIZATION,
        "reason-code",
        Token,
        Plain,
        "Immunization.reasonCode",
        "A coded reason for vaccination (occupational, travel).",
        |r, out| if let Resource::Immunization(i) = r {
            codes(i.reason_code.iter(), out)
        }
    ),
];

fn name_parts(name: &HumanName, family: bool, given: bool, out: &mut Vec<IndexValue>) {
    if family {
        out.extend(name.family.iter().cloned().map(IndexValue::Text));
    }
    if given {
        out.extend(name.given.iter().cloned().map(IndexValue::Text));
    }
    if family && given {
        // `name` also matches prefix, suffix and text (R4: Patient.name, all string parts).
        out.extend(
            name.prefix
                .iter()
                .chain(&name.suffix)
                .chain(&name.text)
                .cloned()
                .map(IndexValue::Text),
        );
    }
}

fn references<'a>(refs: impl Iterator<Item = &'a Reference>, out: &mut Vec<IndexValue>) {
    out.extend(
        refs.filter_map(Reference::relative_target)
            .map(|(t, id)| IndexValue::Reference {
                target_type: t.to_owned(),
                id: id.to_owned(),
            }),
    );
}

fn codes<'a>(concepts: impl Iterator<Item = &'a CodeableConcept>, out: &mut Vec<IndexValue>) {
    for concept in concepts {
        for coding in &concept.coding {
            if let Some(code) = &coding.code {
                out.push(IndexValue::Token {
                    system: coding.system.as_ref().map(|s| s.0.clone()),
                    code: code.0.clone(),
                });
            }
            out.extend(coding.display.clone().map(IndexValue::TokenText));
        }
        out.extend(concept.text.clone().map(IndexValue::TokenText));
    }
}

fn push_date(text: &str, out: &mut Vec<IndexValue>) {
    if let Some((low, high)) = date_range(text) {
        out.push(IndexValue::Date {
            text: text.to_owned(),
            low,
            high,
        });
    }
}

#[cfg(test)]
mod tests;
