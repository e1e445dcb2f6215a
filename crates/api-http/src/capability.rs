//! `GET /fhir/metadata`: the CapabilityStatement, generated from the tables the server runs on
//! (the interactions below, which a test checks against the routes, and
//! `fhir_model::search::SEARCH_PARAMETERS`, which search and indexing use), so it cannot drift.

use fhir_model::search::{Protection, SearchParam, search_params};
use fhir_model::{
    CapabilityImplementation, CapabilityInteraction, CapabilityOperation, CapabilityResource,
    CapabilityRest, CapabilityRestSecurity, CapabilitySearchParam, CapabilitySoftware,
    CapabilityStatement, Code, CodeableConcept, DateTime, ResourceType, Uri,
};
use time::OffsetDateTime;

/// Every type-level interaction the server implements, with the route that implements it.
pub(crate) const INTERACTIONS: &[(&str, &str, &str)] = &[
    ("read", "get", "/fhir/{resource_type}/{id}"),
    (
        "vread",
        "get",
        "/fhir/{resource_type}/{id}/_history/{version}",
    ),
    ("update", "put", "/fhir/{resource_type}/{id}"),
    ("patch", "patch", "/fhir/{resource_type}/{id}"),
    // Conditional patch.
    ("patch", "patch", "/fhir/{resource_type}"),
    ("delete", "delete", "/fhir/{resource_type}/{id}"),
    // Conditional delete.
    ("delete", "delete", "/fhir/{resource_type}"),
    (
        "history-instance",
        "get",
        "/fhir/{resource_type}/{id}/_history",
    ),
    ("history-type", "get", "/fhir/{resource_type}/_history"),
    ("create", "post", "/fhir/{resource_type}"),
    ("search-type", "get", "/fhir/{resource_type}"),
    // The same search with its parameters in a form body, for queries too long for a URL.
    ("search-type", "post", "/fhir/{resource_type}/_search"),
];

/// Every system-level interaction, with its route.
pub(crate) const SYSTEM_INTERACTIONS: &[(&str, &str, &str)] = &[
    ("history-system", "get", "/fhir/_history"),
    ("transaction", "post", "/fhir"),
    ("batch", "post", "/fhir"),
];

/// Operations, with their routes: `(name, type or "*" for all, method, route, what it does)`.
pub(crate) const OPERATIONS: &[(&str, &str, &str, &str, &str)] = &[
    (
        "validate",
        "*",
        "post",
        "/fhir/{resource_type}/$validate",
        "Checks a resource without storing it; 200 with every issue in an OperationOutcome.",
    ),
    (
        "erase",
        "Patient",
        "delete",
        "/fhir/Patient/{id}/$erase",
        "Crypto-shreds the patient (GDPR Art. 17): destroys their compartment's data key and \
         index entries; every version of everything in the compartment then answers 410 Gone. \
         DELETE or POST /fhir/Patient/{id}/$erase.",
    ),
    ("erase", "Patient", "post", "/fhir/Patient/{id}/$erase", ""),
    (
        "series-status",
        "Patient",
        "get",
        "/fhir/Patient/{id}/$series-status",
        "The patient's immunization series: per series and target disease, doses given and \
         required, completeness and dose dates (a Parameters resource).",
    ),
    (
        "disclosures",
        "Patient",
        "get",
        "/fhir/Patient/{id}/$disclosures",
        "The patient's accounting of disclosures (HIPAA 164.528): every read, search and \
         history that returned their data, who made it, when and for what purpose, as a \
         Bundle of AuditEvents. Auditors, admins, and the patient themselves.",
    ),
];

/// Parameters every type supports besides its own.
const COMMON_PARAMS: &[(&str, &str, &str)] = &[
    ("_id", "token", "The resource id."),
    (
        "_lastUpdated",
        "date",
        "When the current version was stored, to the microsecond: any date precision (a \
         value stands for the range its precision implies: 2021-03 is the month, \
         …T10:00:00.123Z that millisecond) with eq, ne, gt, ge, lt, le, sa, eb or ap (a \
         tenth of the time between the value and now on each side, at least a day).",
    ),
    (
        "_count",
        "number",
        "Page size: default 20, at most 1000; follow the next link for more. _count=0 \
         answers only how many match (Bundle.total).",
    ),
];

pub(crate) fn capability_statement(base: &str, started: OffsetDateTime) -> CapabilityStatement {
    let code = |c: &str| Some(Code::from(c));
    let resources = ResourceType::all()
        .map(|t| match t.as_str() {
            crate::audit_api::AUDIT_EVENT => audit_event_resource(t),
            _ => resource(t),
        })
        .collect();
    CapabilityStatement {
        status: code("active"),
        date: Some(DateTime::from(records::instant(started))),
        publisher: Some("Cairn".to_owned()),
        kind: code("instance"),
        software: Some(CapabilitySoftware {
            name: Some("Cairn".to_owned()),
            version: Some(env!("CARGO_PKG_VERSION").to_owned()),
            ..CapabilitySoftware::default()
        }),
        implementation: Some(CapabilityImplementation {
            description: Some(
                "Cairn: a compliance-first FHIR R4 server for patient and immunization records"
                    .to_owned(),
            ),
            url: Some(Uri::from(format!("{base}/fhir"))),
            ..CapabilityImplementation::default()
        }),
        fhir_version: code("4.0.1"),
        format: vec![Code::from("application/fhir+json"), Code::from("json")],
        rest: vec![CapabilityRest {
            mode: code("server"),
            documentation: Some(
                "Bodies are encrypted at rest; identifying search parameters are answered from \
                 blind indexes (see each parameter's documentation). Search follows R4: values \
                 separated by commas are alternatives, repeated parameters all apply; chains \
                 (patient.identifier=…) and reverse chains \
                 (_has:Immunization:patient:vaccine-code=…) go one level deep; dates are \
                 compared as instants, and a date without a time (2021-03-01) is that day in \
                 UTC, the server's time zone. POST [type]/_search takes the same parameters as \
                 a form body. POST [type] with search parameters in the query is a conditional \
                 create, as with If-None-Exist."
                    .to_owned(),
            ),
            security: Some(CapabilityRestSecurity {
                cors: Some(false),
                service: vec![CodeableConcept {
                    text: Some("Bearer token (biscuit, SMART v2 scopes)".to_owned()),
                    ..CodeableConcept::default()
                }],
                description: Some(crate::smart::HOW_TO_AUTHENTICATE.to_owned()),
                ..CapabilityRestSecurity::default()
            }),
            resource: resources,
            interaction: SYSTEM_INTERACTIONS
                .iter()
                .map(|(code, _, _)| CapabilityInteraction {
                    code: Some(Code::from(*code)),
                    ..CapabilityInteraction::default()
                })
                .collect(),
            ..CapabilityRest::default()
        }],
        ..CapabilityStatement::default()
    }
}

fn resource(resource_type: ResourceType) -> CapabilityResource {
    let mut codes: Vec<&str> = INTERACTIONS.iter().map(|(code, _, _)| *code).collect();
    // An interaction served on two routes is one interaction.
    codes.dedup();
    let interaction = codes
        .into_iter()
        .map(|code| CapabilityInteraction {
            code: Some(Code::from(code)),
            ..CapabilityInteraction::default()
        })
        .collect();
    let mut search_param: Vec<CapabilitySearchParam> = COMMON_PARAMS
        .iter()
        .map(|(name, kind, doc)| CapabilitySearchParam {
            name: Some((*name).to_owned()),
            type_: Some(Code::from(*kind)),
            documentation: Some((*doc).to_owned()),
            ..CapabilitySearchParam::default()
        })
        .collect();
    search_param.extend(search_params(resource_type).map(search_param_entry));
    let operation = OPERATIONS
        .iter()
        .filter(|(_, t, _, _, doc)| (*t == resource_type.as_str() || *t == "*") && !doc.is_empty())
        .map(|(name, t, _, _, doc)| CapabilityOperation {
            name: Some((*name).to_owned()),
            definition: Some(Uri::from(match *t {
                "*" => format!("http://hl7.org/fhir/OperationDefinition/Resource-{name}"),
                t => format!("OperationDefinition/{t}-{name}"),
            })),
            documentation: Some((*doc).to_owned()),
            ..CapabilityOperation::default()
        })
        .collect();
    CapabilityResource {
        type_: Some(Code::from(resource_type.as_str())),
        interaction,
        versioning: Some(Code::from("versioned")),
        read_history: Some(true),
        update_create: Some(true),
        conditional_create: Some(true),
        conditional_update: Some(true),
        conditional_delete: Some(Code::from("single")),
        search_include: reference_params(resource_type)
            .map(|p| format!("{}:{}", p.resource_type, p.code))
            .collect(),
        search_rev_include: fhir_model::search::SEARCH_PARAMETERS
            .iter()
            .filter(|p| p.kind == fhir_model::search::ParamKind::Reference)
            .map(|p| format!("{}:{}", p.resource_type, p.code))
            .collect(),
        search_param,
        operation,
        ..CapabilityResource::default()
    }
}

/// AuditEvent is the audit log: read and searched, never written by clients.
fn audit_event_resource(resource_type: ResourceType) -> CapabilityResource {
    let interaction = AUDIT_EVENT_INTERACTIONS
        .iter()
        .map(|(code, _, _)| CapabilityInteraction {
            code: Some(Code::from(*code)),
            ..CapabilityInteraction::default()
        })
        .collect();
    let search_param = AUDIT_EVENT_PARAMS
        .iter()
        .map(|(name, kind, doc)| CapabilitySearchParam {
            name: Some((*name).to_owned()),
            type_: Some(Code::from(*kind)),
            documentation: Some((*doc).to_owned()),
            ..CapabilitySearchParam::default()
        })
        .collect();
    CapabilityResource {
        type_: Some(Code::from(resource_type.as_str())),
        documentation: Some(
            "The tamper-evident audit log (auditors and admins): every entry's bytes and \
             inclusion proof are under /audit/entries/{id}."
                .to_owned(),
        ),
        interaction,
        search_param,
        ..CapabilityResource::default()
    }
}

/// The AuditEvent interactions, with their routes.
pub(crate) const AUDIT_EVENT_INTERACTIONS: &[(&str, &str, &str)] = &[
    ("read", "get", "/fhir/AuditEvent/{id}"),
    ("search-type", "get", "/fhir/AuditEvent"),
];

const AUDIT_EVENT_PARAMS: &[(&str, &str, &str)] = &[
    (
        "patient",
        "reference",
        "Entries about this patient: Patient/{id} or the id.",
    ),
    (
        "date",
        "date",
        "When the entry was recorded: eq, ge, gt, le, lt with any date precision.",
    ),
    ("_count", "number", "Page size: default 100, at most 1000."),
];

fn reference_params(resource_type: ResourceType) -> impl Iterator<Item = &'static SearchParam> {
    search_params(resource_type).filter(|p| p.kind == fhir_model::search::ParamKind::Reference)
}

fn search_param_entry(param: &'static SearchParam) -> CapabilitySearchParam {
    use fhir_model::search::ParamKind;
    let how = match (param.protection, param.kind) {
        (Protection::Blind, ParamKind::String) if param.matches_words() => {
            "PHI, blind-indexed: case- and accent-insensitive match of 3 or more characters at \
             the start of any word of any part of the name (name=berg finds van der Berg), or \
             :exact; :contains cannot be answered from keyed hashes."
        }
        (Protection::Blind, ParamKind::String) => {
            "PHI, blind-indexed: case- and accent-insensitive starts-with of the value, 3 or \
             more characters (R4 string search), or :exact; shorter prefixes and :contains \
             cannot be answered from keyed hashes (400)."
        }
        (Protection::Blind, ParamKind::Date) => {
            "PHI, blind-indexed by year, year-month and day: equality on a year, year-month or \
             full date only; ranges and prefixes (gt, lt, ne, ap, …) cannot be answered from \
             keyed hashes (400)."
        }
        (Protection::Blind, _) => {
            "PHI, blind-indexed: exact token match (code, system|code, |code, system|), and \
             :not; no :text."
        }
        (Protection::Plain, ParamKind::String) => {
            "Stored plain (not identifying): case- and accent-insensitive starts-with, or \
             anywhere with :contains."
        }
        (Protection::Plain, ParamKind::Token) => {
            "Stored plain (not identifying): code, system|code, |code or system|; :not; :text \
             matches the start of any word of the coding's display or the concept's text."
        }
        (Protection::Plain, ParamKind::Date) => {
            "Stored plain (not identifying), compared as instants whatever the offset: eq, ne, \
             gt, ge, lt, le, sa, eb, ap, with any precision; a date without a time is that day \
             in UTC; sortable (_sort)."
        }
        (Protection::Plain, ParamKind::Reference) => {
            "Stored plain (an opaque id): Type/id or id; chainable one level \
             (param.child=value)."
        }
    };
    CapabilitySearchParam {
        name: Some(param.code.to_owned()),
        definition: Some(Uri::from(param.definition_url())),
        type_: Some(Code::from(param.kind.code())),
        documentation: Some(format!(
            "{} {how} Values from {}. Every parameter also takes :missing.",
            param.rationale, param.expression
        )),
        ..CapabilitySearchParam::default()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use fhir_model::Resource;

    use super::*;

    #[test]
    fn the_statement_is_valid_fhir_and_lists_the_table() {
        let statement = capability_statement("http://x", OffsetDateTime::UNIX_EPOCH);
        let resource = Resource::CapabilityStatement(Box::new(statement.clone()));
        let issues = resource.validate();
        assert!(issues.is_empty(), "{issues:?}");
        let rest = &statement.rest[0];
        assert_eq!(rest.resource.len(), ResourceType::all().count());
        let patient = rest
            .resource
            .iter()
            .find(|r| r.type_.as_ref().map(Code::as_str) == Some("Patient"))
            .unwrap();
        let names: Vec<_> = patient
            .search_param
            .iter()
            .filter_map(|p| p.name.as_deref())
            .collect();
        for param in search_params(ResourceType::PATIENT) {
            assert!(names.contains(&param.code), "{}", param.code);
        }
        let operations: Vec<_> = patient
            .operation
            .iter()
            .filter_map(|o| o.name.as_deref())
            .collect();
        assert_eq!(
            operations,
            ["validate", "erase", "series-status", "disclosures"]
        );
    }
}
