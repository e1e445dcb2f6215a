//! `index_state`: which generation of the rules made the search index rows, so that a server
//! whose rules are newer makes the rows anew before it answers a search.
//!
//! One row (`id` = 1). Stores made before this migration hold generation 1, the first rules.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(Iden)]
enum IndexState {
    Table,
    Id,
    Generation,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(IndexState::Table)
                    .col(
                        ColumnDef::new(IndexState::Id)
                            .small_integer()
                            .not_null()
                            .primary_key(),
                    )
                    .col(ColumnDef::new(IndexState::Generation).integer().not_null())
                    .to_owned(),
            )
            .await?;
        let first = Query::insert()
            .into_table(IndexState::Table)
            .columns([IndexState::Id, IndexState::Generation])
            .values([1.into(), 1.into()])
            .map_err(|e| DbErr::Custom(e.to_string()))?
            .to_owned();
        manager.exec_stmt(first).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(IndexState::Table).to_owned())
            .await
    }
}
