//! linkvfs: a berth storage (graph) driver, native only. Like the in-tree
//! `vfs` driver, every layer is a complete directory tree and a container's
//! root filesystem is a plain bind mount of its layer, so it works on any
//! filesystem, including where overlay cannot mount. Unlike vfs, a layer does
//! not copy its parent: every file it does not change is a hard link to the
//! parent's inode, so the N layers of an image cost about one copy, not N.
//!
//! The design, and why it is safe:
//!
//! - `create(id, parent)` remakes the parent's directories (they hold the
//!   layer's own entries) and hard-links everything else.
//! - `apply_diff` never writes into or changes the metadata of an existing
//!   file: it unlinks whatever is at an entry's path and makes the entry
//!   anew, so the parent's inode is untouched (see `unpack`).
//! - A writable layer must not write through a shared inode either. A
//!   container's layer comes from `create_read_write`, which copies instead
//!   of linking and writes the marker `private`. A layer made by `create`
//!   and then mounted writable anyway is made private at that first
//!   `mount_plan(id, true)`: every inode it shares with another layer is
//!   copied and the copy renamed over each of its names
//!   (`tree::make_private`). A layer created on a private layer copies
//!   too, as the container could still change those files.
//! - A container's layer thus costs a full copy when it is created (as with
//!   vfs); image layers cost only their own changes.
//!
//! Layout in the data dir: `layers/<id>/root/` (the tree, the mount source),
//! `layers/<id>/layer.json` (the parent), `layers/<id>/private` (the marker)
//! and `layers/<id>/work/` (scratch space on the same filesystem for the
//! copies). A layer is built in `layers/.new-<id>-<nonce>/` and renamed into
//! place, so a failed create leaves nothing; remove renames it to
//! `layers/.del-...` before deleting. `new` deletes what a crash left of either.

use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use berth_sdk::*;
use serde::{Deserialize, Serialize};

mod at;
mod pack;
mod tree;
mod unpack;

use at::Dir;

/// The tree of a layer, bind-mounted as a container's root.
const ROOT: &str = "root";
const META: &str = "layer.json";
/// Marks a layer whose inodes are all its own (it has been mounted writable).
const PRIVATE: &str = "private";
const WORK: &str = "work";
const STAGING: &str = ".new-";
const DOOMED: &str = ".del-";

/// The linkvfs driver: layers under `<data>/layers`.
pub struct Linkvfs {
    layers: PathBuf,
    /// One layer made private at a time: two first mounts of the same layer
    /// would otherwise copy the same files twice into one work dir.
    privatising: Mutex<()>,
}

/// What `layer.json` holds.
#[derive(Serialize, Deserialize)]
struct LayerMeta {
    parent: Option<String>,
}

/// The engine's layer IDs: 1-200 of `[A-Za-z0-9._-]`, not starting with `.`
/// (which also keeps `.`, `..` and the driver's own `.new-`/`.del-` dirs out).
fn check_id(id: &str) -> DriverResult<()> {
    let ok = !id.is_empty()
        && id.len() <= 200
        && !id.starts_with('.')
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    match ok {
        true => Ok(()),
        false => Err(DriverError::InvalidArgument(format!(
            "invalid layer id {id:?}: use 1-200 letters, digits, '.', '_' or '-', not starting with '.'"
        ))),
    }
}

fn failed(context: impl std::fmt::Display) -> impl FnOnce(io::Error) -> DriverError {
    move |e| DriverError::io(context, e)
}

/// A name part no other staging dir of this or another instance uses.
fn nonce() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    format!("{}-{nanos:x}-{}", std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed))
}

/// Writes `data` to `path` through a temporary file and a rename, so a
/// crash leaves the old file or the new one, never half of one.
fn write_atomic(path: &Path, data: &[u8]) -> io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let mut file = fs::File::create(&tmp)?;
    file.write_all(data)?;
    file.sync_all()?;
    fs::rename(&tmp, path)
}

impl StorageDriver for Linkvfs {
    fn new(ctx: PluginContext) -> DriverResult<Self> {
        let layers = ctx.data_dir.join("layers");
        fs::create_dir_all(&layers).map_err(failed(format!("creating {}", layers.display())))?;
        let entries = fs::read_dir(&layers).map_err(failed(format!("listing {}", layers.display())))?;
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with(STAGING) || name.starts_with(DOOMED) {
                // What a crash left of a create or a remove: never a layer.
                if let Err(e) = fs::remove_dir_all(entry.path()) {
                    log(LogLevel::Warn, &format!("linkvfs: cannot delete leftover {}: {e}", entry.path().display()));
                }
            }
        }
        Ok(Linkvfs { layers, privatising: Mutex::new(()) })
    }

    fn status(&self) -> Vec<(String, String)> {
        let layers = self.list().map(|l| l.len().to_string()).unwrap_or_else(|e| format!("unknown ({e})"));
        vec![("Layers".into(), layers)]
    }

    fn create(&self, id: &str, parent: Option<&str>) -> DriverResult<()> {
        self.make(id, parent, false)
    }

    fn create_read_write(&self, id: &str, parent: Option<&str>) -> DriverResult<()> {
        // A container's layer: its own copies from the start, rather than
        // links now and copies at its first writable mount.
        self.make(id, parent, true)
    }

    fn apply_diff(&self, id: &str, diff: &mut dyn Read) -> DriverResult<u64> {
        let root = self.root(id)?;
        let bytes = unpack::unpack(&root, id, diff)?;
        // The engine records the layer as applied once this returns.
        root.syncfs().map_err(failed(format!("layer {id}: flushing the unpacked files to disk")))?;
        Ok(bytes)
    }

    fn mount_plan(&self, id: &str, writable: bool) -> DriverResult<MountPlan> {
        self.root(id)?;
        if writable {
            self.make_private(id)?;
        }
        let source = self.layer_dir(id).join(ROOT);
        if source.to_str().is_none() {
            let shown = source.display();
            return Err(DriverError::Failed(format!("layer {id}: the data dir path {shown} is not UTF-8; a mount plan cannot name it")));
        }
        Ok(MountPlan { spec: MountSpec::Bind { source, readonly: !writable } })
    }

    fn export_diff(&self, id: &str, out: &mut dyn Write) -> DriverResult<()> {
        let (root, changes) = self.diff(id)?;
        pack::export(&root, &changes, out).map_err(failed(format!("layer {id}: exporting its changes as a tar")))
    }

    fn changes(&self, id: &str) -> DriverResult<Vec<Change>> {
        let (_, changes) = self.diff(id)?;
        let mut out: Vec<Change> = changes
            .into_iter()
            .map(|(rel, kind)| Change { path: format!("/{}", String::from_utf8_lossy(&rel)), kind })
            .collect();
        out.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(out)
    }

    fn usage(&self, id: &str) -> DriverResult<u64> {
        let root = self.root(id)?;
        let parent = self.parent_root(id)?;
        tree::own_bytes(&root, parent.as_ref()).map_err(failed(format!("layer {id}: measuring its files")))
    }

    fn exists(&self, id: &str) -> DriverResult<bool> {
        check_id(id)?;
        Ok(fs::symlink_metadata(self.layer_dir(id)).is_ok_and(|m| m.is_dir()))
    }

    fn remove(&self, id: &str) -> DriverResult<()> {
        check_id(id)?;
        let dir = self.layer_dir(id);
        let meta = match fs::symlink_metadata(&dir) {
            Ok(meta) => meta,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(DriverError::NotFound(format!("layer {id} does not exist")))
            }
            Err(e) => return Err(DriverError::io(format!("layer {id}: looking at {}", dir.display()), e)),
        };
        // Out of the listing at once, then deleted: a crash halfway leaves a `.del-` dir `new` deletes.
        let doomed = self.layers.join(format!("{DOOMED}{id}-{}", nonce()));
        fs::rename(&dir, &doomed).map_err(failed(format!("removing layer {id}")))?;
        let deleted = match meta.is_dir() {
            true => fs::remove_dir_all(&doomed),
            false => fs::remove_file(&doomed),
        };
        // The layer is gone for the engine either way; failing now would only
        // make it retry a remove that answers NotFound.
        if let Err(e) = deleted {
            let doomed = doomed.display();
            log(LogLevel::Warn, &format!("linkvfs: layer {id} removed, but deleting {doomed} failed ({e}); it is retried at the next start"));
        }
        Ok(())
    }

    fn list(&self) -> DriverResult<Vec<String>> {
        let entries = fs::read_dir(&self.layers).map_err(failed(format!("listing {}", self.layers.display())))?;
        let mut ids = Vec::new();
        for entry in entries {
            let entry = entry.map_err(failed(format!("listing {}", self.layers.display())))?;
            let Ok(name) = entry.file_name().into_string() else { continue };
            if check_id(&name).is_ok() && entry.file_type().is_ok_and(|t| t.is_dir()) {
                ids.push(name);
            }
        }
        ids.sort();
        Ok(ids)
    }
}

impl Linkvfs {
    fn layer_dir(&self, id: &str) -> PathBuf {
        self.layers.join(id)
    }

    /// The tree of layer `id`, opened.
    fn root(&self, id: &str) -> DriverResult<Dir> {
        check_id(id)?;
        let dir = self.layer_dir(id);
        if !fs::symlink_metadata(&dir).is_ok_and(|m| m.is_dir()) {
            return Err(DriverError::NotFound(format!("layer {id} does not exist")));
        }
        Dir::open(&dir.join(ROOT)).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => DriverError::Failed(format!(
                "layer {id} is incomplete ({} is missing): remove it and create it again",
                dir.join(ROOT).display()
            )),
            _ => DriverError::io(format!("layer {id}: opening {}", dir.join(ROOT).display()), e),
        })
    }

    fn parent(&self, id: &str) -> DriverResult<Option<String>> {
        let path = self.layer_dir(id).join(META);
        let bytes = fs::read(&path).map_err(|e| {
            DriverError::io(format!("layer {id}: reading {} (an incomplete layer: remove it and create it again)", path.display()), e)
        })?;
        let meta: LayerMeta = serde_json::from_slice(&bytes)
            .map_err(|e| {
                let path = path.display();
                DriverError::Failed(format!("layer {id}: {path} is damaged ({e}): remove the layer and create it again"))
            })?;
        Ok(meta.parent)
    }

    /// The tree of the parent of layer `id`, if it has one.
    fn parent_root(&self, id: &str) -> DriverResult<Option<Dir>> {
        let Some(parent) = self.parent(id)? else { return Ok(None) };
        self.root(&parent).map(Some).map_err(|e| match e {
            DriverError::NotFound(_) => DriverError::NotFound(format!(
                "layer {id}'s parent layer {parent} is gone, so its changes cannot be computed; remove children before their parents"
            )),
            other => other,
        })
    }

    fn diff(&self, id: &str) -> DriverResult<(Dir, tree::Changes)> {
        let root = self.root(id)?;
        let parent = self.parent_root(id)?;
        let changes =
            tree::changes(&root, parent.as_ref()).map_err(failed(format!("layer {id}: comparing it with its parent")))?;
        Ok((root, changes))
    }

    /// A new layer `id` on `parent`: linked to the parent's files, or, for a
    /// `private` one (a container's), with copies of its own and the marker.
    fn make(&self, id: &str, parent: Option<&str>, private: bool) -> DriverResult<()> {
        check_id(id)?;
        if let Some(p) = parent {
            check_id(p)?;
        }
        if fs::symlink_metadata(self.layer_dir(id)).is_ok() {
            return Err(DriverError::Conflict(format!("layer {id} already exists; remove it first or use another id")));
        }
        let from = match parent {
            Some(p) => {
                let root = self.root(p).map_err(|e| match e {
                    DriverError::NotFound(_) => DriverError::NotFound(format!(
                        "parent layer {p} of new layer {id} does not exist; create the parent first"
                    )),
                    other => other,
                })?;
                Some((root, private || self.is_private(p)))
            }
            None => None,
        };
        let staging = self.layers.join(format!("{STAGING}{id}-{}", nonce()));
        let build = || -> io::Result<()> {
            fs::create_dir(&staging)?;
            let meta = serde_json::to_vec(&LayerMeta { parent: parent.map(str::to_string) }).map_err(io::Error::other)?;
            write_atomic(&staging.join(META), &meta)?;
            fs::create_dir(staging.join(ROOT))?;
            let root = Dir::open(&staging.join(ROOT))?;
            match &from {
                Some((from, copy)) => tree::build_from(from, &root, *copy)?,
                None => fs::set_permissions(staging.join(ROOT), fs::Permissions::from_mode(0o755))?,
            }
            if private {
                write_atomic(&staging.join(PRIVATE), b"")?;
            }
            Ok(())
        };
        let built = build().map_err(failed(format!("creating layer {id} in {}", staging.display())));
        let placed = built.and_then(|()| match fs::rename(&staging, self.layer_dir(id)) {
            Ok(()) => Ok(()),
            Err(e) if matches!(e.kind(), io::ErrorKind::AlreadyExists | io::ErrorKind::DirectoryNotEmpty) => {
                Err(DriverError::Conflict(format!("layer {id} already exists (created meanwhile)")))
            }
            Err(e) => Err(DriverError::io(format!("moving new layer {id} into place"), e)),
        });
        if placed.is_err() {
            let _ = fs::remove_dir_all(&staging);
        }
        placed
    }

    fn is_private(&self, id: &str) -> bool {
        self.layer_dir(id).join(PRIVATE).exists()
    }

    /// Gives layer `id` inodes of its own before anything writes to it (see the crate docs).
    fn make_private(&self, id: &str) -> DriverResult<()> {
        if self.is_private(id) {
            return Ok(());
        }
        // A poisoned lock only means another copy panicked; the files are consistent either way.
        let _one_at_a_time = self.privatising.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if self.is_private(id) {
            return Ok(());
        }
        let root = self.root(id)?;
        let dir = self.layer_dir(id);
        let work = dir.join(WORK);
        let context = format!("layer {id}: copying the files it shares with its parent before its first writable mount");
        let copy = || -> io::Result<()> {
            match fs::remove_dir_all(&work) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
            fs::create_dir(&work)?;
            tree::make_private(&root, &Dir::open(&work)?)?;
            fs::remove_dir(&work)?;
            root.syncfs()?;
            write_atomic(&dir.join(PRIVATE), b"every inode of root/ is this layer's own: it has been mounted writable\n")
        };
        copy().map_err(failed(context))
    }
}

export_storage_driver!(Linkvfs);

#[cfg(test)]
mod tests;
