//! The end-to-end harness: a real `berth daemon` in a sandbox of its own.
//!
//! `Sandbox::start()` makes a temp dir with `root/`, `run/` and a socket, and
//! starts `unshare --mount --net --propagation private --fork --kill-child --
//! berth daemon ...` so every mount the daemon makes lives in its own mount
//! namespace and it has a network namespace with only `lo`. The CLI and the
//! docker CLI talk to it over the unix socket (a path, so it is reachable
//! across network namespaces). Mounts are inspected through
//! `/proc/<daemon pid>/mountinfo` and mounted trees read through
//! `/proc/<daemon pid>/root/<path>`.
//!
//! The harness only ever signals processes it started, by PID.

#![allow(dead_code)] // each test binary uses a different part of this module

pub mod images;

use std::collections::BTreeMap;
use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// The `berth` binary under test.
pub const BERTH: &str = env!("CARGO_BIN_EXE_berth");

/// How long one CLI command may take before the test fails (`BERTH_TEST_TIMEOUT` seconds overrides).
fn command_timeout() -> Duration {
    let secs = std::env::var("BERTH_TEST_TIMEOUT").ok().and_then(|s| s.parse().ok()).unwrap_or(600);
    Duration::from_secs(secs)
}

/// The docker CLI: `BERTH_DOCKER`, else /usr/local/bin/docker, else `docker` on PATH.
pub fn docker_cli() -> String {
    if let Ok(d) = std::env::var("BERTH_DOCKER") {
        return d;
    }
    if Path::new("/usr/local/bin/docker").exists() {
        return "/usr/local/bin/docker".to_string();
    }
    "docker".to_string()
}

/// The `ip` binary, to bring `lo` up in the daemon's network namespace.
fn ip_binary() -> &'static str {
    ["/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", "/bin/ip"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .expect("no `ip` binary: install iproute2 (scripts/test does)")
}

/// What a finished command printed.
#[derive(Debug)]
pub struct Output {
    pub command: String,
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    /// Whether the command exited 0.
    pub fn success(&self) -> bool {
        self.status.success()
    }

    fn describe(&self) -> String {
        format!(
            "$ {}\n(exit: {})\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.command, self.status, self.stdout, self.stderr
        )
    }
}

/// Runs `cmd` to completion with an optional stdin file, killing it (by PID) after the timeout.
pub fn run(mut cmd: Command, stdin: Option<&Path>) -> Output {
    let command = format!("{cmd:?}");
    match stdin {
        Some(path) => {
            let f = fs::File::open(path).unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
            cmd.stdin(Stdio::from(f));
        }
        None => {
            cmd.stdin(Stdio::null());
        }
    }
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("cannot start {command}: {e}"));
    let mut out_pipe = child.stdout.take().expect("piped stdout");
    let mut err_pipe = child.stderr.take().expect("piped stderr");
    let out_thread = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = out_pipe.read_to_end(&mut v);
        v
    });
    let err_thread = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = err_pipe.read_to_end(&mut v);
        v
    });
    let deadline = Instant::now() + command_timeout();
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() > deadline => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("command timed out after {:?}: {command}", command_timeout());
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => panic!("waiting for {command}: {e}"),
        }
    };
    let stdout = String::from_utf8_lossy(&out_thread.join().unwrap_or_default()).into_owned();
    let stderr = String::from_utf8_lossy(&err_thread.join().unwrap_or_default()).into_owned();
    Output { command, status, stdout, stderr }
}

/// A daemon in its own mount and network namespace, with a temp root, run dir and socket.
pub struct Sandbox {
    dir: Option<tempfile::TempDir>,
    /// The sandbox's temp dir (test inputs go in `files/`).
    pub path: PathBuf,
    /// `--root`.
    pub root: PathBuf,
    /// `--run`.
    pub run: PathBuf,
    /// The API socket.
    pub sock: PathBuf,
    log: PathBuf,
    storage_driver: Option<String>,
    /// The `unshare` process we started.
    child: Option<Child>,
    /// The daemon's PID (the child of `unshare`).
    daemon_pid: Option<i32>,
}

impl Sandbox {
    /// Starts a daemon with the default storage driver.
    pub fn start() -> Sandbox {
        Self::start_with(None)
    }

    /// Starts a daemon with `--storage-driver <driver>`.
    pub fn start_with_driver(driver: &str) -> Sandbox {
        Self::start_with(Some(driver))
    }

    fn start_with(driver: Option<&str>) -> Sandbox {
        let dir = tempfile::Builder::new().prefix("berth-e2e-").tempdir().expect("creating a temp dir");
        let path = dir.path().to_path_buf();
        let root = path.join("root");
        let run = path.join("run");
        for d in [&root, &run, &path.join("files")] {
            fs::create_dir_all(d).expect("creating sandbox dirs");
        }
        let mut sb = Sandbox {
            sock: path.join("berth.sock"),
            log: path.join("daemon.log"),
            dir: Some(dir),
            path,
            root,
            run,
            storage_driver: driver.map(str::to_string),
            child: None,
            daemon_pid: None,
        };
        sb.spawn();
        sb
    }

    /// `unix://<socket>`.
    pub fn host(&self) -> String {
        format!("unix://{}", self.sock.display())
    }

    /// A path for a test input or output file inside the sandbox.
    pub fn file(&self, name: &str) -> PathBuf {
        self.path.join("files").join(name)
    }

    fn spawn(&mut self) {
        assert!(self.child.is_none(), "daemon already running");
        let log = fs::OpenOptions::new().create(true).append(true).open(&self.log).expect("opening daemon log");
        let log2 = log.try_clone().expect("cloning log fd");
        // `sh` brings lo up inside the new network namespace, then becomes the daemon.
        let script = format!("{} link set lo up || exit 97; exec \"$0\" \"$@\"", ip_binary());
        let mut cmd = Command::new("unshare");
        cmd.args(["--mount", "--net", "--propagation", "private", "--fork", "--kill-child", "--", "/bin/sh", "-c"])
            .arg(script)
            .arg(BERTH)
            .arg("daemon")
            .arg("--root")
            .arg(&self.root)
            .arg("--run")
            .arg(&self.run)
            .arg("-H")
            .arg(self.host());
        if let Some(d) = &self.storage_driver {
            cmd.args(["--storage-driver", d]);
        }
        cmd.env_remove("BERTH_HOST").stdin(Stdio::null()).stdout(log).stderr(log2);
        let child = cmd.spawn().expect("starting unshare (util-linux) for the daemon sandbox");
        let unshare_pid = child.id() as i32;
        self.child = Some(child);
        self.daemon_pid = None;

        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                self.child = None;
                panic!("daemon exited during start ({status})\n{}", self.daemon_log_tail());
            }
            if self.daemon_pid.is_none() {
                self.daemon_pid = child_of(unshare_pid);
            }
            // A stale socket file from a killed daemon refuses connections; wait for a live one.
            if self.daemon_pid.is_some() && UnixStream::connect(&self.sock).is_ok() {
                break;
            }
            if Instant::now() > deadline {
                panic!("daemon did not answer on {} within 60 s\n{}", self.sock.display(), self.daemon_log_tail());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The daemon's PID (in our PID namespace: the daemon shares it).
    pub fn daemon_pid(&self) -> i32 {
        self.daemon_pid.expect("daemon is not running")
    }

    /// `path` as the daemon sees it (through its mount namespace).
    pub fn in_daemon(&self, path: &str) -> PathBuf {
        PathBuf::from(format!("/proc/{}/root{}", self.daemon_pid(), path))
    }

    /// The daemon's mount table.
    pub fn mountinfo(&self) -> String {
        fs::read_to_string(format!("/proc/{}/mountinfo", self.daemon_pid())).expect("reading the daemon's mountinfo")
    }

    /// The last lines of the daemon's log, for failure messages.
    pub fn daemon_log_tail(&self) -> String {
        let log = fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        let start = lines.len().saturating_sub(40);
        format!("--- daemon log (last 40 lines of {}) ---\n{}", self.log.display(), lines[start..].join("\n"))
    }

    fn berth_command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(BERTH);
        cmd.arg("-H").arg(self.host()).arg("--no-autostart").args(args).env_remove("BERTH_HOST");
        cmd
    }

    /// Runs `berth -H unix://<sock> --no-autostart <args>`.
    pub fn berth(&self, args: &[&str]) -> Output {
        run(self.berth_command(args), None)
    }

    /// Runs the berth CLI with `stdin` as its standard input.
    pub fn berth_stdin(&self, args: &[&str], stdin: &Path) -> Output {
        run(self.berth_command(args), Some(stdin))
    }

    /// Runs the berth CLI and returns its stdout; fails the test if it exits non-zero.
    pub fn berth_ok(&self, args: &[&str]) -> String {
        let out = self.berth(args);
        self.expect_ok(out)
    }

    /// Runs the berth CLI and returns its output; fails the test if it exits 0.
    pub fn berth_fails(&self, args: &[&str]) -> Output {
        let out = self.berth(args);
        assert!(!out.success(), "expected failure, but it succeeded:\n{}", out.describe());
        out
    }

    fn docker_command(&self, args: &[&str]) -> Command {
        let config = self.path.join("docker-config");
        let _ = fs::create_dir_all(&config);
        let mut cmd = Command::new(docker_cli());
        cmd.args(args)
            .env("DOCKER_HOST", self.host())
            .env("DOCKER_CONFIG", &config)
            .env_remove("DOCKER_CONTEXT")
            .env_remove("DOCKER_API_VERSION");
        cmd
    }

    /// Runs the real docker CLI with `DOCKER_HOST=unix://<sock>`.
    pub fn docker(&self, args: &[&str]) -> Output {
        run(self.docker_command(args), None)
    }

    /// Runs the docker CLI with `stdin` as its standard input.
    pub fn docker_stdin(&self, args: &[&str], stdin: &Path) -> Output {
        run(self.docker_command(args), Some(stdin))
    }

    /// Starts the berth CLI without waiting for it (its output goes to `log`).
    pub fn berth_spawn(&self, args: &[&str], log: &Path) -> Child {
        let out = fs::File::create(log).unwrap_or_else(|e| panic!("create {}: {e}", log.display()));
        let err = out.try_clone().expect("cloning log fd");
        self.berth_command(args)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {BERTH}: {e}"))
    }

    /// Runs the docker CLI and returns its stdout; fails the test if it exits non-zero.
    pub fn docker_ok(&self, args: &[&str]) -> String {
        let out = self.docker(args);
        self.expect_ok(out)
    }

    /// Fails the test with the command's output and the daemon's log unless it succeeded.
    pub fn expect_ok(&self, out: Output) -> String {
        assert!(out.success(), "command failed:\n{}\n{}", out.describe(), self.daemon_log_tail());
        out.stdout
    }

    /// `berth image inspect <name>` as JSON (the one object of the array).
    pub fn inspect(&self, name: &str) -> serde_json::Value {
        let out = self.berth_ok(&["image", "inspect", name]);
        let v: serde_json::Value =
            serde_json::from_str(&out).unwrap_or_else(|e| panic!("image inspect printed invalid JSON ({e}):\n{out}"));
        let arr = v.as_array().unwrap_or_else(|| panic!("image inspect did not print an array:\n{out}"));
        assert_eq!(arr.len(), 1, "image inspect {name} printed {} objects", arr.len());
        arr[0].clone()
    }

    /// Full IDs of all images (`berth images -q --no-trunc`), sorted and deduplicated.
    pub fn image_ids(&self) -> Vec<String> {
        let out = self.berth_ok(&["images", "-q", "--no-trunc"]);
        let mut ids: Vec<String> = out.lines().map(|l| l.trim().to_string()).filter(|l| !l.is_empty()).collect();
        ids.sort();
        ids.dedup();
        ids
    }

    /// Loads an archive with `berth load -i` and returns stdout.
    pub fn load(&self, archive: &Path) -> String {
        self.berth_ok(&["load", "-i", archive.to_str().expect("utf-8 path")])
    }

    /// `berth image mount <name>`: the tree's path as the daemon sees it, readable from here.
    pub fn mount_image(&self, name: &str) -> (String, PathBuf) {
        let out = self.berth_ok(&["image", "mount", name]);
        let path = out.trim().to_string();
        assert!(path.starts_with('/'), "image mount printed no absolute path: {out:?}");
        let seen = self.in_daemon(&path);
        (path, seen)
    }

    /// Kills the daemon with SIGKILL, as a crash would, and reaps the sandbox.
    pub fn kill9(&mut self) {
        let pid = self.daemon_pid();
        // SAFETY: kill(2) on the PID of the daemon this sandbox started.
        unsafe { libc::kill(pid, libc::SIGKILL) };
        if let Some(mut child) = self.child.take() {
            let _ = child.wait();
        }
        wait_gone(pid, Duration::from_secs(10));
        self.daemon_pid = None;
    }

    /// Starts the daemon again on the same root, run dir and socket.
    pub fn restart(&mut self) {
        if self.child.is_some() {
            self.stop();
        }
        self.spawn();
    }

    /// Stops the daemon: SIGTERM, then SIGKILL of `unshare` (whose --kill-child takes the daemon) after 15 s.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else { return };
        let daemon = self.daemon_pid.take();
        if let Some(pid) = daemon {
            // SAFETY: kill(2) on the PID of the daemon this sandbox started.
            unsafe { libc::kill(pid, libc::SIGTERM) };
        }
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            match child.try_wait() {
                Ok(Some(_)) => break,
                Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
                _ => {
                    eprintln!("daemon did not stop on SIGTERM within 15 s; killing it");
                    let _ = child.kill();
                    let _ = child.wait();
                    break;
                }
            }
        }
        if let Some(pid) = daemon {
            wait_gone(pid, Duration::from_secs(10));
        }
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("{}", self.daemon_log_tail());
        }
        self.stop();
        if std::env::var_os("BERTH_TEST_KEEP").is_some() {
            if let Some(dir) = self.dir.take() {
                eprintln!("keeping sandbox {}", dir.keep().display());
            }
        }
    }
}

/// The first process whose parent is `ppid` (the daemon under `unshare --fork`).
fn child_of(ppid: i32) -> Option<i32> {
    for entry in fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else { continue };
        let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else { continue };
        // The command name is in parentheses and may contain spaces: parse after the last ')'.
        let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else { continue };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        if fields.get(1).and_then(|p| p.parse::<i32>().ok()) == Some(ppid) {
            return Some(pid);
        }
    }
    None
}

/// Waits until `/proc/<pid>` is gone (the process was reaped), up to `timeout`.
fn wait_gone(pid: i32, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while Path::new(&format!("/proc/{pid}")).exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// What a tree walk records for one path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Node {
    Dir {
        mode: u32,
    },
    File {
        mode: u32,
        data: Vec<u8>,
    },
    Symlink {
        target: String,
    },
    /// A device node (`c`, `b`), fifo (`p`) or socket (`s`).
    Other {
        kind: char,
        mode: u32,
        rdev: u64,
    },
}

/// Every path under `root` (relative, `/`-prefixed) with its type, permission bits and content.
pub fn tree(root: &Path) -> BTreeMap<String, Node> {
    let mut out = BTreeMap::new();
    walk(root, "", &mut out);
    out
}

fn walk(base: &Path, rel: &str, out: &mut BTreeMap<String, Node>) {
    let dir = base.join(rel.trim_start_matches('/'));
    let entries = fs::read_dir(&dir).unwrap_or_else(|e| panic!("read_dir {}: {e}", dir.display()));
    for entry in entries {
        let entry = entry.unwrap_or_else(|e| panic!("read_dir entry in {}: {e}", dir.display()));
        let name = entry.file_name().to_string_lossy().into_owned();
        let path = format!("{rel}/{name}");
        let full = entry.path();
        let meta = fs::symlink_metadata(&full).unwrap_or_else(|e| panic!("lstat {}: {e}", full.display()));
        let mode = meta.permissions().mode() & 0o7777;
        let ft = meta.file_type();
        if ft.is_dir() {
            out.insert(path.clone(), Node::Dir { mode });
            walk(base, &path, out);
        } else if ft.is_symlink() {
            let target = fs::read_link(&full).unwrap_or_else(|e| panic!("readlink {}: {e}", full.display()));
            out.insert(path, Node::Symlink { target: target.to_string_lossy().into_owned() });
        } else if ft.is_file() {
            let data = fs::read(&full).unwrap_or_else(|e| panic!("read {}: {e}", full.display()));
            out.insert(path, Node::File { mode, data });
        } else {
            use std::os::unix::fs::FileTypeExt;
            let kind = if ft.is_char_device() {
                'c'
            } else if ft.is_block_device() {
                'b'
            } else if ft.is_fifo() {
                'p'
            } else {
                's'
            };
            out.insert(path, Node::Other { kind, mode, rdev: meta.rdev() });
        }
    }
}

/// Ownership, mtime and `user.*` xattrs of one path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Meta {
    pub uid: u32,
    pub gid: u32,
    pub mtime: i64,
    pub xattrs: BTreeMap<String, Vec<u8>>,
}

/// `Meta` of every path under `root` (the keys of `tree`). Directory mtimes are
/// left out where `dir_mtimes` is false.
pub fn tree_meta(root: &Path, dir_mtimes: bool) -> BTreeMap<String, Meta> {
    let mut out = BTreeMap::new();
    for path in tree(root).keys() {
        let full = root.join(path.trim_start_matches('/'));
        let m = fs::symlink_metadata(&full).unwrap_or_else(|e| panic!("lstat {}: {e}", full.display()));
        let mtime = if m.is_dir() && !dir_mtimes { 0 } else { m.mtime() };
        out.insert(path.clone(), Meta { uid: m.uid(), gid: m.gid(), mtime, xattrs: user_xattrs(&full) });
    }
    out
}

/// The `user.*` extended attributes of `path` (not following a symlink).
pub fn user_xattrs(path: &Path) -> BTreeMap<String, Vec<u8>> {
    use std::os::unix::ffi::OsStrExt;
    let mut out = BTreeMap::new();
    let Ok(cpath) = std::ffi::CString::new(path.as_os_str().as_bytes()) else { return out };
    let mut names = vec![0u8; 4096];
    // SAFETY: the buffer is valid for its length; the path is NUL-terminated.
    let n = unsafe { libc::llistxattr(cpath.as_ptr(), names.as_mut_ptr().cast(), names.len()) };
    if n <= 0 {
        return out;
    }
    for name in names[..n as usize].split(|b| *b == 0).filter(|n| n.starts_with(b"user.")) {
        let Ok(cname) = std::ffi::CString::new(name) else { continue };
        let mut value = vec![0u8; 4096];
        // SAFETY: as above; `cname` is NUL-terminated.
        let len = unsafe { libc::lgetxattr(cpath.as_ptr(), cname.as_ptr(), value.as_mut_ptr().cast(), value.len()) };
        if len >= 0 {
            value.truncate(len as usize);
            out.insert(String::from_utf8_lossy(name).into_owned(), value);
        }
    }
    out
}

/// Every path under `dir` whose file name contains `needle` (for "nothing escaped" checks).
pub fn find_named(dir: &Path, needle: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = fs::read_dir(&d) else { continue };
        for entry in entries.flatten() {
            let p = entry.path();
            if entry.file_name().to_string_lossy().contains(needle) {
                found.push(p.clone());
            }
            if entry.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                stack.push(p);
            }
        }
    }
    found
}

/// A marker unique to this test run, for file names that must not appear anywhere else.
pub fn unique_marker(test: &str) -> String {
    let nanos =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
    format!("{test}-{}-{nanos}", std::process::id())
}

/// Writes bytes to a file, failing the test with the path on error.
pub fn write_file(path: &Path, data: &[u8]) {
    let mut f = fs::File::create(path).unwrap_or_else(|e| panic!("create {}: {e}", path.display()));
    f.write_all(data).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}
