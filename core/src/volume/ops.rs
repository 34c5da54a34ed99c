//! The engine's volume operations and the container hooks.

use crate::container::Filters;
use crate::engine::{Engine, EngineResult};
use crate::model::container::ContainerRecord;
use crate::model::volume::MountPoint;

use super::{VolumeCreate, VolumeDetails};

/// Live volume state: per-volume mount counts (which containers have it
/// mounted now) and the lock that orders create/remove/mount.
#[derive(Default)]
pub struct VolumeState {}

impl Engine {
    pub(crate) fn create_volume_impl(&self, _request: VolumeCreate) -> EngineResult<VolumeDetails> {
        todo!("volume issue")
    }

    pub(crate) fn find_volume_impl(&self, _name: &str, _size: bool) -> EngineResult<VolumeDetails> {
        todo!("volume issue")
    }

    pub(crate) fn list_volumes_impl(&self, _filters: &Filters, _size: bool) -> EngineResult<Vec<VolumeDetails>> {
        todo!("volume issue")
    }

    pub(crate) fn remove_volume_impl(&self, _name: &str, _force: bool) -> EngineResult<()> {
        todo!("volume issue")
    }

    pub(crate) fn prune_volumes_impl(&self, _filters: &Filters, _all: bool) -> EngineResult<(Vec<String>, u64)> {
        todo!("volume issue")
    }

    /// At create: `HostConfig.Binds`, `Mounts`, `Tmpfs`, `VolumesFrom` and
    /// the image's `VOLUME`s become `record.mounts` (later entries for the
    /// same destination win, as in Docker); named and anonymous volumes are
    /// created, missing `-v` host dirs are made, a missing `--mount` bind
    /// source is an error. On error nothing it created is left.
    pub(crate) fn plan_container_mounts(&self, _record: &mut ContainerRecord, _image_volumes: &[String]) -> EngineResult<()> {
        Ok(())
    }

    /// At start: mounts every volume through its driver's plan (copy-up into
    /// an empty volume from the image's directory unless `nocopy`) and
    /// returns the mount points with host sources the runtime bind-mounts.
    /// All or nothing.
    pub(crate) fn mount_container_volumes(&self, _record: &ContainerRecord) -> EngineResult<Vec<MountPoint>> {
        Ok(Vec::new())
    }

    /// After the container's process is gone: tells each driver the
    /// container no longer uses its volume; the host unmounts what the last
    /// user released. Idempotent.
    pub(crate) fn unmount_container_volumes(&self, _record: &ContainerRecord) {}

    /// At removal: anonymous volumes go with `-v`/`--rm`; named ones stay.
    pub(crate) fn release_container_volumes(&self, _record: &ContainerRecord, _remove_anonymous: bool) -> EngineResult<()> {
        Ok(())
    }
}
