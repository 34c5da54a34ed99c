//! Containers: create, start, stop, remove, inspect, logs, attach, exec and
//! the rest of their life, on top of the runtime and one shim per running
//! container. Restart policies are applied here, on exit and at daemon start.

mod archive;
mod create;
mod events;
mod fsops;
mod info;
mod io;
mod lifecycle;
mod live;
mod names;
mod query;
mod signal;
pub mod spec;
#[cfg(test)]
mod tests;

use std::io::Read;
use std::os::unix::net::UnixStream;

use berth_model::drivers::DriverError;
use crate::engine::{Engine, EngineError, EngineResult};
use berth_model::container::{ContainerConfig, ContainerRecord, HostConfig};
use berth_model::network::NetworkingConfig;

pub use create::{merge_config, parse_network_mode, resolve_command, NetworkMode};
pub use lifecycle::{restart_at_boot, should_restart};
pub use live::Live;
pub use names::{generate as generate_name, validate as validate_name};
pub use signal::parse as parse_signal;

/// A driver error with what was being done, keeping its status class.
pub(crate) fn driver_error(what: &str, e: DriverError) -> EngineError {
    match e {
        DriverError::InvalidArgument(m) => EngineError::InvalidArgument(format!("{what}: {m}")),
        DriverError::Io { context, source } => EngineError::io(format!("{what}: {context}"), source),
        DriverError::Unsupported(m) => EngineError::InvalidArgument(format!("{what}: {m}")),
        other => EngineError::Driver(other),
    }
}

/// `n` bytes from the kernel's random source.
pub(crate) fn random_bytes(n: usize) -> EngineResult<Vec<u8>> {
    let mut buf = vec![0u8; n];
    let mut f = std::fs::File::open("/dev/urandom").map_err(|e| EngineError::io("opening /dev/urandom", e))?;
    f.read_exact(&mut buf).map_err(|e| EngineError::io("reading /dev/urandom", e))?;
    Ok(buf)
}

/// `ps` filters (`-f status=exited`, `name=`, `id=`, `label=`, `ancestor=`,
/// `exited=`), each key with its accepted values (any of them matches).
pub type Filters = std::collections::BTreeMap<String, Vec<String>>;

/// Options of `GET /containers/json`.
#[derive(Clone, Debug, Default)]
pub struct ListOptions {
    pub all: bool,
    /// `-n`: the last N created (any state).
    pub limit: Option<usize>,
    /// `-s`: compute sizes.
    pub size: bool,
    pub filters: Filters,
}

/// A container with what `inspect` and `ps` add to the stored record.
#[derive(Clone, Debug)]
pub struct ContainerDetails {
    pub record: ContainerRecord,
    /// The image reference the user gave (`Config.Image`), and its ID.
    pub image_name: String,
    /// `SizeRw` and `SizeRootFs` when asked for.
    pub size_rw: Option<u64>,
    pub size_root_fs: Option<u64>,
    /// The json-file log path (`LogPath`).
    pub log_path: String,
    /// The rootfs mount path while running (`GraphDriver.Data.MergedDir`).
    pub graph_driver_data: std::collections::BTreeMap<String, String>,
}

/// `POST /containers/{id}/wait?condition=`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum WaitCondition {
    /// Returns at once if not running, else at exit.
    #[default]
    NotRunning,
    /// The next exit after the call, even if not yet started.
    NextExit,
    /// When the container is removed (`run --rm`).
    Removed,
}

/// A registered waiter; `recv` blocks until the condition is met.
pub struct Waiter {
    pub(crate) rx: std::sync::mpsc::Receiver<WaitResult>,
}

/// Answer of `wait`: Docker's `{"StatusCode": n, "Error": {"Message": ...}}`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WaitResult {
    pub status_code: i64,
    pub error: Option<String>,
}

impl Waiter {
    /// Blocks until the condition is met.
    pub fn recv(self) -> WaitResult {
        self.rx.recv().unwrap_or(WaitResult { status_code: -1, error: Some("daemon shutting down".into()) })
    }
}

/// Options of `logs`.
#[derive(Clone, Debug, Default)]
pub struct LogsOptions {
    pub stdout: bool,
    pub stderr: bool,
    pub follow: bool,
    /// Unix seconds (fractional allowed), inclusive.
    pub since: Option<f64>,
    pub until: Option<f64>,
    pub timestamps: bool,
    /// `--tail N` (None = all).
    pub tail: Option<usize>,
}

/// Which stream a log or attach chunk belongs to (Docker's stream type byte).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StreamKind {
    Stdin = 0,
    Stdout = 1,
    Stderr = 2,
}

/// One log record.
#[derive(Clone, Debug)]
pub struct LogEntry {
    pub stream: StreamKind,
    /// RFC 3339 with nanoseconds.
    pub time: String,
    pub bytes: Vec<u8>,
}

/// A joined stdio stream (attach or exec start) and whether it is a tty
/// (raw bytes) or multiplexed (8-byte frames).
pub struct Attachment {
    pub stream: UnixStream,
    pub tty: bool,
}

/// `POST /containers/{id}/exec` body (Docker's ExecConfig).
#[derive(Clone, Debug, Default, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ExecConfig {
    pub attach_stdin: bool,
    pub attach_stdout: bool,
    pub attach_stderr: bool,
    pub detach_keys: String,
    pub tty: bool,
    pub env: Option<Vec<String>>,
    pub cmd: Vec<String>,
    pub privileged: bool,
    pub user: String,
    pub working_dir: String,
}

/// `GET /exec/{id}/json`.
#[derive(Clone, Debug)]
pub struct ExecDetails {
    pub id: String,
    pub container_id: String,
    pub config: ExecConfig,
    pub running: bool,
    pub exit_code: Option<i64>,
    pub pid: i64,
}

/// One event of `docker events`: what happened to which object, and when.
/// The API turns it into Docker's `EventMessage` (`apitypes`).
#[derive(Clone, Debug)]
pub struct Event {
    /// `container`, `image`, `network`, `volume`, ...
    pub kind: String,
    pub action: String,
    pub actor: EventActor,
    pub scope: String,
    /// Seconds since the epoch.
    pub time: i64,
    /// Nanoseconds since the epoch.
    pub time_nano: i64,
    /// Docker's legacy members, which the docker CLI still prints from.
    pub status: String,
    pub id: String,
    pub from: String,
}

/// The object of an event and its attributes.
#[derive(Clone, Debug)]
pub struct EventActor {
    pub id: String,
    pub attributes: std::collections::BTreeMap<String, String>,
}

impl Engine {
    /// `docker create`: validates everything (image, name, command, limits,
    /// ulimits, restart policy) before anything is written; returns the ID and
    /// Docker's warnings.
    pub fn create_container(
        &self,
        name: Option<&str>,
        config: ContainerConfig,
        host_config: HostConfig,
    ) -> EngineResult<(ContainerRecord, Vec<String>)> {
        self.create_container_impl(name, config, host_config, NetworkingConfig::default())
    }

    /// `create_container` with the API's `NetworkingConfig` (endpoint
    /// settings per network: `--ip`, `--network-alias`, `--link`).
    pub fn create_container_with(
        &self,
        name: Option<&str>,
        config: ContainerConfig,
        host_config: HostConfig,
        networking: NetworkingConfig,
    ) -> EngineResult<(ContainerRecord, Vec<String>)> {
        self.create_container_impl(name, config, host_config, networking)
    }

    /// Finds a container by full ID, unique ID prefix or name (with or without `/`).
    pub fn find_container(&self, id_or_name: &str) -> EngineResult<ContainerDetails> {
        self.find_container_impl(id_or_name)
    }

    /// `docker ps`, newest first.
    pub fn list_containers(&self, options: &ListOptions) -> EngineResult<Vec<ContainerDetails>> {
        self.list_containers_impl(options)
    }

    /// `docker start`. Starting a running container is a no-op (the API answers 304).
    /// Returns false when it was already running.
    pub fn start_container(&self, id_or_name: &str) -> EngineResult<bool> {
        self.start_container_impl(id_or_name)
    }

    /// `docker stop`: the stop signal, `timeout` seconds (container's
    /// StopTimeout, else 10), then SIGKILL. Returns false when it was not running.
    pub fn stop_container(&self, id_or_name: &str, signal: Option<&str>, timeout: Option<i64>) -> EngineResult<bool> {
        self.stop_container_impl(id_or_name, signal, timeout)
    }

    /// `docker kill -s SIGNAL` (name like `KILL`/`SIGKILL` or number).
    pub fn kill_container(&self, id_or_name: &str, signal: &str) -> EngineResult<()> {
        self.kill_container_impl(id_or_name, signal)
    }

    /// `docker restart`.
    pub fn restart_container(&self, id_or_name: &str, timeout: Option<i64>) -> EngineResult<()> {
        self.restart_container_impl(id_or_name, timeout)
    }

    /// `docker pause` (cgroup freezer).
    pub fn pause_container(&self, id_or_name: &str) -> EngineResult<()> {
        self.pause_container_impl(id_or_name)
    }

    /// `docker unpause`.
    pub fn unpause_container(&self, id_or_name: &str) -> EngineResult<()> {
        self.unpause_container_impl(id_or_name)
    }

    /// `docker rm` (`force` kills a running one; `volumes` removes anonymous
    /// volumes once volumes exist). Leaves no mount, cgroup, shim or state.
    pub fn remove_container(&self, id_or_name: &str, force: bool, volumes: bool) -> EngineResult<()> {
        self.remove_container_impl(id_or_name, force, volumes)
    }

    /// `docker rename`.
    pub fn rename_container(&self, id_or_name: &str, new_name: &str) -> EngineResult<()> {
        self.rename_container_impl(id_or_name, new_name)
    }

    /// Registers a waiter now (before returning), so a `wait` posted before
    /// `start` sees the next exit.
    pub fn wait_container(&self, id_or_name: &str, condition: WaitCondition) -> EngineResult<Waiter> {
        self.wait_container_impl(id_or_name, condition)
    }

    /// `docker logs`: entries in order; with `follow` the iterator blocks for
    /// new ones and ends when the container stops.
    pub fn container_logs(
        &self,
        id_or_name: &str,
        options: &LogsOptions,
    ) -> EngineResult<Box<dyn Iterator<Item = std::io::Result<LogEntry>> + Send>> {
        self.container_logs_impl(id_or_name, options)
    }

    /// `docker attach` / `run -a`: a stream joined to the container's stdio.
    pub fn attach_container(
        &self,
        id_or_name: &str,
        stdin: bool,
        stdout: bool,
        stderr: bool,
    ) -> EngineResult<Attachment> {
        self.attach_container_impl(id_or_name, stdin, stdout, stderr)
    }

    /// `POST /containers/{id}/resize`.
    pub fn resize_container(&self, id_or_name: &str, rows: u16, cols: u16) -> EngineResult<()> {
        self.resize_container_impl(id_or_name, rows, cols)
    }

    /// `POST /containers/{id}/exec`: registers an exec; returns its ID.
    pub fn create_exec(&self, id_or_name: &str, config: ExecConfig) -> EngineResult<String> {
        self.create_exec_impl(id_or_name, config)
    }

    /// `POST /exec/{id}/start`: runs it; the stream is `None` when detached.
    pub fn start_exec(&self, exec_id: &str, detach: bool) -> EngineResult<Option<Attachment>> {
        self.start_exec_impl(exec_id, detach)
    }

    /// `GET /exec/{id}/json`.
    pub fn inspect_exec(&self, exec_id: &str) -> EngineResult<ExecDetails> {
        self.inspect_exec_impl(exec_id)
    }

    /// `POST /exec/{id}/resize`.
    pub fn resize_exec(&self, exec_id: &str, rows: u16, cols: u16) -> EngineResult<()> {
        self.resize_exec_impl(exec_id, rows, cols)
    }

    /// `docker top`: `ps` columns and rows for the container's processes.
    pub fn top_container(
        &self,
        id_or_name: &str,
        ps_args: Option<&str>,
    ) -> EngineResult<(Vec<String>, Vec<Vec<String>>)> {
        self.top_container_impl(id_or_name, ps_args)
    }

    /// `docker stats`: one sample in Docker's stats JSON shape.
    pub fn container_stats(&self, id_or_name: &str) -> EngineResult<serde_json::Value> {
        self.container_stats_impl(id_or_name)
    }

    /// `docker update`: new resource limits (and restart policy).
    pub fn update_container(&self, id_or_name: &str, update: HostConfig) -> EngineResult<Vec<String>> {
        self.update_container_impl(id_or_name, update)
    }

    /// `docker diff`.
    pub fn container_changes(&self, id_or_name: &str) -> EngineResult<Vec<berth_model::drivers::Change>> {
        self.container_changes_impl(id_or_name)
    }

    /// `docker export`: the container's whole filesystem as a tar.
    pub fn export_container(&self, id_or_name: &str, out: &mut dyn std::io::Write) -> EngineResult<()> {
        self.export_container_impl(id_or_name, out)
    }

    /// `docker commit`: the writable layer becomes a new image layer on top of
    /// the container's image, with `changes` applied; returns the image ID.
    pub fn commit_container(
        &self,
        id_or_name: &str,
        reference: Option<&berth_model::ImageRef>,
        comment: &str,
        author: &str,
        changes: &[String],
        config: Option<ContainerConfig>,
    ) -> EngineResult<berth_model::Digest> {
        self.commit_container_impl(id_or_name, reference, comment, author, changes, config)
    }

    /// `GET /containers/{id}/archive` (`docker cp` out): stat JSON of the path
    /// (for the `X-Docker-Container-Path-Stat` header) and a tar of it.
    pub fn archive_get(&self, id_or_name: &str, path: &str) -> EngineResult<(serde_json::Value, Box<dyn Read + Send>)> {
        self.archive_get_impl(id_or_name, path)
    }

    /// `HEAD /containers/{id}/archive`: the stat JSON only.
    pub fn archive_stat(&self, id_or_name: &str, path: &str) -> EngineResult<serde_json::Value> {
        self.archive_stat_impl(id_or_name, path)
    }

    /// `PUT /containers/{id}/archive` (`docker cp` in): extract a tar at
    /// `path`, resolving every entry inside the container's root.
    pub fn archive_put(&self, id_or_name: &str, path: &str, tar: &mut dyn Read) -> EngineResult<()> {
        self.archive_put_impl(id_or_name, path, tar)
    }

    /// `docker container prune`: removes stopped containers; returns their IDs
    /// and the bytes reclaimed.
    pub fn prune_containers(&self, filters: &Filters) -> EngineResult<(Vec<String>, u64)> {
        self.prune_containers_impl(filters)
    }

    /// `docker events`: past events since `since` (unix seconds), then live
    /// ones until `until` (if given); filters like the CLI's `-f`.
    pub fn events(
        &self,
        since: Option<f64>,
        until: Option<f64>,
        filters: &Filters,
    ) -> EngineResult<std::sync::mpsc::Receiver<Event>> {
        self.events_impl(since, until, filters)
    }
}

/// Whether a container state has (or is about to have) a process:
/// running, paused or restarting.
pub fn is_running_state(state: &berth_model::container::ContainerState) -> bool {
    lifecycle::is_active(state)
}
