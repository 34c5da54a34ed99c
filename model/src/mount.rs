//! Mount plans: what a storage or volume driver asks the host to mount.
//!
//! Drivers decide, the host executes (ARCHITECTURE §2): a driver never calls
//! mount(2) itself; it returns a `MountPlan` and the engine's executor
//! (`runtime::mount`) checks it and applies it.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// One filesystem to mount. Paths are absolute host paths.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum MountSpec {
    /// An overlay filesystem: read-only lower dirs (top-most first), and an
    /// upper/work pair when the mount is writable. Without `upper` the mount is
    /// read-only.
    Overlay { lower: Vec<PathBuf>, upper: Option<PathBuf>, work: Option<PathBuf> },
    /// A bind mount of a directory (or file) the driver owns.
    Bind { source: PathBuf, readonly: bool },
    /// A tmpfs with mount(2) data options such as `size=64m,mode=1777`.
    Tmpfs { options: String },
    /// Any other mount(2) call: filesystem type, device and data options.
    Filesystem { fstype: String, device: String, options: String },
}

/// What a driver returns for a mount request: the mount to perform.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct MountPlan {
    pub spec: MountSpec,
}
