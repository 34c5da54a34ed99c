//! The size limit of a plugin's data dir (`permissions.data_mib`): the dir
//! is the mount point of an ext4 filesystem of that size, kept in a sparse
//! image file beside it (`data.img`) and mounted through a loop device.
//!
//! Why a filesystem of its own: a plugin's data dir is written by the plugin
//! and, through the volumes it bind-mounts into containers, by every
//! container using them. Only the kernel sees all of those writes; a
//! filesystem of the granted size makes the limit hold for all of them
//! (`ENOSPC`), which checks at call time could not. Project quotas would do
//! it without an image, but only where the host filesystem has them enabled.
//!
//! The image is made with `mkfs.ext4` and mounted with `mount -o loop`
//! (util-linux sets up and auto-clears the loop device); there is no
//! maintained crate for making ext4, and util-linux's loop handling (free
//! device search, retries, autoclear) is what every distribution ships.
//!
//! The mount lives in the daemon's mount namespace and outlives the daemon
//! (as Docker's plugin mounts do); `ensure` leaves a dir that is already
//! mounted alone, so a restart or a second enable reuses it.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;

use crate::PluginError;

/// File name of the image, beside `data/` in the plugin dir.
pub(crate) const IMAGE_FILE: &str = "data.img";

/// Whether the manager enforces `data_mib` (the daemon does; tests of the
/// manager outside a mount-namespace sandbox must not mount anything).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DataLimit {
    /// Mount a filesystem of the granted size on the data dir.
    Enforce,
    /// Leave the data dir a plain directory.
    Ignore,
}

/// Makes `image` a fresh ext4 filesystem of `mib` MiB (sparse: it takes disk
/// space only as the plugin writes). Called at install, in the staging dir.
pub(crate) fn create_image(image: &Path, mib: u64) -> Result<(), PluginError> {
    let file = fs::File::create(image).map_err(|e| PluginError::io(format!("cannot create {}", image.display()), e))?;
    file.set_len(mib.saturating_mul(1 << 20)).map_err(|e| PluginError::io(format!("cannot size {} to {mib} MiB", image.display()), e))?;
    drop(file);
    // -m 0: no blocks reserved for root (the daemon is root; the grant is the plugin's);
    // root_owner: the mounted dir belongs to root like the plain data dir would.
    let args = ["-q", "-F", "-m", "0", "-E", "root_owner=0:0,lazy_itable_init=1,nodiscard"];
    run(Command::new("mkfs.ext4").args(args).arg(image), "mkfs.ext4 (from e2fsprogs)", "make the data dir's filesystem")
}

/// Mounts `image` on `data` unless something is mounted there already.
pub(crate) fn ensure_mounted(image: &Path, data: &Path) -> Result<(), PluginError> {
    if is_mount_point(data)? {
        return Ok(());
    }
    let mut cmd = Command::new("mount");
    // No nosuid/noexec: volumes bind-mounted from here carry these flags into containers, and a local volume has none.
    cmd.args(["-t", "ext4", "-o", "loop"]).arg(image).arg(data);
    run(&mut cmd, "mount (from util-linux)", "mount the data dir's filesystem")
}

/// Detaches the filesystem from `data` if one is mounted there: lazily, so a
/// container still using a volume of the plugin keeps it until it stops.
pub(crate) fn unmount(data: &Path) -> Result<(), PluginError> {
    if !is_mount_point(data)? {
        return Ok(());
    }
    nix::mount::umount2(data, nix::mount::MntFlags::MNT_DETACH)
        .map_err(|e| PluginError::Internal(format!("cannot unmount the data dir {}: {e}", data.display())))
}

/// Whether `dir` is the root of a mount (another device than its parent's).
fn is_mount_point(dir: &Path) -> Result<bool, PluginError> {
    let parent = dir.parent().unwrap_or(dir);
    let stat = |p: &Path| fs::metadata(p).map_err(|e| PluginError::io(format!("cannot stat {}", p.display()), e));
    Ok(stat(dir)?.dev() != stat(parent)?.dev())
}

fn run(cmd: &mut Command, tool: &str, what: &str) -> Result<(), PluginError> {
    let out = cmd
        .output()
        .map_err(|e| PluginError::Internal(format!("cannot {what}: cannot run {tool}: {e}")))?;
    if out.status.success() {
        return Ok(());
    }
    let said = String::from_utf8_lossy(&out.stderr);
    Err(PluginError::Internal(format!("cannot {what}: {tool} failed ({}): {}", out.status, said.trim())))
}
