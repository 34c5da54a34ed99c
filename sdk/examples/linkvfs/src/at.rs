//! File calls relative to an open directory. Every name is one path
//! component and no call follows a symlink in it, so a walk that goes from
//! directory to directory with `Dir::sub` stays inside the tree it started
//! in, even while a running container renames things in its own layer.

use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// An open directory.
pub struct Dir(OwnedFd);

fn cstr(bytes: &[u8]) -> io::Result<CString> {
    CString::new(bytes).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a name holds a NUL byte"))
}

fn check(rc: libc::c_int) -> io::Result<()> {
    match rc {
        0.. => Ok(()),
        _ => Err(io::Error::last_os_error()),
    }
}

fn owned(fd: libc::c_int) -> io::Result<OwnedFd> {
    match fd {
        // SAFETY: a descriptor the kernel just returned, owned by nobody else.
        0.. => Ok(unsafe { OwnedFd::from_raw_fd(fd) }),
        _ => Err(io::Error::last_os_error()),
    }
}

/// The errno of an error, 0 if it has none.
pub fn errno(e: &io::Error) -> i32 {
    e.raw_os_error().unwrap_or(0)
}

/// The file type bits of a mode (`S_IFDIR`, `S_IFREG`, ...).
pub fn file_type(mode: libc::mode_t) -> libc::mode_t {
    mode & libc::S_IFMT
}

pub fn timespec(sec: i64, nsec: i64) -> libc::timespec {
    // SAFETY: plain data; zero is valid for every field (some targets have padding fields).
    let mut t: libc::timespec = unsafe { std::mem::zeroed() };
    t.tv_sec = sec as libc::time_t;
    t.tv_nsec = nsec as _;
    t
}

/// The metadata a layer keeps for one path.
#[derive(Clone, Copy)]
pub struct Meta {
    /// Permission bits with set-id and sticky (`0o7777`).
    pub mode: libc::mode_t,
    pub uid: u32,
    pub gid: u32,
    pub atime: libc::timespec,
    pub mtime: libc::timespec,
}

impl Meta {
    pub fn of(st: &libc::stat) -> Meta {
        Meta {
            mode: st.st_mode & 0o7777,
            uid: st.st_uid,
            gid: st.st_gid,
            atime: timespec(st.st_atime, st.st_atime_nsec),
            mtime: timespec(st.st_mtime, st.st_mtime_nsec),
        }
    }
}

impl Dir {
    /// Opens the directory at `path`; a symlink there is refused, since a
    /// layer's own directory must be the driver's, not wherever a link points.
    pub fn open(path: &Path) -> io::Result<Dir> {
        let p = cstr(path.as_os_str().as_bytes())?;
        let flags = libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC | libc::O_NOFOLLOW;
        // SAFETY: p is a valid C string.
        owned(unsafe { libc::open(p.as_ptr(), flags) }).map(Dir)
    }

    pub fn fd(&self) -> RawFd {
        self.0.as_raw_fd()
    }

    fn openat(&self, name: &[u8], flags: libc::c_int, mode: libc::mode_t) -> io::Result<OwnedFd> {
        let n = cstr(name)?;
        let flags = flags | libc::O_CLOEXEC | libc::O_NOFOLLOW;
        // SAFETY: n is a valid C string.
        owned(unsafe { libc::openat(self.fd(), n.as_ptr(), flags, libc::c_uint::from(mode)) })
    }

    /// The subdirectory `name` (ELOOP or ENOTDIR if it is a symlink or a file).
    pub fn sub(&self, name: &[u8]) -> io::Result<Dir> {
        self.openat(name, libc::O_RDONLY | libc::O_DIRECTORY, 0).map(Dir)
    }

    /// Another descriptor of this directory.
    pub fn again(&self) -> io::Result<Dir> {
        self.sub(b".")
    }

    /// lstat of `name`; an empty name is the directory itself.
    pub fn stat(&self, name: &[u8]) -> io::Result<libc::stat> {
        let n = cstr(name)?;
        let flags = libc::AT_SYMLINK_NOFOLLOW | if name.is_empty() { libc::AT_EMPTY_PATH } else { 0 };
        // SAFETY: zeroed is a valid stat; the kernel fills it before it is read.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: n and st are valid for the call.
        check(unsafe { libc::fstatat(self.fd(), n.as_ptr(), &mut st, flags) })?;
        Ok(st)
    }

    /// lstat of `name`, None if there is nothing of that name.
    pub fn stat_if_any(&self, name: &[u8]) -> io::Result<Option<libc::stat>> {
        match self.stat(name) {
            Ok(st) => Ok(Some(st)),
            Err(e) if errno(&e) == libc::ENOENT => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The names in the directory, sorted, without `.` and `..`.
    pub fn entries(&self) -> io::Result<Vec<Vec<u8>>> {
        // fdopendir takes the descriptor over and moves its offset: give it its own.
        let own = self.openat(b".", libc::O_RDONLY | libc::O_DIRECTORY, 0)?;
        let raw = std::os::fd::IntoRawFd::into_raw_fd(own);
        // SAFETY: raw is an open directory descriptor; on success the stream owns it.
        let stream = unsafe { libc::fdopendir(raw) };
        if stream.is_null() {
            let e = io::Error::last_os_error();
            // SAFETY: fdopendir failed, so raw is still ours to close.
            unsafe { libc::close(raw) };
            return Err(e);
        }
        let mut names = Vec::new();
        let outcome = loop {
            // readdir tells its end from an error only through errno.
            // SAFETY: errno is this thread's.
            unsafe { *libc::__errno_location() = 0 };
            // SAFETY: stream is open until closedir below.
            let entry = unsafe { libc::readdir64(stream) };
            if entry.is_null() {
                let e = io::Error::last_os_error();
                break if errno(&e) == 0 { Ok(()) } else { Err(e) };
            }
            // SAFETY: entry points at a valid dirent until the next readdir.
            let name = unsafe { std::ffi::CStr::from_ptr((*entry).d_name.as_ptr()) }.to_bytes();
            if name != b"." && name != b".." {
                names.push(name.to_vec());
            }
        };
        // SAFETY: stream is open and closed once.
        unsafe { libc::closedir(stream) };
        outcome?;
        names.sort();
        Ok(names)
    }

    /// Opens the regular file `name` for reading. O_NONBLOCK keeps a fifo
    /// that took the file's place from blocking the driver.
    pub fn open_file(&self, name: &[u8]) -> io::Result<File> {
        let file = File::from(self.openat(name, libc::O_RDONLY | libc::O_NONBLOCK, 0)?);
        match file.metadata()?.is_file() {
            true => Ok(file),
            false => Err(io::Error::new(io::ErrorKind::InvalidInput, "not a regular file")),
        }
    }

    /// Creates the new regular file `name` (EEXIST if anything is there).
    pub fn create_file(&self, name: &[u8]) -> io::Result<File> {
        self.openat(name, libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL, 0o600).map(File::from)
    }

    pub fn mkdir(&self, name: &[u8], mode: libc::mode_t) -> io::Result<()> {
        let n = cstr(name)?;
        // SAFETY: n is a valid C string.
        check(unsafe { libc::mkdirat(self.fd(), n.as_ptr(), mode) })
    }

    /// mknod: `mode` holds the file type (device, fifo, socket) and permissions.
    pub fn mknod(&self, name: &[u8], mode: libc::mode_t, dev: libc::dev_t) -> io::Result<()> {
        let n = cstr(name)?;
        // SAFETY: n is a valid C string.
        check(unsafe { libc::mknodat(self.fd(), n.as_ptr(), mode, dev) })
    }

    pub fn symlink(&self, target: &[u8], name: &[u8]) -> io::Result<()> {
        let (t, n) = (cstr(target)?, cstr(name)?);
        // SAFETY: both are valid C strings.
        check(unsafe { libc::symlinkat(t.as_ptr(), self.fd(), n.as_ptr()) })
    }

    /// A new name `to_name` in `to` for the inode `name` here. linkat without
    /// AT_SYMLINK_FOLLOW links a symlink itself, never what it points at.
    pub fn link(&self, name: &[u8], to: &Dir, to_name: &[u8]) -> io::Result<()> {
        let (o, n) = (cstr(name)?, cstr(to_name)?);
        // SAFETY: both are valid C strings.
        check(unsafe { libc::linkat(self.fd(), o.as_ptr(), to.fd(), n.as_ptr(), 0) })
    }

    /// rename(2) of `name` here to `to_name` in `to`, replacing a non-directory there.
    pub fn rename(&self, name: &[u8], to: &Dir, to_name: &[u8]) -> io::Result<()> {
        let (o, n) = (cstr(name)?, cstr(to_name)?);
        // SAFETY: both are valid C strings.
        check(unsafe { libc::renameat(self.fd(), o.as_ptr(), to.fd(), n.as_ptr()) })
    }

    pub fn readlink(&self, name: &[u8]) -> io::Result<Vec<u8>> {
        let n = cstr(name)?;
        let mut buf = vec![0u8; libc::PATH_MAX as usize + 1];
        // SAFETY: buf is writable for its length.
        let len = unsafe { libc::readlinkat(self.fd(), n.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
        let len = usize::try_from(len).map_err(|_| io::Error::last_os_error())?;
        buf.truncate(len);
        Ok(buf)
    }

    /// Removes the non-directory `name`.
    pub fn unlink(&self, name: &[u8]) -> io::Result<()> {
        let n = cstr(name)?;
        // SAFETY: n is a valid C string.
        check(unsafe { libc::unlinkat(self.fd(), n.as_ptr(), 0) })
    }

    /// Removes `name` and, for a directory, everything below it; a missing name is fine.
    pub fn remove_all(&self, name: &[u8]) -> io::Result<()> {
        let Some(st) = self.stat_if_any(name)? else { return Ok(()) };
        if file_type(st.st_mode) != libc::S_IFDIR {
            return self.unlink(name);
        }
        let sub = self.sub(name)?;
        for entry in sub.entries()? {
            sub.remove_all(&entry)?;
        }
        drop(sub);
        let n = cstr(name)?;
        // SAFETY: n is a valid C string.
        match check(unsafe { libc::unlinkat(self.fd(), n.as_ptr(), libc::AT_REMOVEDIR) }) {
            Err(e) if errno(&e) == libc::ENOENT => Ok(()),
            other => other,
        }
    }

    /// Owner of `name` (of a symlink itself, not its target); empty name: this directory.
    pub fn chown(&self, name: &[u8], uid: u32, gid: u32) -> io::Result<()> {
        let n = cstr(name)?;
        let flags = libc::AT_SYMLINK_NOFOLLOW | if name.is_empty() { libc::AT_EMPTY_PATH } else { 0 };
        // SAFETY: n is a valid C string.
        check(unsafe { libc::fchownat(self.fd(), n.as_ptr(), uid, gid, flags) })
    }

    /// Mode of `name`, which must not be a symlink (Linux has no lchmod).
    pub fn chmod(&self, name: &[u8], mode: libc::mode_t) -> io::Result<()> {
        let n = cstr(name)?;
        // SAFETY: n is a valid C string.
        check(unsafe { libc::fchmodat(self.fd(), n.as_ptr(), mode, 0) })
    }

    /// Times of `name` (of a symlink itself); empty name: this directory.
    pub fn set_times(&self, name: &[u8], atime: libc::timespec, mtime: libc::timespec) -> io::Result<()> {
        if name.is_empty() {
            return set_fd_times(self.fd(), atime, mtime);
        }
        let n = cstr(name)?;
        let times = [atime, mtime];
        // SAFETY: n and times are valid for the call.
        check(unsafe { libc::utimensat(self.fd(), n.as_ptr(), times.as_ptr(), libc::AT_SYMLINK_NOFOLLOW) })
    }

    /// Gives this directory `meta` and `xattrs` (see `set_fd_meta`).
    pub fn set_meta(&self, meta: &Meta, xattrs: &[(String, Vec<u8>)], what: &str) -> io::Result<()> {
        set_fd_meta(self.fd(), meta, xattrs, what)
    }

    /// Flushes the filesystem holding this directory.
    pub fn syncfs(&self) -> io::Result<()> {
        // SAFETY: a valid descriptor.
        check(unsafe { libc::syncfs(self.fd()) })
    }
}

fn set_fd_times(fd: RawFd, atime: libc::timespec, mtime: libc::timespec) -> io::Result<()> {
    let times = [atime, mtime];
    // SAFETY: times is valid for the call.
    check(unsafe { libc::futimens(fd, times.as_ptr()) })
}

/// Gives an open file or directory its owner, xattrs, mode and times, in
/// the one order that keeps them all: chown clears set-id bits and
/// `security.capability`, so owner first; times last, as every change moves them.
/// Call it after the content is written: a write clears capabilities too.
pub fn set_fd_meta(fd: RawFd, meta: &Meta, xattrs: &[(String, Vec<u8>)], what: &str) -> io::Result<()> {
    // SAFETY: plain calls on a valid descriptor.
    check(unsafe { libc::fchown(fd, meta.uid, meta.gid) })?;
    set_xattrs(fd, xattrs, what)?;
    // SAFETY: as above.
    check(unsafe { libc::fchmod(fd, meta.mode) })?;
    set_fd_times(fd, meta.atime, meta.mtime)
}

/// The extended attributes of an open file or directory, sorted by name.
pub fn xattrs(fd: RawFd) -> io::Result<Vec<(String, Vec<u8>)>> {
    let mut names = vec![0u8; 1024];
    let len = loop {
        // SAFETY: names is writable for its length.
        let n = unsafe { libc::flistxattr(fd, names.as_mut_ptr().cast(), names.len()) };
        if let Ok(n) = usize::try_from(n) {
            break n;
        }
        let e = io::Error::last_os_error();
        match errno(&e) {
            libc::ERANGE => names.resize(names.len() * 4, 0),
            libc::ENOTSUP => return Ok(Vec::new()),
            _ => return Err(e),
        }
    };
    let mut out = Vec::new();
    for key in names[..len].split(|b| *b == 0).filter(|k| !k.is_empty()) {
        let k = cstr(key)?;
        let mut value = vec![0u8; 256];
        loop {
            // SAFETY: value is writable for its length.
            let n = unsafe { libc::fgetxattr(fd, k.as_ptr(), value.as_mut_ptr().cast(), value.len()) };
            if let Ok(n) = usize::try_from(n) {
                value.truncate(n);
                break;
            }
            let e = io::Error::last_os_error();
            match errno(&e) {
                libc::ERANGE => value.resize(value.len() * 4 + 65536, 0),
                // Removed between the list and the read.
                libc::ENODATA => {
                    value.clear();
                    break;
                }
                _ => return Err(e),
            }
        }
        out.push((String::from_utf8_lossy(key).into_owned(), value));
    }
    out.sort();
    Ok(out)
}

/// Sets xattrs on an open file or directory. A filesystem without xattrs
/// (or without that namespace) skips them with a warning rather than refuse the layer.
pub fn set_xattrs(fd: RawFd, xattrs: &[(String, Vec<u8>)], what: &str) -> io::Result<()> {
    for (key, value) in xattrs {
        let k = cstr(key.as_bytes())?;
        // SAFETY: k and value are valid for the call.
        let rc = unsafe { libc::fsetxattr(fd, k.as_ptr(), value.as_ptr().cast(), value.len(), 0) };
        match check(rc) {
            Err(e) if errno(&e) == libc::ENOTSUP => {
                berth_sdk::log(berth_sdk::LogLevel::Warn, &format!("linkvfs: {what}: xattr {key} not kept: {e}"));
            }
            other => other?,
        }
    }
    Ok(())
}

/// Copies the inode `name` of `from` to the new name `to_name` in `to`:
/// content, owner, mode, xattrs (files and directories' own: the others
/// have no descriptor to set them through) and times. `st` is what the
/// caller saw at `name`; a regular file that changed under it is an error.
pub fn copy_inode(from: &Dir, name: &[u8], st: &libc::stat, to: &Dir, to_name: &[u8]) -> io::Result<()> {
    let meta = Meta::of(st);
    match file_type(st.st_mode) {
        libc::S_IFREG => {
            let mut src = from.open_file(name)?;
            let seen = src.metadata()?;
            if std::os::unix::fs::MetadataExt::ino(&seen) != st.st_ino {
                return Err(io::Error::other("the file was replaced while being copied"));
            }
            let mut dst = to.create_file(to_name)?;
            // std copies file to file with copy_file_range: in-kernel, and a reflink where the filesystem can.
            io::copy(&mut src, &mut dst)?;
            set_fd_meta(dst.as_raw_fd(), &meta, &xattrs(src.as_raw_fd())?, "copying a file")
        }
        libc::S_IFLNK => {
            to.symlink(&from.readlink(name)?, to_name)?;
            to.chown(to_name, meta.uid, meta.gid)?;
            to.set_times(to_name, meta.atime, meta.mtime)
        }
        libc::S_IFDIR => Err(io::Error::from_raw_os_error(libc::EISDIR)),
        ftype => {
            to.mknod(to_name, ftype | meta.mode, st.st_rdev)?;
            to.chown(to_name, meta.uid, meta.gid)?;
            to.chmod(to_name, meta.mode)?;
            to.set_times(to_name, meta.atime, meta.mtime)
        }
    }
}
