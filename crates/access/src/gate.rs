//! Checking a bearer token and deciding a request: the server's datalog policy.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::sync::{Arc, Mutex};

use biscuit_auth::builder::{AuthorizerBuilder, fact, string};
use biscuit_auth::error::{FailedCheck, Format, Logic, Token as TokenError};
use biscuit_auth::{Authorizer, Biscuit};
use time::OffsetDateTime;

use crate::claims::{Action, Actions, Purpose, Role, Subject};
use crate::error::AccessError;
use crate::token::{VerifyingKey, action_set, revocation_ids, system_time};

/// The server's policy: what each role may do, how scopes narrow it, and the purposes a
/// clinician acts for. Only facts of the authority block (signed by the server) and of the
/// authorizer count here: an attenuation block can add checks, never rights.
///
/// A request is one `data_request(type, actions)` (`"*"` for every type, as in system
/// history) or one `operation(name, "read"|"write")`.
pub const POLICY: &str = r#"
role_grant("clinician", "*", {"c", "r", "u", "d", "s"});
role_grant("registrar", "Patient", {"c", "r", "u", "s"});
role_grant("registrar", "Immunization", {"c", "r", "u", "s"});
role_grant("patient", "*", {"r", "s"});
role_grant("system", "*", {"c", "r", "u", "d", "s"});

operation_grant("admin", "token.list");
operation_grant("admin", "patient.erase");
operation_grant("auditor", "token.list");
operation_grant("auditor", "audit.read");

role_allows($t) <- data_request($t, $want), role($r), role_grant($r, $g, $acts),
    $acts.contains($want), $g == "*" || $g == $t;
scope_allows($t) <- data_request($t, $want), scope($ctx, $g, $acts),
    $acts.contains($want), $g == "*" || $g == $t;
purpose_ok(true) <- role($r), $r != "clinician";
purpose_ok(true) <- role("clinician"), purpose($p), {"TREAT", "ETREAT"}.contains($p);

allow if data_request($t, $want), role_allows($t), scope_allows($t), purpose_ok(true);
allow if operation($op, $kind), role($r), operation_grant($r, $op);
"#;

/// Names of the `allow` policies above, in order, for explanations.
const POLICY_NAMES: [&str; 2] = [
    "data access allowed by the role, a scope and the purpose",
    "operation granted to the role",
];

/// What a request needs: an action on a resource type's data, or an operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Need {
    /// `resource_type` is `*` for requests across every type (system history).
    Data {
        resource_type: String,
        action: Action,
    },
    Operation(Operation),
}

impl Need {
    pub fn data(resource_type: impl Into<String>, action: Action) -> Self {
        Need::Data {
            resource_type: resource_type.into(),
            action,
        }
    }
}

/// Administrative and audit operations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    /// List token issuances (access reviews).
    TokenList,
    /// Erase a patient by destroying their data key.
    PatientErase,
    /// Read the audit log.
    AuditRead,
}

impl Operation {
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::TokenList => "token.list",
            Operation::PatientErase => "patient.erase",
            Operation::AuditRead => "audit.read",
        }
    }

    fn kind(self) -> &'static str {
        match self {
            Operation::TokenList | Operation::AuditRead => "read",
            Operation::PatientErase => "write",
        }
    }
}

/// Revocation ids known to be revoked (hex), as last read from the registry.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RevokedIds(HashSet<String>);

impl RevokedIds {
    pub fn new(ids: impl IntoIterator<Item = String>) -> Self {
        Self(ids.into_iter().collect())
    }

    pub fn contains(&self, id: &str) -> bool {
        self.0.contains(id)
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// The patient compartment a caller is held to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Confinement {
    /// Not held to one compartment.
    Unconfined,
    /// Only this patient's compartment (the patient's id).
    Patient(String),
    /// The token's blocks name different patients: nothing is left.
    Contradictory,
}

/// An authenticated caller: a verified, unrevoked, unexpired token and its claims.
#[derive(Clone)]
pub struct Caller {
    biscuit: Arc<Biscuit>,
    pub subject: Subject,
    pub role: Role,
    pub purpose: Option<Purpose>,
    pub organization: Option<String>,
    pub confinement: Confinement,
    pub expires_at: OffsetDateTime,
    /// Hex revocation ids, one per block; the first identifies the issued token.
    pub revocation_ids: Vec<String>,
}

impl fmt::Debug for Caller {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Caller")
            .field("subject", &self.subject)
            .field("role", &self.role)
            .field("purpose", &self.purpose)
            .field("confinement", &self.confinement)
            .field("token_id", &self.token_id())
            .finish_non_exhaustive()
    }
}

impl Caller {
    /// The revocation id of the issued token this one descends from.
    pub fn token_id(&self) -> &str {
        self.revocation_ids.first().map_or("", String::as_str)
    }

    /// The id of the only patient this caller may touch, if confined.
    pub fn patient_id(&self) -> Option<&str> {
        match &self.confinement {
            Confinement::Patient(id) => Some(id),
            _ => None,
        }
    }

    /// Emergency access: always flagged in logs and audit.
    pub fn is_break_glass(&self) -> bool {
        self.purpose.as_ref().is_some_and(Purpose::is_break_glass)
    }
}

/// An allowed request and the policy that allowed it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Allowed {
    pub policy: &'static str,
}

/// How many verified tokens a [`Gate`] remembers. Past it, the memory starts over: a cost,
/// never a wrong answer.
const REMEMBERED_TOKENS: usize = 10_000;

/// How many decisions a [`Gate`] remembers within one second. Past it, the memory starts
/// over.
const REMEMBERED_DECISIONS: usize = 10_000;

/// The decisions taken in one second: the same token asking for the same thing in the same
/// second gets the same answer.
///
/// A decision is a pure function of the token (its blocks: the last revocation id commits to
/// all of them), the request facts (resource types with their actions, operations) and the
/// time, which biscuit sees in whole seconds. Nothing else enters the authorizer, so
/// remembering an allowed decision until the second ends changes no answer; it saves the
/// datalog evaluation (about 50 µs) on every further request. Revocation and expiry are
/// checked in [`Gate::authenticate`], never remembered. Refusals are not remembered: they
/// are rare, and their explanation is worth computing.
#[derive(Default)]
struct Decisions {
    second: i64,
    allowed: HashMap<String, Allowed>,
}

impl Decisions {
    fn get(&mut self, second: i64, key: &str) -> Option<Allowed> {
        if self.second != second {
            self.second = second;
            self.allowed.clear();
        }
        self.allowed.get(key).copied()
    }

    fn remember(&mut self, second: i64, key: String, allowed: Allowed) {
        if self.second != second {
            return;
        }
        if self.allowed.len() >= REMEMBERED_DECISIONS {
            self.allowed.clear();
        }
        self.allowed.insert(key, allowed);
    }
}

/// Verifies tokens against the root key and decides requests by [`POLICY`].
///
/// A token's signatures and claims never change, so a gate remembers the callers of tokens it
/// verified (checking signatures is most of the cost, and a client sends one token many
/// times). Revocation and expiry are still checked on every use. Decisions are remembered
/// for the rest of their second (see [`Decisions`]).
///
/// Cloning is cheap (shared parts only): a server's HTTP front hands every request its own
/// clone.
#[derive(Clone)]
pub struct Gate {
    root: VerifyingKey,
    /// Shared: copying the parsed policy (its rules, checks and policies) for every
    /// request took about 6% of the server's CPU under load (measured with perf).
    policy: Arc<AuthorizerBuilder>,
    verified: Arc<Mutex<HashMap<String, Caller>>>,
    decisions: Arc<Mutex<Decisions>>,
}

impl fmt::Debug for Gate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Gate").field("root", &self.root).finish()
    }
}

/// Bounds on one datalog evaluation. Facts and iterations bound the work a token's blocks can
/// cause, deterministically; the time bound is only a backstop. (biscuit's default of 1 ms
/// of wall-clock time misfires on a loaded machine, where a thread can wait longer than that
/// for a core.)
fn limits() -> biscuit_auth::AuthorizerLimits {
    biscuit_auth::AuthorizerLimits {
        max_facts: 1000,
        max_iterations: 100,
        max_time: std::time::Duration::from_secs(1),
    }
}

fn evaluation(err: TokenError) -> AccessError {
    AccessError::Evaluation(err.to_string())
}

impl Gate {
    pub fn new(root: VerifyingKey) -> Result<Self, AccessError> {
        let policy = AuthorizerBuilder::new()
            .code(POLICY)
            .map_err(evaluation)?
            .set_limits(limits());
        Ok(Self {
            root,
            policy: Arc::new(policy),
            verified: Arc::default(),
            decisions: Arc::default(),
        })
    }

    pub fn root(&self) -> &VerifyingKey {
        &self.root
    }

    /// Checks a bearer token: signatures, revocation (every block's id), expiry, and the
    /// claims this server issues. Says nothing yet about what the caller may do.
    pub fn authenticate(
        &self,
        token: &str,
        now: OffsetDateTime,
        revoked: &RevokedIds,
    ) -> Result<Caller, AccessError> {
        let token = token.trim();
        let known = self
            .verified
            .lock()
            .ok()
            .and_then(|verified| verified.get(token).cloned());
        let caller = match known {
            Some(caller) => caller,
            None => {
                let caller = self.verify(token)?;
                if let Ok(mut verified) = self.verified.lock() {
                    if verified.len() >= REMEMBERED_TOKENS {
                        verified.clear();
                    }
                    verified.insert(token.to_owned(), caller.clone());
                }
                caller
            }
        };
        if caller.revocation_ids.iter().any(|id| revoked.contains(id)) {
            return Err(AccessError::Revoked);
        }
        if now > caller.expires_at {
            return Err(AccessError::Expired);
        }
        Ok(caller)
    }

    /// Verifies a token's signatures and reads its claims, without remembering it or checking
    /// revocation and expiry: what [`Gate::authenticate`] does on first sight of a token.
    pub fn verify(&self, token: &str) -> Result<Caller, AccessError> {
        let biscuit = Biscuit::from_base64(token, self.root.0).map_err(|err| match err {
            TokenError::Format(
                Format::Signature(_) | Format::SealedSignature | Format::UnknownPublicKey,
            ) => AccessError::BadSignature,
            _ => AccessError::Malformed,
        })?;
        let revocation_ids = revocation_ids(biscuit.revocation_identifiers());
        let mut reader = AuthorizerBuilder::new()
            .set_limits(limits())
            .build(&biscuit)
            .map_err(evaluation)?;
        let one = |reader: &mut Authorizer, rule: &str| -> Result<Option<String>, AccessError> {
            let found: Vec<(String,)> = reader.query(rule).map_err(evaluation)?;
            Ok(found.into_iter().next().map(|(value,)| value))
        };
        let subject = one(&mut reader, "x($v) <- subject($v)")?
            .and_then(|s| Subject::parse(&s).ok())
            .ok_or(AccessError::NotIssuedHere)?;
        let role = one(&mut reader, "x($v) <- role($v)")?
            .and_then(|r| Role::parse(&r).ok())
            .ok_or(AccessError::NotIssuedHere)?;
        let purpose =
            one(&mut reader, "x($v) <- purpose($v)")?.and_then(|p| Purpose::parse(&p).ok());
        let organization = one(&mut reader, "x($v) <- org($v)")?;
        let expires: Vec<(std::time::SystemTime,)> = reader
            .query("x($v) <- expires_at($v)")
            .map_err(evaluation)?;
        let expires_at = expires
            .first()
            .map(|(at,)| OffsetDateTime::from(*at))
            .ok_or(AccessError::NotIssuedHere)?;
        // Patients named by any block: each one narrows, so two different ones leave nothing.
        let patients: Vec<(String,)> = reader
            .query_all("x($v) <- patient($v)")
            .map_err(evaluation)?;
        let mut named: Vec<String> = patients.into_iter().map(|(p,)| p).collect();
        named.sort();
        named.dedup();
        let confinement = match named.as_slice() {
            [] if role == Role::Patient => Confinement::Contradictory,
            [] => Confinement::Unconfined,
            [one] => match one.strip_prefix("Patient/") {
                Some(id) if !id.is_empty() => Confinement::Patient(id.to_owned()),
                _ => Confinement::Contradictory,
            },
            _ => Confinement::Contradictory,
        };
        Ok(Caller {
            biscuit: Arc::new(biscuit),
            subject,
            role,
            purpose,
            organization,
            confinement,
            expires_at,
            revocation_ids,
        })
    }

    /// Decides whether `caller` may do what `needs` say at `now`: every need must be allowed
    /// by a policy, and every check of every block must pass. Data needs on one resource type
    /// are decided together.
    pub fn authorize(
        &self,
        caller: &Caller,
        needs: &[Need],
        now: OffsetDateTime,
    ) -> Result<Allowed, AccessError> {
        if caller.confinement == Confinement::Contradictory {
            return Err(AccessError::Forbidden {
                explanation: "the token confines it to no patient's compartment (its blocks \
                              name different patients, or a patient token names none)"
                    .to_owned(),
            });
        }
        let mut by_type: BTreeMap<&str, Actions> = BTreeMap::new();
        let mut operations = Vec::new();
        for need in needs {
            match need {
                Need::Data {
                    resource_type,
                    action,
                } => {
                    let entry = by_type.entry(resource_type.as_str()).or_default();
                    *entry = entry.with(*action);
                }
                Need::Operation(op) => operations.push(*op),
            }
        }
        operations.sort_by_key(|op| op.as_str());
        operations.dedup();
        // The memory's key: the whole token (its last block's revocation id) and the request.
        // Every biscuit has one; without it there is nothing to key on, so nothing is kept.
        let Some(token) = caller.revocation_ids.last() else {
            return self.evaluate(caller, by_type, operations, now);
        };
        let second = now.unix_timestamp();
        let mut key = token.clone();
        for (resource_type, actions) in &by_type {
            key.push_str(&format!(" {resource_type}:{actions}"));
        }
        for op in &operations {
            key.push_str(&format!(" {}", op.as_str()));
        }
        let remembered = self
            .decisions
            .lock()
            .ok()
            .and_then(|mut decisions| decisions.get(second, &key));
        if let Some(allowed) = remembered {
            return Ok(allowed);
        }
        let allowed = self.evaluate(caller, by_type, operations, now)?;
        if let Ok(mut decisions) = self.decisions.lock() {
            decisions.remember(second, key, allowed);
        }
        Ok(allowed)
    }

    /// Every need decided by the datalog policy, without the memory.
    fn evaluate(
        &self,
        caller: &Caller,
        by_type: BTreeMap<&str, Actions>,
        operations: Vec<Operation>,
        now: OffsetDateTime,
    ) -> Result<Allowed, AccessError> {
        let mut allowed = None;
        for (resource_type, actions) in by_type {
            let request = fact(
                "data_request",
                &[string(resource_type), action_set(actions)],
            );
            allowed =
                Some(self.decide(caller, request, now, Asked::Data(resource_type, actions))?);
        }
        for op in operations {
            let request = fact("operation", &[string(op.as_str()), string(op.kind())]);
            allowed = Some(self.decide(caller, request, now, Asked::Operation(op))?);
        }
        allowed.ok_or_else(|| AccessError::Forbidden {
            explanation: "the request names nothing to allow".to_owned(),
        })
    }

    fn decide(
        &self,
        caller: &Caller,
        request: biscuit_auth::builder::Fact,
        now: OffsetDateTime,
        asked: Asked<'_>,
    ) -> Result<Allowed, AccessError> {
        let mut builder = AuthorizerBuilder::clone(&self.policy)
            .fact(request)
            .map_err(evaluation)?
            .fact(fact(
                "time",
                &[biscuit_auth::builder::date(&system_time(now))],
            ))
            .map_err(evaluation)?;
        if let Confinement::Patient(id) = &caller.confinement {
            builder = builder
                .fact(fact("compartment", &[string(&format!("Patient/{id}"))]))
                .map_err(evaluation)?;
        }
        let mut authorizer = builder.build(&caller.biscuit).map_err(evaluation)?;
        match authorizer.authorize() {
            Ok(index) => Ok(Allowed {
                policy: POLICY_NAMES.get(index).copied().unwrap_or("allow policy"),
            }),
            Err(TokenError::FailedLogic(logic)) => {
                let checks = match &logic {
                    Logic::Unauthorized { checks, .. } | Logic::NoMatchingPolicy { checks } => {
                        checks.as_slice()
                    }
                    _ => &[],
                };
                if checks.iter().any(is_time_check) {
                    return Err(AccessError::Expired);
                }
                Err(AccessError::Forbidden {
                    explanation: explain(&mut authorizer, caller, checks, asked),
                })
            }
            Err(other) => Err(evaluation(other)),
        }
    }
}

/// One decision's subject, for its explanation.
#[derive(Debug, Clone, Copy)]
enum Asked<'a> {
    Data(&'a str, Actions),
    Operation(Operation),
}

fn check_rule(check: &FailedCheck) -> &str {
    match check {
        FailedCheck::Block(block) => &block.rule,
        FailedCheck::Authorizer(authorizer) => &authorizer.rule,
    }
}

fn is_time_check(check: &FailedCheck) -> bool {
    check_rule(check).contains("time($")
}

/// Why a request was refused: the failed checks (which block, which rule), or else which of
/// role, scope and purpose did not allow it.
fn explain(
    authorizer: &mut Authorizer,
    caller: &Caller,
    checks: &[FailedCheck],
    asked: Asked<'_>,
) -> String {
    if !checks.is_empty() {
        let failed: Vec<String> = checks
            .iter()
            .map(|check| match check {
                FailedCheck::Block(block) => {
                    format!(
                        "check {} of block {} failed: {}",
                        block.check_id, block.block_id, block.rule
                    )
                }
                FailedCheck::Authorizer(a) => format!("authorizer check failed: {}", a.rule),
            })
            .collect();
        return failed.join("; ");
    }
    let holds = |authorizer: &mut Authorizer, rule: &str| {
        authorizer
            .query::<_, (bool,), _>(rule)
            .map(|found| !found.is_empty())
            .unwrap_or(false)
    };
    let role = caller.role;
    let what = match asked {
        Asked::Operation(op) => {
            return format!(
                "the role `{role}` is not granted the operation {}",
                op.as_str()
            );
        }
        Asked::Data(resource_type, actions) => format!("`{actions}` on {resource_type}"),
    };
    if !holds(authorizer, "x(true) <- role_allows($t)") {
        return format!("the role `{role}` does not allow {what}");
    }
    if !holds(authorizer, "x(true) <- scope_allows($t)") {
        return format!("no scope of the token allows {what}");
    }
    if !holds(authorizer, "x(true) <- purpose_ok(true)") {
        return format!("the role `{role}` acts only for purposes TREAT or ETREAT");
    }
    format!("no policy allows {what}")
}
