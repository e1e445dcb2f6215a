//! CapabilityStatement: what a FHIR server can do (served at `/metadata`).

use super::{backbone, domain_parts};
use crate::datatypes::*;
use crate::outcome::IssueType;
use crate::primitives::{Code, DateTime, Id, Uri};
use crate::resource::Resource;
use crate::validation::{Issues, Location, Validate, each, one};

fhir_element! {
    /// A statement of the capabilities of a FHIR server.
    @resource = "CapabilityStatement"
    pub struct CapabilityStatement {
        id: Option<Id> => "id",
        meta: Option<Meta> => "meta",
        implicit_rules: Option<Uri> => "implicitRules",
        language: Option<Code> => "language",
        text: Option<Narrative> => "text",
        contained: Vec<Resource> => "contained",
        extension: Vec<Extension> => "extension",
        modifier_extension: Vec<Extension> => "modifierExtension",
        url: Option<Uri> => "url",
        version: Option<String> => "version",
        name: Option<String> => "name",
        title: Option<String> => "title",
        status: Option<Code> => "status",
        experimental: Option<bool> => "experimental",
        date: Option<DateTime> => "date",
        publisher: Option<String> => "publisher",
        description: Option<String> => "description",
        kind: Option<Code> => "kind",
        instantiates: Vec<Uri> => "instantiates",
        imports: Vec<Uri> => "imports",
        software: Option<CapabilitySoftware> => "software",
        implementation: Option<CapabilityImplementation> => "implementation",
        fhir_version: Option<Code> => "fhirVersion",
        format: Vec<Code> => "format",
        patch_format: Vec<Code> => "patchFormat",
        implementation_guide: Vec<Uri> => "implementationGuide",
        rest: Vec<CapabilityRest> => "rest",
    }
}
domain_parts!(CapabilityStatement);

fhir_element! {
    /// The software the statement describes.
    pub struct CapabilitySoftware {
        id: Option<String> => "id",
        extension: Vec<Extension> => "extension",
        modifier_extension: Vec<Extension> => "modifierExtension",
        name: Option<String> => "name",
        version: Option<String> => "version",
        release_date: Option<DateTime> => "releaseDate",
    }
}

fhir_element! {
    /// The installation the statement describes.
    pub struct CapabilityImplementation {
        id: Option<String> => "id",
        extension: Vec<Extension> => "extension",
        modifier_extension: Vec<Extension> => "modifierExtension",
        description: Option<String> => "description",
        url: Option<Uri> => "url",
        custodian: Option<Reference> => "custodian",
    }
}

fhir_element! {
    /// A RESTful endpoint: its resources, interactions and operations.
    pub struct CapabilityRest {
        id: Option<String> => "id",
        extension: Vec<Extension> => "extension",
        modifier_extension: Vec<Extension> => "modifierExtension",
        mode: Option<Code> => "mode",
        documentation: Option<String> => "documentation",
        security: Option<CapabilityRestSecurity> => "security",
        resource: Vec<CapabilityResource> => "resource",
        interaction: Vec<CapabilityInteraction> => "interaction",
        search_param: Vec<CapabilitySearchParam> => "searchParam",
        operation: Vec<CapabilityOperation> => "operation",
        compartment: Vec<Uri> => "compartment",
    }
}

fhir_element! {
    /// How clients authenticate to the endpoint.
    pub struct CapabilityRestSecurity {
        id: Option<String> => "id",
        extension: Vec<Extension> => "extension",
        modifier_extension: Vec<Extension> => "modifierExtension",
        cors: Option<bool> => "cors",
        service: Vec<CodeableConcept> => "service",
        description: Option<String> => "description",
    }
}

impl Validate for CapabilityRestSecurity {
    fn validate(&self, at: &Location, issues: &mut Issues) {
        backbone(&self.extension, &self.modifier_extension, at, issues);
        each(&self.service, at, "service", issues);
    }
}

fhir_element! {
    /// What the endpoint supports for one resource type.
    pub struct CapabilityResource {
        id: Option<String> => "id",
        extension: Vec<Extension> => "extension",
        modifier_extension: Vec<Extension> => "modifierExtension",
        type_: Option<Code> => "type",
        profile: Option<Uri> => "profile",
        supported_profile: Vec<Uri> => "supportedProfile",
        documentation: Option<String> => "documentation",
        interaction: Vec<CapabilityInteraction> => "interaction",
        versioning: Option<Code> => "versioning",
        read_history: Option<bool> => "readHistory",
        update_create: Option<bool> => "updateCreate",
        conditional_create: Option<bool> => "conditionalCreate",
        conditional_read: Option<Code> => "conditionalRead",
        conditional_update: Option<bool> => "conditionalUpdate",
        conditional_delete: Option<Code> => "conditionalDelete",
        reference_policy: Vec<Code> => "referencePolicy",
        search_include: Vec<String> => "searchInclude",
        search_rev_include: Vec<String> => "searchRevInclude",
        search_param: Vec<CapabilitySearchParam> => "searchParam",
        operation: Vec<CapabilityOperation> => "operation",
    }
}

fhir_element! {
    /// An interaction (read, create, search-type, transaction, …).
    pub struct CapabilityInteraction {
        id: Option<String> => "id",
        extension: Vec<Extension> => "extension",
        modifier_extension: Vec<Extension> => "modifierExtension",
        code: Option<Code> => "code",
        documentation: Option<String> => "documentation",
    }
}

fhir_element! {
    /// A search parameter the endpoint supports.
    pub struct CapabilitySearchParam {
        id: Option<String> => "id",
        extension: Vec<Extension> => "extension",
        modifier_extension: Vec<Extension> => "modifierExtension",
        name: Option<String> => "name",
        definition: Option<Uri> => "definition",
        type_: Option<Code> => "type",
        documentation: Option<String> => "documentation",
    }
}

fhir_element! {
    /// An operation the endpoint supports.
    pub struct CapabilityOperation {
        id: Option<String> => "id",
        extension: Vec<Extension> => "extension",
        modifier_extension: Vec<Extension> => "modifierExtension",
        name: Option<String> => "name",
        definition: Option<Uri> => "definition",
        documentation: Option<String> => "documentation",
    }
}

const TYPE_INTERACTIONS: &[&str] = &[
    "read",
    "vread",
    "update",
    "patch",
    "delete",
    "history-instance",
    "history-type",
    "create",
    "search-type",
];
const SYSTEM_INTERACTIONS: &[&str] = &["transaction", "batch", "search-system", "history-system"];
const SEARCH_PARAM_TYPES: &[&str] = &[
    "number",
    "date",
    "string",
    "token",
    "reference",
    "composite",
    "quantity",
    "uri",
    "special",
];

impl Validate for CapabilityStatement {
    fn validate(&self, at: &Location, issues: &mut Issues) {
        self.domain_parts().validate(at, issues);
        one(&self.url, at, "url", issues);
        issues.required(&self.status, at, "status");
        issues.binding(
            &self.status,
            at,
            "status",
            &["draft", "active", "retired", "unknown"],
        );
        issues.required(&self.date, at, "date");
        one(&self.date, at, "date", issues);
        issues.required(&self.kind, at, "kind");
        issues.binding(
            &self.kind,
            at,
            "kind",
            &["instance", "capability", "requirements"],
        );
        each(&self.instantiates, at, "instantiates", issues);
        each(&self.imports, at, "imports", issues);
        one(&self.software, at, "software", issues);
        one(&self.implementation, at, "implementation", issues);
        issues.required(&self.fhir_version, at, "fhirVersion");
        issues.binding(&self.fhir_version, at, "fhirVersion", &["4.0.0", "4.0.1"]);
        issues.required_list(&self.format, at, "format");
        each(&self.format, at, "format", issues);
        each(&self.patch_format, at, "patchFormat", issues);
        each(
            &self.implementation_guide,
            at,
            "implementationGuide",
            issues,
        );
        each(&self.rest, at, "rest", issues);
        if self.rest.is_empty()
            && !self.extra.contains_key("messaging")
            && !self.extra.contains_key("document")
        {
            issues.push(
                IssueType::Invariant,
                at,
                "cpb-1: a capability statement has at least one of rest, messaging or document",
            );
        }
        if self.description.is_none() && self.software.is_none() && self.implementation.is_none() {
            issues.push(IssueType::Invariant, at, "cpb-2: a capability statement has at least one of description, software or implementation");
        }
    }
}

impl Validate for CapabilitySoftware {
    fn validate(&self, at: &Location, issues: &mut Issues) {
        backbone(&self.extension, &self.modifier_extension, at, issues);
        issues.required(&self.name, at, "name");
        one(&self.release_date, at, "releaseDate", issues);
    }
}

impl Validate for CapabilityImplementation {
    fn validate(&self, at: &Location, issues: &mut Issues) {
        backbone(&self.extension, &self.modifier_extension, at, issues);
        issues.required(&self.description, at, "description");
        one(&self.url, at, "url", issues);
        one(&self.custodian, at, "custodian", issues);
    }
}

impl Validate for CapabilityRest {
    fn validate(&self, at: &Location, issues: &mut Issues) {
        backbone(&self.extension, &self.modifier_extension, at, issues);
        issues.required(&self.mode, at, "mode");
        issues.binding(&self.mode, at, "mode", &["client", "server"]);
        one(&self.security, at, "security", issues);
        each(&self.resource, at, "resource", issues);
        for (index, interaction) in self.interaction.iter().enumerate() {
            interaction.check(&at.item("interaction", index), SYSTEM_INTERACTIONS, issues);
        }
        each(&self.search_param, at, "searchParam", issues);
        each(&self.operation, at, "operation", issues);
        each(&self.compartment, at, "compartment", issues);
    }
}

impl Validate for CapabilityResource {
    fn validate(&self, at: &Location, issues: &mut Issues) {
        backbone(&self.extension, &self.modifier_extension, at, issues);
        issues.required(&self.type_, at, "type");
        if let Some(type_) = &self.type_
            && crate::ResourceType::parse(type_.as_str()).is_err()
        {
            issues.push(
                IssueType::CodeInvalid,
                &at.child("type"),
                "type must be an R4 resource type",
            );
        }
        one(&self.profile, at, "profile", issues);
        each(&self.supported_profile, at, "supportedProfile", issues);
        for (index, interaction) in self.interaction.iter().enumerate() {
            interaction.check(&at.item("interaction", index), TYPE_INTERACTIONS, issues);
        }
        issues.binding(
            &self.versioning,
            at,
            "versioning",
            &["no-version", "versioned", "versioned-update"],
        );
        issues.binding(
            &self.conditional_read,
            at,
            "conditionalRead",
            &[
                "not-supported",
                "modified-since",
                "not-match",
                "full-support",
            ],
        );
        issues.binding(
            &self.conditional_delete,
            at,
            "conditionalDelete",
            &["not-supported", "single", "multiple"],
        );
        for (index, policy) in self.reference_policy.iter().enumerate() {
            issues.code_in(
                policy,
                &at.item("referencePolicy", index),
                "referencePolicy",
                &["literal", "logical", "resolves", "enforced", "local"],
            );
        }
        each(&self.search_param, at, "searchParam", issues);
        each(&self.operation, at, "operation", issues);
    }
}

impl CapabilityInteraction {
    fn check(&self, at: &Location, allowed: &[&str], issues: &mut Issues) {
        backbone(&self.extension, &self.modifier_extension, at, issues);
        issues.required(&self.code, at, "code");
        issues.binding(&self.code, at, "code", allowed);
    }
}

impl Validate for CapabilitySearchParam {
    fn validate(&self, at: &Location, issues: &mut Issues) {
        backbone(&self.extension, &self.modifier_extension, at, issues);
        issues.required(&self.name, at, "name");
        one(&self.definition, at, "definition", issues);
        issues.required(&self.type_, at, "type");
        issues.binding(&self.type_, at, "type", SEARCH_PARAM_TYPES);
    }
}

impl Validate for CapabilityOperation {
    fn validate(&self, at: &Location, issues: &mut Issues) {
        backbone(&self.extension, &self.modifier_extension, at, issues);
        issues.required(&self.name, at, "name");
        issues.required(&self.definition, at, "definition");
        one(&self.definition, at, "definition", issues);
    }
}
