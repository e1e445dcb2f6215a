//! Administration and compliance endpoints under `/admin`.

use poem::Request;
use poem_openapi::param::Query;
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi, Tags};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::auth::BearerAuth;
use crate::context::RequestId;
use crate::errors::FhirError;

#[derive(Tags)]
enum AdminTags {
    /// Token issuances and other evidence for administrators and auditors.
    Admin,
}

/// One issued token, as recorded at issuance (never the token itself).
#[derive(Debug, Object)]
#[oai(rename_all = "camelCase", skip_serializing_if_is_none)]
struct TokenIssuance {
    /// The token's first revocation id (hex): `cairn token revoke --id` takes it.
    token_id: String,
    subject: String,
    role: String,
    organization: Option<String>,
    patient: Option<String>,
    /// Space-separated SMART-style scopes.
    scopes: String,
    purpose: Option<String>,
    issued_at: String,
    expires_at: String,
    revoked_at: Option<String>,
    /// Neither expired nor revoked now.
    active: bool,
}

#[derive(Debug, ApiResponse)]
enum TokensResponse {
    /// Issuances, newest first.
    #[oai(status = 200)]
    Ok(Json<Vec<TokenIssuance>>),
}

pub(crate) struct AdminApi {
    /// The core, which decides who may list tokens.
    pub records: records::Records,
    /// The core's token use cases.
    pub tokens: records::tokens::Tokens,
}

fn instant(at: OffsetDateTime) -> String {
    at.format(&Rfc3339).unwrap_or_default()
}

#[OpenApi(tag = "AdminTags::Admin")]
impl AdminApi {
    /// Token issuances for access reviews: by default the active ones.
    ///
    /// `all=true` adds expired and revoked tokens; `subject` keeps one holder's. Admins and
    /// auditors only.
    #[oai(path = "/admin/tokens", method = "get")]
    async fn tokens(
        &self,
        request: &Request,
        subject: Query<Option<String>>,
        all: Query<Option<bool>>,
        auth: BearerAuth,
    ) -> Result<TokensResponse, FhirError> {
        let request_id = RequestId::of(request);
        let issuances = self
            .records
            .session(auth.0, &request_id.0)
            .token_issuances(&self.tokens, subject.0.as_deref(), all.0.unwrap_or(false))
            .await
            .map_err(|err| FhirError::from_records(err, &request_id))?;
        let listed = issuances
            .into_iter()
            .map(|i| TokenIssuance {
                active: self.tokens.is_active(&i),
                token_id: i.token_id,
                subject: i.subject,
                role: i.role,
                organization: i.organization,
                patient: i.patient,
                scopes: i.scopes,
                purpose: i.purpose,
                issued_at: instant(i.issued_at),
                expires_at: instant(i.expires_at),
                revoked_at: i.revoked_at.map(instant),
            })
            .collect();
        Ok(TokensResponse::Ok(Json(listed)))
    }
}
