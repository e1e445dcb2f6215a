//! PHI protection: wrapped data keys, the key owner of every resource and version, and the
//! search index tables.
//!
//! - `data_key`: one row per key owner (`Patient/{id}` or `system`) with its data key wrapped by
//!   a master key (`kek_version`); `wrapped` is NULL and `destroyed_at` set once erased (the row
//!   stays as a tombstone). Master keys themselves are never in the database.
//! - `key_owner` on `resource` and `resource_version`: whose data key sealed the body.
//! - `search_blind`: keyed-hash tokens of identifying values. `search_token`,
//!   `search_reference`, `search_date`, `search_string`: plain values of non-identifying
//!   parameters. Index rows describe the current version of a resource only.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum DataKey {
    Table,
    Owner,
    KeyId,
    KekVersion,
    Wrapped,
    CreatedAt,
    RewrappedAt,
    DestroyedAt,
}

#[derive(DeriveIden)]
enum Resource {
    Table,
    KeyOwner,
}

#[derive(DeriveIden)]
enum ResourceVersion {
    Table,
    KeyOwner,
}

#[derive(DeriveIden)]
enum SearchBlind {
    Table,
    Token,
}

#[derive(DeriveIden)]
enum SearchToken {
    Table,
    System,
    Code,
}

#[derive(DeriveIden)]
enum SearchReference {
    Table,
    TargetType,
    TargetId,
}

#[derive(DeriveIden)]
enum SearchDate {
    Table,
    Low,
    High,
}

#[derive(DeriveIden)]
enum SearchString {
    Table,
    Value,
}

/// Columns every index table starts with.
#[derive(DeriveIden)]
enum Indexed {
    ResourceType,
    Id,
    Param,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(DataKey::Table)
                    .col(string_len(DataKey::Owner, 80).primary_key())
                    .col(blob(DataKey::KeyId))
                    .col(integer_null(DataKey::KekVersion))
                    .col(blob_null(DataKey::Wrapped))
                    .col(timestamp_with_time_zone(DataKey::CreatedAt))
                    .col(timestamp_with_time_zone_null(DataKey::RewrappedAt))
                    .col(timestamp_with_time_zone_null(DataKey::DestroyedAt))
                    .to_owned(),
            )
            .await?;
        // Rotation scans keys by master-key version; status counts them.
        manager
            .create_index(
                Index::create()
                    .name("data_key_by_kek_version")
                    .table(DataKey::Table)
                    .col(DataKey::KekVersion)
                    .col(DataKey::Owner)
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Resource::Table)
                    .add_column(string_len(Resource::KeyOwner, 80).default("system"))
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(ResourceVersion::Table)
                    .add_column(string_len(ResourceVersion::KeyOwner, 80).default("system"))
                    .to_owned(),
            )
            .await?;
        // Erasure finds a compartment's resources by key owner.
        manager
            .create_index(
                Index::create()
                    .name("resource_by_key_owner")
                    .table(Resource::Table)
                    .col(Resource::KeyOwner)
                    .to_owned(),
            )
            .await?;

        index_table(
            manager,
            SearchBlind::Table,
            vec![blob(SearchBlind::Token)],
            SearchBlind::Token.into_iden(),
        )
        .await?;
        index_table(
            manager,
            SearchToken::Table,
            vec![
                string_len_null(SearchToken::System, 255),
                string_len(SearchToken::Code, 255),
            ],
            SearchToken::Code.into_iden(),
        )
        .await?;
        index_table(
            manager,
            SearchReference::Table,
            vec![
                string_len(SearchReference::TargetType, 64),
                string_len(SearchReference::TargetId, 64),
            ],
            SearchReference::TargetId.into_iden(),
        )
        .await?;
        index_table(
            manager,
            SearchDate::Table,
            vec![
                timestamp_with_time_zone(SearchDate::Low),
                timestamp_with_time_zone(SearchDate::High),
            ],
            SearchDate::Low.into_iden(),
        )
        .await?;
        index_table(
            manager,
            SearchString::Table,
            vec![string_len(SearchString::Value, 255)],
            SearchString::Value.into_iden(),
        )
        .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            SearchString::Table.into_iden(),
            SearchDate::Table.into_iden(),
            SearchReference::Table.into_iden(),
            SearchToken::Table.into_iden(),
            SearchBlind::Table.into_iden(),
            DataKey::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        manager
            .drop_index(
                Index::drop()
                    .name("resource_by_key_owner")
                    .table(Resource::Table)
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(ResourceVersion::Table)
                    .drop_column(ResourceVersion::KeyOwner)
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Resource::Table)
                    .drop_column(Resource::KeyOwner)
                    .to_owned(),
            )
            .await
    }
}

/// An index table: `(resource_type, id, param, <value columns>)`, looked up by
/// `(resource_type, param, <lookup column>)` and cleared by `(resource_type, id)`.
async fn index_table(
    manager: &SchemaManager<'_>,
    table: impl IntoIden,
    value_columns: Vec<ColumnDef>,
    lookup: DynIden,
) -> Result<(), DbErr> {
    let table = table.into_iden();
    let name = table.to_string();
    let mut create = Table::create();
    create
        .table(table.clone())
        .col(string_len(Indexed::ResourceType, 64))
        .col(string_len(Indexed::Id, 64))
        .col(string_len(Indexed::Param, 64));
    for mut column in value_columns {
        create.col(&mut column);
    }
    manager.create_table(create.to_owned()).await?;
    manager
        .create_index(
            Index::create()
                .name(format!("{name}_lookup"))
                .table(table.clone())
                .col(Indexed::ResourceType)
                .col(Indexed::Param)
                .col(lookup)
                .to_owned(),
        )
        .await?;
    manager
        .create_index(
            Index::create()
                .name(format!("{name}_by_resource"))
                .table(table)
                .col(Indexed::ResourceType)
                .col(Indexed::Id)
                .to_owned(),
        )
        .await
}
