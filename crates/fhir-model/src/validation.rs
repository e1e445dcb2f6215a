//! Validation: rules over typed elements that report every problem at once, each with a
//! FHIRPath-like location (`Patient.name[0].given[1]`).
//!
//! Diagnostics name the rule and the element, never the offending value: a value may be PHI, and
//! issues end up in responses that are logged by clients and proxies.

use crate::element::Extra;
use crate::outcome::{IssueSeverity, IssueType};
use crate::primitives::{
    Base64Binary, Code, Date, DateTime, Id, Instant, PositiveInt, UnsignedInt, Uri,
};

/// A FHIRPath-like location inside a resource, such as `Immunization.protocolApplied[0]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location(String);

impl Location {
    /// The root of a resource of the given type.
    pub fn root(resource_type: &str) -> Self {
        Self(resource_type.to_owned())
    }

    /// A child element.
    pub fn child(&self, name: &str) -> Self {
        Self(format!("{}.{name}", self.0))
    }

    /// An item of a repeating element.
    pub fn item(&self, name: &str, index: usize) -> Self {
        Self(format!("{}.{name}[{index}]", self.0))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// One problem found in a resource or a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issue {
    pub severity: IssueSeverity,
    pub code: IssueType,
    /// Where, as a FHIRPath expression; `None` when the problem is not inside the resource.
    pub location: Option<String>,
    /// What is wrong, in words an integrator can act on. Never contains submitted values.
    pub diagnostics: String,
}

impl Issue {
    pub fn error(
        code: IssueType,
        location: Option<&Location>,
        diagnostics: impl Into<String>,
    ) -> Self {
        Self {
            severity: IssueSeverity::Error,
            code,
            location: location.map(|l| l.0.clone()),
            diagnostics: diagnostics.into(),
        }
    }

    /// The same issue at `location`.
    pub(crate) fn located(mut self, location: String) -> Self {
        self.location = Some(location);
        self
    }

    pub fn is_error(&self) -> bool {
        matches!(self.severity, IssueSeverity::Error | IssueSeverity::Fatal)
    }
}

/// Collects issues while walking a resource: the first [`MAX_ISSUES`], and a count of the rest,
/// so that a resource with millions of faults costs a short answer.
///
/// [`MAX_ISSUES`]: crate::json_reader::MAX_ISSUES
#[derive(Debug, Default)]
pub(crate) struct Issues {
    listed: Vec<Issue>,
    omitted: usize,
}

impl Issues {
    pub(crate) fn push(&mut self, code: IssueType, at: &Location, diagnostics: impl Into<String>) {
        if self.listed.len() < crate::json_reader::MAX_ISSUES {
            self.listed.push(Issue::error(code, Some(at), diagnostics));
        } else {
            self.omitted += 1;
        }
    }

    /// The issues listed, and one more that counts those left out.
    pub(crate) fn into_vec(mut self) -> Vec<Issue> {
        if self.omitted > 0 {
            self.listed.push(Issue::error(
                IssueType::TooCostly,
                None,
                format!(
                    "{} more issue(s) not listed; correct these and validate again",
                    self.omitted
                ),
            ));
        }
        self.listed
    }

    pub(crate) fn required<T>(&mut self, value: &Option<T>, at: &Location, name: &str) {
        if value.is_none() {
            self.push(
                IssueType::Required,
                &at.child(name),
                format!("{name} is required"),
            );
        }
    }

    pub(crate) fn required_list<T>(&mut self, value: &[T], at: &Location, name: &str) {
        if value.is_empty() {
            self.push(
                IssueType::Required,
                &at.child(name),
                format!("at least one {name} is required"),
            );
        }
    }

    /// A choice element (`occurrence[x]`) given as more than one of its types.
    pub(crate) fn at_most_one_choice(&mut self, at: &Location, name: &str, present: &[bool]) {
        if present.iter().filter(|p| **p).count() > 1 {
            self.push(
                IssueType::Structure,
                &at.child(&format!("{name}[x]")),
                format!("{name}[x] may have only one type, but several were given"),
            );
        }
    }

    /// A code from a required binding.
    pub(crate) fn binding(
        &mut self,
        value: &Option<Code>,
        at: &Location,
        name: &str,
        allowed: &[&str],
    ) {
        if let Some(code) = value {
            self.code_in(code, &at.child(name), name, allowed);
        }
    }

    pub(crate) fn code_in(&mut self, code: &Code, at: &Location, name: &str, allowed: &[&str]) {
        if !allowed.contains(&code.as_str()) {
            self.push(
                IssueType::CodeInvalid,
                at,
                format!("{name} must be one of: {}", allowed.join(", ")),
            );
        }
    }
}

/// Checks an element and everything in it.
pub(crate) trait Validate {
    fn validate(&self, at: &Location, issues: &mut Issues);
}

impl<T: Validate> Validate for Option<T> {
    fn validate(&self, at: &Location, issues: &mut Issues) {
        if let Some(value) = self {
            value.validate(at, issues);
        }
    }
}

impl<T: Validate> Validate for Box<T> {
    fn validate(&self, at: &Location, issues: &mut Issues) {
        (**self).validate(at, issues);
    }
}

/// Validates a repeating element: `items` is the field, `at` its parent, `name` its JSON name.
pub(crate) fn each<T: Validate>(items: &[T], at: &Location, name: &str, issues: &mut Issues) {
    for (index, item) in items.iter().enumerate() {
        item.validate(&at.item(name, index), issues);
    }
}

/// A single element: `field.validate(&at.child(name))` made shorter.
pub(crate) fn one<T: Validate>(item: &Option<T>, at: &Location, name: &str, issues: &mut Issues) {
    if let Some(item) = item {
        item.validate(&at.child(name), issues);
    }
}

macro_rules! format_rule {
    ($ty:ty, $what:literal) => {
        impl Validate for $ty {
            fn validate(&self, at: &Location, issues: &mut Issues) {
                if !self.is_valid() {
                    issues.push(IssueType::Value, at, concat!("not a valid ", $what));
                }
            }
        }
    };
}

format_rule!(Id, "id (1-64 characters of A-Z, a-z, 0-9, '-', '.')");
format_rule!(Code, "code (no leading, trailing or repeated whitespace)");
format_rule!(Uri, "uri (no whitespace)");
format_rule!(
    Date,
    "date (YYYY, YYYY-MM or YYYY-MM-DD, a real calendar date)"
);
format_rule!(
    DateTime,
    "dateTime (a date, or YYYY-MM-DDThh:mm:ss with a time zone such as Z or +01:00)"
);
format_rule!(
    Instant,
    "instant (YYYY-MM-DDThh:mm:ss[.sss] with a time zone)"
);
format_rule!(Base64Binary, "base64Binary");

impl Validate for PositiveInt {
    fn validate(&self, at: &Location, issues: &mut Issues) {
        if !self.is_valid() {
            issues.push(
                IssueType::Value,
                at,
                "not a valid positiveInt (1 to 2147483647)",
            );
        }
    }
}

impl Validate for UnsignedInt {
    fn validate(&self, at: &Location, issues: &mut Issues) {
        if !self.is_valid() {
            issues.push(
                IssueType::Value,
                at,
                "not a valid unsignedInt (0 to 2147483647)",
            );
        }
    }
}

impl Validate for String {
    fn validate(&self, _at: &Location, _issues: &mut Issues) {
        // Empty and whitespace-only strings are caught by the JSON shape check for every element,
        // typed or not (see json_reader.rs).
    }
}

impl Validate for bool {
    fn validate(&self, _at: &Location, _issues: &mut Issues) {}
}

impl Validate for crate::primitives::Decimal {
    fn validate(&self, _at: &Location, _issues: &mut Issues) {}
}

impl Validate for crate::primitives::Integer {
    fn validate(&self, _at: &Location, _issues: &mut Issues) {}
}

/// `extra` members are not modelled, so only their JSON shape is checked (json_reader.rs).
impl Validate for Extra {
    fn validate(&self, _at: &Location, _issues: &mut Issues) {}
}
