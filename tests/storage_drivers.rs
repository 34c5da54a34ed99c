//! A user mounts image root filesystems; overlay and vfs show the same tree.

mod common;

use std::collections::BTreeMap;

use common::images;
use common::{tree, tree_meta, Node, Sandbox};
use sha2::Digest as _;

/// A one-line summary of a node, so a failure message does not print a whole binary.
fn summary(node: Option<&Node>) -> String {
    match node {
        None => "absent".to_string(),
        Some(Node::Dir { mode }) => format!("dir {mode:o}"),
        Some(Node::File { mode, data }) => {
            format!("file {mode:o} {} bytes sha256 {}", data.len(), &hex::encode(sha2::Sha256::digest(data))[..12])
        }
        Some(Node::Symlink { target }) => format!("symlink -> {target}"),
        Some(Node::Other { kind, mode, rdev }) => format!("special {kind} {mode:o} rdev {rdev}"),
    }
}

fn diff_trees(a: &BTreeMap<String, Node>, b: &BTreeMap<String, Node>) -> Vec<String> {
    let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .filter(|k| a.get(*k) != b.get(*k))
        .map(|k| format!("{k}: overlay {} / vfs {}", summary(a.get(k)), summary(b.get(k))))
        .collect()
}

/// The mountinfo line whose mount point is `path`, if any.
fn mount_line<'a>(mountinfo: &'a str, path: &str) -> Option<&'a str> {
    mountinfo.lines().find(|l| l.split(' ').nth(4) == Some(path))
}

fn file(tree: &BTreeMap<String, Node>, path: &str) -> (u32, String) {
    match tree.get(path) {
        Some(Node::File { mode, data }) => (*mode, String::from_utf8_lossy(data).into_owned()),
        other => panic!("{path} should be a file, is {}", summary(other)),
    }
}

#[test]
fn multilayer_rootfs_is_the_same_merged_tree_with_overlay_and_vfs() {
    let img = images::multilayer();
    let overlay = Sandbox::start();
    let vfs = Sandbox::start_with_driver("vfs");
    let mut trees = Vec::new();
    for sb in [&overlay, &vfs] {
        let archive = sb.file("multilayer.tar");
        img.save_docker_archive(&["multilayer:latest"], &archive).expect("writing archive");
        sb.load(&archive);
        let (path, seen) = sb.mount_image("multilayer:latest");
        // Mounting again gives the same path.
        assert_eq!(sb.mount_image("multilayer:latest").0, path, "a second mount returns the same path");
        trees.push((path, tree(&seen), tree_meta(&seen, true)));
    }

    // The overlay daemon really mounted an overlay, read-only.
    let info = overlay.mountinfo();
    let line = mount_line(&info, &trees[0].0).unwrap_or_else(|| panic!("no mount at {} in:\n{info}", trees[0].0));
    assert!(line.contains(" - overlay "), "overlay driver mounts an overlay: {line}");
    assert!(
        line.split(' ').nth(5).is_some_and(|o| o.split(',').any(|f| f == "ro")),
        "image mount is read-only: {line}"
    );

    let merged = &trees[0].1;
    // Layer 3 whited out /data/a and made /opq opaque.
    assert!(!merged.contains_key("/data/a"), "whiteout hides /data/a");
    assert!(!merged.contains_key("/data/.wh.a"), "whiteout files are not visible");
    assert!(!merged.contains_key("/opq/x"), "opaque dir hides lower /opq/x");
    assert!(!merged.contains_key("/opq/xdir"), "opaque dir hides lower /opq/xdir");
    assert!(!merged.contains_key("/opq/.wh..wh..opq"), "the opaque marker is not visible");
    assert_eq!(file(merged, "/opq/y"), (0o644, "y from layer 3\n".to_string()));
    assert_eq!(merged.get("/opq"), Some(&Node::Dir { mode: 0o750 }), "layer 3's /opq mode wins");
    assert_eq!(file(merged, "/data/b"), (0o644, "b from layer 3\n".to_string()));
    // The hard link was made to layer 2's b; layer 3 replaced b, not the link's inode.
    assert_eq!(file(merged, "/data/hard"), (0o640, "b from layer 2\n".to_string()));
    assert_eq!(file(merged, "/data/suid").0, 0o4755, "setuid bit preserved");
    assert_eq!(merged.get("/data/link"), Some(&Node::Symlink { target: "b".to_string() }));
    assert_eq!(file(merged, "/data/sub/deep"), (0o600, "deep\n".to_string()));
    assert_eq!(merged.get("/tmp"), Some(&Node::Dir { mode: 0o1777 }), "sticky bit preserved");
    assert_eq!(merged.get("/bin/sh"), Some(&Node::Symlink { target: "/bin/busybox".to_string() }));
    assert_eq!(file(merged, "/bin/busybox").0, 0o755);

    // Ownership, device nodes, xattrs and mtimes (files, links and directories) are kept.
    let meta = &trees[0].2;
    let owned = &meta["/data/owned"];
    assert_eq!((owned.uid, owned.gid), (1000, 1001), "owner of /data/owned");
    assert_eq!(
        meta["/data/xattr"].xattrs.get("user.berth.test").map(Vec::as_slice),
        Some(&b"value-1"[..]),
        "xattr kept"
    );
    assert_eq!(merged.get("/data/null"), Some(&Node::Other { kind: 'c', mode: 0o666, rdev: libc::makedev(1, 3) }));
    assert_eq!(merged.get("/data/fifo"), Some(&Node::Other { kind: 'p', mode: 0o600, rdev: 0 }));
    for path in ["/data/b", "/data/link", "/bin/busybox", "/bin/sh", "/opq/y", "/data", "/opq"] {
        assert_eq!(meta[path].mtime, images::MTIME as i64, "mtime of {path} is the archive's");
    }

    let differences = diff_trees(&trees[0].1, &trees[1].1);
    assert!(differences.is_empty(), "overlay and vfs trees differ:\n{}", differences.join("\n"));
    let meta_differences: Vec<String> = trees[0]
        .2
        .iter()
        .filter(|(k, m)| trees[1].2.get(*k) != Some(*m))
        .map(|(k, m)| format!("{k}: overlay {m:?} / vfs {:?}", trees[1].2.get(k)))
        .collect();
    assert!(meta_differences.is_empty(), "overlay and vfs metadata differ:\n{}", meta_differences.join("\n"));

    // Unmount takes the overlay away.
    overlay.berth_ok(&["image", "unmount", "multilayer:latest"]);
    let info = overlay.mountinfo();
    assert!(mount_line(&info, &trees[0].0).is_none(), "unmounted, but still in mountinfo:\n{info}");
}

/// Loads and mounts the 120-layer image, checks every layer shows; returns the mount path.
fn load_and_mount_120_layers(sb: &Sandbox) -> String {
    let img = images::layers120();
    let archive = sb.file("layers120.tar");
    img.save_docker_archive(&["layers120:latest"], &archive).expect("writing archive");
    sb.load(&archive);
    let inspect = sb.inspect("layers120:latest");
    assert_eq!(inspect["RootFS"]["Layers"].as_array().map(Vec::len), Some(120));
    assert_eq!(inspect["Id"], img.id());

    let (path, seen) = sb.mount_image("layers120:latest");
    let t = tree(&seen);
    for i in 0..120 {
        assert_eq!(file(&t, &format!("/layers/f{i:03}")).1, format!("layer {i}\n"), "layer {i}'s file");
    }
    assert_eq!(file(&t, "/top").1, "top from layer 119\n", "the top layer's /top wins");
    path
}

#[test]
fn image_with_120_layers_loads_and_mounts_with_overlay() {
    let sb = Sandbox::start();
    let path = load_and_mount_120_layers(&sb);
    let info = sb.mountinfo();
    let line = mount_line(&info, &path).unwrap_or_else(|| panic!("no mount at {path} in:\n{info}"));
    assert!(line.contains(" - overlay "), "one overlay mount holds all 120 layers: {line}");
    let driver = sb.docker_ok(&["info", "--format", "{{.Driver}}"]);
    assert_eq!(driver.trim(), "overlay", "the default driver is overlay where overlay mounts");
}

#[test]
fn image_with_120_layers_loads_and_mounts_with_vfs() {
    let sb = Sandbox::start_with_driver("vfs");
    load_and_mount_120_layers(&sb);
}

#[test]
fn layer_from_gnu_tar_with_a_fifo_and_empty_device_fields_loads() {
    // GNU tar's default format leaves the device fields of a fifo empty; Docker accepts such layers.
    let sb = Sandbox::start();
    let layer = images::layer(&[
        images::Entry::dir("run/", 0o755),
        images::Entry::GnuFifo { path: "run/pipe".into(), mode: 0o620 },
    ]);
    let img = images::TestImage::new(vec![layer], "gnu-fifo");
    let archive = sb.file("gnu-fifo.tar");
    img.save_docker_archive(&["gnufifo:latest"], &archive).expect("writing archive");
    sb.load(&archive);
    let (_, seen) = sb.mount_image("gnufifo:latest");
    assert_eq!(tree(&seen).get("/run/pipe"), Some(&Node::Other { kind: 'p', mode: 0o620, rdev: 0 }));
}
