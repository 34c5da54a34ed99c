//! A user works with a container's files through berth's CLI: `cp` both
//! ways, `diff`, `export`, `commit` (the writable layer becomes an image
//! layer), and the json-file log rotating with `--log-opt`.

mod common;

use std::io::Read;

use common::images;
use common::Sandbox;

/// A sandbox with `testbox:latest` loaded.
fn with_testbox() -> Sandbox {
    let sb = Sandbox::start();
    sb.load_image(&images::testbox(), "testbox:latest");
    sb
}

/// Paths of the entries in a tar file, without a leading `./` or `/`.
fn tar_paths(path: &std::path::Path) -> Vec<String> {
    let file = std::fs::File::open(path).unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    let mut ar = tar::Archive::new(file);
    let mut out = Vec::new();
    for entry in ar.entries().expect("tar entries") {
        let entry = entry.expect("tar entry");
        let p = entry.path().expect("entry path").to_string_lossy().into_owned();
        out.push(p.trim_start_matches("./").trim_start_matches('/').trim_end_matches('/').to_string());
    }
    out
}

#[test]
fn cp_copies_files_in_and_out_and_never_through_a_symlink_to_the_host() {
    let sb = with_testbox();
    sb.berth_ok(&["run", "-d", "--name", "files", "testbox", "sleep", "1000"]);
    let src = sb.file("in.txt");
    common::write_file(&src, b"copied in\n");
    sb.berth_ok(&["cp", src.to_str().expect("utf-8"), "files:/srv/in.txt"]);
    assert_eq!(sb.berth_ok(&["exec", "files", "cat", "/srv/in.txt"]), "copied in\n");

    let out = sb.file("motd.out");
    sb.berth_ok(&["cp", "files:/srv/motd", out.to_str().expect("utf-8")]);
    assert_eq!(std::fs::read_to_string(&out).expect("copied out"), "served from /srv\n");

    // `-` streams a tar to stdout.
    let out = sb.berth(&["cp", "files:/srv/motd", "-"]);
    assert!(out.success(), "{}", out.describe());
    let mut ar = tar::Archive::new(out.stdout.as_bytes());
    let mut entries = ar.entries().expect("tar from cp -");
    let mut first = entries.next().expect("one entry").expect("entry");
    assert_eq!(first.path().expect("path").to_string_lossy(), "motd");
    let mut text = String::new();
    first.read_to_string(&mut text).expect("entry data");
    assert_eq!(text, "served from /srv\n");

    // Through `/evil -> /` both directions stay in the container.
    let marker = common::unique_marker("berth-cp-evil");
    let host_path = std::path::Path::new("/tmp").join(&marker);
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        sb.berth_ok(&["cp", src.to_str().expect("utf-8"), &format!("files:/evil/tmp/{marker}")]);
        assert!(!host_path.exists(), "cp wrote through the symlink to the host: {}", host_path.display());
        assert_eq!(sb.berth_ok(&["exec", "files", "cat", &format!("/tmp/{marker}")]), "copied in\n");
        let out = sb.file("passwd.out");
        sb.berth_ok(&["cp", "files:/evil/etc/passwd", out.to_str().expect("utf-8")]);
        assert_eq!(std::fs::read_to_string(&out).expect("copied"), images::PASSWD, "the container's passwd");
    }));
    let _ = std::fs::remove_file(&host_path);
    if let Err(p) = result {
        std::panic::resume_unwind(p);
    }
    let out = sb.berth_fails(&["cp", "files:/no/such/file", sb.file("x").to_str().expect("utf-8")]);
    assert!(out.stderr.contains("/no/such/file"), "cp of a missing path names it:\n{}", out.describe());
    sb.berth_ok(&["rm", "-f", "files"]);
}

#[test]
fn diff_export_and_commit_see_the_writable_layer() {
    let sb = with_testbox();
    let script = "echo new > /new.txt && rm /srv/motd && mkdir /srv/sub && echo changed > /tmp/inside-the-image";
    sb.berth_ok(&["run", "--name", "changed", "testbox", "sh", "-c", script]);

    let diff = sb.berth_ok(&["diff", "changed"]);
    let lines: Vec<&str> = diff.lines().collect();
    for expected in ["A /new.txt", "C /srv", "D /srv/motd", "A /srv/sub", "C /tmp/inside-the-image"] {
        assert!(lines.contains(&expected), "diff lists `{expected}`:\n{diff}");
    }

    let exported = sb.file("changed.tar");
    sb.berth_ok(&["export", "-o", exported.to_str().expect("utf-8"), "changed"]);
    let paths = tar_paths(&exported);
    assert!(paths.iter().any(|p| p == "new.txt"), "export has the new file");
    assert!(paths.iter().any(|p| p == "bin/busybox"), "export has the image's files");
    assert!(!paths.iter().any(|p| p == "srv/motd"), "export lacks the deleted file");

    let id = sb.berth_ok(&["commit", "-c", "ENV COMMITTED=yes", "changed", "snap:1"]);
    assert!(id.trim().starts_with("sha256:"), "commit prints the image ID: {id:?}");
    let out =
        sb.berth_ok(&["run", "--rm", "snap:1", "sh", "-c", "cat /new.txt /tmp/inside-the-image; echo $COMMITTED"]);
    assert_eq!(out, "new\nchanged\nyes\n", "the committed image has the container's changes and the change");
    let out = sb.berth(&["run", "--rm", "snap:1", "ls", "/srv/motd"]);
    assert!(!out.success(), "a file deleted in the container is deleted in the image:\n{}", out.describe());
    let layers = sb.inspect("snap:1")["RootFS"]["Layers"].as_array().map(Vec::len);
    assert_eq!(layers, Some(3), "one layer on top of testbox's two");
    // An image in use by a container cannot be removed without -f.
    sb.berth_ok(&["create", "--name", "user", "snap:1", "true"]);
    let out = sb.berth_fails(&["rmi", "snap:1"]);
    assert!(out.stderr.contains("container"), "rmi names the conflict:\n{}", out.describe());
}

#[test]
fn the_json_file_log_rotates_with_max_size_and_max_file() {
    let sb = with_testbox();
    let script = "i=0; while [ $i -lt 400 ]; do echo line-$i-padding-padding-padding-padding; i=$((i+1)); done";
    sb.berth_ok(&[
        "run",
        "--name",
        "chatty",
        "--log-opt",
        "max-size=4k",
        "--log-opt",
        "max-file=3",
        "testbox",
        "sh",
        "-c",
        script,
    ]);
    let path = sb.inspect_format("chatty", "{{.LogPath}}");
    let dir = std::path::Path::new(&path).parent().expect("log dir").to_path_buf();
    let name = std::path::Path::new(&path).file_name().expect("log name").to_string_lossy().into_owned();
    let mut logs: Vec<String> = std::fs::read_dir(&dir)
        .expect("log dir")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(&name))
        .collect();
    logs.sort();
    assert_eq!(logs, [name.clone(), format!("{name}.1"), format!("{name}.2")], "max-file=3 keeps three files");
    for l in &logs {
        let size = std::fs::metadata(dir.join(l)).expect("log size").len();
        assert!(size <= 4096 + 200, "{l} is {size} bytes, over max-size=4k by more than a line");
    }
    // `logs` reads across the rotated files, ending with the last line.
    let out = sb.berth_ok(&["logs", "chatty"]);
    assert!(out.ends_with("line-399-padding-padding-padding-padding\n"), "{}", &out[out.len().saturating_sub(200)..]);
    assert!(!out.contains("line-0-"), "the oldest lines were rotated away");
}
