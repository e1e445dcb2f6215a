//! Making the search index anew when the rules that make it change (a new
//! [`INDEX_GENERATION`]): every live resource is opened, its index rows computed by today's
//! rules, and stored in place of the old ones.

use audit_chain::{Action, Outcome};
use fhir_model::Resource;
use fhir_model::search::SEARCH_PARAMETERS;

use super::Records;
use crate::RecordsError;
use crate::index::{INDEX_GENERATION, Order, Position, SearchQuery, index_rows};

/// Resources opened and re-indexed per page.
const PAGE: u64 = 500;

/// What a reindex did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReindexReport {
    /// The generation the index was made by before.
    pub from_generation: u32,
    /// Resources whose rows were made anew.
    pub reindexed: u64,
    /// Resources that changed while the reindex ran (their new version brought new rows).
    pub moved_on: u64,
    /// Resources that could not be opened (erased meanwhile): their rows were left.
    pub unreadable: u64,
}

impl Records {
    /// Makes the index anew if it was made by an older generation of the rules; the server
    /// calls this before it answers, so no search meets rows made by other rules. `None` if the
    /// index was current.
    pub async fn ensure_index_current(&self) -> Result<Option<ReindexReport>, RecordsError> {
        if self.store.index_generation().await? >= INDEX_GENERATION {
            return Ok(None);
        }
        self.reindex().await.map(Some)
    }

    /// Makes every live resource's index rows anew by today's rules, then records the index as
    /// of [`INDEX_GENERATION`]. Safe while others write: a resource that moves on meanwhile
    /// keeps the rows its new version brought. One audit entry (`reindex`) says it happened,
    /// when there was anything to open; nothing is disclosed.
    pub async fn reindex(&self) -> Result<ReindexReport, RecordsError> {
        self.audited(Action::Reindex, None, None, self.make_index_anew())
            .await
    }

    async fn make_index_anew(&self) -> Result<ReindexReport, RecordsError> {
        let mut report = ReindexReport {
            from_generation: self.store.index_generation().await?,
            ..ReindexReport::default()
        };
        let mut types = Vec::new();
        for param in SEARCH_PARAMETERS {
            if !types.contains(&param.resource_type) {
                types.push(param.resource_type);
            }
        }
        let blind = self.vault.blind_index();
        for resource_type in types {
            let mut after: Option<Position> = None;
            loop {
                let page = self
                    .store
                    .search(&SearchQuery {
                        resource_type,
                        clauses: Vec::new(),
                        order: Order::default(),
                        after: after.take(),
                        limit: PAGE,
                    })
                    .await?;
                let Some(last) = page.last() else { break };
                after = Some(Position {
                    value: None,
                    id: last.version.id.clone(),
                });
                for found in page {
                    let stored = found.version;
                    let (id, version) = (stored.id.clone(), stored.version);
                    let opened = match self.open_version(stored) {
                        Ok(opened) => opened,
                        Err(RecordsError::Erased { .. }) => {
                            report.unreadable += 1;
                            continue;
                        }
                        Err(err) => return Err(err),
                    };
                    let resource =
                        Resource::from_json(&opened.body).map_err(|_| RecordsError::Integrity {
                            resource_type,
                            id: id.clone(),
                            version,
                            cause: phi_crypto::CryptoError::Integrity {
                                what: "a stored body is not a FHIR resource",
                            },
                        })?;
                    let rows = index_rows(&resource, &blind);
                    if self
                        .store
                        .replace_index(resource_type, &id, version, rows)
                        .await?
                    {
                        report.reindexed += 1;
                    } else {
                        report.moved_on += 1;
                    }
                }
            }
        }
        // Opening records is a touch of them, and goes on the log; a store with nothing in it
        // (a new database) was touched by no one.
        if report.reindexed + report.moved_on + report.unreadable > 0 {
            let mut entry = self.audit_entry(Action::Reindex, Outcome::Success);
            entry.operation = Some("$reindex".to_owned());
            self.append_audit(&[entry]).await?;
        }
        self.store.set_index_generation(INDEX_GENERATION).await?;
        Ok(report)
    }
}
