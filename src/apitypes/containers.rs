//! Container bodies: inspect (`GET /containers/{id}/json`), list
//! (`GET /containers/json`), create, wait, top, update, changes, commit,
//! prune, exec (create, start, inspect), events, stats, and the pieces they share.
//!
//! `Config`, `HostConfig`, `State` and the endpoint settings are berth's
//! model types, which are Docker-shaped already.

use std::collections::BTreeMap;

use berth_model::container::{ContainerConfig, ContainerState, HostConfig, RestartPolicy, Status};
use berth_model::network::{EndpointSettings, NetworkingConfig, PortMap};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{null_as_default, nulls_stripped};

/// Docker's `ContainerSummary` (`GET /containers/json`, `system df`).
/// Members are in the order berth has always sent them (alphabetical, as
/// `json!` wrote them).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ContainerSummary {
    /// The command line as one string (`ps`'s `COMMAND`).
    pub command: String,
    /// Seconds since the epoch.
    pub created: i64,
    pub host_config: SummaryHostConfig,
    #[serde(rename = "Id")]
    pub id: String,
    /// The name the container was created with, or its image ID.
    pub image: String,
    #[serde(rename = "ImageID")]
    pub image_id: String,
    #[serde(deserialize_with = "null_as_default")]
    pub labels: BTreeMap<String, String>,
    #[serde(deserialize_with = "null_as_default")]
    pub mounts: Vec<MountPoint>,
    /// With Docker's leading `/`.
    #[serde(deserialize_with = "null_as_default")]
    pub names: Vec<String>,
    pub network_settings: SummaryNetworkSettings,
    #[serde(deserialize_with = "null_as_default")]
    pub ports: Vec<Port>,
    /// Only with `size=1`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size_root_fs: Option<u64>,
    /// Only with `size=1`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size_rw: Option<u64>,
    /// The status word: `created`, `running`, `exited`, ...
    pub state: Status,
    /// `Up 2 minutes`, `Exited (0) 3 seconds ago`, ...
    pub status: String,
}

/// `HostConfig` of a list entry: only the network mode, as Docker sends.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct SummaryHostConfig {
    pub network_mode: String,
}

/// `NetworkSettings` of a list entry: only the networks.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct SummaryNetworkSettings {
    #[serde(deserialize_with = "null_as_default")]
    pub networks: BTreeMap<String, EndpointResource>,
}

/// One port of a list entry: `IP` and `PublicPort` only when published.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Port {
    #[serde(rename = "IP", skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
    pub private_port: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub public_port: Option<u16>,
    /// `tcp`, `udp` or `sctp`.
    #[serde(rename = "Type")]
    pub kind: String,
}

/// One network of a container (`NetworkSettings.Networks`): the endpoint
/// settings plus what API 1.48 added.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct EndpointResource {
    #[serde(flatten)]
    pub settings: EndpointSettings,
    /// The gateway priority; berth does not rank gateways, so always 0.
    pub gw_priority: i64,
}

/// Docker's `ContainerInspectResponse`. Members are in the order berth has
/// always sent them (alphabetical, as `json!` wrote them).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ContainerInspect {
    pub app_armor_profile: String,
    #[serde(deserialize_with = "null_as_default")]
    pub args: Vec<String>,
    pub config: ContainerConfig,
    /// RFC 3339 with nanoseconds.
    pub created: String,
    /// The storage driver.
    pub driver: String,
    /// Always `null`: the exec IDs are not listed.
    #[serde(rename = "ExecIDs")]
    pub exec_ids: Option<Vec<String>>,
    pub graph_driver: ContainerGraphDriver,
    pub host_config: HostConfig,
    pub hostname_path: String,
    pub hosts_path: String,
    #[serde(rename = "Id")]
    pub id: String,
    /// The image ID.
    pub image: String,
    pub log_path: String,
    pub mount_label: String,
    #[serde(deserialize_with = "null_as_default")]
    pub mounts: Vec<MountPoint>,
    /// With Docker's leading `/`.
    pub name: String,
    pub network_settings: NetworkSettings,
    pub path: String,
    pub platform: String,
    pub process_label: String,
    pub resolv_conf_path: String,
    pub restart_count: i64,
    /// Only with `size=1`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size_root_fs: Option<u64>,
    /// Only with `size=1`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size_rw: Option<u64>,
    pub state: ContainerState,
}

/// `GraphDriver` of a container: the storage driver and its paths.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ContainerGraphDriver {
    #[serde(deserialize_with = "null_as_default")]
    pub data: BTreeMap<String, String>,
    pub name: String,
}

/// Docker's `NetworkSettings` of inspect. The top-level address members
/// are the deprecated mirror of the default `bridge` network's endpoint.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct NetworkSettings {
    pub bridge: String,
    #[serde(rename = "EndpointID")]
    pub endpoint_id: String,
    pub gateway: String,
    #[serde(rename = "GlobalIPv6Address")]
    pub global_ipv6_address: String,
    #[serde(rename = "GlobalIPv6PrefixLen")]
    pub global_ipv6_prefix_len: u8,
    pub hairpin_mode: bool,
    #[serde(rename = "IPAddress")]
    pub ip_address: String,
    #[serde(rename = "IPPrefixLen")]
    pub ip_prefix_len: u8,
    #[serde(rename = "IPv6Gateway")]
    pub ipv6_gateway: String,
    #[serde(rename = "LinkLocalIPv6Address")]
    pub link_local_ipv6_address: String,
    #[serde(rename = "LinkLocalIPv6PrefixLen")]
    pub link_local_ipv6_prefix_len: u8,
    pub mac_address: String,
    #[serde(deserialize_with = "null_as_default")]
    pub networks: BTreeMap<String, EndpointResource>,
    /// Published ports; a `null` value is a port exposed but not published.
    #[serde(deserialize_with = "null_as_default")]
    pub ports: PortMap,
    #[serde(rename = "SandboxID")]
    pub sandbox_id: String,
    pub sandbox_key: String,
    /// Always `null` (deprecated in Docker).
    #[serde(rename = "SecondaryIPAddresses")]
    pub secondary_ip_addresses: Option<Vec<Value>>,
    /// Always `null` (deprecated in Docker).
    #[serde(rename = "SecondaryIPv6Addresses")]
    pub secondary_ipv6_addresses: Option<Vec<Value>>,
}

/// `POST /containers/create`: Docker's `Config` with `HostConfig` and
/// `NetworkingConfig` beside its members. `null`s are allowed anywhere in
/// `NetworkingConfig` (docker-py sends them for anything unset).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ContainerCreateRequest {
    #[serde(flatten)]
    pub config: ContainerConfig,
    #[serde(rename = "HostConfig", skip_serializing_if = "Option::is_none")]
    pub host_config: Option<HostConfig>,
    #[serde(rename = "NetworkingConfig", deserialize_with = "nulls_stripped", skip_serializing_if = "Option::is_none")]
    pub networking_config: Option<NetworkingConfig>,
}

/// `BindOptions` of a `HostConfig.Mounts` entry (`--mount type=bind`).
/// Only the members set are sent.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct BindOptions {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub propagation: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub non_recursive: Option<bool>,
}

/// `VolumeOptions` of a `HostConfig.Mounts` entry (`--mount type=volume`).
/// `DriverConfig` is always there (the docker CLI creates it with the
/// options); the other members only when set.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct VolumeOptions {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub no_copy: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subpath: Option<String>,
    pub driver_config: DriverConfig,
}

/// `VolumeOptions.DriverConfig`: the volume driver and its options.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct DriverConfig {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub options: Option<BTreeMap<String, String>>,
}

/// `TmpfsOptions` of a `HostConfig.Mounts` entry (`--mount type=tmpfs`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct TmpfsOptions {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size_bytes: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mode: Option<u32>,
}

/// The answer to `POST /containers/create`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ContainerCreateResponse {
    #[serde(rename = "Id")]
    pub id: String,
    #[serde(deserialize_with = "null_as_default")]
    pub warnings: Vec<String>,
}

/// The answer to `POST /containers/{id}/wait`, sent once the condition holds.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ContainerWaitResponse {
    /// `null` when the wait ended without an error.
    #[serde(default)]
    pub error: Option<WaitError>,
    /// The exit code; -1 when the answer has none.
    #[serde(default = "no_status")]
    pub status_code: i64,
}

fn no_status() -> i64 {
    -1
}

/// `Error` of a wait answer.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct WaitError {
    #[serde(deserialize_with = "null_as_default")]
    pub message: String,
}

/// The answer to `GET /containers/{id}/top`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ContainerTopResponse {
    #[serde(deserialize_with = "null_as_default")]
    pub processes: Vec<Vec<String>>,
    #[serde(deserialize_with = "null_as_default")]
    pub titles: Vec<String>,
}

/// `POST /containers/{id}/update`: the resource limits and restart policy
/// to change (Docker's `UpdateConfig`). A member left out keeps the
/// container's value, so only the members given are sent; the docker CLI
/// sends all of them, the ones it leaves alone as zero, which berth reads
/// as "keep" too. Members are in the order berth has always sent them
/// (alphabetical, as `json!` wrote them).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ContainerUpdateRequest {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu_period: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu_quota: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu_realtime_period: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu_realtime_runtime: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu_shares: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpuset_cpus: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpuset_mems: Option<String>,
    /// Bytes; -1 for no limit.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory_reservation: Option<i64>,
    /// Memory plus swap, in bytes; -1 for unlimited swap.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory_swap: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory_swappiness: Option<i64>,
    /// CPUs in billionths (`--cpus 1.5` is 1500000000).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nano_cpus: Option<i64>,
    /// -1 for unlimited.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pids_limit: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub restart_policy: Option<RestartPolicy>,
}

/// The answer to `POST /containers/{id}/update`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ContainerUpdateResponse {
    #[serde(deserialize_with = "null_as_default")]
    pub warnings: Vec<String>,
}

/// One entry of `GET /containers/{id}/changes` (the answer is `null` when
/// nothing changed).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct FilesystemChange {
    /// 0: modified, 1: added, 2: deleted.
    pub kind: u8,
    pub path: String,
}

/// Docker's `ContainerPathStat`: the `X-Docker-Container-Path-Stat` header
/// of `GET`/`HEAD /containers/{id}/archive`, base64 of this JSON.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ContainerPathStat {
    pub name: String,
    pub size: i64,
    /// Go's `os.FileMode`: permissions, `1 << 31` for a directory.
    pub mode: u32,
    /// RFC 3339 with nanoseconds.
    pub mtime: String,
    #[serde(rename = "linkTarget")]
    pub link_target: String,
}

/// The answer to `POST /commit` and `POST /containers/{id}/exec`: the new
/// object's ID.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct IdResponse {
    #[serde(rename = "Id")]
    pub id: String,
}

/// The answer to `POST /containers/prune`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ContainerPruneResponse {
    /// `null` when nothing was removed, as Docker sends.
    pub containers_deleted: Option<Vec<String>>,
    pub space_reclaimed: u64,
}

/// `POST /containers/{id}/exec`: the command to run in the container and
/// how its stdio is wired (Docker's `ExecConfig`). Members are in the order
/// berth has always sent them (alphabetical, as `json!` wrote them).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ExecCreateRequest {
    pub attach_stderr: bool,
    pub attach_stdin: bool,
    pub attach_stdout: bool,
    pub cmd: Vec<String>,
    /// Kept for `exec inspect`; berth's streams have no detach sequence.
    pub detach_keys: String,
    /// `KEY=VALUE` entries beside the container's own; `null` when none,
    /// as the docker CLI sends.
    pub env: Option<Vec<String>>,
    pub privileged: bool,
    pub tty: bool,
    /// Empty for the container's user.
    pub user: String,
    /// Empty for the container's working directory.
    pub working_dir: String,
}

/// `POST /exec/{id}/start`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ExecStartRequest {
    /// Run in the background: the answer is a plain `200`, not the stream.
    pub detach: bool,
    /// Docker clients repeat the exec's `Tty` here; the exec's own config
    /// is what counts.
    pub tty: bool,
    /// `[rows, cols]` of the client's terminal (API 1.42+).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub console_size: Option<[u16; 2]>,
}

/// `GET /exec/{id}/json`. Members are in the order berth has always sent
/// them (alphabetical, as `json!` wrote them).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ExecInspect {
    pub can_remove: bool,
    #[serde(rename = "ContainerID")]
    pub container_id: String,
    pub detach_keys: String,
    /// `null` while the command runs.
    pub exit_code: Option<i64>,
    #[serde(rename = "ID")]
    pub id: String,
    pub open_stderr: bool,
    pub open_stdin: bool,
    pub open_stdout: bool,
    pub pid: i64,
    pub process_config: ExecProcessConfig,
    pub running: bool,
}

/// `ProcessConfig` of an exec (Docker spells its members in lower case).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ExecProcessConfig {
    #[serde(deserialize_with = "null_as_default")]
    pub arguments: Vec<String>,
    pub entrypoint: String,
    pub privileged: bool,
    pub tty: bool,
    pub user: String,
}

/// One event of `GET /events` (Docker's `EventMessage`). Members are in the
/// order berth has always sent them.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct EventMessage {
    /// `container`, `image`, `network`, `volume`, ...
    #[serde(rename = "Type")]
    pub kind: String,
    #[serde(rename = "Action")]
    pub action: String,
    #[serde(rename = "Actor")]
    pub actor: EventActor,
    pub scope: String,
    /// Seconds since the epoch.
    pub time: i64,
    /// Nanoseconds since the epoch.
    #[serde(rename = "timeNano")]
    pub time_nano: i64,
    /// Legacy members the docker CLI still prints from.
    pub status: String,
    pub id: String,
    pub from: String,
}

/// `Actor` of an event: the object and its attributes.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct EventActor {
    #[serde(rename = "ID")]
    pub id: String,
    #[serde(rename = "Attributes", deserialize_with = "null_as_default")]
    pub attributes: BTreeMap<String, String>,
}

/// One entry of a container's `Mounts` (Docker's `MountPoint`), in inspect
/// and in the list. `Name` and `Driver` are there only for volumes, as in
/// Docker. Members are in the order berth has always sent them
/// (alphabetical, as `json!` wrote them).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct MountPoint {
    pub destination: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub driver: Option<String>,
    pub mode: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub propagation: String,
    #[serde(rename = "RW")]
    pub rw: bool,
    pub source: String,
    /// `volume`, `bind` or `tmpfs`.
    #[serde(rename = "Type")]
    pub kind: String,
}

/// One sample of `GET /containers/{id}/stats` (moby's `StatsResponse`).
/// A stopped container's has zero counters and empty `memory_stats` and
/// `pids_stats`. Members are in the order berth has always sent them
/// (alphabetical, as `json!` wrote them); those berth does not measure are
/// there for dockerd's answers and left out when absent.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct StatsResponse {
    pub blkio_stats: BlkioStats,
    pub cpu_stats: CpuStats,
    pub id: String,
    pub memory_stats: MemoryStats,
    /// With Docker's leading `/`.
    pub name: String,
    /// Per interface; absent for a container without networks.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub networks: Option<BTreeMap<String, NetworkStats>>,
    /// Windows only.
    pub num_procs: u32,
    pub pids_stats: PidsStats,
    /// The CPU counters of the sample before, to compute rates with.
    pub precpu_stats: CpuStats,
    /// When the sample before was read; `0001-01-01T00:00:00Z` if none.
    pub preread: String,
    /// RFC 3339.
    pub read: String,
    /// Windows only.
    pub storage_stats: StorageStats,
}

/// `cpu_stats` and `precpu_stats` of a stats sample. Times in nanoseconds.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct CpuStats {
    pub cpu_usage: CpuUsage,
    pub online_cpus: u32,
    /// All CPU time of the host, busy or idle.
    pub system_cpu_usage: u64,
    pub throttling_data: ThrottlingData,
}

/// `cpu_usage` of `cpu_stats`: the container's CPU time in nanoseconds.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct CpuUsage {
    /// Per CPU; only cgroup v1 hosts have it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub percpu_usage: Option<Vec<u64>>,
    pub total_usage: u64,
    pub usage_in_kernelmode: u64,
    pub usage_in_usermode: u64,
}

/// `throttling_data` of `cpu_stats`: periods in which the CPU quota held
/// the container back.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ThrottlingData {
    pub periods: u64,
    pub throttled_periods: u64,
    /// Nanoseconds.
    pub throttled_time: u64,
}

/// `memory_stats` of a stats sample, in bytes. Empty for a stopped container.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct MemoryStats {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failcnt: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_usage: Option<u64>,
    /// The cgroup's `memory.stat` (`cache`, `total_inactive_file`,
    /// `inactive_file`, ...).
    #[serde(skip_serializing_if = "BTreeMap::is_empty", deserialize_with = "null_as_default")]
    pub stats: BTreeMap<String, u64>,
    /// Page cache included.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage: Option<u64>,
}

/// `pids_stats` of a stats sample. Empty for a stopped container.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct PidsStats {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub current: Option<u64>,
    /// Absent when unlimited.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<u64>,
}

/// `blkio_stats` of a stats sample (cgroup v1's blkio files; dockerd sends
/// `null` for those it has nothing in). Berth sends it empty.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct BlkioStats {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub io_merged_recursive: Option<Vec<BlkioStatEntry>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub io_queue_recursive: Option<Vec<BlkioStatEntry>>,
    /// Bytes read and written (`op` `Read` and `Write`, or lower case on cgroup v2 hosts).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub io_service_bytes_recursive: Option<Vec<BlkioStatEntry>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub io_service_time_recursive: Option<Vec<BlkioStatEntry>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub io_serviced_recursive: Option<Vec<BlkioStatEntry>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub io_time_recursive: Option<Vec<BlkioStatEntry>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub io_wait_time_recursive: Option<Vec<BlkioStatEntry>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sectors_recursive: Option<Vec<BlkioStatEntry>>,
}

/// One counter of a block device in `blkio_stats`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct BlkioStatEntry {
    pub major: u64,
    pub minor: u64,
    pub op: String,
    pub value: u64,
}

/// `storage_stats` of a stats sample (Windows only: always empty here).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct StorageStats {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub read_count_normalized: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub read_size_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub write_count_normalized: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub write_size_bytes: Option<u64>,
}

/// One interface of `networks` in a stats sample.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct NetworkStats {
    pub rx_bytes: u64,
    pub rx_dropped: u64,
    pub rx_errors: u64,
    pub rx_packets: u64,
    pub tx_bytes: u64,
    pub tx_dropped: u64,
    pub tx_errors: u64,
    pub tx_packets: u64,
}
