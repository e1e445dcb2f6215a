//! Immunization: a vaccine given to a patient (or a record that it was not given).

use super::{backbone, domain_parts};
use crate::datatypes::*;
use crate::outcome::IssueType;
use crate::primitives::{Code, Date, DateTime, Id, PositiveInt, Uri};
use crate::resource::Resource;
use crate::validation::{Issues, Location, Validate, each, one};

/// `immunization-status`, a required binding.
pub const IMMUNIZATION_STATUS: &[&str] = &["completed", "entered-in-error", "not-done"];

fhir_element! {
    /// The event of a patient being given a vaccine, or a record of one reported by another source.
    @resource = "Immunization"
    pub struct Immunization {
        id: Option<Id> => "id",
        meta: Option<Meta> => "meta",
        implicit_rules: Option<Uri> => "implicitRules",
        language: Option<Code> => "language",
        text: Option<Narrative> => "text",
        contained: Vec<Resource> => "contained",
        extension: Vec<Extension> => "extension",
        modifier_extension: Vec<Extension> => "modifierExtension",
        identifier: Vec<Identifier> => "identifier",
        status: Option<Code> => "status",
        status_reason: Option<CodeableConcept> => "statusReason",
        vaccine_code: Option<CodeableConcept> => "vaccineCode",
        patient: Option<Reference> => "patient",
        encounter: Option<Reference> => "encounter",
        occurrence_date_time: Option<DateTime> => "occurrenceDateTime",
        occurrence_string: Option<String> => "occurrenceString",
        recorded: Option<DateTime> => "recorded",
        primary_source: Option<bool> => "primarySource",
        report_origin: Option<CodeableConcept> => "reportOrigin",
        location: Option<Reference> => "location",
        manufacturer: Option<Reference> => "manufacturer",
        lot_number: Option<String> => "lotNumber",
        expiration_date: Option<Date> => "expirationDate",
        site: Option<CodeableConcept> => "site",
        route: Option<CodeableConcept> => "route",
        dose_quantity: Option<Quantity> => "doseQuantity",
        performer: Vec<ImmunizationPerformer> => "performer",
        note: Vec<Annotation> => "note",
        reason_code: Vec<CodeableConcept> => "reasonCode",
        reason_reference: Vec<Reference> => "reasonReference",
        is_subpotent: Option<bool> => "isSubpotent",
        subpotent_reason: Vec<CodeableConcept> => "subpotentReason",
        education: Vec<ImmunizationEducation> => "education",
        program_eligibility: Vec<CodeableConcept> => "programEligibility",
        funding_source: Option<CodeableConcept> => "fundingSource",
        reaction: Vec<ImmunizationReaction> => "reaction",
        protocol_applied: Vec<ImmunizationProtocolApplied> => "protocolApplied",
    }
}
domain_parts!(Immunization);

fhir_element! {
    /// Who performed the immunization, and in what role.
    pub struct ImmunizationPerformer {
        id: Option<String> => "id",
        extension: Vec<Extension> => "extension",
        modifier_extension: Vec<Extension> => "modifierExtension",
        function: Option<CodeableConcept> => "function",
        actor: Option<Reference> => "actor",
    }
}

fhir_element! {
    /// Educational material given to the patient.
    pub struct ImmunizationEducation {
        id: Option<String> => "id",
        extension: Vec<Extension> => "extension",
        modifier_extension: Vec<Extension> => "modifierExtension",
        document_type: Option<String> => "documentType",
        reference: Option<Uri> => "reference",
        publication_date: Option<DateTime> => "publicationDate",
        presentation_date: Option<DateTime> => "presentationDate",
    }
}

fhir_element! {
    /// A reaction that followed the immunization.
    pub struct ImmunizationReaction {
        id: Option<String> => "id",
        extension: Vec<Extension> => "extension",
        modifier_extension: Vec<Extension> => "modifierExtension",
        date: Option<DateTime> => "date",
        detail: Option<Reference> => "detail",
        reported: Option<bool> => "reported",
    }
}

fhir_element! {
    /// The protocol (series) the dose belongs to, and which dose it is.
    pub struct ImmunizationProtocolApplied {
        id: Option<String> => "id",
        extension: Vec<Extension> => "extension",
        modifier_extension: Vec<Extension> => "modifierExtension",
        series: Option<String> => "series",
        authority: Option<Reference> => "authority",
        target_disease: Vec<CodeableConcept> => "targetDisease",
        dose_number_positive_int: Option<PositiveInt> => "doseNumberPositiveInt",
        dose_number_string: Option<String> => "doseNumberString",
        series_doses_positive_int: Option<PositiveInt> => "seriesDosesPositiveInt",
        series_doses_string: Option<String> => "seriesDosesString",
    }
}

impl Validate for Immunization {
    fn validate(&self, at: &Location, issues: &mut Issues) {
        self.domain_parts().validate(at, issues);
        each(&self.identifier, at, "identifier", issues);
        issues.required(&self.status, at, "status");
        issues.binding(&self.status, at, "status", IMMUNIZATION_STATUS);
        one(&self.status_reason, at, "statusReason", issues);
        issues.required(&self.vaccine_code, at, "vaccineCode");
        one(&self.vaccine_code, at, "vaccineCode", issues);
        issues.required(&self.patient, at, "patient");
        one(&self.patient, at, "patient", issues);
        one(&self.encounter, at, "encounter", issues);
        let occurrence = [
            self.occurrence_date_time.is_some(),
            self.occurrence_string.is_some(),
        ];
        if !occurrence.contains(&true) {
            issues.push(
                IssueType::Required,
                &at.child("occurrence[x]"),
                "occurrence[x] is required (occurrenceDateTime or occurrenceString)",
            );
        }
        issues.at_most_one_choice(at, "occurrence", &occurrence);
        one(&self.occurrence_date_time, at, "occurrenceDateTime", issues);
        one(&self.recorded, at, "recorded", issues);
        one(&self.report_origin, at, "reportOrigin", issues);
        one(&self.location, at, "location", issues);
        one(&self.manufacturer, at, "manufacturer", issues);
        one(&self.expiration_date, at, "expirationDate", issues);
        one(&self.site, at, "site", issues);
        one(&self.route, at, "route", issues);
        if let Some(dose) = &self.dose_quantity {
            let here = at.child("doseQuantity");
            dose.validate(&here, issues);
            if dose.comparator.is_some() {
                issues.push(
                    IssueType::Invariant,
                    &here,
                    "sqty-1: a SimpleQuantity has no comparator",
                );
            }
        }
        each(&self.performer, at, "performer", issues);
        each(&self.note, at, "note", issues);
        each(&self.reason_code, at, "reasonCode", issues);
        each(&self.reason_reference, at, "reasonReference", issues);
        each(&self.subpotent_reason, at, "subpotentReason", issues);
        each(&self.education, at, "education", issues);
        each(&self.program_eligibility, at, "programEligibility", issues);
        one(&self.funding_source, at, "fundingSource", issues);
        each(&self.reaction, at, "reaction", issues);
        each(&self.protocol_applied, at, "protocolApplied", issues);
    }
}

impl Validate for ImmunizationPerformer {
    fn validate(&self, at: &Location, issues: &mut Issues) {
        backbone(&self.extension, &self.modifier_extension, at, issues);
        one(&self.function, at, "function", issues);
        issues.required(&self.actor, at, "actor");
        one(&self.actor, at, "actor", issues);
    }
}

impl Validate for ImmunizationEducation {
    fn validate(&self, at: &Location, issues: &mut Issues) {
        backbone(&self.extension, &self.modifier_extension, at, issues);
        one(&self.reference, at, "reference", issues);
        one(&self.publication_date, at, "publicationDate", issues);
        one(&self.presentation_date, at, "presentationDate", issues);
        if self.document_type.is_none() && self.reference.is_none() {
            issues.push(
                IssueType::Invariant,
                at,
                "imm-1: one of documentType or reference is present",
            );
        }
    }
}

impl Validate for ImmunizationReaction {
    fn validate(&self, at: &Location, issues: &mut Issues) {
        backbone(&self.extension, &self.modifier_extension, at, issues);
        one(&self.date, at, "date", issues);
        one(&self.detail, at, "detail", issues);
    }
}

impl Validate for ImmunizationProtocolApplied {
    fn validate(&self, at: &Location, issues: &mut Issues) {
        backbone(&self.extension, &self.modifier_extension, at, issues);
        one(&self.authority, at, "authority", issues);
        each(&self.target_disease, at, "targetDisease", issues);
        let dose = [
            self.dose_number_positive_int.is_some(),
            self.dose_number_string.is_some(),
        ];
        if !dose.contains(&true) {
            issues.push(
                IssueType::Required,
                &at.child("doseNumber[x]"),
                "doseNumber[x] is required (doseNumberPositiveInt or doseNumberString)",
            );
        }
        issues.at_most_one_choice(at, "doseNumber", &dose);
        one(
            &self.dose_number_positive_int,
            at,
            "doseNumberPositiveInt",
            issues,
        );
        issues.at_most_one_choice(
            at,
            "seriesDoses",
            &[
                self.series_doses_positive_int.is_some(),
                self.series_doses_string.is_some(),
            ],
        );
        one(
            &self.series_doses_positive_int,
            at,
            "seriesDosesPositiveInt",
            issues,
        );
    }
}
