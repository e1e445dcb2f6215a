//! Transaction and batch Bundles at the base URL (`POST /fhir`).

use fhir_model::bundle_request::{
    BundleKind, BundleRequest, BundleRequestError, EntryRequest, Method, read_bundle,
};
use poem::Request;
use poem_openapi::{ApiResponse, OpenApi};
use records::{EntryOutcome, Records, StoredResource};
use serde_json::{Value, json};

use crate::auth::BearerAuth;
use crate::bundles::searchset;
use crate::context::{RequestId, base_url};
use crate::errors::{FhirError, outcome_json, single};
use crate::params::preference;
use crate::payload::FhirJson;
use crate::responses::etag;
use crate::shaping::Shaping;

/// The most entries in one Bundle when none is configured.
pub const DEFAULT_MAX_BUNDLE_ENTRIES: usize = 10_000;

/// The most entries one Bundle may have; set by [`crate::HttpConfig`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct MaxBundleEntries(pub usize);

#[derive(poem_openapi::Tags)]
enum BatchTags {
    /// FHIR R4 RESTful interactions on any resource type.
    Fhir,
}

#[derive(Debug, ApiResponse)]
enum BundleResponse {
    /// The `transaction-response` or `batch-response` Bundle: one entry per request entry, in
    /// request order, each with its `response` (status, location, etag, lastModified) and the
    /// resource or an OperationOutcome as `Prefer: return` asks.
    #[oai(status = 200)]
    Ok(FhirJson),
}

pub(crate) struct BatchApi {
    pub records: Records,
}

#[OpenApi(tag = "BatchTags::Fhir")]
impl BatchApi {
    /// transaction / batch: carry out a Bundle of requests.
    ///
    /// A `transaction` is all or nothing: entries are processed DELETE, POST, PUT/PATCH, then
    /// GET; `fullUrl`s (`urn:uuid:…`) and conditional references (`Patient?identifier=…`) are
    /// resolved to the ids the server assigned or found; if any entry fails, nothing is stored
    /// and the answer is that entry's status with an OperationOutcome naming it
    /// (`Bundle.entry[7]…`). A `batch` carries out each entry on its own; its response lists
    /// each entry's status or OperationOutcome. Every entry is authorized as if sent alone.
    /// At most `CAIRN_MAX_BUNDLE_ENTRIES` entries (413 beyond).
    #[oai(path = "/fhir", method = "post")]
    async fn bundle(
        &self,
        request: &Request,
        body: FhirJson,
        auth: BearerAuth,
    ) -> Result<BundleResponse, FhirError> {
        let request_id = RequestId::of(request);
        let base = format!("{}/fhir", base_url(request));
        let limit = request
            .data::<MaxBundleEntries>()
            .map_or(DEFAULT_MAX_BUNDLE_ENTRIES, |m| m.0);
        let bundle = read_bundle(&body.0, &base, limit).map_err(refused)?;
        let session = self.records.session(auth.0, &request_id.0);
        let outcomes = match bundle.kind {
            BundleKind::Transaction => session
                .transaction(&bundle, &base)
                .await
                .map_err(|err| FhirError::from_records(err, &request_id))?,
            BundleKind::Batch => session.batch(&bundle, &base).await,
        };
        tracing::info!(
            kind = bundle.kind.as_str(),
            entries = bundle.entries.len(),
            "bundle processed"
        );
        let answer = Answer {
            request,
            request_id: &request_id,
            base: &base,
        };
        Ok(BundleResponse::Ok(FhirJson(
            answer.bundle(&bundle, outcomes),
        )))
    }
}

fn refused(err: BundleRequestError) -> FhirError {
    match err {
        BundleRequestError::Invalid { issues } => FhirError::invalid(&issues),
        BundleRequestError::WrongType { .. } => {
            FhirError::BadRequest(single(fhir_model::IssueType::NotSupported, err.to_string()))
        }
        BundleRequestError::TooManyEntries { .. } => {
            FhirError::PayloadTooLarge(single(fhir_model::IssueType::TooCostly, err.to_string()))
        }
    }
}

/// How the response Bundle is written for one request.
struct Answer<'a> {
    request: &'a Request,
    request_id: &'a RequestId,
    /// The FHIR base URL: `https://host/fhir`.
    base: &'a str,
}

impl Answer<'_> {
    fn bundle(&self, bundle: &BundleRequest, outcomes: Vec<EntryOutcome>) -> Vec<u8> {
        let entries: Vec<Value> = bundle
            .entries
            .iter()
            .zip(outcomes)
            .map(|(entry, outcome)| self.entry(entry, outcome))
            .collect();
        let mut answer = json!({
            "resourceType": "Bundle",
            "type": bundle.kind.response_type(),
            "timestamp": records::instant(time::OffsetDateTime::now_utc()),
        });
        if !entries.is_empty() {
            answer["entry"] = Value::Array(entries);
        }
        serde_json::to_vec(&answer).unwrap_or_default()
    }

    fn entry(&self, request: &EntryRequest, outcome: EntryOutcome) -> Value {
        let method = request.method;
        match outcome {
            EntryOutcome::Created(stored) => self.written(&stored, "201 Created", "created"),
            EntryOutcome::Updated(stored) => self.written(&stored, "200 OK", "updated"),
            EntryOutcome::Unchanged(stored) => self.written(&stored, "200 OK", "unchanged"),
            EntryOutcome::Existing(stored) => self.written(&stored, "200 OK", "found"),
            EntryOutcome::Deleted(version) => {
                let mut response = json!({"status": "204 No Content"});
                if let Some(version) = version {
                    response["etag"] = json!(format!("W/\"{version}\""));
                }
                json!({"response": response})
            }
            EntryOutcome::Read(stored) => {
                let mut entry = json!({
                    "fullUrl": self.url(&stored),
                    "response": {
                        "status": "200 OK",
                        "etag": etag(&stored),
                        "lastModified": records::instant(stored.last_updated),
                    },
                });
                if method != Method::Head {
                    entry["resource"] = body(&stored.body);
                }
                entry
            }
            EntryOutcome::Searched(page) => {
                let found = searchset(
                    self.base.trim_end_matches("/fhir"),
                    request.target.resource_type,
                    &request.target.query,
                    page,
                    &Shaping::default(),
                );
                let mut entry = json!({"response": {"status": "200 OK"}});
                if method != Method::Head {
                    entry["resource"] = body(&found);
                }
                entry
            }
            EntryOutcome::Failed(err) => {
                let failure = FhirError::from_records(err, self.request_id);
                let (status, outcome) = failure.status_and_outcome();
                json!({"response": {
                    "status": status.to_string(),
                    "outcome": body(&outcome.0),
                }})
            }
        }
    }

    /// A write's entry: where the version is, and the resource as `Prefer: return` asks.
    fn written(&self, stored: &StoredResource, status: &str, what: &str) -> Value {
        let mut entry = json!({
            "fullUrl": self.url(stored),
            "response": {
                "status": status,
                "location": format!(
                    "{}/{}/_history/{}",
                    stored.resource_type, stored.id, stored.version
                ),
                "etag": etag(stored),
                "lastModified": records::instant(stored.last_updated),
            },
        });
        match preference(self.request, "return").as_deref() {
            Some("minimal") => {}
            Some("OperationOutcome") => {
                let outcome = fhir_model::OperationOutcome::single(
                    fhir_model::IssueSeverity::Information,
                    fhir_model::IssueType::Informational,
                    format!(
                        "{what} {}/{} version {}",
                        stored.resource_type, stored.id, stored.version
                    ),
                );
                entry["response"]["outcome"] = body(&outcome_json(outcome).0);
            }
            _ => entry["resource"] = body(&stored.body),
        }
        entry
    }

    fn url(&self, stored: &StoredResource) -> String {
        format!("{}/{}/{}", self.base, stored.resource_type, stored.id)
    }
}

/// JSON this server wrote (stored bodies, outcomes), as a value to embed.
fn body(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes).unwrap_or(Value::Null)
}
