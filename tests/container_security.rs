//! What a process inside a container can see and do: its own PID namespace,
//! hostname, masked /proc, no mount, Docker's capabilities, memory and PID
//! limits that hold — and the classic runtime escapes stay closed (leaked
//! fds, `/proc/<pid>/exe` of the runtime, a working directory through a
//! symlink to the host's `/`).

mod common;

use std::time::Duration;

use common::images;
use common::Sandbox;

/// A sandbox with `testbox:latest` (busybox + alloc, procexe, user app, `/evil -> /`).
fn with_testbox() -> Sandbox {
    let sb = Sandbox::start();
    sb.load_image(&images::testbox(), "testbox:latest");
    sb
}

/// Docker's default capability set as a CapEff mask: CHOWN, DAC_OVERRIDE,
/// FOWNER, FSETID, KILL, SETGID, SETUID, SETPCAP, NET_BIND_SERVICE, NET_RAW,
/// SYS_CHROOT, MKNOD, AUDIT_WRITE, SETFCAP.
const DOCKER_DEFAULT_CAPS: &str = "00000000a80425fb";

/// The `CapXxx:` line of a /proc/<pid>/status text.
fn cap_line<'a>(status: &'a str, name: &str) -> &'a str {
    status
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{name}:")))
        .map(str::trim)
        .unwrap_or_else(|| panic!("no {name} in:\n{status}"))
}

#[test]
fn the_command_is_pid_1_and_host_processes_are_invisible() {
    let sb = with_testbox();
    let out = sb.berth_ok(&["run", "--rm", "testbox", "ps", "-o", "pid,args"]);
    let rows: Vec<Vec<&str>> = out.lines().skip(1).map(|l| l.split_whitespace().collect()).collect();
    assert_eq!(rows.len(), 1, "only the command itself is visible in the container:\n{out}");
    assert_eq!(rows[0][0], "1", "the command is PID 1:\n{out}");
    assert_eq!(rows[0][1], "ps", "{out}");

    // /proc lists the container's processes only: the shell (PID 1) expands the glob itself.
    let out = sb.berth_ok(&["run", "--rm", "testbox", "sh", "-c", "echo /proc/[0-9]*"]);
    assert_eq!(out.trim(), "/proc/1", "only the container's one process is in /proc:\n{out}");
    let out = sb.berth_ok(&["run", "--rm", "testbox", "cat", "/proc/1/cmdline"]);
    assert_eq!(out, "cat\0/proc/1/cmdline\0", "PID 1 is the command itself");

    // --init puts a reaper in front: the command is then not PID 1.
    let out = sb.berth_ok(&["run", "--rm", "--init", "testbox", "ps", "-o", "pid,args"]);
    let ps_pid: Vec<&str> = out.lines().filter(|l| l.contains("ps -o")).collect();
    assert_eq!(ps_pid.len(), 1, "{out}");
    assert_ne!(ps_pid[0].split_whitespace().next(), Some("1"), "with --init, ps is not PID 1:\n{out}");
}

#[test]
fn the_hostname_is_the_containers_own() {
    let sb = with_testbox();
    let host_before = std::fs::read_to_string("/proc/sys/kernel/hostname").expect("host hostname");
    let out = sb.berth_ok(&["run", "--name", "hn", "testbox", "hostname"]);
    let id = sb.inspect_format("hn", "{{.Id}}");
    assert_eq!(out.trim(), &id[..12], "the default hostname is the short container ID");
    let out = sb.berth_ok(&["run", "--rm", "-h", "inside", "testbox", "sh", "-c", "hostname; cat /etc/hostname"]);
    assert_eq!(out, "inside\ninside\n", "-h sets the hostname and /etc/hostname");
    // Changing it needs CAP_SYS_ADMIN (not in Docker's defaults); with it, only the container's UTS namespace changes.
    let out = sb.berth(&["run", "--rm", "testbox", "hostname", "changed"]);
    assert!(!out.success(), "sethostname without CAP_SYS_ADMIN fails:\n{}", out.describe());
    let out = sb.berth_ok(&[
        "run",
        "--rm",
        "--cap-add",
        "SYS_ADMIN",
        "testbox",
        "sh",
        "-c",
        "hostname inside-changed && hostname",
    ]);
    assert_eq!(out.trim(), "inside-changed");
    let host_after = std::fs::read_to_string("/proc/sys/kernel/hostname").expect("host hostname");
    assert_eq!(host_before, host_after, "the host's hostname is untouched");
}

#[test]
fn masked_paths_read_empty_and_kernel_tunables_are_read_only() {
    let sb = with_testbox();
    // This kernel has no /proc/kcore (nor /proc/sysrq-trigger); the masked-path
    // behaviour is asserted on Docker's other masked files that exist here:
    // /proc/timer_list and /proc/keys (masked by binding /dev/null over them),
    // and /proc/kcore too where the host has it.
    let mut checked = 0;
    for path in ["/proc/kcore", "/proc/timer_list", "/proc/keys", "/proc/sched_debug", "/proc/timer_stats"] {
        if !std::path::Path::new(path).exists() {
            continue;
        }
        let out = sb.berth(&["run", "--rm", "testbox", "sh", "-c", &format!("wc -c < {path}")]);
        assert!(out.success(), "reading masked {path}:\n{}", out.describe());
        assert_eq!(out.stdout.trim(), "0", "{path} is masked (reads empty) inside the container");
        checked += 1;
    }
    assert!(checked >= 2, "at least /proc/timer_list and /proc/keys exist on this host");
    let host_timer_list = std::fs::read("/proc/timer_list").expect("reading the host's /proc/timer_list");
    assert!(!host_timer_list.is_empty(), "on the host /proc/timer_list has content, so the empty read is the mask");

    // /proc/sys is read-only (writes to a UTS-namespaced tunable: harmless if it were writable).
    let out = sb.berth(&["run", "--rm", "testbox", "sh", "-c", "echo x > /proc/sys/kernel/domainname"]);
    assert!(!out.success(), "writing /proc/sys must fail:\n{}", out.describe());
    assert!(out.stderr.contains("Read-only file system"), "{}", out.describe());
    // /sys is mounted read-only.
    let out = sb.berth_ok(&["run", "--rm", "testbox", "cat", "/proc/self/mountinfo"]);
    let sys = out.lines().find(|l| l.split_whitespace().nth(4) == Some("/sys"));
    let sys = sys.unwrap_or_else(|| panic!("no /sys mount in the container:\n{out}"));
    let opts = sys.split_whitespace().nth(5).unwrap_or_default();
    assert!(opts.split(',').any(|o| o == "ro"), "/sys is read-only: {sys}");
}

#[test]
fn mount_fails_and_the_capabilities_are_dockers_defaults() {
    let sb = with_testbox();
    let out = sb.berth(&["run", "--rm", "testbox", "mount", "-t", "tmpfs", "none", "/tmp"]);
    assert!(!out.success(), "mount must fail without CAP_SYS_ADMIN:\n{}", out.describe());
    assert!(
        out.stderr.to_lowercase().contains("permission denied") || out.stderr.contains("Operation not permitted"),
        "mount says why it failed:\n{}",
        out.describe()
    );

    let status = sb.berth_ok(&["run", "--rm", "testbox", "cat", "/proc/self/status"]);
    assert_eq!(cap_line(&status, "CapEff"), DOCKER_DEFAULT_CAPS, "Docker's default capabilities");
    assert_eq!(cap_line(&status, "CapBnd"), DOCKER_DEFAULT_CAPS, "the bounding set is as narrow");
    assert_eq!(cap_line(&status, "NoNewPrivs"), "0");

    let status = sb.berth_ok(&["run", "--rm", "--cap-drop", "ALL", "testbox", "cat", "/proc/self/status"]);
    assert_eq!(cap_line(&status, "CapEff"), "0000000000000000", "--cap-drop ALL");
    let status = sb.berth_ok(&[
        "run",
        "--rm",
        "--cap-drop",
        "NET_RAW",
        "--cap-add",
        "SYS_TIME",
        "testbox",
        "cat",
        "/proc/self/status",
    ]);
    // NET_RAW is bit 13 (0x2000), SYS_TIME bit 25 (0x2000000).
    assert_eq!(cap_line(&status, "CapEff"), "00000000aa0405fb", "--cap-drop NET_RAW --cap-add SYS_TIME");

    let status =
        sb.berth_ok(&["run", "--rm", "--security-opt", "no-new-privileges", "testbox", "cat", "/proc/self/status"]);
    assert_eq!(cap_line(&status, "NoNewPrivs"), "1", "--security-opt no-new-privileges");

    // With CAP_SYS_ADMIN added the same mount works (inside the container's own mount namespace).
    let out = sb.berth(&[
        "run",
        "--rm",
        "--cap-add",
        "SYS_ADMIN",
        "testbox",
        "sh",
        "-c",
        "mount -t tmpfs none /tmp && echo mounted",
    ]);
    assert!(out.success() && out.stdout.trim() == "mounted", "--cap-add SYS_ADMIN allows mount:\n{}", out.describe());

    // --privileged: every capability the host's bounding set has.
    let host = std::fs::read_to_string("/proc/self/status").expect("reading our status");
    let status = sb.berth_ok(&["run", "--rm", "--privileged", "testbox", "cat", "/proc/self/status"]);
    assert_eq!(cap_line(&status, "CapEff"), cap_line(&host, "CapBnd"), "--privileged has all capabilities");
}

#[test]
fn read_only_rootfs_refuses_writes() {
    let sb = with_testbox();
    sb.berth_ok(&["run", "--rm", "testbox", "touch", "/written"]);
    let out = sb.berth(&["run", "--rm", "--read-only", "testbox", "touch", "/written"]);
    assert!(!out.success(), "--read-only: writing / fails:\n{}", out.describe());
    assert!(out.stderr.contains("Read-only file system"), "{}", out.describe());
    // /dev/shm stays writable, as in Docker.
    sb.berth_ok(&["run", "--rm", "--read-only", "testbox", "touch", "/dev/shm/ok"]);
}

#[test]
fn memory_limit_32m_kills_a_process_allocating_100mb_and_inspect_says_oomkilled() {
    let sb = with_testbox();
    // Under the limit the allocator completes: the limit is not simply killing everything.
    let out = sb.berth(&["run", "--rm", "--memory", "32m", "testbox", "alloc", "8"]);
    assert!(out.success(), "8 MiB fits in 32m:\n{}\n{}", out.describe(), sb.daemon_log_tail());
    assert_eq!(out.stdout.trim(), "allocated 8 MiB");

    let out = sb.berth(&["run", "--name", "oom", "--memory", "32m", "testbox", "alloc", "100"]);
    assert_eq!(out.status.code(), Some(137), "the allocator is SIGKILLed (128+9):\n{}", out.describe());
    assert!(!out.stdout.contains("allocated"), "the allocation never completed:\n{}", out.stdout);
    let inspect = sb.inspect_container("oom");
    assert_eq!(inspect["State"]["OOMKilled"], true, "inspect shows OOMKilled: {}", inspect["State"]);
    assert_eq!(inspect["State"]["ExitCode"], 137, "{}", inspect["State"]);
    assert_eq!(inspect["HostConfig"]["Memory"], 32 * 1024 * 1024, "HostConfig.Memory in bytes");
    assert_eq!(sb.inspect_format("oom", "{{.State.OOMKilled}}"), "true");
}

#[test]
fn pids_limit_20_contains_a_fork_loop() {
    let sb = with_testbox();
    // The inner shell forks sleepers until fork fails; the outer one reports and
    // becomes a sleeper itself, so the container stays up at its limit.
    let script = "sh -c 'while :; do sleep 1000 & done'; echo \"fork loop stopped: $?\"; exec sleep 1000";
    let id = sb.berth_ok(&["run", "-d", "--pids-limit", "20", "testbox", "sh", "-c", script]).trim().to_string();
    let logs = || {
        let out = sb.berth(&["logs", &id]);
        format!("{}{}", out.stdout, out.stderr)
    };
    common::poll_until(Duration::from_secs(30), "the fork loop has stopped", || logs().contains("fork loop stopped"));
    let all = logs();
    assert!(all.contains("can't fork"), "the loop hit the limit (fork failed):\n{all}");
    assert_eq!(sb.inspect_format(&id, "{{.HostConfig.PidsLimit}}"), "20");
    assert_eq!(sb.inspect_format(&id, "{{.State.Status}}"), "running", "the container survives at its limit");

    let pids_dirs: Vec<_> =
        common::cgroup_dirs(&id).into_iter().filter(|d| d.starts_with("/sys/fs/cgroup/pids")).collect();
    assert_eq!(pids_dirs.len(), 1, "one pids cgroup for the container: {pids_dirs:?}");
    let max = std::fs::read_to_string(pids_dirs[0].join("pids.max")).expect("pids.max");
    assert_eq!(max.trim(), "20");
    let current: u64 = std::fs::read_to_string(pids_dirs[0].join("pids.current"))
        .expect("pids.current")
        .trim()
        .parse()
        .expect("pids.current is a number");
    assert!((2..=20).contains(&current), "the container holds at most 20 processes, has {current}");
    let top = sb.berth_ok(&["top", &id]);
    assert!(top.lines().count() - 1 <= 20, "top lists at most 20 processes:\n{top}");

    sb.berth_ok(&["rm", "-f", &id]);
    assert!(common::cgroup_dirs(&id).is_empty(), "rm -f removed the cgroup");
}

/// The names in a `ls /proc/self/fd` listing.
fn fd_names(listing: &str) -> Vec<String> {
    // Under a pty the CLI's own warnings share the output; they are not part of the listing.
    let mut names: Vec<String> = listing
        .lines()
        .filter(|l| !l.starts_with("WARNING"))
        .flat_map(str::split_whitespace)
        .map(str::to_string)
        .collect();
    names.sort();
    names
}

#[test]
fn no_daemon_or_shim_fd_leaks_into_a_container_or_an_exec() {
    let sb = with_testbox();
    let expected = ["0", "1", "2", "3"]; // stdio + the directory `ls` opens
    let out = sb.berth_ok(&["run", "--rm", "testbox", "ls", "/proc/self/fd"]);
    assert_eq!(fd_names(&out), expected, "run: only stdio (and ls's own fd):\n{out}");
    let input = sb.file("empty");
    common::write_file(&input, b"");
    let out = sb.berth_stdin(&["run", "-i", "--rm", "testbox", "ls", "/proc/self/fd"], &input);
    assert_eq!(fd_names(&out.stdout), expected, "run -i:\n{}", out.describe());
    let out = sb.berth_pty(&["run", "-t", "--rm", "testbox", "ls", "/proc/self/fd"]);
    assert_eq!(fd_names(&out.stdout), expected, "run -t:\n{}", out.describe());

    let id = sb.berth_ok(&["run", "-d", "testbox", "sleep", "1000"]).trim().to_string();
    let out = sb.berth_ok(&["exec", &id, "ls", "/proc/self/fd"]);
    assert_eq!(fd_names(&out), expected, "exec:\n{out}");
    let out = sb.berth_stdin(&["exec", "-i", &id, "ls", "/proc/self/fd"], &input);
    assert_eq!(fd_names(&out.stdout), expected, "exec -i:\n{}", out.describe());
    let out = sb.berth_pty(&["exec", "-t", &id, "ls", "/proc/self/fd"]);
    assert_eq!(fd_names(&out.stdout), expected, "exec -t:\n{}", out.describe());
    // PID 1's descriptors too: only its stdio.
    let out = sb.berth_ok(&["exec", &id, "ls", "/proc/1/fd"]);
    assert_eq!(fd_names(&out), ["0", "1", "2"], "the container's init holds only stdio:\n{out}");
    // And nothing open points outside the container (a cwd or root on the host).
    let out = sb.berth_ok(&[
        "exec",
        &id,
        "sh",
        "-c",
        "for f in /proc/1/cwd /proc/1/root /proc/self/cwd; do readlink $f; done",
    ]);
    assert_eq!(out, "/\n/\n/\n", "cwd and root are the container's /");
    sb.berth_ok(&["rm", "-f", &id]);
}

#[test]
fn the_runtime_cannot_be_reached_through_proc_pid_exe_during_exec() {
    let sb = with_testbox();
    // The binary the daemon runs (and its shims exec): through /proc/<pid>/exe, so that a
    // rebuild of target/debug/berth during the test does not count as a change.
    let daemon_exe = format!("/proc/{}/exe", sb.daemon_pid());
    let berth_before = std::fs::read(&daemon_exe).expect("reading the daemon's binary");
    let id = sb.berth_ok(&["run", "-d", "testbox", "sleep", "1000"]).trim().to_string();
    // The probe scans /proc for 6 s, opening every /proc/<pid>/exe it can, while we exec
    // into the container again and again: each exec puts a runtime process into the
    // container's PID namespace for a moment, and that process must be non-dumpable.
    sb.berth_ok(&["exec", "-d", &id, "sh", "-c", "procexe 6 > /tmp/probe.out 2>&1; echo done >> /tmp/probe.out"]);
    let start = std::time::Instant::now();
    let mut execs = 0;
    while start.elapsed() < Duration::from_secs(5) {
        let out = sb.berth_ok(&["exec", &id, "true"]);
        assert_eq!(out, "");
        execs += 1;
    }
    let mut report = String::new();
    common::poll_until(Duration::from_secs(20), "the probe has finished", || {
        report = sb.berth_ok(&["exec", &id, "cat", "/tmp/probe.out"]);
        report.contains("done")
    });
    eprintln!("{execs} execs while probing; probe said:\n{report}");
    assert!(report.contains("procexe:"), "the probe ran:\n{report}");
    assert!(!report.contains("WRITABLE"), "a host binary was writable through /proc/<pid>/exe:\n{report}");
    assert!(
        !report.contains("FOREIGN"),
        "a process with a host executable was reachable from the container:\n{report}"
    );

    // From an exec'd shell: every visible process runs an executable of the image.
    let out = sb.berth_ok(&["exec", &id, "sh", "-c", "for p in /proc/[0-9]*; do readlink $p/exe; done"]);
    for exe in out.lines() {
        assert!(
            ["/bin/busybox", "/usr/local/bin/procexe"].contains(&exe),
            "a process in the container runs {exe}, which is not the image's:\n{out}"
        );
    }
    sb.berth_ok(&["rm", "-f", &id]);
    let berth_after = std::fs::read(&daemon_exe).expect("reading the daemon's binary");
    assert!(berth_after == berth_before, "the berth binary is unchanged");
}

#[test]
fn a_workdir_through_a_symlink_to_slash_stays_inside_the_rootfs() {
    let sb = with_testbox();
    sb.load_image(&images::workdir_escape(), "workdir-escape:latest");
    // A file only the host's /tmp has, and a directory name that must not appear there.
    let marker = common::unique_marker("host-tmp-only");
    let host_marker = std::path::Path::new("/tmp").join(&marker);
    common::write_file(&host_marker, b"host\n");
    let made = common::unique_marker("made-by-workdir");
    let host_made = std::path::Path::new("/tmp").join(&made);

    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        // `-w /evil/tmp` with `/evil -> /`: resolved in the rootfs, that is the image's /tmp.
        let out = sb.berth_ok(&["run", "--rm", "-w", "/evil/tmp", "testbox", "ls", "-a"]);
        assert!(out.contains("inside-the-image"), "-w /evil/tmp is the image's /tmp:\n{out}");
        assert!(!out.contains(&marker), "-w /evil/tmp reached the host's /tmp:\n{out}");

        // The image's WORKDIR /evil/tmp likewise.
        let out = sb.berth_ok(&["run", "--rm", "workdir-escape"]);
        assert!(out.contains("inside-the-image"), "WORKDIR /evil/tmp is the image's /tmp:\n{out}");
        assert!(!out.contains(&marker), "WORKDIR /evil/tmp reached the host's /tmp:\n{out}");

        // A workdir that does not exist is created inside the rootfs, not on the host.
        let workdir = format!("/evil/tmp/{made}");
        let out = sb.berth_ok(&["run", "--rm", "-w", &workdir, "testbox", "sh", "-c", "pwd; ls /tmp"]);
        assert!(out.contains(&made), "the workdir was created in the container's /tmp:\n{out}");
        assert!(!host_made.exists(), "the workdir was created on the host: {}", host_made.display());
    }));
    let _ = std::fs::remove_file(&host_marker);
    let _ = std::fs::remove_dir(&host_made);
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
}

#[test]
fn a_workdir_of_proc_self_fd_n_cannot_reach_the_host() {
    // CVE-2024-21626: with a leaked host directory fd N, `-w /proc/self/fd/N` started the
    // process with its cwd on the host, and `..` climbed to the host's root. Whatever berth
    // does with such a workdir (refuse it, or resolve it in the container), the host's /tmp
    // must never be what the container lists.
    let sb = with_testbox();
    let marker = common::unique_marker("host-only-cwd-escape");
    let host_marker = std::path::Path::new("/tmp").join(&marker);
    common::write_file(&host_marker, b"host\n");
    let climb = "cd ../../../../../../../../..; ls -a tmp 2>&1; ls -a";
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        for fd in 3..=9 {
            let workdir = format!("/proc/self/fd/{fd}");
            let out = sb.berth(&["run", "--rm", "-w", &workdir, "testbox", "sh", "-c", climb]);
            assert!(!out.stdout.contains(&marker), "run -w {workdir} reached the host's /tmp:\n{}", out.describe());
        }
        let id = sb.berth_ok(&["run", "-d", "testbox", "sleep", "1000"]).trim().to_string();
        for fd in 3..=9 {
            let workdir = format!("/proc/self/fd/{fd}");
            let out = sb.berth(&["exec", "-w", &workdir, &id, "sh", "-c", climb]);
            assert!(!out.stdout.contains(&marker), "exec -w {workdir} reached the host's /tmp:\n{}", out.describe());
        }
        sb.berth_ok(&["rm", "-f", &id]);
    }));
    let _ = std::fs::remove_file(&host_marker);
    if let Err(p) = result {
        std::panic::resume_unwind(p);
    }
}

#[test]
fn seccomp_refuses_what_dockers_default_profile_refuses_and_takes_a_users_profile() {
    let sb = with_testbox();
    let seccomp_line = "grep '^Seccomp:' /proc/self/status";
    // Docker's answers (dockerd 20.10 with runc, same commands): `Seccomp: 2`
    // and `unshare: unshare(0x10000000): Operation not permitted`.
    let out = sb.berth(&["run", "--rm", "testbox", "sh", "-c", &format!("{seccomp_line}; unshare -U true")]);
    assert_eq!(out.status.code(), Some(1), "{}", out.describe());
    assert_eq!(out.stdout.trim(), "Seccomp:\t2", "{}", out.describe());
    assert!(out.stderr.contains("unshare(0x10000000): Operation not permitted"), "{}", out.describe());

    let unconfined = sb.berth_ok(&["run", "--rm", "--security-opt", "seccomp=unconfined", "testbox", "sh", "-c", &format!("{seccomp_line}; unshare -U true && echo unshared")]);
    assert_eq!(unconfined.lines().collect::<Vec<_>>(), ["Seccomp:\t0", "unshared"]);
    let privileged = sb.berth_ok(&["run", "--rm", "--privileged", "testbox", "sh", "-c", seccomp_line]);
    assert_eq!(privileged.trim(), "Seccomp:\t0", "--privileged runs without a filter");
    let admin = sb.berth_ok(&["run", "--rm", "--cap-add", "SYS_ADMIN", "testbox", "sh", "-c", "unshare -U true && echo unshared"]);
    assert_eq!(admin.trim(), "unshared", "CAP_SYS_ADMIN lifts the namespace rules");

    // exec'd processes are under the container's filter.
    sb.berth_ok(&["run", "-d", "--name", "confined", "testbox", "sleep", "60"]);
    let out = sb.berth(&["exec", "confined", "unshare", "-U", "true"]);
    assert!(!out.success() && out.stderr.contains("Operation not permitted"), "{}", out.describe());
    sb.berth_ok(&["rm", "-f", "confined"]);

    // A profile file, read by the CLI (berth's and docker's alike) and sent as JSON.
    let profile = sb.file("no-mkdir.json");
    std::fs::write(&profile, r#"{"defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38}]}"#)
    .expect("write the profile");
    let profile_opt = format!("seccomp={}", profile.display());
    for cli in ["berth", "docker"] {
        let args = ["run", "--rm", "--security-opt", &profile_opt, "testbox", "mkdir", "/tmp/d"];
        let out = if cli == "berth" { sb.berth(&args) } else { sb.docker(&args) };
        assert!(!out.success() && out.stderr.contains("can't create directory '/tmp/d': Function not implemented"), "{cli}: {}", out.describe());
    }

    // Bad profiles are clear errors, and no container is left.
    let out = sb.berth_fails(&["run", "--rm", "--security-opt", "seccomp=/no/such/profile.json", "testbox", "true"]);
    assert!(out.stderr.contains("opening seccomp profile (/no/such/profile.json) failed"), "{}", out.describe());
    let bad = sb.file("bad.json");
    std::fs::write(&bad, r#"{"defaultAction": "SCMP_ACT_MAYBE"}"#).expect("write");
    let out = sb.docker(&["run", "--rm", "--security-opt", &format!("seccomp={}", bad.display()), "testbox", "true"]);
    assert!(!out.success() && out.stderr.contains("decoding seccomp profile failed") && out.stderr.contains("SCMP_ACT_MAYBE"), "{}", out.describe());
    assert_eq!(sb.berth_ok(&["ps", "-aq"]), "", "a refused profile leaves no container");

    // `info` says which profile containers get, as Docker's does.
    assert_eq!(sb.docker_ok(&["info", "--format", "{{json .SecurityOptions}}"]).trim(), r#"["name=seccomp,profile=default"]"#);
    let info = sb.berth_ok(&["info"]);
    assert!(info.contains(" Security Options:\n  seccomp\n   Profile: default\n"), "{info}");
}

/// Runs `script` as uid/gid 65534 with no groups, in the sandbox's mount namespace (where the rootfs mounts are).
fn as_nobody(sb: &Sandbox, script: &str) -> common::Output {
    let mut cmd = std::process::Command::new("nsenter");
    cmd.args(["-t", &sb.holder_pid().to_string(), "-m", "--", "setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--", "/bin/sh", "-c", script]);
    common::run(cmd, None)
}

#[test]
fn local_users_without_the_socket_reach_no_layer_log_or_rootfs() {
    let sb = Sandbox::start();
    // The sandbox's own temp dir is 0700: open it, so only berth's modes stand between the user and its state.
    for dir in [&sb.path, &sb.root, &sb.run] {
        std::fs::set_permissions(dir, std::os::unix::fs::PermissionsExt::from_mode(0o711)).expect("opening the sandbox dir");
    }
    // CVE-2021-41091's exploit: an image holding a setuid-root program.
    let busybox = std::fs::read(images::busybox_path()).expect("reading busybox");
    let layer = sb.file("suid.tar");
    std::fs::write(&layer, images::layer(&[images::Entry::dir("suid", 0o755), images::Entry::file("suid/busybox", 0o4755, busybox)])).expect("writing the layer");
    sb.berth_ok(&["import", layer.to_str().expect("utf-8"), "suid:1"]);
    let id = sb.berth_ok(&["run", "-d", "-e", "DB_PASSWORD=hunter2", "suid:1", "/suid/busybox", "sh", "-c", "echo DB_PASSWORD=$DB_PASSWORD; exec /suid/busybox sleep 600"]);
    let id = id.trim();
    poll_until_logged(&sb, id);

    // The program and the log are there, and the program is setuid root: the exploit would work if reached.
    let root = sb.root.display().to_string();
    let found = common::net::sandbox_sh_ok(&sb, &format!("find {root} {} -path '*/suid/busybox' -perm -4000 | head -3", sb.run.display()));
    assert!(!found.trim().is_empty(), "the setuid program is in the layer store");
    let log = format!("{root}/containers/{id}/{id}-json.log");
    assert!(std::fs::read_to_string(&log).expect("root reads the log").contains("hunter2"));

    let listing = as_nobody(&sb, &format!("ls {root}/containers"));
    assert!(!listing.success() && listing.stderr.contains("Permission denied"), "{}", listing.describe());
    let read = as_nobody(&sb, &format!("cat {log}"));
    assert!(!read.success() && !read.stdout.contains("hunter2"), "{}", read.describe());
    let run_suid = as_nobody(&sb, &format!("for p in {found}; do \"$p\" id -u && exit 0; done; exit 1", found = found.split_whitespace().collect::<Vec<_>>().join(" ")));
    assert!(!run_suid.success() && !run_suid.stdout.contains('0'), "a local user ran the image's setuid program:\n{}", run_suid.describe());
    let search = as_nobody(&sb, &format!("find {root} {} -path '*/suid/busybox' 2>/dev/null", sb.run.display()));
    assert!(search.stdout.trim().is_empty(), "a local user finds the program at {}", search.stdout);
    let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&log).expect("stat the log").permissions());
    assert_eq!(mode & 0o777, 0o640, "the log is the owner's (and its group's) only");
    sb.berth_ok(&["rm", "-f", id]);
}

/// Waits until the container's first line is in its log.
fn poll_until_logged(sb: &Sandbox, id: &str) {
    common::poll_until(Duration::from_secs(10), "the container to log", || sb.berth(&["logs", id]).stdout.contains("hunter2"));
}
