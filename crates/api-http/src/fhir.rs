//! The FHIR RESTful API (http://hl7.org/fhir/R4/http.html) under `/fhir`.

use access::Caller;
use fhir_model::ResourceType;
use poem::Request;
use poem_openapi::param::{Header, Path, Query};
use poem_openapi::{OpenApi, Tags};
use records::{Records, Session};
use time::OffsetDateTime;

use crate::auth::BearerAuth;
use crate::bundles::{history_bundle, page_url, searchset, series_parameters, version_url};
use crate::context::{RequestId, base_url};
use crate::errors::FhirError;
use crate::params::{
    bad_parameter, create_criteria, criteria, history_params, parse_etag, preference, read_shaping,
    stored_type,
};
use crate::payload::{FhirJson, JsonPatch, SearchForm};
use crate::responses::*;
use crate::shaping::{Shaping, Summary};

#[derive(Tags)]
enum FhirTags {
    /// FHIR R4 RESTful interactions on any resource type.
    Fhir,
}

pub(crate) struct FhirApi {
    pub records: Records,
    /// When this server started: the CapabilityStatement's date.
    pub started: OffsetDateTime,
}

#[OpenApi(tag = "FhirTags::Fhir")]
impl FhirApi {
    /// create: store a new resource; the server assigns its id.
    ///
    /// Any `id` in the body is ignored. The response carries the stored resource with
    /// `meta.versionId` and `meta.lastUpdated`, and its location.
    #[oai(path = "/fhir/:resource_type", method = "post")]
    async fn create(
        &self,
        request: &Request,
        resource_type: Path<String>,
        /// Conditional create: search criteria (`identifier=system|value`). If exactly one
        /// resource matches, it is returned (200) and nothing is created; if several, 412.
        /// Concurrent conditional creates with equal criteria create exactly one resource.
        #[oai(name = "If-None-Exist")]
        if_none_exist: Header<Option<String>>,
        body: FhirJson,
        auth: BearerAuth,
    ) -> Result<CreateResponse, FhirError> {
        let request_id = RequestId::of(request);
        let resource_type = stored_type(&resource_type.0)?;
        let criteria = create_criteria(request, if_none_exist.0.as_deref())?;
        let session = self.session(request, auth.0);
        let stored = match criteria {
            None => session.create(resource_type, &body.0).await,
            Some(params) => {
                match session
                    .create_conditional(resource_type, &body.0, &params)
                    .await
                {
                    Ok((stored, true)) => Ok(stored),
                    Ok((existing, false)) => {
                        let location = version_url(&base_url(request), &existing);
                        let (etag, last_modified) =
                            (etag(&existing), http_date(existing.last_updated));
                        return Ok(CreateResponse::Existing(
                            FhirJson(existing.body),
                            location,
                            etag,
                            last_modified,
                        ));
                    }
                    Err(err) => Err(err),
                }
            }
        }
        .map_err(|err| FhirError::from_records(err, &request_id))?;
        tracing::info!(resource_type = %stored.resource_type, id = %stored.id, version = stored.version, "created");
        let location = version_url(&base_url(request), &stored);
        let (etag, last_modified) = (etag(&stored), http_date(stored.last_updated));
        let body = returned(request, &stored, "created");
        Ok(CreateResponse::Created(body, location, etag, last_modified))
    }

    /// read: the current version of a resource.
    #[oai(path = "/fhir/:resource_type/:id", method = "get")]
    async fn read(
        &self,
        request: &Request,
        resource_type: Path<String>,
        id: Path<String>,
        auth: BearerAuth,
    ) -> Result<ReadResponse, FhirError> {
        let request_id = RequestId::of(request);
        let resource_type = stored_type(&resource_type.0)?;
        let shaping = read_shaping(request)?;
        let stored = self
            .session(request, auth.0)
            .read(resource_type, &id.0)
            .await
            .map_err(|err| FhirError::from_records(err, &request_id))?;
        let (etag, last_modified) = (etag(&stored), http_date(stored.last_updated));
        Ok(ReadResponse::Ok(
            FhirJson(shaping.body(stored.body)),
            etag,
            last_modified,
        ))
    }

    /// capabilities: what this server supports, as a FHIR CapabilityStatement.
    ///
    /// Generated from the tables the server runs on: every resource type, interaction, search
    /// parameter (with how identifying ones are protected) and operation.
    #[oai(path = "/fhir/metadata", method = "get")]
    async fn metadata(
        &self,
        request: &Request,
        // Any valid token: the statement holds no PHI, but says what this server holds.
        _auth: BearerAuth,
    ) -> Result<MetadataResponse, FhirError> {
        let shaping = read_shaping(request)?;
        let statement = crate::capability::capability_statement(&base_url(request), self.started);
        Ok(MetadataResponse::Ok(FhirJson(shaping.body(
            fhir_model::Resource::CapabilityStatement(Box::new(statement)).to_json(),
        ))))
    }

    /// $series-status: a patient's immunization series.
    ///
    /// One `series` parameter per series and target disease, with parts `series`,
    /// `targetDisease`, `dosesGiven`, `dosesRequired`, `complete` and a `doseDate` per dose,
    /// computed from the patient's current Immunizations (entered-in-error and not-done doses
    /// do not count).
    #[oai(path = "/fhir/Patient/:id/$series-status", method = "get")]
    async fn series_status(
        &self,
        request: &Request,
        id: Path<String>,
        auth: BearerAuth,
    ) -> Result<SeriesStatusResponse, FhirError> {
        let request_id = RequestId::of(request);
        let status = self
            .session(request, auth.0)
            .series_status(&id.0)
            .await
            .map_err(|err| FhirError::from_records(err, &request_id))?;
        Ok(SeriesStatusResponse::Ok(FhirJson(series_parameters(
            &status,
        ))))
    }

    /// $validate: check a resource without storing it.
    ///
    /// Answers 200 with an OperationOutcome whether the resource is valid or not: every
    /// structural and rule issue, each with its location, or one `information` issue. A body
    /// that is not a resource at all (not JSON, empty, not an object) cannot be validated:
    /// 400, as FHIR says a 4xx means the validation could not be performed.
    #[oai(path = "/fhir/:resource_type/$validate", method = "post")]
    async fn validate(
        &self,
        request: &Request,
        resource_type: Path<String>,
        body: FhirJson,
        auth: BearerAuth,
    ) -> Result<ValidateResponse, FhirError> {
        let request_id = RequestId::of(request);
        let resource_type = stored_type(&resource_type.0)?;
        let issues = self
            .session(request, auth.0)
            .validate(resource_type, &body.0)
            .await
            .map_err(|err| FhirError::from_records(err, &request_id))?;
        // Issues located nowhere, or under `Resource` (the reader's name for a root whose type
        // it could not tell), say the body is not a resource of any type.
        let not_a_resource = issues.iter().any(|issue| {
            issue.is_error()
                && issue.location.as_deref().is_none_or(|at| {
                    at == "Resource" || at.starts_with("Resource.") || at.starts_with("Resource[")
                })
        });
        if not_a_resource {
            return Err(FhirError::BadRequest(crate::errors::outcome_json(
                fhir_model::OperationOutcome::from_issues(&issues),
            )));
        }
        let outcome = if issues.is_empty() {
            fhir_model::OperationOutcome::single(
                fhir_model::IssueSeverity::Information,
                fhir_model::IssueType::Informational,
                format!("the {resource_type} is valid"),
            )
        } else {
            fhir_model::OperationOutcome::from_issues(&issues)
        };
        Ok(ValidateResponse::Ok(crate::errors::outcome_json(outcome)))
    }

    /// update: store a new version of a resource (or create it with this id).
    ///
    /// The body's `id` must equal the URL's. With `If-Match: W/"n"` the update happens only if
    /// the current version is n (412 otherwise); without it, concurrent updates are applied one
    /// after the other, none lost.
    #[oai(path = "/fhir/:resource_type/:id", method = "put")]
    async fn update(
        &self,
        request: &Request,
        resource_type: Path<String>,
        id: Path<String>,
        /// `W/"n"`: update only if the current version is n.
        #[oai(name = "If-Match")]
        if_match: Header<Option<String>>,
        body: FhirJson,
        auth: BearerAuth,
    ) -> Result<UpdateResponse, FhirError> {
        let request_id = RequestId::of(request);
        let resource_type = stored_type(&resource_type.0)?;
        let if_match = if_match.0.as_deref().map(parse_etag).transpose()?;
        let (stored, created) = self
            .session(request, auth.0)
            .update(resource_type, &id.0, &body.0, if_match)
            .await
            .map_err(|err| FhirError::from_records(err, &request_id))?;
        tracing::info!(resource_type = %stored.resource_type, id = %stored.id, version = stored.version, created, "updated");
        Ok(update_response(request, &stored, created))
    }

    /// update (conditional): `PUT /fhir/{type}?criteria`.
    ///
    /// One match: that resource is updated (the body's id, if any, must be its id). No match:
    /// the resource is created (with the body's id if it has one); concurrent conditional
    /// writes with equal criteria create it once. Several matches: 412.
    #[oai(path = "/fhir/:resource_type", method = "put")]
    async fn update_conditional(
        &self,
        request: &Request,
        resource_type: Path<String>,
        body: FhirJson,
        auth: BearerAuth,
    ) -> Result<UpdateResponse, FhirError> {
        let request_id = RequestId::of(request);
        let resource_type = stored_type(&resource_type.0)?;
        let criteria: Vec<(String, String)> = request
            .params()
            .map_err(|_| bad_parameter("criteria", "are not valid URL encoding"))?;
        let (stored, created) = self
            .session(request, auth.0)
            .update_conditional(resource_type, &body.0, &criteria)
            .await
            .map_err(|err| FhirError::from_records(err, &request_id))?;
        tracing::info!(resource_type = %stored.resource_type, id = %stored.id, version = stored.version, created, "conditionally updated");
        Ok(update_response(request, &stored, created))
    }

    /// delete: mark a resource deleted.
    ///
    /// Reads then answer 410 Gone; vread and history keep every version. Deleting a deleted
    /// resource changes nothing. `If-Match: W/"n"` deletes only version n.
    #[oai(path = "/fhir/:resource_type/:id", method = "delete")]
    async fn delete(
        &self,
        request: &Request,
        resource_type: Path<String>,
        id: Path<String>,
        /// `W/"n"`: delete only if the current version is n.
        #[oai(name = "If-Match")]
        if_match: Header<Option<String>>,
        auth: BearerAuth,
    ) -> Result<DeleteResponse, FhirError> {
        let request_id = RequestId::of(request);
        let resource_type = stored_type(&resource_type.0)?;
        let if_match = if_match.0.as_deref().map(parse_etag).transpose()?;
        let version = self
            .session(request, auth.0)
            .delete(resource_type, &id.0, if_match)
            .await
            .map_err(|err| FhirError::from_records(err, &request_id))?;
        tracing::info!(%resource_type, id = %id.0, ?version, "deleted");
        Ok(DeleteResponse::Deleted)
    }

    /// vread: one version of a resource.
    #[oai(path = "/fhir/:resource_type/:id/_history/:version", method = "get")]
    async fn vread(
        &self,
        request: &Request,
        resource_type: Path<String>,
        id: Path<String>,
        version: Path<String>,
        auth: BearerAuth,
    ) -> Result<ReadResponse, FhirError> {
        let request_id = RequestId::of(request);
        let resource_type = stored_type(&resource_type.0)?;
        let shaping = read_shaping(request)?;
        let stored = self
            .session(request, auth.0)
            .vread(resource_type, &id.0, &version.0)
            .await
            .map_err(|err| FhirError::from_records(err, &request_id))?;
        let (etag, last_modified) = (etag(&stored), http_date(stored.last_updated));
        Ok(ReadResponse::Ok(
            FhirJson(shaping.body(stored.body)),
            etag,
            last_modified,
        ))
    }

    /// history: every version of a resource, newest first.
    ///
    /// `_count` (default 20, at most 1000) limits the versions; `_since` (an instant) keeps
    /// those updated at or after it.
    #[oai(path = "/fhir/:resource_type/:id/_history", method = "get")]
    async fn history(
        &self,
        request: &Request,
        resource_type: Path<String>,
        id: Path<String>,
        #[oai(name = "_count")] count: Query<Option<String>>,
        #[oai(name = "_since")] since: Query<Option<String>>,
        auth: BearerAuth,
    ) -> Result<HistoryResponse, FhirError> {
        let request_id = RequestId::of(request);
        let resource_type = stored_type(&resource_type.0)?;
        let (count, since) = history_params(count.0.as_deref(), since.0.as_deref())?;
        let entries = self
            .session(request, auth.0)
            .history(resource_type, &id.0, since, count)
            .await
            .map_err(|err| FhirError::from_records(err, &request_id))?;
        Ok(HistoryResponse::Ok(FhirJson(history_bundle(
            &base_url(request),
            &entries,
            None,
        ))))
    }

    /// history (type): every version of every resource of a type, newest first.
    ///
    /// `_count` (default 20, at most 1000) sets the page size; `_since` (an instant) keeps
    /// versions updated at or after it; follow the `next` link for more.
    #[oai(path = "/fhir/:resource_type/_history", method = "get")]
    async fn history_type(
        &self,
        request: &Request,
        resource_type: Path<String>,
        #[oai(name = "_count")] count: Query<Option<String>>,
        #[oai(name = "_since")] since: Query<Option<String>>,
        #[oai(name = "_cursor")] cursor: Query<Option<String>>,
        auth: BearerAuth,
    ) -> Result<HistoryResponse, FhirError> {
        let resource_type = stored_type(&resource_type.0)?;
        let path = format!("/fhir/{resource_type}/_history");
        self.history_page(
            &self.session(request, auth.0),
            request,
            Some(resource_type),
            &path,
            count.0,
            since.0,
            cursor.0,
        )
        .await
    }

    /// history (system): every version of every resource, newest first.
    ///
    /// Parameters as for type history.
    #[oai(path = "/fhir/_history", method = "get")]
    async fn history_system(
        &self,
        request: &Request,
        #[oai(name = "_count")] count: Query<Option<String>>,
        #[oai(name = "_since")] since: Query<Option<String>>,
        #[oai(name = "_cursor")] cursor: Query<Option<String>>,
        auth: BearerAuth,
    ) -> Result<HistoryResponse, FhirError> {
        self.history_page(
            &self.session(request, auth.0),
            request,
            None,
            "/fhir/_history",
            count.0,
            since.0,
            cursor.0,
        )
        .await
    }

    /// search: resources of a type matching every parameter.
    ///
    /// Identifying parameters (Patient `identifier`, `name`, `family`, `given`, `birthdate`,
    /// `telecom`, `address-postalcode`) are answered from blind indexes: string search is a
    /// case- and accent-insensitive starts-with of 3 or more letters (or `:exact`), `birthdate`
    /// takes `YYYY`, `YYYY-MM` or `YYYY-MM-DD` equality only. Every parameter takes
    /// `:missing=true|false`; `_id` and `_lastUpdated` work on every type. `_count` (default 20,
    /// at most 1000) sets the page size; follow the `next` link for more. `_sort=_lastUpdated`
    /// or `-_lastUpdated` orders by time (ties by id; by id otherwise); `_total=accurate` adds
    /// the number of matches. `_include=Immunization:patient` adds the matches' patients,
    /// `_revinclude=Immunization:patient` the immunizations of matched patients (search mode
    /// `include`). Chains one level deep: `Immunization?patient.identifier=system|value`.
    /// `Prefer: handling=lenient` ignores unknown parameters.
    #[oai(path = "/fhir/:resource_type", method = "get")]
    async fn search(
        &self,
        request: &Request,
        resource_type: Path<String>,
        auth: BearerAuth,
    ) -> Result<SearchResponse, FhirError> {
        let params: Vec<(String, String)> = request
            .params()
            .map_err(|_| bad_parameter("query", "is not valid URL encoding"))?;
        self.search_impl(request, &resource_type.0, params, auth.0)
            .await
    }

    /// search-type by POST: the parameters as an `application/x-www-form-urlencoded` body
    /// (with any in the URL's query), for searches too long for a URL. Answers as the GET.
    #[oai(path = "/fhir/:resource_type/_search", method = "post")]
    async fn search_post(
        &self,
        request: &Request,
        resource_type: Path<String>,
        body: SearchForm,
        auth: BearerAuth,
    ) -> Result<SearchResponse, FhirError> {
        let mut params: Vec<(String, String)> = request
            .params()
            .map_err(|_| bad_parameter("query", "is not valid URL encoding"))?;
        params.extend(form_urlencoded::parse(&body.0).into_owned());
        self.search_impl(request, &resource_type.0, params, auth.0)
            .await
    }

    /// $erase: crypto-shred a patient (GDPR Art. 17).
    ///
    /// Destroys the data key of the patient's compartment and their index entries, leaving a
    /// tombstone: afterwards every version of the Patient and of every resource in their
    /// compartment answers 410 Gone and matches no search, also straight from the database.
    #[oai(path = "/fhir/Patient/:id/$erase", method = "delete")]
    async fn erase(
        &self,
        request: &Request,
        id: Path<String>,
        auth: BearerAuth,
    ) -> Result<EraseResponse, FhirError> {
        self.erase_impl(request, &id.0, auth.0).await
    }

    /// $erase (POST form): as `DELETE /fhir/Patient/{id}/$erase`.
    #[oai(path = "/fhir/Patient/:id/$erase", method = "post")]
    async fn erase_post(
        &self,
        request: &Request,
        id: Path<String>,
        auth: BearerAuth,
    ) -> Result<EraseResponse, FhirError> {
        self.erase_impl(request, &id.0, auth.0).await
    }

    /// patch: change a resource with a JSON Patch (RFC 6902).
    ///
    /// The current version, patched, is validated like an update and stored as the next
    /// version. A failed operation (a `test` that does not hold, a path that does not exist) or a
    /// result that is not a valid resource is 422, and nothing is stored. With
    /// `If-Match: W/"n"` only version n is patched (412 otherwise); without it, a concurrent
    /// write makes the patch apply to the newer version.
    #[oai(path = "/fhir/:resource_type/:id", method = "patch")]
    async fn patch(
        &self,
        request: &Request,
        resource_type: Path<String>,
        id: Path<String>,
        /// `W/"n"`: patch only if the current version is n.
        #[oai(name = "If-Match")]
        if_match: Header<Option<String>>,
        body: JsonPatch,
        auth: BearerAuth,
    ) -> Result<UpdateResponse, FhirError> {
        let request_id = RequestId::of(request);
        let resource_type = stored_type(&resource_type.0)?;
        let if_match = if_match.0.as_deref().map(parse_etag).transpose()?;
        let stored = self
            .session(request, auth.0)
            .patch(resource_type, &id.0, &body.0, if_match)
            .await
            .map_err(|err| FhirError::from_records(err, &request_id))?;
        tracing::info!(resource_type = %stored.resource_type, id = %stored.id, version = stored.version, "patched");
        Ok(update_response(request, &stored, false))
    }

    /// patch (conditional): `PATCH /fhir/{type}?criteria` patches the one matching resource.
    ///
    /// No match: 404; several: 412.
    #[oai(path = "/fhir/:resource_type", method = "patch")]
    async fn patch_conditional(
        &self,
        request: &Request,
        resource_type: Path<String>,
        /// `W/"n"`: patch only if the matching resource's current version is n.
        #[oai(name = "If-Match")]
        if_match: Header<Option<String>>,
        body: JsonPatch,
        auth: BearerAuth,
    ) -> Result<UpdateResponse, FhirError> {
        let request_id = RequestId::of(request);
        let resource_type = stored_type(&resource_type.0)?;
        let if_match = if_match.0.as_deref().map(parse_etag).transpose()?;
        let criteria = criteria(request)?;
        let stored = self
            .session(request, auth.0)
            .patch_conditional(resource_type, &criteria, &body.0, if_match)
            .await
            .map_err(|err| FhirError::from_records(err, &request_id))?;
        tracing::info!(resource_type = %stored.resource_type, id = %stored.id, version = stored.version, "conditionally patched");
        Ok(update_response(request, &stored, false))
    }

    /// delete (conditional): `DELETE /fhir/{type}?criteria` deletes the one matching resource.
    ///
    /// No match deletes nothing (204); several: 412.
    #[oai(path = "/fhir/:resource_type", method = "delete")]
    async fn delete_conditional(
        &self,
        request: &Request,
        resource_type: Path<String>,
        auth: BearerAuth,
    ) -> Result<DeleteResponse, FhirError> {
        let request_id = RequestId::of(request);
        let resource_type = stored_type(&resource_type.0)?;
        let criteria = criteria(request)?;
        let version = self
            .session(request, auth.0)
            .delete_conditional(resource_type, &criteria)
            .await
            .map_err(|err| FhirError::from_records(err, &request_id))?;
        tracing::info!(%resource_type, ?version, "conditionally deleted");
        Ok(DeleteResponse::Deleted)
    }
}

impl FhirApi {
    /// The core's session for `caller` in this request: it decides, confines and audits.
    pub(crate) fn session(&self, request: &Request, caller: Caller) -> Session {
        self.records.session(caller, &RequestId::of(request).0)
    }

    #[allow(clippy::too_many_arguments)]
    async fn history_page(
        &self,
        session: &Session,
        request: &Request,
        resource_type: Option<ResourceType>,
        path: &str,
        count: Option<String>,
        since: Option<String>,
        cursor: Option<String>,
    ) -> Result<HistoryResponse, FhirError> {
        let request_id = RequestId::of(request);
        let (count_value, since_value) = history_params(count.as_deref(), since.as_deref())?;
        let page = session
            .history_all(resource_type, since_value, count_value, cursor.as_deref())
            .await
            .map_err(|err| FhirError::from_records(err, &request_id))?;
        let base = base_url(request);
        let link = |cursor: Option<&str>| {
            let params = [
                ("_count", count.as_deref()),
                ("_since", since.as_deref()),
                ("_cursor", cursor),
            ];
            page_url(
                &base,
                path,
                params
                    .into_iter()
                    .filter_map(|(name, value)| Some((name, value?))),
            )
        };
        let mut links =
            vec![serde_json::json!({"relation": "self", "url": link(cursor.as_deref())})];
        if let Some(next) = &page.next_cursor {
            links.push(serde_json::json!({"relation": "next", "url": link(Some(next))}));
        }
        Ok(HistoryResponse::Ok(FhirJson(history_bundle(
            &base,
            &page.entries,
            Some(links),
        ))))
    }

    async fn search_impl(
        &self,
        request: &Request,
        resource_type: &str,
        params: Vec<(String, String)>,
        caller: Caller,
    ) -> Result<SearchResponse, FhirError> {
        let request_id = RequestId::of(request);
        let resource_type = stored_type(resource_type)?;
        let mut criteria = params.clone();
        let shaping = Shaping::take(&mut criteria)?;
        if shaping.summary() == Summary::Count {
            // Only the number of matches: no entries, an exact total.
            criteria.retain(|(name, _)| name != "_count" && name != "_total");
            criteria.push(("_count".to_owned(), "0".to_owned()));
            criteria.push(("_total".to_owned(), "accurate".to_owned()));
        }
        let lenient = preference(request, "handling").as_deref() == Some("lenient");
        let page = self
            .session(request, caller)
            .search(resource_type, &criteria, lenient)
            .await
            .map_err(|err| FhirError::from_records(err, &request_id))?;
        tracing::info!(%resource_type, matches = page.resources.len(), "searched");
        let base = base_url(request);
        Ok(SearchResponse::Ok(FhirJson(searchset(
            &base,
            resource_type,
            &params,
            page,
            &shaping,
        ))))
    }

    async fn erase_impl(
        &self,
        request: &Request,
        id: &str,
        caller: Caller,
    ) -> Result<EraseResponse, FhirError> {
        let request_id = RequestId::of(request);
        let erasure = self
            .session(request, caller)
            .erase_patient(id)
            .await
            .map_err(|err| FhirError::from_records(err, &request_id))?;
        tracing::warn!(id = %id, resources = erasure.resources, versions = erasure.versions, "patient compartment erased");
        let outcome = fhir_model::OperationOutcome::single(
            fhir_model::IssueSeverity::Information,
            fhir_model::IssueType::Informational,
            format!(
                "Patient/{id} erased: its data key was destroyed, so {} resource(s) in {} \
                 version(s) can no longer be decrypted, and their index entries were deleted",
                erasure.resources, erasure.versions
            ),
        );
        Ok(EraseResponse::Ok(crate::errors::outcome_json(outcome)))
    }
}
