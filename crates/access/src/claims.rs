//! What a token says about its holder: subject, role, organisation, patient compartment,
//! SMART-style scopes, purpose of use and lifetime.

use std::fmt;

use time::OffsetDateTime;

use crate::error::ClaimError;

/// What a token's holder is, which decides what it may do before scopes narrow it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    /// Token and key management (issuing, revoking, erasure by key destruction); no clinical
    /// data.
    Admin,
    /// Reads and writes clinical data, for treatment (TREAT) or in an emergency (ETREAT).
    Clinician,
    /// Registers patients and immunizations: create, read, update, search; never delete.
    Registrar,
    /// The audit log and compliance evidence (access reviews); no PHI.
    Auditor,
    /// A patient reading their own compartment, nothing else.
    Patient,
    /// An integration (a feed, another registry): exactly what its `system/` scopes say.
    System,
}

impl Role {
    pub const ALL: [Role; 6] = [
        Role::Admin,
        Role::Clinician,
        Role::Registrar,
        Role::Auditor,
        Role::Patient,
        Role::System,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Clinician => "clinician",
            Role::Registrar => "registrar",
            Role::Auditor => "auditor",
            Role::Patient => "patient",
            Role::System => "system",
        }
    }

    pub fn parse(text: &str) -> Result<Self, ClaimError> {
        Role::ALL
            .into_iter()
            .find(|role| role.as_str() == text)
            .ok_or_else(|| ClaimError::UnknownRole(text.to_owned()))
    }

    /// The scope context a role's scopes must use: `patient/`, `system/` or `user/`.
    pub fn scope_context(self) -> ScopeContext {
        match self {
            Role::Patient => ScopeContext::Patient,
            Role::System => ScopeContext::System,
            _ => ScopeContext::User,
        }
    }

    /// Whether the role touches clinical data at all (and so takes scopes).
    pub fn is_clinical(self) -> bool {
        !matches!(self, Role::Admin | Role::Auditor)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One SMART v2 interaction class: create, read, update, delete, search.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Action {
    Create,
    Read,
    Update,
    Delete,
    Search,
}

impl Action {
    pub const ALL: [Action; 5] = [
        Action::Create,
        Action::Read,
        Action::Update,
        Action::Delete,
        Action::Search,
    ];

    pub fn letter(self) -> char {
        match self {
            Action::Create => 'c',
            Action::Read => 'r',
            Action::Update => 'u',
            Action::Delete => 'd',
            Action::Search => 's',
        }
    }

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Action::Create => "c",
            Action::Read => "r",
            Action::Update => "u",
            Action::Delete => "d",
            Action::Search => "s",
        }
    }
}

/// A set of actions, written as SMART v2 writes them: a non-empty subsequence of `cruds`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Actions(u8);

impl Actions {
    pub const ALL: Actions = Actions(0b1_1111);
    /// Read and search: what `--read-only` leaves.
    pub const READ_ONLY: Actions = Actions(0b1_0010);

    pub fn contains(self, action: Action) -> bool {
        self.0 & bit(action) != 0
    }

    pub fn with(self, action: Action) -> Self {
        Actions(self.0 | bit(action))
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// `cruds` letters in canonical order; SMART v1 `read`, `write` and `*` are accepted too.
    pub fn parse(text: &str) -> Result<Self, ClaimError> {
        let bad = || ClaimError::BadActions(text.to_owned());
        match text {
            "read" => return Ok(Actions::READ_ONLY),
            "write" => {
                return Ok(Actions::default()
                    .with(Action::Create)
                    .with(Action::Update)
                    .with(Action::Delete));
            }
            "*" => return Ok(Actions::ALL),
            _ => {}
        }
        let mut actions = Actions::default();
        let mut rest = Action::ALL.iter();
        for letter in text.chars() {
            // Each letter at most once, in the order c, r, u, d, s.
            let action = rest.find(|a| a.letter() == letter).ok_or_else(bad)?;
            actions = actions.with(*action);
        }
        if actions.is_empty() {
            return Err(bad());
        }
        Ok(actions)
    }
}

fn bit(action: Action) -> u8 {
    match action {
        Action::Create => 1,
        Action::Read => 2,
        Action::Update => 4,
        Action::Delete => 8,
        Action::Search => 16,
    }
}

impl fmt::Display for Actions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for action in Action::ALL {
            if self.contains(action) {
                write!(f, "{}", action.letter())?;
            }
        }
        Ok(())
    }
}

/// Whose context a scope is granted in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ScopeContext {
    Patient,
    User,
    System,
}

impl ScopeContext {
    pub fn as_str(self) -> &'static str {
        match self {
            ScopeContext::Patient => "patient",
            ScopeContext::User => "user",
            ScopeContext::System => "system",
        }
    }
}

/// A SMART v2-style scope: `patient|user|system/<Type|*>.<cruds>`. Scopes narrow what a role
/// allows; they never widen it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Scope {
    pub context: ScopeContext,
    /// `None` for `*`: every resource type.
    pub resource_type: Option<String>,
    pub actions: Actions,
}

impl Scope {
    pub fn parse(text: &str) -> Result<Self, ClaimError> {
        let bad = || ClaimError::BadScope(text.to_owned());
        let (context, rest) = text.split_once('/').ok_or_else(bad)?;
        let context = match context {
            "patient" => ScopeContext::Patient,
            "user" => ScopeContext::User,
            "system" => ScopeContext::System,
            _ => return Err(bad()),
        };
        let (resource, actions) = rest.split_once('.').ok_or_else(bad)?;
        let resource_type = match resource {
            "*" => None,
            name if is_type_name(name) => Some(name.to_owned()),
            _ => return Err(bad()),
        };
        let actions = Actions::parse(actions).map_err(|_| bad())?;
        Ok(Scope {
            context,
            resource_type,
            actions,
        })
    }

    /// Every type, every action, in `context`: what a token without `--scope` carries.
    pub fn everything(context: ScopeContext) -> Self {
        Scope {
            context,
            resource_type: None,
            actions: Actions::ALL,
        }
    }

    pub(crate) fn type_pattern(&self) -> &str {
        self.resource_type.as_deref().unwrap_or("*")
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}/{}.{}",
            self.context.as_str(),
            self.type_pattern(),
            self.actions
        )
    }
}

/// A FHIR resource type name's shape (`Patient`); which types exist is the server's business.
fn is_type_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_uppercase())
        && chars.all(|c| c.is_ascii_alphanumeric())
        && name.len() <= 64
}

/// A purpose of use (HL7 v3 PurposeOfUse), as a token states it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Purpose(String);

/// The HL7 v3 PurposeOfUse codes a token may carry. ETREAT is break-glass.
pub const PURPOSES: [&str; 17] = [
    "TREAT",
    "ETREAT",
    "CAREMGT",
    "HPAYMT",
    "HOPERAT",
    "HSYSADMIN",
    "PUBHLTH",
    "HRESCH",
    "PATRQT",
    "FAMRQT",
    "PWATRNY",
    "HLEGAL",
    "HCOMPL",
    "HACCRED",
    "COVERAGE",
    "SYSDEV",
    "TRAIN",
];

impl Purpose {
    pub fn parse(text: &str) -> Result<Self, ClaimError> {
        PURPOSES
            .contains(&text)
            .then(|| Purpose(text.to_owned()))
            .ok_or_else(|| ClaimError::UnknownPurpose(text.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Emergency access ("break the glass"): allowed only where the role allows it, and
    /// always flagged.
    pub fn is_break_glass(&self) -> bool {
        self.0 == "ETREAT"
    }
}

impl fmt::Display for Purpose {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Who holds a token: `kind:name` (`user:alice`, `service:iis-feed`). An account name, never
/// a patient's identifying data.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Subject(String);

impl Subject {
    pub fn parse(text: &str) -> Result<Self, ClaimError> {
        let bad = || ClaimError::BadSubject(text.chars().take(80).collect());
        let (kind, name) = text.split_once(':').ok_or_else(bad)?;
        let allowed = |c: char| c.is_ascii_alphanumeric() || "-_.@:".contains(c);
        if kind.is_empty()
            || name.is_empty()
            || text.len() > 128
            || !kind.chars().all(|c| c.is_ascii_lowercase())
            || !name.chars().all(allowed)
        {
            return Err(bad());
        }
        Ok(Subject(text.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Subject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A reference `Type/id` a token names (`Organization/1`, `Patient/123`).
pub(crate) fn check_reference(text: &str, wanted: &str) -> Result<String, ClaimError> {
    let bad = || ClaimError::BadReference {
        wanted: wanted.to_owned(),
    };
    let (kind, id) = text.split_once('/').ok_or_else(bad)?;
    let id_ok = !id.is_empty()
        && id.len() <= 64
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.');
    if kind != wanted || !id_ok {
        return Err(bad());
    }
    Ok(text.to_owned())
}

/// What a token issued by this server says. Built with [`Claims::new`], which applies the
/// rules of each role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claims {
    pub subject: Subject,
    pub role: Role,
    /// `Organization/{id}` the holder acts for.
    pub organization: Option<String>,
    /// `Patient/{id}`: the only compartment the holder may touch.
    pub patient: Option<String>,
    pub scopes: Vec<Scope>,
    pub purpose: Option<Purpose>,
    pub issued_at: OffsetDateTime,
    pub expires_at: OffsetDateTime,
}

/// What an issuer asks for; [`Claims::new`] checks it against the role's rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimRequest {
    pub subject: Subject,
    pub role: Role,
    pub organization: Option<String>,
    pub patient: Option<String>,
    pub scopes: Vec<Scope>,
    pub purpose: Option<Purpose>,
    pub issued_at: OffsetDateTime,
    pub lifetime: time::Duration,
}

/// The longest lifetime a token may have.
pub const MAX_LIFETIME: time::Duration = time::Duration::days(366);

impl Claims {
    /// Applies each role's rules: a `patient` token names its patient and uses `patient/`
    /// scopes; a `system` token needs `system/` scopes; a clinician acts for TREAT (default)
    /// or ETREAT; admin and auditor tokens carry no clinical scopes, patient or purpose.
    pub fn new(request: ClaimRequest) -> Result<Self, ClaimError> {
        let ClaimRequest {
            subject,
            role,
            organization,
            patient,
            mut scopes,
            mut purpose,
            issued_at,
            lifetime,
        } = request;
        if lifetime <= time::Duration::ZERO || lifetime > MAX_LIFETIME {
            return Err(ClaimError::BadLifetime);
        }
        let organization = organization
            .map(|org| check_reference(&org, "Organization"))
            .transpose()?;
        let patient = patient
            .map(|p| check_reference(&p, "Patient"))
            .transpose()?;
        if role.is_clinical() {
            let context = role.scope_context();
            if let Some(wrong) = scopes.iter().find(|s| s.context != context) {
                return Err(ClaimError::ScopeContext {
                    role,
                    scope: wrong.to_string(),
                    wanted: context.as_str(),
                });
            }
            if scopes.is_empty() {
                if role == Role::System {
                    return Err(ClaimError::Missing {
                        role,
                        what: "--scope (system/<Type|*>.<cruds>)",
                    });
                }
                scopes.push(Scope::everything(context));
            }
        } else {
            if !scopes.is_empty() || patient.is_some() {
                return Err(ClaimError::NotForRole {
                    role,
                    what: "clinical scopes or a patient",
                });
            }
            if purpose.is_some() {
                return Err(ClaimError::NotForRole {
                    role,
                    what: "a purpose of use",
                });
            }
        }
        match role {
            Role::Patient if patient.is_none() => {
                return Err(ClaimError::Missing {
                    role,
                    what: "--patient Patient/<id>",
                });
            }
            Role::Clinician => {
                let p = purpose.get_or_insert_with(|| Purpose("TREAT".to_owned()));
                if p.as_str() != "TREAT" && !p.is_break_glass() {
                    return Err(ClaimError::NotForRole {
                        role,
                        what: "a purpose other than TREAT or ETREAT",
                    });
                }
            }
            _ => {}
        }
        Ok(Claims {
            subject,
            role,
            organization,
            patient,
            scopes,
            purpose,
            issued_at,
            expires_at: issued_at + lifetime,
        })
    }
}

/// Parses a lifetime such as `8h`, `30m`, `90s`, `7d`.
pub fn parse_lifetime(text: &str) -> Result<time::Duration, ClaimError> {
    let bad = || ClaimError::BadDuration(text.to_owned());
    let split = text.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
    let (number, unit) = text.split_at(split);
    let n: i64 = number.parse().map_err(|_| bad())?;
    let duration = match unit {
        "s" => time::Duration::seconds(n),
        "m" => time::Duration::minutes(n),
        "h" => time::Duration::hours(n),
        "d" => time::Duration::days(n),
        _ => return Err(bad()),
    };
    if duration <= time::Duration::ZERO {
        return Err(bad());
    }
    Ok(duration)
}
