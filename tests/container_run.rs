//! A user runs commands in containers: output, exit codes, stdin, a terminal,
//! and the image's configuration with Docker's `run` flags on top.

mod common;

use common::images;
use common::Sandbox;

/// A sandbox with `busybox:latest` loaded.
fn with_busybox() -> Sandbox {
    let sb = Sandbox::start();
    sb.load_image(&images::busybox(), "busybox:latest");
    sb
}

fn is_full_id(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
}

#[test]
fn run_rm_echo_hi_prints_hi_and_leaves_no_container() {
    let sb = with_busybox();
    let out = sb.berth(&["run", "--rm", "busybox", "echo", "hi"]);
    assert!(out.success(), "run --rm echo hi failed:\n{}\n{}", out.describe(), sb.daemon_log_tail());
    assert_eq!(out.stdout, "hi\n", "stdout of `run --rm busybox echo hi`");
    assert_eq!(sb.container_ids(), Vec::<String>::new(), "--rm removed the container");
}

#[test]
fn run_exits_with_the_commands_exit_code() {
    let sb = with_busybox();
    let out = sb.berth(&["run", "--rm", "busybox", "sh", "-c", "exit 3"]);
    assert_eq!(out.status.code(), Some(3), "run exits with the container's code:\n{}", out.describe());
    let out = sb.berth(&["run", "--rm", "busybox", "false"]);
    assert_eq!(out.status.code(), Some(1), "{}", out.describe());

    // Without --rm the container stays, exited, with its code recorded.
    let out = sb.berth(&["run", "--name", "three", "busybox", "sh", "-c", "exit 3"]);
    assert_eq!(out.status.code(), Some(3), "{}", out.describe());
    let state = &sb.inspect_container("three")["State"];
    assert_eq!(state["Status"], "exited", "{state}");
    assert_eq!(state["ExitCode"], 3, "{state}");
    assert_eq!(state["Running"], false, "{state}");
}

#[test]
fn run_i_feeds_stdin_to_the_container() {
    let sb = with_busybox();
    let input = sb.file("stdin.txt");
    common::write_file(&input, b"hi\n");
    let out = sb.berth_stdin(&["run", "-i", "--rm", "busybox", "cat"], &input);
    assert!(out.success(), "{}\n{}", out.describe(), sb.daemon_log_tail());
    assert_eq!(out.stdout, "hi\n", "`echo hi | berth run -i --rm busybox cat`");

    // A whole MiB goes through, and the container sees end-of-file when stdin ends.
    let big = sb.file("big-stdin");
    common::write_file(&big, &images::noise(7, 1 << 20));
    let out = sb.berth_stdin(&["run", "-i", "--rm", "busybox", "wc", "-c"], &big);
    assert!(out.success(), "{}", out.describe());
    assert_eq!(out.stdout.trim(), "1048576", "bytes the container read from stdin");

    // Without -i the container's stdin is empty.
    let out = sb.berth_stdin(&["run", "--rm", "busybox", "wc", "-c"], &input);
    assert!(out.success(), "{}", out.describe());
    assert_eq!(out.stdout.trim(), "0", "without -i stdin is not forwarded");
}

#[test]
fn run_t_gives_the_container_a_terminal() {
    let sb = with_busybox();
    let out = sb.berth_pty(&["run", "-t", "--rm", "busybox", "tty"]);
    assert!(out.success(), "{}\n{}", out.describe(), sb.daemon_log_tail());
    // The CLI's own warnings share the terminal: the container's output is the last line.
    assert_eq!(
        out.stdout.trim().lines().last(),
        Some("/dev/pts/0"),
        "`berth run -t --rm busybox tty`:\n{}",
        out.stdout
    );

    // The container's terminal gets the size of the user's (the CLI sends it with resize),
    // and its stdin is the container's own pty, not a path on the host.
    let out = sb.berth_pty_sized(
        &["run", "-t", "--rm", "busybox", "sh", "-c", "stty size; readlink /proc/self/fd/0"],
        Some((40, 100)),
    );
    assert!(out.success(), "{}", out.describe());
    let lines: Vec<&str> = out.stdout.lines().filter(|l| !l.starts_with("WARNING")).collect();
    assert_eq!(lines, ["40 100", "/dev/pts/0"], "size and stdin of the container's terminal:\n{}", out.stdout);

    // Without -t there is no terminal.
    let out = sb.berth(&["run", "--rm", "busybox", "tty"]);
    assert_eq!(out.status.code(), Some(1), "{}", out.describe());
    assert_eq!(out.stdout.trim(), "not a tty");
}

#[test]
fn run_d_prints_the_full_id_and_the_container_runs_in_the_background() {
    let sb = with_busybox();
    let id = sb.berth_ok(&["run", "-d", "busybox", "sleep", "1000"]).trim().to_string();
    assert!(is_full_id(&id), "run -d prints the 64-hex ID, got {id:?}");
    assert_eq!(sb.inspect_format(&id, "{{.State.Status}}"), "running");
    let short = sb.berth_ok(&["ps", "-q"]);
    assert_eq!(short.trim(), &id[..12], "ps -q lists the short ID");
    // Any unique prefix names the container.
    assert_eq!(sb.inspect_format(&id[..5], "{{.Id}}"), id);
    sb.berth_ok(&["rm", "-f", &id[..8]]);
    assert_eq!(sb.container_ids(), Vec::<String>::new());
}

#[test]
fn run_without_a_command_uses_the_images_entrypoint_cmd_env_workdir_and_user() {
    let sb = Sandbox::start();
    sb.load_image(&images::configured(), "configured:latest");
    let out = sb.berth_ok(&["run", "--rm", "configured"]);
    assert_eq!(
        out.trim(),
        "user=app uid=1000 groups=1000 2000 pwd=/srv greeting=hello from the image",
        "the image's ENTRYPOINT + CMD ran as USER app (with its supplementary group) in WORKDIR /srv with its ENV"
    );
    let cfg = &sb.berth_ok(&["create", "--name", "cfg", "configured"]);
    assert!(is_full_id(cfg.trim()), "create prints the ID: {cfg:?}");
    let inspect = sb.inspect_container("cfg");
    assert_eq!(inspect["Config"]["Entrypoint"], serde_json::json!(["/bin/sh", "-c"]), "{}", inspect["Config"]);
    assert_eq!(inspect["Config"]["WorkingDir"], "/srv");
    assert_eq!(inspect["Config"]["User"], "app");
    assert_eq!(inspect["Config"]["Labels"]["org.example.from-image"], "yes", "image labels are inherited");
    assert_eq!(inspect["Config"]["StopSignal"], "SIGUSR1", "the image's stop signal is inherited");
    assert_eq!(inspect["State"]["Status"], "created");
}

#[test]
fn run_flags_override_the_images_configuration() {
    let sb = Sandbox::start();
    sb.load_image(&images::configured(), "configured:latest");
    sb.load_image(&images::busybox(), "busybox:latest");

    // A command replaces CMD and is passed to the ENTRYPOINT; -e, -u and -w override the image.
    let out = sb.berth_ok(&[
        "run",
        "--rm",
        "-e",
        "GREETING=overridden",
        "-e",
        "EXTRA=1",
        "-u",
        "root",
        "-w",
        "/tmp",
        "configured",
        "echo \"$(id -un) $(pwd) $GREETING $EXTRA\"",
    ]);
    assert_eq!(out.trim(), "root /tmp overridden 1");

    // --entrypoint replaces the ENTRYPOINT and drops the image's CMD.
    let out = sb.berth_ok(&["run", "--rm", "--entrypoint", "/bin/echo", "configured", "one", "two"]);
    assert_eq!(out, "one two\n");
    let out = sb.berth_ok(&["run", "--rm", "--entrypoint", "/bin/echo", "configured"]);
    assert_eq!(out, "\n", "--entrypoint without a command runs it without the image's CMD");

    // -u uid:gid, and a name resolved from the image's /etc/passwd and /etc/group.
    let out = sb.berth_ok(&["run", "--rm", "-u", "1234:4321", "busybox", "sh", "-c", "echo $(id -u) $(id -g)"]);
    assert_eq!(out.trim(), "1234 4321");
    let out = sb.berth_ok(&["run", "--rm", "-u", "app", "configured", "echo $(id -u) $(id -g) $(id -G) $HOME"]);
    assert_eq!(out.trim(), "1000 1000 1000 2000 /home/app", "-u app: uid, gid, supplementary groups, HOME");
    // Any user reads the files the engine writes for the container, as with Docker (0644):
    // a process that is not root must still resolve names.
    let out = sb.berth_ok(&[
        "run", "--rm", "-u", "1234:4321", "busybox", "sh", "-c",
        "cat /etc/hostname /etc/hosts /etc/resolv.conf >/dev/null && stat -c %a /etc/hostname /etc/hosts /etc/resolv.conf",
    ]);
    assert_eq!(out.split_whitespace().collect::<Vec<_>>(), ["644", "644", "644"], "{out}");

    // --env-file: comments and blank lines skipped, values kept verbatim.
    let env_file = sb.file("env.list");
    common::write_file(&env_file, b"# a comment\nA=1\n\nB=two words\n");
    let out = sb.berth_ok(&[
        "run",
        "--rm",
        "--env-file",
        env_file.to_str().expect("utf-8"),
        "busybox",
        "sh",
        "-c",
        "echo \"$A|$B\"",
    ]);
    assert_eq!(out.trim(), "1|two words");

    // -w creates a working directory that does not exist yet.
    let out = sb.berth_ok(&["run", "--rm", "-w", "/new/dir", "busybox", "pwd"]);
    assert_eq!(out.trim(), "/new/dir");

    // -h sets the hostname (and /etc/hostname); --name and -l are recorded.
    let out = sb.berth_ok(&[
        "run",
        "--name",
        "named",
        "-h",
        "myhost",
        "-l",
        "team=core",
        "busybox",
        "sh",
        "-c",
        "hostname; cat /etc/hostname",
    ]);
    assert_eq!(out, "myhost\nmyhost\n");
    assert_eq!(sb.inspect_format("named", "{{.Name}}"), "/named");
    assert_eq!(sb.inspect_format("named", "{{index .Config.Labels \"team\"}}"), "core");
    let names = sb.berth_ok(&["ps", "-a", "--format", "{{.Names}}"]);
    assert_eq!(names.trim(), "named");
}

#[test]
fn the_container_gets_dockers_default_environment() {
    let sb = with_busybox();
    let out = sb.berth_ok(&["run", "--rm", "-h", "envhost", "busybox", "env"]);
    let env: Vec<&str> = out.lines().collect();
    assert!(env.contains(&"HOSTNAME=envhost"), "HOSTNAME is set:\n{out}");
    assert!(env.contains(&"HOME=/root"), "HOME is root's home:\n{out}");
    assert!(
        env.contains(&"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"),
        "PATH comes from the image:\n{out}"
    );
    let out = sb.berth_ok(&["run", "--rm", "busybox", "cat", "/etc/hosts"]);
    assert!(out.contains("127.0.0.1") && out.contains("localhost"), "/etc/hosts has localhost:\n{out}");
    let out = sb.berth_ok(&["run", "--rm", "busybox", "ip", "-o", "link"]);
    let links: Vec<&str> = out.lines().collect();
    assert_eq!(links.len(), 2, "without --network the container is on the default bridge (lo, eth0):\n{out}");
    assert!(links[0].contains("lo:") && links[1].contains("eth0@"), "{out}");
}
