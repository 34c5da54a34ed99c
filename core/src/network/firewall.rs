//! berth's NAT and filter rules in nftables: one table (`table ip berth`)
//! with its own base chains, changed only through one JSON transaction per
//! call (`nft -j -f -`), so a failed change leaves the rules as they were.
//!
//! Every rule carries a comment derived from the `FirewallRule` it came from
//! (`berth ...`); that comment is the rule's identity. `apply` lists the
//! table first and deletes by handle, which makes adding an existing rule and
//! deleting a missing one no-ops.

use std::collections::{BTreeMap, HashSet};
use std::io::Write as _;
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Mutex;

use berth_model::Subnet;
use berth_model::network::FirewallRule;
use serde_json::{json, Value};

use super::NetError;

/// The nftables table (family `ip`) that holds every berth rule.
pub const TABLE: &str = "berth";

/// Prefix of every rule comment berth writes.
const COMMENT_PREFIX: &str = "berth ";

/// nft rejects comments longer than this (NFT_USERDATA_MAXLEN is larger, but
/// the nft front end caps comments at 128 bytes).
const MAX_COMMENT: usize = 128;

/// The base chains: (name, type, hook, priority). Priorities are the ones
/// nft calls dstnat/srcnat/filter, so berth's table runs next to others'.
const CHAINS: [(&str, &str, &str, i32); 4] = [
    ("prerouting", "nat", "prerouting", -100),
    ("output", "nat", "output", -100),
    ("postrouting", "nat", "postrouting", 100),
    ("forward", "filter", "forward", 0),
];

/// Serialises list-then-change within the daemon: handles read by one
/// `apply` must not be deleted by another in between.
static LOCK: Mutex<()> = Mutex::new(());

/// One nft rule body: the chain it goes into and its expressions.
#[derive(Clone, Debug, PartialEq)]
struct RuleBody {
    chain: &'static str,
    expr: Vec<Value>,
}

/// Where the engine's NAT and filter rules go (netavark's firewall drivers
/// are the model). The plan executor hands every `AddFirewallRule` /
/// `DeleteFirewallRule` step to one; the networks service picks it.
pub trait Firewall: Send + Sync {
    /// Adds `add` and removes `delete` as one change: all of it or nothing.
    /// Adding a rule that is there and deleting one that is not are no-ops.
    fn apply(&self, add: &[FirewallRule], delete: &[FirewallRule]) -> Result<(), NetError>;
}

/// berth's rules in nftables, `table ip berth` (this module's functions).
pub struct Nftables;

impl Firewall for Nftables {
    fn apply(&self, add: &[FirewallRule], delete: &[FirewallRule]) -> Result<(), NetError> {
        apply(add, delete)
    }
}

/// Adds `add` and removes `delete` in one nftables transaction in
/// `table ip berth` (created with its chains when missing). Adding a rule
/// that is already there and deleting one that is not are no-ops; a rule in
/// both lists ends up present. Every rule is checked before nft runs, so
/// invalid input changes nothing.
pub fn apply(add: &[FirewallRule], delete: &[FirewallRule]) -> Result<(), NetError> {
    let mut adds = Vec::new();
    for rule in add {
        adds.push((comment(rule)?, render(rule)?));
    }
    let mut deletes = Vec::new();
    for rule in delete {
        // Rendering validates the rule; only its comment is needed to delete it.
        render(rule)?;
        deletes.push(comment(rule)?);
    }
    if adds.is_empty() && deletes.is_empty() {
        return Ok(());
    }

    let _guard = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let existing = list_rules()?;
    let mut batch = table_and_chains();
    let mut deleted = HashSet::new();
    for tag in &deletes {
        if !deleted.insert(tag.clone()) {
            continue;
        }
        for (chain, handle) in existing.get(tag).into_iter().flatten() {
            batch.push(json!({"delete": {"rule": {"family": "ip", "table": TABLE, "chain": chain, "handle": handle}}}));
        }
    }
    let mut added = HashSet::new();
    for (tag, bodies) in &adds {
        let present = existing.contains_key(tag) && !deleted.contains(tag);
        if present || !added.insert(tag.clone()) {
            continue;
        }
        for body in bodies {
            batch.push(json!({"add": {"rule": {
                "family": "ip", "table": TABLE, "chain": body.chain, "comment": tag, "expr": body.expr,
            }}}));
        }
    }
    run_nft(&["-j", "-f", "-"], Some(&json!({ "nftables": batch }))).map(|_| ()).map_err(|e| {
        NetError::Firewall(format!("applying {} added and {} deleted rules: {e}", add.len(), delete.len()))
    })
}

/// Removes berth's table and every rule in it (tests, cleanup). No error
/// when there is no table.
pub fn flush_all() -> Result<(), NetError> {
    let _guard = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    // `add` first makes the `delete` valid when the table does not exist;
    // both happen in one transaction.
    let batch = json!({"nftables": [
        {"add": {"table": {"family": "ip", "name": TABLE}}},
        {"delete": {"table": {"family": "ip", "name": TABLE}}},
    ]});
    run_nft(&["-j", "-f", "-"], Some(&batch))
        .map(|_| ())
        .map_err(|e| NetError::Firewall(format!("removing table ip {TABLE}: {e}")))
}

/// The comments of berth's rules now in the kernel, with each rule's chain
/// and handle (tests, diagnostics).
pub fn list() -> Result<Vec<(String, String, u64)>, NetError> {
    let _guard = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let mut out = Vec::new();
    for (tag, rules) in list_rules()? {
        for (chain, handle) in rules {
            out.push((tag.clone(), chain, handle));
        }
    }
    Ok(out)
}

/// The identity of a rule in the kernel: `berth ` and the rule's fields.
pub fn comment(rule: &FirewallRule) -> Result<String, NetError> {
    let tag = match rule {
        FirewallRule::Masquerade { source, out_not } => match out_not {
            Some(iface) => format!("{COMMENT_PREFIX}masquerade {source} !{iface}"),
            None => format!("{COMMENT_PREFIX}masquerade {source}"),
        },
        FirewallRule::PortForward { proto, host_ip, host_port, container_ip, container_port } => {
            let host = match host_ip.as_deref().map(str::trim).filter(|h| !h.is_empty()) {
                Some(ip) if ip.contains(':') => format!("[{ip}]"),
                Some(ip) => ip.to_string(),
                None => "0.0.0.0".to_string(),
            };
            format!("{COMMENT_PREFIX}publish {proto} {host}:{host_port} {container_ip}:{container_port}")
        }
        FirewallRule::Isolate { from_iface, to_iface } => format!("{COMMENT_PREFIX}isolate {from_iface} {to_iface}"),
    };
    if tag.len() > MAX_COMMENT || tag.contains(['"', '\n', '\\']) {
        return Err(NetError::Invalid(format!(
            "firewall rule {rule:?} cannot be tagged: its fields are too long or contain quotes"
        )));
    }
    Ok(tag)
}

/// The nft rules one `FirewallRule` becomes.
fn render(rule: &FirewallRule) -> Result<Vec<RuleBody>, NetError> {
    match rule {
        FirewallRule::Masquerade { source, out_not } => {
            let (addr, len) = parse_cidr(source)?;
            let saddr = match_payload("ip", "saddr", "==", prefix(addr, len));
            match out_not {
                Some(iface) => {
                    check_iface(iface)?;
                    Ok(vec![
                        // Outbound: leaving the network for anywhere else.
                        RuleBody {
                            chain: "postrouting",
                            expr: vec![
                                saddr.clone(),
                                match_meta("oifname", "!=", json!(iface)),
                                json!({"masquerade": null}),
                            ],
                        },
                        // Hairpin: a container reaching a published port of
                        // its own network through a host address comes back
                        // out the same bridge; without the source rewrite the
                        // reply would go straight to it from the peer's address.
                        RuleBody {
                            chain: "postrouting",
                            expr: vec![
                                saddr,
                                match_meta("oifname", "==", json!(iface)),
                                json!({"match": {"op": "in", "left": {"ct": {"key": "status"}}, "right": "dnat"}}),
                                json!({"masquerade": null}),
                            ],
                        },
                    ])
                }
                None => Ok(vec![RuleBody { chain: "postrouting", expr: vec![saddr, json!({"masquerade": null})] }]),
            }
        }
        FirewallRule::PortForward { proto, host_ip, host_port, container_ip, container_port } => {
            if !matches!(proto.as_str(), "tcp" | "udp" | "sctp") {
                return Err(NetError::Invalid(format!("invalid proto: {proto} (want tcp, udp or sctp)")));
            }
            if *host_port == 0 || *container_port == 0 {
                return Err(NetError::Invalid(format!(
                    "port forward {host_port}->{container_ip}:{container_port}/{proto}: ports must be 1-65535"
                )));
            }
            let target: Ipv4Addr = container_ip
                .parse()
                .map_err(|_| NetError::Invalid(format!("port forward to {container_ip:?}: not an IPv4 address")))?;
            let host = match host_ip.as_deref().map(str::trim).filter(|h| !h.is_empty()) {
                None => None,
                Some(text) => match text.parse::<IpAddr>() {
                    Ok(IpAddr::V4(ip)) if ip.is_unspecified() => None,
                    Ok(IpAddr::V4(ip)) => Some(ip),
                    // The table is IPv4; an IPv6 host address is served by the userland proxy alone.
                    Ok(IpAddr::V6(_)) => return Ok(Vec::new()),
                    Err(_) => return Err(NetError::Invalid(format!("invalid IP address: {text}"))),
                },
            };
            let mut common = vec![
                json!({"match": {"op": "==", "left": {"fib": {"result": "type", "flags": ["daddr"]}}, "right": "local"}}),
            ];
            if let Some(ip) = host {
                common.push(match_payload("ip", "daddr", "==", json!(ip.to_string())));
            }
            common.push(match_payload(proto, "dport", "==", json!(host_port)));
            let dnat = json!({"dnat": {"addr": target.to_string(), "port": container_port}});

            let mut prerouting = common.clone();
            prerouting.push(dnat.clone());
            // Locally generated traffic to the host's own addresses, except
            // loopback: 127.0.0.1:hostPort is the userland proxy's, which
            // spares berth route_localnet and a loopback masquerade.
            let mut output = vec![match_payload("ip", "daddr", "!=", prefix(Ipv4Addr::new(127, 0, 0, 0), 8))];
            output.extend(common);
            output.push(dnat);
            Ok(vec![RuleBody { chain: "prerouting", expr: prerouting }, RuleBody { chain: "output", expr: output }])
        }
        FirewallRule::Isolate { from_iface, to_iface } => {
            check_iface(from_iface)?;
            check_iface(to_iface)?;
            // Both directions: isolation means neither network reaches the other.
            let drop = |a: &str, b: &str| RuleBody {
                chain: "forward",
                expr: vec![
                    match_meta("iifname", "==", json!(a)),
                    match_meta("oifname", "==", json!(b)),
                    json!({"drop": null}),
                ],
            };
            Ok(vec![drop(from_iface, to_iface), drop(to_iface, from_iface)])
        }
    }
}

fn match_payload(protocol: &str, field: &str, op: &str, right: Value) -> Value {
    json!({"match": {"op": op, "left": {"payload": {"protocol": protocol, "field": field}}, "right": right}})
}

fn match_meta(key: &str, op: &str, right: Value) -> Value {
    json!({"match": {"op": op, "left": {"meta": {"key": key}}, "right": right}})
}

fn prefix(addr: Ipv4Addr, len: u8) -> Value {
    json!({"prefix": {"addr": addr.to_string(), "len": len}})
}

/// `a.b.c.d/len` (IPv4; host bits may be set, nft masks them).
fn parse_cidr(text: &str) -> Result<(Ipv4Addr, u8), NetError> {
    let bad = || NetError::Invalid(format!("masquerade source {text:?}: want an IPv4 CIDR like 172.18.0.0/16"));
    let cidr = Subnet::parse(text).ok_or_else(bad)?.masked();
    Ok((cidr.addr, cidr.prefix))
}

fn check_iface(name: &str) -> Result<(), NetError> {
    let ok = !name.is_empty()
        && name.len() <= 15
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'@'));
    if ok {
        Ok(())
    } else {
        Err(NetError::Invalid(format!("interface name {name:?}: want 1-15 letters, digits, '-', '_', '.' or '@'")))
    }
}

fn table_and_chains() -> Vec<Value> {
    let mut batch = vec![json!({"add": {"table": {"family": "ip", "name": TABLE}}})];
    for (name, kind, hook, prio) in CHAINS {
        batch.push(json!({"add": {"chain": {
            "family": "ip", "table": TABLE, "name": name, "type": kind, "hook": hook, "prio": prio, "policy": "accept",
        }}}));
    }
    batch
}

/// berth's rules in the kernel by comment: (chain, handle) of each.
fn list_rules() -> Result<BTreeMap<String, Vec<(String, u64)>>, NetError> {
    let out = match run_nft(&["-j", "list", "table", "ip", TABLE], None) {
        Ok(out) => out,
        // No table yet: nothing of berth's is there.
        Err(e) if e.contains("No such file or directory") => return Ok(BTreeMap::new()),
        Err(e) => return Err(NetError::Firewall(format!("listing table ip {TABLE}: {e}"))),
    };
    parse_listing(&out)
}

fn parse_listing(out: &str) -> Result<BTreeMap<String, Vec<(String, u64)>>, NetError> {
    let doc: Value = serde_json::from_str(out).map_err(|e| {
        NetError::Firewall(format!("listing table ip {TABLE}: nft printed JSON that does not parse: {e}"))
    })?;
    let mut rules: BTreeMap<String, Vec<(String, u64)>> = BTreeMap::new();
    for item in doc.get("nftables").and_then(Value::as_array).into_iter().flatten() {
        let Some(rule) = item.get("rule") else { continue };
        let (Some(tag), Some(chain), Some(handle)) = (
            rule.get("comment").and_then(Value::as_str),
            rule.get("chain").and_then(Value::as_str),
            rule.get("handle").and_then(Value::as_u64),
        ) else {
            continue;
        };
        if tag.starts_with(COMMENT_PREFIX) {
            rules.entry(tag.to_string()).or_default().push((chain.to_string(), handle));
        }
    }
    Ok(rules)
}

/// Where `nft` is: on PATH, else Debian's /usr/sbin (daemons started from a
/// user shell often lack sbin on PATH).
fn nft_path() -> PathBuf {
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|dir| dir.join("nft"))
        .find(|p| p.is_file());
    on_path
        .or_else(|| ["/usr/sbin/nft", "/sbin/nft"].into_iter().map(PathBuf::from).find(|p| p.is_file()))
        .unwrap_or_else(|| PathBuf::from("nft"))
}

/// Runs nft with `input` on stdin; Ok(stdout), or Err(what nft said).
fn run_nft(args: &[&str], input: Option<&Value>) -> Result<String, String> {
    let nft = nft_path();
    let mut child = Command::new(&nft)
        .args(args)
        .stdin(if input.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                format!("{} not found: install Debian's nftables package (scripts/ensure-deps does)", nft.display())
            } else {
                format!("cannot run {}: {e}", nft.display())
            }
        })?;
    if let (Some(input), Some(mut stdin)) = (input, child.stdin.take()) {
        let text = input.to_string();
        // A write error means nft exited early; its stderr says why.
        let _ = stdin.write_all(text.as_bytes());
    }
    let out = child.wait_with_output().map_err(|e| format!("waiting for {}: {e}", nft.display()))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let said = stderr.split_whitespace().collect::<Vec<_>>().join(" ");
        Err(format!("{} {} failed ({}): {said}", nft.display(), args.join(" "), out.status))
    }
}

/// Test support: running a test in a network namespace of its own.
#[cfg(test)]
pub(crate) mod testns {
    /// Runs `f` on a thread that has unshared its network namespace (lo up),
    /// so nft, bridges and sockets it touches are its own; threads and
    /// processes it starts inherit that namespace. `None` (with the reason
    /// printed) when this process may not create namespaces.
    pub(crate) fn in_private_netns<R: Send + 'static>(what: &str, f: impl FnOnce() -> R + Send + 'static) -> Option<R> {
        let what = what.to_string();
        let handle = std::thread::spawn(move || {
            if let Err(e) = nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET) {
                eprintln!(
                    "skipping {what}: cannot create a network namespace ({e}); run as root, e.g. through scripts/test"
                );
                return None;
            }
            let up = std::process::Command::new("ip").args(["link", "set", "lo", "up"]).status();
            assert!(matches!(up, Ok(s) if s.success()), "ip link set lo up in the test's namespace: {up:?}");
            Some(f())
        });
        match handle.join() {
            Ok(r) => r,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    }

    /// Whether `nft` can run at all (installed); prints why not.
    pub(crate) fn have_nft(what: &str) -> bool {
        let ok = std::process::Command::new(super::nft_path())
            .arg("--version")
            .stdout(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            eprintln!("skipping {what}: nft is not installed (scripts/ensure-deps installs nftables)");
        }
        ok
    }
}

#[cfg(test)]
mod tests {
    use super::testns::{have_nft, in_private_netns};
    use super::*;

    fn forward(host_ip: Option<&str>, host_port: u16) -> FirewallRule {
        FirewallRule::PortForward {
            proto: "tcp".into(),
            host_ip: host_ip.map(str::to_string),
            host_port,
            container_ip: "172.17.0.2".into(),
            container_port: 80,
        }
    }

    fn masq() -> FirewallRule {
        FirewallRule::Masquerade { source: "172.17.0.0/16".into(), out_not: Some("berth0".into()) }
    }

    fn isolate() -> FirewallRule {
        FirewallRule::Isolate { from_iface: "br-aaaa".into(), to_iface: "br-bbbb".into() }
    }

    /// The ruleset as `nft list` prints it (for readable assertions).
    fn ruleset() -> String {
        run_nft(&["list", "ruleset"], None).expect("nft list ruleset")
    }

    #[test]
    fn comments_identify_rules() {
        assert_eq!(comment(&forward(None, 18080)).unwrap(), "berth publish tcp 0.0.0.0:18080 172.17.0.2:80");
        assert_eq!(
            comment(&forward(Some("127.0.0.1"), 8080)).unwrap(),
            "berth publish tcp 127.0.0.1:8080 172.17.0.2:80"
        );
        assert_eq!(comment(&forward(Some("::1"), 8080)).unwrap(), "berth publish tcp [::1]:8080 172.17.0.2:80");
        assert_eq!(comment(&masq()).unwrap(), "berth masquerade 172.17.0.0/16 !berth0");
        assert_eq!(comment(&isolate()).unwrap(), "berth isolate br-aaaa br-bbbb");
        assert_ne!(comment(&forward(None, 1)).unwrap(), comment(&forward(None, 2)).unwrap());
    }

    #[test]
    fn invalid_rules_are_refused_before_nft_runs() {
        let bad = [
            FirewallRule::Masquerade { source: "172.17.0.0".into(), out_not: None },
            FirewallRule::Masquerade { source: "172.17.0.0/33".into(), out_not: None },
            FirewallRule::Masquerade { source: "10.0.0.0/8".into(), out_not: Some("a\"b".into()) },
            FirewallRule::Isolate { from_iface: "x".repeat(16), to_iface: "b".into() },
            FirewallRule::PortForward {
                proto: "icmp".into(),
                host_ip: None,
                host_port: 1,
                container_ip: "10.0.0.2".into(),
                container_port: 1,
            },
            FirewallRule::PortForward {
                proto: "tcp".into(),
                host_ip: None,
                host_port: 0,
                container_ip: "10.0.0.2".into(),
                container_port: 1,
            },
            FirewallRule::PortForward {
                proto: "tcp".into(),
                host_ip: Some("nope".into()),
                host_port: 1,
                container_ip: "10.0.0.2".into(),
                container_port: 1,
            },
            FirewallRule::PortForward {
                proto: "tcp".into(),
                host_ip: None,
                host_port: 1,
                container_ip: "::1".into(),
                container_port: 1,
            },
        ];
        for rule in &bad {
            // Invalid input must fail in validation, whether or not nft exists here.
            let err = apply(std::slice::from_ref(rule), &[]).expect_err(&format!("{rule:?} accepted"));
            assert!(matches!(err, NetError::Invalid(_)), "{rule:?}: {err}");
        }
    }

    #[test]
    fn port_forward_renders_prerouting_and_output_dnat() {
        let rules = render(&forward(Some("192.0.2.7"), 18080)).unwrap();
        assert_eq!(rules.len(), 2);
        assert_eq!(rules[0].chain, "prerouting");
        assert_eq!(rules[1].chain, "output");
        let text = serde_json::to_string(&rules[1].expr).unwrap();
        assert!(text.contains("127.0.0.0"), "output DNAT must leave loopback to the proxy: {text}");
        assert!(text.contains("192.0.2.7") && text.contains("18080") && text.contains("\"port\":80"), "{text}");
        // IPv6 host addresses have no IPv4 NAT: the proxy serves them.
        assert!(render(&forward(Some("::1"), 8080)).unwrap().is_empty());
        // 0.0.0.0 means every address, as no host IP does.
        assert_eq!(render(&forward(Some("0.0.0.0"), 8080)).unwrap(), render(&forward(None, 8080)).unwrap());
    }

    #[test]
    fn listing_is_parsed_by_comment() {
        let out = r#"{"nftables": [{"metainfo": {"version": "1.0.6"}}, {"table": {"family": "ip", "name": "berth", "handle": 1}},
          {"rule": {"family": "ip", "table": "berth", "chain": "prerouting", "handle": 5, "comment": "berth publish x", "expr": []}},
          {"rule": {"family": "ip", "table": "berth", "chain": "output", "handle": 6, "comment": "berth publish x", "expr": []}},
          {"rule": {"family": "ip", "table": "berth", "chain": "output", "handle": 7, "comment": "someone else", "expr": []}},
          {"rule": {"family": "ip", "table": "berth", "chain": "output", "handle": 8, "expr": []}}]}"#;
        let rules = parse_listing(out).unwrap();
        assert_eq!(rules.len(), 1);
        assert_eq!(rules["berth publish x"], vec![("prerouting".to_string(), 5), ("output".to_string(), 6)]);
    }

    #[test]
    fn apply_is_one_idempotent_transaction_in_a_private_netns() {
        if !have_nft("apply_is_one_idempotent_transaction_in_a_private_netns") {
            return;
        }
        in_private_netns("apply_is_one_idempotent_transaction_in_a_private_netns", || {
            let all = [forward(None, 18080), masq(), isolate()];
            apply(&all, &[]).unwrap();
            let first = list().unwrap();
            // 2 (DNAT pre/output) + 2 (masquerade + hairpin) + 2 (isolation both ways).
            assert_eq!(first.len(), 6, "{first:?}\n{}", ruleset());
            let text = ruleset();
            assert!(text.contains("dnat to 172.17.0.2:80"), "{text}");
            assert!(text.contains("oifname != \"berth0\" masquerade"), "{text}");
            assert!(text.contains("iifname \"br-bbbb\" oifname \"br-aaaa\" drop"), "{text}");

            // Adding again changes nothing.
            apply(&all, &[]).unwrap();
            assert_eq!(list().unwrap(), first);

            // Deleting one rule (and one that never existed) leaves the others.
            apply(&[], &[forward(None, 18080), forward(None, 9)]).unwrap();
            let left = list().unwrap();
            assert_eq!(left.len(), 4, "{left:?}");
            assert!(left.iter().all(|(tag, _, _)| !tag.contains("18080")), "{left:?}");
            apply(&[], &[forward(None, 18080)]).unwrap();

            // One call may add some rules and delete others; a rule in both
            // lists ends up present.
            apply(&[forward(None, 7001)], &[masq()]).unwrap();
            let tags: Vec<String> = list().unwrap().into_iter().map(|(t, _, _)| t).collect();
            assert!(
                tags.iter().any(|t| t.contains("7001")) && !tags.iter().any(|t| t.contains("masquerade")),
                "{tags:?}"
            );
            apply(&[masq()], &[masq()]).unwrap();
            assert_eq!(list().unwrap().iter().filter(|(t, _, _)| t.contains("masquerade")).count(), 2);

            flush_all().unwrap();
            assert!(list().unwrap().is_empty());
            assert!(!ruleset().contains("table ip berth"));
            // No table: flushing again and deleting are still fine.
            flush_all().unwrap();
            apply(&[], &[masq()]).unwrap();
        });
    }

    #[test]
    fn published_port_is_reachable_through_dnat_in_a_private_netns() {
        if !have_nft("published_port_is_reachable_through_dnat_in_a_private_netns") {
            return;
        }
        in_private_netns("published_port_is_reachable_through_dnat_in_a_private_netns", || {
            // A veth pair gives this namespace non-loopback addresses;
            // the "container" listens on another local address. DNAT in
            // output must send a connection to dummy:18080 to it.
            let ip = |args: &[&str]| {
                let st = std::process::Command::new("ip").args(args).status().expect("ip");
                assert!(st.success(), "ip {args:?}");
            };
            ip(&["link", "add", "d0", "type", "veth", "peer", "name", "d1"]);
            ip(&["addr", "add", "192.0.2.1/24", "dev", "d0"]);
            ip(&["addr", "add", "192.0.2.2/24", "dev", "d0"]);
            ip(&["link", "set", "d0", "up"]);
            ip(&["link", "set", "d1", "up"]);
            let backend = std::net::TcpListener::bind("192.0.2.2:8000").unwrap();
            let rule = FirewallRule::PortForward {
                proto: "tcp".into(),
                host_ip: None,
                host_port: 18080,
                container_ip: "192.0.2.2".into(),
                container_port: 8000,
            };
            apply(std::slice::from_ref(&rule), &[]).unwrap();
            let client = std::net::TcpStream::connect("192.0.2.1:18080").expect("DNAT to the backend");
            let (_conn, peer) = backend.accept().unwrap();
            assert_eq!(peer.ip(), client.local_addr().unwrap().ip());
            apply(&[], std::slice::from_ref(&rule)).unwrap();
            let refused = std::net::TcpStream::connect("192.0.2.1:18080");
            assert!(refused.is_err(), "rule deleted, yet 192.0.2.1:18080 still reaches the backend");
        });
    }
}
