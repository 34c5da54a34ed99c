//! Thin, checked wrappers over the *at(2) family the storage drivers use.
//!
//! Every path operation here is relative to a directory descriptor and never
//! follows a symlink in the last component, so code built on it can keep all
//! its work inside one directory tree.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// A NUL-terminated copy of `bytes`, or EINVAL if it holds a NUL.
pub fn cstr(bytes: &[u8]) -> io::Result<CString> {
    CString::new(bytes).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))
}

fn check(rc: libc::c_int) -> io::Result<libc::c_int> {
    if rc < 0 { Err(io::Error::last_os_error()) } else { Ok(rc) }
}

/// Opens `path` (a host path) as a directory we can read and set metadata on.
pub fn open_dir_path(path: &Path) -> io::Result<OwnedFd> {
    let p = cstr(path.as_os_str().as_bytes())?;
    // SAFETY: p is a valid C string; the fd is owned on success.
    let fd = check(unsafe { libc::open(p.as_ptr(), libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC) })?;
    // SAFETY: fd was just opened.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// openat(2) with O_CLOEXEC|O_NOFOLLOW added.
pub fn openat(dir: RawFd, name: &[u8], flags: libc::c_int, mode: libc::mode_t) -> io::Result<OwnedFd> {
    let n = cstr(name)?;
    // SAFETY: n is a valid C string.
    let fd = check(unsafe { libc::openat(dir, n.as_ptr(), flags | libc::O_CLOEXEC | libc::O_NOFOLLOW, mode as libc::c_uint) })?;
    // SAFETY: fd was just opened.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Opens the directory `name` in `dir` for reading (not following a symlink).
pub fn open_subdir(dir: RawFd, name: &[u8]) -> io::Result<OwnedFd> {
    openat(dir, name, libc::O_RDONLY | libc::O_DIRECTORY, 0)
}

/// openat2(2): opens `path` below `root` with the given RESOLVE_* flags.
pub fn openat2(root: RawFd, path: &[u8], flags: libc::c_int, resolve: u64) -> io::Result<OwnedFd> {
    let p = cstr(if path.is_empty() { b"." } else { path })?;
    // SAFETY: open_how is plain data; zeroed is a valid value.
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    how.flags = (flags | libc::O_CLOEXEC) as u64;
    how.resolve = resolve;
    // SAFETY: p and how are valid for the call; the size matches the struct.
    let fd = unsafe {
        libc::syscall(libc::SYS_openat2, root, p.as_ptr(), &how as *const libc::open_how, std::mem::size_of::<libc::open_how>())
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd was just opened.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// fstatat(2) without following a symlink; `name` empty means `dir` itself.
pub fn lstat_at(dir: RawFd, name: &[u8]) -> io::Result<libc::stat> {
    let n = cstr(name)?;
    // SAFETY: st is written by the kernel before use.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    let flags = libc::AT_SYMLINK_NOFOLLOW | if name.is_empty() { libc::AT_EMPTY_PATH } else { 0 };
    // SAFETY: n and st are valid.
    check(unsafe { libc::fstatat(dir, n.as_ptr(), &mut st, flags) })?;
    Ok(st)
}

/// fstat(2).
pub fn fstat(fd: RawFd) -> io::Result<libc::stat> {
    lstat_at(fd, b"")
}

/// mkdirat(2).
pub fn mkdirat(dir: RawFd, name: &[u8], mode: libc::mode_t) -> io::Result<()> {
    let n = cstr(name)?;
    // SAFETY: n is a valid C string.
    check(unsafe { libc::mkdirat(dir, n.as_ptr(), mode) }).map(drop)
}

/// mknodat(2).
pub fn mknodat(dir: RawFd, name: &[u8], mode: libc::mode_t, dev: libc::dev_t) -> io::Result<()> {
    let n = cstr(name)?;
    // SAFETY: n is a valid C string.
    check(unsafe { libc::mknodat(dir, n.as_ptr(), mode, dev) }).map(drop)
}

/// symlinkat(2): creates `name` in `dir` pointing at `target` (stored as is).
pub fn symlinkat(target: &[u8], dir: RawFd, name: &[u8]) -> io::Result<()> {
    let t = cstr(target)?;
    let n = cstr(name)?;
    // SAFETY: both are valid C strings.
    check(unsafe { libc::symlinkat(t.as_ptr(), dir, n.as_ptr()) }).map(drop)
}

/// linkat(2) without following a symlink at the source.
pub fn linkat(old_dir: RawFd, old: &[u8], new_dir: RawFd, new: &[u8]) -> io::Result<()> {
    let o = cstr(old)?;
    let n = cstr(new)?;
    // SAFETY: both are valid C strings.
    check(unsafe { libc::linkat(old_dir, o.as_ptr(), new_dir, n.as_ptr(), 0) }).map(drop)
}

/// unlinkat(2); `dir_flag` removes an (empty) directory.
pub fn unlinkat(dir: RawFd, name: &[u8], dir_flag: bool) -> io::Result<()> {
    let n = cstr(name)?;
    // SAFETY: n is a valid C string.
    check(unsafe { libc::unlinkat(dir, n.as_ptr(), if dir_flag { libc::AT_REMOVEDIR } else { 0 }) }).map(drop)
}

/// readlinkat(2).
pub fn readlinkat(dir: RawFd, name: &[u8]) -> io::Result<Vec<u8>> {
    let n = cstr(name)?;
    let mut buf = vec![0u8; libc::PATH_MAX as usize + 1];
    // SAFETY: buf is writable for its length.
    let len = unsafe { libc::readlinkat(dir, n.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    if len < 0 {
        return Err(io::Error::last_os_error());
    }
    buf.truncate(len as usize);
    Ok(buf)
}

/// fchownat(2) without following a symlink; `name` empty means `dir` itself.
pub fn lchown_at(dir: RawFd, name: &[u8], uid: u32, gid: u32) -> io::Result<()> {
    let n = cstr(name)?;
    let flags = libc::AT_SYMLINK_NOFOLLOW | if name.is_empty() { libc::AT_EMPTY_PATH } else { 0 };
    // SAFETY: n is a valid C string.
    check(unsafe { libc::fchownat(dir, n.as_ptr(), uid, gid, flags) }).map(drop)
}

/// fchmodat(2) of a non-symlink `name` in `dir`.
pub fn chmod_at(dir: RawFd, name: &[u8], mode: libc::mode_t) -> io::Result<()> {
    let n = cstr(name)?;
    // SAFETY: n is a valid C string.
    check(unsafe { libc::fchmodat(dir, n.as_ptr(), mode, 0) }).map(drop)
}

/// fchmod(2).
pub fn fchmod(fd: RawFd, mode: libc::mode_t) -> io::Result<()> {
    // SAFETY: plain syscall on an fd.
    check(unsafe { libc::fchmod(fd, mode) }).map(drop)
}

/// fchown(2).
pub fn fchown(fd: RawFd, uid: u32, gid: u32) -> io::Result<()> {
    // SAFETY: plain syscall on an fd.
    check(unsafe { libc::fchown(fd, uid, gid) }).map(drop)
}

/// A timestamp for utimensat.
pub fn timespec(sec: i64, nsec: i64) -> libc::timespec {
    libc::timespec { tv_sec: sec as libc::time_t, tv_nsec: nsec as _ }
}

/// utimensat(2) without following a symlink.
pub fn lutimes_at(dir: RawFd, name: &[u8], atime: libc::timespec, mtime: libc::timespec) -> io::Result<()> {
    let n = cstr(name)?;
    let times = [atime, mtime];
    // SAFETY: n and times are valid.
    check(unsafe { libc::utimensat(dir, n.as_ptr(), times.as_ptr(), libc::AT_SYMLINK_NOFOLLOW) }).map(drop)
}

/// futimens(3).
pub fn futimens(fd: RawFd, atime: libc::timespec, mtime: libc::timespec) -> io::Result<()> {
    let times = [atime, mtime];
    // SAFETY: times is valid.
    check(unsafe { libc::futimens(fd, times.as_ptr()) }).map(drop)
}

/// A path that reaches `name` in the directory behind `dir` through /proc,
/// for the calls (xattrs on symlinks and device nodes) that have no *at form.
fn proc_path(dir: RawFd, name: &[u8]) -> io::Result<CString> {
    let mut p = format!("/proc/self/fd/{dir}").into_bytes();
    if !name.is_empty() {
        p.push(b'/');
        p.extend_from_slice(name);
    }
    cstr(&p)
}

/// fsetxattr(2).
pub fn fsetxattr(fd: RawFd, key: &str, value: &[u8]) -> io::Result<()> {
    let k = cstr(key.as_bytes())?;
    // SAFETY: k and value are valid for the call.
    check(unsafe { libc::fsetxattr(fd, k.as_ptr(), value.as_ptr().cast(), value.len(), 0) }).map(drop)
}

/// Sets xattr `key` on `name` in `dir` (on `dir` itself if `name` is empty)
/// without following a symlink at `name`.
pub fn lsetxattr_at(dir: RawFd, name: &[u8], key: &str, value: &[u8]) -> io::Result<()> {
    let p = proc_path(dir, name)?;
    let k = cstr(key.as_bytes())?;
    // SAFETY: p, k and value are valid for the call.
    let rc = unsafe {
        if name.is_empty() {
            libc::setxattr(p.as_ptr(), k.as_ptr(), value.as_ptr().cast(), value.len(), 0)
        } else {
            libc::lsetxattr(p.as_ptr(), k.as_ptr(), value.as_ptr().cast(), value.len(), 0)
        }
    };
    check(rc).map(drop)
}

/// The xattrs of `name` in `dir` (of `dir` itself if `name` is empty), sorted
/// by name, without following a symlink at `name`.
pub fn lxattrs_at(dir: RawFd, name: &[u8]) -> io::Result<Vec<(String, Vec<u8>)>> {
    let p = proc_path(dir, name)?;
    let follow = name.is_empty();
    let list = |buf: &mut [u8]| -> isize {
        // SAFETY: buf is writable for its length (or empty with a null-safe size 0).
        unsafe {
            if follow {
                libc::listxattr(p.as_ptr(), buf.as_mut_ptr().cast(), buf.len())
            } else {
                libc::llistxattr(p.as_ptr(), buf.as_mut_ptr().cast(), buf.len())
            }
        }
    };
    let mut names = vec![0u8; 1024];
    let len = loop {
        let n = list(&mut names);
        if n >= 0 {
            break n as usize;
        }
        let e = io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::ERANGE) => names.resize(names.len() * 4, 0),
            Some(libc::ENOTSUP) => return Ok(Vec::new()),
            _ => return Err(e),
        }
    };
    let mut out = Vec::new();
    for key in names[..len].split(|b| *b == 0).filter(|k| !k.is_empty()) {
        let k = cstr(key)?;
        let mut value = vec![0u8; 256];
        loop {
            // SAFETY: value is writable for its length.
            let n = unsafe {
                if follow {
                    libc::getxattr(p.as_ptr(), k.as_ptr(), value.as_mut_ptr().cast(), value.len())
                } else {
                    libc::lgetxattr(p.as_ptr(), k.as_ptr(), value.as_mut_ptr().cast(), value.len())
                }
            };
            if n >= 0 {
                value.truncate(n as usize);
                break;
            }
            let e = io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::ERANGE) {
                value.resize(value.len() * 4 + 65536, 0);
                continue;
            }
            return Err(e);
        }
        out.push((String::from_utf8_lossy(key).into_owned(), value));
    }
    out.sort();
    Ok(out)
}

/// One xattr of `name` in `dir`, None if it is not set.
pub fn lgetxattr_at(dir: RawFd, name: &[u8], key: &str) -> io::Result<Option<Vec<u8>>> {
    let p = proc_path(dir, name)?;
    let k = cstr(key.as_bytes())?;
    let mut value = vec![0u8; 64];
    // SAFETY: value is writable for its length. An empty name means the
    // directory behind the /proc magic link, which must then be followed.
    let n = unsafe {
        if name.is_empty() {
            libc::getxattr(p.as_ptr(), k.as_ptr(), value.as_mut_ptr().cast(), value.len())
        } else {
            libc::lgetxattr(p.as_ptr(), k.as_ptr(), value.as_mut_ptr().cast(), value.len())
        }
    };
    if n < 0 {
        let e = io::Error::last_os_error();
        return match e.raw_os_error() {
            Some(libc::ENODATA) | Some(libc::ENOTSUP) => Ok(None),
            _ => Err(e),
        };
    }
    value.truncate(n as usize);
    Ok(Some(value))
}

/// A directory entry's name.
pub struct DirEntry {
    pub name: Vec<u8>,
}

/// The entries of directory `dir` except `.` and `..`, sorted by name.
pub fn read_dir(dir: RawFd) -> io::Result<Vec<DirEntry>> {
    // fdopendir takes ownership of the descriptor and shares its offset, so
    // read a fresh one.
    let own = openat(dir, b".", libc::O_RDONLY | libc::O_DIRECTORY, 0)?;
    let raw = std::os::fd::IntoRawFd::into_raw_fd(own);
    // SAFETY: raw is an open directory fd; on success DIR owns it.
    let d = unsafe { libc::fdopendir(raw) };
    if d.is_null() {
        let e = io::Error::last_os_error();
        // SAFETY: fdopendir failed, so raw is still ours to close.
        unsafe { libc::close(raw) };
        return Err(e);
    }
    let mut out = Vec::new();
    let result = loop {
        // SAFETY: errno is thread-local; readdir distinguishes end from error by it.
        unsafe { *libc::__errno_location() = 0 };
        // SAFETY: d is an open DIR stream.
        let ent = unsafe { libc::readdir64(d) };
        if ent.is_null() {
            let errno = io::Error::last_os_error();
            break if errno.raw_os_error().unwrap_or(0) != 0 { Err(errno) } else { Ok(()) };
        }
        // SAFETY: ent points at a valid dirent until the next readdir call.
        let name = unsafe { std::ffi::CStr::from_ptr((*ent).d_name.as_ptr()).to_bytes().to_vec() };
        if name != b"." && name != b".." {
            out.push(DirEntry { name });
        }
    };
    // SAFETY: d is open and closed exactly once.
    unsafe { libc::closedir(d) };
    result?;
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// Removes `name` in `dir` and everything below it, never following symlinks.
/// A missing `name` is not an error.
pub fn remove_all_at(dir: RawFd, name: &[u8]) -> io::Result<()> {
    match unlinkat(dir, name, false) {
        Ok(()) => return Ok(()),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(()),
        Err(e) if matches!(e.raw_os_error(), Some(libc::EISDIR) | Some(libc::EPERM)) => {}
        Err(e) => return Err(e),
    }
    let sub = match open_subdir(dir, name) {
        Ok(fd) => fd,
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(()),
        Err(e) => return Err(e),
    };
    remove_contents(sub.as_raw_fd(), &|_| true)?;
    drop(sub);
    match unlinkat(dir, name, true) {
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(()),
        other => other,
    }
}

/// Removes the entries of `dir` for which `remove` returns true, recursively.
pub fn remove_contents(dir: RawFd, remove: &dyn Fn(&[u8]) -> bool) -> io::Result<()> {
    for entry in read_dir(dir)? {
        if remove(&entry.name) {
            remove_all_at(dir, &entry.name)?;
        }
    }
    Ok(())
}

/// Removes the host path `path` and everything below it (missing is fine).
pub fn remove_all(path: &Path) -> io::Result<()> {
    let parent = path.parent().unwrap_or(Path::new("/"));
    let Some(name) = path.file_name() else {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    };
    let pfd = match open_dir_path(parent) {
        Ok(fd) => fd,
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(()),
        Err(e) => return Err(e),
    };
    remove_all_at(pfd.as_raw_fd(), name.as_bytes())
}

/// The file type bits of a stat mode.
pub fn file_type(mode: libc::mode_t) -> libc::mode_t {
    mode & libc::S_IFMT
}

/// Whether a stat describes an overlay whiteout (a char device 0/0).
pub fn is_whiteout(st: &libc::stat) -> bool {
    file_type(st.st_mode) == libc::S_IFCHR && st.st_rdev == 0
}

/// `n` bytes from the kernel's random source.
pub fn random_bytes(n: usize) -> io::Result<Vec<u8>> {
    let mut buf = vec![0u8; n];
    let mut filled = 0;
    while filled < n {
        // SAFETY: the slice from `filled` is writable.
        let r = unsafe { libc::getrandom(buf[filled..].as_mut_ptr().cast(), n - filled, 0) };
        if r < 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            return Err(e);
        }
        filled += r as usize;
    }
    Ok(buf)
}

/// Copies a regular file's content from `src` to `dst` (reflink when the
/// filesystem can, else in-kernel copy, else read/write).
pub fn copy_data(src: RawFd, dst: RawFd, len: u64) -> io::Result<()> {
    const FICLONE: libc::c_ulong = 0x4004_9409;
    // SAFETY: both fds are open; FICLONE takes the source fd as its argument.
    if len > 0 && unsafe { libc::ioctl(dst, FICLONE as _, src) } == 0 {
        return Ok(());
    }
    let mut off_in: i64 = 0;
    let mut off_out: i64 = 0;
    let mut left = len;
    while left > 0 {
        let chunk = left.min(1 << 30) as usize;
        // SAFETY: offsets are valid out pointers; fds are open.
        let n = unsafe { libc::copy_file_range(src, &mut off_in, dst, &mut off_out, chunk, 0) };
        if n < 0 {
            let e = io::Error::last_os_error();
            match e.raw_os_error() {
                Some(libc::EXDEV) | Some(libc::ENOSYS) | Some(libc::EINVAL) | Some(libc::EOPNOTSUPP) => {
                    return copy_data_rw(src, dst, off_in, left);
                }
                Some(libc::EINTR) => continue,
                _ => return Err(e),
            }
        }
        if n == 0 {
            // The source shrank while copying; what we have is what there is.
            break;
        }
        left -= n as u64;
    }
    Ok(())
}

fn copy_data_rw(src: RawFd, dst: RawFd, mut off: i64, mut left: u64) -> io::Result<()> {
    let mut buf = vec![0u8; 1 << 20];
    while left > 0 {
        let want = (left as usize).min(buf.len());
        // SAFETY: buf is writable for `want` bytes.
        let n = unsafe { libc::pread(src, buf.as_mut_ptr().cast(), want, off) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            return Err(e);
        }
        if n == 0 {
            break;
        }
        let mut done = 0usize;
        while done < n as usize {
            // SAFETY: the range is inside buf.
            let w = unsafe { libc::pwrite(dst, buf[done..].as_ptr().cast(), n as usize - done, off + done as i64) };
            if w < 0 {
                let e = io::Error::last_os_error();
                if e.raw_os_error() == Some(libc::EINTR) {
                    continue;
                }
                return Err(e);
            }
            done += w as usize;
        }
        off += n as i64;
        left -= n as u64;
    }
    Ok(())
}

/// Writes all of `data` to `fd`.
pub fn write_all(fd: RawFd, mut data: &[u8]) -> io::Result<()> {
    while !data.is_empty() {
        // SAFETY: data is readable for its length.
        let n = unsafe { libc::write(fd, data.as_ptr().cast(), data.len()) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            return Err(e);
        }
        data = &data[n as usize..];
    }
    Ok(())
}

/// Joins a relative path and a name with `/` (no leading slash for the root).
pub fn join(rel: &[u8], name: &[u8]) -> Vec<u8> {
    let mut p = Vec::with_capacity(rel.len() + 1 + name.len());
    p.extend_from_slice(rel);
    if !rel.is_empty() {
        p.push(b'/');
    }
    p.extend_from_slice(name);
    p
}


/// syncfs(2): flushes the filesystem holding `fd` to disk.
pub fn syncfs(fd: RawFd) -> io::Result<()> {
    // SAFETY: plain syscall on an fd.
    check(unsafe { libc::syncfs(fd) }).map(drop)
}

/// statfs(2)'s filesystem magic for the filesystem holding `path`.
pub fn fs_magic(path: &Path) -> io::Result<i64> {
    let p = cstr(path.as_os_str().as_bytes())?;
    // SAFETY: st is written by the kernel before use.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: p and st are valid.
    check(unsafe { libc::statfs(p.as_ptr(), &mut st) })?;
    Ok(st.f_type as i64)
}
