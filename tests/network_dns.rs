//! Names: the embedded DNS on user-defined networks (container names, short
//! IDs, `--network-alias` round-robin, fast failure for unknown names) and
//! legacy `--link` on the default bridge (`/etc/hosts`, rewritten when the
//! linked container comes back with a new address).

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::images;
use common::net::{eventually, inspect_ip, ip_on};
use common::Sandbox;

fn sandbox_with_busybox() -> Sandbox {
    let sb = Sandbox::start();
    sb.load_image(&images::busybox(), "busybox:latest");
    sb
}

/// The addresses in busybox `nslookup` output after the `Name:` line, in order.
fn answers(nslookup: &str) -> Vec<String> {
    nslookup
        .split("Name:")
        .skip(1)
        .flat_map(|block| block.lines().filter_map(|l| l.trim().strip_prefix("Address:")).map(|a| a.trim().to_string()))
        // busybox prints "Address: 1.2.3.4" (newer) or "Address 1: 1.2.3.4 name" (older).
        .map(|a| a.split_whitespace().next().unwrap_or("").to_string())
        .filter(|a| a.parse::<std::net::Ipv4Addr>().is_ok())
        .collect()
}

#[test]
fn containers_on_a_user_defined_network_resolve_each_other_by_name() {
    let sb = sandbox_with_busybox();
    sb.berth_ok(&["network", "create", "n1"]);
    let id = sb.berth_ok(&["run", "-d", "--name", "web", "--network", "n1", "busybox", "sleep", "1000"]);
    let web_ip = ip_on(&sb, "web", "n1");

    let resolv = sb.berth_ok(&["run", "--rm", "--network", "n1", "busybox", "cat", "/etc/resolv.conf"]);
    assert!(
        resolv.lines().any(|l| l.trim() == "nameserver 127.0.0.11"),
        "resolv.conf names the embedded DNS:\n{resolv}"
    );

    // A container asks at once when it starts, as `run --rm ... ping web` does: several times,
    // so a container that is not yet known to the DNS when its process starts shows up.
    for _ in 0..3 {
        let out = sb.berth(&["run", "--rm", "--network", "n1", "busybox", "nslookup", "web"]);
        assert!(out.success(), "nslookup web at start:\n{}", out.describe());
        assert_eq!(answers(&out.stdout), vec![web_ip.clone()], "nslookup web:\n{}", out.stdout);
    }
    let short = &id.trim()[..12];
    let out = sb.berth_ok(&["run", "--rm", "--network", "n1", "busybox", "nslookup", short]);
    assert_eq!(answers(&out), vec![web_ip.clone()], "nslookup by short ID:\n{out}");
    let out = sb.berth(&["run", "--rm", "--network", "n1", "busybox", "ping", "-c", "1", "-W", "2", "web"]);
    assert!(out.success() && out.stdout.contains(&web_ip), "ping web:\n{}", out.describe());

    // Names the DNS does not know are forwarded; the sandbox has no resolvers,
    // so the answer is a quick failure, never a hang.
    let t = Instant::now();
    let out = sb.berth(&["run", "--rm", "--network", "n1", "busybox", "nslookup", "no-such-name.invalid"]);
    let took = t.elapsed();
    assert!(!out.success(), "an unknown name does not resolve:\n{}", out.describe());
    assert!(took < Duration::from_secs(8), "unknown names fail fast (took {took:?}):\n{}", out.describe());

    // A container on another network does not see web.
    sb.berth_ok(&["network", "create", "n2"]);
    let out = sb.berth(&["run", "--rm", "--network", "n2", "busybox", "ping", "-c", "1", "-W", "1", "web"]);
    assert!(!out.success(), "web is not visible from n2:\n{}", out.describe());
    // The default bridge has no embedded DNS (Docker's behaviour).
    let out = sb.berth(&["run", "--rm", "busybox", "ping", "-c", "1", "-W", "1", "web"]);
    assert!(!out.success(), "no names on the default bridge:\n{}", out.describe());
}

#[test]
fn an_alias_held_by_three_containers_answers_all_three_round_robin() {
    let sb = sandbox_with_busybox();
    sb.berth_ok(&["network", "create", "n1"]);
    let mut ips = BTreeSet::new();
    for name in ["s1", "s2", "s3"] {
        sb.berth_ok(&[
            "run",
            "-d",
            "--name",
            name,
            "--network",
            "n1",
            "--network-alias",
            "svc",
            "busybox",
            "sleep",
            "1000",
        ]);
        ips.insert(ip_on(&sb, name, "n1"));
    }
    assert_eq!(ips.len(), 3);
    let aliases = sb.inspect_format("s1", "{{json (index .NetworkSettings.Networks \"n1\").Aliases}}");
    assert!(aliases.contains("svc"), "inspect shows the alias: {aliases}");

    sb.berth_ok(&["run", "-d", "--name", "client", "--network", "n1", "busybox", "sleep", "1000"]);
    let mut firsts = BTreeSet::new();
    for _ in 0..6 {
        let out = sb.berth_ok(&["exec", "client", "nslookup", "svc"]);
        let got = answers(&out);
        let set: BTreeSet<String> = got.iter().cloned().collect();
        assert_eq!(set, ips, "every answer has all three addresses:\n{out}");
        firsts.insert(got[0].clone());
    }
    assert!(firsts.len() > 1, "the order rotates between queries (first addresses seen: {firsts:?})");
    let out = sb.berth(&["exec", "client", "ping", "-c", "1", "-W", "2", "svc"]);
    assert!(out.success(), "ping svc:\n{}", out.describe());

    // An alias whose holder is gone no longer answers with its address.
    sb.berth_ok(&["rm", "-f", "s3"]);
    let left: BTreeSet<String> = ["s1", "s2"].iter().map(|n| ip_on(&sb, n, "n1")).collect();
    let out = sb.berth_ok(&["exec", "client", "nslookup", "svc"]);
    assert_eq!(answers(&out).into_iter().collect::<BTreeSet<_>>(), left, "{out}");
}

#[test]
fn legacy_links_write_hosts_and_follow_a_new_address() {
    let sb = sandbox_with_busybox();
    let db_id = sb.berth_ok(&["run", "-d", "--name", "db", "busybox", "sleep", "1000"]);
    let db_ip = inspect_ip(&sb, "db");
    sb.berth_ok(&["run", "-d", "--name", "app", "--link", "db:mysql", "busybox", "sleep", "1000"]);
    let links = sb.inspect_format("app", "{{json .HostConfig.Links}}");
    assert!(links.contains("db") && links.contains("mysql"), "HostConfig.Links: {links}");

    let hosts = sb.berth_ok(&["exec", "app", "cat", "/etc/hosts"]);
    let line = hosts
        .lines()
        .find(|l| l.split_whitespace().any(|w| w == "mysql"))
        .unwrap_or_else(|| panic!("no mysql line:\n{hosts}"));
    let words: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(words[0], db_ip, "{line}");
    assert!(words.contains(&"db") && words.contains(&&db_id.trim()[..12]), "name, alias and short ID: {line}");
    let out = sb.berth(&["exec", "app", "ping", "-c", "1", "-W", "2", "mysql"]);
    assert!(out.success(), "ping mysql:\n{}", out.describe());
    let env = sb.berth_ok(&["exec", "app", "env"]);
    assert!(env.lines().any(|l| l == "MYSQL_NAME=/app/mysql"), "Docker's link variables:\n{env}");

    // db comes back with another address: a filler takes its old one meanwhile.
    sb.berth_ok(&["stop", "-t", "1", "db"]);
    sb.berth_ok(&["run", "-d", "--name", "filler", "busybox", "sleep", "1000"]);
    assert_eq!(inspect_ip(&sb, "filler"), db_ip, "the released address is reused");
    sb.berth_ok(&["start", "db"]);
    let new_ip = inspect_ip(&sb, "db");
    assert_ne!(new_ip, db_ip);
    let rewritten = eventually(Duration::from_secs(10), || {
        let hosts = sb.berth_ok(&["exec", "app", "cat", "/etc/hosts"]);
        hosts.lines().any(|l| l.split_whitespace().next() == Some(new_ip.as_str()) && l.contains("mysql"))
    });
    assert!(
        rewritten,
        "app's /etc/hosts follows db to {new_ip}:\n{}",
        sb.berth_ok(&["exec", "app", "cat", "/etc/hosts"])
    );
    let out = sb.berth(&["exec", "app", "ping", "-c", "1", "-W", "2", "mysql"]);
    assert!(out.success() && out.stdout.contains(&new_ip), "ping mysql reaches the new address:\n{}", out.describe());

    let out = sb.berth(&["run", "--rm", "--link", "ghost:g", "busybox", "true"]);
    assert!(!out.success(), "a link to a missing container is refused:\n{}", out.describe());
}
