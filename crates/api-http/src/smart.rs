//! `GET /fhir/.well-known/smart-configuration`: SMART App Launch discovery, answering what
//! Cairn has. Cairn is not an OAuth authorization server: an administrator issues each client a
//! bearer token (a biscuit; `cairn token issue`), narrowed by SMART v2 scopes. So the document
//! lists the scopes and permissions Cairn enforces and no authorization or token endpoint,
//! grant type or PKCE method, because there is none to use; `/fhir/metadata` says the same in
//! `rest.security`.

use poem_openapi::payload::Json;
use poem_openapi::{Object, OpenApi, Tags};

#[derive(Tags)]
enum SmartTags {
    /// How clients find out how to authenticate.
    Discovery,
}

/// The SMART configuration document (SMART App Launch 2.x, `.well-known/smart-configuration`).
#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct SmartConfiguration {
    /// SMART capabilities: SMART v2 scopes, for patients and for users.
    capabilities: Vec<String>,
    /// The scopes a token may carry (each narrows what the token's role allows).
    scopes_supported: Vec<String>,
    /// None: tokens are issued out of band, not through an OAuth grant.
    grant_types_supported: Vec<String>,
    /// None: there is no authorization endpoint to use PKCE with.
    code_challenge_methods_supported: Vec<String>,
    /// None: there is no token endpoint.
    token_endpoint_auth_methods_supported: Vec<String>,
    /// None: there is no authorization endpoint.
    response_types_supported: Vec<String>,
}

/// How a client gets a token, as `/fhir/metadata` says in `rest.security.description`.
pub(crate) const HOW_TO_AUTHENTICATE: &str = "Every request but /health/*, /openapi.json and /fhir/.well-known/smart-configuration carries \
     `Authorization: Bearer <token>`: a biscuit token signed by this server's key, which an \
     administrator issues to each person or system (`cairn token issue --sub … --role … \
     [--scope \"user/Patient.rs\"] [--patient Patient/<id>]`) and anyone holding it may narrow \
     offline (`cairn token attenuate`). Scopes follow SMART v2 (patient|user|system/<Type|*>.\
     <cruds>) and only narrow the role. There is no OAuth authorization or token endpoint: \
     /fhir/.well-known/smart-configuration lists the scopes and no grant types.";

pub(crate) struct SmartApi;

#[OpenApi(tag = "SmartTags::Discovery")]
impl SmartApi {
    /// SMART discovery: the scopes Cairn enforces, and that it issues tokens out of band.
    #[oai(path = "/fhir/.well-known/smart-configuration", method = "get")]
    async fn smart_configuration(&self) -> Json<SmartConfiguration> {
        let mut scopes_supported = Vec::new();
        for context in ["patient", "user", "system"] {
            for target in ["*", "Patient", "Immunization"] {
                scopes_supported.push(format!("{context}/{target}.rs"));
                if context != "patient" {
                    scopes_supported.push(format!("{context}/{target}.cruds"));
                }
            }
        }
        Json(SmartConfiguration {
            capabilities: ["permission-v2", "permission-patient", "permission-user"]
                .map(str::to_owned)
                .to_vec(),
            scopes_supported,
            grant_types_supported: Vec::new(),
            code_challenge_methods_supported: Vec::new(),
            token_endpoint_auth_methods_supported: Vec::new(),
            response_types_supported: Vec::new(),
        })
    }
}
