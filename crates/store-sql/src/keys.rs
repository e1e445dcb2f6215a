//! [`KeyStore`] on sea-orm: the `data_key` table of wrapped data keys and tombstones.

use async_trait::async_trait;
use phi_crypto::{
    KekUsage, KeyId, KeyOwner, KeyRecord, KeyState, KeyStore, StoreFailure, WrappedKey,
};
use sea_orm::sea_query::{
    Expr, ExprTrait, Func, InsertStatement, OnConflict, Order, Query, SelectStatement, TableRef,
};
use sea_orm::{ConnectionTrait, DbErr, QueryResult};
use time::OffsetDateTime;

use crate::connect::SqlStore;
use crate::index_write::{MAX_BOUND_VALUES, insert_rows};
use crate::tables::{DATA_KEY, name};

const COLUMNS: [&str; 6] = [
    "owner",
    "key_id",
    "kek_version",
    "wrapped",
    "created_at",
    "destroyed_at",
];

fn select() -> SelectStatement {
    Query::select()
        .columns(COLUMNS.map(name))
        .from(name(DATA_KEY))
        .to_owned()
}

fn failure(err: DbErr) -> StoreFailure {
    Box::new(err)
}

fn corrupt(what: &str) -> StoreFailure {
    format!("data_key row is corrupt: {what}").into()
}

fn to_record(row: &QueryResult) -> Result<KeyRecord, StoreFailure> {
    prefixed_record(row, "")
}

/// The key record in `row`'s columns named `{pre}owner`, `{pre}key_id`, ….
fn prefixed_record(row: &QueryResult, pre: &str) -> Result<KeyRecord, StoreFailure> {
    let owner: String = row.try_get(pre, "owner").map_err(failure)?;
    let key_id: Vec<u8> = row.try_get(pre, "key_id").map_err(failure)?;
    let kek_version: Option<i32> = row.try_get(pre, "kek_version").map_err(failure)?;
    let wrapped: Option<Vec<u8>> = row.try_get(pre, "wrapped").map_err(failure)?;
    let created: OffsetDateTime = row.try_get(pre, "created_at").map_err(failure)?;
    let destroyed: Option<OffsetDateTime> = row.try_get(pre, "destroyed_at").map_err(failure)?;
    let state = match (destroyed, kek_version, wrapped) {
        (Some(at), _, _) => KeyState::Destroyed { at },
        (None, Some(version), Some(bytes)) => KeyState::Wrapped(WrappedKey {
            kek_version: u32::try_from(version).map_err(|_| corrupt("negative kek_version"))?,
            bytes,
        }),
        (None, _, _) => return Err(corrupt("live key without a wrapping")),
    };
    Ok(KeyRecord {
        owner: KeyOwner::parse(&owner).ok_or_else(|| corrupt("unknown owner form"))?,
        key_id: KeyId::from_bytes(&key_id).ok_or_else(|| corrupt("key id length"))?,
        created,
        state,
    })
}

/// The prefix of the key columns a [`join_owner_key`] adds.
const JOINED: &str = "dk_";

/// Adds `LEFT JOIN data_key AS dk ON dk.owner = {version}.key_owner` to a select of resource
/// versions (the table or alias `version`), and the key's columns as `dk_owner`, `dk_key_id`,
/// …: the version comes with the key that opens it, in one statement and one snapshot.
pub(crate) fn join_owner_key(select: &mut SelectStatement, version: &str) {
    let key = JOINED.trim_end_matches('_');
    select.left_join(
        TableRef::Table(name(DATA_KEY).into(), Some(name(key).into())),
        Expr::col((name(key), name("owner"))).equals((name(version), name("key_owner"))),
    );
    for column in COLUMNS {
        select.expr_as(
            Expr::col((name(key), name(column))),
            name(&format!("{JOINED}{column}")),
        );
    }
}

/// The key record a [`join_owner_key`] brought into `row`; `None` if the owner has none.
pub(crate) fn joined_record(row: &QueryResult) -> Result<Option<KeyRecord>, StoreFailure> {
    let owner: Option<String> = row.try_get(JOINED, "owner").map_err(failure)?;
    match owner {
        Some(_) => prefixed_record(row, JOINED).map(Some),
        None => Ok(None),
    }
}

fn db_version(version: u32) -> i32 {
    i32::try_from(version).unwrap_or(i32::MAX)
}

/// The key records of those of `owners` that have one, in any order. With `lock`, each row is
/// locked in share mode until the transaction ends (PostgreSQL; SQLite's single writer
/// serializes anyway): a unit's key check holds an erasure off until it commits.
pub(crate) async fn records_of(
    db: &impl ConnectionTrait,
    owners: &[KeyOwner],
    lock: bool,
) -> Result<Vec<KeyRecord>, StoreFailure> {
    let mut found = Vec::with_capacity(owners.len());
    for chunk in owners.chunks(MAX_BOUND_VALUES) {
        let mut statement = select()
            .and_where(
                Expr::col(name("owner")).is_in(chunk.iter().map(|o| o.as_str().into_owned())),
            )
            .to_owned();
        if lock {
            statement.lock_shared();
        }
        for row in db.query_all(&statement).await.map_err(failure)? {
            found.push(to_record(&row)?);
        }
    }
    Ok(found)
}

/// `INSERT … ON CONFLICT (owner) DO NOTHING` of key records (several statements for very many):
/// the primary key on owner decides a race, and the loser reads the winner's key.
pub(crate) fn insert_if_absent_statements(
    records: &[&KeyRecord],
) -> Result<Vec<InsertStatement>, DbErr> {
    let rows = records.iter().map(|record| {
        let (kek_version, wrapped, destroyed) = match &record.state {
            KeyState::Wrapped(w) => (Some(db_version(w.kek_version)), Some(w.bytes.clone()), None),
            KeyState::Destroyed { at } => (None, None, Some(*at)),
        };
        vec![
            record.owner.as_str().as_ref().into(),
            record.key_id.as_bytes().to_vec().into(),
            kek_version.into(),
            wrapped.into(),
            record.created.into(),
            destroyed.into(),
        ]
    });
    let mut statements = insert_rows(DATA_KEY, &COLUMNS, rows)?;
    for statement in &mut statements {
        statement.on_conflict(OnConflict::column(name("owner")).do_nothing().to_owned());
    }
    Ok(statements)
}

/// Destroys `owner`'s key, or records a tombstone if it never had one.
pub(crate) async fn destroy_key(
    db: &impl ConnectionTrait,
    owner: &str,
    at: OffsetDateTime,
) -> Result<(), DbErr> {
    let update = Query::update()
        .table(name(DATA_KEY))
        .value(name("wrapped"), Option::<Vec<u8>>::None)
        .value(name("kek_version"), Option::<i32>::None)
        .value(name("destroyed_at"), at)
        .and_where(Expr::col(name("owner")).eq(owner))
        .and_where(Expr::col(name("destroyed_at")).is_null())
        .to_owned();
    db.execute(&update).await?;
    let tombstone = Query::insert()
        .into_table(name(DATA_KEY))
        .columns(["owner", "key_id", "created_at", "destroyed_at"].map(name))
        .values([
            owner.into(),
            vec![0u8; KeyId::LEN].into(),
            at.into(),
            at.into(),
        ])
        .map_err(|e| DbErr::Custom(e.to_string()))?
        .on_conflict(OnConflict::column(name("owner")).do_nothing().to_owned())
        .to_owned();
    db.execute(&tombstone).await?;
    Ok(())
}

#[async_trait]
impl KeyStore for SqlStore {
    async fn find(&self, owner: &KeyOwner) -> Result<Option<KeyRecord>, StoreFailure> {
        let statement = select()
            .and_where(Expr::col(name("owner")).eq(owner.as_str().as_ref()))
            .to_owned();
        self.db
            .query_one(&statement)
            .await
            .map_err(failure)?
            .map(|row| to_record(&row))
            .transpose()
    }

    async fn find_many(&self, owners: &[KeyOwner]) -> Result<Vec<KeyRecord>, StoreFailure> {
        records_of(&self.db, owners, false).await
    }

    async fn insert_if_absent(&self, record: KeyRecord) -> Result<KeyRecord, StoreFailure> {
        for insert in insert_if_absent_statements(&[&record]).map_err(failure)? {
            self.db.execute(&insert).await.map_err(failure)?;
        }
        self.find(&record.owner)
            .await?
            .ok_or_else(|| "the data key vanished right after it was stored".into())
    }

    async fn replace_wrapping(
        &self,
        owner: &KeyOwner,
        key_id: KeyId,
        expected_kek_version: u32,
        wrapped: WrappedKey,
    ) -> Result<bool, StoreFailure> {
        let update = Query::update()
            .table(name(DATA_KEY))
            .value(name("kek_version"), db_version(wrapped.kek_version))
            .value(name("wrapped"), wrapped.bytes)
            .value(name("rewrapped_at"), OffsetDateTime::now_utc())
            .and_where(Expr::col(name("owner")).eq(owner.as_str().as_ref()))
            .and_where(Expr::col(name("key_id")).eq(key_id.as_bytes().to_vec()))
            .and_where(Expr::col(name("kek_version")).eq(db_version(expected_kek_version)))
            .and_where(Expr::col(name("destroyed_at")).is_null())
            .to_owned();
        let result = self.db.execute(&update).await.map_err(failure)?;
        Ok(result.rows_affected() == 1)
    }

    async fn wrapped_by_other_than(
        &self,
        kek_version: u32,
        after: Option<&KeyOwner>,
        limit: u64,
    ) -> Result<Vec<KeyRecord>, StoreFailure> {
        let mut statement = select();
        statement
            .and_where(Expr::col(name("destroyed_at")).is_null())
            .and_where(Expr::col(name("kek_version")).ne(db_version(kek_version)))
            .order_by(name("owner"), Order::Asc)
            .limit(limit);
        if let Some(after) = after {
            statement.and_where(Expr::col(name("owner")).gt(after.as_str().as_ref()));
        }
        let rows = self.db.query_all(&statement).await.map_err(failure)?;
        rows.iter().map(to_record).collect()
    }

    async fn usage(&self) -> Result<Vec<KekUsage>, StoreFailure> {
        let statement = Query::select()
            .column(name("kek_version"))
            .expr_as(Func::count(Expr::col(name("owner"))), name("data_keys"))
            .from(name(DATA_KEY))
            .and_where(Expr::col(name("destroyed_at")).is_null())
            .group_by_col(name("kek_version"))
            .order_by(name("kek_version"), Order::Asc)
            .to_owned();
        let rows = self.db.query_all(&statement).await.map_err(failure)?;
        rows.iter()
            .map(|row| {
                let version: i32 = row.try_get("", "kek_version").map_err(failure)?;
                let count: i64 = row.try_get("", "data_keys").map_err(failure)?;
                Ok(KekUsage {
                    kek_version: u32::try_from(version).map_err(|_| corrupt("kek_version"))?,
                    data_keys: u64::try_from(count).unwrap_or(0),
                })
            })
            .collect()
    }

    async fn destroy(&self, owner: &KeyOwner, at: OffsetDateTime) -> Result<(), StoreFailure> {
        destroy_key(&self.db, &owner.as_str(), at)
            .await
            .map_err(failure)
    }
}
