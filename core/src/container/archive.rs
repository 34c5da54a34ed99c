//! `docker cp` and `docker export`: tar out of and into a container's root
//! filesystem without ever leaving it.
//!
//! Every path is resolved with openat2(RESOLVE_IN_ROOT) from a directory fd
//! of the container's root, and trees are walked by fd with O_NOFOLLOW, so a
//! symlink planted in the container (or swapped in during the copy) resolves
//! inside the container's root, never on the host. A running container's
//! root is its init's `/proc/<pid>/root`; a stopped one's is mounted for the
//! duration of the operation in the daemon's mount namespace.

use std::collections::HashMap;
use std::ffi::CString;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use berth_model::container::{ContainerRecord, Status};

use crate::error::{EngineError, EngineResult};
use super::{ContainerService, PathStat};

const RESOLVE_IN_ROOT: u64 = 0x10;
const RESOLVE_NO_MAGICLINKS: u64 = 0x02;

/// A directory fd of a container's root, and the temporary mount behind it if any.
pub(crate) struct RootFs {
    fd: Option<OwnedFd>,
    mount: Option<PathBuf>,
}

impl RootFs {
    fn fd(&self) -> RawFd {
        self.fd.as_ref().map(|f| f.as_raw_fd()).unwrap_or(-1)
    }
}

impl Drop for RootFs {
    fn drop(&mut self) {
        // The fd goes first, or the unmount would find the mount busy.
        self.fd.take();
        if let Some(m) = self.mount.take() {
            if let Err(e) = berth_runtime::mount::unmount(&m) {
                tracing::warn!(path = %m.display(), error = %e, "unmounting a container's temporary rootfs mount");
            }
            if let Err(e) = std::fs::remove_dir(&m) {
                tracing::warn!(path = %m.display(), error = %e, "removing a temporary mount point");
            }
        }
    }
}

fn cstr(bytes: &[u8]) -> io::Result<CString> {
    CString::new(bytes).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains a NUL byte"))
}

fn check(rc: libc::c_int) -> io::Result<libc::c_int> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

/// openat2(2) with RESOLVE_IN_ROOT: `path` is resolved as if `root` were `/`.
fn open_in_root(root: RawFd, path: &[u8], flags: libc::c_int) -> io::Result<OwnedFd> {
    #[repr(C)]
    struct OpenHow {
        flags: u64,
        mode: u64,
        resolve: u64,
    }
    let rel: &[u8] = if path.is_empty() { b"." } else { path };
    let p = cstr(rel)?;
    let how =
        OpenHow { flags: (flags | libc::O_CLOEXEC) as u64, mode: 0, resolve: RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS };
    loop {
        // SAFETY: valid NUL-terminated path and a properly sized open_how.
        let fd = unsafe {
            libc::syscall(libc::SYS_openat2, root, p.as_ptr(), &how as *const OpenHow, std::mem::size_of::<OpenHow>())
        };
        if fd >= 0 {
            // SAFETY: the kernel just returned this fd to us.
            return Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) });
        }
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EAGAIN) && e.raw_os_error() != Some(libc::EINTR) {
            return Err(e);
        }
    }
}

fn openat(dir: RawFd, name: &[u8], flags: libc::c_int, mode: libc::mode_t) -> io::Result<OwnedFd> {
    let n = cstr(name)?;
    // SAFETY: valid NUL-terminated name.
    let fd = check(unsafe { libc::openat(dir, n.as_ptr(), flags | libc::O_CLOEXEC, mode as libc::c_uint) })?;
    // SAFETY: the kernel just returned this fd to us.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn lstat_at(dir: RawFd, name: &[u8]) -> io::Result<libc::stat> {
    let n = cstr(name)?;
    // SAFETY: stat is plain data; the kernel fills it.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    let flags =
        if name.is_empty() { libc::AT_EMPTY_PATH | libc::AT_SYMLINK_NOFOLLOW } else { libc::AT_SYMLINK_NOFOLLOW };
    // SAFETY: valid name and stat buffer.
    check(unsafe { libc::fstatat(dir, n.as_ptr(), &mut st, flags) })?;
    Ok(st)
}

fn readlink_at(dir: RawFd, name: &[u8]) -> io::Result<Vec<u8>> {
    let n = cstr(name)?;
    let mut buf = vec![0u8; libc::PATH_MAX as usize];
    // SAFETY: valid name and buffer of the given length.
    let len = unsafe { libc::readlinkat(dir, n.as_ptr(), buf.as_mut_ptr() as *mut libc::c_char, buf.len()) };
    if len < 0 {
        return Err(io::Error::last_os_error());
    }
    buf.truncate(len as usize);
    Ok(buf)
}

/// Names in directory `fd` (without `.` and `..`).
fn list_dir(fd: RawFd) -> io::Result<Vec<Vec<u8>>> {
    // A fresh fd: Dir takes ownership and closes it.
    let dup = openat(fd, b".", libc::O_RDONLY | libc::O_DIRECTORY, 0)?;
    let mut dir = nix::dir::Dir::from_fd(dup).map_err(io::Error::from)?;
    let mut names = Vec::new();
    for e in dir.iter() {
        let e = e.map_err(io::Error::from)?;
        let n = e.file_name().to_bytes();
        if n != b"." && n != b".." {
            names.push(n.to_vec());
        }
    }
    names.sort();
    Ok(names)
}

fn file_type(mode: libc::mode_t) -> libc::mode_t {
    mode & libc::S_IFMT
}

/// Go's `os.FileMode` bits, as Docker's path stat header carries them.
pub fn go_file_mode(mode: libc::mode_t) -> u32 {
    let mut m = mode & 0o777;
    m |= match file_type(mode) {
        libc::S_IFDIR => 1 << 31,
        libc::S_IFLNK => 1 << 27,
        libc::S_IFBLK => 1 << 26,
        libc::S_IFIFO => 1 << 25,
        libc::S_IFSOCK => 1 << 24,
        libc::S_IFCHR => (1 << 26) | (1 << 21),
        _ => 0,
    };
    if mode & libc::S_ISUID != 0 {
        m |= 1 << 23;
    }
    if mode & libc::S_ISGID != 0 {
        m |= 1 << 22;
    }
    if mode & libc::S_ISVTX != 0 {
        m |= 1 << 20;
    }
    m
}

/// A container path split into its relative components (no `..` may climb
/// above the root: it is resolved lexically first).
pub fn clean_path(path: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for c in Path::new(path).components() {
        match c {
            Component::Normal(n) => out.push(n.to_string_lossy().into_owned()),
            Component::ParentDir => {
                out.pop();
            }
            _ => {}
        }
    }
    out
}

/// The name the tar's top entry gets: the path's base name, or `.` for
/// `dir/.` (copy the contents), as Docker rebases it.
pub fn archive_base(path: &str) -> String {
    if path.ends_with("/.") || path == "." {
        return ".".into();
    }
    clean_path(path).pop().unwrap_or_else(|| ".".into())
}

/// Writes the tree at (`dir`, `name`) into `builder` as `archive_name`,
/// never following a symlink.
struct TarWalker<'a, W: Write> {
    builder: &'a mut tar::Builder<W>,
    /// (dev, ino) of files with several links, to the archive name first written.
    links: HashMap<(u64, u64), PathBuf>,
}

impl<W: Write> TarWalker<'_, W> {
    fn header(st: &libc::stat, kind: tar::EntryType) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(st.st_mode & 0o7777);
        h.set_uid(st.st_uid as u64);
        h.set_gid(st.st_gid as u64);
        h.set_mtime(st.st_mtime.max(0) as u64);
        h.set_size(0);
        h
    }

    fn entry(&mut self, dir: RawFd, name: &[u8], archive_name: &Path) -> io::Result<()> {
        let st = lstat_at(dir, name)?;
        match file_type(st.st_mode) {
            libc::S_IFDIR => {
                let fd = openat(dir, name, libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW, 0)?;
                let mut h = Self::header(&st, tar::EntryType::Directory);
                self.builder.append_data(&mut h, archive_name, io::empty())?;
                for child in list_dir(fd.as_raw_fd())? {
                    let child_name = archive_name.join(std::ffi::OsStr::from_bytes(&child));
                    self.entry(fd.as_raw_fd(), &child, &child_name)?;
                }
            }
            libc::S_IFREG => {
                let key = (st.st_dev, st.st_ino);
                if st.st_nlink > 1 {
                    if let Some(first) = self.links.get(&key).cloned() {
                        let mut h = Self::header(&st, tar::EntryType::Link);
                        return self.builder.append_link(&mut h, archive_name, first);
                    }
                    self.links.insert(key, archive_name.to_path_buf());
                }
                let fd = openat(dir, name, libc::O_RDONLY | libc::O_NOFOLLOW, 0)?;
                let file = File::from(fd);
                let mut h = Self::header(&st, tar::EntryType::Regular);
                h.set_size(st.st_size as u64);
                // Exactly the size the header announced, even if the file changes meanwhile.
                let reader = file.take(st.st_size as u64).chain(io::repeat(0)).take(st.st_size as u64);
                self.builder.append_data(&mut h, archive_name, reader)?;
            }
            libc::S_IFLNK => {
                let target = readlink_at(dir, name)?;
                let mut h = Self::header(&st, tar::EntryType::Symlink);
                self.builder.append_link(&mut h, archive_name, std::ffi::OsStr::from_bytes(&target))?;
            }
            t @ (libc::S_IFCHR | libc::S_IFBLK | libc::S_IFIFO) => {
                let kind = match t {
                    libc::S_IFCHR => tar::EntryType::Char,
                    libc::S_IFBLK => tar::EntryType::Block,
                    _ => tar::EntryType::Fifo,
                };
                let mut h = Self::header(&st, kind);
                h.set_device_major(libc::major(st.st_rdev))?;
                h.set_device_minor(libc::minor(st.st_rdev))?;
                self.builder.append_data(&mut h, archive_name, io::empty())?;
            }
            // Sockets cannot be archived; Docker skips them too.
            _ => {}
        }
        Ok(())
    }
}

/// Tars the tree at `rel` (components) below `root` as `base`.
fn tar_tree<W: Write>(root: RawFd, rel: &[String], base: &str, out: W) -> io::Result<W> {
    let (parent, name) = match rel.split_last() {
        Some((last, parent)) => (parent.join("/"), last.clone()),
        None => (String::new(), ".".into()),
    };
    let parent_fd = open_in_root(root, parent.as_bytes(), libc::O_PATH | libc::O_DIRECTORY)?;
    let mut builder = tar::Builder::new(out);
    {
        let mut w = TarWalker { builder: &mut builder, links: HashMap::new() };
        w.entry(parent_fd.as_raw_fd(), name.as_bytes(), Path::new(base))?;
    }
    builder.into_inner()
}

/// Makes every directory of `rel` below `root` that is missing; returns the last one's fd.
fn mkdir_all_in_root(root: RawFd, rel: &[String]) -> io::Result<OwnedFd> {
    let mut cur = open_in_root(root, b".", libc::O_PATH | libc::O_DIRECTORY)?;
    let mut walked: Vec<&str> = Vec::new();
    for c in rel {
        walked.push(c);
        let path = walked.join("/");
        match open_in_root(root, path.as_bytes(), libc::O_PATH | libc::O_DIRECTORY) {
            Ok(fd) => cur = fd,
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                let n = cstr(c.as_bytes())?;
                // SAFETY: valid name; `cur` is a directory fd.
                let rc = unsafe { libc::mkdirat(cur.as_raw_fd(), n.as_ptr(), 0o755) };
                if rc < 0 && io::Error::last_os_error().raw_os_error() != Some(libc::EEXIST) {
                    return Err(io::Error::last_os_error());
                }
                cur = open_in_root(root, path.as_bytes(), libc::O_PATH | libc::O_DIRECTORY)?;
            }
            Err(e) => return Err(e),
        }
    }
    Ok(cur)
}

/// Removes what is at (`dir`, `name`) unless it is a directory and `keep_dir`.
fn clear_at(dir: RawFd, name: &[u8], keep_dir: bool) -> io::Result<()> {
    match lstat_at(dir, name) {
        Ok(st) if file_type(st.st_mode) == libc::S_IFDIR => {
            if keep_dir {
                return Ok(());
            }
            Err(io::Error::new(io::ErrorKind::AlreadyExists, "cannot overwrite a directory with a non-directory"))
        }
        Ok(_) => {
            let n = cstr(name)?;
            // SAFETY: valid name.
            check(unsafe { libc::unlinkat(dir, n.as_ptr(), 0) }).map(|_| ())
        }
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(()),
        Err(e) => Err(e),
    }
}

fn set_meta(dir: RawFd, name: &[u8], h: &tar::Header, is_link: bool) -> io::Result<()> {
    let n = cstr(name)?;
    let uid = h.uid().unwrap_or(0) as libc::uid_t;
    let gid = h.gid().unwrap_or(0) as libc::gid_t;
    // SAFETY: valid name; plain syscalls.
    check(unsafe { libc::fchownat(dir, n.as_ptr(), uid, gid, libc::AT_SYMLINK_NOFOLLOW) })?;
    if !is_link {
        let mode = h.mode().unwrap_or(0o644) & 0o7777;
        // SAFETY: as above; fchmodat follows no symlink here (the entry is not one).
        check(unsafe { libc::fchmodat(dir, n.as_ptr(), mode as libc::mode_t, 0) })?;
    }
    let mtime = h.mtime().unwrap_or(0) as libc::time_t;
    let ts = [libc::timespec { tv_sec: mtime, tv_nsec: 0 }, libc::timespec { tv_sec: mtime, tv_nsec: 0 }];
    // SAFETY: valid name and two timespecs.
    check(unsafe { libc::utimensat(dir, n.as_ptr(), ts.as_ptr(), libc::AT_SYMLINK_NOFOLLOW) })?;
    Ok(())
}

/// Extracts `tar` into the directory `dest` (components) below `root`.
fn untar_in_root(root: RawFd, dest: &[String], tar: &mut dyn Read) -> EngineResult<()> {
    let bad = |m: String| EngineError::InvalidArgument(m);
    let mut archive = tar::Archive::new(tar);
    let entries = archive.entries().map_err(|e| bad(format!("reading the archive: {e}")))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| bad(format!("reading the archive: {e}")))?;
        let raw = entry.path_bytes().into_owned();
        let rel = String::from_utf8_lossy(&raw).into_owned();
        if Path::new(&rel).components().any(|c| c == Component::ParentDir) {
            return Err(bad(format!("invalid archive entry {rel:?}: it climbs out with ..")));
        }
        let mut parts: Vec<String> = dest.to_vec();
        parts.extend(clean_path(&rel));
        let Some((name, parent)) = parts.split_last() else { continue };
        if parent.len() < dest.len() {
            // The entry is the destination itself (`.`): it exists already.
            continue;
        }
        let ctx = |e: io::Error| EngineError::io(format!("extracting {rel}"), e);
        let pfd = mkdir_all_in_root(root, parent).map_err(ctx)?;
        let dir = pfd.as_raw_fd();
        let header = entry.header().clone();
        let n = cstr(name.as_bytes()).map_err(ctx)?;
        match header.entry_type() {
            tar::EntryType::Directory => {
                clear_at(dir, name.as_bytes(), true).map_err(ctx)?;
                // SAFETY: valid name.
                let rc = unsafe { libc::mkdirat(dir, n.as_ptr(), 0o755) };
                if rc < 0 && io::Error::last_os_error().raw_os_error() != Some(libc::EEXIST) {
                    return Err(ctx(io::Error::last_os_error()));
                }
                set_meta(dir, name.as_bytes(), &header, false).map_err(ctx)?;
            }
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                clear_at(dir, name.as_bytes(), false).map_err(ctx)?;
                let fd = openat(
                    dir,
                    name.as_bytes(),
                    libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW,
                    0o600,
                )
                .map_err(ctx)?;
                let mut f = File::from(fd);
                io::copy(&mut entry, &mut f).map_err(ctx)?;
                drop(f);
                set_meta(dir, name.as_bytes(), &header, false).map_err(ctx)?;
            }
            tar::EntryType::Symlink => {
                let target = entry.link_name_bytes().map(|t| t.into_owned()).unwrap_or_default();
                clear_at(dir, name.as_bytes(), false).map_err(ctx)?;
                let t = cstr(&target).map_err(ctx)?;
                // SAFETY: valid strings.
                check(unsafe { libc::symlinkat(t.as_ptr(), dir, n.as_ptr()) }).map_err(ctx)?;
                set_meta(dir, name.as_bytes(), &header, true).map_err(ctx)?;
            }
            tar::EntryType::Link => {
                let target = entry.link_name_bytes().map(|t| t.into_owned()).unwrap_or_default();
                let mut src: Vec<String> = dest.to_vec();
                src.extend(clean_path(&String::from_utf8_lossy(&target)));
                let sfd = open_in_root(root, src.join("/").as_bytes(), libc::O_PATH | libc::O_NOFOLLOW).map_err(ctx)?;
                clear_at(dir, name.as_bytes(), false).map_err(ctx)?;
                let empty = cstr(b"").map_err(ctx)?;
                // SAFETY: valid fds and names; AT_EMPTY_PATH links the file `sfd` refers to.
                check(unsafe { libc::linkat(sfd.as_raw_fd(), empty.as_ptr(), dir, n.as_ptr(), libc::AT_EMPTY_PATH) })
                    .map_err(ctx)?;
            }
            kind @ (tar::EntryType::Char | tar::EntryType::Block | tar::EntryType::Fifo) => {
                clear_at(dir, name.as_bytes(), false).map_err(ctx)?;
                let t = match kind {
                    tar::EntryType::Char => libc::S_IFCHR,
                    tar::EntryType::Block => libc::S_IFBLK,
                    _ => libc::S_IFIFO,
                };
                let dev = libc::makedev(
                    header.device_major().ok().flatten().unwrap_or(0),
                    header.device_minor().ok().flatten().unwrap_or(0),
                );
                // SAFETY: valid name.
                check(unsafe { libc::mknodat(dir, n.as_ptr(), t | 0o600, dev) }).map_err(ctx)?;
                set_meta(dir, name.as_bytes(), &header, false).map_err(ctx)?;
            }
            // PAX headers and the like carry no file.
            _ => {}
        }
    }
    Ok(())
}

impl ContainerService {
    /// The root of `record`'s filesystem: the live one of a running
    /// container (`live`), else the layers mounted for the caller.
    pub(crate) fn open_rootfs(&self, record: &ContainerRecord, live: bool, writable: bool) -> EngineResult<RootFs> {
        let id = record.id.to_string();
        if live && matches!(record.state.status, Status::Running | Status::Paused) && record.state.pid > 0 {
            let path = format!("/proc/{}/root", record.state.pid);
            let fd = openat(libc::AT_FDCWD, path.as_bytes(), libc::O_PATH | libc::O_DIRECTORY, 0)
                .map_err(|e| EngineError::io(format!("opening the root of container {id}"), e))?;
            return Ok(RootFs { fd: Some(fd), mount: None });
        }
        let dir = self.config.run.join("mounts").join(format!("{id}-{}", hex::encode(crate::ids::random_bytes(4)?)));
        std::fs::create_dir_all(&dir).map_err(|e| EngineError::io(format!("creating {}", dir.display()), e))?;
        let plan = self
            .storage
            .mount_plan(&record.rw_layer, writable)
            .map_err(|e| crate::error::driver_error(&format!("container {id}: its layers"), e))?;
        if let Err(e) = berth_runtime::mount::mount(&plan.spec, &dir) {
            let _ = std::fs::remove_dir(&dir);
            return Err(EngineError::Internal(format!("mounting the filesystem of container {id}: {e}")));
        }
        let mut guard = RootFs { fd: None, mount: Some(dir.clone()) };
        let fd = openat(libc::AT_FDCWD, dir.as_os_str().as_bytes(), libc::O_PATH | libc::O_DIRECTORY, 0)
            .map_err(|e| EngineError::io(format!("opening {}", dir.display()), e))?;
        guard.fd = Some(fd);
        Ok(guard)
    }

    /// Docker's path stat of `path` inside `root`.
    fn stat_in_root(&self, root: &RootFs, path: &str, id: &str) -> EngineResult<(PathStat, Vec<String>)> {
        let rel = clean_path(path);
        let not_found = || EngineError::NotFound(format!("Could not find the file {path} in container {id}"));
        let (parent, name) = match rel.split_last() {
            Some((last, parent)) => (parent.join("/"), last.clone()),
            None => (String::new(), String::new()),
        };
        let pfd = match open_in_root(root.fd(), parent.as_bytes(), libc::O_PATH | libc::O_DIRECTORY) {
            Ok(fd) => fd,
            Err(e) if matches!(e.raw_os_error(), Some(libc::ENOENT) | Some(libc::ENOTDIR)) => return Err(not_found()),
            Err(e) => return Err(EngineError::io(format!("resolving {path} in container {id}"), e)),
        };
        let st = match lstat_at(pfd.as_raw_fd(), name.as_bytes()) {
            Ok(st) => st,
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Err(not_found()),
            Err(e) => return Err(EngineError::io(format!("stat {path} in container {id}"), e)),
        };
        // A trailing `/` on a non-directory is Docker's "not a directory".
        if path.ends_with('/') && file_type(st.st_mode) != libc::S_IFDIR {
            return Err(EngineError::InvalidArgument(format!("{path}: not a directory")));
        }
        let mut link_target = String::new();
        let mut resolved = rel.clone();
        if file_type(st.st_mode) == libc::S_IFLNK {
            let target = String::from_utf8_lossy(&readlink_at(pfd.as_raw_fd(), name.as_bytes()).unwrap_or_default())
                .into_owned();
            let joined = if target.starts_with('/') { target } else { format!("/{parent}/{target}") };
            resolved = clean_path(&joined);
            link_target = format!("/{}", resolved.join("/"));
        }
        let mtime = chrono::DateTime::from_timestamp(st.st_mtime, st.st_mtime_nsec as u32)
            .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true))
            .unwrap_or_default();
        let shown = if name.is_empty() { "/".to_string() } else { name };
        Ok((
            PathStat { name: shown, size: st.st_size, mode: go_file_mode(st.st_mode), mtime, link_target },
            resolved,
        ))
    }

    /// `HEAD /containers/{id}/archive`: the stat only.
    pub fn archive_stat(&self, id_or_name: &str, path: &str) -> EngineResult<PathStat> {
        let record = self.catalog.lookup(id_or_name)?;
        let id = record.id.to_string();
        let _g = self.live.lock(&id);
        let record =
            self.catalog.load(&id)?.ok_or_else(|| EngineError::NotFound(format!("No such container: {id}")))?;
        let root = self.open_rootfs(&record, true, false)?;
        Ok(self.stat_in_root(&root, path, &id)?.0)
    }

    /// `GET /containers/{id}/archive` (`docker cp` out): the stat of the path
    /// (for the `X-Docker-Container-Path-Stat` header) and a tar of it.
    pub fn archive_get(&self, id_or_name: &str, path: &str) -> EngineResult<(PathStat, Box<dyn Read + Send>)> {
        let record = self.catalog.lookup(id_or_name)?;
        let id = record.id.to_string();
        let _g = self.live.lock(&id);
        let record =
            self.catalog.load(&id)?.ok_or_else(|| EngineError::NotFound(format!("No such container: {id}")))?;
        let root = self.open_rootfs(&record, true, false)?;
        let (stat, _) = self.stat_in_root(&root, path, &id)?;
        // Spooled to an unlinked file so the mount (and lock) last only as long
        // as the walk; under --root, on disk (--run is usually a tmpfs).
        let spool =
            tempfile::tempfile_in(&self.config.root).map_err(|e| EngineError::io("creating a spool file", e))?;
        let rel = clean_path(path);
        let base = archive_base(path);
        let mut file = tar_tree(root.fd(), &rel, &base, spool)
            .map_err(|e| EngineError::io(format!("archiving {path} of container {id}"), e))?;
        std::io::Seek::rewind(&mut file).map_err(|e| EngineError::io("rewinding the spool file", e))?;
        Ok((stat, Box::new(file)))
    }

    /// `PUT /containers/{id}/archive` (`docker cp` in): extract a tar at
    /// `path`, resolving every entry inside the container's root.
    pub fn archive_put(&self, id_or_name: &str, path: &str, tar: &mut dyn Read) -> EngineResult<()> {
        let record = self.catalog.lookup(id_or_name)?;
        let id = record.id.to_string();
        if record.host_config.readonly_rootfs {
            return Err(EngineError::Conflict(format!("container {id}: container rootfs is marked read-only")));
        }
        let _g = self.live.lock(&id);
        let record =
            self.catalog.load(&id)?.ok_or_else(|| EngineError::NotFound(format!("No such container: {id}")))?;
        let root = self.open_rootfs(&record, true, true)?;
        let (stat, resolved) = self.stat_in_root(&root, path, &id)?;
        if stat.mode & (1 << 31) == 0 && stat.link_target.is_empty() {
            return Err(EngineError::InvalidArgument(format!("extraction point is not a directory: {path}")));
        }
        untar_in_root(root.fd(), &resolved, tar)
    }

    /// `docker export`: the container's whole filesystem as a tar.
    pub fn export(&self, id_or_name: &str, out: &mut dyn Write) -> EngineResult<()> {
        let record = self.catalog.lookup(id_or_name)?;
        let id = record.id.to_string();
        // A stopped container is held so no start mounts its layer writable meanwhile.
        let _g = (!matches!(record.state.status, Status::Running | Status::Paused)).then(|| self.live.lock(&id));
        let root = self.open_rootfs(&record, false, false)?;
        let fd = open_in_root(root.fd(), b".", libc::O_PATH | libc::O_DIRECTORY)
            .map_err(|e| EngineError::io(format!("opening the root of container {id}"), e))?;
        let mut builder = tar::Builder::new(out);
        let children = list_dir(fd.as_raw_fd()).map_err(|e| EngineError::io(format!("listing the root of {id}"), e))?;
        {
            let mut w = TarWalker { builder: &mut builder, links: HashMap::new() };
            for c in children {
                w.entry(fd.as_raw_fd(), &c, Path::new(std::ffi::OsStr::from_bytes(&c)))
                    .map_err(|e| EngineError::io(format!("exporting container {id}"), e))?;
            }
        }
        builder.finish().map_err(|e| EngineError::io(format!("exporting container {id}"), e))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_and_bases() {
        assert_eq!(clean_path("/etc/../etc/./passwd"), vec!["etc", "passwd"]);
        assert_eq!(clean_path("/../../x"), vec!["x"]);
        assert!(clean_path("/").is_empty());
        assert_eq!(archive_base("/etc"), "etc");
        assert_eq!(archive_base("/etc/"), "etc");
        assert_eq!(archive_base("/etc/."), ".");
        assert_eq!(archive_base("/"), ".");
    }

    #[test]
    fn go_modes() {
        assert_eq!(go_file_mode(libc::S_IFDIR | 0o755), (1 << 31) | 0o755);
        assert_eq!(go_file_mode(libc::S_IFREG | 0o644), 0o644);
        assert_eq!(go_file_mode(libc::S_IFLNK | 0o777), (1 << 27) | 0o777);
        assert_eq!(go_file_mode(libc::S_IFREG | libc::S_ISUID | 0o755), (1 << 23) | 0o755);
    }

    /// A tree with a symlink pointing out of the root: tarring follows no
    /// link, and extracting through a link lands inside the root.
    #[test]
    fn tar_round_trip_stays_inside_the_root() {
        let outside = tempfile::tempdir().unwrap();
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(root.path().join("data/sub")).unwrap();
        std::fs::write(root.path().join("data/sub/f"), b"hello").unwrap();
        std::os::unix::fs::symlink(outside.path(), root.path().join("data/escape")).unwrap();
        std::fs::hard_link(root.path().join("data/sub/f"), root.path().join("data/g")).unwrap();
        let rfd =
            openat(libc::AT_FDCWD, root.path().as_os_str().as_bytes(), libc::O_PATH | libc::O_DIRECTORY, 0).unwrap();
        let bytes = tar_tree(rfd.as_raw_fd(), &clean_path("/data"), "data", Vec::new()).unwrap();
        let mut names: Vec<String> = tar::Archive::new(&bytes[..])
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().display().to_string())
            .collect();
        names.sort();
        assert_eq!(names, vec!["data", "data/escape", "data/g", "data/sub", "data/sub/f"]);

        // Extract into /copy, then through the planted link: both stay in the root.
        std::fs::create_dir(root.path().join("copy")).unwrap();
        untar_in_root(rfd.as_raw_fd(), &clean_path("/copy"), &mut &bytes[..]).unwrap();
        assert_eq!(std::fs::read(root.path().join("copy/data/sub/f")).unwrap(), b"hello");
        assert!(std::fs::symlink_metadata(root.path().join("copy/data/escape")).unwrap().file_type().is_symlink());
        std::os::unix::fs::symlink("/", root.path().join("copy/up")).unwrap();
        let mut one = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(3);
        h.set_mode(0o644);
        one.append_data(&mut h, "up/tmp/planted", &b"bad"[..]).unwrap();
        let one = one.into_inner().unwrap();
        // `up` -> `/` resolves to the container's root, so this writes <root>/tmp/planted.
        untar_in_root(rfd.as_raw_fd(), &clean_path("/copy"), &mut &one[..]).unwrap();
        assert!(root.path().join("tmp/planted").exists());
        assert!(std::fs::read_dir(outside.path()).unwrap().next().is_none(), "nothing written outside");
        // `..` entries are refused.
        let mut evil = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(0);
        h.set_mode(0o644);
        h.set_path("x").unwrap();
        let name = b"../../etc/evil";
        h.as_old_mut().name[..name.len()].copy_from_slice(name);
        h.set_cksum();
        evil.append(&h, io::empty()).unwrap();
        let evil = evil.into_inner().unwrap();
        assert!(untar_in_root(rfd.as_raw_fd(), &clean_path("/copy"), &mut &evil[..]).is_err());
    }
}
