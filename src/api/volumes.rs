//! Volume routes: list, create, inspect, remove, prune. Handlers translate
//! between Docker's JSON and the engine's volume façade; the engine decides
//! (names, drivers, in-use refusals, what prune takes).

use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use berth_model::container::ContainerRecord;
use berth_core::volume::{VolumeCreate, VolumeDetails};
use serde_json::Value;

use super::images::Params;
use super::{ApiError, AppState, RequestVersion};
use crate::apitypes::containers::MountPoint;
use crate::apitypes::volumes::{Volume, VolumeCreateRequest, VolumeListResponse, VolumePruneResponse, VolumeUsageData};
use crate::version::ApiVersion;

/// The label Docker puts on volumes made for `-v /path` and image `VOLUME`s.
pub const ANONYMOUS_LABEL: &str = "com.docker.volume.anonymous";

/// The routes of this module.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/volumes", get(list))
        // `create` and `prune` are also volume names to GET/DELETE, as in
        // Docker's router, where the verbs are POST-only.
        .route(
            "/volumes/create",
            post(create)
                .get(|s: State<AppState>| inspect(s, Path("create".into())))
                .delete(|s: State<AppState>, q: RawQuery| remove(s, Path("create".into()), q)),
        )
        .route(
            "/volumes/prune",
            post(prune)
                .get(|s: State<AppState>| inspect(s, Path("prune".into())))
                .delete(|s: State<AppState>, q: RawQuery| remove(s, Path("prune".into()), q)),
        )
        .route("/volumes/{name}", get(inspect).delete(remove))
}

/// Docker's `Volume` object. `UsageData` only when the size was computed
/// (`system df`), `Status` only when the driver reports one.
pub fn volume(d: &VolumeDetails) -> Volume {
    let r = &d.record;
    let mut labels = r.labels.clone();
    if r.anonymous {
        labels.entry(ANONYMOUS_LABEL.to_string()).or_default();
    }
    Volume {
        created_at: r.created_at.clone(),
        driver: r.driver.clone(),
        labels,
        mountpoint: d.mountpoint.clone(),
        name: r.name.clone(),
        options: if r.options.is_empty() { None } else { Some(r.options.clone()) },
        scope: "local".to_string(),
        status: if d.status.is_empty() {
            None
        } else {
            Some(d.status.iter().map(|(k, v)| (k.clone(), Value::String(v.clone()))).collect())
        },
        usage_data: d.size.map(|size| VolumeUsageData { size, ref_count: d.used_by.len() as i64 }),
    }
}

/// A container's `Mounts` (inspect and `ps`), Docker's `MountPoint` per entry:
/// `Name` and `Driver` only for volumes. `--tmpfs` mounts are not listed,
/// as in Docker (they are `HostConfig.Tmpfs` only); `--mount type=tmpfs` are.
pub fn container_mounts(r: &ContainerRecord) -> Vec<MountPoint> {
    let tmpfs_flags = r.host_config.tmpfs.as_ref();
    r.mounts
        .iter()
        .filter(|m| !(m.kind == "tmpfs" && tmpfs_flags.is_some_and(|t| t.contains_key(&m.destination))))
        .map(|m| {
            let is_volume = m.kind == "volume";
            MountPoint {
                kind: m.kind.clone(),
                name: is_volume.then(|| m.name.clone()),
                source: m.source.clone(),
                destination: m.destination.clone(),
                driver: is_volume.then(|| m.driver.clone()),
                mode: m.mode.clone(),
                rw: m.rw,
                propagation: m.propagation.clone(),
            }
        })
        .collect()
}

async fn list(State(state): State<AppState>, RawQuery(q): RawQuery) -> Result<Json<VolumeListResponse>, ApiError> {
    let params = Params::parse(q.as_deref());
    let filters = params.filters(&["dangling", "driver", "label", "name"])?;
    // Checked here so a bad value is Docker's 400 before any driver is asked.
    filters.dangling()?;
    let filters = filters.into_inner();
    let list = state.blocking(move |e| e.volumes().list(&filters, false)).await?;
    Ok(Json(VolumeListResponse { volumes: list.volumes.iter().map(volume).collect(), warnings: list.warnings }))
}

async fn create(State(state): State<AppState>, body: Body) -> Result<Response, ApiError> {
    let bytes = axum::body::to_bytes(body, 1 << 20)
        .await
        .map_err(|e| ApiError::bad_request(format!("cannot read the request body: {e}")))?;
    let b: VolumeCreateRequest = if bytes.iter().all(u8::is_ascii_whitespace) {
        VolumeCreateRequest::default()
    } else {
        serde_json::from_slice(&bytes)
            .map_err(|e| ApiError::bad_request(format!("invalid JSON in the request body: {e}")))?
    };
    let request = VolumeCreate {
        name: b.name.unwrap_or_default(),
        driver: b.driver.unwrap_or_default(),
        driver_opts: b.driver_opts.unwrap_or_default(),
        labels: b.labels.unwrap_or_default(),
    };
    let d = state.blocking(move |e| e.volumes().create(request)).await?;
    Ok((StatusCode::CREATED, Json(volume(&d))).into_response())
}

async fn inspect(State(state): State<AppState>, Path(name): Path<String>) -> Result<Json<Volume>, ApiError> {
    let d = state.blocking(move |e| e.volumes().find(&name, false)).await?;
    Ok(Json(volume(&d)))
}

async fn remove(
    State(state): State<AppState>,
    Path(name): Path<String>,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    let force = Params::parse(q.as_deref()).flag("force");
    state.blocking(move |e| e.volumes().remove(&name, force)).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `all=true|1|false|0` of the prune filters (Docker's `GetBoolOrDefault`).
fn all_filter(values: &[String]) -> Result<bool, ApiError> {
    let mut all = false;
    for v in values {
        match v.to_ascii_lowercase().as_str() {
            "true" | "1" => all = true,
            "false" | "0" => {}
            _ => return Err(ApiError::bad_request(format!("invalid filter 'all={v}': expected true or false"))),
        }
    }
    Ok(all)
}

async fn prune(
    State(state): State<AppState>,
    Extension(RequestVersion(version)): Extension<RequestVersion>,
    RawQuery(q): RawQuery,
) -> Result<Json<VolumePruneResponse>, ApiError> {
    let params = Params::parse(q.as_deref());
    let mut filters = params.filters(&["all", "label", "label!"])?.into_inner();
    let mut all = all_filter(&filters.remove("all").unwrap_or_default())?;
    // Before API 1.42 prune took every unused local volume, named ones too.
    if version < ApiVersion(1, 42) {
        all = true;
    }
    let (names, space) = state.blocking(move |e| e.volumes().prune(&filters, all)).await?;
    Ok(Json(VolumePruneResponse { volumes_deleted: if names.is_empty() { None } else { Some(names) }, space_reclaimed: space }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_model::volume::VolumeRecord;
    use std::collections::BTreeMap;
    use serde_json::json;

    fn volume_json(d: &VolumeDetails) -> Value {
        serde_json::to_value(volume(d)).unwrap()
    }

    fn details(anonymous: bool) -> VolumeDetails {
        VolumeDetails {
            record: VolumeRecord {
                name: "data".into(),
                driver: "local".into(),
                created_at: "2026-01-01T00:00:00Z".into(),
                labels: BTreeMap::from([("tier".to_string(), "db".to_string())]),
                options: BTreeMap::new(),
                anonymous,
            },
            mountpoint: "/var/lib/berth/volumes/data/_data".into(),
            status: BTreeMap::new(),
            used_by: vec!["c1".into(), "c2".into()],
            size: None,
        }
    }

    #[test]
    fn volume_json_has_dockers_fields_and_only_those() {
        let v = volume_json(&details(false));
        let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(keys, ["CreatedAt", "Driver", "Labels", "Mountpoint", "Name", "Options", "Scope"]);
        assert_eq!(v["Labels"], json!({"tier": "db"}));
        assert_eq!(v["Options"], Value::Null);
        assert_eq!(v["Scope"], "local");
        assert_eq!(v["Mountpoint"], "/var/lib/berth/volumes/data/_data");
    }

    #[test]
    fn anonymous_volumes_carry_dockers_label_and_df_adds_usage() {
        let mut d = details(true);
        d.size = Some(4096);
        d.status.insert("mounted".into(), "yes".into());
        let v = volume_json(&d);
        assert_eq!(v["Labels"][ANONYMOUS_LABEL], "");
        assert_eq!(v["UsageData"], json!({"Size": 4096, "RefCount": 2}));
        assert_eq!(v["Status"], json!({"mounted": "yes"}));
    }

    #[test]
    fn container_mounts_show_each_type_as_docker_does() {
        use berth_model::volume::MountPoint;
        let mp = |kind: &str, name: &str, dest: &str| MountPoint {
            kind: kind.into(),
            name: name.into(),
            source: if kind == "tmpfs" { String::new() } else { format!("/src{dest}") },
            destination: dest.into(),
            driver: if kind == "volume" { "local".into() } else { String::new() },
            mode: if kind == "volume" { "z".into() } else { String::new() },
            rw: true,
            propagation: if kind == "bind" { "rprivate".into() } else { String::new() },
            no_copy: true,
            tmpfs_options: "size=1m".into(),
        };
        let record: ContainerRecord = serde_json::from_value(json!({
            "id": "a".repeat(64), "name": "x", "created": "2026-01-01T00:00:00Z",
            "image": format!("sha256:{}", "b".repeat(64)), "path": "sh", "args": [],
            "config": {}, "host_config": {"Tmpfs": {"/flag": "size=1m"}},
            "state": {"Status": "created", "Running": false, "Paused": false, "Restarting": false, "OOMKilled": false,
                      "Dead": false, "Pid": 0, "ExitCode": 0, "Error": "", "StartedAt": "", "FinishedAt": ""},
            "restart_count": 0, "rw_layer": "", "manually_stopped": false,
        }))
        .unwrap();
        let mut record = record;
        record.mounts =
            vec![mp("volume", "db", "/db"), mp("bind", "", "/srv"), mp("tmpfs", "", "/flag"), mp("tmpfs", "", "/mnt")];
        let v = serde_json::to_value(container_mounts(&record)).unwrap();
        assert_eq!(
            v,
            json!([
                {"Type": "volume", "Name": "db", "Source": "/src/db", "Destination": "/db", "Driver": "local",
                 "Mode": "z", "RW": true, "Propagation": ""},
                {"Type": "bind", "Source": "/src/srv", "Destination": "/srv", "Mode": "", "RW": true, "Propagation": "rprivate"},
                {"Type": "tmpfs", "Source": "", "Destination": "/mnt", "Mode": "", "RW": true, "Propagation": ""},
            ])
        );
    }

    #[test]
    fn prune_all_filter_is_a_bool() {
        assert!(all_filter(&["true".into()]).unwrap());
        assert!(all_filter(&["1".into()]).unwrap());
        assert!(!all_filter(&[]).unwrap());
        assert!(!all_filter(&["false".into()]).unwrap());
        assert!(all_filter(&["maybe".into()]).is_err());
    }
}
