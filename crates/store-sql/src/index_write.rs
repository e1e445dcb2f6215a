//! Writing and clearing search index rows: the store's busiest statements (a create of the
//! bench's Patient writes 31 blind rows; see `docs/performance.md`). Both take many resources
//! at once, so that a unit of thousands of writes costs a statement per table, not per row.

use fhir_model::ResourceType;
use records::index::IndexRows;
use sea_orm::sea_query::{Expr, ExprTrait, InsertStatement, Query};
use sea_orm::{ConnectionTrait, DatabaseTransaction, DbErr, Value};

use crate::connect::Backend;
use crate::instants::instant;
use crate::tables::{
    CONDITIONAL_CLAIM, INDEX_TABLES, SEARCH_BLIND, SEARCH_DATE, SEARCH_REFERENCE, SEARCH_STRING,
    SEARCH_TOKEN, name,
};

/// The most values bound in one statement: under SQLite's limit (32,766) and PostgreSQL's
/// (65,535), so that a large unit, or a resource with thousands of identifiers, stores in
/// several statements instead of failing on the database's limit.
pub(crate) const MAX_BOUND_VALUES: usize = 30_000;

/// Multi-row INSERTs of `rows` into `table`'s `columns`: one statement, or several when the
/// rows bind more than [`MAX_BOUND_VALUES`] values. None for no rows.
pub(crate) fn insert_rows(
    table: &str,
    columns: &[&str],
    rows: impl IntoIterator<Item = Vec<Value>>,
) -> Result<Vec<InsertStatement>, DbErr> {
    let rows_per_statement = (MAX_BOUND_VALUES / columns.len().max(1)).max(1);
    let mut statements = Vec::new();
    let mut rows = rows.into_iter().peekable();
    while rows.peek().is_some() {
        let mut statement = Query::insert();
        statement
            .into_table(name(table))
            .columns(columns.iter().map(|c| name(c)));
        for row in rows.by_ref().take(rows_per_statement) {
            statement
                .values(row.into_iter().map(Expr::val).collect::<Vec<_>>())
                .map_err(|e| DbErr::Custom(e.to_string()))?;
        }
        statements.push(statement.to_owned());
    }
    Ok(statements)
}

/// Deletes the index rows of `resources` (type and id), and their conditional-create claims
/// too when `with_claims` (a deletion releases them; an update keeps them).
pub(crate) async fn clear_index(
    txn: &DatabaseTransaction,
    resources: &[(ResourceType, &str)],
    with_claims: bool,
) -> Result<(), DbErr> {
    for chunk in resources.chunks(MAX_BOUND_VALUES / 2) {
        for table in INDEX_TABLES {
            if table == CONDITIONAL_CLAIM && !with_claims {
                continue;
            }
            let clear = Query::delete()
                .from_table(name(table))
                .and_where(
                    Expr::tuple([Expr::col(name("resource_type")), Expr::col(name("id"))])
                        .in_tuples(
                            chunk
                                .iter()
                                .map(|(rt, id)| (rt.as_str().to_owned(), (*id).to_owned())),
                        ),
                )
                .to_owned();
            txn.execute(&clear).await?;
        }
    }
    Ok(())
}

/// Inserts the index rows of `resources` (type, id and rows): per table that has any, one
/// statement for all of them, or several above [`MAX_BOUND_VALUES`].
///
/// (One prepared `unnest` statement per table, whatever the row count, was tried on
/// PostgreSQL: it did not lower the database's time, which goes to the rows' index entries; see
/// `docs/performance.md`.)
pub(crate) async fn write_index(
    txn: &DatabaseTransaction,
    backend: Backend,
    resources: &[(ResourceType, &str, &IndexRows)],
) -> Result<(), DbErr> {
    let mut statements = insert_rows(
        SEARCH_BLIND,
        &["resource_type", "id", "param", "token"],
        table_rows(
            resources,
            |i| &i.blind,
            |r| (r.param, vec![r.token.0.to_vec().into()]),
        ),
    )?;
    statements.extend(insert_rows(
        SEARCH_TOKEN,
        &["resource_type", "id", "param", "system", "code"],
        table_rows(
            resources,
            |i| &i.tokens,
            |r| {
                (
                    r.param,
                    vec![r.system.clone().into(), r.code.clone().into()],
                )
            },
        ),
    )?);
    statements.extend(insert_rows(
        SEARCH_REFERENCE,
        &["resource_type", "id", "param", "target_type", "target_id"],
        table_rows(
            resources,
            |i| &i.references,
            |r| {
                (
                    r.param,
                    vec![r.target_type.clone().into(), r.target_id.clone().into()],
                )
            },
        ),
    )?);
    statements.extend(insert_rows(
        SEARCH_DATE,
        &["resource_type", "id", "param", "low", "high"],
        table_rows(
            resources,
            |i| &i.dates,
            |r| {
                (
                    r.param,
                    vec![instant(backend, r.low), instant(backend, r.high)],
                )
            },
        ),
    )?);
    statements.extend(insert_rows(
        SEARCH_STRING,
        &["resource_type", "id", "param", "value"],
        table_rows(
            resources,
            |i| &i.strings,
            |r| (r.param, vec![r.folded.clone().into()]),
        ),
    )?);
    for statement in statements {
        txn.execute(&statement).await?;
    }
    Ok(())
}

/// The rows of one index table for every resource: its type, id, the row's parameter, then
/// the table's own columns (`columns` of a row gives the parameter and those).
fn table_rows<'a, R: 'a>(
    resources: &'a [(ResourceType, &'a str, &'a IndexRows)],
    rows: impl Fn(&'a IndexRows) -> &'a [R] + 'a,
    columns: impl Fn(&R) -> (&'static str, Vec<Value>) + Copy + 'a,
) -> impl Iterator<Item = Vec<Value>> + 'a {
    resources
        .iter()
        .flat_map(move |(resource_type, id, index)| {
            rows(index).iter().map(move |row| {
                let (param, rest) = columns(row);
                let mut values = vec![resource_type.as_str().into(), (*id).into(), param.into()];
                values.extend(rest);
                values
            })
        })
}
