//! Volume driver request and answer types (Docker's VolumeDriver protocol).

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// `VolumeDriver.Create`: a new volume with the driver's options (`--opt`).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct VolumeCreateRequest {
    pub name: String,
    pub options: BTreeMap<String, String>,
}

/// `VolumeDriver.Get`/`List` answer for one volume.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct VolumeInfo {
    pub name: String,
    /// Where the volume's data is on the host while mounted, if the driver says.
    pub mountpoint: Option<PathBuf>,
    /// RFC 3339 creation time, if the driver knows it.
    pub created_at: Option<String>,
    /// Driver-specific status shown by `volume inspect` (`Status`).
    pub status: BTreeMap<String, String>,
}

/// Whether a driver's volumes are visible on this host only or cluster-wide.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    #[default]
    Local,
    Global,
}

/// A volume as the metadata store keeps it (Docker's `Volume` object without
/// the live `Mountpoint`/`Status`/`UsageData`, which the driver and inspect add).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase", default)]
pub struct VolumeRecord {
    pub name: String,
    pub driver: String,
    /// RFC 3339.
    pub created_at: String,
    pub labels: BTreeMap<String, String>,
    /// Driver options (`--opt`).
    pub options: BTreeMap<String, String>,
    /// Made for `-v /path` or an image `VOLUME` (Docker labels these
    /// `com.docker.volume.anonymous`); removed by `rm -v` and `--rm`.
    pub anonymous: bool,
}

/// One entry of a container's `Mounts` (Docker's `MountPoint`), resolved at
/// create time from `-v`, `--mount`, `--tmpfs`, `--volumes-from` and the
/// image's `VOLUME`s.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase", default)]
pub struct MountPoint {
    /// `volume`, `bind` or `tmpfs`.
    #[serde(rename = "Type")]
    pub kind: String,
    /// Volume name (volumes only).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// Host path: the bind source, or the volume's mountpoint once known.
    pub source: String,
    pub destination: String,
    /// Volume driver (volumes only).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub driver: String,
    /// What the user wrote after the paths (`ro`, `z`, ...), as Docker shows it.
    pub mode: String,
    #[serde(rename = "RW")]
    pub rw: bool,
    /// Bind propagation (`rprivate` by default for binds, empty otherwise).
    pub propagation: String,
    /// `volume-nocopy`: skip copying the image's files into an empty volume.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub no_copy: bool,
    /// mount(2) data options of a tmpfs (`size=...,mode=...`); inspect does not show them.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub tmpfs_options: String,
}
