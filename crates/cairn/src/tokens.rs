//! `cairn token issue | attenuate | revoke | list`: access tokens for people and integrations.

use access::{
    BearerToken, ClaimRequest, Claims, Issuance, IssuedToken, Narrowing, Purpose, Role, Scope,
    Subject, TokenRegistry, parse_lifetime,
};
use anyhow::Context;
use time::OffsetDateTime;

use crate::config::Config;

/// What `cairn token issue` asks for, as typed (its command-line arguments).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct IssueRequest {
    /// Who holds it: kind:name, e.g. user:alice or service:iis-feed.
    #[arg(long = "sub")]
    pub subject: String,
    /// admin, clinician, registrar, auditor, patient or system.
    #[arg(long)]
    pub role: String,
    /// The organization the holder acts for: Organization/<id>.
    #[arg(long = "org")]
    pub organization: Option<String>,
    /// Confine the token to one patient's compartment: Patient/<id> (required for patient).
    #[arg(long)]
    pub patient: Option<String>,
    /// SMART-style scopes narrowing the role: "user/Patient.rs user/Immunization.cruds"
    /// (space-separated; may be given several times).
    #[arg(long = "scope")]
    pub scopes: Vec<String>,
    /// Purpose of use (HL7 v3 PurposeOfUse): TREAT, ETREAT (break-glass), ...
    #[arg(long)]
    pub purpose: Option<String>,
    /// Lifetime: 8h, 30m, 7d (at most 366d).
    #[arg(long, default_value = "8h")]
    pub ttl: String,
}

/// The claims `request` asks for, checked (role rules, known resource types).
pub fn claims(request: &IssueRequest, now: OffsetDateTime) -> anyhow::Result<Claims> {
    let scopes = request
        .scopes
        .iter()
        .flat_map(|s| s.split_whitespace())
        .map(|s| {
            let scope = Scope::parse(s)?;
            if let Some(t) = &scope.resource_type {
                fhir_model::ResourceType::parse(t)
                    .map_err(|_| anyhow::anyhow!("scope {s}: {t} is not an R4 resource type"))?;
            }
            Ok(scope)
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok(Claims::new(ClaimRequest {
        subject: Subject::parse(&request.subject)?,
        role: Role::parse(&request.role)?,
        organization: request.organization.clone(),
        patient: request.patient.clone(),
        scopes,
        purpose: request.purpose.as_deref().map(Purpose::parse).transpose()?,
        issued_at: now,
        lifetime: parse_lifetime(&request.ttl)?,
    })?)
}

/// Signs a token with the keyring's signing key and records its issuance (never the token).
pub async fn issue(config: &Config, request: &IssueRequest) -> anyhow::Result<IssuedToken> {
    let claims = claims(request, OffsetDateTime::now_utc())?;
    let store = crate::store::open_store(config).await?;
    let master = crate::keys::server_master_keys(config, &store).await?;
    let key = access::SigningKey::from_seed(master.keyring().token_signing_seed())?;
    let issued = key.issue(&claims)?;
    store
        .record_issuance(&issued.issuance())
        .await
        .map_err(|err| anyhow::anyhow!(err))
        .context("cannot record the issuance")?;
    let recorded = crate::store::record_admin(
        &store,
        audit_chain::Action::TokenIssued,
        Some(issued.token_id()),
        None,
    )
    .await;
    store.close().await;
    recorded?;
    tracing::info!(subject = %claims.subject, role = %claims.role, token_id = issued.token_id(), expires_at = %claims.expires_at, "token issued");
    Ok(issued)
}

/// Narrows a token offline: no key and no database needed.
pub fn attenuate(
    token: &str,
    patient: Option<String>,
    ttl: Option<&str>,
    read_only: bool,
) -> anyhow::Result<BearerToken> {
    let expires_at = ttl
        .map(|ttl| parse_lifetime(ttl).map(|d| OffsetDateTime::now_utc() + d))
        .transpose()?;
    Ok(access::attenuate(
        token,
        &Narrowing {
            patient,
            expires_at,
            read_only,
        },
    )?)
}

/// Which tokens `cairn token revoke` revokes.
#[derive(Debug, Clone)]
pub enum Revoke {
    /// Every token issued to a subject (and so every token attenuated from them).
    Subject(String),
    /// One revocation id: an issued token's id, or an attenuation block's.
    Id(String),
}

/// Revokes; returns how many revocation ids were newly revoked. Every running instance stops
/// accepting them within its revocation poll interval.
pub async fn revoke(config: &Config, which: &Revoke, reason: &str) -> anyhow::Result<u64> {
    let store = crate::store::open_store(config).await?;
    let ids = match which {
        Revoke::Subject(subject) => {
            let subject = Subject::parse(subject)?;
            let issued = store
                .issuances(Some(subject.as_str()))
                .await
                .map_err(|err| anyhow::anyhow!(err))?;
            if issued.is_empty() {
                anyhow::bail!("no token was ever issued to {subject}");
            }
            issued.into_iter().map(|i| i.token_id).collect::<Vec<_>>()
        }
        Revoke::Id(id) => {
            let id = id.trim().to_ascii_lowercase();
            if id.is_empty() || id.len() > 160 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
                anyhow::bail!("a revocation id is hex (see `cairn token list`)");
            }
            vec![id]
        }
    };
    let added = store
        .revoke(&ids, OffsetDateTime::now_utc(), reason)
        .await
        .map_err(|err| anyhow::anyhow!(err))
        .context("cannot record the revocation")?;
    let mut recorded = Ok(());
    for id in &ids {
        recorded = recorded.and(
            crate::store::record_admin(&store, audit_chain::Action::TokenRevoked, Some(id), None)
                .await,
        );
    }
    store.close().await;
    recorded?;
    tracing::info!(?which, revoked = added, "tokens revoked");
    Ok(added)
}

/// Issuances for access reviews: active ones, or `all`.
pub async fn list(
    config: &Config,
    subject: Option<&str>,
    all: bool,
) -> anyhow::Result<Vec<Issuance>> {
    let store = crate::store::open_store(config).await?;
    let now = OffsetDateTime::now_utc();
    let found = store
        .issuances(subject)
        .await
        .map_err(|err| anyhow::anyhow!(err))?;
    store.close().await;
    Ok(found
        .into_iter()
        .filter(|i| all || i.is_active(now))
        .collect())
}
