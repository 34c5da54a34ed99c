//! Published ports: `-p`, `-p PORT`, `-P`, `berth port`, `NetworkSettings.Ports`
//! and `ps`'s PORTS; reachable on 127.0.0.1 (userland proxy) and from
//! another host (kernel NAT); gone after `rm -f` with nothing left behind;
//! a taken host port is a clear error and leaves no half-wired container.

mod common;

use std::time::Duration;

use common::images::{self, busybox_entries, layer, TestImage};
use common::net::{eventually, nft_ruleset, sandbox_http_get, sandbox_sh_ok, sandbox_veths, tcp_listening, OtherHost};
use common::Sandbox;

/// Serves `hello-berth` on port 80 of the container.
const HTTPD: &str = "mkdir -p /www && echo hello-berth > /www/index.html && exec httpd -f -p 80 -h /www";

/// busybox that `EXPOSE`s 80/tcp and 53/udp and serves HTTP on 80.
fn webbox() -> TestImage {
    let config = serde_json::json!({
        "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
        "Cmd": ["sh", "-c", HTTPD],
        "ExposedPorts": { "80/tcp": {}, "53/udp": {} },
    });
    TestImage::with_config(vec![layer(&busybox_entries())], "webbox", config)
}

fn sandbox() -> Sandbox {
    let sb = Sandbox::start();
    sb.load_image(&images::busybox(), "busybox:latest");
    sb
}

fn serves(sb: &Sandbox, url: &str) -> bool {
    let out = sandbox_http_get(sb, url);
    out.success() && out.stdout.contains("hello-berth")
}

#[test]
fn a_published_port_answers_locally_and_from_another_host_until_removed() {
    let sb = sandbox();
    // The sandbox's "external" side: a veth to another host.
    let other = OtherHost::start(&sb, "ext0", "10.201.0.2/24", Some("10.201.0.1"));
    sandbox_sh_ok(&sb, &format!("{} addr add 10.201.0.1/24 dev ext0", common::net::ip_bin()));
    let veths_before = sandbox_veths(&sb);
    let rules_before = nft_ruleset(&sb);
    let mounts_before = sb.mount_points();

    let id = sb.berth_ok(&["run", "-d", "--name", "web", "-p", "18080:80", "busybox", "sh", "-c", HTTPD]);
    let id = id.trim().to_string();
    let ip = sb.inspect_format("web", "{{.NetworkSettings.IPAddress}}");
    assert!(
        eventually(Duration::from_secs(10), || serves(&sb, "http://127.0.0.1:18080/")),
        "127.0.0.1:18080 answers (userland proxy):\n{}",
        sandbox_http_get(&sb, "http://127.0.0.1:18080/").describe()
    );
    let remote = other.http_get("http://10.201.0.1:18080/");
    assert!(
        remote.success() && remote.stdout.contains("hello-berth"),
        "another host reaches the published port:\n{}",
        remote.describe()
    );
    assert!(serves(&sb, "http://10.201.0.1:18080/"), "the sandbox's external address answers too");

    assert_eq!(sb.berth_ok(&["port", "web"]), "80/tcp -> 0.0.0.0:18080\n");
    assert_eq!(sb.berth_ok(&["port", "web", "80"]), "0.0.0.0:18080\n");
    assert_eq!(sb.berth_ok(&["container", "port", "web", "80/tcp"]), "0.0.0.0:18080\n", "docker's `container port` spelling");
    assert_eq!(sb.berth_ok(&["port", "web", "80/tcp"]), "0.0.0.0:18080\n");
    let out = sb.berth(&["port", "web", "81"]);
    assert!(!out.success() && out.stderr.contains("No public port '81' published for web"), "{}", out.describe());
    assert_eq!(
        sb.inspect_format("web", "{{json .NetworkSettings.Ports}}"),
        r#"{"80/tcp":[{"HostIp":"0.0.0.0","HostPort":"18080"}]}"#
    );
    assert_eq!(
        sb.inspect_format("web", "{{json .HostConfig.PortBindings}}"),
        r#"{"80/tcp":[{"HostIp":"","HostPort":"18080"}]}"#
    );
    assert_eq!(sb.berth_ok(&["ps", "--format", "{{.Ports}}"]).trim(), "0.0.0.0:18080->80/tcp");
    assert!(tcp_listening(&sb, 18080), "the proxy listens on 18080");
    let rules = nft_ruleset(&sb);
    assert!(rules.contains("18080") && rules.contains(&ip), "a DNAT rule to {ip}:80:\n{rules}");

    // Taken: a second container on the same host port fails and leaves nothing.
    let veths_with_web = sandbox_veths(&sb);
    let out = sb.berth(&["run", "-d", "--name", "web2", "-p", "18080:80", "busybox", "sh", "-c", HTTPD]);
    assert!(!out.success(), "{}", out.describe());
    assert!(out.stderr.contains("port is already allocated"), "Docker's message:\n{}", out.describe());
    assert_eq!(sb.inspect_format("web2", "{{.State.Status}}"), "created", "web2 never ran");
    assert_eq!(sandbox_veths(&sb), veths_with_web, "the failed start left no veth");
    assert!(serves(&sb, "http://127.0.0.1:18080/"), "web still answers");
    sb.berth_ok(&["rm", "-f", "web2"]);

    sb.berth_ok(&["rm", "-f", "web"]);
    assert!(!serves(&sb, "http://127.0.0.1:18080/"), "127.0.0.1:18080 stops answering");
    assert!(
        !other.http_get("http://10.201.0.1:18080/").stdout.contains("hello-berth"),
        "another host no longer reaches it"
    );
    assert!(!tcp_listening(&sb, 18080), "no proxy left listening");
    assert_eq!(sandbox_veths(&sb), veths_before, "no veth left");
    let rules = nft_ruleset(&sb);
    assert!(!rules.contains("18080") && !rules.contains(&ip), "no NAT rule left:\n{rules}");
    assert_eq!(rules.matches("dnat").count(), rules_before.matches("dnat").count(), "{rules}");
    let traces = sb.container_traces(&id, &mounts_before);
    assert!(traces.is_empty(), "nothing of web is left: {traces:#?}");
}

#[test]
fn random_host_ports_and_publish_all() {
    let sb = sandbox();
    sb.load_image(&webbox(), "webbox:latest");
    sb.berth_ok(&["run", "-d", "--name", "cr", "-p", "80", "busybox", "sh", "-c", HTTPD]);
    let line = sb.berth_ok(&["port", "cr", "80"]);
    let port: u16 =
        line.trim().rsplit(':').next().and_then(|p| p.parse().ok()).unwrap_or_else(|| panic!("port printed {line:?}"));
    assert!(port >= 1024, "an ephemeral port: {port}");
    assert!(
        eventually(Duration::from_secs(10), || serves(&sb, &format!("http://127.0.0.1:{port}/"))),
        "the random port {port} answers"
    );

    sb.berth_ok(&["run", "-d", "--name", "all", "-P", "webbox"]);
    let ports = sb.berth_ok(&["port", "all"]);
    let lines: Vec<&str> = ports.lines().collect();
    assert_eq!(lines.len(), 2, "both EXPOSEd ports are published:\n{ports}");
    assert!(
        lines.iter().any(|l| l.starts_with("53/udp -> 0.0.0.0:"))
            && lines.iter().any(|l| l.starts_with("80/tcp -> 0.0.0.0:")),
        "{ports}"
    );
    let p80: u16 = lines
        .iter()
        .find(|l| l.starts_with("80/tcp"))
        .and_then(|l| l.rsplit(':').next())
        .and_then(|p| p.parse().ok())
        .expect("80/tcp host port");
    assert!(eventually(Duration::from_secs(10), || serves(&sb, &format!("http://127.0.0.1:{p80}/"))));
    // --expose without -P exposes but does not publish.
    sb.berth_ok(&["run", "-d", "--name", "exp", "--expose", "8080", "busybox", "sleep", "1000"]);
    assert_eq!(sb.inspect_format("exp", "{{json .NetworkSettings.Ports}}"), r#"{"8080/tcp":null}"#);
    assert_eq!(sb.berth_ok(&["ps", "--filter", "name=exp", "--format", "{{.Ports}}"]).trim(), "8080/tcp");
}

/// Kills (by PID) a process this test started in the sandbox, also when the test fails.
struct KillOnDrop(i32);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        // SAFETY: kill(2) on the PID of the listener this test started.
        unsafe { libc::kill(self.0, libc::SIGKILL) };
    }
}

#[test]
fn a_host_port_taken_by_another_program_is_a_clear_error() {
    let sb = sandbox();
    let bb = images::busybox_path();
    // A listener in the sandbox, started in the background and killed by PID below.
    let pid = sandbox_sh_ok(&sb, &format!("{bb} nc -l -p 18081 >/dev/null 2>&1 & echo $!"));
    let pid: i32 = pid.trim().parse().expect("nc pid");
    let _listener = KillOnDrop(pid);
    assert!(eventually(Duration::from_secs(5), || tcp_listening(&sb, 18081)));
    let veths = sandbox_veths(&sb);
    let out = sb.berth(&["run", "-d", "--name", "busy", "-p", "18081:80", "busybox", "sleep", "1000"]);
    assert!(!out.success(), "{}", out.describe());
    assert!(out.stderr.contains("18081"), "the error names the port:\n{}", out.describe());
    assert_eq!(sandbox_veths(&sb), veths, "nothing half-wired");
    let rules = nft_ruleset(&sb);
    assert!(!rules.contains("18081"), "no NAT rule for the refused port:\n{rules}");
    drop(_listener);
    // Once free, the same container starts.
    assert!(eventually(Duration::from_secs(5), || !tcp_listening(&sb, 18081)));
    sb.berth_ok(&["start", "busy"]);
    assert_eq!(sb.berth_ok(&["port", "busy", "80"]), "0.0.0.0:18081\n");
}
