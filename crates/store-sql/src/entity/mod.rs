//! sea-orm entities, private to the adapter.

pub(crate) mod resource;
pub(crate) mod resource_version;

use std::fmt;

use sea_orm::DeriveValueType;

/// A stored body: bytes the store keeps and never interprets. Debug shows only the length, so
/// a logged model never leaks PHI.
#[derive(Clone, PartialEq, Eq, DeriveValueType)]
pub(crate) struct Body(pub Vec<u8>);

impl fmt::Debug for Body {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Body({} bytes)", self.0.len())
    }
}
