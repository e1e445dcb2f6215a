//! `Session`: one caller's request to the core. Every use case an adapter offers is reached
//! through a session, which decides whether the caller may (with `access`'s policy, at the
//! core's clock), confines them to their patient's compartment, names them on the audit log,
//! and records a refusal there before the adapter answers it. Adapters authenticate the caller
//! and translate; they choose no permissions and write no audit entries.

use std::sync::Arc;

use access::{AccessError, Action as Permission, Caller, Gate, Need, Operation};
use audit_chain::{Action, Outcome};
use fhir_model::ResourceType;
use time::OffsetDateTime;

use crate::audit_entries::Actor;
use crate::error::RecordsError;
use crate::ports::Erasure;
use crate::series::SeriesStatus;
use crate::service::{HistoryEntry, HistoryPage, Records, SearchPage, StoredResource};
use crate::tokens::{TokenError, Tokens};

/// A caller's request, as the core decides it.
#[derive(Debug, Clone)]
pub struct Session {
    /// The records as this caller may touch them: acting for them on the log, confined to
    /// their patient's compartment if their token is.
    records: Records,
    caller: Arc<Caller>,
    gate: Option<Arc<Gate>>,
}

/// Who the audit log names for `caller`, in request `request_id`.
pub fn actor(caller: &Caller, request_id: &str) -> Actor {
    Actor {
        subject: Some(caller.subject.as_str().to_owned()),
        role: Some(caller.role.as_str().to_owned()),
        client: caller.organization.clone(),
        token_id: Some(caller.token_id().to_owned()).filter(|id| !id.is_empty()),
        purpose: caller.purpose.as_ref().map(|p| p.as_str().to_owned()),
        request_id: Some(request_id.to_owned()),
    }
}

impl Records {
    /// The policy sessions are decided by; without one, every session is refused.
    pub fn guarded_by(mut self, gate: Gate) -> Self {
        self.gate = Some(Arc::new(gate));
        self
    }

    /// The token use cases over `registry`, on this core's audit log and clock.
    pub fn tokens(&self, registry: Arc<dyn access::TokenRegistry>) -> Tokens {
        Tokens::new(registry, Arc::clone(self.audit_trail()), self.clock())
    }

    /// A session for `caller` (authenticated by the adapter) in request `request_id`.
    pub fn session(&self, caller: Caller, request_id: &str) -> Session {
        let records = self.acting_for(actor(&caller, request_id));
        let records = match caller.patient_id() {
            Some(patient) => records.confined_to_patient(patient),
            None => records,
        };
        Session {
            records,
            caller: Arc::new(caller),
            gate: self.gate.clone(),
        }
    }

    /// Records a credential refused before any session could be opened (missing, malformed,
    /// tampered, expired or revoked; `reason` is the refusal's code, never the token), with the
    /// core's clock. A log that cannot take it changes nothing about the refusal; the failure
    /// is logged.
    pub async fn record_login_failure(&self, request_id: &str, reason: &str) {
        // Nobody was authenticated: the entry names no one, only the request.
        let mut entry = audit_chain::AuditEntry::new(
            uuid::Uuid::now_v7().to_string(),
            self.now(),
            Action::LoginFailure,
            Outcome::Denied,
        );
        entry.request_id = Some(request_id.to_owned());
        entry.reason = Some(reason.to_owned());
        if let Err(err) = self.append_audit(&[entry]).await {
            tracing::error!(error = %err, "cannot record a refused credential on the audit log");
        }
    }
}

impl Session {
    /// The caller this session decides for.
    pub fn caller(&self) -> &Caller {
        &self.caller
    }

    /// Decides `needs` at the core's clock. A refusal is recorded (as a login failure if the
    /// token lapsed meanwhile, otherwise as access denied) before it is returned.
    async fn allow(&self, needs: &[Need]) -> Result<(), RecordsError> {
        let decision = match &self.gate {
            Some(gate) => gate.authorize(&self.caller, needs, self.records.clock_now()),
            None => Err(AccessError::Forbidden {
                explanation: "no access policy is configured".to_owned(),
            }),
        };
        let caller = &self.caller;
        match decision {
            Ok(allowed) => {
                if caller.is_break_glass() {
                    tracing::warn!(subject = %caller.subject, token_id = caller.token_id(), policy = allowed.policy, "break-glass access (purpose ETREAT)");
                } else {
                    tracing::debug!(subject = %caller.subject, role = %caller.role, token_id = caller.token_id(), policy = allowed.policy, "allowed");
                }
                Ok(())
            }
            Err(err) => {
                tracing::info!(subject = %caller.subject, role = %caller.role, token_id = caller.token_id(), reason = %err, "access denied");
                let action = if err.is_authentication() {
                    Action::LoginFailure
                } else {
                    Action::AccessDenied
                };
                let mut entry = self.records.audit_entry(action, Outcome::Denied);
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
                // The caller is refused either way; a log that cannot take it is logged.
                if let Err(failure) = self.records.append_audit(&[entry]).await {
                    tracing::error!(error = %failure, "cannot record a refusal on the audit log");
                }
                Err(RecordsError::Refused(err))
            }
        }
    }

    async fn allow_data(
        &self,
        resource_type: ResourceType,
        permissions: &[Permission],
    ) -> Result<(), RecordsError> {
        let needs: Vec<Need> = permissions
            .iter()
            .map(|p| Need::data(resource_type.as_str(), *p))
            .collect();
        self.allow(&needs).await
    }

    /// See [`Records::create`].
    pub async fn create(
        &self,
        resource_type: ResourceType,
        body: &[u8],
    ) -> Result<StoredResource, RecordsError> {
        self.allow_data(resource_type, &[Permission::Create])
            .await?;
        self.records.create(resource_type, body).await
    }

    /// See [`Records::create_conditional`]; it searches too, so it needs both.
    pub async fn create_conditional(
        &self,
        resource_type: ResourceType,
        body: &[u8],
        criteria: &[(String, String)],
    ) -> Result<(StoredResource, bool), RecordsError> {
        self.allow_data(resource_type, &[Permission::Create, Permission::Search])
            .await?;
        self.records
            .create_conditional(resource_type, body, criteria)
            .await
    }

    /// See [`Records::read`].
    pub async fn read(
        &self,
        resource_type: ResourceType,
        id: &str,
    ) -> Result<StoredResource, RecordsError> {
        self.allow_data(resource_type, &[Permission::Read]).await?;
        self.records.read(resource_type, id).await
    }

    /// See [`Records::vread`].
    pub async fn vread(
        &self,
        resource_type: ResourceType,
        id: &str,
        version: &str,
    ) -> Result<StoredResource, RecordsError> {
        self.allow_data(resource_type, &[Permission::Read]).await?;
        self.records.vread(resource_type, id, version).await
    }

    /// See [`Records::update`].
    pub async fn update(
        &self,
        resource_type: ResourceType,
        id: &str,
        body: &[u8],
        if_match: Option<u64>,
    ) -> Result<(StoredResource, bool), RecordsError> {
        self.allow_data(resource_type, &[Permission::Update])
            .await?;
        self.records.update(resource_type, id, body, if_match).await
    }

    /// See [`Records::update_conditional`]; it may create, update and searches.
    pub async fn update_conditional(
        &self,
        resource_type: ResourceType,
        body: &[u8],
        criteria: &[(String, String)],
    ) -> Result<(StoredResource, bool), RecordsError> {
        self.allow_data(
            resource_type,
            &[Permission::Create, Permission::Update, Permission::Search],
        )
        .await?;
        self.records
            .update_conditional(resource_type, body, criteria)
            .await
    }

    /// See [`Records::delete`].
    pub async fn delete(
        &self,
        resource_type: ResourceType,
        id: &str,
        if_match: Option<u64>,
    ) -> Result<Option<u64>, RecordsError> {
        self.allow_data(resource_type, &[Permission::Delete])
            .await?;
        self.records.delete(resource_type, id, if_match).await
    }

    /// See [`Records::validate`]. Validating stores nothing, but is part of writing: who may
    /// create may validate.
    pub async fn validate(
        &self,
        resource_type: ResourceType,
        body: &[u8],
    ) -> Result<Vec<fhir_model::Issue>, RecordsError> {
        self.allow_data(resource_type, &[Permission::Create])
            .await?;
        Ok(self.records.validate(resource_type, body))
    }

    /// See [`Records::history`].
    pub async fn history(
        &self,
        resource_type: ResourceType,
        id: &str,
        since: Option<OffsetDateTime>,
        count: u64,
    ) -> Result<Vec<HistoryEntry>, RecordsError> {
        self.allow_data(resource_type, &[Permission::Read]).await?;
        self.records.history(resource_type, id, since, count).await
    }

    /// See [`Records::history_all`]: a type's history is a search of the type; every type's
    /// needs a role and scope that may search every type.
    pub async fn history_all(
        &self,
        resource_type: Option<ResourceType>,
        since: Option<OffsetDateTime>,
        count: u64,
        cursor: Option<&str>,
    ) -> Result<HistoryPage, RecordsError> {
        let target = resource_type.map_or("*", |t| t.as_str());
        self.allow(&[Need::data(target, Permission::Search)])
            .await?;
        self.records
            .history_all(resource_type, since, count, cursor)
            .await
    }

    /// See [`Records::search_with`].
    pub async fn search(
        &self,
        resource_type: ResourceType,
        params: &[(String, String)],
        lenient: bool,
    ) -> Result<SearchPage, RecordsError> {
        self.allow_data(resource_type, &[Permission::Search])
            .await?;
        self.records
            .search_with(resource_type, params, lenient)
            .await
    }

    /// See [`Records::series_status`]: it reads the patient and searches their doses.
    pub async fn series_status(&self, patient_id: &str) -> Result<Vec<SeriesStatus>, RecordsError> {
        self.allow(&[
            Need::data("Patient", Permission::Read),
            Need::data("Immunization", Permission::Search),
        ])
        .await?;
        self.records.series_status(patient_id).await
    }

    /// See [`Records::erase_patient`]. Erasure destroys a key without reading anything: key
    /// management, an operation of its own.
    pub async fn erase_patient(&self, id: &str) -> Result<Erasure, RecordsError> {
        self.allow(&[Need::Operation(Operation::PatientErase)])
            .await?;
        self.records.erase_patient(id).await
    }

    /// Whether the caller may read the audit log (checkpoints, entries, proofs, AuditEvents).
    pub async fn allow_audit_reading(&self) -> Result<(), RecordsError> {
        self.allow(&[Need::Operation(Operation::AuditRead)]).await
    }

    /// Whether the caller may see `patient_id`'s accounting of disclosures: the patient their
    /// own (a token confined to their compartment may read the Patient), auditors and admins
    /// anyone's.
    pub async fn allow_disclosures(&self, patient_id: &str) -> Result<(), RecordsError> {
        if self.caller.patient_id() == Some(patient_id) {
            self.allow(&[Need::data("Patient", Permission::Read)]).await
        } else {
            self.allow_audit_reading().await
        }
    }

    /// Token issuances for access reviews (of `subject`, or everyone's; active ones or
    /// `all`), for a caller who may list them.
    pub async fn token_issuances(
        &self,
        tokens: &Tokens,
        subject: Option<&str>,
        all: bool,
    ) -> Result<Vec<access::Issuance>, RecordsError> {
        self.allow(&[Need::Operation(Operation::TokenList)]).await?;
        tokens
            .issuances(subject, all)
            .await
            .map_err(|err| match err {
                TokenError::Registry(failure) => {
                    RecordsError::Store(crate::StoreError::Unavailable(failure))
                }
                other => RecordsError::Store(crate::StoreError::Unavailable(Box::new(other))),
            })
    }
}

mod bundles;
#[cfg(test)]
mod tests;
