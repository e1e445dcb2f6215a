//! The typed resources.

mod bundle;
mod capability_statement;
mod consent;
mod immunization;
mod operation_outcome;
mod patient;

pub use bundle::*;
pub use capability_statement::*;
pub(crate) use consent::validate_consent;
pub use immunization::*;
pub use operation_outcome::*;
pub use patient::*;

use crate::datatypes::{Extension, Meta, Narrative};
use crate::outcome::IssueType;
use crate::primitives::{Code, Id, Uri};
use crate::resource::Resource;
use crate::validation::{Issues, Location, Validate, each, one};

/// The elements every DomainResource has, validated the same way for each typed resource.
pub(crate) struct DomainParts<'a> {
    pub id: &'a Option<Id>,
    pub meta: &'a Option<Meta>,
    pub implicit_rules: &'a Option<Uri>,
    pub language: &'a Option<Code>,
    pub text: &'a Option<Narrative>,
    pub contained: &'a [Resource],
    pub extension: &'a [Extension],
    pub modifier_extension: &'a [Extension],
}

impl DomainParts<'_> {
    pub(crate) fn validate(&self, at: &Location, issues: &mut Issues) {
        one(self.id, at, "id", issues);
        one(self.meta, at, "meta", issues);
        one(self.implicit_rules, at, "implicitRules", issues);
        one(self.language, at, "language", issues);
        one(self.text, at, "text", issues);
        for (index, resource) in self.contained.iter().enumerate() {
            let here = at.item("contained", index);
            // dom-2, dom-4: contained resources have no contained resources and no meta.versionId
            // or meta.lastUpdated of their own.
            resource.validate_at(&here, issues);
            if resource
                .meta()
                .is_some_and(|m| m.version_id.is_some() || m.last_updated.is_some())
            {
                issues.push(
                    IssueType::Invariant,
                    &here,
                    "dom-4: a contained resource has no meta.versionId or meta.lastUpdated",
                );
            }
            if resource.has_contained() {
                issues.push(
                    IssueType::Invariant,
                    &here,
                    "dom-2: a contained resource has no contained resources",
                );
            }
        }
        each(self.extension, at, "extension", issues);
        each(self.modifier_extension, at, "modifierExtension", issues);
    }
}

/// Declares `domain_parts()` for a typed resource, naming its DomainResource fields.
macro_rules! domain_parts {
    ($ty:ty) => {
        impl $ty {
            pub(crate) fn domain_parts(&self) -> $crate::resources::DomainParts<'_> {
                $crate::resources::DomainParts {
                    id: &self.id,
                    meta: &self.meta,
                    implicit_rules: &self.implicit_rules,
                    language: &self.language,
                    text: &self.text,
                    contained: &self.contained,
                    extension: &self.extension,
                    modifier_extension: &self.modifier_extension,
                }
            }
        }
    };
}
pub(crate) use domain_parts;

/// A BackboneElement's own `extension` and `modifierExtension`.
pub(crate) fn backbone(
    extension: &[Extension],
    modifier_extension: &[Extension],
    at: &Location,
    issues: &mut Issues,
) {
    each(extension, at, "extension", issues);
    each(modifier_extension, at, "modifierExtension", issues);
}

impl Validate for Resource {
    fn validate(&self, at: &Location, issues: &mut Issues) {
        self.validate_at(at, issues);
    }
}
