//! The sea-orm adapter: Cairn's storage ports on PostgreSQL (production) and SQLite (embedded
//! default), with one code path for both.
//!
//! Only this crate knows SQL. Entity structs and `DbErr` never leave it: callers see the ports
//! of `records`, `access` and `audit-chain` and their errors.

mod audit_log;
mod connect;
mod entity;
mod group_commit;
mod index_write;
mod instants;
mod keys;
mod resources;
mod search;
mod tables;
mod tokens;
mod unit_of_work;

#[cfg(feature = "testing")]
pub mod testing;

pub use connect::{Backend, ConnectError, SqlStore, StoreOptions};
pub use group_commit::GroupCommit;
