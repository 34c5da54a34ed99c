//! The shim as the daemon uses it: spawn a detached shim over a busybox
//! rootfs, attach, start, signal, exec, wait — and check what it leaves
//! behind (the json-file log, exit.json, nothing mounted, no socket).
//!
//! Needs root and a private mount namespace: `scripts/test` runs the whole
//! `cargo test` inside `unshare --mount --net`. The shim binary is
//! `$BERTH_BIN`, or `target/debug/berth` of this workspace.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use berth_model::container::ContainerId;
use berth_model::{MountPlan, MountSpec};
use berth_runtime::shim::{recorded_exit, ExecRequest, ShimClient, ShimError, ShimOptions};

fn berth_bin() -> PathBuf {
    match std::env::var_os("BERTH_BIN") {
        Some(p) => PathBuf::from(p),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/debug/berth"),
    }
}

fn is_root() -> bool {
    // SAFETY: geteuid cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// A container's directories: a busybox tree bind-mounted as its rootfs.
struct Fixture {
    _tmp: tempfile::TempDir,
    options: ShimOptions,
}

/// The OCI spec of a busybox container running `args`.
fn spec_json(args: &[&str], tty: bool) -> serde_json::Value {
    serde_json::json!({
        "ociVersion": "1.0.2",
        "process": {
            "terminal": tty,
            "user": { "uid": 0, "gid": 0 },
            "args": args,
            "env": ["PATH=/bin", "TERM=xterm"],
            "cwd": "/",
            "capabilities": {
                "bounding": ["CAP_KILL", "CAP_CHOWN", "CAP_SETUID", "CAP_SETGID"],
                "effective": ["CAP_KILL", "CAP_CHOWN", "CAP_SETUID", "CAP_SETGID"],
                "permitted": ["CAP_KILL", "CAP_CHOWN", "CAP_SETUID", "CAP_SETGID"]
            },
            "noNewPrivileges": true
        },
        "root": { "path": "rootfs", "readonly": false },
        "hostname": "shimtest",
        "mounts": [
            { "destination": "/proc", "type": "proc", "source": "proc" },
            { "destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"] },
            { "destination": "/dev/pts", "type": "devpts", "source": "devpts", "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"] }
        ],
        "linux": {
            "namespaces": [ { "type": "pid" }, { "type": "ipc" }, { "type": "uts" }, { "type": "mount" } ]
        }
    })
}

fn fixture(args: &[&str], tty: bool, open_stdin: bool) -> Fixture {
    let tmp = tempfile::tempdir().expect("tempdir");
    let tree = tmp.path().join("tree");
    std::fs::create_dir_all(tree.join("bin")).expect("mkdir bin");
    for d in ["proc", "dev", "tmp"] {
        std::fs::create_dir_all(tree.join(d)).expect("mkdir");
    }
    std::fs::copy("/bin/busybox", tree.join("bin/busybox")).expect("copy busybox");
    for applet in ["sh", "echo", "cat", "sleep", "true", "ls"] {
        std::os::unix::fs::symlink("busybox", tree.join("bin").join(applet)).expect("symlink");
    }
    let bundle = tmp.path().join("bundle");
    std::fs::create_dir_all(bundle.join("rootfs")).expect("mkdir rootfs");
    let spec = serde_json::to_vec_pretty(&spec_json(args, tty)).expect("spec");
    std::fs::write(bundle.join("config.json"), spec).expect("write config.json");
    let id = ContainerId::random().expect("id");
    let options = ShimOptions {
        log_path: bundle.join(format!("{id}-json.log")),
        id,
        bundle,
        state_dir: tmp.path().join("state"),
        rootfs: MountPlan { spec: MountSpec::Bind { source: tree, readonly: false } },
        log_max_size: None,
        log_max_files: 1,
        tty,
        open_stdin,
        stdin_once: open_stdin,
        runtime: None,
        cgroup_path: String::new(),
    };
    Fixture { _tmp: tmp, options }
}

impl Fixture {
    fn spawn(&self) -> ShimClient {
        ShimClient::spawn(&berth_bin(), &self.options).expect("spawn shim")
    }

    fn rootfs(&self) -> PathBuf {
        self.options.bundle.join("rootfs")
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.options.log_path).unwrap_or_default()
    }

    /// After the shim went away: nothing mounted, no socket, no pid file, exit recorded.
    fn assert_cleaned_up(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.options.state_dir.join("shim.pid").exists() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(!self.options.state_dir.join("shim.pid").exists(), "shim.pid left behind");
        assert!(!self.options.state_dir.join("shim.sock").exists(), "shim.sock left behind");
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
        for path in [self.rootfs(), self.options.state_dir.join("pts")] {
            assert!(
                !mountinfo.lines().any(|l| l.split(' ').nth(4) == Some(path.to_str().unwrap_or_default())),
                "{} still mounted",
                path.display()
            );
        }
    }
}

/// Reads the whole stream (until the shim closes it), with a deadline.
fn read_all(stream: &mut UnixStream) -> Vec<u8> {
    stream.set_read_timeout(Some(Duration::from_secs(20))).expect("timeout");
    let mut out = Vec::new();
    stream.read_to_end(&mut out).expect("read stream");
    out
}

/// Splits Docker's multiplexed frames into (stdout, stderr).
fn demux(mut data: &[u8]) -> (String, String) {
    let (mut out, mut err) = (Vec::new(), Vec::new());
    while data.len() >= 8 {
        let len = u32::from_be_bytes([data[4], data[5], data[6], data[7]]) as usize;
        assert_eq!(&data[1..4], &[0, 0, 0], "frame header");
        let body = &data[8..8 + len];
        match data[0] {
            1 => out.extend_from_slice(body),
            2 => err.extend_from_slice(body),
            s => panic!("unknown stream {s}"),
        }
        data = &data[8 + len..];
    }
    assert!(data.is_empty(), "trailing partial frame");
    (String::from_utf8_lossy(&out).into_owned(), String::from_utf8_lossy(&err).into_owned())
}

macro_rules! need_root {
    () => {
        if !is_root() {
            eprintln!("skipped: needs root in a private mount namespace (scripts/test)");
            return;
        }
    };
}

#[test]
fn echo_hi_shows_up_in_the_log_and_via_attach() {
    need_root!();
    let f = fixture(&["sh", "-c", "echo hi; echo oops >&2"], false, false);
    let shim = f.spawn();
    let mut stream = shim.attach(false, true, true).expect("attach");
    let state = shim.state().expect("state");
    assert!(state.pid > 0 && state.started_at.is_none() && state.exit.is_none(), "{state:?}");
    shim.start().expect("start");
    let (out, err) = demux(&read_all(&mut stream));
    assert_eq!((out.as_str(), err.as_str()), ("hi\n", "oops\n"));
    let exit = shim.wait().expect("wait");
    assert_eq!(exit.exit_code, 0);
    assert!(!exit.finished_at.is_empty());
    let log = f.log();
    assert!(log.contains(r#"{"log":"hi\n","stream":"stdout","time":""#), "{log}");
    assert!(log.contains(r#"{"log":"oops\n","stream":"stderr","time":""#), "{log}");
    f.assert_cleaned_up();
    assert_eq!(recorded_exit(&f.options.state_dir), Some(exit));
    // The shim is gone; wait still answers from exit.json, other calls say so.
    assert_eq!(shim.wait().expect("wait after exit").exit_code, 0);
    assert!(matches!(shim.state(), Err(ShimError::Gone(_))));
}

#[test]
fn exit_code_is_recorded() {
    need_root!();
    let f = fixture(&["sh", "-c", "exit 3"], false, false);
    let shim = f.spawn();
    shim.start().expect("start");
    assert_eq!(shim.wait().expect("wait").exit_code, 3);
    f.assert_cleaned_up();
    assert_eq!(recorded_exit(&f.options.state_dir).map(|e| e.exit_code), Some(3));
}

#[test]
fn stdin_via_attach_reaches_cat() {
    need_root!();
    let f = fixture(&["cat"], false, true);
    let shim = f.spawn();
    let mut stream = shim.attach(true, true, true).expect("attach");
    shim.start().expect("start");
    stream.write_all(b"hello\nworld\n").expect("write stdin");
    // stdin_once: our EOF closes cat's stdin and cat exits.
    stream.shutdown(std::net::Shutdown::Write).expect("shutdown");
    let (out, _) = demux(&read_all(&mut stream));
    assert_eq!(out, "hello\nworld\n");
    assert_eq!(shim.wait().expect("wait").exit_code, 0);
    f.assert_cleaned_up();
}

#[test]
fn tty_attach_gives_raw_output() {
    need_root!();
    let f = fixture(&["sh", "-c", "tty; echo out; echo err >&2"], true, false);
    let shim = f.spawn();
    let mut stream = shim.attach(false, true, true).expect("attach");
    shim.resize(40, 100).expect("resize");
    shim.start().expect("start");
    let raw = String::from_utf8_lossy(&read_all(&mut stream)).into_owned();
    // No frame headers; the pty turns \n into \r\n; the tty is the container's own, as with Docker.
    assert_eq!(raw, "/dev/pts/0\r\nout\r\nerr\r\n");
    assert_eq!(shim.wait().expect("wait").exit_code, 0);
    let log = f.log();
    assert!(log.contains(r#"{"log":"out\r\n","stream":"stdout""#), "{log}");
    assert!(log.contains(r#"{"log":"err\r\n","stream":"stdout""#), "{log}");
    f.assert_cleaned_up();
}

#[test]
fn tty_size_is_set_by_resize() {
    need_root!();
    let f = fixture(&["sh", "-c", "sleep 1; stty size"], true, false);
    let shim = f.spawn();
    let mut stream = shim.attach(false, true, false).expect("attach");
    shim.start().expect("start");
    shim.resize(33, 77).expect("resize");
    let raw = String::from_utf8_lossy(&read_all(&mut stream)).into_owned();
    assert_eq!(raw.trim(), "33 77");
    shim.wait().expect("wait");
}

#[test]
fn kill_ends_the_container_with_128_plus_signal() {
    need_root!();
    let f = fixture(&["sleep", "100"], false, false);
    let shim = f.spawn();
    shim.start().expect("start");
    let state = shim.state().expect("state");
    assert!(state.started_at.is_some() && state.exit.is_none());
    shim.kill(9).expect("kill");
    let exit = shim.wait().expect("wait");
    assert_eq!(exit.exit_code, 137);
    assert!(!exit.oom_killed);
    f.assert_cleaned_up();
}

#[test]
fn sigterm_to_the_shim_goes_to_the_container() {
    need_root!();
    let f = fixture(&["sh", "-c", "trap 'exit 7' TERM; while true; do sleep 0.1; done"], false, false);
    let shim = f.spawn();
    shim.start().expect("start");
    // Give sh time to install its trap.
    std::thread::sleep(Duration::from_millis(300));
    let pid: i32 = std::fs::read_to_string(f.options.state_dir.join("shim.pid"))
        .expect("shim.pid")
        .trim()
        .parse()
        .expect("pid");
    // SAFETY: kill(2) on the shim we started.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    assert_eq!(shim.wait().expect("wait").exit_code, 7);
    f.assert_cleaned_up();
}

#[test]
fn exec_runs_in_the_container_and_keeps_its_exit_code() {
    need_root!();
    let f = fixture(&["sleep", "100"], false, false);
    let shim = f.spawn();
    shim.start().expect("start");
    let mut process = oci_spec::runtime::Process::default();
    process.set_args(Some(vec!["sh".into(), "-c".into(), "echo from exec; cat; exit 5".into()]));
    process.set_env(Some(vec!["PATH=/bin".into()]));
    process.set_cwd("/".into());
    process.set_terminal(Some(false));
    let request = ExecRequest { exec_id: "e".repeat(64), process, tty: false, stdin: true };
    let (pid, mut stream) = shim.exec(&request).expect("exec");
    assert!(pid > 0);
    stream.write_all(b"typed\n").expect("write");
    stream.shutdown(std::net::Shutdown::Write).expect("shutdown");
    let (out, _) = demux(&read_all(&mut stream));
    assert_eq!(out, "from exec\ntyped\n");
    assert_eq!(shim.exec_wait(&request.exec_id).expect("exec wait").exit_code, 5);
    assert!(matches!(shim.exec_wait("nope"), Err(ShimError::Remote(_))));
    // The container itself is untouched.
    assert!(shim.state().expect("state").exit.is_none());
    shim.kill(9).expect("kill");
    assert_eq!(shim.wait().expect("wait").exit_code, 137);
    // Exec output is not container output.
    assert!(!f.log().contains("from exec"));
}

#[test]
fn a_restarted_daemon_reconnects_to_the_running_shim() {
    need_root!();
    let f = fixture(&["sleep", "100"], false, false);
    let first = f.spawn();
    first.start().expect("start");
    drop(first);
    let again = ShimClient::connect(&f.options.state_dir).expect("connect");
    let state = again.state().expect("state");
    assert!(state.started_at.is_some());
    // The shim is small (no async runtime in it): its private memory stays
    // under 2 MiB (its file-backed pages are the binary and libc, shared).
    let status = std::fs::read_to_string(format!("/proc/{}/status", shim_pid(&f))).expect("status");
    let kib = |key: &str| -> u64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or_else(|| panic!("{key} in {status}"))
    };
    eprintln!("shim VmRSS {} KiB (RssAnon {} KiB, RssFile {} KiB)", kib("VmRSS:"), kib("RssAnon:"), kib("RssFile:"));
    // A debug build's relocated data alone (copied-on-write pages of the binary) is ~1 MiB.
    let limit = if cfg!(debug_assertions) { 3072 } else { 2048 };
    assert!(kib("RssAnon:") < limit, "shim uses {} KiB of private memory", kib("RssAnon:"));
    again.kill(9).expect("kill");
    assert_eq!(again.wait().expect("wait").exit_code, 137);
    f.assert_cleaned_up();
}

fn shim_pid(f: &Fixture) -> i32 {
    std::fs::read_to_string(f.options.state_dir.join("shim.pid"))
        .expect("shim.pid")
        .trim()
        .parse()
        .expect("pid")
}

#[test]
fn a_missing_command_is_a_start_error_and_leaves_nothing() {
    need_root!();
    let f = fixture(&["nosuchcmd"], false, false);
    // The runtime may find out at create (spawn fails) or at start (the process then exits 127).
    match ShimClient::spawn(&berth_bin(), &f.options) {
        Err(ShimError::Command { message, exit_code }) => {
            assert!(message.contains(r#"exec: "nosuchcmd": executable file not found in $PATH"#), "{message}");
            assert_eq!(exit_code, 127);
            assert!(recorded_exit(&f.options.state_dir).is_none());
        }
        Err(other) => panic!("expected a start error, got {other}"),
        Ok(shim) => {
            match shim.start() {
                Err(ShimError::Command { message, exit_code }) => {
                    assert!(message.contains(r#"exec: "nosuchcmd": executable file not found in $PATH"#), "{message}");
                    assert_eq!(exit_code, 127);
                }
                other => panic!("expected a start error, got {other:?}"),
            }
            assert_eq!(shim.wait().expect("wait").exit_code, 127);
        }
    }
    f.assert_cleaned_up();
}

#[test]
fn output_before_attach_is_in_the_log_and_late_attach_sees_the_rest() {
    need_root!();
    let f = fixture(&["sh", "-c", "echo early; sleep 1; echo late"], false, false);
    let shim = f.spawn();
    shim.start().expect("start");
    std::thread::sleep(Duration::from_millis(400));
    let mut stream = shim.attach(false, true, true).expect("attach");
    let (out, _) = demux(&read_all(&mut stream));
    assert_eq!(out, "late\n");
    shim.wait().expect("wait");
    let log = f.log();
    assert!(log.contains("early") && log.contains("late"), "{log}");
}

#[test]
fn exec_with_a_tty_gives_raw_output_and_resizes() {
    need_root!();
    let f = fixture(&["sleep", "100"], false, false);
    let shim = f.spawn();
    shim.start().expect("start");
    let mut process = oci_spec::runtime::Process::default();
    process.set_args(Some(vec!["sh".into(), "-c".into(), "sleep 0.5; stty size; tty".into()]));
    process.set_env(Some(vec!["PATH=/bin".into()]));
    process.set_cwd("/".into());
    process.set_terminal(Some(true));
    let request = ExecRequest { exec_id: "f".repeat(64), process, tty: true, stdin: false };
    let (_, mut stream) = shim.exec(&request).expect("exec");
    shim.exec_resize(&request.exec_id, 20, 60).expect("exec resize");
    let raw = String::from_utf8_lossy(&read_all(&mut stream)).into_owned();
    assert_eq!(raw, "20 60\r\n/dev/pts/0\r\n");
    assert_eq!(shim.exec_wait(&request.exec_id).expect("exec wait").exit_code, 0);
    shim.kill(9).expect("kill");
    shim.wait().expect("wait");
}

#[test]
fn an_external_runtime_runs_the_same_bundle() {
    need_root!();
    // runc only: crun refuses hybrid cgroup hierarchies, which some hosts (this CI's) have.
    let path = std::env::var("PATH").unwrap_or_default();
    let runtimes: Vec<&str> = ["runc"].into_iter().filter(|n| path.split(':').any(|d| Path::new(d).join(n).is_file())).collect();
    if runtimes.is_empty() {
        eprintln!("skipped: runc is not installed");
        return;
    }
    for runtime in runtimes {
        // Output, exit code, and the pipes wiring.
        let mut f = fixture(&["sh", "-c", "echo hi from $0; exit 3"], false, false);
        f.options.runtime = Some(runtime.to_string());
        let shim = f.spawn();
        let mut stream = shim.attach(false, true, true).expect("attach");
        shim.start().unwrap_or_else(|e| panic!("{runtime}: start: {e}"));
        let (out, _) = demux(&read_all(&mut stream));
        assert_eq!(out, "hi from sh\n", "{runtime}");
        assert_eq!(shim.wait().expect("wait").exit_code, 3, "{runtime}");
        f.assert_cleaned_up();

        // A tty from the runtime's console socket, and exec.
        let mut f = fixture(&["sh", "-c", "echo tty; sleep 100"], true, false);
        f.options.runtime = Some(runtime.to_string());
        let shim = f.spawn();
        let mut stream = shim.attach(false, true, true).expect("attach");
        shim.start().unwrap_or_else(|e| panic!("{runtime}: start: {e}"));
        let mut first = [0u8; 5];
        stream.set_read_timeout(Some(Duration::from_secs(20))).expect("timeout");
        stream.read_exact(&mut first).expect("tty output");
        assert_eq!(&first, b"tty\r\n", "{runtime}");
        let mut process = oci_spec::runtime::Process::default();
        process.set_args(Some(vec!["sh".into(), "-c".into(), "echo in exec; exit 4".into()]));
        process.set_env(Some(vec!["PATH=/bin".into()]));
        process.set_cwd("/".into());
        let request = ExecRequest { exec_id: "a".repeat(64), process, tty: false, stdin: false };
        let (_, mut exec_stream) = shim.exec(&request).unwrap_or_else(|e| panic!("{runtime}: exec: {e}"));
        let (out, _) = demux(&read_all(&mut exec_stream));
        assert_eq!(out, "in exec\n", "{runtime}");
        assert_eq!(shim.exec_wait(&request.exec_id).expect("exec wait").exit_code, 4, "{runtime}");
        shim.kill(9).expect("kill");
        assert_eq!(shim.wait().expect("wait").exit_code, 137, "{runtime}");
        f.assert_cleaned_up();
    }
}

#[test]
fn a_flood_of_output_reaches_attach_and_log_complete_and_in_order() {
    need_root!();
    let script = "i=0; while [ $i -lt 20000 ]; do echo line $i; i=$((i+1)); done";
    let f = fixture(&["sh", "-c", script], false, false);
    let shim = f.spawn();
    let mut stream = shim.attach(false, true, true).expect("attach");
    shim.start().expect("start");
    let (out, _) = demux(&read_all(&mut stream));
    assert_eq!(shim.wait().expect("wait").exit_code, 0);
    let want: String = (0..20000).map(|i| format!("line {i}\n")).collect();
    assert!(out == want, "attach got {} bytes, want {}", out.len(), want.len());
    let mut logged = String::new();
    let config = berth_runtime::shim::jsonlog::ReadConfig::default();
    berth_runtime::shim::jsonlog::read(&f.options.log_path, &config, &mut || false, &mut |e| {
        logged.push_str(&e.log);
        true
    })
    .expect("read log");
    assert!(logged == want, "log has {} bytes, want {}", logged.len(), want.len());
}
