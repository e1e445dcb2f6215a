//! Writing and clearing a version's search index rows: the store's busiest statements (a create
//! of the bench's Patient writes 46 blind rows; see `docs/performance.md`).

use fhir_model::ResourceType;
use records::index::IndexRows;
use sea_orm::sea_query::{Expr, ExprTrait, InsertStatement, Query};
use sea_orm::{ConnectionTrait, DatabaseTransaction, DbErr};

use crate::connect::Backend;
use crate::instants::instant;
use crate::tables::{
    CONDITIONAL_CLAIM, INDEX_TABLES, SEARCH_BLIND, SEARCH_DATE, SEARCH_REFERENCE, SEARCH_STRING,
    SEARCH_TOKEN, name,
};

/// Deletes a resource's index rows, and its conditional-create claims when `with_claims` (a
/// deletion releases them; an update keeps them).
pub(crate) async fn clear_index(
    txn: &DatabaseTransaction,
    resource_type: ResourceType,
    id: &str,
    with_claims: bool,
) -> Result<(), DbErr> {
    for table in INDEX_TABLES {
        if table == CONDITIONAL_CLAIM && !with_claims {
            continue;
        }
        let clear = Query::delete()
            .from_table(name(table))
            .and_where(Expr::col(name("resource_type")).eq(resource_type.as_str()))
            .and_where(Expr::col(name("id")).eq(id))
            .to_owned();
        txn.execute(&clear).await?;
    }
    Ok(())
}

/// The most values bound in one statement: under SQLite's limit (32,766) and PostgreSQL's
/// (65,535), so that a resource with thousands of identifiers or names stores in several
/// statements instead of failing on the database's limit.
const MAX_BOUND_VALUES: usize = 30_000;

/// Inserts a version's index rows: per table that has any, one statement, or several when the
/// rows hold more than [`MAX_BOUND_VALUES`] values.
///
/// (One prepared `unnest` statement per table, whatever the row count, was tried on
/// PostgreSQL: it did not lower the database's time, which goes to the rows' index entries; see
/// `docs/performance.md`.)
pub(crate) async fn write_index(
    txn: &DatabaseTransaction,
    backend: Backend,
    resource_type: ResourceType,
    id: &str,
    index: &IndexRows,
) -> Result<(), DbErr> {
    let rt = resource_type.as_str();
    let mut statements: Vec<InsertStatement> = Vec::new();
    let mut insert = |table: &str, columns: &[&str], rows: Vec<Vec<sea_orm::Value>>| {
        let rows_per_statement = MAX_BOUND_VALUES / (3 + columns.len());
        let mut rows = rows.into_iter().peekable();
        while rows.peek().is_some() {
            let mut statement = Query::insert();
            statement.into_table(name(table)).columns(
                ["resource_type", "id", "param"]
                    .iter()
                    .chain(columns)
                    .map(|c| name(c)),
            );
            for row in rows.by_ref().take(rows_per_statement) {
                statement
                    .values(
                        [rt.into(), id.into()]
                            .into_iter()
                            .chain(row)
                            .map(Expr::val)
                            .collect::<Vec<_>>(),
                    )
                    .map_err(|e| DbErr::Custom(e.to_string()))?;
            }
            statements.push(statement.to_owned());
        }
        Ok::<(), DbErr>(())
    };
    insert(
        SEARCH_BLIND,
        &["token"],
        index
            .blind
            .iter()
            .map(|r| vec![r.param.into(), r.token.0.to_vec().into()])
            .collect(),
    )?;
    insert(
        SEARCH_TOKEN,
        &["system", "code"],
        index
            .tokens
            .iter()
            .map(|r| {
                vec![
                    r.param.into(),
                    r.system.clone().into(),
                    r.code.clone().into(),
                ]
            })
            .collect(),
    )?;
    insert(
        SEARCH_REFERENCE,
        &["target_type", "target_id"],
        index
            .references
            .iter()
            .map(|r| {
                vec![
                    r.param.into(),
                    r.target_type.clone().into(),
                    r.target_id.clone().into(),
                ]
            })
            .collect(),
    )?;
    insert(
        SEARCH_DATE,
        &["low", "high"],
        index
            .dates
            .iter()
            .map(|r| {
                vec![
                    r.param.into(),
                    instant(backend, r.low),
                    instant(backend, r.high),
                ]
            })
            .collect(),
    )?;
    insert(
        SEARCH_STRING,
        &["value"],
        index
            .strings
            .iter()
            .map(|r| vec![r.param.into(), r.folded.clone().into()])
            .collect(),
    )?;
    for statement in statements {
        txn.execute(&statement).await?;
    }
    Ok(())
}
