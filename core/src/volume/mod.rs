//! Volumes: the engine's volume operations (create, list, inspect, remove,
//! prune), resolving a container's `-v`/`--mount`/`--tmpfs`/`--volumes-from`
//! and image `VOLUME`s into mount points, and mounting them through the
//! volume drivers' plans (with Docker's copy-up into empty volumes).

mod copyup;
mod ops;
pub mod parse;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;

use crate::container::Filters;
use crate::engine::{Engine, EngineResult};
use berth_model::volume::VolumeRecord;

pub use ops::{validate_name, VolumeState, ANONYMOUS_LABEL, DEFAULT_DRIVER};

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

impl Engine {
    /// `docker volume create`: validates the name (`[a-zA-Z0-9][a-zA-Z0-9_.-]+`)
    /// and the driver; creating an existing volume with the same driver
    /// returns it (Docker's behaviour).
    pub fn create_volume(&self, request: VolumeCreate) -> EngineResult<VolumeDetails> {
        self.create_volume_impl(request)
    }

    /// Finds a volume by name.
    pub fn find_volume(&self, name: &str) -> EngineResult<VolumeDetails> {
        self.find_volume_impl(name, false)
    }

    /// `docker volume ls` with Docker's filters (`dangling`, `driver`,
    /// `label`, `name`); `size` fills `VolumeDetails::size` (`system df -v`).
    /// Drivers that fail or do not answer in time are left out with a warning.
    pub fn list_volumes(&self, filters: &Filters, size: bool) -> EngineResult<VolumeListing> {
        self.list_volumes_impl(filters, size)
    }

    /// Names of the volumes made with driver `driver` (a plugin that
    /// `plugin disable` must not pull out from under them).
    pub fn volumes_of_driver(&self, driver: &str) -> EngineResult<Vec<String>> {
        self.volumes_of_driver_impl(driver)
    }

    /// `docker volume rm [-f]`: refuses a volume in use, naming the containers;
    /// `force` only ignores a missing volume (as Docker's `-f`).
    pub fn remove_volume(&self, name: &str, force: bool) -> EngineResult<()> {
        self.remove_volume_impl(name, force)
    }

    /// `docker volume prune` (Docker 28): unused anonymous volumes, or every
    /// unused volume with `all` (`-a`; also the filter `all=true`). Returns
    /// the removed names and the bytes reclaimed.
    pub fn prune_volumes(&self, filters: &Filters, all: bool) -> EngineResult<(Vec<String>, u64)> {
        self.prune_volumes_impl(filters, all)
    }
}
