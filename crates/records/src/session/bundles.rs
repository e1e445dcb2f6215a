//! Transaction and batch Bundles as the core decides them: every entry is allowed as if it had
//! been sent alone, and a refusal names the entry.

use access::{Action as Permission, Need};
use fhir_model::bundle_request::{BundleRequest, EntryRequest, Method, rewrite_references};
use serde_json::Value;

use super::Session;
use crate::error::RecordsError;
use crate::service::{EntryOutcome, Identities, parse_if_match};

impl Session {
    /// See [`crate::Records::transaction`]. Every entry is allowed first, each as if sent alone
    /// (conditional criteria and conditional references need search too); the first refusal
    /// fails the whole transaction, naming its entry, before anything is done.
    pub async fn transaction(
        &self,
        request: &BundleRequest,
        base: &str,
    ) -> Result<Vec<EntryOutcome>, RecordsError> {
        for entry in &request.entries {
            self.allow(&entry_needs(entry))
                .await
                .map_err(|err| err.in_entry(entry.index))?;
        }
        self.records.transaction(request, base).await
    }

    /// A batch Bundle: each entry in Bundle order as a request of its own (allowed, carried out
    /// and audited alone), so one failing changes nothing for the others. References to
    /// another entry's `fullUrl` fail their entry: batch entries are independent.
    pub async fn batch(&self, request: &BundleRequest, base: &str) -> Vec<EntryOutcome> {
        let mut identities = Identities::new(base);
        identities.forbid(request.entries.iter().filter_map(|e| e.full_url.clone()));
        let mut outcomes = Vec::with_capacity(request.entries.len());
        for entry in &request.entries {
            let outcome = self
                .batch_entry(entry, &identities)
                .await
                .unwrap_or_else(|err| EntryOutcome::Failed(err.in_entry(entry.index)));
            outcomes.push(outcome);
        }
        outcomes
    }

    async fn batch_entry(
        &self,
        entry: &EntryRequest,
        identities: &Identities,
    ) -> Result<EntryOutcome, RecordsError> {
        let target = &entry.target;
        let resource_type = target.resource_type;
        let if_match = entry.if_match.as_deref().map(parse_if_match).transpose()?;
        Ok(match entry.method {
            Method::Post => {
                let body = self.entry_body(entry, identities).await?;
                match &entry.if_none_exist {
                    None => EntryOutcome::Created(self.create(resource_type, &body).await?),
                    Some(criteria) => {
                        match self
                            .create_conditional(resource_type, &body, criteria)
                            .await?
                        {
                            (stored, true) => EntryOutcome::Created(stored),
                            (existing, false) => EntryOutcome::Existing(existing),
                        }
                    }
                }
            }
            Method::Put => {
                let body = self.entry_body(entry, identities).await?;
                let (stored, created) = match &target.id {
                    Some(id) => self.update(resource_type, id, &body, if_match).await?,
                    None => {
                        self.update_conditional(resource_type, &body, &target.query)
                            .await?
                    }
                };
                if created {
                    EntryOutcome::Created(stored)
                } else {
                    EntryOutcome::Updated(stored)
                }
            }
            Method::Patch => {
                let binary = entry.resource.as_ref().unwrap_or(&Value::Null);
                let patch = crate::service::patch_bytes_in_binary(binary)?;
                EntryOutcome::Updated(match &target.id {
                    Some(id) => self.patch(resource_type, id, &patch, if_match).await?,
                    None => {
                        self.patch_conditional(resource_type, &target.query, &patch, if_match)
                            .await?
                    }
                })
            }
            Method::Delete => EntryOutcome::Deleted(match &target.id {
                Some(id) => self.delete(resource_type, id, if_match).await?,
                None => {
                    self.delete_conditional(resource_type, &target.query)
                        .await?
                }
            }),
            Method::Get | Method::Head => match (&target.id, &target.version) {
                (Some(id), Some(version)) => {
                    EntryOutcome::Read(self.vread(resource_type, id, version).await?)
                }
                (Some(id), None) => EntryOutcome::Read(self.read(resource_type, id).await?),
                (None, _) => {
                    EntryOutcome::Searched(self.search(resource_type, &target.query, false).await?)
                }
            },
        })
    }

    /// A batch entry's resource with its conditional references resolved, as bytes for the
    /// use case it goes to.
    async fn entry_body(
        &self,
        entry: &EntryRequest,
        identities: &Identities,
    ) -> Result<Vec<u8>, RecordsError> {
        let mut resource = entry.resource.clone().unwrap_or(Value::Null);
        for resource_type in conditional_reference_types(&resource) {
            self.allow(&[Need::data(&resource_type, Permission::Search)])
                .await?;
        }
        self.records
            .resolve_references(&mut resource, entry.index, identities)
            .await?;
        Ok(serde_json::to_vec(&resource).unwrap_or_default())
    }

    /// See [`crate::Records::patch`].
    pub async fn patch(
        &self,
        resource_type: fhir_model::ResourceType,
        id: &str,
        patch: &[u8],
        if_match: Option<u64>,
    ) -> Result<crate::StoredResource, RecordsError> {
        self.allow_data(resource_type, &[Permission::Update])
            .await?;
        self.records.patch(resource_type, id, patch, if_match).await
    }

    /// See [`crate::Records::patch_conditional`]; it searches too.
    pub async fn patch_conditional(
        &self,
        resource_type: fhir_model::ResourceType,
        criteria: &[(String, String)],
        patch: &[u8],
        if_match: Option<u64>,
    ) -> Result<crate::StoredResource, RecordsError> {
        self.allow_data(resource_type, &[Permission::Update, Permission::Search])
            .await?;
        self.records
            .patch_conditional(resource_type, criteria, patch, if_match)
            .await
    }

    /// See [`crate::Records::delete_conditional`]; it searches too.
    pub async fn delete_conditional(
        &self,
        resource_type: fhir_model::ResourceType,
        criteria: &[(String, String)],
    ) -> Result<Option<u64>, RecordsError> {
        self.allow_data(resource_type, &[Permission::Delete, Permission::Search])
            .await?;
        self.records
            .delete_conditional(resource_type, criteria)
            .await
    }
}

/// What an entry needs allowed, as if it had been sent alone.
fn entry_needs(entry: &EntryRequest) -> Vec<Need> {
    let target = entry.target.resource_type.as_str();
    let conditional = entry.is_conditional();
    let mut permissions = match entry.method {
        Method::Post if entry.if_none_exist.is_some() => {
            vec![Permission::Create, Permission::Search]
        }
        Method::Post => vec![Permission::Create],
        Method::Put if conditional => {
            vec![Permission::Create, Permission::Update, Permission::Search]
        }
        Method::Put => vec![Permission::Update],
        Method::Patch => vec![Permission::Update],
        Method::Delete => vec![Permission::Delete],
        Method::Get | Method::Head if entry.target.id.is_some() => vec![Permission::Read],
        Method::Get | Method::Head => vec![Permission::Search],
    };
    if conditional && matches!(entry.method, Method::Patch | Method::Delete) {
        permissions.push(Permission::Search);
    }
    let mut needs: Vec<Need> = permissions
        .into_iter()
        .map(|p| Need::data(target, p))
        .collect();
    if matches!(entry.method, Method::Post | Method::Put)
        && let Some(resource) = &entry.resource
    {
        needs.extend(
            conditional_reference_types(resource)
                .iter()
                .map(|t| Need::data(t, Permission::Search)),
        );
    }
    needs
}

/// The types conditional references (`Patient?identifier=…`) in `resource` search.
fn conditional_reference_types(resource: &Value) -> Vec<String> {
    let mut resource = resource.clone();
    let mut types: Vec<String> = Vec::new();
    let root = fhir_model::Location::root("Resource");
    rewrite_references::<()>(&mut resource, &root, &mut |reference, _| {
        if let Some((type_name, _)) = reference.split_once('?')
            && !type_name.contains('/')
            && !types.iter().any(|t| t == type_name)
        {
            types.push(type_name.to_owned());
        }
        Ok(None)
    })
    .ok();
    types
}
