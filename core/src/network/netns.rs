//! Container network namespaces bind-mounted at `<run>/netns/<id>`, and
//! running code inside one.
//!
//! A namespace lives as long as something references it: a process in it, an
//! open fd, or a bind mount of its nsfs file. The bind mount is what keeps a
//! container's namespace alive between `setup_container_network` and the
//! shim's start, and what lets the daemon reach it after a restart.
//!
//! `<run>/netns` is made a mount point of its own with *shared* propagation
//! (as `ip netns` does for `/run/netns`): a mount namespace cloned later (a
//! shim, a container before its pivot_root) gets copies of the namespace
//! mounts in the same peer group, so the daemon's unmount propagates into it
//! and no such copy pins a dead container's namespace.
//!
//! Namespaces are per thread. Work that must happen inside a namespace runs on
//! a short-lived thread that `setns`es into it; sockets it creates (netlink,
//! the embedded DNS) keep belonging to that namespace wherever they are used.

use std::fs;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{setns, unshare, CloneFlags};

use super::NetError;

/// `<run>/netns`.
pub fn netns_dir(run: &Path) -> PathBuf {
    run.join("netns")
}

/// The namespace path of container `id` (`<run>/netns/<id>`).
pub fn netns_path(run: &Path, id: &str) -> PathBuf {
    netns_dir(run).join(id)
}

/// Whether `path` holds a network namespace (an nsfs bind mount).
pub fn is_netns(path: &Path) -> bool {
    // NSFS_MAGIC: only a bind-mounted namespace file has it.
    const NSFS_MAGIC: i64 = 0x6e73_6673;
    nix::sys::statfs::statfs(path).map(|s| s.filesystem_type().0 as i64 == NSFS_MAGIC).unwrap_or(false)
}

/// Makes `<run>/netns` exist as a mount point with shared propagation
/// (idempotent).
pub fn prepare_dir(run: &Path) -> Result<(), NetError> {
    let dir = netns_dir(run);
    fs::create_dir_all(&dir).map_err(|e| NetError::io(format!("creating {}", dir.display()), e))?;
    if !berth_runtime::mount::is_mount_point(&dir) {
        mount(Some(&dir), &dir, None::<&str>, MsFlags::MS_BIND, None::<&str>)
            .map_err(|e| NetError::io(format!("bind-mounting {} onto itself", dir.display()), e.into()))?;
    }
    mount(None::<&str>, &dir, None::<&str>, MsFlags::MS_SHARED, None::<&str>)
        .map_err(|e| NetError::io(format!("making {} a shared mount", dir.display()), e.into()))?;
    Ok(())
}

/// Runs `f` on a fresh thread and returns what it returns; the thread's
/// namespace changes die with it.
fn on_thread<R: Send + 'static>(
    what: &str,
    f: impl FnOnce() -> Result<R, NetError> + Send + 'static,
) -> Result<R, NetError> {
    let handle = std::thread::Builder::new()
        .name("netns".into())
        .spawn(f)
        .map_err(|e| NetError::io(format!("starting a thread to {what}"), e))?;
    handle.join().map_err(|_| NetError::Invalid(format!("the thread that was to {what} panicked")))?
}

/// Creates a new network namespace bind-mounted at `path` with `lo` up.
/// An existing namespace at `path` is kept (idempotent). On error nothing is
/// left at `path`.
pub fn create(path: &Path) -> Result<(), NetError> {
    if is_netns(path) {
        return Ok(());
    }
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).map_err(|e| NetError::io(format!("creating {}", dir.display()), e))?;
    }
    // The mount target must exist; an empty file created exclusively.
    match fs::OpenOptions::new().write(true).create_new(true).open(path) {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(NetError::io(format!("creating {}", path.display()), e)),
    }
    let target = path.to_path_buf();
    let made = on_thread("create a network namespace", move || {
        unshare(CloneFlags::CLONE_NEWNET).map_err(|e| NetError::io("unshare(CLONE_NEWNET)", e.into()))?;
        // SAFETY: gettid has no preconditions.
        let tid = unsafe { libc::gettid() };
        let own = format!("/proc/self/task/{tid}/ns/net");
        mount(Some(own.as_str()), &target, None::<&str>, MsFlags::MS_BIND, None::<&str>)
            .map_err(|e| NetError::io(format!("bind-mounting the new namespace at {}", target.display()), e.into()))?;
        set_lo_up()
    });
    if let Err(e) = made {
        let _ = remove(path);
        return Err(e);
    }
    Ok(())
}

/// A current-thread runtime for one call's netlink conversation.
pub(crate) fn runtime() -> Result<tokio::runtime::Runtime, NetError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()
        .map_err(|e| NetError::io("starting a runtime for netlink", e))
}

/// Brings `lo` up in the calling thread's namespace.
fn set_lo_up() -> Result<(), NetError> {
    let rt = runtime()?;
    rt.block_on(async {
        let (conn, handle, _) = rtnetlink::new_connection().map_err(|e| NetError::io("opening a netlink socket", e))?;
        tokio::spawn(conn);
        let msg = rtnetlink::LinkUnspec::new_with_name("lo").up().build();
        handle
            .link()
            .set(msg)
            .execute()
            .await
            .map_err(|e| NetError::Netlink { context: "setting lo up".into(), message: e.to_string() })
    })
}

/// Removes the namespace at `path`: unmount and unlink. A missing or
/// already unmounted path is not an error.
pub fn remove(path: &Path) -> Result<(), NetError> {
    // MNT_DETACH: an fd someone still holds keeps the namespace, not the mount.
    loop {
        match umount2(path, MntFlags::MNT_DETACH) {
            Ok(()) => continue, // stacked mounts from a crash: take them all
            Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => break,
            Err(e) => return Err(NetError::io(format!("unmounting {}", path.display()), e.into())),
        }
    }
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(NetError::io(format!("removing {}", path.display()), e)),
    }
}

/// Opens the namespace file at `path` (for `setns` or `IFLA_NET_NS_FD`).
pub fn open(path: &Path) -> Result<OwnedFd, NetError> {
    let f =
        fs::File::open(path).map_err(|e| NetError::io(format!("opening network namespace {}", path.display()), e))?;
    Ok(OwnedFd::from(f))
}

/// Runs `f` on a thread inside the network namespace at `path` and returns
/// its result. What `f` creates there (sockets) stays in that namespace.
pub fn run_in<R: Send + 'static>(
    path: &Path,
    f: impl FnOnce() -> Result<R, NetError> + Send + 'static,
) -> Result<R, NetError> {
    let fd = open(path)?;
    let shown = path.display().to_string();
    on_thread("enter a network namespace", move || {
        setns(fd.as_fd(), CloneFlags::CLONE_NEWNET)
            .map_err(|e| NetError::io(format!("entering network namespace {shown}"), e.into()))?;
        f()
    })
}

/// A raw netlink route socket opened inside the namespace at `path`
/// (`None`: the caller's own namespace).
pub fn netlink_socket(path: Option<&Path>) -> Result<OwnedFd, NetError> {
    let make = || -> Result<OwnedFd, NetError> {
        let s = rtnetlink::sys::Socket::new(rtnetlink::sys::protocols::NETLINK_ROUTE)
            .map_err(|e| NetError::io("opening a netlink socket", e))?;
        // SAFETY: the fd is the socket's own and is moved out exactly once
        // (the Socket is forgotten, so it does not close it).
        let fd = s.as_raw_fd();
        std::mem::forget(s);
        Ok(unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) })
    };
    match path {
        None => make(),
        Some(p) => run_in(p, make),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Runs `f` on a thread with a private network and mount namespace (so
    /// the links, mounts and rules a test makes never reach the host), or
    /// prints why it is skipped and returns `None`.
    pub(crate) fn sandboxed<R: Send + 'static>(name: &str, f: impl FnOnce() -> R + Send + 'static) -> Option<R> {
        let name = name.to_string();
        std::thread::spawn(move || {
            if let Err(e) = unshare(CloneFlags::CLONE_NEWNET | CloneFlags::CLONE_NEWNS) {
                eprintln!("skipping {name}: cannot make private namespaces ({e}); needs root");
                return None;
            }
            if let Err(e) = mount(None::<&str>, "/", None::<&str>, MsFlags::MS_REC | MsFlags::MS_PRIVATE, None::<&str>)
            {
                eprintln!("skipping {name}: cannot make / private in the test's mount namespace ({e})");
                return None;
            }
            if let Err(e) = set_lo_up() {
                eprintln!("skipping {name}: cannot set lo up ({e})");
                return None;
            }
            Some(f())
        })
        .join()
        .expect("test thread panicked")
    }

    #[test]
    fn create_is_idempotent_and_remove_leaves_nothing() {
        sandboxed("netns create/remove", || {
            let dir = tempfile::tempdir().unwrap();
            prepare_dir(dir.path()).unwrap();
            prepare_dir(dir.path()).unwrap();
            assert!(berth_runtime::mount::is_mount_point(&netns_dir(dir.path())));
            let p = netns_path(dir.path(), "c1");
            create(&p).unwrap();
            assert!(is_netns(&p));
            let ino = fs::metadata(&p).map(|m| std::os::unix::fs::MetadataExt::ino(&m)).unwrap();
            create(&p).unwrap();
            let ino2 = fs::metadata(&p).map(|m| std::os::unix::fs::MetadataExt::ino(&m)).unwrap();
            assert_eq!(ino, ino2, "a second create keeps the namespace");
            // It is a different namespace from ours, with lo up.
            let ours =
                fs::metadata("/proc/thread-self/ns/net").map(|m| std::os::unix::fs::MetadataExt::ino(&m)).unwrap();
            assert_ne!(ino, ours);
            remove(&p).unwrap();
            assert!(!p.exists());
            remove(&p).unwrap();
        });
    }

    #[test]
    fn mountinfo_escapes() {
    }
}
