//! `berth volume create|ls|inspect|rm|prune`, `inspect --type volume` and
//! `system df -v` as a Docker user sees them: output, filters, formats,
//! errors, and what is left on disk.

mod common;

use common::volumes::{
    assert_no_leftover_mounts, is_random_name, sandbox_with, volume_at, volume_names,
};

#[test]
fn create_ls_inspect_and_rm_show_what_docker_shows() {
    let (sb, baseline) = sandbox_with(&[]);
    assert_eq!(sb.berth_ok(&["volume", "create", "data"]), "data\n");
    // Creating it again is not an error (Docker returns the existing volume).
    assert_eq!(sb.berth_ok(&["volume", "create", "data"]), "data\n");
    let out = sb.berth_ok(&[
        "volume",
        "create",
        "--label",
        "tier=db",
        "--label",
        "bare",
        "-o",
        "type=tmpfs",
        "-o",
        "device=tmpfs",
        "-o",
        "o=size=1m",
        "vol10",
    ]);
    assert_eq!(out, "vol10\n");
    sb.berth_ok(&["volume", "create", "vol2"]);
    let anon = sb.berth_ok(&["volume", "create"]).trim().to_string();
    assert!(
        is_random_name(&anon),
        "a volume created without a name gets 64 hex digits: {anon:?}"
    );

    // Natural order (vol2 before vol10), Docker's table. Where the random
    // anonymous name falls depends on its first characters, so it is only
    // required to be listed.
    let ls = sb.berth_ok(&["volume", "ls"]);
    let anon_line = format!("local     {anon}");
    assert!(ls.lines().any(|l| l == anon_line), "{ls}");
    let named: Vec<&str> = ls.lines().filter(|l| *l != anon_line).collect();
    assert_eq!(named, ["DRIVER    VOLUME NAME", "local     data", "local     vol2", "local     vol10"], "{ls}");
    let names = volume_names(&sb);
    assert!(names.contains(&anon), "{names:?}");
    assert_eq!(names.iter().filter(|n| **n != anon).collect::<Vec<_>>(), ["data", "vol2", "vol10"]);

    let q = |filter: &str| {
        sb.berth_ok(&["volume", "ls", "-q", "-f", filter])
            .lines()
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    assert_eq!(q("name=vol"), ["vol2", "vol10"]);
    assert_eq!(q("label=tier=db"), ["vol10"]);
    assert_eq!(q("label=bare"), ["vol10"]);
    assert_eq!(q("label=tier=web"), Vec::<String>::new());
    assert_eq!(q("driver=local").len(), 4);
    assert_eq!(q("dangling=true").len(), 4, "no container uses any of them");
    assert_eq!(q("dangling=false"), Vec::<String>::new());
    let out = sb.berth_fails(&["volume", "ls", "-f", "colour=red"]);
    assert!(
        out.stderr.contains("invalid filter 'colour'"),
        "{}",
        out.describe()
    );

    let out = sb.berth_ok(&[
        "volume",
        "ls",
        "--format",
        "{{.Name}}|{{.Driver}}|{{.Scope}}|{{.Labels}}",
        "-f",
        "name=vol10",
    ]);
    assert_eq!(out, "vol10|local|local|bare=,tier=db\n");

    // inspect: Docker's fields, the local driver's mountpoint under --root.
    let out = sb.berth_ok(&["volume", "inspect", "data"]);
    let v: serde_json::Value = serde_json::from_str(&out).expect("volume inspect prints JSON");
    let v = &v[0];
    let mut keys: Vec<&str> = v
        .as_object()
        .expect("an object")
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            "CreatedAt",
            "Driver",
            "Labels",
            "Mountpoint",
            "Name",
            "Options",
            "Scope"
        ],
        "{v}"
    );
    assert_eq!(v["Name"], "data");
    assert_eq!(v["Driver"], "local");
    assert_eq!(v["Scope"], "local");
    let mountpoint = sb.root.join("volumes/data/_data");
    assert_eq!(v["Mountpoint"], mountpoint.display().to_string());
    assert!(
        mountpoint.is_dir(),
        "the local driver keeps data in {}",
        mountpoint.display()
    );
    let created = v["CreatedAt"].as_str().expect("CreatedAt");
    assert!(
        chrono::DateTime::parse_from_rfc3339(created).is_ok(),
        "CreatedAt is RFC 3339: {created}"
    );
    assert_eq!(
        sb.berth_ok(&[
            "volume",
            "inspect",
            "-f",
            "{{.Options.type}} {{.Options.o}} {{index .Labels \"tier\"}}",
            "vol10"
        ]),
        "tmpfs size=1m db\n"
    );
    // The generic inspect finds volumes, with and without --type.
    assert_eq!(
        sb.berth_ok(&[
            "inspect",
            "--type",
            "volume",
            "-f",
            "{{.Name}} {{.Driver}}",
            "data"
        ]),
        "data local\n"
    );
    assert_eq!(
        sb.berth_ok(&["inspect", "-f", "{{.Mountpoint}}", "data"])
            .trim(),
        mountpoint.display().to_string()
    );
    let out = sb.berth_fails(&["inspect", "--type", "volume", "nope"]);
    assert!(
        out.stderr.contains("No such volume: nope"),
        "{}",
        out.describe()
    );
    let out = sb.berth_fails(&["volume", "inspect", "data", "nope"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        out.stderr.contains("nope") && out.stderr.contains("no such volume"),
        "{}",
        out.describe()
    );
    assert!(
        out.stdout.contains("\"Name\": \"data\""),
        "the found one is still printed:\n{}",
        out.describe()
    );

    // Bad names are Docker's error and leave nothing.
    for bad in ["_under", "bad/name", "sp ace"] {
        let out = sb.berth_fails(&["volume", "create", bad]);
        let want = format!("\"{bad}\" includes invalid characters for a local volume name, only \"[a-zA-Z0-9][a-zA-Z0-9_.-]\" are allowed");
        assert!(out.stderr.contains(&want), "{bad}: {}", out.describe());
    }
    let out = sb.berth_fails(&["volume", "create", "a"]);
    assert!(
        out.stderr.contains(
            "volume name is too short, names should be at least two alphanumeric characters"
        ),
        "{}",
        out.describe()
    );
    let out = sb.berth_fails(&["volume", "create", "-d", "nosuchdriver", "x1"]);
    assert!(out.stderr.contains("nosuchdriver"), "{}", out.describe());
    assert_eq!(volume_names(&sb).len(), 4, "failed creates left no volume");

    // rm: several names, one missing: the others go, exit 1, Docker's message.
    let out = sb.berth(&["volume", "rm", "data", "nope", "vol2"]);
    assert_eq!(out.status.code(), Some(1), "{}", out.describe());
    assert_eq!(out.stdout, "data\nvol2\n");
    assert!(
        out.stderr.contains("Error response from daemon") && out.stderr.contains("no such volume"),
        "{}",
        out.describe()
    );
    assert!(
        !sb.root.join("volumes/data").exists(),
        "volume rm removes the volume's directory"
    );
    // -f: a missing volume is not an error.
    assert_eq!(sb.berth_ok(&["volume", "rm", "-f", "nope"]), "nope\n");
    sb.berth_ok(&["volume", "rm", "vol10", &anon]);
    assert!(volume_names(&sb).is_empty());
    assert_no_leftover_mounts(&sb, &baseline);
}

#[test]
fn rm_refuses_a_volume_in_use_naming_the_container_and_prune_takes_only_unused_ones() {
    let (sb, baseline) = sandbox_with(&["busybox"]);
    sb.berth_ok(&["volume", "create", "used"]);
    sb.berth_ok(&["volume", "create", "spare"]);
    sb.berth_ok(&["volume", "create", "--label", "keep=no", "labelled"]);
    let runner = sb.berth_ok(&[
        "run",
        "-d",
        "--name",
        "runner",
        "-v",
        "used:/data",
        "busybox",
        "sleep",
        "1000",
    ]);
    let runner = runner.trim();
    // A stopped container still uses its volumes.
    sb.berth_ok(&["run", "--name", "stopped", "-v", "/anon", "busybox", "true"]);
    let stopped_anon = volume_at(&sb, "stopped", "/anon");

    for args in [
        &["volume", "rm", "used"][..],
        &["volume", "rm", "-f", "used"],
    ] {
        let out = sb.berth_fails(args);
        assert_eq!(out.status.code(), Some(1));
        assert!(
            out.stderr.contains("volume is in use") && out.stderr.contains(runner),
            "{args:?}: {}",
            out.describe()
        );
    }
    let out = sb.berth_fails(&["volume", "rm", &stopped_anon]);
    let stopped_id = sb.inspect_format("stopped", "{{.Id}}");
    assert!(
        out.stderr.contains(&stopped_id),
        "a stopped user is named too: {}",
        out.describe()
    );

    let mut dangling: Vec<String> = sb
        .berth_ok(&["volume", "ls", "-q", "-f", "dangling=true"])
        .lines()
        .map(str::to_string)
        .collect();
    dangling.sort();
    assert_eq!(dangling, ["labelled", "spare"]);
    assert_eq!(
        sb.berth_ok(&["ps", "-a", "-f", "volume=used", "--format", "{{.Names}}"]),
        "runner\n"
    );
    assert_eq!(
        sb.berth_ok(&["ps", "-a", "-f", "volume=/anon", "--format", "{{.Names}}"]),
        "stopped\n"
    );
    assert_eq!(
        sb.berth_ok(&["ps", "-a", "-f", "volume=spare", "--format", "{{.Names}}"]),
        ""
    );

    // Docker 28: prune takes unused anonymous volumes only; the stopped
    // container's anonymous volume is in use.
    assert_eq!(
        sb.berth_ok(&["volume", "prune", "-f"]),
        "Total reclaimed space: 0B\n"
    );
    sb.berth_ok(&["rm", "stopped"]);
    assert!(
        volume_names(&sb).contains(&stopped_anon),
        "rm without -v keeps anonymous volumes"
    );
    let out = sb.berth_ok(&["volume", "prune", "-f"]);
    assert!(
        out.starts_with(&format!(
            "Deleted Volumes:\n{stopped_anon}\n\nTotal reclaimed space: "
        )),
        "{out}"
    );
    let mut left = volume_names(&sb);
    left.sort();
    assert_eq!(left, ["labelled", "spare", "used"]);

    // -a with a label filter: only the unused labelled one.
    let out = sb.berth_ok(&["volume", "prune", "-a", "-f", "--filter", "label=keep=no"]);
    assert!(out.starts_with("Deleted Volumes:\nlabelled\n\n"), "{out}");
    // -a: every unused volume, named too; the one in use stays.
    let out = sb.berth_ok(&["volume", "prune", "-a", "-f"]);
    assert!(out.starts_with("Deleted Volumes:\nspare\n\n"), "{out}");
    assert_eq!(volume_names(&sb), ["used"]);
    let out = sb.berth_fails(&["volume", "prune", "-a", "-f", "--filter", "all=1"]);
    assert!(
        out.stderr.contains("conflicting options"),
        "{}",
        out.describe()
    );

    // The prompt, declined: nothing removed.
    sb.berth_ok(&["rm", "-f", "runner"]);
    let answer = sb.file("no");
    common::write_file(&answer, b"n\n");
    let out = sb.berth_stdin(&["volume", "prune", "-a"], &answer);
    assert!(out.success(), "{}", out.describe());
    assert!(
        out.stdout.starts_with(
            "WARNING! This will remove all local volumes not used by at least one container.\nAre you sure you want to continue? [y/N] "
        ),
        "{}",
        out.describe()
    );
    assert_eq!(volume_names(&sb), ["used"]);
    let yes = sb.file("yes");
    common::write_file(&yes, b"y\n");
    let out = sb.berth_stdin(&["volume", "prune", "-a"], &yes);
    assert!(
        out.stdout.contains("Deleted Volumes:\nused\n"),
        "{}",
        out.describe()
    );
    assert_no_leftover_mounts(&sb, &baseline);
}

#[test]
fn rm_v_and_run_rm_remove_anonymous_volumes_and_keep_named_ones() {
    let (sb, baseline) = sandbox_with(&["volumebox"]);
    sb.berth_ok(&[
        "run",
        "--name",
        "ca",
        "-v",
        "/anon1",
        "-v",
        "keepme:/keep",
        "volumebox",
        "true",
    ]);
    let anon1 = volume_at(&sb, "ca", "/anon1");
    // The image's VOLUME /declared is an anonymous volume too.
    let declared = volume_at(&sb, "ca", "/declared");
    assert!(
        is_random_name(&anon1) && is_random_name(&declared),
        "{anon1} {declared}"
    );
    let labels = sb.berth_ok(&["volume", "inspect", "-f", "{{json .Labels}}", &anon1]);
    assert_eq!(labels.trim(), r#"{"com.docker.volume.anonymous":""}"#);
    let mut names = volume_names(&sb);
    names.sort();
    let mut expected = vec![anon1.clone(), declared.clone(), "keepme".to_string()];
    expected.sort();
    assert_eq!(names, expected);

    sb.berth_ok(&["rm", "-v", "ca"]);
    assert_eq!(
        volume_names(&sb),
        ["keepme"],
        "rm -v takes the anonymous volumes and keeps the named one"
    );
    assert!(!sb.root.join("volumes").join(&anon1).exists());

    sb.berth_ok(&[
        "run",
        "--rm",
        "-v",
        "/anon2",
        "-v",
        "keepme:/keep",
        "volumebox",
        "sh",
        "-c",
        "echo kept > /keep/f",
    ]);
    assert_eq!(
        volume_names(&sb),
        ["keepme"],
        "--rm takes the anonymous volumes"
    );
    assert_eq!(
        std::fs::read_to_string(sb.root.join("volumes/keepme/_data/f")).expect("named volume data"),
        "kept\n"
    );

    // --rm with -d: removed when the container exits on its own.
    let id = sb.berth_ok(&[
        "run",
        "-d",
        "--rm",
        "-v",
        "/anon3",
        "volumebox",
        "sh",
        "-c",
        "sleep 0.3",
    ]);
    common::poll_until(
        std::time::Duration::from_secs(20),
        "the --rm container is gone",
        || !sb.container_ids().contains(&id.trim().to_string()),
    );
    common::poll_until(
        std::time::Duration::from_secs(10),
        "its anonymous volumes are gone",
        || volume_names(&sb) == ["keepme"],
    );
    assert_no_leftover_mounts(&sb, &baseline);
}

#[test]
fn system_df_counts_volumes_and_their_sizes() {
    let (sb, baseline) = sandbox_with(&["busybox"]);
    sb.berth_ok(&[
        "run",
        "--name",
        "writer",
        "-v",
        "big:/data",
        "busybox",
        "sh",
        "-c",
        "dd if=/dev/zero of=/data/f bs=1000 count=300 2>/dev/null",
    ]);
    sb.berth_ok(&["volume", "create", "idle"]);
    common::write_file(&sb.root.join("volumes/idle/_data/g"), &vec![7u8; 100_000]);

    let out = sb.berth_ok(&["system", "df"]);
    let line = out
        .lines()
        .find(|l| l.starts_with("Local Volumes"))
        .unwrap_or_else(|| panic!("no volume line:\n{out}"));
    let cols: Vec<&str> = line
        .split("  ")
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .collect();
    assert_eq!(
        cols,
        ["Local Volumes", "2", "1", "400kB", "100kB (25%)"],
        "{out}"
    );

    let out = sb.berth_ok(&["system", "df", "-v"]);
    let section = out
        .split("Local Volumes space usage:\n\n")
        .nth(1)
        .expect("a volumes section");
    let rows: Vec<Vec<&str>> = section
        .lines()
        .take_while(|l| !l.is_empty())
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        rows,
        [
            vec!["VOLUME", "NAME", "LINKS", "SIZE"],
            vec!["big", "1", "300kB"],
            vec!["idle", "0", "100kB"]
        ],
        "{out}"
    );
    let containers = out
        .split("Containers space usage:\n\n")
        .nth(1)
        .expect("a containers section");
    let writer = containers
        .lines()
        .find(|l| l.ends_with("writer"))
        .expect("the writer row");
    let header = containers.lines().next().expect("header");
    // Columns are aligned in characters (the command may hold a multi-byte `…`).
    let col = header[..header.find("LOCAL VOLUMES").expect("LOCAL VOLUMES column")]
        .chars()
        .count();
    let cell: String = writer.chars().skip(col).collect();
    assert_eq!(cell.split_whitespace().next(), Some("1"), "{containers}");
    assert_no_leftover_mounts(&sb, &baseline);
}
