//! The real docker CLI against berth: `docker volume create/ls/inspect/rm/prune`,
//! `docker run -v`, `--mount`, `--volumes-from`, `docker inspect --type volume`
//! and `docker system df -v`.

mod common;

use common::volumes::{assert_no_leftover_mounts, sandbox_with};

#[test]
fn docker_volume_commands_and_run_mounts() {
    let (sb, baseline) = sandbox_with(&["busybox"]);
    assert_eq!(sb.docker_ok(&["volume", "create", "dv"]), "dv\n");
    let out = sb.docker_ok(&[
        "volume",
        "create",
        "--label",
        "a=b",
        "-o",
        "type=tmpfs",
        "-o",
        "device=tmpfs",
        "-o",
        "o=size=1m",
        "dt",
    ]);
    assert_eq!(out, "dt\n");
    let ls = sb.docker_ok(&["volume", "ls"]);
    assert_eq!(
        ls.lines().collect::<Vec<_>>(),
        ["DRIVER    VOLUME NAME", "local     dt", "local     dv"],
        "{ls}"
    );
    assert_eq!(
        sb.docker_ok(&["volume", "ls", "-q", "-f", "label=a=b"]),
        "dt\n"
    );
    assert_eq!(
        sb.docker_ok(&["volume", "ls", "-q", "-f", "dangling=true"]),
        "dt\ndv\n"
    );

    let out = sb.docker_ok(&["volume", "inspect", "dv"]);
    let v: serde_json::Value =
        serde_json::from_str(&out).expect("docker volume inspect prints JSON");
    assert_eq!(v[0]["Name"], "dv");
    assert_eq!(
        v[0]["Mountpoint"],
        sb.root.join("volumes/dv/_data").display().to_string()
    );
    assert_eq!(
        sb.docker_ok(&["volume", "inspect", "-f", "{{.Options.o}}", "dt"]),
        "size=1m\n"
    );
    assert_eq!(
        sb.docker_ok(&[
            "inspect",
            "--type",
            "volume",
            "-f",
            "{{.Driver}} {{.Scope}}",
            "dv"
        ]),
        "local local\n"
    );
    let out = sb.docker(&["volume", "inspect", "nope"]);
    assert!(
        !out.success() && out.stderr.contains("no such volume"),
        "{}",
        out.describe()
    );

    sb.docker_ok(&[
        "run",
        "--rm",
        "-v",
        "dv:/data",
        "busybox",
        "sh",
        "-c",
        "echo via-docker > /data/f",
    ]);
    let out = sb.docker_ok(&[
        "run",
        "--rm",
        "--mount",
        "type=volume,src=dv,dst=/d,readonly",
        "busybox",
        "cat",
        "/d/f",
    ]);
    assert_eq!(out, "via-docker\n");
    let out = sb.docker(&[
        "run",
        "--rm",
        "--mount",
        "type=volume,src=dv,dst=/d,readonly",
        "busybox",
        "touch",
        "/d/g",
    ]);
    assert!(
        !out.success() && out.stderr.contains("Read-only file system"),
        "{}",
        out.describe()
    );

    let host = sb.file("dockerbind");
    let h = host.display().to_string();
    sb.docker_ok(&[
        "run",
        "--name",
        "store",
        "-v",
        "dv:/data",
        "-v",
        "/anon",
        "-v",
        &format!("{h}:/h"),
        "busybox",
        "sh",
        "-c",
        "echo bound > /h/x",
    ]);
    assert_eq!(
        std::fs::read_to_string(host.join("x")).expect("bind written"),
        "bound\n"
    );
    let out = sb.docker_ok(&[
        "run",
        "--rm",
        "--volumes-from",
        "store:ro",
        "busybox",
        "cat",
        "/data/f",
        "/h/x",
    ]);
    assert_eq!(out, "via-docker\nbound\n");
    let mounts = sb.docker_ok(&[
        "inspect",
        "-f",
        "{{range .Mounts}}{{.Type}}:{{.Destination}} {{end}}",
        "store",
    ]);
    let mut kinds: Vec<&str> = mounts.split_whitespace().collect();
    kinds.sort();
    assert_eq!(kinds, ["bind:/h", "volume:/anon", "volume:/data"]);
    let out = sb.docker(&[
        "run",
        "--rm",
        "--mount",
        &format!("type=bind,src={h}/missing,dst=/m"),
        "busybox",
        "true",
    ]);
    assert!(
        !out.success() && out.stderr.contains("bind source path does not exist"),
        "{}",
        out.describe()
    );
    let out = sb.docker(&[
        "run",
        "--rm",
        "--mount",
        "type=tmpfs,dst=/t,tmpfs-size=1m",
        "busybox",
        "dd",
        "if=/dev/zero",
        "of=/t/f",
        "bs=1024",
        "count=2048",
    ]);
    assert!(
        !out.success() && out.stderr.contains("No space left on device"),
        "{}",
        out.describe()
    );

    let out = sb.docker(&["volume", "rm", "dv"]);
    assert!(
        !out.success() && out.stderr.contains("volume is in use"),
        "{}",
        out.describe()
    );
    let df = sb.docker_ok(&["system", "df", "-v"]);
    assert!(df.contains("Local Volumes space usage:"), "{df}");
    let row = df
        .lines()
        .find(|l| l.starts_with("dv "))
        .unwrap_or_else(|| panic!("no dv row:\n{df}"));
    assert_eq!(
        row.split_whitespace().nth(1),
        Some("1"),
        "dv has one link: {row}"
    );

    sb.docker_ok(&["rm", "-v", "store"]);
    assert_eq!(
        sb.docker_ok(&["volume", "prune", "-f"]),
        "Total reclaimed space: 0B\n"
    );
    let out = sb.docker_ok(&["volume", "prune", "-a", "-f"]);
    let mut deleted: Vec<&str> = out.lines().skip(1).take_while(|l| !l.is_empty()).collect();
    deleted.sort();
    assert_eq!(deleted, ["dt", "dv"], "{out}");
    assert_eq!(sb.docker_ok(&["volume", "ls", "-q"]), "");
    sb.docker_ok(&["volume", "create", "gone"]);
    assert_eq!(sb.docker_ok(&["volume", "rm", "gone"]), "gone\n");
    assert_no_leftover_mounts(&sb, &baseline);
}
