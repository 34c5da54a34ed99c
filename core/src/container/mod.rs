//! Containers: create, start, stop, remove, inspect, logs, attach, exec and
//! the rest of their life, on top of the runtime and one shim per running
//! container. Restart policies are applied here, on exit and at daemon start.

mod archive;
mod create;
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

use std::os::unix::net::UnixStream;
use std::sync::{Arc, Weak};

use berth_model::container::ContainerRecord;
use berth_model::drivers::StorageDriver;
use berth_model::network::EndpointSettings;
use berth_runtime::trash::Trash;

use crate::catalog::ContainerCatalog;
use crate::config::EngineConfig;
use crate::error::{EngineError, EngineResult};
use crate::filters::Filters;
use crate::image::ImageService;
use crate::network::NetworkService;
use crate::store::Store;
use crate::volume::VolumeService;
use live::Live;

pub use create::{merge_config, resolve_command};
pub use lifecycle::{restart_at_boot, should_restart};
pub use names::{generate as generate_name, validate as validate_name};
pub use signal::parse as parse_signal;

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

/// A command to run in a running container, and how its stdio is wired.
#[derive(Clone, Debug, Default)]
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

/// One `stats` sample of a container. The counters only grow, so a reader
/// turns them into rates with the previous sample's (`precpu`, taken at
/// `preread`), which the engine keeps per container. A stopped container
/// has no cgroup to read: its sample is all zeros, at `ZERO_TIME`, without
/// memory or pids, as Docker answers.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StatsSample {
    /// RFC 3339, when the counters were read.
    pub read: String,
    /// When the previous sample was read; `ZERO_TIME` when there was none.
    pub preread: String,
    pub cpu: CpuSample,
    /// The previous sample's CPU counters; zero when there was none.
    pub precpu: CpuSample,
    pub memory: Option<MemorySample>,
    pub pids: Option<PidsSample>,
    pub name: String,
    pub id: String,
}

/// CPU time counters of a sample, in nanoseconds since boot, with the
/// host's so that the container's share of the host can be computed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CpuSample {
    /// The container's processes, in user and kernel mode.
    pub total_ns: u64,
    pub kernel_ns: u64,
    pub user_ns: u64,
    /// Every CPU of the host, busy or idle: the denominator of a percentage.
    pub host_ns: u64,
    /// How many CPUs `host_ns` counts, to scale a share of the host to CPUs.
    pub online_cpus: u32,
}

/// The container's memory in bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MemorySample {
    /// Page cache included, as the cgroup counts it.
    pub usage: u64,
    /// The container's limit, or the host's memory when it has none (or
    /// one above it), since that is what it can really use.
    pub limit: u64,
    /// The page cache in `usage`, which the kernel can reclaim.
    pub cache: u64,
}

/// The container's processes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PidsSample {
    pub current: u64,
    /// `--pids-limit`; None when unlimited.
    pub limit: Option<u64>,
}

/// A path in a container as `docker cp` sees it before it copies.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PathStat {
    /// The last component (`/` for the root).
    pub name: String,
    pub size: i64,
    /// Go's `os.FileMode` bits (the docker CLI reads them): permissions, and
    /// `1 << 31` for a directory, `1 << 27` for a symlink, ...
    pub mode: u32,
    /// RFC 3339 with nanoseconds.
    pub mtime: String,
    /// Where a symlink points, absolute inside the container; empty otherwise.
    pub link_target: String,
}

/// The containers service: container records (the store's `containers`
/// table, which only it writes), their directories, shims, waiters, execs
/// and events. It takes the images, networks and volumes services it
/// builds containers from as handles.
pub struct ContainerService {
    config: EngineConfig,
    store: Arc<Store>,
    catalog: ContainerCatalog,
    storage: Arc<dyn StorageDriver>,
    images: Arc<ImageService>,
    networks: Arc<NetworkService>,
    volumes: Arc<VolumeService>,
    /// Shims, waiters, execs, events.
    live: Live,
    /// The `Arc` this service lives in, for the threads that monitor containers.
    me: Weak<ContainerService>,
    /// `<root>/.trash` and `<run>/.trash`: removed container directories wait
    /// there for the background reaper, so `rm` does not wait for the disk.
    root_trash: Trash,
    run_trash: Trash,
}

impl ContainerService {
    /// Builds the service and re-adopts the containers that were running
    /// (their shims outlive a daemon), then the volumes they hold.
    pub(crate) fn open(
        config: EngineConfig,
        store: Arc<Store>,
        catalog: ContainerCatalog,
        storage: Arc<dyn StorageDriver>,
        images: Arc<ImageService>,
        networks: Arc<NetworkService>,
        volumes: Arc<VolumeService>,
    ) -> EngineResult<Arc<Self>> {
        // Made now, not at the first container, so the engine's start makes them private (`restrict_state_dirs`).
        for dir in [config.root.join("containers"), config.run.join("containers")] {
            std::fs::create_dir_all(&dir).map_err(|e| EngineError::io(format!("creating {}", dir.display()), e))?;
        }
        // Opening a trash queues what a previous daemon left in it.
        let root_trash = Trash::open(config.root.join(".trash"))?;
        let run_trash = Trash::open(config.run.join(".trash"))?;
        let containers = Arc::new_cyclic(|me| ContainerService {
            config,
            store,
            catalog,
            storage,
            images,
            networks,
            volumes,
            live: Live::default(),
            me: me.clone(),
            root_trash,
            run_trash,
        });
        containers.readopt_containers()?;
        containers.readopt_volumes()?;
        Ok(containers)
    }

    /// At daemon start, after the containers are re-adopted: tells the
    /// volumes service which containers hold which volumes now.
    fn readopt_volumes(&self) -> EngineResult<()> {
        for record in self.catalog.all()? {
            let _g = self.live.lock(record.id.as_str());
            // Re-read under the lock: the record may have changed meanwhile.
            if let Some(record) = self.catalog.load(record.id.as_str())? {
                self.volumes.readopt_container(&record);
            }
        }
        self.volumes.release_unused_host_mounts()
    }

    /// `docker network connect`: attaches a container (running or not); a
    /// running one gets the interface at once. Refused for `host`, `none`
    /// and `container:` modes with Docker's message.
    pub fn connect_network(&self, network: &str, container: &str, settings: EndpointSettings) -> EngineResult<()> {
        let id = self.catalog.lookup(container)?.id.to_string();
        let _g = self.live.lock(&id);
        let mut record =
            self.catalog.load(&id)?.ok_or_else(|| EngineError::NotFound(format!("No such container: {container}")))?;
        self.networks.connect(network, &mut record, settings, &|r| self.save_container(r))
    }

    /// `docker network disconnect [-f]`.
    pub fn disconnect_network(&self, network: &str, container: &str, force: bool) -> EngineResult<()> {
        let id = self.catalog.lookup(container)?.id.to_string();
        let _g = self.live.lock(&id);
        let mut record =
            self.catalog.load(&id)?.ok_or_else(|| EngineError::NotFound(format!("No such container: {container}")))?;
        self.networks.disconnect(network, &mut record, force, &|r| self.save_container(r))
    }
}
