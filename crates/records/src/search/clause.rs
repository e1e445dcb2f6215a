//! One search parameter's value (and modifier) as a [`Clause`], by its type and classification.

use fhir_model::search::{ParamKind, Protection, SearchParam, date_range};
use phi_crypto::{BlindIndex, BlindQueryError, fold};
use time::OffsetDateTime;

use super::{SearchError, error};
use crate::index::{
    Clause, DateComparator, DateMatch, IndexTable, ReferenceMatch, StringMatch, TokenMatch,
    blind_token_value,
};

/// Splits `a,b` into alternatives; `\,` is a literal comma.
pub(super) fn alternatives(value: &str) -> Vec<String> {
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

/// The clause of `param` (named `name` in the request, with `modifier`) for `value`.
pub(super) fn clause(
    param: &'static SearchParam,
    name: &str,
    modifier: Option<&str>,
    value: &str,
    blind: &BlindIndex,
    now: OffsetDateTime,
) -> Result<Clause, SearchError> {
    let values = alternatives(value);
    if values.iter().any(String::is_empty) {
        return Err(error(name, "has an empty value"));
    }
    match (modifier, param.kind) {
        (Some("missing"), _) => {
            let missing = match value {
                "true" => true,
                "false" => false,
                _ => return Err(error(name, ":missing takes true or false")),
            };
            Ok(Clause::Missing {
                param: param.code,
                table: IndexTable::of(param),
                missing,
            })
        }
        // `:not` on a token: no value of the resource is any of those listed (R4: "the
        // search parameter returns all resources that do not match", those without one too).
        (Some("not"), ParamKind::Token) => Ok(Clause::Not(Box::new(clause(
            param, name, None, value, blind, now,
        )?))),
        _ => match param.protection {
            Protection::Blind => blind_clause(param, name, modifier, &values, blind),
            Protection::Plain => plain_clause(param, name, modifier, &values, now),
        },
    }
}

fn plain_clause(
    param: &'static SearchParam,
    name: &str,
    modifier: Option<&str>,
    values: &[String],
    now: OffsetDateTime,
) -> Result<Clause, SearchError> {
    let folded = || values.iter().map(|v| fold(v)).collect::<Vec<_>>();
    match (param.kind, modifier) {
        (ParamKind::Token, None) => Ok(Clause::Token {
            param: param.code,
            any_of: values
                .iter()
                .map(|v| {
                    let (system, code) = split_token(v);
                    TokenMatch { system, code }
                })
                .collect(),
        }),
        // The text of the coded values (CodeableConcept.text, Coding.display): any word of it
        // starting with the value, case and accents aside.
        (ParamKind::Token, Some("text")) => Ok(Clause::String {
            param: param.code,
            any_of: folded(),
            how: StringMatch::WordStart,
        }),
        (ParamKind::Reference, None) => Ok(Clause::Reference {
            param: param.code,
            any_of: values
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
                .collect::<Result<Vec<_>, _>>()?,
        }),
        (ParamKind::Date, None) => Ok(Clause::Date {
            param: param.code,
            any_of: values
                .iter()
                .map(|v| date_match(name, v, now))
                .collect::<Result<Vec<_>, _>>()?,
        }),
        (ParamKind::String, None | Some("contains")) => {
            let any_of = folded();
            if any_of.iter().any(String::is_empty) {
                return Err(error(name, "has no letters or digits to search for"));
            }
            Ok(Clause::String {
                param: param.code,
                any_of,
                how: if modifier.is_some() {
                    StringMatch::Contains
                } else {
                    StringMatch::Start
                },
            })
        }
        (_, Some(other)) => Err(unsupported_modifier(name, param, other)),
    }
}

fn blind_clause(
    param: &'static SearchParam,
    name: &str,
    modifier: Option<&str>,
    values: &[String],
    blind: &BlindIndex,
) -> Result<Clause, SearchError> {
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
        .map(|v| match (param.kind, modifier) {
            (ParamKind::String, None) => key.string_query(v).map_err(blind_err),
            (ParamKind::String, Some("exact")) => Ok(key.exact_query(v)),
            (ParamKind::String, Some("contains")) => Err(error(
                name,
                format!(
                    "the modifier :contains is not supported for {}: it is PHI, indexed only \
                     as keyed hashes of its starts, so search by the start of the value (3 \
                     letters or more)",
                    param.code
                ),
            )),
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
                            "{} is PHI, stored only as year, year-month and day buckets; only \
                             equality (YYYY, YYYY-MM, YYYY-MM-DD) can be searched, not \
                             prefixes such as gt, lt, ne or ap",
                            param.code
                        ),
                    ));
                }
                key.date_query(v).map_err(blind_err)
            }
            (_, Some(other)) => Err(unsupported_modifier(name, param, other)),
            (ParamKind::Reference, None) => Err(error(name, "blind references are not supported")),
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Clause::Blind {
        param: param.code,
        any_of,
    })
}

fn unsupported_modifier(name: &str, param: &SearchParam, modifier: &str) -> SearchError {
    let supported = match (param.kind, param.protection) {
        (ParamKind::String, Protection::Blind) => ":exact, :missing",
        (ParamKind::String, Protection::Plain) => ":contains, :missing",
        (ParamKind::Token, Protection::Blind) => ":not, :missing",
        (ParamKind::Token, Protection::Plain) => ":not, :text, :missing",
        (ParamKind::Date | ParamKind::Reference, _) => ":missing",
    };
    error(
        name,
        format!(
            "the modifier :{modifier} is not supported for {} ({} parameter; supported: \
             {supported})",
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

/// A date value with its optional R4 prefix (`ge2021-03`), for a plain date or `_lastUpdated`.
pub(super) fn date_match(
    name: &str,
    value: &str,
    now: OffsetDateTime,
) -> Result<DateMatch, SearchError> {
    let (comparator, date) = match value.get(..2) {
        Some(prefix) if prefix.bytes().all(|b| b.is_ascii_lowercase()) => {
            let comparator = DateComparator::from_prefix(prefix).ok_or_else(|| {
                error(
                    name,
                    format!(
                        "the prefix {prefix} is not a date prefix (eq, ne, gt, ge, lt, le, sa, \
                         eb or ap)"
                    ),
                )
            })?;
            (comparator, &value[2..])
        }
        _ => (DateComparator::Eq, value),
    };
    let (low, high) = date_range(date).ok_or_else(|| {
        error(
            name,
            "is not a FHIR date or dateTime (YYYY, YYYY-MM, YYYY-MM-DD, or \
             YYYY-MM-DDThh:mm[:ss[.fff]] with Z or ±hh:mm)",
        )
    })?;
    Ok(match comparator {
        DateComparator::Ap => DateMatch::approximately(low, high, now),
        comparator => DateMatch {
            comparator,
            low,
            high,
        },
    })
}
