//! Network modes before the bridge driver: `none` (a namespace of its own
//! with only `lo`), `host` (the daemon's namespace) and `container:<name>`
//! (another container's namespace).

mod common;

use common::images;
use common::Sandbox;

/// The network namespace of the process, as `net:[inode]`.
fn netns_of_pid(pid: i32) -> String {
    std::fs::read_link(format!("/proc/{pid}/ns/net"))
        .unwrap_or_else(|e| panic!("readlink /proc/{pid}/ns/net: {e}"))
        .to_string_lossy()
        .into_owned()
}

#[test]
fn none_host_and_container_network_modes_share_the_right_namespaces() {
    let sb = Sandbox::start();
    sb.load_image(&images::busybox(), "busybox:latest");
    let sandbox_ns = netns_of_pid(sb.holder_pid());

    let none = sb.berth_ok(&["run", "--rm", "--network", "none", "busybox", "readlink", "/proc/self/ns/net"]);
    assert_ne!(none.trim(), sandbox_ns, "--network none has a namespace of its own");
    let links = sb.berth_ok(&["run", "--rm", "--network", "none", "busybox", "ip", "-o", "link"]);
    assert_eq!(links.lines().count(), 1, "--network none has only lo:\n{links}");

    let host = sb.berth_ok(&["run", "--rm", "--network", "host", "busybox", "readlink", "/proc/self/ns/net"]);
    assert_eq!(host.trim(), sandbox_ns, "--network host is the daemon's namespace");

    let first = sb.berth_ok(&["run", "-d", "--name", "first", "--network", "none", "busybox", "sleep", "1000"]);
    let first_pid: i32 = sb.inspect_format(first.trim(), "{{.State.Pid}}").parse().expect("State.Pid");
    let joined =
        sb.berth_ok(&["run", "--rm", "--network", "container:first", "busybox", "readlink", "/proc/self/ns/net"]);
    assert_eq!(joined.trim(), netns_of_pid(first_pid), "container:first joins first's namespace");
    assert_eq!(sb.inspect_format("first", "{{.HostConfig.NetworkMode}}"), "none");
    sb.berth_ok(&["rm", "-f", "first"]);

    // As in Docker, lo is up (with 127.0.0.1) in a --network none container.
    let addrs = sb.berth_ok(&["run", "--rm", "--network", "none", "busybox", "ip", "-o", "-4", "addr"]);
    assert!(addrs.contains("127.0.0.1"), "lo is up with 127.0.0.1:\n{addrs}");
    let out = sb.berth(&["run", "--rm", "--network", "container:ghost", "busybox", "true"]);
    assert!(
        !out.success() && out.stderr.contains("ghost"),
        "joining a missing container fails clearly:\n{}",
        out.describe()
    );
}
