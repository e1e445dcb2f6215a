//! Turning FHIR search parameters (`name=smi&birthdate=1970`) into a [`SearchQuery`].
//!
//! Errors name the parameter and the rule, never the value (values are often PHI).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use fhir_model::ResourceType;
use fhir_model::search::{ParamKind, Protection, SearchParam, date_range, search_param};
use phi_crypto::{BlindIndex, BlindQueryError, fold};

use crate::index::{
    Clause, DateComparator, DateMatch, IndexTable, Order, Position, ReferenceMatch, SearchQuery,
    SortKey, TokenMatch, blind_token_value,
};

pub const DEFAULT_COUNT: u64 = 20;
pub const MAX_COUNT: u64 = 1000;

/// Why a search request cannot be answered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("search parameter {param}: {reason}")]
pub struct SearchError {
    pub param: String,
    pub reason: String,
}

fn error(param: &str, reason: impl Into<String>) -> SearchError {
    SearchError {
        param: param.to_owned(),
        reason: reason.into(),
    }
}

/// A parsed search request.
#[derive(Debug, Clone)]
pub struct Parsed {
    /// The query as a forward page would ask it; see `direction`.
    pub query: SearchQuery,
    /// Which way from the cursor's position the page lies.
    pub direction: Direction,
    /// Unknown parameters left out under lenient handling.
    pub ignored: Vec<String>,
    /// `_total=accurate|estimate`: count every match.
    pub total: bool,
    /// `_include=Type:param`: reference parameters of the matches whose targets to add.
    pub includes: Vec<&'static SearchParam>,
    /// `_revinclude=Type:param`: resources whose reference parameter points at a match.
    pub revincludes: Vec<&'static SearchParam>,
}

/// Which way a page lies from its cursor's position.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// The results after the position (`next` links, and the first page).
    Forward,
    /// The results before the position (`previous` links).
    Backward,
}

/// Parses `params` (name, value pairs as they came in the URL) for `resource_type`.
pub fn parse(
    resource_type: ResourceType,
    params: &[(String, String)],
    blind: &BlindIndex,
) -> Result<SearchQuery, SearchError> {
    parse_with(resource_type, params, blind, false).map(|parsed| parsed.query)
}

/// As [`parse`]; with `lenient` (FHIR `Prefer: handling=lenient`) parameters the type does not
/// have are left out instead of refused, and returned so the answer can say so. Malformed
/// values of known parameters are refused either way.
pub fn parse_with(
    resource_type: ResourceType,
    params: &[(String, String)],
    blind: &BlindIndex,
    lenient: bool,
) -> Result<Parsed, SearchError> {
    let mut ignored = Vec::new();
    let mut total = false;
    let mut cursor = None;
    let mut includes = Vec::new();
    let mut revincludes = Vec::new();
    let mut query = SearchQuery {
        resource_type,
        clauses: Vec::new(),
        order: Order::default(),
        after: None,
        limit: DEFAULT_COUNT,
    };
    for (name, value) in params {
        if let Some((head, child)) = name.split_once('.') {
            query
                .clauses
                .push(chain(resource_type, name, head, child, value, blind)?);
            continue;
        }
        let (code, modifier) = match name.split_once(':') {
            Some((code, modifier)) => (code, Some(modifier)),
            None => (name.as_str(), None),
        };
        match code {
            "_include" | "_revinclude" => {
                no_modifier(name, modifier)?;
                let param = reference_param(name, value)?;
                if code == "_include" {
                    if param.resource_type != resource_type {
                        return Err(error(
                            name,
                            format!("must name a reference parameter of {resource_type}"),
                        ));
                    }
                    includes.push(param);
                } else {
                    revincludes.push(param);
                }
            }
            "_total" => {
                no_modifier(name, modifier)?;
                total = match value.as_str() {
                    "none" => false,
                    // A count is exact and cheap enough here, so an estimate is exact too.
                    "estimate" | "accurate" => true,
                    _ => return Err(error(name, "takes none, estimate or accurate")),
                };
            }
            "_count" => {
                no_modifier(name, modifier)?;
                query.limit = value
                    .parse::<u64>()
                    .map_err(|_| error(name, "must be a whole number"))?
                    .min(MAX_COUNT);
            }
            "_cursor" => {
                no_modifier(name, modifier)?;
                cursor = Some(value.as_str());
            }
            "_sort" => {
                no_modifier(name, modifier)?;
                query.order = sort_order(resource_type, name, value)?;
            }
            "_id" => {
                no_modifier(name, modifier)?;
                query.clauses.push(Clause::Id(alternatives(value)));
            }
            "_lastUpdated" => {
                no_modifier(name, modifier)?;
                let any_of = alternatives(value)
                    .iter()
                    .map(|v| date_match(name, v))
                    .collect::<Result<Vec<_>, _>>()?;
                query.clauses.push(Clause::LastUpdated(any_of));
            }
            _ => match search_param(resource_type, code) {
                Some(param) => query
                    .clauses
                    .push(clause(param, name, modifier, value, blind)?),
                None if lenient => ignored.push(name.clone()),
                None => {
                    return Err(error(
                        name,
                        format!("{resource_type} has no search parameter of that name"),
                    ));
                }
            },
        }
    }
    let mut direction = Direction::Forward;
    if let Some(cursor) = cursor {
        let invalid = || {
            error(
                "_cursor",
                "is not a cursor this server issued for this search",
            )
        };
        let (cursor_direction, position) = decode_cursor(cursor).ok_or_else(invalid)?;
        // A cursor carries a sort value exactly when the search is sorted by one.
        if position
            .as_ref()
            .is_some_and(|p| p.value.is_some() == (query.order.key == SortKey::Id))
        {
            return Err(invalid());
        }
        direction = cursor_direction;
        query.after = position;
    }
    Ok(Parsed {
        query,
        direction,
        ignored,
        total,
        includes,
        revincludes,
    })
}

/// A chained parameter: `patient.identifier=…` or `patient:Patient.identifier=…`. One level.
fn chain(
    resource_type: ResourceType,
    name: &str,
    head: &str,
    child: &str,
    value: &str,
    blind: &BlindIndex,
) -> Result<Clause, SearchError> {
    let (code, explicit_target) = match head.split_once(':') {
        Some((code, target)) => (code, Some(target)),
        None => (head, None),
    };
    let param = search_param(resource_type, code)
        .filter(|p| p.kind == ParamKind::Reference)
        .ok_or_else(|| {
            error(
                name,
                format!("{resource_type} has no reference parameter {code} to chain from"),
            )
        })?;
    // Without an explicit type, a parameter named after a type (patient, location) points at it.
    let target_name = match explicit_target {
        Some(target) => target.to_owned(),
        None => {
            let mut chars = code.chars();
            chars
                .next()
                .map(|first| first.to_uppercase().chain(chars).collect())
                .unwrap_or_default()
        }
    };
    let target_type = ResourceType::parse(&target_name).map_err(|_| {
        error(
            name,
            format!("name the target type, e.g. {code}:Practitioner.identifier"),
        )
    })?;
    if child.contains('.') {
        return Err(error(
            name,
            "chains of more than one level are not supported",
        ));
    }
    let (child_code, modifier) = match child.split_once(':') {
        Some((c, m)) => (c, Some(m)),
        None => (child, None),
    };
    let child_param = search_param(target_type, child_code).ok_or_else(|| {
        error(
            name,
            format!("{target_type} has no search parameter {child_code}"),
        )
    })?;
    let inner = clause(child_param, name, modifier, value, blind)?;
    Ok(Clause::Chain {
        param: param.code,
        target_type,
        inner: Box::new(inner),
    })
}

/// `Type:param` (or `Type:param:Target`) naming a reference search parameter.
fn reference_param(name: &str, value: &str) -> Result<&'static SearchParam, SearchError> {
    let mut parts = value.split(':');
    let (Some(source), Some(code)) = (parts.next(), parts.next()) else {
        return Err(error(
            name,
            "must be Type:parameter, e.g. Immunization:patient",
        ));
    };
    let source =
        ResourceType::parse(source).map_err(|_| error(name, "names an unknown resource type"))?;
    search_param(source, code)
        .filter(|p| p.kind == ParamKind::Reference)
        .ok_or_else(|| {
            error(
                name,
                format!("{source} has no reference parameter of that name"),
            )
        })
}

fn no_modifier(name: &str, modifier: Option<&str>) -> Result<(), SearchError> {
    match modifier {
        None => Ok(()),
        Some(_) => Err(error(name, "takes no modifier")),
    }
}

/// Splits `a,b` into alternatives; `\,` is a literal comma.
fn alternatives(value: &str) -> Vec<String> {
    let mut out = vec![String::new()];
    let mut chars = value.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                if let (Some(next), Some(last)) = (chars.next(), out.last_mut()) {
                    last.push(next);
                }
            }
            ',' => out.push(String::new()),
            other => {
                if let Some(last) = out.last_mut() {
                    last.push(other);
                }
            }
        }
    }
    out
}

fn clause(
    param: &'static SearchParam,
    name: &str,
    modifier: Option<&str>,
    value: &str,
    blind: &BlindIndex,
) -> Result<Clause, SearchError> {
    let value = value.to_owned();
    let values = alternatives(&value);
    if values.iter().any(String::is_empty) {
        return Err(error(name, "has an empty value"));
    }
    if modifier == Some("missing") {
        let missing = match value.as_str() {
            "true" => true,
            "false" => false,
            _ => return Err(error(name, ":missing takes true or false")),
        };
        return Ok(Clause::Missing {
            param: param.code,
            table: IndexTable::of(param),
            missing,
        });
    }
    // No other modifier on plain parameters yet (:not, :above, :below, :text…).
    if let (Protection::Plain, Some(other)) = (param.protection, modifier) {
        return Err(unsupported_modifier(name, param, other));
    }
    match (param.protection, param.kind) {
        (Protection::Blind, kind) => {
            let key = blind.key(&param.purpose());
            let blind_err = |err: BlindQueryError| {
                error(
                    name,
                    format!(
                        "{err} ({} is PHI and indexed only as keyed hashes)",
                        param.code
                    ),
                )
            };
            let any_of = values
                .iter()
                .map(|v| match (kind, modifier) {
                    (ParamKind::String, None) => key.string_query(v).map_err(blind_err),
                    (ParamKind::String, Some("exact")) => Ok(key.exact_query(v)),
                    (ParamKind::Token, None) => {
                        let (system, code) = split_token(v);
                        let code = code.map(|c| blind_token_value(param, &c));
                        Ok(key.token_query(
                            system.as_ref().map(|s| s.as_deref().unwrap_or("")),
                            code.as_deref(),
                        ))
                    }
                    (ParamKind::Date, None) => {
                        let v = v.strip_prefix("eq").unwrap_or(v);
                        if v.starts_with(|c: char| c.is_ascii_alphabetic()) {
                            return Err(error(
                                name,
                                format!(
                                    "{} is PHI, stored only as year, year-month and day buckets; \
                                     only equality (YYYY, YYYY-MM, YYYY-MM-DD) can be searched, \
                                     not ranges such as gt or lt",
                                    param.code
                                ),
                            ));
                        }
                        key.date_query(v).map_err(blind_err)
                    }
                    (_, Some(other)) => Err(unsupported_modifier(name, param, other)),
                    (ParamKind::Reference, None) => {
                        Err(error(name, "blind references are not supported"))
                    }
                })
                .collect::<Result<Vec<_>, _>>()?;
            Ok(Clause::Blind {
                param: param.code,
                any_of,
            })
        }
        (Protection::Plain, ParamKind::Token) => {
            let any_of = values
                .iter()
                .map(|v| {
                    let (system, code) = split_token(v);
                    TokenMatch { system, code }
                })
                .collect();
            Ok(Clause::Token {
                param: param.code,
                any_of,
            })
        }
        (Protection::Plain, ParamKind::Reference) => {
            let any_of = values
                .iter()
                .map(|v| match v.split_once('/') {
                    Some((t, id)) if !id.contains('/') => Ok(ReferenceMatch {
                        target_type: Some(t.to_owned()),
                        target_id: id.to_owned(),
                    }),
                    None => Ok(ReferenceMatch {
                        target_type: None,
                        target_id: v.clone(),
                    }),
                    Some(_) => Err(error(name, "must be an id or Type/id")),
                })
                .collect::<Result<Vec<_>, _>>()?;
            Ok(Clause::Reference {
                param: param.code,
                any_of,
            })
        }
        (Protection::Plain, ParamKind::Date) => {
            let any_of = values
                .iter()
                .map(|v| date_match(name, v))
                .collect::<Result<Vec<_>, _>>()?;
            Ok(Clause::Date {
                param: param.code,
                any_of,
            })
        }
        (Protection::Plain, ParamKind::String) => Ok(Clause::String {
            param: param.code,
            any_of: values.iter().map(|v| fold(v)).collect(),
        }),
    }
}

fn unsupported_modifier(name: &str, param: &SearchParam, modifier: &str) -> SearchError {
    error(
        name,
        format!(
            "the modifier :{modifier} is not supported for {} ({} parameter)",
            param.code,
            param.kind.code()
        ),
    )
}

/// `system|code` → (Some(Some(system)), Some(code)); `|code` → (Some(None), …); `code` → (None,
/// …); `system|` → (…, None).
fn split_token(value: &str) -> (Option<Option<String>>, Option<String>) {
    match value.split_once('|') {
        Some((system, code)) => (
            Some((!system.is_empty()).then(|| system.to_owned())),
            (!code.is_empty()).then(|| code.to_owned()),
        ),
        None => (None, Some(value.to_owned())),
    }
}

fn date_match(name: &str, value: &str) -> Result<DateMatch, SearchError> {
    let (comparator, date) = match value.get(..2) {
        Some("eq") => (DateComparator::Eq, &value[2..]),
        Some("gt") => (DateComparator::Gt, &value[2..]),
        Some("ge") => (DateComparator::Ge, &value[2..]),
        Some("lt") => (DateComparator::Lt, &value[2..]),
        Some("le") => (DateComparator::Le, &value[2..]),
        Some(prefix) if prefix.chars().all(|c| c.is_ascii_lowercase()) => {
            return Err(error(
                name,
                format!("the prefix {prefix} is not supported (use eq, gt, ge, lt or le)"),
            ));
        }
        _ => (DateComparator::Eq, value),
    };
    let (low, high) = date_range(date).ok_or_else(|| {
        error(
            name,
            "is not a FHIR date or dateTime (YYYY, YYYY-MM, YYYY-MM-DD or a full dateTime with zone)",
        )
    })?;
    Ok(DateMatch {
        comparator,
        low,
        high,
    })
}

/// `_sort=[-]key`: one key, `_id`, `_lastUpdated` or a date parameter that is not blind.
fn sort_order(resource_type: ResourceType, name: &str, value: &str) -> Result<Order, SearchError> {
    if value.contains(',') {
        return Err(error(
            name,
            "takes one sort key (several are not supported)",
        ));
    }
    let (descending, key) = match value.strip_prefix('-') {
        Some(key) => (true, key),
        None => (false, value),
    };
    let key = match key {
        "_id" => SortKey::Id,
        "_lastUpdated" => SortKey::LastUpdated,
        _ => match search_param(resource_type, key) {
            Some(param) if param.kind == ParamKind::Date => {
                if param.protection == Protection::Blind {
                    return Err(error(
                        name,
                        format!(
                            "{key} is blind-indexed (it identifies patients), so results cannot \
                             be sorted by it"
                        ),
                    ));
                }
                if descending {
                    SortKey::DateHigh(param.code)
                } else {
                    SortKey::DateLow(param.code)
                }
            }
            Some(_) => {
                return Err(error(
                    name,
                    format!("sorting by {key} is not supported (only _id, _lastUpdated and dates)"),
                ));
            }
            None => {
                return Err(error(
                    name,
                    format!("{resource_type} has no search parameter {key} to sort by"),
                ));
            }
        },
    };
    Ok(Order { key, descending })
}

/// The opaque cursor of the page `direction` of `position`; without a position, the first page
/// (forward) or the last (backward). Those two are the links out of an empty page: every match
/// before (or after) its cursor is gone, so the way back is the search's first (or last) page.
pub fn encode_cursor(direction: Direction, position: Option<&Position>) -> String {
    let Some(position) = position else {
        return URL_SAFE_NO_PAD.encode(match direction {
            Direction::Forward => "start",
            Direction::Backward => "end",
        });
    };
    let word = match direction {
        Direction::Forward => "after",
        Direction::Backward => "before",
    };
    let value = position
        .value
        .map_or_else(|| "-".to_owned(), |v| v.unix_timestamp_nanos().to_string());
    URL_SAFE_NO_PAD.encode(format!("{word}:{value}:{}", position.id))
}

fn decode_cursor(cursor: &str) -> Option<(Direction, Option<Position>)> {
    let bytes = URL_SAFE_NO_PAD.decode(cursor).ok()?;
    let text = String::from_utf8(bytes).ok()?;
    match text.as_str() {
        "start" => return Some((Direction::Forward, None)),
        "end" => return Some((Direction::Backward, None)),
        _ => {}
    }
    let mut parts = text.splitn(3, ':');
    let direction = match parts.next()? {
        "after" => Direction::Forward,
        "before" => Direction::Backward,
        _ => return None,
    };
    let value = match parts.next()? {
        "-" => None,
        nanos => Some(time::OffsetDateTime::from_unix_timestamp_nanos(nanos.parse().ok()?).ok()?),
    };
    let id = parts.next()?;
    fhir_model::is_valid_id(id).then(|| {
        (
            direction,
            Some(Position {
                value,
                id: id.to_owned(),
            }),
        )
    })
}
