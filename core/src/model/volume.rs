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
