//! Registry credentials on the API: `POST /auth` (`docker login`) and the
//! `X-Registry-Auth` header that pulls and pushes carry them in.

use axum::extract::State;
use axum::http::HeaderMap;
use axum::Json;


use super::{ApiError, AppState};
use crate::apitypes::auth::{AuthConfig, AuthResponse};

/// The header the docker CLI and docker-py send credentials in.
pub const REGISTRY_AUTH_HEADER: &str = "X-Registry-Auth";

/// The credentials of a pull or push request's `X-Registry-Auth` header,
/// decoded as dockerd does: a missing or undecodable header is an anonymous
/// request, not an error.
pub fn registry_auth(headers: &HeaderMap) -> Option<AuthConfig> {
    let value = headers.get(REGISTRY_AUTH_HEADER)?.to_str().ok()?;
    AuthConfig::from_registry_auth_header(value)
}

/// `POST /auth`: checks the credentials against the registry (following
/// its token flow); stores nothing, as dockerd stores nothing.
pub async fn login(State(state): State<AppState>, Json(credentials): Json<AuthConfig>) -> Result<Json<AuthResponse>, ApiError> {
    let identity_token = state.blocking(move |e| e.images().login(&credentials.serveraddress.clone(), &credentials)).await?;
    Ok(Json(AuthResponse { identity_token: identity_token.unwrap_or_default(), status: "Login Succeeded".into() }))
}
