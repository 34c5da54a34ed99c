//! `Engine`: the one façade the API calls.
//!
//! It owns the metadata store, the content store and the drivers, and is the
//! only writer of the store. Its methods are blocking; the API layer calls
//! them from `spawn_blocking` so no request stalls the async threads.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::sync::{Arc, OnceLock, Weak};

use berth_model::drivers::{DriverError, StorageDriver};
use berth_model::{Digest, ImageRecord};
use berth_runtime::trash::TrashError;

use crate::drivers::Drivers;

/// Where the engine keeps its state.
#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// Persistent state (`--root`, default `/var/lib/berth`).
    pub root: PathBuf,
    /// Runtime state (`--run`, default `/run/berth`).
    pub run: PathBuf,
    /// The berth binary, started as `berth shim` for each container.
    pub berth_exe: PathBuf,
}

impl EngineConfig {
    /// A configuration with `root` and `run`, spawning shims from the running executable.
    pub fn new(root: PathBuf, run: PathBuf) -> EngineConfig {
        // Without /proc/self/exe the shim is looked up on $PATH as `berth`.
        let berth_exe = std::env::current_exe().unwrap_or_else(|_| PathBuf::from("berth"));
        EngineConfig { root, run, berth_exe }
    }
}

/// What kind of failure an `EngineError` is, for the API's status codes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// 400
    InvalidArgument,
    /// 404
    NotFound,
    /// 409
    Conflict,
    /// 403: allowed for no one (libnetwork's "forbidden" errors).
    Forbidden,
    /// 500
    Internal,
}

/// Errors of engine operations. Messages are what the user sees.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    InvalidArgument(String),
    /// Docker's 403: e.g. removing a predefined network, overlapping pools.
    #[error("{0}")]
    Forbidden(String),
    #[error(transparent)]
    Driver(#[from] DriverError),
    #[error(transparent)]
    Image(#[from] crate::image::ImageError),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error(transparent)]
    Runtime(#[from] berth_runtime::RuntimeError),
    #[error(transparent)]
    Shim(#[from] berth_runtime::shim::ShimError),
    /// Something failed inside the engine; the message says what.
    #[error("{0}")]
    Internal(String),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

impl EngineError {
    /// The status class of this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            EngineError::NotFound(_) | EngineError::Driver(DriverError::NotFound(_)) => ErrorKind::NotFound,
            EngineError::Conflict(_) | EngineError::Driver(DriverError::Conflict(_)) => ErrorKind::Conflict,
            EngineError::Forbidden(_) => ErrorKind::Forbidden,
            EngineError::InvalidArgument(_) | EngineError::Driver(DriverError::InvalidArgument(_)) => {
                ErrorKind::InvalidArgument
            }
            EngineError::Image(e) => e.kind(),
            EngineError::Runtime(berth_runtime::RuntimeError::InvalidConfig(_)) => ErrorKind::InvalidArgument,
            // The user's command cannot run (not found, not executable): Docker's 400.
            e if e.command_exit_code().is_some() => ErrorKind::InvalidArgument,
            _ => ErrorKind::Internal,
        }
    }

    /// 127 or 126 when the user's command cannot run; `None` for any other failure.
    pub fn command_exit_code(&self) -> Option<i32> {
        match self {
            EngineError::Runtime(e) => e.command_exit_code(),
            EngineError::Shim(e) => e.command_exit_code(),
            _ => None,
        }
    }

    /// An I/O error with what was being done.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        EngineError::Io { context: context.into(), source }
    }
}

impl From<TrashError> for EngineError {
    fn from(e: TrashError) -> Self {
        match e {
            TrashError::Io { context, source } => EngineError::Io { context, source },
            TrashError::MountPoint(_) => EngineError::Conflict(e.to_string()),
        }
    }
}

/// Result of an engine call.
pub type EngineResult<T> = Result<T, EngineError>;

/// An image with its parsed config, as `image inspect` and `images` need it.
#[derive(Clone, Debug)]
pub struct ImageDetails {
    pub record: ImageRecord,
    pub config: oci_spec::image::ImageConfiguration,
    /// Layer diff IDs (the config's `rootfs.diff_ids`), base first.
    pub diff_ids: Vec<Digest>,
    /// The image this one was built on, if it is known locally (Docker's `Parent`).
    pub parent: Option<Digest>,
    /// Number of containers using this image (Docker's `Containers`).
    pub containers: u64,
}

/// One line of `image rm`/`image prune` output.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ImageDeleteItem {
    Untagged(String),
    Deleted(Digest),
}

/// Archive formats `save` can write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ArchiveFormat {
    /// `docker save`'s format: manifest.json + repositories + one dir per layer.
    DockerArchive,
    /// An OCI image layout (oci-layout, index.json, blobs/sha256/...).
    OciLayout,
}

/// Options of `image import` (`POST /images/create?fromSrc=-`).
#[derive(Clone, Debug, Default)]
pub struct ImportOptions {
    /// Reference to tag the new image with.
    pub reference: Option<berth_model::ImageRef>,
    /// Dockerfile instructions applied to the config (`--change 'CMD ["sh"]'`).
    pub changes: Vec<String>,
    /// Commit message recorded in the history (`--message`).
    pub message: Option<String>,
    /// `os/arch[/variant]`; the host's when absent.
    pub platform: Option<String>,
}

/// Progress of a long operation, for `--progress` output and the API stream.
#[derive(Clone, Debug)]
pub enum Progress {
    /// `bytes` of the input have been read so far, of `total` if known.
    Reading { bytes: u64, total: Option<u64> },
    /// A layer finished unpacking.
    LayerDone { diff_id: Digest },
    /// A human line such as `Loaded image: busybox:latest`.
    Message(String),
}

/// `system df`'s numbers for images.
#[derive(Clone, Debug, Default)]
pub struct ImageDiskUsage {
    pub images: Vec<(ImageDetails, u64 /* shared size */)>,
    pub layers_size: u64,
}

/// The engine.
pub struct Engine {
    pub(crate) config: EngineConfig,
    pub(crate) store: crate::store::Store,
    pub(crate) content: crate::image::ContentStore,
    pub(crate) storage: Arc<dyn StorageDriver>,
    pub(crate) drivers: Drivers,
    /// Layers being created or removed (see `image::LayerClaims`).
    pub(crate) claims: crate::image::LayerClaims,
    /// Orders image registration against blob garbage collection, so a blob
    /// is either pinned by a load in flight or referenced when GC looks.
    pub(crate) gc_lock: std::sync::Mutex<()>,
    /// Serialises image mounts so one image is never mounted twice.
    pub(crate) mount_lock: std::sync::Mutex<()>,
    /// Live container state: shims, waiters, execs, events.
    pub(crate) containers: crate::container::Live,
    /// Live network state: DNS, port proxies, IPAM locks.
    pub(crate) networks: crate::network::NetworkState,
    /// Live volume state: mount counts.
    pub(crate) volumes: crate::volume::VolumeState,
    /// The `Arc` this engine lives in, for the threads that monitor containers.
    pub(crate) me: OnceLock<Weak<Engine>>,
    /// `<root>/.trash` and `<run>/.trash`: removed container directories wait
    /// there for the background reaper, so `rm` does not wait for the disk.
    pub(crate) root_trash: berth_runtime::trash::Trash,
    pub(crate) run_trash: berth_runtime::trash::Trash,
}

impl Engine {
    /// Opens (creating if needed) the engine's state under `config.root`, and
    /// re-adopts the containers that were running (their shims outlive a daemon).
    pub fn open(config: EngineConfig, storage: Arc<dyn StorageDriver>, drivers: Drivers) -> EngineResult<Arc<Engine>> {
        for dir in [&config.root, &config.run] {
            std::fs::create_dir_all(dir).map_err(|e| EngineError::io(format!("creating {}", dir.display()), e))?;
        }
        let store = crate::store::Store::open(&config.root.join("berth.redb"))?;
        let content = crate::image::ContentStore::open(&config.root)?;
        // Opening a trash queues what a previous daemon left in it.
        let root_trash = berth_runtime::trash::Trash::open(config.root.join(".trash"))?;
        let run_trash = berth_runtime::trash::Trash::open(config.run.join(".trash"))?;
        let engine = Engine {
            config,
            store,
            content,
            storage,
            drivers,
            claims: Default::default(),
            gc_lock: Default::default(),
            mount_lock: Default::default(),
            containers: Default::default(),
            networks: Default::default(),
            volumes: Default::default(),
            me: OnceLock::new(),
            root_trash,
            run_trash,
        };
        engine.recover()?;
        let engine = Arc::new(engine);
        // Set once, here, before any thread can look for it.
        let _ = engine.me.set(Arc::downgrade(&engine));
        engine.init_networks()?;
        engine.readopt_containers()?;
        engine.readopt_volumes()?;
        Ok(engine)
    }

    /// The engine's configuration.
    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    /// The storage driver in use.
    pub fn storage(&self) -> &Arc<dyn StorageDriver> {
        &self.storage
    }

    /// The volume and network driver registries.
    pub fn drivers(&self) -> &Drivers {
        &self.drivers
    }

    /// `docker load`: a docker-archive or OCI-layout tar (detected), possibly
    /// compressed. Returns the messages Docker prints
    /// (`Loaded image: name:tag` / `Loaded image ID: sha256:...`).
    pub fn load_images(&self, input: &mut dyn Read, progress: &mut dyn FnMut(Progress)) -> EngineResult<Vec<String>> {
        self.load_images_impl(input, progress)
    }

    /// `docker save`: the named images (references or IDs) as one archive.
    pub fn save_images(&self, names: &[String], format: ArchiveFormat, out: &mut dyn Write) -> EngineResult<()> {
        self.save_images_impl(names, format, out)
    }

    /// `docker import`: a root filesystem tar (possibly compressed) as a one-layer image.
    pub fn import_image(
        &self,
        input: &mut dyn Read,
        options: &ImportOptions,
        progress: &mut dyn FnMut(Progress),
    ) -> EngineResult<ImageDetails> {
        self.import_image_impl(input, options, progress)
    }

    /// `docker tag SOURCE TARGET`.
    pub fn tag_image(&self, source: &str, target: &berth_model::ImageRef) -> EngineResult<()> {
        self.tag_image_impl(source, target)
    }

    /// Finds an image by reference, full or short ID (`sha256:` optional), or ID prefix.
    pub fn find_image(&self, name: &str) -> EngineResult<ImageDetails> {
        self.find_image_impl(name)
    }

    /// All images, newest first.
    pub fn list_images(&self) -> EngineResult<Vec<ImageDetails>> {
        self.list_images_impl()
    }

    /// `docker history`: the config's history, newest first, with layer sizes
    /// and the image ID on the entry that made the top layer.
    pub fn image_history(&self, name: &str) -> EngineResult<Vec<HistoryEntry>> {
        self.image_history_impl(name)
    }

    /// `docker rmi`: untag or delete, as Docker decides it (see `ImageDeleteItem`).
    pub fn remove_image(&self, name: &str, force: bool, no_prune: bool) -> EngineResult<Vec<ImageDeleteItem>> {
        self.remove_image_impl(name, force, no_prune)
    }

    /// `docker image prune`: dangling images, or with `all` every unused one.
    /// Returns what was deleted and the bytes reclaimed.
    pub fn prune_images(&self, all: bool) -> EngineResult<(Vec<ImageDeleteItem>, u64)> {
        self.prune_images_impl(all)
    }

    /// `docker system df` for images.
    pub fn image_disk_usage(&self) -> EngineResult<ImageDiskUsage> {
        self.image_disk_usage_impl()
    }

    /// `podman image mount`: mounts the image's root filesystem read-only and
    /// returns where; mounting an already mounted image returns the same path.
    pub fn mount_image(&self, name: &str) -> EngineResult<PathBuf> {
        self.mount_image_impl(name)
    }

    /// Undoes `mount_image`.
    pub fn unmount_image(&self, name: &str) -> EngineResult<()> {
        self.unmount_image_impl(name)
    }
}

/// One entry of `docker history`.
#[derive(Clone, Debug)]
pub struct HistoryEntry {
    /// Image ID for the top entry, `None` (printed `<missing>`) below it.
    pub id: Option<Digest>,
    /// RFC 3339.
    pub created: Option<String>,
    pub created_by: String,
    pub size: u64,
    pub comment: String,
    pub tags: Vec<String>,
    pub empty_layer: bool,
}
