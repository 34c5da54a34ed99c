//! Helpers of the volume tests: sandboxes with the volume test images, the
//! "nothing left mounted" check, and reading a container's mounts.

use std::collections::BTreeSet;
use std::path::Path;

use super::images;
use super::Sandbox;

/// A sandbox with the images a volume test names loaded (`volumebox`,
/// `sqlite`, `busybox`), and the daemon's mount points right after, which
/// `assert_no_leftover_mounts` compares against.
pub fn sandbox_with(variants: &[&str]) -> (Sandbox, BTreeSet<String>) {
    let sb = Sandbox::start();
    for v in variants {
        let img = match *v {
            "volumebox" => images::volumebox(),
            "sqlite" => images::sqlite(),
            "busybox" => images::busybox(),
            other => panic!("no volume test image {other:?}"),
        };
        sb.load_image(&img, &format!("{v}:latest"));
    }
    let baseline = mount_points(&sb);
    (sb, baseline)
}

/// Mount points of the daemon's mount namespace (field 5 of its mountinfo).
pub fn mount_points(sb: &Sandbox) -> BTreeSet<String> {
    sb.mountinfo().lines().filter_map(|l| l.split_whitespace().nth(4)).map(str::to_string).collect()
}

/// Mount points at or under `dir` in the daemon's mount namespace.
pub fn mounts_under(sb: &Sandbox, dir: &Path) -> Vec<String> {
    let dir = dir.display().to_string();
    mount_points(sb).into_iter().filter(|m| m == &dir || m.starts_with(&format!("{dir}/"))).collect()
}

/// Removes every container (`rm -f -v`), then fails the test if the
/// daemon's mountinfo has a mount point that was not in `baseline`, or any
/// mount under `<root>/volumes`.
pub fn assert_no_leftover_mounts(sb: &Sandbox, baseline: &BTreeSet<String>) {
    for id in sb.container_ids() {
        sb.berth_ok(&["rm", "-f", "-v", &id]);
    }
    let now = mount_points(sb);
    // `<run>/netns` bind-mounted onto itself is the daemon's (made once, for
    // the namespace files of every container, as Docker's /run/docker/netns);
    // a container's own `<run>/netns/<id>` would still be reported.
    let netns_dir = sb.run.join("netns").display().to_string();
    // An installed plugin's data dir is a filesystem of its own (its `data_mib`), there while it is installed.
    let plugins_dir = sb.root.join("plugins").display().to_string();
    let plugin_data = |m: &str| m.starts_with(&plugins_dir) && m.ends_with("/data");
    let extra: Vec<&String> = now.difference(baseline).filter(|m| **m != netns_dir && !plugin_data(m)).collect();
    assert!(extra.is_empty(), "mounts left behind after the test: {extra:?}\n{}", sb.mountinfo());
    let under = mounts_under(sb, &sb.root.join("volumes"));
    assert!(under.is_empty(), "mounts left under the volumes dir: {under:?}");
}

/// The container's `Mounts` from inspect, sorted by destination.
pub fn mounts_of(sb: &Sandbox, name: &str) -> Vec<serde_json::Value> {
    let mut mounts = sb.inspect_container(name)["Mounts"].as_array().cloned().unwrap_or_default();
    mounts.sort_by(|a, b| a["Destination"].as_str().cmp(&b["Destination"].as_str()));
    mounts
}

/// The volume name mounted at `destination` in the container.
pub fn volume_at(sb: &Sandbox, container: &str, destination: &str) -> String {
    mounts_of(sb, container)
        .iter()
        .find(|m| m["Destination"] == destination)
        .and_then(|m| m["Name"].as_str())
        .unwrap_or_else(|| panic!("{container} has no volume at {destination}: {:?}", mounts_of(sb, container)))
        .to_string()
}

/// Names `volume ls -q` prints, in its order.
pub fn volume_names(sb: &Sandbox) -> Vec<String> {
    sb.berth_ok(&["volume", "ls", "-q"]).lines().map(str::to_string).collect()
}

/// Whether a name is a 64-hex anonymous volume name.
pub fn is_random_name(name: &str) -> bool {
    name.len() == 64 && name.bytes().all(|b| b.is_ascii_hexdigit())
}
