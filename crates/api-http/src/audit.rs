//! The audit log on the wire: what an auditor needs to check it from outside (`/audit/*`), and
//! the log as FHIR (`AuditEvent` search, a patient's `$disclosures`).
//!
//! An outside verifier needs three answers and RFC 9162: the key (`/audit/key`), an entry's
//! exact bytes (`/audit/entries/{id}`) and its proof (`/audit/entries/{id}/proof`).

use access::Caller;
use audit_chain::{
    Action, AuditEntry, AuditLog, EntryQuery, ReceiptUnavailable, Sequencer, StoredCheckpoint,
};
use fhir_model::IssueType;
use poem::Request;
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::{Binary, Json, PlainText};
use poem_openapi::{ApiResponse, Object, OpenApi, Tags};
use std::sync::Arc;

use serde_json::{Value, json};
use time::OffsetDateTime;

use crate::auth::BearerAuth;
use crate::context::{RequestId, base_url};
use crate::errors::{FhirError, single};
use crate::payload::FhirJson;

#[derive(Tags)]
enum AuditTags {
    /// The tamper-evident audit log: keys, checkpoints, entries and proofs for auditors.
    Audit,
}

/// One signed checkpoint.
#[derive(Debug, Object)]
#[oai(rename_all = "camelCase")]
struct CheckpointView {
    /// How many entries the log held.
    size: u64,
    /// The RFC 6962 root hash of those entries, base64.
    root: String,
    /// The C2SP signed note: `origin`, `size`, `root` lines, a blank line, signatures.
    note: String,
    signed_at: String,
    /// When listed after another checkpoint: the RFC 9162 consistency proof from that
    /// checkpoint's size to this one's (base64 hashes, in order).
    consistency: Option<Vec<String>>,
}

#[derive(Debug, Object)]
#[oai(rename_all = "camelCase")]
struct Checkpoints {
    origin: String,
    /// Oldest first.
    checkpoints: Vec<CheckpointView>,
}

#[derive(Debug, ApiResponse)]
enum CheckpointsResponse {
    /// The latest checkpoint, or those in the asked range with consistency proofs between
    /// consecutive ones.
    #[oai(status = 200)]
    Ok(Json<Checkpoints>),
}

#[derive(Debug, ApiResponse)]
enum KeyResponse {
    /// The verifier key in the signed-note `vkey` format: `name+keyid+base64(0x01‖key)`.
    #[oai(status = 200)]
    Ok(PlainText<String>),
}

#[derive(Debug, ApiResponse)]
enum EntryResponse {
    /// The entry's canonical bytes (compact JSON), exactly as hashed into its leaf:
    /// `SHA-256(0x00 ‖ body)` is its leaf hash.
    #[oai(status = 200)]
    Ok(Binary<Vec<u8>>),
}

#[derive(Debug, ApiResponse)]
enum ProofResponse {
    /// A C2SP `tlog-proof`: the entry's index, its inclusion path, and the signed checkpoint
    /// it verifies against.
    #[oai(status = 200)]
    Ok(PlainText<String>),
}

#[derive(Debug, ApiResponse)]
enum BundleResponse {
    /// A Bundle of AuditEvents, newest first.
    #[oai(status = 200)]
    Ok(FhirJson),
}

/// The resource type the audit log is served as.
pub(crate) const AUDIT_EVENT: &str = "AuditEvent";

#[derive(Debug, ApiResponse)]
enum AuditEventResponse {
    /// One audit entry as an AuditEvent.
    #[oai(status = 200)]
    Ok(FhirJson),
}

/// Checkpoints listed per request, at most.
const MAX_CHECKPOINTS: usize = 100;
/// AuditEvents per page: by default, and at most.
const DEFAULT_COUNT: usize = 100;
const MAX_COUNT: usize = 1_000;

pub(crate) struct AuditApi {
    pub log: Arc<dyn AuditLog>,
    /// The core, which decides who may read the log.
    pub records: records::Records,
    /// The log's sequencer: its origin and key, and a round run on demand so that what an
    /// auditor lists includes everything recorded before the request.
    pub sequencer: Sequencer,
}

impl AuditApi {
    fn log(&self) -> &dyn AuditLog {
        self.log.as_ref()
    }

    /// Sequences what is still in the intake (entries reach the log's tables within a
    /// sequencer interval; a reader of the log must not miss the latest ones).
    async fn caught_up(&self, request_id: &RequestId) -> Result<(), FhirError> {
        self.sequencer
            .catch_up(self.log(), OffsetDateTime::now_utc())
            .await
            .map_err(|e| failed(e, request_id))
    }

    async fn auditor(&self, caller: &Caller, request: &Request) -> Result<RequestId, FhirError> {
        let request_id = RequestId::of(request);
        self.records
            .session(caller.clone(), &request_id.0)
            .allow_audit_reading()
            .await
            .map_err(|err| FhirError::from_records(err, &request_id))?;
        Ok(request_id)
    }
}

impl AuditApi {
    /// One stored entry, for an auditor: 404 if there is none.
    async fn stored_entry(
        &self,
        caller: &Caller,
        request: &Request,
        id: &str,
    ) -> Result<audit_chain::StoredEntry, FhirError> {
        let request_id = self.auditor(caller, request).await?;
        let entry = self
            .log()
            .entry(id)
            .await
            .map_err(|e| failed(e, &request_id))?
            .ok_or_else(|| unknown_entry(id))?;
        if entry.index.is_some() {
            return Ok(entry);
        }
        // Recorded but not yet sequenced: give it its place, so the answer can say where.
        self.caught_up(&request_id).await?;
        self.log()
            .entry(id)
            .await
            .map_err(|e| failed(e, &request_id))?
            .ok_or_else(|| unknown_entry(id))
    }
}

fn failed(err: impl std::fmt::Display, request_id: &RequestId) -> FhirError {
    FhirError::unavailable(&err.to_string(), request_id)
}

fn view(stored: StoredCheckpoint, consistency: Option<Vec<String>>) -> CheckpointView {
    CheckpointView {
        size: stored.checkpoint.size,
        root: stored.checkpoint.root.to_base64(),
        note: stored.note,
        signed_at: records::instant(stored.signed_at),
        consistency,
    }
}

fn bad_param(name: &str, reason: &str) -> FhirError {
    FhirError::BadRequest(single(
        IssueType::Invalid,
        format!("search parameter {name}: {reason}"),
    ))
}

#[OpenApi(tag = "AuditTags::Audit")]
impl AuditApi {
    /// The audit log's verifier key.
    ///
    /// Checkpoints are Ed25519-signed C2SP notes; this key verifies them. Auditors and admins.
    #[oai(path = "/audit/key", method = "get")]
    async fn key(&self, request: &Request, auth: BearerAuth) -> Result<KeyResponse, FhirError> {
        self.auditor(&auth.0, request).await?;
        Ok(KeyResponse::Ok(PlainText(
            self.sequencer.verifier().to_vkey(),
        )))
    }

    /// Signed checkpoints of the audit log.
    ///
    /// Without parameters: the latest. With `from` (and optionally `to`), sizes: every
    /// checkpoint with `from <= size <= to` (at most 100, oldest first), each after the first
    /// with the consistency proof from the one before it.
    #[oai(path = "/audit/checkpoints", method = "get")]
    async fn checkpoints(
        &self,
        request: &Request,
        from: Query<Option<u64>>,
        to: Query<Option<u64>>,
        auth: BearerAuth,
    ) -> Result<CheckpointsResponse, FhirError> {
        let request_id = self.auditor(&auth.0, request).await?;
        let log = self.log();
        let listed = match from.0 {
            None => log
                .latest_checkpoint()
                .await
                .map_err(|e| failed(e, &request_id))?
                .into_iter()
                .collect(),
            Some(from) => log
                .checkpoints(from, to.0.unwrap_or(u64::MAX), MAX_CHECKPOINTS)
                .await
                .map_err(|e| failed(e, &request_id))?,
        };
        let mut checkpoints = Vec::with_capacity(listed.len());
        let mut previous: Option<u64> = None;
        for stored in listed {
            let size = stored.checkpoint.size;
            let consistency = match previous {
                Some(old) => Some(
                    audit_chain::consistency_proof(log, old, size)
                        .await
                        .map_err(|e| failed(e, &request_id))?
                        .iter()
                        .map(audit_chain::Hash::to_base64)
                        .collect(),
                ),
                None => None,
            };
            previous = Some(size);
            checkpoints.push(view(stored, consistency));
        }
        Ok(CheckpointsResponse::Ok(Json(Checkpoints {
            origin: self.sequencer.origin().to_owned(),
            checkpoints,
        })))
    }

    /// One entry's exact bytes.
    ///
    /// The canonical JSON that was hashed into the log: anyone can recompute its leaf hash.
    #[oai(path = "/audit/entries/:id", method = "get")]
    async fn entry(
        &self,
        request: &Request,
        id: Path<String>,
        auth: BearerAuth,
    ) -> Result<EntryResponse, FhirError> {
        let entry = self.stored_entry(&auth.0, request, &id.0).await?;
        Ok(EntryResponse::Ok(Binary(entry.body)))
    }

    /// One entry's inclusion proof (`tlog-proof`).
    ///
    /// Against the latest signed checkpoint. An entry is in a checkpoint within about a
    /// second of being recorded; before that the answer is 503, to be retried.
    #[oai(path = "/audit/entries/:id/proof", method = "get")]
    async fn proof(
        &self,
        request: &Request,
        id: Path<String>,
        auth: BearerAuth,
    ) -> Result<ProofResponse, FhirError> {
        let request_id = self.auditor(&auth.0, request).await?;
        match audit_chain::receipt(self.log(), &id.0).await {
            Ok(receipt) => Ok(ProofResponse::Ok(PlainText(receipt.to_text()))),
            Err(ReceiptUnavailable::Unknown) => Err(unknown_entry(&id.0)),
            Err(ReceiptUnavailable::NotYetSigned) => Err(FhirError::Unavailable(single(
                IssueType::Transient,
                "the entry is not yet in a signed checkpoint; retry in a second",
            ))),
            Err(ReceiptUnavailable::Failure(err)) => Err(failed(err, &request_id)),
        }
    }

    /// Search the audit log as FHIR AuditEvents.
    ///
    /// `patient` (`Patient/{id}` or the id), `date` (the time recorded; `eq`, `ge`, `gt`,
    /// `le`, `lt` and partial dates; repeat to bound both ends), `_count` (default 100, at
    /// most 1000). Newest first; a `next` link continues. Each AuditEvent's id is the entry's
    /// id, whose bytes and proof are under `/audit/entries/{id}`. Auditors and admins.
    #[oai(path = "/fhir/AuditEvent", method = "get")]
    async fn audit_events(
        &self,
        request: &Request,
        auth: BearerAuth,
    ) -> Result<BundleResponse, FhirError> {
        let request_id = self.auditor(&auth.0, request).await?;
        let params = query_pairs(request);
        let query = entry_query(&params, None)?;
        self.bundle(request, &request_id, query, &params, "/fhir/AuditEvent")
            .await
    }

    /// read an AuditEvent: one audit entry, by its id.
    ///
    /// Auditors and admins. Its bytes and inclusion proof are under `/audit/entries/{id}`.
    #[oai(path = "/fhir/AuditEvent/:id", method = "get")]
    async fn audit_event(
        &self,
        request: &Request,
        id: Path<String>,
        auth: BearerAuth,
    ) -> Result<AuditEventResponse, FhirError> {
        let stored = self.stored_entry(&auth.0, request, &id.0).await?;
        let entry = AuditEntry::from_canonical_bytes(&stored.body)
            .map_err(|e| failed(e, &RequestId::of(request)))?;
        Ok(AuditEventResponse::Ok(FhirJson(
            serde_json::to_vec(&audit_event(&entry, stored.index)).unwrap_or_default(),
        )))
    }

    /// $disclosures: a patient's accounting of disclosures (HIPAA §164.528).
    ///
    /// Every successful read, search, history and export that returned the patient's data:
    /// who (subject, role, organization), when, and for what purpose, as AuditEvents, newest
    /// first. `date` and `_count` as for AuditEvent search. Auditors and admins, and the
    /// patient themselves (a token confined to their compartment).
    #[oai(path = "/fhir/Patient/:id/$disclosures", method = "get")]
    async fn disclosures(
        &self,
        request: &Request,
        id: Path<String>,
        auth: BearerAuth,
    ) -> Result<BundleResponse, FhirError> {
        let request_id = RequestId::of(request);
        self.records
            .session(auth.0.clone(), &request_id.0)
            .allow_disclosures(&id.0)
            .await
            .map_err(|err| FhirError::from_records(err, &request_id))?;
        if !fhir_model::is_valid_id(&id.0) {
            return Err(FhirError::NotFound(single(
                IssueType::NotFound,
                "not a valid Patient id",
            )));
        }
        let params = query_pairs(request);
        let mut query = entry_query(&params, Some(&["date", "_count", "_cursor"]))?;
        query.patient = Some(format!("Patient/{}", id.0));
        query.actions = Action::ALL.into_iter().filter(|a| a.discloses()).collect();
        let path = format!("/fhir/Patient/{}/$disclosures", id.0);
        let mut bundle = self
            .bundle_value(request, &request_id, query, &params, &path)
            .await?;
        // Only what was actually disclosed: refusals and failures disclosed nothing.
        if let Some(entries) = bundle["entry"].as_array_mut() {
            entries.retain(|e| e["resource"]["outcome"] == "0");
        }
        Ok(BundleResponse::Ok(FhirJson(
            serde_json::to_vec(&bundle).unwrap_or_default(),
        )))
    }
}

fn unknown_entry(id: &str) -> FhirError {
    FhirError::NotFound(single(
        IssueType::NotFound,
        format!("there is no audit entry {id}"),
    ))
}

fn query_pairs(request: &Request) -> Vec<(String, String)> {
    form_urlencoded::parse(request.uri().query().unwrap_or("").as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

/// The entry query of an AuditEvent search's parameters.
fn entry_query(
    params: &[(String, String)],
    allowed: Option<&[&str]>,
) -> Result<EntryQuery, FhirError> {
    let mut query = EntryQuery {
        limit: DEFAULT_COUNT,
        ..EntryQuery::default()
    };
    for (name, value) in params {
        if allowed.is_some_and(|allowed| !allowed.contains(&name.as_str())) {
            return Err(bad_param(name, "is not supported here"));
        }
        match name.as_str() {
            "patient" => {
                let id = value.strip_prefix("Patient/").unwrap_or(value);
                if !fhir_model::is_valid_id(id) {
                    return Err(bad_param(name, "is not a Patient reference or id"));
                }
                query.patient = Some(format!("Patient/{id}"));
            }
            "date" => {
                let (prefix, date) = match value.get(..2) {
                    Some(p @ ("eq" | "ge" | "gt" | "le" | "lt")) => (p, &value[2..]),
                    _ => ("eq", value.as_str()),
                };
                let (low, high) = fhir_model::search::date_range(date).ok_or_else(|| {
                    bad_param(name, "is not a FHIR date or dateTime, optionally prefixed")
                })?;
                let (since, before) = match prefix {
                    "ge" => (Some(low), None),
                    "gt" => (Some(high), None),
                    "le" => (None, Some(high)),
                    "lt" => (None, Some(low)),
                    _ => (Some(low), Some(high)),
                };
                if let Some(since) = since {
                    query.since = Some(query.since.map_or(since, |s| s.max(since)));
                }
                if let Some(before) = before {
                    query.before = Some(query.before.map_or(before, |b| b.min(before)));
                }
            }
            "_count" => {
                let count: usize = value
                    .parse()
                    .map_err(|_| bad_param(name, "is not a whole number"))?;
                query.limit = count.clamp(1, MAX_COUNT);
            }
            "_cursor" => {
                query.after = Some(
                    value
                        .parse()
                        .map_err(|_| bad_param(name, "is not a cursor this server issued"))?,
                );
            }
            _ => return Err(bad_param(name, "is not supported for AuditEvent")),
        }
    }
    Ok(query)
}

impl AuditApi {
    async fn bundle(
        &self,
        request: &Request,
        request_id: &RequestId,
        query: EntryQuery,
        params: &[(String, String)],
        path: &str,
    ) -> Result<BundleResponse, FhirError> {
        let bundle = self
            .bundle_value(request, request_id, query, params, path)
            .await?;
        Ok(BundleResponse::Ok(FhirJson(
            serde_json::to_vec(&bundle).unwrap_or_default(),
        )))
    }

    async fn bundle_value(
        &self,
        request: &Request,
        request_id: &RequestId,
        query: EntryQuery,
        params: &[(String, String)],
        path: &str,
    ) -> Result<Value, FhirError> {
        let base = base_url(request);
        self.caught_up(request_id).await?;
        let found = self
            .log()
            .find(&query)
            .await
            .map_err(|e| failed(e, request_id))?;
        let link = |cursor: Option<i64>| {
            let mut serializer = form_urlencoded::Serializer::new(String::new());
            for (name, value) in params.iter().filter(|(n, _)| n != "_cursor") {
                serializer.append_pair(name, value);
            }
            if let Some(cursor) = cursor {
                serializer.append_pair("_cursor", &cursor.to_string());
            }
            let query = serializer.finish();
            if query.is_empty() {
                format!("{base}{path}")
            } else {
                format!("{base}{path}?{query}")
            }
        };
        let mut links = vec![json!({"relation": "self", "url": link(query.after)})];
        if found.len() >= query.limit
            && let Some(last) = found.last()
        {
            links.push(json!({"relation": "next", "url": link(Some(last.position))}));
        }
        let mut entries = Vec::with_capacity(found.len());
        for found in &found {
            // Every stored entry is canonical; one that is not is left out and logged (the
            // verifier names it).
            match AuditEntry::from_canonical_bytes(&found.entry.body) {
                Ok(entry) => entries.push(json!({
                    "fullUrl": format!("{base}/fhir/AuditEvent/{}", entry.id),
                    "resource": audit_event(&entry, found.entry.index),
                    "search": {"mode": "match"},
                })),
                Err(err) => {
                    tracing::error!(request_id = %request_id.0, entry = %found.entry.id, error = %err, "an audit entry is not canonical");
                }
            }
        }
        let mut bundle = json!({
            "resourceType": "Bundle",
            "type": "searchset",
            "timestamp": records::instant(OffsetDateTime::now_utc()),
            "link": links,
        });
        if !entries.is_empty() {
            bundle["entry"] = Value::Array(entries);
        }
        Ok(bundle)
    }
}

const CAIRN_ACTIONS: &str = "https://cairn.dev/fhir/CodeSystem/audit-action";

/// An entry as an R4 AuditEvent (shaped as IHE BALP's RESTful events).
pub(crate) fn audit_event(entry: &AuditEntry, index: Option<u64>) -> Value {
    let (type_code, type_display, type_system) = match entry.action {
        Action::LoginFailure => (
            "110114",
            "User Authentication",
            "http://dicom.nema.org/resources/ontology/DCM",
        ),
        Action::Reindex => (
            "110100",
            "Application Activity",
            "http://dicom.nema.org/resources/ontology/DCM",
        ),
        Action::AccessDenied | Action::TokenIssued | Action::TokenRevoked | Action::KeyRotated => (
            "110113",
            "Security Alert",
            "http://dicom.nema.org/resources/ontology/DCM",
        ),
        _ => (
            "rest",
            "RESTful Operation",
            "http://terminology.hl7.org/CodeSystem/audit-event-type",
        ),
    };
    let mut subtype = vec![json!({"system": CAIRN_ACTIONS, "code": entry.action.as_str()})];
    if let Some(operation) = &entry.operation {
        subtype.push(json!({"system": CAIRN_ACTIONS, "code": operation}));
    }
    let mut agent = json!({
        "requestor": true,
        "who": {"display": entry.subject.as_deref().unwrap_or("unauthenticated")},
    });
    if let Some(subject) = &entry.subject {
        agent["who"] = json!({"identifier": {"system": "https://cairn.dev/fhir/subject", "value": subject}, "display": subject});
    }
    if let Some(role) = &entry.role {
        agent["role"] = json!([{"text": role}]);
    }
    if let Some(token_id) = &entry.token_id {
        agent["altId"] = json!(token_id);
    }
    if let Some(client) = &entry.client {
        agent["name"] = json!(client);
    }
    if let Some(purpose) = &entry.purpose {
        agent["purposeOfUse"] = json!([{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActReason", "code": purpose}]}]);
    }
    let mut entities = Vec::new();
    if let Some(patient) = &entry.patient {
        entities.push(json!({
            "what": {"reference": patient},
            "type": {"system": "http://terminology.hl7.org/CodeSystem/audit-entity-type", "code": "1", "display": "Person"},
            "role": {"system": "http://terminology.hl7.org/CodeSystem/object-role", "code": "1", "display": "Patient"},
        }));
    }
    if let (Some(resource_type), Some(id)) = (&entry.resource_type, &entry.resource_id) {
        let reference = match entry.version {
            Some(version) => format!("{resource_type}/{id}/_history/{version}"),
            None => format!("{resource_type}/{id}"),
        };
        if entry.patient.as_deref() != Some(reference.as_str()) {
            entities.push(json!({
                "what": {"reference": reference},
                "type": {"system": "http://terminology.hl7.org/CodeSystem/audit-entity-type", "code": "2", "display": "System Object"},
                "role": {"system": "http://terminology.hl7.org/CodeSystem/object-role", "code": "4", "display": "Domain Resource"},
            }));
        }
    }
    if entry.action == Action::Search || entry.result_count.is_some() {
        let mut query = json!({
            "type": {"system": "http://terminology.hl7.org/CodeSystem/audit-entity-type", "code": "2", "display": "System Object"},
            "role": {"system": "http://terminology.hl7.org/CodeSystem/object-role", "code": "24", "display": "Query"},
        });
        let mut details = Vec::new();
        if let Some(resource_type) = &entry.resource_type {
            details.push(json!({"type": "resource-type", "valueString": resource_type}));
        }
        if let Some(count) = entry.result_count {
            details.push(json!({"type": "result-count", "valueString": count.to_string()}));
        }
        for param in &entry.query {
            details
                .push(json!({"type": format!("param:{}", param.name), "valueString": param.token}));
        }
        if !details.is_empty() {
            query["detail"] = Value::Array(details);
        }
        entities.push(query);
    }
    let mut event = json!({
        "resourceType": "AuditEvent",
        "id": entry.id,
        "type": {"system": type_system, "code": type_code, "display": type_display},
        "subtype": subtype,
        "action": entry.action.fhir_code(),
        "recorded": records::instant(entry.recorded),
        "outcome": entry.outcome.fhir_code(),
        "agent": [agent],
        "source": {"observer": {"display": "cairn"}},
    });
    if let Some(reason) = &entry.reason {
        event["outcomeDesc"] = json!(reason);
    }
    if let Some(purpose) = &entry.purpose {
        event["purposeOfEvent"] = json!([{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActReason", "code": purpose}]}]);
    }
    if !entities.is_empty() {
        event["entity"] = Value::Array(entities);
    }
    let mut tags = Vec::new();
    if let Some(request_id) = &entry.request_id {
        tags.push(json!({"system": "https://cairn.dev/fhir/request-id", "code": request_id}));
    }
    if let Some(index) = index {
        tags.push(
            json!({"system": "https://cairn.dev/fhir/audit-leaf-index", "code": index.to_string()}),
        );
    }
    if !tags.is_empty() {
        event["meta"] = json!({"tag": tags});
    }
    event
}
