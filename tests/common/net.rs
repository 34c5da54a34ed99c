//! Network test helpers: looking into the sandbox's network namespace
//! (links, nftables, listeners, netns mounts), raw API requests with a body,
//! and "another host" — a network namespace of its own, wired to the
//! sandbox by a veth pair.
//!
//! Everything here acts inside namespaces a `Sandbox` created: commands run
//! through `nsenter -t <holder> -n -m`, and another host's namespace is held
//! by an `unshare --net` process started in the sandbox and killed (by PID)
//! when it is dropped, which takes the namespace and its end of the veth with
//! it. No file is created under the host's `/run/netns` (as `ip netns add`
//! would), so nothing outlives the test.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{run, Output, Sandbox};

/// The `ip` binary.
pub fn ip_bin() -> &'static str {
    ["/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", "/bin/ip"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .expect("no `ip` binary: install iproute2")
}

/// Runs `sh -c script` in the sandbox's network and mount namespaces.
pub fn sandbox_sh(sb: &Sandbox, script: &str) -> Output {
    let mut cmd = Command::new("nsenter");
    cmd.arg("-t").arg(sb.holder_pid().to_string()).args(["-n", "-m", "--", "/bin/sh", "-c", script]);
    run(cmd, None)
}

/// Like `sandbox_sh`, failing the test unless the script exits 0; returns stdout.
pub fn sandbox_sh_ok(sb: &Sandbox, script: &str) -> String {
    let out = sandbox_sh(sb, script);
    assert!(out.success(), "sandbox command failed:\n{}\n{}", out.describe(), sb.daemon_log_tail());
    out.stdout
}

/// Names of the links in the sandbox's network namespace (`veth0@if3` -> `veth0`).
pub fn sandbox_links(sb: &Sandbox) -> Vec<String> {
    let out = sandbox_sh_ok(sb, &format!("{} -o link show", ip_bin()));
    out.lines()
        .filter_map(|l| l.split(": ").nth(1))
        .map(|n| n.split('@').next().unwrap_or(n).trim().to_string())
        .collect()
}

/// The sandbox's veth links (the host ends of containers' endpoints).
pub fn sandbox_veths(sb: &Sandbox) -> Vec<String> {
    let out = sandbox_sh_ok(sb, &format!("{} -o link show type veth", ip_bin()));
    out.lines()
        .filter_map(|l| l.split(": ").nth(1))
        .map(|n| n.split('@').next().unwrap_or(n).trim().to_string())
        .collect()
}

/// IPv4 addresses (CIDR) on the sandbox's links, with the link name.
pub fn sandbox_addresses(sb: &Sandbox) -> Vec<(String, String)> {
    let out = sandbox_sh_ok(sb, &format!("{} -o -4 addr show", ip_bin()));
    out.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            Some((f.get(1)?.to_string(), f.get(3)?.to_string()))
        })
        .collect()
}

/// `nft list ruleset` in the sandbox (empty when nft has nothing or is missing).
pub fn nft_ruleset(sb: &Sandbox) -> String {
    sandbox_sh(sb, "nft list ruleset 2>/dev/null").stdout
}

/// Whether anything listens on TCP `port` in the sandbox's network namespace
/// (read from `/proc/<holder>/net/tcp{,6}`, which show that namespace).
pub fn tcp_listening(sb: &Sandbox, port: u16) -> bool {
    let want = format!(":{port:04X}");
    ["tcp", "tcp6"].iter().any(|f| {
        let text = std::fs::read_to_string(format!("/proc/{}/net/{f}", sb.holder_pid())).unwrap_or_default();
        text.lines().skip(1).any(|l| {
            let cols: Vec<&str> = l.split_whitespace().collect();
            cols.get(1).is_some_and(|local| local.ends_with(&want)) && cols.get(3) == Some(&"0A")
        })
    })
}

/// Mount points of network namespaces in the sandbox's mount namespace
/// (`nsfs` mounts: the daemon's `<run>/netns/<id>` bind mounts).
pub fn netns_mounts(sb: &Sandbox) -> Vec<String> {
    let info = std::fs::read_to_string(format!("/proc/{}/mountinfo", sb.holder_pid())).unwrap_or_default();
    info.lines()
        .filter(|l| l.split(" - ").nth(1).is_some_and(|fs| fs.starts_with("nsfs ")))
        .filter_map(|l| l.split_whitespace().nth(4).map(str::to_string))
        .collect()
}

/// A shell command that GETs `http://HOST:PORT/PATH` with `busybox nc`
/// (3 s timeout) and prints the whole answer. Not `busybox wget`: the
/// static busybox's wget crashes in its name-service lookup on some hosts.
fn http_get_script(url: &str) -> String {
    let rest = url.strip_prefix("http://").unwrap_or_else(|| panic!("not an http:// URL: {url}"));
    let (hostport, path) = rest.split_once('/').unwrap_or((rest, ""));
    let (host, port) = hostport.rsplit_once(':').unwrap_or((hostport, "80"));
    let bb = super::images::busybox_path();
    format!("printf 'GET /{path} HTTP/1.0\\r\\nHost: {host}\\r\\n\\r\\n' | {bb} nc -w 3 {host} {port}")
}

/// An HTTP GET of `url` from the sandbox's network namespace; stdout is the whole answer.
pub fn sandbox_http_get(sb: &Sandbox, url: &str) -> Output {
    sandbox_sh(sb, &http_get_script(url))
}

/// One HTTP/1.0 request to the daemon's API with an optional JSON body:
/// the status and the body of the answer.
pub fn api_request(sb: &Sandbox, method: &str, path: &str, body: Option<&str>) -> (u16, String) {
    let mut s = UnixStream::connect(&sb.sock).unwrap_or_else(|e| panic!("connect {}: {e}", sb.sock.display()));
    let body = body.unwrap_or("");
    write!(
        s,
        "{method} {path} HTTP/1.0\r\nHost: berth\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .expect("writing request");
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).expect("reading response");
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, rest) = text.split_once("\r\n\r\n").unwrap_or_else(|| panic!("no header end in response:\n{text}"));
    let status = head
        .lines()
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line in {head:?}"));
    (status, rest.to_string())
}

/// Polls `check` every 100 ms until it holds or `timeout` passes; returns whether it held.
pub fn eventually(timeout: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if check() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// "Another host": a network namespace of its own, created inside the
/// sandbox, reachable through a veth pair whose sandbox end is `link`.
pub struct OtherHost {
    holder: Option<Child>,
    /// PID of the process holding the namespace (`nsenter -t` target).
    pub pid: i32,
    /// The sandbox's end of the veth pair.
    pub link: String,
}

impl OtherHost {
    /// Creates the namespace and a veth pair `link` (sandbox) <-> `eth0`
    /// (other host, address `address`, up, default route via `gateway` if given).
    /// The sandbox's end is left for the caller to configure (address, or
    /// as a macvlan parent).
    pub fn start(sb: &Sandbox, link: &str, address: &str, gateway: Option<&str>) -> OtherHost {
        // The holder enters the sandbox's namespaces, then unshares a network
        // namespace of its own (a sibling of the sandbox's).
        let mut cmd = Command::new("nsenter");
        cmd.arg("-t")
            .arg(sb.holder_pid().to_string())
            .args(["-n", "-m", "--", "unshare", "--net", "--", "/bin/sh", "-c"])
            .arg(format!("{} link set lo up && exec sleep infinity", ip_bin()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        let child = cmd.spawn().expect("starting nsenter + unshare for another host");
        let nsenter_pid = child.id() as i32;
        let deadline = Instant::now() + Duration::from_secs(10);
        // nsenter forks nothing (it execs unshare), unshare execs sh, sh execs sleep: one PID.
        let pid = loop {
            let comm = std::fs::read_to_string(format!("/proc/{nsenter_pid}/comm")).unwrap_or_default();
            if comm.trim() == "sleep" {
                break nsenter_pid;
            }
            assert!(Instant::now() < deadline, "another host's namespace holder did not start (comm {comm:?})");
            std::thread::sleep(Duration::from_millis(10));
        };
        let host = OtherHost { holder: Some(child), pid, link: link.to_string() };
        let ip = ip_bin();
        sandbox_sh_ok(
            sb,
            &format!(
                "{ip} link add {link} type veth peer name {link}p && {ip} link set {link}p netns {pid} && {ip} link set {link} up"
            ),
        );
        let mut script =
            format!("{ip} link set {link}p name eth0 && {ip} addr add {address} dev eth0 && {ip} link set eth0 up");
        if let Some(gw) = gateway {
            script.push_str(&format!(" && {ip} route add default via {gw}"));
        }
        let out = host.sh(&script);
        assert!(out.success(), "configuring another host:\n{}", out.describe());
        host
    }

    /// Runs `sh -c script` in the other host's network namespace (the
    /// sandbox's mount namespace, so its tools are the host's).
    pub fn sh(&self, script: &str) -> Output {
        let mut cmd = Command::new("nsenter");
        cmd.arg("-t").arg(self.pid.to_string()).args(["-n", "-m", "--", "/bin/sh", "-c", script]);
        run(cmd, None)
    }

    /// Whether one ping from the other host to `ip` is answered within 2 s.
    pub fn ping(&self, ip: &str) -> bool {
        let bb = super::images::busybox_path();
        self.sh(&format!("{bb} ping -c 1 -W 2 {ip}")).success()
    }

    /// An HTTP GET of `url` from the other host; stdout is the whole answer.
    pub fn http_get(&self, url: &str) -> Output {
        self.sh(&http_get_script(url))
    }
}

impl Drop for OtherHost {
    fn drop(&mut self) {
        if let Some(mut child) = self.holder.take() {
            // The holder is ours (we spawned it); its namespace and veth end go with it.
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The MAC address in `ip -o link` output (the word after `link/ether`).
pub fn mac_of(ip_link_output: &str) -> String {
    let words: Vec<&str> = ip_link_output.split_whitespace().collect();
    let i =
        words.iter().position(|w| *w == "link/ether").unwrap_or_else(|| panic!("no link/ether in {ip_link_output:?}"));
    words.get(i + 1).map(|w| w.to_string()).unwrap_or_default()
}

/// A container's field through `inspect -f`, trimmed.
pub fn inspect_ip(sb: &Sandbox, name: &str) -> String {
    sb.inspect_format(name, "{{.NetworkSettings.IPAddress}}")
}

/// A container's address on `network` through `inspect -f`.
pub fn ip_on(sb: &Sandbox, name: &str, network: &str) -> String {
    sb.inspect_format(name, &format!("{{{{(index .NetworkSettings.Networks \"{network}\").IPAddress}}}}"))
}
