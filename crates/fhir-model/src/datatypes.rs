//! The R4 general-purpose datatypes that the typed resources use.
//!
//! Each keeps what it does not model in `extra`; `Extension.value[x]` in particular stays there
//! as JSON, which keeps every one of its fifty types lossless without modelling them.

use crate::outcome::IssueType;
use crate::primitives::{
    Base64Binary, Code, DateTime, Decimal, Id, Instant, PositiveInt, UnsignedInt, Uri,
};
use crate::validation::{Issues, Location, Validate, each, one};

fhir_element! {
    /// Extension: additional content defined by an implementation guide.
    pub struct Extension {
        id: Option<String> => "id",
        url: Option<Uri> => "url",
        extension: Vec<Extension> => "extension",
    }
}

impl Validate for Extension {
    fn validate(&self, at: &Location, issues: &mut Issues) {
        issues.required(&self.url, at, "url");
        one(&self.url, at, "url", issues);
        each(&self.extension, at, "extension", issues);
        let values = self.extra.keys().filter(|k| k.starts_with("value")).count();
        // ext-1: an extension has nested extensions or a value, not both.
        if values > 0 && !self.extension.is_empty() {
            issues.push(
                IssueType::Invariant,
                at,
                "ext-1: an extension has either a value or nested extensions, not both",
            );
        }
        if values > 1 {
            issues.push(
                IssueType::Structure,
                &at.child("value[x]"),
                "value[x] may have only one type, but several were given",
            );
        }
    }
}

fhir_element! {
    /// Meta: metadata about a resource, maintained by the server.
    pub struct Meta {
        id: Option<String> => "id",
        extension: Vec<Extension> => "extension",
        version_id: Option<Id> => "versionId",
        last_updated: Option<Instant> => "lastUpdated",
        source: Option<Uri> => "source",
        profile: Vec<Uri> => "profile",
        security: Vec<Coding> => "security",
        tag: Vec<Coding> => "tag",
    }
}

impl Validate for Meta {
    fn validate(&self, at: &Location, issues: &mut Issues) {
        each(&self.extension, at, "extension", issues);
        one(&self.version_id, at, "versionId", issues);
        one(&self.last_updated, at, "lastUpdated", issues);
        one(&self.source, at, "source", issues);
        each(&self.profile, at, "profile", issues);
        each(&self.security, at, "security", issues);
        each(&self.tag, at, "tag", issues);
    }
}

fhir_element! {
    /// Narrative: human-readable summary of the resource.
    pub struct Narrative {
        id: Option<String> => "id",
        extension: Vec<Extension> => "extension",
        status: Option<Code> => "status",
        div: Option<String> => "div",
    }
}

impl Validate for Narrative {
    fn validate(&self, at: &Location, issues: &mut Issues) {
        each(&self.extension, at, "extension", issues);
        issues.required(&self.status, at, "status");
        issues.binding(
            &self.status,
            at,
            "status",
            &["generated", "extensions", "additional", "empty"],
        );
        issues.required(&self.div, at, "div");
        if let Some(div) = &self.div {
            // txt-1/txt-3 in full need an XHTML parser; the root element is the part clients get wrong.
            if !div.trim_start().starts_with("<div") {
                issues.push(
                    IssueType::Invariant,
                    &at.child("div"),
                    "the narrative must be an XHTML <div> element",
                );
            }
        }
    }
}

fhir_element! {
    /// Coding: a code defined by a terminology system.
    pub struct Coding {
        id: Option<String> => "id",
        extension: Vec<Extension> => "extension",
        system: Option<Uri> => "system",
        version: Option<String> => "version",
        code: Option<Code> => "code",
        display: Option<String> => "display",
        user_selected: Option<bool> => "userSelected",
    }
}

impl Validate for Coding {
    fn validate(&self, at: &Location, issues: &mut Issues) {
        each(&self.extension, at, "extension", issues);
        one(&self.system, at, "system", issues);
        one(&self.code, at, "code", issues);
    }
}

fhir_element! {
    /// CodeableConcept: a concept given as codings and/or text.
    pub struct CodeableConcept {
        id: Option<String> => "id",
        extension: Vec<Extension> => "extension",
        coding: Vec<Coding> => "coding",
        text: Option<String> => "text",
    }
}

impl Validate for CodeableConcept {
    fn validate(&self, at: &Location, issues: &mut Issues) {
        each(&self.extension, at, "extension", issues);
        each(&self.coding, at, "coding", issues);
    }
}

fhir_element! {
    /// Identifier: a business identifier, such as a medical record number.
    pub struct Identifier {
        id: Option<String> => "id",
        extension: Vec<Extension> => "extension",
        use_: Option<Code> => "use",
        type_: Option<CodeableConcept> => "type",
        system: Option<Uri> => "system",
        value: Option<String> => "value",
        period: Option<Period> => "period",
        assigner: Option<Box<Reference>> => "assigner",
    }
}

impl Validate for Identifier {
    fn validate(&self, at: &Location, issues: &mut Issues) {
        each(&self.extension, at, "extension", issues);
        issues.binding(
            &self.use_,
            at,
            "use",
            &["usual", "official", "temp", "secondary", "old"],
        );
        one(&self.type_, at, "type", issues);
        one(&self.system, at, "system", issues);
        one(&self.period, at, "period", issues);
        one(&self.assigner, at, "assigner", issues);
    }
}

fhir_element! {
    /// HumanName: a person's name.
    pub struct HumanName {
        id: Option<String> => "id",
        extension: Vec<Extension> => "extension",
        use_: Option<Code> => "use",
        text: Option<String> => "text",
        family: Option<String> => "family",
        given: Vec<String> => "given",
        prefix: Vec<String> => "prefix",
        suffix: Vec<String> => "suffix",
        period: Option<Period> => "period",
    }
}

impl Validate for HumanName {
    fn validate(&self, at: &Location, issues: &mut Issues) {
        each(&self.extension, at, "extension", issues);
        issues.binding(
            &self.use_,
            at,
            "use",
            &[
                "usual",
                "official",
                "temp",
                "nickname",
                "anonymous",
                "old",
                "maiden",
            ],
        );
        one(&self.period, at, "period", issues);
    }
}

fhir_element! {
    /// ContactPoint: a phone number, email address and the like.
    pub struct ContactPoint {
        id: Option<String> => "id",
        extension: Vec<Extension> => "extension",
        system: Option<Code> => "system",
        value: Option<String> => "value",
        use_: Option<Code> => "use",
        rank: Option<PositiveInt> => "rank",
        period: Option<Period> => "period",
    }
}

impl Validate for ContactPoint {
    fn validate(&self, at: &Location, issues: &mut Issues) {
        each(&self.extension, at, "extension", issues);
        issues.binding(
            &self.system,
            at,
            "system",
            &["phone", "fax", "email", "pager", "url", "sms", "other"],
        );
        issues.binding(
            &self.use_,
            at,
            "use",
            &["home", "work", "temp", "old", "mobile"],
        );
        one(&self.rank, at, "rank", issues);
        one(&self.period, at, "period", issues);
        if self.system.is_none() && self.value.is_some() {
            issues.push(
                IssueType::Invariant,
                at,
                "cpt-2: a system is required if a value is provided",
            );
        }
    }
}

fhir_element! {
    /// Address: a postal or physical address.
    pub struct Address {
        id: Option<String> => "id",
        extension: Vec<Extension> => "extension",
        use_: Option<Code> => "use",
        type_: Option<Code> => "type",
        text: Option<String> => "text",
        line: Vec<String> => "line",
        city: Option<String> => "city",
        district: Option<String> => "district",
        state: Option<String> => "state",
        postal_code: Option<String> => "postalCode",
        country: Option<String> => "country",
        period: Option<Period> => "period",
    }
}

impl Validate for Address {
    fn validate(&self, at: &Location, issues: &mut Issues) {
        each(&self.extension, at, "extension", issues);
        issues.binding(
            &self.use_,
            at,
            "use",
            &["home", "work", "temp", "old", "billing"],
        );
        issues.binding(&self.type_, at, "type", &["postal", "physical", "both"]);
        one(&self.period, at, "period", issues);
    }
}

fhir_element! {
    /// Period: a time range, either end optional.
    pub struct Period {
        id: Option<String> => "id",
        extension: Vec<Extension> => "extension",
        start: Option<DateTime> => "start",
        end: Option<DateTime> => "end",
    }
}

impl Validate for Period {
    fn validate(&self, at: &Location, issues: &mut Issues) {
        each(&self.extension, at, "extension", issues);
        one(&self.start, at, "start", issues);
        one(&self.end, at, "end", issues);
        if let (Some(start), Some(end)) = (&self.start, &self.end) {
            // per-1 compares instants; equal-precision values compare correctly as text, which is
            // the common case. Mixed precision or zones are left to a full FHIRPath engine.
            let same_shape = start.0.len() == end.0.len() && start.0.get(19..) == end.0.get(19..);
            if start.is_valid() && end.is_valid() && same_shape && start.0 > end.0 {
                issues.push(
                    IssueType::Invariant,
                    at,
                    "per-1: the start must not be after the end",
                );
            }
        }
    }
}

fhir_element! {
    /// Reference: a reference to another resource.
    pub struct Reference {
        id: Option<String> => "id",
        extension: Vec<Extension> => "extension",
        reference: Option<String> => "reference",
        type_: Option<Uri> => "type",
        identifier: Option<Identifier> => "identifier",
        display: Option<String> => "display",
    }
}

impl Validate for Reference {
    fn validate(&self, at: &Location, issues: &mut Issues) {
        each(&self.extension, at, "extension", issues);
        one(&self.type_, at, "type", issues);
        one(&self.identifier, at, "identifier", issues);
        if let Some(reference) = &self.reference
            && reference.contains(char::is_whitespace)
        {
            issues.push(
                IssueType::Value,
                &at.child("reference"),
                "a reference must not contain whitespace",
            );
        }
    }
}

impl Reference {
    /// The `Type/id` of a relative literal reference (`Patient/123`, or `Patient/123/_history/2`),
    /// if this is one.
    pub fn relative_target(&self) -> Option<(&str, &str)> {
        let reference = self.reference.as_deref()?;
        let mut parts = reference.split('/');
        let (resource_type, id) = (parts.next()?, parts.next()?);
        match (parts.next(), parts.next(), parts.next()) {
            (None, None, None) | (Some("_history"), Some(_), None) => Some((resource_type, id)),
            _ => None,
        }
    }
}

fhir_element! {
    /// Quantity: a measured amount. `SimpleQuantity` is the same without a comparator.
    pub struct Quantity {
        id: Option<String> => "id",
        extension: Vec<Extension> => "extension",
        value: Option<Decimal> => "value",
        comparator: Option<Code> => "comparator",
        unit: Option<String> => "unit",
        system: Option<Uri> => "system",
        code: Option<Code> => "code",
    }
}

impl Validate for Quantity {
    fn validate(&self, at: &Location, issues: &mut Issues) {
        each(&self.extension, at, "extension", issues);
        issues.binding(&self.comparator, at, "comparator", &["<", "<=", ">=", ">"]);
        one(&self.system, at, "system", issues);
        one(&self.code, at, "code", issues);
        if self.code.is_some() && self.system.is_none() {
            issues.push(
                IssueType::Invariant,
                at,
                "qty-3: if a code for the unit is present, the system must also be present",
            );
        }
    }
}

fhir_element! {
    /// Attachment: content in a format defined elsewhere, inline or by URL.
    pub struct Attachment {
        id: Option<String> => "id",
        extension: Vec<Extension> => "extension",
        content_type: Option<Code> => "contentType",
        language: Option<Code> => "language",
        data: Option<Base64Binary> => "data",
        url: Option<Uri> => "url",
        size: Option<UnsignedInt> => "size",
        hash: Option<Base64Binary> => "hash",
        title: Option<String> => "title",
        creation: Option<DateTime> => "creation",
    }
}

impl Validate for Attachment {
    fn validate(&self, at: &Location, issues: &mut Issues) {
        each(&self.extension, at, "extension", issues);
        one(&self.content_type, at, "contentType", issues);
        one(&self.language, at, "language", issues);
        one(&self.data, at, "data", issues);
        one(&self.url, at, "url", issues);
        one(&self.size, at, "size", issues);
        one(&self.hash, at, "hash", issues);
        one(&self.creation, at, "creation", issues);
        if self.data.is_some() && self.content_type.is_none() {
            issues.push(
                IssueType::Invariant,
                at,
                "att-1: if data is present, contentType must be present",
            );
        }
    }
}

fhir_element! {
    /// Annotation: a text note with its author and time.
    pub struct Annotation {
        id: Option<String> => "id",
        extension: Vec<Extension> => "extension",
        author_reference: Option<Reference> => "authorReference",
        author_string: Option<String> => "authorString",
        time: Option<DateTime> => "time",
        text: Option<String> => "text",
    }
}

impl Validate for Annotation {
    fn validate(&self, at: &Location, issues: &mut Issues) {
        each(&self.extension, at, "extension", issues);
        issues.at_most_one_choice(
            at,
            "author",
            &[
                self.author_reference.is_some(),
                self.author_string.is_some(),
            ],
        );
        one(&self.author_reference, at, "authorReference", issues);
        one(&self.time, at, "time", issues);
        issues.required(&self.text, at, "text");
    }
}
