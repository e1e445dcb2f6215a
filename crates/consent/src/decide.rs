//! Deciding one request for one resource from its patient's compiled consents.

use time::OffsetDateTime;

use crate::model::{
    ActorRule, Code, CompiledConsent, ConsentRef, DataMeaning, DataRule, Effect, Provision,
};

/// What a deployment decides when no consent of the patient applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Baseline {
    /// Permit unless a consent denies (implied consent, the usual registry model).
    OptOut,
    /// Deny unless a consent permits (express consent).
    OptIn,
    /// Permitted by law whatever the consents say (public-health reporting in most
    /// jurisdictions): consents are not consulted.
    Mandated,
}

/// The deployment's baselines: one for every purpose of use, and exceptions per purpose.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Baselines {
    pub default: Baseline,
    /// Purpose-of-use codes (HL7 v3 ActReason, e.g. `PUBHLTH`) with their own baseline.
    pub by_purpose: Vec<(String, Baseline)>,
}

impl Baselines {
    /// The baseline for a request of `purpose`.
    pub fn for_purpose(&self, purpose: Option<&Code>) -> Baseline {
        purpose
            .and_then(|p| self.by_purpose.iter().find(|(code, _)| *code == p.code))
            .map_or(self.default, |(_, baseline)| *baseline)
    }
}

/// Who asks, as what, why and to do what.
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    /// References that identify the caller: themselves (`Practitioner/…`, `Patient/…`,
    /// `RelatedPerson/…`), the Practitioner they act as, the organization they act for.
    pub caller: &'a [String],
    /// The purpose of use (HL7 v3 ActReason: `TREAT`, `ETREAT`, `PUBHLTH`, …).
    pub purpose: Option<&'a Code>,
    /// The action (`http://terminology.hl7.org/CodeSystem/consentaction`: `access`, `use`,
    /// `disclose`, `correct`, `collect`).
    pub action: &'a Code,
    /// The moment of the request.
    pub at: OffsetDateTime,
}

/// What deciding needs of a resource.
#[derive(Debug, Clone, Copy)]
pub struct Facts<'a> {
    pub resource_type: &'a str,
    /// `Type/id`.
    pub reference: &'a str,
    /// The instant ranges of its clinically relevant dates (`[low, high)`).
    pub dates: &'a [(OffsetDateTime, OffsetDateTime)],
    pub codes: &'a [Code],
    pub security_labels: &'a [Code],
    /// Its references to other resources (`Type/id`), for `data` rules of meaning `related`
    /// and `dependents`.
    pub references: &'a [String],
    /// The parties it comes from (author, performer, recorder, custodian organization), for
    /// actors in the custodian or author role and `data` rules of meaning `authoredby`.
    pub sources: &'a [String],
}

/// Why a decision came out as it did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// A consent in force permits, and none denies.
    Consented,
    /// A consent in force denies.
    Withheld,
    /// No consent applies: the deployment's baseline for the purpose decided.
    Baseline(Baseline),
}

/// Permit or deny, the consents that applied (ids and versions, sorted), and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub effect: Effect,
    /// With [`Reason::Withheld`], the consents that deny; with [`Reason::Consented`], those
    /// that permit; empty when the baseline decided.
    pub applied: Vec<ConsentRef>,
    pub reason: Reason,
}

impl Decision {
    pub fn permits(&self) -> bool {
        self.effect == Effect::Permit
    }
}

/// Decides `context` for the resource of `facts` from its patient's `consents` (see the
/// crate's documentation for the rules): a deny of any consent in force wins; else a permit;
/// else the baseline.
pub fn decide(
    consents: &[CompiledConsent],
    baselines: &Baselines,
    context: &Context<'_>,
    facts: &Facts<'_>,
) -> Decision {
    let baseline = baselines.for_purpose(context.purpose);
    if baseline == Baseline::Mandated {
        return Decision {
            effect: Effect::Permit,
            applied: Vec::new(),
            reason: Reason::Baseline(baseline),
        };
    }
    // A consent is the patient's departure from the baseline: a root provision without a type
    // denies where the baseline permits, and permits where it denies.
    let departure = match baseline {
        Baseline::OptOut | Baseline::Mandated => Effect::Deny,
        Baseline::OptIn => Effect::Permit,
    };
    let mut permits = Vec::new();
    let mut denies = Vec::new();
    for consent in consents.iter().filter(|c| c.active) {
        if !consent.root.period.is_none_or(|p| p.contains(context.at)) {
            continue;
        }
        match vote(&consent.root, departure, context, facts) {
            Some(Effect::Permit) => permits.push(consent.consent.clone()),
            Some(Effect::Deny) => denies.push(consent.consent.clone()),
            None => {}
        }
    }
    let (effect, mut applied, reason) = if !denies.is_empty() {
        (Effect::Deny, denies, Reason::Withheld)
    } else if !permits.is_empty() {
        (Effect::Permit, permits, Reason::Consented)
    } else {
        let effect = match baseline {
            Baseline::OptIn => Effect::Deny,
            Baseline::OptOut | Baseline::Mandated => Effect::Permit,
        };
        (effect, Vec::new(), Reason::Baseline(baseline))
    };
    applied.sort();
    Decision {
        effect,
        applied,
        reason,
    }
}

/// The effect of the deepest matching provision under `provision`, if `provision` matches;
/// `inherited` is its effect when it has no type.
fn vote(
    provision: &Provision,
    inherited: Effect,
    context: &Context<'_>,
    facts: &Facts<'_>,
) -> Option<Effect> {
    if !matches(provision, context, facts) {
        return None;
    }
    let effect = provision.effect.unwrap_or(inherited);
    // Exceptions in order; the first that matches decides (with its own exceptions).
    Some(
        provision
            .exceptions
            .iter()
            .find_map(|nested| vote(nested, effect, context, facts))
            .unwrap_or(effect),
    )
}

/// Whether every condition `provision` states holds (an absent condition holds).
fn matches(provision: &Provision, context: &Context<'_>, facts: &Facts<'_>) -> bool {
    let any = |rules: &[Code], values: &[&Code]| {
        rules.is_empty() || rules.iter().any(|r| values.iter().any(|v| r.matches(v)))
    };
    provision.period.is_none_or(|p| p.contains(context.at))
        && actors_match(&provision.actors, context, facts)
        && any(&provision.actions, &[context.action])
        && (provision.purposes.is_empty()
            || context
                .purpose
                .is_some_and(|p| any(&provision.purposes, &[p])))
        && any(
            &provision.security_labels,
            &facts.security_labels.iter().collect::<Vec<_>>(),
        )
        && any(&provision.codes, &facts.codes.iter().collect::<Vec<_>>())
        && classes_match(&provision.classes, facts)
        && provision.data_period.is_none_or(|w| {
            facts
                .dates
                .iter()
                .any(|(low, high)| w.overlaps(*low, *high))
        })
        && (provision.data.is_empty() || provision.data.iter().any(|d| data_matches(d, facts)))
}

/// Roles whose actor is where the data comes from, not who receives it (HL7 v3
/// ParticipationType): custodian, author, informant, performer, legal authenticator.
const SOURCE_ROLES: [&str; 5] = ["CST", "AUT", "INF", "PRF", "LA"];

fn is_source(actor: &ActorRule) -> bool {
    actor
        .role
        .iter()
        .any(|r| SOURCE_ROLES.contains(&r.code.as_str()))
}

/// The actors who receive (any of them must be the caller) and those the data comes from
/// (any of them must be a source of the resource): each kind that the provision names must
/// match.
fn actors_match(actors: &[ActorRule], context: &Context<'_>, facts: &Facts<'_>) -> bool {
    let (sources, recipients): (Vec<&ActorRule>, Vec<&ActorRule>) =
        actors.iter().partition(|a| is_source(a));
    (recipients.is_empty()
        || recipients
            .iter()
            .any(|a| context.caller.contains(&a.reference)))
        && (sources.is_empty() || sources.iter().any(|a| facts.sources.contains(&a.reference)))
}

const RESOURCE_TYPES: &str = "http://hl7.org/fhir/resource-types";

/// A class is a resource type (`http://hl7.org/fhir/resource-types`, or no system); other
/// classes (MIME types of documents) name nothing this server stores as such.
fn classes_match(classes: &[Code], facts: &Facts<'_>) -> bool {
    classes.is_empty()
        || classes.iter().any(|c| {
            c.system.as_deref().is_none_or(|s| s == RESOURCE_TYPES) && c.code == facts.resource_type
        })
}

fn data_matches(rule: &DataRule, facts: &Facts<'_>) -> bool {
    let itself = rule.reference == facts.reference;
    let refers = facts.references.contains(&rule.reference);
    match rule.meaning {
        DataMeaning::Instance => itself,
        DataMeaning::Related | DataMeaning::Dependents => itself || refers,
        DataMeaning::AuthoredBy => facts.sources.contains(&rule.reference),
    }
}
