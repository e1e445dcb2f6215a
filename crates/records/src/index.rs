//! Search index rows (what the store keeps per resource) and search queries (what the core asks
//! the store). Both carry only blind tokens for identifying values, and plain values for the
//! parameters classified as non-identifying in `fhir_model::search`.

use std::collections::BTreeSet;

use fhir_model::ResourceType;
use fhir_model::search::{IndexValue, Protection, SearchParam, search_params};
use phi_crypto::{BlindIndex, BlindToken, Phi, fold, normalize_telecom};
use time::OffsetDateTime;

/// The index rows of one resource version.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IndexRows {
    pub blind: Vec<BlindRow>,
    pub tokens: Vec<TokenRow>,
    pub references: Vec<ReferenceRow>,
    pub dates: Vec<DateRow>,
    pub strings: Vec<StringRow>,
}

/// A keyed-hash token of an identifying value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlindRow {
    pub param: &'static str,
    pub token: BlindToken,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRow {
    pub param: &'static str,
    pub system: Option<String>,
    pub code: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReferenceRow {
    pub param: &'static str,
    pub target_type: String,
    pub target_id: String,
}

/// A date of service as the half-open instant range it covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DateRow {
    pub param: &'static str,
    pub low: OffsetDateTime,
    pub high: OffsetDateTime,
}

/// A non-identifying string, folded (lower case, no accents) for starts-with search.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StringRow {
    pub param: &'static str,
    pub folded: String,
}

/// The index rows of `resource`, per its type's search parameters and their classification.
pub fn index_rows(resource: &fhir_model::Resource, blind: &BlindIndex) -> IndexRows {
    let mut rows = IndexRows::default();
    for param in search_params(resource.resource_type()) {
        let values = param.values(resource);
        if values.is_empty() {
            continue;
        }
        match param.protection {
            Protection::Blind => {
                let key = blind.key(&param.purpose());
                let mut tokens = BTreeSet::new();
                for value in values {
                    tokens.extend(match value {
                        IndexValue::Text(text) => key.string_terms(&Phi::new(text)),
                        IndexValue::Token { system, code } => {
                            let code = blind_token_value(param, &code);
                            key.token_terms(system.as_deref(), &Phi::new(code))
                        }
                        IndexValue::Date { text, .. } => key.date_terms(&Phi::new(text)),
                        // References are ids, never classified blind; nothing to hash.
                        IndexValue::Reference { .. } => BTreeSet::new(),
                    });
                }
                rows.blind.extend(tokens.into_iter().map(|token| BlindRow {
                    param: param.code,
                    token,
                }));
            }
            Protection::Plain => {
                for value in values {
                    plain_row(param, value, &mut rows);
                }
            }
        }
    }
    rows
}

fn plain_row(param: &'static SearchParam, value: IndexValue, rows: &mut IndexRows) {
    match value {
        IndexValue::Text(text) => rows.strings.push(StringRow {
            param: param.code,
            folded: fold(&text),
        }),
        IndexValue::Token { system, code } => rows.tokens.push(TokenRow {
            param: param.code,
            system,
            code,
        }),
        IndexValue::Date { low, high, .. } => rows.dates.push(DateRow {
            param: param.code,
            low,
            high,
        }),
        IndexValue::Reference { target_type, id } => rows.references.push(ReferenceRow {
            param: param.code,
            target_type,
            target_id: id,
        }),
    }
}

/// Token values of blind parameters are normalized the same way when indexed and queried.
pub(crate) fn blind_token_value(param: &SearchParam, value: &str) -> String {
    if param.code == "telecom" {
        normalize_telecom(value)
    } else {
        value.trim().to_owned()
    }
}

/// A search the store answers: resources of one type matching every clause.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchQuery {
    pub resource_type: ResourceType,
    /// Every clause must hold (FHIR: repeated parameters are AND).
    pub clauses: Vec<Clause>,
    /// The order of the results.
    pub order: Order,
    /// Only resources strictly after this position in `order` (keyset paging).
    pub after: Option<Position>,
    pub limit: u64,
}

/// The order of search results: by a sort value, ties by id, both in one direction, so that
/// flipping `descending` gives exactly the reverse order (which is how a previous page is
/// found).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Order {
    pub key: SortKey,
    pub descending: bool,
}

/// What results are sorted by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SortKey {
    /// By id alone (the default: it needs no sort value).
    #[default]
    Id,
    /// When the current version was stored.
    LastUpdated,
    /// The earliest start of a plain date parameter's values (FHIR: an ascending sort uses
    /// the lowest value). A resource without a value sorts after every dated one.
    DateLow(&'static str),
    /// The latest end of a plain date parameter's values (FHIR: a descending sort uses the
    /// highest value). A resource without a value sorts after every dated one, descending.
    DateHigh(&'static str),
}

impl SortKey {
    /// The sort value of a resource without a value for a date key: it puts that resource
    /// last in the key's natural direction.
    pub fn missing_value(self) -> Option<OffsetDateTime> {
        match self {
            Self::DateLow(_) => Some(time::macros::datetime!(9999-12-31 23:59:59 UTC)),
            Self::DateHigh(_) => Some(time::macros::datetime!(0001-01-01 00:00:00 UTC)),
            Self::Id | Self::LastUpdated => None,
        }
    }
}

/// A place in an [`Order`]: a resource's sort value (none when sorted by id) and its id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Position {
    pub value: Option<OffsetDateTime>,
    pub id: String,
}

impl Order {
    /// Whether a resource with sort value `value` and id `id` comes strictly after `position`.
    pub fn is_after(&self, value: Option<OffsetDateTime>, id: &str, position: &Position) -> bool {
        self.compare((value, id), (position.value, &position.id))
            .is_gt()
    }

    /// Compares two resources by (sort value, id) in this order.
    pub fn compare(
        &self,
        a: (Option<OffsetDateTime>, &str),
        b: (Option<OffsetDateTime>, &str),
    ) -> std::cmp::Ordering {
        let ordering = a.0.cmp(&b.0).then_with(|| a.1.cmp(b.1));
        if self.descending {
            ordering.reverse()
        } else {
            ordering
        }
    }

    /// The same key, the other way.
    pub fn reversed(self) -> Self {
        Self {
            key: self.key,
            descending: !self.descending,
        }
    }
}

/// One parameter of a search; each lists alternatives, any of which may match (FHIR: `a,b`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Clause {
    Id(Vec<String>),
    /// The resource is in this compartment (its data key's owner, `Patient/{id}`): how a
    /// caller confined to one patient searches.
    Compartment(String),
    Blind {
        param: &'static str,
        any_of: Vec<BlindToken>,
    },
    Token {
        param: &'static str,
        any_of: Vec<TokenMatch>,
    },
    Reference {
        param: &'static str,
        any_of: Vec<ReferenceMatch>,
    },
    Date {
        param: &'static str,
        any_of: Vec<DateMatch>,
    },
    /// Starts-with on folded text.
    String {
        param: &'static str,
        any_of: Vec<String>,
    },
    /// `_lastUpdated`: the resource's current version's time.
    LastUpdated(Vec<DateMatch>),
    /// A chained parameter (`patient.identifier=…`): some `param` reference points at a live
    /// `target_type` resource that meets `inner`.
    Chain {
        param: &'static str,
        target_type: ResourceType,
        inner: Box<Clause>,
    },
    /// `:missing=true` (no value at all for the parameter) or `:missing=false` (some value).
    Missing {
        param: &'static str,
        table: IndexTable,
        missing: bool,
    },
}

/// Which index table holds a parameter's rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IndexTable {
    Blind,
    Token,
    Reference,
    Date,
    String,
}

impl IndexTable {
    pub fn of(param: &SearchParam) -> Self {
        use fhir_model::search::ParamKind;
        match (param.protection, param.kind) {
            (Protection::Blind, _) => Self::Blind,
            (Protection::Plain, ParamKind::Token) => Self::Token,
            (Protection::Plain, ParamKind::Reference) => Self::Reference,
            (Protection::Plain, ParamKind::Date) => Self::Date,
            (Protection::Plain, ParamKind::String) => Self::String,
        }
    }
}

/// `system|code`, `|code` (no system), `code` (any system), `system|` (any code).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenMatch {
    /// `None`: any system; `Some(None)`: no system; `Some(Some(s))`: that system.
    pub system: Option<Option<String>>,
    pub code: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReferenceMatch {
    /// `None` when the query gave a bare id.
    pub target_type: Option<String>,
    pub target_id: String,
}

/// A comparison of the stored range against the query's range `[low, high)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DateMatch {
    pub comparator: DateComparator,
    pub low: OffsetDateTime,
    pub high: OffsetDateTime,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DateComparator {
    /// The stored range lies within the query's.
    Eq,
    /// The stored range reaches past the query's end.
    Gt,
    /// The stored range reaches past the query's start.
    Ge,
    /// The stored range starts before the query's start.
    Lt,
    /// The stored range starts before the query's end.
    Le,
}

impl DateMatch {
    /// Whether an instant (a range of one microsecond) matches.
    pub fn matches_instant(&self, at: OffsetDateTime) -> bool {
        self.matches(at, at + time::Duration::MICROSECOND)
    }

    /// Whether a stored range `[low, high)` matches.
    pub fn matches(&self, low: OffsetDateTime, high: OffsetDateTime) -> bool {
        match self.comparator {
            DateComparator::Eq => low >= self.low && high <= self.high,
            DateComparator::Gt => high > self.high,
            DateComparator::Ge => high > self.low,
            DateComparator::Lt => low < self.low,
            DateComparator::Le => low < self.high,
        }
    }
}

impl SearchQuery {
    /// The clauses in a canonical byte form, independent of their order and of how the
    /// alternatives were listed: equal criteria give equal bytes. Carries only blind tokens and
    /// plain values, never PHI.
    pub fn canonical(&self) -> Vec<u8> {
        fn hex(bytes: &[u8]) -> String {
            bytes.iter().map(|b| format!("{b:02x}")).collect()
        }
        let mut clauses: Vec<String> = self
            .clauses
            .iter()
            .map(|clause| {
                let mut parts: Vec<String> = match clause {
                    Clause::Id(ids) => ids.clone(),
                    Clause::Compartment(owner) => vec![owner.clone()],
                    Clause::Blind { any_of, .. } => any_of.iter().map(|t| hex(&t.0)).collect(),
                    Clause::Token { any_of, .. } => any_of
                        .iter()
                        .map(|m| format!("{:?}|{:?}", m.system, m.code))
                        .collect(),
                    Clause::Reference { any_of, .. } => any_of
                        .iter()
                        .map(|m| format!("{:?}/{}", m.target_type, m.target_id))
                        .collect(),
                    Clause::Date { any_of, .. } | Clause::LastUpdated(any_of) => any_of
                        .iter()
                        .map(|m| {
                            format!(
                                "{:?}:{}:{}",
                                m.comparator,
                                m.low.unix_timestamp_nanos(),
                                m.high.unix_timestamp_nanos()
                            )
                        })
                        .collect(),
                    Clause::String { any_of, .. } => any_of.clone(),
                    Clause::Missing { missing, .. } => vec![missing.to_string()],
                    Clause::Chain {
                        target_type, inner, ..
                    } => {
                        let inner = SearchQuery {
                            resource_type: *target_type,
                            clauses: vec![(**inner).clone()],
                            order: Order::default(),
                            after: None,
                            limit: 0,
                        };
                        vec![format!("{target_type}:{}", hex(&inner.canonical()))]
                    }
                };
                parts.sort();
                parts.dedup();
                let param = match clause {
                    Clause::Id(_) => "_id",
                    Clause::Compartment(_) => "_compartment",
                    Clause::LastUpdated(_) => "_lastUpdated",
                    Clause::Missing { param, .. } | Clause::Chain { param, .. } => param,
                    Clause::Blind { param, .. }
                    | Clause::Token { param, .. }
                    | Clause::Reference { param, .. }
                    | Clause::Date { param, .. }
                    | Clause::String { param, .. } => param,
                };
                format!("{param}={:?}", parts)
            })
            .collect();
        clauses.sort();
        clauses.dedup();
        clauses.join("&").into_bytes()
    }
}
