//! System bodies: errors, the JSON message streams of load/import,
//! `/version`, `/info` and `/system/df`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::containers::ContainerSummary;
use super::images::{ImageSummary, PushResult};
use super::null_as_default;
use super::volumes::Volume;

/// Every error answer: what the docker CLI prints after
/// `Error response from daemon: `.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ErrorResponse {
    #[serde(deserialize_with = "null_as_default")]
    pub message: String,
}

/// One line of a JSON message stream (Docker's `JSONMessage`: load, import,
/// ...): progress (`status`, with the `id` it is about), build-like output
/// (`stream`), or the error that ends the stream (`error` and
/// `errorDetail`). Only the members set are sent.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct JsonMessage {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(rename = "errorDetail", skip_serializing_if = "Option::is_none")]
    pub error_detail: Option<JsonError>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// How far a download or extraction is (the docker CLI draws its bars from it).
    #[serde(rename = "progressDetail", skip_serializing_if = "Option::is_none")]
    pub progress_detail: Option<ProgressDetail>,
    /// The same as a bar of text, for clients that print it as is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub progress: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stream: Option<String>,
    /// A result beside the progress: what a push of one tag made.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub aux: Option<PushResult>,
}

/// `progressDetail` of a `JsonMessage`: bytes done of bytes in all.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ProgressDetail {
    pub current: u64,
    pub total: u64,
}

/// `errorDetail` of a `JsonMessage`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct JsonError {
    #[serde(deserialize_with = "null_as_default")]
    pub message: String,
}

impl JsonMessage {
    /// `{"status": ...}`.
    pub fn status(status: impl Into<String>) -> JsonMessage {
        JsonMessage { status: Some(status.into()), ..Default::default() }
    }

    /// `{"status": ..., "id": ...}`: progress about one object (a layer).
    pub fn status_of(status: impl Into<String>, id: impl Into<String>) -> JsonMessage {
        JsonMessage { status: Some(status.into()), id: Some(id.into()), ..Default::default() }
    }

    /// `{"status": ..., "progressDetail": {...}, "progress": ..., "id": ...}`:
    /// `current` of `total` bytes of one object, with Docker's text bar.
    pub fn progress_of(status: impl Into<String>, id: impl Into<String>, current: u64, total: u64) -> JsonMessage {
        JsonMessage {
            status: Some(status.into()),
            id: Some(id.into()),
            progress_detail: Some(ProgressDetail { current, total }),
            progress: Some(progress_bar(current, total)),
            ..Default::default()
        }
    }

    /// `{"stream": ...}`: text to print as is.
    pub fn stream(text: impl Into<String>) -> JsonMessage {
        JsonMessage { stream: Some(text.into()), ..Default::default() }
    }

    /// The line that ends a stream with an error.
    pub fn error(message: impl Into<String>) -> JsonMessage {
        let message = message.into();
        JsonMessage {
            error: Some(message.clone()),
            error_detail: Some(JsonError { message }),
            ..Default::default()
        }
    }
}

/// Docker's text progress bar: `[=====>        ]  1.5MB/3.2MB`.
fn progress_bar(current: u64, total: u64) -> String {
    const WIDTH: u64 = 50;
    let human = |n: u64| {
        let (v, unit) = match n {
            n if n >= 1_000_000_000 => (n as f64 / 1e9, "GB"),
            n if n >= 1_000_000 => (n as f64 / 1e6, "MB"),
            n if n >= 1_000 => (n as f64 / 1e3, "kB"),
            n => (n as f64, "B"),
        };
        if unit == "B" { format!("{n}B") } else { format!("{v:.3}{unit}").replace(".000", "") }
    };
    if total == 0 {
        return format!("{:>8}", human(current));
    }
    let filled = (current.min(total) * WIDTH / total) as usize;
    let bar = if filled as u64 >= WIDTH { "=".repeat(WIDTH as usize) } else { format!("{}>{}", "=".repeat(filled), " ".repeat(WIDTH as usize - filled - 1)) };
    format!("[{bar}] {:>8}/{}", human(current), human(total))
}

/// `GET /system/df`: each member only when its type was asked for
/// (`?type=`). Members are in the order berth has always sent them.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct DiskUsage {
    /// Always empty: berth has no build cache.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub build_cache: Option<Vec<Value>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub containers: Option<Vec<ContainerSummary>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub images: Option<Vec<ImageSummary>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub layers_size: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub volumes: Option<Vec<Volume>>,
}

/// `GET /version`. Members are in the order berth has always sent them.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct SystemVersion {
    pub api_version: String,
    pub arch: String,
    pub build_time: String,
    #[serde(deserialize_with = "null_as_default")]
    pub components: Vec<ComponentVersion>,
    pub git_commit: String,
    pub go_version: String,
    pub kernel_version: String,
    #[serde(rename = "MinAPIVersion")]
    pub min_api_version: String,
    pub os: String,
    pub platform: Platform,
    pub version: String,
}

/// `Platform` of `/version`: the engine's product name.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Platform {
    pub name: String,
}

/// One of the server's components (`Engine`) in `/version`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ComponentVersion {
    /// Free-form facts (`ApiVersion`, `GitCommit`, ...), strings as in Docker.
    #[serde(deserialize_with = "null_as_default")]
    pub details: BTreeMap<String, String>,
    pub name: String,
    pub version: String,
}

/// `GET /info`. Members are in the order berth has always sent them
/// (alphabetical, as `json!` wrote them); the cgroup features
/// (`MemoryLimit`, `CPUShares`, ...) sit at the top level, as in Docker.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SystemInfo {
    #[serde(rename = "Architecture")]
    pub architecture: String,
    #[serde(rename = "BridgeNfIp6tables")]
    pub bridge_nf_ip6tables: bool,
    #[serde(rename = "BridgeNfIptables")]
    pub bridge_nf_iptables: bool,
    #[serde(rename = "CDISpecDirs", deserialize_with = "null_as_default")]
    pub cdi_spec_dirs: Vec<String>,
    #[serde(rename = "CPUSet")]
    pub cpu_set: bool,
    #[serde(rename = "CPUShares")]
    pub cpu_shares: bool,
    #[serde(rename = "CgroupDriver")]
    pub cgroup_driver: String,
    #[serde(rename = "CgroupVersion")]
    pub cgroup_version: String,
    #[serde(rename = "ContainerdCommit")]
    pub containerd_commit: Commit,
    #[serde(rename = "Containers")]
    pub containers: u64,
    #[serde(rename = "ContainersPaused")]
    pub containers_paused: u64,
    #[serde(rename = "ContainersRunning")]
    pub containers_running: u64,
    #[serde(rename = "ContainersStopped")]
    pub containers_stopped: u64,
    #[serde(rename = "CpuCfsPeriod")]
    pub cpu_cfs_period: bool,
    #[serde(rename = "CpuCfsQuota")]
    pub cpu_cfs_quota: bool,
    #[serde(rename = "Debug")]
    pub debug: bool,
    #[serde(rename = "DefaultRuntime")]
    pub default_runtime: String,
    #[serde(rename = "DockerRootDir")]
    pub docker_root_dir: String,
    #[serde(rename = "Driver")]
    pub driver: String,
    #[serde(rename = "DriverStatus", deserialize_with = "null_as_default")]
    pub driver_status: Vec<Vec<String>>,
    #[serde(rename = "ExperimentalBuild")]
    pub experimental_build: bool,
    #[serde(rename = "GenericResources")]
    pub generic_resources: Option<Vec<Value>>,
    #[serde(rename = "HttpProxy")]
    pub http_proxy: String,
    #[serde(rename = "HttpsProxy")]
    pub https_proxy: String,
    #[serde(rename = "ID")]
    pub id: String,
    #[serde(rename = "IPv4Forwarding")]
    pub ipv4_forwarding: bool,
    #[serde(rename = "Images")]
    pub images: u64,
    #[serde(rename = "IndexServerAddress")]
    pub index_server_address: String,
    #[serde(rename = "InitBinary")]
    pub init_binary: String,
    #[serde(rename = "InitCommit")]
    pub init_commit: Commit,
    #[serde(rename = "Isolation")]
    pub isolation: String,
    #[serde(rename = "KernelMemoryTCP")]
    pub kernel_memory_tcp: bool,
    #[serde(rename = "KernelVersion")]
    pub kernel_version: String,
    #[serde(rename = "Labels", deserialize_with = "null_as_default")]
    pub labels: Vec<String>,
    #[serde(rename = "LiveRestoreEnabled")]
    pub live_restore_enabled: bool,
    #[serde(rename = "LoggingDriver")]
    pub logging_driver: String,
    #[serde(rename = "MemTotal")]
    pub mem_total: u64,
    #[serde(rename = "MemoryLimit")]
    pub memory_limit: bool,
    #[serde(rename = "NCPU")]
    pub ncpu: u64,
    #[serde(rename = "NEventsListener")]
    pub n_events_listener: u64,
    #[serde(rename = "NFd")]
    pub n_fd: u64,
    #[serde(rename = "NGoroutines")]
    pub n_goroutines: u64,
    #[serde(rename = "Name")]
    pub name: String,
    #[serde(rename = "NoProxy")]
    pub no_proxy: String,
    #[serde(rename = "OSType")]
    pub os_type: String,
    #[serde(rename = "OSVersion")]
    pub os_version: String,
    #[serde(rename = "OomKillDisable")]
    pub oom_kill_disable: bool,
    #[serde(rename = "OperatingSystem")]
    pub operating_system: String,
    #[serde(rename = "PidsLimit")]
    pub pids_limit: bool,
    #[serde(rename = "Plugins")]
    pub plugins: PluginsInfo,
    #[serde(rename = "RegistryConfig")]
    pub registry_config: RegistryConfig,
    #[serde(rename = "RuncCommit")]
    pub runc_commit: Commit,
    #[serde(rename = "Runtimes", deserialize_with = "null_as_default")]
    pub runtimes: BTreeMap<String, Runtime>,
    #[serde(rename = "SecurityOptions", deserialize_with = "null_as_default")]
    pub security_options: Vec<String>,
    #[serde(rename = "ServerVersion")]
    pub server_version: String,
    #[serde(rename = "SwapLimit")]
    pub swap_limit: bool,
    #[serde(rename = "Swarm")]
    pub swarm: SwarmInfo,
    #[serde(rename = "SystemTime")]
    pub system_time: String,
    #[serde(rename = "Warnings")]
    pub warnings: Option<Vec<String>>,
}

/// `Plugins` of `/info`: the drivers of each kind.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct PluginsInfo {
    /// Always `null`: berth has no authorization plugins.
    pub authorization: Option<Vec<String>>,
    #[serde(deserialize_with = "null_as_default")]
    pub log: Vec<String>,
    #[serde(deserialize_with = "null_as_default")]
    pub network: Vec<String>,
    #[serde(deserialize_with = "null_as_default")]
    pub volume: Vec<String>,
}

/// `RegistryConfig` of `/info`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct RegistryConfig {
    #[serde(deserialize_with = "null_as_default")]
    pub index_configs: BTreeMap<String, IndexInfo>,
    #[serde(rename = "InsecureRegistryCIDRs", deserialize_with = "null_as_default")]
    pub insecure_registry_cidrs: Vec<String>,
    pub mirrors: Option<Vec<String>>,
}

/// One registry of `RegistryConfig.IndexConfigs`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct IndexInfo {
    #[serde(deserialize_with = "null_as_default")]
    pub mirrors: Vec<String>,
    pub name: String,
    pub official: bool,
    pub secure: bool,
}

/// One of `/info`'s `Runtimes` (Docker spells its member in lower case).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Runtime {
    pub path: String,
}

/// `Swarm` of `/info`: berth is never part of a swarm.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct SwarmInfo {
    pub control_available: bool,
    pub error: String,
    pub local_node_state: String,
    pub node_addr: String,
    #[serde(rename = "NodeID")]
    pub node_id: String,
    pub remote_managers: Option<Vec<Value>>,
}

/// A component's commit (`ContainerdCommit`, `RuncCommit`, `InitCommit`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Commit {
    #[serde(rename = "ID")]
    pub id: String,
}
