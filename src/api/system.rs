//! `/_ping`, `/version`, `/info` and `/system/df`.

use std::collections::BTreeMap;

use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};

use super::images::image_summary;
use crate::apitypes::images::ImageSummary;
use crate::apitypes::system::{
    Commit, ComponentVersion, DiskUsage, IndexInfo, PluginsInfo, Platform, RegistryConfig, Runtime, SwarmInfo, SystemInfo,
    SystemVersion,
};
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
pub async fn version() -> Json<SystemVersion> {
    let h = host();
    let arch = version::go_arch().to_string();
    let details = BTreeMap::from(
        [
            ("ApiVersion", version::MAX_API_VERSION),
            ("Arch", arch.as_str()),
            ("BuildTime", version::BUILD_TIME),
            ("Experimental", "false"),
            ("GitCommit", version::GIT_COMMIT),
            ("GoVersion", version::RUSTC_VERSION),
            ("KernelVersion", h.kernel.as_str()),
            ("MinAPIVersion", version::MIN_API_VERSION),
            ("Os", "linux"),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string())),
    );
    Json(SystemVersion {
        api_version: version::MAX_API_VERSION.to_string(),
        arch: arch.clone(),
        build_time: version::BUILD_TIME.to_string(),
        components: vec![ComponentVersion {
            details,
            name: "Engine".to_string(),
            version: version::VERSION.to_string(),
        }],
        git_commit: version::GIT_COMMIT.to_string(),
        go_version: version::RUSTC_VERSION.to_string(),
        kernel_version: h.kernel,
        min_api_version: version::MIN_API_VERSION.to_string(),
        os: "linux".to_string(),
        platform: Platform { name: "berth".to_string() },
        version: version::VERSION.to_string(),
    })
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
fn security_options(cgroup_version: &str) -> Vec<String> {
    let seccomp = format!("name=seccomp,profile={}", berth_runtime::seccomp::DEFAULT_PROFILE_NAME);
    match cgroup_version {
        "2" => vec![seccomp, "name=cgroupns".to_string()],
        _ => vec![seccomp],
    }
}

/// What resource limits the host's cgroups can enforce (info's MemoryLimit etc.).
struct CgroupFeatures {
    memory_limit: bool,
    swap_limit: bool,
    cpu_cfs_period: bool,
    cpu_cfs_quota: bool,
    cpu_shares: bool,
    cpu_set: bool,
    pids_limit: bool,
    oom_kill_disable: bool,
    kernel_memory_tcp: bool,
}

fn cgroup_features(v: &str) -> CgroupFeatures {
    if v == "2" {
        let controllers = std::fs::read_to_string("/sys/fs/cgroup/cgroup.controllers").unwrap_or_default();
        let has = |c: &str| controllers.split_whitespace().any(|x| x == c);
        CgroupFeatures {
            memory_limit: has("memory"),
            swap_limit: has("memory"),
            cpu_cfs_period: has("cpu"),
            cpu_cfs_quota: has("cpu"),
            cpu_shares: has("cpu"),
            cpu_set: has("cpuset"),
            pids_limit: has("pids"),
            oom_kill_disable: false,
            kernel_memory_tcp: false,
        }
    } else {
        CgroupFeatures {
            memory_limit: exists("/sys/fs/cgroup/memory/memory.limit_in_bytes"),
            swap_limit: exists("/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes"),
            cpu_cfs_period: exists("/sys/fs/cgroup/cpu/cpu.cfs_period_us"),
            cpu_cfs_quota: exists("/sys/fs/cgroup/cpu/cpu.cfs_quota_us"),
            cpu_shares: exists("/sys/fs/cgroup/cpu/cpu.shares"),
            cpu_set: exists("/sys/fs/cgroup/cpuset/cpuset.cpus"),
            pids_limit: exists("/sys/fs/cgroup/pids/pids.max"),
            oom_kill_disable: exists("/sys/fs/cgroup/memory/memory.oom_control"),
            kernel_memory_tcp: exists("/sys/fs/cgroup/memory/memory.kmem.tcp.limit_in_bytes"),
        }
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

fn count_dir(path: &str) -> u64 {
    std::fs::read_dir(path).map(|d| d.count() as u64).unwrap_or(0)
}

/// `RegistryConfig` as dockerd shows it: loopback and the insecure CIDRs,
/// Docker Hub with its mirrors (with a trailing `/`, as dockerd normalises
/// them), and an entry per insecure registry host.
fn registry_config(config: &berth_core::registry::RegistryConfig) -> RegistryConfig {
    use berth_core::registry::config::InsecureRegistry;
    let mirrors: Vec<String> = config.mirrors.iter().map(|m| format!("{m}/")).collect();
    let mut index_configs = BTreeMap::from([(
        "docker.io".to_string(),
        IndexInfo { mirrors: mirrors.clone(), name: "docker.io".to_string(), official: true, secure: true },
    )]);
    let mut insecure_registry_cidrs = vec!["::1/128".to_string(), "127.0.0.0/8".to_string()];
    for entry in &config.insecure {
        match entry {
            InsecureRegistry::Cidr(net) => insecure_registry_cidrs.push(net.to_string()),
            InsecureRegistry::Host(host) => {
                index_configs.insert(host.clone(), IndexInfo { mirrors: Vec::new(), name: host.clone(), official: false, secure: false });
            }
        }
    }
    RegistryConfig { index_configs, insecure_registry_cidrs, mirrors: Some(mirrors) }
}

/// `GET /info`.
pub async fn info(State(state): State<AppState>) -> Result<Json<SystemInfo>, ApiError> {
    // Driver calls may touch the disk: all of them off the async threads.
    let (containers, image_count, driver, driver_status, volume_plugins, network_plugins, root) = state
        .blocking(|e| {
            let storage = e.storage();
            let status: Vec<Vec<String>> = storage.status().into_iter().map(|(k, v)| vec![k, v]).collect();
            let all = berth_core::container::ListOptions { all: true, ..Default::default() };
            Ok((
                e.containers().list(&all)?,
                e.images().list()?.len(),
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
    let features = cgroup_features(cg);
    let count = |n: usize| n as u64;
    let env = |upper: &str, lower: &str| std::env::var(upper).or_else(|_| std::env::var(lower)).unwrap_or_default();
    let commit = || Commit { id: String::new() };
    let info = SystemInfo {
        architecture: std::env::consts::ARCH.to_string(),
        bridge_nf_ip6tables: read_trimmed("/proc/sys/net/bridge/bridge-nf-call-ip6tables") == "1",
        bridge_nf_iptables: read_trimmed("/proc/sys/net/bridge/bridge-nf-call-iptables") == "1",
        cdi_spec_dirs: Vec::new(),
        cpu_set: features.cpu_set,
        cpu_shares: features.cpu_shares,
        cgroup_driver: "cgroupfs".to_string(),
        cgroup_version: cg.to_string(),
        containerd_commit: commit(),
        containers: count(containers.len()),
        containers_paused: count(containers.iter().filter(|c| c.record.state.paused).count()),
        containers_running: count(containers.iter().filter(|c| c.record.state.running && !c.record.state.paused).count()),
        containers_stopped: count(containers.iter().filter(|c| !c.record.state.running).count()),
        cpu_cfs_period: features.cpu_cfs_period,
        cpu_cfs_quota: features.cpu_cfs_quota,
        debug: tracing::enabled!(tracing::Level::DEBUG),
        default_runtime: "berth".to_string(),
        docker_root_dir: root,
        driver,
        driver_status,
        experimental_build: false,
        generic_resources: None,
        http_proxy: env("HTTP_PROXY", "http_proxy"),
        https_proxy: env("HTTPS_PROXY", "https_proxy"),
        id: state.id.to_string(),
        ipv4_forwarding: read_trimmed("/proc/sys/net/ipv4/ip_forward") == "1",
        images: count(image_count),
        index_server_address: "https://index.docker.io/v1/".to_string(),
        init_binary: String::new(),
        init_commit: commit(),
        isolation: String::new(),
        kernel_memory_tcp: features.kernel_memory_tcp,
        kernel_version: h.kernel,
        labels: Vec::new(),
        live_restore_enabled: false,
        logging_driver: "json-file".to_string(),
        mem_total: mem_total(),
        memory_limit: features.memory_limit,
        ncpu: std::thread::available_parallelism().map(|n| n.get() as u64).unwrap_or(1),
        n_events_listener: 0,
        n_fd: count_dir("/proc/self/fd"),
        n_goroutines: count_dir("/proc/self/task"),
        name: h.hostname,
        no_proxy: env("NO_PROXY", "no_proxy"),
        os_type: "linux".to_string(),
        os_version,
        oom_kill_disable: features.oom_kill_disable,
        operating_system: os,
        pids_limit: features.pids_limit,
        plugins: PluginsInfo { authorization: None, log: Vec::new(), network: network_plugins, volume: volume_plugins },
        registry_config: registry_config(&state.engine.config().registries),
        runc_commit: commit(),
        runtimes: BTreeMap::from([(
            "berth".to_string(),
            Runtime { path: std::env::current_exe().map(|p| p.display().to_string()).unwrap_or_else(|_| "berth".into()) },
        )]),
        security_options: security_options(cg),
        server_version: version::VERSION.to_string(),
        swap_limit: features.swap_limit,
        swarm: SwarmInfo {
            control_available: false,
            error: String::new(),
            local_node_state: "inactive".to_string(),
            node_addr: String::new(),
            node_id: String::new(),
            remote_managers: None,
        },
        system_time: chrono::Local::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, false),
        warnings: None,
    };
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
) -> Result<Json<DiskUsage>, ApiError> {
    let want = |t: &str| q.kind.as_deref().is_none_or(|k| k == t);
    let with_containers = want("container");
    let with_volumes = want("volume");
    let (usage, containers, volumes) = state
        .blocking(move |e| {
            let containers = if with_containers {
                e.containers().list(&berth_core::container::ListOptions { all: true, size: true, ..Default::default() })?
            } else {
                Vec::new()
            };
            let volumes = if with_volumes { e.volumes().list(&Default::default(), true)?.volumes } else { Vec::new() };
            Ok((e.images().disk_usage()?, containers, volumes))
        })
        .await?;
    let mut out = DiskUsage::default();
    if want("image") {
        let images: Vec<ImageSummary> = usage
            .images
            .iter()
            .map(|(d, shared)| ImageSummary { shared_size: *shared as i64, ..image_summary(d, v) })
            .collect();
        out.layers_size = Some(usage.layers_size);
        out.images = Some(images);
    }
    if want("container") {
        let now = super::containers::now_unix();
        out.containers = Some(containers.iter().map(|c| super::containers::summary(c, now)).collect());
    }
    if want("volume") {
        out.volumes = Some(volumes.iter().map(super::volumes::volume).collect());
    }
    if want("build-cache") {
        out.build_cache = Some(Vec::new());
    }
    Ok(Json(out))
}
