//! What a transaction or batch Bundle posted to the base URL asks for (R4 RESTful API
//! §3.1.0.11): each entry's method, target and preconditions, read and checked before anything
//! is done, and the order a transaction processes them in. Executing the entries is the
//! records core's; this module is pure.
//!
//! Problems are [`Issue`]s located in the Bundle (`Bundle.entry[3].request.url`), so an
//! integrator sees which entry is wrong; no diagnostic quotes a submitted value.

use serde_json::{Map, Value};

use crate::outcome::IssueType;
use crate::resource_type::ResourceType;
use crate::validation::{Issue, Location};

/// Whether the entries stand or fall together.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BundleKind {
    /// Every entry succeeds or none does.
    Transaction,
    /// Each entry on its own.
    Batch,
}

impl BundleKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Transaction => "transaction",
            Self::Batch => "batch",
        }
    }

    /// The type of the Bundle that answers this one.
    pub fn response_type(self) -> &'static str {
        match self {
            Self::Transaction => "transaction-response",
            Self::Batch => "batch-response",
        }
    }
}

/// An entry's HTTP verb, in the order a transaction processes them (R4 §3.1.0.11.2: DELETE,
/// then POST, then PUT and PATCH, then GET and HEAD).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Method {
    Delete,
    Post,
    Put,
    Patch,
    Get,
    Head,
}

impl Method {
    fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "DELETE" => Self::Delete,
            "POST" => Self::Post,
            "PUT" => Self::Put,
            "PATCH" => Self::Patch,
            "GET" => Self::Get,
            "HEAD" => Self::Head,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Delete => "DELETE",
            Self::Post => "POST",
            Self::Put => "PUT",
            Self::Patch => "PATCH",
            Self::Get => "GET",
            Self::Head => "HEAD",
        }
    }

    /// When a transaction processes entries of this method: PUT and PATCH together, GET and
    /// HEAD together.
    fn stage(self) -> u8 {
        match self {
            Self::Delete => 0,
            Self::Post => 1,
            Self::Put | Self::Patch => 2,
            Self::Get | Self::Head => 3,
        }
    }

    /// Whether an entry of this method changes what is stored.
    pub fn writes(self) -> bool {
        !matches!(self, Self::Get | Self::Head)
    }
}

/// What an entry's `request.url` names, relative to the base: `Patient`, `Patient/1`,
/// `Patient/1/_history/2`, `Patient?identifier=…`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub resource_type: ResourceType,
    pub id: Option<String>,
    /// `_history/{vid}`: a version (vread).
    pub version: Option<String>,
    /// The query's parameters, decoded, in order.
    pub query: Vec<(String, String)>,
}

/// One entry of the Bundle, as the request it stands for.
#[derive(Debug, Clone, PartialEq)]
pub struct EntryRequest {
    /// Its position in the Bundle, which its response keeps.
    pub index: usize,
    pub method: Method,
    pub target: Target,
    /// The entry's identity in the Bundle, which references in other entries may use.
    pub full_url: Option<String>,
    /// `resource`, as read (POST and PUT carry the resource; PATCH a Binary with the patch).
    pub resource: Option<Value>,
    /// `request.ifMatch`: an ETag (`W/"3"`).
    pub if_match: Option<String>,
    /// `request.ifNoneExist`: a conditional create's criteria, decoded.
    pub if_none_exist: Option<Vec<(String, String)>>,
}

impl EntryRequest {
    /// Where the entry is in the Bundle: `Bundle.entry[3]`.
    pub fn location(&self) -> Location {
        entry_location(self.index)
    }

    /// Whether the URL names the resource by criteria (`Patient?identifier=…`) rather than by id.
    pub fn is_conditional(&self) -> bool {
        self.target.id.is_none() && !self.target.query.is_empty()
    }
}

/// A transaction or batch Bundle, entry by entry.
#[derive(Debug, Clone, PartialEq)]
pub struct BundleRequest {
    pub kind: BundleKind,
    pub entries: Vec<EntryRequest>,
}

impl BundleRequest {
    /// The entries' indexes in the order a transaction processes them: by method (DELETE, POST,
    /// PUT/PATCH, GET/HEAD), and in Bundle order within a method.
    pub fn processing_order(&self) -> Vec<usize> {
        let mut order: Vec<usize> = (0..self.entries.len()).collect();
        order.sort_by_key(|&i| (self.entries[i].method.stage(), i));
        order
    }
}

/// Why a posted body is not a transaction or batch this server can carry out.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum BundleRequestError {
    /// Not a Bundle, or its JSON or entries are malformed; every issue found, located.
    #[error("the Bundle cannot be processed ({} issue(s))", issues.len())]
    Invalid { issues: Vec<Issue> },
    /// A Bundle, but of a type that is not processed at the base URL.
    #[error(
        "a Bundle of type {found} cannot be processed at the base URL; post a Bundle of type \
         transaction or batch (a collection or document goes to /fhir/Bundle)"
    )]
    WrongType { found: String },
    /// More entries than the server accepts in one Bundle.
    #[error("the Bundle has {count} entries; this server accepts at most {limit} per Bundle")]
    TooManyEntries { count: usize, limit: usize },
}

/// `Bundle.entry[index]`.
pub fn entry_location(index: usize) -> Location {
    Location::root("Bundle").item("entry", index)
}

/// Reads a transaction or batch Bundle: FHIR's JSON rules for the whole body, then each entry's
/// request. `base` is this server's FHIR base URL (`https://host/fhir`): a `request.url` or
/// `fullUrl` under it is taken as relative. At most `max_entries` entries.
pub fn read_bundle(
    bytes: &[u8],
    base: &str,
    max_entries: usize,
) -> Result<BundleRequest, BundleRequestError> {
    let invalid = |issues| BundleRequestError::Invalid { issues };
    let root = Location::root("Bundle");
    let value = crate::json_reader::read(bytes).map_err(invalid)?;
    let Value::Object(mut bundle) = value else {
        return Err(invalid(vec![Issue::error(
            IssueType::Structure,
            None,
            "a Bundle (a JSON object) was expected",
        )]));
    };
    if bundle.get("resourceType").and_then(Value::as_str) != Some("Bundle") {
        return Err(invalid(vec![Issue::error(
            IssueType::Invalid,
            Some(&root.child("resourceType")),
            "the base URL accepts only a Bundle of type transaction or batch",
        )]));
    }
    let kind = match bundle.get("type").and_then(Value::as_str) {
        Some("transaction") => BundleKind::Transaction,
        Some("batch") => BundleKind::Batch,
        Some(other) => {
            return Err(BundleRequestError::WrongType {
                found: other.chars().take(32).collect(),
            });
        }
        None => {
            return Err(invalid(vec![Issue::error(
                IssueType::Required,
                Some(&root.child("type")),
                "type is required: transaction or batch",
            )]));
        }
    };
    let entries = match bundle.remove("entry") {
        None => Vec::new(),
        Some(Value::Array(entries)) => entries,
        Some(_) => {
            return Err(invalid(vec![Issue::error(
                IssueType::Structure,
                Some(&root.child("entry")),
                "entry must be an array",
            )]));
        }
    };
    if entries.len() > max_entries {
        return Err(BundleRequestError::TooManyEntries {
            count: entries.len(),
            limit: max_entries,
        });
    }
    let mut issues = Vec::new();
    let mut read = Vec::with_capacity(entries.len());
    for (index, entry) in entries.into_iter().enumerate() {
        match read_entry(index, entry, base) {
            Ok(entry) => read.push(entry),
            Err(issue) => issues.push(issue),
        }
    }
    if kind == BundleKind::Transaction {
        let mut seen = std::collections::HashMap::new();
        for entry in &read {
            if let Some(full_url) = &entry.full_url
                && let Some(first) = seen.insert(full_url.as_str(), entry.index)
            {
                issues.push(Issue::error(
                    IssueType::Invariant,
                    Some(&entry.location().child("fullUrl")),
                    format!("bdl-7: this fullUrl is also the fullUrl of Bundle.entry[{first}]"),
                ));
            }
        }
    }
    if issues.is_empty() {
        Ok(BundleRequest {
            kind,
            entries: read,
        })
    } else {
        issues.truncate(crate::json_reader::MAX_ISSUES);
        Err(invalid(issues))
    }
}

fn read_entry(index: usize, entry: Value, base: &str) -> Result<EntryRequest, Issue> {
    let at = entry_location(index);
    let problem = |code, at: &Location, text: &str| Issue::error(code, Some(at), text);
    let Value::Object(mut entry) = entry else {
        return Err(problem(
            IssueType::Structure,
            &at,
            "an entry must be an object",
        ));
    };
    let full_url = match entry.remove("fullUrl") {
        None => None,
        Some(Value::String(url)) => Some(url),
        Some(_) => {
            return Err(problem(
                IssueType::Structure,
                &at.child("fullUrl"),
                "fullUrl must be a string",
            ));
        }
    };
    let resource = match entry.remove("resource") {
        None => None,
        Some(value @ Value::Object(_)) => Some(value),
        Some(_) => {
            return Err(problem(
                IssueType::Structure,
                &at.child("resource"),
                "resource must be an object",
            ));
        }
    };
    let request_at = at.child("request");
    let Some(Value::Object(request)) = entry.remove("request") else {
        return Err(problem(
            IssueType::Required,
            &request_at,
            "bdl-3: entry.request is required in a transaction or batch",
        ));
    };
    let text = |name: &str| -> Result<Option<String>, Issue> {
        match request.get(name) {
            None => Ok(None),
            Some(Value::String(text)) => Ok(Some(text.clone())),
            Some(_) => Err(problem(
                IssueType::Structure,
                &request_at.child(name),
                &format!("{name} must be a string"),
            )),
        }
    };
    let method = text("method")?
        .ok_or_else(|| {
            problem(
                IssueType::Required,
                &request_at.child("method"),
                "method is required",
            )
        })
        .and_then(|method| {
            Method::parse(&method).ok_or_else(|| {
                problem(
                    IssueType::CodeInvalid,
                    &request_at.child("method"),
                    "method must be one of GET, HEAD, POST, PUT, DELETE, PATCH",
                )
            })
        })?;
    let url_at = request_at.child("url");
    let url =
        text("url")?.ok_or_else(|| problem(IssueType::Required, &url_at, "url is required"))?;
    let target =
        parse_target(&url, base).map_err(|why| problem(IssueType::Invalid, &url_at, why))?;
    let if_none_exist = text("ifNoneExist")?.map(|criteria| {
        let query = criteria
            .split_once('?')
            .map_or(criteria.as_str(), |(_, q)| q);
        decode_query(query)
    });
    let entry = EntryRequest {
        index,
        method,
        target,
        full_url,
        resource,
        if_match: text("ifMatch")?,
        if_none_exist,
    };
    check_shape(&entry)?;
    Ok(entry)
}

/// What each method needs in its URL and body.
fn check_shape(entry: &EntryRequest) -> Result<(), Issue> {
    let at = entry.location();
    let url_at = at.child("request").child("url");
    let target = &entry.target;
    let fail = |at: &Location, text: &str| Err(Issue::error(IssueType::Invalid, Some(at), text));
    match entry.method {
        Method::Post => {
            if target.id.is_some() || !target.query.is_empty() {
                return fail(
                    &url_at,
                    "a POST entry's url is the resource type alone (Patient); criteria go in \
                     ifNoneExist",
                );
            }
        }
        Method::Put | Method::Patch | Method::Delete => {
            if target.version.is_some() {
                return fail(
                    &url_at,
                    "the url names a version; a write names the resource (Patient/1) or criteria",
                );
            }
            if target.id.is_none() && target.query.is_empty() {
                return fail(
                    &url_at,
                    "the url must name the resource (Patient/1) or criteria (Patient?identifier=…)",
                );
            }
        }
        Method::Get | Method::Head => {}
    }
    let needs_resource = matches!(entry.method, Method::Post | Method::Put | Method::Patch);
    match (&entry.resource, needs_resource) {
        (None, true) => fail(
            &at.child("resource"),
            &format!("a {} entry needs a resource", entry.method.as_str()),
        ),
        (Some(resource), true) => {
            let found = resource.get("resourceType").and_then(Value::as_str);
            let wanted = if entry.method == Method::Patch {
                "Binary"
            } else {
                target.resource_type.as_str()
            };
            if found == Some(wanted) {
                Ok(())
            } else if entry.method == Method::Patch {
                fail(
                    &at.child("resource").child("resourceType"),
                    "a PATCH entry carries its JSON Patch as a Binary (contentType \
                     application/json-patch+json)",
                )
            } else {
                fail(
                    &at.child("resource").child("resourceType"),
                    "the resource's type is not the type in request.url",
                )
            }
        }
        (_, false) => Ok(()),
    }
}

/// `Patient`, `Patient/1`, `Patient/1/_history/2`, `Patient?x=y`, relative to `base` (or
/// absolute under it).
fn parse_target(url: &str, base: &str) -> Result<Target, &'static str> {
    let relative = url
        .strip_prefix(base.trim_end_matches('/'))
        .map_or(url, |rest| rest.trim_start_matches('/'));
    if relative.contains("://") {
        return Err("the url must be relative to this server's base (Patient/1)");
    }
    let (path, query) = relative.split_once('?').unwrap_or((relative, ""));
    let mut segments = path.split('/');
    let type_name = segments.next().unwrap_or_default();
    if type_name.is_empty() {
        return Err("the url must start with a resource type");
    }
    let resource_type =
        ResourceType::parse(type_name).map_err(|_| "the url's resource type is not an R4 type")?;
    let id = segments.next().map(str::to_owned);
    let version = match (segments.next(), segments.next(), segments.next()) {
        (None, _, _) => None,
        (Some("_history"), Some(version), None) => Some(version.to_owned()),
        _ => {
            return Err(
                "this server processes reads, vreads, searches and writes in a Bundle, not \
                 operations or history",
            );
        }
    };
    if let Some(id) = &id
        && (id.starts_with('$') || !crate::is_valid_id(id))
    {
        return Err(if id.starts_with('$') {
            "operations are not processed inside a Bundle"
        } else {
            "the url's id is not a valid FHIR id (1-64 of A-Z a-z 0-9 - .)"
        });
    }
    let mut query = decode_query(query);
    query.retain(|(name, _)| !matches!(name.as_str(), "_format" | "_pretty"));
    Ok(Target {
        resource_type,
        id,
        version,
        query,
    })
}

fn decode_query(query: &str) -> Vec<(String, String)> {
    form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect()
}

/// Calls `resolve` with every `reference` string in `resource` (at any depth: extensions,
/// contained resources, backbone elements) and its location under `at`; a `Some` replaces it.
/// The first error stops the walk.
pub fn rewrite_references<E>(
    resource: &mut Value,
    at: &Location,
    resolve: &mut impl FnMut(&str, &Location) -> Result<Option<String>, E>,
) -> Result<(), E> {
    match resource {
        Value::Object(members) => rewrite_members(members, at, resolve),
        Value::Array(items) => {
            // Arrays are walked by their owner, which knows the member's name.
            for item in items {
                rewrite_references(item, at, resolve)?;
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

fn rewrite_members<E>(
    members: &mut Map<String, Value>,
    at: &Location,
    resolve: &mut impl FnMut(&str, &Location) -> Result<Option<String>, E>,
) -> Result<(), E> {
    for (name, value) in members.iter_mut() {
        match value {
            Value::String(reference) if name == "reference" => {
                if let Some(new) = resolve(reference, &at.child(name))? {
                    *reference = new;
                }
            }
            Value::Object(inner) => rewrite_members(inner, &at.child(name), resolve)?,
            Value::Array(items) => {
                for (index, item) in items.iter_mut().enumerate() {
                    if let Value::Object(inner) = item {
                        rewrite_members(inner, &at.item(name, index), resolve)?;
                    }
                }
            }
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
