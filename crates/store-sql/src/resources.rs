//! [`ResourceStore`] on sea-orm.

use async_trait::async_trait;
use audit_chain::AuditEntry;
use fhir_model::ResourceType;
use phi_crypto::{BlindToken, KeyOwner};
use records::index::{IndexRows, SearchQuery, SortKey};
use records::{
    Changes, Erasure, HistoryPosition, ResourceStore, SealedVersion, SearchMatch, StoreError,
};
use sea_orm::sea_query::{
    Asterisk, Expr, ExprTrait, Func, JoinType, Order, Query, SelectStatement,
};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DbErr, EntityTrait, FromQueryResult, QueryFilter, QueryOrder,
    QueryResult, QuerySelect, QueryTrait, TransactionTrait,
};
use time::OffsetDateTime;

use crate::audit_log::insert_entries;
use crate::connect::{Backend, SqlStore};
use crate::entity::{resource, resource_version};
use crate::index_write::{MAX_BOUND_VALUES, clear_index, write_index};
use crate::instants::instant;
use crate::keys::{destroy_key, join_owner_key, joined_record};
use crate::search::{SORT_VALUE, count_statement, search_statement};
use crate::tables::{
    CONDITIONAL_CLAIM, INDEX_STATE, INDEX_TABLES, RESOURCE, RESOURCE_VERSION, name,
};

#[async_trait]
impl ResourceStore for SqlStore {
    #[tracing::instrument(skip_all, fields(writes = changes.writes.len()))]
    async fn commit(&self, changes: Changes) -> Result<(), StoreError> {
        crate::unit_of_work::commit(self, changes).await
    }

    #[tracing::instrument(skip_all, fields(resource_type = %resource_type, id = %id, version))]
    async fn read_version(
        &self,
        resource_type: ResourceType,
        id: &str,
        version: u64,
    ) -> Result<Option<SealedVersion>, StoreError> {
        let select = resource_version::Entity::find_by_id((
            resource_type.as_str().to_owned(),
            id.to_owned(),
            to_db_version(version),
        ));
        Ok(self.versions(select.into_query()).await?.pop())
    }

    #[tracing::instrument(skip_all, fields(resource_type = %resource_type, id = %id))]
    async fn history(
        &self,
        resource_type: ResourceType,
        id: &str,
        since: Option<OffsetDateTime>,
        limit: u64,
    ) -> Result<Vec<SealedVersion>, StoreError> {
        let mut query = resource_version::Entity::find()
            .filter(resource_version::Column::ResourceType.eq(resource_type.as_str()))
            .filter(resource_version::Column::Id.eq(id))
            .order_by_desc(resource_version::Column::Version)
            .limit(limit);
        if let Some(since) = since {
            query = query
                .filter(resource_version::Column::LastUpdated.gte(instant(self.backend(), since)));
        }
        self.versions(query.into_query()).await
    }

    #[tracing::instrument(skip_all)]
    async fn history_all(
        &self,
        resource_type: Option<ResourceType>,
        since: Option<OffsetDateTime>,
        after: Option<&HistoryPosition>,
        limit: u64,
    ) -> Result<Vec<SealedVersion>, StoreError> {
        use resource_version::Column as C;
        let mut query = resource_version::Entity::find()
            .order_by_desc(C::LastUpdated)
            .order_by_desc(C::ResourceType)
            .order_by_desc(C::Id)
            .order_by_desc(C::Version)
            .limit(limit);
        if let Some(resource_type) = resource_type {
            query = query.filter(C::ResourceType.eq(resource_type.as_str()));
        }
        if let Some(since) = since {
            query = query.filter(C::LastUpdated.gte(instant(self.backend(), since)));
        }
        if let Some(after) = after {
            // Keyset paging in newest-first order: strictly below the last row shown.
            let key = |c: C| Expr::col((resource_version::Entity, c));
            query = query.filter(
                Expr::tuple([
                    key(C::LastUpdated),
                    key(C::ResourceType),
                    key(C::Id),
                    key(C::Version),
                ])
                .lt(Expr::tuple([
                    Expr::val(instant(self.backend(), after.last_updated)),
                    Expr::val(after.resource_type.as_str()),
                    Expr::val(after.id.as_str()),
                    Expr::val(to_db_version(after.version)),
                ])),
            );
        }
        self.versions(query.into_query()).await
    }

    #[tracing::instrument(skip_all, fields(resource_type = %resource_type, id = %id))]
    async fn read_current(
        &self,
        resource_type: ResourceType,
        id: &str,
    ) -> Result<Option<SealedVersion>, StoreError> {
        let select = resource_version::Entity::find()
            .filter(resource_version::Column::ResourceType.eq(resource_type.as_str()))
            .filter(resource_version::Column::Id.eq(id))
            .order_by_desc(resource_version::Column::Version)
            .limit(1);
        // After an erasure the version rows keep their sealed bodies; the destroyed key (its
        // tombstone comes with the row) is what makes them unreadable, so this returns them
        // like any other.
        Ok(self.versions(select.into_query()).await?.pop())
    }

    #[tracing::instrument(skip_all, fields(resource_type = %resource_type, ids = ids.len()))]
    async fn read_currents(
        &self,
        resource_type: ResourceType,
        ids: &[String],
    ) -> Result<Vec<SealedVersion>, StoreError> {
        let mut found = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(MAX_BOUND_VALUES) {
            let select = match self.backend() {
                Backend::Postgres => newest_versions_postgres(resource_type, chunk),
                Backend::Sqlite => newest_versions_sqlite(resource_type, chunk),
            };
            found.extend(self.versions(select).await?);
        }
        Ok(found)
    }

    #[tracing::instrument(skip_all, fields(resource_type = %query.resource_type, clauses = query.clauses.len()))]
    async fn search(&self, query: &SearchQuery) -> Result<Vec<SearchMatch>, StoreError> {
        let _permit = self.search_permit().await?;
        let rows = self
            .db
            .query_all(&search_statement(query, self.backend()))
            .await
            .map_err(unavailable)?;
        rows.iter()
            .map(|row| {
                let sort_value = match query.order.key {
                    SortKey::Id => None,
                    _ => row.try_get("", SORT_VALUE).map_err(unavailable)?,
                };
                Ok(SearchMatch {
                    version: to_stored(row)?,
                    sort_value,
                })
            })
            .collect()
    }

    #[tracing::instrument(skip_all, fields(resource_type = %query.resource_type))]
    async fn count(&self, query: &SearchQuery) -> Result<u64, StoreError> {
        let _permit = self.search_permit().await?;
        let row = self
            .db
            .query_one(&count_statement(query, self.backend()))
            .await
            .map_err(unavailable)?;
        let matches: i64 = match row {
            Some(row) => row.try_get("", "matches").map_err(unavailable)?,
            None => 0,
        };
        Ok(u64::try_from(matches).unwrap_or(0))
    }

    async fn claim_holder(
        &self,
        resource_type: ResourceType,
        claim: BlindToken,
    ) -> Result<Option<String>, StoreError> {
        let select = Query::select()
            .column(name("id"))
            .from(name(CONDITIONAL_CLAIM))
            .and_where(Expr::col(name("resource_type")).eq(resource_type.as_str()))
            .and_where(Expr::col(name("claim")).eq(claim.0.to_vec()))
            .to_owned();
        let row = self.db.query_one(&select).await.map_err(unavailable)?;
        row.map(|row| row.try_get::<String>("", "id").map_err(unavailable))
            .transpose()
    }

    async fn release_claim(
        &self,
        resource_type: ResourceType,
        claim: BlindToken,
        holder: &str,
    ) -> Result<(), StoreError> {
        let delete = Query::delete()
            .from_table(name(CONDITIONAL_CLAIM))
            .and_where(Expr::col(name("resource_type")).eq(resource_type.as_str()))
            .and_where(Expr::col(name("claim")).eq(claim.0.to_vec()))
            .and_where(Expr::col(name("id")).eq(holder))
            .to_owned();
        self.db.execute(&delete).await.map_err(unavailable)?;
        Ok(())
    }

    #[tracing::instrument(skip_all)]
    async fn erase(
        &self,
        key_owner: &KeyOwner,
        at: OffsetDateTime,
        audit: &AuditEntry,
    ) -> Result<Erasure, StoreError> {
        let key_owner = key_owner.as_str();
        let key_owner = key_owner.as_ref();
        let txn = self.db.begin().await.map_err(unavailable)?;
        destroy_key(&txn, key_owner, at)
            .await
            .map_err(unavailable)?;
        if let Some(insert) = insert_entries(std::slice::from_ref(audit)).map_err(unavailable)? {
            txn.execute(&insert).await.map_err(unavailable)?;
        }
        let resources = resource::Entity::find()
            .filter(resource::Column::KeyOwner.eq(key_owner))
            .all(&txn)
            .await
            .map_err(unavailable)?;
        let mut erasure = Erasure::default();
        for head in &resources {
            erasure.resources += 1;
            erasure.versions += u64::try_from(head.version).unwrap_or(0);
        }
        let in_compartment = Query::select()
            .columns([name("resource_type"), name("id")])
            .from(name(RESOURCE))
            .and_where(Expr::col(name("key_owner")).eq(key_owner))
            .to_owned();
        for table in INDEX_TABLES {
            let delete = Query::delete()
                .from_table(name(table))
                .and_where(
                    Expr::tuple([Expr::col(name("resource_type")), Expr::col(name("id"))])
                        .in_subquery(in_compartment.clone()),
                )
                .to_owned();
            txn.execute(&delete).await.map_err(unavailable)?;
        }
        let hide = Query::update()
            .table(name(RESOURCE))
            .value(name("deleted"), true)
            .and_where(Expr::col(name("key_owner")).eq(key_owner))
            .to_owned();
        txn.execute(&hide).await.map_err(unavailable)?;
        txn.commit().await.map_err(unavailable)?;
        Ok(erasure)
    }

    #[tracing::instrument(skip_all, fields(resource_type = %resource_type, id = %id, version))]
    async fn replace_index(
        &self,
        resource_type: ResourceType,
        id: &str,
        version: u64,
        index: IndexRows,
    ) -> Result<bool, StoreError> {
        let txn = self.db.begin().await.map_err(unavailable)?;
        // Writing the head row first takes its lock (and SQLite's write lock) for the rest of
        // the transaction, so no new version can land between the check and the new rows.
        let still_current = Query::update()
            .table(name(RESOURCE))
            .value(name("version"), to_db_version(version))
            .and_where(Expr::col(name("resource_type")).eq(resource_type.as_str()))
            .and_where(Expr::col(name("id")).eq(id))
            .and_where(Expr::col(name("version")).eq(to_db_version(version)))
            .and_where(Expr::col(name("deleted")).eq(false))
            .to_owned();
        let result = txn.execute(&still_current).await.map_err(unavailable)?;
        if result.rows_affected() != 1 {
            return Ok(false);
        }
        clear_index(&txn, &[(resource_type, id)], false)
            .await
            .map_err(unavailable)?;
        write_index(&txn, self.backend(), &[(resource_type, id, &index)])
            .await
            .map_err(unavailable)?;
        txn.commit().await.map_err(unavailable)?;
        Ok(true)
    }

    async fn index_generation(&self) -> Result<u32, StoreError> {
        let select = Query::select()
            .column(name("generation"))
            .from(name(INDEX_STATE))
            .and_where(Expr::col(name("id")).eq(1))
            .to_owned();
        let row = self.db.query_one(&select).await.map_err(unavailable)?;
        let generation: i32 = match row {
            Some(row) => row.try_get("", "generation").map_err(unavailable)?,
            None => 1,
        };
        Ok(u32::try_from(generation).unwrap_or(1))
    }

    async fn set_index_generation(&self, generation: u32) -> Result<(), StoreError> {
        let update = Query::update()
            .table(name(INDEX_STATE))
            .value(
                name("generation"),
                i32::try_from(generation).unwrap_or(i32::MAX),
            )
            .and_where(Expr::col(name("id")).eq(1))
            .to_owned();
        self.db.execute(&update).await.map_err(unavailable)?;
        Ok(())
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.ping_db().await.map_err(unavailable)
    }
}

impl SqlStore {
    /// Runs a select of `resource_version` rows with their owners' keys joined in.
    async fn versions(
        &self,
        mut select: SelectStatement,
    ) -> Result<Vec<SealedVersion>, StoreError> {
        join_owner_key(&mut select, RESOURCE_VERSION);
        let rows = self.db.query_all(&select).await.map_err(unavailable)?;
        rows.iter().map(to_stored).collect()
    }
}

/// The newest version of each of `ids`, on PostgreSQL: one primary-key lookup per id, a
/// nested loop whatever the statistics say. (The head table joined to an `IN` list was
/// planned, on tables grown by a bulk import that no ANALYZE had seen yet, as a scan of every
/// head of the type: an import chunk's lookup grew with the table, 15 ms at 100,000 rows and
/// seconds under load; the import slowed from 11,000 to 1,300 resources/s.) The `LIMIT`
/// keeps the planner from flattening the lateral subquery into a join it could reorder.
fn newest_versions_postgres(resource_type: ResourceType, ids: &[String]) -> SelectStatement {
    let newest = Query::select()
        .column(Asterisk)
        .from(name(RESOURCE_VERSION))
        .and_where(Expr::col(name("resource_type")).eq(resource_type.as_str()))
        .and_where(
            Expr::col((name(RESOURCE_VERSION), name("id"))).equals((name(WANTED), name(WANTED))),
        )
        .order_by(name("version"), Order::Desc)
        .limit(1)
        .to_owned();
    let mut select = resource_version::Entity::find().into_query();
    select
        .from_clear()
        .from_function(
            Func::cust(name("unnest")).arg(Expr::val(ids.to_vec())),
            name(WANTED),
        )
        .join_lateral(
            JoinType::InnerJoin,
            newest,
            name(RESOURCE_VERSION),
            Expr::cust("TRUE"),
        );
    select
}

/// The newest version of each of `ids`, on SQLite: its planner looks each `IN` value up in
/// the head table's primary key.
fn newest_versions_sqlite(resource_type: ResourceType, ids: &[String]) -> SelectStatement {
    let heads = Query::select()
        .columns([name("resource_type"), name("id"), name("version")])
        .from(name(RESOURCE))
        .and_where(Expr::col(name("resource_type")).eq(resource_type.as_str()))
        .and_where(Expr::col(name("id")).is_in(ids.iter().cloned()))
        .to_owned();
    resource_version::Entity::find()
        .filter(
            Expr::tuple([
                Expr::col((name(RESOURCE_VERSION), name("resource_type"))),
                Expr::col((name(RESOURCE_VERSION), name("id"))),
                Expr::col((name(RESOURCE_VERSION), name("version"))),
            ])
            .in_subquery(heads),
        )
        .into_query()
}

/// The alias of the ids a lookup wants (see [`newest_versions_postgres`]).
const WANTED: &str = "wanted";

/// A version row with its owner's key (see [`join_owner_key`]).
fn to_stored(row: &QueryResult) -> Result<SealedVersion, StoreError> {
    let model = <resource_version::Model as FromQueryResult>::from_query_result(row, "")
        .map_err(unavailable)?;
    let corrupt = |what| StoreError::Corrupt {
        resource_type: model.resource_type.clone(),
        id: model.id.clone(),
        what,
    };
    let resource_type =
        ResourceType::parse(&model.resource_type).map_err(|_| corrupt("unknown resource type"))?;
    let version = u64::try_from(model.version).map_err(|_| corrupt("negative version number"))?;
    let key = joined_record(row).map_err(StoreError::Unavailable)?;
    let key_owner =
        KeyOwner::parse(&model.key_owner).ok_or_else(|| corrupt("unknown key owner"))?;
    Ok(SealedVersion {
        resource_type,
        id: model.id,
        version,
        last_updated: model.last_updated,
        deleted: model.deleted,
        key_owner,
        key,
        body: model.body.0,
    })
}

/// Deletes a resource's index rows, and its conditional claims too `with_claims`.
impl SqlStore {
    /// Waits for a search's turn (see `SqlStore::searches`); the request's time limit bounds
    /// the wait.
    async fn search_permit(&self) -> Result<tokio::sync::SemaphorePermit<'_>, StoreError> {
        self.searches
            .acquire()
            .await
            .map_err(|err| StoreError::Unavailable(Box::new(err)))
    }
}

pub(crate) fn unavailable(err: DbErr) -> StoreError {
    StoreError::Unavailable(Box::new(err))
}

/// Versions are u64 in the domain and BIGINT in SQL; no resource reaches 2^63 versions.
pub(crate) fn to_db_version(version: u64) -> i64 {
    i64::try_from(version).unwrap_or(i64::MAX)
}
