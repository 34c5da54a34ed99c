//! Storage backends as plugins: the example `snapvol` (volumes that start as
//! a point-in-time copy of another volume) installed as a WebAssembly
//! component and as a native dylib, used through `berth` and the real docker
//! CLI exactly like the in-tree `local` driver; its own volumes listed; the
//! plugin commands (`ls`, `inspect`, `disable` refusals, `set`, `rm`); and
//! a daemon restart with the plugin enabled.

mod common;

use std::fs;

use common::plugins::{built_plugin, edited_plugin, install};
use common::volumes::{assert_no_leftover_mounts, sandbox_with};
use common::Sandbox;

/// The snapshot story, with `cli` being berth or docker and `driver` the plugin's name.
fn snapshot_story(sb: &Sandbox, driver: &str, docker: bool) {
    let cli = |args: &[&str]| if docker { sb.docker_ok(args) } else { sb.berth_ok(args) };
    assert_eq!(cli(&["volume", "create", "-d", driver, "v1"]), "v1\n");
    cli(&["run", "--rm", "-v", "v1:/data", "busybox", "sh", "-c", "echo first > /data/note; mkdir /data/sub; echo deep > /data/sub/f"]);
    assert_eq!(cli(&["volume", "create", "-d", driver, "--opt", "from=v1", "v2"]), "v2\n");
    // v1 changes after the snapshot; v2 keeps the moment it was made.
    cli(&["run", "--rm", "-v", "v1:/data", "busybox", "sh", "-c", "echo second > /data/note"]);
    assert_eq!(cli(&["run", "--rm", "-v", "v2:/data", "busybox", "cat", "/data/note", "/data/sub/f"]), "first\ndeep\n");
    assert_eq!(cli(&["run", "--rm", "-v", "v1:/data", "busybox", "cat", "/data/note"]), "second\n");

    // The engine mounts a plugin's volume on a dir of its own (opened without
    // following symlinks) and gives the container that, not the plugin's path.
    cli(&["run", "-d", "--name", "holder", "-v", "v2:/data", "busybox", "sleep", "600"]);
    let ours = sb.run.join("volumes").join(driver).join("v2").display().to_string();
    assert!(sb.mountinfo().lines().any(|l| l.split(' ').nth(4) == Some(ours.as_str())), "{ours} is mounted:\n{}", sb.mountinfo());
    cli(&["rm", "-f", "holder"]);
    assert!(!sb.mountinfo().lines().any(|l| l.split(' ').nth(4) == Some(ours.as_str())), "{ours} is released with its last user");

    let ls = cli(&["volume", "ls", "--format", "{{.Driver}} {{.Name}}"]);
    assert!(ls.contains(&format!("{driver} v1\n")) && ls.contains(&format!("{driver} v2\n")), "{ls}");
    let mountpoint = cli(&["volume", "inspect", "-f", "{{.Mountpoint}}", "v2"]);
    let data_dir = sb.root.join("plugins").join(driver).join("data");
    assert!(
        mountpoint.trim().starts_with(&data_dir.display().to_string()),
        "a plugin volume's data lives in the plugin's data dir {}: {mountpoint}",
        data_dir.display()
    );

    let bad = sb.berth_fails(&["volume", "create", "-d", driver, "--opt", "from=nope", "v3"]);
    assert!(bad.stderr.contains("nope"), "a snapshot of a missing volume names it: {}", bad.describe());
    let bad = sb.berth_fails(&["volume", "create", "-d", driver, "--opt", "colour=red", "v3"]);
    assert!(bad.stderr.contains("colour"), "an unknown option is named: {}", bad.describe());
    assert!(!sb.berth_ok(&["volume", "ls", "-q"]).contains("v3"), "failed creates leave no volume");

    cli(&["volume", "rm", "v1", "v2"]);
    assert_eq!(sb.berth_ok(&["volume", "ls", "-q", "-f", &format!("driver={driver}")]), "");
}

#[test]
fn a_wasm_storage_backend_snapshots_volumes_for_berth_users() {
    let (sb, baseline) = sandbox_with(&["busybox"]);
    let out = install(&sb, &built_plugin("snapvol-wasm"), &[]);
    assert_eq!(out, "Installed plugin snapvol\n");
    snapshot_story(&sb, "snapvol", false);
    assert_no_leftover_mounts(&sb, &baseline);
}

#[test]
fn a_plugins_data_dir_holds_no_more_than_its_grant() {
    let (sb, baseline) = sandbox_with(&["busybox"]);
    let dir = edited_plugin(&sb, "snapvol-wasm", "snapvol-16m", |m| m.replace("data_mib = 1024", "data_mib = 16"));
    install(&sb, &dir, &[]);
    let data_dir = sb.root.join("plugins/snapvol/data").display().to_string();
    let own_fs = |info: &str| info.lines().any(|l| l.split(' ').nth(4) == Some(data_dir.as_str()) && l.contains(" - ext4 "));
    assert!(own_fs(&sb.mountinfo()), "the data dir is an ext4 of its own:\n{}", sb.mountinfo());

    sb.berth_ok(&["volume", "create", "-d", "snapvol", "small"]);
    let fill = ["sh", "-c", "dd if=/dev/zero of=/data/fill bs=1M count=32"];
    let out = sb.berth(&[&["run", "--rm", "-v", "small:/data", "busybox"][..], &fill[..]].concat());
    assert!(!out.success() && out.stderr.contains("No space left on device"), "a container fills the plugin's 16 MiB:\n{}", out.describe());
    let size = sb.berth_ok(&["run", "--rm", "-v", "small:/data", "busybox", "stat", "-c", "%s", "/data/fill"]);
    let size: u64 = size.trim().parse().expect("stat prints a size");
    assert!(size > 8 << 20 && size <= 16 << 20, "what landed is within the grant: {size} bytes");
    // The limit is the plugin's alone: a local volume is not bounded by it.
    sb.berth_ok(&[&["run", "--rm", "-v", "big:/data", "busybox"][..], &fill[..]].concat());

    sb.berth_ok(&["volume", "rm", "small", "big"]);
    sb.berth_ok(&["plugin", "rm", "-f", "snapvol"]);
    assert!(!own_fs(&sb.mountinfo()), "plugin rm unmounts the data filesystem:\n{}", sb.mountinfo());
    assert_no_leftover_mounts(&sb, &baseline);
}

#[test]
fn the_same_backend_as_a_native_dylib_behaves_the_same() {
    let (sb, baseline) = sandbox_with(&["busybox"]);
    install(&sb, &built_plugin("snapvol-dylib"), &[]);
    snapshot_story(&sb, "snapvol-native", false);
    assert_no_leftover_mounts(&sb, &baseline);
}

#[test]
fn the_docker_cli_uses_plugin_volumes_and_lists_plugins() {
    let (sb, baseline) = sandbox_with(&["busybox"]);
    install(&sb, &built_plugin("snapvol-wasm"), &[]);
    snapshot_story(&sb, "snapvol", true);

    let ls = sb.docker_ok(&["plugin", "ls"]);
    let lines: Vec<&str> = ls.lines().collect();
    assert!(lines[0].starts_with("ID") && lines[0].contains("NAME") && lines[0].contains("ENABLED"), "{ls}");
    assert!(lines.len() == 2 && lines[1].contains("snapvol") && lines[1].trim_end().ends_with("true"), "{ls}");
    assert_eq!(sb.docker_ok(&["plugin", "inspect", "-f", "{{.Enabled}} {{.Config.Interface.Types}}", "snapvol"]), "true [docker.volumedriver/1.0]\n");
    // `docker inspect NAME` without --type finds plugins too.
    assert_eq!(sb.docker_ok(&["inspect", "-f", "{{.Name}}", "snapvol"]), "snapvol\n");
    assert_no_leftover_mounts(&sb, &baseline);
}

#[test]
fn volume_ls_shows_the_volumes_a_plugin_reports_not_only_berths() {
    let (sb, _) = sandbox_with(&[]);
    install(&sb, &built_plugin("snapvol-wasm"), &[]);
    // Made behind berth's back, in the plugin's own data dir (its own
    // filesystem, mounted in the daemon's namespace: seen through the daemon).
    let handmade = sb.in_daemon(&sb.root.join("plugins/snapvol/data/volumes/handmade/_data").display().to_string());
    fs::create_dir_all(&handmade).expect("making a volume by hand");
    fs::write(handmade.join("f"), b"x").expect("writing into it");
    assert_eq!(sb.berth_ok(&["volume", "ls", "--format", "{{.Driver}} {{.Name}}"]), "snapvol handmade\n");
    assert_eq!(sb.berth_ok(&["volume", "inspect", "-f", "{{.Driver}}", "handmade"]), "snapvol\n");
}

#[test]
fn plugin_commands_refuse_what_would_lose_data_and_survive_a_restart() {
    let (mut sb, baseline) = sandbox_with(&["busybox"]);
    let ls = sb.berth_ok(&["plugin", "ls"]);
    assert_eq!(ls.lines().count(), 1, "nothing installed yet: {ls}");

    // Without the grant and without a terminal: refused, nothing installed.
    let dir = built_plugin("snapvol-wasm");
    let out = sb.berth_fails(&["plugin", "install", &dir.display().to_string()]);
    assert!(out.stdout.contains("is requesting the following privileges") && out.stdout.contains("mounts: [bind]"), "{}", out.describe());
    assert!(out.stderr.contains("--grant-all-permissions"), "{}", out.describe());
    assert_eq!(sb.berth_ok(&["plugin", "ls", "-q"]), "");

    install(&sb, &dir, &["--alias", "snap"]);
    assert!(install_fails(&sb, &dir, &["--alias", "snap"]).contains("already"), "a second install under the same name is refused");
    assert_eq!(sb.berth_ok(&["plugin", "ls", "--format", "{{.Name}} {{.Enabled}}"]), "snap true\n");
    sb.berth_ok(&["volume", "create", "-d", "snap", "keep"]);
    sb.berth_ok(&["run", "--rm", "-v", "keep:/data", "busybox", "sh", "-c", "echo kept > /data/f"]);

    let out = sb.berth_fails(&["plugin", "disable", "snap"]);
    assert!(out.stderr.contains("in use") && out.stderr.contains("volume keep"), "{}", out.describe());
    let out = sb.berth_fails(&["plugin", "rm", "snap"]);
    assert!(out.stderr.contains("enabled"), "{}", out.describe());
    let out = sb.berth_fails(&["plugin", "set", "snap", "colour=red"]);
    assert!(out.stderr.contains("enabled") || out.stderr.contains("colour"), "{}", out.describe());

    // Restart the daemon: the plugin comes back enabled, its volume works.
    sb.kill9();
    sb.restart();
    assert_eq!(sb.berth_ok(&["plugin", "ls", "--format", "{{.Name}} {{.Enabled}}"]), "snap true\n");
    assert_eq!(sb.berth_ok(&["run", "--rm", "-v", "keep:/data", "busybox", "cat", "/data/f"]), "kept\n");

    sb.berth_ok(&["plugin", "disable", "-f", "snap"]);
    assert_eq!(sb.berth_ok(&["plugin", "inspect", "-f", "{{.Enabled}}", "snap"]), "false\n");
    let out = sb.berth_fails(&["run", "--rm", "-v", "keep:/data", "busybox", "true"]);
    assert!(out.stderr.contains("snap"), "a disabled plugin's volume names the plugin: {}", out.describe());
    // Disabled stays disabled across a restart.
    sb.kill9();
    sb.restart();
    assert_eq!(sb.berth_ok(&["plugin", "ls", "--format", "{{.Name}} {{.Enabled}}"]), "snap false\n");
    sb.berth_ok(&["plugin", "enable", "snap"]);
    assert_eq!(sb.berth_ok(&["run", "--rm", "-v", "keep:/data", "busybox", "cat", "/data/f"]), "kept\n");

    sb.berth_ok(&["volume", "rm", "keep"]);
    sb.berth_ok(&["plugin", "disable", "snap"]);
    assert_eq!(sb.berth_ok(&["plugin", "rm", "snap"]), "snap\n");
    assert_eq!(sb.berth_ok(&["plugin", "ls", "-q"]), "");
    assert!(!sb.root.join("plugins/snap").exists(), "rm deletes the plugin's directory");
    assert_no_leftover_mounts(&sb, &baseline);
}

fn install_fails(sb: &Sandbox, dir: &std::path::Path, extra: &[&str]) -> String {
    let dir = dir.display().to_string();
    let mut args = vec!["plugin", "install", "--grant-all-permissions"];
    args.extend_from_slice(extra);
    args.push(&dir);
    sb.berth_fails(&args).stderr
}

#[test]
fn broken_plugins_are_refused_at_install_with_the_reason() {
    let (sb, _) = sandbox_with(&[]);
    let unknown = edited_plugin(&sb, "snapvol-wasm", "unknown-field", |m| format!("{m}\nflavour = \"vanilla\"\n"));
    let err = install_fails(&sb, &unknown, &[]);
    assert!(err.contains("flavour"), "an unknown plugin.toml field is named: {err}");

    let err = install_fails(&sb, &built_plugin("wrongcontract-wasm"), &[]);
    assert!(err.contains("berth:plugin@1"), "a component for another contract major version is refused: {err}");

    let dylib_as_wasm = edited_plugin(&sb, "snapvol-dylib", "not-wasm", |m| {
        m.replace("runtime = \"dylib\"", "runtime = \"wasm\"")
    });
    let err = install_fails(&sb, &dylib_as_wasm, &[]);
    assert!(!err.is_empty(), "a dylib declared as wasm is refused");

    let missing = edited_plugin(&sb, "snapvol-wasm", "missing-entry", |m| m.replace("plugin.wasm", "gone.wasm"));
    let err = install_fails(&sb, &missing, &[]);
    assert!(err.contains("gone.wasm"), "a missing entry is named: {err}");

    assert_eq!(sb.berth_ok(&["plugin", "ls", "-q"]), "", "failed installs leave nothing");
    let leftovers: Vec<_> = fs::read_dir(sb.root.join("plugins"))
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(leftovers.is_empty(), "nothing left in the plugin dir: {leftovers:?}");
}
