//! The R4 resource type names.

mod r4_list;

use std::fmt;

use r4_list::R4_RESOURCE_TYPES;

/// An R4 resource type, such as `Patient`. Only the 146 names of R4 can be made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ResourceType(&'static str);

/// A name that is not an R4 resource type.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a FHIR R4 resource type")]
pub struct UnknownResourceType(pub String);

impl ResourceType {
    pub const PATIENT: Self = Self("Patient");
    pub const IMMUNIZATION: Self = Self("Immunization");
    pub const BUNDLE: Self = Self("Bundle");
    pub const OPERATION_OUTCOME: Self = Self("OperationOutcome");
    pub const CAPABILITY_STATEMENT: Self = Self("CapabilityStatement");

    /// The type with this exact (case-sensitive) name.
    pub fn parse(name: &str) -> Result<Self, UnknownResourceType> {
        R4_RESOURCE_TYPES
            .binary_search(&name)
            .map(|index| Self(R4_RESOURCE_TYPES[index]))
            .map_err(|_| {
                // The name is echoed in errors: keep it short and printable.
                let shown: String = name.chars().take(64).filter(|c| !c.is_control()).collect();
                UnknownResourceType(shown)
            })
    }

    pub fn as_str(self) -> &'static str {
        self.0
    }

    /// Every R4 resource type, in alphabetical order.
    pub fn all() -> impl Iterator<Item = Self> {
        R4_RESOURCE_TYPES.iter().map(|name| Self(name))
    }
}

impl fmt::Display for ResourceType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

impl serde::Serialize for ResourceType {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_list_is_sorted_and_complete() {
        assert!(R4_RESOURCE_TYPES.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(R4_RESOURCE_TYPES.len(), 146);
        for name in [
            "Patient",
            "Immunization",
            "Consent",
            "AuditEvent",
            "VisionPrescription",
            "Account",
        ] {
            assert_eq!(
                ResourceType::parse(name).map(ResourceType::as_str),
                Ok(name)
            );
        }
        for name in [
            "patient",
            "Resource",
            "DomainResource",
            "SubscriptionStatus",
            "",
            "Foo",
        ] {
            assert!(ResourceType::parse(name).is_err(), "{name}");
        }
    }
}
