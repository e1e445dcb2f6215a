//! The core's errors. Each names the resource by type and id, never by content.

use fhir_model::{Issue, ResourceType};

use crate::ports::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum RecordsError {
    /// The submitted resource is not valid FHIR; `issues` lists every problem.
    #[error("the resource is invalid ({} issue(s))", issues.len())]
    Invalid { issues: Vec<Issue> },
    /// The body's resourceType is not the type named in the URL.
    #[error("the body is a {found} but the URL is for {expected}")]
    WrongType {
        expected: ResourceType,
        found: ResourceType,
    },
    #[error("{resource_type}/{id} is not known")]
    NotFound {
        resource_type: ResourceType,
        id: String,
    },
    #[error("{resource_type}/{id} was deleted")]
    Deleted {
        resource_type: ResourceType,
        id: String,
        version: u64,
    },
    #[error("{resource_type}/{id} already exists")]
    Conflict {
        resource_type: ResourceType,
        id: String,
    },
    #[error(transparent)]
    Store(StoreError),
}

impl From<StoreError> for RecordsError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::AlreadyExists { resource_type, id } => Self::Conflict { resource_type, id },
            other => Self::Store(other),
        }
    }
}
