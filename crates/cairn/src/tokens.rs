//! `cairn token issue | attenuate | revoke | list`: access tokens for people and integrations.

use std::sync::Arc;

use access::{BearerToken, Issuance, IssuedToken, Narrowing, parse_lifetime};
use records::SystemClock;
use records::tokens::{TokenRequest, Tokens};
use time::OffsetDateTime;

pub use records::tokens::Revoke;

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

impl IssueRequest {
    /// The request in the core's words.
    pub fn to_core(&self) -> TokenRequest {
        TokenRequest {
            subject: self.subject.clone(),
            role: self.role.clone(),
            organization: self.organization.clone(),
            patient: self.patient.clone(),
            scopes: self.scopes.clone(),
            purpose: self.purpose.clone(),
            ttl: self.ttl.clone(),
        }
    }
}

/// The core's token use cases on the configured database, at the machine's clock.
fn tokens(store: &store_sql::SqlStore) -> Tokens {
    Tokens::new(
        Arc::new(store.clone()),
        Arc::new(store.clone()),
        Arc::new(SystemClock),
    )
}

/// Signs a token with the keyring's signing key and records its issuance (never the token).
pub async fn issue(config: &Config, request: &IssueRequest) -> anyhow::Result<IssuedToken> {
    let store = crate::store::open_store(config).await?;
    let issued = async {
        let master = crate::keys::server_master_keys(config, &store).await?;
        let key = access::SigningKey::from_seed(master.keyring().token_signing_seed())?;
        Ok::<_, anyhow::Error>(
            tokens(&store)
                .signing_with(key)
                .issue(&request.to_core())
                .await?,
        )
    }
    .await;
    store.close().await;
    issued
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

/// Revokes; returns how many revocation ids were newly revoked. Every running instance stops
/// accepting them within its revocation poll interval.
pub async fn revoke(config: &Config, which: &Revoke, reason: &str) -> anyhow::Result<u64> {
    let store = crate::store::open_store(config).await?;
    let revoked = tokens(&store).revoke(which, reason).await;
    store.close().await;
    Ok(revoked?)
}

/// Issuances for access reviews: active ones, or `all`.
pub async fn list(
    config: &Config,
    subject: Option<&str>,
    all: bool,
) -> anyhow::Result<Vec<Issuance>> {
    let store = crate::store::open_store(config).await?;
    let found = tokens(&store).issuances(subject, all).await;
    store.close().await;
    Ok(found?)
}
