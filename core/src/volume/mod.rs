//! Volumes: the volumes service (create, list, inspect, remove, prune),
//! resolving a container's `-v`/`--mount`/`--tmpfs`/`--volumes-from`
//! and image `VOLUME`s into mount points, and mounting them through the
//! volume drivers' plans (with Docker's copy-up into empty volumes).

mod copyup;
mod ops;
pub mod parse;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use berth_model::drivers::StorageDriver;
use berth_model::volume::VolumeRecord;

use crate::catalog::ContainerCatalog;
use crate::drivers::Drivers;
use crate::store::Store;

pub use ops::{validate_name, ANONYMOUS_LABEL, DEFAULT_DRIVER};

/// The volumes service: volume records (the store's `volumes` table, which
/// only it writes), the volume drivers' calls, and which containers have
/// each volume mounted now. The containers service calls it at create,
/// start, stop and removal.
pub struct VolumeService {
    store: Arc<Store>,
    /// Who uses a volume, and `--volumes-from`.
    containers: ContainerCatalog,
    drivers: Arc<Drivers>,
    /// For Docker's copy-up: the container's files seen through its layers.
    storage: Arc<dyn StorageDriver>,
    /// `--run`: where the host mounts the volumes whose plan needs a mount.
    run: PathBuf,
    state: ops::VolumeState,
}

impl VolumeService {
    pub(crate) fn new(
        store: Arc<Store>,
        containers: ContainerCatalog,
        drivers: Arc<Drivers>,
        storage: Arc<dyn StorageDriver>,
        run: PathBuf,
    ) -> Self {
        VolumeService { store, containers, drivers, storage, run, state: Default::default() }
    }
}

/// `POST /volumes/create`.
#[derive(Clone, Debug, Default)]
pub struct VolumeCreate {
    /// Empty: a random 64-hex name (an anonymous volume).
    pub name: String,
    /// Empty: `local`.
    pub driver: String,
    pub driver_opts: BTreeMap<String, String>,
    pub labels: BTreeMap<String, String>,
}

/// A volume with what inspect and `system df -v` add to the stored record.
#[derive(Clone, Debug)]
pub struct VolumeDetails {
    pub record: VolumeRecord,
    /// The driver's `Path` (for `local`: `<root>/volumes/<name>/_data`).
    pub mountpoint: String,
    /// The driver's status map (`Status`), when it has one.
    pub status: BTreeMap<String, String>,
    /// Containers (any state) that use the volume, by ID.
    pub used_by: Vec<String>,
    /// Bytes of content (`UsageData.Size`), when asked for; -1 when unknown.
    pub size: Option<i64>,
}

/// `volume ls`'s answer: the volumes and Docker's `Warnings`.
#[derive(Clone, Debug, Default)]
pub struct VolumeListing {
    pub volumes: Vec<VolumeDetails>,
    /// One line per volume driver that failed or did not answer in time.
    pub warnings: Vec<String>,
}

