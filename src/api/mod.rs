//! The daemon's HTTP server: Docker Engine API routes -> `Engine` calls.
//!
//! Routes are served both versioned (`/v1.50/images/json`) and unversioned.
//! Engine calls block, so every one runs in `spawn_blocking`; request and
//! response bodies of images are streamed, never held whole in memory. This
//! module translates and never decides: image logic lives in the engine.

mod auth;
mod containers;
mod error;
mod hijack;
mod images;
mod networks;
mod plugins;
pub mod server;
mod stream;
mod swarm;
mod system;
mod volumes;

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result};
use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, Uri};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use berth_core::{Engine, EngineError};
use tower::Layer;

pub use error::ApiError;

use crate::version::{ApiVersion, VERSION};

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    /// The engine façade.
    pub engine: Arc<Engine>,
    /// The daemon's stable ID (`info`'s `ID`), kept in `<root>/engine-id`.
    pub id: Arc<str>,
    /// Installed plugins (`<root>/plugins`).
    pub plugins: Arc<berth_plugins::PluginManager>,
}

impl AppState {
    /// Builds the state, creating the daemon ID on first start.
    pub fn new(engine: Arc<Engine>, plugins: Arc<berth_plugins::PluginManager>, root: &Path) -> Result<AppState> {
        let id = engine_id(root)?;
        Ok(AppState { engine, id: id.into(), plugins })
    }

    /// Runs a blocking engine call off the async threads.
    pub async fn blocking<T, F>(&self, f: F) -> Result<T, ApiError>
    where
        T: Send + 'static,
        F: FnOnce(&Engine) -> Result<T, EngineError> + Send + 'static,
    {
        let engine = self.engine.clone();
        match tokio::task::spawn_blocking(move || f(&engine)).await {
            Ok(r) => r.map_err(ApiError::from),
            Err(e) => Err(ApiError::internal(format!("engine call failed: {e}"))),
        }
    }
}

/// The daemon's ID: random on first start, then stable (Docker keeps one in `engine-id`).
fn engine_id(root: &Path) -> Result<String> {
    let path = root.join("engine-id");
    match std::fs::read_to_string(&path) {
        Ok(s) if !s.trim().is_empty() => return Ok(s.trim().to_string()),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
    let mut bytes = [0u8; 16];
    getrandom(&mut bytes).with_context(|| "cannot read random bytes for the daemon ID")?;
    // Formatted as a UUID, like Docker's engine ID.
    let h = bytes.iter().map(|b| format!("{b:02x}")).collect::<String>();
    let id = format!("{}-{}-{}-{}-{}", &h[0..8], &h[8..12], &h[12..16], &h[16..20], &h[20..32]);
    let tmp = root.join(".engine-id.tmp");
    std::fs::write(&tmp, format!("{id}\n")).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, &path).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(id)
}

fn getrandom(buf: &mut [u8]) -> std::io::Result<()> {
    use std::io::Read;
    std::fs::File::open("/dev/urandom")?.read_exact(buf)
}

/// The API version a request asked for (from its `/v1.NN` prefix), or the newest.
#[derive(Clone, Copy, Debug)]
pub struct RequestVersion(pub ApiVersion);

/// Strips a `/v1.NN` prefix, checks the version is served, and records it.
/// Runs before routing, so one route table serves both forms.
async fn version_prefix(mut req: Request, next: Next) -> Response {
    let path = req.uri().path();
    let mut version = ApiVersion::max();
    if let Some(rest) = path.strip_prefix("/v") {
        let (v, tail) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
            let Some(parsed) = ApiVersion::parse(v) else {
                return ApiError::bad_request(format!("invalid API version {v:?}")).into_response();
            };
            if parsed < ApiVersion::min() {
                return ApiError::bad_request(format!(
                    "client version {v} is too old. Minimum supported API version is {}, please upgrade your client to a newer version",
                    ApiVersion::min()
                ))
                .into_response();
            }
            if parsed > ApiVersion::max() {
                return ApiError::bad_request(format!(
                    "client version {v} is too new. Maximum supported API version is {}",
                    ApiVersion::max()
                ))
                .into_response();
            }
            version = parsed;
            let tail = if tail.is_empty() { "/" } else { tail };
            let new_pq = match req.uri().query() {
                Some(q) => format!("{tail}?{q}"),
                None => tail.to_string(),
            };
            let mut parts = req.uri().clone().into_parts();
            match new_pq.parse() {
                Ok(pq) => parts.path_and_query = Some(pq),
                Err(_) => return ApiError::bad_request("malformed request path").into_response(),
            }
            match Uri::from_parts(parts) {
                Ok(uri) => *req.uri_mut() = uri,
                Err(_) => return ApiError::bad_request("malformed request path").into_response(),
            }
        }
    }
    req.extensions_mut().insert(RequestVersion(version));
    let method = req.method().clone();
    let uri = req.uri().clone();
    let mut resp = next.run(req).await;
    tracing::debug!(%method, %uri, status = resp.status().as_u16(), "request");
    if let Ok(v) = HeaderValue::from_str(&format!("berth/{VERSION} (linux)")) {
        resp.headers_mut().insert("server", v);
    }
    resp
}

async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "page not found")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "method not allowed")
}

/// The API's routes (unversioned; `serve` adds the version-prefix handling).
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/_ping", get(system::ping).head(system::ping_head))
        .route("/version", get(system::version))
        .route("/info", get(system::info))
        .route("/auth", post(auth::login))
        .route("/system/df", get(system::disk_usage))
        .route("/images/json", get(images::list))
        .route("/images/load", post(images::load))
        .route("/images/get", get(images::save_many))
        .route("/images/create", post(images::create))
        .route("/images/prune", post(images::prune))
        .route("/images/search", get(images::search))
        .route("/images/{*rest}", get(images::get_dispatch).post(images::post_dispatch).delete(images::delete))
        .route("/distribution/{*rest}", get(images::distribution))
        .merge(containers::routes())
        .merge(networks::routes())
        .merge(plugins::routes())
        .merge(volumes::routes())
        .merge(swarm::routes())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
}

/// Serves the API on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::UnixListener,
    state: AppState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    use axum::ServiceExt;
    // The prefix must be stripped before routing, so the middleware wraps the router.
    let app = middleware::from_fn(version_prefix).layer(router(state));
    axum::serve(listener, ServiceExt::<Request>::into_make_service(app)).with_graceful_shutdown(shutdown).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::Extension;
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    /// A router with one route that echoes the path and version it saw.
    async fn call(uri: &str) -> (StatusCode, String) {
        let router = Router::new()
            .route(
                "/images/{*rest}",
                get(|Extension(RequestVersion(v)): Extension<RequestVersion>, req: Request| async move {
                    format!("{} {} {}", v, req.uri().path(), req.uri().query().unwrap_or(""))
                }),
            )
            .fallback(not_found);
        let app = middleware::from_fn(version_prefix).layer(router);
        let req = Request::builder().uri(uri).body(Body::empty()).unwrap();
        let resp = app.oneshot(req).await.unwrap();
        let status = resp.status();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    #[tokio::test]
    async fn versioned_and_unversioned_paths_reach_the_same_route() {
        assert_eq!(call("/v1.43/images/a/b:1/json?x=1").await, (StatusCode::OK, "1.43 /images/a/b:1/json x=1".into()));
        assert_eq!(call("/images/a/json").await, (StatusCode::OK, "1.50 /images/a/json ".into()));
        assert_eq!(call("/v1.24/images/a/json").await.0, StatusCode::OK);
        assert_eq!(call("/v1.50/images/a/json").await.0, StatusCode::OK);
    }

    #[tokio::test]
    async fn versions_outside_the_range_are_a_400_with_dockers_message() {
        let (status, body) = call("/v1.23/images/a/json").await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(body.contains("client version 1.23 is too old. Minimum supported API version is 1.24"), "{body}");
        let (status, body) = call("/v1.51/images/a/json").await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(body.contains("client version 1.51 is too new. Maximum supported API version is 1.50"), "{body}");
        let (status, body) = call("/v2/images/a/json").await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    }

    #[tokio::test]
    async fn unknown_paths_are_a_json_404() {
        let (status, body) = call("/v1.50/nope").await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(body, r#"{"message":"page not found"}"#);
        // A path that merely starts with "v" is not a version prefix.
        assert_eq!(call("/volumes").await.0, StatusCode::NOT_FOUND);
    }
}
