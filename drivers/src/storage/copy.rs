//! Full-tree copies for the vfs driver: everything a layer tar can carry
//! (modes, owners, xattrs, devices, fifos, hard links, symlinks, mtimes)
//! survives, and nothing is followed out of the source tree.

use std::collections::HashMap;
use std::io;
use std::os::fd::{AsRawFd, RawFd};

use super::sys;

fn ts(sec: i64, nsec: i64) -> libc::timespec {
    sys::timespec(sec, nsec)
}

fn times(st: &libc::stat) -> (libc::timespec, libc::timespec) {
    (ts(st.st_atime, st.st_atime_nsec), ts(st.st_mtime, st.st_mtime_nsec))
}

fn copy_xattrs(xattrs: Vec<(String, Vec<u8>)>, set: impl Fn(&str, &[u8]) -> io::Result<()>) -> io::Result<()> {
    for (k, v) in xattrs {
        match set(&k, &v) {
            Err(e) if e.raw_os_error() == Some(libc::ENOTSUP) => {
                tracing::warn!(xattr = k.as_str(), "filesystem does not support this xattr; not copied");
            }
            other => other?,
        }
    }
    Ok(())
}

/// Copies the contents of directory `src` into the empty directory `dst`,
/// then gives `dst` the metadata of `src`.
pub fn copy_tree(src: RawFd, dst: RawFd) -> io::Result<()> {
    let mut links = HashMap::new();
    copy_dir_contents(src, dst, dst, b"", &mut links)?;
    let st = sys::fstat(src)?;
    set_dir_meta(src, dst, &st)
}

fn set_dir_meta(src: RawFd, dst: RawFd, st: &libc::stat) -> io::Result<()> {
    sys::fchown(dst, st.st_uid, st.st_gid)?;
    sys::fchmod(dst, st.st_mode & 0o7777)?;
    copy_xattrs(sys::lxattrs_at(src, b"")?, |k, v| sys::fsetxattr(dst, k, v))?;
    let (a, m) = times(st);
    sys::futimens(dst, a, m)
}

fn copy_dir_contents(
    src: RawFd,
    dst: RawFd,
    dst_root: RawFd,
    rel: &[u8],
    links: &mut HashMap<(u64, u64), Vec<u8>>,
) -> io::Result<()> {
    for entry in sys::read_dir(src)? {
        let name = entry.name.as_slice();
        let st = sys::lstat_at(src, name)?;
        let ftype = sys::file_type(st.st_mode);
        let path = sys::join(rel, name);
        if ftype != libc::S_IFDIR && st.st_nlink > 1 {
            if let Some(first) = links.get(&(st.st_dev, st.st_ino)) {
                sys::linkat(dst_root, first, dst, name)?;
                continue;
            }
            links.insert((st.st_dev, st.st_ino), path.clone());
        }
        let (atime, mtime) = times(&st);
        match ftype {
            libc::S_IFDIR => {
                sys::mkdirat(dst, name, 0o700)?;
                let s = sys::open_subdir(src, name)?;
                let d = sys::open_subdir(dst, name)?;
                copy_dir_contents(s.as_raw_fd(), d.as_raw_fd(), dst_root, &path, links)?;
                set_dir_meta(s.as_raw_fd(), d.as_raw_fd(), &st)?;
            }
            libc::S_IFREG => {
                let s = sys::openat(src, name, libc::O_RDONLY, 0)?;
                let d = sys::openat(dst, name, libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL, 0o600)?;
                sys::copy_data(s.as_raw_fd(), d.as_raw_fd(), st.st_size as u64)?;
                sys::fchown(d.as_raw_fd(), st.st_uid, st.st_gid)?;
                sys::fchmod(d.as_raw_fd(), st.st_mode & 0o7777)?;
                copy_xattrs(sys::lxattrs_at(s.as_raw_fd(), b"")?, |k, v| sys::fsetxattr(d.as_raw_fd(), k, v))?;
                sys::futimens(d.as_raw_fd(), atime, mtime)?;
            }
            libc::S_IFLNK => {
                let target = sys::readlinkat(src, name)?;
                sys::symlinkat(&target, dst, name)?;
                sys::lchown_at(dst, name, st.st_uid, st.st_gid)?;
                copy_xattrs(sys::lxattrs_at(src, name)?, |k, v| sys::lsetxattr_at(dst, name, k, v))?;
                sys::lutimes_at(dst, name, atime, mtime)?;
            }
            _ => {
                sys::mknodat(dst, name, st.st_mode, st.st_rdev)?;
                sys::lchown_at(dst, name, st.st_uid, st.st_gid)?;
                sys::chmod_at(dst, name, st.st_mode & 0o7777)?;
                copy_xattrs(sys::lxattrs_at(src, name)?, |k, v| sys::lsetxattr_at(dst, name, k, v))?;
                sys::lutimes_at(dst, name, atime, mtime)?;
            }
        }
    }
    Ok(())
}
