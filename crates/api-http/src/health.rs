//! Liveness and readiness, for load balancers and orchestrators.

use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi, Tags};
use records::Records;

#[derive(Tags)]
enum HealthTags {
    /// Liveness and readiness probes.
    Health,
}

/// A probe's answer.
#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct HealthStatus {
    /// `live`, `ready` or `unavailable`.
    status: String,
}

#[derive(Debug, ApiResponse)]
enum ReadyResponse {
    /// The server can serve requests: the database answers.
    #[oai(status = 200)]
    Ready(Json<HealthStatus>),
    /// The database does not answer.
    #[oai(status = 503)]
    Unavailable(Json<HealthStatus>),
}

pub(crate) struct HealthApi {
    pub records: Records,
}

#[OpenApi(tag = "HealthTags::Health")]
impl HealthApi {
    /// Liveness: the process is up and serving HTTP.
    #[oai(path = "/health/live", method = "get")]
    async fn live(&self) -> Json<HealthStatus> {
        Json(HealthStatus {
            status: "live".into(),
        })
    }

    /// Readiness: the process can serve requests (its database answers).
    #[oai(path = "/health/ready", method = "get")]
    async fn ready(&self) -> ReadyResponse {
        match self.records.ready().await {
            Ok(()) => ReadyResponse::Ready(Json(HealthStatus {
                status: "ready".into(),
            })),
            Err(err) => {
                tracing::warn!(error = %err, "readiness check failed");
                ReadyResponse::Unavailable(Json(HealthStatus {
                    status: "unavailable".into(),
                }))
            }
        }
    }
}
