//! Container routes: create, list, inspect, the lifecycle verbs, logs, wait,
//! top, stats, update, changes, export, commit, archive (`docker cp`), prune,
//! and `events`. Attach and exec streams are in `hijack`. Handlers translate
//! between Docker's JSON and the engine's types; they decide nothing.

use std::collections::BTreeMap;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine as _;
use berth_core::container::{
    ContainerDetails, CpuSample, ListOptions, LogEntry, LogsOptions, PathStat, StatsSample, WaitCondition,
};
use berth_core::events::Event;
use berth_model::container::{ContainerConfig, ContainerRecord, HostConfig, Status, ZERO_TIME};
use berth_model::ImageRef;
use serde_json::Value;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use super::hijack::{self, frame, size_params};
use super::images::Params;
use super::stream::{body_reader, drain, streamed};
use super::{ApiError, AppState};
use crate::apitypes::containers::{
    BlkioStats, ContainerCreateRequest, ContainerPathStat, ContainerCreateResponse, ContainerGraphDriver, ContainerInspect,
    ContainerPruneResponse, ContainerSummary, ContainerTopResponse, ContainerUpdateRequest, ContainerUpdateResponse,
    ContainerWaitResponse, CpuStats, CpuUsage, EventActor, EventMessage, FilesystemChange, IdResponse, MemoryStats,
    PidsStats, StatsResponse, StorageStats, SummaryHostConfig, SummaryNetworkSettings, ThrottlingData, WaitError,
};

/// The routes of this module.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/containers/create", post(create))
        .route("/containers/json", get(list))
        .route("/containers/prune", post(prune))
        .route("/containers/{id}/json", get(inspect))
        .route("/containers/{id}/start", post(start))
        .route("/containers/{id}/stop", post(stop))
        .route("/containers/{id}/kill", post(kill))
        .route("/containers/{id}/restart", post(restart))
        .route("/containers/{id}/pause", post(pause))
        .route("/containers/{id}/unpause", post(unpause))
        .route("/containers/{id}/wait", post(wait))
        .route("/containers/{id}", axum::routing::delete(remove))
        .route("/containers/{id}/rename", post(rename))
        .route("/containers/{id}/resize", post(resize))
        .route("/containers/{id}/attach", post(hijack::attach))
        .route("/containers/{id}/logs", get(logs))
        .route("/containers/{id}/exec", post(hijack::exec_create))
        .route("/exec/{id}/start", post(hijack::exec_start))
        .route("/exec/{id}/json", get(hijack::exec_inspect))
        .route("/exec/{id}/resize", post(hijack::exec_resize))
        .route("/containers/{id}/top", get(top))
        .route("/containers/{id}/stats", get(stats))
        .route("/containers/{id}/update", post(update))
        .route("/containers/{id}/changes", get(changes))
        .route("/containers/{id}/export", get(export))
        .route("/containers/{id}/archive", get(archive_get).head(archive_head).put(archive_put))
        .route("/commit", post(commit))
        .route("/events", get(events))
}

/// Parses an RFC 3339 time to unix seconds (fractional).
pub fn unix_time(t: &str) -> Option<f64> {
    if t.is_empty() || t == ZERO_TIME {
        return None;
    }
    let t = chrono::DateTime::parse_from_rfc3339(t).ok()?;
    Some(t.timestamp() as f64 + f64::from(t.timestamp_subsec_nanos()) / 1e9)
}

/// Docker's `Status` column (`Up 2 seconds`, `Exited (3) 5 seconds ago`, ...),
/// as the daemon computes it (moby's `State.String`).
pub fn status_string(record: &ContainerRecord, now: f64) -> String {
    let st = &record.state;
    let ago = |t: &str| unix_time(t).map(|u| crate::cli::units::human_duration((now - u).max(0.0) as i64));
    match st.status {
        Status::Running | Status::Paused if st.running || st.paused => {
            let up = ago(&st.started_at).unwrap_or_else(|| "Less than a second".into());
            if st.paused {
                format!("Up {up} (Paused)")
            } else {
                format!("Up {up}")
            }
        }
        Status::Restarting => {
            format!("Restarting ({}) {} ago", st.exit_code, ago(&st.finished_at).unwrap_or_else(|| "Less than a second".into()))
        }
        Status::Removing => "Removal In Progress".into(),
        Status::Dead => "Dead".into(),
        _ => {
            if unix_time(&st.started_at).is_none() {
                return "Created".into();
            }
            match ago(&st.finished_at) {
                Some(a) => format!("Exited ({}) {a} ago", st.exit_code),
                None => String::new(),
            }
        }
    }
}

/// The current unix time in seconds.
pub(super) fn now_unix() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0)
}

/// Docker's `Command` column: the command line as one string, arguments
/// with spaces in single quotes (as moby lists them).
fn command_line(r: &ContainerRecord) -> String {
    let mut out = r.path.clone();
    for a in &r.args {
        out.push(' ');
        if a.contains(' ') {
            out.push_str(&format!("'{a}'"));
        } else {
            out.push_str(a);
        }
    }
    out
}

fn network_mode(h: &HostConfig) -> String {
    super::networks::display_network_mode(&h.network_mode)
}

/// Docker's `ContainerSummary` (`GET /containers/json`).
pub(super) fn summary(d: &ContainerDetails, now: f64) -> ContainerSummary {
    let r = &d.record;
    ContainerSummary {
        command: command_line(r),
        created: unix_time(&r.created).unwrap_or(0.0) as i64,
        host_config: SummaryHostConfig { network_mode: network_mode(&r.host_config) },
        id: r.id.as_str().to_string(),
        image: if d.image_name.is_empty() { r.image.to_string() } else { d.image_name.clone() },
        image_id: r.image.to_string(),
        labels: r.config.labels.clone().unwrap_or_default().into_iter().collect(),
        mounts: super::volumes::container_mounts(r),
        names: vec![format!("/{}", r.name)],
        network_settings: SummaryNetworkSettings { networks: super::networks::container_networks(r) },
        ports: super::networks::summary_ports(r),
        size_root_fs: d.size_root_fs,
        size_rw: d.size_rw,
        state: r.state.status,
        status: status_string(r, now),
    }
}

/// Docker's `ContainerInspectResponse`.
fn inspect_response(d: &ContainerDetails, driver: &str) -> ContainerInspect {
    let r = &d.record;
    let dir = |f: &str| -> String {
        d.log_path
            .rsplit_once('/')
            .map(|(parent, _)| format!("{parent}/{f}"))
            .unwrap_or_default()
    };
    ContainerInspect {
        app_armor_profile: String::new(),
        args: r.args.clone(),
        config: r.config.clone(),
        created: r.created.clone(),
        driver: driver.to_string(),
        exec_ids: None,
        graph_driver: ContainerGraphDriver { data: d.graph_driver_data.clone(), name: driver.to_string() },
        host_config: HostConfig { network_mode: network_mode(&r.host_config), ..r.host_config.clone() },
        hostname_path: dir("hostname"),
        hosts_path: dir("hosts"),
        id: r.id.as_str().to_string(),
        image: r.image.to_string(),
        log_path: d.log_path.clone(),
        mount_label: String::new(),
        mounts: super::volumes::container_mounts(r),
        name: format!("/{}", r.name),
        network_settings: super::networks::container_network_settings(r),
        path: r.path.clone(),
        platform: "linux".to_string(),
        process_label: String::new(),
        resolv_conf_path: dir("resolv.conf"),
        restart_count: r.restart_count,
        size_root_fs: d.size_root_fs,
        size_rw: d.size_rw,
        state: r.state.clone(),
    }
}

/// Reads a whole (small) JSON request body; an empty body is `T::default()`.
async fn json_body<T: serde::de::DeserializeOwned + Default>(body: Body) -> Result<T, ApiError> {
    let bytes = axum::body::to_bytes(body, 16 << 20)
        .await
        .map_err(|e| ApiError::bad_request(format!("cannot read the request body: {e}")))?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    let mut v: Value =
        serde_json::from_slice(&bytes).map_err(|e| ApiError::bad_request(format!("invalid JSON in the request body: {e}")))?;
    strip_nulls(&mut v);
    serde_json::from_value(v).map_err(|e| ApiError::bad_request(format!("invalid JSON in the request body: {e}")))
}

/// Maps whose keys are the user's and whose values are objects (`{"80/tcp": {}}`).
const USER_KEYED_OBJECTS: &[&str] = &["ExposedPorts", "Volumes", "EndpointsConfig"];
/// Maps whose keys are the user's and whose values are lists.
const USER_KEYED_LISTS: &[&str] = &["PortBindings"];
/// Maps whose keys are the user's and whose values are strings.
const USER_KEYED_STRINGS: &[&str] = &["Labels", "Sysctls", "StorageOpt", "Tmpfs", "DriverOpts", "Options", "Annotations"];

/// Reads `null` as Go's decoder does, "leave the zero value", which is what
/// clients mean by it (docker-py sends `"User": null`, docker-compose
/// `"ReadOnly": null` in `Mounts`): null members go, at every depth. In maps
/// keyed by the user (labels, exposed ports) the key stays, with the zero
/// value of its kind, as Go keeps it.
fn strip_nulls(v: &mut Value) {
    match v {
        Value::Object(map) => {
            map.retain(|_, x| !x.is_null());
            for (key, x) in map.iter_mut() {
                let zero = if USER_KEYED_OBJECTS.contains(&key.as_str()) {
                    Some(Value::Object(Default::default()))
                } else if USER_KEYED_LISTS.contains(&key.as_str()) {
                    Some(Value::Array(Vec::new()))
                } else if USER_KEYED_STRINGS.contains(&key.as_str()) {
                    Some(Value::String(String::new()))
                } else {
                    None
                };
                match (zero, x) {
                    (Some(zero), Value::Object(entries)) => {
                        for value in entries.values_mut() {
                            if value.is_null() {
                                *value = zero.clone();
                            } else {
                                strip_nulls(value);
                            }
                        }
                    }
                    (_, x) => strip_nulls(x),
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(strip_nulls),
        _ => {}
    }
}

async fn create(State(state): State<AppState>, RawQuery(q): RawQuery, body: Body) -> Result<Response, ApiError> {
    let params = Params::parse(q.as_deref());
    let name = params.get("name").filter(|n| !n.is_empty()).map(str::to_string);
    let b: ContainerCreateRequest = json_body(body).await?;
    if b.config.image.is_empty() {
        return Err(ApiError::bad_request("No image was specified"));
    }
    let host_config = b.host_config.unwrap_or_default();
    let networking = super::networks::networking_config(b.networking_config, &host_config.network_mode);
    let (record, warnings) =
        state.blocking(move |e| e.containers().create(name.as_deref(), b.config, host_config, networking)).await?;
    let created = ContainerCreateResponse { id: record.id.as_str().to_string(), warnings };
    Ok((StatusCode::CREATED, Json(created)).into_response())
}

async fn list(State(state): State<AppState>, RawQuery(q): RawQuery) -> Result<Json<Vec<ContainerSummary>>, ApiError> {
    let params = Params::parse(q.as_deref());
    let filters = params.filters(&[
        "status", "name", "id", "label", "ancestor", "exited", "before", "since", "volume", "network", "health",
        "isolation", "is-task", "publish", "expose",
    ])?;
    let limit = match params.get("limit") {
        None | Some("") => None,
        Some(l) => match l.parse::<i64>() {
            Ok(n) if n > 0 => Some(n as usize),
            Ok(_) => None,
            Err(_) => return Err(ApiError::bad_request(format!("invalid limit {l:?}: expected a number"))),
        },
    };
    let options = ListOptions { all: params.flag("all"), limit, size: params.flag("size"), filters: filters.into_inner() };
    let list = state.blocking(move |e| e.containers().list(&options)).await?;
    let now = now_unix();
    Ok(Json(list.iter().map(|d| summary(d, now)).collect()))
}

async fn inspect(
    State(state): State<AppState>,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
) -> Result<Json<ContainerInspect>, ApiError> {
    let size = Params::parse(q.as_deref()).flag("size");
    let driver = state.engine.storage().name().to_string();
    let d = state
        .blocking(move |e| {
            let d = e.containers().find(&id)?;
            if !size {
                return Ok(d);
            }
            // Sizes are computed by the listing; ask it for just this container.
            let mut filters = BTreeMap::new();
            filters.insert("id".to_string(), vec![d.record.id.to_string()]);
            let opts = ListOptions { all: true, limit: None, size: true, filters };
            Ok(e.containers().list(&opts)?.into_iter().next().unwrap_or(d))
        })
        .await?;
    Ok(Json(inspect_response(&d, &driver)))
}

fn no_content() -> Response {
    StatusCode::NO_CONTENT.into_response()
}

fn not_modified() -> Response {
    StatusCode::NOT_MODIFIED.into_response()
}

async fn start(State(state): State<AppState>, Path(id): Path<String>) -> Result<Response, ApiError> {
    let started = state.blocking(move |e| e.containers().start(&id)).await?;
    Ok(if started { no_content() } else { not_modified() })
}

/// `?t=` (seconds; Docker also accepts `timeout`).
fn timeout_param(params: &Params) -> Result<Option<i64>, ApiError> {
    match params.get("t").or_else(|| params.get("timeout")).filter(|s| !s.is_empty()) {
        None => Ok(None),
        Some(t) => t.parse().map(Some).map_err(|_| ApiError::bad_request(format!("invalid timeout {t:?}: expected seconds"))),
    }
}

async fn stop(State(state): State<AppState>, Path(id): Path<String>, RawQuery(q): RawQuery) -> Result<Response, ApiError> {
    let params = Params::parse(q.as_deref());
    let t = timeout_param(&params)?;
    let signal = params.get("signal").filter(|s| !s.is_empty()).map(str::to_string);
    let stopped = state.blocking(move |e| e.containers().stop(&id, signal.as_deref(), t)).await?;
    Ok(if stopped { no_content() } else { not_modified() })
}

async fn kill(State(state): State<AppState>, Path(id): Path<String>, RawQuery(q): RawQuery) -> Result<Response, ApiError> {
    let params = Params::parse(q.as_deref());
    let signal = params.get("signal").filter(|s| !s.is_empty()).unwrap_or("KILL").to_string();
    state.blocking(move |e| e.containers().kill(&id, &signal)).await?;
    Ok(no_content())
}

async fn restart(State(state): State<AppState>, Path(id): Path<String>, RawQuery(q): RawQuery) -> Result<Response, ApiError> {
    let t = timeout_param(&Params::parse(q.as_deref()))?;
    state.blocking(move |e| e.containers().restart(&id, t)).await?;
    Ok(no_content())
}

async fn pause(State(state): State<AppState>, Path(id): Path<String>) -> Result<Response, ApiError> {
    state.blocking(move |e| e.containers().pause(&id)).await?;
    Ok(no_content())
}

async fn unpause(State(state): State<AppState>, Path(id): Path<String>) -> Result<Response, ApiError> {
    state.blocking(move |e| e.containers().unpause(&id)).await?;
    Ok(no_content())
}

async fn remove(State(state): State<AppState>, Path(id): Path<String>, RawQuery(q): RawQuery) -> Result<Response, ApiError> {
    let params = Params::parse(q.as_deref());
    if params.flag("link") {
        return Err(ApiError::bad_request("links are not supported yet: remove the container itself"));
    }
    let (force, volumes) = (params.flag("force"), params.flag("v"));
    state.blocking(move |e| e.containers().remove(&id, force, volumes)).await?;
    Ok(no_content())
}

async fn rename(State(state): State<AppState>, Path(id): Path<String>, RawQuery(q): RawQuery) -> Result<Response, ApiError> {
    let params = Params::parse(q.as_deref());
    let name = params.get("name").unwrap_or("").to_string();
    if name.is_empty() {
        return Err(ApiError::bad_request("Neither old nor new names may be empty"));
    }
    state.blocking(move |e| e.containers().rename(&id, &name)).await?;
    Ok(no_content())
}

async fn resize(State(state): State<AppState>, Path(id): Path<String>, RawQuery(q): RawQuery) -> Result<Response, ApiError> {
    let (h, w) = size_params(&Params::parse(q.as_deref()))?;
    state.blocking(move |e| e.containers().resize(&id, h, w)).await?;
    Ok(StatusCode::OK.into_response())
}

/// `POST /containers/{id}/wait`: the waiter is registered before the answer's
/// headers go out, and the headers are sent at once — `docker run` posts wait
/// before start and only goes on once it has them.
async fn wait(State(state): State<AppState>, Path(id): Path<String>, RawQuery(q): RawQuery) -> Result<Response, ApiError> {
    let params = Params::parse(q.as_deref());
    let condition = match params.get("condition").unwrap_or("") {
        "" | "not-running" => WaitCondition::NotRunning,
        "next-exit" => WaitCondition::NextExit,
        "removed" => WaitCondition::Removed,
        other => return Err(ApiError::bad_request(format!("invalid condition: {other:?}"))),
    };
    let waiter = state.blocking(move |e| e.containers().wait(&id, condition)).await?;
    let (tx, rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(2);
    tokio::task::spawn_blocking(move || {
        let result = waiter.recv();
        let answer = ContainerWaitResponse {
            error: result.error.map(|message| WaitError { message }),
            status_code: result.status_code,
        };
        let mut line = serde_json::to_vec(&answer).unwrap_or_default();
        line.push(b'\n');
        let _ = tx.blocking_send(Ok(Bytes::from(line)));
    });
    let mut resp = Response::new(Body::from_stream(ReceiverStream::new(rx)));
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    Ok(resp)
}

/// `since`/`until` of logs and events: unix seconds, fractional, or RFC 3339.
fn time_param(params: &Params, key: &str) -> Result<Option<f64>, ApiError> {
    match params.get(key).filter(|s| !s.is_empty() && *s != "0") {
        None => Ok(None),
        Some(s) => s
            .parse::<f64>()
            .ok()
            .or_else(|| unix_time(s))
            .map(Some)
            .ok_or_else(|| ApiError::bad_request(format!("invalid value for {key}: {s:?}"))),
    }
}

fn log_chunk(entry: &LogEntry, timestamps: bool, tty: bool) -> Vec<u8> {
    let mut payload = Vec::with_capacity(entry.bytes.len() + 32);
    if timestamps {
        payload.extend_from_slice(entry.time.as_bytes());
        payload.push(b' ');
    }
    payload.extend_from_slice(&entry.bytes);
    if tty {
        payload
    } else {
        frame(entry.stream, &payload)
    }
}

async fn logs(State(state): State<AppState>, Path(id): Path<String>, RawQuery(q): RawQuery) -> Result<Response, ApiError> {
    let params = Params::parse(q.as_deref());
    let tail = match params.get("tail").unwrap_or("all") {
        "all" | "" => None,
        n => match n.parse::<i64>() {
            Ok(n) if n >= 0 => Some(n as usize),
            Ok(_) => None,
            Err(_) => return Err(ApiError::bad_request(format!("invalid tail value {n:?}: expected a number or \"all\""))),
        },
    };
    let options = LogsOptions {
        stdout: params.flag("stdout"),
        stderr: params.flag("stderr"),
        follow: params.flag("follow"),
        since: time_param(&params, "since")?,
        until: time_param(&params, "until")?,
        timestamps: params.flag("timestamps"),
        tail,
    };
    if !options.stdout && !options.stderr {
        return Err(ApiError::bad_request("You must choose at least one stream"));
    }
    let timestamps = options.timestamps;
    let (tty, entries) = state
        .blocking(move |e| {
            let d = e.containers().find(&id)?;
            Ok((d.record.config.tty, e.containers().logs(&id, &options)?))
        })
        .await?;
    let (tx, rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(16);
    tokio::task::spawn_blocking(move || {
        for entry in entries {
            let item = entry.map(|e| Bytes::from(log_chunk(&e, timestamps, tty)));
            let failed = item.is_err();
            // A closed channel means the client went away: stop following.
            if tx.blocking_send(item).is_err() || failed {
                break;
            }
        }
    });
    let ct = if tty { "application/vnd.docker.raw-stream" } else { "application/vnd.docker.multiplexed-stream" };
    let mut resp = Response::new(Body::from_stream(ReceiverStream::new(rx)));
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(ct));
    Ok(resp)
}

async fn top(
    State(state): State<AppState>,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
) -> Result<Json<ContainerTopResponse>, ApiError> {
    let ps_args = Params::parse(q.as_deref()).get("ps_args").filter(|s| !s.is_empty()).map(str::to_string);
    let (titles, processes) = state.blocking(move |e| e.containers().top(&id, ps_args.as_deref())).await?;
    Ok(Json(ContainerTopResponse { processes, titles }))
}

/// Docker's stats body of one engine sample.
fn stats_response(sample: StatsSample) -> StatsResponse {
    let cpu_stats = |cpu: CpuSample| CpuStats {
        cpu_usage: CpuUsage {
            percpu_usage: None,
            total_usage: cpu.total_ns,
            usage_in_kernelmode: cpu.kernel_ns,
            usage_in_usermode: cpu.user_ns,
        },
        online_cpus: cpu.online_cpus,
        system_cpu_usage: cpu.host_ns,
        throttling_data: ThrottlingData::default(),
    };
    let memory_stats = sample
        .memory
        .map(|m| MemoryStats {
            limit: Some(m.limit),
            // Under cgroup v1's names, which clients know: this cgroup's and with its children's.
            stats: BTreeMap::from([("cache".to_string(), m.cache), ("total_cache".to_string(), m.cache)]),
            usage: Some(m.usage),
            ..Default::default()
        })
        .unwrap_or_default();
    let pids_stats = sample.pids.map(|p| PidsStats { current: Some(p.current), limit: p.limit }).unwrap_or_default();
    StatsResponse {
        blkio_stats: BlkioStats::default(),
        cpu_stats: cpu_stats(sample.cpu),
        id: sample.id,
        memory_stats,
        name: format!("/{}", sample.name),
        networks: None,
        num_procs: 0,
        pids_stats,
        precpu_stats: cpu_stats(sample.precpu),
        preread: sample.preread,
        read: sample.read,
        storage_stats: StorageStats::default(),
    }
}

/// Fills `precpu_stats` from the previous sample, as Docker's stream does.
fn with_previous(mut sample: StatsResponse, previous: Option<&StatsResponse>) -> StatsResponse {
    if let Some(prev) = previous {
        sample.precpu_stats = prev.cpu_stats.clone();
        sample.preread = prev.read.clone();
    }
    sample
}

/// One sample as a line of the stats stream.
fn stats_line(sample: &StatsResponse) -> Bytes {
    let mut line = serde_json::to_vec(sample).unwrap_or_default();
    line.push(b'\n');
    Bytes::from(line)
}

async fn stats(State(state): State<AppState>, Path(id): Path<String>, RawQuery(q): RawQuery) -> Result<Response, ApiError> {
    let params = Params::parse(q.as_deref());
    let stream = params.get("stream").is_none_or(|_| params.flag("stream"));
    let one_shot = params.flag("one-shot");
    let first = {
        let id = id.clone();
        stats_response(state.blocking(move |e| e.containers().stats(&id)).await?)
    };
    let json_resp = |body: Body| {
        let mut resp = Response::new(body);
        resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        resp
    };
    if !stream {
        if one_shot {
            return Ok(json_resp(Body::from(stats_line(&first))));
        }
        // Docker answers a non-streamed request with two samples' worth, so
        // the CPU percentage can be computed from the difference.
        tokio::time::sleep(Duration::from_secs(1)).await;
        let second =
            state.blocking(move |e| e.containers().stats(&id)).await.map(stats_response).unwrap_or_else(|_| first.clone());
        return Ok(json_resp(Body::from(stats_line(&with_previous(second, Some(&first))))));
    }
    let (tx, rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(2);
    let engine = state.engine.clone();
    tokio::spawn(async move {
        let mut previous: Option<StatsResponse> = None;
        let mut sample = first;
        loop {
            let line = stats_line(&with_previous(sample.clone(), previous.as_ref()));
            if tx.send(Ok(line)).await.is_err() {
                break;
            }
            previous = Some(sample);
            tokio::time::sleep(Duration::from_secs(1)).await;
            if tx.is_closed() {
                break;
            }
            let (engine, id) = (engine.clone(), id.clone());
            let next = tokio::task::spawn_blocking(move || {
                let running = engine.containers().find(&id).map(|d| d.record.state.running)?;
                if running { engine.containers().stats(&id).map(Some) } else { Ok(None) }
            })
            .await;
            match next {
                Ok(Ok(Some(s))) => sample = stats_response(s),
                // Stopped, removed or failed: the stream ends.
                _ => break,
            }
        }
    });
    Ok(json_resp(Body::from_stream(ReceiverStream::new(rx))))
}

async fn update(
    State(state): State<AppState>,
    Path(id): Path<String>,
    body: Body,
) -> Result<Json<ContainerUpdateResponse>, ApiError> {
    let update: ContainerUpdateRequest = json_body(body).await?;
    let update = update_host_config(update);
    let warnings = state.blocking(move |e| e.containers().update(&id, update)).await?;
    Ok(Json(ContainerUpdateResponse { warnings }))
}

/// The update as the engine takes it: a `HostConfig` whose members left at
/// their defaults keep the container's values.
fn update_host_config(u: ContainerUpdateRequest) -> HostConfig {
    HostConfig {
        cpu_period: u.cpu_period.unwrap_or_default(),
        cpu_quota: u.cpu_quota.unwrap_or_default(),
        cpu_realtime_period: u.cpu_realtime_period.unwrap_or_default(),
        cpu_realtime_runtime: u.cpu_realtime_runtime.unwrap_or_default(),
        cpu_shares: u.cpu_shares.unwrap_or_default(),
        cpuset_cpus: u.cpuset_cpus.unwrap_or_default(),
        cpuset_mems: u.cpuset_mems.unwrap_or_default(),
        memory: u.memory.unwrap_or_default(),
        memory_reservation: u.memory_reservation.unwrap_or_default(),
        memory_swap: u.memory_swap.unwrap_or_default(),
        memory_swappiness: u.memory_swappiness,
        nano_cpus: u.nano_cpus.unwrap_or_default(),
        pids_limit: u.pids_limit,
        restart_policy: u.restart_policy.unwrap_or_default(),
        ..HostConfig::default()
    }
}

/// `GET /containers/{id}/changes`: `null` when nothing changed, as Docker answers.
async fn changes(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Option<Vec<FilesystemChange>>>, ApiError> {
    let list = state.blocking(move |e| e.containers().changes(&id)).await?;
    let out: Vec<FilesystemChange> =
        list.iter().map(|c| FilesystemChange { kind: c.kind as u8, path: c.path.clone() }).collect();
    Ok(Json(if out.is_empty() { None } else { Some(out) }))
}

async fn export(State(state): State<AppState>, Path(id): Path<String>) -> Result<Response, ApiError> {
    // Fail with a proper status before streaming when the container is unknown.
    let check = id.clone();
    state.blocking(move |e| e.containers().find(&check)).await?;
    streamed(&state, "application/x-tar", move |e, out| e.containers().export(&id, out)).await
}

fn stat_header(stat: PathStat) -> Result<HeaderValue, ApiError> {
    let PathStat { name, size, mode, mtime, link_target } = stat;
    let json = serde_json::to_string(&ContainerPathStat { name, size, mode, mtime, link_target })
        .map_err(|e| ApiError::internal(format!("cannot encode the path stat: {e}")))?;
    let encoded = base64::engine::general_purpose::STANDARD.encode(json);
    HeaderValue::from_str(&encoded).map_err(|e| ApiError::internal(format!("cannot encode the path stat: {e}")))
}

fn path_param(params: &Params) -> Result<String, ApiError> {
    match params.get("path") {
        Some(p) if !p.is_empty() => Ok(p.to_string()),
        _ => Err(ApiError::bad_request("path cannot be empty")),
    }
}

const STAT_HEADER: &str = "x-docker-container-path-stat";

async fn archive_head(State(state): State<AppState>, Path(id): Path<String>, RawQuery(q): RawQuery) -> Result<Response, ApiError> {
    let path = path_param(&Params::parse(q.as_deref()))?;
    let stat = state.blocking(move |e| e.containers().archive_stat(&id, &path)).await?;
    let mut resp = StatusCode::OK.into_response();
    resp.headers_mut().insert(STAT_HEADER, stat_header(stat)?);
    Ok(resp)
}

async fn archive_get(State(state): State<AppState>, Path(id): Path<String>, RawQuery(q): RawQuery) -> Result<Response, ApiError> {
    let path = path_param(&Params::parse(q.as_deref()))?;
    let (stat, mut reader) = state.blocking(move |e| e.containers().archive_get(&id, &path)).await?;
    let header_value = stat_header(stat)?;
    let mut resp = streamed(&state, "application/x-tar", move |_, out| {
        std::io::copy(&mut reader, out).map(|_| ()).map_err(|e| berth_core::EngineError::io("reading the archive", e))
    })
    .await?;
    resp.headers_mut().insert(STAT_HEADER, header_value);
    Ok(resp)
}

async fn archive_put(State(state): State<AppState>, Path(id): Path<String>, RawQuery(q): RawQuery, body: Body) -> Result<Response, ApiError> {
    let path = path_param(&Params::parse(q.as_deref()))?;
    let mut reader = body_reader(body);
    state
        .blocking(move |e| {
            let r = e.containers().archive_put(&id, &path, &mut reader);
            // Read to the end either way: the tar's trailing zero blocks may
            // still be in flight, and answering before them makes the client's
            // write fail ("broken pipe") although the copy succeeded.
            drain(&mut reader);
            r
        })
        .await?;
    Ok(StatusCode::OK.into_response())
}

async fn commit(State(state): State<AppState>, RawQuery(q): RawQuery, body: Body) -> Result<Response, ApiError> {
    let params = Params::parse(q.as_deref());
    let container = params.get("container").unwrap_or("").to_string();
    if container.is_empty() {
        return Err(ApiError::bad_request("container is required"));
    }
    let reference = match params.get("repo").filter(|r| !r.is_empty()) {
        None => None,
        Some(repo) => {
            let full = match params.get("tag").filter(|t| !t.is_empty()) {
                Some(tag) => format!("{repo}:{tag}"),
                None => repo.to_string(),
            };
            Some(ImageRef::parse(&full).map_err(|e| ApiError::bad_request(e.to_string()))?.with_default_tag())
        }
    };
    let comment = params.get("comment").unwrap_or("").to_string();
    let author = params.get("author").unwrap_or("").to_string();
    let changes: Vec<String> = params.all("changes").into_iter().filter(|c| !c.is_empty()).collect();
    let config: Option<ContainerConfig> = {
        let bytes = axum::body::to_bytes(body, 16 << 20)
            .await
            .map_err(|e| ApiError::bad_request(format!("cannot read the request body: {e}")))?;
        if bytes.iter().all(u8::is_ascii_whitespace) || &bytes[..] == b"null" {
            None
        } else {
            Some(serde_json::from_slice(&bytes).map_err(|e| ApiError::bad_request(format!("invalid JSON in the request body: {e}")))?)
        }
    };
    let id = state
        .blocking(move |e| e.containers().commit(&container, reference.as_ref(), &comment, &author, &changes, config))
        .await?;
    Ok((StatusCode::CREATED, Json(IdResponse { id: id.to_string() })).into_response())
}

async fn prune(State(state): State<AppState>, RawQuery(q): RawQuery) -> Result<Json<ContainerPruneResponse>, ApiError> {
    let filters = Params::parse(q.as_deref()).filters(&["until", "label", "label!"])?.into_inner();
    let (ids, space) = state.blocking(move |e| e.containers().prune(&filters)).await?;
    Ok(Json(ContainerPruneResponse {
        containers_deleted: if ids.is_empty() { None } else { Some(ids) },
        space_reclaimed: space,
    }))
}

/// Docker's `EventMessage` of an engine event.
fn event_message(ev: Event) -> EventMessage {
    EventMessage {
        kind: ev.kind,
        action: ev.action,
        actor: EventActor { id: ev.actor.id, attributes: ev.actor.attributes },
        scope: ev.scope,
        time: ev.time,
        time_nano: ev.time_nano,
        status: ev.status,
        id: ev.id,
        from: ev.from,
    }
}

async fn events(State(state): State<AppState>, RawQuery(q): RawQuery) -> Result<Response, ApiError> {
    let params = Params::parse(q.as_deref());
    let since = time_param(&params, "since")?;
    let until = time_param(&params, "until")?;
    let filters = params
        .filters(&["container", "event", "image", "label", "type", "daemon", "network", "volume", "plugin", "node", "service", "secret", "config", "scope"])?
        .into_inner();
    let rx = state.blocking(move |e| e.containers().events(since, until, &filters)).await?;
    let (tx, out) = mpsc::channel::<Result<Bytes, std::io::Error>>(64);
    tokio::task::spawn_blocking(move || loop {
        match rx.recv_timeout(Duration::from_millis(500)) {
            Ok(ev) => {
                let line = serde_json::to_string(&event_message(ev)).unwrap_or_default();
                if tx.blocking_send(Ok(Bytes::from(format!("{line}\n")))).is_err() {
                    break;
                }
            }
            // Wake up now and then to notice a client that went away.
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                if tx.is_closed() {
                    break;
                }
            }
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
        }
    });
    let mut resp = Response::new(Body::from_stream(ReceiverStream::new(out)));
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_model::container::ContainerState;

    fn record(state: ContainerState) -> ContainerRecord {
        ContainerRecord {
            id: "a".repeat(64).parse().unwrap(),
            name: "x".into(),
            created: "2026-01-01T00:00:00Z".into(),
            image: format!("sha256:{}", "b".repeat(64)).parse().unwrap(),
            path: "sh".into(),
            args: vec!["-c".into(), "exit 3".into()],
            config: ContainerConfig::default(),
            host_config: HostConfig::default(),
            state,
            restart_count: 0,
            rw_layer: String::new(),
            manually_stopped: false,
            networks: Default::default(),
            ports: Default::default(),
            sandbox_key: String::new(),
            mounts: Vec::new(),
        }
    }

    fn at(secs: i64) -> String {
        chrono::DateTime::from_timestamp(secs, 0).unwrap().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
    }

    #[test]
    fn status_strings_match_docker_ps() {
        let t0 = 1_800_000_000;
        let created = ContainerState { started_at: ZERO_TIME.into(), finished_at: ZERO_TIME.into(), ..Default::default() };
        assert_eq!(status_string(&record(created), t0 as f64), "Created");
        let running = ContainerState { status: Status::Running, running: true, started_at: at(t0), finished_at: ZERO_TIME.into(), ..Default::default() };
        assert_eq!(status_string(&record(running.clone()), (t0 + 2) as f64), "Up 2 seconds");
        assert_eq!(status_string(&record(running), (t0 + 1) as f64), "Up 1 second");
        let paused = ContainerState { status: Status::Paused, running: true, paused: true, started_at: at(t0), ..Default::default() };
        assert_eq!(status_string(&record(paused), (t0 + 1) as f64), "Up 1 second (Paused)");
        let exited = ContainerState { status: Status::Exited, exit_code: 3, started_at: at(t0), finished_at: at(t0 + 1), ..Default::default() };
        assert_eq!(status_string(&record(exited), (t0 + 6) as f64), "Exited (3) 5 seconds ago");
    }

    #[test]
    fn null_members_fall_back_to_defaults() {
        let mut v: Value = serde_json::from_str(r#"{"Image":"busybox","User":null,"Cmd":null,"HostConfig":{"NetworkMode":null,"Memory":5}}"#).unwrap();
        strip_nulls(&mut v);
        let b: ContainerCreateRequest = serde_json::from_value(v).unwrap();
        assert_eq!(b.config.user, "");
        assert_eq!(b.host_config.unwrap().memory, 5);

        // docker-compose 1.29's create body: nulls deep inside, and user-keyed maps keep their keys.
        let mut v: Value = serde_json::from_str(
            r#"{"Image":"busybox","Labels":{"a":null,"b":"x"},"ExposedPorts":{"80/tcp":null},
                "HostConfig":{"Mounts":[{"Type":"volume","Source":"data","Target":"/data","ReadOnly":null}],
                              "PortBindings":{"80/tcp":null},"LogConfig":{"Type":"json-file","Config":null}}}"#,
        )
        .unwrap();
        strip_nulls(&mut v);
        assert_eq!(v["Labels"], serde_json::json!({"a": "", "b": "x"}));
        assert_eq!(v["ExposedPorts"], serde_json::json!({"80/tcp": {}}));
        assert_eq!(v["HostConfig"]["PortBindings"], serde_json::json!({"80/tcp": []}));
        let b: ContainerCreateRequest = serde_json::from_value(v).unwrap();
        let host = b.host_config.unwrap();
        let mounts = host.mounts.unwrap_or_default();
        assert_eq!((mounts[0].target.as_str(), mounts[0].read_only), ("/data", false));
    }

    #[test]
    fn commands_quote_arguments_with_spaces() {
        assert_eq!(command_line(&record(ContainerState::default())), "sh -c 'exit 3'");
    }

    #[test]
    fn create_body_takes_config_and_host_config_side_by_side() {
        let b: ContainerCreateRequest = serde_json::from_str(
            r#"{"Image":"busybox","Cmd":["true"],"Tty":true,"HostConfig":{"Memory":33554432,"AutoRemove":true},"NetworkingConfig":{}}"#,
        )
        .unwrap();
        assert_eq!(b.config.image, "busybox");
        assert_eq!(b.config.cmd, Some(vec!["true".to_string()]));
        assert!(b.config.tty);
        let h = b.host_config.unwrap();
        assert_eq!(h.memory, 33_554_432);
        assert!(h.auto_remove);
    }

    fn cpu(base: u64) -> CpuSample {
        CpuSample { total_ns: base, kernel_ns: base / 4, user_ns: base / 2, host_ns: base * 10, online_cpus: 4 }
    }

    /// The CPU members as the engine's `json!` wrote them.
    fn cpu_json(base: u64) -> Value {
        serde_json::json!({
            "cpu_usage": {"total_usage": base, "usage_in_kernelmode": base / 4, "usage_in_usermode": base / 2},
            "system_cpu_usage": base * 10, "online_cpus": 4,
            "throttling_data": {"periods": 0, "throttled_periods": 0, "throttled_time": 0},
        })
    }

    #[test]
    fn stats_of_a_running_container_keep_their_wire_json() {
        let sample = StatsSample {
            read: "2026-01-01T00:00:02.000000000Z".into(),
            preread: "2026-01-01T00:00:01.000000000Z".into(),
            cpu: cpu(800),
            precpu: cpu(400),
            memory: Some(berth_core::container::MemorySample { usage: 3000, limit: 9000, cache: 1000 }),
            pids: Some(berth_core::container::PidsSample { current: 2, limit: Some(100) }),
            name: "web".into(),
            id: "a".repeat(64),
        };
        let expected = serde_json::json!({
            "read": "2026-01-01T00:00:02.000000000Z",
            "preread": "2026-01-01T00:00:01.000000000Z",
            "pids_stats": {"current": 2, "limit": 100},
            "blkio_stats": {},
            "num_procs": 0,
            "storage_stats": {},
            "cpu_stats": cpu_json(800),
            "precpu_stats": cpu_json(400),
            "memory_stats": {"usage": 3000, "limit": 9000, "stats": {"cache": 1000, "total_cache": 1000}},
            "name": "/web",
            "id": "a".repeat(64),
        });
        let typed = stats_response(sample.clone());
        // Byte for byte: `json!` sorted the members, the struct declares them in that order.
        assert_eq!(serde_json::to_string(&typed).unwrap(), expected.to_string());
        let unlimited = stats_response(StatsSample {
            pids: Some(berth_core::container::PidsSample { current: 2, limit: None }),
            ..sample
        });
        assert_eq!(serde_json::to_value(&unlimited).unwrap()["pids_stats"], serde_json::json!({"current": 2}));
        let back: StatsResponse = serde_json::from_value(expected).unwrap();
        assert_eq!(back, typed);
    }

    #[test]
    fn stats_of_a_stopped_container_are_docker_zeros() {
        let sample = StatsSample {
            read: ZERO_TIME.into(),
            preread: ZERO_TIME.into(),
            name: "idle".into(),
            id: "b".repeat(64),
            ..Default::default()
        };
        let zero_cpu = serde_json::json!({
            "cpu_usage": {"total_usage": 0, "usage_in_kernelmode": 0, "usage_in_usermode": 0},
            "system_cpu_usage": 0, "online_cpus": 0,
            "throttling_data": {"periods": 0, "throttled_periods": 0, "throttled_time": 0},
        });
        let expected = serde_json::json!({
            "read": ZERO_TIME, "preread": ZERO_TIME,
            "pids_stats": {}, "blkio_stats": {}, "num_procs": 0, "storage_stats": {},
            "cpu_stats": zero_cpu.clone(), "precpu_stats": zero_cpu, "memory_stats": {},
            "name": "/idle", "id": "b".repeat(64),
        });
        assert_eq!(serde_json::to_string(&stats_response(sample)).unwrap(), expected.to_string());
    }

    #[test]
    fn the_path_stat_header_is_dockers_json_in_base64() {
        let stat = PathStat { name: "etc".into(), size: 4096, mode: (1 << 31) | 0o755, mtime: "t".into(), link_target: String::new() };
        let header = stat_header(stat).unwrap();
        let json = base64::engine::general_purpose::STANDARD.decode(header.as_bytes()).unwrap();
        assert_eq!(
            String::from_utf8(json).unwrap(),
            r#"{"name":"etc","size":4096,"mode":2147484141,"mtime":"t","linkTarget":""}"#
        );
    }

    #[test]
    fn stats_stream_takes_precpu_from_the_sample_before() {
        let sample = |base: u64, read: &str| {
            let sample = StatsSample { read: read.into(), preread: ZERO_TIME.into(), cpu: cpu(base), ..Default::default() };
            stats_response(sample)
        };
        let (first, second) = (sample(100, "t1"), sample(300, "t2"));
        let alone = with_previous(second.clone(), None);
        assert_eq!(alone, second);
        let streamed = with_previous(second, Some(&first));
        assert_eq!(streamed.precpu_stats, first.cpu_stats);
        assert_eq!(streamed.preread, "t1");
        assert_eq!(streamed.cpu_stats.cpu_usage.total_usage, 300);
        assert_eq!(stats_line(&streamed).last(), Some(&b'\n'));
    }

    #[test]
    fn update_keeps_what_the_body_leaves_out_or_zeroes() {
        // The docker CLI's body: every resource, the untouched ones zero or null.
        let docker: ContainerUpdateRequest = serde_json::from_str(
            r#"{"BlkioWeight":0,"CpuShares":0,"Memory":67108864,"NanoCpus":0,"PidsLimit":null,"MemorySwappiness":null,
                "RestartPolicy":{"Name":"","MaximumRetryCount":0}}"#,
        )
        .unwrap();
        let h = update_host_config(docker);
        assert_eq!(h, HostConfig { memory: 67_108_864, ..HostConfig::default() });
        let berth: ContainerUpdateRequest =
            serde_json::from_str(r#"{"PidsLimit":-1,"RestartPolicy":{"Name":"on-failure","MaximumRetryCount":3}}"#).unwrap();
        let h = update_host_config(berth);
        assert_eq!(h.pids_limit, Some(-1));
        assert_eq!((h.restart_policy.name.as_str(), h.restart_policy.maximum_retry_count), ("on-failure", 3));
        assert_eq!(h.memory, 0);
    }
}
