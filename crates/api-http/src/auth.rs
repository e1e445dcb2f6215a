//! Bearer tokens on the wire: who is calling (401 if nobody valid) and how often (429). Whether
//! they may do what they ask is the core's decision (`records::Session`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use access::{Caller, Gate, RevocationStamp, RevokedIds, TokenRegistry};
use fhir_model::{IssueSeverity, IssueType, OperationOutcome};
use poem::http::StatusCode;
use poem::{IntoResponse, Request};
use poem_openapi::SecurityScheme;
use poem_openapi::auth::Bearer;
use records::Records;
use time::OffsetDateTime;

use crate::context::RequestId;
use crate::errors::{FhirError, outcome_json};

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
    /// Where refused credentials are recorded (set by the app).
    records: Option<Records>,
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
            records: None,
        }
    }

    /// Records refused credentials through `records` (the core writes the entries).
    pub(crate) fn recording_refusals_with(mut self, records: Records) -> Self {
        self.records = Some(records);
        self
    }

    /// Has the core record a refused credential (`reason` is the refusal's code) before the
    /// refusal is answered.
    pub(crate) async fn record_login_failure(&self, request_id: &RequestId, reason: &str) {
        if let Some(records) = &self.records {
            records.record_login_failure(&request_id.0, reason).await;
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
            access
                .record_login_failure(&RequestId::of(request), err.code())
                .await;
            return Err(poem::Error::from_response(
                FhirError::unauthorized(&err).into_response(),
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
