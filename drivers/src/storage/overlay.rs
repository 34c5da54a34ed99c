//! The `overlay` storage driver (Docker's overlay2 layout).
//!
//! `<root>/overlay/<id>/` holds `diff/` (the layer's files), `work/`
//! (overlay's scratch dir), `link` (the layer's short name) and `lower`
//! (its parents' short links, top first, as `l/NAME:l/NAME`).
//! `<root>/overlay/l/<short> -> ../<id>/diff` keeps each lower dir's path
//! short, so 120 layers still fit the mount options.
//! `<root>/overlay/.trash/` holds removed layers until the background reaper
//! (`berth_runtime::trash`) has deleted them; `list` never reports it.

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use berth_model::drivers::{Change, DriverError, DriverResult, StorageDriver};
use berth_model::{MountPlan, MountSpec};
use berth_runtime::mount;
use berth_runtime::trash::Trash;

use super::apply::{apply_layer, Whiteouts};
use super::{check_id, export, layer_io, sys};

/// Length of a short link name, as Docker's overlay2.
const SHORT_LEN: usize = 26;
/// The kernel's limit on overlay lower layers.
const MAX_LOWERS: usize = 500;

/// The overlay storage driver.
pub struct OverlayDriver {
    home: PathBuf,
    backing: String,
    /// Removed layers go here, out of sight at once, and are deleted in the
    /// background: deleting a tree can take milliseconds per file.
    trash: Trash,
}

fn io_ctx(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> DriverError {
    let context = context.into();
    move |e| DriverError::io(context, e)
}

/// A new random short link name of 26 characters in [A-Z0-9].
fn short_name() -> std::io::Result<String> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    let bytes = sys::random_bytes(SHORT_LEN)?;
    Ok(bytes.iter().map(|b| ALPHABET[*b as usize % ALPHABET.len()] as char).collect())
}

fn backing_fs_name(magic: i64) -> &'static str {
    match magic {
        0xEF53 => "extfs",
        0x5846_5342 => "xfs",
        0x9123_683E => "btrfs",
        0x0102_1994 => "tmpfs",
        0x2FC1_2FC1 => "zfs",
        0x794C_7630 => "overlayfs",
        _ => "unknown",
    }
}

impl OverlayDriver {
    /// Opens (creating if needed) the driver's home under `root` and checks
    /// that overlay really mounts there, with whiteouts, by mounting a tiny one.
    pub fn new(root: &Path) -> DriverResult<Self> {
        let home = root.join("overlay");
        std::fs::create_dir_all(home.join("l")).map_err(io_ctx(format!("creating {}", home.join("l").display())))?;
        let backing = backing_fs_name(sys::fs_magic(&home).map_err(io_ctx(format!("statfs {}", home.display())))?);
        // Opening the trash also queues what a previous daemon left in it.
        let trash = Trash::open(home.join(".trash"))?;
        let driver = OverlayDriver { home, backing: backing.to_string(), trash };
        driver.remove_stale()?;
        driver.probe()?;
        Ok(driver)
    }

    /// Removes what a crash can leave: half-made layers (`.tmp-*`), probe
    /// dirs, and short links whose layer is gone.
    fn remove_stale(&self) -> DriverResult<()> {
        let listing = |dir: &Path| std::fs::read_dir(dir).map_err(io_ctx(format!("listing {}", dir.display())));
        for entry in listing(&self.home)?.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with(".tmp-") || name.starts_with(".probe-") {
                sys::remove_all(&entry.path()).map_err(io_ctx(format!("removing {}", entry.path().display())))?;
            }
        }
        let links = self.home.join("l");
        for entry in listing(&links)?.flatten() {
            let path = entry.path();
            if std::fs::symlink_metadata(&path).is_ok_and(|m| m.file_type().is_symlink()) && !path.exists() {
                std::fs::remove_file(&path).map_err(io_ctx(format!("removing dangling link {}", path.display())))?;
            }
        }
        Ok(())
    }

    fn probe(&self) -> DriverResult<()> {
        let suffix = short_name().map_err(io_ctx("reading random bytes"))?;
        let dir = self.home.join(format!(".probe-{suffix}"));
        let result = self.probe_in(&dir);
        // Deleted in the background: the daemon's start need not wait for it
        // (and the reaper never deletes through a merged dir a failed probe
        // left mounted).
        if let Err(e) = self.trash.put(&dir) {
            tracing::warn!(dir = %dir.display(), "removing overlay probe dir: {e}");
        }
        result
    }

    fn probe_in(&self, dir: &Path) -> DriverResult<()> {
        let unsupported = |what: String| DriverError::Unsupported(format!("overlay cannot be used on {}: {what}", self.home.display()));
        for sub in ["lower1", "lower2", "upper", "work", "merged"] {
            std::fs::create_dir_all(dir.join(sub)).map_err(io_ctx(format!("creating {}", dir.join(sub).display())))?;
        }
        std::fs::write(dir.join("lower2/hidden"), b"x").map_err(io_ctx("writing overlay probe file"))?;
        let lower1 = sys::open_dir_path(&dir.join("lower1")).map_err(io_ctx("opening overlay probe dir"))?;
        sys::mknodat(lower1.as_raw_fd(), b"hidden", libc::S_IFCHR, 0)
            .map_err(|e| unsupported(format!("cannot create whiteout devices: {e}")))?;
        let spec = MountSpec::Overlay {
            lower: vec![dir.join("lower1"), dir.join("lower2")],
            upper: Some(dir.join("upper")),
            work: Some(dir.join("work")),
        };
        let merged = dir.join("merged");
        mount::mount(&spec, &merged).map_err(|e| unsupported(e.to_string()))?;
        let whiteout_works = !merged.join("hidden").exists();
        let written = std::fs::write(merged.join("probe"), b"ok");
        mount::unmount(&merged).map_err(|e| unsupported(e.to_string()))?;
        if !whiteout_works {
            return Err(unsupported("whiteouts are not honoured".into()));
        }
        written.map_err(|e| unsupported(format!("writing through the mount: {e}")))?;
        Ok(())
    }

    fn layer(&self, id: &str) -> PathBuf {
        self.home.join(id)
    }

    fn require(&self, id: &str) -> DriverResult<PathBuf> {
        check_id(id)?;
        let dir = self.layer(id);
        if !dir.join("diff").is_dir() {
            return Err(DriverError::NotFound(format!("overlay layer {id} not found")));
        }
        Ok(dir)
    }

    fn read_meta(&self, id: &str, file: &str) -> DriverResult<String> {
        let path = self.layer(id).join(file);
        std::fs::read_to_string(&path)
            .map(|s| s.trim().to_string())
            .map_err(|e| layer_io(id, format!("reading {}", path.display()), e))
    }

    /// The parents' lower entries (`l/NAME`), top first.
    fn lower_entries(&self, id: &str) -> DriverResult<Vec<String>> {
        let path = self.layer(id).join("lower");
        match std::fs::read_to_string(&path) {
            Ok(s) => Ok(s.trim().split(':').filter(|x| !x.is_empty()).map(str::to_string).collect()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(DriverError::io(format!("reading {}", path.display()), e)),
        }
    }

    fn lower_dirs(&self, id: &str) -> DriverResult<Vec<PathBuf>> {
        let entries = self.lower_entries(id)?;
        let mut dirs = Vec::with_capacity(entries.len());
        for entry in entries {
            if !entry.starts_with("l/") || entry[2..].contains('/') || entry.contains("..") {
                return Err(DriverError::Io {
                    context: format!("overlay layer {id}: bad lower entry {entry:?}"),
                    source: std::io::Error::from_raw_os_error(libc::EINVAL),
                });
            }
            dirs.push(self.home.join(entry));
        }
        Ok(dirs)
    }

    fn open_diff(&self, id: &str) -> DriverResult<OwnedFd> {
        let dir = self.require(id)?.join("diff");
        sys::open_dir_path(&dir).map_err(|e| layer_io(id, format!("opening {}", dir.display()), e))
    }
}

impl StorageDriver for OverlayDriver {
    fn name(&self) -> &str {
        "overlay"
    }

    fn status(&self) -> Vec<(String, String)> {
        vec![
            ("Backing Filesystem".into(), self.backing.clone()),
            ("Supports d_type".into(), "true".into()),
            ("Using metacopy".into(), "false".into()),
            ("Native Overlay Diff".into(), "true".into()),
            ("userxattr".into(), "false".into()),
        ]
    }

    fn create(&self, id: &str, parent: Option<&str>) -> DriverResult<()> {
        check_id(id)?;
        let dir = self.layer(id);
        if dir.exists() {
            return Err(DriverError::Conflict(format!("overlay layer {id} already exists")));
        }
        let lower = match parent {
            None => String::new(),
            Some(p) => {
                self.require(p)?;
                let mut entries = vec![format!("l/{}", self.read_meta(p, "link")?)];
                entries.extend(self.lower_entries(p)?);
                if entries.len() >= MAX_LOWERS {
                    return Err(DriverError::InvalidArgument(format!(
                        "layer {id} would have {} parents; overlay allows at most {}",
                        entries.len(),
                        MAX_LOWERS - 1
                    )));
                }
                entries.join(":")
            }
        };
        let short = short_name().map_err(io_ctx("reading random bytes"))?;
        let tmp = self.home.join(format!(".tmp-{id}"));
        sys::remove_all(&tmp).map_err(io_ctx(format!("removing stale {}", tmp.display())))?;
        let build = || -> std::io::Result<()> {
            std::fs::create_dir(&tmp)?;
            std::fs::create_dir(tmp.join("diff"))?;
            // The diff dir is the container's `/` when nothing sets its mode:
            // 0755 whatever the daemon's umask.
            std::fs::set_permissions(tmp.join("diff"), std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
            std::fs::create_dir(tmp.join("work"))?;
            std::fs::write(tmp.join("link"), &short)?;
            if !lower.is_empty() {
                std::fs::write(tmp.join("lower"), &lower)?;
            }
            // The link first (dangling until the rename), so a crash never
            // leaves a layer without its short name.
            std::os::unix::fs::symlink(format!("../{id}/diff"), self.home.join("l").join(&short))?;
            std::fs::rename(&tmp, &dir)
        };
        if let Err(e) = build() {
            let _ = std::fs::remove_file(self.home.join("l").join(&short));
            let _ = sys::remove_all(&tmp);
            return Err(DriverError::io(format!("creating overlay layer {id}"), e));
        }
        Ok(())
    }

    fn apply_diff(&self, id: &str, diff: &mut dyn Read) -> DriverResult<u64> {
        let dir = self.require(id)?.join("diff");
        let bytes = apply_layer(&dir, diff, Whiteouts::Overlay)?;
        let fd = sys::open_dir_path(&dir).map_err(io_ctx(format!("opening {}", dir.display())))?;
        sys::syncfs(fd.as_raw_fd()).map_err(io_ctx(format!("syncing {}", dir.display())))?;
        Ok(bytes)
    }

    fn mount_plan(&self, id: &str, writable: bool) -> DriverResult<MountPlan> {
        let dir = self.require(id)?;
        let mut lower = self.lower_dirs(id)?;
        let spec = if writable {
            if lower.is_empty() {
                // Overlay needs a lower dir; a layer on nothing is just its diff.
                MountSpec::Bind { source: dir.join("diff"), readonly: false }
            } else {
                MountSpec::Overlay { lower, upper: Some(dir.join("diff")), work: Some(dir.join("work")) }
            }
        } else {
            let own = format!("l/{}", self.read_meta(id, "link")?);
            lower.insert(0, self.home.join(own));
            MountSpec::Overlay { lower, upper: None, work: None }
        };
        Ok(MountPlan { spec })
    }

    fn export_diff(&self, id: &str, out: &mut dyn Write) -> DriverResult<()> {
        let fd = self.open_diff(id)?;
        export::export_overlay(fd.as_raw_fd(), out).map_err(io_ctx(format!("exporting overlay layer {id}")))
    }

    fn changes(&self, id: &str) -> DriverResult<Vec<Change>> {
        let fd = self.open_diff(id)?;
        let mut lowers = Vec::new();
        for dir in self.lower_dirs(id)? {
            lowers.push(sys::open_dir_path(&dir).map_err(io_ctx(format!("opening lower layer {}", dir.display())))?);
        }
        let changes = export::overlay_changes(fd.as_raw_fd(), &lowers)
            .map_err(io_ctx(format!("listing changes of overlay layer {id}")))?;
        Ok(changes.into_iter().map(|(rel, kind)| Change { path: export::display_path(&rel), kind }).collect())
    }

    fn usage(&self, id: &str) -> DriverResult<u64> {
        let fd = self.open_diff(id)?;
        export::content_size(fd.as_raw_fd()).map_err(io_ctx(format!("measuring overlay layer {id}")))
    }

    fn exists(&self, id: &str) -> bool {
        check_id(id).is_ok() && self.layer(id).join("diff").is_dir()
    }

    fn remove(&self, id: &str) -> DriverResult<()> {
        check_id(id)?;
        let dir = self.layer(id);
        let short = self.read_meta(id, "link").ok();
        // Out of sight first, atomically; the files go in the background.
        // The caller has unmounted every mount built on the layer.
        if !self.trash.put(&dir)? {
            return Err(DriverError::NotFound(format!("overlay layer {id} not found")));
        }
        // The link after the layer: a crash between leaves a dangling link,
        // which the next start removes, never a layer without its link.
        if let Some(short) = short {
            let link = self.home.join("l").join(&short);
            // Only our own link: a corrupt `link` file must not remove another layer's.
            if !short.contains('/') && std::fs::read_link(&link).is_ok_and(|t| t == Path::new(&format!("../{id}/diff"))) {
                // Into the trash too: its target is too long for an inline
                // symlink, so unlinking it frees a block like any file.
                if let Err(e) = self.trash.put(&link) {
                    // The layer is gone; `remove_stale` takes its dangling link at the next start.
                    tracing::warn!(link = %link.display(), error = %e, "removing the short link of a removed layer");
                }
            }
        }
        Ok(())
    }

    fn list(&self) -> DriverResult<Vec<String>> {
        let mut ids = Vec::new();
        let entries = std::fs::read_dir(&self.home).map_err(io_ctx(format!("listing {}", self.home.display())))?;
        for entry in entries {
            let entry = entry.map_err(io_ctx(format!("listing {}", self.home.display())))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name == "l" || name.starts_with('.') || check_id(&name).is_err() {
                continue;
            }
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                ids.push(name);
            }
        }
        ids.sort();
        Ok(ids)
    }
}
