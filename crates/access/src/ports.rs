//! The port access needs from storage: the record of issued tokens and of revocations.

use async_trait::async_trait;
use time::OffsetDateTime;

use crate::gate::RevokedIds;

/// A failure of the registry's storage, opaque to this crate.
pub type RegistryFailure = Box<dyn std::error::Error + Send + Sync>;

/// What is recorded when a token is issued: never the token itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issuance {
    /// The token's first revocation id (hex): its id.
    pub token_id: String,
    pub subject: String,
    pub role: String,
    pub organization: Option<String>,
    pub patient: Option<String>,
    /// Space-separated scopes, as issued.
    pub scopes: String,
    pub purpose: Option<String>,
    pub issued_at: OffsetDateTime,
    pub expires_at: OffsetDateTime,
    /// When it was revoked, if it was.
    pub revoked_at: Option<OffsetDateTime>,
}

impl Issuance {
    /// Neither expired nor revoked at `now`.
    pub fn is_active(&self, now: OffsetDateTime) -> bool {
        self.revoked_at.is_none() && self.expires_at >= now
    }
}

/// Which revocations exist, cheaply: changes whenever a revocation is added anywhere.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RevocationStamp {
    pub count: u64,
    pub last: i64,
}

/// Token issuances and revocations, shared by every instance of the server.
#[async_trait]
pub trait TokenRegistry: Send + Sync {
    /// Records an issued token.
    async fn record_issuance(&self, issuance: &Issuance) -> Result<(), RegistryFailure>;

    /// Issuances, newest first: of one subject, or all.
    async fn issuances(&self, subject: Option<&str>) -> Result<Vec<Issuance>, RegistryFailure>;

    /// Revokes revocation ids (hex); returns how many were not revoked before.
    async fn revoke(
        &self,
        ids: &[String],
        at: OffsetDateTime,
        reason: &str,
    ) -> Result<u64, RegistryFailure>;

    /// The stamp of the revocation list; when it changes, read it again.
    async fn revocation_stamp(&self) -> Result<RevocationStamp, RegistryFailure>;

    /// Every revoked id.
    async fn revoked_ids(&self) -> Result<RevokedIds, RegistryFailure>;
}
