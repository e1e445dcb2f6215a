//! Search statements: a [`SearchQuery`] as one SQL `SELECT` over the resource heads and the
//! index tables (or a `COUNT`), on either backend.

use fhir_model::ResourceType;
use phi_crypto::BlindToken;
use records::index::{
    BoundOp, Clause, DateBound, DateMatch, RangeEnd, ReferenceMatch, SearchQuery, SortKey,
    StringMatch, TokenMatch, blind_row_params,
};
use sea_orm::sea_query::{
    Cond, Expr, ExprTrait, Func, LikeExpr, Order, Query, SelectStatement, UnionType,
};

use crate::connect::Backend;
use crate::instants::instant;
use crate::keys::join_owner_key;
use crate::tables::{
    RESOURCE, RESOURCE_VERSION, SEARCH_BLIND, SEARCH_DATE, SEARCH_REFERENCE, SEARCH_STRING,
    SEARCH_TOKEN, col, name,
};

/// `SELECT v.*, m.sort_value, dk.* FROM (the page's heads: type, id, version, sort value) m
/// JOIN resource_version v (their versions) LEFT JOIN data_key dk (their keys) ORDER BY …`.
///
/// The page is chosen in a subquery and only then joined to the bodies and keys: its `LIMIT`
/// keeps PostgreSQL from flattening the joins into one search over four relations, which it
/// re-plans on every execution when the best plan depends on how common the searched values are
/// (custom plans). Planning that was 0.48 ms of a 0.55 ms identifier search; the split plans in
/// 0.27 ms, and the page is still read in one statement and one snapshot. A single-token search
/// does better still (see [`blind_tokens_page`]).
pub(crate) fn search_statement(query: &SearchQuery, backend: Backend) -> SelectStatement {
    let page = blind_tokens_page(query).unwrap_or_else(|| resource_page(query, backend));
    let direction = direction(query);
    let mut select = Query::select();
    select
        .column((name("v"), sea_orm::sea_query::Asterisk))
        .from_subquery(page, name("m"))
        .inner_join(
            aliased(RESOURCE_VERSION, "v"),
            same_resource("v", "m").add(col("v", "version").equals((name("m"), name("version")))),
        );
    if sort_value(query, backend).is_some() {
        select.column((name("m"), name(SORT_VALUE)));
        select.order_by((name("m"), name(SORT_VALUE)), direction.clone());
    }
    select.order_by((name("m"), name("id")), direction);
    join_owner_key(&mut select, "v");
    select
}

/// The blind tokens of a search made only of single-token blind clauses (`identifier=…`,
/// `family=kow&given=ama`, `name=smi`), each with the parameters whose rows hold it; `None`
/// for any other search.
fn blind_tokens(query: &SearchQuery) -> Option<Vec<(Vec<&'static str>, Vec<u8>)>> {
    query
        .clauses
        .iter()
        .map(|clause| match clause {
            Clause::Blind { param, any_of } if any_of.len() == 1 => Some((
                blind_row_params(query.resource_type, param),
                any_of[0].0.to_vec(),
            )),
            _ => None,
        })
        .collect::<Option<Vec<_>>>()
        .filter(|tokens| !tokens.is_empty())
}

/// `FROM search_blind i0 JOIN search_blind i1 ON (same resource) …` with each alias held to
/// one clause's (parameter, token): the resources holding every token.
///
/// The index `(resource_type, token, id, param)` gives each token's resources in id order
/// (whichever of its parameters' rows hold it: `name` looks in `family` and `given` too), so
/// the join is a merge (or a probe per row) of ordered lists that stops at the page's end:
/// `given=ama&family=kow` at 120,000 patients read 450 index entries for a page of 21 where
/// an intersection of the whole lists read 17,500, and 1.3 ms against 200 ms. One plan is
/// right for every value, however common (a single token is the same plan with no join).
fn blind_join(
    select: &mut SelectStatement,
    query: &SearchQuery,
    tokens: Vec<(Vec<&'static str>, Vec<u8>)>,
) {
    select.from_as(name(SEARCH_BLIND), name("i0"));
    for (n, (params, token)) in tokens.into_iter().enumerate() {
        let alias = format!("i{n}");
        if n > 0 {
            select.inner_join(aliased(SEARCH_BLIND, &alias), same_resource(&alias, "i0"));
        }
        select
            .and_where(col(&alias, "resource_type").eq(query.resource_type.as_str()))
            .and_where(col(&alias, "token").eq(token))
            .and_where(param_is(&alias, &params));
    }
}

/// The page of a search made only of single-token blind clauses, in id order: `SELECT
/// i0.resource_type, i0.id, r.version FROM <blind_join> JOIN resource r WHERE i0.id > after
/// ORDER BY i0.id LIMIT n`. `None` for any other search.
fn blind_tokens_page(query: &SearchQuery) -> Option<SelectStatement> {
    if query.order.key != SortKey::Id {
        return None;
    }
    let tokens = blind_tokens(query)?;
    let mut page = Query::select();
    page.columns([
        (name("i0"), name("resource_type")),
        (name("i0"), name("id")),
        (name("r"), name("version")),
    ]);
    blind_join(&mut page, query, tokens);
    page.inner_join(aliased(RESOURCE, "r"), same_resource("r", "i0"))
        // Index rows exist only for current, live versions; this keeps a deleted resource out
        // should that ever not hold.
        .and_where(col("r", "deleted").eq(false))
        .limit(query.limit);
    if let Some(after) = &query.after {
        page.and_where(beyond(query, col("i0", "id"), after.id.clone().into()));
    }
    page.order_by((name("i0"), name("id")), direction(query));
    Some(page)
}

/// The page of any search: the matching heads of `resource`, in the query's order after its
/// cursor, every clause an `EXISTS` over its index table.
fn resource_page(query: &SearchQuery, backend: Backend) -> SelectStatement {
    let mut page = Query::select();
    page.columns([
        (name("r"), name("resource_type")),
        (name("r"), name("id")),
        (name("r"), name("version")),
    ])
    .limit(query.limit);
    let direction = direction(query);
    let beyond = |column, value| beyond(query, column, value);
    let sorted = sort_value(query, backend);
    match &sorted {
        None => {
            if let Some(after) = &query.after {
                page.and_where(beyond(col("r", "id"), after.id.clone().into()));
            }
        }
        Some(value) => {
            page.expr_as(value.clone(), name(SORT_VALUE));
            page.order_by_expr(value.clone(), direction.clone());
            if let Some(after) = &query.after {
                let at = optional_instant(backend, after.value);
                page.cond_where(
                    Cond::any().add(beyond(value.clone(), at.clone())).add(
                        Cond::all()
                            .add(value.clone().eq(at))
                            .add(beyond(col("r", "id"), after.id.clone().into())),
                    ),
                );
            }
        }
    }
    page.order_by((name("r"), name("id")), direction);
    matching(&mut page, query, backend);
    page
}

/// `column` strictly past `value` in the query's direction: `>` ascending, `<` descending.
fn beyond(query: &SearchQuery, column: Expr, value: sea_orm::Value) -> Expr {
    if query.order.descending {
        column.lt(value)
    } else {
        column.gt(value)
    }
}

/// `table AS alias`, to join.
fn aliased(table: &str, alias: &str) -> sea_orm::sea_query::TableRef {
    sea_orm::sea_query::TableRef::Table(name(table).into(), Some(name(alias).into()))
}

/// The rows aliased `a` and `b` are of the same resource: equal `(resource_type, id)`.
fn same_resource(a: &str, b: &str) -> Cond {
    Cond::all()
        .add(col(a, "resource_type").equals((name(b), name("resource_type"))))
        .add(col(a, "id").equals((name(b), name("id"))))
}

/// The SQL order of the query's order.
fn direction(query: &SearchQuery) -> Order {
    if query.order.descending {
        Order::Desc
    } else {
        Order::Asc
    }
}

/// The column alias of a search row's sort value.
pub(crate) const SORT_VALUE: &str = "sort_value";

/// The SQL of the query's sort value, or `None` when it sorts by id alone. A date key is the
/// earliest start (or latest end) of the parameter's index rows, with a value that puts
/// resources without one last.
fn sort_value(query: &SearchQuery, backend: Backend) -> Option<Expr> {
    let (param, aggregate) = match query.order.key {
        SortKey::Id => return None,
        SortKey::LastUpdated => return Some(col("r", "last_updated")),
        SortKey::DateLow(param) => (param, Func::min(col("i", "low"))),
        SortKey::DateHigh(param) => (param, Func::max(col("i", "high"))),
    };
    let mut extreme = Query::select();
    extreme
        .expr(aggregate)
        .from_as(name(SEARCH_DATE), name("i"))
        .cond_where(same_resource("i", "r"))
        .and_where(col("i", "param").eq(param));
    let missing = optional_instant(backend, query.order.key.missing_value());
    Some(
        Func::coalesce([
            Expr::SubQuery(None, Box::new(extreme.to_owned().into())),
            Expr::val(missing),
        ])
        .into(),
    )
}

/// `SELECT COUNT(*) FROM resource r WHERE <clauses>`: every match, regardless of paging.
///
/// A search made only of single-token blind clauses is counted from the blind index alone:
/// every version change, deletion and erasure replaces or removes a resource's index rows in
/// the transaction that makes it, so those rows are exactly the live resources' (the same
/// invariant the page's join to `resource` only double-checks). Probing `resource` for each of
/// 10,000 matches was 56 of a 67 ms count.
pub(crate) fn count_statement(query: &SearchQuery, backend: Backend) -> SelectStatement {
    let mut select = Query::select();
    select.expr_as(Expr::cust("COUNT(*)"), name("matches"));
    match blind_tokens(query) {
        Some(tokens) => blind_join(&mut select, query, tokens),
        None => matching(&mut select, query, backend),
    }
    select.to_owned()
}

/// The current, non-deleted resources of the query's type that match every clause: `FROM
/// resource r WHERE …`.
///
/// When two or more clauses are each answered by one index table (a compound search such as
/// `family=smi&birthdate=1970`), the candidates are the intersection of those clauses' ids,
/// computed first and joined to `resource` after: `FROM (SELECT id FROM search_blind WHERE
/// <family> INTERSECT SELECT id FROM search_blind WHERE <birthdate>) m JOIN resource r`. Each
/// arm is one index range, read once, so the cost is the sum of the clauses' matches whatever
/// the planner believes of their values (keyed hashes defeat its statistics). As `EXISTS`
/// per clause on `resource`, PostgreSQL chose nested loops from its estimate of each token
/// and probed `resource` once per match of the rarer clause, sorting them all for a page of 20.
fn matching(select: &mut SelectStatement, query: &SearchQuery, backend: Backend) {
    let mut lookups = Vec::new();
    let mut conditions = Vec::new();
    for clause in &query.clauses {
        match lookup(clause, query.resource_type, backend) {
            Some(lookup) => lookups.push(lookup),
            None => conditions.push(clause_condition("r", query.resource_type, clause, backend)),
        }
    }
    let intersection = if lookups.len() >= 2 {
        lookups
            .into_iter()
            .map(|lookup| lookup.ids(query))
            .reduce(|mut ids, arm| {
                ids.union(UnionType::Intersect, arm);
                ids
            })
    } else {
        conditions.extend(lookups.into_iter().map(|lookup| lookup.exists_for("r")));
        None
    };
    match intersection {
        Some(ids) => {
            select.from_subquery(ids, name("m")).inner_join(
                aliased(RESOURCE, "r"),
                Cond::all()
                    .add(col("r", "resource_type").eq(query.resource_type.as_str()))
                    .add(col("r", "id").equals((name("m"), name("id")))),
            );
        }
        None => {
            select.from_as(name(RESOURCE), name("r"));
        }
    }
    select
        .and_where(col("r", "resource_type").eq(query.resource_type.as_str()))
        .and_where(col("r", "deleted").eq(false));
    for condition in conditions {
        select.and_where(condition);
    }
}

/// A clause answered by rows of one index table alone: those of `param` that meet `condition`
/// (on the row aliased `i`).
struct Lookup {
    table: &'static str,
    params: Vec<&'static str>,
    condition: Cond,
}

impl Lookup {
    /// `SELECT i.id FROM <table> i WHERE <the query's type> AND <param> AND <condition>`, and
    /// past the cursor when results are in id order (so a later page reads less).
    fn ids(self, query: &SearchQuery) -> SelectStatement {
        let mut arm = Query::select();
        arm.column((name("i"), name("id")))
            .from_as(name(self.table), name("i"))
            .and_where(col("i", "resource_type").eq(query.resource_type.as_str()))
            .and_where(param_is("i", &self.params))
            .cond_where(self.condition);
        if let (SortKey::Id, Some(after)) = (query.order.key, &query.after) {
            arm.and_where(beyond(query, col("i", "id"), after.id.clone().into()));
        }
        arm.to_owned()
    }

    /// `EXISTS` a row of this lookup for the resource aliased `r`.
    fn exists_for(self, r: &str) -> Expr {
        exists_in(r, self.table, &self.params, self.condition)
    }
}

/// The lookup of a clause answered by one index table, `None` for the other clauses.
fn lookup(clause: &Clause, resource_type: ResourceType, backend: Backend) -> Option<Lookup> {
    Some(match clause {
        Clause::Blind { param, any_of } => Lookup::blind(resource_type, param, any_of),
        Clause::Token { param, any_of } => Lookup::token(param, any_of),
        Clause::Reference { param, any_of } => Lookup::reference(param, any_of),
        Clause::Date { param, any_of } => Lookup::date(param, any_of, backend),
        Clause::String { param, any_of, how } => Lookup::string(param, any_of, *how),
        _ => return None,
    })
}

impl Lookup {
    fn blind(resource_type: ResourceType, param: &'static str, any_of: &[BlindToken]) -> Self {
        let condition =
            Cond::all().add(col("i", "token").is_in(any_of.iter().map(|t| t.0.to_vec())));
        Self {
            table: SEARCH_BLIND,
            params: blind_row_params(resource_type, param),
            condition,
        }
    }

    fn token(param: &'static str, any_of: &[TokenMatch]) -> Self {
        let mut any = Cond::any();
        for m in any_of {
            let mut all = Cond::all();
            match &m.system {
                None => {}
                Some(None) => all = all.add(col("i", "system").is_null()),
                Some(Some(system)) => all = all.add(col("i", "system").eq(system.as_str())),
            }
            if let Some(code) = &m.code {
                all = all.add(col("i", "code").eq(code.as_str()));
            }
            any = any.add(all);
        }
        Self {
            table: SEARCH_TOKEN,
            params: vec![param],
            condition: any,
        }
    }

    fn reference(param: &'static str, any_of: &[ReferenceMatch]) -> Self {
        let mut any = Cond::any();
        for m in any_of {
            let mut all = Cond::all().add(col("i", "target_id").eq(m.target_id.as_str()));
            if let Some(t) = &m.target_type {
                all = all.add(col("i", "target_type").eq(t.as_str()));
            }
            any = any.add(all);
        }
        Self {
            table: SEARCH_REFERENCE,
            params: vec![param],
            condition: any,
        }
    }

    fn date(param: &'static str, any_of: &[DateMatch], backend: Backend) -> Self {
        let ends = |end| match end {
            RangeEnd::Low => col("i", "low"),
            RangeEnd::High => col("i", "high"),
        };
        let any = date_condition(any_of, |bound| {
            compare(ends(bound.end), bound.op, instant(backend, bound.at))
        });
        Self {
            table: SEARCH_DATE,
            params: vec![param],
            condition: any,
        }
    }

    fn string(param: &'static str, any_of: &[String], how: StringMatch) -> Self {
        let like = |pattern: String| col("i", "value").like(LikeExpr::new(pattern).escape('\\'));
        let mut any = Cond::any();
        for text in any_of {
            let text = escape_like(text);
            any = match how {
                StringMatch::Start => any.add(like(format!("{text}%"))),
                StringMatch::Contains => any.add(like(format!("%{text}%"))),
                // Folded text separates words with single spaces.
                StringMatch::WordStart => any
                    .add(like(format!("{text}%")))
                    .add(like(format!("% {text}%"))),
            };
        }
        Self {
            table: SEARCH_STRING,
            params: vec![param],
            condition: any,
        }
    }
}

/// `i.param = p`, or `i.param IN (…)` for several.
fn param_is(alias: &str, params: &[&'static str]) -> Expr {
    match params {
        [param] => col(alias, "param").eq(*param),
        params => col(alias, "param").is_in(params.iter().copied()),
    }
}

/// `EXISTS (SELECT 1 FROM <table> i WHERE i is r's row for params AND (alternatives))`.
fn exists_in(r: &str, table: &str, params: &[&'static str], alternatives: Cond) -> Expr {
    let mut sub = Query::select();
    sub.expr(Expr::val(1))
        .from_as(name(table), name("i"))
        .cond_where(same_resource("i", r))
        .and_where(param_is("i", params))
        .cond_where(alternatives);
    Expr::exists(sub.to_owned())
}

/// The condition of one clause on the resource table aliased `r`, whose resources are of
/// `resource_type`.
fn clause_condition(
    r: &str,
    resource_type: ResourceType,
    clause: &Clause,
    backend: Backend,
) -> Expr {
    match clause {
        Clause::Blind { param, any_of } => {
            Lookup::blind(resource_type, param, any_of).exists_for(r)
        }
        Clause::Token { param, any_of } => Lookup::token(param, any_of).exists_for(r),
        Clause::Reference { param, any_of } => Lookup::reference(param, any_of).exists_for(r),
        Clause::Date { param, any_of } => Lookup::date(param, any_of, backend).exists_for(r),
        Clause::String { param, any_of, how } => Lookup::string(param, any_of, *how).exists_for(r),
        Clause::Id(ids) => col(r, "id").is_in(ids.iter().map(String::as_str)),
        Clause::Compartment(owner) => col(r, "key_owner").eq(owner.as_str()),
        Clause::LastUpdated(any_of) => Expr::expr(date_condition(any_of, |bound| {
            let (op, at) = bound.on_instant();
            compare(col(r, "last_updated"), op, instant(backend, at))
        })),
        Clause::Chain {
            param,
            target_type,
            inner,
        } => {
            // EXISTS a reference row of `param` to a live `target_type` resource (aliased one
            // level deeper) that meets the inner clause.
            let target = format!("{r}t");
            let mut sub = Query::select();
            sub.expr(Expr::val(1))
                .from_as(name(SEARCH_REFERENCE), name("c"))
                .inner_join(
                    aliased(RESOURCE, &target),
                    Cond::all()
                        .add(col(&target, "resource_type").equals((name("c"), name("target_type"))))
                        .add(col(&target, "id").equals((name("c"), name("target_id")))),
                )
                .cond_where(same_resource("c", r))
                .and_where(col("c", "param").eq(*param))
                .and_where(col("c", "target_type").eq(target_type.as_str()))
                .and_where(col(&target, "deleted").eq(false))
                .and_where(clause_condition(&target, *target_type, inner, backend));
            Expr::exists(sub.to_owned())
        }
        Clause::Missing {
            param,
            table,
            missing,
        } => {
            use records::index::IndexTable;
            let (table, params) = match table {
                IndexTable::Blind => (SEARCH_BLIND, blind_row_params(resource_type, param)),
                IndexTable::Token => (SEARCH_TOKEN, vec![*param]),
                IndexTable::Reference => (SEARCH_REFERENCE, vec![*param]),
                IndexTable::Date => (SEARCH_DATE, vec![*param]),
                IndexTable::String => (SEARCH_STRING, vec![*param]),
            };
            let present = exists_in(r, table, &params, Cond::all());
            if *missing { present.not() } else { present }
        }
        Clause::Not(inner) => clause_condition(r, resource_type, inner, backend).not(),
        Clause::Has {
            source_type,
            param,
            inner,
        } => {
            // EXISTS a reference row of `param` from a live `source_type` resource (aliased
            // one level deeper) to this one, where that resource meets the inner clause.
            let source = format!("{r}s");
            let mut sub = Query::select();
            sub.expr(Expr::val(1))
                .from_as(name(SEARCH_REFERENCE), name("h"))
                .inner_join(aliased(RESOURCE, &source), same_resource(&source, "h"))
                .and_where(col("h", "target_type").equals((name(r), name("resource_type"))))
                .and_where(col("h", "target_id").equals((name(r), name("id"))))
                .and_where(col("h", "resource_type").eq(source_type.as_str()))
                .and_where(col("h", "param").eq(*param))
                .and_where(col(&source, "deleted").eq(false))
                .and_where(clause_condition(&source, *source_type, inner, backend));
            Expr::exists(sub.to_owned())
        }
    }
}

/// Any of the date matches, each its condition (alternatives of bounds) with `bound` written
/// by `write`.
fn date_condition(any_of: &[DateMatch], write: impl Fn(&DateBound) -> Expr) -> Cond {
    let mut any = Cond::any();
    for m in any_of {
        for all_of in m.condition() {
            any = any.add(
                all_of
                    .iter()
                    .fold(Cond::all(), |all, bound| all.add(write(bound))),
            );
        }
    }
    any
}

/// An instant, or SQL NULL.
fn optional_instant(backend: Backend, at: Option<time::OffsetDateTime>) -> sea_orm::Value {
    at.map_or_else(|| None::<String>.into(), |at| instant(backend, at))
}

fn compare(value: Expr, op: BoundOp, at: sea_orm::Value) -> Expr {
    match op {
        BoundOp::Lt => value.lt(at),
        BoundOp::Le => value.lte(at),
        BoundOp::Gt => value.gt(at),
        BoundOp::Ge => value.gte(at),
    }
}

/// Escapes LIKE's wildcards so user text matches literally.
fn escape_like(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}
