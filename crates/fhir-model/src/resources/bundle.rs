//! Bundle: a container of resources (transactions, batches, search results, histories).

use std::collections::HashSet;

use super::backbone;
use crate::datatypes::*;
use crate::outcome::IssueType;
use crate::primitives::{Code, Decimal, Id, Instant, UnsignedInt, Uri};
use crate::resource::Resource;
use crate::validation::{Issues, Location, Validate, each, one};

/// `bundle-type`, a required binding.
pub const BUNDLE_TYPE: &[&str] = &[
    "document",
    "message",
    "transaction",
    "transaction-response",
    "batch",
    "batch-response",
    "history",
    "searchset",
    "collection",
];

fhir_element! {
    /// A container for a collection of resources.
    @resource = "Bundle"
    pub struct Bundle {
        id: Option<Id> => "id",
        meta: Option<Meta> => "meta",
        implicit_rules: Option<Uri> => "implicitRules",
        language: Option<Code> => "language",
        identifier: Option<Identifier> => "identifier",
        type_: Option<Code> => "type",
        timestamp: Option<Instant> => "timestamp",
        total: Option<UnsignedInt> => "total",
        link: Vec<BundleLink> => "link",
        entry: Vec<BundleEntry> => "entry",
    }
}

fhir_element! {
    /// A link about the bundle as a whole, such as the next page of search results.
    pub struct BundleLink {
        id: Option<String> => "id",
        extension: Vec<Extension> => "extension",
        modifier_extension: Vec<Extension> => "modifierExtension",
        relation: Option<String> => "relation",
        url: Option<Uri> => "url",
    }
}

fhir_element! {
    /// One entry: a resource and/or what to do with it, or what was done.
    pub struct BundleEntry {
        id: Option<String> => "id",
        extension: Vec<Extension> => "extension",
        modifier_extension: Vec<Extension> => "modifierExtension",
        link: Vec<BundleLink> => "link",
        full_url: Option<Uri> => "fullUrl",
        resource: Option<Resource> => "resource",
        search: Option<BundleEntrySearch> => "search",
        request: Option<BundleEntryRequest> => "request",
        response: Option<BundleEntryResponse> => "response",
    }
}

fhir_element! {
    /// Why an entry is in a search result.
    pub struct BundleEntrySearch {
        id: Option<String> => "id",
        extension: Vec<Extension> => "extension",
        modifier_extension: Vec<Extension> => "modifierExtension",
        mode: Option<Code> => "mode",
        score: Option<Decimal> => "score",
    }
}

fhir_element! {
    /// The HTTP request an entry of a transaction or batch stands for.
    pub struct BundleEntryRequest {
        id: Option<String> => "id",
        extension: Vec<Extension> => "extension",
        modifier_extension: Vec<Extension> => "modifierExtension",
        method: Option<Code> => "method",
        url: Option<Uri> => "url",
        if_none_match: Option<String> => "ifNoneMatch",
        if_modified_since: Option<Instant> => "ifModifiedSince",
        if_match: Option<String> => "ifMatch",
        if_none_exist: Option<String> => "ifNoneExist",
    }
}

fhir_element! {
    /// The result of processing an entry's request.
    pub struct BundleEntryResponse {
        id: Option<String> => "id",
        extension: Vec<Extension> => "extension",
        modifier_extension: Vec<Extension> => "modifierExtension",
        status: Option<String> => "status",
        location: Option<Uri> => "location",
        etag: Option<String> => "etag",
        last_modified: Option<Instant> => "lastModified",
        outcome: Option<Resource> => "outcome",
    }
}

impl Validate for Bundle {
    fn validate(&self, at: &Location, issues: &mut Issues) {
        one(&self.id, at, "id", issues);
        one(&self.meta, at, "meta", issues);
        one(&self.implicit_rules, at, "implicitRules", issues);
        one(&self.language, at, "language", issues);
        one(&self.identifier, at, "identifier", issues);
        issues.required(&self.type_, at, "type");
        issues.binding(&self.type_, at, "type", BUNDLE_TYPE);
        one(&self.timestamp, at, "timestamp", issues);
        one(&self.total, at, "total", issues);
        each(&self.link, at, "link", issues);
        each(&self.entry, at, "entry", issues);

        let kind = self.type_.as_ref().map(Code::as_str).unwrap_or_default();
        if self.total.is_some() && !matches!(kind, "searchset" | "history") {
            issues.push(
                IssueType::Invariant,
                &at.child("total"),
                "bdl-1: total only when a search or history",
            );
        }
        let mut full_urls = HashSet::new();
        for (index, entry) in self.entry.iter().enumerate() {
            let here = at.item("entry", index);
            if entry.search.is_some() && kind != "searchset" {
                issues.push(
                    IssueType::Invariant,
                    &here,
                    "bdl-2: entry.search only when a search",
                );
            }
            if entry.request.is_none() && matches!(kind, "batch" | "transaction" | "history") {
                issues.push(
                    IssueType::Invariant,
                    &here,
                    "bdl-3: entry.request is mandatory for batch, transaction and history",
                );
            }
            if entry.response.is_none()
                && matches!(kind, "batch-response" | "transaction-response" | "history")
            {
                issues.push(IssueType::Invariant, &here, "bdl-4: entry.response is mandatory for batch-response, transaction-response and history");
            }
            if let Some(full_url) = &entry.full_url {
                let version = entry
                    .resource
                    .as_ref()
                    .and_then(Resource::meta)
                    .and_then(|m| m.version_id.clone());
                if kind != "history" && !full_urls.insert((full_url.0.clone(), version)) {
                    issues.push(IssueType::Invariant, &here.child("fullUrl"), "bdl-7: fullUrl must be unique in a bundle, or else entries with the same fullUrl must have different meta.versionId");
                }
            }
        }
    }
}

impl Validate for BundleLink {
    fn validate(&self, at: &Location, issues: &mut Issues) {
        backbone(&self.extension, &self.modifier_extension, at, issues);
        issues.required(&self.relation, at, "relation");
        issues.required(&self.url, at, "url");
        one(&self.url, at, "url", issues);
    }
}

impl Validate for BundleEntry {
    fn validate(&self, at: &Location, issues: &mut Issues) {
        backbone(&self.extension, &self.modifier_extension, at, issues);
        each(&self.link, at, "link", issues);
        one(&self.full_url, at, "fullUrl", issues);
        one(&self.resource, at, "resource", issues);
        one(&self.search, at, "search", issues);
        one(&self.request, at, "request", issues);
        one(&self.response, at, "response", issues);
        if self.resource.is_none() && self.request.is_none() && self.response.is_none() {
            issues.push(
                IssueType::Invariant,
                at,
                "bdl-5: an entry has a resource, a request or a response",
            );
        }
        if let Some(full_url) = &self.full_url
            && full_url.0.contains("/_history/")
        {
            issues.push(
                IssueType::Invariant,
                &at.child("fullUrl"),
                "bdl-8: fullUrl cannot be a version-specific reference",
            );
        }
    }
}

impl Validate for BundleEntrySearch {
    fn validate(&self, at: &Location, issues: &mut Issues) {
        backbone(&self.extension, &self.modifier_extension, at, issues);
        issues.binding(&self.mode, at, "mode", &["match", "include", "outcome"]);
    }
}

impl Validate for BundleEntryRequest {
    fn validate(&self, at: &Location, issues: &mut Issues) {
        backbone(&self.extension, &self.modifier_extension, at, issues);
        issues.required(&self.method, at, "method");
        issues.binding(
            &self.method,
            at,
            "method",
            &["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH"],
        );
        issues.required(&self.url, at, "url");
        one(&self.url, at, "url", issues);
        one(&self.if_modified_since, at, "ifModifiedSince", issues);
    }
}

impl Validate for BundleEntryResponse {
    fn validate(&self, at: &Location, issues: &mut Issues) {
        backbone(&self.extension, &self.modifier_extension, at, issues);
        issues.required(&self.status, at, "status");
        one(&self.location, at, "location", issues);
        one(&self.last_modified, at, "lastModified", issues);
        one(&self.outcome, at, "outcome", issues);
    }
}
