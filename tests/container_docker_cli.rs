//! A Docker user points the real docker CLI at berth's socket and runs
//! containers: run, ps, logs -f, exec -it, inspect, stop, rm -f, cp, top,
//! stats, wait and events behave as they do against dockerd.

mod common;

use common::images;
use common::Sandbox;

/// A sandbox with `busybox:latest` and `testbox:latest` loaded.
fn with_images() -> Sandbox {
    let sb = Sandbox::start();
    sb.load_image(&images::busybox(), "busybox:latest");
    sb.load_image(&images::testbox(), "testbox:latest");
    sb
}

fn columns(line: &str) -> Vec<String> {
    line.split("  ").map(str::trim).filter(|c| !c.is_empty()).map(str::to_string).collect()
}

#[test]
fn docker_run_rm_and_run_d_ps_a_logs_f_inspect_stop_rm_f() {
    let sb = with_images();
    let out = sb.docker(&["run", "--rm", "busybox", "echo", "hi"]);
    assert!(out.success(), "{}\n{}", out.describe(), sb.daemon_log_tail());
    assert_eq!(out.stdout, "hi\n", "docker run --rm busybox echo hi");
    let out = sb.docker(&["run", "--rm", "busybox", "sh", "-c", "exit 3"]);
    assert_eq!(out.status.code(), Some(3), "docker run exits with the container's code:\n{}", out.describe());
    assert_eq!(sb.docker_ok(&["ps", "-aq"]).trim(), "", "--rm left nothing");

    let id = sb.docker_ok(&[
        "run",
        "-d",
        "--name",
        "bg",
        "busybox",
        "sh",
        "-c",
        "trap 'exit 0' TERM; echo up; while :; do sleep 0.2; done",
    ]);
    let id = id.trim().to_string();
    assert_eq!(id.len(), 64, "docker run -d prints the full ID: {id:?}");
    sb.docker_ok(&["run", "--name", "finished", "busybox", "true"]);

    let ps = sb.docker_ok(&["ps", "-a"]);
    let header = columns(ps.lines().next().unwrap_or_default());
    assert_eq!(header, ["CONTAINER ID", "IMAGE", "COMMAND", "CREATED", "STATUS", "PORTS", "NAMES"], "{ps}");
    let d = ps.lines().find(|l| l.trim_end().ends_with(" bg")).unwrap_or_else(|| panic!("no row for bg:\n{ps}"));
    assert!(d.starts_with(&id[..12]) && d.contains("Up "), "{ps}");
    let f = ps.lines().find(|l| l.trim_end().ends_with("finished")).unwrap_or_else(|| panic!("no row:\n{ps}"));
    assert!(f.contains("Exited (0)"), "{ps}");

    let pid = sb.docker_ok(&["inspect", "-f", "{{.State.Pid}}", "bg"]);
    let pid: i32 = pid.trim().parse().unwrap_or_else(|e| panic!("State.Pid {pid:?}: {e}"));
    assert!(common::process_alive(pid), "docker inspect's State.Pid is the container's live process");

    let out = sb.docker_ok(&["logs", "bg"]);
    assert_eq!(out, "up\n");
    sb.docker_ok(&["stop", "bg"]);
    assert_eq!(sb.docker_ok(&["inspect", "-f", "{{.State.Status}} {{.State.ExitCode}}", "bg"]).trim(), "exited 0");
    // logs -f of a stopped container prints the log and returns.
    assert_eq!(sb.docker_ok(&["logs", "-f", "bg"]), "up\n");

    sb.docker_ok(&["start", "bg"]);
    let out = sb.docker_ok(&["rm", "-f", "bg", "finished"]);
    assert_eq!(out.lines().collect::<Vec<_>>(), ["bg", "finished"]);
    assert_eq!(sb.docker_ok(&["ps", "-aq"]).trim(), "");
}

#[test]
fn docker_logs_f_follows_a_running_container() {
    let sb = with_images();
    sb.docker_ok(&[
        "run",
        "-d",
        "--name",
        "ticker",
        "busybox",
        "sh",
        "-c",
        "for i in 1 2 3 4; do echo line $i; sleep 0.3; done",
    ]);
    let out = sb.docker_ok(&["logs", "-f", "ticker"]);
    assert_eq!(out, "line 1\nline 2\nline 3\nline 4\n", "logs -f followed to the end");
}

#[test]
fn docker_exec_it_in_a_pty_and_exec_exit_codes() {
    let sb = with_images();
    sb.docker_ok(&["run", "-d", "--name", "shell", "busybox", "sleep", "1000"]);
    let out = sb.docker_pty(&["exec", "-it", "shell", "sh", "-c", "tty; echo TERM=$TERM"]);
    assert!(out.success(), "{}\n{}", out.describe(), sb.daemon_log_tail());
    let mut lines = out.stdout.lines();
    assert!(lines.next().unwrap_or_default().starts_with("/dev/pts/"), "exec -it has a tty:\n{}", out.stdout);
    assert_eq!(lines.next(), Some("TERM=xterm"), "docker sets TERM=xterm with -t:\n{}", out.stdout);
    let input = sb.file("in");
    common::write_file(&input, b"piped\n");
    let out = sb.docker_stdin(&["exec", "-i", "shell", "cat"], &input);
    assert_eq!(out.stdout, "piped\n", "{}", out.describe());
    let out = sb.docker(&["exec", "shell", "sh", "-c", "exit 6"]);
    assert_eq!(out.status.code(), Some(6), "{}", out.describe());
    sb.docker_ok(&["rm", "-f", "shell"]);
}

#[test]
fn docker_run_it_in_a_pty_gets_a_terminal_of_the_users_size() {
    let sb = with_images();
    // docker attaches before start, then sends the terminal's size.
    let out = sb.docker_pty_sized(&["run", "-it", "--rm", "busybox", "sh", "-c", "tty; stty size"], Some((33, 99)));
    assert!(out.success(), "{}\n{}", out.describe(), sb.daemon_log_tail());
    let lines: Vec<&str> = out.stdout.lines().filter(|l| !l.starts_with("WARNING")).collect();
    assert_eq!(lines, ["/dev/pts/0", "33 99"], "docker run -it: a pty of the user's size:\n{}", out.stdout);
    assert_eq!(sb.docker_ok(&["ps", "-aq"]).trim(), "", "--rm removed it");
}

#[test]
fn docker_cp_copies_both_ways_and_stays_inside_the_container() {
    let sb = with_images();
    sb.docker_ok(&["run", "-d", "--name", "files", "testbox", "sleep", "1000"]);

    // Host -> container: a file and a directory.
    let src = sb.file("hello.txt");
    common::write_file(&src, b"hello from the host\n");
    sb.docker_ok(&["cp", src.to_str().expect("utf-8"), "files:/tmp/"]);
    assert_eq!(sb.docker_ok(&["exec", "files", "cat", "/tmp/hello.txt"]), "hello from the host\n");
    let dir = sb.file("tree");
    std::fs::create_dir_all(dir.join("sub")).expect("mkdir");
    common::write_file(&dir.join("sub/deep.txt"), b"deep\n");
    sb.docker_ok(&["cp", dir.to_str().expect("utf-8"), "files:/srv/"]);
    assert_eq!(sb.docker_ok(&["exec", "files", "cat", "/srv/tree/sub/deep.txt"]), "deep\n");
    // Every copy in a row succeeds: the daemon reads the whole tar before it answers
    // (answering first broke the client's write, "broken pipe", about 1 time in 5).
    for i in 0..20 {
        sb.docker_ok(&["cp", src.to_str().expect("utf-8"), &format!("files:/tmp/copy{i}")]);
    }

    // Container -> host.
    sb.docker_ok(&["exec", "files", "sh", "-c", "echo made inside > /tmp/out.txt"]);
    let out_dir = sb.file("out");
    std::fs::create_dir_all(&out_dir).expect("mkdir");
    sb.docker_ok(&["cp", "files:/tmp/out.txt", out_dir.to_str().expect("utf-8")]);
    assert_eq!(std::fs::read_to_string(out_dir.join("out.txt")).expect("copied out"), "made inside\n");
    sb.docker_ok(&["cp", "files:/srv", out_dir.to_str().expect("utf-8")]);
    assert_eq!(std::fs::read_to_string(out_dir.join("srv/motd")).expect("copied dir"), "served from /srv\n");

    // Through the image's `/evil -> /`: both directions resolve inside the container.
    let marker = common::unique_marker("cp-through-evil");
    let host_path = std::path::Path::new("/tmp").join(&marker);
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        sb.docker_ok(&["cp", src.to_str().expect("utf-8"), &format!("files:/evil/tmp/{marker}")]);
        assert!(!host_path.exists(), "docker cp wrote through a symlink to the host: {}", host_path.display());
        assert_eq!(sb.docker_ok(&["exec", "files", "cat", &format!("/tmp/{marker}")]), "hello from the host\n");
        let hostname_out = sb.file("hostname-out");
        sb.docker_ok(&["cp", "files:/evil/etc/hostname", hostname_out.to_str().expect("utf-8")]);
        let got = std::fs::read_to_string(&hostname_out).expect("copied hostname");
        let id = sb.docker_ok(&["inspect", "-f", "{{.Id}}", "files"]);
        assert_eq!(got.trim(), &id.trim()[..12], "files:/evil/etc/hostname is the container's /etc/hostname");
    }));
    let _ = std::fs::remove_file(&host_path);
    if let Err(p) = result {
        std::panic::resume_unwind(p);
    }
    sb.docker_ok(&["rm", "-f", "files"]);
}

#[test]
fn docker_top_stats_wait_and_events() {
    let sb = with_images();
    let since = chrono::Utc::now().timestamp() - 1;
    sb.docker_ok(&["run", "-d", "--name", "sleeper", "busybox", "sleep", "1000"]);

    let top = sb.docker_ok(&["top", "sleeper"]);
    let header = top.lines().next().unwrap_or_default().split_whitespace().collect::<Vec<_>>();
    assert!(header.contains(&"PID") && header.contains(&"CMD"), "docker top header:\n{top}");
    assert!(top.lines().skip(1).any(|l| l.contains("sleep 1000")), "docker top lists the process:\n{top}");

    let stats = sb.docker_ok(&["stats", "--no-stream"]);
    let header = stats.lines().next().unwrap_or_default();
    for col in ["CONTAINER ID", "NAME", "CPU %", "MEM USAGE / LIMIT", "PIDS"] {
        assert!(header.contains(col), "docker stats header has {col}:\n{stats}");
    }
    assert!(stats.lines().skip(1).any(|l| l.contains(" sleeper ")), "docker stats lists sleeper:\n{stats}");
    let pids = sb.docker_ok(&["stats", "--no-stream", "--format", "{{.Name}} {{.PIDs}}", "sleeper"]);
    assert_eq!(pids.trim(), "sleeper 1");

    sb.docker_ok(&["run", "-d", "--name", "waiter", "busybox", "sh", "-c", "sleep 0.5; exit 9"]);
    assert_eq!(sb.docker_ok(&["wait", "waiter"]).trim(), "9", "docker wait prints the exit code");

    // As on dockerd 20.10: `kill` (SIGKILL) returns once the container is down.
    sb.docker_ok(&["kill", "sleeper"]);
    assert_eq!(sb.docker_ok(&["inspect", "-f", "{{.State.Status}} {{.State.ExitCode}}", "sleeper"]).trim(), "exited 137");

    sb.docker_ok(&["rm", "-f", "sleeper"]);
    let until = chrono::Utc::now().timestamp() + 1;
    let events = sb.docker_ok(&[
        "events",
        "--since",
        &since.to_string(),
        "--until",
        &until.to_string(),
        "--filter",
        "type=container",
        "--format",
        "{{.Action}} {{.Actor.Attributes.name}}",
    ]);
    let lines: Vec<&str> = events.lines().collect();
    for expected in [
        "create sleeper",
        "start sleeper",
        "kill sleeper",
        "die sleeper",
        "destroy sleeper",
        "create waiter",
        "start waiter",
        "die waiter",
    ] {
        assert!(lines.contains(&expected), "docker events --since lists `{expected}`:\n{events}");
    }
    let pos = |e: &str| lines.iter().position(|l| *l == e).unwrap_or(usize::MAX);
    assert!(
        pos("create sleeper") < pos("start sleeper")
            && pos("start sleeper") < pos("die sleeper")
            && pos("die sleeper") < pos("destroy sleeper"),
        "{events}"
    );
    let filtered = sb.docker_ok(&[
        "events",
        "--since",
        &since.to_string(),
        "--until",
        &until.to_string(),
        "--filter",
        "container=waiter",
        "--filter",
        "event=die",
        "--format",
        "{{.Action}} {{.Actor.Attributes.name}} {{.Actor.Attributes.exitCode}}",
    ]);
    assert_eq!(filtered.trim(), "die waiter 9", "filtered events");
}
