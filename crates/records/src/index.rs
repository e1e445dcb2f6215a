//! Search index rows (what the store keeps per resource) and search queries (what the core asks
//! the store). Both carry only blind tokens for identifying values, and plain values for the
//! parameters classified as non-identifying in `fhir_model::search`.

use std::collections::BTreeSet;

use fhir_model::ResourceType;
use fhir_model::search::{IndexValue, Protection, SearchParam, search_params};
use phi_crypto::{BlindIndex, BlindToken, Phi, fold, normalize_telecom};
use time::OffsetDateTime;

/// The generation of the rules that turn a resource into index rows. A store whose rows were
/// made by an older generation gives wrong answers until they are made anew
/// ([`crate::Records::reindex`], which the server runs before it answers).
///
/// 1. The first rules.
/// 2. Dates as UTC ranges as wide as their precision; `family`, `given` and
///    `address-postalcode` match where the value starts, not any word; `lot-number` is a
///    string; a coded value's text is kept for `:text`.
/// 3. `family` and `given` hashed with `name`'s key, and `name` rows only for the terms they
///    lack (a name search looks in all three): 15 fewer rows for a typical Patient.
pub const INDEX_GENERATION: u32 = 3;

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
                        IndexValue::Text(text) => {
                            key.string_terms(&Phi::new(text), param.matches_words())
                        }
                        IndexValue::Token { system, code } => {
                            let code = blind_token_value(param, &code);
                            key.token_terms(system.as_deref(), &Phi::new(code))
                        }
                        IndexValue::Date { text, .. } => key.date_terms(&Phi::new(text)),
                        // References are ids, never classified blind; nothing to hash. A
                        // coded value's text is searched only on plain parameters.
                        IndexValue::Reference { .. } | IndexValue::TokenText(_) => BTreeSet::new(),
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
    drop_terms_kept_elsewhere(resource.resource_type(), &mut rows.blind);
    rows
}

/// Drops a parameter's blind rows whose term is already a row of a parameter its searches
/// also look in (`name`'s terms that are `family`'s or `given`'s): the search finds them
/// there, and each row costs the database two index entries on every write.
fn drop_terms_kept_elsewhere(resource_type: ResourceType, blind: &mut Vec<BlindRow>) {
    for param in search_params(resource_type).filter(|p| !p.also_searches().is_empty()) {
        let elsewhere: BTreeSet<BlindToken> = blind
            .iter()
            .filter(|row| param.also_searches().contains(&row.param))
            .map(|row| row.token)
            .collect();
        if !elsewhere.is_empty() {
            blind.retain(|row| row.param != param.code || !elsewhere.contains(&row.token));
        }
    }
}

/// The parameters whose blind rows hold the terms a search of `param` looks for: the
/// parameter itself, then those it also searches (`name`: `family`, `given`).
pub fn blind_row_params(resource_type: ResourceType, param: &'static str) -> Vec<&'static str> {
    let mut params = vec![param];
    if let Some(found) = fhir_model::search::search_param(resource_type, param) {
        params.extend(found.also_searches());
    }
    params
}

fn plain_row(param: &'static SearchParam, value: IndexValue, rows: &mut IndexRows) {
    match value {
        // A token parameter's text lives with the strings, under the parameter's name: only
        // `:text` looks for it there.
        IndexValue::Text(text) | IndexValue::TokenText(text) => rows.strings.push(StringRow {
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
    /// Folded text, matched as `how` says.
    String {
        param: &'static str,
        any_of: Vec<String>,
        how: StringMatch,
    },
    /// The inner clause does not hold (`:not`): resources without any matching value,
    /// including those without a value at all.
    Not(Box<Clause>),
    /// Reverse chaining (`_has:Immunization:patient:vaccine-code=…`): some live `source_type`
    /// resource whose reference parameter `param` points at this one meets `inner`.
    Has {
        source_type: ResourceType,
        param: &'static str,
        inner: Box<Clause>,
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

impl Clause {
    /// How many values the clause compares with: its alternatives, through `:not`, `_has` and
    /// chains.
    pub fn values(&self) -> usize {
        match self {
            Self::Id(any_of) => any_of.len(),
            Self::Compartment(_) | Self::Missing { .. } => 1,
            Self::Blind { any_of, .. } => any_of.len(),
            Self::Token { any_of, .. } => any_of.len(),
            Self::Reference { any_of, .. } => any_of.len(),
            Self::Date { any_of, .. } | Self::LastUpdated(any_of) => any_of.len(),
            Self::String { any_of, .. } => any_of.len(),
            Self::Not(inner) | Self::Has { inner, .. } | Self::Chain { inner, .. } => {
                inner.values()
            }
        }
    }
}

/// How folded text is matched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StringMatch {
    /// The value starts with the text (R4's default for string parameters).
    Start,
    /// The value contains the text anywhere (`:contains`).
    Contains,
    /// Some word of the value starts with the text (a token's `:text`).
    WordStart,
}

impl StringMatch {
    /// Whether folded `value` matches folded `text`.
    pub fn matches(self, value: &str, text: &str) -> bool {
        match self {
            Self::Start => value.starts_with(text),
            Self::Contains => value.contains(text),
            Self::WordStart => {
                value.starts_with(text)
                    || value
                        .match_indices(text)
                        .any(|(at, _)| value[..at].ends_with(' '))
            }
        }
    }
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

/// A comparison of a stored range `[low, high)` with the query's range, by R4's rules for date
/// prefixes (search.html §3.1.1.4.5): `eq` the query's range contains the stored one, `ne` it
/// does not, `gt`/`lt` the stored range reaches past the query's end/start, `ge`/`le` those or
/// `eq`, `sa`/`eb` the stored range starts after/ends before the query's, `ap` the ranges
/// overlap once the query's is widened (see [`DateMatch::approximately`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DateMatch {
    pub comparator: DateComparator,
    pub low: OffsetDateTime,
    pub high: OffsetDateTime,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DateComparator {
    Eq,
    Ne,
    Gt,
    Ge,
    Lt,
    Le,
    Sa,
    Eb,
    /// The stored range overlaps the query's range (already widened).
    Ap,
}

impl DateComparator {
    /// The comparator of an R4 date prefix.
    pub fn from_prefix(prefix: &str) -> Option<Self> {
        Some(match prefix {
            "eq" => Self::Eq,
            "ne" => Self::Ne,
            "gt" => Self::Gt,
            "ge" => Self::Ge,
            "lt" => Self::Lt,
            "le" => Self::Le,
            "sa" => Self::Sa,
            "eb" => Self::Eb,
            "ap" => Self::Ap,
            _ => return None,
        })
    }
}

/// Which end of a stored range a [`DateBound`] compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeEnd {
    /// The first instant in the range.
    Low,
    /// The first instant after the range.
    High,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BoundOp {
    Lt,
    Le,
    Gt,
    Ge,
}

/// One comparison of an end of the stored range with an instant: `low >= 2021-03-01T00:00Z`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DateBound {
    pub end: RangeEnd,
    pub op: BoundOp,
    pub at: OffsetDateTime,
}

impl DateBound {
    fn new(end: RangeEnd, op: BoundOp, at: OffsetDateTime) -> Self {
        Self { end, op, at }
    }

    /// Whether the stored range `[low, high)` meets the bound.
    pub fn holds(&self, low: OffsetDateTime, high: OffsetDateTime) -> bool {
        let value = match self.end {
            RangeEnd::Low => low,
            RangeEnd::High => high,
        };
        match self.op {
            BoundOp::Lt => value < self.at,
            BoundOp::Le => value <= self.at,
            BoundOp::Gt => value > self.at,
            BoundOp::Ge => value >= self.at,
        }
    }

    /// The same bound on a stored instant `at` (the range `[at, at + 1 µs)`), as a comparison
    /// of `at` itself: `high > x` holds exactly when `at > x - 1 µs`.
    pub fn on_instant(&self) -> (BoundOp, OffsetDateTime) {
        match self.end {
            RangeEnd::Low => (self.op, self.at),
            RangeEnd::High => (self.op, self.at - time::Duration::MICROSECOND),
        }
    }
}

impl DateMatch {
    /// `ap`: R4 leaves "approximately" to the server; Cairn widens the query's range by a tenth
    /// of the time between it and `now` on each side (at least a day, as HAPI FHIR does), so
    /// `ap2020-06` matches a few weeks around June 2020 today and a few days around last week.
    pub fn approximately(low: OffsetDateTime, high: OffsetDateTime, now: OffsetDateTime) -> Self {
        let distance = if now < low {
            low - now
        } else if now > high {
            now - high
        } else {
            time::Duration::ZERO
        };
        let margin = (distance / 10_i32).max(time::Duration::DAY);
        Self {
            comparator: DateComparator::Ap,
            low: low - margin,
            high: high + margin,
        }
    }

    /// The condition on a stored range: any of the lists holds when each of its bounds does.
    /// The in-memory store evaluates it and the SQL store writes it, so they cannot disagree.
    pub fn condition(&self) -> Vec<Vec<DateBound>> {
        use BoundOp::{Ge, Gt, Le, Lt};
        use RangeEnd::{High, Low};
        let (ql, qh) = (self.low, self.high);
        let within = || vec![DateBound::new(Low, Ge, ql), DateBound::new(High, Le, qh)];
        match self.comparator {
            DateComparator::Eq => vec![within()],
            DateComparator::Ne => vec![
                vec![DateBound::new(Low, Lt, ql)],
                vec![DateBound::new(High, Gt, qh)],
            ],
            DateComparator::Gt => vec![vec![DateBound::new(High, Gt, qh)]],
            DateComparator::Lt => vec![vec![DateBound::new(Low, Lt, ql)]],
            DateComparator::Ge => vec![vec![DateBound::new(High, Gt, qh)], within()],
            DateComparator::Le => vec![vec![DateBound::new(Low, Lt, ql)], within()],
            DateComparator::Sa => vec![vec![DateBound::new(Low, Ge, qh)]],
            DateComparator::Eb => vec![vec![DateBound::new(High, Le, ql)]],
            DateComparator::Ap => vec![vec![
                DateBound::new(Low, Lt, qh),
                DateBound::new(High, Gt, ql),
            ]],
        }
    }

    /// Whether an instant (a range of one microsecond) matches.
    pub fn matches_instant(&self, at: OffsetDateTime) -> bool {
        self.matches(at, at + time::Duration::MICROSECOND)
    }

    /// Whether a stored range `[low, high)` matches.
    pub fn matches(&self, low: OffsetDateTime, high: OffsetDateTime) -> bool {
        self.condition()
            .iter()
            .any(|all| all.iter().all(|bound| bound.holds(low, high)))
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
                    Clause::String { any_of, how, .. } => {
                        any_of.iter().map(|v| format!("{how:?}:{v}")).collect()
                    }
                    Clause::Missing { missing, .. } => vec![missing.to_string()],
                    Clause::Chain {
                        target_type, inner, ..
                    } => vec![format!(
                        "{target_type}:{}",
                        hex(&inner_canonical(*target_type, inner))
                    )],
                    Clause::Has {
                        source_type,
                        param,
                        inner,
                    } => vec![format!(
                        "{source_type}:{param}:{}",
                        hex(&inner_canonical(*source_type, inner))
                    )],
                    Clause::Not(inner) => {
                        vec![hex(&inner_canonical(self.resource_type, inner))]
                    }
                };
                parts.sort();
                parts.dedup();
                let param = match clause {
                    Clause::Not(_) => "_not",
                    Clause::Has { .. } => "_has",
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

/// The canonical bytes of one clause asked of `resource_type`.
fn inner_canonical(resource_type: ResourceType, clause: &Clause) -> Vec<u8> {
    SearchQuery {
        resource_type,
        clauses: vec![clause.clone()],
        order: Order::default(),
        after: None,
        limit: 0,
    }
    .canonical()
}
