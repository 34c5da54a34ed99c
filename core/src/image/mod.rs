//! Images: the content store (sha256 blobs), image formats (docker-archive,
//! OCI layout), import, load, save and pull.
//!
//! Nothing here makes an image visible before all of it is on disk: blobs are
//! verified before they are kept, layers are unpacked before the one store
//! transaction that registers the image, and a failure removes what it made.

mod archive;
mod compress;
mod compressed;
mod config;
mod content;
mod ingest;
mod live;
mod login;
mod ops;
mod parallel_gzip;
mod push;
mod pull;
mod remote;
mod save;
mod unpack;

#[cfg(test)]
pub(crate) mod tests;

use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};

use berth_model::{Digest, ImageRecord};
use berth_model::drivers::StorageDriver;

use crate::catalog::ContainerCatalog;
use crate::error::EngineResult;
use crate::registry::{RegistryClient, RegistryConfig};
use crate::store::Store;
use ops::LayerClaims;

pub use compress::{detect_compression, Compression};
pub use config::apply_changes;
pub use content::{BlobPin, BlobWriter, ContentStore, Resumed, VerifyingReader};
pub use pull::{LayerStep, PullOutcome, PullProgress};
pub use remote::{DistributionInfo, SearchFilter};
pub use push::{PushProgress, PushStep};
pub use crate::error::ImageError;

/// The images service: the content store, the image index (the store's
/// `images`, `tags` and `layers` tables, which only it writes) and the
/// layers it unpacks through the storage driver. The containers service
/// uses it to resolve images and create containers on their layers.
pub struct ImageService {
    store: Arc<Store>,
    content: ContentStore,
    storage: Arc<dyn StorageDriver>,
    /// Which images are in use (`rmi` refuses, `prune` skips them); which
    /// storage layers are containers' at recovery.
    containers: ContainerCatalog,
    /// `--run`: where `image mount` mounts.
    run: PathBuf,
    /// Layers being created or removed (see `LayerClaims`).
    claims: LayerClaims,
    /// Orders image registration against blob garbage collection, so a blob
    /// is either pinned by a load in flight or referenced when GC looks.
    gc_lock: Mutex<()>,
    /// Serialises image mounts so one image is never mounted twice.
    mount_lock: Mutex<()>,
    /// How registries are reached (the daemon's settings).
    registry_config: RegistryConfig,
    /// The distribution client, made by the first pull.
    registry: OnceLock<RegistryClient>,
}

impl ImageService {
    /// Opens the content store under `root` and recovers from what an
    /// interrupted daemon left (see `recover`).
    pub(crate) fn open(
        root: &std::path::Path,
        run: PathBuf,
        store: Arc<Store>,
        storage: Arc<dyn StorageDriver>,
        containers: ContainerCatalog,
        registry_config: RegistryConfig,
    ) -> EngineResult<Self> {
        let content = ContentStore::open(root)?;
        let images = ImageService {
            store,
            content,
            storage,
            containers,
            run,
            claims: Default::default(),
            gc_lock: Default::default(),
            mount_lock: Default::default(),
            registry_config,
            registry: OnceLock::new(),
        };
        images.recover()?;
        Ok(images)
    }

    /// The content store (blobs by digest).
    pub fn content(&self) -> &ContentStore {
        &self.content
    }
}

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
    /// What Docker's config has beyond OCI's.
    pub docker: DockerOnlyConfig,
}

/// Members of Docker's image config that OCI's has not and oci-spec drops
/// (`container`, `container_config`, `docker_version`): clients of API
/// versions before 1.45 still read them (docker-compose 1.29 reads
/// `ContainerConfig` whenever it recreates a container).
#[derive(Clone, Debug, Default, serde::Deserialize)]
pub struct DockerOnlyConfig {
    #[serde(default)]
    pub container: String,
    #[serde(default)]
    pub container_config: Option<serde_json::Value>,
    #[serde(default)]
    pub docker_version: String,
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
