//! [`ResourceStore`] on sea-orm.

use async_trait::async_trait;
use fhir_model::ResourceType;
use records::{NewVersion, ResourceStore, StoreError, StoredVersion};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, DbErr, EntityTrait, QueryFilter, QueryOrder, SqlErr,
    TransactionTrait,
};

use crate::connect::SqlStore;
use crate::entity::{Body, resource, resource_version};

#[async_trait]
impl ResourceStore for SqlStore {
    #[tracing::instrument(skip_all, fields(resource_type = %version.resource_type, id = %version.id))]
    async fn create(&self, version: NewVersion) -> Result<(), StoreError> {
        let txn = self.db.begin().await.map_err(unavailable)?;
        let head = resource::ActiveModel {
            resource_type: Set(version.resource_type.as_str().to_owned()),
            id: Set(version.id.clone()),
            version: Set(to_db_version(version.version)),
            last_updated: Set(version.last_updated),
            deleted: Set(false),
        };
        // The primary key on (type, id) decides races: the loser's insert fails, and its
        // transaction rolls back with nothing written.
        if let Err(err) = resource::Entity::insert(head)
            .exec_without_returning(&txn)
            .await
        {
            return Err(match err.sql_err() {
                Some(SqlErr::UniqueConstraintViolation(_)) => StoreError::AlreadyExists {
                    resource_type: version.resource_type,
                    id: version.id,
                },
                _ => unavailable(err),
            });
        }
        let row = resource_version::ActiveModel {
            resource_type: Set(version.resource_type.as_str().to_owned()),
            id: Set(version.id),
            version: Set(to_db_version(version.version)),
            last_updated: Set(version.last_updated),
            deleted: Set(false),
            body: Set(Body(version.body)),
        };
        resource_version::Entity::insert(row)
            .exec_without_returning(&txn)
            .await
            .map_err(unavailable)?;
        txn.commit().await.map_err(unavailable)
    }

    #[tracing::instrument(skip_all, fields(resource_type = %resource_type, id = %id))]
    async fn read_current(
        &self,
        resource_type: ResourceType,
        id: &str,
    ) -> Result<Option<StoredVersion>, StoreError> {
        let row = resource_version::Entity::find()
            .filter(resource_version::Column::ResourceType.eq(resource_type.as_str()))
            .filter(resource_version::Column::Id.eq(id))
            .order_by_desc(resource_version::Column::Version)
            .one(&self.db)
            .await
            .map_err(unavailable)?;
        row.map(|row| {
            let version = u64::try_from(row.version).map_err(|_| StoreError::Corrupt {
                resource_type: row.resource_type.clone(),
                id: row.id.clone(),
                what: "negative version number",
            })?;
            Ok(StoredVersion {
                resource_type,
                id: row.id,
                version,
                last_updated: row.last_updated,
                deleted: row.deleted,
                body: row.body.0,
            })
        })
        .transpose()
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.ping_db().await.map_err(unavailable)
    }
}

fn unavailable(err: DbErr) -> StoreError {
    StoreError::Unavailable(Box::new(err))
}

/// Versions are u64 in the domain and BIGINT in SQL; no resource reaches 2^63 versions.
fn to_db_version(version: u64) -> i64 {
    i64::try_from(version).unwrap_or(i64::MAX)
}
