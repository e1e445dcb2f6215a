//! OperationOutcome: errors, warnings and information about an interaction.

use super::{backbone, domain_parts};
use crate::datatypes::*;
use crate::outcome::{IssueSeverity, IssueType};
use crate::primitives::{Code, Id, Uri};
use crate::resource::Resource;
use crate::validation::{Issue, Issues, Location, Validate, each, one};

fhir_element! {
    /// A collection of issues about the result of an action.
    @resource = "OperationOutcome"
    pub struct OperationOutcome {
        id: Option<Id> => "id",
        meta: Option<Meta> => "meta",
        implicit_rules: Option<Uri> => "implicitRules",
        language: Option<Code> => "language",
        text: Option<Narrative> => "text",
        contained: Vec<Resource> => "contained",
        extension: Vec<Extension> => "extension",
        modifier_extension: Vec<Extension> => "modifierExtension",
        issue: Vec<OperationOutcomeIssue> => "issue",
    }
}
domain_parts!(OperationOutcome);

fhir_element! {
    /// One error, warning or piece of information.
    pub struct OperationOutcomeIssue {
        id: Option<String> => "id",
        extension: Vec<Extension> => "extension",
        modifier_extension: Vec<Extension> => "modifierExtension",
        severity: Option<Code> => "severity",
        code: Option<Code> => "code",
        details: Option<CodeableConcept> => "details",
        diagnostics: Option<String> => "diagnostics",
        location: Vec<String> => "location",
        expression: Vec<String> => "expression",
    }
}

impl OperationOutcome {
    /// An outcome reporting `issues`. Each location is given both as `expression` (R4's
    /// FHIRPath) and as the deprecated `location`, which older clients still read.
    pub fn from_issues<'a>(issues: impl IntoIterator<Item = &'a Issue>) -> Self {
        let issue = issues
            .into_iter()
            .map(|i| OperationOutcomeIssue {
                severity: Some(Code::from(i.severity.code())),
                code: Some(Code::from(i.code.code())),
                diagnostics: Some(i.diagnostics.clone()),
                location: i.location.iter().cloned().collect(),
                expression: i.location.iter().cloned().collect(),
                ..OperationOutcomeIssue::default()
            })
            .collect();
        Self {
            issue,
            ..Self::default()
        }
    }

    /// An outcome with a single issue.
    pub fn single(
        severity: IssueSeverity,
        code: IssueType,
        diagnostics: impl Into<String>,
    ) -> Self {
        Self::from_issues([&Issue {
            severity,
            code,
            location: None,
            diagnostics: diagnostics.into(),
        }])
    }
}

const ISSUE_TYPES: &[&str] = &[
    "invalid",
    "structure",
    "required",
    "value",
    "invariant",
    "security",
    "login",
    "unknown",
    "expired",
    "forbidden",
    "suppressed",
    "processing",
    "not-supported",
    "duplicate",
    "multiple-matches",
    "not-found",
    "deleted",
    "too-long",
    "code-invalid",
    "extension",
    "too-costly",
    "business-rule",
    "conflict",
    "transient",
    "lock-error",
    "no-store",
    "exception",
    "timeout",
    "incomplete",
    "throttled",
    "informational",
];

impl Validate for OperationOutcome {
    fn validate(&self, at: &Location, issues: &mut Issues) {
        self.domain_parts().validate(at, issues);
        issues.required_list(&self.issue, at, "issue");
        each(&self.issue, at, "issue", issues);
    }
}

impl Validate for OperationOutcomeIssue {
    fn validate(&self, at: &Location, issues: &mut Issues) {
        backbone(&self.extension, &self.modifier_extension, at, issues);
        issues.required(&self.severity, at, "severity");
        issues.binding(
            &self.severity,
            at,
            "severity",
            &["fatal", "error", "warning", "information"],
        );
        issues.required(&self.code, at, "code");
        issues.binding(&self.code, at, "code", ISSUE_TYPES);
        one(&self.details, at, "details", issues);
    }
}
