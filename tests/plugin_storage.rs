//! A storage (graph) driver as a plugin: the example `linkvfs` (a native
//! dylib: vfs-style full trees, but image layers share unchanged files with
//! their parent as hard links) installed, chosen with
//! `berth daemon --storage-driver linkvfs`, and then used for everything the
//! daemon does with layers — load, run, diff, commit, rmi — across a daemon
//! restart; the daemon's refusals around it.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use common::images;
use common::plugins::{built_plugin, install};
use common::{find_named, tree, tree_meta, Sandbox};

/// The paths where two trees differ, with both sides, for a failure message.
fn differences<T: PartialEq + std::fmt::Debug>(a: &BTreeMap<String, T>, b: &BTreeMap<String, T>) -> Vec<String> {
    // A file node carries its bytes: show the start only.
    let show = |v: Option<&T>| format!("{v:?}").chars().take(160).collect::<String>();
    let keys: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    keys.into_iter()
        .filter(|k| a.get(*k) != b.get(*k))
        .map(|k| format!("{k}: vfs {} / linkvfs {}", show(a.get(k)), show(b.get(k))))
        .collect()
}

/// What a user sees of the multilayer image and of a container's changes,
/// the same on any storage driver.
struct Seen {
    tree: BTreeMap<String, common::Node>,
    meta: BTreeMap<String, common::Meta>,
    diff: String,
    committed: String,
}

fn story(sb: &Sandbox) -> Seen {
    sb.load_image(&images::multilayer(), "multilayer:latest");
    let (_, mounted) = sb.mount_image("multilayer:latest");
    let (tree, meta) = (tree(&mounted), tree_meta(&mounted, false));
    sb.berth_ok(&[
        "run",
        "--name",
        "writer",
        "multilayer:latest",
        "sh",
        "-c",
        "echo changed > /data/b && echo new > /newfile && rm /data/sub/deep && mkdir /made",
    ]);
    let diff = sb.berth_ok(&["diff", "writer"]);
    // Commit exports the writable layer through the driver and applies it as a new image layer.
    sb.berth_ok(&["commit", "writer", "committed:1"]);
    let committed = sb.berth_ok(&["run", "--rm", "committed:1", "sh", "-c", "cat /data/b /newfile; ls /data/sub; ls -d /made"]);
    Seen { tree, meta, diff, committed }
}

#[test]
fn linkvfs_stores_images_and_containers_like_vfs_and_survives_a_restart() {
    // The reference is the in-tree vfs: like linkvfs (and Docker's vfs) it
    // lists the parent directory of any change in `diff`, where overlay
    // (like Docker's overlay2) lists it only for additions and deletions.
    let vfs = Sandbox::start_with_driver("vfs");
    let want = story(&vfs);
    drop(vfs);

    let mut sb = Sandbox::start();
    install(&sb, &built_plugin("linkvfs-dylib"), &["--disable"]);
    let types = sb.berth_ok(&["plugin", "inspect", "-f", "{{.Config.Interface.Types}}", "linkvfs"]);
    assert!(types.contains("docker.graphdriver/1.0"), "{types}");

    // The daemon refuses, before it opens anything, a storage driver it cannot use.
    let out = sb.daemon_refuses_driver("nosuch");
    assert!(out.contains("no storage driver named \"nosuch\"") && out.contains("in-tree: overlay, overlay2, vfs"), "{out}");
    let out = sb.daemon_refuses_driver("linkvfs");
    assert!(out.contains("plugin linkvfs is disabled") && out.contains("berth plugin enable linkvfs"), "{out}");
    sb.restart_with_driver(None);
    install(&sb, &built_plugin("snapvol-dylib"), &[]);
    let out = sb.daemon_refuses_driver("snapvol-native");
    assert!(out.contains("plugin snapvol-native provides volume drivers, not a storage driver"), "{out}");
    sb.restart_with_driver(None);
    sb.berth_ok(&["plugin", "enable", "linkvfs"]);

    sb.restart_with_driver(Some("linkvfs"));
    assert_eq!(sb.docker_ok(&["info", "--format", "{{.Driver}}"]), "linkvfs\n");
    let got = story(&sb);
    let tree_differences = differences(&want.tree, &got.tree);
    assert!(tree_differences.is_empty(), "the merged image tree differs:\n{}", tree_differences.join("\n"));
    let meta_differences = differences(&want.meta, &got.meta);
    assert!(meta_differences.is_empty(), "owners, mtimes or xattrs differ:\n{}", meta_differences.join("\n"));
    assert_eq!(got.diff, want.diff, "berth diff");
    assert_eq!(got.committed, want.committed, "the committed image");
    assert_eq!(got.committed, "changed\nnew\n/made\n");

    // What linkvfs is for: the three image layers hold one busybox between them.
    let data = sb.root.join("plugins/linkvfs/data");
    let inodes: BTreeSet<u64> = find_named(&data, "busybox")
        .iter()
        .filter(|p| p.is_file() && p.parent().is_some_and(|d| d.ends_with("bin")))
        .map(|p| std::fs::metadata(p).expect("stat busybox").ino())
        .collect();
    let copies = find_named(&data, "busybox").len();
    assert!(copies >= 3, "busybox should be in every layer's tree, found {copies}");
    // Image layers share it; each container's writable layer has its own copy.
    let containers = sb.berth_ok(&["ps", "-aq"]).lines().count();
    assert!(inodes.len() <= 1 + containers, "{} distinct busybox files for 3 image layers and {containers} containers", inodes.len());

    // A container's writes never reach the image.
    assert_eq!(sb.berth_ok(&["run", "--rm", "multilayer:latest", "cat", "/data/b", "/data/sub/deep"]), "b from layer 3\ndeep\n");

    // The daemon's storage driver can be neither disabled nor removed.
    for args in [&["plugin", "disable", "linkvfs"][..], &["plugin", "disable", "-f", "linkvfs"], &["plugin", "rm", "-f", "linkvfs"]] {
        let err = sb.berth_fails(args).stderr;
        assert!(err.contains("plugin linkvfs is the daemon's storage driver"), "{args:?}: {err}");
    }

    // Everything is still there after a restart on the same driver.
    sb.restart_with_driver(Some("linkvfs"));
    assert_eq!(sb.berth_ok(&["diff", "writer"]), want.diff);
    assert_eq!(sb.berth_ok(&["run", "--rm", "committed:1", "cat", "/newfile"]), "new\n");
    sb.berth_ok(&["rm", "writer"]);
    sb.berth_ok(&["image", "unmount", "multilayer:latest"]);
    sb.berth_ok(&["rmi", "committed:1", "multilayer:latest"]);
    assert_no_layers_left(&data);
}

/// After every image and container is gone, the plugin's data dir holds no layer.
fn assert_no_layers_left(data: &Path) {
    let left: Vec<String> = find_named(data, "busybox").iter().map(|p| p.display().to_string()).collect();
    assert!(left.is_empty(), "layers left behind after rm and rmi:\n{}", left.join("\n"));
}
