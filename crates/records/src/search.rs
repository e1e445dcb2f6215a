//! Turning FHIR search parameters (`name=smi&birthdate=1970`) into a [`SearchQuery`].
//!
//! Errors name the parameter and the rule, never the value (values are often PHI).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use fhir_model::ResourceType;
use fhir_model::search::{ParamKind, Protection, SearchParam, search_param};
use phi_crypto::BlindIndex;
use time::OffsetDateTime;

use crate::index::{Clause, Order, Position, SearchQuery, SortKey};

mod clause;

use clause::{alternatives, clause, date_match};

pub const DEFAULT_COUNT: u64 = 20;
pub const MAX_COUNT: u64 = 1000;

/// The most parameters that filter (each one a condition every match must meet) in one search.
/// Real searches use a handful; each one more is another join for the database, and a hundred
/// repeated `family=` stalled PostgreSQL for seconds.
pub const MAX_CLAUSES: usize = 20;

/// The most values a search compares with, all parameters and their `a,b` alternatives
/// together; within what one statement may bind on either database.
pub const MAX_VALUES: usize = 1000;

/// The most `_include` and `_revinclude` parameters in one search.
pub const MAX_INCLUDES: usize = 10;

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
    now: OffsetDateTime,
) -> Result<SearchQuery, SearchError> {
    let rules = Rules {
        blind,
        now,
        lenient: false,
    };
    parse_with(resource_type, params, &rules).map(|parsed| parsed.query)
}

/// What parsing needs besides the parameters.
#[derive(Debug, Clone, Copy)]
pub struct Rules<'a> {
    /// The keys of the blind indexes, to turn identifying values into tokens.
    pub blind: &'a BlindIndex,
    /// The time `ap` (approximately) measures its margin from.
    pub now: OffsetDateTime,
    /// FHIR `Prefer: handling=lenient`: parameters the type does not have are left out instead
    /// of refused.
    pub lenient: bool,
}

/// As [`parse`]; with `rules.lenient` parameters the type does not have are left out instead
/// of refused, and returned so the answer can say so. Malformed values of known parameters are
/// refused either way.
pub fn parse_with(
    resource_type: ResourceType,
    params: &[(String, String)],
    rules: &Rules<'_>,
) -> Result<Parsed, SearchError> {
    let Rules {
        blind,
        now,
        lenient,
    } = *rules;
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
        if let Some(rest) = name.strip_prefix("_has:") {
            query
                .clauses
                .push(has(resource_type, name, rest, value, blind, now)?);
            continue;
        }
        if let Some((head, child)) = name.split_once('.') {
            query
                .clauses
                .push(chain(resource_type, name, head, child, value, blind, now)?);
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
            // Aidbox's name for `_total`, which clients built for it send (fhirpy's `count()`
            // asks `_count=0&_totalMethod=count`).
            "_totalMethod" => {
                no_modifier(name, modifier)?;
                total = match value.as_str() {
                    "none" => false,
                    "count" | "estimate" | "accurate" => true,
                    _ => return Err(error(name, "takes none, count, estimate or accurate")),
                };
            }
            "_count" => {
                no_modifier(name, modifier)?;
                query.limit = value
                    .parse::<u64>()
                    .map_err(|_| error(name, "must be a whole number"))?
                    .min(MAX_COUNT);
                // `_count=0` asks how many match, without any of them.
                if query.limit == 0 {
                    total = true;
                }
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
                    .map(|v| date_match(name, v, now))
                    .collect::<Result<Vec<_>, _>>()?;
                query.clauses.push(Clause::LastUpdated(any_of));
            }
            _ => match search_param(resource_type, code) {
                Some(param) => query
                    .clauses
                    .push(clause(param, name, modifier, value, blind, now)?),
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
    bounded(&mut query.clauses, includes.len() + revincludes.len())?;
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

/// Refuses a search past [`MAX_CLAUSES`], [`MAX_VALUES`] or [`MAX_INCLUDES`], counting the
/// parameters as given; then drops clauses that repeat an earlier one (`family=a&family=a`
/// asks nothing more than `family=a`).
fn bounded(clauses: &mut Vec<Clause>, includes: usize) -> Result<(), SearchError> {
    if clauses.len() > MAX_CLAUSES {
        return Err(error(
            "(all)",
            format!(
                "a search may have at most {MAX_CLAUSES} parameters that filter; this one has {}",
                clauses.len()
            ),
        ));
    }
    let values: usize = clauses.iter().map(Clause::values).sum();
    if values > MAX_VALUES {
        return Err(error(
            "(all)",
            format!(
                "a search may compare with at most {MAX_VALUES} values in all its parameters; \
                 this one has {values}"
            ),
        ));
    }
    if includes > MAX_INCLUDES {
        return Err(error(
            "_include",
            format!(
                "a search may have at most {MAX_INCLUDES} _include and _revinclude parameters; \
                 this one has {includes}"
            ),
        ));
    }
    let mut distinct: Vec<Clause> = Vec::with_capacity(clauses.len());
    for clause in clauses.drain(..) {
        if !distinct.contains(&clause) {
            distinct.push(clause);
        }
    }
    *clauses = distinct;
    Ok(())
}

/// A chained parameter: `patient.identifier=…` or `patient:Patient.identifier=…`. One level.
fn chain(
    resource_type: ResourceType,
    name: &str,
    head: &str,
    child: &str,
    value: &str,
    blind: &BlindIndex,
    now: OffsetDateTime,
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
    let inner = clause(child_param, name, modifier, value, blind, now)?;
    Ok(Clause::Chain {
        param: param.code,
        target_type,
        inner: Box::new(inner),
    })
}

/// Reverse chaining, one level: `_has:Immunization:patient:vaccine-code=…` (here `rest` is what
/// follows `_has:`) finds the resources some live Immunization's `patient` points at, among
/// Immunizations whose `vaccine-code` matches.
fn has(
    resource_type: ResourceType,
    name: &str,
    rest: &str,
    value: &str,
    blind: &BlindIndex,
    now: OffsetDateTime,
) -> Result<Clause, SearchError> {
    let shape = || {
        error(
            name,
            "must be _has:Type:reference-parameter:parameter, e.g. \
             _has:Immunization:patient:vaccine-code",
        )
    };
    let mut parts = rest.splitn(3, ':');
    let (Some(source), Some(code), Some(child)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(shape());
    };
    if child.starts_with("_has:") || child.contains('.') {
        return Err(error(
            name,
            "_has is supported one level deep, without chains inside",
        ));
    }
    let source_type =
        ResourceType::parse(source).map_err(|_| error(name, "names an unknown resource type"))?;
    let param = search_param(source_type, code)
        .filter(|p| p.kind == ParamKind::Reference)
        .ok_or_else(|| {
            error(
                name,
                format!("{source_type} has no reference parameter {code}"),
            )
        })?;
    // Cairn's reference parameters each point at the types they are named for or at several;
    // a parameter that can never point at this type would match nothing, which hides a typo.
    if !param_targets(param).contains(&resource_type) {
        return Err(error(
            name,
            format!("{source_type}.{code} does not refer to {resource_type}"),
        ));
    }
    let (child_code, modifier) = match child.split_once(':') {
        Some((c, m)) => (c, Some(m)),
        None => (child, None),
    };
    let child_param = search_param(source_type, child_code).ok_or_else(|| {
        error(
            name,
            format!("{source_type} has no search parameter {child_code}"),
        )
    })?;
    let inner = clause(child_param, name, modifier, value, blind, now)?;
    Ok(Clause::Has {
        source_type,
        param: param.code,
        inner: Box::new(inner),
    })
}

/// The types a reference parameter may point at.
fn param_targets(param: &SearchParam) -> Vec<ResourceType> {
    param
        .targets
        .iter()
        .filter_map(|t| ResourceType::parse(t).ok())
        .collect()
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

#[cfg(test)]
mod tests;
