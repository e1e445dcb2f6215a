//! Access tokens: what was issued to whom (never the token itself) and what was revoked.
//!
//! `token_issuance` is the access-review record: one row per issued token, keyed by its first
//! revocation id. `token_revocation` lists revoked ids in the order they were added (`seq`);
//! every server instance polls its size and highest `seq` and reloads the list when either
//! changes, so a revocation reaches every instance within its poll interval.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum TokenIssuance {
    Table,
    TokenId,
    Subject,
    Role,
    Organization,
    Patient,
    Scopes,
    Purpose,
    IssuedAt,
    ExpiresAt,
}

#[derive(DeriveIden)]
enum TokenRevocation {
    Table,
    Seq,
    RevocationId,
    RevokedAt,
    Reason,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(TokenIssuance::Table)
                    .col(string_len(TokenIssuance::TokenId, 160).primary_key())
                    .col(string_len(TokenIssuance::Subject, 128))
                    .col(string_len(TokenIssuance::Role, 32))
                    .col(string_len_null(TokenIssuance::Organization, 128))
                    .col(string_len_null(TokenIssuance::Patient, 128))
                    .col(text(TokenIssuance::Scopes))
                    .col(string_len_null(TokenIssuance::Purpose, 32))
                    .col(timestamp_with_time_zone(TokenIssuance::IssuedAt))
                    .col(timestamp_with_time_zone(TokenIssuance::ExpiresAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("token_issuance_by_subject")
                    .table(TokenIssuance::Table)
                    .col(TokenIssuance::Subject)
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(TokenRevocation::Table)
                    .col(big_pk_auto(TokenRevocation::Seq))
                    .col(string_len_uniq(TokenRevocation::RevocationId, 160))
                    .col(timestamp_with_time_zone(TokenRevocation::RevokedAt))
                    .col(string_len(TokenRevocation::Reason, 200))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(TokenRevocation::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(TokenIssuance::Table).to_owned())
            .await
    }
}
