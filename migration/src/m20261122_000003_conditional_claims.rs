//! Conditional-create claims: one row per (type, keyed hash of the If-None-Exist criteria) of a
//! resource created conditionally. The primary key makes concurrent conditional creates with
//! the same criteria race on an insert instead of a check-then-insert, so exactly one creates.
//! Rows are derived data: cleared when the resource gets a new version or is erased.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum ConditionalClaim {
    Table,
    ResourceType,
    Claim,
    Id,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(ConditionalClaim::Table)
                    .col(string_len(ConditionalClaim::ResourceType, 64))
                    .col(blob(ConditionalClaim::Claim))
                    .col(string_len(ConditionalClaim::Id, 64))
                    .primary_key(
                        Index::create()
                            .col(ConditionalClaim::ResourceType)
                            .col(ConditionalClaim::Claim),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("conditional_claim_by_resource")
                    .table(ConditionalClaim::Table)
                    .col(ConditionalClaim::ResourceType)
                    .col(ConditionalClaim::Id)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(ConditionalClaim::Table).to_owned())
            .await
    }
}
