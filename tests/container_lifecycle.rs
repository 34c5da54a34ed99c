//! A container's life through berth's CLI: create, start, ps, logs, stop
//! with its signal and timeout, restart policies, kill, pause, rename, wait,
//! exec, rm — and `rm -f` leaves nothing behind.

mod common;

use std::time::{Duration, Instant};

use common::images;
use common::Sandbox;

/// A sandbox with `busybox:latest` loaded.
fn with_busybox() -> Sandbox {
    let sb = Sandbox::start();
    sb.load_image(&images::busybox(), "busybox:latest");
    sb
}

/// A container command that prints `started`, exits 0 on SIGTERM and otherwise runs forever.
const POLITE: &str = "echo started; trap 'echo got TERM; exit 0' TERM; while :; do sleep 1; done";

/// Parses an RFC 3339 timestamp as inspect prints it.
fn timestamp(s: &serde_json::Value) -> chrono::DateTime<chrono::FixedOffset> {
    let s = s.as_str().unwrap_or_else(|| panic!("not a timestamp string: {s}"));
    chrono::DateTime::parse_from_rfc3339(s).unwrap_or_else(|e| panic!("{s:?} is not RFC 3339: {e}"))
}

fn columns(line: &str) -> Vec<String> {
    line.split("  ").map(str::trim).filter(|c| !c.is_empty()).map(str::to_string).collect()
}

#[test]
fn run_d_ps_logs_stop_start_and_rm() {
    let sb = with_busybox();
    let id = sb.berth_ok(&["run", "-d", "--name", "web", "busybox", "sh", "-c", POLITE]).trim().to_string();
    common::poll_until(Duration::from_secs(10), "the container printed `started`", || {
        sb.berth_ok(&["logs", "web"]).contains("started")
    });

    let ps = sb.berth_ok(&["ps"]);
    let mut lines = ps.lines();
    assert_eq!(
        columns(lines.next().unwrap_or_default()),
        ["CONTAINER ID", "IMAGE", "COMMAND", "CREATED", "STATUS", "PORTS", "NAMES"],
        "ps header:\n{ps}"
    );
    let row = lines.next().unwrap_or_else(|| panic!("ps lists the container:\n{ps}"));
    assert!(row.starts_with(&id[..12]), "ps row starts with the short ID:\n{ps}");
    assert!(row.contains("busybox") && row.contains("Up ") && row.trim_end().ends_with("web"), "ps row:\n{ps}");
    let formatted = sb.berth_ok(&["ps", "--format", "{{.ID}} {{.Names}} {{.Image}} {{.State}}"]);
    assert_eq!(formatted.trim(), format!("{} web busybox running", &id[..12]));

    let state = sb.inspect_container("web")["State"].clone();
    assert_eq!(state["Running"], true, "{state}");
    let pid = state["Pid"].as_i64().expect("State.Pid");
    assert!(pid > 0 && common::process_alive(pid as i32), "State.Pid is the container's live host PID: {state}");

    let t = Instant::now();
    let out = sb.berth_ok(&["stop", "web"]);
    assert_eq!(out.trim(), "web", "stop prints what it was given");
    assert!(
        t.elapsed() < Duration::from_secs(8),
        "a container that exits on SIGTERM stops at once ({:?})",
        t.elapsed()
    );
    let state = sb.inspect_container("web")["State"].clone();
    assert_eq!(state["Status"], "exited", "{state}");
    assert_eq!(state["ExitCode"], 0, "{state}");
    assert!(!common::process_alive(pid as i32), "the container's process is gone");
    assert!(sb.berth_ok(&["logs", "web"]).contains("got TERM"), "stop sent SIGTERM");
    assert_eq!(sb.berth_ok(&["ps", "-q"]).trim(), "", "ps without -a hides stopped containers");
    let all = sb.berth_ok(&["ps", "-a", "--format", "{{.Names}} {{.Status}}"]);
    assert!(all.trim().starts_with("web Exited (0)"), "ps -a shows it exited:\n{all}");

    sb.berth_ok(&["start", "web"]);
    assert_eq!(sb.inspect_format("web", "{{.State.Status}}"), "running");
    let out = sb.berth_fails(&["rm", "web"]);
    assert!(
        out.stderr.contains("cannot remove a running container") || out.stderr.contains("stop"),
        "{}",
        out.describe()
    );
    sb.berth_ok(&["rm", "-f", "web"]);
    assert_eq!(sb.container_ids(), Vec::<String>::new());
}

#[test]
fn stop_waits_the_stop_timeout_then_kills_and_records_exit_code_and_finish_time() {
    let sb = with_busybox();
    // A process that ignores SIGTERM: stop must wait --stop-timeout, then SIGKILL.
    let stubborn = "trap '' TERM; echo ignoring; while :; do sleep 1; done";
    sb.berth_ok(&["run", "-d", "--name", "stubborn", "--stop-timeout", "2", "busybox", "sh", "-c", stubborn]);
    assert_eq!(sb.inspect_format("stubborn", "{{.Config.StopTimeout}}"), "2");
    common::poll_until(Duration::from_secs(10), "it has set its trap", || {
        sb.berth_ok(&["logs", "stubborn"]).contains("ignoring")
    });
    let before = chrono::Utc::now();
    let t = Instant::now();
    sb.berth_ok(&["stop", "stubborn"]);
    let took = t.elapsed();
    let after = chrono::Utc::now();
    assert!(took >= Duration::from_millis(1900), "stop waited the 2 s timeout, took {took:?}");
    assert!(took < Duration::from_secs(8), "then killed it, took {took:?}");
    let state = sb.inspect_container("stubborn")["State"].clone();
    assert_eq!(state["Status"], "exited", "{state}");
    assert_eq!(state["ExitCode"], 137, "SIGKILL: 128 + 9: {state}");
    assert_eq!(state["OOMKilled"], false, "{state}");
    let finished = timestamp(&state["FinishedAt"]);
    let started = timestamp(&state["StartedAt"]);
    assert!(finished >= before + chrono::Duration::milliseconds(1900), "FinishedAt {finished} is after the timeout");
    assert!(
        finished <= after + chrono::Duration::seconds(1),
        "FinishedAt {finished} is not after stop returned ({after})"
    );
    assert!(started < finished, "StartedAt {started} < FinishedAt {finished}");

    // `stop -t 0` kills at once; a custom --stop-signal is what stop sends first.
    sb.berth_ok(&["run", "-d", "--name", "now", "busybox", "sh", "-c", stubborn]);
    let t = Instant::now();
    sb.berth_ok(&["stop", "-t", "0", "now"]);
    assert!(t.elapsed() < Duration::from_secs(3), "stop -t 0 does not wait ({:?})", t.elapsed());
    assert_eq!(sb.inspect_format("now", "{{.State.ExitCode}}"), "137");

    let usr1 = "trap 'echo got USR1; exit 12' USR1; echo ready; while :; do sleep 1; done";
    sb.berth_ok(&["run", "-d", "--name", "usr1", "--stop-signal", "USR1", "busybox", "sh", "-c", usr1]);
    common::poll_until(Duration::from_secs(10), "it has set its trap", || {
        sb.berth_ok(&["logs", "usr1"]).contains("ready")
    });
    sb.berth_ok(&["stop", "usr1"]);
    assert_eq!(sb.inspect_format("usr1", "{{.State.ExitCode}}"), "12", "the trap's exit code is recorded");
    assert!(sb.berth_ok(&["logs", "usr1"]).contains("got USR1"));
}

#[test]
fn restart_on_failure_2_restarts_exactly_twice() {
    let sb = with_busybox();
    let id = sb
        .berth_ok(&["run", "-d", "--restart", "on-failure:2", "busybox", "sh", "-c", "echo run; exit 1"])
        .trim()
        .to_string();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let s = sb.inspect_format(&id, "{{.State.Status}} {{.RestartCount}}");
        if s == "exited 2" {
            break;
        }
        assert!(Instant::now() < deadline, "no `exited 2` within 30 s (last: {s})");
        std::thread::sleep(Duration::from_millis(50));
    }
    // Docker's back-off between restarts is 100 ms, then 200 ms: give a third restart time to show.
    std::thread::sleep(Duration::from_millis(1500));
    let inspect = sb.inspect_container(&id);
    assert_eq!(inspect["RestartCount"], 2, "exactly two restarts");
    assert_eq!(inspect["State"]["Status"], "exited");
    assert_eq!(inspect["State"]["ExitCode"], 1);
    assert_eq!(inspect["HostConfig"]["RestartPolicy"]["Name"], "on-failure");
    assert_eq!(inspect["HostConfig"]["RestartPolicy"]["MaximumRetryCount"], 2);
    let logs = sb.berth_ok(&["logs", &id]);
    assert_eq!(logs.matches("run").count(), 3, "the first run and two restarts:\n{logs}");

    // A successful exit is not a failure: no restart.
    let ok = sb.berth_ok(&["run", "-d", "--restart", "on-failure:2", "busybox", "true"]).trim().to_string();
    sb.wait_status(&ok, "exited", Duration::from_secs(10));
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(sb.inspect_format(&ok, "{{.RestartCount}} {{.State.Status}}"), "0 exited");
}

#[test]
fn restart_always_comes_back_but_stop_is_respected() {
    let sb = with_busybox();
    sb.berth_ok(&["run", "-d", "--name", "always", "--restart", "always", "busybox", "sh", "-c", "sleep 0.2; exit 0"]);
    common::poll_until(Duration::from_secs(30), "it has restarted at least twice", || {
        sb.inspect_format("always", "{{.RestartCount}}").parse::<u32>().unwrap_or(0) >= 2
    });
    sb.berth_ok(&["stop", "-t", "1", "always"]);
    let count = sb.inspect_format("always", "{{.RestartCount}}");
    std::thread::sleep(Duration::from_millis(1000));
    assert_eq!(sb.inspect_format("always", "{{.State.Status}}"), "exited", "a stopped container stays stopped");
    assert_eq!(sb.inspect_format("always", "{{.RestartCount}}"), count);
}

#[test]
fn rm_f_leaves_no_mount_cgroup_shim_or_state_behind() {
    let sb = with_busybox();
    let mounts_before = sb.mount_points();
    let id = sb
        .berth_ok(&["run", "-d", "--name", "doomed", "--memory", "64m", "busybox", "sleep", "1000"])
        .trim()
        .to_string();
    // While it runs, every kind of trace is there: the checks below can see them.
    let running = sb.container_traces(&id, &mounts_before);
    assert!(
        running.iter().any(|t| t.starts_with("mount ")),
        "a running container has its rootfs mounted:\n{running:#?}"
    );
    assert!(running.iter().any(|t| t.starts_with("cgroup ")), "a running container has cgroups:\n{running:#?}");
    assert!(running.iter().any(|t| t.starts_with("process ")), "a running container has a shim:\n{running:#?}");
    assert!(running.iter().any(|t| t.starts_with("path ")), "a running container has state dirs:\n{running:#?}");
    let pid = sb.inspect_format(&id, "{{.State.Pid}}").parse::<i32>().expect("State.Pid");

    let out = sb.berth_ok(&["rm", "-f", "doomed"]);
    assert_eq!(out.trim(), "doomed");
    let traces = sb.container_traces(&id, &mounts_before);
    assert!(traces.is_empty(), "rm -f left traces behind:\n{traces:#?}");
    assert!(!common::process_alive(pid), "the container's process is gone");
    assert_eq!(sb.container_ids(), Vec::<String>::new());
    let out = sb.berth_fails(&["inspect", "doomed"]);
    assert!(out.stderr.contains("No such"), "{}", out.describe());

    // The same for a stopped container removed without -f.
    sb.berth_ok(&["run", "--name", "quick", "busybox", "true"]);
    let id = sb.inspect_format("quick", "{{.Id}}");
    sb.berth_ok(&["rm", "quick"]);
    let traces = sb.container_traces(&id, &mounts_before);
    assert!(traces.is_empty(), "rm of an exited container left traces behind:\n{traces:#?}");
}

#[test]
fn create_then_start_attach_and_wait() {
    let sb = with_busybox();
    let id = sb.berth_ok(&["create", "--name", "later", "busybox", "sh", "-c", "echo hello from later; exit 7"]);
    assert_eq!(sb.inspect_format("later", "{{.State.Status}}"), "created");
    assert_eq!(id.trim(), sb.inspect_format("later", "{{.Id}}"));
    let out = sb.berth(&["start", "-a", "later"]);
    assert_eq!(out.stdout, "hello from later\n", "start -a streams the output:\n{}", out.describe());
    assert_eq!(out.status.code(), Some(7), "start -a exits with the container's code");
    let out = sb.berth_ok(&["wait", "later"]);
    assert_eq!(out.trim(), "7", "wait on an exited container prints its code at once");

    sb.berth_ok(&["run", "-d", "--name", "slow", "busybox", "sh", "-c", "sleep 1; exit 5"]);
    let out = sb.berth_ok(&["wait", "slow"]);
    assert_eq!(out.trim(), "5", "wait blocks until exit and prints the code");

    // start -i: stdin goes to the container.
    sb.berth_ok(&["create", "-i", "--name", "reader", "busybox", "cat"]);
    let input = sb.file("in.txt");
    common::write_file(&input, b"through start -ai\n");
    let out = sb.berth_stdin(&["start", "-a", "-i", "reader"], &input);
    assert_eq!(out.stdout, "through start -ai\n", "{}", out.describe());
}

#[test]
fn logs_tail_timestamps_and_streams() {
    let sb = with_busybox();
    sb.berth_ok(&[
        "run",
        "--name",
        "talk",
        "busybox",
        "sh",
        "-c",
        "for i in 1 2 3 4 5; do echo out$i; done; echo err >&2",
    ]);
    let out = sb.berth(&["logs", "talk"]);
    assert_eq!(out.stdout, "out1\nout2\nout3\nout4\nout5\n", "stdout lines go to stdout");
    assert_eq!(out.stderr, "err\n", "stderr lines go to stderr");
    // --tail N takes the last N records of the whole log (both streams), as Docker's json-file
    // reader does; the expectation is computed from the log file itself, whatever order the
    // shim recorded the last stdout and stderr lines in.
    let path = sb.inspect_format("talk", "{{.LogPath}}");
    let log = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading LogPath {path}: {e}"));
    let records: Vec<serde_json::Value> =
        log.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("json-file line {l:?}: {e}"))).collect();
    assert_eq!(records.len(), 6, "five stdout lines and one stderr line:\n{log}");
    for n in [2usize, 3] {
        let (mut want_out, mut want_err) = (String::new(), String::new());
        for r in &records[records.len() - n..] {
            let text = r["log"].as_str().unwrap_or_default();
            if r["stream"] == "stderr" {
                want_err.push_str(text)
            } else {
                want_out.push_str(text)
            }
        }
        let out = sb.berth(&["logs", "--tail", &n.to_string(), "talk"]);
        assert_eq!(
            (out.stdout.as_str(), out.stderr.as_str()),
            (want_out.as_str(), want_err.as_str()),
            "--tail {n}:\n{}",
            out.describe()
        );
    }
    let out = sb.berth_ok(&["logs", "-t", "talk"]);
    for line in out.lines() {
        let (ts, text) = line.split_once(' ').unwrap_or_else(|| panic!("no timestamp: {line:?}"));
        chrono::DateTime::parse_from_rfc3339(ts).unwrap_or_else(|e| panic!("bad timestamp {ts:?}: {e}"));
        assert!(text.starts_with("out"), "{line}");
    }
    // The log is Docker's json-file format (stdout and stderr are read from separate
    // pipes, so only the order within a stream is certain).
    let first = records.iter().find(|r| r["stream"] == "stdout").expect("a stdout record");
    assert_eq!(first["log"], "out1\n");
    assert_eq!(first["stream"], "stdout");
    assert!(first["time"].is_string());
}

#[test]
fn logs_f_follows_until_the_container_stops() {
    let sb = with_busybox();
    sb.berth_ok(&[
        "run",
        "-d",
        "--name",
        "ticker",
        "busybox",
        "sh",
        "-c",
        "i=0; while [ $i -lt 5 ]; do echo tick $i; i=$((i+1)); sleep 0.3; done",
    ]);
    let log = sb.file("follow.log");
    let mut follow = sb.berth_spawn(&["logs", "-f", "ticker"], &log);
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = follow.try_wait().expect("waiting for logs -f") {
            break status;
        }
        assert!(Instant::now() < deadline, "logs -f did not end when the container stopped");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success());
    let got = std::fs::read_to_string(&log).expect("reading logs -f output");
    assert_eq!(got, "tick 0\ntick 1\ntick 2\ntick 3\ntick 4\n", "logs -f saw every line, in order");
}

#[test]
fn exec_runs_in_the_container_with_its_options() {
    let sb = with_busybox();
    sb.berth_ok(&["run", "-d", "--name", "box", "-e", "FROM_RUN=1", "busybox", "sleep", "1000"]);
    let out = sb.berth_ok(&["exec", "box", "sh", "-c", "echo $FROM_RUN $$ $(cat /proc/1/comm)"]);
    let parts: Vec<&str> = out.split_whitespace().collect();
    assert_eq!(parts[0], "1", "exec inherits the container's env: {out}");
    assert_ne!(parts[1], "1", "exec'd process is not PID 1: {out}");
    assert_eq!(parts[2], "sleep", "and sees the container's PID 1: {out}");
    let out = sb.berth(&["exec", "box", "sh", "-c", "exit 5"]);
    assert_eq!(out.status.code(), Some(5), "exec exits with the process's code:\n{}", out.describe());
    let out =
        sb.berth_ok(&["exec", "-e", "X=y", "-u", "65534", "-w", "/tmp", "box", "sh", "-c", "echo $X $(id -u) $(pwd)"]);
    assert_eq!(out.trim(), "y 65534 /tmp");
    sb.berth_ok(&["exec", "-d", "box", "sh", "-c", "echo detached > /tmp/d"]);
    common::poll_until(Duration::from_secs(10), "exec -d wrote its file", || {
        sb.berth(&["exec", "box", "cat", "/tmp/d"]).stdout == "detached\n"
    });
    let out = sb.berth(&["exec", "box", "nosuchcmd"]);
    assert_eq!(out.status.code(), Some(127), "an unknown command exits 127:\n{}", out.describe());
    let out = sb.berth_pty(&["exec", "-it", "box", "tty"]);
    assert!(out.stdout.trim().starts_with("/dev/pts/"), "exec -it has a tty:\n{}", out.describe());
    sb.berth_ok(&["rm", "-f", "box"]);
}

#[test]
fn kill_pause_unpause_restart_and_rename() {
    let sb = with_busybox();
    let trap = "trap 'echo got HUP' HUP; echo ready; while :; do sleep 0.2; done";
    sb.berth_ok(&["run", "-d", "--name", "kk", "busybox", "sh", "-c", trap]);
    common::poll_until(Duration::from_secs(10), "ready", || sb.berth_ok(&["logs", "kk"]).contains("ready"));
    sb.berth_ok(&["kill", "-s", "HUP", "kk"]);
    common::poll_until(Duration::from_secs(10), "the HUP trap ran", || {
        sb.berth_ok(&["logs", "kk"]).contains("got HUP")
    });
    assert_eq!(sb.inspect_format("kk", "{{.State.Status}}"), "running", "HUP was handled, not fatal");

    sb.berth_ok(&["pause", "kk"]);
    assert_eq!(sb.inspect_format("kk", "{{.State.Status}} {{.State.Paused}}"), "paused true");
    let status = sb.berth_ok(&["ps", "--format", "{{.Status}}"]);
    assert!(status.contains("(Paused)"), "ps shows Paused:\n{status}");
    sb.berth_ok(&["unpause", "kk"]);
    assert_eq!(sb.inspect_format("kk", "{{.State.Status}} {{.State.Paused}}"), "running false");

    let pid_before = sb.inspect_format("kk", "{{.State.Pid}}");
    sb.berth_ok(&["restart", "-t", "1", "kk"]);
    assert_eq!(sb.inspect_format("kk", "{{.State.Status}}"), "running");
    assert_ne!(sb.inspect_format("kk", "{{.State.Pid}}"), pid_before, "restart runs a new process");

    sb.berth_ok(&["rename", "kk", "kk2"]);
    assert_eq!(sb.inspect_format("kk2", "{{.Name}}"), "/kk2");
    assert!(!sb.berth(&["inspect", "kk"]).success(), "the old name is free");
    sb.berth_ok(&["kill", "kk2"]);
    sb.wait_status("kk2", "exited", Duration::from_secs(10));
    assert_eq!(sb.inspect_format("kk2", "{{.State.ExitCode}}"), "137", "kill sends SIGKILL by default");
}

#[test]
fn ps_filters_and_formats() {
    let sb = with_busybox();
    sb.berth_ok(&["run", "--name", "done0", "-l", "tier=batch", "busybox", "true"]);
    assert_eq!(sb.berth(&["run", "--name", "done3", "busybox", "sh", "-c", "exit 3"]).status.code(), Some(3));
    let up =
        sb.berth_ok(&["run", "-d", "--name", "up", "-l", "tier=web", "busybox", "sleep", "1000"]).trim().to_string();
    let names = |args: &[&str]| -> Vec<String> {
        let mut full = vec!["ps", "--format", "{{.Names}}"];
        full.extend_from_slice(args);
        let mut v: Vec<String> = sb.berth_ok(&full).lines().map(str::to_string).collect();
        v.sort();
        v
    };
    assert_eq!(names(&[]), ["up"]);
    assert_eq!(names(&["-a"]), ["done0", "done3", "up"]);
    assert_eq!(names(&["-a", "-f", "status=exited"]), ["done0", "done3"]);
    assert_eq!(names(&["-a", "-f", "exited=3"]), ["done3"]);
    assert_eq!(names(&["-a", "-f", "name=done"]), ["done0", "done3"]);
    assert_eq!(names(&["-a", "-f", "label=tier=web"]), ["up"]);
    assert_eq!(names(&["-a", "-f", "label=tier"]), ["done0", "up"]);
    assert_eq!(names(&["-a", "-f", "ancestor=busybox"]), ["done0", "done3", "up"]);
    assert_eq!(names(&["-a", "-f", &format!("id={}", &up[..10])]), ["up"]);
    assert_eq!(names(&["-n", "1"]), ["up"], "-n 1: the last created");
    assert_eq!(names(&["-l"]), ["up"]);
    let full = sb.berth_ok(&["ps", "-q", "--no-trunc"]);
    assert_eq!(full.trim(), up);
    let json = sb.berth_ok(&["inspect", "-f", "{{json .Config.Cmd}}", "done3"]);
    assert_eq!(json.trim(), r#"["sh","-c","exit 3"]"#);
    let env = sb.berth_ok(&["inspect", "-f", "{{range .Config.Env}}{{.}};{{end}}", "up"]);
    assert!(env.contains("PATH=/usr/local/sbin"), "{env}");
    sb.berth_ok(&["rm", "-f", "up"]);
}

#[test]
fn container_prune_removes_only_stopped_containers() {
    let sb = with_busybox();
    let gone = sb.berth_ok(&["run", "-d", "busybox", "true"]).trim().to_string();
    sb.wait_status(&gone, "exited", Duration::from_secs(10));
    let kept = sb.berth_ok(&["run", "-d", "busybox", "sleep", "1000"]).trim().to_string();
    let out = sb.berth_ok(&["container", "prune", "-f"]);
    assert!(out.contains(&gone), "prune lists what it removed:\n{out}");
    assert_eq!(sb.container_ids(), std::slice::from_ref(&kept));
    sb.berth_ok(&["rm", "-f", &kept]);
}
