//! Table and column names for statements built with sea-query (the index and key tables have
//! no entities: they are written in bulk and read through joins).

use sea_orm::sea_query::{Alias, Expr};

pub(crate) const RESOURCE: &str = "resource";
pub(crate) const RESOURCE_VERSION: &str = "resource_version";
pub(crate) const DATA_KEY: &str = "data_key";
pub(crate) const SEARCH_BLIND: &str = "search_blind";
pub(crate) const SEARCH_TOKEN: &str = "search_token";
pub(crate) const SEARCH_REFERENCE: &str = "search_reference";
pub(crate) const SEARCH_DATE: &str = "search_date";
pub(crate) const SEARCH_STRING: &str = "search_string";

pub(crate) const CONDITIONAL_CLAIM: &str = "conditional_claim";
pub(crate) const INDEX_STATE: &str = "index_state";

pub(crate) const TOKEN_ISSUANCE: &str = "token_issuance";
pub(crate) const TOKEN_REVOCATION: &str = "token_revocation";

pub(crate) const AUDIT_INTAKE: &str = "audit_intake";
pub(crate) const AUDIT_ENTRY: &str = "audit_entry";
pub(crate) const AUDIT_NODE: &str = "audit_node";
pub(crate) const AUDIT_CHECKPOINT: &str = "audit_checkpoint";

/// Every table of rows derived from a resource's current version (index rows and conditional
/// claims), keyed by (resource_type, id): cleared when the resource changes or is erased.
pub(crate) const INDEX_TABLES: [&str; 6] = [
    SEARCH_BLIND,
    SEARCH_TOKEN,
    SEARCH_REFERENCE,
    SEARCH_DATE,
    SEARCH_STRING,
    CONDITIONAL_CLAIM,
];

pub(crate) fn name(name: &str) -> Alias {
    Alias::new(name)
}

/// `table.column` as an expression.
pub(crate) fn col(table: &str, column: &str) -> Expr {
    Expr::col((name(table), name(column)))
}
