//! The `vfs` storage driver: every layer is a full copy of its parent's tree
//! plus its own changes, under `<root>/vfs/dir/<id>`. Slow and large, but it
//! needs nothing from the kernel beyond a bind mount, so it works where
//! overlay cannot (overlay on overlay, old kernels, odd filesystems).
//! A layer's parent is recorded in `<root>/vfs/parents/<id>` because diffs
//! are computed against it. Removed layers wait in `<root>/vfs/.trash/`
//! until the background reaper (`berth_runtime::trash`) has deleted them.

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use berth_model::drivers::{Change, DriverError, DriverResult, StorageDriver};
use berth_model::{MountPlan, MountSpec};
use berth_runtime::files::{self, Durability};
use berth_runtime::trash::Trash;

use super::apply::{apply_layer, Whiteouts};
use super::{check_id, copy, export, layer_io, sys};

/// The vfs storage driver.
pub struct VfsDriver {
    home: PathBuf,
    /// Removed layers go here, out of sight at once, and are deleted in the
    /// background: a vfs layer is a full copy, slow to delete.
    trash: Trash,
}

fn io_ctx(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> DriverError {
    let context = context.into();
    move |e| DriverError::io(context, e)
}

impl VfsDriver {
    /// Opens (creating if needed) the driver's home under `root`, removing
    /// half-made layers a crash left behind.
    pub fn new(root: &Path) -> DriverResult<Self> {
        let home = root.join("vfs");
        for sub in ["dir", "parents"] {
            let p = home.join(sub);
            std::fs::create_dir_all(&p).map_err(io_ctx(format!("creating {}", p.display())))?;
        }
        // Opening the trash also queues what a previous daemon left in it.
        let trash = Trash::open(home.join(".trash"))?;
        let driver = VfsDriver { home, trash };
        let dir = driver.home.join("dir");
        for entry in std::fs::read_dir(&dir).map_err(io_ctx(format!("listing {}", dir.display())))?.flatten() {
            if entry.file_name().to_string_lossy().starts_with(".tmp-") {
                sys::remove_all(&entry.path()).map_err(io_ctx(format!("removing {}", entry.path().display())))?;
            }
        }
        Ok(driver)
    }

    fn layer(&self, id: &str) -> PathBuf {
        self.home.join("dir").join(id)
    }

    fn parent_file(&self, id: &str) -> PathBuf {
        self.home.join("parents").join(id)
    }

    fn require(&self, id: &str) -> DriverResult<PathBuf> {
        check_id(id)?;
        let dir = self.layer(id);
        if !dir.is_dir() {
            return Err(DriverError::NotFound(format!("vfs layer {id} not found")));
        }
        Ok(dir)
    }

    fn parent(&self, id: &str) -> DriverResult<Option<String>> {
        let path = self.parent_file(id);
        match std::fs::read_to_string(&path) {
            Ok(s) if s.trim().is_empty() => Ok(None),
            Ok(s) => Ok(Some(s.trim().to_string())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(DriverError::io(format!("reading {}", path.display()), e)),
        }
    }

    fn open(&self, id: &str) -> DriverResult<OwnedFd> {
        let dir = self.require(id)?;
        sys::open_dir_path(&dir).map_err(|e| layer_io(id, format!("opening {}", dir.display()), e))
    }

    fn rel_changes(&self, id: &str) -> DriverResult<(OwnedFd, Vec<export::RelChange>)> {
        let fd = self.open(id)?;
        let parent = match self.parent(id)? {
            Some(p) => Some(self.open(&p)?),
            None => None,
        };
        let changes = export::tree_changes(fd.as_raw_fd(), parent.as_ref().map(|f| f.as_raw_fd()))
            .map_err(io_ctx(format!("comparing vfs layer {id} with its parent")))?;
        Ok((fd, changes))
    }
}

impl StorageDriver for VfsDriver {
    fn name(&self) -> &str {
        "vfs"
    }

    fn status(&self) -> Vec<(String, String)> {
        vec![("Root Dir".into(), self.home.display().to_string())]
    }

    fn create(&self, id: &str, parent: Option<&str>) -> DriverResult<()> {
        check_id(id)?;
        let dir = self.layer(id);
        if dir.exists() {
            return Err(DriverError::Conflict(format!("vfs layer {id} already exists")));
        }
        let parent_fd = match parent {
            Some(p) => Some(self.open(p)?),
            None => None,
        };
        let tmp = self.home.join("dir").join(format!(".tmp-{id}"));
        sys::remove_all(&tmp).map_err(io_ctx(format!("removing stale {}", tmp.display())))?;
        let build = || -> std::io::Result<()> {
            std::fs::create_dir(&tmp)?;
            if let Some(src) = &parent_fd {
                let dst = sys::open_dir_path(&tmp)?;
                copy::copy_tree(src.as_raw_fd(), dst.as_raw_fd())?;
            } else {
                std::fs::set_permissions(&tmp, std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
            }
            files::replace(&self.parent_file(id), parent.unwrap_or("").as_bytes(), 0o644, Durability::Renamed)?;
            std::fs::rename(&tmp, &dir)
        };
        if let Err(e) = build() {
            let _ = sys::remove_all(&tmp);
            return Err(DriverError::io(format!("creating vfs layer {id}"), e));
        }
        Ok(())
    }

    fn apply_diff(&self, id: &str, diff: &mut dyn Read) -> DriverResult<u64> {
        let dir = self.require(id)?;
        let bytes = apply_layer(&dir, diff, Whiteouts::Vfs)?;
        let fd = sys::open_dir_path(&dir).map_err(io_ctx(format!("opening {}", dir.display())))?;
        sys::syncfs(fd.as_raw_fd()).map_err(io_ctx(format!("syncing {}", dir.display())))?;
        Ok(bytes)
    }

    fn mount_plan(&self, id: &str, writable: bool) -> DriverResult<MountPlan> {
        let dir = self.require(id)?;
        Ok(MountPlan { spec: MountSpec::Bind { source: dir, readonly: !writable } })
    }

    fn export_diff(&self, id: &str, out: &mut dyn Write) -> DriverResult<()> {
        let (fd, changes) = self.rel_changes(id)?;
        export::export_changes(fd.as_raw_fd(), &changes, out).map_err(io_ctx(format!("exporting vfs layer {id}")))
    }

    fn changes(&self, id: &str) -> DriverResult<Vec<Change>> {
        let (_, changes) = self.rel_changes(id)?;
        Ok(changes.into_iter().map(|(rel, kind)| Change { path: export::display_path(&rel), kind }).collect())
    }

    fn usage(&self, id: &str) -> DriverResult<u64> {
        let (fd, changes) = self.rel_changes(id)?;
        export::changes_size(fd.as_raw_fd(), &changes).map_err(io_ctx(format!("measuring vfs layer {id}")))
    }

    fn exists(&self, id: &str) -> bool {
        check_id(id).is_ok() && self.layer(id).is_dir()
    }

    fn remove(&self, id: &str) -> DriverResult<()> {
        let dir = self.require(id)?;
        // Out of sight first, atomically; the files go in the background.
        // The caller has unmounted every mount built on the layer.
        if !self.trash.put(&dir)? {
            return Err(DriverError::NotFound(format!("vfs layer {id} not found")));
        }
        self.trash.put(&self.parent_file(id))?;
        Ok(())
    }

    fn list(&self) -> DriverResult<Vec<String>> {
        let dir = self.home.join("dir");
        let mut ids = Vec::new();
        for entry in std::fs::read_dir(&dir).map_err(io_ctx(format!("listing {}", dir.display())))? {
            let entry = entry.map_err(io_ctx(format!("listing {}", dir.display())))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if check_id(&name).is_ok() && entry.file_type().is_ok_and(|t| t.is_dir()) {
                ids.push(name);
            }
        }
        ids.sort();
        Ok(ids)
    }
}
