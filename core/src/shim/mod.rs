//! The shim: one process per running container, started detached from the
//! daemon (ARCHITECTURE §3). It mounts the rootfs, creates the container
//! through the runtime, holds its stdio (pipes or a pty), writes the
//! json-file log, serves attach/exec/signals on a unix socket in the
//! container's run dir, reaps, and records the exit status and OOM state.
//! Containers outlive the daemon; a restarted daemon re-adopts them by
//! connecting to their sockets (`ShimClient::connect`).
//!
//! `berth shim` (src/shim.rs) only parses its arguments and calls `run`.

pub mod jsonlog;

use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::model::container::ContainerId;
use crate::model::MountPlan;

/// Errors talking to or running a shim.
#[derive(Debug, thiserror::Error)]
pub enum ShimError {
    /// The shim (or its container) failed to start; the message says why
    /// (e.g. `exec: "nosuchcmd": executable file not found in $PATH`).
    #[error("{0}")]
    Start(String),
    /// The shim is gone (its socket does not answer).
    #[error("shim for container {0} is not running")]
    Gone(String),
    /// The shim answered with an error.
    #[error("{0}")]
    Remote(String),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

/// How the daemon starts a shim; serialised into `<state_dir>/shim.json`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ShimOptions {
    pub id: ContainerId,
    /// `<root>/containers/<id>`: holds `config.json` (the OCI spec).
    pub bundle: PathBuf,
    /// `<run>/containers/<id>`: `shim.sock`, `shim.pid`, `exit.json`.
    pub state_dir: PathBuf,
    /// The rootfs mount the shim performs at the spec's `root.path` before
    /// creating the container, and undoes after it exits.
    pub rootfs: MountPlan,
    /// The json-file log (`<root>/containers/<id>/<id>-json.log`).
    pub log_path: PathBuf,
    /// `--log-opt max-size` in bytes; rotation off when `None`.
    pub log_max_size: Option<u64>,
    /// `--log-opt max-file` (default 1).
    pub log_max_files: u32,
    pub tty: bool,
    pub open_stdin: bool,
    pub stdin_once: bool,
    /// External OCI runtime binary (`--runtime runc|crun`); built-in when `None`.
    pub runtime: Option<String>,
    /// cgroup path relative to the controllers (`<parent>/<id>`).
    pub cgroup_path: String,
}

/// How a container (or exec'd process) ended.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ExitInfo {
    /// Exit code, or 128 + signal number.
    pub exit_code: i64,
    pub oom_killed: bool,
    /// RFC 3339 with nanoseconds.
    pub finished_at: String,
}

/// What the shim reports about its container.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct ShimState {
    pub pid: i32,
    /// RFC 3339, set once started.
    pub started_at: Option<String>,
    /// Set once exited.
    pub exit: Option<ExitInfo>,
}

/// `exec`: a process to run in the container.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ExecRequest {
    /// Engine-chosen ID (64 hex).
    pub exec_id: String,
    /// The process (args, env, cwd, user, capabilities, no_new_privileges).
    pub process: oci_spec::runtime::Process,
    pub tty: bool,
    pub stdin: bool,
}

/// The daemon's handle on one shim.
pub struct ShimClient {
    /// `<run>/containers/<id>`.
    pub state_dir: PathBuf,
}

impl ShimClient {
    /// Starts a detached shim for `options` and returns once the container
    /// process is created (not yet started) and the socket answers.
    pub fn spawn(berth_exe: &Path, options: &ShimOptions) -> Result<ShimClient, ShimError> {
        let _ = (berth_exe, options);
        todo!("SHIM helper")
    }

    /// Re-adopts the shim of a running container after a daemon restart.
    pub fn connect(state_dir: &Path) -> Result<ShimClient, ShimError> {
        let _ = state_dir;
        todo!("SHIM helper")
    }

    /// The container's state.
    pub fn state(&self) -> Result<ShimState, ShimError> {
        todo!("SHIM helper")
    }

    /// Lets the created container exec its command.
    pub fn start(&self) -> Result<(), ShimError> {
        todo!("SHIM helper")
    }

    /// A stream joined to the container's stdio: what the caller writes goes
    /// to stdin (if `stdin`), and output comes back raw with a tty, or in
    /// Docker's multiplexed frames (8-byte header: stream, 0, 0, 0, be32 len)
    /// without one. Attach before `start` to see all output.
    pub fn attach(&self, stdin: bool, stdout: bool, stderr: bool) -> Result<UnixStream, ShimError> {
        let _ = (stdin, stdout, stderr);
        todo!("SHIM helper")
    }

    /// Sets the tty's size.
    pub fn resize(&self, rows: u16, cols: u16) -> Result<(), ShimError> {
        let _ = (rows, cols);
        todo!("SHIM helper")
    }

    /// Sends `signal` to the container's init process.
    pub fn kill(&self, signal: i32) -> Result<(), ShimError> {
        let _ = signal;
        todo!("SHIM helper")
    }

    /// Blocks until the container has exited; returns how.
    pub fn wait(&self) -> Result<ExitInfo, ShimError> {
        todo!("SHIM helper")
    }

    /// Starts an exec'd process; returns its PID and a stream like `attach`'s.
    pub fn exec(&self, request: &ExecRequest) -> Result<(i32, UnixStream), ShimError> {
        let _ = request;
        todo!("SHIM helper")
    }

    /// Blocks until exec `exec_id` has exited.
    pub fn exec_wait(&self, exec_id: &str) -> Result<ExitInfo, ShimError> {
        let _ = exec_id;
        todo!("SHIM helper")
    }

    /// Sets an exec's tty size.
    pub fn exec_resize(&self, exec_id: &str, rows: u16, cols: u16) -> Result<(), ShimError> {
        let _ = (exec_id, rows, cols);
        todo!("SHIM helper")
    }
}

/// The exit a shim recorded in `state_dir` before it went away, if any.
pub fn recorded_exit(state_dir: &Path) -> Option<ExitInfo> {
    let _ = state_dir;
    todo!("SHIM helper")
}

/// The shim's main (`berth shim <state_dir>`): reads `shim.json`, detaches,
/// runs the container and serves its socket until the container exits.
pub fn run(state_dir: &Path) -> Result<(), ShimError> {
    let _ = state_dir;
    todo!("SHIM helper")
}
