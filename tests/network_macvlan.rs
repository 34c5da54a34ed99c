//! The macvlan driver with a veth as parent: containers get their own MAC
//! and an address from the ip-range, reach each other and another host on
//! the parent's segment, and (as in Docker) not the sandbox itself.
//! `parent=IF.VLAN` makes the 802.1q sub-interface and removes it with the network.

mod common;

use common::images;
use common::net::{ip_bin, ip_on, mac_of, sandbox_links, sandbox_sh_ok, OtherHost};
use common::Sandbox;

#[test]
fn macvlan_containers_reach_each_other_and_another_host_but_not_the_sandbox() {
    let mut sb = Sandbox::start();
    sb.load_image(&images::busybox(), "busybox:latest");
    // The segment: the sandbox's end `mvpar` (the parent) and another host at .100.
    let other = OtherHost::start(&sb, "mvpar", "192.168.77.100/24", None);
    // The sandbox has an address on the parent, so "cannot reach" is about
    // macvlan's isolation from its parent, not a missing route.
    sandbox_sh_ok(&sb, &format!("{} addr add 192.168.77.1/24 dev mvpar", ip_bin()));

    sb.berth_ok(&[
        "network",
        "create",
        "-d",
        "macvlan",
        "--subnet",
        "192.168.77.0/24",
        "--ip-range",
        "192.168.77.128/25",
        "--gateway",
        "192.168.77.1",
        "-o",
        "parent=mvpar",
        "-o",
        "macvlan_mode=bridge",
        "mv",
    ]);
    let inspect = sb.berth_ok(&["network", "inspect", "-f", "{{.Driver}} {{index .Options \"parent\"}}", "mv"]);
    assert_eq!(inspect.trim(), "macvlan mvpar");
    sb.berth_ok(&["run", "-d", "--name", "m1", "--network", "mv", "busybox", "sleep", "1000"]);
    sb.berth_ok(&["run", "-d", "--name", "m2", "--network", "mv", "busybox", "sleep", "1000"]);
    let (ip1, ip2) = (ip_on(&sb, "m1", "mv"), ip_on(&sb, "m2", "mv"));
    for ip in [&ip1, &ip2] {
        let last: u8 = ip.rsplit('.').next().and_then(|o| o.parse().ok()).unwrap_or(0);
        assert!(ip.starts_with("192.168.77.") && last >= 128, "{ip} is in the ip-range");
    }
    // busybox's ip has no -d: look at eth0 with iproute2 through the container's namespace.
    let key = sb.inspect_format("m1", "{{.NetworkSettings.SandboxKey}}");
    let link = sandbox_sh_ok(&sb, &format!("nsenter --net={key} {} -d -o link show eth0", ip_bin()));
    assert!(link.contains("macvlan") && link.contains("mode bridge"), "eth0 is a macvlan in bridge mode:\n{link}");
    let mac1 = mac_of(&sb.berth_ok(&["exec", "m1", "ip", "-o", "link", "show", "eth0"]));
    let mac2 = mac_of(&sb.berth_ok(&["exec", "m2", "ip", "-o", "link", "show", "eth0"]));
    let parent_mac = mac_of(&sandbox_sh_ok(&sb, &format!("{} -o link show mvpar", ip_bin())));
    assert!(mac1 != mac2 && mac1 != parent_mac, "each container has its own MAC");

    for (from, to) in [("m1", ip2.as_str()), ("m2", ip1.as_str()), ("m1", "192.168.77.100")] {
        let out = sb.berth(&["exec", from, "ping", "-c", "1", "-W", "2", to]);
        assert!(out.success(), "{from} reaches {to}:\n{}", out.describe());
    }
    assert!(other.ping(&ip1), "another host on the segment reaches m1");
    let bb = images::busybox_path();
    let from_sandbox = common::net::sandbox_sh(&sb, &format!("{bb} ping -c 1 -W 1 {ip1}"));
    assert!(!from_sandbox.success(), "the sandbox cannot reach its macvlan children:\n{}", from_sandbox.describe());

    // After a daemon restart the driver has forgotten which interface it
    // made; disconnecting a running container still takes it away.
    sb.restart();
    assert!(other.ping(&ip2), "m2 kept its interface across the restart");
    sb.berth_ok(&["network", "disconnect", "mv", "m2"]);
    let links = sb.berth_ok(&["exec", "m2", "ip", "-o", "link"]);
    assert!(!links.contains("eth0"), "m2's macvlan is gone after disconnect:\n{links}");
    assert!(!other.ping(&ip2), "nothing answers at m2's old address");
    sb.berth_ok(&["network", "connect", "mv", "m2"]);
    let ip2 = ip_on(&sb, "m2", "mv");
    assert!(other.ping(&ip2), "m2 is back on the segment after connect ({ip2})");

    sb.berth_ok(&["rm", "-f", "m1", "m2"]);
    sb.berth_ok(&["network", "rm", "mv"]);
    drop(other);
}

/// Whether the kernel can make 802.1q links (module 8021q), probed in the sandbox.
fn vlan_supported(sb: &Sandbox) -> bool {
    let ip = ip_bin();
    common::net::sandbox_sh(sb, &format!("{ip} link add vprobe.7 link vpar type vlan id 7 && {ip} link del vprobe.7"))
        .success()
}

#[test]
fn a_vlan_parent_is_created_and_removed_with_the_network() {
    let sb = Sandbox::start();
    // A veth end as the parent: dummy links need a kernel module the host may lack.
    sandbox_sh_ok(
        &sb,
        &format!("{ip} link add vpar type veth peer name vparp && {ip} link set vpar up", ip = ip_bin()),
    );
    let create = |name: &str, opts: &[&str]| {
        let mut args = vec!["network", "create", "-d", "macvlan", "--subnet", "192.168.89.0/24"];
        for o in opts {
            args.extend(["-o", o]);
        }
        args.push(name);
        sb.berth(&args)
    };
    let out = create("bad", &["parent=nosuchif"]);
    assert!(
        !out.success() && out.stderr.contains("nosuchif"),
        "a missing parent is a clear error:\n{}",
        out.describe()
    );
    let out = create("bad", &["parent=vpar", "macvlan_mode=weird"]);
    assert!(!out.success() && out.stderr.contains("weird"), "an unknown mode is refused:\n{}", out.describe());
    let names = sb.berth_ok(&["network", "ls", "--format", "{{.Name}}"]);
    assert!(!names.lines().any(|n| n == "bad"), "refused networks do not exist:\n{names}");

    if !vlan_supported(&sb) {
        eprintln!("skipping the 802.1q part: this kernel cannot create vlan links (module 8021q is not available)");
        return;
    }
    sb.berth_ok(&["network", "create", "-d", "macvlan", "--subnet", "192.168.88.0/24", "-o", "parent=vpar.10", "mv10"]);
    let links = sandbox_links(&sb);
    assert!(links.iter().any(|l| l == "vpar.10"), "the 802.1q sub-interface exists: {links:?}");
    let details = sandbox_sh_ok(&sb, &format!("{} -d link show vpar.10", ip_bin()));
    assert!(details.contains("vlan") && details.contains("id 10"), "{details}");
    sb.berth_ok(&["network", "rm", "mv10"]);
    let links = sandbox_links(&sb);
    assert!(!links.iter().any(|l| l == "vpar.10"), "removed with the network: {links:?}");
    assert!(links.iter().any(|l| l == "vpar"), "the parent itself stays: {links:?}");
}
