//! Safe layer-tar apply, shared by both storage drivers.
//!
//! The `tar` crate only parses; every file is created here, relative to a
//! directory descriptor of the layer root, and every parent directory is
//! resolved with openat2(RESOLVE_IN_ROOT), so symlinks in the layer (even ones
//! the same tar just made, like `tmp -> /tmp`) resolve inside the layer and
//! never on the host. Entries whose path climbs out with `..` are rejected.
//! Nothing is ever created outside the layer root.
//!
//! This is the hot path of `load`: parent directories are cached as open
//! descriptors, content is copied with a large buffer, and nothing is fsynced
//! per file; the caller makes the layer durable once.

use std::cell::Cell;
use std::collections::{HashMap, HashSet, VecDeque};
use std::io::{self, Read};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::path::Path;
use std::rc::Rc;

use berth_model::drivers::{DriverError, DriverResult};

use super::sys;

/// How OCI whiteouts become real files in the driver's layer directories.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Whiteouts {
    /// Overlay: `.wh.<name>` becomes a char device 0/0 named `<name>`, and
    /// `.wh..wh..opq` the xattr `trusted.overlay.opaque=y` on its directory.
    Overlay,
    /// Full copies: the layer already holds its parent's tree, so a whiteout
    /// deletes `<name>` and an opaque marker deletes what the lower layers put
    /// in the directory (keeping this layer's own entries).
    Vfs,
}

/// The OCI whiteout prefix.
pub const WHITEOUT_PREFIX: &[u8] = b".wh.";
/// The OCI opaque-directory marker.
pub const OPAQUE_MARKER: &[u8] = b".wh..wh..opq";
/// Overlay's opaque-directory xattr.
pub const OVERLAY_OPAQUE_XATTR: &str = "trusted.overlay.opaque";

const COPY_BUFFER: usize = 1 << 20;
/// Open directory descriptors kept between entries; tars group entries by
/// directory, so a modest cache avoids nearly all re-resolution.
const DIR_CACHE_LIMIT: usize = 512;
/// Symlinks followed while creating one missing parent chain (as the kernel's ELOOP).
const MAX_SYMLINKS: usize = 40;

/// Applies the uncompressed OCI layer tar `diff` to the directory `root`,
/// converting whiteouts as `whiteouts` says. Returns the bytes of file content
/// written. The whole stream is read, including padding after the archive's
/// end, so a caller hashing it sees every byte.
pub fn apply_layer(root: &Path, diff: &mut dyn Read, whiteouts: Whiteouts) -> DriverResult<u64> {
    let root_fd =
        sys::open_dir_path(root).map_err(|e| DriverError::io(format!("opening layer directory {}", root.display()), e))?;
    let mut applier = Applier {
        root: Rc::new(root_fd),
        whiteouts,
        dirs: HashMap::new(),
        dir_times: Vec::new(),
        written: HashSet::new(),
        buf: vec![0u8; COPY_BUFFER],
        bytes: 0,
    };
    let eof = Cell::new(false);
    let mut reader = EofReader { inner: diff, eof: &eof };
    let mut last: Option<String> = None;
    {
        let mut archive = tar::Archive::new(&mut reader);
        let entries = archive.entries().map_err(|e| DriverError::io("reading layer tar", e))?;
        for entry in entries {
            let mut entry = entry.map_err(|e| {
                if eof.get() {
                    let at = last.as_deref().map_or("its first entry".to_string(), |l| format!("entry {l:?}"));
                    DriverError::InvalidArgument(format!("layer tar is truncated: it ends inside the header after {at}: {e}"))
                } else {
                    DriverError::io(after(&last), e)
                }
            })?;
            let shown = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
            applier.entry(&mut entry, &shown)?;
            last = Some(shown);
        }
    }
    if eof.get() {
        if let Some(last) = &last {
            return Err(DriverError::InvalidArgument(format!(
                "layer tar is truncated: it ends after entry {last:?} without the end-of-archive marker"
            )));
        }
    }
    // Drain the zero padding after the end marker.
    io::copy(&mut reader, &mut io::sink()).map_err(|e| DriverError::io("reading the end of the layer tar", e))?;
    applier.finish()?;
    Ok(applier.bytes)
}

fn after(last: &Option<String>) -> String {
    match last {
        Some(name) => format!("reading layer tar after entry {name:?}"),
        None => "reading layer tar header".to_string(),
    }
}

/// Remembers whether the source ran dry, which tells a missing end-of-archive
/// marker (a truncated stream) from a complete archive.
struct EofReader<'a> {
    inner: &'a mut dyn Read,
    eof: &'a Cell<bool>,
}

impl Read for EofReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n == 0 && !buf.is_empty() {
            self.eof.set(true);
        }
        Ok(n)
    }
}

/// The metadata of one entry, with PAX overrides applied.
struct Meta {
    mode: libc::mode_t,
    uid: u32,
    gid: u32,
    atime: libc::timespec,
    mtime: libc::timespec,
    xattrs: Vec<(String, Vec<u8>)>,
}

/// Parses a PAX time (`1700000000.123456789`).
fn pax_time(value: &str) -> Option<libc::timespec> {
    let (sec, frac) = value.split_once('.').unwrap_or((value, ""));
    let sec: i64 = sec.parse().ok()?;
    let mut nsec: i64 = 0;
    if !frac.is_empty() {
        let digits: String = frac.chars().take(9).collect();
        nsec = digits.parse::<i64>().ok()? * 10i64.pow(9 - digits.len() as u32);
        if sec < 0 && nsec > 0 {
            return Some(sys::timespec(sec - 1, 1_000_000_000 - nsec));
        }
    }
    Some(sys::timespec(sec, nsec))
}

/// Splits a tar path into components, dropping `.`, empty ones and a leading
/// `/`, and resolving `..` lexically; None if `..` climbs above the root.
fn normalize(path: &[u8]) -> Option<Vec<Vec<u8>>> {
    let mut out: Vec<Vec<u8>> = Vec::new();
    for c in path.split(|b| *b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => {
                out.pop()?;
            }
            _ => out.push(c.to_vec()),
        }
    }
    Some(out)
}

fn join_all(comps: &[Vec<u8>]) -> Vec<u8> {
    comps.join(&b'/')
}

struct Applier {
    root: Rc<OwnedFd>,
    whiteouts: Whiteouts,
    /// Parent directories by their path in the tar, as open descriptors.
    dirs: HashMap<Vec<u8>, Rc<OwnedFd>>,
    /// Directory mtimes, set at the end: creating entries changes them.
    dir_times: Vec<(Vec<u8>, libc::timespec, libc::timespec)>,
    /// Vfs only: paths this layer wrote (and their ancestors), which an
    /// opaque marker must keep.
    written: HashSet<Vec<u8>>,
    buf: Vec<u8>,
    bytes: u64,
}

fn invalid(shown: &str, what: impl std::fmt::Display) -> DriverError {
    DriverError::InvalidArgument(format!("layer tar entry {shown:?}: {what}"))
}

fn io_err(shown: &str, what: &str, e: io::Error) -> DriverError {
    DriverError::io(format!("layer tar entry {shown:?}: {what}"), e)
}

fn errno(e: &io::Error) -> i32 {
    e.raw_os_error().unwrap_or(0)
}

impl Applier {
    fn entry<R: Read>(&mut self, entry: &mut tar::Entry<'_, R>, shown: &str) -> DriverResult<()> {
        let kind = entry.header().entry_type();
        if kind.is_pax_global_extensions() {
            return Ok(());
        }
        let raw_path = entry.path_bytes().into_owned();
        let comps =
            normalize(&raw_path).ok_or_else(|| invalid(shown, "path climbs out of the layer root with `..` (breakout)"))?;
        let meta = self.meta(entry, shown)?;

        if let Some(name) = comps.last() {
            if name.as_slice() == OPAQUE_MARKER {
                return self.opaque(&comps[..comps.len() - 1], shown);
            }
            if name.starts_with(b".wh..wh.") {
                // Other AUFS metadata (.wh..wh.plnk, .wh..wh.aufs): not content.
                return Ok(());
            }
            if let Some(target) = name.strip_prefix(WHITEOUT_PREFIX) {
                let mut target_comps = comps[..comps.len() - 1].to_vec();
                target_comps.push(target.to_vec());
                return self.whiteout(&target_comps, &meta, shown);
            }
        }

        use tar::EntryType as T;
        match kind {
            T::Directory => self.directory(&comps, &meta, shown),
            _ if comps.is_empty() => Err(invalid(shown, "only a directory may name the layer root")),
            T::Regular | T::Continuous | T::GNUSparse => self.regular(entry, &comps, &meta, shown),
            T::Symlink => {
                let target = entry.link_name_bytes().ok_or_else(|| invalid(shown, "symlink without a target"))?;
                let target = target.into_owned();
                self.symlink(&comps, &target, &meta, shown)
            }
            T::Link => {
                let target = entry.link_name_bytes().ok_or_else(|| invalid(shown, "hard link without a target"))?;
                let target = target.into_owned();
                self.hardlink(&comps, &target, shown)
            }
            T::Fifo => self.node(&comps, libc::S_IFIFO, 0, &meta, shown),
            T::Char | T::Block => {
                // Only device entries carry numbers: GNU tar leaves a fifo's
                // device fields empty, so they are never read for one.
                let h = entry.header();
                let major = h.device_major().map_err(|e| io_err(shown, "reading device major", e))?.unwrap_or(0);
                let minor = h.device_minor().map_err(|e| io_err(shown, "reading device minor", e))?.unwrap_or(0);
                let ftype = if kind == T::Char { libc::S_IFCHR } else { libc::S_IFBLK };
                self.node(&comps, ftype, libc::makedev(major, minor), &meta, shown)
            }
            other => Err(invalid(shown, format!("unsupported tar entry type {:?}", other))),
        }
    }

    fn meta<R: Read>(&self, entry: &mut tar::Entry<'_, R>, shown: &str) -> DriverResult<Meta> {
        let h = entry.header();
        let mode = h.mode().map_err(|e| io_err(shown, "reading mode", e))? & 0o7777;
        let uid = h.uid().map_err(|e| io_err(shown, "reading uid", e))?;
        let gid = h.gid().map_err(|e| io_err(shown, "reading gid", e))?;
        let mtime = h.mtime().map_err(|e| io_err(shown, "reading mtime", e))?;
        let uid = u32::try_from(uid).map_err(|_| invalid(shown, format!("uid {uid} out of range")))?;
        let gid = u32::try_from(gid).map_err(|_| invalid(shown, format!("gid {gid} out of range")))?;
        let mut mtime = sys::timespec(mtime.min(i64::MAX as u64) as i64, 0);
        let mut atime = None;
        let mut xattrs = Vec::new();
        if let Some(exts) = entry.pax_extensions().map_err(|e| io_err(shown, "reading PAX header", e))? {
            for ext in exts {
                let ext = ext.map_err(|e| io_err(shown, "reading PAX header", e))?;
                let Ok(key) = ext.key() else { continue };
                if let Some(name) = key.strip_prefix("SCHILY.xattr.") {
                    xattrs.push((name.to_string(), ext.value_bytes().to_vec()));
                } else if key == "mtime" {
                    if let Some(t) = ext.value().ok().and_then(pax_time) {
                        mtime = t;
                    }
                } else if key == "atime" {
                    atime = ext.value().ok().and_then(pax_time);
                }
            }
        }
        Ok(Meta { mode, uid, gid, atime: atime.unwrap_or(mtime), mtime, xattrs })
    }

    /// The directory `comps` (relative to the root) as an open descriptor.
    /// With `create`, missing directories are made (mode 0755, as tar does),
    /// following symlinks inside the root; without, a missing one is None.
    fn dir(&mut self, comps: &[Vec<u8>], create: bool, shown: &str) -> DriverResult<Option<Rc<OwnedFd>>> {
        if comps.is_empty() {
            return Ok(Some(self.root.clone()));
        }
        let key = join_all(comps);
        if let Some(fd) = self.dirs.get(&key) {
            return Ok(Some(fd.clone()));
        }
        let resolve = libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_MAGICLINKS;
        let fd = match sys::openat2(self.root.as_raw_fd(), &key, libc::O_RDONLY | libc::O_DIRECTORY, resolve) {
            Ok(fd) => fd,
            Err(e) if matches!(errno(&e), libc::ENOENT | libc::ELOOP) && create => self
                .mkdir_p(comps)
                .map_err(|e| io_err(shown, &format!("creating parent directory {}", String::from_utf8_lossy(&key)), e))?,
            Err(e) if errno(&e) == libc::ENOENT => return Ok(None),
            Err(e) => {
                return Err(io_err(shown, &format!("opening parent directory {}", String::from_utf8_lossy(&key)), e));
            }
        };
        if self.dirs.len() >= DIR_CACHE_LIMIT {
            self.dirs.clear();
        }
        let fd = Rc::new(fd);
        self.dirs.insert(key, fd.clone());
        Ok(Some(fd))
    }

    /// Creates the missing directories of `comps`, resolving symlinks met on
    /// the way as the kernel would with the layer root as `/`. A symlink that
    /// resolves to itself (`tmp -> /tmp` seen from inside the layer) cannot
    /// lead anywhere, so it is replaced by the directory it names: the entry
    /// lands in the layer's own `tmp/`, never in the host's.
    fn mkdir_p(&mut self, comps: &[Vec<u8>]) -> io::Result<OwnedFd> {
        let mut stack: Vec<OwnedFd> = Vec::new();
        // The path of each descriptor in `stack`, relative to the root.
        let mut names: Vec<Vec<u8>> = Vec::new();
        let mut todo: VecDeque<Vec<u8>> = comps.iter().cloned().collect();
        let mut links = 0;
        while let Some(c) = todo.pop_front() {
            match c.as_slice() {
                b"" | b"." => continue,
                b".." => {
                    // At the root, `..` stays at the root (RESOLVE_IN_ROOT's rule).
                    stack.pop();
                    names.pop();
                    continue;
                }
                _ => {}
            }
            let cur = stack.last().map_or(self.root.as_raw_fd(), |f| f.as_raw_fd());
            match sys::lstat_at(cur, &c) {
                Err(e) if errno(&e) == libc::ENOENT => {
                    match sys::mkdirat(cur, &c, 0o755) {
                        Err(e) if errno(&e) != libc::EEXIST => return Err(e),
                        _ => {}
                    }
                    stack.push(sys::open_subdir(cur, &c)?);
                    names.push(c);
                }
                Err(e) => return Err(e),
                Ok(st) if sys::file_type(st.st_mode) == libc::S_IFDIR => {
                    stack.push(sys::open_subdir(cur, &c)?);
                    names.push(c);
                }
                Ok(st) if sys::file_type(st.st_mode) == libc::S_IFLNK => {
                    links += 1;
                    if links > MAX_SYMLINKS {
                        return Err(io::Error::from_raw_os_error(libc::ELOOP));
                    }
                    let target = sys::readlinkat(cur, &c)?;
                    let absolute = target.first() == Some(&b'/');
                    let mut resolved: Vec<Vec<u8>> = if absolute { Vec::new() } else { names.clone() };
                    for part in target.split(|b| *b == b'/') {
                        match part {
                            b"" | b"." => {}
                            b".." => {
                                resolved.pop();
                            }
                            _ => resolved.push(part.to_vec()),
                        }
                    }
                    let mut own = names.clone();
                    own.push(c.clone());
                    if resolved == own {
                        tracing::warn!(
                            symlink = %String::from_utf8_lossy(&join_all(&own)),
                            "layer symlink points at itself; replacing it with a directory to extract entries below it"
                        );
                        sys::unlinkat(cur, &c, false)?;
                        self.dirs.clear();
                        sys::mkdirat(cur, &c, 0o755)?;
                        stack.push(sys::open_subdir(cur, &c)?);
                        names.push(c);
                        continue;
                    }
                    if absolute {
                        stack.clear();
                        names.clear();
                    }
                    for part in target.split(|b| *b == b'/').rev() {
                        todo.push_front(part.to_vec());
                    }
                }
                Ok(_) => return Err(io::Error::from_raw_os_error(libc::ENOTDIR)),
            }
        }
        match stack.pop() {
            Some(fd) => Ok(fd),
            None => sys::open_subdir(self.root.as_raw_fd(), b"."),
        }
    }

    /// Makes room for a new entry `name` in `dir`: removes what is there,
    /// except a directory when the new entry is one too (returns true then).
    fn clear_existing(&mut self, dir: RawFd, name: &[u8], new_is_dir: bool) -> io::Result<bool> {
        let st = match sys::lstat_at(dir, name) {
            Ok(st) => st,
            Err(e) if errno(&e) == libc::ENOENT => return Ok(false),
            Err(e) => return Err(e),
        };
        match sys::file_type(st.st_mode) {
            libc::S_IFDIR if new_is_dir => return Ok(true),
            libc::S_IFDIR => sys::remove_all_at(dir, name)?,
            libc::S_IFLNK => sys::unlinkat(dir, name, false)?,
            _ => {
                sys::unlinkat(dir, name, false)?;
                return Ok(false);
            }
        }
        // A directory or symlink went away: cached descriptors may lead through it.
        self.dirs.clear();
        Ok(false)
    }

    fn mark_written(&mut self, comps: &[Vec<u8>]) {
        if self.whiteouts != Whiteouts::Vfs {
            return;
        }
        for n in (1..=comps.len()).rev() {
            if !self.written.insert(join_all(&comps[..n])) {
                break;
            }
        }
    }

    fn parent_and_name<'c>(&mut self, comps: &'c [Vec<u8>], shown: &str) -> DriverResult<(Rc<OwnedFd>, &'c [u8])> {
        let (name, parent) = comps.split_last().ok_or_else(|| invalid(shown, "empty path"))?;
        let dir = self.dir(parent, true, shown)?.ok_or_else(|| invalid(shown, "parent directory missing"))?;
        Ok((dir, name))
    }

    fn set_xattrs(&self, shown: &str, set: impl Fn(&str, &[u8]) -> io::Result<()>, meta: &Meta) -> DriverResult<()> {
        for (key, value) in &meta.xattrs {
            // A layer must not forge overlay's own metadata (redirects,
            // metacopy, opaque): only the whiteout conversion sets those.
            if key.starts_with("trusted.overlay.") {
                continue;
            }
            match set(key, value) {
                Ok(()) => {}
                Err(e) if errno(&e) == libc::ENOTSUP => {
                    tracing::warn!(entry = shown, xattr = key.as_str(), "filesystem does not support this xattr; skipped");
                }
                Err(e) => return Err(io_err(shown, &format!("setting xattr {key}"), e)),
            }
        }
        Ok(())
    }

    fn regular<R: Read>(&mut self, entry: &mut tar::Entry<'_, R>, comps: &[Vec<u8>], meta: &Meta, shown: &str) -> DriverResult<()> {
        let (dir, name) = self.parent_and_name(comps, shown)?;
        let flags = libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL;
        let file = match sys::openat(dir.as_raw_fd(), name, flags, 0o600) {
            Ok(f) => f,
            Err(e) if errno(&e) == libc::EEXIST => {
                self.clear_existing(dir.as_raw_fd(), name, false).map_err(|e| io_err(shown, "replacing existing entry", e))?;
                sys::openat(dir.as_raw_fd(), name, flags, 0o600).map_err(|e| io_err(shown, "creating file", e))?
            }
            Err(e) => return Err(io_err(shown, "creating file", e)),
        };
        let fd = file.as_raw_fd();
        let expected = entry.size();
        let mut total: u64 = 0;
        loop {
            // Fill the whole buffer first: the source may hand out small
            // chunks, and fewer, larger writes are cheaper.
            let mut filled = 0;
            while filled < self.buf.len() {
                match entry.read(&mut self.buf[filled..]) {
                    Ok(0) => break,
                    Ok(n) => filled += n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(io_err(shown, "reading content", e)),
                }
            }
            if filled == 0 {
                break;
            }
            sys::write_all(fd, &self.buf[..filled]).map_err(|e| io_err(shown, "writing content", e))?;
            total += filled as u64;
        }
        if total < expected && entry.header().entry_type() != tar::EntryType::GNUSparse {
            return Err(invalid(shown, format!("layer tar is truncated: only {total} of {expected} content bytes")));
        }
        self.bytes += total;
        sys::fchown(fd, meta.uid, meta.gid).map_err(|e| io_err(shown, "setting owner", e))?;
        // After chown, which clears set-id bits.
        sys::fchmod(fd, meta.mode).map_err(|e| io_err(shown, "setting mode", e))?;
        self.set_xattrs(shown, |k, v| sys::fsetxattr(fd, k, v), meta)?;
        sys::futimens(fd, meta.atime, meta.mtime).map_err(|e| io_err(shown, "setting mtime", e))?;
        self.mark_written(comps);
        Ok(())
    }

    fn directory(&mut self, comps: &[Vec<u8>], meta: &Meta, shown: &str) -> DriverResult<()> {
        let fd = if comps.is_empty() {
            self.root.clone()
        } else {
            let (dir, name) = self.parent_and_name(comps, shown)?;
            match sys::mkdirat(dir.as_raw_fd(), name, 0o700) {
                Ok(()) => {}
                Err(e) if errno(&e) == libc::EEXIST => {
                    let kept = self
                        .clear_existing(dir.as_raw_fd(), name, true)
                        .map_err(|e| io_err(shown, "replacing existing entry", e))?;
                    if !kept {
                        sys::mkdirat(dir.as_raw_fd(), name, 0o700).map_err(|e| io_err(shown, "creating directory", e))?;
                    }
                }
                Err(e) => return Err(io_err(shown, "creating directory", e)),
            }
            let fd = Rc::new(sys::open_subdir(dir.as_raw_fd(), name).map_err(|e| io_err(shown, "opening directory", e))?);
            if self.dirs.len() >= DIR_CACHE_LIMIT {
                self.dirs.clear();
            }
            self.dirs.insert(join_all(comps), fd.clone());
            fd
        };
        let raw = fd.as_raw_fd();
        sys::fchown(raw, meta.uid, meta.gid).map_err(|e| io_err(shown, "setting owner", e))?;
        sys::fchmod(raw, meta.mode).map_err(|e| io_err(shown, "setting mode", e))?;
        self.set_xattrs(shown, |k, v| sys::fsetxattr(raw, k, v), meta)?;
        self.dir_times.push((join_all(comps), meta.atime, meta.mtime));
        self.mark_written(comps);
        Ok(())
    }

    /// Runs `create` for `name` in `dir`; if something is in the way, removes it and retries once.
    fn create_replacing(&mut self, dir: RawFd, name: &[u8], shown: &str, what: &str, create: impl Fn() -> io::Result<()>) -> DriverResult<()> {
        match create() {
            Ok(()) => Ok(()),
            Err(e) if errno(&e) == libc::EEXIST => {
                self.clear_existing(dir, name, false).map_err(|e| io_err(shown, "replacing existing entry", e))?;
                create().map_err(|e| io_err(shown, what, e))
            }
            Err(e) => Err(io_err(shown, what, e)),
        }
    }

    fn symlink(&mut self, comps: &[Vec<u8>], target: &[u8], meta: &Meta, shown: &str) -> DriverResult<()> {
        let (dir, name) = self.parent_and_name(comps, shown)?;
        let d = dir.as_raw_fd();
        self.create_replacing(d, name, shown, "creating symlink", || sys::symlinkat(target, d, name))?;
        sys::lchown_at(d, name, meta.uid, meta.gid).map_err(|e| io_err(shown, "setting owner", e))?;
        self.set_xattrs(shown, |k, v| sys::lsetxattr_at(d, name, k, v), meta)?;
        sys::lutimes_at(d, name, meta.atime, meta.mtime).map_err(|e| io_err(shown, "setting mtime", e))?;
        self.mark_written(comps);
        Ok(())
    }

    fn hardlink(&mut self, comps: &[Vec<u8>], target: &[u8], shown: &str) -> DriverResult<()> {
        let tcomps = normalize(target).ok_or_else(|| {
            invalid(shown, format!("hard link target {:?} climbs out of the layer root (breakout)", String::from_utf8_lossy(target)))
        })?;
        if tcomps == comps {
            return Ok(());
        }
        let (tname, tparent) =
            tcomps.split_last().ok_or_else(|| invalid(shown, "hard link to the layer root"))?;
        let missing = || invalid(shown, format!("hard link target {:?} does not exist in the layer", String::from_utf8_lossy(target)));
        let tdir = self.dir(tparent, false, shown)?.ok_or_else(missing)?;
        let (dir, name) = self.parent_and_name(comps, shown)?;
        let (t, d) = (tdir.as_raw_fd(), dir.as_raw_fd());
        match self.create_replacing(d, name, shown, "creating hard link", || sys::linkat(t, tname, d, name)) {
            Err(DriverError::Io { source, .. }) if errno(&source) == libc::ENOENT => return Err(missing()),
            other => other?,
        }
        self.mark_written(comps);
        Ok(())
    }

    fn node(&mut self, comps: &[Vec<u8>], ftype: libc::mode_t, dev: libc::dev_t, meta: &Meta, shown: &str) -> DriverResult<()> {
        let (dir, name) = self.parent_and_name(comps, shown)?;
        let d = dir.as_raw_fd();
        let mode = ftype | meta.mode;
        self.create_replacing(d, name, shown, "creating device node or fifo", || sys::mknodat(d, name, mode, dev))?;
        sys::lchown_at(d, name, meta.uid, meta.gid).map_err(|e| io_err(shown, "setting owner", e))?;
        sys::chmod_at(d, name, meta.mode).map_err(|e| io_err(shown, "setting mode", e))?;
        self.set_xattrs(shown, |k, v| sys::lsetxattr_at(d, name, k, v), meta)?;
        sys::lutimes_at(d, name, meta.atime, meta.mtime).map_err(|e| io_err(shown, "setting mtime", e))?;
        self.mark_written(comps);
        Ok(())
    }

    fn whiteout(&mut self, comps: &[Vec<u8>], meta: &Meta, shown: &str) -> DriverResult<()> {
        let (name, parent) = comps.split_last().ok_or_else(|| invalid(shown, "whiteout of the layer root"))?;
        if name.is_empty() || name.as_slice() == b"." || name.as_slice() == b".." {
            return Err(invalid(shown, "whiteout without a name"));
        }
        match self.whiteouts {
            Whiteouts::Overlay => {
                let (dir, name) = self.parent_and_name(comps, shown)?;
                let d = dir.as_raw_fd();
                self.clear_existing(d, name, false).map_err(|e| io_err(shown, "replacing existing entry", e))?;
                sys::mknodat(d, name, libc::S_IFCHR, 0).map_err(|e| io_err(shown, "creating whiteout device", e))?;
                // The marker's owner and time go onto the device, so exporting the layer
                // again gives the same `.wh.` entry (and the same diff digest).
                sys::lchown_at(d, name, meta.uid, meta.gid).map_err(|e| io_err(shown, "setting owner", e))?;
                sys::lutimes_at(d, name, meta.atime, meta.mtime).map_err(|e| io_err(shown, "setting mtime", e))?;
            }
            Whiteouts::Vfs => {
                let Some(dir) = self.dir(parent, false, shown)? else { return Ok(()) };
                self.clear_existing(dir.as_raw_fd(), name, false).map_err(|e| io_err(shown, "deleting whited-out entry", e))?;
            }
        }
        Ok(())
    }

    fn opaque(&mut self, dir_comps: &[Vec<u8>], shown: &str) -> DriverResult<()> {
        match self.whiteouts {
            Whiteouts::Overlay => {
                let dir = self.dir(dir_comps, true, shown)?.ok_or_else(|| invalid(shown, "opaque directory missing"))?;
                sys::fsetxattr(dir.as_raw_fd(), OVERLAY_OPAQUE_XATTR, b"y")
                    .map_err(|e| io_err(shown, "setting trusted.overlay.opaque", e))?;
                self.mark_written(dir_comps);
            }
            Whiteouts::Vfs => {
                let Some(dir) = self.dir(dir_comps, false, shown)? else { return Ok(()) };
                let rel = join_all(dir_comps);
                self.remove_lower(dir.as_raw_fd(), &rel).map_err(|e| io_err(shown, "clearing opaque directory", e))?;
                self.dirs.clear();
            }
        }
        Ok(())
    }

    /// Vfs opaque directories: removes everything below `dir` this layer did not write.
    fn remove_lower(&self, dir: RawFd, rel: &[u8]) -> io::Result<()> {
        for entry in sys::read_dir(dir)? {
            let path = sys::join(rel, &entry.name);
            if !self.written.contains(&path) {
                sys::remove_all_at(dir, &entry.name)?;
            } else if sys::file_type(sys::lstat_at(dir, &entry.name)?.st_mode) == libc::S_IFDIR {
                let sub = sys::open_subdir(dir, &entry.name)?;
                self.remove_lower(sub.as_raw_fd(), &path)?;
            }
        }
        Ok(())
    }

    /// Sets directory mtimes (now that their contents exist).
    fn finish(&mut self) -> DriverResult<()> {
        self.dirs.clear();
        let resolve = libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_MAGICLINKS;
        for (rel, atime, mtime) in std::mem::take(&mut self.dir_times) {
            let fd = match sys::openat2(self.root.as_raw_fd(), &rel, libc::O_RDONLY | libc::O_DIRECTORY, resolve) {
                Ok(fd) => fd,
                // A later entry replaced or deleted it.
                Err(e) if matches!(errno(&e), libc::ENOENT | libc::ENOTDIR) => continue,
                Err(e) => return Err(DriverError::io(format!("reopening directory {}", String::from_utf8_lossy(&rel)), e)),
            };
            sys::futimens(fd.as_raw_fd(), atime, mtime)
                .map_err(|e| DriverError::io(format!("setting mtime of directory {}", String::from_utf8_lossy(&rel)), e))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalize_rejects_breakout_and_strips_absolute() {
        assert_eq!(normalize(b"/etc/passwd"), Some(vec![b"etc".to_vec(), b"passwd".to_vec()]));
        assert_eq!(normalize(b"./a/../b"), Some(vec![b"b".to_vec()]));
        assert_eq!(normalize(b"../../escape"), None);
        assert_eq!(normalize(b"a/../../escape"), None);
        assert_eq!(normalize(b"./"), Some(vec![]));
    }

    #[test]
    fn pax_times_parse_fractions() {
        let t = pax_time("1700000000.5").expect("valid time");
        assert_eq!((t.tv_sec, t.tv_nsec), (1_700_000_000, 500_000_000));
        let t = pax_time("12").expect("valid time");
        assert_eq!((t.tv_sec, t.tv_nsec), (12, 0));
        assert!(pax_time("x").is_none());
    }
}
