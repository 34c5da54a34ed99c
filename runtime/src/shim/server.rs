//! The shim process itself (`berth shim <state_dir>`): small on purpose — no
//! async runtime, plain blocking threads (one per stream and per client
//! connection), one signal pipe. The order of things:
//! detach → pid file, subreaper, signal handlers → mount the rootfs → stdio
//! and log → bind the socket → create the container → report ready → serve →
//! (init exits) → drain output → exit.json → answer waiters → unmount,
//! remove the cgroup, socket and pid file → exit.
//! It must never exit before recording the container's exit, and never let
//! a signal meant for the container kill the shim instead.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read, Write};
use std::net::Shutdown;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use oci_spec::runtime::Spec;

use super::jsonlog::{self, Stream};
use super::proto::{self, Failure, Ready, Request, Response};
use super::{ExecRequest, ExitInfo, ShimError, ShimOptions, ShimState};
use crate::cgroups;
use crate::clock::now_rfc3339;
use crate::files::{self, Durability};
use crate::external::{ExternalIo, ExternalRuntime};
use crate::linux::{self, Created, Stdio};
use crate::RuntimeError;

/// How long to wait for output still in flight after the container's init exited.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the shim must have been idle before it trims its code pages:
/// long enough that the daemon's requests around a start (start, state,
/// the monitor's wait) are over, so they do not fault the pages back in.
const TRIM_QUIET: Duration = Duration::from_millis(100);
/// How long waiters get to receive the exit before the shim goes away.
const WAITERS_TIMEOUT: Duration = Duration::from_secs(2);
/// A client that does not read its stream for this long is dropped, so that
/// one stuck attacher cannot stall the container's output for everyone.
const ATTACH_WRITE_TIMEOUT: Duration = Duration::from_secs(30);
/// Read buffer for output streams (on the thread's stack).
const CHUNK: usize = 16 * 1024;

/// Signals the shim forwards to the container instead of dying of them.
const FORWARDED: [libc::c_int; 6] =
    [libc::SIGTERM, libc::SIGINT, libc::SIGHUP, libc::SIGQUIT, libc::SIGUSR1, libc::SIGUSR2];

fn err(context: impl Into<String>) -> impl FnOnce(io::Error) -> ShimError {
    let context = context.into();
    move |source| ShimError::Io { context, source }
}

/// Locks a mutex, carrying on with the data if a thread panicked holding it:
/// the shim must keep serving its container.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poison| poison.into_inner())
}

/// The shim's main; see the module docs.
pub fn run(state_dir: &Path) -> Result<(), ShimError> {
    let state_dir = std::fs::canonicalize(state_dir).map_err(err(format!("state dir {}", state_dir.display())))?;
    let ready = ready_fd();
    let options_path = state_dir.join(proto::OPTIONS_FILE);
    let data = std::fs::read(&options_path).map_err(err(format!("reading {}", options_path.display())));
    let options: Result<ShimOptions, ShimError> = data.and_then(|d| {
        serde_json::from_slice(&d).map_err(|e| ShimError::Start(format!("parsing {}: {e}", options_path.display())))
    });
    let mut options = match options {
        Ok(o) => o,
        Err(e) => {
            report(ready, &Ready::Failed(Failure::from(&e)));
            return Err(e);
        }
    };
    options.state_dir = state_dir;
    // The shim works from its state dir (see `bind`): make the other paths absolute first.
    for p in [&mut options.bundle, &mut options.log_path] {
        if let Ok(abs) = std::path::absolute(&*p) {
            *p = abs;
        }
    }
    detach();
    // One malloc arena: the shim's threads allocate little, and per-thread
    // arenas would multiply its resident memory.
    // SAFETY: mallopt only tunes the allocator.
    unsafe { libc::mallopt(libc::M_ARENA_MAX, 1) };
    match Shim::create(options) {
        Ok(shim) => {
            report(ready, &Ready::Created { pid: shim.pid });
            shim.serve()
        }
        Err(e) => {
            eprintln!("berth shim: {e}");
            report(ready, &Ready::Failed(Failure::from(&e)));
            Err(e)
        }
    }
}

/// The ready pipe `spawn` gave us, if any (not when run by hand).
fn ready_fd() -> Option<File> {
    let raw: RawFd = std::env::var(proto::READY_FD_ENV).ok()?.parse().ok()?;
    std::env::remove_var(proto::READY_FD_ENV);
    // SAFETY: F_GETFD only checks that the fd is open.
    if raw < 3 || unsafe { libc::fcntl(raw, libc::F_GETFD) } < 0 {
        return None;
    }
    // SAFETY: the fd was passed to us for this purpose and is open; we own it from here.
    let file = unsafe { File::from_raw_fd(raw) };
    // SAFETY: set close-on-exec so the container never inherits it.
    unsafe { libc::fcntl(raw, libc::F_SETFD, libc::FD_CLOEXEC) };
    Some(file)
}

fn report(ready: Option<File>, message: &Ready) {
    if let Some(mut f) = ready {
        let _ = proto::write_line(&mut f, message);
    }
}

/// Leaves the daemon's session and process tree: a new session, then a fork
/// whose parent exits, so the shim is reparented away from the daemon and
/// (not being a session leader) can never acquire a controlling terminal.
fn detach() {
    // SAFETY: setsid has no memory effects; it fails harmlessly if already a leader.
    unsafe { libc::setsid() };
    // SAFETY: the process is single-threaded here; the child only continues Rust code.
    match unsafe { libc::fork() } {
        0 => {}
        -1 => eprintln!("berth shim: fork failed ({}); staying attached", io::Error::last_os_error()),
        // SAFETY: the intermediate process leaves at once without running destructors.
        _ => unsafe { libc::_exit(0) },
    }
}

/// Write end of the signal pipe, for the async-signal-safe handler.
static SIGNAL_PIPE: AtomicI32 = AtomicI32::new(-1);

extern "C" fn on_signal(sig: libc::c_int) {
    let fd = SIGNAL_PIPE.load(Ordering::Relaxed);
    if fd >= 0 {
        let b = sig as u8;
        // SAFETY: write(2) is async-signal-safe; the pipe is non-blocking, so a full pipe drops the byte.
        unsafe { libc::write(fd, &b as *const u8 as *const libc::c_void, 1) };
    }
}

/// Catches SIGPIPE instead of ignoring it: a caught signal is reset to its
/// default by execve, an ignored one would stay ignored in the container.
/// Writes to a client that went away still just fail with EPIPE.
extern "C" fn on_sigpipe(_: libc::c_int) {}

/// Routes SIGCHLD and the forwarded signals into a pipe the signal thread reads.
fn install_signal_handlers() -> Result<File, ShimError> {
    let (r, w) = pipe()?;
    // SAFETY: plain fcntl on our own fd.
    unsafe { libc::fcntl(w.as_raw_fd(), libc::F_SETFL, libc::O_NONBLOCK) };
    SIGNAL_PIPE.store(w.as_raw_fd(), Ordering::Relaxed);
    // The write end lives as long as the process.
    std::mem::forget(w);
    let handlers = FORWARDED.iter().map(|&s| (s, on_signal as extern "C" fn(libc::c_int)));
    for (sig, handler) in handlers.chain([(libc::SIGCHLD, on_signal as _), (libc::SIGPIPE, on_sigpipe as _)]) {
        // SAFETY: a zeroed sigaction with a handler that at most calls write(2);
        // handlers reset to default in the container when it execs.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = handler as usize;
            sa.sa_flags = libc::SA_RESTART | libc::SA_NOCLDSTOP;
            libc::sigemptyset(&mut sa.sa_mask);
            if libc::sigaction(sig, &sa, std::ptr::null_mut()) != 0 {
                return Err(err(format!("installing the handler for signal {sig}"))(io::Error::last_os_error()));
            }
        }
    }
    Ok(File::from(r))
}

/// A close-on-exec pipe (read end, write end).
fn pipe() -> Result<(OwnedFd, OwnedFd), ShimError> {
    let mut fds = [0; 2];
    // SAFETY: fds is a valid array of two ints.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(err("creating a pipe")(io::Error::last_os_error()));
    }
    // SAFETY: pipe2 just returned these fds.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// A pty pair with the master close-on-exec (the slave goes to the process):
/// from the container's own devpts instance `pts` when there is one (so the
/// container sees its tty as `/dev/pts/N`, as with Docker), else from the host's.
fn pty(pts: Option<&Path>) -> Result<(OwnedFd, OwnedFd), ShimError> {
    if let Some(pts) = pts {
        return pty_in(pts);
    }
    let pair = nix::pty::openpty(None, None).map_err(|e| err("opening a pty")(io::Error::from(e)))?;
    // SAFETY: plain fcntl on our own fd.
    unsafe { libc::fcntl(pair.master.as_raw_fd(), libc::F_SETFD, libc::FD_CLOEXEC) };
    Ok((pair.master, pair.slave))
}

fn pty_in(pts: &Path) -> Result<(OwnedFd, OwnedFd), ShimError> {
    let ptmx = pts.join("ptmx");
    let master = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NOCTTY | libc::O_CLOEXEC)
        .open(&ptmx)
        .map_err(err(format!("opening {}", ptmx.display())))?;
    let unlock: libc::c_int = 0;
    // SAFETY: TIOCSPTLCK reads one int; TIOCGPTPEER returns a new fd for the
    // slave of this master, without a path lookup.
    let slave = unsafe {
        if libc::ioctl(master.as_raw_fd(), libc::TIOCSPTLCK, &unlock) != 0 {
            return Err(err("unlocking the pty")(io::Error::last_os_error()));
        }
        libc::ioctl(master.as_raw_fd(), libc::TIOCGPTPEER, libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC)
    };
    if slave < 0 {
        return Err(err("opening the pty's slave")(io::Error::last_os_error()));
    }
    // SAFETY: the ioctl just returned this fd, owned by nobody else.
    Ok((OwnedFd::from(master), unsafe { OwnedFd::from_raw_fd(slave) }))
}

/// Gives the container a devpts instance the shim mounted itself at
/// `<state_dir>/pts`: the spec's `/dev/pts` mount becomes a bind of it, so
/// that ptys the shim opens there (for `-t` and `exec -t`) are the
/// container's `/dev/pts/0`, `/dev/pts/1`, ... Returns the mount point, or
/// `None` when the spec mounts no devpts at /dev/pts.
fn own_devpts(spec: &mut Spec, state_dir: &Path) -> Result<Option<PathBuf>, ShimError> {
    let Some(mounts) = spec.mounts_mut().as_mut() else { return Ok(None) };
    let Some(m) = mounts
        .iter_mut()
        .find(|m| m.destination() == Path::new("/dev/pts") && m.typ().as_deref() == Some("devpts"))
    else {
        return Ok(None);
    };
    let mut flags: libc::c_ulong = 0;
    let mut data: Vec<String> = Vec::new();
    let mut keep: Vec<String> = vec!["bind".into()];
    for o in m.options().as_deref().unwrap_or(&[]) {
        match o.as_str() {
            "nosuid" => flags |= libc::MS_NOSUID,
            "noexec" => flags |= libc::MS_NOEXEC,
            "nodev" => flags |= libc::MS_NODEV,
            "ro" => flags |= libc::MS_RDONLY,
            _ => {
                data.push(o.clone());
                continue;
            }
        }
        keep.push(o.clone());
    }
    for needed in ["newinstance", "ptmxmode=0666"] {
        let key = needed.split('=').next().unwrap_or(needed);
        if !data.iter().any(|d| d.split('=').next() == Some(key)) {
            data.push(needed.into());
        }
    }
    let dir = state_dir.join("pts");
    std::fs::create_dir_all(&dir).map_err(err(format!("creating {}", dir.display())))?;
    let c = |s: &[u8]| std::ffi::CString::new(s).map_err(|_| ShimError::Start(format!("bad devpts option in {}", dir.display())));
    let (src, target, fstype, opts) =
        (c(b"devpts")?, c(std::os::unix::ffi::OsStrExt::as_bytes(dir.as_os_str()))?, c(b"devpts")?, c(data.join(",").as_bytes())?);
    // SAFETY: all arguments are valid NUL-terminated strings.
    let rc = unsafe { libc::mount(src.as_ptr(), target.as_ptr(), fstype.as_ptr(), flags, opts.as_ptr() as *const libc::c_void) };
    if rc != 0 {
        return Err(err(format!("mounting devpts at {}", dir.display()))(io::Error::last_os_error()));
    }
    m.set_typ(Some("bind".into()));
    m.set_source(Some(dir.clone()));
    m.set_options(Some(keep));
    Ok(Some(dir))
}

/// Lazily unmounts the shim's devpts instance (ptys still open keep it alive until closed).
fn unmount_devpts(dir: &Path) {
    if let Ok(c) = std::ffi::CString::new(std::os::unix::ffi::OsStrExt::as_bytes(dir.as_os_str())) {
        // SAFETY: c is a valid NUL-terminated path.
        if unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH | libc::UMOUNT_NOFOLLOW) } != 0 {
            eprintln!("berth shim: unmounting {}: {}", dir.display(), io::Error::last_os_error());
        }
    }
}

fn dup(fd: &OwnedFd) -> Result<OwnedFd, ShimError> {
    fd.try_clone().map_err(err("duplicating an fd"))
}

/// The shim's ends of a process's stdio.
struct Streams {
    /// With a tty: the master (output and input).
    master: Option<File>,
    /// Without a tty: stdout and stderr read ends.
    outputs: Vec<(File, Stream)>,
    /// Where input goes (pipe write end, or a dup of the master), if stdin is open.
    stdin: Option<File>,
}

/// The process's stdio (for the runtime) and the shim's ends of it.
fn make_streams(tty: bool, stdin: bool, pts: Option<&Path>) -> Result<(Stdio, Streams), ShimError> {
    if tty {
        let (master, slave) = pty(pts)?;
        let input = if stdin { Some(File::from(dup(&master)?)) } else { None };
        // With a tty all three are the slave, as Docker does even without -i.
        let child = Stdio { stdin: Some(dup(&slave)?), stdout: dup(&slave)?, stderr: slave };
        return Ok((child, Streams { master: Some(File::from(master)), outputs: Vec::new(), stdin: input }));
    }
    let (out_r, out_w) = pipe()?;
    let (err_r, err_w) = pipe()?;
    let (child_in, input) = if stdin {
        let (r, w) = pipe()?;
        (Some(r), Some(File::from(w)))
    } else {
        (None, None)
    };
    let child = Stdio { stdin: child_in, stdout: out_w, stderr: err_w };
    let outputs = vec![(File::from(out_r), Stream::Stdout), (File::from(err_r), Stream::Stderr)];
    Ok((child, Streams { master: None, outputs, stdin: input }))
}

/// TIOCSWINSZ on a pty master.
fn set_winsize(master: &File, rows: u16, cols: u16) -> io::Result<()> {
    let ws = libc::winsize { ws_row: rows, ws_col: cols, ws_xpixel: 0, ws_ypixel: 0 };
    // SAFETY: TIOCSWINSZ reads one winsize from the pointer.
    if unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSWINSZ, &ws) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Who runs the container: the built-in runtime, or runc/crun through their CLI.
enum Backend {
    /// The created process, until `start` takes it.
    Builtin(Mutex<Option<Created>>),
    /// An external runtime and the container's ID there.
    External { runtime: ExternalRuntime, id: String, started: Mutex<bool> },
}

fn start_err(e: RuntimeError) -> ShimError {
    match e {
        RuntimeError::Command { message, exit_code } => ShimError::Command { message, exit_code },
        other => ShimError::Start(other.to_string()),
    }
}

/// The master of a pty an external runtime made, as the shim's ends of the stdio.
fn console_streams(console: Option<OwnedFd>, stdin: bool) -> Result<Streams, ShimError> {
    let master = console.ok_or_else(|| ShimError::Start("the runtime returned no console for the tty".into()))?;
    // SAFETY: plain fcntl on our own fd.
    unsafe { libc::fcntl(master.as_raw_fd(), libc::F_SETFD, libc::FD_CLOEXEC) };
    let input = if stdin { Some(File::from(dup(&master)?)) } else { None };
    Ok(Streams { master: Some(File::from(master)), outputs: Vec::new(), stdin: input })
}

/// One client receiving the container's output.
struct Attacher {
    stream: UnixStream,
    stdout: bool,
    stderr: bool,
}

/// An exec'd process.
struct ExecEntry {
    master: Option<File>,
    exit: Option<ExitInfo>,
}

/// What changes while the shim runs; guarded by `Shim::st` and signalled on `Shim::cv`.
#[derive(Default)]
struct State {
    started_at: Option<String>,
    /// The init's exit code as soon as it is reaped.
    init_code: Option<i64>,
    /// The recorded exit, once exit.json is written.
    exit: Option<ExitInfo>,
    /// Container output threads still reading.
    pumps_live: usize,
    /// Clients blocked in `Wait`.
    waiters: usize,
    /// When the shim last served a request, until its code pages are
    /// trimmed again (see `trim_code_pages`); `None` once trimmed.
    busy_at: Option<Instant>,
    execs: HashMap<String, ExecEntry>,
    exec_pids: HashMap<i32, String>,
}

struct Shim {
    options: ShimOptions,
    spec: Spec,
    rootfs: PathBuf,
    /// The container's devpts instance, mounted by the shim (built-in runtime).
    pts: Option<PathBuf>,
    pid: i32,
    backend: Backend,
    st: Mutex<State>,
    cv: Condvar,
    attachers: Mutex<Vec<Attacher>>,
    log: Mutex<jsonlog::Writer>,
    stdin: Mutex<Option<File>>,
    master: Option<File>,
    /// Held around runtime calls that fork and wait for their own helpers,
    /// so that the reaper's waitpid(-1) cannot steal their statuses.
    reap_lock: Mutex<()>,
    listener: UnixListener,
    signals: Mutex<Option<File>>,
    outputs: Mutex<Vec<(File, Stream)>>,
}

/// Undoes the setup steps done so far if `create` fails.
struct Cleanup {
    state_dir: PathBuf,
    /// An external runtime's container to delete.
    external: Option<(ExternalRuntime, String)>,
    /// The shim's devpts instance.
    pts: Option<PathBuf>,
    rootfs: Option<PathBuf>,
    cgroup: String,
    socket: bool,
}

impl Cleanup {
    fn run(&mut self) {
        if self.socket {
            let _ = std::fs::remove_file(self.state_dir.join(proto::SOCKET));
        }
        if let Some((runtime, id)) = self.external.take() {
            if let Err(e) = runtime.delete(&id, true) {
                eprintln!("berth shim: {e}");
            }
        }
        if let Some(pts) = self.pts.take() {
            unmount_devpts(&pts);
        }
        if let Some(root) = self.rootfs.take() {
            unmount(&root);
        }
        if !self.cgroup.is_empty() {
            destroy_cgroup(&self.cgroup);
        }
        let _ = std::fs::remove_file(self.state_dir.join(proto::PID_FILE));
    }
}

fn unmount(root: &Path) {
    if let Err(e) = crate::mount::unmount(root) {
        // Something still holds it (a process that escaped): detach it lazily rather than leak it forever.
        let c = std::ffi::CString::new(std::os::unix::ffi::OsStrExt::as_bytes(root.as_os_str())).unwrap_or_default();
        // SAFETY: c is a valid NUL-terminated path.
        if unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH | libc::UMOUNT_NOFOLLOW) } != 0 {
            eprintln!("berth shim: {e}");
        }
    }
}

fn destroy_cgroup(path: &str) {
    let cgroup = match cgroups::open(path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("berth shim: removing cgroup {path}: {e}");
            return;
        }
    };
    // Stragglers (a container without its own PID namespace) must go before the cgroup can.
    if let Ok(pids) = cgroup.pids() {
        for pid in pids {
            // SAFETY: kill(2) on a PID in the container's cgroup.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
    // destroy() itself waits for exiting tasks to drain out.
    if let Err(e) = cgroup.destroy() {
        eprintln!("berth shim: removing cgroup {path}: {e}");
    }
}

impl Shim {
    /// Everything up to a created container; undone on failure.
    fn create(options: ShimOptions) -> Result<Arc<Shim>, ShimError> {
        let dir = options.state_dir.clone();
        let mut cleanup = Cleanup { state_dir: dir.clone(), external: None, pts: None, rootfs: None, cgroup: String::new(), socket: false };
        let result = Shim::create_inner(options, &mut cleanup);
        if result.is_err() {
            cleanup.run();
        }
        result
    }

    fn create_inner(options: ShimOptions, cleanup: &mut Cleanup) -> Result<Arc<Shim>, ShimError> {
        let dir = options.state_dir.clone();
        // SAFETY: getpid cannot fail.
        let me = unsafe { libc::getpid() };
        let pid_path = dir.join(proto::PID_FILE);
        files::replace(&pid_path, me.to_string().as_bytes(), 0o600, Durability::Synced).map_err(err(format!("writing {}", pid_path.display())))?;
        // Orphans of the container are reparented to us, so we reap them.
        // SAFETY: prctl with integer arguments.
        if unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) } != 0 {
            return Err(err("setting the shim as child subreaper")(io::Error::last_os_error()));
        }
        let signals = install_signal_handlers()?;

        let spec_path = options.bundle.join("config.json");
        let mut spec = Spec::load(&spec_path).map_err(|e| ShimError::Start(format!("loading {}: {e}", spec_path.display())))?;
        let root = spec
            .root()
            .as_ref()
            .map(|r| r.path().clone())
            .ok_or_else(|| ShimError::Start(format!("{} has no root", spec_path.display())))?;
        let rootfs = if root.is_absolute() { root } else { options.bundle.join(root) };
        std::fs::create_dir_all(&rootfs).map_err(err(format!("creating {}", rootfs.display())))?;
        crate::mount::mount(&options.rootfs.spec, &rootfs).map_err(|e| ShimError::Start(e.to_string()))?;
        cleanup.rootfs = Some(rootfs.clone());
        cleanup.cgroup = options.cgroup_path.clone();

        let log = jsonlog::Writer::open(&options.log_path, options.log_max_size, options.log_max_files)
            .map_err(|e| ShimError::Start(e.to_string()))?;

        // Bound relative to the state dir: socket paths are limited to 108 bytes.
        std::env::set_current_dir(&dir).map_err(err(format!("entering {}", dir.display())))?;
        let _ = std::fs::remove_file(proto::SOCKET);
        let listener = UnixListener::bind(proto::SOCKET).map_err(err(format!("binding {}", dir.join(proto::SOCKET).display())))?;
        cleanup.socket = true;

        // The process's ends of its stdio move into the runtime and are closed
        // after create, so output reaches EOF when the container is gone.
        // runc and crun make the container's pty themselves (console socket).
        let pts = match options.runtime {
            None => own_devpts(&mut spec, &dir)?,
            Some(_) => None,
        };
        cleanup.pts = pts.clone();
        let (pid, backend, streams) = match &options.runtime {
            None => {
                let (child, streams) = make_streams(options.tty, options.open_stdin, pts.as_deref())?;
                let created = linux::create(&options.bundle, &spec, child).map_err(start_err)?;
                (created.pid, Backend::Builtin(Mutex::new(Some(created))), streams)
            }
            Some(name) => {
                let runtime = ExternalRuntime::find(name, &dir.join("runtime")).map_err(start_err)?;
                let id = options.id.to_string();
                let (io, streams) = if options.tty {
                    (ExternalIo::Terminal, None)
                } else {
                    let (child, streams) = make_streams(false, options.open_stdin, None)?;
                    (ExternalIo::Pipes(child), Some(streams))
                };
                cleanup.external = Some((runtime.clone(), id.clone()));
                let created = runtime.create(&id, &options.bundle, &spec, io).map_err(start_err)?;
                let streams = match streams {
                    Some(s) => s,
                    None => console_streams(created.console, options.open_stdin)?,
                };
                (created.pid, Backend::External { runtime, id, started: Mutex::new(false) }, streams)
            }
        };
        Ok(Arc::new(Shim {
            options,
            spec,
            rootfs,
            pts,
            pid,
            backend,
            st: Mutex::new(State::default()),
            cv: Condvar::new(),
            attachers: Mutex::new(Vec::new()),
            log: Mutex::new(log),
            stdin: Mutex::new(streams.stdin),
            master: streams.master,
            reap_lock: Mutex::new(()),
            listener,
            signals: Mutex::new(Some(signals)),
            outputs: Mutex::new(streams.outputs),
        }))
    }

    /// Serves until the container exited and everything is recorded, then exits the process.
    fn serve(self: Arc<Self>) -> Result<(), ShimError> {
        if let Some(signals) = lock(&self.signals).take() {
            let shim = self.clone();
            spawn("signals", move || shim.signal_loop(signals));
        }
        let outputs: Vec<(File, Stream)> = std::mem::take(&mut *lock(&self.outputs));
        let mut pumps: Vec<(File, Stream)> = outputs;
        if let Some(master) = &self.master {
            match master.try_clone() {
                Ok(m) => pumps.push((m, Stream::Stdout)),
                Err(e) => eprintln!("berth shim: duplicating the pty master: {e}"),
            }
        }
        lock(&self.st).pumps_live = pumps.len();
        for (file, stream) in pumps {
            let shim = self.clone();
            spawn("output", move || shim.pump(file, stream));
        }
        {
            let shim = self.clone();
            spawn("accept", move || shim.accept_loop());
        }
        lock(&self.st).busy_at = Some(Instant::now());
        self.finish();
        std::process::exit(0);
    }

    /// Waits for the init's exit and records it; see the module docs for the order.
    /// While the container runs, this thread also trims the shim's code
    /// pages once it has been idle for `TRIM_QUIET` after serving requests.
    fn finish(&self) {
        let code = {
            let mut st = lock(&self.st);
            loop {
                if let Some(code) = st.init_code {
                    break code;
                }
                let Some(busy_at) = st.busy_at else {
                    st = self.cv.wait(st).unwrap_or_else(|p| p.into_inner());
                    continue;
                };
                let left = (busy_at + TRIM_QUIET).saturating_duration_since(Instant::now());
                if left.is_zero() {
                    st.busy_at = None;
                    drop(st);
                    trim_code_pages();
                    st = lock(&self.st);
                } else {
                    st = self.cv.wait_timeout(st, left).unwrap_or_else(|p| p.into_inner()).0;
                }
            }
        };
        // Whatever the container wrote before it died reaches the log and attachers first.
        let deadline = Instant::now() + DRAIN_TIMEOUT;
        {
            let mut st = lock(&self.st);
            while st.pumps_live > 0 {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    eprintln!("berth shim: output still open {}s after the container exited", DRAIN_TIMEOUT.as_secs());
                    break;
                }
                st = self.cv.wait_timeout(st, left).unwrap_or_else(|p| p.into_inner()).0;
            }
        }
        let oom_killed = if self.options.cgroup_path.is_empty() {
            false
        } else {
            cgroups::open(&self.options.cgroup_path).and_then(|c| c.oom_killed()).unwrap_or(false)
        };
        let exit = ExitInfo { exit_code: code, oom_killed, finished_at: now_rfc3339() };
        match serde_json::to_vec(&exit) {
            Ok(data) => {
                if let Err(e) = files::replace(&self.options.state_dir.join(proto::EXIT_FILE), &data, 0o600, Durability::Synced) {
                    eprintln!("berth shim: writing {}: {e}", proto::EXIT_FILE);
                }
            }
            Err(e) => eprintln!("berth shim: encoding the exit: {e}"),
        }
        {
            let mut st = lock(&self.st);
            st.exit = Some(exit);
            self.cv.notify_all();
            let deadline = Instant::now() + WAITERS_TIMEOUT;
            while st.waiters > 0 {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    break;
                }
                st = self.cv.wait_timeout(st, left).unwrap_or_else(|p| p.into_inner()).0;
            }
        }
        for a in lock(&self.attachers).drain(..) {
            let _ = a.stream.shutdown(Shutdown::Both);
        }
        let _ = std::fs::remove_file(self.options.state_dir.join(proto::SOCKET));
        if let Backend::External { runtime, id, .. } = &self.backend {
            let _guard = lock(&self.reap_lock);
            if let Err(e) = runtime.delete(id, true) {
                eprintln!("berth shim: {e}");
            }
        }
        if let Some(pts) = &self.pts {
            unmount_devpts(pts);
        }
        unmount(&self.rootfs);
        if !self.options.cgroup_path.is_empty() {
            destroy_cgroup(&self.options.cgroup_path);
        }
        let _ = std::fs::remove_file(self.options.state_dir.join(proto::PID_FILE));
    }

    /// Reaps children on SIGCHLD; forwards other signals to the container.
    fn signal_loop(&self, mut signals: File) {
        self.reap();
        let mut buf = [0u8; 64];
        loop {
            let n = match signals.read(&mut buf) {
                Ok(0) => return,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    eprintln!("berth shim: reading the signal pipe: {e}");
                    return;
                }
            };
            let mut reap = false;
            for &sig in &buf[..n] {
                let sig = sig as libc::c_int;
                if sig == libc::SIGCHLD {
                    reap = true;
                } else if lock(&self.st).init_code.is_none() {
                    // SAFETY: kill(2) on the container's init.
                    unsafe { libc::kill(self.pid, sig) };
                }
            }
            if reap {
                self.reap();
            }
        }
    }

    /// Collects every exited child: the init, exec'd processes, reparented orphans.
    fn reap(&self) {
        let _guard = lock(&self.reap_lock);
        loop {
            let mut status = 0;
            // SAFETY: waitpid with a valid status pointer.
            let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
            if pid == 0 {
                return;
            }
            if pid < 0 {
                if io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return;
            }
            let code = if libc::WIFEXITED(status) {
                libc::WEXITSTATUS(status) as i64
            } else if libc::WIFSIGNALED(status) {
                128 + libc::WTERMSIG(status) as i64
            } else {
                continue;
            };
            let mut st = lock(&self.st);
            if pid == self.pid {
                st.init_code = Some(code);
            } else if let Some(id) = st.exec_pids.remove(&pid) {
                if let Some(e) = st.execs.get_mut(&id) {
                    e.exit = Some(ExitInfo { exit_code: code, oom_killed: false, finished_at: now_rfc3339() });
                }
            } else {
                continue;
            }
            self.cv.notify_all();
        }
    }

    /// Copies one output stream of the container to the log and every attacher.
    fn pump(&self, mut file: File, stream: Stream) {
        let mut buf = [0u8; CHUNK];
        loop {
            let n = match file.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                // EIO: a pty whose slave side is closed by everyone, i.e. the end.
                Err(_) => break,
            };
            let data = &buf[..n];
            if let Err(e) = lock(&self.log).write(stream, data) {
                eprintln!("berth shim: {e}");
            }
            self.broadcast(stream, data);
        }
        if let Err(e) = lock(&self.log).finish(stream) {
            eprintln!("berth shim: {e}");
        }
        let mut st = lock(&self.st);
        st.pumps_live = st.pumps_live.saturating_sub(1);
        self.cv.notify_all();
    }

    fn broadcast(&self, stream: Stream, data: &[u8]) {
        let tty = self.options.tty;
        let header = proto::frame_header(if stream == Stream::Stdout { 1 } else { 2 }, data.len());
        lock(&self.attachers).retain_mut(|a| {
            let wanted = if tty { a.stdout || a.stderr } else if stream == Stream::Stdout { a.stdout } else { a.stderr };
            if !wanted {
                return true;
            }
            let sent = if tty { a.stream.write_all(data) } else { a.stream.write_all(&header).and_then(|_| a.stream.write_all(data)) };
            sent.is_ok()
        });
    }

    fn accept_loop(self: Arc<Self>) {
        loop {
            match self.listener.accept() {
                Ok((conn, _)) => {
                    let shim = self.clone();
                    spawn("client", move || shim.handle(conn));
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    eprintln!("berth shim: accepting a connection: {e}");
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        }
    }

    /// Serves one connection: one request, then possibly the stream.
    fn handle(self: Arc<Self>, mut conn: UnixStream) {
        self.mark_busy();
        let request: Request = match proto::read_line(&mut conn) {
            Ok(Some(r)) => r,
            Ok(None) => return,
            Err(e) => {
                let _ = proto::write_line(&mut conn, &Response::Error(format!("bad request: {e}").into()));
                return;
            }
        };
        let response = match request {
            Request::State => Response::State { state: self.state() },
            Request::Start => self.start(),
            Request::Attach { stdin, stdout, stderr } => return self.attach(conn, stdin, stdout, stderr),
            Request::Resize { rows, cols } => match &self.master {
                Some(m) => result(set_winsize(m, rows, cols).map_err(|e| format!("resizing the tty: {e}"))),
                None => Response::Error("the container has no tty".into()),
            },
            Request::Kill { signal } => self.kill(signal),
            Request::Wait => {
                let exit = self.wait();
                let _ = proto::write_line(&mut conn, &Response::Exit { exit });
                // Counted until answered: the shim does not exit under a waiter.
                let mut st = lock(&self.st);
                st.waiters -= 1;
                self.cv.notify_all();
                return;
            }
            Request::Exec { request } => return self.exec(conn, *request),
            Request::ExecWait { exec_id } => self.exec_wait(&exec_id),
            Request::ExecResize { exec_id, rows, cols } => {
                let st = lock(&self.st);
                match st.execs.get(&exec_id) {
                    Some(ExecEntry { master: Some(m), .. }) => {
                        result(set_winsize(m, rows, cols).map_err(|e| format!("resizing the exec's tty: {e}")))
                    }
                    Some(_) => Response::Error(format!("exec {exec_id} has no tty").into()),
                    None => Response::Error(format!("no such exec: {exec_id}").into()),
                }
            }
        };
        let _ = proto::write_line(&mut conn, &response);
        self.mark_busy();
    }

    /// Notes that a request is being served: the code pages it faults in
    /// are trimmed again once the shim is idle (see `finish`).
    fn mark_busy(&self) {
        lock(&self.st).busy_at = Some(Instant::now());
        self.cv.notify_all();
    }

    fn already_started(&self) -> Response {
        Response::Error(format!("container {} is already started", self.options.id).into())
    }

    /// Whether `start` has been called.
    fn started(&self) -> bool {
        match &self.backend {
            Backend::Builtin(created) => lock(created).is_none(),
            Backend::External { started, .. } => *lock(started),
        }
    }

    fn not_running(&self) -> Response {
        Response::Error(format!("container {} is not running", self.options.id).into())
    }

    fn state(&self) -> ShimState {
        let st = lock(&self.st);
        ShimState { pid: self.pid, started_at: st.started_at.clone(), exit: st.exit.clone() }
    }

    fn start(&self) -> Response {
        if lock(&self.st).init_code.is_some() {
            return self.not_running();
        }
        let started = match &self.backend {
            Backend::Builtin(created) => match lock(created).take() {
                Some(created) => created.start(),
                None => return self.already_started(),
            },
            Backend::External { runtime, id, started } => {
                let mut started = lock(started);
                if *started {
                    return self.already_started();
                }
                *started = true;
                // `runc start` is a child the runtime waits for itself.
                let _guard = lock(&self.reap_lock);
                runtime.start(id)
            }
        };
        match started {
            Ok(()) => {
                lock(&self.st).started_at = Some(now_rfc3339());
                Response::Ok
            }
            Err(e) => Response::Error(e.into()),
        }
    }

    fn kill(&self, signal: i32) -> Response {
        if lock(&self.st).init_code.is_some() {
            return self.not_running();
        }
        // SAFETY: kill(2) on the container's init (still our unreaped child, so the PID is its).
        if unsafe { libc::kill(self.pid, signal) } != 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::ESRCH) {
                return self.not_running();
            }
            return Response::Error(format!("sending signal {signal}: {e}").into());
        }
        Response::Ok
    }

    /// Blocks until the exit is recorded; the caller answers, then uncounts itself from `waiters`.
    fn wait(&self) -> ExitInfo {
        let mut st = lock(&self.st);
        st.waiters += 1;
        loop {
            if let Some(exit) = &st.exit {
                return exit.clone();
            }
            st = self.cv.wait(st).unwrap_or_else(|p| p.into_inner());
        }
    }

    fn exec_wait(&self, exec_id: &str) -> Response {
        let mut st = lock(&self.st);
        loop {
            match st.execs.get(exec_id) {
                None => return Response::Error(format!("no such exec: {exec_id}").into()),
                Some(ExecEntry { exit: Some(exit), .. }) => return Response::Exit { exit: exit.clone() },
                Some(_) => {}
            }
            st = self.cv.wait(st).unwrap_or_else(|p| p.into_inner());
        }
    }

    fn attach(&self, mut conn: UnixStream, stdin: bool, stdout: bool, stderr: bool) {
        if lock(&self.st).exit.is_some() {
            let _ = proto::write_line(&mut conn, &self.not_running());
            return;
        }
        let out = match conn.try_clone() {
            Ok(c) => c,
            Err(e) => {
                let _ = proto::write_line(&mut conn, &Response::Error(format!("attach: {e}").into()));
                return;
            }
        };
        let _ = out.set_write_timeout(Some(ATTACH_WRITE_TIMEOUT));
        {
            // Registered under the lock the pumps use, after the answer: output
            // framing can never interleave with the answer line.
            let mut attachers = lock(&self.attachers);
            if proto::write_line(&mut conn, &Response::Ok).is_err() {
                return;
            }
            if stdout || stderr {
                attachers.push(Attacher { stream: out, stdout, stderr });
            }
        }
        if !stdin || lock(&self.stdin).is_none() {
            return;
        }
        let mut buf = [0u8; CHUNK];
        loop {
            let n = match conn.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => break,
            };
            let mut input = lock(&self.stdin);
            let Some(w) = input.as_mut() else { return };
            if w.write_all(&buf[..n]).is_err() {
                return;
            }
        }
        // Docker's StdinOnce: the first attacher's EOF closes the container's stdin
        // (a tty has no separate stdin to close).
        if self.options.stdin_once && !self.options.tty {
            lock(&self.stdin).take();
        }
    }

    fn exec(&self, mut conn: UnixStream, request: ExecRequest) {
        match self.exec_start(&request) {
            Ok((pid, streams)) => {
                if proto::write_line(&mut conn, &Response::Exec { pid }).is_err() {
                    return;
                }
                exec_stream(conn, streams, request.tty);
            }
            Err(failure) => {
                let _ = proto::write_line(&mut conn, &Response::Error(failure));
            }
        }
    }

    fn exec_start(&self, request: &ExecRequest) -> Result<(i32, Streams), Failure> {
        if lock(&self.st).init_code.is_some() || !self.started() {
            return Err(format!("container {} is not running", self.options.id).into());
        }
        if lock(&self.st).execs.contains_key(&request.exec_id) {
            return Err(format!("exec {} already exists", request.exec_id).into());
        }
        // The runtimes fork helpers and wait for them: the reaper must not take their statuses.
        let _guard = lock(&self.reap_lock);
        let (pid, streams) = match &self.backend {
            Backend::Builtin(_) => {
                let (child, streams) = make_streams(request.tty, request.stdin, self.pts.as_deref()).map_err(|e| Failure::from(e.to_string()))?;
                let pid = linux::exec(self.pid, &self.spec, &request.process, child).map_err(Failure::from)?;
                (pid, streams)
            }
            Backend::External { runtime, id, .. } => {
                let work_dir = self.options.state_dir.join("exec").join(&request.exec_id);
                let (io, streams) = if request.tty {
                    (ExternalIo::Terminal, None)
                } else {
                    let (child, streams) = make_streams(false, request.stdin, None).map_err(|e| Failure::from(e.to_string()))?;
                    (ExternalIo::Pipes(child), Some(streams))
                };
                let created = runtime.exec(id, &self.spec, &request.process, &work_dir, io).map_err(Failure::from)?;
                let streams = match streams {
                    Some(s) => s,
                    None => console_streams(created.console, request.stdin).map_err(|e| Failure::from(e.to_string()))?,
                };
                (created.pid, streams)
            }
        };
        let master = match &streams.master {
            Some(m) => m.try_clone().ok(),
            None => None,
        };
        let mut st = lock(&self.st);
        st.exec_pids.insert(pid, request.exec_id.clone());
        st.execs.insert(request.exec_id.clone(), ExecEntry { master, exit: None });
        Ok((pid, streams))
    }
}

fn result(r: Result<(), String>) -> Response {
    match r {
        Ok(()) => Response::Ok,
        Err(message) => Response::Error(message.into()),
    }
}

/// Joins an exec's stdio to its connection until its output ends.
fn exec_stream(conn: UnixStream, streams: Streams, tty: bool) {
    let Streams { master, outputs, stdin } = streams;
    let writer = Arc::new(Mutex::new(match conn.try_clone() {
        Ok(c) => c,
        Err(_) => return,
    }));
    let mut sources: Vec<(File, Stream)> = outputs;
    // With a tty the master carries the output (and `stdin` is a dup of it for input).
    if let (true, Some(m)) = (tty, master) {
        sources.push((m, Stream::Stdout));
    }
    let mut threads = Vec::new();
    for (mut file, stream) in sources {
        let writer = writer.clone();
        threads.push(std::thread::Builder::new().name("exec-output".into()).spawn(move || {
            let mut buf = [0u8; CHUNK];
            let id = if stream == Stream::Stdout { 1 } else { 2 };
            // Once the client is gone the output is drained and dropped, so
            // that the process never blocks on (or dies of) a full pipe.
            let mut client = true;
            loop {
                let n = match file.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(_) => break,
                };
                if !client {
                    continue;
                }
                let mut w = lock(&writer);
                let sent = if tty {
                    w.write_all(&buf[..n])
                } else {
                    w.write_all(&proto::frame_header(id, n)).and_then(|_| w.write_all(&buf[..n]))
                };
                client = sent.is_ok();
            }
        }));
    }
    if let Some(mut input) = stdin {
        let mut conn_in = match conn.try_clone() {
            Ok(c) => c,
            Err(_) => return,
        };
        let _ = std::thread::Builder::new().name("exec-input".into()).spawn(move || {
            let mut buf = [0u8; CHUNK];
            loop {
                match conn_in.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => {
                        if input.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(_) => break,
                }
            }
            // Dropping `input` closes the exec's stdin (without a tty): EOF for it.
        });
    }
    for t in threads.into_iter().flatten() {
        let _ = t.join();
    }
    // The output is over: the client sees EOF, and the input thread's read ends.
    let _ = conn.shutdown(Shutdown::Both);
}

/// Drops the startup code and data (argument parsing, spec loading, the
/// runtime's create) from the shim's resident set: the shim lives as long as
/// its container, but its steady state (copying bytes, answering a few
/// requests) touches little of the berth binary. Only read-only file
/// mappings none of whose pages was ever copied-on-write (smaps'
/// `Anonymous: 0 kB`) are dropped: for those, MADV_DONTNEED only unmaps
/// pages that fault back in from the page cache on their next use.
fn trim_code_pages() {
    let Ok(smaps) = std::fs::read_to_string("/proc/self/smaps") else { return };
    let mut candidate: Option<(usize, usize)> = None;
    for line in smaps.lines() {
        let mut fields = line.split_whitespace();
        let Some(first) = fields.next() else { continue };
        if let Some((start, end)) = first.split_once('-') {
            // A mapping's header: range, perms, offset, dev, inode, path.
            let perms = fields.next().unwrap_or("");
            let path = fields.nth(3).unwrap_or("");
            let range = usize::from_str_radix(start, 16).ok().zip(usize::from_str_radix(end, 16).ok());
            candidate = match range {
                Some(r) if (perms.starts_with("r-x") || perms.starts_with("r--")) && path.starts_with('/') => Some(r),
                _ => None,
            };
        } else if first == "Anonymous:" {
            if let (Some((start, end)), Some("0")) = (candidate.take(), fields.next()) {
                // SAFETY: a whole read-only, never-written file mapping of this
                // process; its pages re-fault unchanged from the file.
                unsafe { libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_DONTNEED) };
            }
        }
    }
}

fn spawn(name: &str, f: impl FnOnce() + Send + 'static) {
    // Small stacks: the shim's threads only copy bytes with 16 KiB buffers.
    if let Err(e) = std::thread::Builder::new().name(name.into()).stack_size(128 * 1024).spawn(f) {
        eprintln!("berth shim: starting the {name} thread: {e}");
    }
}
