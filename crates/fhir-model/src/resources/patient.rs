//! Patient: demographics of a person receiving care.

use super::{backbone, domain_parts};
use crate::datatypes::*;
use crate::outcome::IssueType;
use crate::primitives::{Code, Date, DateTime, Id, Integer, Uri};
use crate::resource::Resource;
use crate::validation::{Issues, Location, Validate, each, one};

/// `administrative-gender`, a required binding.
pub const ADMINISTRATIVE_GENDER: &[&str] = &["male", "female", "other", "unknown"];

fhir_element! {
    /// A person receiving care or other health-related services.
    @resource = "Patient"
    pub struct Patient {
        id: Option<Id> => "id",
        meta: Option<Meta> => "meta",
        implicit_rules: Option<Uri> => "implicitRules",
        language: Option<Code> => "language",
        text: Option<Narrative> => "text",
        contained: Vec<Resource> => "contained",
        extension: Vec<Extension> => "extension",
        modifier_extension: Vec<Extension> => "modifierExtension",
        identifier: Vec<Identifier> => "identifier",
        active: Option<bool> => "active",
        name: Vec<HumanName> => "name",
        telecom: Vec<ContactPoint> => "telecom",
        gender: Option<Code> => "gender",
        birth_date: Option<Date> => "birthDate",
        deceased_boolean: Option<bool> => "deceasedBoolean",
        deceased_date_time: Option<DateTime> => "deceasedDateTime",
        address: Vec<Address> => "address",
        marital_status: Option<CodeableConcept> => "maritalStatus",
        multiple_birth_boolean: Option<bool> => "multipleBirthBoolean",
        multiple_birth_integer: Option<Integer> => "multipleBirthInteger",
        photo: Vec<Attachment> => "photo",
        contact: Vec<PatientContact> => "contact",
        communication: Vec<PatientCommunication> => "communication",
        general_practitioner: Vec<Reference> => "generalPractitioner",
        managing_organization: Option<Reference> => "managingOrganization",
        link: Vec<PatientLink> => "link",
    }
}
domain_parts!(Patient);

fhir_element! {
    /// A contact party (guardian, partner, friend) for the patient.
    pub struct PatientContact {
        id: Option<String> => "id",
        extension: Vec<Extension> => "extension",
        modifier_extension: Vec<Extension> => "modifierExtension",
        relationship: Vec<CodeableConcept> => "relationship",
        name: Option<HumanName> => "name",
        telecom: Vec<ContactPoint> => "telecom",
        address: Option<Address> => "address",
        gender: Option<Code> => "gender",
        organization: Option<Reference> => "organization",
        period: Option<Period> => "period",
    }
}

fhir_element! {
    /// A language the patient may use to communicate about their health.
    pub struct PatientCommunication {
        id: Option<String> => "id",
        extension: Vec<Extension> => "extension",
        modifier_extension: Vec<Extension> => "modifierExtension",
        language: Option<CodeableConcept> => "language",
        preferred: Option<bool> => "preferred",
    }
}

fhir_element! {
    /// A link to another Patient or RelatedPerson resource about the same person.
    pub struct PatientLink {
        id: Option<String> => "id",
        extension: Vec<Extension> => "extension",
        modifier_extension: Vec<Extension> => "modifierExtension",
        other: Option<Reference> => "other",
        type_: Option<Code> => "type",
    }
}

impl Validate for Patient {
    fn validate(&self, at: &Location, issues: &mut Issues) {
        self.domain_parts().validate(at, issues);
        each(&self.identifier, at, "identifier", issues);
        each(&self.name, at, "name", issues);
        each(&self.telecom, at, "telecom", issues);
        issues.binding(&self.gender, at, "gender", ADMINISTRATIVE_GENDER);
        one(&self.birth_date, at, "birthDate", issues);
        issues.at_most_one_choice(
            at,
            "deceased",
            &[
                self.deceased_boolean.is_some(),
                self.deceased_date_time.is_some(),
            ],
        );
        one(&self.deceased_date_time, at, "deceasedDateTime", issues);
        each(&self.address, at, "address", issues);
        one(&self.marital_status, at, "maritalStatus", issues);
        issues.at_most_one_choice(
            at,
            "multipleBirth",
            &[
                self.multiple_birth_boolean.is_some(),
                self.multiple_birth_integer.is_some(),
            ],
        );
        each(&self.photo, at, "photo", issues);
        each(&self.contact, at, "contact", issues);
        each(&self.communication, at, "communication", issues);
        each(
            &self.general_practitioner,
            at,
            "generalPractitioner",
            issues,
        );
        one(
            &self.managing_organization,
            at,
            "managingOrganization",
            issues,
        );
        each(&self.link, at, "link", issues);
    }
}

impl Validate for PatientContact {
    fn validate(&self, at: &Location, issues: &mut Issues) {
        backbone(&self.extension, &self.modifier_extension, at, issues);
        each(&self.relationship, at, "relationship", issues);
        one(&self.name, at, "name", issues);
        each(&self.telecom, at, "telecom", issues);
        one(&self.address, at, "address", issues);
        issues.binding(&self.gender, at, "gender", ADMINISTRATIVE_GENDER);
        one(&self.organization, at, "organization", issues);
        one(&self.period, at, "period", issues);
        let has_details = self.name.is_some()
            || !self.telecom.is_empty()
            || self.address.is_some()
            || self.organization.is_some();
        if !has_details {
            issues.push(
                IssueType::Invariant,
                at,
                "pat-1: a contact has at least a name, telecom, address or organization",
            );
        }
    }
}

impl Validate for PatientCommunication {
    fn validate(&self, at: &Location, issues: &mut Issues) {
        backbone(&self.extension, &self.modifier_extension, at, issues);
        issues.required(&self.language, at, "language");
        one(&self.language, at, "language", issues);
    }
}

impl Validate for PatientLink {
    fn validate(&self, at: &Location, issues: &mut Issues) {
        backbone(&self.extension, &self.modifier_extension, at, issues);
        issues.required(&self.other, at, "other");
        one(&self.other, at, "other", issues);
        issues.required(&self.type_, at, "type");
        issues.binding(
            &self.type_,
            at,
            "type",
            &["replaced-by", "replaces", "refer", "seealso"],
        );
    }
}
