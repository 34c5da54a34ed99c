//! Containers: create, start, stop, remove, inspect, logs, attach, exec and
//! the rest of their life, on top of the runtime and one shim per running
//! container. Restart policies are applied here, on exit and at daemon start.

use std::io::Read;
use std::os::unix::net::UnixStream;

use crate::engine::{Engine, EngineResult};
use crate::model::container::{ContainerConfig, ContainerRecord, HostConfig};

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

/// One event of `docker events` (Docker's `EventMessage`).
#[derive(Clone, Debug, serde::Serialize)]
pub struct Event {
    #[serde(rename = "Type")]
    pub kind: String,
    #[serde(rename = "Action")]
    pub action: String,
    #[serde(rename = "Actor")]
    pub actor: EventActor,
    pub scope: String,
    pub time: i64,
    #[serde(rename = "timeNano")]
    pub time_nano: i64,
    // Legacy fields the docker CLI still prints from.
    pub status: String,
    pub id: String,
    pub from: String,
}

/// `Actor` of an event.
#[derive(Clone, Debug, serde::Serialize)]
pub struct EventActor {
    #[serde(rename = "ID")]
    pub id: String,
    #[serde(rename = "Attributes")]
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
        let _ = (name, config, host_config);
        todo!("ENGINE helper")
    }

    /// Finds a container by full ID, unique ID prefix or name (with or without `/`).
    pub fn find_container(&self, id_or_name: &str) -> EngineResult<ContainerDetails> {
        let _ = id_or_name;
        todo!("ENGINE helper")
    }

    /// `docker ps`, newest first.
    pub fn list_containers(&self, options: &ListOptions) -> EngineResult<Vec<ContainerDetails>> {
        let _ = options;
        todo!("ENGINE helper")
    }

    /// `docker start`. Starting a running container is a no-op (the API answers 304).
    /// Returns false when it was already running.
    pub fn start_container(&self, id_or_name: &str) -> EngineResult<bool> {
        let _ = id_or_name;
        todo!("ENGINE helper")
    }

    /// `docker stop`: the stop signal, `timeout` seconds (container's
    /// StopTimeout, else 10), then SIGKILL. Returns false when it was not running.
    pub fn stop_container(&self, id_or_name: &str, signal: Option<&str>, timeout: Option<i64>) -> EngineResult<bool> {
        let _ = (id_or_name, signal, timeout);
        todo!("ENGINE helper")
    }

    /// `docker kill -s SIGNAL` (name like `KILL`/`SIGKILL` or number).
    pub fn kill_container(&self, id_or_name: &str, signal: &str) -> EngineResult<()> {
        let _ = (id_or_name, signal);
        todo!("ENGINE helper")
    }

    /// `docker restart`.
    pub fn restart_container(&self, id_or_name: &str, timeout: Option<i64>) -> EngineResult<()> {
        let _ = (id_or_name, timeout);
        todo!("ENGINE helper")
    }

    /// `docker pause` (cgroup freezer).
    pub fn pause_container(&self, id_or_name: &str) -> EngineResult<()> {
        let _ = id_or_name;
        todo!("ENGINE helper")
    }

    /// `docker unpause`.
    pub fn unpause_container(&self, id_or_name: &str) -> EngineResult<()> {
        let _ = id_or_name;
        todo!("ENGINE helper")
    }

    /// `docker rm` (`force` kills a running one; `volumes` removes anonymous
    /// volumes once volumes exist). Leaves no mount, cgroup, shim or state.
    pub fn remove_container(&self, id_or_name: &str, force: bool, volumes: bool) -> EngineResult<()> {
        let _ = (id_or_name, force, volumes);
        todo!("ENGINE helper")
    }

    /// `docker rename`.
    pub fn rename_container(&self, id_or_name: &str, new_name: &str) -> EngineResult<()> {
        let _ = (id_or_name, new_name);
        todo!("ENGINE helper")
    }

    /// Registers a waiter now (before returning), so a `wait` posted before
    /// `start` sees the next exit.
    pub fn wait_container(&self, id_or_name: &str, condition: WaitCondition) -> EngineResult<Waiter> {
        let _ = (id_or_name, condition);
        todo!("ENGINE helper")
    }

    /// `docker logs`: entries in order; with `follow` the iterator blocks for
    /// new ones and ends when the container stops.
    pub fn container_logs(
        &self,
        id_or_name: &str,
        options: &LogsOptions,
    ) -> EngineResult<Box<dyn Iterator<Item = std::io::Result<LogEntry>> + Send>> {
        let _ = (id_or_name, options);
        todo!("ENGINE helper")
    }

    /// `docker attach` / `run -a`: a stream joined to the container's stdio.
    pub fn attach_container(&self, id_or_name: &str, stdin: bool, stdout: bool, stderr: bool) -> EngineResult<Attachment> {
        let _ = (id_or_name, stdin, stdout, stderr);
        todo!("ENGINE helper")
    }

    /// `POST /containers/{id}/resize`.
    pub fn resize_container(&self, id_or_name: &str, rows: u16, cols: u16) -> EngineResult<()> {
        let _ = (id_or_name, rows, cols);
        todo!("ENGINE helper")
    }

    /// `POST /containers/{id}/exec`: registers an exec; returns its ID.
    pub fn create_exec(&self, id_or_name: &str, config: ExecConfig) -> EngineResult<String> {
        let _ = (id_or_name, config);
        todo!("ENGINE helper")
    }

    /// `POST /exec/{id}/start`: runs it; the stream is `None` when detached.
    pub fn start_exec(&self, exec_id: &str, detach: bool) -> EngineResult<Option<Attachment>> {
        let _ = (exec_id, detach);
        todo!("ENGINE helper")
    }

    /// `GET /exec/{id}/json`.
    pub fn inspect_exec(&self, exec_id: &str) -> EngineResult<ExecDetails> {
        let _ = exec_id;
        todo!("ENGINE helper")
    }

    /// `POST /exec/{id}/resize`.
    pub fn resize_exec(&self, exec_id: &str, rows: u16, cols: u16) -> EngineResult<()> {
        let _ = (exec_id, rows, cols);
        todo!("ENGINE helper")
    }

    /// `docker top`: `ps` columns and rows for the container's processes.
    pub fn top_container(&self, id_or_name: &str, ps_args: Option<&str>) -> EngineResult<(Vec<String>, Vec<Vec<String>>)> {
        let _ = (id_or_name, ps_args);
        todo!("ENGINE helper")
    }

    /// `docker stats`: one sample in Docker's stats JSON shape.
    pub fn container_stats(&self, id_or_name: &str) -> EngineResult<serde_json::Value> {
        let _ = id_or_name;
        todo!("ENGINE helper")
    }

    /// `docker update`: new resource limits (and restart policy).
    pub fn update_container(&self, id_or_name: &str, update: HostConfig) -> EngineResult<Vec<String>> {
        let _ = (id_or_name, update);
        todo!("ENGINE helper")
    }

    /// `docker diff`.
    pub fn container_changes(&self, id_or_name: &str) -> EngineResult<Vec<crate::drivers::Change>> {
        let _ = id_or_name;
        todo!("ENGINE helper")
    }

    /// `docker export`: the container's whole filesystem as a tar.
    pub fn export_container(&self, id_or_name: &str, out: &mut dyn std::io::Write) -> EngineResult<()> {
        let _ = (id_or_name, out);
        todo!("ENGINE helper")
    }

    /// `docker commit`: the writable layer becomes a new image layer on top of
    /// the container's image, with `changes` applied; returns the image ID.
    pub fn commit_container(
        &self,
        id_or_name: &str,
        reference: Option<&crate::model::ImageRef>,
        comment: &str,
        author: &str,
        changes: &[String],
        config: Option<ContainerConfig>,
    ) -> EngineResult<crate::model::Digest> {
        let _ = (id_or_name, reference, comment, author, changes, config);
        todo!("ENGINE helper")
    }

    /// `GET /containers/{id}/archive` (`docker cp` out): stat JSON of the path
    /// (for the `X-Docker-Container-Path-Stat` header) and a tar of it.
    pub fn archive_get(
        &self,
        id_or_name: &str,
        path: &str,
    ) -> EngineResult<(serde_json::Value, Box<dyn Read + Send>)> {
        let _ = (id_or_name, path);
        todo!("ENGINE helper")
    }

    /// `HEAD /containers/{id}/archive`: the stat JSON only.
    pub fn archive_stat(&self, id_or_name: &str, path: &str) -> EngineResult<serde_json::Value> {
        let _ = (id_or_name, path);
        todo!("ENGINE helper")
    }

    /// `PUT /containers/{id}/archive` (`docker cp` in): extract a tar at
    /// `path`, resolving every entry inside the container's root.
    pub fn archive_put(&self, id_or_name: &str, path: &str, tar: &mut dyn Read) -> EngineResult<()> {
        let _ = (id_or_name, path, tar);
        todo!("ENGINE helper")
    }

    /// `docker container prune`: removes stopped containers; returns their IDs
    /// and the bytes reclaimed.
    pub fn prune_containers(&self, filters: &Filters) -> EngineResult<(Vec<String>, u64)> {
        let _ = filters;
        todo!("ENGINE helper")
    }

    /// `docker events`: past events since `since` (unix seconds), then live
    /// ones until `until` (if given); filters like the CLI's `-f`.
    pub fn events(
        &self,
        since: Option<f64>,
        until: Option<f64>,
        filters: &Filters,
    ) -> EngineResult<std::sync::mpsc::Receiver<Event>> {
        let _ = (since, until, filters);
        todo!("ENGINE helper")
    }
}
