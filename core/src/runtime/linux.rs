//! The built-in runtime: creates a container process from an OCI spec and
//! enters running containers for `exec`.

use std::os::fd::OwnedFd;
use std::path::Path;

use oci_spec::runtime::{Process, Spec};

use super::RuntimeError;

/// The process's standard streams. With a tty all three are the pty's slave.
pub struct Stdio {
    pub stdin: Option<OwnedFd>,
    pub stdout: OwnedFd,
    pub stderr: OwnedFd,
}

/// A created container: its process exists in its namespaces and cgroup,
/// and waits for `start` before it execs the user's command.
pub struct Created {
    pub pid: i32,
    start: OwnedFd,
}

impl Created {
    /// Lets the process exec its command (OCI `start`).
    pub fn start(self) -> Result<(), RuntimeError> {
        let _ = self.start;
        todo!("RUNTIME helper")
    }
}

/// OCI `create`: the container process from `spec` (root already mounted at
/// `spec.root.path`), stopped before exec. The caller is its parent and reaps it.
pub fn create(bundle: &Path, spec: &Spec, stdio: Stdio) -> Result<Created, RuntimeError> {
    let _ = (bundle, spec, stdio);
    todo!("RUNTIME helper")
}

/// `exec`: runs `process` inside the running container whose init is
/// `container_pid` (its namespaces, cgroup, capabilities, rlimits, user).
/// Returns the new process's PID; the caller is its parent and reaps it.
pub fn exec(container_pid: i32, spec: &Spec, process: &Process, stdio: Stdio) -> Result<i32, RuntimeError> {
    let _ = (container_pid, spec, process, stdio);
    todo!("RUNTIME helper")
}
