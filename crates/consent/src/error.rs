//! Why a Consent cannot be compiled. Messages name elements, never their values (a Consent's
//! references and periods are PHI).

/// A Consent this crate cannot enforce.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConsentError {
    /// Not a JSON object with `resourceType` `Consent`.
    #[error("not a Consent resource")]
    NotConsent,
    /// The consent's scope is not `patient-privacy` (research, treatment and advance
    /// directives say nothing about who may see data).
    #[error("the Consent's scope is not patient-privacy")]
    NotPrivacy,
    /// A required element is missing (R4 cardinality, or invariants ppc-1 and ppc-2).
    #[error("Consent.{element} is required")]
    Missing { element: &'static str },
    /// An element has a value this crate cannot read.
    #[error("Consent.{element} is not valid")]
    Invalid { element: String },
}
