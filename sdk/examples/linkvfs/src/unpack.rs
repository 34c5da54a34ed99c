//! `apply_diff`: an OCI layer tar unpacked into a layer whose files start as
//! hard links to its parent's. The `tar` crate only parses; every entry is
//! placed here, by these rules:
//!
//! - Nothing that exists is ever opened for writing or given new metadata
//!   in place: it may be an inode the parent (and every layer above it)
//!   shares. Whatever is at an entry's path is unlinked first and made anew.
//!   Only a directory stays (directories belong to one layer) and takes the
//!   entry's metadata.
//! - Paths are resolved from the layer root one component at a time without
//!   following symlinks. A path with `..`, or whose parent is a symlink
//!   (`etc -> /` then `etc/passwd`), is refused: following it could write
//!   outside the layer. Layers that Docker and berth write never do either,
//!   since a diff records the real paths of what changed.
//! - `.wh.NAME` deletes NAME; `.wh..wh..opq` deletes what the lower layers
//!   put in its directory but keeps what this layer already wrote there.

use std::collections::HashSet;
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;

use berth_sdk::{DriverError, DriverResult};

use crate::at::{self, copy_inode, errno, file_type, Dir, Meta};
use crate::tree::join;

const WHITEOUT: &[u8] = b".wh.";
const OPAQUE: &[u8] = b".wh..wh..opq";
const COPY_BUFFER: usize = 256 * 1024;

/// Unpacks the tar `diff` into the layer `layer` whose tree is `root`;
/// answers the bytes of file content written. Reads the stream to its end,
/// padding after the end-of-archive marker included, so a caller hashing
/// what it sends sees every byte go through.
pub fn unpack(root: &Dir, layer: &str, diff: &mut dyn Read) -> DriverResult<u64> {
    let mut u = Unpacker { root, layer, written: HashSet::new(), dir_times: Vec::new(), buf: vec![0; COPY_BUFFER], bytes: 0 };
    let mut archive = tar::Archive::new(diff);
    let mut last = String::new();
    let entries = archive.entries().map_err(|e| u.failed("(the first)", "reading the layer tar", e))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| match last.is_empty() {
            true => u.failed("(the first)", "reading the layer tar", e),
            false => DriverError::io(format!("layer {layer}: reading the tar entry after {last:?}"), e),
        })?;
        last = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        u.entry(&mut entry, &last)?;
    }
    io::copy(&mut archive.into_inner(), &mut io::sink())
        .map_err(|e| DriverError::io(format!("layer {layer}: reading the end of the layer tar"), e))?;
    u.set_dir_times();
    Ok(u.bytes)
}

struct Unpacker<'a> {
    root: &'a Dir,
    layer: &'a str,
    /// Paths this layer wrote, with their ancestors: an opaque marker keeps them.
    written: HashSet<Vec<u8>>,
    /// Directory times, set last: every entry made inside a directory moves its mtime.
    dir_times: Vec<(Vec<Vec<u8>>, Meta)>,
    buf: Vec<u8>,
    bytes: u64,
}

/// An entry's metadata, with PAX overrides applied.
struct EntryMeta {
    meta: Meta,
    xattrs: Vec<(String, Vec<u8>)>,
}

/// Splits a tar path into components, dropping empty ones, `.` and a
/// leading `/` (tar paths are relative to the layer root however written);
/// None if any component is `..`.
fn components(path: &[u8]) -> Option<Vec<Vec<u8>>> {
    let mut out = Vec::new();
    for c in path.split(|b| *b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => return None,
            _ => out.push(c.to_vec()),
        }
    }
    Some(out)
}

/// A PAX time: `1700000000` or `1700000000.123456789` (negative allowed).
fn pax_time(value: &str) -> Option<libc::timespec> {
    let (sec, frac) = value.split_once('.').unwrap_or((value, ""));
    let sec: i64 = sec.parse().ok()?;
    let digits: String = frac.chars().take(9).collect();
    let nsec = match digits.is_empty() {
        true => 0,
        false => digits.parse::<i64>().ok()? * 10i64.pow(9 - digits.len() as u32),
    };
    Some(match (sec < 0 || value.starts_with('-')) && nsec > 0 {
        // -1.5 is one and a half seconds before the epoch: -2 s + 0.5 s.
        true => at::timespec(sec - 1, 1_000_000_000 - nsec),
        false => at::timespec(sec, nsec),
    })
}

impl Unpacker<'_> {
    fn bad(&self, shown: &str, what: impl std::fmt::Display) -> DriverError {
        DriverError::InvalidArgument(format!("layer {}: tar entry {shown:?}: {what}", self.layer))
    }

    fn failed(&self, shown: &str, what: impl std::fmt::Display, e: io::Error) -> DriverError {
        DriverError::io(format!("layer {}: tar entry {shown:?}: {what}", self.layer), e)
    }

    fn entry<R: Read>(&mut self, entry: &mut tar::Entry<'_, R>, shown: &str) -> DriverResult<()> {
        let kind = entry.header().entry_type();
        if kind.is_pax_global_extensions() {
            return Ok(());
        }
        let comps = components(&entry.path_bytes())
            .ok_or_else(|| self.bad(shown, "the path has a `..` component; it could reach outside the layer"))?;
        if let Some((name, dir)) = comps.split_last() {
            if name.as_slice() == OPAQUE {
                return self.opaque(dir, shown);
            }
            if name.starts_with(b".wh..wh.") {
                // Other AUFS bookkeeping (.wh..wh.plnk, ...): not content.
                return Ok(());
            }
            if let Some(hidden) = name.strip_prefix(WHITEOUT) {
                return self.whiteout(dir, hidden, shown);
            }
        }
        // After the markers, whose owner and mode mean nothing.
        let meta = self.meta(entry, shown)?;
        use tar::EntryType as T;
        match kind {
            T::Directory => return self.directory(&comps, &meta, shown),
            _ if comps.is_empty() => return Err(self.bad(shown, "only a directory may name the layer root")),
            T::Regular | T::Continuous | T::GNUSparse => self.regular(entry, &comps, &meta, shown)?,
            T::Symlink => {
                let target = entry.link_name_bytes().ok_or_else(|| self.bad(shown, "a symlink without a target"))?;
                let target = target.into_owned();
                self.symlink(&comps, &target, &meta, shown)?;
            }
            T::Link => {
                let target = entry.link_name_bytes().ok_or_else(|| self.bad(shown, "a hard link without a target"))?;
                let target = target.into_owned();
                self.hardlink(&comps, &target, shown)?;
            }
            T::Char | T::Block | T::Fifo => {
                let h = entry.header();
                let number = |n: io::Result<Option<u32>>| n.map(Option::unwrap_or_default);
                let (major, minor) = match kind {
                    // GNU tar leaves a fifo's device fields blank: never read them for one.
                    T::Fifo => (0, 0),
                    _ => (
                        number(h.device_major()).map_err(|e| self.failed(shown, "reading the device major", e))?,
                        number(h.device_minor()).map_err(|e| self.failed(shown, "reading the device minor", e))?,
                    ),
                };
                let ftype = match kind {
                    T::Char => libc::S_IFCHR,
                    T::Block => libc::S_IFBLK,
                    _ => libc::S_IFIFO,
                };
                self.node(&comps, ftype, libc::makedev(major, minor), &meta, shown)?;
            }
            other => return Err(self.bad(shown, format!("entry type {other:?} is not layer content"))),
        }
        self.mark_written(&comps);
        Ok(())
    }

    fn meta<R: Read>(&self, entry: &mut tar::Entry<'_, R>, shown: &str) -> DriverResult<EntryMeta> {
        let h = entry.header();
        let field = |r: io::Result<u64>, what: &str| r.map_err(|e| self.failed(shown, format!("reading its {what}"), e));
        let mode = field(h.mode().map(u64::from), "mode")? as libc::mode_t & 0o7777;
        let id = |v: u64, what: &str| u32::try_from(v).map_err(|_| self.bad(shown, format!("{what} {v} is out of range")));
        let uid = id(field(h.uid(), "uid")?, "uid")?;
        let gid = id(field(h.gid(), "gid")?, "gid")?;
        let secs = field(h.mtime(), "mtime")?;
        let mut mtime = at::timespec(i64::try_from(secs).unwrap_or(i64::MAX), 0);
        let mut atime = None;
        let mut xattrs = Vec::new();
        let pax = entry.pax_extensions().map_err(|e| self.failed(shown, "reading its PAX header", e))?;
        for ext in pax.into_iter().flatten() {
            let ext = ext.map_err(|e| self.failed(shown, "reading its PAX header", e))?;
            let Ok(key) = ext.key() else { continue };
            if let Some(name) = key.strip_prefix("SCHILY.xattr.") {
                // Overlay's own metadata means nothing in a bind-mounted tree.
                if !name.starts_with("trusted.overlay.") {
                    xattrs.push((name.to_string(), ext.value_bytes().to_vec()));
                }
            } else if key == "mtime" {
                mtime = ext.value().ok().and_then(pax_time).unwrap_or(mtime);
            } else if key == "atime" {
                atime = ext.value().ok().and_then(pax_time);
            }
        }
        Ok(EntryMeta { meta: Meta { mode, uid, gid, atime: atime.unwrap_or(mtime), mtime }, xattrs })
    }

    /// The directory `comps` below the root, made (0755, as tar does) where
    /// missing if `create`, else None where missing. A symlink or a file on
    /// the way is refused.
    fn dir(&self, comps: &[Vec<u8>], create: bool, shown: &str) -> DriverResult<Option<Dir>> {
        let mut dir = self.root.again().map_err(|e| self.failed(shown, "opening the layer root", e))?;
        for (i, c) in comps.iter().enumerate() {
            let here = || String::from_utf8_lossy(&comps[..=i].join(&b'/')).into_owned();
            let st = dir.stat_if_any(c).map_err(|e| self.failed(shown, format!("looking at {}", here()), e))?;
            match st.map(|st| file_type(st.st_mode)) {
                None if create => {
                    // chmod too: mkdir's mode passes through the daemon's umask.
                    let made = match dir.mkdir(c, 0o755) {
                        Err(e) if errno(&e) == libc::EEXIST => Ok(()),
                        made => made.and_then(|()| dir.chmod(c, 0o755)),
                    };
                    made.map_err(|e| self.failed(shown, format!("making its parent directory {}", here()), e))?;
                }
                None => return Ok(None),
                Some(libc::S_IFDIR) => {}
                Some(libc::S_IFLNK) => {
                    return Err(self.bad(
                        shown,
                        format!(
                            "its parent {} is a symlink in this layer; linkvfs does not unpack through symlinks, \
                             which could lead outside the layer",
                            here()
                        ),
                    ))
                }
                Some(_) => return Err(self.bad(shown, format!("its parent {} is not a directory", here()))),
            }
            dir = dir.sub(c).map_err(|e| self.failed(shown, format!("opening its parent directory {}", here()), e))?;
        }
        Ok(Some(dir))
    }

    /// The entry's parent directory (made if missing) and its name.
    fn place<'c>(&self, comps: &'c [Vec<u8>], shown: &str) -> DriverResult<(Dir, &'c [u8])> {
        let (name, parent) = comps.split_last().ok_or_else(|| self.bad(shown, "an empty path"))?;
        let dir = self.dir(parent, true, shown)?.ok_or_else(|| self.bad(shown, "its parent directory is missing"))?;
        Ok((dir, name))
    }

    /// Makes room for a new entry `name` in `dir`: unlinks what is there (a
    /// directory with everything below it), except a directory when the new
    /// entry is one too; answers whether it kept one.
    fn clear(&self, dir: &Dir, name: &[u8], new_is_dir: bool, shown: &str) -> DriverResult<bool> {
        let st = dir.stat_if_any(name).map_err(|e| self.failed(shown, "looking at what is there", e))?;
        let removed = match st.map(|st| file_type(st.st_mode)) {
            None => Ok(()),
            Some(libc::S_IFDIR) if new_is_dir => return Ok(true),
            Some(libc::S_IFDIR) => dir.remove_all(name),
            Some(_) => dir.unlink(name),
        };
        removed.map_err(|e| self.failed(shown, "removing what is there", e))?;
        Ok(false)
    }

    fn regular<R: Read>(&mut self, entry: &mut tar::Entry<'_, R>, comps: &[Vec<u8>], m: &EntryMeta, shown: &str) -> DriverResult<()> {
        let (dir, name) = self.place(comps, shown)?;
        self.clear(&dir, name, false, shown)?;
        let mut file = dir.create_file(name).map_err(|e| self.failed(shown, "creating the file", e))?;
        let expected = entry.size();
        let mut total = 0u64;
        loop {
            let n = match entry.read(&mut self.buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(self.failed(shown, "reading its content", e)),
            };
            file.write_all(&self.buf[..n]).map_err(|e| self.failed(shown, "writing the file", e))?;
            total += n as u64;
        }
        if total < expected && entry.header().entry_type() != tar::EntryType::GNUSparse {
            return Err(self.bad(shown, format!("the tar is truncated: {total} of {expected} content bytes")));
        }
        at::set_fd_meta(file.as_raw_fd(), &m.meta, &m.xattrs, shown)
            .map_err(|e| self.failed(shown, "setting owner, mode, xattrs and times", e))?;
        self.bytes += total;
        Ok(())
    }

    fn directory(&mut self, comps: &[Vec<u8>], m: &EntryMeta, shown: &str) -> DriverResult<()> {
        let dir = match comps.split_last() {
            None => self.root.again().map_err(|e| self.failed(shown, "opening the layer root", e))?,
            Some((name, _)) => {
                let (parent, _) = self.place(comps, shown)?;
                if !self.clear(&parent, name, true, shown)? {
                    parent.mkdir(name, 0o700).map_err(|e| self.failed(shown, "making the directory", e))?;
                }
                parent.sub(name).map_err(|e| self.failed(shown, "opening the directory", e))?
            }
        };
        // Its times are set at the end; owner, xattrs and mode now.
        let meta = Meta { atime: at::timespec(0, libc::UTIME_OMIT), mtime: at::timespec(0, libc::UTIME_OMIT), ..m.meta };
        dir.set_meta(&meta, &m.xattrs, shown).map_err(|e| self.failed(shown, "setting owner, mode and xattrs", e))?;
        self.dir_times.push((comps.to_vec(), m.meta));
        self.mark_written(comps);
        Ok(())
    }

    fn symlink(&mut self, comps: &[Vec<u8>], target: &[u8], m: &EntryMeta, shown: &str) -> DriverResult<()> {
        if target.is_empty() {
            return Err(self.bad(shown, "a symlink with an empty target"));
        }
        let (dir, name) = self.place(comps, shown)?;
        self.clear(&dir, name, false, shown)?;
        // The target is stored as written: the container resolves it in its own root.
        dir.symlink(target, name).map_err(|e| self.failed(shown, "making the symlink", e))?;
        dir.chown(name, m.meta.uid, m.meta.gid).map_err(|e| self.failed(shown, "setting the owner", e))?;
        dir.set_times(name, m.meta.atime, m.meta.mtime).map_err(|e| self.failed(shown, "setting the times", e))
    }

    /// A second name for an inode this layer holds (OCI: the target is a path in the same layer).
    fn hardlink(&mut self, comps: &[Vec<u8>], target: &[u8], shown: &str) -> DriverResult<()> {
        let shown_target = String::from_utf8_lossy(target).into_owned();
        let tcomps = components(target).ok_or_else(|| {
            self.bad(shown, format!("the hard link target {shown_target:?} has a `..` component; it could reach outside the layer"))
        })?;
        if tcomps == comps {
            return Ok(());
        }
        let missing = || self.bad(shown, format!("the hard link target {shown_target:?} is not in the layer"));
        let (tname, tparent) = tcomps.split_last().ok_or_else(missing)?;
        let tdir = self.dir(tparent, false, shown)?.ok_or_else(missing)?;
        let tst = tdir.stat_if_any(tname).map_err(|e| self.failed(shown, "looking at the hard link target", e))?;
        let tst = tst.ok_or_else(missing)?;
        if file_type(tst.st_mode) == libc::S_IFDIR {
            return Err(self.bad(shown, format!("the hard link target {shown_target:?} is a directory")));
        }
        let (dir, name) = self.place(comps, shown)?;
        let here = dir.stat_if_any(name).map_err(|e| self.failed(shown, "looking at what is there", e))?;
        if here.is_some_and(|st| (st.st_dev, st.st_ino) == (tst.st_dev, tst.st_ino)) {
            return Ok(());
        }
        self.clear(&dir, name, false, shown)?;
        match tdir.link(tname, &dir, name) {
            // The inode has all the links its filesystem allows: a copy reads the same.
            Err(e) if errno(&e) == libc::EMLINK => copy_inode(&tdir, tname, &tst, &dir, name),
            other => other,
        }
        .map_err(|e| self.failed(shown, format!("linking it to {shown_target:?}"), e))
    }

    fn node(&mut self, comps: &[Vec<u8>], ftype: libc::mode_t, dev: libc::dev_t, m: &EntryMeta, shown: &str) -> DriverResult<()> {
        let (dir, name) = self.place(comps, shown)?;
        self.clear(&dir, name, false, shown)?;
        dir.mknod(name, ftype | m.meta.mode, dev).map_err(|e| self.failed(shown, "making the device node or fifo", e))?;
        let meta = m.meta;
        let set = || {
            dir.chown(name, meta.uid, meta.gid)?;
            dir.chmod(name, meta.mode)?;
            dir.set_times(name, meta.atime, meta.mtime)
        };
        set().map_err(|e| self.failed(shown, "setting owner, mode and times", e))
    }

    fn whiteout(&mut self, dir: &[Vec<u8>], hidden: &[u8], shown: &str) -> DriverResult<()> {
        if matches!(hidden, b"" | b"." | b"..") {
            return Err(self.bad(shown, "a whiteout that names nothing"));
        }
        // Nothing to hide where the directory does not exist.
        let Some(dir) = self.dir(dir, false, shown)? else { return Ok(()) };
        dir.remove_all(hidden).map_err(|e| self.failed(shown, "deleting the whited-out path", e))
    }

    fn opaque(&mut self, comps: &[Vec<u8>], shown: &str) -> DriverResult<()> {
        let Some(dir) = self.dir(comps, false, shown)? else { return Ok(()) };
        self.remove_lower(&dir, &comps.join(&b'/')).map_err(|e| self.failed(shown, "emptying the opaque directory", e))
    }

    /// Removes everything below `dir` this layer did not write.
    fn remove_lower(&self, dir: &Dir, rel: &[u8]) -> io::Result<()> {
        for name in dir.entries()? {
            let path = join(rel, &name);
            if !self.written.contains(&path) {
                dir.remove_all(&name)?;
            } else if dir.stat(&name).map(|st| file_type(st.st_mode) == libc::S_IFDIR)? {
                self.remove_lower(&dir.sub(&name)?, &path)?;
            }
        }
        Ok(())
    }

    fn mark_written(&mut self, comps: &[Vec<u8>]) {
        for n in (1..=comps.len()).rev() {
            if !self.written.insert(comps[..n].join(&b'/')) {
                break;
            }
        }
    }

    /// Puts back the directories' times from the tar, now that their contents exist.
    fn set_dir_times(&mut self) {
        for (comps, meta) in std::mem::take(&mut self.dir_times) {
            // A later entry may have deleted or replaced the directory: then there is nothing to date.
            let Ok(Some(dir)) = self.dir(&comps, false, "") else { continue };
            if let Err(e) = dir.set_times(b"", meta.atime, meta.mtime) {
                let path = String::from_utf8_lossy(&comps.join(&b'/')).into_owned();
                let message = format!("linkvfs: layer {}: cannot date directory {path:?}: {e}", self.layer);
                berth_sdk::log(berth_sdk::LogLevel::Warn, &message);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_split_and_dotdot_refused() {
        assert_eq!(components(b"/etc//./passwd"), Some(vec![b"etc".to_vec(), b"passwd".to_vec()]));
        assert_eq!(components(b"./"), Some(vec![]));
        assert_eq!(components(b"a/../b"), None);
        assert_eq!(components(b"/../../x"), None);
    }

    #[test]
    fn pax_times_parse() {
        let t = pax_time("1700000000.5").expect("time");
        assert_eq!((t.tv_sec, t.tv_nsec), (1_700_000_000, 500_000_000));
        let t = pax_time("-1.5").expect("time");
        assert_eq!((t.tv_sec, t.tv_nsec), (-2, 500_000_000));
        assert!(pax_time("soon").is_none());
    }
}
