//! The mount executor: applies the `MountPlan`s drivers return.
//!
//! Drivers decide, the host executes: this is the one place that turns a
//! `MountSpec` into mount calls. Overlay mounts use the new mount API
//! (fsopen + one `lowerdir+` per layer, Linux >= 6.8) because mount(2)'s data
//! string is limited to one page, which 100+ layers of absolute paths exceed;
//! on older kernels it falls back to mount(2) with paths relative to the
//! lower dirs' common parent, done in a forked child so that the daemon's own
//! working directory never changes. It must never mount anything a spec did not
//! ask for, and never follow a symlink at the target.

use std::ffi::{CString, OsStr};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use berth_model::MountSpec;

/// A mount or unmount that failed: the target, the call and the kernel's reason.
#[derive(Debug, thiserror::Error)]
pub enum MountError {
    /// A kernel call failed.
    #[error("mounting {target}: {call} failed: {source}{}", detail_suffix(.detail))]
    Call {
        target: PathBuf,
        call: &'static str,
        /// What the kernel wrote to the filesystem context's log, if anything.
        detail: String,
        #[source]
        source: io::Error,
    },
    /// Unmounting failed.
    #[error("unmounting {target}: umount2 failed: {source}")]
    Unmount {
        target: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The spec cannot be performed as given.
    #[error("mounting {target}: {message}")]
    Invalid { target: PathBuf, message: String },
}

fn detail_suffix(detail: &str) -> String {
    if detail.is_empty() {
        String::new()
    } else {
        format!(" (kernel: {detail})")
    }
}

// The new mount API's constants (linux/mount.h); libc does not carry them.
const FSOPEN_CLOEXEC: libc::c_uint = 0x1;
const FSCONFIG_SET_STRING: libc::c_uint = 1;
const FSCONFIG_CMD_CREATE: libc::c_uint = 6;
const FSMOUNT_CLOEXEC: libc::c_uint = 0x1;
const MOUNT_ATTR_RDONLY: libc::c_uint = 0x1;
const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 0x4;

fn cstring(target: &Path, s: &OsStr) -> Result<CString, MountError> {
    CString::new(s.as_bytes()).map_err(|_| MountError::Invalid {
        target: target.to_path_buf(),
        message: format!("path or option {:?} contains a NUL byte", s),
    })
}

/// Mounts `spec` on the existing directory (or file, for binds) `target`.
pub fn mount(spec: &MountSpec, target: &Path) -> Result<(), MountError> {
    match spec {
        MountSpec::Overlay { lower, upper, work } => mount_overlay(lower, upper.as_deref(), work.as_deref(), target),
        MountSpec::Bind { source, readonly } => mount_bind(source, *readonly, target),
        MountSpec::Tmpfs { options } => mount_fs("tmpfs", "tmpfs", options, target),
        MountSpec::Filesystem { fstype, device, options } => mount_fs(fstype, device, options, target),
    }
}

/// Mounts `spec` like `mount`, for a plan whose paths someone else controls
/// (a plugin's data dir): a bind source is opened first without following
/// any symlink (it was checked as a symlink-free path) and bound through its
/// descriptor, so a path swapped for a symlink after the check is refused
/// instead of followed.
pub fn mount_untrusted(spec: &MountSpec, target: &Path) -> Result<(), MountError> {
    let MountSpec::Bind { source, readonly } = spec else { return mount(spec, target) };
    let src = cstring(target, source.as_os_str())?;
    // SAFETY: open_how is plain data; zeroed is a valid value.
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    how.flags = (libc::O_PATH | libc::O_CLOEXEC) as u64;
    how.resolve = libc::RESOLVE_NO_SYMLINKS | libc::RESOLVE_NO_MAGICLINKS;
    // SAFETY: src and how are valid for the call; the size matches the struct.
    let fd = unsafe {
        libc::syscall(libc::SYS_openat2, libc::AT_FDCWD, src.as_ptr(), &how as *const libc::open_how, std::mem::size_of::<libc::open_how>())
    };
    if fd < 0 {
        let e = io::Error::last_os_error();
        let message = match e.raw_os_error() {
            Some(libc::ELOOP) => format!("bind source {} has a symlink in its path (it changed after the plan was checked)", source.display()),
            _ => format!("cannot open bind source {}: {e}", source.display()),
        };
        return Err(MountError::Invalid { target: target.to_path_buf(), message });
    }
    // SAFETY: fd was just opened and is owned here.
    let fd = unsafe { OwnedFd::from_raw_fd(fd as libc::c_int) };
    mount_bind(Path::new(&format!("/proc/self/fd/{}", fd.as_raw_fd())), *readonly, target)
}

/// Unmounts whatever is mounted on `target` (not following a symlink there).
pub fn unmount(target: &Path) -> Result<(), MountError> {
    let t = cstring(target, target.as_os_str())?;
    // SAFETY: t is a valid NUL-terminated string.
    let rc = unsafe { libc::umount2(t.as_ptr(), libc::UMOUNT_NOFOLLOW) };
    if rc != 0 {
        return Err(MountError::Unmount { target: target.to_path_buf(), source: io::Error::last_os_error() });
    }
    Ok(())
}

fn sys_mount(
    target: &Path,
    call: &'static str,
    source: Option<&CString>,
    fstype: Option<&CString>,
    flags: libc::c_ulong,
    data: Option<&CString>,
) -> Result<(), MountError> {
    let t = cstring(target, target.as_os_str())?;
    let p = |c: Option<&CString>| c.map_or(std::ptr::null(), |c| c.as_ptr());
    // SAFETY: every pointer is either null or a valid NUL-terminated string
    // that outlives the call.
    let rc = unsafe { libc::mount(p(source), t.as_ptr(), p(fstype), flags, p(data).cast()) };
    if rc != 0 {
        return Err(MountError::Call {
            target: target.to_path_buf(),
            call,
            detail: String::new(),
            source: io::Error::last_os_error(),
        });
    }
    Ok(())
}

fn mount_bind(source: &Path, readonly: bool, target: &Path) -> Result<(), MountError> {
    let src = cstring(target, source.as_os_str())?;
    sys_mount(target, "mount(MS_BIND)", Some(&src), None, libc::MS_BIND | libc::MS_REC, None)?;
    if readonly {
        // MS_RDONLY is ignored on the first bind call; it takes a remount.
        let flags = libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY;
        if let Err(e) = sys_mount(target, "mount(MS_REMOUNT|MS_RDONLY)", None, None, flags, None) {
            // Leave nothing half-done: a writable bind where read-only was asked.
            let _ = unmount(target);
            return Err(e);
        }
    }
    Ok(())
}

/// The mount(2) flags a mount(8) option word sets and clears, or `None` for
/// a word the filesystem itself parses (it goes into the data string).
/// Bind and propagation words are the caller's: they are not plain flags.
pub(crate) fn option_flags(opt: &str) -> Option<(libc::c_ulong, libc::c_ulong)> {
    Some(match opt {
        "ro" => (libc::MS_RDONLY, 0),
        "rw" => (0, libc::MS_RDONLY),
        "nosuid" => (libc::MS_NOSUID, 0),
        "suid" => (0, libc::MS_NOSUID),
        "nodev" => (libc::MS_NODEV, 0),
        "dev" => (0, libc::MS_NODEV),
        "noexec" => (libc::MS_NOEXEC, 0),
        "exec" => (0, libc::MS_NOEXEC),
        "sync" => (libc::MS_SYNCHRONOUS, 0),
        "async" => (0, libc::MS_SYNCHRONOUS),
        "dirsync" => (libc::MS_DIRSYNC, 0),
        "remount" => (libc::MS_REMOUNT, 0),
        "mand" => (libc::MS_MANDLOCK, 0),
        "nomand" => (0, libc::MS_MANDLOCK),
        "noatime" => (libc::MS_NOATIME, 0),
        "atime" => (0, libc::MS_NOATIME),
        "nodiratime" => (libc::MS_NODIRATIME, 0),
        "diratime" => (0, libc::MS_NODIRATIME),
        "relatime" => (libc::MS_RELATIME, 0),
        "norelatime" => (0, libc::MS_RELATIME),
        "strictatime" => (libc::MS_STRICTATIME, 0),
        "nostrictatime" => (0, libc::MS_STRICTATIME),
        "lazytime" => (libc::MS_LAZYTIME, 0),
        "nolazytime" => (0, libc::MS_LAZYTIME),
        "nosymfollow" => (libc::MS_NOSYMFOLLOW, 0),
        "defaults" => (0, 0),
        _ => return None,
    })
}

/// Splits a mount(8)-style option string into mount(2) flags and the data
/// string the filesystem parses.
fn parse_options(options: &str) -> (libc::c_ulong, String) {
    let mut flags: libc::c_ulong = 0;
    let mut data = Vec::new();
    for opt in options.split(',').filter(|o| !o.is_empty()) {
        match option_flags(opt) {
            Some((set, clear)) => flags = (flags | set) & !clear,
            None => data.push(opt),
        }
    }
    (flags, data.join(","))
}

fn mount_fs(fstype: &str, device: &str, options: &str, target: &Path) -> Result<(), MountError> {
    let (flags, data) = parse_options(options);
    let fstype_c = cstring(target, OsStr::new(fstype))?;
    let device_c = cstring(target, OsStr::new(device))?;
    let data_c = cstring(target, OsStr::new(&data))?;
    let data_arg = if data.is_empty() { None } else { Some(&data_c) };
    sys_mount(target, "mount", Some(&device_c), Some(&fstype_c), flags, data_arg)
}

fn mount_overlay(lower: &[PathBuf], upper: Option<&Path>, work: Option<&Path>, target: &Path) -> Result<(), MountError> {
    if lower.is_empty() {
        return Err(MountError::Invalid { target: target.to_path_buf(), message: "overlay needs at least one lower dir".into() });
    }
    if upper.is_some() != work.is_some() {
        return Err(MountError::Invalid {
            target: target.to_path_buf(),
            message: "overlay needs both an upper and a work dir, or neither".into(),
        });
    }
    let result = match overlay_new_api(lower, upper, work, target) {
        Ok(()) => Ok(()),
        // ENOSYS: no fsopen; EINVAL on a `lowerdir+` key: a kernel before 6.8.
        Err(NewApiError::Unavailable) => overlay_legacy(lower, upper, work, target),
        Err(NewApiError::Failed(e)) => Err(e),
    };
    match result {
        // Before Linux 6.7 (and on some configurations) overlay refuses a
        // single lower dir without an upper; a read-only bind shows the same tree.
        Err(e) if upper.is_none() && lower.len() == 1 => mount_bind(&lower[0], true, target).map_err(|_| e),
        other => other,
    }
}

enum NewApiError {
    Unavailable,
    Failed(MountError),
}

/// Reads the messages the kernel logged on a filesystem context (`e ...` lines).
fn fs_context_log(fd: &OwnedFd) -> String {
    let mut out = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        // SAFETY: buf is a valid writable buffer of the given length.
        let n = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        if n <= 0 {
            break;
        }
        out.push(String::from_utf8_lossy(&buf[..n as usize]).trim().to_string());
    }
    out.join("; ")
}

fn overlay_new_api(lower: &[PathBuf], upper: Option<&Path>, work: Option<&Path>, target: &Path) -> Result<(), NewApiError> {
    let fail = |call: &'static str, detail: String, source: io::Error| {
        NewApiError::Failed(MountError::Call { target: target.to_path_buf(), call, detail, source })
    };
    let name = c"overlay";
    // SAFETY: name is a valid C string; the result is checked.
    let fd = unsafe { libc::syscall(libc::SYS_fsopen, name.as_ptr(), FSOPEN_CLOEXEC) };
    if fd < 0 {
        let e = io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::ENOSYS) {
            return Err(NewApiError::Unavailable);
        }
        return Err(fail("fsopen(overlay)", String::new(), e));
    }
    // SAFETY: fd is a fresh descriptor we own.
    let fsfd = unsafe { OwnedFd::from_raw_fd(fd as libc::c_int) };
    let set = |key: &CString, value: &CString| -> io::Result<()> {
        // SAFETY: fsfd is open; key and value are valid C strings.
        let rc = unsafe {
            libc::syscall(libc::SYS_fsconfig, fsfd.as_raw_fd(), FSCONFIG_SET_STRING, key.as_ptr(), value.as_ptr(), 0)
        };
        if rc < 0 { Err(io::Error::last_os_error()) } else { Ok(()) }
    };
    let cs = |s: &OsStr| cstring(target, s).map_err(NewApiError::Failed);
    let lowerdir_plus = c"lowerdir+".to_owned();
    for (i, dir) in lower.iter().enumerate() {
        if let Err(e) = set(&lowerdir_plus, &cs(dir.as_os_str())?) {
            if i == 0 && e.raw_os_error() == Some(libc::EINVAL) && fs_context_log(&fsfd).contains("lowerdir+") {
                return Err(NewApiError::Unavailable);
            }
            let detail = format!("lowerdir+ {}: {}", dir.display(), fs_context_log(&fsfd));
            return Err(fail("fsconfig(lowerdir+)", detail, e));
        }
    }
    if let (Some(upper), Some(work)) = (upper, work) {
        for (key, dir) in [(c"upperdir", upper), (c"workdir", work)] {
            if let Err(e) = set(&key.to_owned(), &cs(dir.as_os_str())?) {
                let detail = format!("{} {}: {}", key.to_string_lossy(), dir.display(), fs_context_log(&fsfd));
                return Err(fail("fsconfig", detail, e));
            }
        }
    }
    // The inodes index is only useful for hard-link copy-up across mounts and
    // makes a lower layer unusable by other overlays; Docker turns it off too.
    // Kernels without the option reject it, which is harmless.
    let _ = set(&c"index".to_owned(), &c"off".to_owned());
    // SAFETY: fsfd is open; the other arguments are plain integers.
    let rc = unsafe {
        libc::syscall(libc::SYS_fsconfig, fsfd.as_raw_fd(), FSCONFIG_CMD_CREATE, std::ptr::null::<libc::c_char>(), std::ptr::null::<libc::c_void>(), 0)
    };
    if rc < 0 {
        let e = io::Error::last_os_error();
        return Err(fail("fsconfig(FSCONFIG_CMD_CREATE)", fs_context_log(&fsfd), e));
    }
    let attrs = if upper.is_none() { MOUNT_ATTR_RDONLY } else { 0 };
    // SAFETY: fsfd is open.
    let mfd = unsafe { libc::syscall(libc::SYS_fsmount, fsfd.as_raw_fd(), FSMOUNT_CLOEXEC, attrs) };
    if mfd < 0 {
        let e = io::Error::last_os_error();
        return Err(fail("fsmount", fs_context_log(&fsfd), e));
    }
    // SAFETY: mfd is a fresh descriptor we own.
    let mfd = unsafe { OwnedFd::from_raw_fd(mfd as libc::c_int) };
    let t = cs(target.as_os_str())?;
    // SAFETY: mfd is open; the empty path and t are valid C strings.
    let rc = unsafe {
        libc::syscall(libc::SYS_move_mount, mfd.as_raw_fd(), c"".as_ptr(), libc::AT_FDCWD, t.as_ptr(), MOVE_MOUNT_F_EMPTY_PATH)
    };
    if rc < 0 {
        return Err(fail("move_mount", String::new(), io::Error::last_os_error()));
    }
    Ok(())
}

/// The longest directory that contains every path in `paths`.
fn common_parent(paths: &[&Path]) -> PathBuf {
    let mut common: Option<PathBuf> = None;
    for p in paths {
        let parent = p.parent().unwrap_or(Path::new("/"));
        common = Some(match common {
            None => parent.to_path_buf(),
            Some(c) => c.components().zip(parent.components()).take_while(|(a, b)| a == b).map(|(a, _)| a).collect(),
        });
    }
    common.unwrap_or_else(|| PathBuf::from("/"))
}

/// mount(2) for kernels without `lowerdir+`. The option string is built from
/// paths relative to the dirs' common parent (short `l/` links keep 120
/// layers under a page); a forked child changes into that directory and mounts.
fn overlay_legacy(lower: &[PathBuf], upper: Option<&Path>, work: Option<&Path>, target: &Path) -> Result<(), MountError> {
    let mut all: Vec<&Path> = lower.iter().map(|p| p.as_path()).collect();
    all.extend(upper);
    all.extend(work);
    let base = common_parent(&all);
    let rel = |p: &Path| -> Result<String, MountError> {
        let r = p.strip_prefix(&base).unwrap_or(p);
        let s = r.to_str().ok_or_else(|| MountError::Invalid {
            target: target.to_path_buf(),
            message: format!("overlay path {} is not UTF-8", p.display()),
        })?;
        if s.contains(',') || s.contains(':') {
            return Err(MountError::Invalid {
                target: target.to_path_buf(),
                message: format!("overlay path {} contains ',' or ':'", p.display()),
            });
        }
        Ok(s.to_string())
    };
    let mut data = format!("lowerdir={}", lower.iter().map(|p| rel(p)).collect::<Result<Vec<_>, _>>()?.join(":"));
    if let (Some(u), Some(w)) = (upper, work) {
        data.push_str(&format!(",upperdir={},workdir={}", rel(u)?, rel(w)?));
    }
    let page = 4096;
    if data.len() >= page {
        return Err(MountError::Invalid {
            target: target.to_path_buf(),
            message: format!("overlay options are {} bytes, over the {page}-byte page mount(2) accepts", data.len()),
        });
    }
    let flags = if upper.is_none() { libc::MS_RDONLY } else { 0 };
    // Absolute target: the child's working directory changes.
    let abs_target = if target.is_absolute() {
        target.to_path_buf()
    } else {
        std::env::current_dir().map(|d| d.join(target)).unwrap_or_else(|_| target.to_path_buf())
    };
    let base_c = cstring(target, base.as_os_str())?;
    let target_c = cstring(target, abs_target.as_os_str())?;
    let data_c = cstring(target, OsStr::new(&data))?;
    // SAFETY: the child only calls async-signal-safe functions (chdir, mount,
    // _exit) on memory prepared before the fork.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(MountError::Call { target: target.to_path_buf(), call: "fork", detail: String::new(), source: io::Error::last_os_error() });
    }
    if pid == 0 {
        // SAFETY: see above; the child never returns.
        unsafe {
            if libc::chdir(base_c.as_ptr()) != 0 {
                libc::_exit(*libc::__errno_location());
            }
            let rc = libc::mount(c"overlay".as_ptr(), target_c.as_ptr(), c"overlay".as_ptr(), flags, data_c.as_ptr().cast());
            libc::_exit(if rc == 0 { 0 } else { *libc::__errno_location() });
        }
    }
    let mut status = 0;
    loop {
        // SAFETY: pid is our child; status is a valid out pointer.
        let rc = unsafe { libc::waitpid(pid, &mut status, 0) };
        if rc == pid {
            break;
        }
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EINTR) {
            return Err(MountError::Call { target: target.to_path_buf(), call: "waitpid", detail: String::new(), source: e });
        }
    }
    if libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0 {
        return Ok(());
    }
    let errno = if libc::WIFEXITED(status) { libc::WEXITSTATUS(status) } else { libc::EIO };
    Err(MountError::Call {
        target: target.to_path_buf(),
        call: "mount(overlay)",
        detail: format!("options relative to {}: {data}", base.display()),
        source: io::Error::from_raw_os_error(errno),
    })
}

/// Whether `target` is a mount point in the calling thread's mount namespace
/// (`thread-self`: the daemon has one namespace; tests make one per thread).
pub fn is_mount_point(target: &Path) -> bool {
    let Ok(info) = std::fs::read_to_string("/proc/thread-self/mountinfo") else {
        return false;
    };
    let want = target.as_os_str().as_encoded_bytes();
    // Field 5 is the mount point.
    info.lines().filter_map(|l| l.split(' ').nth(4)).any(|field| unescape_mountinfo(field) == want)
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
pub fn unescape_mountinfo(field: &str) -> Vec<u8> {
    let b = field.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c)) {
            let v = u32::from(b[i + 1] - b'0') * 64 + u32::from(b[i + 2] - b'0') * 8 + u32::from(b[i + 3] - b'0');
            out.push(v as u8);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_split_into_flags_and_data() {
        let (flags, data) = parse_options("ro,nosuid,size=64m,mode=1777,noexec");
        assert_eq!(flags, libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NOEXEC);
        assert_eq!(data, "size=64m,mode=1777");
    }

    /// Mounts need root in a private mount namespace (the test suite runs in one).
    fn overlay_fixture() -> (tempfile::TempDir, Vec<PathBuf>, PathBuf, PathBuf, PathBuf) {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dirs: Vec<PathBuf> = ["l/one", "l/two", "upper", "work", "merged"].iter().map(|d| tmp.path().join(d)).collect();
        for d in &dirs {
            std::fs::create_dir_all(d).expect("mkdir");
        }
        std::fs::write(dirs[0].join("a"), b"top").expect("write");
        std::fs::write(dirs[1].join("a"), b"bottom").expect("write");
        std::fs::write(dirs[1].join("b"), b"b").expect("write");
        let lower = vec![dirs[0].clone(), dirs[1].clone()];
        (tmp, lower, dirs[2].clone(), dirs[3].clone(), dirs[4].clone())
    }

    #[test]
    fn legacy_overlay_mount_uses_relative_paths() {
        let (_tmp, lower, upper, work, merged) = overlay_fixture();
        overlay_legacy(&lower, Some(&upper), Some(&work), &merged).expect("legacy overlay mount");
        assert_eq!(std::fs::read(merged.join("a")).expect("read a"), b"top");
        std::fs::write(merged.join("c"), b"new").expect("write through");
        unmount(&merged).expect("unmount");
        assert_eq!(std::fs::read(upper.join("c")).expect("upper c"), b"new");
    }

    #[test]
    fn an_untrusted_bind_source_is_never_followed_through_a_symlink() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let (data, secret, target) = (tmp.path().join("data"), tmp.path().join("secret"), tmp.path().join("target"));
        for d in [data.join("vol"), secret.clone(), target.clone()] {
            std::fs::create_dir_all(d).expect("mkdir");
        }
        std::fs::write(data.join("vol/f"), b"volume").expect("write");
        std::fs::write(secret.join("f"), b"secret").expect("write");
        let spec = MountSpec::Bind { source: data.join("vol"), readonly: false };
        mount_untrusted(&spec, &target).expect("bind of a plain dir");
        assert_eq!(std::fs::read(target.join("f")).expect("read"), b"volume");
        unmount(&target).expect("unmount");
        // The checked path is swapped for a symlink to somewhere else.
        std::fs::rename(data.join("vol"), data.join("old")).expect("rename");
        std::os::unix::fs::symlink(&secret, data.join("vol")).expect("symlink");
        let e = mount_untrusted(&spec, &target).expect_err("a symlink in the path").to_string();
        assert!(e.contains("has a symlink in its path"), "{e}");
        assert!(std::fs::read(target.join("f")).is_err(), "nothing was mounted");
    }

    #[test]
    fn read_only_overlay_and_bind() {
        let (_tmp, lower, _upper, _work, merged) = overlay_fixture();
        let spec = MountSpec::Overlay { lower: lower.clone(), upper: None, work: None };
        mount(&spec, &merged).expect("read-only overlay");
        assert_eq!(std::fs::read(merged.join("b")).expect("read b"), b"b");
        assert!(std::fs::write(merged.join("x"), b"x").is_err(), "read-only overlay accepted a write");
        unmount(&merged).expect("unmount");
        // A single lower dir without upper works too (overlay or read-only bind).
        let single = MountSpec::Overlay { lower: vec![lower[1].clone()], upper: None, work: None };
        mount(&single, &merged).expect("single lower");
        assert_eq!(std::fs::read(merged.join("a")).expect("read a"), b"bottom");
        assert!(std::fs::write(merged.join("x"), b"x").is_err());
        unmount(&merged).expect("unmount");
        let bind = MountSpec::Bind { source: lower[0].clone(), readonly: true };
        mount(&bind, &merged).expect("bind");
        assert!(std::fs::write(merged.join("x"), b"x").is_err(), "read-only bind accepted a write");
        unmount(&merged).expect("unmount");
        let err = unmount(&merged).expect_err("nothing mounted");
        assert!(err.to_string().contains(&merged.display().to_string()), "{err}");
        let tmpfs = MountSpec::Tmpfs { options: "size=1m,mode=1777,nosuid".into() };
        mount(&tmpfs, &merged).expect("tmpfs");
        std::fs::write(merged.join("x"), b"x").expect("write tmpfs");
        unmount(&merged).expect("unmount");
    }

    #[test]
    fn common_parent_of_short_links() {
        let a = Path::new("/var/lib/berth/overlay/l/AAA");
        let b = Path::new("/var/lib/berth/overlay/l/BBB");
        let u = Path::new("/var/lib/berth/overlay/x/diff");
        assert_eq!(common_parent(&[a, b]), PathBuf::from("/var/lib/berth/overlay/l"));
        assert_eq!(common_parent(&[a, b, u]), PathBuf::from("/var/lib/berth/overlay"));
    }
}
