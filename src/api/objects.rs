//! Routes of object kinds the engine does not manage yet (networks,
//! plugins) and volumes from the volume drivers. They answer truthfully:
//! inspecting a network is Docker's 404, which `docker inspect NAME` relies
//! on while it tries each kind in turn.

use axum::extract::{Path, State};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};

use super::{ApiError, AppState};

/// The routes of this module.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/networks", get(|| async { Json(json!([])) }))
        .route("/networks/{id}", get(network_inspect))
        .route("/volumes", get(volume_list))
        .route("/volumes/{name}", get(volume_inspect))
        .route("/plugins", get(|| async { Json(json!([])) }))
        .route("/plugins/{name}/json", get(plugin_inspect))
}

async fn network_inspect(Path(id): Path<String>) -> ApiError {
    ApiError::not_found(format!("network {id} not found"))
}

async fn plugin_inspect(Path(name): Path<String>) -> ApiError {
    ApiError::not_found(format!("plugin \"{name}\" not found"))
}

/// Docker's Volume object for one driver's volume.
fn volume_json(driver: &str, v: &berth_core::model::volume::VolumeInfo) -> Value {
    json!({
        "Name": v.name,
        "Driver": driver,
        "Mountpoint": v.mountpoint.as_ref().map(|p| p.display().to_string()).unwrap_or_default(),
        "CreatedAt": v.created_at,
        "Status": v.status,
        "Labels": {},
        "Scope": "local",
        "Options": null,
    })
}

async fn volume_list(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let (volumes, warnings) = state
        .blocking(|e| {
            let mut volumes = Vec::new();
            let mut warnings = Vec::new();
            for name in e.drivers().volume.names() {
                let Some(d) = e.drivers().volume.get(&name) else { continue };
                match d.list() {
                    Ok(list) => volumes.extend(list.iter().map(|v| volume_json(&name, v))),
                    // One failing driver must not hide the others' volumes.
                    Err(err) => warnings.push(format!("volume driver {name}: {err}")),
                }
            }
            Ok((volumes, warnings))
        })
        .await?;
    Ok(Json(json!({ "Volumes": volumes, "Warnings": if warnings.is_empty() { Value::Null } else { json!(warnings) } })))
}

async fn volume_inspect(State(state): State<AppState>, Path(name): Path<String>) -> Result<Json<Value>, ApiError> {
    let n = name.clone();
    let found = state
        .blocking(move |e| {
            for driver in e.drivers().volume.names() {
                if let Some(d) = e.drivers().volume.get(&driver) {
                    if let Ok(v) = d.get(&n) {
                        return Ok(Some(volume_json(&driver, &v)));
                    }
                }
            }
            Ok(None)
        })
        .await?;
    found.map(Json).ok_or_else(|| ApiError::not_found(format!("get {name}: no such volume")))
}
