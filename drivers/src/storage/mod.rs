//! Storage drivers: `overlay` (default) and `vfs` (full copies).
//!
//! Both share the safe layer-tar apply (`apply`), the diff export
//! (`export`) and the descriptor-relative file calls (`sys`). Drivers never
//! mount anything themselves; they return `MountPlan`s for the core's executor
//! (the overlay probe goes through that executor too).

pub mod apply;
mod copy;
pub mod export;
pub mod overlay;
mod sys;
pub mod vfs;

use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::Arc;

use berth_model::drivers::{DriverError, DriverResult, StorageDriver};

pub use overlay::OverlayDriver;
pub use vfs::VfsDriver;

/// Names of the in-tree storage drivers (`overlay2` is Docker's name for overlay).
pub const DRIVER_NAMES: &[&str] = &["overlay", "overlay2", "vfs"];

/// Picks the storage driver for the data root `root`: the one `requested`
/// names, or overlay when it can really mount here, else vfs (with a warning
/// saying why). A root that already holds only vfs layers stays on vfs.
pub fn select(root: &Path, requested: Option<&str>) -> DriverResult<Arc<dyn StorageDriver>> {
    match requested {
        Some("overlay") | Some("overlay2") => Ok(Arc::new(OverlayDriver::new(root)?)),
        Some("vfs") => Ok(Arc::new(VfsDriver::new(root)?)),
        Some(other) => Err(DriverError::InvalidArgument(format!(
            "unknown storage driver {other:?}; available: {}",
            DRIVER_NAMES.join(", ")
        ))),
        None => {
            if has_layers(&root.join("vfs").join("dir")) && !has_layers(&root.join("overlay")) {
                tracing::info!(root = %root.display(), "using the vfs storage driver: this root already holds vfs layers");
                return Ok(Arc::new(VfsDriver::new(root)?));
            }
            match OverlayDriver::new(root) {
                Ok(d) => Ok(Arc::new(d)),
                Err(e) => {
                    tracing::warn!(
                        root = %root.display(),
                        "overlay storage driver unavailable ({e}); falling back to vfs, which copies every layer in full"
                    );
                    Ok(Arc::new(VfsDriver::new(root)?))
                }
            }
        }
    }
}

/// Whether `dir` has any layer directory (names starting with `.` and the
/// overlay `l` link dir are bookkeeping).
fn has_layers(dir: &Path) -> bool {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries.flatten().any(|e| {
                let name = e.file_name();
                let b = name.as_bytes();
                !b.starts_with(b".") && b != b"l"
            })
        })
        .unwrap_or(false)
}

/// Checks that a layer ID can be used as a directory name.
pub(crate) fn check_id(id: &str) -> DriverResult<()> {
    let ok = !id.is_empty()
        && id.len() <= 200
        && !id.starts_with('.')
        && id != "l"
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(DriverError::InvalidArgument(format!(
            "invalid layer id {id:?}: use 1-200 letters, digits, '-', '_' or '.', not starting with '.'"
        )))
    }
}

/// Maps an I/O error to NotFound when the layer is missing, else to an I/O
/// error with `context`.
pub(crate) fn layer_io(id: &str, context: String, e: io::Error) -> DriverError {
    if e.kind() == io::ErrorKind::NotFound {
        DriverError::NotFound(format!("layer {id} not found: {context}: {e}"))
    } else {
        DriverError::io(context, e)
    }
}
