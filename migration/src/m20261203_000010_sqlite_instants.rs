//! On SQLite, searchable instants are rewritten as UTC text of one width.
//!
//! SQLite has no date type; sqlx wrote each instant as RFC 3339 text in the offset it came with
//! and without trailing zeros in the fraction. Compared as text, such values are not in time
//! order: `2021-03-20T17:00:00-05:00` sorts before `2021-03-20T20:00:00Z` though it is later,
//! and `…00.12Z` after `…00.123Z`. From this migration on Cairn writes every instant it
//! searches or sorts by (index dates, `last_updated`) as `YYYY-MM-DDThh:mm:ss.ffffffZ`, and this
//! rewrites the values stored before the same way: `strftime` turns the value to UTC at the
//! second, and the fraction's digits are copied and padded (an offset never changes them).
//!
//! PostgreSQL stores `timestamptz`, which compares instants already: nothing to do there.
//! Down leaves the values as they are: the old code reads the new text like any RFC 3339 value.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::{ConnectionTrait, DbBackend};

#[derive(DeriveMigrationName)]
pub struct Migration;

/// The columns rewritten: every instant that searches compare or sort by.
const COLUMNS: [(&str, &str); 4] = [
    ("search_date", "low"),
    ("search_date", "high"),
    ("resource", "last_updated"),
    ("resource_version", "last_updated"),
];

/// The SQLite expression of `column`'s value as fixed-width UTC text.
fn fixed_width(column: &str) -> String {
    format!(
        "strftime('%Y-%m-%dT%H:%M:%S', {column}) || '.' || \
         CASE WHEN substr({column}, 20, 1) = '.' \
              THEN substr(substr({column}, 21, length({column}) - 20 - \
                                 CASE WHEN substr({column}, -1) IN ('Z', 'z') THEN 1 ELSE 6 END) \
                          || '000000', 1, 6) \
              ELSE '000000' END || 'Z'"
    )
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        if db.get_database_backend() != DbBackend::Sqlite {
            return Ok(());
        }
        for (table, column) in COLUMNS {
            // Values already in the fixed form (27 characters ending in Z) are left alone.
            db.execute_unprepared(&format!(
                "UPDATE {table} SET {column} = {} \
                 WHERE {column} IS NOT NULL AND NOT (length({column}) = 27 AND {column} LIKE '%Z')",
                fixed_width(column)
            ))
            .await?;
        }
        Ok(())
    }

    async fn down(&self, _manager: &SchemaManager) -> Result<(), DbErr> {
        Ok(())
    }
}
