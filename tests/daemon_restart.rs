//! The daemon is SIGKILLed while three containers run: they keep running, and
//! a new daemon re-adopts them — ps, logs -f, exec, stop and rm all work.
//! Both daemons run in the sandbox's one pair of namespaces (the harness's
//! namespace holder), where the shims keep the containers' rootfs mounted.

mod common;

use std::time::{Duration, Instant};

use common::images;
use common::Sandbox;

/// Counts up every 200 ms; exits 0 on SIGTERM.
const TICKER: &str = "trap 'exit 0' TERM; i=0; while :; do echo tick $i; i=$((i+1)); sleep 0.2; done";

/// The highest `tick N` in a log text.
fn last_tick(log: &str) -> Option<u64> {
    log.lines().filter_map(|l| l.strip_prefix("tick ")).filter_map(|n| n.trim().parse().ok()).max()
}

#[test]
fn containers_survive_a_daemon_kill_and_the_new_daemon_adopts_them() {
    let mut sb = Sandbox::start();
    sb.load_image(&images::busybox(), "busybox:latest");
    let mounts_before = sb.mount_points();
    let names = ["one", "two", "three"];
    let mut ids = Vec::new();
    let mut pids = Vec::new();
    for name in names {
        let id = sb.berth_ok(&["run", "-d", "--name", name, "busybox", "sh", "-c", TICKER]).trim().to_string();
        pids.push(sb.inspect_format(name, "{{.State.Pid}}").parse::<i32>().expect("State.Pid"));
        ids.push(id);
    }
    common::poll_until(Duration::from_secs(10), "all three tick", || {
        names.iter().all(|n| last_tick(&sb.berth_ok(&["logs", n])).is_some())
    });

    sb.kill9();
    // Without a daemon the containers keep running and keep logging.
    for (name, pid) in names.iter().zip(&pids) {
        assert!(common::process_alive(*pid), "{name} (PID {pid}) died with the daemon");
    }
    std::thread::sleep(Duration::from_millis(500));
    for (name, pid) in names.iter().zip(&pids) {
        assert!(common::process_alive(*pid), "{name} (PID {pid}) died after the daemon");
    }

    sb.restart();
    let listed = sb.berth_ok(&["ps", "--format", "{{.Names}} {{.State}}"]);
    let mut rows: Vec<&str> = listed.lines().collect();
    rows.sort();
    assert_eq!(rows, ["one running", "three running", "two running"], "the new daemon lists them running");
    for (name, pid) in names.iter().zip(&pids) {
        let state = sb.inspect_container(name)["State"].clone();
        assert_eq!(state["Running"], true, "{name}: {state}");
        assert_eq!(state["Pid"], *pid, "{name} is the same process: {state}");
    }

    // logs -f follows: lines written after the restart arrive.
    let seen = last_tick(&sb.berth_ok(&["logs", "one"])).expect("ticks in one's log");
    let follow_log = sb.file("follow-one.log");
    let mut follow = sb.berth_spawn(&["logs", "-f", "one"], &follow_log);
    common::poll_until(Duration::from_secs(15), "logs -f shows new ticks", || {
        let got = std::fs::read_to_string(&follow_log).unwrap_or_default();
        last_tick(&got).is_some_and(|t| t >= seen + 3)
    });

    // exec works in every re-adopted container.
    for name in names {
        let out = sb.berth_ok(&["exec", name, "sh", "-c", "echo exec in $(hostname)"]);
        assert!(out.starts_with("exec in "), "{name}: {out}");
    }

    // stop stops them (SIGTERM reaches them through the re-adopted shims).
    let t = Instant::now();
    sb.berth_ok(&["stop", "one", "two", "three"]);
    assert!(t.elapsed() < Duration::from_secs(8), "they stopped on SIGTERM, not on the timeout ({:?})", t.elapsed());
    for (name, pid) in names.iter().zip(&pids) {
        assert_eq!(sb.inspect_format(name, "{{.State.Status}} {{.State.ExitCode}}"), "exited 0", "{name}");
        assert!(!common::process_alive(*pid), "{name}'s process is gone");
    }
    // logs -f ends when its container stops.
    let deadline = Instant::now() + Duration::from_secs(10);
    while follow.try_wait().expect("waiting for logs -f").is_none() {
        assert!(Instant::now() < deadline, "logs -f did not end when the container stopped");
        std::thread::sleep(Duration::from_millis(20));
    }

    // rm cleans up everything the first daemon's containers had.
    sb.berth_ok(&["rm", "one", "two", "three"]);
    for id in &ids {
        let traces = sb.container_traces(id, &mounts_before);
        assert!(traces.is_empty(), "rm after re-adoption left traces of {id}:\n{traces:#?}");
    }
    assert_eq!(sb.container_ids(), Vec::<String>::new());
}

#[test]
fn a_container_that_exits_while_the_daemon_is_down_is_reported_exited() {
    let mut sb = Sandbox::start();
    sb.load_image(&images::busybox(), "busybox:latest");
    let mounts_before = sb.mount_points();
    let script = "while [ ! -e /tmp/go ]; do sleep 0.1; done; exit 4";
    let id = sb.berth_ok(&["run", "-d", "--name", "brief", "busybox", "sh", "-c", script]).trim().to_string();
    let pid = sb.inspect_format("brief", "{{.State.Pid}}").parse::<i32>().expect("State.Pid");
    sb.kill9();
    // Tell it to exit while no daemon runs: create /tmp/go through its root as the host sees it.
    common::write_file(std::path::Path::new(&format!("/proc/{pid}/root/tmp/go")), b"");
    common::poll_until(Duration::from_secs(10), "the container exited", || !common::process_alive(pid));
    sb.restart();
    sb.wait_status("brief", "exited", Duration::from_secs(10));
    assert_eq!(sb.inspect_format("brief", "{{.State.ExitCode}}"), "4", "the shim recorded the exit code");
    let out = sb.berth_ok(&["wait", "brief"]);
    assert_eq!(out.trim(), "4");
    sb.berth_ok(&["rm", "brief"]);
    let traces = sb.container_traces(&id, &mounts_before);
    assert!(traces.is_empty(), "{traces:#?}");
}

#[test]
fn restart_policies_always_and_unless_stopped_are_honoured_at_daemon_start() {
    let mut sb = Sandbox::start();
    sb.load_image(&images::busybox(), "busybox:latest");
    sb.berth_ok(&["run", "-d", "--name", "svc", "--restart", "always", "busybox", "sleep", "1000"]);
    sb.berth_ok(&["run", "-d", "--name", "plain", "busybox", "sleep", "1000"]);
    // unless-stopped: comes back after a crash, but not once the user stopped it.
    sb.berth_ok(&["run", "-d", "--name", "crashy", "--restart", "unless-stopped", "busybox", "sleep", "1000"]);
    sb.berth_ok(&["run", "-d", "--name", "stopped", "--restart", "unless-stopped", "busybox", "sleep", "1000"]);
    sb.berth_ok(&["stop", "-t", "0", "stopped"]);
    let crashy_pid = sb.inspect_format("crashy", "{{.State.Pid}}").parse::<i32>().expect("State.Pid");
    let svc_pid = sb.inspect_format("svc", "{{.State.Pid}}").parse::<i32>().expect("State.Pid");
    let plain_pid = sb.inspect_format("plain", "{{.State.Pid}}").parse::<i32>().expect("State.Pid");
    sb.kill9();
    // Both die while the daemon is down (as in a host reboot); we kill them by their PIDs.
    for pid in [svc_pid, plain_pid, crashy_pid] {
        // SAFETY: kill(2) on a container process this test started.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
    common::poll_until(Duration::from_secs(10), "both containers died", || {
        [svc_pid, plain_pid, crashy_pid].iter().all(|p| !common::process_alive(*p))
    });
    sb.restart();
    sb.wait_status("svc", "running", Duration::from_secs(20));
    sb.wait_status("crashy", "running", Duration::from_secs(20));
    sb.wait_status("plain", "exited", Duration::from_secs(20));
    assert_eq!(
        sb.inspect_format("stopped", "{{.State.Status}}"),
        "exited",
        "a stopped unless-stopped container stays stopped"
    );
    assert_ne!(sb.inspect_format("svc", "{{.State.Pid}}"), svc_pid.to_string(), "svc runs a new process");
    sb.berth_ok(&["rm", "-f", "svc", "plain", "crashy", "stopped"]);
}
