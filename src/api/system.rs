//! `/_ping`, `/version`, `/info` and `/system/df`.

use std::collections::BTreeMap;

use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde_json::{json, Value};

use super::images::image_summary;
use super::{ApiError, AppState, RequestVersion};
use crate::version;

/// The headers the docker CLI reads from `_ping` to negotiate.
fn ping_headers() -> HeaderMap {
    let mut h = HeaderMap::new();
    let pairs: [(&str, &str); 7] = [
        ("api-version", version::MAX_API_VERSION),
        ("ostype", "linux"),
        ("docker-experimental", "false"),
        // There is no BuildKit endpoint: "1" makes the CLI use the classic build API.
        ("builder-version", "1"),
        ("swarm", "inactive"),
        ("cache-control", "no-cache, no-store, must-revalidate"),
        ("pragma", "no-cache"),
    ];
    for (k, v) in pairs {
        h.insert(k, HeaderValue::from_static(v));
    }
    h
}

/// `GET /_ping`.
pub async fn ping() -> Response {
    let mut h = ping_headers();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    (h, "OK").into_response()
}

/// `HEAD /_ping`.
pub async fn ping_head() -> Response {
    let mut h = ping_headers();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    h.insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
    (h, ()).into_response()
}

/// Facts about the host, read once per request (they are cheap).
struct Host {
    kernel: String,
    hostname: String,
}

fn host() -> Host {
    match nix::sys::utsname::uname() {
        Ok(u) => Host {
            kernel: u.release().to_string_lossy().into_owned(),
            hostname: u.nodename().to_string_lossy().into_owned(),
        },
        Err(_) => Host { kernel: String::new(), hostname: String::new() },
    }
}

/// `GET /version`.
pub async fn version() -> Json<Value> {
    let h = host();
    let arch = version::go_arch();
    Json(json!({
        "Platform": { "Name": "berth" },
        "Components": [{
            "Name": "Engine",
            "Version": version::VERSION,
            "Details": {
                "ApiVersion": version::MAX_API_VERSION,
                "Arch": arch,
                "BuildTime": version::BUILD_TIME,
                "Experimental": "false",
                "GitCommit": version::GIT_COMMIT,
                "GoVersion": version::RUSTC_VERSION,
                "KernelVersion": h.kernel,
                "MinAPIVersion": version::MIN_API_VERSION,
                "Os": "linux",
            }
        }],
        "Version": version::VERSION,
        "ApiVersion": version::MAX_API_VERSION,
        "MinAPIVersion": version::MIN_API_VERSION,
        "GitCommit": version::GIT_COMMIT,
        "GoVersion": version::RUSTC_VERSION,
        "Os": "linux",
        "Arch": arch,
        "KernelVersion": h.kernel,
        "BuildTime": version::BUILD_TIME,
    }))
}

/// `1` on cgroup v1 and hybrid hosts, `2` where /sys/fs/cgroup is the unified hierarchy.
pub fn cgroup_version() -> &'static str {
    match nix::sys::statfs::statfs("/sys/fs/cgroup") {
        Ok(s) if s.filesystem_type() == nix::sys::statfs::CGROUP2_SUPER_MAGIC => "2",
        _ => "1",
    }
}

fn exists(path: &str) -> bool {
    std::path::Path::new(path).exists()
}

/// Docker's `SecurityOptions`: every container that is not privileged gets
/// berth's default seccomp profile; cgroup namespaces on a v2 host.
fn security_options(cgroup_version: &str) -> Value {
    let seccomp = format!("name=seccomp,profile={}", berth_runtime::seccomp::DEFAULT_PROFILE_NAME);
    match cgroup_version {
        "2" => json!([seccomp, "name=cgroupns"]),
        _ => json!([seccomp]),
    }
}

/// What resource limits the host's cgroups can enforce (info's MemoryLimit etc.).
fn cgroup_features(v: &str) -> Value {
    if v == "2" {
        let controllers = std::fs::read_to_string("/sys/fs/cgroup/cgroup.controllers").unwrap_or_default();
        let has = |c: &str| controllers.split_whitespace().any(|x| x == c);
        json!({
            "MemoryLimit": has("memory"),
            "SwapLimit": has("memory"),
            "CpuCfsPeriod": has("cpu"),
            "CpuCfsQuota": has("cpu"),
            "CPUShares": has("cpu"),
            "CPUSet": has("cpuset"),
            "PidsLimit": has("pids"),
            "OomKillDisable": false,
            "KernelMemoryTCP": false,
        })
    } else {
        json!({
            "MemoryLimit": exists("/sys/fs/cgroup/memory/memory.limit_in_bytes"),
            "SwapLimit": exists("/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes"),
            "CpuCfsPeriod": exists("/sys/fs/cgroup/cpu/cpu.cfs_period_us"),
            "CpuCfsQuota": exists("/sys/fs/cgroup/cpu/cpu.cfs_quota_us"),
            "CPUShares": exists("/sys/fs/cgroup/cpu/cpu.shares"),
            "CPUSet": exists("/sys/fs/cgroup/cpuset/cpuset.cpus"),
            "PidsLimit": exists("/sys/fs/cgroup/pids/pids.max"),
            "OomKillDisable": exists("/sys/fs/cgroup/memory/memory.oom_control"),
            "KernelMemoryTCP": exists("/sys/fs/cgroup/memory/memory.kmem.tcp.limit_in_bytes"),
        })
    }
}

fn read_trimmed(path: &str) -> String {
    std::fs::read_to_string(path).map(|s| s.trim().to_string()).unwrap_or_default()
}

/// `PRETTY_NAME` and `VERSION_ID` from /etc/os-release.
fn os_release() -> (String, String) {
    let text = std::fs::read_to_string("/etc/os-release").unwrap_or_default();
    let field = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(key).and_then(|r| r.strip_prefix('=')))
            .map(|v| v.trim_matches('"').to_string())
            .unwrap_or_default()
    };
    let pretty = field("PRETTY_NAME");
    (if pretty.is_empty() { "Linux".to_string() } else { pretty }, field("VERSION_ID"))
}

fn mem_total() -> u64 {
    let text = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|r| r.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kb| kb * 1024)
        .unwrap_or(0)
}

fn count_dir(path: &str) -> usize {
    std::fs::read_dir(path).map(|d| d.count()).unwrap_or(0)
}

/// `GET /info`.
pub async fn info(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    // Driver calls may touch the disk: all of them off the async threads.
    let (containers, image_count, driver, driver_status, volume_plugins, network_plugins, root) = state
        .blocking(|e| {
            let storage = e.storage();
            let status: Vec<[String; 2]> = storage.status().into_iter().map(|(k, v)| [k, v]).collect();
            let all = berth_core::container::ListOptions { all: true, ..Default::default() };
            Ok((
                e.list_containers(&all)?,
                e.list_images()?.len(),
                storage.name().to_string(),
                status,
                e.drivers().volume.names(),
                e.drivers().network.names(),
                e.config().root.display().to_string(),
            ))
        })
        .await?;
    let h = host();
    let (os, os_version) = os_release();
    let cg = cgroup_version();
    let mut info = json!({
        "ID": &*state.id,
        "Containers": containers.len(),
        "ContainersRunning": containers.iter().filter(|c| c.record.state.running && !c.record.state.paused).count(),
        "ContainersPaused": containers.iter().filter(|c| c.record.state.paused).count(),
        "ContainersStopped": containers.iter().filter(|c| !c.record.state.running).count(),
        "Images": image_count,
        "Driver": driver,
        "DriverStatus": driver_status,
        "Plugins": {
            "Volume": volume_plugins,
            "Network": network_plugins,
            "Authorization": null,
            "Log": [],
        },
        "IPv4Forwarding": read_trimmed("/proc/sys/net/ipv4/ip_forward") == "1",
        "BridgeNfIptables": read_trimmed("/proc/sys/net/bridge/bridge-nf-call-iptables") == "1",
        "BridgeNfIp6tables": read_trimmed("/proc/sys/net/bridge/bridge-nf-call-ip6tables") == "1",
        "Debug": tracing::enabled!(tracing::Level::DEBUG),
        "NFd": count_dir("/proc/self/fd"),
        "NGoroutines": count_dir("/proc/self/task"),
        "SystemTime": chrono::Local::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, false),
        "LoggingDriver": "json-file",
        "CgroupDriver": "cgroupfs",
        "CgroupVersion": cg,
        "NEventsListener": 0,
        "KernelVersion": h.kernel,
        "OperatingSystem": os,
        "OSVersion": os_version,
        "OSType": "linux",
        "Architecture": std::env::consts::ARCH,
        "IndexServerAddress": "https://index.docker.io/v1/",
        "RegistryConfig": {
            "InsecureRegistryCIDRs": ["::1/128", "127.0.0.0/8"],
            "IndexConfigs": {
                "docker.io": { "Name": "docker.io", "Mirrors": [], "Secure": true, "Official": true }
            },
            "Mirrors": null,
        },
        "NCPU": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        "MemTotal": mem_total(),
        "GenericResources": null,
        "DockerRootDir": root,
        "HttpProxy": std::env::var("HTTP_PROXY").or_else(|_| std::env::var("http_proxy")).unwrap_or_default(),
        "HttpsProxy": std::env::var("HTTPS_PROXY").or_else(|_| std::env::var("https_proxy")).unwrap_or_default(),
        "NoProxy": std::env::var("NO_PROXY").or_else(|_| std::env::var("no_proxy")).unwrap_or_default(),
        "Name": h.hostname,
        "Labels": [],
        "ExperimentalBuild": false,
        "ServerVersion": version::VERSION,
        "Runtimes": {
            "berth": { "path": std::env::current_exe().map(|p| p.display().to_string()).unwrap_or_else(|_| "berth".into()) }
        },
        "DefaultRuntime": "berth",
        "Swarm": {
            "NodeID": "",
            "NodeAddr": "",
            "LocalNodeState": "inactive",
            "ControlAvailable": false,
            "Error": "",
            "RemoteManagers": null,
        },
        "LiveRestoreEnabled": false,
        "Isolation": "",
        "InitBinary": "",
        "ContainerdCommit": { "ID": "" },
        "RuncCommit": { "ID": "" },
        "InitCommit": { "ID": "" },
        "SecurityOptions": security_options(cg),
        "CDISpecDirs": [],
        "Warnings": null,
    });
    if let (Some(obj), Value::Object(features)) = (info.as_object_mut(), cgroup_features(cg)) {
        obj.extend(features);
    }
    Ok(Json(info))
}

/// Query of `GET /system/df`.
#[derive(serde::Deserialize, Default)]
pub struct DfQuery {
    /// Object types to report (`container`, `image`, `volume`, `build-cache`); all when absent.
    #[serde(rename = "type", default)]
    kind: Option<String>,
}

/// `GET /system/df`.
pub async fn disk_usage(
    State(state): State<AppState>,
    Extension(RequestVersion(v)): Extension<RequestVersion>,
    Query(q): Query<DfQuery>,
) -> Result<Json<Value>, ApiError> {
    let want = |t: &str| q.kind.as_deref().is_none_or(|k| k == t);
    let with_containers = want("container");
    let with_volumes = want("volume");
    let (usage, containers, volumes) = state
        .blocking(move |e| {
            let containers = if with_containers {
                e.list_containers(&berth_core::container::ListOptions { all: true, size: true, ..Default::default() })?
            } else {
                Vec::new()
            };
            let volumes = if with_volumes { e.list_volumes(&Default::default(), true)?.volumes } else { Vec::new() };
            Ok((e.image_disk_usage()?, containers, volumes))
        })
        .await?;
    let mut out = BTreeMap::new();
    if want("image") {
        let images: Vec<Value> = usage
            .images
            .iter()
            .map(|(d, shared)| {
                let mut s = image_summary(d, v);
                s["SharedSize"] = json!(shared);
                s["Containers"] = json!(d.containers);
                s
            })
            .collect();
        out.insert("LayersSize", json!(usage.layers_size));
        out.insert("Images", json!(images));
    }
    if want("container") {
        let now = super::containers::now_unix();
        out.insert("Containers", json!(containers.iter().map(|c| super::containers::summary(c, now)).collect::<Vec<_>>()));
    }
    if want("volume") {
        out.insert("Volumes", json!(volumes.iter().map(super::volumes::volume_json).collect::<Vec<_>>()));
    }
    if want("build-cache") {
        out.insert("BuildCache", json!([]));
    }
    Ok(Json(json!(out)))
}
