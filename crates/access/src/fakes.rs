//! An in-memory [`TokenRegistry`] for tests of code that uses the port.

use std::sync::Mutex;

use async_trait::async_trait;
use time::OffsetDateTime;

use crate::gate::RevokedIds;
use crate::ports::{Issuance, RegistryFailure, RevocationStamp, TokenRegistry};

#[derive(Debug, Default)]
pub struct MemoryTokenRegistry {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    issuances: Vec<Issuance>,
    revoked: Vec<(String, OffsetDateTime)>,
}

fn poisoned() -> RegistryFailure {
    "the registry's lock is poisoned".into()
}

#[async_trait]
impl TokenRegistry for MemoryTokenRegistry {
    async fn record_issuance(&self, issuance: &Issuance) -> Result<(), RegistryFailure> {
        let mut state = self.state.lock().map_err(|_| poisoned())?;
        if state
            .issuances
            .iter()
            .any(|i| i.token_id == issuance.token_id)
        {
            return Err("token id recorded twice".into());
        }
        state.issuances.push(issuance.clone());
        Ok(())
    }

    async fn issuances(&self, subject: Option<&str>) -> Result<Vec<Issuance>, RegistryFailure> {
        let state = self.state.lock().map_err(|_| poisoned())?;
        let mut found: Vec<Issuance> = state
            .issuances
            .iter()
            .filter(|i| subject.is_none_or(|s| i.subject == s))
            .map(|i| {
                let mut i = i.clone();
                i.revoked_at = state
                    .revoked
                    .iter()
                    .find(|(id, _)| *id == i.token_id)
                    .map(|(_, at)| *at);
                i
            })
            .collect();
        found.sort_by_key(|i| std::cmp::Reverse(i.issued_at));
        Ok(found)
    }

    async fn revoke(
        &self,
        ids: &[String],
        at: OffsetDateTime,
        _reason: &str,
    ) -> Result<u64, RegistryFailure> {
        let mut state = self.state.lock().map_err(|_| poisoned())?;
        let mut added = 0;
        for id in ids {
            if !state.revoked.iter().any(|(known, _)| known == id) {
                state.revoked.push((id.clone(), at));
                added += 1;
            }
        }
        Ok(added)
    }

    async fn revocation_stamp(&self) -> Result<RevocationStamp, RegistryFailure> {
        let state = self.state.lock().map_err(|_| poisoned())?;
        let count = u64::try_from(state.revoked.len()).unwrap_or(u64::MAX);
        Ok(RevocationStamp {
            count,
            last: i64::try_from(count).unwrap_or(i64::MAX),
        })
    }

    async fn revoked_ids(&self) -> Result<RevokedIds, RegistryFailure> {
        let state = self.state.lock().map_err(|_| poisoned())?;
        Ok(RevokedIds::new(
            state.revoked.iter().map(|(id, _)| id.clone()),
        ))
    }
}
