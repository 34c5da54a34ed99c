//! `/plugins` routes: Docker's managed-plugin API (`ls`, `inspect`,
//! `enable`, `disable`, `rm`, `set`) over berth's plugin manager, plus
//! berth's own `POST /plugins/install` (a tar of a plugin directory), since
//! berth plugins are WebAssembly components or dylibs, not images pulled
//! from a registry. This module translates; the manager decides.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use berth_plugins::{InstallOptions, Kind, PluginError, PluginInfo, PluginManager, Runtime};
use serde_json::Value;

use super::images::Params;
use super::{ApiError, AppState};
use crate::apitypes::plugins::{Plugin, PluginBerth, PluginConfig, PluginEnv, PluginInterface, PluginSetRequest, PluginSettings};

/// The routes of this module.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/plugins", get(list))
        .route("/plugins/install", post(install))
        .route("/plugins/{name}/json", get(inspect))
        .route("/plugins/{name}/enable", post(enable))
        .route("/plugins/{name}/disable", post(disable))
        .route("/plugins/{name}/set", post(set))
        .route("/plugins/{name}", delete(remove))
}

impl From<PluginError> for ApiError {
    fn from(e: PluginError) -> ApiError {
        let status = match &e {
            PluginError::NotFound(_) => StatusCode::NOT_FOUND,
            PluginError::Conflict(_) => StatusCode::CONFLICT,
            PluginError::InvalidArgument(_) => StatusCode::BAD_REQUEST,
            PluginError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        if status == StatusCode::INTERNAL_SERVER_ERROR {
            tracing::error!(error = %e, "plugin error");
        }
        ApiError::new(status, e.to_string())
    }
}

/// Docker's `Config.Interface.Types` entry for a kind.
fn interface_type(kind: &Kind) -> &'static str {
    match kind {
        Kind::Volume => "docker.volumedriver/1.0",
        Kind::Network => "docker.networkdriver/1.0",
        Kind::Storage => "docker.graphdriver/1.0",
    }
}

/// A plugin as Docker's `Plugin` object, plus a `Berth` section with what
/// Docker has no field for (runtime, contract, limits, permissions).
pub fn plugin(p: &PluginInfo) -> Plugin {
    let m = &p.manifest;
    let env: Vec<String> = p.settings.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let declared: Vec<PluginEnv> = m
        .settings
        .iter()
        .map(|(k, v)| PluginEnv {
            description: String::new(),
            name: k.clone(),
            settable: vec!["value".to_string()],
            value: v.clone(),
        })
        .collect();
    let runtime = match m.runtime {
        Runtime::Wasm => "wasm",
        Runtime::Dylib => "dylib",
    };
    Plugin {
        berth: PluginBerth {
            contract: m.contract.clone(),
            dir: p.dir.display().to_string(),
            entry: m.entry.clone(),
            // The manifest's own types; shown as they serialize.
            limits: serde_json::to_value(&m.limits).unwrap_or(Value::Null),
            permissions: serde_json::to_value(&m.permissions).unwrap_or(Value::Null),
            runtime: runtime.to_string(),
            version: m.version.clone(),
        },
        config: PluginConfig {
            description: m.description.clone(),
            env: declared,
            interface: PluginInterface {
                types: m.kinds.iter().map(|k| interface_type(k).to_string()).collect(),
                ..Default::default()
            },
            ..Default::default()
        },
        enabled: p.enabled,
        id: p.id.clone(),
        name: p.name.clone(),
        plugin_reference: String::new(),
        settings: PluginSettings { env, ..Default::default() },
    }
}

/// Runs a blocking manager call off the async threads; the engine is there
/// for the calls that need its driver registries or usage counts.
async fn managed<T, F>(state: &AppState, f: F) -> Result<T, ApiError>
where
    T: Send + 'static,
    F: FnOnce(&PluginManager, &berth_core::Engine) -> Result<T, ApiError> + Send + 'static,
{
    let plugins = Arc::clone(&state.plugins);
    let engine = Arc::clone(&state.engine);
    match tokio::task::spawn_blocking(move || f(&plugins, &engine)).await {
        Ok(r) => r,
        Err(e) => Err(ApiError::internal(format!("plugin call failed: {e}"))),
    }
}

/// `GET /plugins` with Docker's filters `enabled=true|false` and
/// `capability=volumedriver|networkdriver|graphdriver`.
async fn list(State(state): State<AppState>, RawQuery(q): RawQuery) -> Result<Json<Vec<Plugin>>, ApiError> {
    let filters = Params::parse(q.as_deref()).filters(&["enabled", "capability"])?;
    let mut enabled = None;
    for v in filters.values("enabled") {
        enabled = Some(match v.as_str() {
            "true" | "1" => true,
            "false" | "0" => false,
            _ => return Err(ApiError::bad_request(format!("invalid filter 'enabled={v}': expected true or false"))),
        });
    }
    let capabilities = filters.values("capability").to_vec();
    let list = managed(&state, |m, _| Ok(m.list())).await?;
    let out: Vec<Plugin> = list
        .iter()
        .filter(|p| enabled.is_none_or(|e| e == p.enabled))
        .filter(|p| {
            capabilities.is_empty()
                || capabilities.iter().any(|c| p.manifest.kinds.iter().any(|k| interface_type(k).contains(c.as_str())))
        })
        .map(plugin)
        .collect();
    Ok(Json(out))
}

async fn inspect(State(state): State<AppState>, Path(name): Path<String>) -> Result<Json<Plugin>, ApiError> {
    let info = managed(&state, move |m, _| m.get(&name).map_err(not_found_like_docker)).await?;
    Ok(Json(plugin(&info)))
}

/// Docker says `plugin "x" not found`; `docker inspect NAME` relies on the 404.
fn not_found_like_docker(e: PluginError) -> ApiError {
    match e {
        PluginError::NotFound(m) => ApiError::not_found(m),
        other => other.into(),
    }
}

/// `POST /plugins/install?name=ALIAS&grant-all-permissions=1&disable=1`,
/// body: a tar of the plugin directory.
async fn install(State(state): State<AppState>, RawQuery(q): RawQuery, body: Body) -> Result<Json<Plugin>, ApiError> {
    let params = Params::parse(q.as_deref());
    let opts = InstallOptions {
        alias: params.get("name").filter(|n| !n.is_empty()).map(str::to_string),
        grant_all_permissions: params.flag("grant-all-permissions"),
        disable: params.flag("disable"),
    };
    let mut reader = super::stream::body_reader(body);
    let info = managed(&state, move |m, e| {
        let result = m.install(&mut reader, &opts, e.drivers());
        super::stream::drain(&mut reader);
        Ok(result?)
    })
    .await?;
    Ok(Json(plugin(&info)))
}

async fn enable(State(state): State<AppState>, Path(name): Path<String>) -> Result<Response, ApiError> {
    managed(&state, move |m, e| Ok(m.enable(&name, e.drivers())?)).await?;
    Ok(StatusCode::OK.into_response())
}

/// `POST /plugins/{name}/disable[?force=1]`: refused while volumes or
/// networks use the plugin's drivers, unless forced (Docker's rule).
async fn disable(State(state): State<AppState>, Path(name): Path<String>, RawQuery(q): RawQuery) -> Result<Response, ApiError> {
    let force = Params::parse(q.as_deref()).flag("force");
    managed(&state, move |m, e| {
        let info = m.get(&name)?;
        if !force {
            let users = driver_users(e, &info)?;
            if !users.is_empty() {
                return Err(ApiError::new(
                    StatusCode::CONFLICT,
                    format!("plugin {} is in use by {}; remove them first or use --force", info.name, users.join(", ")),
                ));
            }
        }
        Ok(m.disable(&info.name, e.drivers())?)
    })
    .await?;
    Ok(StatusCode::OK.into_response())
}

/// The volumes and networks made with the plugin's drivers, for messages.
fn driver_users(engine: &berth_core::Engine, info: &PluginInfo) -> Result<Vec<String>, ApiError> {
    let mut users = Vec::new();
    if info.manifest.kinds.contains(&Kind::Volume) {
        users.extend(engine.volumes().using_driver(&info.name)?.into_iter().map(|v| format!("volume {v}")));
    }
    if info.manifest.kinds.contains(&Kind::Network) {
        let mut filters = berth_core::filters::Filters::new();
        filters.insert("driver".into(), vec![info.name.clone()]);
        users.extend(engine.networks().list(&filters)?.into_iter().map(|n| format!("network {}", n.record.name)));
    }
    Ok(users)
}

async fn remove(State(state): State<AppState>, Path(name): Path<String>, RawQuery(q): RawQuery) -> Result<Response, ApiError> {
    let force = Params::parse(q.as_deref()).flag("force");
    managed(&state, move |m, e| Ok(m.remove(&name, force, e.drivers())?)).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `POST /plugins/{name}/set`, body `["key=value", ...]` as the docker CLI sends it.
async fn set(State(state): State<AppState>, Path(name): Path<String>, body: Body) -> Result<Response, ApiError> {
    let bytes = axum::body::to_bytes(body, 1 << 20)
        .await
        .map_err(|e| ApiError::bad_request(format!("cannot read the request body: {e}")))?;
    let PluginSetRequest(args) = serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::bad_request(format!("invalid JSON in the request body (want [\"key=value\", ...]): {e}")))?;
    let mut values = Vec::new();
    for a in args {
        let Some((k, v)) = a.split_once('=') else {
            return Err(ApiError::bad_request(format!("invalid setting {a:?}: expected key=value")));
        };
        values.push((k.to_string(), v.to_string()));
    }
    managed(&state, move |m, _| Ok(m.set(&name, &values)?)).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
