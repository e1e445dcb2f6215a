//! Issuing and attenuating biscuit tokens.
//!
//! A token's authority block, signed by the server's root key, states its claims as facts:
//!
//! ```text
//! subject("user:alice"); role("clinician"); org("Organization/1"); patient("Patient/123");
//! scope("user", "Patient", {"r", "s"}); purpose("TREAT");
//! issued_at(2026-11-22T10:00:00Z); expires_at(2026-11-22T18:00:00Z);
//! check if time($t), $t <= 2026-11-22T18:00:00Z;
//! ```
//!
//! Attenuation appends a block that only narrows: a `patient` fact with the check that the
//! request is confined to that compartment, a shorter expiry check, a read-only check. Any
//! biscuit library can append such blocks (docs/security/tokens.md); the server's policies
//! trust only the authority block, so an appended block can add checks but never rights.

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::time::SystemTime;

use biscuit_auth::builder::{BlockBuilder, Term, date, fact, set, string};
use biscuit_auth::{Algorithm, Biscuit, KeyPair, PrivateKey, PublicKey, UnverifiedBiscuit};
use time::OffsetDateTime;

use crate::claims::{Actions, Claims};
use crate::error::{AccessError, ClaimError};

/// A bearer token as text. Secret: it prints as `BearerToken(…)` and is shown only through
/// [`BearerToken::expose`].
#[derive(Clone, PartialEq, Eq)]
pub struct BearerToken(String);

impl BearerToken {
    pub fn new(text: String) -> Self {
        Self(text)
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for BearerToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("BearerToken(…)")
    }
}

/// The server's token signing key (Ed25519). Never printed.
pub struct SigningKey(KeyPair);

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("SigningKey")
            .field(&self.verifying_key().to_text())
            .finish()
    }
}

/// The public half: what verifies tokens, shareable with anyone.
#[derive(Clone, PartialEq, Eq)]
pub struct VerifyingKey(pub(crate) PublicKey);

impl fmt::Debug for VerifyingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_text())
    }
}

impl VerifyingKey {
    /// `ed25519/<hex>`, the form biscuit tools take.
    pub fn to_text(&self) -> String {
        format!("ed25519/{}", self.0.to_bytes_hex())
    }

    pub fn parse(text: &str) -> Result<Self, AccessError> {
        let hex = text.strip_prefix("ed25519/").unwrap_or(text);
        PublicKey::from_bytes_hex(hex, Algorithm::Ed25519)
            .map(Self)
            .map_err(|_| AccessError::Malformed)
    }
}

/// A token just issued: the token for its holder, and what may be recorded about it.
#[derive(Debug, Clone)]
pub struct IssuedToken {
    pub token: BearerToken,
    /// Hex revocation ids, one per block (one, at issuance). The first is the token's id:
    /// every token attenuated from it carries it too, so revoking it revokes them all.
    pub revocation_ids: Vec<String>,
    pub claims: Claims,
}

impl IssuedToken {
    pub fn token_id(&self) -> &str {
        self.revocation_ids.first().map_or("", String::as_str)
    }

    /// What the registry records about this token (never the token).
    pub fn issuance(&self) -> crate::ports::Issuance {
        let claims = &self.claims;
        crate::ports::Issuance {
            token_id: self.token_id().to_owned(),
            subject: claims.subject.as_str().to_owned(),
            role: claims.role.as_str().to_owned(),
            organization: claims.organization.clone(),
            patient: claims.patient.clone(),
            scopes: claims
                .scopes
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(" "),
            purpose: claims.purpose.as_ref().map(|p| p.as_str().to_owned()),
            issued_at: claims.issued_at,
            expires_at: claims.expires_at,
            revoked_at: None,
        }
    }
}

pub(crate) fn system_time(at: OffsetDateTime) -> SystemTime {
    SystemTime::from(at)
}

pub(crate) fn action_set(actions: Actions) -> Term {
    let letters: BTreeSet<Term> = crate::claims::Action::ALL
        .into_iter()
        .filter(|a| actions.contains(*a))
        .map(|a| string(a.as_str()))
        .collect();
    set(letters)
}

fn build_error(err: impl fmt::Display) -> AccessError {
    AccessError::Build(err.to_string())
}

impl SigningKey {
    /// The key of a 32-byte seed (the keyring's token signing seed).
    pub fn from_seed(seed: &[u8; 32]) -> Result<Self, AccessError> {
        let private = PrivateKey::from_bytes(seed, Algorithm::Ed25519).map_err(build_error)?;
        Ok(Self(KeyPair::from(&private)))
    }

    pub fn verifying_key(&self) -> VerifyingKey {
        VerifyingKey(self.0.public())
    }

    /// Signs a token stating `claims`.
    pub fn issue(&self, claims: &Claims) -> Result<IssuedToken, AccessError> {
        let mut facts = vec![
            fact("subject", &[string(claims.subject.as_str())]),
            fact("role", &[string(claims.role.as_str())]),
            fact("issued_at", &[date(&system_time(claims.issued_at))]),
            fact("expires_at", &[date(&system_time(claims.expires_at))]),
        ];
        if let Some(org) = &claims.organization {
            facts.push(fact("org", &[string(org)]));
        }
        if let Some(patient) = &claims.patient {
            facts.push(fact("patient", &[string(patient)]));
        }
        if let Some(purpose) = &claims.purpose {
            facts.push(fact("purpose", &[string(purpose.as_str())]));
        }
        for scope in &claims.scopes {
            facts.push(fact(
                "scope",
                &[
                    string(scope.context.as_str()),
                    string(scope.type_pattern()),
                    action_set(scope.actions),
                ],
            ));
        }
        let mut builder = Biscuit::builder();
        for f in facts {
            builder = builder.fact(f).map_err(build_error)?;
        }
        builder = builder
            .code_with_params(
                "check if time($t), $t <= {expires}",
                HashMap::from([("expires".to_owned(), date(&system_time(claims.expires_at)))]),
                HashMap::new(),
            )
            .map_err(build_error)?;
        let biscuit = builder.build(&self.0).map_err(build_error)?;
        let token = biscuit.to_base64().map_err(build_error)?;
        Ok(IssuedToken {
            token: BearerToken(token),
            revocation_ids: revocation_ids(biscuit.revocation_identifiers()),
            claims: claims.clone(),
        })
    }
}

pub(crate) fn revocation_ids(ids: Vec<Vec<u8>>) -> Vec<String> {
    ids.into_iter().map(hex::encode).collect()
}

/// How an attenuation narrows a token. At least one narrowing is required.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Narrowing {
    /// `Patient/{id}`: confine the token to this patient's compartment.
    pub patient: Option<String>,
    /// Expire sooner.
    pub expires_at: Option<OffsetDateTime>,
    /// Reads and searches only.
    pub read_only: bool,
}

/// Appends a block that narrows `token`. Needs no key: any holder can do it offline. The
/// result carries the original's revocation ids, so revoking the original revokes it too.
pub fn attenuate(token: &str, narrowing: &Narrowing) -> Result<BearerToken, AccessError> {
    if narrowing.patient.is_none() && narrowing.expires_at.is_none() && !narrowing.read_only {
        return Err(AccessError::Build(ClaimError::NothingToNarrow.to_string()));
    }
    let unverified = UnverifiedBiscuit::from_base64(token).map_err(|_| AccessError::Malformed)?;
    let mut block = BlockBuilder::new();
    if let Some(patient) = &narrowing.patient {
        let patient = crate::claims::check_reference(patient, "Patient")
            .map_err(|err| AccessError::Build(err.to_string()))?;
        block = block
            .fact(fact("patient", &[string(&patient)]))
            .map_err(build_error)?
            .code_with_params(
                "check if compartment({patient})",
                HashMap::from([("patient".to_owned(), string(&patient))]),
                HashMap::new(),
            )
            .map_err(build_error)?;
    }
    if let Some(expires) = narrowing.expires_at {
        block = block
            .code_with_params(
                "check if time($t), $t <= {expires}",
                HashMap::from([("expires".to_owned(), date(&system_time(expires)))]),
                HashMap::new(),
            )
            .map_err(build_error)?;
    }
    if narrowing.read_only {
        block = block.code(READ_ONLY_CHECK).map_err(build_error)?;
    }
    let narrowed = unverified.append(block).map_err(build_error)?;
    narrowed.to_base64().map(BearerToken).map_err(build_error)
}

/// The check a read-only attenuation adds: each request reads or searches data, or is an
/// operation that only reads.
pub const READ_ONLY_CHECK: &str =
    r#"check if data_request($t, $a), {"r", "s"}.contains($a) or operation($o, "read")"#;
