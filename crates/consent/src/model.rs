//! A Consent compiled into what deciding needs: codes, references and instant ranges, nothing
//! left to parse at decision time.

use time::OffsetDateTime;

/// A coded value (`system` and `code`); a rule's code without a system matches any system.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Code {
    pub system: Option<String>,
    pub code: String,
}

impl Code {
    pub fn new(system: Option<&str>, code: &str) -> Self {
        Code {
            system: system.map(str::to_owned),
            code: code.to_owned(),
        }
    }

    /// Whether `other` is this code (a rule's code without a system matches any system).
    pub fn matches(&self, other: &Code) -> bool {
        self.code == other.code && (self.system.is_none() || self.system == other.system)
    }
}

/// A half-open instant range `[start, end)`; an end left open is `None`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub start: Option<OffsetDateTime>,
    pub end: Option<OffsetDateTime>,
}

impl Window {
    pub fn contains(&self, at: OffsetDateTime) -> bool {
        self.start.is_none_or(|s| s <= at) && self.end.is_none_or(|e| at < e)
    }

    /// Whether `[low, high)` and this window share an instant.
    pub fn overlaps(&self, low: OffsetDateTime, high: OffsetDateTime) -> bool {
        self.start.is_none_or(|s| s < high) && self.end.is_none_or(|e| low < e)
    }
}

/// Permit or deny.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    Permit,
    Deny,
}

/// `Consent.provision.actor`: who the rule is about (a reference), and in what role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActorRule {
    pub role: Vec<Code>,
    /// `Type/id` (`Practitioner/…`, `Organization/…`, `Patient/…`, `RelatedPerson/…`).
    pub reference: String,
}

/// `Consent.provision.data.meaning`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataMeaning {
    /// The resource itself.
    Instance,
    /// The resource itself, and resources that refer to it.
    Related,
    /// Resources that refer to it (and so depend on it), and the resource itself.
    Dependents,
    /// Resources authored by the referenced party.
    AuthoredBy,
}

/// `Consent.provision.data`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataRule {
    pub meaning: DataMeaning,
    /// `Type/id`.
    pub reference: String,
}

/// One node of a consent's provision tree: its conditions (empty: anything), its effect when
/// they match, and its exceptions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Provision {
    /// The effect when this provision matches (its `type`). Without one, a nested provision
    /// has its parent's, and the root the departure from the deployment's baseline (see the
    /// crate's documentation).
    pub effect: Option<Effect>,
    pub period: Option<Window>,
    pub actors: Vec<ActorRule>,
    pub actions: Vec<Code>,
    pub security_labels: Vec<Code>,
    pub purposes: Vec<Code>,
    /// Resource types (`class` codes of `http://hl7.org/fhir/resource-types`) and other
    /// classes (MIME types), as given.
    pub classes: Vec<Code>,
    pub codes: Vec<Code>,
    pub data_period: Option<Window>,
    pub data: Vec<DataRule>,
    pub exceptions: Vec<Provision>,
}

/// Which consent (and which version of it) a decision used: ids only, no PHI, for the audit
/// log.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConsentRef {
    pub id: String,
    pub version: u64,
}

/// A Consent ready to decide with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompiledConsent {
    pub consent: ConsentRef,
    /// The patient id (`Consent.patient` is `Patient/<id>`).
    pub patient: String,
    /// Only `active` consents are in force; `draft`, `proposed`, `rejected`, `inactive` and
    /// `entered-in-error` ones say nothing.
    pub active: bool,
    /// `Consent.dateTime`, when given: the newer of two consents is the one the patient gave
    /// last.
    pub given: Option<OffsetDateTime>,
    pub root: Provision,
}
