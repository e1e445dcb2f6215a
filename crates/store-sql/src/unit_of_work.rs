//! Committing a unit of work ([`Changes`]) in one database transaction with a few statements
//! per table, whatever its size: a transaction Bundle or an import chunk of thousands of
//! resources is a dozen round trips, not seven per resource (which left `cairn import` waiting
//! on the network nine tenths of its time; see `docs/performance.md`).
//!
//! The order of the statements keeps each guarantee of [`ResourceStore::commit`]:
//! 1. the head rows of the creates, `ON CONFLICT DO NOTHING RETURNING` their keys: a key not
//!    returned exists already (or a racing transaction committed it first) and fails the unit;
//! 2. the conditional-create claims, the same way (a racing claim waits for its holder's
//!    commit, then is refused);
//! 3. the updates' compare-and-set of their head rows, one by one and in order (a unit may
//!    update what it created in step 1), then their old index rows cleared;
//! 4. every version row; the index rows of each resource's last write; the new data keys;
//! 5. the key check of every sealed version, under a shared lock on the key rows, so that an
//!    erasure either commits before (the write fails) or waits for this unit's commit;
//! 6. the unit's audit entries.
//!
//! [`ResourceStore::commit`]: records::ResourceStore::commit

use std::collections::{HashMap, HashSet};
use std::hash::Hash;

use fhir_model::ResourceType;
use phi_crypto::{KeyOwner, KeyRecord, KeyState};
use records::{Changes, NewVersion, StoreError, Write};
use sea_orm::sea_query::{Expr, ExprTrait, OnConflict, Query};
use sea_orm::{ConnectionTrait, DatabaseTransaction, TransactionTrait, TryGetable};

use crate::audit_log::insert_entries;
use crate::connect::{Backend, SqlStore};
use crate::index_write::{clear_index, insert_rows, write_index};
use crate::instants::instant;
use crate::keys::{insert_if_absent_statements, records_of};
use crate::resources::{to_db_version, unavailable};
use crate::tables::{CONDITIONAL_CLAIM, RESOURCE, RESOURCE_VERSION, name};

pub(crate) async fn commit(store: &SqlStore, changes: Changes) -> Result<(), StoreError> {
    let backend = store.backend();
    // The first statement writes (a head row), so SQLite takes its write lock (waiting its
    // busy timeout) at once instead of failing to upgrade a read transaction later.
    let txn = store.db.begin().await.map_err(unavailable)?;
    let writes = &changes.writes;
    let creates: Vec<&NewVersion> = writes
        .iter()
        .filter(|w| w.expected.is_none())
        .map(|w| &w.version)
        .collect();
    insert_heads(&txn, backend, &creates).await?;
    insert_claims(&txn, &creates).await?;
    update_heads(&txn, backend, writes).await?;
    insert_versions(&txn, backend, writes).await?;
    // Each resource's index rows are those of its last write in the unit.
    let mut last: HashMap<(ResourceType, &str), usize> = HashMap::new();
    for (n, write) in writes.iter().enumerate() {
        last.insert((write.version.resource_type, write.version.id.as_str()), n);
    }
    let index: Vec<_> = writes
        .iter()
        .enumerate()
        .filter(|(n, w)| last[&(w.version.resource_type, w.version.id.as_str())] == *n)
        .map(|(_, w)| {
            (
                w.version.resource_type,
                w.version.id.as_str(),
                &w.version.index,
            )
        })
        .collect();
    write_index(&txn, backend, &index)
        .await
        .map_err(unavailable)?;
    insert_new_keys(&txn, writes).await?;
    check_keys(&txn, writes).await?;
    let mut audit: Vec<_> = writes
        .iter()
        .filter_map(|w| w.version.audit.clone())
        .collect();
    audit.extend(changes.audit);
    // The unit's audit entries commit with it, or none do.
    if let Some(insert) = insert_entries(&audit).map_err(unavailable)? {
        txn.execute(&insert).await.map_err(unavailable)?;
    }
    // Dropping the transaction on an error above rolls everything back.
    txn.commit().await.map_err(unavailable)
}

/// The columns a head row and a version row share, in [`head_row`]'s order.
const HEAD_COLUMNS: [&str; 6] = [
    "resource_type",
    "id",
    "version",
    "last_updated",
    "deleted",
    "key_owner",
];

fn head_row(backend: Backend, v: &NewVersion) -> Vec<sea_orm::Value> {
    vec![
        v.resource_type.as_str().into(),
        v.id.as_str().into(),
        to_db_version(v.version).into(),
        instant(backend, v.last_updated),
        v.deleted.into(),
        v.key_owner.as_str().into_owned().into(),
    ]
}

/// Step 1: the creates' head rows. The primary key on (type, id) decides races: a key that
/// exists, or that a racing transaction commits first, is not inserted, and the unit fails.
async fn insert_heads(
    txn: &DatabaseTransaction,
    backend: Backend,
    creates: &[&NewVersion],
) -> Result<(), StoreError> {
    let rows = creates.iter().map(|v| head_row(backend, v));
    let inserted: HashSet<(String, String)> =
        insert_absent(txn, RESOURCE, &HEAD_COLUMNS, "id", rows).await?;
    match creates
        .iter()
        .find(|v| !inserted.contains(&(v.resource_type.as_str().to_owned(), v.id.clone())))
    {
        Some(v) => Err(StoreError::AlreadyExists {
            resource_type: v.resource_type,
            id: v.id.clone(),
        }),
        None => Ok(()),
    }
}

/// Inserts `rows` into `table`, each unless a row with its key (`resource_type` and
/// `key_column`, the table's primary key) exists or a racing transaction commits one first
/// (PostgreSQL waits for it); the keys of the rows it inserted.
async fn insert_absent<K>(
    txn: &DatabaseTransaction,
    table: &str,
    columns: &[&str],
    key_column: &str,
    rows: impl IntoIterator<Item = Vec<sea_orm::Value>>,
) -> Result<HashSet<(String, K)>, StoreError>
where
    K: TryGetable + Eq + Hash,
{
    let mut inserted = HashSet::new();
    for mut insert in insert_rows(table, columns, rows).map_err(unavailable)? {
        let key = [name("resource_type"), name(key_column)];
        insert
            .on_conflict(OnConflict::columns(key.clone()).do_nothing().to_owned())
            .returning(Query::returning().columns(key));
        for row in txn.query_all(&insert).await.map_err(unavailable)? {
            inserted.insert((
                row.try_get("", "resource_type").map_err(unavailable)?,
                row.try_get("", key_column).map_err(unavailable)?,
            ));
        }
    }
    Ok(inserted)
}

/// Step 2: the conditional creates' claims. The primary key on (type, claim) decides races:
/// the loser waits for the winner's commit, then is refused here, writing nothing.
async fn insert_claims(
    txn: &DatabaseTransaction,
    creates: &[&NewVersion],
) -> Result<(), StoreError> {
    let claimed: Vec<(&NewVersion, Vec<u8>)> = creates
        .iter()
        .filter_map(|v| v.claim.as_ref().map(|c| (*v, c.0.to_vec())))
        .collect();
    let rows = claimed.iter().map(|(v, claim)| {
        vec![
            v.resource_type.as_str().into(),
            claim.clone().into(),
            v.id.as_str().into(),
        ]
    });
    let columns = ["resource_type", "claim", "id"];
    let inserted: HashSet<(String, Vec<u8>)> =
        insert_absent(txn, CONDITIONAL_CLAIM, &columns, "claim", rows).await?;
    match claimed.iter().find(|(v, claim)| {
        !inserted.contains(&(v.resource_type.as_str().to_owned(), claim.clone()))
    }) {
        Some((v, _)) => Err(StoreError::ClaimTaken {
            resource_type: v.resource_type,
        }),
        None => Ok(()),
    }
}

/// Step 3: compare-and-set on each updated head row, in the unit's order (exactly one of two
/// racing updates of the same version moves it), then the updated resources' old index rows
/// cleared. Conditional claims stay with a live resource (releasing them on update would let
/// a racing conditional create through); a deletion releases them.
async fn update_heads(
    txn: &DatabaseTransaction,
    backend: Backend,
    writes: &[Write],
) -> Result<(), StoreError> {
    let mut cleared: Vec<(ResourceType, &str)> = Vec::new();
    let mut released: Vec<(ResourceType, &str)> = Vec::new();
    for Write { version, expected } in writes {
        let Some(expected) = expected else { continue };
        let (resource_type, id) = (version.resource_type, version.id.as_str());
        let moved = Query::update()
            .table(name(RESOURCE))
            .value(name("version"), to_db_version(version.version))
            .value(name("last_updated"), instant(backend, version.last_updated))
            .value(name("deleted"), version.deleted)
            .value(name("key_owner"), version.key_owner.as_str().into_owned())
            .and_where(Expr::col(name("resource_type")).eq(resource_type.as_str()))
            .and_where(Expr::col(name("id")).eq(id))
            .and_where(Expr::col(name("version")).eq(to_db_version(*expected)))
            .to_owned();
        let result = txn.execute(&moved).await.map_err(unavailable)?;
        if result.rows_affected() != 1 {
            return Err(StoreError::VersionConflict {
                resource_type,
                id: id.to_owned(),
            });
        }
        if version.deleted {
            released.push((resource_type, id));
        } else {
            cleared.push((resource_type, id));
        }
    }
    for (resources, with_claims) in [(cleared, false), (released, true)] {
        if !resources.is_empty() {
            clear_index(txn, &resources, with_claims)
                .await
                .map_err(unavailable)?;
        }
    }
    Ok(())
}

/// Step 4: every write's version row.
async fn insert_versions(
    txn: &DatabaseTransaction,
    backend: Backend,
    writes: &[Write],
) -> Result<(), StoreError> {
    let columns: Vec<&str> = HEAD_COLUMNS.iter().copied().chain(["body"]).collect();
    let rows = writes.iter().map(|Write { version: v, .. }| {
        let mut row = head_row(backend, v);
        row.push(v.body.clone().into());
        row
    });
    for insert in insert_rows(RESOURCE_VERSION, &columns, rows).map_err(unavailable)? {
        txn.execute(&insert).await.map_err(unavailable)?;
    }
    Ok(())
}

/// Step 4: the data keys of owners new in this unit (if the owner still has none: a racing
/// writer's key wins, and the check of step 5 fails this unit so that it seals again).
async fn insert_new_keys(txn: &DatabaseTransaction, writes: &[Write]) -> Result<(), StoreError> {
    let mut seen = HashSet::new();
    let records: Vec<_> = writes
        .iter()
        .filter_map(|w| w.version.new_key.as_ref())
        .filter(|record| seen.insert(record.owner.clone()))
        .collect();
    for insert in insert_if_absent_statements(&records).map_err(unavailable)? {
        txn.execute(&insert).await.map_err(unavailable)?;
    }
    Ok(())
}

/// Step 5: every sealed version's key is its owner's stored, live key. The shared lock on
/// the key rows excludes an erasure until this unit commits: a write either commits before an
/// erasure (and is erased with the rest) or sees it and rolls back. Deletion markers have no
/// body and no key.
async fn check_keys(txn: &DatabaseTransaction, writes: &[Write]) -> Result<(), StoreError> {
    let sealed: Vec<&NewVersion> = writes
        .iter()
        .map(|w| &w.version)
        .filter(|v| !v.deleted)
        .collect();
    let owners: Vec<KeyOwner> = sealed
        .iter()
        .map(|v| v.key_owner.clone())
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    let stored: HashMap<KeyOwner, KeyRecord> = records_of(txn, &owners, true)
        .await
        .map_err(StoreError::Unavailable)?
        .into_iter()
        .map(|record| (record.owner.clone(), record))
        .collect();
    for version in sealed {
        let key_owner = version.key_owner.clone();
        match stored.get(&version.key_owner) {
            Some(record) if matches!(record.state, KeyState::Destroyed { .. }) => {
                return Err(StoreError::Erased { key_owner });
            }
            Some(record) if record.key_id == version.key_id => {}
            _ => return Err(StoreError::KeyChanged { key_owner }),
        }
    }
    Ok(())
}
