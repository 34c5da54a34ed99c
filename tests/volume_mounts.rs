//! Mounts on `run`: `-v` binds and volumes, `--mount`, `--tmpfs`,
//! `--volumes-from`, read-only mounts, copy-up of the image's files into an
//! empty volume, and inspect's `Mounts` — each as Docker behaves.

mod common;

use std::os::unix::fs::MetadataExt;
use std::time::Duration;

use common::volumes::{
    assert_no_leftover_mounts, is_random_name, mounts_of, sandbox_with, volume_at, volume_names,
};
use serde_json::json;

#[test]
fn an_empty_volume_gets_the_image_files_with_owners_and_modes_unless_nocopy() {
    let (sb, baseline) = sandbox_with(&["volumebox"]);
    let script = "stat -c '%a %u %g %n' /seed /seed/owned /seed/sub /seed/sub/deep /seed/readme; readlink /seed/link; cat /seed/owned";
    let out = sb.berth_ok(&[
        "run",
        "--rm",
        "-v",
        "seeded:/seed",
        "volumebox",
        "sh",
        "-c",
        script,
    ]);
    assert_eq!(
        out,
        "750 0 0 /seed\n640 1000 2000 /seed/owned\n700 0 0 /seed/sub\n600 0 0 /seed/sub/deep\n644 0 0 /seed/readme\nreadme\napp's\n"
    );
    // The copy is in the volume itself, on the host, and stays there.
    let data = sb.root.join("volumes/seeded/_data");
    let owned = std::fs::metadata(data.join("owned")).expect("copied file in the volume");
    assert_eq!(
        (owned.uid(), owned.gid(), owned.mode() & 0o7777),
        (1000, 2000, 0o640)
    );
    assert_eq!(
        std::fs::read_to_string(data.join("sub/deep")).expect("deep"),
        "deep\n"
    );
    // Once the volume has content, mounting it elsewhere copies nothing more.
    sb.berth_ok(&[
        "run",
        "--rm",
        "-v",
        "seeded:/declared",
        "volumebox",
        "sh",
        "-c",
        "rm /declared/readme",
    ]);
    assert!(
        !data.join("from-image").exists(),
        "a non-empty volume is not copied into"
    );
    assert_eq!(
        sb.berth_ok(&[
            "run",
            "--rm",
            "-v",
            "seeded:/seed",
            "volumebox",
            "ls",
            "/seed"
        ]),
        "link\nowned\nsub\n"
    );

    // nocopy, in both syntaxes: the volume stays empty.
    let out = sb.berth_ok(&[
        "run",
        "--rm",
        "--mount",
        "type=volume,src=nocp,dst=/seed,volume-nocopy",
        "volumebox",
        "ls",
        "-A",
        "/seed",
    ]);
    assert_eq!(out, "");
    let out = sb.berth_ok(&[
        "run",
        "--rm",
        "-v",
        "nocp2:/seed:nocopy",
        "volumebox",
        "ls",
        "-A",
        "/seed",
    ]);
    assert_eq!(out, "");
    assert_eq!(
        std::fs::read_dir(sb.root.join("volumes/nocp/_data"))
            .expect("nocp data")
            .count(),
        0
    );

    // An anonymous volume is copied into too.
    let out = sb.berth_ok(&[
        "run",
        "--rm",
        "-v",
        "/seed",
        "volumebox",
        "cat",
        "/seed/readme",
    ]);
    assert_eq!(out, "seeded by the image\n");
    assert_no_leftover_mounts(&sb, &baseline);
}

#[test]
fn a_bind_mount_hides_the_image_directory_and_v_creates_a_missing_host_path() {
    let (sb, baseline) = sandbox_with(&["volumebox"]);
    let host = sb.file("hostseed");
    std::fs::create_dir(&host).expect("host dir");
    common::write_file(&host.join("hostfile"), b"from the host\n");
    let h = host.to_str().expect("utf-8");
    assert_eq!(
        sb.berth_ok(&[
            "run",
            "--rm",
            "-v",
            &format!("{h}:/seed"),
            "volumebox",
            "ls",
            "-A",
            "/seed"
        ]),
        "hostfile\n"
    );
    let out = sb.berth_ok(&[
        "run",
        "--rm",
        "--mount",
        &format!("type=bind,src={h},dst=/seed"),
        "volumebox",
        "ls",
        "-A",
        "/seed",
    ]);
    assert_eq!(out, "hostfile\n");
    assert_eq!(
        std::fs::read_dir(&host).expect("host dir").count(),
        1,
        "nothing was copied into the bind source"
    );

    // -v makes a missing host directory (with its parents), as Docker does.
    let missing = sb.file("made/by/dash-v");
    let m = missing.to_str().expect("utf-8");
    sb.berth_ok(&[
        "run",
        "--rm",
        "-v",
        &format!("{m}:/data"),
        "volumebox",
        "sh",
        "-c",
        "echo hi > /data/f",
    ]);
    assert!(missing.is_dir(), "-v created {m}");
    assert_eq!(
        std::fs::read_to_string(missing.join("f")).expect("written through the bind"),
        "hi\n"
    );

    // --mount type=bind with a missing source: Docker's error, nothing made.
    let absent = sb.file("not/there");
    let a = absent.to_str().expect("utf-8");
    let before = sb.container_ids();
    let out = sb.berth_fails(&[
        "run",
        "--rm",
        "--mount",
        &format!("type=bind,source={a},target=/data"),
        "volumebox",
        "true",
    ]);
    assert_eq!(out.status.code(), Some(125), "{}", out.describe());
    assert!(
        out.stderr.contains(&format!(
            "invalid mount config for type \"bind\": bind source path does not exist: {a}"
        )),
        "{}",
        out.describe()
    );
    assert!(
        !absent.exists() && !sb.file("not").exists(),
        "a failed --mount bind created {a}"
    );
    assert_eq!(
        sb.container_ids(),
        before,
        "no container was left by the failed create"
    );

    // A failed create leaves no volume it made either.
    let out = sb.berth_fails(&[
        "run",
        "--rm",
        "-v",
        "fresh:/f",
        "--mount",
        &format!("type=bind,source={a},target=/data"),
        "volumebox",
        "true",
    ]);
    assert_eq!(out.status.code(), Some(125));
    assert!(
        volume_names(&sb).is_empty(),
        "the failed create left volumes: {:?}",
        volume_names(&sb)
    );

    // The CLI's own --mount errors, before anything is sent.
    let out = sb.berth_fails(&["run", "--mount", "type=bind,src=/x", "volumebox", "true"]);
    assert_eq!(out.status.code(), Some(125));
    assert!(
        out.stderr.contains(
            "invalid argument \"type=bind,src=/x\" for \"--mount\" flag: target is required"
        ),
        "{}",
        out.describe()
    );
    let out = sb.berth_fails(&["run", "-v", "a::/b", "volumebox", "true"]);
    assert!(
        out.stderr
            .contains("invalid spec: a::/b: empty section between colons"),
        "{}",
        out.describe()
    );
    // The daemon's: a relative container path.
    let out = sb.berth_fails(&["run", "--rm", "-v", "named:relative", "volumebox", "true"]);
    assert_eq!(out.status.code(), Some(125));
    assert!(
        out.stderr.contains("must be absolute"),
        "{}",
        out.describe()
    );
    assert_no_leftover_mounts(&sb, &baseline);
}

#[test]
fn inspect_and_ps_show_mounts_as_docker_does() {
    let (sb, baseline) = sandbox_with(&["volumebox"]);
    let host = sb.file("h");
    std::fs::create_dir(&host).expect("host dir");
    let h = host.display().to_string();
    sb.berth_ok(&[
        "create",
        "--name",
        "mounter",
        "-v",
        "named:/n",
        "-v",
        "/anon",
        "-v",
        &format!("{h}:/h:ro"),
        "--mount",
        "type=tmpfs,dst=/tm",
        "--mount",
        "type=volume,src=viamount,dst=/vm",
        "--tmpfs",
        "/tf",
        "volumebox",
    ]);
    let mounts = mounts_of(&sb, "mounter");
    let anon = volume_at(&sb, "mounter", "/anon");
    let declared = volume_at(&sb, "mounter", "/declared");
    assert!(is_random_name(&anon) && is_random_name(&declared));
    let vol = |name: &str| {
        sb.root
            .join("volumes")
            .join(name)
            .join("_data")
            .display()
            .to_string()
    };
    let expected = json!([
        {"Type": "volume", "Name": anon, "Source": vol(&anon), "Destination": "/anon", "Driver": "local", "Mode": "", "RW": true, "Propagation": ""},
        {"Type": "volume", "Name": declared, "Source": vol(&declared), "Destination": "/declared", "Driver": "local", "Mode": "", "RW": true, "Propagation": ""},
        {"Type": "bind", "Source": h, "Destination": "/h", "Mode": "ro", "RW": false, "Propagation": "rprivate"},
        {"Type": "volume", "Name": "named", "Source": vol("named"), "Destination": "/n", "Driver": "local", "Mode": "z", "RW": true, "Propagation": ""},
        {"Type": "tmpfs", "Source": "", "Destination": "/tm", "Mode": "", "RW": true, "Propagation": ""},
        {"Type": "volume", "Name": "viamount", "Source": vol("viamount"), "Destination": "/vm", "Driver": "local", "Mode": "z", "RW": true, "Propagation": ""},
    ]);
    assert_eq!(
        json!(mounts),
        expected,
        "--tmpfs is HostConfig.Tmpfs only, as in Docker"
    );
    let hc = sb.inspect_container("mounter")["HostConfig"].clone();
    assert_eq!(hc["Binds"], json!(["named:/n", format!("{h}:/h:ro")]));
    assert_eq!(hc["Tmpfs"], json!({"/tf": ""}));
    // The CLI sends a bare `-v /anon` as Config.Volumes, as docker's does.
    let config_volumes = sb.inspect_container("mounter")["Config"]["Volumes"].clone();
    assert_eq!(config_volumes["/anon"], json!({}), "{config_volumes}");

    let out = sb.berth_ok(&["ps", "-a", "--format", "{{.LocalVolumes}} {{.Mounts}}"]);
    let (count, names) = out.trim().split_once(' ').expect("two columns");
    assert_eq!(count, "4");
    let mut listed: Vec<&str> = names.split(',').collect();
    listed.sort();
    let mut want = vec![
        &anon[..14],
        &declared[..14],
        h.as_str(),
        "named",
        "viamount",
        "",
    ];
    want.sort();
    let listed: Vec<String> = listed
        .iter()
        .map(|s| s.trim_end_matches('…').to_string())
        .collect();
    let want: Vec<String> = want
        .iter()
        .map(|s| {
            if s.len() > 15 {
                s.chars().take(14).collect()
            } else {
                s.to_string()
            }
        })
        .collect();
    assert_eq!(listed, want, "{out}");
    assert_no_leftover_mounts(&sb, &baseline);
}

#[test]
fn volumes_from_shares_volumes_and_binds_through_a_chain_and_ro_is_erofs() {
    let (sb, baseline) = sandbox_with(&["volumebox"]);
    let host = sb.file("hostbind");
    let h = host.display().to_string();
    sb.berth_ok(&[
        "run",
        "--name",
        "store",
        "-v",
        "shared:/shared",
        "-v",
        "/anonstore",
        "-v",
        &format!("{h}:/hostbind"),
        "volumebox",
        "sh",
        "-c",
        "echo from-store > /shared/a; echo anon > /anonstore/b; echo host > /hostbind/c",
    ]);
    // A container made from the store can itself be a source.
    sb.berth_ok(&[
        "create",
        "--name",
        "middle",
        "--volumes-from",
        "store",
        "volumebox",
    ]);
    let out = sb.berth_ok(&[
        "run",
        "--rm",
        "--volumes-from",
        "middle",
        "volumebox",
        "cat",
        "/shared/a",
        "/anonstore/b",
        "/hostbind/c",
    ]);
    assert_eq!(out, "from-store\nanon\nhost\n");
    let store_mounts = mounts_of(&sb, "store");
    let middle_mounts = mounts_of(&sb, "middle");
    let key = |m: &serde_json::Value| {
        (
            m["Type"].clone(),
            m["Name"].clone(),
            m["Source"].clone(),
            m["Destination"].clone(),
        )
    };
    assert_eq!(
        middle_mounts.iter().map(key).collect::<Vec<_>>(),
        store_mounts.iter().map(key).collect::<Vec<_>>()
    );

    // :ro makes every one of them read-only.
    sb.berth_ok(&[
        "create",
        "--name",
        "reader",
        "--volumes-from",
        "store:ro",
        "volumebox",
    ]);
    assert!(
        mounts_of(&sb, "reader").iter().all(|m| m["RW"] == false),
        "{:?}",
        mounts_of(&sb, "reader")
    );
    for path in ["/shared/new", "/anonstore/new", "/hostbind/new"] {
        let out = sb.berth(&[
            "run",
            "--rm",
            "--volumes-from",
            "store:ro",
            "volumebox",
            "sh",
            "-c",
            &format!("echo x > {path}"),
        ]);
        assert!(!out.success(), "{path} was writable:\n{}", out.describe());
        assert!(
            out.stderr.contains("Read-only file system"),
            "{path}: {}",
            out.describe()
        );
    }
    let out = sb.berth_fails(&["create", "--volumes-from", "nosuch", "volumebox"]);
    assert!(out.stderr.contains("nosuch"), "{}", out.describe());

    // Two running containers on one volume see each other's files.
    sb.berth_ok(&[
        "run",
        "-d",
        "--name",
        "w1",
        "-v",
        "shared:/s",
        "volumebox",
        "sh",
        "-c",
        "echo one > /s/one; sleep 1000",
    ]);
    sb.berth_ok(&[
        "run",
        "-d",
        "--name",
        "w2",
        "--volumes-from",
        "w1",
        "volumebox",
        "sh",
        "-c",
        "echo two > /s/two; sleep 1000",
    ]);
    common::poll_until(Duration::from_secs(10), "both files are written", || {
        sb.berth(&["exec", "w1", "cat", "/s/two"]).success()
            && sb.berth(&["exec", "w2", "cat", "/s/one"]).success()
    });
    assert_eq!(sb.berth_ok(&["exec", "w1", "cat", "/s/two"]), "two\n");
    assert_eq!(
        sb.berth_ok(&["exec", "w2", "cat", "/s/one", "/s/a"]),
        "one\nfrom-store\n"
    );
    assert_no_leftover_mounts(&sb, &baseline);
}

#[test]
fn read_only_mounts_refuse_writes_with_erofs() {
    let (sb, baseline) = sandbox_with(&["volumebox"]);
    let host = sb.file("rohost");
    std::fs::create_dir(&host).expect("host dir");
    let h = host.display().to_string();
    for (flag, value) in [
        ("-v", "rovol:/data:ro".to_string()),
        (
            "--mount",
            "type=volume,src=rovol,dst=/data,readonly".to_string(),
        ),
        ("-v", format!("{h}:/data:ro")),
        ("--mount", format!("type=bind,src={h},dst=/data,ro=true")),
    ] {
        let out = sb.berth(&[
            "run",
            "--rm",
            flag,
            &value,
            "volumebox",
            "sh",
            "-c",
            "echo x > /data/f",
        ]);
        assert!(
            !out.success(),
            "{flag} {value} was writable:\n{}",
            out.describe()
        );
        assert!(
            out.stderr.contains("Read-only file system"),
            "{flag} {value}: {}",
            out.describe()
        );
    }
    assert_eq!(std::fs::read_dir(&host).expect("host dir").count(), 0);
    // Reading works, and the same volume mounted rw elsewhere is writable.
    sb.berth_ok(&[
        "run",
        "--rm",
        "-v",
        "rovol:/data",
        "volumebox",
        "sh",
        "-c",
        "echo rw > /data/f",
    ]);
    assert_eq!(
        sb.berth_ok(&[
            "run",
            "--rm",
            "-v",
            "rovol:/data:ro",
            "volumebox",
            "cat",
            "/data/f"
        ]),
        "rw\n"
    );
    assert_no_leftover_mounts(&sb, &baseline);
}

#[test]
fn tmpfs_mounts_and_tmpfs_volumes_are_size_limited() {
    let (sb, baseline) = sandbox_with(&["volumebox"]);
    let fill = |dir: &str| {
        format!("dd if=/dev/zero of={dir}/f bs=1024 count=512 && stat -c %a {dir} && dd if=/dev/zero of={dir}/g bs=1024 count=1024")
    };
    let cases: Vec<(Vec<String>, &str, &str)> = vec![
        (
            vec!["--tmpfs".into(), "/t:size=1m,mode=1777".into()],
            "/t",
            "1777",
        ),
        (
            vec![
                "--mount".into(),
                "type=tmpfs,dst=/t,tmpfs-size=1m,tmpfs-mode=1770".into(),
            ],
            "/t",
            "1770",
        ),
    ];
    for (flags, dir, mode) in cases {
        let mut args: Vec<String> = vec!["run".into(), "--rm".into()];
        args.extend(flags.clone());
        args.extend(["volumebox".into(), "sh".into(), "-c".into(), fill(dir)]);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = sb.berth(&args);
        assert!(
            !out.success(),
            "{flags:?}: writing past the size worked:\n{}",
            out.describe()
        );
        assert!(
            out.stdout.contains(mode),
            "{flags:?}: mode: {}",
            out.describe()
        );
        assert!(
            out.stderr.contains("No space left on device"),
            "{flags:?}: {}",
            out.describe()
        );
    }
    // A local volume with tmpfs options: the same limit, and its content
    // lives as long as the volume is mounted by someone.
    sb.berth_ok(&[
        "volume",
        "create",
        "-o",
        "type=tmpfs",
        "-o",
        "device=tmpfs",
        "-o",
        "o=size=1m",
        "tv",
    ]);
    let out = sb.berth(&[
        "run",
        "--rm",
        "-v",
        "tv:/t",
        "volumebox",
        "sh",
        "-c",
        &fill("/t"),
    ]);
    assert!(
        !out.success() && out.stderr.contains("No space left on device"),
        "{}",
        out.describe()
    );
    assert_eq!(
        sb.berth_ok(&["volume", "inspect", "-f", "{{.Options.type}}", "tv"]),
        "tmpfs\n"
    );
    assert_no_leftover_mounts(&sb, &baseline);
}
