//! A user loads hostile or broken archives: berth refuses them or contains
//! them in the layer, and never writes a byte outside the layer.

mod common;

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use common::images::{self, Compression, Entry, TestImage};
use common::{find_named, tree, Node, Sandbox};

/// Fails the test if a file named like `marker` exists anywhere it must not:
/// in the sandbox outside its `root/` (the layer store), next to the sandbox,
/// at the host's `/` or in the host's `/tmp`.
fn assert_nothing_outside(sb: &Sandbox, marker: &str) {
    let outside: Vec<_> = find_named(&sb.path, marker).into_iter().filter(|p| !p.starts_with(&sb.root)).collect();
    assert!(outside.is_empty(), "files written outside the layer store: {outside:?}");
    for dir in [sb.path.parent().unwrap_or(Path::new("/tmp")), Path::new("/"), Path::new("/tmp")] {
        let hits: Vec<_> = std::fs::read_dir(dir)
            .map(|rd| rd.flatten().map(|e| e.path()).filter(|p| p.to_string_lossy().contains(marker)).collect())
            .unwrap_or_default();
        assert!(hits.is_empty(), "files written outside the sandbox: {hits:?}");
    }
}

fn archive_of(sb: &Sandbox, img: &TestImage, name: &str) -> std::path::PathBuf {
    let archive = sb.file(&format!("{name}.tar"));
    img.save_docker_archive(&[&format!("{name}:latest")], &archive).expect("writing archive");
    archive
}

#[test]
fn layer_climbing_out_with_dotdot_is_rejected_and_not_registered() {
    let sb = Sandbox::start();
    let marker = common::unique_marker("escape");
    let archive = archive_of(&sb, &images::escape(&marker), "escape");
    let out = sb.berth_fails(&["load", "-i", archive.to_str().expect("utf-8")]);
    assert!(
        out.stderr.contains(&format!("../../escape-{marker}")),
        "the error names the offending entry:\n{}",
        out.stderr
    );
    assert_eq!(sb.image_ids(), Vec::<String>::new(), "the image is not registered");
    let missing = sb.berth(&["image", "inspect", "escape:latest"]);
    assert!(!missing.success(), "escape:latest must not exist");
    assert_nothing_outside(&sb, &marker);
    // Nothing was left in the store either.
    assert!(find_named(&sb.root, &marker).is_empty(), "no trace of the rejected entry in the store");
}

#[test]
fn absolute_path_entry_is_written_inside_the_layer() {
    let sb = Sandbox::start();
    let marker = common::unique_marker("abs");
    let img = images::absolute(&marker);
    let archive = archive_of(&sb, &img, "absolute");
    sb.load(&archive);
    assert_eq!(sb.image_ids(), [img.id()]);
    let (_, seen) = sb.mount_image("absolute:latest");
    let t = tree(&seen);
    match t.get(&format!("/abs-file-{marker}")) {
        Some(Node::File { data, .. }) => assert_eq!(data, b"absolute\n"),
        other => panic!("/abs-file-{marker} should be a file at the layer root, got {other:?}; tree: {:?}", t.keys()),
    }
    assert!(!Path::new(&format!("/abs-file-{marker}")).exists(), "written to the host's /");
    assert_nothing_outside(&sb, &marker);
}

#[test]
fn entry_written_through_a_symlink_to_tmp_lands_in_the_layers_own_tmp() {
    let sb = Sandbox::start();
    let marker = common::unique_marker("through");
    let img = images::symlink_through(&marker);
    let archive = archive_of(&sb, &img, "through");
    sb.load(&archive);
    let (_, seen) = sb.mount_image("through:latest");
    let t = tree(&seen);
    assert_eq!(t.get("/hosttmp"), Some(&Node::Symlink { target: "/tmp".to_string() }), "the symlink is kept as is");
    match t.get(&format!("/tmp/written-through-{marker}")) {
        Some(Node::File { data, .. }) => assert_eq!(data, b"through\n"),
        other => panic!("the file should be in the layer's /tmp, got {other:?}; tree: {:?}", t.keys()),
    }
    assert!(!Path::new(&format!("/tmp/written-through-{marker}")).exists(), "written through to the host's /tmp");
    assert!(
        !std::env::temp_dir().join(format!("written-through-{marker}")).exists(),
        "written through to the host's temp dir"
    );
    assert_nothing_outside(&sb, &marker);
}

#[test]
fn hard_link_to_a_file_outside_the_layer_is_rejected() {
    let sb = Sandbox::start();
    let marker = common::unique_marker("hardlink");
    let sentinel = sb.file(&format!("sentinel-{marker}"));
    common::write_file(&sentinel, b"original\n");
    let img = images::hardlink_out(sentinel.to_str().expect("utf-8"));
    let archive = archive_of(&sb, &img, "hardlink");
    let out = sb.berth_fails(&["load", "-i", archive.to_str().expect("utf-8")]);
    assert!(out.stderr.contains("stolen"), "the error names the link entry:\n{}", out.stderr);
    assert_eq!(std::fs::read(&sentinel).expect("sentinel still readable"), b"original\n", "sentinel was modified");
    assert_eq!(std::fs::metadata(&sentinel).expect("stat sentinel").nlink(), 1, "a link to the sentinel was made");
    assert_eq!(sb.image_ids(), Vec::<String>::new(), "the image is not registered");
}

#[test]
fn oci_blob_whose_bytes_do_not_match_its_digest_is_rejected() {
    let sb = Sandbox::start();
    let img = images::busybox();
    let archive = sb.file("bad-digest.tar");
    img.save_oci_layout("bad-digest:latest", Compression::None, true, &archive).expect("writing archive");
    let out = sb.berth_fails(&["load", "-i", archive.to_str().expect("utf-8")]);
    assert!(out.stderr.to_lowercase().contains("digest"), "the error says the digest did not match:\n{}", out.stderr);
    assert_eq!(sb.image_ids(), Vec::<String>::new(), "the image is not registered");
    // The store is still usable.
    let good = archive_of(&sb, &img, "busybox");
    sb.load(&good);
    assert_eq!(sb.image_ids(), [img.id()]);
}

#[test]
fn docker_archive_layer_that_does_not_match_its_diff_id_is_rejected() {
    let sb = Sandbox::start();
    let good = images::busybox();
    // The config promises busybox's diff ID; the archive carries another layer.
    let other = images::layer(&[Entry::file("not-busybox", 0o644, "another layer\n")]);
    let forged = TestImage { config: good.config.clone(), layers: vec![other] };
    let archive = archive_of(&sb, &forged, "forged");
    let out = sb.berth_fails(&["load", "-i", archive.to_str().expect("utf-8")]);
    let err = out.stderr.to_lowercase();
    assert!(err.contains("diff") || err.contains("digest"), "the error says the layer did not match:\n{}", out.stderr);
    assert_eq!(sb.image_ids(), Vec::<String>::new(), "the image is not registered");
}

#[test]
fn truncated_archive_is_rejected_with_a_clear_error_and_no_partial_image() {
    let sb = Sandbox::start();
    let img = images::busybox();
    let full = img.write_docker_archive(&["busybox:latest"], Vec::new()).expect("archive in memory");
    let archive = sb.file("truncated.tar");
    common::write_file(&archive, &images::truncated(&full));

    let out = sb.berth_fails(&["load", "-i", archive.to_str().expect("utf-8")]);
    let err = out.stderr.to_lowercase();
    assert!(
        ["truncated", "unexpected end", "eof", "incomplete"].iter().any(|w| err.contains(w)),
        "the error says the archive is cut short:\n{}",
        out.stderr
    );
    assert_eq!(sb.image_ids(), Vec::<String>::new(), "no partial image");
    let missing = sb.berth(&["image", "inspect", &img.id()]);
    assert!(!missing.success(), "no partial image under its ID");

    // The same through stdin, then the full archive loads.
    let out = sb.berth_stdin(&["load"], &archive);
    assert!(!out.success(), "truncated stdin is rejected too:\n{}", out.stdout);
    let good = sb.file("busybox.tar");
    common::write_file(&good, &full);
    sb.load(&good);
    assert_eq!(sb.image_ids(), [img.id()]);
}

#[test]
fn input_that_is_not_an_archive_is_rejected() {
    let sb = Sandbox::start();
    let junk = sb.file("junk.tar");
    common::write_file(&junk, &images::noise(7, 64 << 10));
    let out = sb.berth_fails(&["load", "-i", junk.to_str().expect("utf-8")]);
    assert!(!out.stderr.trim().is_empty(), "an error is printed");
    assert_eq!(sb.image_ids(), Vec::<String>::new());

    let out = sb.berth_fails(&["load", "-i", "/nonexistent/berth-test.tar"]);
    assert!(out.stderr.contains("/nonexistent/berth-test.tar"), "the error names the missing file:\n{}", out.stderr);
}

/// A symlink in one layer and a write through it in the next, with the given driver.
fn later_layer_cannot_write_through_a_lower_layers_symlink(driver: &str) {
    let sb = Sandbox::start_with_driver(driver);
    let marker = common::unique_marker("cross");
    let target = sb.file(&format!("target-{marker}"));
    std::fs::create_dir(&target).expect("creating the target dir");
    let img = images::cross_layer_symlink(target.to_str().expect("utf-8"), &marker);
    let archive = archive_of(&sb, &img, "cross");
    let out = sb.berth(&["load", "-i", archive.to_str().expect("utf-8")]);
    let left: Vec<_> =
        std::fs::read_dir(&target).expect("target dir still there").flatten().map(|e| e.path()).collect();
    assert!(left.is_empty(), "a later layer wrote through a symlink onto the host: {left:?}\n{}", out.stderr);
    assert_nothing_outside(&sb, &format!("pwned-{marker}"));
    if out.success() {
        // Contained. (Overlay applies each layer on its own, so there the second layer's
        // `abs/` is a new directory that hides the symlink; either way nothing left the layer.)
        let (_, seen) = sb.mount_image("cross:latest");
        assert!(tree(&seen).contains_key("/abs"), "the image mounts and shows /abs");
    } else {
        assert_eq!(sb.image_ids(), Vec::<String>::new(), "a rejected image is not registered");
    }
}

#[test]
fn later_layer_cannot_write_through_a_lower_layers_symlink_with_overlay() {
    later_layer_cannot_write_through_a_lower_layers_symlink("overlay");
}

#[test]
fn later_layer_cannot_write_through_a_lower_layers_symlink_with_vfs() {
    later_layer_cannot_write_through_a_lower_layers_symlink("vfs");
}
