//! The bridge driver and IPAM as a user sees them: the default `bridge`
//! network, user-defined bridges with their IPAM, `network` commands,
//! connect/disconnect at runtime, the other network modes, and nothing left
//! behind after `rm -f` (no veth, no netns mount, no NAT rule, no address).

mod common;

use std::collections::BTreeSet;

use common::images;
use common::net::{
    api_request, inspect_ip, ip_on, mac_of, netns_mounts, nft_ruleset, sandbox_addresses, sandbox_links, sandbox_veths,
    OtherHost,
};
use common::Sandbox;
use serde_json::Value;

fn sandbox_with_busybox() -> Sandbox {
    let sb = Sandbox::start();
    sb.load_image(&images::busybox(), "busybox:latest");
    sb
}

fn network_inspect(sb: &Sandbox, name: &str) -> Value {
    let out = sb.berth_ok(&["network", "inspect", name]);
    let v: Value =
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("network inspect printed invalid JSON ({e}):\n{out}"));
    v.as_array().and_then(|a| a.first()).cloned().unwrap_or_else(|| panic!("network inspect printed no object:\n{out}"))
}

fn ping(sb: &Sandbox, from: &str, to: &str) -> common::Output {
    sb.berth(&["exec", from, "ping", "-c", "1", "-W", "2", to])
}

#[test]
fn default_bridge_hands_out_addresses_in_order_and_leaves_nothing_behind() {
    let sb = sandbox_with_busybox();
    let veths_before = sandbox_veths(&sb);
    let netns_before = netns_mounts(&sb);
    assert!(
        sandbox_addresses(&sb).contains(&("berth0".to_string(), "172.17.0.1/16".to_string())),
        "the daemon made the default bridge berth0 with 172.17.0.1/16: {:?}",
        sandbox_addresses(&sb)
    );

    sb.berth_ok(&["run", "-d", "--name", "ca", "busybox", "sleep", "1000"]);
    sb.berth_ok(&["run", "-d", "--name", "cb", "busybox", "sleep", "1000"]);
    assert_eq!(inspect_ip(&sb, "ca"), "172.17.0.2");
    assert_eq!(inspect_ip(&sb, "cb"), "172.17.0.3");
    assert_eq!(sb.inspect_format("ca", "{{.NetworkSettings.Gateway}}"), "172.17.0.1");
    assert_eq!(sb.inspect_format("ca", "{{.NetworkSettings.IPPrefixLen}}"), "16");
    assert_eq!(sb.inspect_format("ca", "{{.NetworkSettings.MacAddress}}"), "02:42:ac:11:00:02");
    assert_eq!(ip_on(&sb, "ca", "bridge"), "172.17.0.2");
    assert_eq!(sb.inspect_format("ca", "{{.HostConfig.NetworkMode}}"), "bridge");
    let key = sb.inspect_format("ca", "{{.NetworkSettings.SandboxKey}}");
    assert!(key.contains("/netns/"), "SandboxKey is the namespace's path: {key}");

    let eth0 = sb.berth_ok(&["exec", "ca", "ip", "-o", "-4", "addr", "show", "eth0"]);
    assert!(eth0.contains("172.17.0.2/16"), "eth0 carries the address:\n{eth0}");
    let link = sb.berth_ok(&["exec", "ca", "ip", "-o", "link", "show", "eth0"]);
    assert!(link.contains("02:42:ac:11:00:02"), "eth0 has the MAC derived from the address:\n{link}");
    let routes = sb.berth_ok(&["exec", "ca", "ip", "route"]);
    assert!(routes.contains("default via 172.17.0.1"), "default route via the gateway:\n{routes}");
    for (from, to) in [("ca", "172.17.0.3"), ("cb", "172.17.0.2"), ("ca", "172.17.0.1")] {
        let out = ping(&sb, from, to);
        assert!(out.success(), "{from} reaches {to}:\n{}", out.describe());
    }
    let resolv = sb.berth_ok(&["exec", "ca", "cat", "/etc/resolv.conf"]);
    assert!(!resolv.contains("127.0.0.11"), "the default bridge has no embedded DNS:\n{resolv}");
    assert_eq!(sandbox_veths(&sb).len(), veths_before.len() + 2, "one host-side veth per container");

    let bridge = network_inspect(&sb, "bridge");
    assert_eq!(bridge["Driver"], "bridge");
    assert_eq!(bridge["IPAM"]["Config"][0]["Subnet"], "172.17.0.0/16");
    assert_eq!(bridge["IPAM"]["Config"][0]["Gateway"], "172.17.0.1");
    let members = bridge["Containers"].as_object().cloned().unwrap_or_default();
    let addrs: BTreeSet<&str> = members.values().filter_map(|c| c["IPv4Address"].as_str()).collect();
    assert_eq!(addrs, BTreeSet::from(["172.17.0.2/16", "172.17.0.3/16"]), "network inspect lists both: {bridge}");

    sb.berth_ok(&["rm", "-f", "ca", "cb"]);
    assert_eq!(sandbox_veths(&sb), veths_before, "no veth left behind");
    assert_eq!(netns_mounts(&sb), netns_before, "no netns mount left behind");
    let rules = nft_ruleset(&sb);
    assert!(
        !rules.contains("172.17.0.2") && !rules.contains("172.17.0.3"),
        "no rule names a removed container:\n{rules}"
    );
    // The addresses were released: the next container gets the first one again.
    sb.berth_ok(&["run", "-d", "--name", "cc", "busybox", "sleep", "1000"]);
    assert_eq!(inspect_ip(&sb, "cc"), "172.17.0.2");
}

#[test]
fn containers_reach_another_host_through_masquerade_unless_internal() {
    let sb = sandbox_with_busybox();
    // The other host has no route back to the containers' subnets: only
    // the sandbox's masquerade lets the replies find their way.
    let other = OtherHost::start(&sb, "ext0", "10.201.0.2/24", None);
    common::net::sandbox_sh_ok(&sb, &format!("{} addr add 10.201.0.1/24 dev ext0", common::net::ip_bin()));
    sb.berth_ok(&["run", "-d", "--name", "out", "busybox", "sleep", "1000"]);
    let out = ping(&sb, "out", "10.201.0.2");
    assert!(out.success(), "a container on the default bridge reaches another host:\n{}", out.describe());

    sb.berth_ok(&["network", "create", "--internal", "closed"]);
    sb.berth_ok(&["run", "-d", "--name", "in", "--network", "closed", "busybox", "sleep", "1000"]);
    assert!(!ping(&sb, "in", "10.201.0.2").success(), "an --internal network does not reach outside");
    assert_eq!(network_inspect(&sb, "closed")["Internal"], true);
    drop(other);
}

#[test]
fn user_defined_network_uses_its_ipam_and_refuses_bad_ranges() {
    let sb = sandbox_with_busybox();
    let id = sb.berth_ok(&[
        "network",
        "create",
        "--subnet",
        "172.72.0.0/16",
        "--ip-range",
        "172.72.0.0/24",
        "--gateway",
        "172.72.0.1",
        "--label",
        "team=berth",
        "n1",
    ]);
    let id = id.trim();
    assert_eq!(id.len(), 64, "network create prints the full ID: {id:?}");
    let n1 = network_inspect(&sb, "n1");
    assert_eq!(n1["Id"], id);
    assert_eq!(n1["Driver"], "bridge");
    assert_eq!(n1["Scope"], "local");
    assert_eq!(n1["Labels"]["team"], "berth");
    assert_eq!(
        n1["IPAM"]["Config"][0],
        serde_json::json!({"Subnet": "172.72.0.0/16", "IPRange": "172.72.0.0/24", "Gateway": "172.72.0.1"})
    );

    sb.berth_ok(&["run", "-d", "--name", "cx", "--network", "n1", "busybox", "sleep", "1000"]);
    sb.berth_ok(&["run", "-d", "--name", "cy", "--network", "n1", "--ip", "172.72.0.50", "busybox", "sleep", "1000"]);
    let x = ip_on(&sb, "cx", "n1");
    assert_eq!(x, "172.72.0.2", "first address of the ip-range after the gateway");
    assert_eq!(ip_on(&sb, "cy", "n1"), "172.72.0.50", "--ip gives the static address");
    assert_eq!(sb.inspect_format("cx", "{{(index .NetworkSettings.Networks \"n1\").Gateway}}"), "172.72.0.1");
    assert_eq!(
        sb.inspect_format("cx", "{{.NetworkSettings.IPAddress}}"),
        "",
        "top-level fields mirror only the default bridge"
    );
    assert!(ping(&sb, "cx", "172.72.0.50").success(), "containers on n1 reach each other");
    // The same static address twice is refused, and the refused container does not start.
    let dup =
        sb.berth(&["run", "-d", "--name", "cz", "--network", "n1", "--ip", "172.72.0.50", "busybox", "sleep", "1"]);
    assert!(!dup.success(), "a duplicate --ip is refused:\n{}", dup.describe());

    // The docker CLI's own check, before the daemon is asked.
    let bad = sb.berth(&["network", "create", "--subnet", "172.73.0.0/16", "--ip-range", "10.0.0.0/24", "n2"]);
    assert!(!bad.success() && bad.stderr.contains("no matching subnet for range 10.0.0.0/24"), "{}", bad.describe());
    // And the daemon's, for API clients that skip it.
    for (what, body) in [
        (
            "ip-range outside the subnet",
            r#"{"Name":"n3","IPAM":{"Config":[{"Subnet":"172.73.0.0/16","IPRange":"10.0.0.0/24"}]}}"#,
        ),
        (
            "gateway outside the subnet",
            r#"{"Name":"n3","IPAM":{"Config":[{"Subnet":"172.73.0.0/16","Gateway":"10.0.0.1"}]}}"#,
        ),
        ("invalid subnet", r#"{"Name":"n3","IPAM":{"Config":[{"Subnet":"172.73.0.0/40"}]}}"#),
    ] {
        let (status, answer) = api_request(&sb, "POST", "/v1.50/networks/create", Some(body));
        assert_eq!(status, 400, "{what} is a 400: {answer}");
        assert!(answer.contains("message"), "{what}: {answer}");
    }
    let overlap = r#"{"Name":"n3","IPAM":{"Config":[{"Subnet":"172.72.5.0/24"}]}}"#;
    let (status, answer) = api_request(&sb, "POST", "/v1.50/networks/create", Some(overlap));
    assert_eq!(status, 403, "an overlapping subnet is libnetwork's 403: {answer}");
    assert!(answer.contains("Pool overlaps with other one on this address space"), "{answer}");
    let (status, answer) = api_request(&sb, "POST", "/v1.50/networks/create", Some(r#"{"Name":"n1"}"#));
    assert_eq!(status, 409, "a used name is a 409: {answer}");
    assert!(answer.contains("network with name n1 already exists"), "{answer}");
    let names = sb.berth_ok(&["network", "ls", "--format", "{{.Name}}"]);
    assert!(!names.lines().any(|n| n == "n3" || n == "n2"), "refused networks do not exist:\n{names}");

    // Subnets are picked from the pool when not given, never overlapping.
    sb.berth_ok(&["network", "create", "auto1"]);
    sb.berth_ok(&["network", "create", "auto2"]);
    let s1 = network_inspect(&sb, "auto1")["IPAM"]["Config"][0]["Subnet"].as_str().unwrap_or("").to_string();
    let s2 = network_inspect(&sb, "auto2")["IPAM"]["Config"][0]["Subnet"].as_str().unwrap_or("").to_string();
    assert_eq!(s1, "172.18.0.0/16");
    assert_eq!(s2, "172.19.0.0/16");
}

#[test]
fn connect_and_disconnect_add_and_remove_an_interface() {
    let sb = sandbox_with_busybox();
    sb.berth_ok(&["network", "create", "--subnet", "172.80.0.0/16", "n1"]);
    sb.berth_ok(&["run", "-d", "--name", "cc", "busybox", "sleep", "1000"]);
    let links = |sb: &Sandbox| sb.berth_ok(&["exec", "cc", "ip", "-o", "link"]);
    assert!(!links(&sb).contains("eth1"), "only eth0 before connect");

    sb.berth_ok(&["network", "connect", "--ip", "172.80.0.9", "--alias", "cee", "n1", "cc"]);
    let after = sb.berth_ok(&["exec", "cc", "ip", "-o", "-4", "addr", "show", "eth1"]);
    assert!(after.contains("172.80.0.9/16"), "connect adds eth1 with the address:\n{after}");
    assert_eq!(ip_on(&sb, "cc", "n1"), "172.80.0.9");
    let n1 = network_inspect(&sb, "n1");
    assert_eq!(n1["Containers"].as_object().map(|m| m.len()), Some(1), "n1 lists c: {n1}");
    let ps = sb.berth_ok(&["ps", "--filter", "network=n1", "--format", "{{.Names}}"]);
    assert_eq!(ps.trim(), "cc", "ps -f network=n1");
    let ps = sb.berth_ok(&["ps", "--format", "{{.Networks}}", "--filter", "name=cc"]);
    assert!(ps.contains("bridge") && ps.contains("n1"), "ps shows both networks: {ps}");

    sb.berth_ok(&["network", "disconnect", "n1", "cc"]);
    assert!(!links(&sb).contains("eth1"), "disconnect removes eth1:\n{}", links(&sb));
    assert_eq!(network_inspect(&sb, "n1")["Containers"], serde_json::json!({}));
    assert_eq!(sb.berth_ok(&["ps", "--filter", "network=n1", "-q"]).trim(), "");

    // Refused for host, none and container: modes, with Docker's messages
    // (moby's runconfig errors: invalid parameter, 400).
    sb.berth_ok(&["run", "-d", "--name", "ch", "--network", "host", "busybox", "sleep", "1000"]);
    let out = sb.berth(&["network", "connect", "n1", "ch"]);
    assert!(
        !out.success()
            && out.stderr.contains(
                "container sharing network namespace with another container or host cannot be connected to any other network"
            ),
        "{}",
        out.describe()
    );
    let out = sb.berth(&["network", "connect", "host", "cc"]);
    assert!(
        !out.success()
            && out.stderr.contains("container cannot be disconnected from host network or connected to host network"),
        "{}",
        out.describe()
    );
    sb.berth_ok(&["run", "-d", "--name", "nn", "--network", "none", "busybox", "sleep", "1000"]);
    let out = sb.berth(&["network", "connect", "n1", "nn"]);
    assert!(
        !out.success()
            && out.stderr.contains(
                "container cannot be connected to multiple networks with one of the networks in private (none) mode"
            ),
        "{}",
        out.describe()
    );
    sb.berth_ok(&["run", "-d", "--name", "cj", "--network", "container:cc", "busybox", "sleep", "1000"]);
    let out = sb.berth(&["network", "connect", "n1", "cj"]);
    assert!(
        !out.success()
            && out.stderr.contains("container sharing network namespace with another container or host cannot be connected to any other network"),
        "{}",
        out.describe()
    );
    let (status, _) = api_request(&sb, "POST", "/v1.50/networks/n1/connect", Some(r#"{"Container":"ch"}"#));
    assert_eq!(status, 400, "Docker answers 400 for a host-mode container");
    // Connecting twice is libnetwork's 403.
    sb.berth_ok(&["network", "connect", "n1", "cc"]);
    let (status, answer) = api_request(&sb, "POST", "/v1.50/networks/n1/connect", Some(r#"{"Container":"cc"}"#));
    assert_eq!(status, 403, "{answer}");
}

#[test]
fn container_none_and_host_modes() {
    let sb = sandbox_with_busybox();
    sb.berth_ok(&["run", "-d", "--name", "ca", "busybox", "sleep", "1000"]);
    let veths = sandbox_veths(&sb);
    sb.berth_ok(&["run", "-d", "--name", "cj", "--network", "container:ca", "busybox", "sleep", "1000"]);
    let show = |name: &str| sb.berth_ok(&["exec", name, "ip", "-o", "addr", "show", "eth0"]);
    assert_eq!(show("cj"), show("ca"), "container:a sees a's eth0 address");
    let mac = |name: &str| mac_of(&sb.berth_ok(&["exec", name, "ip", "-o", "link", "show", "eth0"]));
    assert_eq!(mac("cj"), mac("ca"), "and its MAC");
    assert_eq!(sandbox_veths(&sb), veths, "no new veth for container:ca");
    assert_eq!(sb.inspect_format("cj", "{{json .NetworkSettings.Networks}}"), "{}");
    // Docker records the container's ID, not the name it was given.
    let ca_id = sb.inspect_format("ca", "{{.Id}}");
    assert_eq!(sb.inspect_format("cj", "{{.HostConfig.NetworkMode}}"), format!("container:{ca_id}"));

    let links = sb.berth_ok(&["run", "--rm", "--network", "none", "busybox", "ip", "-o", "link"]);
    let names: Vec<&str> = links.lines().filter_map(|l| l.split(": ").nth(1)).collect();
    assert_eq!(names, vec!["lo"], "--network none has only lo:\n{links}");

    let inside = sb.berth_ok(&["run", "--rm", "--network", "host", "busybox", "ip", "-o", "link"]);
    let mut inside: Vec<String> = inside
        .lines()
        .filter_map(|l| l.split(": ").nth(1))
        .map(|n| n.split('@').next().unwrap_or(n).to_string())
        .collect();
    let mut outside = sandbox_links(&sb);
    inside.sort();
    outside.sort();
    assert_eq!(inside, outside, "--network host sees the sandbox's interfaces");
    let out = sb.berth(&["run", "--rm", "--network", "host", "-p", "18080:80", "busybox", "true"]);
    assert!(out.success(), "{}", out.describe());
    assert!(
        out.stderr.contains("Published ports are discarded when using host network mode"),
        "Docker's warning for -p with host mode:\n{}",
        out.describe()
    );
}

#[test]
fn network_commands_list_filter_remove_and_prune() {
    let sb = sandbox_with_busybox();
    sb.berth_ok(&["network", "create", "--label", "keep=yes", "n1"]);
    sb.berth_ok(&["network", "create", "n2"]);
    let ls = sb.berth_ok(&["network", "ls"]);
    let mut lines = ls.lines();
    assert_eq!(
        lines.next().map(|h| h.split_whitespace().collect::<Vec<_>>()),
        Some(vec!["NETWORK", "ID", "NAME", "DRIVER", "SCOPE"])
    );
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split_whitespace().collect()).collect();
    let names: Vec<&str> = rows.iter().map(|r| r[1]).collect();
    assert_eq!(names, vec!["bridge", "host", "n1", "n2", "none"], "sorted by name:\n{ls}");
    for r in &rows {
        assert_eq!(r[0].len(), 12, "short IDs:\n{ls}");
        assert_eq!(r[3], "local");
    }
    let drivers: Vec<(&str, &str)> = rows.iter().map(|r| (r[1], r[2])).collect();
    assert!(
        drivers.contains(&("host", "host"))
            && drivers.contains(&("none", "null"))
            && drivers.contains(&("n1", "bridge")),
        "{ls}"
    );

    let q = sb.berth_ok(&["network", "ls", "-q", "--no-trunc"]);
    assert!(q.lines().all(|l| l.len() == 64) && q.lines().count() == 5, "{q}");
    assert_eq!(sb.berth_ok(&["network", "ls", "-f", "name=n1", "--format", "{{.Name}}"]).trim(), "n1");
    assert_eq!(sb.berth_ok(&["network", "ls", "-f", "label=keep=yes", "--format", "{{.Name}}"]).trim(), "n1");
    let custom = sb.berth_ok(&["network", "ls", "-f", "type=custom", "--format", "{{.Name}} {{.Driver}}"]);
    assert_eq!(custom, "n1 bridge\nn2 bridge\n");
    let bad = sb.berth(&["network", "ls", "-f", "bogus=1"]);
    assert!(!bad.success() && bad.stderr.contains("invalid filter 'bogus'"), "{}", bad.describe());

    let out = sb.berth(&["network", "rm", "bridge"]);
    assert!(
        !out.success() && out.stderr.contains("bridge is a pre-defined network and cannot be removed"),
        "{}",
        out.describe()
    );
    sb.berth_ok(&["run", "-d", "--name", "user", "--network", "n1", "busybox", "sleep", "1000"]);
    let out = sb.berth(&["network", "rm", "n1"]);
    assert!(!out.success() && out.stderr.contains("has active endpoints"), "{}", out.describe());
    let out = sb.berth(&["network", "rm", "ghost"]);
    assert!(!out.success() && out.stderr.contains("network ghost not found"), "{}", out.describe());
    assert!(sb.berth(&["network", "rm", "-f", "ghost"]).success(), "-f ignores a missing network");
    let out = sb.berth(&["network", "inspect", "ghost"]);
    assert!(!out.success() && out.stderr.contains("network ghost not found"), "{}", out.describe());

    let pruned = sb.berth_ok(&["network", "prune", "-f"]);
    assert_eq!(pruned, "Deleted Networks:\nn2\n\n", "prune removes the unused network only");
    sb.berth_ok(&["rm", "-f", "user"]);
    assert_eq!(sb.berth_ok(&["network", "rm", "n1"]).trim(), "n1");
    let names = sb.berth_ok(&["network", "ls", "--format", "{{.Name}}"]);
    assert_eq!(names, "bridge\nhost\nnone\n");
    let out = sb.berth(&["run", "--rm", "--network", "n1", "busybox", "true"]);
    assert!(!out.success() && out.stderr.contains("network n1 not found"), "{}", out.describe());
}

#[test]
fn fifty_containers_started_at_once_get_distinct_addresses() {
    let sb = sandbox_with_busybox();
    sb.berth_ok(&["network", "create", "--subnet", "172.90.0.0/24", "many"]);
    let n = 50;
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..n)
            .map(|i| {
                let sb = &sb;
                s.spawn(move || {
                    let name = format!("m{i}");
                    sb.berth(&["run", "-d", "--name", &name, "--network", "many", "busybox", "sleep", "1000"])
                })
            })
            .collect();
        for h in handles {
            let out = h.join().expect("run thread");
            assert!(out.success(), "{}", out.describe());
        }
    });
    let mut seen = BTreeSet::new();
    for i in 0..n {
        let ip = ip_on(&sb, &format!("m{i}"), "many");
        assert!(ip.starts_with("172.90.0."), "m{i} got {ip}");
        assert!(seen.insert(ip.clone()), "address {ip} handed out twice");
    }
    assert_eq!(seen.len(), n);
}
