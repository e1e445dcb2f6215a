//! References inside a Bundle's resources: `fullUrl`s of other entries, conditional references
//! (`Type?criteria`) and absolute URLs of this server, rewritten to the `Type/id` they name
//! before an entry's resource is validated and stored.

use std::collections::{HashMap, HashSet};

use fhir_model::bundle_request::rewrite_references;
use serde_json::Value;

use super::*;

/// Where references in a Bundle lead: each `fullUrl` (and, under this server's base, its
/// relative form) to the `Type/id` it resolved to.
pub(crate) struct Identities {
    base: String,
    resolved: HashMap<String, String>,
    /// In a batch: the other entries' `fullUrl`s, which references may not use.
    forbidden: HashSet<String>,
}

impl Identities {
    pub(crate) fn new(base: &str) -> Self {
        Self {
            base: format!("{}/", base.trim_end_matches('/')),
            resolved: HashMap::new(),
            forbidden: HashSet::new(),
        }
    }

    pub(crate) fn insert(&mut self, full_url: &str, target: String) {
        if let Some(relative) = full_url.strip_prefix(&self.base) {
            self.resolved.insert(relative.to_owned(), target.clone());
        }
        self.resolved.insert(full_url.to_owned(), target);
    }

    /// For a batch: references to these `fullUrl`s are refused.
    pub(crate) fn forbid(&mut self, full_urls: impl IntoIterator<Item = String>) {
        self.forbidden.extend(full_urls);
    }
}

impl Records {
    /// Rewrites the references in an entry's resource: a `fullUrl` of the Bundle to the
    /// `Type/id` it resolved to; `Type?criteria` to its one match; an absolute URL of this
    /// server to its relative form. A `urn:` reference that is not in the Bundle, a reference to
    /// this server that does not exist, or criteria matching none or several fail the entry,
    /// naming the element.
    pub(crate) async fn resolve_references(
        &self,
        resource: &mut Value,
        index: usize,
        identities: &Identities,
    ) -> Result<(), RecordsError> {
        let at = fhir_model::bundle_request::entry_location(index).child("resource");
        let mut found: Vec<(String, String)> = Vec::new();
        rewrite_references::<()>(resource, &at, &mut |reference, location| {
            found.push((reference.to_owned(), location.as_str().to_owned()));
            Ok(None)
        })
        .ok();
        let mut resolved: HashMap<String, String> = HashMap::new();
        for (reference, location) in found {
            if resolved.contains_key(&reference) {
                continue;
            }
            if let Some(target) = self
                .resolve_reference(&reference, &location, identities)
                .await?
            {
                resolved.insert(reference, target);
            }
        }
        if !resolved.is_empty() {
            rewrite_references::<()>(resource, &at, &mut |reference, _| {
                Ok(resolved.get(reference).cloned())
            })
            .ok();
        }
        Ok(())
    }

    async fn resolve_reference(
        &self,
        reference: &str,
        location: &str,
        identities: &Identities,
    ) -> Result<Option<String>, RecordsError> {
        let bad = |why| RecordsError::BadReference {
            location: location.to_owned(),
            why,
        };
        if identities.forbidden.contains(reference) {
            return Err(bad(
                "refers to another entry of the batch; batch entries are processed on their \
                 own, so use a transaction to link them",
            ));
        }
        if let Some(target) = identities.resolved.get(reference) {
            return Ok(Some(target.clone()));
        }
        if reference.starts_with("urn:uuid:") || reference.starts_with("urn:oid:") {
            return Err(bad("refers to a fullUrl that is not in the Bundle"));
        }
        if let Some((type_name, query)) = reference.split_once('?')
            && !type_name.contains('/')
        {
            let resource_type = ResourceType::parse(type_name)
                .map_err(|_| bad("is a conditional reference to an unknown resource type"))?;
            let criteria: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes())
                .into_owned()
                .collect();
            let (query, _) = self.conditional_query(resource_type, &criteria, location)?;
            let mut matches = self.store.search(&query).await?;
            return match matches.len() {
                0 => Err(RecordsError::NoMatch {
                    resource_type,
                    what: format!("the conditional reference at {location}"),
                }),
                1 => Ok(matches
                    .pop()
                    .map(|m| format!("{type_name}/{}", m.version.id))),
                _ => Err(RecordsError::MultipleMatches { resource_type }),
            };
        }
        if let Some(relative) = reference.strip_prefix(&identities.base) {
            let mut parts = relative.split('/');
            let exists = match (parts.next(), parts.next(), parts.next()) {
                (Some(type_name), Some(id), None) => match ResourceType::parse(type_name) {
                    Ok(resource_type) => self
                        .store
                        .read_current(resource_type, id)
                        .await?
                        .is_some_and(|c| !c.deleted && self.visible(&c.key_owner)),
                    Err(_) => false,
                },
                _ => false,
            };
            if !exists {
                return Err(bad(
                    "refers to a resource of this server that does not exist and is not in the \
                     Bundle",
                ));
            }
            return Ok(Some(relative.to_owned()));
        }
        Ok(None)
    }
}
