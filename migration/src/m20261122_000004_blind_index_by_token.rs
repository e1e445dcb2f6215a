//! The blind index's lookup index ends with the resource id: `(resource_type, param, token, id)`
//! replaces `(resource_type, param, token)`.
//!
//! With the id in the index, the resources holding one token come out of an index-only scan
//! already in id order, so a page of them is the first `n` entries after the cursor, however
//! common the token. That makes one plan right for every value, and PostgreSQL can plan a
//! single-token search once per connection instead of on every execution (planning was most of
//! an identifier search's cost). The old index is a prefix of the new one, so it goes.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum SearchBlind {
    Table,
    ResourceType,
    Param,
    Token,
    Id,
}

const OLD: &str = "search_blind_lookup";
const NEW: &str = "search_blind_by_token";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_index(
                Index::create()
                    .name(NEW)
                    .table(SearchBlind::Table)
                    .col(SearchBlind::ResourceType)
                    .col(SearchBlind::Param)
                    .col(SearchBlind::Token)
                    .col(SearchBlind::Id)
                    .to_owned(),
            )
            .await?;
        manager
            .drop_index(Index::drop().name(OLD).table(SearchBlind::Table).to_owned())
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_index(
                Index::create()
                    .name(OLD)
                    .table(SearchBlind::Table)
                    .col(SearchBlind::ResourceType)
                    .col(SearchBlind::Param)
                    .col(SearchBlind::Token)
                    .to_owned(),
            )
            .await?;
        manager
            .drop_index(Index::drop().name(NEW).table(SearchBlind::Table).to_owned())
            .await
    }
}
