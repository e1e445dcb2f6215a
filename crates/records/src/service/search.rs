//! Search: a page of matches, with `_include`, `_revinclude` and `_total`.

use super::*;

/// One page of search results.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchPage {
    pub resources: Vec<StoredResource>,
    /// The cursor of the next page, if there may be one.
    pub next_cursor: Option<String>,
    /// The cursor of the previous page, if this page is not the first.
    pub previous_cursor: Option<String>,
    /// Parameters left out under lenient handling (unknown for the type).
    pub ignored: Vec<String>,
    /// Every match, when `_total` asked for it.
    pub total: Option<u64>,
    /// Resources added by `_include` / `_revinclude` (search mode `include`).
    pub included: Vec<StoredResource>,
}

impl Records {
    /// FHIR `search` on one type: `params` are the URL's (name, value) pairs.
    pub async fn search(
        &self,
        resource_type: ResourceType,
        params: &[(String, String)],
    ) -> Result<SearchPage, RecordsError> {
        self.search_with(resource_type, params, false).await
    }

    /// As [`Records::search`]; `lenient` leaves out unknown parameters (listed in the page's
    /// `ignored`) instead of refusing them.
    pub async fn search_with(
        &self,
        resource_type: ResourceType,
        params: &[(String, String)],
        lenient: bool,
    ) -> Result<SearchPage, RecordsError> {
        self.audited(Action::Search, Some(resource_type), None, async {
            let crate::search::Parsed {
                mut query,
                direction,
                ignored,
                total,
                includes,
                revincludes,
            } = crate::search::parse_with(
                resource_type,
                params,
                &crate::search::Rules {
                    blind: &self.vault.blind_index(),
                    now: self.now(),
                    lenient,
                },
            )?;
            self.confine(&mut query);
            let total = if total {
                Some(self.store.count(&query).await?)
            } else {
                None
            };
            let limit = query.limit;
            let forward = query.order;
            // A previous page is the page after the cursor in the reverse order, turned around.
            if direction == crate::search::Direction::Backward {
                query.order = forward.reversed();
            }
            // One more than asked says whether a further page exists that way.
            query.limit = limit.saturating_add(1);
            let mut found = self.store.search(&query).await?;
            let further = u64::try_from(found.len()).unwrap_or(u64::MAX) > limit;
            found.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
            if direction == crate::search::Direction::Backward {
                found.reverse();
            }
            let position = |m: &SearchMatch| Position {
                value: m.sort_value,
                id: m.version.id.clone(),
            };
            let came_from_cursor = query.after.is_some();
            let (has_next, has_previous) = match direction {
                crate::search::Direction::Forward => (further, came_from_cursor),
                crate::search::Direction::Backward => (came_from_cursor, further),
            };
            // An empty page reached through a cursor (every match that way deleted since) still
            // links back: to the first page (nothing is before its cursor) or the last (nothing
            // after it).
            let next_cursor = match (found.last(), has_next, direction) {
                (Some(last), true, _) => Some(Some(position(last))),
                (None, true, crate::search::Direction::Backward) => Some(None),
                _ => None,
            }
            .map(|at| encode_cursor(crate::search::Direction::Forward, at.as_ref()));
            let previous_cursor = match (found.first(), has_previous, direction) {
                (Some(first), true, _) => Some(Some(position(first))),
                (None, true, crate::search::Direction::Forward) => Some(None),
                _ => None,
            }
            .map(|at| encode_cursor(crate::search::Direction::Backward, at.as_ref()));
            let found: Vec<SealedVersion> = found.into_iter().map(|m| m.version).collect();
            let mut resources = Vec::with_capacity(found.len());
            for stored in found {
                resources.push(self.open_version(stored)?);
            }
            let included = self.included(&resources, &includes, &revincludes).await?;
            // One entry per patient disclosed, with only the parameters that were used: an
            // ignored unknown name is the client's text, not a parameter.
            let used: Vec<(String, String)> = params
                .iter()
                .filter(|(name, _)| !ignored.contains(name))
                .cloned()
                .collect();
            let entries = self.disclosure_entries(
                Action::Search,
                Some(resource_type),
                &used,
                resources.iter().chain(&included).map(|r| &r.key_owner),
            );
            self.append_audit(&entries).await?;
            Ok(SearchPage {
                resources,
                next_cursor,
                previous_cursor,
                ignored,
                total,
                included,
            })
        })
        .await
    }

    /// The resources `_include` and `_revinclude` add to a page: the targets of the matches'
    /// references, and the resources referring to the matches. Each once, none of the matches,
    /// none deleted or erased.
    pub(super) async fn included(
        &self,
        matches: &[StoredResource],
        includes: &[&'static fhir_model::search::SearchParam],
        revincludes: &[&'static fhir_model::search::SearchParam],
    ) -> Result<Vec<StoredResource>, RecordsError> {
        use fhir_model::search::IndexValue;
        let mut seen: std::collections::BTreeSet<(ResourceType, String)> = matches
            .iter()
            .map(|m| (m.resource_type, m.id.clone()))
            .collect();
        let mut included = Vec::new();
        if !includes.is_empty() {
            for found in matches {
                let resource = Resource::from_json(&found.body)
                    .map_err(|err| RecordsError::Invalid { issues: err.issues })?;
                for param in includes {
                    for value in param.values(&resource) {
                        let IndexValue::Reference { target_type, id } = value else {
                            continue;
                        };
                        let Ok(target_type) = ResourceType::parse(&target_type) else {
                            continue;
                        };
                        if !seen.insert((target_type, id.clone())) {
                            continue;
                        }
                        match self.read_unaudited(target_type, &id).await {
                            Ok(target) => included.push(target),
                            // A dangling, deleted or erased target is simply not included.
                            Err(
                                RecordsError::NotFound { .. }
                                | RecordsError::Deleted { .. }
                                | RecordsError::Erased { .. },
                            ) => {}
                            Err(other) => return Err(other),
                        }
                    }
                }
            }
        }
        for param in revincludes {
            let any_of = matches
                .iter()
                .map(|m| crate::index::ReferenceMatch {
                    target_type: Some(m.resource_type.as_str().to_owned()),
                    target_id: m.id.clone(),
                })
                .collect::<Vec<_>>();
            if any_of.is_empty() {
                continue;
            }
            let mut query = crate::index::SearchQuery {
                resource_type: param.resource_type,
                clauses: vec![crate::index::Clause::Reference {
                    param: param.code,
                    any_of,
                }],
                order: crate::index::Order::default(),
                after: None,
                limit: crate::search::MAX_COUNT,
            };
            self.confine(&mut query);
            for found in self.store.search(&query).await? {
                let stored = found.version;
                if seen.insert((stored.resource_type, stored.id.clone())) {
                    included.push(self.open_version(stored)?);
                }
            }
        }
        Ok(included)
    }
}
