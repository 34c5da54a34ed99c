//! Deferred deletion: a trash directory and the one background reaper that
//! empties it.
//!
//! Deleting a tree is slow on some hosts (on ext4 mounted with `discard`
//! every freed block is a synchronous discard of milliseconds), and `rm` /
//! `run --rm` should not wait for it. So removal is two steps: `Trash::put`
//! renames the tree into a trash directory beside it on the same filesystem
//! — atomic, so the tree is either whole at its old path or gone from it —
//! and a reaper thread, shared by every trash directory of the process,
//! deletes it later. Opening a trash directory queues whatever a previous
//! process left in it.
//!
//! This module must never: rename a mount point into the trash (`put`
//! refuses one), delete anything but what `put` was handed or a trash
//! directory holds, follow a symlink while deleting, or enter a directory on
//! another mount than the one it deletes on (the reaper stops there and says
//! so, rather than delete what a mount shows). A failed deletion is logged, never silently dropped; the
//! entry stays and the next process start tries again.

use std::ffi::{CStr, CString, OsStr, OsString};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{channel, Sender};
use std::sync::OnceLock;

/// Errors of trash operations.
#[derive(Debug, thiserror::Error)]
pub enum TrashError {
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: io::Error,
    },
    /// `put` was handed a mount point: unmount it first.
    #[error("{0} is a mount point; it must be unmounted before it is removed")]
    MountPoint(PathBuf),
}

fn io_err(context: impl Into<String>) -> impl FnOnce(io::Error) -> TrashError {
    let context = context.into();
    move |source| TrashError::Io { context, source }
}

/// A trash directory: entries renamed into it are deleted in the background.
#[derive(Clone, Debug)]
pub struct Trash {
    dir: PathBuf,
}

impl Trash {
    /// Opens (creating if needed) the trash directory `dir` and queues what a
    /// previous process left in it for deletion. `dir` must be on the same
    /// filesystem as what will be put into it (else `put` deletes in place).
    pub fn open(dir: impl Into<PathBuf>) -> Result<Trash, TrashError> {
        let dir = dir.into();
        std::fs::create_dir_all(&dir).map_err(io_err(format!("creating {}", dir.display())))?;
        let trash = Trash { dir };
        let entries = std::fs::read_dir(&trash.dir).map_err(io_err(format!("listing {}", trash.dir.display())))?;
        for entry in entries {
            match entry {
                Ok(e) => trash.queue(e.file_name()),
                Err(e) => tracing::error!(dir = %trash.dir.display(), error = %e, "listing leftover trash"),
            }
        }
        Ok(trash)
    }

    /// The trash directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Moves `path` (a file or a tree) into the trash, out of sight at once,
    /// and queues its deletion. Returns false if `path` did not exist.
    /// Refuses a mount point. If the trash is on another filesystem than
    /// `path`, deletes `path` in place before returning.
    pub fn put(&self, path: &Path) -> Result<bool, TrashError> {
        let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
            return Err(TrashError::Io {
                context: format!("moving {} into the trash", path.display()),
                source: io::Error::from_raw_os_error(libc::EINVAL),
            });
        };
        let parent = if parent.as_os_str().is_empty() { Path::new(".") } else { parent };
        let here = match mount_identity(path, false) {
            Ok(id) => id,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(TrashError::Io { context: format!("statx {}", path.display()), source: e }),
        };
        let above = mount_identity(parent, true).map_err(io_err(format!("statx {}", parent.display())))?;
        if here != above {
            return Err(TrashError::MountPoint(path.to_path_buf()));
        }
        let entry = entry_name(name);
        match std::fs::rename(path, self.dir.join(&entry)) {
            Ok(()) => {
                self.queue(entry);
                Ok(true)
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) if e.raw_os_error() == Some(libc::EXDEV) => {
                // A root whose parts are separate mounts: deleting in place is
                // slower and visible half-way, but still correct.
                tracing::debug!(path = %path.display(), trash = %self.dir.display(), "trash on another filesystem; deleting in place");
                delete_entry(parent, name).map_err(io_err(format!("removing {}", path.display())))?;
                Ok(true)
            }
            Err(e) => Err(TrashError::Io { context: format!("moving {} into {}", path.display(), self.dir.display()), source: e }),
        }
    }

    /// `put` for cleanups whose failure the next start mends: a failure is
    /// logged as `what`, not returned.
    pub fn put_or_warn(&self, path: &Path, what: &str) {
        if let Err(e) = self.put(path) {
            tracing::warn!(path = %path.display(), error = %e, "{what}");
        }
    }

    fn queue(&self, entry: OsString) {
        let job = Job::Delete { trash: self.dir.clone(), entry };
        // No reaper thread (it could not be spawned): delete now rather than never.
        if let Err(Job::Delete { trash, entry }) = send(job) {
            reap(&trash, &entry);
        }
    }
}

/// Blocks until every deletion queued before this call has been done (or
/// has failed and been logged). For tests: nothing else needs to wait.
pub fn flush() {
    let (tx, rx) = channel();
    if send(Job::Flush(tx)).is_ok() {
        let _ = rx.recv();
    }
}

enum Job {
    Delete { trash: PathBuf, entry: OsString },
    Flush(Sender<()>),
}

/// Hands `job` to the reaper thread, starting it on first use. Gives the job
/// back if there is no reaper.
fn send(job: Job) -> Result<(), Job> {
    static REAPER: OnceLock<Option<Sender<Job>>> = OnceLock::new();
    let reaper = REAPER.get_or_init(|| {
        let (tx, rx) = channel::<Job>();
        let spawned = std::thread::Builder::new().name("trash-reaper".into()).spawn(move || {
            for job in rx {
                match job {
                    Job::Delete { trash, entry } => reap(&trash, &entry),
                    Job::Flush(done) => {
                        let _ = done.send(());
                    }
                }
            }
        });
        match spawned {
            Ok(_) => Some(tx),
            Err(e) => {
                tracing::error!(error = %e, "cannot start the trash reaper thread; deleting synchronously");
                None
            }
        }
    });
    match reaper {
        Some(tx) => tx.send(job).map_err(|e| e.0),
        None => Err(job),
    }
}

/// Deletes one trash entry, logging a failure.
fn reap(trash: &Path, entry: &OsStr) {
    if let Err(e) = delete_entry(trash, entry) {
        tracing::error!(
            path = %trash.join(entry).display(),
            error = %e,
            "deleting a trash entry failed; it stays until the next start"
        );
    }
}

/// A name no other entry of this trash has: the original name (so a human
/// looking at the trash knows what it was), the time and a counter.
fn entry_name(name: &OsStr) -> OsString {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    let mut out = name.to_os_string();
    out.push(format!("-{nanos}-{}-{}", std::process::id(), SEQ.fetch_add(1, Ordering::Relaxed)));
    out
}

/// Beyond this many open directory levels a subtree is moved up beside the
/// entry and deleted from there, so an arbitrarily deep tree (a container
/// can make one) needs a bounded number of descriptors and no recursion.
const MAX_DEPTH: usize = 64;

/// Deletes `name` in `dir` and everything below it, never following a symlink
/// and never entering a directory on another mount than `dir`'s.
fn delete_entry(dir: &Path, name: &OsStr) -> io::Result<()> {
    let root = open_dir(None, &cstring(dir.as_os_str())?)?;
    let home = mount_identity_fd(root.as_raw_fd())?;
    // Subtrees moved up from too deep are deleted in the same call.
    let mut pending = vec![cstring(name)?];
    while let Some(top) = pending.pop() {
        delete_tree(&root, top, home, &mut pending)?;
    }
    Ok(())
}

/// An open directory being emptied: its name in its parent and the entries left.
struct Frame {
    fd: OwnedFd,
    name: CString,
    entries: Vec<CString>,
}

fn delete_tree(root: &OwnedFd, name: CString, home: MountId, pending: &mut Vec<CString>) -> io::Result<()> {
    if unlink_file(root.as_raw_fd(), &name)? {
        return Ok(());
    }
    let mut stack: Vec<Frame> = Vec::new();
    if let Some(frame) = open_checked(root.as_raw_fd(), name, home)? {
        stack.push(frame);
    }
    loop {
        let next = stack.last_mut().map(|f| (f.fd.as_raw_fd(), f.entries.pop()));
        match next {
            None => return Ok(()),
            Some((fd, Some(child))) => {
                if unlink_file(fd, &child)? {
                    continue;
                }
                if stack.len() >= MAX_DEPTH {
                    let moved = cstring(&entry_name(OsStr::new(".deep")))?;
                    rename_at(fd, &child, root.as_raw_fd(), &moved)?;
                    pending.push(moved);
                } else if let Some(frame) = open_checked(fd, child, home)? {
                    stack.push(frame);
                }
            }
            Some((_, None)) => {
                // Empty now: close it and remove it from its parent.
                if let Some(done) = stack.pop() {
                    drop(done.fd);
                    let parent = stack.last().map_or(root.as_raw_fd(), |f| f.fd.as_raw_fd());
                    rmdir(parent, &done.name)?;
                }
            }
        }
    }
}

/// unlinkat for a non-directory: true if `name` is gone (or was), false if it is a directory.
fn unlink_file(dir: RawFd, name: &CStr) -> io::Result<bool> {
    // SAFETY: a valid dir fd and a NUL-terminated name.
    if unsafe { libc::unlinkat(dir, name.as_ptr(), 0) } == 0 {
        return Ok(true);
    }
    let e = io::Error::last_os_error();
    match e.raw_os_error() {
        Some(libc::ENOENT) => Ok(true),
        Some(libc::EISDIR) | Some(libc::EPERM) => Ok(false),
        _ => Err(e),
    }
}

fn rmdir(dir: RawFd, name: &CStr) -> io::Result<()> {
    // SAFETY: a valid dir fd and a NUL-terminated name.
    if unsafe { libc::unlinkat(dir, name.as_ptr(), libc::AT_REMOVEDIR) } == 0 {
        return Ok(());
    }
    let e = io::Error::last_os_error();
    if e.raw_os_error() == Some(libc::ENOENT) { Ok(()) } else { Err(e) }
}

fn rename_at(from_dir: RawFd, from: &CStr, to_dir: RawFd, to: &CStr) -> io::Result<()> {
    // SAFETY: valid dir fds and NUL-terminated names.
    if unsafe { libc::renameat(from_dir, from.as_ptr(), to_dir, to.as_ptr()) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Opens the directory `name` in `dir` (no symlinks) and lists it, after
/// checking it is on mount `home`. None if it vanished meanwhile.
fn open_checked(dir: RawFd, name: CString, home: MountId) -> io::Result<Option<Frame>> {
    let fd = match open_dir(Some(dir), &name) {
        Ok(fd) => fd,
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(None),
        Err(e) => return Err(e),
    };
    if mount_identity_fd(fd.as_raw_fd())? != home {
        return Err(io::Error::other(format!(
            "{} is on another mount (a mount point left in the trash); not deleting through it",
            name.to_string_lossy()
        )));
    }
    let entries = list(&fd)?;
    Ok(Some(Frame { fd, name, entries }))
}

fn open_dir(dir: Option<RawFd>, name: &CStr) -> io::Result<OwnedFd> {
    let flags = libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC;
    // SAFETY: a valid dir fd (or AT_FDCWD) and a NUL-terminated name.
    let fd = unsafe { libc::openat(dir.unwrap_or(libc::AT_FDCWD), name.as_ptr(), flags) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: openat returned a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// The names in the open directory `fd`, without `.` and `..`.
fn list(fd: &OwnedFd) -> io::Result<Vec<CString>> {
    // A second descriptor: `Dir` owns (and closes) the one it reads.
    let dup = fd.try_clone()?;
    let mut dir = nix::dir::Dir::from_fd(dup).map_err(io::Error::from)?;
    let mut names = Vec::new();
    for entry in dir.iter() {
        let entry = entry.map_err(io::Error::from)?;
        let n = entry.file_name();
        if n != c"." && n != c".." {
            names.push(n.to_owned());
        }
    }
    Ok(names)
}

fn cstring(s: &OsStr) -> io::Result<CString> {
    CString::new(s.as_bytes().to_vec()).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))
}

/// Which mount a file is on: the mount ID where the kernel tells it (5.8+;
/// it also tells bind mounts of one filesystem apart), and the device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct MountId {
    mnt: Option<u64>,
    dev: (u32, u32),
}

fn mount_identity_fd(fd: RawFd) -> io::Result<MountId> {
    statx_mount(fd, c"", libc::AT_EMPTY_PATH)
}

fn mount_identity(path: &Path, follow: bool) -> io::Result<MountId> {
    let flags = if follow { 0 } else { libc::AT_SYMLINK_NOFOLLOW };
    statx_mount(libc::AT_FDCWD, &cstring(path.as_os_str())?, flags)
}

fn statx_mount(dir: RawFd, path: &CStr, flags: libc::c_int) -> io::Result<MountId> {
    // SAFETY: statx is plain data; all-zero is a valid value.
    let mut st: libc::statx = unsafe { std::mem::zeroed() };
    // SAFETY: a valid dir fd, a NUL-terminated path and a buffer of the right type.
    let rc = unsafe { libc::statx(dir, path.as_ptr(), flags | libc::AT_STATX_SYNC_AS_STAT, libc::STATX_MNT_ID, &mut st) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    let mnt = (st.stx_mask & libc::STATX_MNT_ID != 0).then_some(st.stx_mnt_id);
    Ok(MountId { mnt, dev: (st.stx_dev_major, st.stx_dev_minor) })
}

impl From<TrashError> for berth_model::drivers::DriverError {
    fn from(e: TrashError) -> Self {
        match e {
            TrashError::Io { context, source } => berth_model::drivers::DriverError::Io { context, source },
            // Still mounted means still in use: Docker's 409.
            TrashError::MountPoint(_) => berth_model::drivers::DriverError::Conflict(e.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .expect("read_dir")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    /// A small tree with files, a nested dir and a dir without permissions.
    fn make_tree(at: &Path) {
        std::fs::create_dir_all(at.join("a/b/c")).expect("mkdir");
        std::fs::write(at.join("f"), b"data").expect("write");
        std::fs::write(at.join("a/b/c/g"), b"more").expect("write");
        std::fs::create_dir(at.join("locked")).expect("mkdir");
        std::fs::write(at.join("locked/h"), b"x").expect("write");
        std::fs::set_permissions(at.join("locked"), std::os::unix::fs::PermissionsExt::from_mode(0o000)).expect("chmod");
    }

    #[test]
    fn put_moves_out_of_sight_at_once_and_the_reaper_deletes() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let trash = Trash::open(tmp.path().join(".trash")).expect("open");
        let victim = tmp.path().join("layer");
        make_tree(&victim);
        assert!(trash.put(&victim).expect("put"), "put reports the tree existed");
        // Gone from its path when put returns, whether or not the reaper ran yet.
        assert!(!victim.exists(), "the tree is out of sight");
        flush();
        assert!(entries(trash.dir()).is_empty(), "the reaper emptied the trash: {:?}", entries(trash.dir()));
        // A file goes the same way; a missing path is no error.
        std::fs::write(tmp.path().join("file"), b"x").expect("write");
        assert!(trash.put(&tmp.path().join("file")).expect("put file"));
        assert!(!trash.put(&tmp.path().join("nothing")).expect("put missing"), "a missing path is reported as such");
        flush();
        assert!(entries(trash.dir()).is_empty());
        assert_eq!(entries(tmp.path()), vec![".trash".to_string()]);
    }

    #[test]
    fn leftover_trash_is_swept_at_open() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join(".trash");
        // What a daemon killed before its reaper finished leaves behind.
        make_tree(&dir.join("old-1"));
        std::fs::write(dir.join("old-file"), b"x").expect("write");
        let trash = Trash::open(&dir).expect("open");
        flush();
        assert!(entries(trash.dir()).is_empty(), "open queued the leftovers: {:?}", entries(trash.dir()));
    }

    #[test]
    fn deep_trees_are_deleted_and_symlinks_not_followed() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let trash = Trash::open(tmp.path().join(".trash")).expect("open");
        let outside = tmp.path().join("outside");
        std::fs::create_dir(&outside).expect("mkdir");
        std::fs::write(outside.join("keep"), b"keep").expect("write");
        let victim = tmp.path().join("deep");
        // Deeper than MAX_DEPTH several times over (still well under PATH_MAX).
        let mut cur = victim.clone();
        std::fs::create_dir(&cur).expect("mkdir");
        std::os::unix::fs::symlink(&outside, cur.join("link")).expect("symlink");
        for i in 0..(MAX_DEPTH * 3) {
            cur = cur.join("d");
            std::fs::create_dir(&cur).expect("mkdir");
            if i % 50 == 0 {
                std::fs::write(cur.join("f"), b"f").expect("write");
            }
        }
        assert!(trash.put(&victim).expect("put"));
        flush();
        assert!(entries(trash.dir()).is_empty(), "deep tree deleted: {:?}", entries(trash.dir()));
        assert_eq!(std::fs::read(outside.join("keep")).expect("outside file"), b"keep", "the symlink was not followed");
    }

    /// Needs root in a private mount namespace (scripts/test runs the suite in one).
    #[test]
    fn mounts_are_never_trashed_nor_deleted_through() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let trash = Trash::open(tmp.path().join(".trash")).expect("open");
        let tmpfs = berth_model::MountSpec::Tmpfs { options: String::new() };
        // A mount point itself is refused.
        let mnt = tmp.path().join("mnt");
        std::fs::create_dir(&mnt).expect("mkdir");
        crate::mount::mount(&tmpfs, &mnt).expect("mount tmpfs");
        assert!(matches!(trash.put(&mnt), Err(TrashError::MountPoint(_))), "put refuses a mount point");
        assert!(mnt.exists());
        crate::mount::unmount(&mnt).expect("unmount");
        // A mount below the entry: the reaper stops there instead of deleting what it shows.
        let outer = tmp.path().join("outer");
        let inner = outer.join("inner");
        std::fs::create_dir_all(&inner).expect("mkdir");
        crate::mount::mount(&tmpfs, &inner).expect("mount tmpfs");
        std::fs::write(inner.join("precious"), b"p").expect("write");
        assert!(trash.put(&outer).expect("put"));
        flush();
        let left = entries(trash.dir());
        assert_eq!(left.len(), 1, "the entry holding a mount stays: {left:?}");
        let moved_inner = trash.dir().join(&left[0]).join("inner");
        assert_eq!(std::fs::read(moved_inner.join("precious")).expect("still there"), b"p");
        crate::mount::unmount(&moved_inner).expect("unmount");
        // Unmounted, the next sweep deletes it.
        Trash::open(trash.dir()).expect("reopen");
        flush();
        assert!(entries(trash.dir()).is_empty());
    }
}
