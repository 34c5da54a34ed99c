//! Routes of object kinds the engine does not manage yet (plugins);
//! networks and volumes have modules of their own. They answer truthfully:
//! inspecting a plugin is Docker's 404, which `docker inspect NAME` relies
//! on while it tries each kind in turn.

use axum::extract::Path;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

use super::{ApiError, AppState};

/// The routes of this module.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/plugins", get(|| async { Json(json!([])) }))
        .route("/plugins/{name}/json", get(plugin_inspect))
}

async fn plugin_inspect(Path(name): Path<String>) -> ApiError {
    ApiError::not_found(format!("plugin \"{name}\" not found"))
}
