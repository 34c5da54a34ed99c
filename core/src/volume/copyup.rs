//! Copy-up: an empty volume mounted over a directory of the image gets
//! that directory's files first (Docker's `copyExistingContents`), with
//! owners, modes, symlinks, hard links, device nodes, xattrs and times, and
//! the volume's root takes the directory's owner and mode.
//!
//! The source is a read-only view of the container's root filesystem; no
//! symlink is ever followed (they are copied as links), so nothing outside
//! that tree is read.

use std::collections::HashMap;
use std::ffi::CString;
use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

fn cpath(p: &Path) -> io::Result<CString> {
    CString::new(p.as_os_str().as_bytes()).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} contains a NUL byte", p.display()),
        )
    })
}

fn check(rc: libc::c_int) -> io::Result<()> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

fn lchown(p: &Path, md: &fs::Metadata) -> io::Result<()> {
    std::os::unix::fs::lchown(p, Some(md.uid()), Some(md.gid()))
}

/// Sets atime/mtime of `p` (not following a symlink there).
fn set_times(p: &Path, md: &fs::Metadata) -> io::Result<()> {
    let c = cpath(p)?;
    let ts = [
        libc::timespec {
            tv_sec: md.atime() as libc::time_t,
            tv_nsec: md.atime_nsec() as _,
        },
        libc::timespec {
            tv_sec: md.mtime() as libc::time_t,
            tv_nsec: md.mtime_nsec() as _,
        },
    ];
    // SAFETY: c is a valid C string and ts an array of two timespecs.
    check(unsafe {
        libc::utimensat(
            libc::AT_FDCWD,
            c.as_ptr(),
            ts.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    })
}

/// Copies the extended attributes of `src` to `dst` (neither followed).
/// Attributes the target filesystem or our privileges refuse are skipped.
fn copy_xattrs(src: &Path, dst: &Path) -> io::Result<()> {
    let s = cpath(src)?;
    let d = cpath(dst)?;
    // SAFETY: s is valid; a null buffer of size 0 asks for the needed size.
    let n = unsafe { libc::llistxattr(s.as_ptr(), std::ptr::null_mut(), 0) };
    if n == 0 {
        return Ok(());
    }
    if n < 0 {
        let e = io::Error::last_os_error();
        return if e.raw_os_error() == Some(libc::ENOTSUP) {
            Ok(())
        } else {
            Err(e)
        };
    }
    let mut names = vec![0u8; n as usize];
    // SAFETY: names is a writable buffer of the given size.
    let n = unsafe { libc::llistxattr(s.as_ptr(), names.as_mut_ptr().cast(), names.len()) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    names.truncate(n as usize);
    for name in names.split(|b| *b == 0).filter(|n| !n.is_empty()) {
        let Ok(cname) = CString::new(name) else {
            continue;
        };
        // SAFETY: valid strings; a null buffer asks for the size.
        let len = unsafe { libc::lgetxattr(s.as_ptr(), cname.as_ptr(), std::ptr::null_mut(), 0) };
        if len < 0 {
            continue;
        }
        let mut value = vec![0u8; len as usize];
        // SAFETY: value is a writable buffer of the given size.
        let len = unsafe {
            libc::lgetxattr(
                s.as_ptr(),
                cname.as_ptr(),
                value.as_mut_ptr().cast(),
                value.len(),
            )
        };
        if len < 0 {
            continue;
        }
        value.truncate(len as usize);
        // SAFETY: valid strings and buffer.
        let rc = unsafe {
            libc::lsetxattr(
                d.as_ptr(),
                cname.as_ptr(),
                value.as_ptr().cast(),
                value.len(),
                0,
            )
        };
        if rc < 0 {
            let e = io::Error::last_os_error();
            if matches!(e.raw_os_error(), Some(libc::ENOTSUP) | Some(libc::EPERM)) {
                tracing::debug!(xattr = %String::from_utf8_lossy(name), path = %dst.display(), "xattr not copied into the volume");
                continue;
            }
            return Err(e);
        }
    }
    Ok(())
}

/// Owner, mode (after the owner: chown clears set-id bits), xattrs.
fn set_meta(dst: &Path, src: &Path, md: &fs::Metadata) -> io::Result<()> {
    lchown(dst, md)?;
    if !md.file_type().is_symlink() {
        fs::set_permissions(dst, fs::Permissions::from_mode(md.mode() & 0o7777))?;
    }
    copy_xattrs(src, dst)
}

fn with_path(e: io::Error, what: &str, p: &Path) -> io::Error {
    io::Error::new(e.kind(), format!("{what} {}: {e}", p.display()))
}

/// Opens directory `path` of the tree at `root` (O_PATH) with openat2's
/// RESOLVE_IN_ROOT: symlinks on the way resolve inside that tree, never
/// to the host's files.
pub fn open_dir_in_root(root: &Path, path: &Path) -> io::Result<std::os::fd::OwnedFd> {
    use std::os::fd::FromRawFd;
    let root_fd = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_CLOEXEC)
        .open(root)?;
    let rel = path.strip_prefix("/").unwrap_or(path);
    let rel = if rel.as_os_str().is_empty() {
        Path::new(".")
    } else {
        rel
    };
    let c = cpath(rel)?;
    // SAFETY: open_how is plain data; zeroed is a valid value.
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    how.flags = (libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC) as u64;
    how.resolve = libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_MAGICLINKS;
    // SAFETY: c and how are valid for the call; the size matches the struct.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            std::os::fd::AsRawFd::as_raw_fd(&root_fd),
            c.as_ptr(),
            &how as *const libc::open_how,
            std::mem::size_of::<libc::open_how>(),
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd was just opened and is owned here.
    Ok(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd as libc::c_int) })
}

/// Whether directory `dir` has no entries.
pub fn is_empty_dir(dir: &Path) -> io::Result<bool> {
    Ok(fs::read_dir(dir)?.next().is_none())
}

/// Copies the contents of `src` into the empty directory `dst`, then gives
/// `dst` the owner and mode of `src`. Returns the number of entries copied.
pub fn copy_up(src: &Path, dst: &Path) -> io::Result<u64> {
    let mut links: HashMap<(u64, u64), PathBuf> = HashMap::new();
    let mut dirs: Vec<(PathBuf, fs::Metadata)> = Vec::new();
    let mut stack: Vec<PathBuf> = vec![PathBuf::new()];
    let mut count = 0u64;
    while let Some(rel) = stack.pop() {
        let sdir = src.join(&rel);
        let entries = fs::read_dir(&sdir).map_err(|e| with_path(e, "reading", &sdir))?;
        for entry in entries {
            let entry = entry.map_err(|e| with_path(e, "reading", &sdir))?;
            let name = entry.file_name();
            let rel_child = rel.join(&name);
            let s = src.join(&rel_child);
            let d = dst.join(&rel_child);
            let md = fs::symlink_metadata(&s).map_err(|e| with_path(e, "reading", &s))?;
            copy_entry(&s, &d, &md, &mut links).map_err(|e| with_path(e, "copying into", &d))?;
            if md.is_dir() {
                stack.push(rel_child);
                dirs.push((d, md));
            }
            count += 1;
        }
    }
    // Directory times last: filling a directory changes its mtime.
    for (d, md) in dirs.iter().rev() {
        set_times(d, md).map_err(|e| with_path(e, "setting times of", d))?;
    }
    // `src/.`: the directory itself even when `src` is a /proc/self/fd magic link.
    let root = src.join(".");
    let md = fs::symlink_metadata(&root)?;
    set_meta(dst, &root, &md).map_err(|e| with_path(e, "setting the owner and mode of", dst))?;
    Ok(count)
}

fn copy_entry(
    s: &Path,
    d: &Path,
    md: &fs::Metadata,
    links: &mut HashMap<(u64, u64), PathBuf>,
) -> io::Result<()> {
    let ft = md.file_type();
    if !ft.is_dir() && md.nlink() > 1 {
        if let Some(first) = links.get(&(md.dev(), md.ino())) {
            return fs::hard_link(first, d);
        }
        links.insert((md.dev(), md.ino()), d.to_path_buf());
    }
    if ft.is_dir() {
        fs::DirBuilder::new().mode(0o700).create(d)?;
        return set_meta(d, s, md);
    }
    if ft.is_symlink() {
        std::os::unix::fs::symlink(fs::read_link(s)?, d)?;
        set_meta(d, s, md)?;
        return set_times(d, md);
    }
    if ft.is_file() {
        let mut from = fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(s)?;
        let mut to = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(d)?;
        io::copy(&mut from, &mut to)?;
        drop(to);
        set_meta(d, s, md)?;
        return set_times(d, md);
    }
    if ft.is_socket() {
        // A socket is only meaningful to the process that bound it.
        return Ok(());
    }
    let kind = if ft.is_char_device() {
        libc::S_IFCHR
    } else if ft.is_block_device() {
        libc::S_IFBLK
    } else {
        libc::S_IFIFO
    };
    let c = cpath(d)?;
    // SAFETY: c is a valid C string.
    check(unsafe {
        libc::mknod(
            c.as_ptr(),
            kind | (md.mode() & 0o7777),
            md.rdev() as libc::dev_t,
        )
    })?;
    set_meta(d, s, md)?;
    set_times(d, md)
}

/// Bytes of file content under `dir` (hard links once), as Docker's
/// `directory.Size` counts a volume for `system df`.
pub fn content_size(dir: &Path) -> io::Result<u64> {
    let mut seen = std::collections::HashSet::new();
    let mut total = 0u64;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let entries = match fs::read_dir(&d) {
            Ok(e) => e,
            // Vanished or unreadable meanwhile: count what can be seen.
            Err(e) if d != dir => {
                tracing::debug!(path = %d.display(), error = %e, "skipping in a volume size");
                continue;
            }
            Err(e) => return Err(e),
        };
        for entry in entries.flatten() {
            let Ok(md) = entry.metadata() else { continue };
            if md.is_dir() {
                stack.push(entry.path());
            } else if md.len() > 0 && seen.insert((md.dev(), md.ino())) {
                total += md.len();
            }
        }
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_everything_and_root_metadata() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let src = tmp.path().join("src");
        let dst = tmp.path().join("dst");
        fs::create_dir_all(src.join("sub/deeper")).expect("mkdir");
        fs::create_dir(&dst).expect("mkdir dst");
        fs::write(src.join("a"), b"alpha").expect("write");
        fs::write(src.join("sub/deeper/b"), b"beta").expect("write");
        fs::set_permissions(src.join("a"), fs::Permissions::from_mode(0o640)).expect("chmod");
        fs::set_permissions(&src, fs::Permissions::from_mode(0o750)).expect("chmod");
        std::os::unix::fs::symlink("/etc/passwd", src.join("link")).expect("symlink");
        fs::hard_link(src.join("a"), src.join("a2")).expect("hardlink");
        std::os::unix::fs::lchown(src.join("sub"), Some(1234), Some(4321))
            .expect("chown (tests run as root)");
        let n = copy_up(&src, &dst).expect("copy");
        assert_eq!(n, 6);
        assert_eq!(fs::read(dst.join("a")).expect("a"), b"alpha");
        assert_eq!(fs::read(dst.join("sub/deeper/b")).expect("b"), b"beta");
        assert_eq!(
            fs::symlink_metadata(dst.join("a")).expect("md").mode() & 0o7777,
            0o640
        );
        assert_eq!(
            fs::read_link(dst.join("link")).expect("link"),
            PathBuf::from("/etc/passwd")
        );
        let (m1, m2) = (
            fs::metadata(dst.join("a")).expect("a"),
            fs::metadata(dst.join("a2")).expect("a2"),
        );
        assert_eq!(m1.ino(), m2.ino(), "hard links stay linked");
        let sub = fs::metadata(dst.join("sub")).expect("sub");
        assert_eq!((sub.uid(), sub.gid()), (1234, 4321));
        assert_eq!(
            fs::metadata(&dst).expect("dst").mode() & 0o7777,
            0o750,
            "the volume root takes the image dir's mode"
        );
        assert_eq!(
            fs::metadata(dst.join("sub/deeper/b")).expect("b").mtime(),
            fs::metadata(src.join("sub/deeper/b")).expect("b").mtime()
        );
        // Like Docker's directory.Size: file bytes once per inode, symlinks by their length.
        assert_eq!(
            content_size(&dst).expect("size"),
            5 + 4 + "/etc/passwd".len() as u64
        );
        assert!(!is_empty_dir(&dst).expect("dst"));
        fs::create_dir(tmp.path().join("empty")).expect("mkdir");
        assert!(is_empty_dir(&tmp.path().join("empty")).expect("empty"));
    }
}
