//! The audit log on the wire: what an auditor needs to check it from outside (`/audit/*`), and
//! the log as FHIR (`AuditEvent` search, a patient's `$disclosures`).
//!
//! An outside verifier needs three answers and RFC 9162: the key (`/audit/key`), an entry's
//! exact bytes (`/audit/entries/{id}`) and its proof (`/audit/entries/{id}/proof`).

use access::Caller;
use audit_chain::{AuditEntry, AuditLog, ReceiptUnavailable, Sequencer, StoredCheckpoint};
use fhir_model::IssueType;
use poem::Request;
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::{Binary, Json, PlainText};
use poem_openapi::{ApiResponse, Object, OpenApi, Tags};
use std::sync::Arc;

use records::audit_events::{AuditEvents, EventPage, audit_event, entry_query};
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
#[oai(rename_all = "camelCase", skip_serializing_if_is_none)]
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
#[oai(rename_all = "camelCase", skip_serializing_if_is_none)]
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

pub(crate) struct AuditApi {
    pub log: Arc<dyn AuditLog>,
    /// The core's readers of the log as FHIR (AuditEvent search, `$disclosures`).
    pub events: AuditEvents,
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
        // Found by its id column, which the signature does not cover: the bytes must agree.
        if !names(&entry, id) {
            tracing::error!(entry = %id, "an audit entry's stored id disagrees with its signed bytes");
            return Err(unknown_entry(id));
        }
        if entry.index.is_some() {
            return Ok(entry);
        }
        // Recorded but not yet sequenced: give it its place, so the answer can say where.
        self.caught_up(&request_id).await?;
        self.log()
            .entry(id)
            .await
            .map_err(|e| failed(e, &request_id))?
            .filter(|entry| names(entry, id))
            .ok_or_else(|| unknown_entry(id))
    }
}

/// Whether a stored entry's bytes are the entry with this id.
fn names(entry: &audit_chain::StoredEntry, id: &str) -> bool {
    audit_chain::AuditEntry::from_canonical_bytes(&entry.body).is_ok_and(|e| e.id == id)
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
        let query = entry_query(&params, None).map_err(bad_search)?;
        let page = self
            .events
            .search(&query, OffsetDateTime::now_utc())
            .await
            .map_err(|err| FhirError::from_records(err, &request_id))?;
        Ok(bundle(
            request,
            &page,
            query.after,
            &params,
            "/fhir/AuditEvent",
        ))
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
        let query =
            entry_query(&params, Some(&["date", "_count", "_cursor"])).map_err(bad_search)?;
        let after = query.after;
        let page = self
            .events
            .disclosures(&id.0, query, OffsetDateTime::now_utc())
            .await
            .map_err(|err| FhirError::from_records(err, &request_id))?;
        let path = format!("/fhir/Patient/{}/$disclosures", id.0);
        Ok(bundle(request, &page, after, &params, &path))
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

/// A searchset Bundle of a page of the log: its AuditEvents, a `self` link with the
/// parameters as given, and a `next` link when there may be more.
fn bundle(
    request: &Request,
    page: &EventPage,
    after: Option<i64>,
    params: &[(String, String)],
    path: &str,
) -> BundleResponse {
    let base = base_url(request);
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
    let mut links = vec![json!({"relation": "self", "url": link(after)})];
    if let Some(next) = page.next {
        links.push(json!({"relation": "next", "url": link(Some(next))}));
    }
    let entries: Vec<Value> = page
        .entries
        .iter()
        .map(|(entry, index)| {
            json!({
                "fullUrl": format!("{base}/fhir/AuditEvent/{}", entry.id),
                "resource": audit_event(entry, *index),
                "search": {"mode": "match"},
            })
        })
        .collect();
    let mut bundle = json!({
        "resourceType": "Bundle",
        "type": "searchset",
        "timestamp": records::instant(OffsetDateTime::now_utc()),
        "link": links,
    });
    if !entries.is_empty() {
        bundle["entry"] = Value::Array(entries);
    }
    BundleResponse::Ok(FhirJson(serde_json::to_vec(&bundle).unwrap_or_default()))
}

/// A malformed AuditEvent search parameter, as a 400 naming it.
fn bad_search(err: records::search::SearchError) -> FhirError {
    bad_param(&err.param, &err.reason)
}
