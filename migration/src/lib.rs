//! Cairn's database schema, as an ordered history of migrations (sea-orm-migration).
//!
//! History is frozen: a released migration is never edited, only followed by a new one. The
//! migrations use sea-query's schema builder, so one history serves PostgreSQL and SQLite, and
//! they never import domain types (a later change to a type must not rewrite the past).

pub use sea_orm_migration::MigratorTrait;
use sea_orm_migration::prelude::*;

mod m20261122_000001_resources;
mod m20261122_000002_phi_protection;
mod m20261122_000003_conditional_claims;
mod m20261122_000004_blind_index_by_token;
mod m20261122_000005_access_tokens;
mod m20261123_000006_audit_log;
mod m20261123_000007_audit_patient_hash;
mod m20261129_000008_audit_intake;
mod m20261129_000009_audit_release_by_bytes;
mod m20261203_000010_sqlite_instants;
mod m20261203_000011_index_generation;
mod m20261203_000012_blind_index_token_first;

/// Every migration, oldest first.
#[derive(Debug)]
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261122_000001_resources::Migration),
            Box::new(m20261122_000002_phi_protection::Migration),
            Box::new(m20261122_000003_conditional_claims::Migration),
            Box::new(m20261122_000004_blind_index_by_token::Migration),
            Box::new(m20261122_000005_access_tokens::Migration),
            Box::new(m20261123_000006_audit_log::Migration),
            Box::new(m20261123_000007_audit_patient_hash::Migration),
            Box::new(m20261129_000008_audit_intake::Migration),
            Box::new(m20261129_000009_audit_release_by_bytes::Migration),
            Box::new(m20261203_000010_sqlite_instants::Migration),
            Box::new(m20261203_000011_index_generation::Migration),
            Box::new(m20261203_000012_blind_index_token_first::Migration),
        ]
    }
}
