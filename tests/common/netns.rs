//! Sockets inside a sandbox's network namespace, made by the test process
//! itself (for fake servers and proxies in front of a real one): a socket
//! stays in the namespace it was created in, whichever thread uses it later.

use std::fs::File;
use std::os::fd::AsRawFd;

use super::Sandbox;

/// Runs `make` on a thread that has joined `sb`'s network namespace (the
/// test's own threads stay in theirs) and returns what it made.
pub fn in_netns<T: Send + 'static>(sb: &Sandbox, make: impl FnOnce() -> T + Send + 'static) -> T {
    in_netns_of(sb.holder_pid(), make)
}

/// `in_netns` by the PID of the namespace's holder (for threads that outlive the borrow of the sandbox).
pub fn in_netns_of<T: Send + 'static>(holder_pid: i32, make: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::spawn(move || {
        let ns = File::open(format!("/proc/{holder_pid}/ns/net")).expect("opening the sandbox's network namespace");
        // SAFETY: setns(2) on a namespace fd we hold; it changes only this thread, which ends after `make`.
        let rc = unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(rc, 0, "setns into the sandbox's network namespace: {}", std::io::Error::last_os_error());
        make()
    })
    .join()
    .expect("the thread in the sandbox's namespace panicked")
}
