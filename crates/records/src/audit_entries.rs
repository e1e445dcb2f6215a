//! What the core writes on the audit log: who acts (from the caller's token, through
//! [`Actor`]) and what they did (from the use case). Entries hold ids and codes only; search
//! values only as blind tokens.

use std::collections::BTreeMap;

use audit_chain::{AuditEntry, BlindParam, Outcome};
use phi_crypto::{BlindIndex, KeyOwner};

use crate::error::RecordsError;

/// The entry of an administrative act done from the CLI (a token issued or revoked, a key
/// rotated), at `at`: by `system:cli`, naming the token it concerns and a detail (a key
/// version), never a secret.
pub fn admin_act(
    action: audit_chain::Action,
    token_id: Option<&str>,
    detail: Option<&str>,
    at: time::OffsetDateTime,
) -> AuditEntry {
    let mut entry = AuditEntry::new(
        uuid::Uuid::now_v7().to_string(),
        at,
        action,
        Outcome::Success,
    );
    Actor::system("cli").stamp(&mut entry);
    entry.token_id = token_id.map(str::to_owned);
    entry.reason = detail.map(str::to_owned);
    entry
}

/// Who is acting, as the audit log names them: ids and codes, never PHI.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Actor {
    /// The token's subject (`user:alice`, `system:registry`).
    pub subject: Option<String>,
    pub role: Option<String>,
    /// On whose behalf: the token's organization.
    pub client: Option<String>,
    /// The token's id (its first revocation id).
    pub token_id: Option<String>,
    /// Purpose of use (`TREAT`; `ETREAT` for break-glass).
    pub purpose: Option<String>,
    /// The request's id, joining the entry to the server's logs.
    pub request_id: Option<String>,
}

impl Actor {
    /// The server acting on its own (administrative commands, maintenance).
    pub fn system(what: &str) -> Self {
        Self {
            subject: Some(format!("system:{what}")),
            role: Some("system".to_owned()),
            ..Self::default()
        }
    }

    /// Puts who into `entry`.
    pub fn stamp(&self, entry: &mut AuditEntry) {
        entry.subject.clone_from(&self.subject);
        entry.role.clone_from(&self.role);
        entry.client.clone_from(&self.client);
        entry.token_id.clone_from(&self.token_id);
        entry.purpose.clone_from(&self.purpose);
        entry.request_id.clone_from(&self.request_id);
    }
}

/// The audit `patient` of a key owner: `Patient/{id}` for a patient compartment, none for the
/// system key.
pub(crate) fn patient_of(key_owner: &KeyOwner) -> Option<String> {
    key_owner.patient_id().map(|id| format!("Patient/{id}"))
}

/// Search parameters as the log keeps them: each name with a keyed hash of its value, so equal
/// searches correlate without the log holding what was searched for.
pub(crate) fn blind_query(blind: &BlindIndex, params: &[(String, String)]) -> Vec<BlindParam> {
    let key = blind.key("audit.query");
    params
        .iter()
        .map(|(name, value)| BlindParam {
            name: name.clone(),
            token: key.digest(format!("{name}={value}").as_bytes()).to_hex(),
        })
        .collect()
}

/// How many of a result set's resources belong to each patient (`None`: the system key).
pub(crate) fn per_patient<'a>(
    owners: impl IntoIterator<Item = &'a KeyOwner>,
) -> BTreeMap<Option<String>, u64> {
    let mut counts = BTreeMap::new();
    for owner in owners {
        *counts.entry(patient_of(owner)).or_insert(0) += 1;
    }
    counts
}

/// The outcome and reason code a failed use case is recorded with.
pub(crate) fn failure(err: &RecordsError) -> (Outcome, &'static str) {
    let outcome = if err.is_server_failure() {
        Outcome::Failed
    } else {
        Outcome::Denied
    };
    (outcome, err.code())
}
