//! The end-to-end harness: a real `berth daemon` in a sandbox of its own.
//!
//! `Sandbox::start()` makes a temp dir with `root/`, `run/` and a socket,
//! starts a namespace holder — `unshare --mount --net --propagation private
//! --fork --kill-child` running `sleep infinity` after bringing `lo` up — and
//! starts the daemon inside the holder's namespaces with `nsenter -t <holder>
//! -m -n`. Every mount the daemon and its shims make lives in that mount
//! namespace, and the network namespace has only `lo`. Because the holder
//! outlives the daemon, a daemon that is killed and started again
//! (`kill9` + `restart`) shares the namespaces with the shims of the
//! containers it re-adopts. The CLI and the docker CLI talk to it over the
//! unix socket (a path, so it is reachable across network namespaces). Mounts
//! are inspected through `/proc/<pid>/mountinfo` and mounted trees read
//! through `/proc/<daemon pid>/root/<path>`.
//!
//! The harness only ever signals processes it started, by PID: the holder,
//! the daemon, and at teardown whatever containers (shims, processes in their
//! cgroups) a failed test left behind.

#![allow(dead_code)] // each test binary uses a different part of this module

pub mod images;
pub mod net;
pub mod netns;
pub mod plugins;
pub mod registry;
pub mod token_issuer;
pub mod volumes;

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

    /// The command, its exit status and its output, for failure messages.
    pub fn describe(&self) -> String {
        format!(
            "$ {}\n(exit: {})\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.command, self.status, self.stdout, self.stderr
        )
    }
}

/// Runs `cmd` to completion with an optional stdin file, killing it (by PID) after the timeout.
pub fn run(cmd: Command, stdin: Option<&Path>) -> Output {
    try_run(cmd, stdin, command_timeout()).unwrap_or_else(|e| panic!("{e}"))
}

/// Like `run`, but returns an error instead of failing the test (for cleanup in `Drop`).
pub fn try_run(cmd: Command, stdin: Option<&Path>, timeout: Duration) -> Result<Output, String> {
    match stdin {
        Some(path) => try_run_with(cmd, Input::File(path), timeout),
        None => try_run_with(cmd, Input::Null, timeout),
    }
}

/// What a command under test reads on stdin.
enum Input<'a> {
    Null,
    File(&'a Path),
    /// A pipe nobody writes to, open until the command exits: a user at a
    /// terminal who types nothing. (`script` turns an EOF on its stdin into a
    /// byte it types into the pty, which `docker -it` would forward.)
    Silent,
}

fn try_run_with(mut cmd: Command, stdin: Input<'_>, timeout: Duration) -> Result<Output, String> {
    let command = format!("{cmd:?}");
    match stdin {
        Input::File(path) => {
            let f = fs::File::open(path).map_err(|e| format!("open {}: {e}", path.display()))?;
            cmd.stdin(Stdio::from(f));
        }
        Input::Null => {
            cmd.stdin(Stdio::null());
        }
        Input::Silent => {
            cmd.stdin(Stdio::piped());
        }
    }
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(|e| format!("cannot start {command}: {e}"))?;
    // Held (never written) until the child has exited.
    let _silent_stdin = child.stdin.take();
    let mut out_pipe = child.stdout.take().ok_or("no piped stdout")?;
    let mut err_pipe = child.stderr.take().ok_or("no piped stderr")?;
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
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() > deadline => {
                let _ = child.kill();
                let _ = child.wait();
                // Whatever it printed helps to see where it hung.
                let stdout = String::from_utf8_lossy(&out_thread.join().unwrap_or_default()).into_owned();
                let stderr = String::from_utf8_lossy(&err_thread.join().unwrap_or_default()).into_owned();
                return Err(format!(
                    "command timed out after {timeout:?}: {command}\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}"
                ));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            Err(e) => return Err(format!("waiting for {command}: {e}")),
        }
    };
    let stdout = String::from_utf8_lossy(&out_thread.join().unwrap_or_default()).into_owned();
    let stderr = String::from_utf8_lossy(&err_thread.join().unwrap_or_default()).into_owned();
    Ok(Output { command, status, stdout, stderr })
}

/// `s` quoted for a POSIX shell.
pub fn sh_quote(s: &str) -> String {
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_./=:,@%+".contains(&b)) {
        return s.to_string();
    }
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// Runs `program args` on a pseudo-terminal (`script -qec`), as a user at a
/// terminal would; the pty's `\r\n` line ends come back as `\n`.
/// With `size`, the terminal is first given that many rows and columns (a fresh pty has 0x0).
fn run_in_pty(mut base: Command, program: &str, args: &[String], size: Option<(u16, u16)>) -> Output {
    let line: Vec<String> =
        std::iter::once(program.to_string()).chain(args.iter().cloned()).map(|a| sh_quote(&a)).collect();
    let mut line = line.join(" ");
    if let Some((rows, cols)) = size {
        line = format!("stty rows {rows} cols {cols} && exec {line}");
    }
    base.args(["-qec", &line, "/dev/null"]);
    let mut out = try_run_with(base, Input::Silent, command_timeout()).unwrap_or_else(|e| panic!("{e}"));
    out.stdout = out.stdout.replace("\r\n", "\n");
    out.stderr = out.stderr.replace("\r\n", "\n");
    out
}

/// Polls `check` every 20 ms until it returns true; fails the test with `what` after `timeout`.
pub fn poll_until(timeout: Duration, what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !check() {
        assert!(Instant::now() < deadline, "timed out after {timeout:?} waiting until {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits for a child this test started, killing it (by PID) after `timeout`.
pub fn wait_child(child: &mut Child, timeout: Duration) -> ExitStatus {
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return status,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            Ok(None) => {
                let _ = child.kill();
                panic!("process {} still running after {timeout:?}", child.id());
            }
            Err(e) => panic!("waiting for process {}: {e}", child.id()),
        }
    }
}

/// Whether `pid` exists and is not a zombie.
pub fn process_alive(pid: i32) -> bool {
    let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else { return false };
    let state = stat.rsplit_once(')').map(|(_, r)| r.trim_start().chars().next()).unwrap_or(None);
    !matches!(state, Some('Z') | Some('X') | None)
}

/// PIDs of live processes whose command line contains `needle`.
pub fn processes_mentioning(needle: &str) -> Vec<i32> {
    let me = std::process::id() as i32;
    let mut found = Vec::new();
    let Ok(entries) = fs::read_dir("/proc") else { return found };
    for entry in entries.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else { continue };
        if pid == me {
            continue;
        }
        let Ok(cmdline) = fs::read(format!("/proc/{pid}/cmdline")) else { continue };
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if cmdline.contains(needle) && process_alive(pid) {
            found.push(pid);
        }
    }
    found
}

/// The cgroup directories named `id` under any controller of /sys/fs/cgroup
/// (at most four levels down: `<controller>/<parent...>/<id>`).
pub fn cgroup_dirs(id: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let Ok(controllers) = fs::read_dir("/sys/fs/cgroup") else { return found };
    let mut stack: Vec<(PathBuf, usize)> = controllers.flatten().map(|e| (e.path(), 0)).collect();
    while let Some((dir, depth)) = stack.pop() {
        if depth > 4 {
            continue;
        }
        let Ok(entries) = fs::read_dir(&dir) else { continue };
        for entry in entries.flatten() {
            if !entry.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                continue;
            }
            if entry.file_name().to_str() == Some(id) {
                found.push(entry.path());
            } else {
                stack.push((entry.path(), depth + 1));
            }
        }
    }
    found
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
    /// More `berth daemon` arguments, kept across restarts.
    daemon_args: Vec<String>,
    /// The `unshare` process that holds the sandbox's mount and network
    /// namespaces for its whole life, so that a restarted daemon shares them
    /// with the shims (whose rootfs mounts live there) of the containers it re-adopts.
    holder: Option<Child>,
    /// The holder's PID (`sleep infinity`, the child of `unshare`): `nsenter -t` target.
    holder_pid: Option<i32>,
    /// The daemon (`nsenter` execs it, so this is the daemon's own PID).
    child: Option<Child>,
    /// The daemon's PID.
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

    /// Starts a daemon with more arguments (`--config-file F`, ...), also given at
    /// every restart: `configure` gets the sandbox (to write files with `file()`
    /// before the daemon starts) and returns them.
    pub fn start_configured(configure: impl FnOnce(&Sandbox) -> Vec<String>) -> Sandbox {
        let mut sb = Self::sandbox(None);
        sb.daemon_args = configure(&sb);
        sb.spawn();
        sb
    }

    fn start_with(driver: Option<&str>) -> Sandbox {
        let mut sb = Self::sandbox(driver);
        sb.spawn();
        sb
    }

    /// The temp dir and its layout, before anything runs.
    fn sandbox(driver: Option<&str>) -> Sandbox {
        let dir = tempfile::Builder::new().prefix("berth-e2e-").tempdir().expect("creating a temp dir");
        let path = dir.path().to_path_buf();
        let root = path.join("root");
        let run = path.join("run");
        for d in [&root, &run, &path.join("files")] {
            fs::create_dir_all(d).expect("creating sandbox dirs");
        }
        Sandbox {
            sock: path.join("berth.sock"),
            log: path.join("daemon.log"),
            dir: Some(dir),
            path,
            root,
            run,
            storage_driver: driver.map(str::to_string),
            daemon_args: Vec::new(),
            holder: None,
            holder_pid: None,
            child: None,
            daemon_pid: None,
        }
    }

    /// `unix://<socket>`.
    pub fn host(&self) -> String {
        format!("unix://{}", self.sock.display())
    }

    /// A path for a test input or output file inside the sandbox.
    pub fn file(&self, name: &str) -> PathBuf {
        self.path.join("files").join(name)
    }

    /// Starts the namespace holder: `unshare --mount --net --propagation private
    /// --fork --kill-child` running `sleep infinity` after bringing `lo` up.
    fn start_holder(&mut self) {
        let script = format!("{} link set lo up || exit 97; exec sleep infinity", ip_binary());
        let mut cmd = Command::new("unshare");
        cmd.args(["--mount", "--net", "--propagation", "private", "--fork", "--kill-child", "--", "/bin/sh", "-c"])
            .arg(script)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        let mut child = cmd.spawn().expect("starting unshare (util-linux) for the sandbox's namespaces");
        let unshare_pid = child.id() as i32;
        let deadline = Instant::now() + Duration::from_secs(20);
        let holder = loop {
            if let Ok(Some(status)) = child.try_wait() {
                panic!("the sandbox's namespace holder exited during start ({status})");
            }
            // Ready once the shell has exec'd `sleep`, i.e. after `lo` is up.
            if let Some(pid) = child_of(unshare_pid) {
                if fs::read_to_string(format!("/proc/{pid}/comm")).map(|c| c.trim() == "sleep").unwrap_or(false) {
                    break pid;
                }
            }
            assert!(Instant::now() < deadline, "the sandbox's namespace holder did not start within 20 s");
            std::thread::sleep(Duration::from_millis(5));
        };
        self.holder = Some(child);
        self.holder_pid = Some(holder);
    }

    /// The PID of the process holding the sandbox's namespaces (for `nsenter -t`).
    pub fn holder_pid(&self) -> i32 {
        self.holder_pid.expect("the sandbox's namespace holder is not running")
    }

    fn spawn(&mut self) {
        assert!(self.child.is_none(), "daemon already running");
        if self.holder.is_none() {
            self.start_holder();
        }
        let log = fs::OpenOptions::new().create(true).append(true).open(&self.log).expect("opening daemon log");
        let log2 = log.try_clone().expect("cloning log fd");
        // nsenter enters the holder's mount and network namespaces and execs the
        // daemon (no fork: neither namespace needs one), so the child is the daemon.
        let mut cmd = Command::new("nsenter");
        cmd.arg("-t")
            .arg(self.holder_pid().to_string())
            .args(["-m", "-n", "--"])
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
        cmd.args(&self.daemon_args);
        cmd.env_remove("BERTH_HOST").stdin(Stdio::null()).stdout(log).stderr(log2);
        let child = cmd.spawn().expect("starting nsenter (util-linux) for the daemon");
        self.daemon_pid = Some(child.id() as i32);
        self.child = Some(child);

        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                self.child = None;
                self.daemon_pid = None;
                panic!("daemon exited during start ({status})\n{}", self.daemon_log_tail());
            }
            // A stale socket file from a killed daemon refuses connections; wait for a live one.
            if UnixStream::connect(&self.sock).is_ok() {
                break;
            }
            if Instant::now() > deadline {
                panic!("daemon did not answer on {} within 60 s\n{}", self.sock.display(), self.daemon_log_tail());
            }
            std::thread::sleep(Duration::from_millis(10));
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
        // Credentials (`berth login`) go to the sandbox's client config, as the docker CLI's do.
        cmd.env("DOCKER_CONFIG", self.docker_config());
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

    /// The clients' config dir (`DOCKER_CONFIG`: `config.json` with credentials), shared by berth and the docker CLI.
    pub fn docker_config(&self) -> PathBuf {
        let config = self.path.join("docker-config");
        let _ = fs::create_dir_all(&config);
        config
    }

    fn docker_command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(docker_cli());
        cmd.args(args)
            .env("DOCKER_HOST", self.host())
            .env("DOCKER_CONFIG", self.docker_config())
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

    /// Runs the berth CLI on a pseudo-terminal (for `-t`), stdin empty.
    pub fn berth_pty(&self, args: &[&str]) -> Output {
        self.berth_pty_sized(args, None)
    }

    /// Runs the berth CLI on a pseudo-terminal of `size` (rows, columns).
    pub fn berth_pty_sized(&self, args: &[&str], size: Option<(u16, u16)>) -> Output {
        let mut base = Command::new("script");
        base.env_remove("BERTH_HOST");
        let mut full: Vec<String> = vec!["-H".into(), self.host(), "--no-autostart".into()];
        full.extend(args.iter().map(|a| a.to_string()));
        run_in_pty(base, BERTH, &full, size)
    }

    /// Runs the docker CLI on a pseudo-terminal (for `exec -it`), stdin empty.
    pub fn docker_pty(&self, args: &[&str]) -> Output {
        self.docker_pty_sized(args, None)
    }

    /// Runs the docker CLI on a pseudo-terminal of `size` (rows, columns).
    pub fn docker_pty_sized(&self, args: &[&str], size: Option<(u16, u16)>) -> Output {
        let config = self.path.join("docker-config");
        let _ = fs::create_dir_all(&config);
        let mut base = Command::new("script");
        base.env("DOCKER_HOST", self.host())
            .env("DOCKER_CONFIG", &config)
            .env_remove("DOCKER_CONTEXT")
            .env_remove("DOCKER_API_VERSION");
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        run_in_pty(base, &docker_cli(), &args, size)
    }

    /// Saves `img` as a docker-archive tagged `tag` and `berth load`s it.
    pub fn load_image(&self, img: &images::TestImage, tag: &str) {
        let archive = self.file(&format!("{}.tar", tag.replace(['/', ':'], "_")));
        img.save_docker_archive(&[tag], &archive).expect("writing a test image archive");
        let out = self.load(&archive);
        assert!(out.contains(&format!("Loaded image: {tag}")), "berth load printed:\n{out}");
    }

    /// `berth container inspect <name>` as JSON (the one object of the array).
    pub fn inspect_container(&self, name: &str) -> serde_json::Value {
        let out = self.berth_ok(&["container", "inspect", name]);
        let v: serde_json::Value = serde_json::from_str(&out)
            .unwrap_or_else(|e| panic!("container inspect printed invalid JSON ({e}):\n{out}"));
        let arr = v.as_array().unwrap_or_else(|| panic!("container inspect did not print an array:\n{out}"));
        assert_eq!(arr.len(), 1, "container inspect {name} printed {} objects", arr.len());
        arr[0].clone()
    }

    /// `berth inspect -f <template> <name>`, trimmed.
    pub fn inspect_format(&self, name: &str, template: &str) -> String {
        self.berth_ok(&["inspect", "-f", template, name]).trim().to_string()
    }

    /// Full IDs of every container (`ps -aq --no-trunc`), sorted.
    pub fn container_ids(&self) -> Vec<String> {
        let out = self.berth_ok(&["ps", "-aq", "--no-trunc"]);
        let mut ids: Vec<String> = out.split_whitespace().map(str::to_string).collect();
        ids.sort();
        ids
    }

    /// Waits until `inspect` shows the container's `State.Status` as `status`.
    pub fn wait_status(&self, name: &str, status: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let last = self.inspect_format(name, "{{.State.Status}}");
            if last == status {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "container {name} did not become {status:?} within {timeout:?} (last: {last:?})\n{}",
                self.daemon_log_tail()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Mount points in the sandbox's mount namespace (where the shims mount rootfs).
    pub fn mount_points(&self) -> std::collections::BTreeSet<String> {
        let pid = self.holder_pid();
        let info = fs::read_to_string(format!("/proc/{pid}/mountinfo")).expect("reading the sandbox's mountinfo");
        info.lines().filter_map(|l| l.split_whitespace().nth(4)).map(str::to_string).collect()
    }

    /// Everything container `id` may leave behind, described: mounts that
    /// were not there in `mounts_before`, mounts naming the ID, cgroup
    /// directories, live processes naming the ID (its shim), and files or
    /// directories under `--root` and `--run` named after it. Removed
    /// directories wait in a `.trash` dir for the daemon's background reaper:
    /// those count only if they are still there after 10 s.
    pub fn container_traces(&self, id: &str, mounts_before: &std::collections::BTreeSet<String>) -> Vec<String> {
        assert_eq!(id.len(), 64, "container_traces needs a full ID, got {id:?}");
        let mut traces = Vec::new();
        for m in self.mount_points().difference(mounts_before) {
            traces.push(format!("mount {m}"));
        }
        let info = fs::read_to_string(format!("/proc/{}/mountinfo", self.holder_pid())).unwrap_or_default();
        for line in info.lines().filter(|l| l.contains(id) || l.contains(&id[..12])) {
            traces.push(format!("mountinfo line naming the container: {line}"));
        }
        for dir in cgroup_dirs(id) {
            traces.push(format!("cgroup {}", dir.display()));
        }
        for pid in processes_mentioning(id) {
            let cmdline = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            traces.push(format!("process {pid}: {}", String::from_utf8_lossy(&cmdline).replace('\0', " ")));
        }
        let named = || -> Vec<PathBuf> {
            [&self.root, &self.run]
                .into_iter()
                .flat_map(|base| find_named(base, id).into_iter().chain(find_named(base, &id[..12])))
                .collect()
        };
        let in_trash = |p: &PathBuf| p.components().any(|c| c.as_os_str() == ".trash");
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut paths = named();
        while paths.iter().any(in_trash) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
            paths = named();
        }
        for p in paths {
            let note = if in_trash(&p) { " (in the trash, not deleted within 10 s)" } else { "" };
            traces.push(format!("path {}{note}", p.display()));
        }
        traces
    }

    /// Kills the daemon with SIGKILL, as a crash would. The sandbox's
    /// namespaces (and the containers' shims in them) stay.
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

    /// Starts the daemon again on the same root, run dir, socket and namespaces.
    pub fn restart(&mut self) {
        if self.child.is_some() {
            self.stop();
        }
        self.spawn();
    }

    /// Starts the daemon again, with `--storage-driver <driver>` from now on (`None`: the default).
    pub fn restart_with_driver(&mut self, driver: Option<&str>) {
        self.stop();
        self.storage_driver = driver.map(str::to_string);
        self.spawn();
    }

    /// Stops the daemon and starts one with `--storage-driver <driver>` that
    /// must refuse to start: its output. The daemon stays stopped.
    pub fn daemon_refuses_driver(&mut self, driver: &str) -> String {
        self.stop();
        let mut cmd = Command::new("nsenter");
        cmd.arg("-t").arg(self.holder_pid().to_string()).args(["-m", "-n", "--"]).arg(BERTH).arg("daemon");
        cmd.arg("--root").arg(&self.root).arg("--run").arg(&self.run).arg("-H").arg(self.host());
        cmd.args(["--storage-driver", driver]).env_remove("BERTH_HOST");
        let out = try_run(cmd, None, Duration::from_secs(60)).unwrap_or_else(|e| panic!("daemon with --storage-driver {driver}: {e}"));
        assert!(!out.success(), "the daemon started with --storage-driver {driver}:\n{}", out.describe());
        format!("{}{}", out.stdout, out.stderr)
    }

    /// Stops the daemon: SIGTERM, then SIGKILL after 15 s.
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
                Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
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

    /// IDs of the containers this sandbox's daemon has state for (directories
    /// under `<root>/containers` and `<run>/containers`).
    fn container_state_ids(&self) -> Vec<String> {
        let mut ids = Vec::new();
        for dir in [self.root.join("containers"), self.run.join("containers")] {
            let Ok(entries) = fs::read_dir(&dir) else { continue };
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if name.len() == 64 && name.bytes().all(|b| b.is_ascii_hexdigit()) && !ids.contains(&name) {
                    ids.push(name);
                }
            }
        }
        ids
    }

    /// Best-effort teardown of whatever containers a test left: `rm -f` through
    /// the daemon, then, for anything still there, SIGKILL of the processes in
    /// their cgroups and of their shims (all started by this sandbox, by PID),
    /// and removal of their cgroup directories. Never panics (it runs in `Drop`).
    fn remove_leftover_containers(&mut self) {
        let ids = self.container_state_ids();
        if ids.is_empty() {
            return;
        }
        if self.child.is_some() {
            let mut cmd = self.berth_command(&["ps", "-aq", "--no-trunc"]);
            cmd.env_remove("BERTH_HOST");
            if let Ok(out) = try_run(cmd, None, Duration::from_secs(20)) {
                for id in out.stdout.split_whitespace() {
                    let _ = try_run(self.berth_command(&["rm", "-f", id]), None, Duration::from_secs(20));
                }
            }
        }
        self.stop();
        for id in self.container_state_ids() {
            let mut dirs = cgroup_dirs(&id);
            for dir in &dirs {
                let procs = fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
                for pid in procs.split_whitespace().filter_map(|p| p.parse::<i32>().ok()) {
                    // SAFETY: kill(2) on a process in the cgroup of a container this sandbox started.
                    unsafe { libc::kill(pid, libc::SIGKILL) };
                }
            }
            for pid in processes_mentioning(&id) {
                // SAFETY: kill(2) on a shim of a container this sandbox started (its command line names the ID).
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
            // Deepest first; a cgroup can only be removed once its processes are gone.
            dirs.sort_by_key(|d| std::cmp::Reverse(d.components().count()));
            for dir in dirs {
                let deadline = Instant::now() + Duration::from_secs(5);
                while fs::remove_dir(&dir).is_err() && dir.exists() && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
        }
        let path = self.path.to_string_lossy().into_owned();
        for pid in processes_mentioning(&path) {
            // SAFETY: kill(2) on a process whose command line names this sandbox's temp dir: ours.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }

    /// Kills the namespace holder (`unshare --kill-child` takes `sleep` with it).
    fn stop_holder(&mut self) {
        if let Some(mut holder) = self.holder.take() {
            let _ = holder.kill();
            let _ = holder.wait();
        }
        if let Some(pid) = self.holder_pid.take() {
            wait_gone(pid, Duration::from_secs(10));
        }
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("{}", self.daemon_log_tail());
        }
        self.remove_leftover_containers();
        self.stop();
        self.stop_holder();
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
