//! External OCI runtimes (`--runtime runc|crun`): the same spec the built-in
//! runtime takes, written as a bundle's `config.json` and driven through the
//! runtime's CLI (`create --bundle --pid-file [--console-socket]`, `start`,
//! `kill`, `delete`, `state`, `exec`).
//!
//! Two things differ from the built-in runtime and are the caller's to know:
//! - the container process is a child of `runc create`, which exits: the
//!   caller becomes its parent only as a child subreaper, which `create`
//!   makes the calling process (PR_SET_CHILD_SUBREAPER);
//! - with a terminal the runtime allocates the pty and hands its master
//!   back over a console socket: `create` returns it.
//!
//! berth's own annotations are resolved here before the runtime sees the
//! spec: user and group names are looked up inside the mounted rootfs
//! (never through a symlink out of it); `--init` is refused, as berth has no
//! init binary to put inside the container.

use std::io::{self, Read};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio as ProcStdio};
use std::time::Duration;

use oci_spec::runtime::{Process, Spec};
use serde::Deserialize;

use super::linux::Stdio;
use super::{oci, rootfs, user, RuntimeError};

/// The container's stdio with an external runtime.
pub enum ExternalIo {
    /// The runtime passes these through to the container.
    Pipes(Stdio),
    /// The runtime makes a pty; its master comes back in `ExternalCreated::console`.
    Terminal,
}

/// A container (or exec'd process) an external runtime created.
pub struct ExternalCreated {
    /// Its PID (reparented to the caller, a child subreaper, once the runtime exits).
    pub pid: i32,
    /// The pty master with `ExternalIo::Terminal`.
    pub console: Option<OwnedFd>,
}

/// What `runc state` reports.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
pub struct ExternalState {
    pub id: String,
    pub pid: i32,
    /// "created", "running", "paused" or "stopped".
    pub status: String,
}

/// An installed OCI runtime binary and its state directory.
#[derive(Clone, Debug)]
pub struct ExternalRuntime {
    /// What the user asked for (`runc`, `crun` or a path).
    pub name: String,
    binary: PathBuf,
    /// The runtime's `--root` (its own state: keep it under berth's run dir).
    state_root: PathBuf,
}

fn ext_err(runtime: &str, message: impl Into<String>) -> RuntimeError {
    RuntimeError::External { runtime: runtime.to_string(), message: message.into() }
}

/// The runtime's failure of `step` (`create`, `start`, `exec`), in its own
/// words. runc and crun say only in words that the user's command cannot run
/// (`exec: "x": executable file not found in $PATH`; crun: ``executable file
/// `x` not found``): they are read once, here, into Docker's exit codes.
fn step_failed(runtime: &str, step: &str, said: String) -> RuntimeError {
    let words = said.to_ascii_lowercase();
    let starts_the_command = matches!(step, "create" | "start" | "exec");
    let exit_code = if !starts_the_command {
        None
    } else if words.contains("permission denied") {
        Some(126)
    } else if (words.contains("executable file") && words.contains("not found")) || words.contains("no such file or directory") {
        Some(127)
    } else {
        None
    };
    let message = format!("{step} failed: {said}");
    match exit_code {
        Some(exit_code) => RuntimeError::Command { message: format!("{runtime}: {message}"), exit_code },
        None => ext_err(runtime, message),
    }
}

impl ExternalRuntime {
    /// Finds `name` (a bare name looked up on PATH, or a path); its state goes under `state_root`.
    pub fn find(name: &str, state_root: &Path) -> Result<ExternalRuntime, RuntimeError> {
        let candidates: Vec<PathBuf> = if name.contains('/') {
            vec![PathBuf::from(name)]
        } else {
            let path = std::env::var("PATH").unwrap_or_else(|_| oci::DEFAULT_PATH.to_string());
            path.split(':').filter(|d| !d.is_empty()).map(|d| Path::new(d).join(name)).collect()
        };
        let binary = candidates
            .into_iter()
            .find(|p| std::fs::metadata(p).map(|m| m.is_file()).unwrap_or(false))
            .ok_or_else(|| RuntimeError::InvalidConfig(format!("unknown or invalid runtime name: {name} (no such binary on PATH)")))?;
        Ok(ExternalRuntime { name: name.to_string(), binary, state_root: state_root.to_path_buf() })
    }

    fn command(&self, log: Option<&Path>) -> Command {
        let mut cmd = Command::new(&self.binary);
        cmd.arg("--root").arg(&self.state_root);
        if let Some(log) = log {
            cmd.arg("--log").arg(log).arg("--log-format").arg("json");
        }
        cmd
    }

    /// Runs a subcommand whose output we read; its stderr becomes the error.
    fn run(&self, args: &[&str]) -> Result<Vec<u8>, RuntimeError> {
        let out = self
            .command(None)
            .args(args)
            .stdin(ProcStdio::null())
            .output()
            .map_err(|e| ext_err(&self.name, format!("running {} {}: {e}", self.binary.display(), args.join(" "))))?;
        if !out.status.success() {
            let msg = String::from_utf8_lossy(&out.stderr).trim().to_string();
            return Err(step_failed(&self.name, args.first().copied().unwrap_or(""), last_error(&msg)));
        }
        Ok(out.stdout)
    }

    /// OCI `create`: writes `<bundle>/config.json` from `spec` and creates
    /// container `id`, stopped before its command. The calling process
    /// becomes a child subreaper so that it is the container's parent.
    pub fn create(&self, id: &str, bundle: &Path, spec: &Spec, io: ExternalIo) -> Result<ExternalCreated, RuntimeError> {
        let mut spec = spec.clone();
        resolve_annotations(&mut spec)?;
        let terminal = matches!(io, ExternalIo::Terminal);
        if let Some(p) = spec.process_mut() {
            p.set_terminal(Some(terminal));
        }
        std::fs::create_dir_all(bundle).map_err(|e| ext_err(&self.name, format!("creating bundle {}: {e}", bundle.display())))?;
        let config = bundle.join("config.json");
        let json = serde_json::to_vec_pretty(&spec).map_err(|e| ext_err(&self.name, format!("serialising the spec: {e}")))?;
        std::fs::write(&config, json).map_err(|e| ext_err(&self.name, format!("writing {}: {e}", config.display())))?;
        become_subreaper()?;
        let pid_file = bundle.join("runtime.pid");
        let _ = std::fs::remove_file(&pid_file);
        let bundle_s = bundle.to_string_lossy().into_owned();
        let pid_s = pid_file.to_string_lossy().into_owned();
        let console = self.spawn_with_io(&["create", "--bundle", &bundle_s, "--pid-file", &pid_s], id, bundle, io)?;
        let pid = read_pid(&pid_file).map_err(|e| ext_err(&self.name, format!("reading {}: {e}", pid_file.display())))?;
        Ok(ExternalCreated { pid, console })
    }

    /// Runs `args... id` with the container's stdio or a console socket;
    /// returns the pty master for a terminal.
    fn spawn_with_io(&self, args: &[&str], id: &str, bundle: &Path, io: ExternalIo) -> Result<Option<OwnedFd>, RuntimeError> {
        let log = bundle.join(format!("{}-runtime.log", args[0]));
        let _ = std::fs::remove_file(&log);
        let mut cmd = self.command(Some(&log));
        cmd.args(args);
        let mut listener = None;
        let sock = bundle.join("console.sock");
        match io {
            ExternalIo::Pipes(stdio) => {
                cmd.stdin(stdio.stdin.map_or_else(ProcStdio::null, ProcStdio::from));
                cmd.stdout(ProcStdio::from(stdio.stdout));
                cmd.stderr(ProcStdio::from(stdio.stderr));
            }
            ExternalIo::Terminal => {
                let _ = std::fs::remove_file(&sock);
                listener = Some(UnixListener::bind(&sock).map_err(|e| ext_err(&self.name, format!("binding {}: {e}", sock.display())))?);
                cmd.arg("--console-socket").arg(&sock);
                cmd.stdin(ProcStdio::null()).stdout(ProcStdio::null()).stderr(ProcStdio::null());
            }
        }
        cmd.arg(id);
        let receiver = listener.map(|l| std::thread::spawn(move || receive_console(&l)));
        let status = cmd.status().map_err(|e| ext_err(&self.name, format!("running {}: {e}", self.binary.display())));
        let console = match receiver {
            Some(handle) => {
                // Unblock the accept if the runtime never connected.
                if !handle.is_finished() {
                    std::thread::sleep(Duration::from_millis(50));
                    if !handle.is_finished() {
                        let _ = std::os::unix::net::UnixStream::connect(&sock);
                    }
                }
                let r = handle.join().unwrap_or_else(|_| Err(io::Error::other("console receiver panicked")));
                let _ = std::fs::remove_file(&sock);
                Some(r)
            }
            None => None,
        };
        let status = status?;
        if !status.success() {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            return Err(step_failed(&self.name, args[0], last_error(&text)));
        }
        match console {
            Some(Ok(fd)) => Ok(Some(fd)),
            Some(Err(e)) => Err(ext_err(&self.name, format!("receiving the console: {e}"))),
            None => Ok(None),
        }
    }

    /// OCI `start`.
    pub fn start(&self, id: &str) -> Result<(), RuntimeError> {
        self.run(&["start", id]).map(|_| ())
    }

    /// Sends `signal` to the container's init (or every process with `all`).
    pub fn kill(&self, id: &str, signal: i32, all: bool) -> Result<(), RuntimeError> {
        let sig = signal.to_string();
        let mut args = vec!["kill"];
        if all {
            args.push("--all");
        }
        args.extend([id, sig.as_str()]);
        self.run(&args).map(|_| ())
    }

    /// OCI `delete` (`force` kills a running container first).
    pub fn delete(&self, id: &str, force: bool) -> Result<(), RuntimeError> {
        let mut args = vec!["delete"];
        if force {
            args.push("--force");
        }
        args.push(id);
        self.run(&args).map(|_| ())
    }

    /// OCI `state`.
    pub fn state(&self, id: &str) -> Result<ExternalState, RuntimeError> {
        let out = self.run(&["state", id])?;
        serde_json::from_slice(&out).map_err(|e| ext_err(&self.name, format!("parsing state: {e}")))
    }

    /// `exec`: runs `process` in container `id` (detached); returns its PID.
    /// `work_dir` holds the process JSON, pid file and log (one per exec).
    pub fn exec(&self, id: &str, spec: &Spec, process: &Process, work_dir: &Path, io: ExternalIo) -> Result<ExternalCreated, RuntimeError> {
        let mut process = process.clone();
        let rootfs = spec.root().as_ref().map(|r| r.path().clone());
        resolve_process_user(&mut process, rootfs.as_deref(), spec)?;
        process.set_terminal(Some(matches!(io, ExternalIo::Terminal)));
        std::fs::create_dir_all(work_dir).map_err(|e| ext_err(&self.name, format!("creating {}: {e}", work_dir.display())))?;
        let pjson = work_dir.join("process.json");
        let json = serde_json::to_vec(&process).map_err(|e| ext_err(&self.name, format!("serialising the process: {e}")))?;
        std::fs::write(&pjson, json).map_err(|e| ext_err(&self.name, format!("writing {}: {e}", pjson.display())))?;
        become_subreaper()?;
        let pid_file = work_dir.join("exec.pid");
        let _ = std::fs::remove_file(&pid_file);
        let (p, f) = (pjson.to_string_lossy().into_owned(), pid_file.to_string_lossy().into_owned());
        let console = self.spawn_with_io(&["exec", "--detach", "--process", &p, "--pid-file", &f], id, work_dir, io)?;
        let pid = read_pid(&pid_file).map_err(|e| ext_err(&self.name, format!("reading {}: {e}", pid_file.display())))?;
        Ok(ExternalCreated { pid, console })
    }
}

fn read_pid(path: &Path) -> io::Result<i32> {
    let mut s = String::new();
    std::fs::File::open(path)?.read_to_string(&mut s)?;
    s.trim().parse().map_err(|_| io::Error::other(format!("not a PID: {s:?}")))
}

fn become_subreaper() -> Result<(), RuntimeError> {
    // SAFETY: plain prctl on the calling process.
    if unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) } != 0 {
        return Err(RuntimeError::Sys { step: "PR_SET_CHILD_SUBREAPER".into(), source: io::Error::last_os_error() });
    }
    Ok(())
}

/// The most useful line of a runtime's log or stderr: the last JSON `msg`
/// at level error, else the last non-empty line.
fn last_error(text: &str) -> String {
    let mut best = None;
    for line in text.lines() {
        if let Ok(v) = serde_json::from_str::<serde_json::Value>(line) {
            if v.get("level").and_then(|l| l.as_str()) == Some("error") {
                if let Some(m) = v.get("msg").and_then(|m| m.as_str()) {
                    best = Some(m.to_string());
                }
            }
        }
    }
    best.or_else(|| text.lines().rev().find(|l| !l.trim().is_empty()).map(str::to_string))
        .unwrap_or_else(|| "no error message".into())
}

/// Accepts one connection and takes the pty master passed with SCM_RIGHTS.
fn receive_console(listener: &UnixListener) -> io::Result<OwnedFd> {
    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
    let (stream, _) = listener.accept()?;
    let mut buf = [0u8; 4096];
    let mut iov = [io::IoSliceMut::new(&mut buf)];
    let mut cmsg = nix::cmsg_space!([std::os::fd::RawFd; 1]);
    let msg = recvmsg::<()>(stream.as_raw_fd(), &mut iov, Some(&mut cmsg), MsgFlags::MSG_CMSG_CLOEXEC).map_err(io::Error::from)?;
    for c in msg.cmsgs().map_err(io::Error::from)? {
        if let ControlMessageOwned::ScmRights(fds) = c {
            if let Some(fd) = fds.first() {
                // SAFETY: the kernel just installed this descriptor for us.
                return Ok(unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(*fd) });
            }
        }
    }
    Err(io::Error::other("the runtime sent no console descriptor"))
}

/// Reads a regular file inside the rootfs (resolved in it, never through a
/// symlink out), at most 4 MiB; "" when missing or not a regular file.
fn read_in_root(rootfs: &Path, path: &str) -> String {
    let Ok(root) = rootfs::open_dir(rootfs) else { return String::new() };
    let Ok(fd) = rootfs::open_in_root(root.as_raw_fd(), Path::new(path), libc::O_RDONLY | libc::O_NONBLOCK) else { return String::new() };
    let f = std::fs::File::from(fd);
    // A FIFO or a device in an image must not hang or flood us.
    if !f.metadata().map(|m| m.is_file()).unwrap_or(false) {
        return String::new();
    }
    let mut s = String::new();
    let _ = f.take(4 << 20).read_to_string(&mut s);
    s
}

/// Replaces berth's annotations by what any OCI runtime understands: the
/// user and groups resolved inside the rootfs, `HOME`; `--init` refused.
fn resolve_annotations(spec: &mut Spec) -> Result<(), RuntimeError> {
    let mut annotations = spec.annotations().clone().unwrap_or_default();
    if annotations.remove(oci::ANNOTATION_INIT).as_deref() == Some("true") {
        return Err(RuntimeError::InvalidConfig("--init is not supported with an external runtime".into()));
    }
    let rootfs = spec.root().as_ref().map(|r| r.path().clone());
    let name = annotations.remove(oci::ANNOTATION_USER);
    let groups = annotations.remove(oci::ANNOTATION_GROUP_ADD);
    spec.set_annotations(Some(annotations));
    let Some(mut process) = spec.process().clone() else { return Ok(()) };
    if name.is_some() || groups.is_some() {
        let mut u = process.user().clone();
        u.set_username(name);
        process.set_user(u);
        resolve_user_in(&mut process, rootfs.as_deref(), groups.as_deref())?;
    }
    spec.set_process(Some(process));
    Ok(())
}

fn resolve_process_user(process: &mut Process, rootfs: Option<&Path>, spec: &Spec) -> Result<(), RuntimeError> {
    let groups = spec.annotations().as_ref().and_then(|a| a.get(oci::ANNOTATION_GROUP_ADD).cloned());
    if process.user().username().is_some() || groups.is_some() {
        resolve_user_in(process, rootfs, groups.as_deref())?;
    }
    Ok(())
}

fn resolve_user_in(process: &mut Process, rootfs: Option<&Path>, group_add: Option<&str>) -> Result<(), RuntimeError> {
    let rootfs = rootfs.ok_or_else(|| RuntimeError::InvalidConfig("the spec has no root".into()))?;
    let passwd = read_in_root(rootfs, "/etc/passwd");
    let group = read_in_root(rootfs, "/etc/group");
    let mut u = process.user().clone();
    let spec_user = u.username().clone().unwrap_or_else(|| format!("{}:{}", u.uid(), u.gid()));
    let extra: Vec<String> = group_add.map(|g| g.split(',').filter(|s| !s.is_empty()).map(str::to_string).collect()).unwrap_or_default();
    let r = user::resolve(&spec_user, &extra, &passwd, &group).map_err(RuntimeError::Container)?;
    let mut gids = u.additional_gids().clone().unwrap_or_default();
    for g in r.additional_gids {
        if !gids.contains(&g) {
            gids.push(g);
        }
    }
    u.set_uid(r.uid);
    u.set_gid(r.gid);
    u.set_additional_gids(if gids.is_empty() { None } else { Some(gids) });
    u.set_username(None);
    process.set_user(u);
    let mut env = process.env().clone().unwrap_or_default();
    if !env.iter().any(|e| e.starts_with("HOME=")) {
        env.push(format!("HOME={}", r.home));
        process.set_env(Some(env));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runtime_errors_are_extracted_from_json_logs() {
        let log = "{\"level\":\"warning\",\"msg\":\"w\"}\n{\"level\":\"error\",\"msg\":\"runc create failed: unable to start container process: exec: \\\"nope\\\": executable file not found in $PATH\"}\n";
        assert!(last_error(log).ends_with(r#"exec: "nope": executable file not found in $PATH"#));
        assert_eq!(last_error("plain\nlast line\n\n"), "last line");
        assert_eq!(last_error(""), "no error message");
    }

    #[test]
    fn a_command_the_runtime_cannot_run_gets_dockers_exit_code() {
        let runc = step_failed("runc", "create", r#"exec: "nope": executable file not found in $PATH"#.into());
        assert_eq!(runc.command_exit_code(), Some(127));
        assert_eq!(runc.to_string(), r#"runc: create failed: exec: "nope": executable file not found in $PATH"#);
        let crun = step_failed("crun", "create", "executable file `nope` not found in $PATH: No such file or directory".into());
        assert_eq!(crun.command_exit_code(), Some(127));
        assert_eq!(step_failed("runc", "exec", r#"exec: "/etc/passwd": permission denied"#.into()).command_exit_code(), Some(126));
        // Other steps and other failures are the runtime's, not the command's.
        assert_eq!(step_failed("runc", "delete", "open /run/x: no such file or directory".into()).command_exit_code(), None);
        let other = step_failed("runc", "create", "cgroup: invalid argument".into());
        assert!(matches!(other, RuntimeError::External { .. }), "{other:?}");
    }

    #[test]
    fn unknown_runtime_is_invalid_config() {
        let err = ExternalRuntime::find("no-such-runtime-binary", Path::new("/tmp")).expect_err("missing");
        assert!(matches!(err, RuntimeError::InvalidConfig(_)), "{err}");
    }
}
