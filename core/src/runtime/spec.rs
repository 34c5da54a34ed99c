//! Builds the OCI runtime spec (`config.json`) of a container from Docker's
//! config, host config and the image's config, with Docker's defaults
//! (capabilities, masked and read-only paths, mounts, rlimits).

use std::path::PathBuf;

use oci_spec::runtime::Spec;

use crate::model::container::ContainerRecord;

use super::RuntimeError;

/// Which network namespace a container gets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NetnsMode {
    /// A new, empty namespace (`--network none`, and bridge networks later).
    New,
    /// The host's (`--network host`).
    Host,
    /// Join the namespace at this path (`container:<x>` or a prepared one).
    Join(PathBuf),
}

/// Everything `build` needs, gathered by the engine.
pub struct SpecInputs<'a> {
    pub record: &'a ContainerRecord,
    /// The image's config (defaults for env, cmd, user, workdir, stop signal).
    pub image_config: &'a oci_spec::image::ImageConfiguration,
    /// Where the shim mounts the container's root filesystem.
    pub rootfs: PathBuf,
    /// The container's directory holding `hostname`, `hosts`, `resolv.conf`.
    pub container_dir: PathBuf,
    pub netns: NetnsMode,
    /// cgroup parent path (`--cgroup-parent`, default `berth`).
    pub cgroup_parent: String,
}

/// The OCI spec for a container.
pub fn build(inputs: &SpecInputs<'_>) -> Result<Spec, RuntimeError> {
    let _ = inputs;
    todo!("RUNTIME helper")
}
