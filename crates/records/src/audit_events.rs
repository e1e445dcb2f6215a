//! The audit log read as FHIR: AuditEvent search's parameters as an entry query, entries as R4
//! AuditEvents (shaped as IHE BALP's RESTful events), and a patient's accounting of
//! disclosures in full pages. Every reader first catches the sequencer up, so what it lists
//! includes everything recorded before it asked.

use std::sync::Arc;

use audit_chain::{Action, AuditEntry, AuditLog, EntryQuery, Outcome, Sequencer};
use serde_json::{Value, json};
use time::OffsetDateTime;

use crate::error::RecordsError;
use crate::search::SearchError;

/// AuditEvents per page: by default, and at most.
pub const DEFAULT_COUNT: usize = 100;
pub const MAX_COUNT: usize = 1_000;

fn error(param: &str, reason: &str) -> SearchError {
    SearchError {
        param: param.to_owned(),
        reason: reason.to_owned(),
    }
}

/// A page of the log: its entries (with their leaf index once sequenced), newest first, and
/// the cursor of the next page when there may be one.
#[derive(Debug, Clone, Default)]
pub struct EventPage {
    pub entries: Vec<(AuditEntry, Option<u64>)>,
    pub next: Option<i64>,
}

/// The log's readers.
#[derive(Clone)]
pub struct AuditEvents {
    log: Arc<dyn AuditLog>,
    sequencer: Sequencer,
}

impl std::fmt::Debug for AuditEvents {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AuditEvents")
    }
}

impl AuditEvents {
    pub fn new(log: Arc<dyn AuditLog>, sequencer: Sequencer) -> Self {
        Self { log, sequencer }
    }

    /// The entries `query` asks for, up to its limit, after a sequencer round at `now`.
    pub async fn search(
        &self,
        query: &EntryQuery,
        now: OffsetDateTime,
    ) -> Result<EventPage, RecordsError> {
        self.caught_up(now).await?;
        let found = self.find(query).await?;
        let next = (found.len() >= query.limit)
            .then(|| found.last().map(|(position, _, _)| *position))
            .flatten();
        Ok(EventPage {
            entries: found
                .into_iter()
                .map(|(_, entry, index)| (entry, index))
                .collect(),
            next,
        })
    }

    /// `patient_id`'s accounting of disclosures: the successful reads, searches, histories and
    /// exports that returned their data, newest first, `query` bounding time and paging. Each
    /// page is full (`query.limit` entries) unless it is the last: refusals and failures, which
    /// disclosed nothing, are passed over in the log, not dropped from a page.
    pub async fn disclosures(
        &self,
        patient_id: &str,
        mut query: EntryQuery,
        now: OffsetDateTime,
    ) -> Result<EventPage, RecordsError> {
        query.patient = Some(format!("Patient/{patient_id}"));
        query.actions = Action::ALL.into_iter().filter(|a| a.discloses()).collect();
        self.caught_up(now).await?;
        let mut page = EventPage::default();
        loop {
            let found = self.find(&query).await?;
            let exhausted = found.len() < query.limit;
            for (position, entry, index) in found {
                query.after = Some(position);
                if entry.outcome == Outcome::Success {
                    page.entries.push((entry, index));
                    if page.entries.len() == query.limit {
                        page.next = Some(position);
                        return Ok(page);
                    }
                }
            }
            if exhausted {
                return Ok(page);
            }
        }
    }

    async fn caught_up(&self, now: OffsetDateTime) -> Result<(), RecordsError> {
        self.sequencer
            .catch_up(self.log.as_ref(), now)
            .await
            .map_err(RecordsError::AuditUnavailable)
    }

    /// The entries found, decoded. A stored entry is canonical and is what the query asked
    /// for; one that is not (its bytes, or the columns it was found by, were altered) is left
    /// out and logged (`cairn audit verify` names it).
    async fn find(
        &self,
        query: &EntryQuery,
    ) -> Result<Vec<(i64, AuditEntry, Option<u64>)>, RecordsError> {
        let found = self
            .log
            .find(query)
            .await
            .map_err(RecordsError::AuditUnavailable)?;
        Ok(found
            .into_iter()
            .filter_map(
                |found| match AuditEntry::from_canonical_bytes(&found.entry.body) {
                    Ok(entry) if query.matches(&entry) && entry.id == found.entry.id => {
                        Some((found.position, entry, found.entry.index))
                    }
                    Ok(_) => {
                        tracing::error!(entry = %found.entry.id, "an audit entry's stored columns disagree with its signed bytes");
                        None
                    }
                    Err(err) => {
                        tracing::error!(entry = %found.entry.id, error = %err, "an audit entry is not canonical");
                        None
                    }
                },
            )
            .collect())
    }
}

/// The entry query of an AuditEvent search's parameters.
pub fn entry_query(
    params: &[(String, String)],
    allowed: Option<&[&str]>,
) -> Result<EntryQuery, SearchError> {
    let mut query = EntryQuery {
        limit: DEFAULT_COUNT,
        ..EntryQuery::default()
    };
    for (name, value) in params {
        if allowed.is_some_and(|allowed| !allowed.contains(&name.as_str())) {
            return Err(error(name, "is not supported here"));
        }
        match name.as_str() {
            "patient" => {
                let id = value.strip_prefix("Patient/").unwrap_or(value);
                if !fhir_model::is_valid_id(id) {
                    return Err(error(name, "is not a Patient reference or id"));
                }
                query.patient = Some(format!("Patient/{id}"));
            }
            "date" => {
                let (prefix, date) = match value.get(..2) {
                    Some(p @ ("eq" | "ge" | "gt" | "le" | "lt")) => (p, &value[2..]),
                    _ => ("eq", value.as_str()),
                };
                let (low, high) = fhir_model::search::date_range(date).ok_or_else(|| {
                    error(name, "is not a FHIR date or dateTime, optionally prefixed")
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
                    .map_err(|_| error(name, "is not a whole number"))?;
                query.limit = count.clamp(1, MAX_COUNT);
            }
            "_cursor" => {
                query.after = Some(
                    value
                        .parse()
                        .map_err(|_| error(name, "is not a cursor this server issued"))?,
                );
            }
            _ => return Err(error(name, "is not supported for AuditEvent")),
        }
    }
    Ok(query)
}

const CAIRN_ACTIONS: &str = "https://cairn.dev/fhir/CodeSystem/audit-action";

/// An entry as an R4 AuditEvent (shaped as IHE BALP's RESTful events).
pub fn audit_event(entry: &AuditEntry, index: Option<u64>) -> Value {
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
        "recorded": crate::instant(entry.recorded),
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use audit_chain::fakes::MemoryAuditLog;
    use audit_chain::{AuditTrail, Ed25519Signer};
    use futures_executor::block_on;
    use time::macros::datetime;

    use super::*;

    fn entry(n: u32, patient: &str, outcome: Outcome) -> AuditEntry {
        let mut entry = AuditEntry::new(
            format!("e-{n:03}"),
            datetime!(2026-12-01 10:00 UTC) + time::Duration::seconds(i64::from(n)),
            Action::Read,
            outcome,
        );
        entry.patient = Some(patient.to_owned());
        entry
    }

    /// Refusals and failures about the patient sit between the disclosures in the log: every
    /// page but the last still holds `_count` disclosures, and paging visits each once.
    #[test]
    fn disclosure_pages_are_full_whatever_lies_between() {
        let log = MemoryAuditLog::new();
        let mut entries = Vec::new();
        for n in 0..40 {
            let outcome = match n % 4 {
                0 | 1 => Outcome::Success,
                2 => Outcome::Denied,
                _ => Outcome::Failed,
            };
            entries.push(entry(n, "Patient/p", outcome));
            // Another patient's disclosures are not this one's.
            entries.push(entry(100 + n, "Patient/q", Outcome::Success));
        }
        block_on(log.append(&entries)).unwrap();
        let signer = Ed25519Signer::from_seed("test", &[3; 32]).unwrap();
        let events = AuditEvents::new(Arc::new(log), Sequencer::new("test", Arc::new(signer)));
        let now = datetime!(2026-12-02 0:00 UTC);
        let mut seen = Vec::new();
        let mut after = None;
        let mut pages = 0;
        loop {
            let query = EntryQuery {
                after,
                limit: 3,
                ..EntryQuery::default()
            };
            let page = block_on(events.disclosures("p", query, now)).unwrap();
            pages += 1;
            assert!(page.entries.iter().all(|(e, _)| {
                e.outcome == Outcome::Success && e.patient.as_deref() == Some("Patient/p")
            }));
            seen.extend(page.entries.iter().map(|(e, _)| e.id.clone()));
            match page.next {
                Some(next) => {
                    assert_eq!(page.entries.len(), 3, "page {pages} is full");
                    after = Some(next);
                }
                None => break,
            }
        }
        // Twenty disclosures: six full pages and a last one of two, newest first.
        assert_eq!(seen.len(), 20);
        assert_eq!(pages, 7);
        let mut sorted = seen.clone();
        sorted.sort_by(|a, b| b.cmp(a));
        assert_eq!(seen, sorted);
    }
}
