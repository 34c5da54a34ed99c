//! `POST /auth` (`docker login`): the request is Docker's `AuthConfig`
//! (berth-model's, shared with the engine and the `X-Registry-Auth` header).

use serde::{Deserialize, Serialize};

pub use berth_model::AuthConfig;

/// `POST /auth`'s answer.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct AuthResponse {
    #[serde(rename = "IdentityToken", default)]
    pub identity_token: String,
    #[serde(rename = "Status", default)]
    pub status: String,
}
