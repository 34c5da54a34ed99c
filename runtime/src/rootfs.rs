//! The container's filesystem, built inside its new mount namespace: spec
//! mounts, /dev, pivot_root, masked and read-only paths.
//!
//! Runs only in the container process before exec. Every mount target is
//! resolved inside the rootfs with openat2(RESOLVE_IN_ROOT) and mounted
//! through its /proc/self/fd magic link, so a symlink in an image (say
//! `/etc/hosts -> /../../host/file`) can never redirect a mount onto the host.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use oci_spec::runtime::{LinuxDevice, LinuxDeviceType, Mount};

use super::RuntimeError;

fn sys(step: impl Into<String>, source: io::Error) -> RuntimeError {
    RuntimeError::Sys { step: step.into(), source }
}

fn cstr(p: &[u8]) -> io::Result<CString> {
    CString::new(p).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))
}

fn check(rc: libc::c_int) -> io::Result<()> {
    if rc < 0 { Err(io::Error::last_os_error()) } else { Ok(()) }
}

/// mount(2) with optional strings.
pub(crate) fn mount_raw(
    source: Option<&[u8]>,
    target: &[u8],
    fstype: Option<&str>,
    flags: libc::c_ulong,
    data: Option<&str>,
) -> io::Result<()> {
    let source = source.map(cstr).transpose()?;
    let target = cstr(target)?;
    let fstype = fstype.map(|s| cstr(s.as_bytes())).transpose()?;
    let data = data.filter(|d| !d.is_empty()).map(|s| cstr(s.as_bytes())).transpose()?;
    let p = |c: &Option<CString>| c.as_ref().map_or(std::ptr::null(), |c| c.as_ptr());
    // SAFETY: all pointers are null or valid C strings living across the call.
    check(unsafe { libc::mount(p(&source), target.as_ptr(), p(&fstype), flags, p(&data).cast()) })
}

/// The flags, propagation changes and data string of a mount's options.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct MountOptions {
    pub flags: libc::c_ulong,
    /// MS_PRIVATE/MS_SLAVE/... (with MS_REC), applied by separate calls.
    pub propagation: Vec<libc::c_ulong>,
    pub data: String,
    pub bind: bool,
}

/// Parses OCI mount options (mount(8) words plus bind/rbind and propagation).
pub(crate) fn parse_options(options: &[String]) -> MountOptions {
    let mut o = MountOptions::default();
    let mut data = Vec::new();
    for opt in options {
        let (set, clear): (libc::c_ulong, libc::c_ulong) = match opt.as_str() {
            "bind" => {
                o.bind = true;
                (libc::MS_BIND, 0)
            }
            "rbind" => {
                o.bind = true;
                (libc::MS_BIND | libc::MS_REC, 0)
            }
            "private" | "rprivate" | "shared" | "rshared" | "slave" | "rslave" | "unbindable" | "runbindable" => {
                let base = match opt.trim_start_matches('r') {
                    "private" => libc::MS_PRIVATE,
                    "shared" => libc::MS_SHARED,
                    "slave" => libc::MS_SLAVE,
                    _ => libc::MS_UNBINDABLE,
                };
                // "runbindable" trims to "unbindable"; the r prefix means recursive.
                let rec = if opt.starts_with('r') { libc::MS_REC } else { 0 };
                o.propagation.push(base | rec);
                continue;
            }
            word => match super::mount::option_flags(word) {
                Some(flags) => flags,
                None => {
                    data.push(word);
                    continue;
                }
            },
        };
        o.flags = (o.flags | set) & !clear;
    }
    o.data = data.join(",");
    o
}

/// What to create at a missing mount target.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Create {
    Dir,
    File,
}

/// openat2 below `root` with RESOLVE_IN_ROOT: symlinks resolve inside the rootfs.
pub(crate) fn open_in_root(root: RawFd, path: &Path, flags: libc::c_int) -> io::Result<OwnedFd> {
    let rel = path.strip_prefix("/").unwrap_or(path);
    let p = cstr(if rel.as_os_str().is_empty() { b"." } else { rel.as_os_str().as_bytes() })?;
    // SAFETY: open_how is plain data; zeroed is a valid value.
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    how.flags = (flags | libc::O_CLOEXEC) as u64;
    how.resolve = libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_MAGICLINKS;
    // SAFETY: p and how are valid for the call; the size matches the struct.
    let fd = unsafe {
        libc::syscall(libc::SYS_openat2, root, p.as_ptr(), &how as *const libc::open_how, std::mem::size_of::<libc::open_how>())
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd was just opened and is owned here.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// Opens (O_PATH) `path` inside `root`, creating it and its missing parents
/// as directories (and the last one as `create`) without leaving the rootfs.
pub(crate) fn ensure_in_root(root: RawFd, path: &Path, create: Create) -> io::Result<OwnedFd> {
    match open_in_root(root, path, libc::O_PATH) {
        Ok(fd) => return Ok(fd),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
        Err(e) => return Err(e),
    }
    let comps: Vec<&std::ffi::OsStr> =
        path.components().filter_map(|c| if let Component::Normal(n) = c { Some(n) } else { None }).collect();
    let mut cur = PathBuf::from("/");
    for (i, name) in comps.iter().enumerate() {
        let next = cur.join(name);
        let last = i + 1 == comps.len();
        match open_in_root(root, &next, libc::O_PATH) {
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                let parent = open_in_root(root, &cur, libc::O_PATH | libc::O_DIRECTORY)?;
                let n = cstr(name.as_bytes())?;
                let make = |kind: Create| -> io::Result<()> {
                    if kind == Create::File {
                        // SAFETY: parent is open; n is a valid C string.
                        let fd = unsafe {
                            libc::openat(parent.as_raw_fd(), n.as_ptr(), libc::O_CREAT | libc::O_EXCL | libc::O_WRONLY | libc::O_NOFOLLOW | libc::O_CLOEXEC, 0o644)
                        };
                        if fd < 0 {
                            return Err(io::Error::last_os_error());
                        }
                        // SAFETY: fd was just opened.
                        unsafe { libc::close(fd) };
                        Ok(())
                    } else {
                        // SAFETY: parent is open; n is a valid C string.
                        check(unsafe { libc::mkdirat(parent.as_raw_fd(), n.as_ptr(), 0o755) })
                    }
                };
                let kind = if last { create } else { Create::Dir };
                match make(kind) {
                    Ok(()) => {}
                    // A dangling symlink: it points nowhere inside the rootfs;
                    // replace it by what the mount needs.
                    Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {
                        // SAFETY: parent is open; n is a valid C string.
                        check(unsafe { libc::unlinkat(parent.as_raw_fd(), n.as_ptr(), 0) })?;
                        make(kind)?;
                    }
                    Err(e) => return Err(e),
                }
            }
            Err(e) => return Err(e),
        }
        cur = next;
    }
    open_in_root(root, path, libc::O_PATH)
}

/// The magic-link path of an open descriptor, for mount(2) targets.
fn fd_path(fd: &OwnedFd) -> Vec<u8> {
    format!("/proc/self/fd/{}", fd.as_raw_fd()).into_bytes()
}

/// Performs one spec mount below the rootfs. `cgroup_dirs` are the
/// container's own cgroup directories (name, host path) for `cgroup` mounts.
pub(crate) fn mount_one(root: RawFd, m: &Mount, cgroup_dirs: &[(String, PathBuf)]) -> Result<(), RuntimeError> {
    let dest = m.destination();
    let typ = m.typ().clone().unwrap_or_default();
    let opts = parse_options(m.options().as_deref().unwrap_or(&[]));
    let step = |what: &str| format!("mounting {} at {} ({what})", m.source().as_deref().unwrap_or(Path::new(&typ)).display(), dest.display());
    if typ == "cgroup" {
        return mount_cgroup(root, dest, &opts, cgroup_dirs);
    }
    if opts.bind || typ == "bind" {
        let source = m.source().clone().ok_or_else(|| RuntimeError::InvalidConfig(format!("bind mount at {} has no source", dest.display())))?;
        let is_dir = std::fs::metadata(&source).map_err(|e| sys(step("source"), e))?.is_dir();
        let target = ensure_in_root(root, dest, if is_dir { Create::Dir } else { Create::File }).map_err(|e| sys(step("target"), e))?;
        let rec = opts.flags & libc::MS_REC;
        mount_raw(Some(source.as_os_str().as_bytes()), &fd_path(&target), None, libc::MS_BIND | rec, None)
            .map_err(|e| sys(step("bind"), e))?;
        let extra = opts.flags & !(libc::MS_BIND | libc::MS_REC | libc::MS_REMOUNT);
        if extra != 0 {
            // Flags on a bind take a remount; reopen: the target is now the new mount.
            let target = open_in_root(root, dest, libc::O_PATH).map_err(|e| sys(step("reopen"), e))?;
            mount_raw(None, &fd_path(&target), None, libc::MS_BIND | libc::MS_REMOUNT | extra, None)
                .map_err(|e| sys(step("remount"), e))?;
        }
        apply_propagation(root, dest, &opts).map_err(|e| sys(step("propagation"), e))?;
        return Ok(());
    }
    let target = ensure_in_root(root, dest, Create::Dir).map_err(|e| sys(step("target"), e))?;
    let source = m.source().as_ref().map(|s| s.as_os_str().as_bytes().to_vec()).unwrap_or_else(|| typ.clone().into_bytes());
    let mut data = opts.data.clone();
    if typ == "devpts" && !data.contains("ptmxmode") {
        data.push_str(if data.is_empty() { "ptmxmode=0666" } else { ",ptmxmode=0666" });
    }
    mount_raw(Some(&source), &fd_path(&target), Some(&typ), opts.flags, Some(&data)).map_err(|e| sys(step(&typ), e))?;
    apply_propagation(root, dest, &opts).map_err(|e| sys(step("propagation"), e))?;
    Ok(())
}

fn apply_propagation(root: RawFd, dest: &Path, opts: &MountOptions) -> io::Result<()> {
    for p in &opts.propagation {
        let target = open_in_root(root, dest, libc::O_PATH)?;
        mount_raw(None, &fd_path(&target), None, *p, None)?;
    }
    Ok(())
}

/// /sys/fs/cgroup: the container's own cgroup directories, not the host's tree.
/// v1: a tmpfs with one bind per hierarchy; pure v2: a bind of the one directory.
fn mount_cgroup(root: RawFd, dest: &Path, opts: &MountOptions, dirs: &[(String, PathBuf)]) -> Result<(), RuntimeError> {
    let ro = opts.flags & libc::MS_RDONLY != 0;
    let step = |what: String| format!("mounting cgroups at {}: {what}", dest.display());
    let bind = |src: &Path, at: &Path| -> Result<(), RuntimeError> {
        let target = ensure_in_root(root, at, Create::Dir).map_err(|e| sys(step(format!("target {}", at.display())), e))?;
        mount_raw(Some(src.as_os_str().as_bytes()), &fd_path(&target), None, libc::MS_BIND, None)
            .map_err(|e| sys(step(format!("bind {}", src.display())), e))?;
        if ro {
            let target = open_in_root(root, at, libc::O_PATH).map_err(|e| sys(step("reopen".into()), e))?;
            let flags = libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC;
            mount_raw(None, &fd_path(&target), None, flags, None).map_err(|e| sys(step("remount ro".into()), e))?;
        }
        Ok(())
    };
    if dirs.len() == 1 && dirs[0].0.is_empty() {
        return bind(&dirs[0].1, dest);
    }
    let target = ensure_in_root(root, dest, Create::Dir).map_err(|e| sys(step("target".into()), e))?;
    let base = libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC;
    mount_raw(Some(b"tmpfs"), &fd_path(&target), Some("tmpfs"), base, Some("mode=755")).map_err(|e| sys(step("tmpfs".into()), e))?;
    for (name, dir) in dirs {
        if name.is_empty() || name.contains('/') || !dir.is_dir() {
            continue;
        }
        bind(dir, &dest.join(name))?;
        // Co-mounted controllers ("cpu,cpuacct") are also reachable by each name, as on the host.
        if name.contains(',') {
            let parent = open_in_root(root, dest, libc::O_PATH | libc::O_DIRECTORY).map_err(|e| sys(step("reopen".into()), e))?;
            for part in name.split(',') {
                let (l, t) = (cstr(part.as_bytes()), cstr(name.as_bytes()));
                if let (Ok(l), Ok(t)) = (l, t) {
                    // SAFETY: parent is open; both strings are valid.
                    unsafe { libc::symlinkat(t.as_ptr(), parent.as_raw_fd(), l.as_ptr()) };
                }
            }
        }
    }
    if ro {
        let target = open_in_root(root, dest, libc::O_PATH).map_err(|e| sys(step("reopen".into()), e))?;
        mount_raw(None, &fd_path(&target), None, libc::MS_REMOUNT | libc::MS_RDONLY | base, None)
            .map_err(|e| sys(step("remount tmpfs ro".into()), e))?;
    }
    Ok(())
}

/// The device nodes every container gets (runc's default set).
const DEFAULT_DEVICES: &[(&str, u32, u32)] =
    &[("null", 1, 3), ("zero", 1, 5), ("full", 1, 7), ("random", 1, 8), ("urandom", 1, 9), ("tty", 5, 0)];

/// Fills the container's /dev: default nodes, the spec's devices, the
/// standard symlinks, and /dev/console bound to the tty when there is one.
pub(crate) fn populate_dev(root: RawFd, devices: &[LinuxDevice], terminal: bool) -> Result<(), RuntimeError> {
    let mut all: Vec<(PathBuf, libc::mode_t, u64, u32, u32, u32)> = DEFAULT_DEVICES
        .iter()
        .map(|(n, ma, mi)| (PathBuf::from("/dev").join(n), libc::S_IFCHR, libc::makedev(*ma, *mi), 0o666, 0, 0))
        .collect();
    for d in devices {
        let kind = match d.typ() {
            LinuxDeviceType::B => libc::S_IFBLK,
            LinuxDeviceType::P => libc::S_IFIFO,
            _ => libc::S_IFCHR,
        };
        let dev = libc::makedev(d.major() as u32, d.minor() as u32);
        all.retain(|(p, ..)| p != d.path());
        all.push((d.path().clone(), kind, dev, d.file_mode().unwrap_or(0o666) & 0o7777, d.uid().unwrap_or(0), d.gid().unwrap_or(0)));
    }
    for (path, kind, dev, mode, uid, gid) in &all {
        let step = |what: &str| format!("creating device {} ({what})", path.display());
        let parent = path.parent().unwrap_or(Path::new("/dev"));
        let name = path.file_name().ok_or_else(|| RuntimeError::InvalidConfig(format!("bad device path {}", path.display())))?;
        let dir = ensure_in_root(root, parent, Create::Dir).map_err(|e| sys(step("parent"), e))?;
        let n = cstr(name.as_bytes()).map_err(|e| sys(step("name"), e))?;
        // SAFETY: dir is open; n is a valid C string.
        let rc = unsafe { libc::mknodat(dir.as_raw_fd(), n.as_ptr(), *kind | *mode as libc::mode_t, *dev) };
        if rc != 0 {
            let e = io::Error::last_os_error();
            match e.raw_os_error() {
                Some(libc::EEXIST) => continue,
                // No CAP_MKNOD (or a nodev /dev): bind the host's node instead.
                Some(libc::EPERM) => {
                    let target = ensure_in_root(root, path, Create::File).map_err(|e| sys(step("bind target"), e))?;
                    mount_raw(Some(path.as_os_str().as_bytes()), &fd_path(&target), None, libc::MS_BIND, None)
                        .map_err(|e| sys(step("bind"), e))?;
                    continue;
                }
                _ => return Err(sys(step("mknod"), e)),
            }
        }
        // SAFETY: dir is open; n is a valid C string.
        let rc = unsafe { libc::fchownat(dir.as_raw_fd(), n.as_ptr(), *uid, *gid, libc::AT_SYMLINK_NOFOLLOW) };
        if rc != 0 {
            return Err(sys(step("chown"), io::Error::last_os_error()));
        }
    }
    let dev = open_in_root(root, Path::new("/dev"), libc::O_PATH | libc::O_DIRECTORY).map_err(|e| sys("opening /dev", e))?;
    for (link, target) in
        [("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"), ("stdout", "/proc/self/fd/1"), ("stderr", "/proc/self/fd/2"), ("ptmx", "pts/ptmx")]
    {
        let l = cstr(link.as_bytes()).map_err(|e| sys("symlink", e))?;
        let t = cstr(target.as_bytes()).map_err(|e| sys("symlink", e))?;
        // SAFETY: dev is open; both strings are valid.
        let rc = unsafe { libc::symlinkat(t.as_ptr(), dev.as_raw_fd(), l.as_ptr()) };
        if rc != 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::EEXIST) {
                return Err(sys(format!("creating /dev/{link}"), e));
            }
        }
    }
    if terminal {
        // /dev/console is the container's tty (fd 0 at this point). Bound by
        // its path: a descriptor opened in the caller's mount namespace cannot
        // be a bind source here (EINVAL), its path in our copy of it can.
        let tty = std::fs::read_link("/proc/self/fd/0").map_err(|e| sys("finding the tty's path", e))?;
        let target = ensure_in_root(root, Path::new("/dev/console"), Create::File).map_err(|e| sys("creating /dev/console", e))?;
        mount_raw(Some(tty.as_os_str().as_bytes()), &fd_path(&target), None, libc::MS_BIND, None)
            .map_err(|e| sys(format!("binding {} to /dev/console", tty.display()), e))?;
    }
    Ok(())
}

/// pivot_root into `rootfs` and detach the old root, leaving nothing of the
/// host's tree reachable.
pub(crate) fn pivot_root(rootfs: &Path) -> Result<(), RuntimeError> {
    let r = cstr(rootfs.as_os_str().as_bytes()).map_err(|e| sys("pivot_root", e))?;
    // SAFETY: r is a valid C string.
    check(unsafe { libc::chdir(r.as_ptr()) }).map_err(|e| sys(format!("chdir {}", rootfs.display()), e))?;
    // pivot_root(".", ".") stacks the old root on top of the new one; it is
    // then unmounted from "." without needing a directory for it.
    // SAFETY: both are valid C strings.
    let rc = unsafe { libc::syscall(libc::SYS_pivot_root, c".".as_ptr(), c".".as_ptr()) };
    if rc != 0 {
        return Err(sys("pivot_root", io::Error::last_os_error()));
    }
    // Make sure the unmount does not propagate anywhere.
    mount_raw(None, b".", None, libc::MS_SLAVE | libc::MS_REC, None).map_err(|e| sys("making the old root a slave", e))?;
    // SAFETY: valid C string.
    check(unsafe { libc::umount2(c".".as_ptr(), libc::MNT_DETACH) }).map_err(|e| sys("detaching the old root", e))?;
    // SAFETY: valid C string.
    check(unsafe { libc::chdir(c"/".as_ptr()) }).map_err(|e| sys("chdir /", e))?;
    Ok(())
}

/// Hides `path` (after pivot_root): /dev/null over a file, an empty
/// read-only tmpfs over a directory; missing paths are skipped.
pub(crate) fn mask_path(path: &str) -> Result<(), RuntimeError> {
    let md = match std::fs::metadata(path) {
        Ok(md) => md,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(sys(format!("masking {path}"), e)),
    };
    let res = if md.is_dir() {
        mount_raw(Some(b"tmpfs"), path.as_bytes(), Some("tmpfs"), libc::MS_RDONLY, Some("size=0k"))
    } else {
        mount_raw(Some(b"/dev/null"), path.as_bytes(), None, libc::MS_BIND, None)
    };
    res.map_err(|e| sys(format!("masking {path}"), e))
}

/// Makes `path` read-only (after pivot_root); missing paths are skipped.
pub(crate) fn readonly_path(path: &str) -> Result<(), RuntimeError> {
    match mount_raw(Some(path.as_bytes()), path.as_bytes(), None, libc::MS_BIND | libc::MS_REC, None) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(()),
        Err(e) => return Err(sys(format!("making {path} read-only (bind)"), e)),
    }
    let flags = libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY | libc::MS_REC | libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC;
    mount_raw(None, path.as_bytes(), None, flags, None).map_err(|e| sys(format!("making {path} read-only (remount)"), e))
}

/// Remounts the container's root read-only (`--read-only`).
pub(crate) fn readonly_root() -> Result<(), RuntimeError> {
    mount_raw(None, b"/", None, libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY, None)
        .map_err(|e| sys("remounting / read-only", e))
}

/// Opens a host directory (O_PATH) to serve as the root of RESOLVE_IN_ROOT lookups.
pub(crate) fn open_dir(path: &Path) -> io::Result<OwnedFd> {
    let p = cstr(path.as_os_str().as_bytes())?;
    // SAFETY: p is a valid C string.
    let fd = unsafe { libc::open(p.as_ptr(), libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd was just opened.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_split() {
        let o = parse_options(&["rbind".into(), "ro".into(), "rprivate".into(), "nosuid".into(), "size=1m".into(), "mode=1777".into()]);
        assert!(o.bind);
        assert_eq!(o.flags, libc::MS_BIND | libc::MS_REC | libc::MS_RDONLY | libc::MS_NOSUID);
        assert_eq!(o.propagation, vec![libc::MS_PRIVATE | libc::MS_REC]);
        assert_eq!(o.data, "size=1m,mode=1777");
        let o = parse_options(&["runbindable".into(), "slave".into()]);
        assert_eq!(o.propagation, vec![libc::MS_UNBINDABLE | libc::MS_REC, libc::MS_SLAVE]);
    }

    #[test]
    fn ensure_in_root_stays_inside() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let root = tmp.path().join("root");
        let outside = tmp.path().join("outside");
        std::fs::create_dir_all(root.join("etc")).expect("mkdir");
        std::fs::create_dir_all(&outside).expect("mkdir");
        // A symlink that points out of the rootfs must resolve inside it.
        std::os::unix::fs::symlink(&outside, root.join("escape")).expect("symlink");
        let rootfd = open_dir(&root).expect("open root");
        ensure_in_root(rootfd.as_raw_fd(), Path::new("/escape/x/y"), Create::Dir).expect("ensure");
        assert!(!outside.join("x").exists(), "created through the symlink on the host");
        assert!(root.join("escape/x/y").is_dir());
        ensure_in_root(rootfd.as_raw_fd(), Path::new("/etc/hosts"), Create::File).expect("file");
        assert!(root.join("etc/hosts").is_file());
        // A dangling symlink at the target is replaced by what the mount needs.
        std::os::unix::fs::symlink("/nowhere/resolv.conf", root.join("etc/resolv.conf")).expect("symlink");
        ensure_in_root(rootfd.as_raw_fd(), Path::new("/etc/resolv.conf"), Create::File).expect("dangling");
    }
}

