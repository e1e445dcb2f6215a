//! Resources and their versions.
//!
//! - `resource`: one row per resource (type, id) with its current version; the row writers lock
//!   or compare against for optimistic concurrency, and the key conditional creates race on.
//! - `resource_version`: every version ever written. `body` is opaque bytes: the store never
//!   interprets it, so encryption at rest slots in without a schema change.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

// Variant names are column names (`resource_type`), so they cannot drop the table's prefix.
#[allow(clippy::enum_variant_names)]
#[derive(DeriveIden)]
enum Resource {
    Table,
    ResourceType,
    Id,
    Version,
    LastUpdated,
    Deleted,
}

#[derive(DeriveIden)]
enum ResourceVersion {
    Table,
    ResourceType,
    Id,
    Version,
    LastUpdated,
    Deleted,
    Body,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Resource::Table)
                    .col(string_len(Resource::ResourceType, 64))
                    .col(string_len(Resource::Id, 64))
                    .col(big_integer(Resource::Version))
                    .col(timestamp_with_time_zone(Resource::LastUpdated))
                    .col(boolean(Resource::Deleted))
                    .primary_key(
                        Index::create()
                            .col(Resource::ResourceType)
                            .col(Resource::Id),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(ResourceVersion::Table)
                    .col(string_len(ResourceVersion::ResourceType, 64))
                    .col(string_len(ResourceVersion::Id, 64))
                    .col(big_integer(ResourceVersion::Version))
                    .col(timestamp_with_time_zone(ResourceVersion::LastUpdated))
                    .col(boolean(ResourceVersion::Deleted))
                    .col(blob(ResourceVersion::Body))
                    .primary_key(
                        Index::create()
                            .col(ResourceVersion::ResourceType)
                            .col(ResourceVersion::Id)
                            .col(ResourceVersion::Version),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .from(
                                ResourceVersion::Table,
                                (ResourceVersion::ResourceType, ResourceVersion::Id),
                            )
                            .to(Resource::Table, (Resource::ResourceType, Resource::Id))
                            .on_delete(ForeignKeyAction::Restrict),
                    )
                    .to_owned(),
            )
            .await?;
        // Type-level history and `_lastUpdated` search walk versions by time.
        manager
            .create_index(
                Index::create()
                    .name("resource_version_by_time")
                    .table(ResourceVersion::Table)
                    .col(ResourceVersion::ResourceType)
                    .col(ResourceVersion::LastUpdated)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(ResourceVersion::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(Resource::Table).to_owned())
            .await
    }
}
