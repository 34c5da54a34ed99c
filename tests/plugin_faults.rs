//! Plugins that misbehave cannot hurt the engine: the test-only `misbehave`
//! plugin traps, loops, allocates without bound and answers with a plan
//! outside its grant; each is a clear error naming the plugin, within its
//! deadline, and the daemon and every other driver (the plugin itself too)
//! keep serving. A plugin stuck in a call stalls nothing that does not use it.

mod common;

use std::time::{Duration, Instant};

use common::plugins::{built_plugin, edited_plugin, install};
use common::volumes::{assert_no_leftover_mounts, sandbox_with};

#[test]
fn traps_loops_oom_and_bad_plans_are_errors_and_the_plugin_keeps_serving() {
    let (sb, baseline) = sandbox_with(&["busybox"]);
    install(&sb, &built_plugin("misbehave-wasm"), &[]);
    install(&sb, &built_plugin("snapvol-wasm"), &[]);
    sb.berth_ok(&["volume", "create", "-d", "snapvol", "good"]);

    // (volume name, what the error must say); the plugin's deadline is 2 s.
    let cases = [("trap", "misbehave"), ("loop", "within"), ("oom", "memory")];
    for (name, says) in cases {
        let started = Instant::now();
        let out = sb.berth_fails(&["volume", "create", "-d", "misbehave", name]);
        let took = started.elapsed();
        assert!(out.stderr.contains("misbehave") && out.stderr.contains(says), "{name}: {}", out.describe());
        assert!(took < Duration::from_secs(4), "{name}: the error came after {took:?}, past the 2 s deadline");
        assert!(!sb.berth_ok(&["volume", "ls", "-q"]).contains(name), "{name}: no volume is left");
        // The plugin still serves, and so does everything else.
        sb.berth_ok(&["volume", "create", "-d", "misbehave", &format!("after-{name}")]);
        sb.berth_ok(&["run", "--rm", "-v", "good:/data", "busybox", "true"]);
    }

    // A mount plan outside the grant: the bind source /etc is not in its data dir.
    sb.berth_ok(&["volume", "create", "-d", "misbehave", "badplan"]);
    let out = sb.berth_fails(&["run", "--rm", "-v", "badplan:/data", "busybox", "ls", "/data"]);
    assert!(
        out.stderr.contains("misbehave") && out.stderr.contains("outside the plugin's data dir"),
        "{}",
        out.describe()
    );
    assert!(sb.berth_ok(&["ps", "-aq"]).is_empty(), "the refused container is not left behind");
    sb.berth_ok(&["volume", "rm", "badplan", "after-trap", "after-loop", "after-oom", "good"]);
    assert_no_leftover_mounts(&sb, &baseline);
}

#[test]
fn a_plugin_stuck_in_a_call_stalls_nothing_that_does_not_use_it() {
    let (sb, baseline) = sandbox_with(&["busybox"]);
    // The test plugin with a longer deadline, so there is time to look around while it hangs.
    let stuck = edited_plugin(&sb, "misbehave-wasm", "stuck", |m| {
        m.replace("name = \"misbehave\"", "name = \"stuck\"").replace("timeout_ms = 2000", "timeout_ms = 8000")
    });
    install(&sb, &stuck, &[]);
    sb.berth_ok(&["volume", "create", "-d", "stuck", "hang"]);
    sb.berth_ok(&["volume", "create", "localvol"]);

    let log = sb.file("hung-run.log");
    let mut hung = sb.berth_spawn(&["run", "--rm", "-v", "hang:/data", "busybox", "true"], &log);
    // Written by the plugin in its data dir, a filesystem mounted in the daemon's namespace.
    let marker = sb.in_daemon(&sb.root.join("plugins/stuck/data/stuck").display().to_string());
    common::poll_until(Duration::from_secs(10), "the plugin to get stuck in mount", || marker.exists());

    let timed = |args: &[&str]| {
        let started = Instant::now();
        let out = sb.berth(args);
        (out, started.elapsed())
    };
    let (out, took) = timed(&["ps", "-a"]);
    assert!(out.success() && took < Duration::from_secs(1), "ps took {took:?}: {}", out.describe());
    let (out, took) = timed(&["run", "--rm", "-v", "localvol:/v", "busybox", "echo", "fine"]);
    assert!(out.success() && out.stdout == "fine\n", "{}", out.describe());
    assert!(took < Duration::from_secs(3), "run without the stuck plugin took {took:?}");
    let (out, took) = timed(&["volume", "ls"]);
    assert!(out.success(), "{}", out.describe());
    assert!(took < Duration::from_secs(3), "volume ls took {took:?}");
    assert!(out.stdout.contains("localvol"), "the other drivers' volumes are listed: {}", out.describe());
    assert!(out.stderr.contains("stuck"), "a warning names the stuck plugin: {}", out.describe());
    assert!(hung.try_wait().ok().flatten().is_none(), "the run that uses the stuck plugin is still waiting");

    // At the deadline the stuck call becomes an error for its own request.
    let status = common::wait_child(&mut hung, Duration::from_secs(20));
    assert!(!status.success(), "the run on the stuck volume fails");
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(text.contains("stuck") && text.contains("within"), "its error names the plugin and the deadline: {text}");
    sb.berth_ok(&["volume", "rm", "hang"]);
    assert!(sb.berth_ok(&["volume", "ls", "-q"]).contains("localvol"));

    // A plugin stuck in `volume create` (`loop` spins until the deadline)
    // holds up only that create: other volumes are made, used and removed meanwhile.
    let log = sb.file("hung-create.log");
    let mut hung = sb.berth_spawn(&["volume", "create", "-d", "stuck", "loop"], &log);
    std::thread::sleep(Duration::from_millis(300));
    for args in [
        &["volume", "create", "other"][..],
        &["run", "--rm", "-v", "other:/v", "-v", "fresh:/f", "busybox", "true"],
        &["volume", "rm", "other", "fresh"],
    ] {
        let (out, took) = timed(args);
        assert!(out.success() && took < Duration::from_secs(3), "{args:?} took {took:?} while a create hung: {}", out.describe());
    }
    assert!(hung.try_wait().ok().flatten().is_none(), "the create on the stuck plugin is still waiting");
    let status = common::wait_child(&mut hung, Duration::from_secs(20));
    assert!(!status.success(), "the create on the stuck plugin fails at its deadline");
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(text.contains("stuck") && text.contains("within"), "its error names the plugin and the deadline: {text}");
    assert!(!sb.berth_ok(&["volume", "ls", "-q"]).lines().any(|l| l == "loop"), "a failed create leaves no volume");
    assert_no_leftover_mounts(&sb, &baseline);
}

#[test]
fn a_network_plugin_stuck_in_a_call_holds_up_only_its_network() {
    let (sb, _) = sandbox_with(&["busybox"]);
    // stucknet hangs in the call a network's `-o stuck=` names, until its 6 s deadline.
    install(&sb, &built_plugin("stucknet-wasm"), &[]);
    for (name, call) in [("sj", "join"), ("sd", "delete"), ("sl", "leave")] {
        sb.berth_ok(&["network", "create", "-d", "stucknet", "-o", &format!("stuck={call}"), name]);
    }
    sb.berth_ok(&["run", "-d", "--name", "c1", "busybox", "sleep", "120"]);
    sb.berth_ok(&["run", "-d", "--name", "c2", "busybox", "sleep", "120"]);
    let timed = |args: &[&str]| {
        let started = Instant::now();
        let out = sb.berth(args);
        (out, started.elapsed())
    };
    let quick = |args: &[&str], while_: &str| {
        let (out, took) = timed(args);
        assert!(out.success() && took < Duration::from_secs(3), "{args:?} took {took:?} while {while_}: {}", out.describe());
        out
    };
    // Written by the plugin when a call arrives where it hangs.
    let data = sb.in_daemon(&sb.root.join("plugins/stucknet/data").display().to_string());
    let hangs = |args: &[&str], call: &str| {
        let child = sb.berth_spawn(args, &sb.file(&format!("{call}.log")));
        common::poll_until(Duration::from_secs(5), &format!("the plugin to get stuck in {call}"), || data.join(format!("stuck-{call}")).exists());
        child
    };
    let ends = |mut child: std::process::Child, call: &str| {
        let status = common::wait_child(&mut child, Duration::from_secs(20));
        (status, std::fs::read_to_string(sb.file(&format!("{call}.log"))).unwrap_or_default())
    };

    // Stuck in join: other networks are made, used and removed meanwhile,
    // and the stuck one counts as in use.
    let connect = hangs(&["network", "connect", "sj", "c1"], "join");
    let while_ = "a connect hung";
    quick(&["network", "create", "other"], while_);
    quick(&["network", "connect", "other", "c2"], while_);
    quick(&["network", "disconnect", "other", "c2"], while_);
    quick(&["network", "rm", "other"], while_);
    quick(&["network", "ls"], while_);
    let out = sb.berth_fails(&["network", "rm", "sj"]);
    assert!(out.stderr.contains("active endpoints") && out.stderr.contains("c1"), "{}", out.describe());
    let (status, text) = ends(connect, "join");
    assert!(!status.success() && text.contains("stucknet") && text.contains("within"), "the connect fails at the deadline, naming the plugin: {text}");
    let networks = sb.berth_ok(&["inspect", "-f", "{{range $k, $v := .NetworkSettings.Networks}}{{$k}} {{end}}", "c1"]);
    assert_eq!(networks.trim(), "bridge", "a failed connect leaves the container as it was");
    sb.berth_ok(&["network", "rm", "sj"]);

    // Stuck in delete: the same, and the network is not joined or removed twice meanwhile.
    let rm = hangs(&["network", "rm", "sd"], "delete");
    let while_ = "a network rm hung";
    quick(&["network", "create", "other"], while_);
    quick(&["network", "rm", "other"], while_);
    let out = sb.berth_fails(&["network", "connect", "sd", "c2"]);
    assert!(out.stderr.contains("network sd is being removed"), "{}", out.describe());
    let out = sb.berth_fails(&["network", "rm", "sd"]);
    assert!(out.stderr.contains("being removed"), "{}", out.describe());
    let (status, text) = ends(rm, "delete");
    assert!(!status.success() && text.contains("stucknet") && text.contains("within"), "{text}");
    assert!(sb.berth_ok(&["network", "ls", "--format", "{{.Name}}"]).lines().any(|n| n == "sd"), "a network whose driver failed to delete it is kept");

    // Stuck in leave: a disconnect waits for the plugin alone, then the container is off the network.
    sb.berth_ok(&["network", "connect", "sl", "c2"]);
    let disconnect = hangs(&["network", "disconnect", "sl", "c2"], "leave");
    let while_ = "a disconnect hung";
    quick(&["network", "create", "other"], while_);
    quick(&["network", "rm", "other"], while_);
    let out = sb.berth_fails(&["network", "rm", "sl"]);
    assert!(out.stderr.contains("active endpoints") && out.stderr.contains("c2"), "{}", out.describe());
    let (status, text) = ends(disconnect, "leave");
    assert!(status.success(), "a leave that failed is logged and the endpoint released: {text}");
    let networks = sb.berth_ok(&["inspect", "-f", "{{range $k, $v := .NetworkSettings.Networks}}{{$k}} {{end}}", "c2"]);
    assert_eq!(networks.trim(), "bridge");
    sb.berth_ok(&["network", "rm", "sl"]);
    sb.berth_ok(&["rm", "-f", "c1", "c2"]);
}
