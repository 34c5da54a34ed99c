//! A user gets container commands wrong: each mistake is a clear error with
//! Docker's exit code, and nothing is left behind (no container in `ps -a`,
//! no state directory, no mount).

mod common;

use common::images;
use common::Sandbox;

/// A sandbox with `busybox:latest` and the command-less `nocmd:latest`.
fn with_images() -> Sandbox {
    let sb = Sandbox::start();
    sb.load_image(&images::busybox(), "busybox:latest");
    sb.load_image(&images::nocmd(), "nocmd:latest");
    sb
}

/// Entries of a directory (empty if it does not exist).
fn entries(dir: &std::path::Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| rd.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    v.sort();
    v
}

/// What the sandbox holds of containers: `ps -a`, state dirs and mounts.
fn snapshot(sb: &Sandbox) -> (Vec<String>, Vec<String>, Vec<String>, std::collections::BTreeSet<String>) {
    (sb.container_ids(), entries(&sb.root.join("containers")), entries(&sb.run.join("containers")), sb.mount_points())
}

/// Runs `berth args`, expects failure with `code` and every one of `needles` in stderr,
/// and checks that nothing changed.
fn refused(sb: &Sandbox, args: &[&str], code: i32, needles: &[&str]) {
    let before = snapshot(sb);
    let out = sb.berth(args);
    assert_eq!(out.status.code(), Some(code), "`berth {}` exits {code}:\n{}", args.join(" "), out.describe());
    for needle in needles {
        assert!(out.stderr.contains(needle), "`berth {}` says {needle:?}:\n{}", args.join(" "), out.describe());
    }
    assert!(out.stdout.trim().is_empty() || code == 127 || code == 126, "nothing on stdout:\n{}", out.describe());
    assert_eq!(snapshot(sb), before, "`berth {}` left something behind", args.join(" "));
}

#[test]
fn run_refuses_bad_input_with_a_clear_error_and_leaves_nothing() {
    let sb = with_images();
    // Unknown image: nothing can be pulled here, so it is an error naming the image.
    refused(&sb, &["run", "--rm", "nosuchimage", "true"], 125, &["nosuchimage"]);
    // Unknown flag: the CLI's own error, before anything reaches the daemon.
    refused(&sb, &["run", "--bogus", "busybox", "true"], 125, &["unknown flag", "--bogus"]);
    // Bad memory value.
    refused(&sb, &["run", "--memory", "32x", "busybox", "true"], 125, &["32x"]);
    // No command and the image has neither CMD nor ENTRYPOINT.
    refused(&sb, &["run", "--rm", "nocmd"], 125, &["no command specified"]);
    // No image at all.
    refused(&sb, &["run"], 125, &[]);
    // Bad restart policy, bad ulimit, bad user name.
    refused(&sb, &["run", "--restart", "sometimes", "busybox", "true"], 125, &["sometimes"]);
    refused(&sb, &["run", "--rm", "--ulimit", "nofile=abc", "busybox", "true"], 125, &["nofile"]);
    let out = sb.berth(&["run", "--rm", "-u", "nosuchuser", "busybox", "true"]);
    assert!(!out.success(), "an unknown user name is an error:\n{}", out.describe());
    assert!(out.stderr.contains("nosuchuser"), "{}", out.describe());
    assert_eq!(sb.container_ids(), Vec::<String>::new(), "--rm removed the failed container");
}

#[test]
fn a_command_that_does_not_exist_exits_127_and_a_non_executable_126() {
    let sb = with_images();
    let out = sb.berth(&["run", "--rm", "busybox", "nosuchcmd"]);
    assert_eq!(out.status.code(), Some(127), "{}", out.describe());
    assert!(out.stderr.contains("nosuchcmd") && out.stderr.contains("not found"), "{}", out.describe());
    let out = sb.berth(&["run", "--rm", "busybox", "/etc/passwd"]);
    assert_eq!(out.status.code(), Some(126), "{}", out.describe());
    assert!(out.stderr.contains("permission denied"), "{}", out.describe());
    assert_eq!(sb.container_ids(), Vec::<String>::new(), "--rm removed the failed containers");
}

#[test]
fn a_duplicate_name_is_a_conflict_naming_the_holder() {
    let sb = with_images();
    let id = sb.berth_ok(&["run", "-d", "--name", "taken", "busybox", "sleep", "1000"]).trim().to_string();
    let needle = format!("The container name \"/taken\" is already in use by container \"{id}\"");
    refused(&sb, &["run", "-d", "--name", "taken", "busybox", "true"], 125, &["Conflict", &needle]);
    refused(&sb, &["create", "--name", "taken", "busybox", "true"], 125, &["Conflict", &needle]);
    let other = sb.berth_ok(&["create", "busybox", "true"]).trim().to_string();
    let out = sb.berth_fails(&["rename", &other, "taken"]);
    assert!(out.stderr.contains("already in use"), "{}", out.describe());
    sb.berth_ok(&["rm", "-f", &id, &other]);
}

#[test]
fn exec_in_a_stopped_container_and_commands_on_unknown_containers_fail_clearly() {
    let sb = with_images();
    sb.berth_ok(&["run", "--name", "stopped", "busybox", "true"]);
    let id = sb.inspect_format("stopped", "{{.Id}}");
    let out = sb.berth_fails(&["exec", "stopped", "echo", "hi"]);
    assert!(out.stderr.contains("is not running"), "{}", out.describe());
    assert!(out.stderr.contains(&id) || out.stderr.contains("stopped"), "names the container:\n{}", out.describe());
    assert!(out.stdout.is_empty(), "{}", out.describe());

    for args in [
        vec!["start", "ghost"],
        vec!["stop", "ghost"],
        vec!["rm", "ghost"],
        vec!["logs", "ghost"],
        vec!["exec", "ghost", "true"],
        vec!["inspect", "ghost"],
        vec!["kill", "ghost"],
        vec!["wait", "ghost"],
    ] {
        let out = sb.berth_fails(&args);
        assert!(
            out.stderr.contains("No such container: ghost") || out.stderr.contains("No such object: ghost"),
            "`berth {}` says No such container:\n{}",
            args.join(" "),
            out.describe()
        );
    }
    // Killing a stopped container is an error, as in Docker.
    let out = sb.berth_fails(&["kill", "stopped"]);
    assert!(out.stderr.contains("is not running"), "{}", out.describe());
}

#[test]
fn an_explicit_ulimit_above_the_hosts_hard_limit_is_a_clear_error() {
    let sb = with_images();
    let mut hard = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit(2) into a valid struct.
    assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut hard) }, 0);
    let caps = std::fs::read_to_string("/proc/self/status").expect("status");
    let eff = caps.lines().find_map(|l| l.strip_prefix("CapEff:")).map(str::trim).unwrap_or("0");
    let eff = u64::from_str_radix(eff, 16).unwrap_or(0);
    if eff & (1 << 24) != 0 || hard.rlim_max == libc::RLIM_INFINITY {
        eprintln!("skipping: this host has CAP_SYS_RESOURCE or no nofile hard limit, so no ulimit is above it");
        return;
    }
    let too_high = hard.rlim_max + 1;
    let ulimit = format!("nofile={too_high}:{too_high}");
    let before = snapshot(&sb);
    let out = sb.berth(&["run", "--rm", "--ulimit", &ulimit, "busybox", "true"]);
    assert!(!out.success(), "--ulimit {ulimit} above the hard limit {} must fail:\n{}", hard.rlim_max, out.describe());
    assert!(
        out.stderr.contains("nofile") || out.stderr.contains("rlimit") || out.stderr.contains("ulimit"),
        "the error says which limit:\n{}",
        out.describe()
    );
    assert_eq!(snapshot(&sb), before, "nothing left behind");
    // Within the limit it works.
    let out =
        sb.berth_ok(&["run", "--rm", "--ulimit", "nofile=1024:2048", "busybox", "sh", "-c", "ulimit -n; ulimit -Hn"]);
    assert_eq!(out, "1024\n2048\n");
}
