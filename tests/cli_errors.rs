//! A user mistypes names and references: berth says clearly what was wrong.

mod common;

use common::images;
use common::Sandbox;

fn load_busybox(sb: &Sandbox) -> images::TestImage {
    let img = images::busybox();
    let archive = sb.file("busybox.tar");
    img.save_docker_archive(&["busybox:latest"], &archive).expect("writing archive");
    sb.load(&archive);
    img
}

#[test]
fn unknown_images_are_reported_as_no_such_image() {
    let sb = Sandbox::start();
    load_busybox(&sb);
    let saved = sb.file("never.tar");
    let saved = saved.to_str().expect("utf-8");
    for args in [
        vec!["image", "inspect", "nosuchimage"],
        vec!["rmi", "nosuchimage"],
        vec!["history", "nosuchimage"],
        vec!["tag", "nosuchimage", "other:1"],
        vec!["save", "-o", saved, "nosuchimage"],
        vec!["image", "mount", "nosuchimage"],
    ] {
        let out = sb.berth_fails(&args);
        assert!(
            out.stderr.contains("No such image") && out.stderr.contains("nosuchimage"),
            "`berth {}` should say `No such image: nosuchimage`, printed:\n{}",
            args.join(" "),
            out.stderr
        );
    }
    assert!(!std::path::Path::new(saved).exists(), "a failed save leaves no file behind");
}

#[test]
fn invalid_references_are_refused_with_invalid_reference_format() {
    let sb = Sandbox::start();
    load_busybox(&sb);
    for bad in ["Busybox:Upper", "bad name", "busybox:", "busybox@sha256:1234", ":tag"] {
        let out = sb.berth_fails(&["tag", "busybox:latest", bad]);
        assert!(
            out.stderr.to_lowercase().contains("invalid reference format"),
            "`berth tag busybox {bad:?}` should say invalid reference format, printed:\n{}",
            out.stderr
        );
    }
    // Nothing was tagged by the failures.
    let inspect = sb.inspect("busybox:latest");
    assert_eq!(inspect["RepoTags"], serde_json::json!(["busybox:latest"]));
}

#[test]
fn removing_an_image_by_id_that_has_several_tags_needs_force() {
    let sb = Sandbox::start();
    let img = load_busybox(&sb);
    sb.berth_ok(&["tag", "busybox:latest", "second:tag"]);
    let out = sb.berth_fails(&["rmi", &img.short_id()]);
    assert!(
        out.stderr.contains("conflict") && out.stderr.contains("referenced in multiple repositories"),
        "Docker's conflict message, printed:\n{}",
        out.stderr
    );
    assert_eq!(sb.image_ids(), [img.id()], "nothing was removed");
    let out = sb.berth_ok(&["rmi", "-f", &img.short_id()]);
    assert!(out.contains("Untagged: busybox:latest") && out.contains("Untagged: second:tag"), "rmi -f printed:\n{out}");
    assert!(out.contains(&format!("Deleted: {}", img.id())), "rmi -f printed:\n{out}");
    assert_eq!(sb.image_ids(), Vec::<String>::new());
}

#[test]
fn the_daemon_records_its_pid_in_the_run_dir() {
    let sb = Sandbox::start();
    let pid = std::fs::read_to_string(sb.run.join("berth.pid")).expect("<run>/berth.pid exists while the daemon runs");
    assert_eq!(pid.trim(), sb.daemon_pid().to_string(), "berth.pid holds the daemon's PID");
}

#[test]
fn without_a_daemon_and_with_no_autostart_the_cli_says_so() {
    let sb = Sandbox::start();
    let dead = sb.path.join("nobody-listens.sock");
    let out = common::run(
        {
            let mut c = std::process::Command::new(common::BERTH);
            c.args(["-H", &format!("unix://{}", dead.display()), "--no-autostart", "images"]);
            c
        },
        None,
    );
    assert!(!out.success(), "images without a daemon must fail");
    assert!(out.stderr.contains(&dead.display().to_string()), "the error names the socket:\n{}", out.stderr);
}
