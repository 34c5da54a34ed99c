//! The built-in runtime: creates a container process from an OCI spec and
//! enters running containers for `exec`.
//!
//! Process model (the same for create and exec):
//!
//! ```text
//! caller (shim) --fork--> intermediate --clone(CLONE_PARENT | new namespaces)--> container process
//! ```
//!
//! The intermediate exists because fork() from a multi-threaded caller is
//! only safe through glibc's fork (its atfork handlers leave malloc usable in
//! the child), while joining namespaces (setns on a mount namespace) needs a
//! single-threaded process. The intermediate joins what must be joined,
//! clones the container process with CLONE_PARENT, so that the caller is its
//! parent and reaps it, reports its PID and exits.
//!
//! The caller and the container process talk over a socketpair with typed
//! messages (`sync::Msg`): Pid -> (parent adds the cgroup) Continue ->
//! (child sets everything up) Ready -> Start -> exec. The child's end is
//! close-on-exec, so end-of-stream after Start means the command runs; an
//! `Error` message carries what failed, e.g. Docker's
//! `exec: "x": executable file not found in $PATH`.
//!
//! The dangerous sequence is `init_container`: one ordered function.

use std::convert::Infallible;
use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use oci_spec::runtime::{LinuxNamespaceType, LinuxSeccomp, PosixRlimitType, Process, Spec};

use super::cgroups;
use super::sync::{Channel, Msg};
use super::{caps, oci, rootfs, seccomp, user, RuntimeError};

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
    /// Lets the process exec its command (OCI `start`). Returns once the
    /// command is exec'd, or the error that stopped it (the process then
    /// exits with 126 or 127; the caller reaps it as usual).
    pub fn start(self) -> Result<(), RuntimeError> {
        let chan = Channel(self.start);
        chan.send(&Msg::Start).map_err(|e| sys("sending start to the container process", e))?;
        match chan.recv().map_err(|e| sys("waiting for the container's exec", e))? {
            None => Ok(()),
            Some(Msg::Error { message, exit_code }) => Err(reported(message, exit_code)),
            Some(other) => Err(RuntimeError::Container(format!("unexpected message from the container process: {other:?}"))),
        }
    }
}

/// The exit code of a container process whose command was not found (Docker's and the shell's).
const EXIT_NOT_FOUND: i32 = 127;
/// The exit code of a container process whose command is not executable.
const EXIT_NOT_EXECUTABLE: i32 = 126;

/// The error a container process reported before exec. Only the command
/// lookup and exec send 126 or 127; every other set-up failure exits with 1.
fn reported(message: String, exit_code: i32) -> RuntimeError {
    match exit_code {
        EXIT_NOT_FOUND | EXIT_NOT_EXECUTABLE => RuntimeError::Command { message, exit_code },
        _ => RuntimeError::Container(message),
    }
}

fn sys(step: impl Into<String>, source: io::Error) -> RuntimeError {
    RuntimeError::Sys { step: step.into(), source }
}

fn invalid(msg: impl Into<String>) -> RuntimeError {
    RuntimeError::InvalidConfig(msg.into())
}

/// OCI `create`: the container process from `spec` (root already mounted at
/// `spec.root.path`), stopped before exec. The caller is its parent and reaps it.
/// The cgroup (`linux.cgroupsPath`) is created here; the caller destroys it
/// after the container exits.
pub fn create(bundle: &Path, spec: &Spec, stdio: Stdio) -> Result<Created, RuntimeError> {
    let process = spec.process().as_ref().ok_or_else(|| invalid("the spec has no process"))?;
    if process.args().as_ref().is_none_or(|a| a.is_empty()) {
        return Err(invalid("the spec's process has no args"));
    }
    let root = spec.root().as_ref().ok_or_else(|| invalid("the spec has no root"))?;
    let rootfs = if root.path().is_absolute() { root.path().clone() } else { bundle.join(root.path()) };
    if !rootfs.is_dir() {
        return Err(invalid(format!("the container's root {} is not a directory", rootfs.display())));
    }
    let linux = spec.linux().clone().unwrap_or_default();
    let mut flags: libc::c_int = 0;
    let mut joins = Vec::new();
    for ns in linux.namespaces().iter().flatten() {
        let flag = ns_flag(ns.typ())?;
        match ns.path() {
            None => flags |= flag,
            Some(path) => {
                let fd = std::fs::File::open(path).map_err(|e| sys(format!("opening namespace {}", path.display()), e))?;
                joins.push((OwnedFd::from(fd), flag));
            }
        }
    }
    let cgroup = linux.cgroups_path().as_ref().map(|p| cgroups::open(&p.to_string_lossy())).transpose()?;
    if let Some(cg) = &cgroup {
        cg.create(&linux.resources().clone().unwrap_or_default())?;
    }
    let result = spawn(&joins, flags, stdio, |chan, stdio| init_container(spec, &rootfs, chan, stdio), |pid| match &cgroup {
        Some(cg) => cg.add_task(pid),
        None => Ok(()),
    });
    let result = result.and_then(|(pid, chan)| match chan.recv() {
        Ok(Some(Msg::Ready)) => Ok(Created { pid, start: chan.0 }),
        other => Err(kill_and_reap(pid, other)),
    });
    if result.is_err() {
        if let Some(cg) = &cgroup {
            let _ = cg.destroy();
        }
    }
    result
}

/// `exec`: runs `process` inside the running container whose init is
/// `container_pid` (its namespaces, cgroup, capabilities, rlimits, user).
/// Returns the new process's PID once its command is exec'd; the caller is
/// its parent and reaps it.
pub fn exec(container_pid: i32, spec: &Spec, process: &Process, stdio: Stdio) -> Result<i32, RuntimeError> {
    if process.args().as_ref().is_none_or(|a| a.is_empty()) {
        return Err(invalid("exec: no command"));
    }
    let linux = spec.linux().clone().unwrap_or_default();
    let own: Vec<LinuxNamespaceType> = linux.namespaces().iter().flatten().map(|n| n.typ()).collect();
    let mut joins = Vec::new();
    // The mount namespace last: after it, /proc is the container's.
    use LinuxNamespaceType::*;
    for (typ, name) in [(Ipc, "ipc"), (Uts, "uts"), (Network, "net"), (Pid, "pid"), (Cgroup, "cgroup"), (Mount, "mnt")] {
        if own.contains(&typ) {
            let path = format!("/proc/{container_pid}/ns/{name}");
            let fd = std::fs::File::open(&path).map_err(|e| sys(format!("opening {path} (is the container running?)"), e))?;
            joins.push((OwnedFd::from(fd), ns_flag(typ)?));
        }
    }
    let group_add = spec.annotations().as_ref().and_then(|a| a.get(oci::ANNOTATION_GROUP_ADD).cloned());
    // The container's seccomp filter binds what is exec'd in it too (as runc).
    let filter = linux.seccomp().as_ref();
    let (pid, chan) = spawn(&joins, 0, stdio, |chan, stdio| exec_process(process, group_add.as_deref(), filter, chan, stdio), |pid| {
        cgroups::join_cgroups_of(container_pid, pid)
    })?;
    match chan.recv() {
        Ok(None) => Ok(pid),
        other => Err(kill_and_reap(pid, other)),
    }
}

fn ns_flag(typ: LinuxNamespaceType) -> Result<libc::c_int, RuntimeError> {
    Ok(match typ {
        LinuxNamespaceType::Pid => libc::CLONE_NEWPID,
        LinuxNamespaceType::Network => libc::CLONE_NEWNET,
        LinuxNamespaceType::Ipc => libc::CLONE_NEWIPC,
        LinuxNamespaceType::Uts => libc::CLONE_NEWUTS,
        LinuxNamespaceType::Mount => libc::CLONE_NEWNS,
        LinuxNamespaceType::Cgroup => libc::CLONE_NEWCGROUP,
        other => return Err(invalid(format!("{other} namespaces are not supported by the built-in runtime"))),
    })
}

/// Kills and reaps a container process that failed before it was ready,
/// and turns what it said into the error.
fn kill_and_reap(pid: i32, said: io::Result<Option<Msg>>) -> RuntimeError {
    // SAFETY: plain syscalls on a child PID we own.
    unsafe { libc::kill(pid, libc::SIGKILL) };
    let status = wait_pid(pid);
    match said {
        Ok(Some(Msg::Error { message, exit_code })) => reported(message, exit_code),
        Ok(Some(other)) => RuntimeError::Container(format!("unexpected message from the container process: {other:?}")),
        Ok(None) => RuntimeError::Container(format!("the container process exited before it was ready ({})", describe_status(status))),
        Err(e) => sys("reading from the container process", e),
    }
}

fn wait_pid(pid: i32) -> Option<i32> {
    let mut status = 0;
    loop {
        // SAFETY: status is a valid out pointer.
        let rc = unsafe { libc::waitpid(pid, &mut status, 0) };
        if rc == pid {
            return Some(status);
        }
        if rc < 0 && io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
            continue;
        }
        // ECHILD: the caller's own reaper got there first.
        return None;
    }
}

fn describe_status(status: Option<i32>) -> String {
    match status {
        Some(s) if libc::WIFEXITED(s) => format!("exit status {}", libc::WEXITSTATUS(s)),
        Some(s) if libc::WIFSIGNALED(s) => format!("killed by signal {}", libc::WTERMSIG(s)),
        Some(s) => format!("status {s}"),
        None => "status unknown".into(),
    }
}

/// Why the container process gave up: the message for the parent and its exit code.
struct Fatal {
    message: String,
    exit_code: i32,
}

impl From<RuntimeError> for Fatal {
    fn from(e: RuntimeError) -> Fatal {
        Fatal { message: e.to_string(), exit_code: 1 }
    }
}

/// Sets IFF_UP on `lo` in the current network namespace.
fn loopback_up() -> io::Result<()> {
    // SAFETY: a plain socket(2) call; the fd is owned right away.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd was just returned by socket(2) and is not owned elsewhere.
    let sock = unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    // SAFETY: ifreq is plain old data; all-zero is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(b"lo\0") {
        *dst = *src as libc::c_char;
    }
    // SAFETY: SIOCGIFFLAGS/SIOCSIFFLAGS read and write the ifreq we own.
    unsafe {
        if libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) != 0 {
            return Err(io::Error::last_os_error());
        }
        req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
        if libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &req) != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

fn fatal(step: &str, e: io::Error) -> Fatal {
    Fatal { message: format!("{step}: {e}"), exit_code: 1 }
}

/// Forks the intermediate, which joins `joins`, clones the container process
/// with `flags` into `body`, and reports its PID. The parent then runs
/// `adopt(pid)` (cgroup placement) and lets the child continue. Returns the
/// PID and the parent's end of the channel.
fn spawn(
    joins: &[(OwnedFd, libc::c_int)],
    flags: libc::c_int,
    stdio: Stdio,
    body: impl FnOnce(&Channel, Stdio) -> Fatal,
    adopt: impl FnOnce(i32) -> Result<(), RuntimeError>,
) -> Result<(i32, Channel), RuntimeError> {
    let (parent, child) = Channel::pair().map_err(|e| sys("socketpair", e))?;
    // SAFETY: glibc's fork; the child only runs `intermediate`, which never
    // returns into the caller's code (it _exits).
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(sys("fork", io::Error::last_os_error()));
    }
    if pid == 0 {
        drop(parent);
        intermediate(child, joins, flags, stdio, body);
    }
    drop(child);
    drop(stdio);
    let said = parent.recv();
    wait_pid(pid);
    let cpid = match said {
        Ok(Some(Msg::Pid(p))) => p,
        Ok(Some(Msg::Error { message, exit_code })) => return Err(reported(message, exit_code)),
        Ok(other) => return Err(RuntimeError::Container(format!("the runtime's intermediate process failed: {other:?}"))),
        Err(e) => return Err(sys("reading from the intermediate process", e)),
    };
    if let Err(e) = adopt(cpid) {
        kill_and_reap(cpid, Ok(None));
        return Err(e);
    }
    if let Err(e) = parent.send(&Msg::Continue) {
        return Err(match kill_and_reap(cpid, Ok(None)) {
            RuntimeError::Container(m) => sys(format!("sending continue ({m})"), e),
            other => other,
        });
    }
    Ok((cpid, parent))
}

/// The intermediate process: join namespaces, clone the container process,
/// report its PID, exit. Never returns.
fn intermediate(
    chan: Channel,
    joins: &[(OwnedFd, libc::c_int)],
    flags: libc::c_int,
    stdio: Stdio,
    body: impl FnOnce(&Channel, Stdio) -> Fatal,
) -> ! {
    let report = |chan: &Channel, f: Fatal| -> ! {
        let _ = chan.send(&Msg::Error { message: f.message, exit_code: f.exit_code });
        // SAFETY: _exit never returns and runs no destructors or atexit handlers.
        unsafe { libc::_exit(f.exit_code) }
    };
    // Nothing in the container may read this process's memory or open its
    // /proc/<pid>/exe until the command is exec'd (CVE-2019-5736 class).
    // SAFETY: plain prctl.
    unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) };
    for (fd, flag) in joins {
        // SAFETY: fd is an open namespace descriptor.
        if unsafe { libc::setns(fd.as_raw_fd(), *flag) } != 0 {
            report(&chan, fatal("joining a namespace (setns)", io::Error::last_os_error()));
        }
    }
    // A raw clone (fork semantics: no new stack) so that CLONE_PARENT makes
    // the caller the parent; this process is single-threaded.
    let clone_flags = (flags | libc::CLONE_PARENT | libc::SIGCHLD) as libc::c_ulong;
    // SAFETY: with a null stack, clone behaves like fork.
    let pid = unsafe { libc::syscall(libc::SYS_clone, clone_flags, 0usize, 0usize, 0usize, 0usize) };
    if pid < 0 {
        report(&chan, fatal("clone", io::Error::last_os_error()));
    }
    if pid == 0 {
        // A panic must never unwind into the caller's frames, copied here by fork.
        let f = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| body(&chan, stdio)))
            .unwrap_or_else(|_| Fatal { message: "the container process panicked during set-up".into(), exit_code: 1 });
        report(&chan, f);
    }
    let _ = chan.send(&Msg::Pid(pid as i32));
    // SAFETY: see above.
    unsafe { libc::_exit(0) }
}

fn expect_continue(chan: &Channel) -> Result<(), Fatal> {
    match chan.recv() {
        Ok(Some(Msg::Continue)) => Ok(()),
        // The parent gave up on us: leave quietly.
        Ok(None) => {
            // SAFETY: _exit never returns.
            unsafe { libc::_exit(1) }
        }
        Ok(Some(other)) => Err(Fatal { message: format!("expected continue, got {other:?}"), exit_code: 1 }),
        Err(e) => Err(fatal("waiting for the parent", e)),
    }
}

/// Puts the caller's stdio on 0, 1, 2 (stdin only if given).
fn install_stdio(stdio: &Stdio) -> Result<(), Fatal> {
    let fds = [stdio.stdin.as_ref().map(|f| f.as_raw_fd()), Some(stdio.stdout.as_raw_fd()), Some(stdio.stderr.as_raw_fd())];
    // First out of the way of 0..2, so that no dup2 overwrites a source.
    let mut high = [None; 3];
    for (i, fd) in fds.iter().enumerate() {
        if let Some(fd) = fd {
            // SAFETY: fd is open.
            let h = unsafe { libc::fcntl(*fd, libc::F_DUPFD_CLOEXEC, 3) };
            if h < 0 {
                return Err(fatal("duplicating stdio", io::Error::last_os_error()));
            }
            high[i] = Some(h);
        }
    }
    for (i, h) in high.iter().enumerate() {
        if let Some(h) = h {
            // SAFETY: both descriptors are valid; dup2 clears close-on-exec on the target.
            if unsafe { libc::dup2(*h, i as RawFd) } < 0 {
                return Err(fatal("installing stdio", io::Error::last_os_error()));
            }
            // SAFETY: h is ours.
            unsafe { libc::close(*h) };
        }
    }
    Ok(())
}

/// stdin from the container's /dev/null when the caller gave none.
fn stdin_devnull() -> Result<(), Fatal> {
    // SAFETY: valid C string.
    let fd = unsafe { libc::open(c"/dev/null".as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(fatal("opening /dev/null", io::Error::last_os_error()));
    }
    // SAFETY: both descriptors are valid.
    unsafe {
        libc::dup2(fd, 0);
        libc::close(fd);
    }
    Ok(())
}

/// With a terminal: reopens the tty through the container's own /dev/pts, so
/// that /proc/self/fd/0 reads `/dev/pts/N` (Docker's view) rather than the
/// caller's path to it. Only when /dev/pts/N here is the very same device
/// (the caller opened the pty on the devpts instance bound at the
/// container's /dev/pts); otherwise the inherited descriptors stay.
fn reopen_tty_inside() -> Result<(), Fatal> {
    // SAFETY: st is written by the kernel before use.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: fd 0 and a valid out pointer.
    if unsafe { libc::fstat(0, &mut st) } != 0 {
        return Ok(());
    }
    let (major, minor) = (libc::major(st.st_rdev), libc::minor(st.st_rdev));
    // Unix98 pty slaves: majors 136..=143.
    if st.st_mode & libc::S_IFMT != libc::S_IFCHR || !(136..=143).contains(&major) {
        return Ok(());
    }
    let path = CString::new(format!("/dev/pts/{}", (major - 136) * 256 + minor)).map_err(|_| Fatal { message: "pty path".into(), exit_code: 1 })?;
    // SAFETY: as above.
    let mut here: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: path is a valid C string; here is a valid out pointer.
    if unsafe { libc::stat(path.as_ptr(), &mut here) } != 0 || here.st_rdev != st.st_rdev || here.st_dev != st.st_dev {
        return Ok(());
    }
    // SAFETY: path is a valid C string.
    let fd = unsafe { libc::open(path.as_ptr(), libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(fatal("reopening the tty in the container", io::Error::last_os_error()));
    }
    for target in 0..3 {
        // SAFETY: as above.
        let mut cur: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: target is 0..2; cur is a valid out pointer.
        if unsafe { libc::fstat(target, &mut cur) } == 0 && cur.st_rdev == st.st_rdev && cur.st_dev == st.st_dev {
            // SAFETY: both descriptors are valid.
            unsafe { libc::dup2(fd, target) };
        }
    }
    // SAFETY: fd is ours.
    unsafe { libc::close(fd) };
    Ok(())
}

/// The spec's console size on the tty (Docker's HostConfig.ConsoleSize), so
/// the command sees its size from the start rather than after a resize.
fn set_console_size(process: &Process) {
    if let Some(b) = process.console_size().filter(|b| b.height() > 0 && b.width() > 0) {
        let ws = libc::winsize { ws_row: b.height().min(u16::MAX as u64) as u16, ws_col: b.width().min(u16::MAX as u64) as u16, ws_xpixel: 0, ws_ypixel: 0 };
        // SAFETY: TIOCSWINSZ reads one winsize; a failure leaves the size as it was.
        unsafe { libc::ioctl(0, libc::TIOCSWINSZ, &ws) };
    }
}

fn set_controlling_tty() -> Result<(), Fatal> {
    // SAFETY: ioctl on fd 0 with an integer argument.
    if unsafe { libc::ioctl(0, libc::TIOCSCTTY, 0) } != 0 {
        return Err(fatal("making the tty the controlling terminal", io::Error::last_os_error()));
    }
    Ok(())
}

fn rlimit_resource(t: PosixRlimitType) -> libc::__rlimit_resource_t {
    use PosixRlimitType::*;
    match t {
        RlimitCpu => libc::RLIMIT_CPU,
        RlimitFsize => libc::RLIMIT_FSIZE,
        RlimitData => libc::RLIMIT_DATA,
        RlimitStack => libc::RLIMIT_STACK,
        RlimitCore => libc::RLIMIT_CORE,
        RlimitRss => libc::RLIMIT_RSS,
        RlimitNproc => libc::RLIMIT_NPROC,
        RlimitNofile => libc::RLIMIT_NOFILE,
        RlimitMemlock => libc::RLIMIT_MEMLOCK,
        RlimitAs => libc::RLIMIT_AS,
        RlimitLocks => libc::RLIMIT_LOCKS,
        RlimitSigpending => libc::RLIMIT_SIGPENDING,
        RlimitMsgqueue => libc::RLIMIT_MSGQUEUE,
        RlimitNice => libc::RLIMIT_NICE,
        RlimitRtprio => libc::RLIMIT_RTPRIO,
        RlimitRttime => libc::RLIMIT_RTTIME,
    }
}

fn set_rlimits(process: &Process) -> Result<(), Fatal> {
    for r in process.rlimits().iter().flatten() {
        let lim = libc::rlimit { rlim_cur: r.soft(), rlim_max: r.hard() };
        // SAFETY: lim is a valid rlimit.
        if unsafe { libc::setrlimit(rlimit_resource(r.typ()), &lim) } != 0 {
            return Err(fatal(&format!("setting rlimit {} to {}:{}", r.typ(), r.soft(), r.hard()), io::Error::last_os_error()));
        }
    }
    if let Some(adj) = process.oom_score_adj() {
        std::fs::write("/proc/self/oom_score_adj", adj.to_string()).map_err(|e| fatal("writing oom_score_adj", e))?;
    }
    Ok(())
}

/// The user the command runs as, resolved inside the container's root.
struct Identity {
    uid: u32,
    gid: u32,
    groups: Vec<u32>,
    home: Option<String>,
}

/// Reads the container's /etc/passwd or /etc/group: a regular file of at
/// most 4 MiB (an image could make it a FIFO or /dev/zero); "" otherwise.
fn read_account_file(path: &str) -> String {
    use std::os::unix::fs::OpenOptionsExt;
    let Ok(f) = std::fs::OpenOptions::new().read(true).custom_flags(libc::O_NONBLOCK).open(path) else { return String::new() };
    if !f.metadata().map(|m| m.is_file()).unwrap_or(false) {
        return String::new();
    }
    let mut s = String::new();
    let _ = std::io::Read::read_to_string(&mut std::io::Read::take(f, 4 << 20), &mut s);
    s
}

fn resolve_identity(process: &Process, name: Option<&str>, group_add: Option<&str>) -> Result<Identity, Fatal> {
    let u = process.user();
    let mut groups: Vec<u32> = u.additional_gids().clone().unwrap_or_default();
    let extra: Vec<String> = group_add.map(|g| g.split(',').filter(|s| !s.is_empty()).map(str::to_string).collect()).unwrap_or_default();
    let passwd = read_account_file("/etc/passwd");
    let group = read_account_file("/etc/group");
    let spec = match name {
        Some(n) => n.to_string(),
        None => format!("{}:{}", u.uid(), u.gid()),
    };
    let resolved = user::resolve(&spec, &extra, &passwd, &group);
    let r = match (resolved, name) {
        (Ok(r), _) => r,
        (Err(message), Some(_)) => return Err(Fatal { message, exit_code: 1 }),
        // A numeric user need not exist in /etc/passwd.
        (Err(_), None) => user::ExecUser { uid: u.uid(), gid: u.gid(), additional_gids: Vec::new(), home: "/".into() },
    };
    for g in r.additional_gids {
        if !groups.contains(&g) {
            groups.push(g);
        }
    }
    Ok(Identity { uid: r.uid, gid: r.gid, groups, home: Some(r.home) })
}

/// Marks every descriptor above 2 close-on-exec, so nothing of the caller's
/// (daemon sockets, the host rootfs directory: CVE-2024-21626) survives exec.
fn cloexec_all() -> Result<(), Fatal> {
    // SAFETY: close_range with plain integer arguments.
    let rc = unsafe { libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, libc::CLOSE_RANGE_CLOEXEC) };
    if rc == 0 {
        return Ok(());
    }
    // Kernels before 5.11: walk /proc/self/fd.
    let entries = std::fs::read_dir("/proc/self/fd").map_err(|e| fatal("listing /proc/self/fd", e))?;
    let fds: Vec<RawFd> = entries.flatten().filter_map(|e| e.file_name().to_str().and_then(|s| s.parse().ok())).collect();
    for fd in fds.into_iter().filter(|fd| *fd > 2) {
        // SAFETY: setting a flag on a descriptor number; a closed one fails harmlessly.
        unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
    }
    Ok(())
}

/// Closes every descriptor above 2 except `keep` (the channel): nothing of the
/// caller's can be reached through /proc/self/fd from here on — in particular
/// not as a working directory (CVE-2024-21626).
fn close_all_except(keep: RawFd) {
    let ranges = [(3u32, (keep as u32).saturating_sub(1)), ((keep as u32).saturating_add(1), u32::MAX)];
    for (lo, hi) in ranges {
        if lo > hi {
            continue;
        }
        // SAFETY: close_range with plain integer arguments; nothing else in
        // this single-threaded process uses those descriptors.
        let rc = unsafe { libc::syscall(libc::SYS_close_range, lo, hi, 0u32) };
        if rc != 0 {
            // Kernels before 5.9: one by one, up to the soft limit.
            let max = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE).map(|(s, _)| s).unwrap_or(1024).min(1 << 20);
            for fd in lo..=hi.min(max as u32) {
                // SAFETY: see above.
                unsafe { libc::close(fd as RawFd) };
            }
        }
    }
}

/// Fails unless the working directory is inside the container's root: a cwd
/// reached through a leaked descriptor has no path from the new root.
fn check_cwd_inside() -> Result<(), Fatal> {
    match std::env::current_dir() {
        Ok(p) if p.is_absolute() => Ok(()),
        _ => Err(Fatal {
            message: "current working directory is outside of the container's root: possible container breakout detected".into(),
            exit_code: 1,
        }),
    }
}

/// Bounding set, user switch, then the capability sets (runc's order: the
/// switch needs CAP_SETUID/SETGID, kept across it with PR_SET_KEEPCAPS),
/// and the seccomp filter.
fn drop_privileges(process: &Process, id: &Identity, filter: Option<&LinuxSeccomp>) -> Result<(), Fatal> {
    let no_new_privs = process.no_new_privileges() == Some(true);
    let seccomp_failed = |message: String| Fatal { message, exit_code: 1 };
    let filter = filter.map(|f| seccomp::compile(f, no_new_privs)).transpose().map_err(seccomp_failed)?;
    // Without no_new_privs, loading a filter needs CAP_SYS_ADMIN: then it is
    // loaded before the capabilities go (runc's order), and the steps below
    // run under it; with no_new_privs, as late as can be.
    if let (Some(filter), false) = (&filter, no_new_privs) {
        seccomp::load(filter).map_err(seccomp_failed)?;
    }
    let last = caps::last_cap();
    let masks = process.capabilities().as_ref().map(|c| caps::Masks::of(c, last)).unwrap_or_default();
    let masks = masks.within(caps::permitted().map_err(|e| fatal("reading capabilities", e))?);
    caps::drop_bounding(masks.bounding, last).map_err(|e| fatal("dropping the capability bounding set", e))?;
    // SAFETY: plain prctl.
    unsafe { libc::prctl(libc::PR_SET_KEEPCAPS, 1, 0, 0, 0) };
    // SAFETY: groups is a valid array of the given length.
    if unsafe { libc::setgroups(id.groups.len(), id.groups.as_ptr()) } != 0 {
        return Err(fatal(&format!("setgroups {:?}", id.groups), io::Error::last_os_error()));
    }
    // SAFETY: plain syscalls.
    if unsafe { libc::setresgid(id.gid, id.gid, id.gid) } != 0 {
        return Err(fatal(&format!("setting gid {}", id.gid), io::Error::last_os_error()));
    }
    // SAFETY: plain syscall.
    if unsafe { libc::setresuid(id.uid, id.uid, id.uid) } != 0 {
        return Err(fatal(&format!("setting uid {}", id.uid), io::Error::last_os_error()));
    }
    // SAFETY: plain prctl.
    unsafe { libc::prctl(libc::PR_SET_KEEPCAPS, 0, 0, 0, 0) };
    caps::apply(&masks).map_err(|e| fatal("setting capabilities", e))?;
    if no_new_privs {
        // SAFETY: plain prctl.
        if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
            return Err(fatal("setting no_new_privs", io::Error::last_os_error()));
        }
        if let Some(filter) = &filter {
            seccomp::load(filter).map_err(seccomp_failed)?;
        }
    }
    Ok(())
}

/// Go's wording of an errno ("no such file or directory"), as Docker prints it.
fn errno_text(e: &io::Error) -> String {
    let Some(code) = e.raw_os_error() else { return e.to_string() };
    // SAFETY: strerror returns a valid static C string.
    let s = unsafe { std::ffi::CStr::from_ptr(libc::strerror(code)) }.to_string_lossy().into_owned();
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_lowercase().collect::<String>() + c.as_str(),
        None => s,
    }
}

fn is_executable(p: &Path) -> bool {
    let Ok(c) = CString::new(p.as_os_str().as_bytes()) else { return false };
    let is_file = std::fs::metadata(p).map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0).unwrap_or(false);
    // SAFETY: c is a valid C string.
    is_file && unsafe { libc::access(c.as_ptr(), libc::X_OK) } == 0
}

/// Finds the command as Go's exec.LookPath does (runc's behaviour, so Docker's messages).
fn lookup(cmd: &str, env: &[String]) -> Result<PathBuf, Fatal> {
    if cmd.contains('/') {
        let p = Path::new(cmd);
        return match std::fs::metadata(p) {
            Err(e) => Err(Fatal { message: format!("exec: {cmd:?}: stat {cmd}: {}", errno_text(&e)), exit_code: EXIT_NOT_FOUND }),
            Ok(_) if is_executable(p) => Ok(p.to_path_buf()),
            Ok(_) => Err(Fatal { message: format!("exec: {cmd:?}: permission denied"), exit_code: EXIT_NOT_EXECUTABLE }),
        };
    }
    let path = env.iter().rev().find_map(|e| e.strip_prefix("PATH=")).unwrap_or("");
    for dir in path.split(':') {
        let dir = if dir.is_empty() { "." } else { dir };
        let candidate = Path::new(dir).join(cmd);
        if is_executable(&candidate) {
            return Ok(candidate);
        }
    }
    Err(Fatal { message: format!("exec: {cmd:?}: executable file not found in $PATH"), exit_code: EXIT_NOT_FOUND })
}

/// argv and envp as C strings, built before exec so nothing allocates after.
struct ExecArgs {
    path: CString,
    argv: Vec<CString>,
    envp: Vec<CString>,
    shown: String,
}

fn exec_args(process: &Process, home: Option<&str>) -> Result<ExecArgs, Fatal> {
    let args = process.args().clone().unwrap_or_default();
    let mut env = process.env().clone().unwrap_or_default();
    if let Some(home) = home {
        if !env.iter().any(|e| e.starts_with("HOME=")) {
            env.push(format!("HOME={home}"));
        }
    }
    let cmd = args.first().cloned().unwrap_or_default();
    let path = lookup(&cmd, &env)?;
    let c = |s: &[u8]| CString::new(s).map_err(|_| Fatal { message: format!("exec: {cmd:?}: argument contains a NUL byte"), exit_code: 1 });
    Ok(ExecArgs {
        path: c(path.as_os_str().as_bytes())?,
        argv: args.iter().map(|a| c(a.as_bytes())).collect::<Result<_, _>>()?,
        envp: env.iter().map(|e| c(e.as_bytes())).collect::<Result<_, _>>()?,
        shown: cmd,
    })
}

/// execve; returns only on failure.
fn do_exec(a: &ExecArgs) -> Fatal {
    let mut argv: Vec<*const libc::c_char> = a.argv.iter().map(|s| s.as_ptr()).collect();
    argv.push(std::ptr::null());
    let mut envp: Vec<*const libc::c_char> = a.envp.iter().map(|s| s.as_ptr()).collect();
    envp.push(std::ptr::null());
    // SAFETY: path, argv and envp are valid NUL-terminated arrays of C strings.
    unsafe { libc::execve(a.path.as_ptr(), argv.as_ptr(), envp.as_ptr()) };
    let e = io::Error::last_os_error();
    let code = if e.raw_os_error() == Some(libc::ENOENT) { EXIT_NOT_FOUND } else { EXIT_NOT_EXECUTABLE };
    Fatal { message: format!("exec: {:?}: {}", a.shown, errno_text(&e)), exit_code: code }
}

fn set_umask(process: &Process) {
    let mask = process.user().umask().unwrap_or(0o022);
    // SAFETY: umask cannot fail.
    unsafe { libc::umask(mask as libc::mode_t) };
}

/// The container process, from clone to exec: the dangerous sequence, in order.
fn init_container(spec: &Spec, rootfs: &Path, chan: &Channel, stdio: Stdio) -> Fatal {
    match init_steps(spec, rootfs, chan, stdio) {
        Ok(never) => match never {},
        Err(f) => f,
    }
}

fn init_steps(spec: &Spec, rootfs: &Path, chan: &Channel, stdio: Stdio) -> Result<Infallible, Fatal> {
    let process = spec.process().clone().unwrap_or_default();
    let linux = spec.linux().clone().unwrap_or_default();
    let annotations = spec.annotations().clone().unwrap_or_default();
    let terminal = process.terminal() == Some(true);

    // 1. Wait until the parent has put us in our cgroup: everything below is accounted.
    expect_continue(chan)?;
    // 2. Device nodes and directories get exactly the modes we ask for.
    // SAFETY: umask cannot fail.
    unsafe { libc::umask(0) };
    // 3. Stdio on 0, 1, 2 (the tty, if any, is bound to /dev/console below).
    install_stdio(&stdio)?;
    let has_stdin = stdio.stdin.is_some();
    drop(stdio);
    // 4. Nothing mounted from here on may propagate back to the host.
    // (vol-core) A slave root still receives the host's mount events, which a
    // `bind-propagation=(r)slave` volume needs; nothing flows back either way.
    let root_flag = match linux.rootfs_propagation().as_deref() {
        Some("rslave") | Some("slave") => libc::MS_REC | libc::MS_SLAVE,
        _ => libc::MS_REC | libc::MS_PRIVATE,
    };
    rootfs::mount_raw(None, b"/", None, root_flag, None).map_err(|e| fatal("making / private", e))?;
    // 5. The rootfs becomes a mount of its own (pivot_root needs one).
    let rb = rootfs.as_os_str().as_bytes();
    rootfs::mount_raw(Some(rb), rb, None, libc::MS_BIND | libc::MS_REC, None).map_err(|e| fatal("binding the rootfs", e))?;
    let root = rootfs::open_dir(rootfs).map_err(|e| fatal("opening the rootfs", e))?;
    // 6. The spec's mounts, in order, each target resolved inside the rootfs.
    let mounts = spec.mounts().clone().unwrap_or_default();
    let cgroup_dirs = if mounts.iter().any(|m| m.typ().as_deref() == Some("cgroup")) {
        cgroups::process_dirs("self")?
    } else {
        Vec::new()
    };
    for m in &mounts {
        rootfs::mount_one(root.as_raw_fd(), m, &cgroup_dirs)?;
    }
    // 7. /dev: device nodes, symlinks, /dev/console.
    rootfs::populate_dev(root.as_raw_fd(), linux.devices().as_deref().unwrap_or(&[]), terminal)?;
    drop(root);
    // 8. pivot_root: from here on the host's tree is unreachable, and so is
    // every descriptor of the caller's.
    rootfs::pivot_root(rootfs)?;
    close_all_except(chan.0.as_raw_fd());
    // 9. sysctls, before /proc/sys becomes read-only.
    for (key, value) in linux.sysctl().iter().flatten() {
        let path = format!("/proc/sys/{}", key.replace('.', "/"));
        std::fs::write(&path, value).map_err(|e| fatal(&format!("setting sysctl {key}={value}"), e))?;
    }
    // 10. The working directory, created if missing (Docker does) while the
    // root is still writable; then read-only and masked paths, the read-only root.
    let cwd = process.cwd().clone();
    if !cwd.exists() {
        std::fs::create_dir_all(&cwd).map_err(|e| fatal(&format!("creating the working directory {}", cwd.display()), e))?;
    }
    for p in linux.readonly_paths().iter().flatten() {
        rootfs::readonly_path(p)?;
    }
    for p in linux.masked_paths().iter().flatten() {
        rootfs::mask_path(p)?;
    }
    if spec.root().as_ref().and_then(|r| r.readonly()) == Some(true) {
        rootfs::readonly_root()?;
    }
    // 11. Hostname and domain name in the new UTS namespace.
    if let Some(h) = spec.hostname().as_deref().filter(|h| !h.is_empty()) {
        nix::unistd::sethostname(h).map_err(|e| fatal("sethostname", e.into()))?;
    }
    if let Some(d) = spec.domainname().as_deref().filter(|d| !d.is_empty()) {
        // SAFETY: d points to d.len() valid bytes.
        if unsafe { libc::setdomainname(d.as_ptr().cast(), d.len()) } != 0 {
            return Err(fatal("setdomainname", io::Error::last_os_error()));
        }
    }
    // 11b. A network namespace of its own starts with `lo` down; Docker's
    // sandbox brings it up, so `--network none` still has 127.0.0.1.
    let new_netns = linux.namespaces().iter().flatten().any(|ns| {
        ns.typ() == LinuxNamespaceType::Network && ns.path().is_none()
    });
    if new_netns {
        loopback_up().map_err(|e| fatal("bringing up lo", e))?;
    }
    // 12. A session of our own; the tty, seen through the container's own
    // /dev/pts, becomes its controlling terminal.
    if !has_stdin {
        stdin_devnull()?;
    }
    if terminal {
        reopen_tty_inside()?;
        set_console_size(&process);
    }
    // SAFETY: setsid cannot corrupt memory.
    unsafe { libc::setsid() };
    if terminal {
        set_controlling_tty()?;
    }
    // 13. rlimits and the OOM score (lowering it needs the privileges we still have).
    set_rlimits(&process)?;
    // 14. The user, resolved from the container's own /etc/passwd and /etc/group.
    let name = annotations.get(oci::ANNOTATION_USER).map(String::as_str).or(process.user().username().as_deref());
    let id = resolve_identity(&process, name, annotations.get(oci::ANNOTATION_GROUP_ADD).map(String::as_str))?;
    // 15. The working directory (created above, before a read-only remount).
    let cwd = process.cwd().clone();
    std::env::set_current_dir(&cwd)
        .map_err(|e| fatal(&format!("chdir to cwd ({:?}) set in config.json failed", cwd.display().to_string()), e))?;
    check_cwd_inside()?;
    // 16. No descriptor of the caller survives exec.
    cloexec_all()?;
    // 17. Capabilities and the user switch; no_new_privs.
    drop_privileges(&process, &id, spec.linux().as_ref().and_then(|l| l.seccomp().as_ref()))?;
    // 18. The command must exist before we report ready (Docker's error otherwise).
    let args = exec_args(&process, id.home.as_deref())?;
    set_umask(&process);
    // 19. Ready; wait for start.
    chan.send(&Msg::Ready).map_err(|e| fatal("reporting ready", e))?;
    match chan.recv() {
        Ok(Some(Msg::Start)) => {}
        // The caller dropped the container without starting it.
        Ok(None) => {
            // SAFETY: _exit never returns.
            unsafe { libc::_exit(1) }
        }
        Ok(Some(other)) => return Err(Fatal { message: format!("expected start, got {other:?}"), exit_code: 1 }),
        Err(e) => return Err(fatal("waiting for start", e)),
    }
    // 20. exec, or with --init stay PID 1 as a reaper of the command.
    if annotations.get(oci::ANNOTATION_INIT).map(String::as_str) == Some("true") {
        return reaper(&args, chan);
    }
    reset_signals();
    Err(do_exec(&args))
}

/// Default dispositions and an empty mask for the command: what the caller
/// ignores (Rust ignores SIGPIPE) or blocks would otherwise survive execve.
fn reset_signals() {
    // The kernel's struct sigaction (x86-64 and aarch64 layout), so that the
    // signals glibc reserves for itself (32, 33) are reset too.
    #[repr(C)]
    struct KernelSigaction {
        handler: usize,
        flags: libc::c_ulong,
        restorer: usize,
        mask: u64,
    }
    let dfl = KernelSigaction { handler: libc::SIG_DFL, flags: 0, restorer: 0, mask: 0 };
    // SAFETY: rt_sigaction with a valid struct and the kernel's 8-byte sigset
    // size; sigprocmask with a valid set; this process is single-threaded.
    unsafe {
        for sig in 1..=64 {
            if sig != libc::SIGKILL && sig != libc::SIGSTOP {
                libc::syscall(libc::SYS_rt_sigaction, sig, &dfl as *const KernelSigaction, std::ptr::null_mut::<KernelSigaction>(), 8usize);
            }
        }
        let mut empty: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut empty);
        libc::sigprocmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut());
    }
}

extern "C" fn noop_handler(_: libc::c_int) {}

/// `--init`: PID 1 stays this code. It forks the command, forwards every
/// signal it gets to it, reaps every zombie, and exits with the command's
/// status (128 + signal when killed), as tini does.
fn reaper(args: &ExecArgs, chan: &Channel) -> Result<Infallible, Fatal> {
    // PID 1 of a namespace receives signals from outside only if it has a
    // handler; blocked, they queue for sigwaitinfo.
    // SAFETY: sigset operations on a local set; sigaction with a valid handler.
    let all = unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut set);
        for sig in 1..=libc::SIGRTMAX() {
            if sig == libc::SIGKILL || sig == libc::SIGSTOP || (32..libc::SIGRTMIN()).contains(&sig) {
                continue;
            }
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = noop_handler as *const () as usize;
            libc::sigfillset(&mut sa.sa_mask);
            libc::sigaction(sig, &sa, std::ptr::null_mut());
        }
        libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        set
    };
    // SAFETY: this process is single-threaded.
    let child = unsafe { libc::fork() };
    if child < 0 {
        return Err(fatal("fork (init)", io::Error::last_os_error()));
    }
    if child == 0 {
        // The command: default signal handling, nothing blocked.
        reset_signals();
        return Err(do_exec(args));
    }
    // Only the command holds the channel now: its exec closes it for the parent.
    // SAFETY: closing our copy; the Channel is never used or dropped again (we _exit).
    unsafe { libc::close(chan.0.as_raw_fd()) };
    loop {
        // SAFETY: all is a valid set; info is a valid out pointer.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        let sig = unsafe { libc::sigwaitinfo(&all, &mut info) };
        if sig < 0 {
            continue;
        }
        if sig != libc::SIGCHLD {
            // SAFETY: signalling our own child.
            unsafe { libc::kill(child, sig) };
            continue;
        }
        loop {
            let mut status = 0;
            // SAFETY: status is a valid out pointer.
            let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
            if pid <= 0 {
                break;
            }
            if pid == child {
                let code = if libc::WIFEXITED(status) {
                    libc::WEXITSTATUS(status)
                } else if libc::WIFSIGNALED(status) {
                    128 + libc::WTERMSIG(status)
                } else {
                    1
                };
                // SAFETY: _exit never returns.
                unsafe { libc::_exit(code) }
            }
        }
    }
}

/// An exec'd process: joined the container's namespaces in the intermediate;
/// here it takes the process's user, caps, rlimits, env and cwd, then execs.
fn exec_process(process: &Process, group_add: Option<&str>, seccomp: Option<&LinuxSeccomp>, chan: &Channel, stdio: Stdio) -> Fatal {
    match exec_steps(process, group_add, seccomp, chan, stdio) {
        Ok(never) => match never {},
        Err(f) => f,
    }
}

fn exec_steps(process: &Process, group_add: Option<&str>, seccomp: Option<&LinuxSeccomp>, chan: &Channel, stdio: Stdio) -> Result<Infallible, Fatal> {
    // 1. In the container's cgroup before anything else.
    expect_continue(chan)?;
    // 2. Stdio; a tty makes a session of its own.
    install_stdio(&stdio)?;
    let has_stdin = stdio.stdin.is_some();
    drop(stdio);
    close_all_except(chan.0.as_raw_fd());
    if !has_stdin {
        stdin_devnull()?;
    }
    if process.terminal() == Some(true) {
        reopen_tty_inside()?;
        set_console_size(process);
        // SAFETY: setsid cannot corrupt memory.
        unsafe { libc::setsid() };
        set_controlling_tty()?;
    }
    // 3. rlimits, user, cwd (which must exist: Docker does not create it for exec).
    set_rlimits(process)?;
    let id = resolve_identity(process, process.user().username().as_deref(), group_add)?;
    let cwd = process.cwd().clone();
    std::env::set_current_dir(&cwd)
        .map_err(|e| fatal(&format!("chdir to cwd ({:?}) set in config.json failed", cwd.display().to_string()), e))?;
    check_cwd_inside()?;
    // 4. No descriptor of the shim survives; privileges dropped; then exec.
    cloexec_all()?;
    drop_privileges(process, &id, seccomp)?;
    let args = exec_args(process, id.home.as_deref())?;
    set_umask(process);
    reset_signals();
    Err(do_exec(&args))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_reports_docker_errors() {
        let env = vec!["PATH=/nonexistent:/also/not".to_string()];
        let e = lookup("nosuchcmd", &env).expect_err("not found");
        assert_eq!(e.message, r#"exec: "nosuchcmd": executable file not found in $PATH"#);
        assert_eq!(e.exit_code, 127);
        let e = lookup("/no/such/file", &env).expect_err("no file");
        assert_eq!(e.message, r#"exec: "/no/such/file": stat /no/such/file: no such file or directory"#);
        let e = lookup("/etc/passwd", &env).expect_err("not executable");
        assert_eq!(e.exit_code, 126);
        assert_eq!(lookup("sh", &["PATH=/bin:/usr/bin".to_string()]).ok().map(|p| p.is_absolute()), Some(true));
    }

    #[test]
    fn only_a_command_that_cannot_run_is_a_command_error() {
        let e = reported("exec: \"x\": executable file not found in $PATH".into(), 127);
        assert_eq!(e.command_exit_code(), Some(127));
        assert_eq!(reported("exec: \"/etc/passwd\": permission denied".into(), 126).command_exit_code(), Some(126));
        // A set-up failure is not, whatever its words say.
        let e = reported("mounting /proc: no such file or directory".into(), 1);
        assert!(matches!(e, RuntimeError::Container(_)), "{e:?}");
        assert_eq!(e.command_exit_code(), None);
    }
}
