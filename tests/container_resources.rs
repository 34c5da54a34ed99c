//! A user watches and adjusts running containers with berth's CLI: `top`,
//! `stats`, `update` (new limits reach the cgroup), `attach`, and `events`.

mod common;

use std::time::Duration;

use common::images;
use common::Sandbox;

/// A sandbox with `testbox:latest` loaded.
fn with_testbox() -> Sandbox {
    let sb = Sandbox::start();
    sb.load_image(&images::testbox(), "testbox:latest");
    sb
}

/// The container's cgroup directory in `controller`.
fn cgroup_dir(id: &str, controller: &str) -> std::path::PathBuf {
    let prefix = format!("/sys/fs/cgroup/{controller}/");
    let dirs: Vec<_> =
        common::cgroup_dirs(id).into_iter().filter(|d| d.to_string_lossy().starts_with(&prefix)).collect();
    assert_eq!(dirs.len(), 1, "one {controller} cgroup for {id}: {dirs:?}");
    dirs[0].clone()
}

#[test]
fn top_and_stats_show_the_containers_processes_and_usage() {
    let sb = with_testbox();
    let id = sb.berth_ok(&[
        "run",
        "-d",
        "--name",
        "busy",
        "--memory",
        "64m",
        "testbox",
        "sh",
        "-c",
        "sleep 1000 & exec sleep 999",
    ]);
    let id = id.trim().to_string();
    common::poll_until(Duration::from_secs(10), "both sleeps run", || {
        sb.berth_ok(&["top", "busy"]).lines().filter(|l| l.contains("sleep")).count() == 2
    });
    let top = sb.berth_ok(&["top", "busy"]);
    let header: Vec<&str> = top.lines().next().unwrap_or_default().split_whitespace().collect();
    assert_eq!(
        header,
        ["UID", "PID", "PPID", "C", "STIME", "TTY", "TIME", "CMD"],
        "top's default ps -ef columns:\n{top}"
    );
    let pid = sb.inspect_format("busy", "{{.State.Pid}}");
    assert!(
        top.lines().any(|l| l.split_whitespace().nth(1) == Some(pid.as_str())),
        "top lists PID 1 by its host PID {pid}:\n{top}"
    );
    let top = sb.berth_ok(&["top", "busy", "-o", "pid,comm"]);
    assert_eq!(
        top.lines().next().map(|l| l.split_whitespace().collect::<Vec<_>>()),
        Some(vec!["PID", "COMMAND"]),
        "{top}"
    );

    let stats = sb.berth_ok(&["stats", "--no-stream", "--format", "{{.Name}} {{.PIDs}} {{.MemUsage}}", "busy"]);
    let parts: Vec<&str> = stats.split_whitespace().collect();
    assert_eq!(parts[..2], ["busy", "2"], "stats: name and PIDs:\n{stats}");
    assert_eq!(parts.last().copied(), Some("64MiB"), "the memory limit is shown:\n{stats}");
    let table = sb.berth_ok(&["stats", "--no-stream"]);
    assert!(table.lines().next().unwrap_or_default().starts_with("CONTAINER ID"), "{table}");
    assert!(table.lines().skip(1).any(|l| l.starts_with(&id[..12])), "{table}");
    sb.berth_ok(&["rm", "-f", "busy"]);
}

#[test]
fn update_changes_the_limits_of_a_running_container() {
    let sb = with_testbox();
    let id = sb
        .berth_ok(&["run", "-d", "--memory", "64m", "--pids-limit", "50", "testbox", "sleep", "1000"])
        .trim()
        .to_string();
    let memory = cgroup_dir(&id, "memory");
    let limit = std::fs::read_to_string(memory.join("memory.limit_in_bytes")).expect("memory.limit_in_bytes");
    assert_eq!(limit.trim(), (64u64 << 20).to_string());
    sb.berth_ok(&["update", "--memory", "128m", "--pids-limit", "30", &id]);
    let limit = std::fs::read_to_string(memory.join("memory.limit_in_bytes")).expect("memory.limit_in_bytes");
    assert_eq!(limit.trim(), (128u64 << 20).to_string(), "update reached the cgroup");
    let pids = std::fs::read_to_string(cgroup_dir(&id, "pids").join("pids.max")).expect("pids.max");
    assert_eq!(pids.trim(), "30");
    assert_eq!(
        sb.inspect_format(&id, "{{.HostConfig.Memory}} {{.HostConfig.PidsLimit}}"),
        format!("{} 30", 128u64 << 20)
    );
    // Limits survive in the record: a restart applies the updated ones.
    sb.berth_ok(&["restart", "-t", "0", &id]);
    let limit = std::fs::read_to_string(cgroup_dir(&id, "memory").join("memory.limit_in_bytes")).expect("limit");
    assert_eq!(limit.trim(), (128u64 << 20).to_string(), "the restarted container has the updated limit");
    sb.berth_ok(&["rm", "-f", &id]);
}

#[test]
fn cpu_limits_reach_the_cgroup() {
    let sb = with_testbox();
    let id = sb
        .berth_ok(&[
            "run",
            "-d",
            "--cpus",
            "0.5",
            "--cpu-shares",
            "512",
            "--cpuset-cpus",
            "0",
            "testbox",
            "sleep",
            "1000",
        ])
        .trim()
        .to_string();
    let cpu = cgroup_dir(&id, "cpu");
    let quota = std::fs::read_to_string(cpu.join("cpu.cfs_quota_us")).expect("cfs_quota_us");
    let period = std::fs::read_to_string(cpu.join("cpu.cfs_period_us")).expect("cfs_period_us");
    let (quota, period): (f64, f64) = (quota.trim().parse().expect("quota"), period.trim().parse().expect("period"));
    assert!((quota / period - 0.5).abs() < 1e-6, "--cpus 0.5 is quota/period 0.5, got {quota}/{period}");
    assert_eq!(std::fs::read_to_string(cpu.join("cpu.shares")).expect("cpu.shares").trim(), "512");
    let cpus = std::fs::read_to_string(cgroup_dir(&id, "cpuset").join("cpuset.cpus")).expect("cpuset.cpus");
    assert_eq!(cpus.trim(), "0");
    assert_eq!(sb.inspect_format(&id, "{{.HostConfig.NanoCpus}} {{.HostConfig.CpuShares}}"), "500000000 512");
    sb.berth_ok(&["rm", "-f", &id]);
}

#[test]
fn attach_joins_a_running_container_and_returns_its_exit_code() {
    let sb = with_testbox();
    sb.berth_ok(&["run", "-d", "--name", "later", "testbox", "sh", "-c", "sleep 1; echo from-later; exit 4"]);
    let out = sb.berth(&["attach", "later"]);
    assert_eq!(out.stdout, "from-later\n", "{}", out.describe());
    assert_eq!(out.status.code(), Some(4), "attach exits with the container's code:\n{}", out.describe());
}

#[test]
fn events_since_list_the_container_lifecycle_in_order() {
    let sb = with_testbox();
    let since = chrono::Utc::now().timestamp() - 1;
    sb.berth_ok(&["run", "--name", "evt", "testbox", "true"]);
    sb.berth_ok(&["rm", "evt"]);
    let until = chrono::Utc::now().timestamp() + 1;
    let out = sb.berth_ok(&[
        "events",
        "--since",
        &since.to_string(),
        "--until",
        &until.to_string(),
        "--filter",
        "container=evt",
        "--format",
        "{{.Type}} {{.Action}}",
    ]);
    let actions: Vec<&str> = out.lines().collect();
    let wanted = ["container create", "container start", "container die", "container destroy"];
    let positions: Vec<usize> = wanted
        .iter()
        .map(|w| actions.iter().position(|a| a == w).unwrap_or_else(|| panic!("no `{w}` event:\n{out}")))
        .collect();
    assert!(positions.windows(2).all(|p| p[0] < p[1]), "events in order create, start, die, destroy:\n{out}");
}
