//! Image routes: list, inspect, history, load, save, import, tag, remove,
//! prune, and podman's image mount/unmount. Image names contain '/', so the
//! per-image routes match `/images/{*rest}` and split the operation off the end.

use std::collections::{BTreeMap, BTreeSet};

use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use berth_core::image::{
    ArchiveFormat, ImageDeleteItem, ImageDetails, ImportOptions, LayerStep, Progress, PullProgress, PushProgress, PushStep,
    SearchFilter,
};
use berth_model::{AuthConfig, ImageRef, Platform};
use serde_json::Value;

use super::auth::registry_auth;
use super::stream::{body_reader, drain, json_lines, json_lines_until_gone, streamed};
use super::{ApiError, AppState, RequestVersion};
use crate::apitypes::images::{
    Descriptor, DistributionInspect, DistributionPlatform, GraphDriver, HistoryEntry, ImageConfig, ImageDeleteResponseItem,
    ImageInspect, ImageMetadata, ImageMountResponse, ImagePruneResponse, ImageSearchResponseItem, ImageSummary, PushResult, RootFs,
};
use crate::apitypes::system::JsonMessage;
use crate::version::ApiVersion;

/// Query parameters, with repeated keys kept (`names=a&names=b`).
#[derive(Debug, Default)]
pub struct Params(Vec<(String, String)>);

impl Params {
    /// Parses a raw `application/x-www-form-urlencoded` query string.
    pub fn parse(raw: Option<&str>) -> Params {
        let mut out = Vec::new();
        for pair in raw.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            out.push((percent_decode(k), percent_decode(v)));
        }
        Params(out)
    }

    /// The first value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    /// Every value of `key`, in order.
    pub fn all(&self, key: &str) -> Vec<String> {
        self.0.iter().filter(|(k, _)| k == key).map(|(_, v)| v.clone()).collect()
    }

    /// Docker's boolean parameters: anything but "", 0, no, false, none is true.
    pub fn flag(&self, key: &str) -> bool {
        match self.get(key) {
            None => false,
            Some(v) => !matches!(v.trim().to_ascii_lowercase().as_str(), "" | "0" | "no" | "false" | "none"),
        }
    }

    /// The `filters` parameter, checked against the keys an endpoint accepts.
    pub fn filters(&self, allowed: &[&str]) -> Result<Filters, ApiError> {
        let Some(raw) = self.get("filters").filter(|s| !s.trim().is_empty()) else {
            return Ok(Filters::default());
        };
        let parsed: crate::apitypes::filters::Filters =
            serde_json::from_str(raw).map_err(|e| ApiError::bad_request(format!("invalid filters {raw:?}: {e}")))?;
        let lists = parsed.into_lists();
        if let Some(key) = lists.keys().find(|key| !allowed.contains(&key.as_str())) {
            return Err(ApiError::bad_request(format!("invalid filter '{key}'")));
        }
        Ok(Filters(lists))
    }
}

fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Decodes `%XX` escapes and `+` (a space in form encoding).
pub fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => match (hex_val(b[i + 1]), hex_val(b[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h * 16 + l);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Parsed `filters`: key -> values.
#[derive(Debug, Default)]
pub struct Filters(BTreeMap<String, Vec<String>>);

impl Filters {
    /// The filters as the engine takes them.
    pub fn into_inner(self) -> BTreeMap<String, Vec<String>> {
        self.0
    }

    /// Values given for `key` (empty when the filter is absent).
    pub fn values(&self, key: &str) -> &[String] {
        self.0.get(key).map(Vec::as_slice).unwrap_or(&[])
    }

    /// The `dangling` filter as a bool, if given.
    pub fn dangling(&self) -> Result<Option<bool>, ApiError> {
        match self.values("dangling") {
            [] => Ok(None),
            [v] => match v.to_ascii_lowercase().as_str() {
                "true" | "1" => Ok(Some(true)),
                "false" | "0" => Ok(Some(false)),
                _ => Err(ApiError::bad_request(format!("invalid filter 'dangling={v}'"))),
            },
            _ => Err(ApiError::bad_request("invalid filter 'dangling': give one value, true or false")),
        }
    }
}

/// The image's config as JSON (OCI field names).
fn config_json(d: &ImageDetails) -> Value {
    serde_json::to_value(&d.config).unwrap_or(Value::Null)
}

/// Seconds since the epoch of the config's `created`, 0 when absent or malformed.
fn created_unix(cfg: &Value) -> i64 {
    cfg.get("created")
        .and_then(Value::as_str)
        .and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok())
        .map(|t| t.timestamp())
        .unwrap_or(0)
}

/// The image config's labels (`config.Labels`), empty when it has none.
fn labels_of(cfg: &Value) -> BTreeMap<String, String> {
    cfg.pointer("/config/Labels").and_then(|l| serde_json::from_value(l.clone()).ok()).unwrap_or_default()
}

/// Docker's `ImageSummary` for `GET /images/json` and `system df`.
pub fn image_summary(d: &ImageDetails, v: ApiVersion) -> ImageSummary {
    let cfg = config_json(d);
    ImageSummary {
        containers: d.containers as i64,
        created: created_unix(&cfg),
        id: d.record.id.to_string(),
        labels: labels_of(&cfg),
        parent_id: d.parent.as_ref().map(ToString::to_string).unwrap_or_default(),
        repo_digests: d.record.repo_digests.clone(),
        repo_tags: d.record.repo_tags.clone(),
        shared_size: -1,
        size: d.record.size,
        virtual_size: (v < ApiVersion(1, 44)).then_some(d.record.size),
    }
}

/// One member of the OCI config's `config` object, read as `T`; `None` when
/// the image does not set it (or sets it to `null`).
fn config_member<T: serde::de::DeserializeOwned>(config: &Value, key: &str) -> Option<T> {
    config.get(key).filter(|x| !x.is_null()).and_then(|x| serde_json::from_value(x.clone()).ok())
}

/// Docker's `ImageInspect` for `GET /images/{name}/json`.
fn image_inspect(d: &ImageDetails, driver: &str, v: ApiVersion) -> ImageInspect {
    let cfg = config_json(d);
    let c = cfg.get("config").cloned().unwrap_or(Value::Null);
    let text = |k: &str| config_member::<String>(&c, k).unwrap_or_default();
    let config = ImageConfig {
        args_escaped: config_member(&c, "ArgsEscaped"),
        cmd: config_member(&c, "Cmd"),
        entrypoint: config_member(&c, "Entrypoint"),
        env: config_member(&c, "Env"),
        exposed_ports: config_member(&c, "ExposedPorts"),
        healthcheck: config_member(&c, "Healthcheck"),
        labels: config_member(&c, "Labels"),
        shell: config_member(&c, "Shell"),
        stop_signal: config_member(&c, "StopSignal"),
        user: text("User"),
        volumes: config_member(&c, "Volumes"),
        working_dir: text("WorkingDir"),
        ..Default::default()
    };
    // Docker keeps the import/commit message in the config's "comment"; OCI has
    // no such field, so the newest history entry's comment stands in.
    let comment = cfg
        .get("comment")
        .and_then(Value::as_str)
        .map(str::to_string)
        .or_else(|| {
            cfg.get("history")
                .and_then(Value::as_array)
                .and_then(|h| h.last())
                .and_then(|e| e.get("comment"))
                .and_then(Value::as_str)
                .map(str::to_string)
        })
        .unwrap_or_default();
    let top = |k: &str| cfg.get(k).and_then(Value::as_str).map(str::to_string);
    ImageInspect {
        architecture: top("architecture").unwrap_or_default(),
        author: top("author").unwrap_or_default(),
        comment,
        config,
        container: (v < ApiVersion(1, 45)).then(|| d.docker.container.clone()),
        container_config: (v < ApiVersion(1, 45)).then(|| {
            d.docker.container_config.clone().and_then(|c| serde_json::from_value(c).ok()).unwrap_or_default()
        }),
        created: top("created"),
        docker_version: d.docker.docker_version.clone(),
        graph_driver: GraphDriver { data: None, name: driver.to_string() },
        id: d.record.id.to_string(),
        metadata: ImageMetadata { last_tag_time: d.record.added_at.clone() },
        os: top("os").unwrap_or_default(),
        os_version: top("os.version"),
        parent: d.parent.as_ref().map(ToString::to_string).unwrap_or_default(),
        repo_digests: d.record.repo_digests.clone(),
        repo_tags: d.record.repo_tags.clone(),
        root_fs: RootFs { layers: d.diff_ids.iter().map(ToString::to_string).collect(), kind: "layers".to_string() },
        size: d.record.size,
        variant: top("variant"),
        virtual_size: (v < ApiVersion(1, 44)).then_some(d.record.size),
    }
}

/// Matches `name` against a glob pattern in which `*` and `?` never cross '/'
/// (Go's `path.Match`, which Docker's `reference` filter uses).
pub fn glob_match(pattern: &str, name: &str) -> bool {
    fn go(p: &[char], n: &[char]) -> bool {
        match p.first() {
            None => n.is_empty(),
            Some('*') => (0..=n.len()).take_while(|&i| i == 0 || n[i - 1] != '/').any(|i| go(&p[1..], &n[i..])),
            Some('?') => !n.is_empty() && n[0] != '/' && go(&p[1..], &n[1..]),
            Some('[') => {
                let Some(end) = p.iter().position(|&c| c == ']') else { return false };
                let Some(&c) = n.first() else { return false };
                let class = &p[1..end];
                let (negate, class) = match class.first() {
                    Some('^') | Some('!') => (true, &class[1..]),
                    _ => (false, class),
                };
                let mut hit = false;
                let mut i = 0;
                while i < class.len() {
                    if i + 2 < class.len() && class[i + 1] == '-' {
                        hit |= class[i] <= c && c <= class[i + 2];
                        i += 3;
                    } else {
                        hit |= class[i] == c;
                        i += 1;
                    }
                }
                hit != negate && c != '/' && go(&p[end + 1..], &n[1..])
            }
            Some('\\') if p.len() > 1 => !n.is_empty() && n[0] == p[1] && go(&p[2..], &n[1..]),
            Some(&c) => !n.is_empty() && n[0] == c && go(&p[1..], &n[1..]),
        }
    }
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    go(&p, &n)
}

/// Whether an image matches one `reference=` pattern: a pattern with a tag is
/// matched against `repo:tag`, one without against the repository alone.
fn reference_matches(pattern: &str, repo_tags: &[String]) -> bool {
    let last = pattern.rsplit('/').next().unwrap_or(pattern);
    let has_tag = last.contains(':');
    repo_tags.iter().any(|rt| {
        if has_tag {
            glob_match(pattern, rt)
        } else {
            let repo = match rt.rfind(':') {
                Some(i) if !rt[i..].contains('/') => &rt[..i],
                _ => rt.as_str(),
            };
            glob_match(pattern, repo)
        }
    })
}

fn label_matches(filter: &str, labels: &BTreeMap<String, String>) -> bool {
    match filter.split_once('=') {
        Some((k, v)) => labels.get(k).map(String::as_str) == Some(v),
        None => labels.contains_key(filter),
    }
}

/// Parses an `until` value: a unix timestamp, an RFC 3339 time, or a duration
/// before now such as `24h` or `1h30m`. Returns seconds since the epoch.
pub fn parse_until(value: &str, now: i64) -> Option<i64> {
    if let Ok(n) = value.parse::<f64>() {
        return Some(n as i64);
    }
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(value) {
        return Some(t.timestamp());
    }
    if let Ok(d) = chrono::NaiveDate::parse_from_str(value, "%Y-%m-%d") {
        return d.and_hms_opt(0, 0, 0).map(|t| t.and_utc().timestamp());
    }
    // A Go duration: numbers with h, m, s units.
    let mut total = 0f64;
    let mut num = String::new();
    let mut any = false;
    let mut chars = value.chars().peekable();
    while let Some(c) = chars.next() {
        if c.is_ascii_digit() || c == '.' {
            num.push(c);
            continue;
        }
        let unit = match (c, chars.peek()) {
            ('m', Some('s')) => {
                chars.next();
                0.001
            }
            ('h', _) => 3600.0,
            ('m', _) => 60.0,
            ('s', _) => 1.0,
            _ => return None,
        };
        total += num.parse::<f64>().ok()? * unit;
        num.clear();
        any = true;
    }
    (any && num.is_empty()).then(|| now - total as i64)
}

/// Applies the list filters shared by `images/json` and `images/prune`.
fn filter_images(
    images: Vec<ImageDetails>,
    filters: &Filters,
    lookup: &dyn Fn(&str) -> Option<i64>,
) -> Result<Vec<ImageDetails>, ApiError> {
    let dangling = filters.dangling()?;
    let now = chrono::Utc::now().timestamp();
    let mut bounds = Vec::new();
    for b in filters.values("before") {
        let t = lookup(b).ok_or_else(|| ApiError::not_found(format!("No such image: {b}")))?;
        bounds.push((t, true));
    }
    for s in filters.values("since") {
        let t = lookup(s).ok_or_else(|| ApiError::not_found(format!("No such image: {s}")))?;
        bounds.push((t, false));
    }
    let mut untils = Vec::new();
    for u in filters.values("until") {
        untils.push(parse_until(u, now).ok_or_else(|| {
            ApiError::bad_request(format!("invalid filter 'until={u}': expected a timestamp, an RFC 3339 date or a duration such as 24h"))
        })?);
    }
    let references = filters.values("reference");
    let labels = filters.values("label");
    Ok(images
        .into_iter()
        .filter(|d| {
            let cfg = config_json(d);
            let created = created_unix(&cfg);
            let is_dangling = d.record.repo_tags.is_empty();
            dangling.is_none_or(|want| want == is_dangling)
                && (references.is_empty() || references.iter().any(|r| reference_matches(r, &d.record.repo_tags)))
                && labels.iter().all(|l| label_matches(l, &labels_of(&cfg)))
                && bounds.iter().all(|&(t, before)| if before { created < t } else { created > t })
                && untils.iter().all(|&t| created < t)
        })
        .collect())
}

/// `GET /images/json`.
pub async fn list(
    State(state): State<AppState>,
    Extension(RequestVersion(v)): Extension<RequestVersion>,
    RawQuery(q): RawQuery,
) -> Result<Json<Vec<ImageSummary>>, ApiError> {
    let params = Params::parse(q.as_deref());
    let filters = params.filters(&["dangling", "label", "before", "since", "reference", "until"])?;
    let all = params.flag("all");
    let images = state.blocking(|e| e.images().list()).await?;
    let created: BTreeMap<String, i64> = images
        .iter()
        .flat_map(|d| {
            let t = created_unix(&config_json(d));
            let mut keys = d.record.repo_tags.clone();
            keys.push(d.record.id.to_string());
            keys.into_iter().map(move |k| (k, t))
        })
        .collect();
    let lookup = |name: &str| -> Option<i64> {
        let with_tag = if name.contains(':') && !name.starts_with("sha256:") { name.to_string() } else { format!("{name}:latest") };
        created
            .get(name)
            .or_else(|| created.get(&with_tag))
            .or_else(|| created.iter().find(|(k, _)| k.strip_prefix("sha256:").is_some_and(|h| h.starts_with(name))).map(|(_, t)| t))
            .copied()
    };
    let parents: BTreeSet<String> = images.iter().filter_map(|d| d.parent.as_ref().map(ToString::to_string)).collect();
    let filtered = filter_images(images, &filters, &lookup)?;
    let out: Vec<ImageSummary> = filtered
        .iter()
        // Without -a, untagged images that others were built on are intermediate layers: hidden.
        .filter(|d| all || !d.record.repo_tags.is_empty() || !parents.contains(&d.record.id.to_string()))
        .map(|d| image_summary(d, v))
        .collect();
    Ok(Json(out))
}

/// `POST /images/load`: a docker-archive or OCI-layout tar in the body.
pub async fn load(State(state): State<AppState>, RawQuery(q): RawQuery, body: Body) -> Result<Response, ApiError> {
    let quiet = Params::parse(q.as_deref()).flag("quiet");
    let mut reader = body_reader(body);
    json_lines(&state, move |engine, emit| {
        let messages = engine
            .images().load(&mut reader, &mut |p| {
                if let (false, Progress::LayerDone { diff_id }) = (quiet, &p) {
                    emit(JsonMessage::status_of("Loaded layer", diff_id.short()));
                }
            })
            .inspect_err(|_| drain(&mut reader))?;
        for m in messages {
            emit(JsonMessage::stream(format!("{m}\n")));
        }
        Ok(())
    })
    .await
}

fn save_format(params: &Params) -> Result<ArchiveFormat, ApiError> {
    match params.get("format").unwrap_or("docker") {
        "" | "docker" | "docker-archive" => Ok(ArchiveFormat::DockerArchive),
        "oci" | "oci-archive" => Ok(ArchiveFormat::OciLayout),
        other => Err(ApiError::bad_request(format!("unknown archive format {other:?}: use docker or oci"))),
    }
}

async fn save(state: AppState, names: Vec<String>, format: ArchiveFormat) -> Result<Response, ApiError> {
    if names.is_empty() {
        return Err(ApiError::bad_request("no images given: name at least one image to save"));
    }
    streamed(&state, "application/x-tar", move |engine, out| engine.images().save(&names, format, out)).await
}

/// `GET /images/get?names=a&names=b`.
pub async fn save_many(State(state): State<AppState>, RawQuery(q): RawQuery) -> Result<Response, ApiError> {
    let params = Params::parse(q.as_deref());
    let format = save_format(&params)?;
    save(state, params.all("names"), format).await
}

/// `POST /images/create`: import (`fromSrc`) or pull (`fromImage`).
pub async fn create(
    State(state): State<AppState>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let params = Params::parse(q.as_deref());
    if let Some(image) = params.get("fromImage").filter(|s| !s.is_empty()) {
        return pull(state, &params, image, registry_auth(&headers)).await;
    }
    let src = params.get("fromSrc").unwrap_or("");
    if src != "-" {
        return Err(ApiError::bad_request(if src.is_empty() {
            "give fromSrc=- (import the request body) or fromImage".to_string()
        } else {
            format!("cannot import from {src:?}: berth imports only from the request body (fromSrc=-); download the file and import it from there")
        }));
    }
    let reference = match params.get("repo").filter(|r| !r.is_empty()) {
        None => None,
        Some(repo) => {
            let mut r = ImageRef::parse(repo).map_err(|e| ApiError::bad_request(e.to_string()))?;
            if let Some(tag) = params.get("tag").filter(|t| !t.is_empty()) {
                if r.tag.is_some() || r.digest.is_some() {
                    return Err(ApiError::bad_request(format!("repository {repo:?} already names a tag; do not also give tag={tag:?}")));
                }
                r = ImageRef::parse(&format!("{}:{tag}", r.name)).map_err(|e| ApiError::bad_request(e.to_string()))?;
            }
            Some(r.with_default_tag())
        }
    };
    let options = ImportOptions {
        reference,
        changes: params.all("changes").into_iter().filter(|c| !c.trim().is_empty()).collect(),
        message: params.get("message").filter(|m| !m.is_empty()).map(str::to_string),
        platform: params.get("platform").filter(|p| !p.is_empty()).map(str::to_string),
    };
    let mut reader = body_reader(body);
    json_lines(&state, move |engine, emit| {
        let details = engine.images().import(&mut reader, &options, &mut |_| {}).inspect_err(|_| drain(&mut reader))?;
        emit(JsonMessage::status(details.record.id.to_string()));
        Ok(())
    })
    .await
}

/// `POST /images/create?fromImage=NAME&tag=TAG[&platform=P]`: `docker pull`,
/// streamed as Docker's progress messages. `tag` may be a digest, as the
/// docker CLI sends it for `pull name@sha256:…`. `auth` is the user's
/// credentials from `X-Registry-Auth`.
/// Without a tag (in the name or `tag=`), every tag of the repository is
/// pulled, as dockerd does (`docker pull -a`; the docker CLI otherwise always
/// sends `tag=latest`).
async fn pull(state: AppState, params: &Params, image: &str, auth: Option<AuthConfig>) -> Result<Response, ApiError> {
    let mut reference = ImageRef::parse(image).map_err(|e| ApiError::bad_request(e.to_string()))?;
    if let Some(tag) = params.get("tag").filter(|t| !t.is_empty()) {
        let combined = if tag.starts_with("sha256:") { format!("{}@{tag}", reference.name) } else { format!("{}:{tag}", reference.name) };
        reference = ImageRef::parse(&combined).map_err(|e| ApiError::bad_request(e.to_string()))?;
    }
    let all_tags = reference.tag.is_none() && reference.digest.is_none();
    let platform = match params.get("platform").filter(|p| !p.is_empty()) {
        Some(p) => Some(p.parse::<Platform>().map_err(|e| ApiError::bad_request(e.to_string()))?),
        None => None,
    };
    json_lines_until_gone(&state, move |engine, emit, client_gone| {
        let references = if all_tags {
            let tags = engine.images().remote_tags(&reference, auth.as_ref())?;
            tags.into_iter().map(|tag| ImageRef { tag: Some(tag), ..reference.clone() }).collect()
        } else {
            vec![reference.clone()]
        };
        let mut updated = false;
        for one in &references {
            let outcome =
                engine.images().pull_until(one, platform.as_ref(), auth.as_ref(), client_gone, &mut |p| emit(pull_message(p)))?;
            emit(JsonMessage::status(format!("Digest: {}", outcome.manifest_digest)));
            updated |= outcome.updated;
            if !all_tags {
                emit(pull_status(outcome.updated, &outcome.reference));
            }
        }
        if all_tags {
            emit(pull_status(updated, &reference.name));
        }
        Ok(())
    })
    .await
}

/// A pull's last line, about `what` (`name:tag`, or the repository after `pull -a`).
fn pull_status(updated: bool, what: &str) -> JsonMessage {
    JsonMessage::status(if updated {
        format!("Status: Downloaded newer image for {what}")
    } else {
        format!("Status: Image is up to date for {what}")
    })
}

/// A pull's progress in Docker's words: layers go by their blob's short digest.
fn pull_message(progress: PullProgress) -> JsonMessage {
    match progress {
        PullProgress::PullingFrom { repository, reference } => {
            JsonMessage::status_of(format!("Pulling from {repository}"), reference)
        }
        PullProgress::Layer { blob, step } => {
            let id = blob.short().to_string();
            match step {
                LayerStep::AlreadyExists => JsonMessage::status_of("Already exists", id),
                LayerStep::Queued => JsonMessage::status_of("Pulling fs layer", id),
                LayerStep::Downloading { current, total } => JsonMessage::progress_of("Downloading", id, current, total),
                LayerStep::Retrying { seconds } => {
                    JsonMessage::status_of(format!("Retrying in {seconds} second{}", if seconds == 1 { "" } else { "s" }), id)
                }
                LayerStep::Verifying => JsonMessage::status_of("Verifying Checksum", id),
                LayerStep::DownloadComplete => JsonMessage::status_of("Download complete", id),
                LayerStep::Extracting { total } => JsonMessage::progress_of("Extracting", id, 0, total),
                LayerStep::PullComplete => JsonMessage::status_of("Pull complete", id),
            }
        }
    }
}

/// `POST /images/{name}/push?tag=TAG`: `docker push`, streamed as Docker's
/// progress messages; without a tag (`docker push -a`) every tag of the
/// repository. Credentials in `X-Registry-Auth` are not needed by the
/// registries berth reaches today, so the header is accepted and unused.
async fn push(state: AppState, name: &str, params: &Params, auth: Option<AuthConfig>) -> Result<Response, ApiError> {
    let mut reference = ImageRef::parse(name).map_err(|e| ApiError::bad_request(e.to_string()))?;
    if let Some(tag) = params.get("tag").filter(|t| !t.is_empty()) {
        reference = ImageRef::parse(&format!("{}:{tag}", reference.name)).map_err(|e| ApiError::bad_request(e.to_string()))?;
    }
    json_lines(&state, move |engine, emit| {
        engine.images().push(&reference, auth.as_ref(), &mut |p| push_messages(p).into_iter().for_each(&mut *emit))
    })
    .await
}

/// A push's progress in Docker's words: layers go by their diff ID's short form, as dockerd shows them.
fn push_messages(progress: PushProgress) -> Vec<JsonMessage> {
    let one = match progress {
        PushProgress::RefersTo { repository } => JsonMessage::status(format!("The push refers to repository [{repository}]")),
        PushProgress::Layer { diff_id, step } => {
            let id = diff_id.short().to_string();
            match step {
                PushStep::Preparing => JsonMessage::status_of("Preparing", id),
                PushStep::Waiting => JsonMessage::status_of("Waiting", id),
                PushStep::Pushing { current, total } => JsonMessage::progress_of("Pushing", id, current, total),
                PushStep::Pushed => JsonMessage::status_of("Pushed", id),
                PushStep::AlreadyExists => JsonMessage::status_of("Layer already exists", id),
                PushStep::MountedFrom(repository) => JsonMessage::status_of(format!("Mounted from {repository}"), id),
            }
        }
        PushProgress::Pushed { tag, digest, size } => {
            let aux = PushResult { tag: tag.clone(), digest: digest.to_string(), size };
            return vec![
                JsonMessage::status(format!("{tag}: digest: {digest} size: {size}")),
                JsonMessage { aux: Some(aux), ..Default::default() },
            ];
        }
    };
    vec![one]
}

/// `POST /images/prune`.
pub async fn prune(State(state): State<AppState>, RawQuery(q): RawQuery) -> Result<Json<ImagePruneResponse>, ApiError> {
    let params = Params::parse(q.as_deref());
    let filters = params.filters(&["dangling", "label", "until"])?;
    // dangling=false means "every unused image", Docker's `prune -a`.
    let all = filters.dangling()? == Some(false);
    let narrowed = !filters.values("label").is_empty() || !filters.values("until").is_empty();
    let (items, reclaimed) = if !narrowed {
        state.blocking(move |e| e.images().prune(all)).await?
    } else {
        state
            .blocking(move |e| {
                let before = e.images().disk_usage()?.layers_size;
                let candidates = e.images().list()?;
                let candidates = filter_images(candidates, &filters, &|_| None)
                    .map_err(|err| berth_core::EngineError::InvalidArgument(err.message))?;
                let mut items = Vec::new();
                for d in candidates {
                    if d.containers > 0 || (!all && !d.record.repo_tags.is_empty()) {
                        continue;
                    }
                    match e.images().remove(&d.record.id.to_string(), false, false) {
                        Ok(mut removed) => items.append(&mut removed),
                        // Another image depends on it, or it is in use: prune skips it, as Docker does.
                        Err(err) if err.kind() == berth_core::ErrorKind::Conflict => {}
                        Err(err) => return Err(err),
                    }
                }
                let after = e.images().disk_usage()?.layers_size;
                Ok((items, before.saturating_sub(after)))
            })
            .await?
    };
    Ok(Json(ImagePruneResponse {
        images_deleted: if items.is_empty() { None } else { Some(delete_items(&items)) },
        space_reclaimed: reclaimed,
    }))
}

/// `GET /images/search`: needs a registry.
/// `GET /images/search?term=&limit=&filters=`: `docker search`.
pub async fn search(State(state): State<AppState>, RawQuery(q): RawQuery) -> Result<Json<Vec<ImageSearchResponseItem>>, ApiError> {
    let params = Params::parse(q.as_deref());
    let term = params.get("term").unwrap_or("").to_string();
    let limit = match params.get("limit").filter(|l| !l.is_empty()) {
        Some(l) => Some(l.parse::<u32>().map_err(|_| ApiError::bad_request(format!("invalid limit {l:?}: give a number from 1 to 100")))?),
        None => None,
    };
    let filters = params.filters(&["is-automated", "is-official", "stars"])?;
    let bool_filter = |key: &str| -> Result<Option<bool>, ApiError> {
        match filters.values(key).first().map(String::as_str) {
            None => Ok(None),
            Some("true" | "1") => Ok(Some(true)),
            Some("false" | "0") => Ok(Some(false)),
            Some(v) => Err(ApiError::bad_request(format!("invalid filter '{key}={v}'"))),
        }
    };
    let min_stars = match filters.values("stars").first() {
        None => None,
        Some(v) => Some(v.parse::<u64>().map_err(|_| ApiError::bad_request(format!("invalid filter 'stars={v}'")))?),
    };
    let filter = SearchFilter { min_stars, is_official: bool_filter("is-official")?, is_automated: bool_filter("is-automated")? };
    let found = state.blocking(move |e| e.images().search(&term, limit, &filter)).await?;
    Ok(Json(
        found
            .into_iter()
            .map(|r| ImageSearchResponseItem {
                name: r.name,
                description: r.description,
                star_count: r.star_count,
                is_official: r.is_official,
                is_automated: r.is_automated,
            })
            .collect(),
    ))
}

/// `GET /distribution/{name}/json`: what a reference names on its registry, without pulling.
pub async fn distribution(
    State(state): State<AppState>,
    Path(rest): Path<String>,
    headers: HeaderMap,
) -> Result<Json<DistributionInspect>, ApiError> {
    let auth = registry_auth(&headers);
    let name = rest.strip_suffix("/json").filter(|n| !n.is_empty()).ok_or_else(|| ApiError::not_found("page not found"))?;
    let reference = ImageRef::parse(name).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let info = state.blocking(move |e| e.images().distribution_inspect(&reference, auth.as_ref())).await?;
    Ok(Json(DistributionInspect {
        descriptor: Descriptor { media_type: info.media_type, digest: info.digest.to_string(), size: info.size },
        platforms: info
            .platforms
            .into_iter()
            .map(|p| DistributionPlatform { architecture: p.architecture, os: p.os, variant: p.variant })
            .collect(),
    }))
}

fn delete_items(items: &[ImageDeleteItem]) -> Vec<ImageDeleteResponseItem> {
    items
        .iter()
        .map(|i| match i {
            ImageDeleteItem::Untagged(r) => ImageDeleteResponseItem { untagged: Some(r.clone()), deleted: None },
            ImageDeleteItem::Deleted(d) => ImageDeleteResponseItem { untagged: None, deleted: Some(d.to_string()) },
        })
        .collect()
}

/// Splits `name/op` into the image name and the operation.
fn split_op(rest: &str) -> Option<(&str, &str)> {
    let (name, op) = rest.rsplit_once('/')?;
    (!name.is_empty()).then_some((name, op))
}

/// `GET /images/{name}/json|history|get`.
pub async fn get_dispatch(
    State(state): State<AppState>,
    Extension(RequestVersion(v)): Extension<RequestVersion>,
    Path(rest): Path<String>,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    let Some((name, op)) = split_op(&rest) else {
        return Err(ApiError::not_found("page not found"));
    };
    let name = name.to_string();
    match op {
        "json" => {
            let driver = state.engine.storage().name().to_string();
            let d = state.blocking(move |e| e.images().find(&name)).await?;
            Ok(Json(image_inspect(&d, &driver, v)).into_response())
        }
        "history" => {
            let entries = state.blocking(move |e| e.images().history(&name)).await?;
            let out: Vec<HistoryEntry> = entries
                .into_iter()
                .map(|h| {
                    let created = h
                        .created
                        .as_deref()
                        .and_then(|c| chrono::DateTime::parse_from_rfc3339(c).ok())
                        .map(|t| t.timestamp())
                        .unwrap_or(0);
                    HistoryEntry {
                        comment: h.comment,
                        created,
                        created_by: h.created_by,
                        id: h.id.map(|d| d.to_string()).unwrap_or_else(|| "<missing>".to_string()),
                        size: h.size,
                        tags: if h.tags.is_empty() { None } else { Some(h.tags) },
                    }
                })
                .collect();
            Ok(Json(out).into_response())
        }
        "get" => {
            let format = save_format(&Params::parse(q.as_deref()))?;
            save(state, vec![name], format).await
        }
        _ => Err(ApiError::not_found("page not found")),
    }
}

/// `POST /images/{name}/tag|push|mount|unmount`.
pub async fn post_dispatch(
    State(state): State<AppState>,
    Path(rest): Path<String>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let Some((name, op)) = split_op(&rest) else {
        return Err(ApiError::not_found("page not found"));
    };
    let name = name.to_string();
    let params = Params::parse(q.as_deref());
    match op {
        "tag" => {
            let repo = params.get("repo").unwrap_or("");
            if repo.is_empty() {
                return Err(ApiError::bad_request("repository name must have at least one component"));
            }
            let mut target = ImageRef::parse(repo).map_err(|e| ApiError::bad_request(e.to_string()))?;
            if target.digest.is_some() {
                return Err(ApiError::bad_request("refusing to create a tag with a digest reference"));
            }
            if let Some(tag) = params.get("tag").filter(|t| !t.is_empty()) {
                target = ImageRef::parse(&format!("{}:{tag}", target.name)).map_err(|e| ApiError::bad_request(e.to_string()))?;
            }
            let target = target.with_default_tag();
            state.blocking(move |e| e.images().tag(&name, &target)).await?;
            Ok(StatusCode::CREATED.into_response())
        }
        "push" => push(state, &name, &params, registry_auth(&headers)).await,
        "mount" => {
            let path = state.blocking(move |e| e.images().mount(&name)).await?;
            Ok(Json(ImageMountResponse { path: path.display().to_string() }).into_response())
        }
        "unmount" => {
            state.blocking(move |e| e.images().unmount(&name)).await?;
            Ok(StatusCode::NO_CONTENT.into_response())
        }
        _ => Err(ApiError::not_found("page not found")),
    }
}

/// `DELETE /images/{name}?force&noprune`.
pub async fn delete(
    State(state): State<AppState>,
    Path(name): Path<String>,
    RawQuery(q): RawQuery,
) -> Result<Json<Vec<ImageDeleteResponseItem>>, ApiError> {
    let params = Params::parse(q.as_deref());
    let (force, no_prune) = (params.flag("force"), params.flag("noprune"));
    let items = state.blocking(move |e| e.images().remove(&name, force, no_prune)).await?;
    Ok(Json(delete_items(&items)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_keeps_repeated_keys_and_decodes_escapes() {
        let p = Params::parse(Some("names=busybox%3Alatest&names=a%2Fb&changes=CMD+%5B%22sh%22%5D&quiet=1&bad=%zz"));
        assert_eq!(p.all("names"), vec!["busybox:latest", "a/b"]);
        assert_eq!(p.get("changes"), Some("CMD [\"sh\"]"));
        assert!(p.flag("quiet"));
        assert!(!p.flag("missing"));
        assert_eq!(p.get("bad"), Some("%zz"));
    }

    #[test]
    fn filters_accept_both_encodings_and_refuse_unknown_keys() {
        let p = Params::parse(Some("filters=%7B%22dangling%22%3A%7B%22true%22%3Atrue%7D%7D"));
        assert_eq!(p.filters(&["dangling"]).unwrap().dangling().unwrap(), Some(true));
        let p = Params::parse(Some("filters=%7B%22reference%22%3A%5B%22busy*%22%5D%7D"));
        assert_eq!(p.filters(&["reference"]).unwrap().values("reference"), ["busy*"]);
        let e = p.filters(&["dangling"]).unwrap_err();
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
        assert_eq!(e.message, "invalid filter 'reference'");
    }

    #[test]
    fn reference_filter_matches_like_docker() {
        let tags = vec!["busybox:latest".to_string(), "localhost:5000/team/app:1.0".to_string()];
        assert!(reference_matches("busybox", &tags));
        assert!(reference_matches("busy*", &tags));
        assert!(reference_matches("busybox:lat*", &tags));
        assert!(!reference_matches("busybox:1.0", &tags));
        assert!(reference_matches("localhost:5000/team/app", &tags));
        assert!(!reference_matches("*/app", &tags));
        assert!(reference_matches("*/*/app", &tags));
        assert!(glob_match("a[0-9]c", "a5c"));
        assert!(!glob_match("a[!0-9]c", "a5c"));
    }

    #[test]
    fn until_accepts_timestamps_dates_and_durations() {
        assert_eq!(parse_until("1700000000", 0), Some(1_700_000_000));
        assert_eq!(parse_until("2024-01-01T00:00:00Z", 0), Some(1_704_067_200));
        assert_eq!(parse_until("1h30m", 10_000), Some(10_000 - 5400));
        assert_eq!(parse_until("24x", 0), None);
        assert_eq!(parse_until("5", 0), Some(5));
    }

    #[test]
    fn image_operations_split_off_the_end_of_names_with_slashes() {
        assert_eq!(split_op("localhost:5000/team/app:1/json"), Some(("localhost:5000/team/app:1", "json")));
        assert_eq!(split_op("json"), None);
    }
}
