//! The real docker CLI runs the network scenarios against berth:
//! `docker network create/ls/inspect/connect/disconnect/rm/prune` and
//! `docker run --network --network-alias --ip --link -p`, `docker port`.

mod common;

use std::time::Duration;

use common::images;
use common::net::{eventually, sandbox_http_get};
use common::Sandbox;
use serde_json::Value;

fn sandbox() -> Sandbox {
    let sb = Sandbox::start();
    sb.load_image(&images::busybox(), "busybox:latest");
    sb
}

#[test]
fn docker_network_commands() {
    let sb = sandbox();
    let id = sb.docker_ok(&[
        "network",
        "create",
        "--subnet",
        "172.72.0.0/16",
        "--ip-range",
        "172.72.0.0/24",
        "--gateway",
        "172.72.0.1",
        "--label",
        "from=docker",
        "n1",
    ]);
    assert_eq!(id.trim().len(), 64, "{id}");
    let ls = sb.docker_ok(&["network", "ls"]);
    let header: Vec<&str> = ls.lines().next().unwrap_or("").split_whitespace().collect();
    assert_eq!(header, vec!["NETWORK", "ID", "NAME", "DRIVER", "SCOPE"]);
    assert!(
        ls.lines().any(|l| l.split_whitespace().collect::<Vec<_>>() == vec![&id.trim()[..12], "n1", "bridge", "local"]),
        "{ls}"
    );
    assert_eq!(sb.docker_ok(&["network", "ls", "-q", "-f", "name=n1"]).trim(), &id.trim()[..12]);
    let v: Value = serde_json::from_str(&sb.docker_ok(&["network", "inspect", "n1"])).expect("network inspect JSON");
    assert_eq!(v[0]["Name"], "n1");
    assert_eq!(v[0]["IPAM"]["Config"][0]["IPRange"], "172.72.0.0/24");
    assert_eq!(v[0]["Labels"]["from"], "docker");
    assert_eq!(sb.docker_ok(&["network", "inspect", "-f", "{{.Driver}}", "bridge"]).trim(), "bridge");

    let out = sb.docker(&["network", "create", "--subnet", "172.73.0.0/16", "--ip-range", "10.0.0.0/24", "bad"]);
    assert!(!out.success(), "{}", out.describe());
    let out = sb.docker(&["network", "create", "n1"]);
    assert!(!out.success() && out.stderr.contains("already exists"), "{}", out.describe());

    sb.docker_ok(&[
        "run",
        "-d",
        "--name",
        "ca",
        "--network",
        "n1",
        "--network-alias",
        "svc",
        "--ip",
        "172.72.0.40",
        "busybox",
        "sleep",
        "1000",
    ]);
    assert_eq!(
        sb.docker_ok(&["inspect", "-f", "{{(index .NetworkSettings.Networks \"n1\").IPAddress}}", "ca"]).trim(),
        "172.72.0.40"
    );
    let out = sb.docker(&["run", "--rm", "--network", "n1", "busybox", "ping", "-c", "1", "-W", "2", "svc"]);
    assert!(out.success() && out.stdout.contains("172.72.0.40"), "{}", out.describe());
    let out = sb.docker(&["run", "--rm", "--network", "n1", "busybox", "ping", "-c", "1", "-W", "2", "ca"]);
    assert!(out.success(), "{}", out.describe());

    sb.docker_ok(&["run", "-d", "--name", "cb", "busybox", "sleep", "1000"]);
    sb.docker_ok(&["network", "connect", "--alias", "bee", "n1", "cb"]);
    let links = sb.docker_ok(&["exec", "cb", "ip", "-o", "link"]);
    assert!(links.contains("eth1"), "{links}");
    let out = sb.docker(&["exec", "ca", "ping", "-c", "1", "-W", "2", "bee"]);
    assert!(out.success(), "{}", out.describe());
    sb.docker_ok(&["network", "disconnect", "n1", "cb"]);
    assert!(!sb.docker_ok(&["exec", "cb", "ip", "-o", "link"]).contains("eth1"));
    let ps = sb.docker_ok(&["ps", "--filter", "network=n1", "--format", "{{.Names}}"]);
    assert_eq!(ps.trim(), "ca");

    sb.docker_ok(&["run", "-d", "--name", "ch", "--network", "host", "busybox", "sleep", "1000"]);
    let out = sb.docker(&["network", "connect", "n1", "ch"]);
    assert!(
        !out.success()
            && out.stderr.contains(
                "container sharing network namespace with another container or host cannot be connected to any other network"
            ),
        "{}",
        out.describe()
    );

    let out = sb.docker(&["network", "rm", "n1"]);
    assert!(!out.success() && out.stderr.contains("active endpoints"), "{}", out.describe());
    sb.docker_ok(&["rm", "-f", "ca"]);
    assert_eq!(sb.docker_ok(&["network", "rm", "n1"]).trim(), "n1");
    sb.docker_ok(&["network", "create", "spare"]);
    let pruned = sb.docker_ok(&["network", "prune", "-f"]);
    assert!(pruned.contains("Deleted Networks:") && pruned.contains("spare"), "{pruned}");
    let names = sb.docker_ok(&["network", "ls", "--format", "{{.Name}}"]);
    assert_eq!(names, "bridge\nhost\nnone\n");
}

#[test]
fn docker_run_with_links_and_published_ports() {
    let sb = sandbox();
    sb.docker_ok(&["run", "-d", "--name", "db", "busybox", "sleep", "1000"]);
    sb.docker_ok(&["run", "-d", "--name", "app", "--link", "db:mysql", "busybox", "sleep", "1000"]);
    let out = sb.docker(&["exec", "app", "ping", "-c", "1", "-W", "2", "mysql"]);
    assert!(out.success(), "{}", out.describe());
    let db_ip = sb.docker_ok(&["inspect", "-f", "{{.NetworkSettings.IPAddress}}", "db"]);
    assert_eq!(db_ip.trim(), "172.17.0.2");
    assert_eq!(sb.docker_ok(&["inspect", "-f", "{{.HostConfig.NetworkMode}}", "db"]).trim(), "bridge");

    let httpd = "mkdir -p /www && echo hello-berth > /www/index.html && exec httpd -f -p 80 -h /www";
    sb.docker_ok(&["run", "-d", "--name", "web", "-p", "18080:80", "busybox", "sh", "-c", httpd]);
    assert_eq!(sb.docker_ok(&["port", "web"]).trim(), "80/tcp -> 0.0.0.0:18080");
    assert!(
        eventually(Duration::from_secs(10), || {
            let o = sandbox_http_get(&sb, "http://127.0.0.1:18080/");
            o.success() && o.stdout.contains("hello-berth")
        }),
        "the published port answers"
    );
    let ps = sb.docker_ok(&["ps", "--filter", "name=web", "--format", "{{.Ports}}"]);
    assert!(ps.contains("0.0.0.0:18080->80/tcp"), "{ps}");
    sb.docker_ok(&["rm", "-f", "web"]);
    assert!(!sandbox_http_get(&sb, "http://127.0.0.1:18080/").stdout.contains("hello-berth"), "gone after rm -f");
}
