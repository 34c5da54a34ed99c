//! A network driver as a WebAssembly plugin: the example `isonet` (an
//! isolated bridge: no gateway, no NAT) returns plans that berth checks
//! against its grant and executes. Two containers on its network reach each
//! other; `network rm` leaves no link behind; its networks work after a
//! daemon restart.

mod common;

use common::net::{ip_on, sandbox_links, sandbox_sh_ok};
use common::plugins::{built_plugin, install};
use common::volumes::sandbox_with;

#[test]
fn containers_on_a_wasm_network_driver_reach_each_other_and_rm_leaves_nothing() {
    let (mut sb, _) = sandbox_with(&["busybox"]);
    let links_before = sandbox_links(&sb);
    install(&sb, &built_plugin("isonet-wasm"), &[]);
    let id = sb.berth_ok(&["network", "create", "-d", "isonet", "--subnet", "10.231.0.0/24", "iso"]);
    let id = id.trim().to_string();
    let bridge = format!("ib-{}", &id[..12]);
    assert!(sandbox_links(&sb).contains(&bridge), "the plugin's bridge {bridge} exists: {:?}", sandbox_links(&sb));
    assert_eq!(sb.berth_ok(&["network", "inspect", "-f", "{{.Driver}}", "iso"]), "isonet\n");
    // The link says whose it is: the plugin's later plans may act on it, and on no host link without that tag.
    let shown = sandbox_sh_ok(&sb, &format!("ip -d link show {bridge}"));
    assert!(shown.contains("alias berth:isonet"), "{shown}");

    sb.berth_ok(&["run", "-d", "--name", "ca", "--network", "iso", "busybox", "sleep", "600"]);
    sb.berth_ok(&["run", "-d", "--name", "cb", "--network", "iso", "busybox", "sleep", "600"]);
    let (ip_a, ip_b) = (ip_on(&sb, "ca", "iso"), ip_on(&sb, "cb", "iso"));
    assert_eq!((ip_a.as_str(), ip_b.as_str()), ("10.231.0.2", "10.231.0.3"));
    let eth0 = sb.berth_ok(&["exec", "ca", "ip", "addr", "show", "eth0"]);
    assert!(eth0.contains("10.231.0.2/24"), "{eth0}");
    sb.berth_ok(&["exec", "ca", "ping", "-c", "1", "-W", "3", &ip_b]);
    sb.berth_ok(&["exec", "cb", "ping", "-c", "1", "-W", "3", &ip_a]);

    // Its networks keep working after a daemon restart.
    sb.kill9();
    sb.restart();
    sb.berth_ok(&["exec", "ca", "ping", "-c", "1", "-W", "3", &ip_b]);
    sb.berth_ok(&["run", "--rm", "--network", "iso", "busybox", "ping", "-c", "1", "-W", "3", &ip_a]);

    let out = sb.berth_fails(&["plugin", "disable", "isonet"]);
    assert!(out.stderr.contains("network iso"), "{}", out.describe());
    sb.berth_ok(&["rm", "-f", "ca", "cb"]);
    sb.berth_ok(&["network", "rm", "iso"]);
    assert_eq!(sandbox_links(&sb), links_before, "network rm leaves no link behind");
}
