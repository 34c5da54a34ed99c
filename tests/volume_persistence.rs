//! Data outlives its container: a real database (Debian's SQLite) writes
//! to a named volume and to a host bind mount; after `rm -f`, a new
//! container — and the host's own sqlite3 for the bind — reads it back. A
//! running container's volumes (a tmpfs-backed one too) survive a daemon
//! crash and restart, and usage is still counted afterwards.

mod common;

use std::process::Command;
use std::time::Duration;

use common::volumes::{assert_no_leftover_mounts, mounts_under, sandbox_with, volume_names};

const SCHEMA: &str =
    "PRAGMA journal_mode=WAL; CREATE TABLE notes(id INTEGER PRIMARY KEY, body TEXT NOT NULL); \
INSERT INTO notes(body) VALUES ('first'), ('second'), ('third');";
const QUERY: &str = "SELECT id, body FROM notes ORDER BY id;";
const ROWS: &str = "1|first\n2|second\n3|third\n";

/// The host's sqlite3 reading `db` (the same Debian binary the image carries).
fn host_query(db: &std::path::Path) -> String {
    let out = Command::new(common::images::sqlite3_path())
        .arg(db)
        .arg(QUERY)
        .output()
        .expect("running the host's sqlite3");
    assert!(
        out.status.success(),
        "host sqlite3 {}: {}",
        db.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn a_sqlite_database_on_a_named_volume_outlives_its_container() {
    let (sb, baseline) = sandbox_with(&["sqlite"]);
    sb.berth_ok(&[
        "run",
        "-d",
        "--name",
        "db1",
        "-v",
        "dbdata:/var/lib/db",
        "sqlite",
        "sleep",
        "1000",
    ]);
    assert_eq!(
        sb.berth_ok(&["exec", "db1", "sqlite3", "/var/lib/db/app.db", SCHEMA]),
        "wal\n"
    );
    assert_eq!(
        sb.berth_ok(&["exec", "db1", "sqlite3", "/var/lib/db/app.db", QUERY]),
        ROWS
    );
    sb.berth_ok(&["rm", "-f", "db1"]);
    assert_eq!(
        volume_names(&sb),
        ["dbdata"],
        "rm -f keeps the named volume"
    );

    let out = sb.berth_ok(&[
        "run",
        "--rm",
        "-v",
        "dbdata:/var/lib/db",
        "sqlite",
        "sqlite3",
        "/var/lib/db/app.db",
        QUERY,
    ]);
    assert_eq!(out, ROWS, "a new container reads the rows back");
    let out = sb.berth_ok(&[
        "run",
        "--rm",
        "-v",
        "dbdata:/var/lib/db",
        "sqlite",
        "sqlite3",
        "/var/lib/db/app.db",
        "PRAGMA integrity_check;",
    ]);
    assert_eq!(out, "ok\n");
    assert_eq!(
        host_query(&sb.root.join("volumes/dbdata/_data/app.db")),
        ROWS
    );
    assert_no_leftover_mounts(&sb, &baseline);
}

#[test]
fn a_sqlite_database_on_a_bind_mount_is_left_in_the_host_directory() {
    let (sb, baseline) = sandbox_with(&["sqlite"]);
    // Missing: `-v` creates it.
    let host = sb.file("dbhost");
    let bind = format!("{}:/var/lib/db", host.display());
    sb.berth_ok(&[
        "run",
        "--name",
        "db2",
        "-v",
        &bind,
        "sqlite",
        "sqlite3",
        "/var/lib/db/app.db",
        SCHEMA,
    ]);
    sb.berth_ok(&["rm", "db2"]);
    assert!(
        host.join("app.db").is_file(),
        "the database file is in {}",
        host.display()
    );
    assert_eq!(host_query(&host.join("app.db")), ROWS);
    let out = sb.berth_ok(&[
        "run",
        "--rm",
        "-v",
        &bind,
        "sqlite",
        "sqlite3",
        "/var/lib/db/app.db",
        QUERY,
    ]);
    assert_eq!(out, ROWS);
    assert!(volume_names(&sb).is_empty(), "a bind mount makes no volume");
    assert_no_leftover_mounts(&sb, &baseline);
}

#[test]
fn a_running_containers_volumes_survive_a_daemon_restart() {
    let (mut sb, baseline) = sandbox_with(&["volumebox"]);
    sb.berth_ok(&[
        "volume",
        "create",
        "-o",
        "type=tmpfs",
        "-o",
        "device=tmpfs",
        "-o",
        "o=size=4m",
        "tv",
    ]);
    let id = sb.berth_ok(&[
        "run",
        "-d",
        "--name",
        "keeper",
        "-v",
        "survive:/data",
        "-v",
        "tv:/t",
        "volumebox",
        "sh",
        "-c",
        "echo before > /t/mark; while :; do echo tick >> /data/log; sleep 0.1; done",
    ]);
    let id = id.trim().to_string();
    let log = sb.root.join("volumes/survive/_data/log");
    let size = || std::fs::metadata(&log).map(|m| m.len()).unwrap_or(0);
    common::poll_until(
        Duration::from_secs(10),
        "the container writes to its volume",
        || size() > 0,
    );

    // The local driver mounts a tmpfs volume on the host, at its _data, once.
    let tv_data = sb.root.join("volumes/tv/_data");
    assert_eq!(mounts_under(&sb, &tv_data), [tv_data.display().to_string()]);

    sb.kill9();
    sb.restart();
    assert_eq!(sb.inspect_format("keeper", "{{.State.Running}}"), "true");
    let grown = size();
    common::poll_until(
        Duration::from_secs(10),
        "it keeps writing after the restart",
        || size() > grown,
    );
    // The tmpfs volume is the same mount: its content is still there, for
    // the keeper and for a new container.
    assert_eq!(
        sb.berth_ok(&["exec", "keeper", "cat", "/t/mark"]),
        "before\n"
    );
    assert_eq!(
        sb.berth_ok(&["run", "--rm", "-v", "tv:/t", "volumebox", "cat", "/t/mark"]),
        "before\n"
    );
    assert_eq!(
        mounts_under(&sb, &tv_data),
        [tv_data.display().to_string()],
        "readopted, not mounted again"
    );
    // Usage is still counted: both are refused, naming the keeper.
    for v in ["survive", "tv"] {
        let out = sb.berth_fails(&["volume", "rm", v]);
        assert!(
            out.stderr.contains("volume is in use") && out.stderr.contains(&id),
            "{v}: {}",
            out.describe()
        );
    }
    // The last user stops: nothing of the volumes stays mounted.
    sb.berth_ok(&["stop", "-t", "1", "keeper"]);
    let left = mounts_under(&sb, &sb.root.join("volumes"));
    assert!(
        left.is_empty(),
        "volume mounts left after the last user stopped: {left:?}"
    );
    sb.berth_ok(&["rm", "keeper"]);
    sb.berth_ok(&["volume", "rm", "survive", "tv"]);
    assert_no_leftover_mounts(&sb, &baseline);
}
