//! Patient consent: FHIR R4 `Consent` resources (scope `patient-privacy`) compiled into rules,
//! and the decision whether a caller may see a resource.
//!
//! - [`compile`] reads a Consent (status, period, policy rule, the `provision` tree) into a
//!   [`CompiledConsent`], or says why it cannot be enforced ([`ConsentError`], never with PHI).
//! - [`decide`] answers, for one [`Context`] (who asks, as what, for which purpose, to do what)
//!   and one resource's [`Facts`], permit or deny, the consents that applied and why.
//!
//! # How a consent decides
//!
//! A consent is *in force* when its status is `active` and the moment of the request is within
//! its root provision's `period`. Its root provision's rule applies when every condition it
//! states matches (a condition it leaves out matches anything): the actor (one of its actors'
//! references is the caller, the organization the caller belongs to, or the Practitioner they
//! act as; with a role, the role must be the caller's too), the action, the purpose of use, the
//! resource's class (type), codes, security labels, the data period (the resource's dates
//! overlap it) and the data (a reference to the resource itself, or for `meaning` `related` or
//! `dependents`, a resource referring to it). Nested provisions are exceptions: the deepest
//! provision that matches decides, with its own `type`.
//!
//! A consent is the patient's departure from the deployment's [`Baseline`]: a root provision
//! without a `type` denies where the baseline permits (opt-out: the patient withholds) and
//! permits where it denies (opt-in: the patient grants); a nested provision without a `type`
//! has its parent's effect. (The policy rule is required, ppc-1, but does not set the effect:
//! the R4 examples write OPTIN and OPTOUT over withholdings and grants alike.)
//!
//! Several consents of one patient: each consent in force whose rule applies votes; **a deny
//! wins over any permit** (a patient's withholding is never outvoted by an older or broader
//! permission). When no consent applies, the deployment's [`Baseline`] for the purpose of use
//! decides: `opt-out` permits, `opt-in` denies.
//!
//! No IO, no runtime, no global state: the server decides with it inside its core, and any
//! other service can decide the same way from the same Consents.

mod compile;
mod decide;
mod error;
mod model;

pub use compile::{check, compile};
pub use decide::{Baseline, Baselines, Context, Decision, Facts, Reason, decide};
pub use error::ConsentError;
pub use model::{
    ActorRule, Code, CompiledConsent, ConsentRef, DataMeaning, DataRule, Effect, Provision, Window,
};

#[cfg(test)]
mod tests;
