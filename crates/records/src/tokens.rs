//! Token use cases: issuing (checking the claims asked for, signing, recording the issuance),
//! revoking, and listing issuances for access reviews. The CLI and the HTTP admin endpoint
//! share them; every issuance and revocation goes on the audit log, and no token is ever
//! stored or logged (only its id).

use std::sync::Arc;

use access::{
    AccessError, ClaimError, ClaimRequest, Claims, Issuance, IssuedToken, Purpose, RegistryFailure,
    Role, Scope, SigningKey, Subject, TokenRegistry, parse_lifetime,
};
use audit_chain::{Action, AuditFailure, AuditTrail};

use crate::ports::Clock;

/// A token as asked for, in the words an administrator types: `--sub user:alice --role
/// clinician --scope "user/Patient.rs" --ttl 8h`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TokenRequest {
    /// `kind:name`: `user:alice`, `service:iis-feed`.
    pub subject: String,
    /// `admin`, `clinician`, `registrar`, `auditor`, `patient` or `system`.
    pub role: String,
    /// `Organization/<id>`.
    pub organization: Option<String>,
    /// `Patient/<id>`: the one compartment the token may touch.
    pub patient: Option<String>,
    /// SMART v2 scopes, each entry one or more separated by spaces.
    pub scopes: Vec<String>,
    /// HL7 v3 PurposeOfUse: `TREAT`, `ETREAT`, …
    pub purpose: Option<String>,
    /// `8h`, `30m`, `7d` (at most 366 days).
    pub ttl: String,
}

/// Which tokens to revoke.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Revoke {
    /// Every token issued to a subject (and so every token attenuated from them).
    Subject(String),
    /// One revocation id: an issued token's id, or an attenuation block's.
    Id(String),
}

/// Why a token use case failed. Never carries a token.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error(transparent)]
    Claims(#[from] ClaimError),
    #[error("scope {scope}: {resource_type} is not an R4 resource type")]
    UnknownScopeType {
        scope: String,
        resource_type: String,
    },
    #[error(transparent)]
    Signing(#[from] AccessError),
    #[error("tokens cannot be issued here: no signing key was given")]
    NoSigningKey,
    #[error("no token was ever issued to {subject}")]
    NeverIssued { subject: String },
    #[error("a revocation id is hex (see `cairn token list`)")]
    BadRevocationId,
    #[error("the token registry is unavailable")]
    Registry(#[source] RegistryFailure),
    #[error("cannot record this on the audit log")]
    Audit(#[source] AuditFailure),
}

/// The token use cases over the registry, the audit log and the clock.
#[derive(Clone)]
pub struct Tokens {
    registry: Arc<dyn TokenRegistry>,
    audit: Arc<dyn AuditTrail>,
    clock: Arc<dyn Clock>,
    signing: Option<Arc<SigningKey>>,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokens")
            .field("signs", &self.signing.is_some())
            .finish_non_exhaustive()
    }
}

impl Tokens {
    /// Listing and revoking; [`Tokens::signing_with`] adds issuing.
    pub fn new(
        registry: Arc<dyn TokenRegistry>,
        audit: Arc<dyn AuditTrail>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            registry,
            audit,
            clock,
            signing: None,
        }
    }

    /// Issues tokens signed with `key`.
    pub fn signing_with(mut self, key: SigningKey) -> Self {
        self.signing = Some(Arc::new(key));
        self
    }

    /// The claims `request` asks for, checked against each role's rules and the R4 types.
    pub fn claims(&self, request: &TokenRequest) -> Result<Claims, TokenError> {
        let mut scopes = Vec::new();
        for text in request.scopes.iter().flat_map(|s| s.split_whitespace()) {
            let scope = Scope::parse(text)?;
            if let Some(t) = &scope.resource_type
                && fhir_model::ResourceType::parse(t).is_err()
            {
                return Err(TokenError::UnknownScopeType {
                    scope: text.to_owned(),
                    resource_type: t.clone(),
                });
            }
            scopes.push(scope);
        }
        Ok(Claims::new(ClaimRequest {
            subject: Subject::parse(&request.subject)?,
            role: Role::parse(&request.role)?,
            organization: request.organization.clone(),
            patient: request.patient.clone(),
            scopes,
            purpose: request.purpose.as_deref().map(Purpose::parse).transpose()?,
            issued_at: self.clock.now(),
            lifetime: parse_lifetime(&request.ttl)?,
        })?)
    }

    /// Signs a token for `request`, records its issuance (never the token) and a
    /// `token-issued` entry.
    pub async fn issue(&self, request: &TokenRequest) -> Result<IssuedToken, TokenError> {
        let key = self.signing.as_ref().ok_or(TokenError::NoSigningKey)?;
        let claims = self.claims(request)?;
        let issued = key.issue(&claims)?;
        self.registry
            .record_issuance(&issued.issuance())
            .await
            .map_err(TokenError::Registry)?;
        self.append_act(Action::TokenIssued, issued.token_id())
            .await?;
        tracing::info!(subject = %claims.subject, role = %claims.role, token_id = issued.token_id(), expires_at = %claims.expires_at, "token issued");
        Ok(issued)
    }

    /// Revokes `which`; returns how many revocation ids were newly revoked. Each id revoked
    /// gets a `token-revoked` entry. Running instances refuse them within their revocation
    /// poll interval.
    pub async fn revoke(&self, which: &Revoke, reason: &str) -> Result<u64, TokenError> {
        let ids = match which {
            Revoke::Subject(subject) => {
                let subject = Subject::parse(subject)?;
                let issued = self
                    .registry
                    .issuances(Some(subject.as_str()))
                    .await
                    .map_err(TokenError::Registry)?;
                if issued.is_empty() {
                    return Err(TokenError::NeverIssued {
                        subject: subject.as_str().to_owned(),
                    });
                }
                issued.into_iter().map(|i| i.token_id).collect::<Vec<_>>()
            }
            Revoke::Id(id) => {
                let id = id.trim().to_ascii_lowercase();
                if id.is_empty() || id.len() > 160 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return Err(TokenError::BadRevocationId);
                }
                vec![id]
            }
        };
        let added = self
            .registry
            .revoke(&ids, self.clock.now(), reason)
            .await
            .map_err(TokenError::Registry)?;
        for id in &ids {
            self.append_act(Action::TokenRevoked, id).await?;
        }
        tracing::info!(?which, revoked = added, "tokens revoked");
        Ok(added)
    }

    /// Issuances for access reviews (of `subject`, or everyone's): the active ones, or `all`.
    pub async fn issuances(
        &self,
        subject: Option<&str>,
        all: bool,
    ) -> Result<Vec<Issuance>, TokenError> {
        let now = self.clock.now();
        let found = self
            .registry
            .issuances(subject)
            .await
            .map_err(TokenError::Registry)?;
        Ok(found
            .into_iter()
            .filter(|i| all || i.is_active(now))
            .collect())
    }

    /// Whether an issuance is active now, by the core's clock.
    pub fn is_active(&self, issuance: &Issuance) -> bool {
        issuance.is_active(self.clock.now())
    }

    async fn append_act(&self, action: Action, token_id: &str) -> Result<(), TokenError> {
        let entry = crate::audit_entries::admin_act(action, Some(token_id), None, self.clock.now());
        self.audit.append(&[entry]).await.map_err(TokenError::Audit)
    }
}
