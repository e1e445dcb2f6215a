//! The errors of the access crate. None of them carries a token or a key.

use crate::claims::Role;

/// A token request that breaks a rule (issuing or attenuating).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClaimError {
    #[error("unknown role `{0}` (admin, clinician, registrar, auditor, patient, system)")]
    UnknownRole(String),
    #[error("`{0}` is not a scope: use patient|user|system/<Type|*>.<cruds>")]
    BadScope(String),
    #[error("`{0}` is not a set of actions: use letters of `cruds`, in that order")]
    BadActions(String),
    #[error("unknown purpose of use `{0}` (HL7 v3 PurposeOfUse, e.g. TREAT)")]
    UnknownPurpose(String),
    #[error("`{0}` is not a subject: use kind:name, e.g. user:alice")]
    BadSubject(String),
    #[error("not a reference of the form {wanted}/<id>")]
    BadReference { wanted: String },
    #[error("`{0}` is not a lifetime: use a number and s, m, h or d, e.g. 8h")]
    BadDuration(String),
    #[error("a token lives more than zero and at most 366 days")]
    BadLifetime,
    #[error("a {role} token's scopes are {wanted}/ scopes, not `{scope}`")]
    ScopeContext {
        role: Role,
        scope: String,
        wanted: &'static str,
    },
    #[error("a {role} token needs {what}")]
    Missing { role: Role, what: &'static str },
    #[error("a {role} token cannot carry {what}")]
    NotForRole { role: Role, what: &'static str },
    #[error("an attenuation must narrow something: a patient, a lifetime or read-only")]
    NothingToNarrow,
}

/// Why a token was not accepted, or a request not allowed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AccessError {
    /// Not a token at all (bad base64, not a biscuit).
    #[error("the bearer token is malformed")]
    Malformed,
    /// A signature does not verify: tampered, or signed by another server's key.
    #[error("the bearer token's signature does not verify")]
    BadSignature,
    /// A token this server did not issue in the form it issues (no subject or role).
    #[error("the bearer token does not carry the claims this server issues")]
    NotIssuedHere,
    #[error("the bearer token has expired")]
    Expired,
    #[error("the bearer token has been revoked")]
    Revoked,
    /// Valid token, but this request is not allowed; `explanation` says which rule or check
    /// decided (ids only).
    #[error("not allowed: {explanation}")]
    Forbidden { explanation: String },
    /// The datalog engine refused to run (limits, an invalid rule in an appended block).
    #[error("the token could not be evaluated: {0}")]
    Evaluation(String),
    /// Building or signing a token failed.
    #[error("the token could not be built: {0}")]
    Build(String),
}

impl AccessError {
    /// Whether the caller is not authenticated (401) rather than not allowed (403). A token
    /// whose blocks cannot be evaluated within the limits is refused as not allowed.
    /// A short code for audit entries: the kind of refusal, never its details.
    pub fn code(&self) -> &'static str {
        match self {
            AccessError::Malformed => "malformed-token",
            AccessError::BadSignature => "bad-signature",
            AccessError::NotIssuedHere => "not-issued-here",
            AccessError::Expired => "expired",
            AccessError::Revoked => "revoked",
            AccessError::Forbidden { .. } => "forbidden",
            AccessError::Evaluation(_) => "evaluation-failed",
            AccessError::Build(_) => "build-failed",
        }
    }

    pub fn is_authentication(&self) -> bool {
        !matches!(
            self,
            AccessError::Forbidden { .. } | AccessError::Evaluation(_) | AccessError::Build(_)
        )
    }
}
