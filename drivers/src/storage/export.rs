//! Layer diffs out: change lists (`docker diff`) and OCI layer tars (commit,
//! save), shared by both drivers.
//!
//! Walks are descriptor-relative and never follow symlinks; entries come out
//! sorted by name with each directory before its contents, so the same tree
//! always gives the same tar.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;

use berth_model::drivers::ChangeKind;

use super::apply::{OPAQUE_MARKER, OVERLAY_OPAQUE_XATTR, WHITEOUT_PREFIX};
use super::sys;

fn errno(e: &io::Error) -> i32 {
    e.raw_os_error().unwrap_or(0)
}

/// Writes tar entries for files found on disk, as an OCI layer wants them.
pub struct Exporter<'w> {
    builder: tar::Builder<&'w mut dyn Write>,
    /// Inodes already written, so further names of one become hard links.
    links: HashMap<(u64, u64), Vec<u8>>,
}

fn set_mtime_fields(header: &mut tar::Header, sec: i64) {
    header.set_mtime(sec.max(0) as u64);
}

impl<'w> Exporter<'w> {
    /// An exporter writing to `out`.
    pub fn new(out: &'w mut dyn Write) -> Self {
        let mut builder = tar::Builder::new(out);
        builder.mode(tar::HeaderMode::Complete);
        Exporter { builder, links: HashMap::new() }
    }

    /// Adds `name` in `dir` (already stat'ed as `st`) under the archive path `rel`.
    pub fn add(&mut self, dir: RawFd, name: &[u8], st: &libc::stat, rel: &[u8]) -> io::Result<()> {
        let ftype = sys::file_type(st.st_mode);
        let mut header = tar::Header::new_gnu();
        header.set_mode(st.st_mode & 0o7777);
        header.set_uid(st.st_uid as u64);
        header.set_gid(st.st_gid as u64);
        set_mtime_fields(&mut header, st.st_mtime);
        header.set_size(0);

        let mut pax: Vec<(String, Vec<u8>)> = Vec::new();
        if st.st_mtime_nsec != 0 && st.st_mtime >= 0 {
            pax.push(("mtime".into(), format!("{}.{:09}", st.st_mtime, st.st_mtime_nsec).into_bytes()));
        }
        let xattr_name = if ftype == libc::S_IFDIR || ftype == libc::S_IFREG { None } else { Some(name) };
        let xattrs = match xattr_name {
            // Directories and files: through a descriptor below.
            None => Vec::new(),
            Some(n) => sys::lxattrs_at(dir, n)?,
        };
        let path = OsStr::from_bytes(rel);

        if ftype != libc::S_IFDIR && st.st_nlink > 1 {
            let key = (st.st_dev, st.st_ino);
            if let Some(first) = self.links.get(&key) {
                let first = first.clone();
                header.set_entry_type(tar::EntryType::Link);
                return self.builder.append_link(&mut header, path, OsStr::from_bytes(&first));
            }
            self.links.insert(key, rel.to_vec());
        }

        match ftype {
            libc::S_IFDIR => {
                let fd = sys::open_subdir(dir, name)?;
                push_xattrs(&mut pax, sys::lxattrs_at(fd.as_raw_fd(), b"")?);
                self.pax(&pax)?;
                header.set_entry_type(tar::EntryType::Directory);
                let mut p = rel.to_vec();
                p.push(b'/');
                self.builder.append_data(&mut header, OsStr::from_bytes(&p), io::empty())
            }
            libc::S_IFREG => {
                let fd = sys::openat(dir, name, libc::O_RDONLY, 0)?;
                push_xattrs(&mut pax, sys::lxattrs_at(fd.as_raw_fd(), b"")?);
                self.pax(&pax)?;
                header.set_entry_type(tar::EntryType::Regular);
                let size = st.st_size as u64;
                header.set_size(size);
                // SAFETY: fd is an owned, open descriptor handed to File.
                let file = std::fs::File::from(unsafe { OwnedFd::from_raw_fd(std::os::fd::IntoRawFd::into_raw_fd(fd)) });
                // Exactly `size` bytes even if the file changes meanwhile,
                // so the header never lies about the data that follows.
                let data = file.take(size).chain(io::repeat(0).take(size));
                self.builder.append_data(&mut header, path, data.take(size))
            }
            libc::S_IFLNK => {
                let target = sys::readlinkat(dir, name)?;
                push_xattrs(&mut pax, xattrs);
                self.pax(&pax)?;
                header.set_entry_type(tar::EntryType::Symlink);
                self.builder.append_link(&mut header, path, OsStr::from_bytes(&target))
            }
            libc::S_IFCHR | libc::S_IFBLK | libc::S_IFIFO => {
                push_xattrs(&mut pax, xattrs);
                self.pax(&pax)?;
                header.set_entry_type(match ftype {
                    libc::S_IFCHR => tar::EntryType::Char,
                    libc::S_IFBLK => tar::EntryType::Block,
                    _ => tar::EntryType::Fifo,
                });
                if ftype != libc::S_IFIFO {
                    header.set_device_major(libc::major(st.st_rdev))?;
                    header.set_device_minor(libc::minor(st.st_rdev))?;
                }
                self.builder.append_data(&mut header, path, io::empty())
            }
            // Sockets are not layer content (tar and Docker skip them).
            _ => Ok(()),
        }
    }

    fn pax(&mut self, pax: &[(String, Vec<u8>)]) -> io::Result<()> {
        if pax.is_empty() {
            return Ok(());
        }
        self.builder.append_pax_extensions(pax.iter().map(|(k, v)| (k.as_str(), v.as_slice())))
    }

    fn marker(&mut self, rel: &[u8], mode: u32, uid: u64, gid: u64, mtime: i64) -> io::Result<()> {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Regular);
        header.set_mode(mode);
        header.set_uid(uid);
        header.set_gid(gid);
        set_mtime_fields(&mut header, mtime);
        header.set_size(0);
        self.builder.append_data(&mut header, OsStr::from_bytes(rel), io::empty())
    }

    /// Adds the whiteout `.wh.<name>` in directory `rel_dir`.
    pub fn whiteout(&mut self, rel_dir: &[u8], name: &[u8], st: Option<&libc::stat>) -> io::Result<()> {
        let mut wh = WHITEOUT_PREFIX.to_vec();
        wh.extend_from_slice(name);
        let (uid, gid, mtime) = st.map_or((0, 0, 0), |s| (s.st_uid as u64, s.st_gid as u64, s.st_mtime));
        self.marker(&sys::join(rel_dir, &wh), 0o600, uid, gid, mtime)
    }

    /// Adds the opaque marker `.wh..wh..opq` in directory `rel_dir`.
    pub fn opaque(&mut self, rel_dir: &[u8], st: &libc::stat) -> io::Result<()> {
        self.marker(&sys::join(rel_dir, OPAQUE_MARKER), st.st_mode & 0o777, st.st_uid as u64, st.st_gid as u64, st.st_mtime)
    }

    /// Writes the end-of-archive marker.
    pub fn finish(mut self) -> io::Result<()> {
        self.builder.finish()
    }
}

fn push_xattrs(pax: &mut Vec<(String, Vec<u8>)>, xattrs: Vec<(String, Vec<u8>)>) {
    for (k, v) in xattrs {
        // Overlay's own bookkeeping is not layer content; opaque dirs are
        // exported as `.wh..wh..opq` instead.
        if k.starts_with("trusted.overlay.") {
            continue;
        }
        pax.push((format!("SCHILY.xattr.{k}"), v));
    }
}

/// Writes an overlay `diff` directory as an OCI layer tar: whiteout devices
/// become `.wh.<name>`, opaque directories get a `.wh..wh..opq` entry.
pub fn export_overlay(diff: RawFd, out: &mut dyn Write) -> io::Result<()> {
    let mut ex = Exporter::new(out);
    export_overlay_dir(&mut ex, diff, b"")?;
    ex.finish()
}

fn export_overlay_dir(ex: &mut Exporter<'_>, dir: RawFd, rel: &[u8]) -> io::Result<()> {
    for entry in sys::read_dir(dir)? {
        let st = sys::lstat_at(dir, &entry.name)?;
        let path = sys::join(rel, &entry.name);
        if sys::is_whiteout(&st) {
            ex.whiteout(rel, &entry.name, Some(&st))?;
            continue;
        }
        ex.add(dir, &entry.name, &st, &path)?;
        if sys::file_type(st.st_mode) == libc::S_IFDIR {
            let sub = sys::open_subdir(dir, &entry.name)?;
            if sys::lgetxattr_at(sub.as_raw_fd(), b"", OVERLAY_OPAQUE_XATTR)?.as_deref() == Some(b"y") {
                ex.opaque(&path, &st)?;
            }
            export_overlay_dir(ex, sub.as_raw_fd(), &path)?;
        }
    }
    Ok(())
}

/// One changed path, relative to the layer root (no leading `/`).
pub type RelChange = (Vec<u8>, ChangeKind);

/// Docker's comparison of two stats (pkg/archive `statDifferent`): size and
/// mtime do not count for directories.
fn stat_different(old: &libc::stat, new: &libc::stat) -> bool {
    old.st_mode != new.st_mode
        || old.st_uid != new.st_uid
        || old.st_gid != new.st_gid
        || old.st_rdev != new.st_rdev
        || (sys::file_type(old.st_mode) != libc::S_IFDIR
            && (old.st_mtime != new.st_mtime || old.st_mtime_nsec != new.st_mtime_nsec || old.st_size != new.st_size))
}

fn capability(dir: RawFd, name: &[u8], st: &libc::stat) -> io::Result<Option<Vec<u8>>> {
    if sys::file_type(st.st_mode) != libc::S_IFREG {
        return Ok(None);
    }
    sys::lgetxattr_at(dir, name, "security.capability")
}

/// Compares the tree `new` with `old` (None: empty) the way Docker's naive
/// differ does: added, modified and deleted paths, each directory with
/// changes inside listed as modified before them.
pub fn tree_changes(new: RawFd, old: Option<RawFd>) -> io::Result<Vec<RelChange>> {
    let mut out = Vec::new();
    compare_dirs(new, old, b"", true, &mut out)?;
    Ok(out)
}

fn compare_dirs(new: RawFd, old: Option<RawFd>, rel: &[u8], recorded: bool, out: &mut Vec<RelChange>) -> io::Result<()> {
    let start = out.len();
    let new_entries = sys::read_dir(new)?;
    let old_entries = match old {
        Some(fd) => sys::read_dir(fd)?,
        None => Vec::new(),
    };
    let (mut i, mut j) = (0, 0);
    while i < new_entries.len() || j < old_entries.len() {
        let order = match (new_entries.get(i), old_entries.get(j)) {
            (Some(n), Some(o)) => n.name.cmp(&o.name),
            (Some(_), None) => std::cmp::Ordering::Less,
            _ => std::cmp::Ordering::Greater,
        };
        match order {
            std::cmp::Ordering::Less => {
                let name = &new_entries[i].name;
                let path = sys::join(rel, name);
                out.push((path.clone(), ChangeKind::Added));
                let st = sys::lstat_at(new, name)?;
                if sys::file_type(st.st_mode) == libc::S_IFDIR {
                    let sub = sys::open_subdir(new, name)?;
                    compare_dirs(sub.as_raw_fd(), None, &path, true, out)?;
                }
                i += 1;
            }
            std::cmp::Ordering::Greater => {
                out.push((sys::join(rel, &old_entries[j].name), ChangeKind::Deleted));
                j += 1;
            }
            std::cmp::Ordering::Equal => {
                let name = &new_entries[i].name;
                let path = sys::join(rel, name);
                let (ns, os) = (sys::lstat_at(new, name)?, sys::lstat_at(old.unwrap_or(new), name)?);
                let mut changed = stat_different(&os, &ns);
                if !changed {
                    if let Some(old_fd) = old {
                        changed = capability(new, name, &ns)? != capability(old_fd, name, &os)?;
                    }
                }
                if changed {
                    out.push((path.clone(), ChangeKind::Modified));
                }
                if sys::file_type(ns.st_mode) == libc::S_IFDIR {
                    let sub = sys::open_subdir(new, name)?;
                    let old_sub = match (old, sys::file_type(os.st_mode) == libc::S_IFDIR) {
                        (Some(o), true) => Some(sys::open_subdir(o, name)?),
                        _ => None,
                    };
                    compare_dirs(sub.as_raw_fd(), old_sub.as_ref().map(|f| f.as_raw_fd()), &path, changed, out)?;
                }
                i += 1;
                j += 1;
            }
        }
    }
    if out.len() > start && !recorded {
        out.insert(start, (rel.to_vec(), ChangeKind::Modified));
    }
    Ok(())
}

/// Writes the changes `changes` of the tree at `root` as an OCI layer tar.
pub fn export_changes(root: RawFd, changes: &[RelChange], out: &mut dyn Write) -> io::Result<()> {
    let mut ex = Exporter::new(out);
    let mut cached: Option<(Vec<u8>, OwnedFd)> = None;
    for (rel, kind) in changes {
        let (parent, name) = match rel.iter().rposition(|b| *b == b'/') {
            Some(p) => (&rel[..p], &rel[p + 1..]),
            None => (&rel[..0], &rel[..]),
        };
        if *kind == ChangeKind::Deleted {
            ex.whiteout(parent, name, None)?;
            continue;
        }
        let pfd = match &cached {
            Some((p, fd)) if p.as_slice() == parent => fd.as_raw_fd(),
            _ => {
                let fd = sys::openat2(
                    root,
                    parent,
                    libc::O_RDONLY | libc::O_DIRECTORY,
                    libc::RESOLVE_BENEATH | libc::RESOLVE_NO_SYMLINKS,
                )?;
                cached = Some((parent.to_vec(), fd));
                cached.as_ref().map_or(root, |(_, fd)| fd.as_raw_fd())
            }
        };
        let st = sys::lstat_at(pfd, name)?;
        ex.add(pfd, name, &st, rel)?;
    }
    ex.finish()
}

/// What a lower layer stack holds at `rel`: the stat of the top-most entry,
/// or None if absent or whited out.
fn lookup_lower(lowers: &[OwnedFd], rel: &[u8]) -> io::Result<Option<libc::stat>> {
    let (parent, name) = match rel.iter().rposition(|b| *b == b'/') {
        Some(p) => (&rel[..p], &rel[p + 1..]),
        None => (&rel[..0], rel),
    };
    for lower in lowers {
        let pfd = match sys::openat2(
            lower.as_raw_fd(),
            parent,
            libc::O_RDONLY | libc::O_DIRECTORY,
            libc::RESOLVE_BENEATH | libc::RESOLVE_NO_SYMLINKS,
        ) {
            Ok(fd) => fd,
            Err(e) if matches!(errno(&e), libc::ENOENT | libc::ENOTDIR | libc::ELOOP) => continue,
            Err(e) => return Err(e),
        };
        match sys::lstat_at(pfd.as_raw_fd(), name) {
            Ok(st) if sys::is_whiteout(&st) => return Ok(None),
            Ok(st) => return Ok(Some(st)),
            Err(e) if errno(&e) == libc::ENOENT => {
                // An opaque directory hides everything below it in lower layers.
                if sys::lgetxattr_at(pfd.as_raw_fd(), b"", OVERLAY_OPAQUE_XATTR)?.as_deref() == Some(b"y") {
                    return Ok(None);
                }
            }
            Err(e) => return Err(e),
        }
    }
    Ok(None)
}

/// The changes an overlay `diff` directory makes over its `lowers` (top-most
/// first): whiteouts are deletions, paths the lowers have are modifications,
/// directories only copied up unchanged are left out.
pub fn overlay_changes(diff: RawFd, lowers: &[OwnedFd]) -> io::Result<Vec<RelChange>> {
    let mut out = Vec::new();
    overlay_changes_dir(diff, lowers, b"", &mut out)?;
    Ok(out)
}

fn overlay_changes_dir(dir: RawFd, lowers: &[OwnedFd], rel: &[u8], out: &mut Vec<RelChange>) -> io::Result<()> {
    for entry in sys::read_dir(dir)? {
        let st = sys::lstat_at(dir, &entry.name)?;
        let path = sys::join(rel, &entry.name);
        if sys::is_whiteout(&st) {
            out.push((path, ChangeKind::Deleted));
            continue;
        }
        let lower = lookup_lower(lowers, &path)?;
        let is_dir = sys::file_type(st.st_mode) == libc::S_IFDIR;
        match lower {
            None => out.push((path.clone(), ChangeKind::Added)),
            Some(ls) if is_dir && sys::file_type(ls.st_mode) == libc::S_IFDIR => {
                let opaque = sys::lgetxattr_at(dir, &entry.name, OVERLAY_OPAQUE_XATTR)?.as_deref() == Some(b"y");
                let same = ls.st_mode == st.st_mode
                    && ls.st_uid == st.st_uid
                    && ls.st_gid == st.st_gid
                    && ls.st_mtime == st.st_mtime
                    && ls.st_mtime_nsec == st.st_mtime_nsec;
                if opaque || !same {
                    out.push((path.clone(), ChangeKind::Modified));
                }
            }
            Some(_) => out.push((path.clone(), ChangeKind::Modified)),
        }
        if is_dir {
            let sub = sys::open_subdir(dir, &entry.name)?;
            overlay_changes_dir(sub.as_raw_fd(), lowers, &path, out)?;
        }
    }
    Ok(())
}

/// Bytes of regular-file content under `dir`, each inode counted once.
pub fn content_size(dir: RawFd) -> io::Result<u64> {
    let mut seen = std::collections::HashSet::new();
    content_size_dir(dir, &mut seen)
}

fn content_size_dir(dir: RawFd, seen: &mut std::collections::HashSet<(u64, u64)>) -> io::Result<u64> {
    let mut total = 0;
    for entry in sys::read_dir(dir)? {
        let st = sys::lstat_at(dir, &entry.name)?;
        match sys::file_type(st.st_mode) {
            libc::S_IFREG if st.st_nlink <= 1 || seen.insert((st.st_dev, st.st_ino)) => total += st.st_size as u64,
            libc::S_IFDIR => {
                let sub = sys::open_subdir(dir, &entry.name)?;
                total += content_size_dir(sub.as_raw_fd(), seen)?;
            }
            _ => {}
        }
    }
    Ok(total)
}

/// Bytes of regular-file content among `changes` of the tree at `root`.
pub fn changes_size(root: RawFd, changes: &[RelChange]) -> io::Result<u64> {
    let mut seen = std::collections::HashSet::new();
    let mut total = 0;
    for (rel, kind) in changes {
        if *kind == ChangeKind::Deleted {
            continue;
        }
        let fd = match sys::openat2(root, rel, libc::O_PATH | libc::O_NOFOLLOW, libc::RESOLVE_BENEATH | libc::RESOLVE_NO_SYMLINKS) {
            Ok(fd) => fd,
            Err(e) if matches!(errno(&e), libc::ENOENT | libc::ELOOP) => continue,
            Err(e) => return Err(e),
        };
        let st = sys::fstat(fd.as_raw_fd())?;
        if sys::file_type(st.st_mode) == libc::S_IFREG && (st.st_nlink <= 1 || seen.insert((st.st_dev, st.st_ino))) {
            total += st.st_size as u64;
        }
    }
    Ok(total)
}

/// Renders a relative path as the absolute path `docker diff` shows.
pub fn display_path(rel: &[u8]) -> String {
    format!("/{}", String::from_utf8_lossy(rel))
}
