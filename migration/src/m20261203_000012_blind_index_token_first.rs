//! The blind index's lookup index leads with the token: `(resource_type, token, id, param)`
//! replaces `(resource_type, param, token, id)`.
//!
//! A `name` search looks for its term in the rows of `name`, `family` and `given` (which share
//! one key; index generation 3). With the parameter before the token, the resources holding the
//! term came out of three ranges, no longer in one id order, and a page of them needed every
//! match read and sorted. With the token first they are one range in id order whatever rows
//! hold them, and a search of one parameter filters on `param` inside the index (tokens are
//! keyed per purpose, so one range rarely holds another parameter's rows at all).

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

const OLD: &str = "search_blind_by_token";
const NEW: &str = "search_blind_by_token_first";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_index(
                Index::create()
                    .name(NEW)
                    .table(SearchBlind::Table)
                    .col(SearchBlind::ResourceType)
                    .col(SearchBlind::Token)
                    .col(SearchBlind::Id)
                    .col(SearchBlind::Param)
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
                    .col(SearchBlind::Id)
                    .to_owned(),
            )
            .await?;
        manager
            .drop_index(Index::drop().name(NEW).table(SearchBlind::Table).to_owned())
            .await
    }
}
