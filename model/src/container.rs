//! Containers as Docker's Engine API describes them.
//!
//! `ContainerConfig` and `HostConfig` are Docker's `Config` and `HostConfig`
//! objects field for field (PascalCase JSON), so the API passes them through
//! and `inspect` shows them as a Docker user expects. Every field is optional
//! on input: the docker CLI sends some, docker-compose and docker-py others.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::digest::Digest;

/// A container ID: 64 lowercase hex characters.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ContainerId(String);

impl ContainerId {
    /// A fresh random ID (from the kernel's random source).
    pub fn random() -> std::io::Result<Self> {
        let mut bytes = [0u8; 32];
        let mut f = std::fs::File::open("/dev/urandom")?;
        std::io::Read::read_exact(&mut f, &mut bytes)?;
        Ok(ContainerId(hex::encode(bytes)))
    }

    /// The full 64-character ID.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The 12-character form Docker prints.
    pub fn short(&self) -> &str {
        &self.0[..12]
    }
}

impl FromStr for ContainerId {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if s.len() == 64 && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
            Ok(ContainerId(s.to_string()))
        } else {
            Err(format!("invalid container ID {s:?}: expected 64 lowercase hex characters"))
        }
    }
}

impl fmt::Display for ContainerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for ContainerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Serialize for ContainerId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for ContainerId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?.parse().map_err(serde::de::Error::custom)
    }
}

/// Docker's empty-object map values (`"ExposedPorts": {"80/tcp": {}}`).
pub type EmptyObject = BTreeMap<String, serde_json::Value>;

/// Docker's container `Config`: what runs, independent of the host.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct ContainerConfig {
    pub hostname: String,
    pub domainname: String,
    pub user: String,
    pub attach_stdin: bool,
    pub attach_stdout: bool,
    pub attach_stderr: bool,
    pub exposed_ports: Option<BTreeMap<String, EmptyObject>>,
    pub tty: bool,
    pub open_stdin: bool,
    pub stdin_once: bool,
    pub env: Option<Vec<String>>,
    pub cmd: Option<Vec<String>>,
    pub image: String,
    pub volumes: Option<BTreeMap<String, EmptyObject>>,
    pub working_dir: String,
    pub entrypoint: Option<Vec<String>>,
    pub network_disabled: Option<bool>,
    pub mac_address: Option<String>,
    pub on_build: Option<Vec<String>>,
    pub labels: Option<BTreeMap<String, String>>,
    pub stop_signal: Option<String>,
    pub stop_timeout: Option<i64>,
    pub shell: Option<Vec<String>>,
}

/// `RestartPolicy` of a `HostConfig`.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase", default)]
pub struct RestartPolicy {
    /// "", "no", "always", "unless-stopped", "on-failure".
    pub name: String,
    pub maximum_retry_count: i64,
}

/// `LogConfig` of a `HostConfig` (`--log-driver`, `--log-opt`).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase", default)]
pub struct LogConfig {
    #[serde(rename = "Type")]
    pub kind: String,
    pub config: BTreeMap<String, String>,
}

/// One `--ulimit`.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase", default)]
pub struct Ulimit {
    pub name: String,
    pub soft: i64,
    pub hard: i64,
}

/// One `--mount` (Docker's `Mount` object); volumes and binds come with the volume issue.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct MountRequest {
    pub target: String,
    pub source: String,
    #[serde(rename = "Type")]
    pub kind: String,
    pub read_only: bool,
    pub consistency: String,
    pub bind_options: Option<serde_json::Value>,
    pub volume_options: Option<serde_json::Value>,
    pub tmpfs_options: Option<serde_json::Value>,
}

/// Docker's `HostConfig`: how the container sits on this host.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct HostConfig {
    pub binds: Option<Vec<String>>,
    #[serde(rename = "ContainerIDFile")]
    pub container_id_file: String,
    pub log_config: LogConfig,
    pub network_mode: String,
    pub port_bindings: Option<super::network::PortMap>,
    pub restart_policy: RestartPolicy,
    pub auto_remove: bool,
    pub volume_driver: String,
    pub volumes_from: Option<Vec<String>>,
    pub mounts: Option<Vec<MountRequest>>,
    pub cap_add: Option<Vec<String>>,
    pub cap_drop: Option<Vec<String>>,
    pub cgroupns_mode: String,
    pub dns: Option<Vec<String>>,
    pub dns_options: Option<Vec<String>>,
    pub dns_search: Option<Vec<String>>,
    pub extra_hosts: Option<Vec<String>>,
    pub group_add: Option<Vec<String>>,
    pub ipc_mode: String,
    pub cgroup: String,
    pub links: Option<Vec<String>>,
    pub oom_score_adj: i64,
    pub pid_mode: String,
    pub privileged: bool,
    pub publish_all_ports: bool,
    pub readonly_rootfs: bool,
    pub security_opt: Option<Vec<String>>,
    pub tmpfs: Option<BTreeMap<String, String>>,
    #[serde(rename = "UTSMode")]
    pub uts_mode: String,
    pub userns_mode: String,
    pub shm_size: i64,
    pub sysctls: Option<BTreeMap<String, String>>,
    pub runtime: String,
    pub isolation: String,
    pub init: Option<bool>,
    /// `[height, width]` of the client's terminal, sent with `-t` so the
    /// container starts with the right size (API 1.42+).
    pub console_size: Option<[u64; 2]>,
    // Resources (Docker flattens them into HostConfig).
    pub cpu_shares: i64,
    pub memory: i64,
    pub cgroup_parent: String,
    pub cpu_period: i64,
    pub cpu_quota: i64,
    pub cpu_realtime_period: i64,
    pub cpu_realtime_runtime: i64,
    pub cpuset_cpus: String,
    pub cpuset_mems: String,
    pub devices: Option<Vec<serde_json::Value>>,
    pub memory_reservation: i64,
    pub memory_swap: i64,
    pub memory_swappiness: Option<i64>,
    pub nano_cpus: i64,
    pub oom_kill_disable: Option<bool>,
    pub pids_limit: Option<i64>,
    pub ulimits: Option<Vec<Ulimit>>,
    pub masked_paths: Option<Vec<String>>,
    pub readonly_paths: Option<Vec<String>>,
}

/// A container's status word, as `State.Status` and `ps` show it.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    #[default]
    Created,
    Running,
    Paused,
    Restarting,
    Removing,
    Exited,
    Dead,
}

/// Docker's container `State`.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct ContainerState {
    pub status: Status,
    pub running: bool,
    pub paused: bool,
    pub restarting: bool,
    #[serde(rename = "OOMKilled")]
    pub oom_killed: bool,
    pub dead: bool,
    pub pid: i64,
    pub exit_code: i64,
    pub error: String,
    /// RFC 3339 with nanoseconds; Docker's zero time `0001-01-01T00:00:00Z` when never.
    pub started_at: String,
    pub finished_at: String,
}

impl ContainerState {
    /// Whether the container has (or is about to have) a process: running,
    /// paused or restarting.
    pub fn is_active(&self) -> bool {
        matches!(self.status, Status::Running | Status::Paused | Status::Restarting)
    }
}

/// Docker's zero time, shown for "never".
pub const ZERO_TIME: &str = "0001-01-01T00:00:00Z";

/// A container as the metadata store keeps it: the source of truth for
/// everything but the live process, which its shim reports.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ContainerRecord {
    pub id: ContainerId,
    /// Without the leading `/` (the API adds it).
    pub name: String,
    /// RFC 3339 with nanoseconds.
    pub created: String,
    /// The image ID the container was created from.
    pub image: Digest,
    /// The resolved command: entrypoint + cmd, first element (`Path`).
    pub path: String,
    /// The rest of it (`Args`).
    pub args: Vec<String>,
    pub config: ContainerConfig,
    pub host_config: HostConfig,
    pub state: ContainerState,
    pub restart_count: i64,
    /// The storage driver's ID of the container's writable layer.
    pub rw_layer: String,
    /// Whether the user stopped it (so `unless-stopped` and `always` stay down
    /// until started again, and the daemon does not restart it at start-up).
    pub manually_stopped: bool,
    /// Networks by name: what was asked on create/connect and, while the
    /// container runs, the address, gateway, MAC and endpoint it got.
    #[serde(default)]
    pub networks: BTreeMap<String, super::network::EndpointSettings>,
    /// Published ports as started (`NetworkSettings.Ports`): host ports
    /// chosen for `-p 80` and `-P` are filled in. Empty while stopped.
    #[serde(default)]
    pub ports: super::network::PortMap,
    /// `<run>/netns/<id>` while running with a namespace of its own.
    #[serde(default)]
    pub sandbox_key: String,
    /// Volumes, binds and tmpfs mounts, resolved at create.
    #[serde(default)]
    pub mounts: Vec<super::volume::MountPoint>,
}
