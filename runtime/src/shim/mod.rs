//! The shim: one process per running container, started detached from the
//! daemon (ARCHITECTURE §3). It mounts the rootfs, creates the container
//! through the runtime, holds its stdio (pipes or a pty), writes the
//! json-file log, serves attach/exec/signals on a unix socket in the
//! container's run dir, reaps, and records the exit status and OOM state.
//! Containers outlive the daemon; a restarted daemon re-adopts them by
//! connecting to their sockets (`ShimClient::connect`).
//!
//! `berth shim` (src/shim.rs) only parses its arguments and calls `run`.
//!
//! The state dir holds `shim.json` (the options), `shim.pid`, `shim.sock`
//! (one JSON request per connection, see `proto`), `shim.log` (the shim's
//! own errors), `pts/` (the container's devpts instance, mounted by the
//! shim so that its ptys are the container's `/dev/pts/N`) and, once the
//! container has exited, `exit.json`. The process itself is `server`: no
//! async runtime, a few blocking threads, so it stays small.

pub mod jsonlog;
mod proto;
mod server;

use std::io::Read;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use berth_model::container::ContainerId;
use berth_model::MountPlan;

/// Errors talking to or running a shim.
#[derive(Debug, thiserror::Error)]
pub enum ShimError {
    /// The shim (or its container) failed to start; the message says why
    /// (e.g. `exec: "nosuchcmd": executable file not found in $PATH`).
    #[error("{0}")]
    Start(String),
    /// The user's command cannot run: not found (exit code 127) or not
    /// executable (126). Docker answers 400 and records the code.
    #[error("{message}")]
    Command { message: String, exit_code: i32 },
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

impl ShimError {
    /// 127 or 126 when the user's command cannot run; `None` for any other failure.
    pub fn command_exit_code(&self) -> Option<i32> {
        match self {
            ShimError::Command { exit_code, .. } => Some(*exit_code),
            _ => None,
        }
    }

    /// A failure the shim reported: `otherwise` makes one that is not the command's.
    fn reported(failure: proto::Failure, otherwise: fn(String) -> ShimError) -> ShimError {
        match failure.command_exit_code {
            Some(exit_code) => ShimError::Command { message: failure.message, exit_code },
            None => otherwise(failure.message),
        }
    }
}

impl From<&ShimError> for proto::Failure {
    fn from(e: &ShimError) -> proto::Failure {
        proto::Failure { message: e.to_string(), command_exit_code: e.command_exit_code() }
    }
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

/// How long `spawn` waits for the shim to report the container created.
const SPAWN_TIMEOUT: Duration = Duration::from_secs(60);

fn io_err(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> ShimError {
    let context = context.into();
    move |source| ShimError::Io { context, source }
}

/// Name of the shim binary, installed next to `berth`.
pub const SHIM_BINARY: &str = "berth-shim";

/// The shim to start for a daemon running `berth_exe`: the small `berth-shim`
/// beside it when there is one (an idle shim then stays under 2 MiB
/// resident instead of mapping the whole CLI and server), else `berth shim`.
fn shim_command(berth_exe: &Path) -> (PathBuf, std::process::Command) {
    let small = berth_exe.with_file_name(SHIM_BINARY);
    if is_executable(&small) {
        let cmd = std::process::Command::new(&small);
        return (small, cmd);
    }
    let mut cmd = std::process::Command::new(berth_exe);
    cmd.arg("shim");
    (berth_exe.to_path_buf(), cmd)
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

impl ShimClient {
    /// Starts a detached shim for `options` and returns once the container
    /// process is created (not yet started) and the socket answers.
    pub fn spawn(berth_exe: &Path, options: &ShimOptions) -> Result<ShimClient, ShimError> {
        use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
        use std::os::unix::process::CommandExt;

        let dir = &options.state_dir;
        std::fs::create_dir_all(dir).map_err(io_err(format!("creating {}", dir.display())))?;
        // A restarted container reuses its state dir: the last run's exit and socket are stale.
        for stale in [proto::EXIT_FILE, proto::SOCKET, proto::PID_FILE] {
            match std::fs::remove_file(dir.join(stale)) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_err(format!("removing {}", dir.join(stale).display()))(e)),
            }
        }
        let json = serde_json::to_vec_pretty(options).map_err(|e| ShimError::Start(format!("encoding shim options: {e}")))?;
        let options_path = dir.join(proto::OPTIONS_FILE);
        crate::files::replace(&options_path, &json, 0o600, crate::files::Durability::Synced).map_err(io_err(format!("writing {}", options_path.display())))?;
        let log_path = dir.join(proto::LOG_FILE);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(io_err(format!("opening {}", log_path.display())))?;
        let log2 = log.try_clone().map_err(io_err("duplicating the shim log fd"))?;

        let mut fds = [0; 2];
        // SAFETY: fds is a valid array of two ints.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
            return Err(io_err("creating the shim's ready pipe")(std::io::Error::last_os_error()));
        }
        // SAFETY: pipe2 just returned these two fds, owned by nobody else.
        let (ready_r, ready_w) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        let w = ready_w.as_raw_fd();
        let (exe, mut cmd) = shim_command(berth_exe);
        cmd.arg(dir)
            .env(proto::READY_FD_ENV, w.to_string())
            .stdin(std::process::Stdio::null())
            .stdout(log)
            .stderr(log2);
        // SAFETY: only async-signal-safe calls between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                // Its own session: no terminal, no signals from the daemon's process group.
                if libc::setsid() < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                // Only this child inherits the ready pipe's write end.
                if libc::fcntl(w, libc::F_SETFD, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut child = cmd.spawn().map_err(io_err(format!("starting the shim {}", exe.display())))?;
        drop(ready_w);
        // The shim forks once more and its first process exits at once:
        // the shim is then nobody's child the daemon must reap.
        let status = child.wait().map_err(io_err("waiting for the shim to detach"))?;
        let message = read_ready(ready_r)?;
        match message {
            Some(proto::Ready::Created { .. }) => Ok(ShimClient { state_dir: dir.clone() }),
            Some(proto::Ready::Failed(failure)) => Err(ShimError::reported(failure, ShimError::Start)),
            None => {
                let log = std::fs::read_to_string(&log_path).unwrap_or_default();
                let last = log.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("no message");
                Err(ShimError::Start(format!("shim exited ({status}) before creating the container: {last}")))
            }
        }
    }

    /// Re-adopts the shim of a running container after a daemon restart.
    pub fn connect(state_dir: &Path) -> Result<ShimClient, ShimError> {
        let client = ShimClient { state_dir: state_dir.to_path_buf() };
        client.state()?;
        Ok(client)
    }

    /// The container's state.
    pub fn state(&self) -> Result<ShimState, ShimError> {
        match self.call(&proto::Request::State)?.0 {
            proto::Response::State { state } => Ok(state),
            other => Err(unexpected(other)),
        }
    }

    /// Lets the created container exec its command. A command that cannot
    /// run (not found, not executable) is a `ShimError::Command`, any other
    /// failure a `ShimError::Start`.
    pub fn start(&self) -> Result<(), ShimError> {
        match self.call_ok(&proto::Request::Start) {
            Err(ShimError::Remote(message)) => Err(ShimError::Start(message)),
            other => other,
        }
    }

    /// A stream joined to the container's stdio: what the caller writes goes
    /// to stdin (if `stdin`), and output comes back raw with a tty, or in
    /// Docker's multiplexed frames (8-byte header: stream, 0, 0, 0, be32 len)
    /// without one. Attach before `start` to see all output.
    pub fn attach(&self, stdin: bool, stdout: bool, stderr: bool) -> Result<UnixStream, ShimError> {
        let (response, stream) = self.call(&proto::Request::Attach { stdin, stdout, stderr })?;
        match response {
            proto::Response::Ok => Ok(stream),
            other => Err(unexpected(other)),
        }
    }

    /// Sets the tty's size.
    pub fn resize(&self, rows: u16, cols: u16) -> Result<(), ShimError> {
        self.call_ok(&proto::Request::Resize { rows, cols })
    }

    /// Sends `signal` to the container's init process.
    pub fn kill(&self, signal: i32) -> Result<(), ShimError> {
        self.call_ok(&proto::Request::Kill { signal })
    }

    /// Blocks until the container has exited; returns how. If the shim is
    /// already gone, returns the exit it recorded.
    pub fn wait(&self) -> Result<ExitInfo, ShimError> {
        match self.call(&proto::Request::Wait) {
            Ok((proto::Response::Exit { exit }, _)) => Ok(exit),
            Ok((other, _)) => Err(unexpected(other)),
            Err(ShimError::Gone(id)) => recorded_exit(&self.state_dir).ok_or(ShimError::Gone(id)),
            Err(e) => Err(e),
        }
    }

    /// Starts an exec'd process; returns its PID and a stream like `attach`'s.
    pub fn exec(&self, request: &ExecRequest) -> Result<(i32, UnixStream), ShimError> {
        match self.call(&proto::Request::Exec { request: Box::new(request.clone()) })? {
            (proto::Response::Exec { pid }, stream) => Ok((pid, stream)),
            (other, _) => Err(unexpected(other)),
        }
    }

    /// Blocks until exec `exec_id` has exited.
    pub fn exec_wait(&self, exec_id: &str) -> Result<ExitInfo, ShimError> {
        match self.call(&proto::Request::ExecWait { exec_id: exec_id.to_string() })?.0 {
            proto::Response::Exit { exit } => Ok(exit),
            other => Err(unexpected(other)),
        }
    }

    /// Sets an exec's tty size.
    pub fn exec_resize(&self, exec_id: &str, rows: u16, cols: u16) -> Result<(), ShimError> {
        self.call_ok(&proto::Request::ExecResize { exec_id: exec_id.to_string(), rows, cols })
    }

    fn id(&self) -> String {
        self.state_dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
    }

    fn call_ok(&self, request: &proto::Request) -> Result<(), ShimError> {
        match self.call(request)?.0 {
            proto::Response::Ok => Ok(()),
            other => Err(unexpected(other)),
        }
    }

    /// Sends one request on a new connection; returns the answer and the connection.
    fn call(&self, request: &proto::Request) -> Result<(proto::Response, UnixStream), ShimError> {
        let mut stream = connect_socket(&self.state_dir).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused => ShimError::Gone(self.id()),
            _ => io_err(format!("connecting to the shim of {}", self.id()))(e),
        })?;
        let gone = |e: std::io::Error| match e.kind() {
            std::io::ErrorKind::BrokenPipe
            | std::io::ErrorKind::ConnectionReset
            | std::io::ErrorKind::UnexpectedEof => ShimError::Gone(self.id()),
            _ => io_err(format!("talking to the shim of {}", self.id()))(e),
        };
        proto::write_line(&mut stream, request).map_err(gone)?;
        match proto::read_line::<proto::Response>(&mut stream).map_err(gone)? {
            Some(proto::Response::Error(failure)) => Err(ShimError::reported(failure, ShimError::Remote)),
            Some(response) => Ok((response, stream)),
            None => Err(ShimError::Gone(self.id())),
        }
    }
}

fn unexpected(response: proto::Response) -> ShimError {
    ShimError::Remote(format!("unexpected answer from the shim: {response:?}"))
}

/// Connects to `<state_dir>/shim.sock`. A unix socket path is limited to
/// 108 bytes, so a long state dir is reached through `/proc/self/fd`.
fn connect_socket(state_dir: &Path) -> std::io::Result<UnixStream> {
    let path = state_dir.join(proto::SOCKET);
    if path.as_os_str().len() < 100 {
        return UnixStream::connect(&path);
    }
    let dir = std::fs::File::open(state_dir)?;
    let short = format!("/proc/self/fd/{}/{}", std::os::fd::AsRawFd::as_raw_fd(&dir), proto::SOCKET);
    UnixStream::connect(short)
}

/// Reads the shim's one readiness message (or EOF if it died first).
fn read_ready(fd: std::os::fd::OwnedFd) -> Result<Option<proto::Ready>, ShimError> {
    use std::os::fd::AsRawFd;
    let deadline = std::time::Instant::now() + SPAWN_TIMEOUT;
    let mut file = std::fs::File::from(fd);
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            return Err(ShimError::Start(format!(
                "the shim did not report the container created within {}s",
                SPAWN_TIMEOUT.as_secs()
            )));
        }
        let mut pfd = libc::pollfd { fd: file.as_raw_fd(), events: libc::POLLIN, revents: 0 };
        // SAFETY: pfd is one valid pollfd.
        let rc = unsafe { libc::poll(&mut pfd, 1, left.as_millis().min(i32::MAX as u128) as i32) };
        if rc < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(io_err("waiting for the shim")(e));
        }
        if rc == 0 {
            continue;
        }
        match file.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(io_err("reading the shim's ready pipe")(e)),
        }
        if buf.contains(&b'\n') {
            break;
        }
    }
    if buf.is_empty() {
        return Ok(None);
    }
    let line = buf.split(|&b| b == b'\n').next().unwrap_or_default();
    serde_json::from_slice(line)
        .map(Some)
        .map_err(|e| ShimError::Start(format!("bad readiness message from the shim: {e}")))
}

/// The exit a shim recorded in `state_dir` before it went away, if any.
pub fn recorded_exit(state_dir: &Path) -> Option<ExitInfo> {
    let data = std::fs::read(state_dir.join(proto::EXIT_FILE)).ok()?;
    serde_json::from_slice(&data).ok()
}

/// The PID of the shim serving `state_dir`, while it runs.
pub fn shim_pid(state_dir: &Path) -> Option<i32> {
    std::fs::read_to_string(state_dir.join(proto::PID_FILE)).ok()?.trim().parse().ok()
}

/// Waits until the shim process `pid` has exited (it records the exit, then
/// unmounts and removes the cgroup before it goes), at most `timeout`.
/// Returns whether it is gone.
pub fn wait_gone(pid: i32, timeout: std::time::Duration) -> bool {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        // Gone, or a zombie nobody reaped yet: either way it does nothing more.
        let running = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|stat| stat.rsplit_once(')').and_then(|(_, rest)| rest.trim_start().chars().next()))
            .is_some_and(|state| !matches!(state, 'Z' | 'X'));
        if !running {
            return true;
        }
        if std::time::Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

/// The shim's main (`berth shim <state_dir>`): reads `shim.json`, detaches,
/// runs the container and serves its socket until the container exits.
pub fn run(state_dir: &Path) -> Result<(), ShimError> {
    server::run(state_dir)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn the_small_shim_beside_the_daemon_is_preferred_and_berth_shim_is_the_fallback() {
        let dir = tempfile::tempdir().unwrap();
        let berth = dir.path().join("berth");
        std::fs::write(&berth, b"#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&berth, std::fs::Permissions::from_mode(0o755)).unwrap();
        let (exe, cmd) = shim_command(&berth);
        assert_eq!(exe, berth);
        assert_eq!(cmd.get_args().collect::<Vec<_>>(), ["shim"]);

        let small = dir.path().join(SHIM_BINARY);
        std::fs::write(&small, b"#!/bin/sh\n").unwrap();
        // Not executable: not a shim to start.
        std::fs::set_permissions(&small, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert_eq!(shim_command(&berth).0, berth);
        std::fs::set_permissions(&small, std::fs::Permissions::from_mode(0o755)).unwrap();
        let (exe, cmd) = shim_command(&berth);
        assert_eq!(exe, small);
        assert_eq!(cmd.get_args().count(), 0);
    }
}
