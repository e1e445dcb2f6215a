//! Bearer tokens on the wire: who is calling (401 if nobody valid), whether they may do this
//! (403, or 404 through a confined view of the records), and how often (429).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use access::{AccessError, Caller, Gate, Need, RevocationStamp, RevokedIds, TokenRegistry};
use audit_chain::{Action, AuditEntry, AuditTrail, Outcome};
use fhir_model::{IssueSeverity, IssueType, OperationOutcome};
use poem::http::StatusCode;
use poem::{IntoResponse, Request};
use poem_openapi::SecurityScheme;
use poem_openapi::auth::Bearer;
use records::{Actor, Records};
use time::OffsetDateTime;

use crate::errors::{FhirError, outcome_json};
use crate::front::RequestId;

/// A per-token request budget: `burst` requests at once, refilled at `per_second`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimit {
    pub per_second: f64,
    pub burst: f64,
}

impl Default for RateLimit {
    fn default() -> Self {
        Self {
            per_second: 200.0,
            burst: 400.0,
        }
    }
}

/// Token buckets per issued token (its first revocation id, shared by its attenuations).
#[derive(Debug, Default)]
struct Buckets(HashMap<String, (f64, Instant)>);

/// How many tokens' buckets are kept; past it, full (idle) buckets are dropped.
const MAX_BUCKETS: usize = 100_000;

impl Buckets {
    /// Takes one request from `key`'s bucket; `Err(wait)` when it is empty.
    fn take(&mut self, key: &str, limit: RateLimit, now: Instant) -> Result<(), Duration> {
        if self.0.len() >= MAX_BUCKETS {
            self.0.retain(|_, (level, at)| {
                *level + now.duration_since(*at).as_secs_f64() * limit.per_second < limit.burst
            });
        }
        let (level, at) = self.0.entry(key.to_owned()).or_insert((limit.burst, now));
        let refilled =
            (*level + now.duration_since(*at).as_secs_f64() * limit.per_second).min(limit.burst);
        *at = now;
        if refilled >= 1.0 {
            *level = refilled - 1.0;
            Ok(())
        } else {
            *level = refilled;
            Err(Duration::from_secs_f64(
                (1.0 - refilled) / limit.per_second.max(f64::MIN_POSITIVE),
            ))
        }
    }
}

/// Everything a request's access check needs, shared by every request.
#[derive(Clone)]
pub struct AccessControl {
    gate: Gate,
    registry: Arc<dyn TokenRegistry>,
    revoked: Arc<RwLock<Arc<RevokedIds>>>,
    stamp: Arc<Mutex<Option<RevocationStamp>>>,
    limit: RateLimit,
    buckets: Arc<Mutex<Buckets>>,
    /// Where refusals are recorded (set by [`crate::app`] to the records' log).
    audit: Option<Arc<dyn AuditTrail>>,
}

impl std::fmt::Debug for AccessControl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessControl")
            .field("gate", &self.gate)
            .field("limit", &self.limit)
            .finish_non_exhaustive()
    }
}

impl AccessControl {
    pub fn new(gate: Gate, registry: Arc<dyn TokenRegistry>, limit: RateLimit) -> Self {
        Self {
            gate,
            registry,
            revoked: Arc::default(),
            stamp: Arc::default(),
            limit,
            buckets: Arc::default(),
            audit: None,
        }
    }

    /// Records refusals (401, 403) on `log`.
    pub(crate) fn audited_by(mut self, log: Arc<dyn AuditTrail>) -> Self {
        self.audit = Some(log);
        self
    }

    /// Writes a refusal on the audit log before it is answered. A log that cannot take it
    /// does not turn the refusal into anything else (nothing is disclosed either way); the
    /// failure is logged.
    pub(crate) async fn record_refusal(&self, entry: AuditEntry) {
        if let Some(log) = &self.audit
            && let Err(err) = log.append(&[entry]).await
        {
            tracing::error!(error = %err, "cannot record a refusal on the audit log");
        }
    }

    pub(crate) fn registry(&self) -> &Arc<dyn TokenRegistry> {
        &self.registry
    }

    /// Reads the revocation list again if it changed since the last call (any instance may
    /// have revoked). Call it before serving and then every fraction of a second.
    pub async fn refresh_revocations(&self) -> Result<(), access::RegistryFailure> {
        let stamp = self.registry.revocation_stamp().await?;
        let known = self.stamp.lock().ok().and_then(|s| *s);
        if known == Some(stamp) {
            return Ok(());
        }
        let ids = self.registry.revoked_ids().await?;
        if let Ok(mut revoked) = self.revoked.write() {
            *revoked = Arc::new(ids);
        }
        if let Ok(mut known) = self.stamp.lock() {
            *known = Some(stamp);
        }
        Ok(())
    }

    fn revoked(&self) -> Arc<RevokedIds> {
        self.revoked
            .read()
            .map(|r| Arc::clone(&r))
            .unwrap_or_default()
    }

    fn rate_limited(&self, caller: &Caller) -> Result<(), Duration> {
        match self.buckets.lock() {
            Ok(mut buckets) => buckets.take(caller.token_id(), self.limit, Instant::now()),
            Err(_) => Ok(()),
        }
    }

    /// Decides `needs` for `caller` and returns the records as the caller may see them
    /// (confined to their patient's compartment if the token is), writing on the audit log
    /// as done by the caller.
    pub(crate) async fn allow(
        &self,
        records: &Records,
        caller: &Caller,
        needs: &[Need],
        request_id: &RequestId,
    ) -> Result<Records, FhirError> {
        self.decide(caller, needs, request_id).await?;
        let records = records.acting_for(actor(caller, request_id));
        Ok(match caller.patient_id() {
            Some(patient) => records.confined_to_patient(patient),
            None => records,
        })
    }

    /// Decides `needs` for `caller`: 401 if the token lapsed meanwhile, 403 with the reason
    /// if it does not allow them. Every decision is logged with ids only; every refusal is
    /// on the audit log.
    pub(crate) async fn decide(
        &self,
        caller: &Caller,
        needs: &[Need],
        request_id: &RequestId,
    ) -> Result<(), FhirError> {
        let refusal = self.decide_now(caller, needs, request_id);
        if let Err((err, _)) = &refusal {
            let action = if err.is_authentication() {
                Action::LoginFailure
            } else {
                Action::AccessDenied
            };
            let mut entry = entry(action, Some(caller), request_id);
            entry.reason = Some(err.code().to_owned());
            match needs.first() {
                Some(Need::Data { resource_type, .. }) => {
                    entry.resource_type = Some(resource_type.clone());
                }
                Some(Need::Operation(operation)) => {
                    entry.operation = Some(operation.as_str().to_owned());
                }
                None => {}
            }
            entry.patient = caller.patient_id().map(|id| format!("Patient/{id}"));
            self.record_refusal(entry).await;
        }
        refusal.map_err(|(_, refused)| refused)
    }

    fn decide_now(
        &self,
        caller: &Caller,
        needs: &[Need],
        request_id: &RequestId,
    ) -> Result<(), (AccessError, FhirError)> {
        match self
            .gate
            .authorize(caller, needs, OffsetDateTime::now_utc())
        {
            Ok(allowed) => {
                if caller.is_break_glass() {
                    tracing::warn!(request_id = %request_id.0, subject = %caller.subject, token_id = caller.token_id(), policy = allowed.policy, "break-glass access (purpose ETREAT)");
                } else {
                    tracing::debug!(subject = %caller.subject, role = %caller.role, token_id = caller.token_id(), policy = allowed.policy, "allowed");
                }
                Ok(())
            }
            Err(err) => {
                tracing::info!(subject = %caller.subject, role = %caller.role, token_id = caller.token_id(), reason = %err, "access denied");
                let refused = if err.is_authentication() {
                    unauthorized(&err)
                } else {
                    FhirError::Forbidden(outcome_json(OperationOutcome::single(
                        IssueSeverity::Error,
                        IssueType::Forbidden,
                        err.to_string(),
                    )))
                };
                Err((err, refused))
            }
        }
    }
}

/// Who the audit log names for `caller`.
pub(crate) fn actor(caller: &Caller, request_id: &RequestId) -> Actor {
    Actor {
        subject: Some(caller.subject.as_str().to_owned()),
        role: Some(caller.role.as_str().to_owned()),
        client: caller.organization.clone(),
        token_id: Some(caller.token_id().to_owned()).filter(|id| !id.is_empty()),
        purpose: caller.purpose.as_ref().map(|p| p.as_str().to_owned()),
        request_id: Some(request_id.0.clone()),
    }
}

/// A refusal's audit entry, by `caller` if one was authenticated.
pub(crate) fn entry(action: Action, caller: Option<&Caller>, request_id: &RequestId) -> AuditEntry {
    let mut entry = AuditEntry::new(
        uuid::Uuid::now_v7().to_string(),
        OffsetDateTime::now_utc(),
        action,
        Outcome::Denied,
    );
    match caller {
        Some(caller) => actor(caller, request_id).stamp(&mut entry),
        None => entry.request_id = Some(request_id.0.clone()),
    }
    entry
}

/// 401 for a refused token, with the RFC 6750 challenge saying why.
fn unauthorized(err: &AccessError) -> FhirError {
    let body = outcome_json(OperationOutcome::single(
        IssueSeverity::Error,
        IssueType::Login,
        err.to_string(),
    ));
    let challenge = format!(
        "Bearer realm=\"cairn\", error=\"invalid_token\", error_description=\"{}\"",
        err.to_string().replace('"', "'")
    );
    FhirError::Unauthorized(body, challenge)
}

/// The challenge when no token was sent at all (RFC 6750: no error code).
pub(crate) const BARE_CHALLENGE: &str = "Bearer realm=\"cairn\"";

/// The caller of a protected operation, from `Authorization: Bearer <biscuit>`.
#[derive(SecurityScheme)]
#[oai(
    ty = "bearer",
    rename = "bearer",
    bearer_format = "biscuit",
    checker = "authenticate"
)]
pub(crate) struct BearerAuth(pub(crate) Caller);

async fn authenticate(request: &Request, bearer: Bearer) -> poem::Result<Caller> {
    let Some(access) = request.data::<AccessControl>() else {
        return Err(poem::Error::from_status(StatusCode::INTERNAL_SERVER_ERROR));
    };
    let revoked = access.revoked();
    let authenticated =
        access
            .gate
            .authenticate(&bearer.token, OffsetDateTime::now_utc(), &revoked);
    let caller = match authenticated {
        Ok(caller) => caller,
        Err(err) => {
            // Never the token: only why it was refused.
            tracing::info!(reason = %err, "authentication failed");
            let mut refused = entry(Action::LoginFailure, None, &RequestId::of(request));
            refused.reason = Some(err.code().to_owned());
            access.record_refusal(refused).await;
            return Err(poem::Error::from_response(
                unauthorized(&err).into_response(),
            ));
        }
    };
    if let Err(wait) = access.rate_limited(&caller) {
        tracing::info!(subject = %caller.subject, token_id = caller.token_id(), "rate limited");
        let body = outcome_json(OperationOutcome::single(
            IssueSeverity::Error,
            IssueType::Throttled,
            "too many requests with this token; retry after the time in Retry-After",
        ));
        let seconds = format!("{:.0}", wait.as_secs_f64().ceil().max(1.0));
        let refused = FhirError::TooManyRequests(body, seconds);
        return Err(poem::Error::from_response(refused.into_response()));
    }
    Ok(caller)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn a_bucket_allows_its_burst_then_its_rate() {
        let limit = RateLimit {
            per_second: 10.0,
            burst: 3.0,
        };
        let mut buckets = Buckets::default();
        let start = Instant::now();
        for _ in 0..3 {
            assert!(buckets.take("t", limit, start).is_ok());
        }
        let wait = buckets.take("t", limit, start).unwrap_err();
        assert!(wait > Duration::ZERO && wait <= Duration::from_millis(100));
        // Another token has its own bucket.
        assert!(buckets.take("u", limit, start).is_ok());
        // A tenth of a second refills one request.
        assert!(
            buckets
                .take("t", limit, start + Duration::from_millis(101))
                .is_ok()
        );
        assert!(
            buckets
                .take("t", limit, start + Duration::from_millis(102))
                .is_err()
        );
    }
}
