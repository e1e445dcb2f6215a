//! Audit entries: who did what to which record, when, for what purpose, with what outcome.
//!
//! An entry holds ids and codes only, never PHI: no names, no identifiers' values, no
//! clinical content, and search parameters only as blind tokens (keyed hashes the caller
//! computes). Its [`AuditEntry::canonical_bytes`] are what the log hashes into its leaf, and
//! what anyone can fetch to recompute that hash.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// What was done, in the terms of FHIR's restful interactions and Cairn's own operations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    Create,
    Read,
    Vread,
    Update,
    Delete,
    Search,
    History,
    Export,
    Erase,
    LoginFailure,
    AccessDenied,
    TokenIssued,
    TokenRevoked,
    KeyRotated,
    /// The search index was made anew by newer rules (a maintenance run, not a disclosure).
    Reindex,
    /// A transaction Bundle: its entries' changes have entries of their own, committed with
    /// them; this one records the transaction's failure as a whole.
    Transaction,
}

impl Action {
    pub const ALL: [Action; 16] = [
        Action::Create,
        Action::Read,
        Action::Vread,
        Action::Update,
        Action::Delete,
        Action::Search,
        Action::History,
        Action::Export,
        Action::Erase,
        Action::LoginFailure,
        Action::AccessDenied,
        Action::TokenIssued,
        Action::TokenRevoked,
        Action::KeyRotated,
        Action::Reindex,
        Action::Transaction,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Action::Create => "create",
            Action::Read => "read",
            Action::Vread => "vread",
            Action::Update => "update",
            Action::Delete => "delete",
            Action::Search => "search",
            Action::History => "history",
            Action::Export => "export",
            Action::Erase => "erase",
            Action::LoginFailure => "login-failure",
            Action::AccessDenied => "access-denied",
            Action::TokenIssued => "token-issued",
            Action::TokenRevoked => "token-revoked",
            Action::KeyRotated => "key-rotated",
            Action::Reindex => "reindex",
            Action::Transaction => "transaction",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.as_str() == text)
    }

    /// The FHIR AuditEvent `action` code: C, R, U, D or E (execute).
    pub fn fhir_code(self) -> &'static str {
        match self {
            Action::Create | Action::TokenIssued => "C",
            Action::Read | Action::Vread | Action::Search | Action::History | Action::Export => "R",
            Action::Update | Action::TokenRevoked | Action::KeyRotated => "U",
            Action::Delete | Action::Erase => "D",
            Action::LoginFailure | Action::AccessDenied | Action::Reindex | Action::Transaction => {
                "E"
            }
        }
    }

    /// Whether the action discloses patient data to the caller when it succeeds (what an
    /// accounting of disclosures lists).
    pub fn discloses(self) -> bool {
        matches!(
            self,
            Action::Read | Action::Vread | Action::Search | Action::History | Action::Export
        )
    }
}

/// How it ended (the FHIR AuditEvent outcome codes 0, 4, 8).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    Success,
    /// Refused: not authenticated, not allowed, or invalid.
    Denied,
    /// The server failed.
    Failed,
}

impl Outcome {
    pub fn fhir_code(self) -> &'static str {
        match self {
            Outcome::Success => "0",
            Outcome::Denied => "4",
            Outcome::Failed => "8",
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Denied => "denied",
            Outcome::Failed => "failed",
        }
    }
}

/// One search parameter as the log keeps it: its name and a blind token of its value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlindParam {
    pub name: String,
    /// A keyed hash of the value, computed by the caller (Cairn uses its blind-index key),
    /// so equal searches can be correlated without the log holding what was searched for.
    pub token: String,
}

/// One audit entry. Field order is the canonical order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AuditEntry {
    /// Unique, chosen by the recorder (a UUID).
    pub id: String,
    #[serde(with = "time::serde::rfc3339")]
    pub recorded: OffsetDateTime,
    pub action: Action,
    /// The FHIR operation or variant of the interaction, when it is not the plain one
    /// (`$series-status`, `$erase`, `conditional-create`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation: Option<String>,
    pub outcome: Outcome,
    /// Who: the token's subject (`user:alice`); absent when nobody was authenticated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// On whose behalf: the token's organization.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client: Option<String>,
    /// The token's id (its first revocation id), to trace or revoke it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_id: Option<String>,
    /// Purpose of use (`TREAT`, `ETREAT` for break-glass, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub purpose: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u64>,
    /// The patient whose compartment it concerns, as `Patient/<id>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patient: Option<String>,
    /// For searches and history: how many resources the answer held.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result_count: Option<u64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub query: Vec<BlindParam>,
    /// Why it was refused or failed, as a code or rule name (never request content); for an
    /// administrative act, what it changed (`master-key-v2`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The HTTP request's id, to join the entry with the server's logs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
}

/// Why bytes are not a canonical entry.
#[derive(Debug, thiserror::Error)]
pub enum EntryError {
    #[error("not an audit entry: {0}")]
    Malformed(String),
    #[error("an audit entry, but not in canonical form")]
    NotCanonical,
}

impl AuditEntry {
    /// A minimal entry; the caller fills in the rest.
    pub fn new(id: String, recorded: OffsetDateTime, action: Action, outcome: Outcome) -> Self {
        Self {
            id,
            recorded,
            action,
            operation: None,
            outcome,
            subject: None,
            role: None,
            client: None,
            token_id: None,
            purpose: None,
            resource_type: None,
            resource_id: None,
            version: None,
            patient: None,
            result_count: None,
            query: Vec::new(),
            reason: None,
            request_id: None,
        }
    }

    /// The bytes hashed into the log: compact JSON, fields in declaration order, absent
    /// fields omitted, the time in UTC to the microsecond.
    pub fn canonical_bytes(&self) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(512);
        self.write_canonical(&mut bytes);
        bytes
    }

    /// Appends [`AuditEntry::canonical_bytes`] to `out`: a recorder batching entries writes
    /// each straight into its batch.
    pub fn write_canonical(&self, out: &mut Vec<u8>) {
        let at = canonical_time(self.recorded);
        // Serializing plain strings, integers and enums into memory cannot fail. (Equal
        // instants may differ in offset: both must match to serialize the entry as it is.)
        if at == self.recorded && self.recorded.offset().is_utc() {
            let _ = serde_json::to_writer(out, self);
        } else {
            let mut canonical = self.clone();
            canonical.recorded = at;
            let _ = serde_json::to_writer(out, &canonical);
        }
    }

    /// Reads canonical bytes back, refusing anything that would not re-encode to the same
    /// bytes (so one entry has exactly one leaf hash).
    pub fn from_canonical_bytes(bytes: &[u8]) -> Result<Self, EntryError> {
        let entry: AuditEntry =
            serde_json::from_slice(bytes).map_err(|e| EntryError::Malformed(e.to_string()))?;
        let mut again = Vec::with_capacity(bytes.len());
        entry.write_canonical(&mut again);
        if again != bytes {
            return Err(EntryError::NotCanonical);
        }
        Ok(entry)
    }
}

/// UTC, truncated to microseconds (what both databases keep).
pub fn canonical_time(at: OffsetDateTime) -> OffsetDateTime {
    let at = at.to_offset(time::UtcOffset::UTC);
    at.replace_nanosecond(at.nanosecond() / 1_000 * 1_000)
        .unwrap_or(at)
}
