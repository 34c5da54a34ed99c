//! The network core under the commands: namespaces, the plan executor, IPAM
//! and teardown, seen from inside the sandbox. (The user-facing scenarios
//! are in the other `network_*.rs` files.) Addresses are read from the
//! containers' own namespaces, not from inspect, so these tests check what
//! the kernel has.

mod common;

use std::time::{Duration, Instant};

use common::images;
use common::net::{netns_mounts, sandbox_addresses, sandbox_sh_ok, sandbox_veths};
use common::Sandbox;

fn sandbox_with_busybox() -> Sandbox {
    let sb = Sandbox::start();
    sb.load_image(&images::busybox(), "busybox:latest");
    sb
}

/// The IPv4 address (CIDR) of `eth0` inside container `name`.
fn eth0_of(sb: &Sandbox, name: &str) -> String {
    let out = sb.berth_ok(&["exec", name, "ip", "-o", "-4", "addr", "show", "eth0"]);
    out.split_whitespace()
        .skip_while(|w| *w != "inet")
        .nth(1)
        .unwrap_or_else(|| panic!("no inet address on eth0 of {name}:\n{out}"))
        .to_string()
}

/// Addresses of `eth0` in every container namespace under `<run>/netns`.
fn netns_addresses(sb: &Sandbox) -> Vec<String> {
    let script =
        format!("for f in {}/netns/*; do nsenter --net=\"$f\" ip -o -4 addr show eth0; done", sb.run.display());
    let out = sandbox_sh_ok(sb, &script);
    let mut v: Vec<String> = out
        .lines()
        .filter_map(|l| l.split_whitespace().skip_while(|w| *w != "inet").nth(1).map(str::to_string))
        .collect();
    v.sort();
    v
}

#[test]
fn two_containers_on_the_default_bridge_ping_each_other_and_leave_nothing() {
    let sb = sandbox_with_busybox();
    assert!(
        sandbox_addresses(&sb).contains(&("berth0".to_string(), "172.17.0.1/16".to_string())),
        "berth0 carries the gateway: {:?}",
        sandbox_addresses(&sb)
    );
    let netns_before = netns_mounts(&sb);
    sb.berth_ok(&["run", "-d", "--name", "one", "busybox", "sleep", "1000"]);
    sb.berth_ok(&["run", "-d", "--name", "two", "busybox", "sleep", "1000"]);
    assert_eq!(eth0_of(&sb, "one"), "172.17.0.2/16");
    assert_eq!(eth0_of(&sb, "two"), "172.17.0.3/16");
    let ping = sb.berth(&["exec", "one", "ping", "-c", "1", "-W", "2", "172.17.0.3"]);
    assert!(ping.success(), "one reaches two across berth0:\n{}", ping.describe());
    let ping = sb.berth(&["exec", "two", "ping", "-c", "1", "-W", "2", "172.17.0.1"]);
    assert!(ping.success(), "two reaches the gateway:\n{}", ping.describe());
    let routes = sb.berth_ok(&["exec", "one", "ip", "route"]);
    assert!(routes.contains("default via 172.17.0.1 dev eth0"), "default route via the gateway:\n{routes}");
    let link = sb.berth_ok(&["exec", "one", "ip", "-o", "link", "show", "eth0"]);
    assert!(link.contains("02:42:ac:11:00:02"), "Docker's MAC from the address:\n{link}");
    let hosts = sb.berth_ok(&["exec", "one", "cat", "/etc/hosts"]);
    assert!(hosts.lines().any(|l| l.starts_with("172.17.0.2\t")), "own address in /etc/hosts:\n{hosts}");
    assert_eq!(sandbox_veths(&sb).len(), 2, "one veth per endpoint: {:?}", sandbox_veths(&sb));
    assert_eq!(netns_mounts(&sb).len(), netns_before.len() + 2, "a namespace mount per container");

    sb.berth_ok(&["rm", "-f", "one", "two"]);
    assert!(sandbox_veths(&sb).is_empty(), "no veth left: {:?}", sandbox_veths(&sb));
    assert_eq!(netns_mounts(&sb), netns_before, "no namespace mount left");
    // The addresses are free again, lowest first.
    sb.berth_ok(&["run", "-d", "--name", "three", "busybox", "sleep", "1000"]);
    assert_eq!(eth0_of(&sb, "three"), "172.17.0.2/16");
    sb.berth_ok(&["rm", "-f", "three"]);
}

#[test]
fn a_start_that_fails_after_the_network_is_set_up_undoes_it() {
    let sb = sandbox_with_busybox();
    let netns_before = netns_mounts(&sb);
    let out = sb.berth(&["run", "-d", "--name", "broken", "busybox", "/no/such/command"]);
    assert!(!out.success(), "the command cannot run:\n{}", out.describe());
    assert!(sandbox_veths(&sb).is_empty(), "no veth left: {:?}", sandbox_veths(&sb));
    assert_eq!(netns_mounts(&sb), netns_before, "no namespace left");
    sb.berth_ok(&["run", "-d", "--name", "fine", "busybox", "sleep", "1000"]);
    assert_eq!(eth0_of(&sb, "fine"), "172.17.0.2/16", "the failed start's address was released");
    sb.berth_ok(&["rm", "-f", "broken", "fine"]);
}

#[test]
fn fifty_containers_starting_at_once_get_fifty_addresses() {
    let sb = sandbox_with_busybox();
    let names: Vec<String> = (0..50).map(|i| format!("c{i:02}")).collect();
    for n in &names {
        sb.berth_ok(&["create", "--name", n, "busybox", "sleep", "1000"]);
    }
    let t0 = Instant::now();
    std::thread::scope(|s| {
        for n in &names {
            let sb = &sb;
            s.spawn(move || {
                sb.berth_ok(&["start", n]);
            });
        }
    });
    let took = t0.elapsed();
    let addrs = netns_addresses(&sb);
    let mut unique = addrs.clone();
    unique.dedup();
    assert_eq!(unique.len(), 50, "fifty distinct addresses: {addrs:?}");
    assert!(addrs.iter().all(|a| a.starts_with("172.17.0.") && a.ends_with("/16")), "{addrs:?}");
    assert_eq!(sandbox_veths(&sb).len(), 50);
    eprintln!("50 concurrent starts on the default bridge took {took:?}");
    let mut args = vec!["rm", "-f"];
    args.extend(names.iter().map(String::as_str));
    sb.berth_ok(&args);
    assert!(sandbox_veths(&sb).is_empty(), "no veth left: {:?}", sandbox_veths(&sb));
}

#[test]
fn a_restarted_daemon_keeps_running_containers_wired_and_cleans_up_later() {
    let mut sb = sandbox_with_busybox();
    sb.berth_ok(&["run", "-d", "--name", "keeper", "busybox", "sleep", "1000"]);
    assert_eq!(eth0_of(&sb, "keeper"), "172.17.0.2/16");
    sb.kill9();
    sb.restart();
    assert_eq!(eth0_of(&sb, "keeper"), "172.17.0.2/16", "the namespace and its address survived");
    // The allocation survived too: the next container gets the next address.
    sb.berth_ok(&["run", "-d", "--name", "newer", "busybox", "sleep", "1000"]);
    assert_eq!(eth0_of(&sb, "newer"), "172.17.0.3/16");
    let ping = sb.berth(&["exec", "newer", "ping", "-c", "1", "-W", "2", "172.17.0.2"]);
    assert!(ping.success(), "the re-adopted container is still reachable:\n{}", ping.describe());
    sb.berth_ok(&["rm", "-f", "keeper", "newer"]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !sandbox_veths(&sb).is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(sandbox_veths(&sb).is_empty(), "no veth left: {:?}", sandbox_veths(&sb));
}

#[test]
fn a_vlan_parent_without_kernel_support_is_a_clear_error_and_leaves_nothing() {
    let sb = sandbox_with_busybox();
    sandbox_sh_ok(&sb, "ip link add vlp0 type veth peer name vlp0p && ip link set vlp0 up");
    let links_before = common::net::sandbox_links(&sb);
    let out = sb.berth(&[
        "network",
        "create",
        "-d",
        "macvlan",
        "--subnet",
        "192.168.77.0/24",
        "-o",
        "parent=vlp0.10",
        "mv10",
    ]);
    let vlan_ok =
        common::net::sandbox_sh(&sb, "ip link add vlprobe.7 link vlp0 type vlan id 7 && ip link del vlprobe.7")
            .success();
    if vlan_ok {
        assert!(out.success(), "with 802.1q support the sub-interface is made:\n{}", out.describe());
        assert!(common::net::sandbox_links(&sb).contains(&"vlp0.10".to_string()));
        sb.berth_ok(&["network", "rm", "mv10"]);
        assert!(!common::net::sandbox_links(&sb).contains(&"vlp0.10".to_string()), "removed with the network");
        return;
    }
    assert!(!out.success(), "no 802.1q support: refused:\n{}", out.describe());
    assert!(
        out.stderr.contains("does not support vlan links")
            && out.stderr.contains("8021q")
            && out.stderr.contains("vlp0.10"),
        "the error names the missing kernel feature and the link:\n{}",
        out.describe()
    );
    let ls = sb.berth_ok(&["network", "ls", "--format", "{{.Name}}"]);
    assert!(!ls.lines().any(|l| l == "mv10"), "no half-made network:\n{ls}");
    assert_eq!(common::net::sandbox_links(&sb), links_before, "no half-made link");
    // A plain parent works on the same kernel.
    sb.berth_ok(&["network", "create", "-d", "macvlan", "--subnet", "192.168.77.0/24", "-o", "parent=vlp0", "mv"]);
    sb.berth_ok(&["run", "-d", "--name", "mvc", "--network", "mv", "busybox", "sleep", "1000"]);
    assert_eq!(eth0_of(&sb, "mvc"), "192.168.77.2/24");
    sb.berth_ok(&["rm", "-f", "mvc"]);
    sb.berth_ok(&["network", "rm", "mv"]);
}

#[test]
fn connect_and_disconnect_while_running_keep_interface_names_and_addresses_straight() {
    let sb = sandbox_with_busybox();
    sb.berth_ok(&["network", "create", "--subnet", "10.31.0.0/24", "na"]);
    sb.berth_ok(&["network", "create", "--subnet", "10.32.0.0/24", "nb"]);
    sb.berth_ok(&["run", "-d", "--name", "multi", "busybox", "sleep", "1000"]);
    sb.berth_ok(&["network", "connect", "na", "multi"]);
    sb.berth_ok(&["network", "connect", "--ip", "10.32.0.50", "nb", "multi"]);
    let addrs = sb.berth_ok(&["exec", "multi", "ip", "-o", "-4", "addr"]);
    assert!(addrs.contains("eth1") && addrs.contains("10.31.0.2/24"), "{addrs}");
    assert!(addrs.contains("eth2") && addrs.contains("10.32.0.50/24"), "{addrs}");
    // The first interface goes; the next connect reuses the free name.
    sb.berth_ok(&["network", "disconnect", "bridge", "multi"]);
    let links = sb.berth_ok(&["exec", "multi", "ip", "-o", "link"]);
    assert!(!links.contains("eth0"), "{links}");
    sb.berth_ok(&["network", "connect", "bridge", "multi"]);
    let addrs = sb.berth_ok(&["exec", "multi", "ip", "-o", "-4", "addr", "show", "eth0"]);
    assert!(addrs.contains("172.17.0.2/16"), "{addrs}");
    let out = sb.berth(&["network", "rm", "na"]);
    assert!(!out.success() && out.stderr.contains("active endpoints"), "{}", out.describe());
    // Stop tears every endpoint down; the static address is free again.
    sb.berth_ok(&["stop", "-t", "1", "multi"]);
    assert!(sandbox_veths(&sb).is_empty(), "{:?}", sandbox_veths(&sb));
    sb.berth_ok(&["run", "-d", "--name", "taker", "--network", "nb", "--ip", "10.32.0.50", "busybox", "sleep", "1000"]);
    sb.berth_ok(&["rm", "-f", "taker", "multi"]);
    sb.berth_ok(&["network", "rm", "na", "nb"]);
    let routes = sandbox_sh_ok(&sb, "ip route");
    assert!(!routes.contains("10.31.0.") && !routes.contains("10.32.0."), "the bridges are gone:\n{routes}");
}
