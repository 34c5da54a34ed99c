//! `network ls/inspect/create/rm/prune/connect/disconnect`, `port`, and the
//! network flags of `create`/`run` (`--ip`, `--network-alias`, `--link`,
//! `-p`, `-P`, `--expose`, `--mac-address`, `--dns*`, `--add-host`), turned
//! into the API's JSON the way the docker CLI does it.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::process::ExitCode;

use anyhow::{anyhow, bail, Result};
use berth_model::container::{ContainerConfig, HostConfig};
use berth_model::network::{EndpointIpamConfig, EndpointSettings, NetworkingConfig, PortBinding, PortMap};
use clap::{Args, Subcommand};
use hyper::Method;
use serde_json::{json, Value};

use super::client::{enc, Client};
use crate::apitypes::containers::{ContainerInspect, Port};
use crate::apitypes::networks::{
    IpamConfigRequest, IpamRequest, Network, NetworkConnectRequest, NetworkCreateRequest, NetworkCreateResponse,
    NetworkDisconnectRequest, NetworkPruneResponse,
};
use super::format::Format;
use super::images::parse_filters;
use super::units::go_time;

/// `berth network ...`.
#[derive(Subcommand, Debug)]
pub enum NetworkCommand {
    /// Connect a container to a network.
    Connect(ConnectArgs),
    /// Create a network.
    Create(CreateArgs),
    /// Disconnect a container from a network.
    Disconnect(DisconnectArgs),
    /// Display detailed information on one or more networks.
    Inspect(InspectArgs),
    /// List networks.
    #[command(visible_alias = "list")]
    Ls(LsArgs),
    /// Remove all unused networks.
    Prune(PruneArgs),
    /// Remove one or more networks.
    #[command(visible_alias = "remove")]
    Rm(RmArgs),
}

/// Flags of `network ls`.
#[derive(Args, Debug)]
pub struct LsArgs {
    /// Provide filter values (e.g. "driver=bridge").
    #[arg(short = 'f', long = "filter")]
    pub filter: Vec<String>,
    /// Format output using a custom template.
    #[arg(long)]
    pub format: Option<String>,
    /// Do not truncate the output.
    #[arg(long)]
    pub no_trunc: bool,
    /// Only display network IDs.
    #[arg(short = 'q', long)]
    pub quiet: bool,
}

/// Flags of `network inspect`.
#[derive(Args, Debug)]
pub struct InspectArgs {
    /// Format output using a custom template.
    #[arg(short = 'f', long)]
    pub format: Option<String>,
    /// Verbose output for diagnostics.
    #[arg(short = 'v', long)]
    pub verbose: bool,
    /// Networks.
    #[arg(required = true)]
    pub networks: Vec<String>,
}

/// Flags of `network create`.
#[derive(Args, Debug)]
pub struct CreateArgs {
    /// Driver to manage the Network.
    #[arg(short = 'd', long, default_value = "bridge")]
    pub driver: String,
    /// Subnet in CIDR format that represents a network segment.
    #[arg(long)]
    pub subnet: Vec<String>,
    /// Allocate container ip from a sub-range.
    #[arg(long = "ip-range")]
    pub ip_range: Vec<String>,
    /// IPv4 or IPv6 Gateway for the master subnet.
    #[arg(long)]
    pub gateway: Vec<String>,
    /// Restrict external access to the network.
    #[arg(long)]
    pub internal: bool,
    /// Set metadata on a network.
    #[arg(long)]
    pub label: Vec<String>,
    /// Set driver specific options.
    #[arg(short = 'o', long = "opt")]
    pub opt: Vec<String>,
    /// Enable manual container attachment.
    #[arg(long)]
    pub attachable: bool,
    /// Enable or disable IPv6 networking.
    #[arg(long, num_args = 0..=1, default_missing_value = "true", require_equals = true)]
    pub ipv6: Option<bool>,
    /// IP Address Management Driver.
    #[arg(long = "ipam-driver", default_value = "default")]
    pub ipam_driver: String,
    /// Set IPAM driver specific options.
    #[arg(long = "ipam-opt")]
    pub ipam_opt: Vec<String>,
    /// Network name.
    pub name: String,
}

/// Flags of `network rm`.
#[derive(Args, Debug)]
pub struct RmArgs {
    /// Do not error if the network does not exist.
    #[arg(short = 'f', long)]
    pub force: bool,
    /// Networks.
    #[arg(required = true)]
    pub networks: Vec<String>,
}

/// Flags of `network prune`.
#[derive(Args, Debug)]
pub struct PruneArgs {
    /// Do not prompt for confirmation.
    #[arg(short = 'f', long)]
    pub force: bool,
    /// Provide filter values (e.g. "until=<timestamp>").
    #[arg(long)]
    pub filter: Vec<String>,
}

/// Flags of `network connect`.
#[derive(Args, Debug)]
pub struct ConnectArgs {
    /// IPv4 address (e.g., "172.30.100.104").
    #[arg(long)]
    pub ip: Option<String>,
    /// IPv6 address (e.g., "2001:db8::33").
    #[arg(long)]
    pub ip6: Option<String>,
    /// Add network-scoped alias for the container.
    #[arg(long)]
    pub alias: Vec<String>,
    /// Add link to another container.
    #[arg(long)]
    pub link: Vec<String>,
    /// Driver options for the network.
    #[arg(long = "driver-opt")]
    pub driver_opt: Vec<String>,
    /// The network.
    pub network: String,
    /// The container.
    pub container: String,
}

/// Flags of `network disconnect`.
#[derive(Args, Debug)]
pub struct DisconnectArgs {
    /// Force the container to disconnect from a network.
    #[arg(short = 'f', long)]
    pub force: bool,
    /// The network.
    pub network: String,
    /// The container.
    pub container: String,
}

/// Flags of `port`.
#[derive(Args, Debug)]
pub struct PortArgs {
    /// The container.
    pub container: String,
    /// PRIVATE_PORT[/PROTO].
    pub port: Option<String>,
}

/// Dispatches `network` subcommands.
pub async fn network(client: &Client, cmd: NetworkCommand) -> Result<ExitCode> {
    match cmd {
        NetworkCommand::Connect(a) => connect(client, &a).await,
        NetworkCommand::Create(a) => create(client, &a).await,
        NetworkCommand::Disconnect(a) => disconnect(client, &a).await,
        NetworkCommand::Inspect(a) => inspect(client, &a).await,
        NetworkCommand::Ls(a) => ls(client, &a).await,
        NetworkCommand::Prune(a) => prune(client, &a).await,
        NetworkCommand::Rm(a) => rm(client, &a).await,
    }
}

/// Docker's natural sort order (`sortorder.NaturalLess`): digit runs compare as numbers.
fn natural_less(a: &str, b: &str) -> std::cmp::Ordering {
    let (mut x, mut y) = (a.as_bytes(), b.as_bytes());
    loop {
        match (x.first(), y.first()) {
            (None, None) => return std::cmp::Ordering::Equal,
            (None, _) => return std::cmp::Ordering::Less,
            (_, None) => return std::cmp::Ordering::Greater,
            (Some(c), Some(d)) if c.is_ascii_digit() && d.is_ascii_digit() => {
                let n = x.iter().take_while(|b| b.is_ascii_digit()).count();
                let m = y.iter().take_while(|b| b.is_ascii_digit()).count();
                let (p, q) = (&x[..n], &y[..m]);
                let strip = |s: &[u8]| -> Vec<u8> { s.iter().skip_while(|b| **b == b'0').copied().collect() };
                let (sp, sq) = (strip(p), strip(q));
                let ord = sp.len().cmp(&sq.len()).then_with(|| sp.cmp(&sq)).then_with(|| n.cmp(&m));
                if ord != std::cmp::Ordering::Equal {
                    return ord;
                }
                x = &x[n..];
                y = &y[m..];
            }
            (Some(c), Some(d)) => {
                if c != d {
                    return c.cmp(d);
                }
                x = &x[1..];
                y = &y[1..];
            }
        }
    }
}

/// A network ID as `network ls` shows it: 12 characters unless `--no-trunc`.
fn display_id(id: &str, no_trunc: bool) -> String {
    if no_trunc {
        id.to_string()
    } else {
        id.chars().take(12).collect()
    }
}

/// One `network ls` row's fields, named as docker's `--format` names them.
pub fn ls_row(n: &Network, no_trunc: bool) -> Value {
    let id = display_id(&n.id, no_trunc);
    let labels: Vec<String> = n.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let created = chrono::DateTime::parse_from_rfc3339(&n.created).map(|t| go_time(t.timestamp())).unwrap_or_default();
    json!({
        "ID": id,
        "Name": n.name,
        "Driver": n.driver,
        "Scope": n.scope,
        "IPv4": n.enable_ipv4.to_string(),
        "IPv6": n.enable_ipv6.to_string(),
        "Internal": n.internal.to_string(),
        "Labels": labels.join(","),
        "CreatedAt": created,
    })
}

fn ls_header() -> Value {
    json!({
        "ID": "NETWORK ID", "Name": "NAME", "Driver": "DRIVER", "Scope": "SCOPE", "IPv4": "IPV4", "IPv6": "IPV6",
        "Internal": "INTERNAL", "Labels": "LABELS", "CreatedAt": "CREATED AT",
    })
}

/// `berth network ls`.
pub async fn ls(client: &Client, args: &LsArgs) -> Result<ExitCode> {
    let filters = parse_filters(&args.filter)?;
    let mut path = "/networks".to_string();
    if !filters.is_empty() {
        path.push_str(&format!("?filters={}", enc(&filters.to_string())));
    }
    let mut list: Vec<Network> = client.get_typed(&path).await?;
    list.sort_by(|a, b| natural_less(&a.name, &b.name));
    if args.quiet && args.format.is_none() {
        for n in &list {
            println!("{}", display_id(&n.id, args.no_trunc));
        }
        return Ok(ExitCode::SUCCESS);
    }
    let default = "table {{.ID}}\t{{.Name}}\t{{.Driver}}\t{{.Scope}}";
    let format = Format::parse(args.format.as_deref().filter(|f| !f.is_empty() && *f != "table").unwrap_or(default))?;
    let rows: Vec<Value> = list.iter().map(|n| ls_row(n, args.no_trunc)).collect();
    print!("{}", format.render_rows(&ls_header(), &rows)?);
    Ok(ExitCode::SUCCESS)
}

/// `berth network inspect`: prints what was found, then the errors, as docker does.
pub async fn inspect(client: &Client, args: &InspectArgs) -> Result<ExitCode> {
    let verbose = if args.verbose { "?verbose=1" } else { "" };
    super::client::inspect_each(client, &args.networks, args.format.as_deref(), |n| format!("/networks/{}{verbose}", enc(n))).await
}

/// `KEY=VALUE` pairs of repeated flags (`--label`, `-o`); a bare key has an empty value.
fn key_values(list: &[String], flag: &str) -> Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for item in list {
        let (k, v) = item.split_once('=').unwrap_or((item.as_str(), ""));
        if k.is_empty() {
            bail!("invalid argument \"{item}\" for \"{flag}\" flag: empty key");
        }
        out.insert(k.to_string(), v.to_string());
    }
    Ok(out)
}

/// A CIDR's network address and prefix, for containment checks.
fn parse_cidr(s: &str) -> Option<(IpAddr, u8)> {
    let (addr, len) = s.split_once('/')?;
    let addr: IpAddr = addr.parse().ok()?;
    let len: u8 = len.parse().ok()?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    (len <= max).then_some((addr, len))
}

fn ip_bits(ip: IpAddr) -> (u128, u8) {
    match ip {
        IpAddr::V4(a) => (u128::from(u32::from(a)), 32),
        IpAddr::V6(a) => (u128::from(a), 128),
    }
}

/// Whether `ip` lies in `net/len` (same family only).
fn cidr_contains(net: (IpAddr, u8), ip: IpAddr) -> bool {
    if net.0.is_ipv4() != ip.is_ipv4() {
        return false;
    }
    let (n, width) = ip_bits(net.0);
    let (a, _) = ip_bits(ip);
    let shift = u32::from(width - net.1.min(width));
    if shift >= 128 {
        return true;
    }
    (n >> shift) == (a >> shift)
}

/// Docker's `consolidateIpam`: each `--ip-range` and `--gateway` goes to the
/// `--subnet` that contains it; subnets must not overlap. Errors are the
/// docker CLI's own (it refuses before asking the daemon).
pub fn consolidate_ipam(subnets: &[String], ranges: &[String], gateways: &[String]) -> Result<Vec<IpamConfigRequest>> {
    if subnets.is_empty() && (!ranges.is_empty() || !gateways.is_empty()) {
        bail!("every ip-range or gateway must have a corresponding subnet");
    }
    let mut parsed = Vec::new();
    for s in subnets {
        let net = parse_cidr(s).ok_or_else(|| anyhow!("invalid CIDR address: {s}"))?;
        for (other, o) in &parsed {
            if cidr_contains(*o, net.0) || cidr_contains(net, o.0) {
                bail!("multiple overlapping subnet configuration is not supported ({other} and {s})");
            }
        }
        parsed.push((s.clone(), net));
    }
    let mut entries: Vec<IpamConfigRequest> =
        parsed.iter().map(|(s, _)| IpamConfigRequest { subnet: Some(s.clone()), ..Default::default() }).collect();
    for r in ranges {
        let range = parse_cidr(r).ok_or_else(|| anyhow!("invalid CIDR address: {r}"))?;
        let i = parsed
            .iter()
            .position(|(_, net)| cidr_contains(*net, range.0) && range.1 >= net.1)
            .ok_or_else(|| anyhow!("no matching subnet for range {r}"))?;
        if let Some(old) = entries[i].ip_range.replace(r.clone()) {
            bail!("cannot configure multiple ranges ({r}, {old}) on the same subnet ({})", parsed[i].0);
        }
    }
    for g in gateways {
        let ip: IpAddr = g.parse().map_err(|_| anyhow!("invalid gateway address: {g}"))?;
        let i = parsed
            .iter()
            .position(|(_, net)| cidr_contains(*net, ip))
            .ok_or_else(|| anyhow!("no matching subnet for gateway {g}"))?;
        if let Some(old) = entries[i].gateway.replace(g.clone()) {
            bail!("cannot configure multiple gateways ({g}, {old}) for the same subnet ({})", parsed[i].0);
        }
    }
    Ok(entries)
}

/// `berth network create`.
pub async fn create(client: &Client, args: &CreateArgs) -> Result<ExitCode> {
    let config = consolidate_ipam(&args.subnet, &args.ip_range, &args.gateway)?;
    let body = NetworkCreateRequest {
        name: Some(args.name.clone()),
        driver: Some(args.driver.clone()),
        enable_ipv6: args.ipv6,
        ipam: Some(IpamRequest {
            driver: Some(args.ipam_driver.clone()),
            config: Some(config),
            options: Some(key_values(&args.ipam_opt, "--ipam-opt")?),
        }),
        internal: Some(args.internal),
        attachable: Some(args.attachable),
        options: Some(key_values(&args.opt, "-o, --opt")?),
        labels: Some(key_values(&args.label, "--label")?),
        ..Default::default()
    };
    let resp: NetworkCreateResponse = client.post_typed("/networks/create", &body).await?;
    if !resp.warning.is_empty() {
        eprintln!("{}", resp.warning);
    }
    if resp.id.is_empty() {
        bail!("the daemon's answer has no network Id");
    }
    println!("{}", resp.id);
    Ok(ExitCode::SUCCESS)
}

/// `berth network rm`: each name in turn; `-f` passes over missing networks.
pub async fn rm(client: &Client, args: &RmArgs) -> Result<ExitCode> {
    super::client::each(client, &args.networks, Method::DELETE, args.force, |n| format!("/networks/{}", enc(n))).await
}

/// `berth network prune`.
pub async fn prune(client: &Client, args: &PruneArgs) -> Result<ExitCode> {
    if !args.force {
        if !super::format::confirm("WARNING! This will remove all custom networks not used by at least one container.")? {
            // docker: declining is not an error, nothing is removed.
            return Ok(ExitCode::SUCCESS);
        }
    }
    let filters = parse_filters(&args.filter)?;
    let path = if !filters.is_empty() {
        format!("/networks/prune?filters={}", enc(&filters.to_string()))
    } else {
        "/networks/prune".to_string()
    };
    let report: NetworkPruneResponse = client.typed(Method::POST, &path).await?;
    if !report.networks_deleted.is_empty() {
        println!("Deleted Networks:");
        for n in &report.networks_deleted {
            println!("{n}");
        }
        println!();
    }
    Ok(ExitCode::SUCCESS)
}

/// Checks an IPv4 address flag (`--ip`).
fn ipv4_flag(ip: &str) -> Result<String> {
    match ip.parse::<IpAddr>() {
        Ok(IpAddr::V4(_)) => Ok(ip.to_string()),
        _ => bail!("invalid IPv4 address: {ip}"),
    }
}

/// Checks an IPv6 address flag (`--ip6`).
fn ipv6_flag(ip: &str) -> Result<String> {
    match ip.parse::<IpAddr>() {
        Ok(IpAddr::V6(_)) => Ok(ip.to_string()),
        _ => bail!("invalid IPv6 address: {ip}"),
    }
}

/// Docker's `ValidateLink`: `name` or `name:alias`.
fn link_flag(link: &str) -> Result<String> {
    let parts: Vec<&str> = link.split(':').collect();
    if parts.len() > 2 || parts.iter().any(|p| p.is_empty()) {
        bail!("invalid argument \"{link}\" for \"--link\" flag: bad format for links: {link}");
    }
    Ok(link.to_string())
}

/// `network connect`'s endpoint settings.
fn connect_settings(args: &ConnectArgs) -> Result<EndpointSettings> {
    let mut s = EndpointSettings::default();
    if args.ip.is_some() || args.ip6.is_some() {
        s.ipam_config = Some(EndpointIpamConfig {
            ipv4_address: args.ip.as_deref().map(ipv4_flag).transpose()?.unwrap_or_default(),
            ipv6_address: args.ip6.as_deref().map(ipv6_flag).transpose()?.unwrap_or_default(),
        });
    }
    if !args.alias.is_empty() {
        s.aliases = Some(args.alias.clone());
    }
    if !args.link.is_empty() {
        s.links = Some(args.link.iter().map(|l| link_flag(l)).collect::<Result<_>>()?);
    }
    if !args.driver_opt.is_empty() {
        s.driver_opts = Some(key_values(&args.driver_opt, "--driver-opt")?);
    }
    Ok(s)
}

/// `berth network connect`.
pub async fn connect(client: &Client, args: &ConnectArgs) -> Result<ExitCode> {
    let settings = connect_settings(args)?;
    let body = NetworkConnectRequest { container: Some(args.container.clone()), endpoint_config: Some(settings) };
    client.post_ignoring_answer(&format!("/networks/{}/connect", enc(&args.network)), &body).await?;
    Ok(ExitCode::SUCCESS)
}

/// `berth network disconnect`.
pub async fn disconnect(client: &Client, args: &DisconnectArgs) -> Result<ExitCode> {
    let body = NetworkDisconnectRequest { container: Some(args.container.clone()), force: Some(args.force) };
    client.post_ignoring_answer(&format!("/networks/{}/disconnect", enc(&args.network)), &body).await?;
    Ok(ExitCode::SUCCESS)
}

/// `host:port` as Go's `net.JoinHostPort` writes it (IPv6 in brackets).
fn join_host_port(host: &str, port: &str) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// The lines `berth port` prints for a container's `NetworkSettings.Ports`.
pub fn port_lines(ports: &PortMap, container: &str, filter: Option<&str>) -> Result<Vec<String>> {
    let mut out = Vec::new();
    let binding = |b: &PortBinding| join_host_port(&b.host_ip, &b.host_port);
    match filter {
        Some(spec) => {
            let (port, proto) = spec.split_once('/').unwrap_or((spec, "tcp"));
            let proto = if proto.is_empty() { "tcp" } else { proto };
            if port.parse::<u16>().is_err() {
                bail!("Error: invalid port ({port})");
            }
            let frontends = ports.get(&format!("{port}/{proto}")).and_then(Option::as_ref).filter(|a| !a.is_empty());
            let Some(frontends) = frontends else {
                bail!("Error: No public port '{spec}' published for {container}");
            };
            out.extend(frontends.iter().map(binding));
        }
        None => {
            for (from, frontends) in ports {
                for b in frontends.iter().flatten() {
                    out.push(format!("{from} -> {}", binding(b)));
                }
            }
        }
    }
    out.sort_by(|a, b| natural_less(a, b));
    Ok(out)
}

/// `berth port CONTAINER [PRIVATE_PORT[/PROTO]]`.
pub async fn port(client: &Client, args: &PortArgs) -> Result<ExitCode> {
    let v: ContainerInspect = client.get_typed(&format!("/containers/{}/json", enc(&args.container))).await?;
    let lines = port_lines(&v.network_settings.ports, &args.container, args.port.as_deref())?;
    if !lines.is_empty() {
        println!("{}", lines.join("\n"));
    }
    Ok(ExitCode::SUCCESS)
}

/// The network flags of `create` and `run` (besides `--network`, which
/// `CreateFlags` has).
#[derive(Args, Debug, Default, Clone)]
pub struct NetFlags {
    /// IPv4 address (e.g., 172.30.100.104).
    #[arg(long)]
    pub ip: Option<String>,
    /// IPv6 address (e.g., 2001:db8::33).
    #[arg(long)]
    pub ip6: Option<String>,
    /// Add network-scoped alias for the container.
    #[arg(long = "network-alias", visible_alias = "net-alias")]
    pub network_alias: Vec<String>,
    /// Add link to another container.
    #[arg(long)]
    pub link: Vec<String>,
    /// Publish a container's port(s) to the host.
    #[arg(short = 'p', long)]
    pub publish: Vec<String>,
    /// Publish all exposed ports to random ports.
    #[arg(short = 'P', long = "publish-all")]
    pub publish_all: bool,
    /// Expose a port or a range of ports.
    #[arg(long)]
    pub expose: Vec<String>,
    /// Container MAC address (e.g., 92:d0:c6:0a:29:33).
    #[arg(long = "mac-address")]
    pub mac_address: Option<String>,
    /// Set custom DNS servers.
    #[arg(long)]
    pub dns: Vec<String>,
    /// Set custom DNS search domains.
    #[arg(long = "dns-search")]
    pub dns_search: Vec<String>,
    /// Set DNS options.
    #[arg(long = "dns-option", visible_alias = "dns-opt")]
    pub dns_option: Vec<String>,
    /// Add a custom host-to-IP mapping (host:ip).
    #[arg(long = "add-host")]
    pub add_host: Vec<String>,
}

/// Docker's `ParsePortRange`: `80` or `8000-8010`.
fn port_range(s: &str) -> Option<(u16, u16)> {
    let (a, b) = s.split_once('-').unwrap_or((s, s));
    let (a, b): (u16, u16) = (a.parse().ok()?, b.parse().ok()?);
    (a <= b).then_some((a, b))
}

/// Docker's `nat.ParsePortSpec`: one `-p` value as `(port/proto, binding)` pairs.
pub fn parse_port_spec(spec: &str) -> Result<Vec<(String, PortBinding)>> {
    let parts: Vec<&str> = spec.split(':').collect();
    let n = parts.len();
    let (raw_ip, host_port, container) = match n {
        1 => (String::new(), "", parts[0]),
        2 => (String::new(), parts[0], parts[1]),
        3 => (parts[0].to_string(), parts[1], parts[2]),
        _ => (parts[..n - 2].join(":"), parts[n - 2], parts[n - 1]),
    };
    let (container, proto) = container.split_once('/').unwrap_or((container, "tcp"));
    let proto = proto.to_ascii_lowercase();
    let ip = raw_ip.strip_prefix('[').and_then(|s| s.strip_suffix(']')).unwrap_or(&raw_ip).to_string();
    if !ip.is_empty() && ip.parse::<IpAddr>().is_err() {
        bail!("invalid IP address: {ip}");
    }
    if container.is_empty() {
        bail!("no port specified: {spec}<empty>");
    }
    let (start, end) = port_range(container).ok_or_else(|| anyhow!("invalid containerPort: {container}"))?;
    let host = if host_port.is_empty() {
        None
    } else {
        Some(port_range(host_port).ok_or_else(|| anyhow!("invalid hostPort: {host_port}"))?)
    };
    if let Some((hs, he)) = host {
        if end - start != he - hs && end != start {
            bail!("invalid ranges specified for container and host Ports: {container} and {host_port}");
        }
    }
    if !matches!(proto.as_str(), "tcp" | "udp" | "sctp") {
        bail!("invalid proto: {proto}");
    }
    let mut out = Vec::new();
    for i in 0..=(end - start) {
        let host_port = match host {
            None => String::new(),
            // A single container port with a host range: the engine picks one port of the range.
            Some((hs, he)) if start == end && hs != he => format!("{hs}-{he}"),
            Some((hs, _)) => (hs + i).to_string(),
        };
        out.push((format!("{}/{proto}", start + i), PortBinding { host_ip: ip.clone(), host_port }));
    }
    Ok(out)
}

/// `--expose 80`, `--expose 7000-7010/udp`.
fn parse_expose(spec: &str) -> Result<Vec<String>> {
    let (port, proto) = spec.split_once('/').unwrap_or((spec, "tcp"));
    let (start, end) = port_range(port)
        .ok_or_else(|| anyhow!("invalid range format for --expose: {spec}, error: invalid port range {port:?}"))?;
    Ok((start..=end).map(|p| format!("{p}/{}", proto.to_ascii_lowercase())).collect())
}

/// Docker's `ValidateExtraHost`: `name:ip` or `name=ip`, ip may be `host-gateway`.
fn add_host_flag(h: &str) -> Result<String> {
    let (name, ip) =
        h.split_once('=').or_else(|| h.split_once(':')).ok_or_else(|| anyhow!("bad format for add-host: {h:?}"))?;
    let bare = ip.strip_prefix('[').and_then(|s| s.strip_suffix(']')).unwrap_or(ip);
    if name.is_empty() || (bare != "host-gateway" && bare.parse::<IpAddr>().is_err()) {
        bail!("invalid IP address in add-host: {ip:?}");
    }
    Ok(format!("{name}:{bare}"))
}

/// Docker's `ValidateMACAddress`.
fn mac_flag(mac: &str) -> Result<String> {
    let parts: Vec<&str> = mac.split(':').collect();
    if parts.len() != 6 || parts.iter().any(|p| p.len() != 2 || !p.bytes().all(|b| b.is_ascii_hexdigit())) {
        bail!("{mac} is not a valid mac address");
    }
    Ok(mac.to_string())
}

/// One `--network` value: a name, or the advanced `name=n,alias=a,ip=...` form.
fn network_attachment(value: &str) -> Result<(String, EndpointSettings)> {
    if !value.contains('=') {
        return Ok((value.to_string(), EndpointSettings::default()));
    }
    let mut target = String::new();
    let mut s = EndpointSettings::default();
    let mut ipam = EndpointIpamConfig::default();
    for field in value.split(',') {
        let (k, v) =
            field.split_once('=').ok_or_else(|| anyhow!("invalid field '{field}' must be a key=value pair"))?;
        match k.to_ascii_lowercase().as_str() {
            "name" => target = v.to_string(),
            "alias" => s.aliases.get_or_insert_with(Vec::new).push(v.to_string()),
            "ip" => ipam.ipv4_address = ipv4_flag(v)?,
            "ip6" => ipam.ipv6_address = ipv6_flag(v)?,
            "mac-address" => s.mac_address = mac_flag(v)?,
            "driver-opt" => {
                let (dk, dv) = v.split_once('=').unwrap_or((v, ""));
                s.driver_opts.get_or_insert_with(BTreeMap::new).insert(dk.to_string(), dv.to_string());
            }
            other => bail!("invalid field key {other}"),
        }
    }
    if target.is_empty() {
        bail!("network name not specified");
    }
    if ipam != EndpointIpamConfig::default() {
        s.ipam_config = Some(ipam);
    }
    Ok((target, s))
}

/// Whether a network mode names a user-defined network (Docker's `IsUserDefined`).
fn is_user_defined(mode: &str) -> bool {
    !matches!(mode, "default" | "bridge" | "host" | "none") && !mode.starts_with("container:")
}

/// Fills Config/HostConfig from the network flags and returns the
/// `NetworkingConfig`, as the docker CLI's `parseNetworkOpts` does: the
/// legacy flags (`--ip`, `--network-alias`, `--mac-address`, and `--link` on
/// a user-defined network) go to the first network's endpoint; `NetworkMode`
/// is the first network, `default` when none is given.
pub fn apply_network_flags(
    networks: &[String],
    f: &NetFlags,
    c: &mut ContainerConfig,
    h: &mut HostConfig,
) -> Result<NetworkingConfig> {
    let mut attachments = Vec::new();
    for n in networks {
        attachments.push(network_attachment(n)?);
    }
    let explicit = !attachments.is_empty();
    if !explicit {
        attachments.push(("default".to_string(), EndpointSettings::default()));
    }
    let mut endpoints = BTreeMap::new();
    let (mut user_defined, mut builtin) = (false, false);
    let count = attachments.len();
    for (i, (target, mut ep)) in attachments.into_iter().enumerate() {
        if is_user_defined(&target) {
            user_defined = true;
        } else {
            builtin = true;
        }
        if i == 0 {
            if !f.network_alias.is_empty() {
                if ep.aliases.is_some() {
                    bail!("conflicting options: cannot specify both --network-alias and per-network alias");
                }
                ep.aliases = Some(f.network_alias.clone());
            }
            if is_user_defined(&target) && !f.link.is_empty() {
                ep.links = Some(f.link.iter().map(|l| link_flag(l)).collect::<Result<_>>()?);
            }
            if f.ip.is_some() || f.ip6.is_some() {
                let ipam = ep.ipam_config.get_or_insert_with(Default::default);
                if let Some(ip) = &f.ip {
                    if !ipam.ipv4_address.is_empty() {
                        bail!("conflicting options: cannot specify both --ip and per-network IPv4 address");
                    }
                    ipam.ipv4_address = ipv4_flag(ip)?;
                }
                if let Some(ip) = &f.ip6 {
                    if !ipam.ipv6_address.is_empty() {
                        bail!("conflicting options: cannot specify both --ip6 and per-network IPv6 address");
                    }
                    ipam.ipv6_address = ipv6_flag(ip)?;
                }
            }
            if let Some(mac) = &f.mac_address {
                if !ep.mac_address.is_empty() {
                    bail!("conflicting options: cannot specify both --mac-address and per-network MAC address");
                }
                ep.mac_address = mac_flag(mac)?;
            }
        }
        if endpoints.contains_key(&target) {
            bail!("network {target:?} is specified multiple times");
        }
        // A lone network given without options sends no endpoint, as the
        // docker CLI does (without `--network` it always sends `default`'s).
        if explicit && i == 0 && count == 1 && ep == EndpointSettings::default() {
            h.network_mode = target;
            continue;
        }
        if i == 0 {
            h.network_mode = target.clone();
        }
        endpoints.insert(target, ep);
    }
    if user_defined && builtin {
        bail!("conflicting options: cannot attach both user-defined and non-user-defined network-modes");
    }
    if !f.network_alias.is_empty() && !is_user_defined(&h.network_mode) {
        bail!("network-scoped aliases are only supported for user-defined networks");
    }
    if !f.link.is_empty() {
        h.links = Some(f.link.iter().map(|l| link_flag(l)).collect::<Result<_>>()?);
    }
    let mut exposed = c.exposed_ports.take().unwrap_or_default();
    let mut bindings: PortMap = BTreeMap::new();
    for p in &f.publish {
        for (port, binding) in
            parse_port_spec(p).map_err(|e| anyhow!("invalid argument \"{p}\" for \"-p, --publish\" flag: {e}"))?
        {
            exposed.entry(port.clone()).or_default();
            bindings.entry(port).or_insert_with(|| Some(Vec::new())).get_or_insert_with(Vec::new).push(binding);
        }
    }
    for e in &f.expose {
        for port in parse_expose(e)? {
            exposed.entry(port).or_default();
        }
    }
    if !exposed.is_empty() {
        c.exposed_ports = Some(exposed);
    }
    if !bindings.is_empty() {
        h.port_bindings = Some(bindings);
    }
    h.publish_all_ports = f.publish_all;
    for d in &f.dns {
        if d.parse::<IpAddr>().is_err() {
            bail!("invalid argument \"{d}\" for \"--dns\" flag: {d} is not an ip address");
        }
    }
    let list = |v: &Vec<String>| if v.is_empty() { None } else { Some(v.clone()) };
    h.dns = list(&f.dns);
    h.dns_search = list(&f.dns_search);
    h.dns_options = list(&f.dns_option);
    if !f.add_host.is_empty() {
        h.extra_hosts = Some(f.add_host.iter().map(|a| add_host_flag(a)).collect::<Result<_>>()?);
    }
    Ok(NetworkingConfig { endpoints_config: endpoints })
}

/// Docker's `DisplayablePorts`: the `PORTS` column of `ps` from a summary's
/// `Ports`, consecutive ports grouped into ranges (`0.0.0.0:80-81->80-81/tcp`).
pub fn displayable_ports(ports: &[Port]) -> String {
    struct P {
        ip: String,
        private: u16,
        public: u16,
        proto: String,
    }
    let mut list: Vec<P> = ports
        .iter()
        .map(|p| P {
            ip: p.ip.clone().unwrap_or_default(),
            private: p.private_port,
            public: p.public_port.unwrap_or(0),
            proto: p.kind.clone(),
        })
        .collect();
    list.sort_by(|a, b| {
        a.private
            .cmp(&b.private)
            .then_with(|| a.ip.cmp(&b.ip))
            .then_with(|| a.public.cmp(&b.public))
            .then_with(|| a.proto.cmp(&b.proto))
    });
    let form = |key: &str, first: u16, last: u16| -> String {
        let (ip, proto) = key.rsplit_once('/').map(|(i, p)| (i.to_string(), p)).unwrap_or((String::new(), key));
        let mut group = first.to_string();
        if first != last {
            group = format!("{group}-{last}");
        }
        if !ip.is_empty() {
            group = format!("{}->{group}", join_host_port(&ip, &group));
        }
        format!("{group}/{proto}")
    };
    let mut groups: Vec<(String, u16, u16)> = Vec::new();
    let mut result = Vec::new();
    let mut mappings = Vec::new();
    for p in &list {
        let mut key = p.proto.clone();
        if !p.ip.is_empty() {
            if p.public != p.private {
                mappings.push(format!("{}->{}/{}", join_host_port(&p.ip, &p.public.to_string()), p.private, p.proto));
                continue;
            }
            key = format!("{}/{}", p.ip, p.proto);
        }
        match groups.iter_mut().find(|g| g.0 == key) {
            None => groups.push((key, p.private, p.private)),
            Some(g) if p.private == g.2.wrapping_add(1) => g.2 = p.private,
            Some(g) => {
                result.push(form(&g.0, g.1, g.2));
                g.1 = p.private;
                g.2 = p.private;
            }
        }
    }
    for (key, first, last) in &groups {
        result.push(form(key, *first, *last));
    }
    result.extend(mappings);
    result.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn binding(ip: &str, port: &str) -> PortBinding {
        PortBinding { host_ip: ip.into(), host_port: port.into() }
    }

    #[test]
    fn publish_specs_parse_like_docker() {
        assert_eq!(parse_port_spec("18080:80").unwrap(), vec![("80/tcp".to_string(), binding("", "18080"))]);
        assert_eq!(parse_port_spec("80").unwrap(), vec![("80/tcp".to_string(), binding("", ""))]);
        assert_eq!(
            parse_port_spec("127.0.0.1::53/udp").unwrap(),
            vec![("53/udp".to_string(), binding("127.0.0.1", ""))]
        );
        assert_eq!(parse_port_spec("[::1]:8080:80").unwrap(), vec![("80/tcp".to_string(), binding("::1", "8080"))]);
        assert_eq!(
            parse_port_spec("8000-8001:80-81").unwrap(),
            vec![("80/tcp".to_string(), binding("", "8000")), ("81/tcp".to_string(), binding("", "8001"))]
        );
        assert_eq!(parse_port_spec("8000-8010:80").unwrap(), vec![("80/tcp".to_string(), binding("", "8000-8010"))]);
        for bad in ["", "x:80", "80:x", "1.2.3.999:80:80", "80/icmp", "8000-8002:80-81", "70000"] {
            assert!(parse_port_spec(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn run_flags_fill_bindings_exposed_ports_and_endpoints() {
        let f = NetFlags {
            ip: Some("172.72.0.9".into()),
            network_alias: vec!["svc".into()],
            link: vec!["db:mysql".into()],
            publish: vec!["18080:80".into()],
            expose: vec!["7000-7001/udp".into()],
            dns: vec!["10.0.0.2".into()],
            add_host: vec!["h=10.0.0.3".into()],
            ..Default::default()
        };
        let (mut c, mut h) = (ContainerConfig::default(), HostConfig::default());
        let n = apply_network_flags(&["n1".to_string()], &f, &mut c, &mut h).unwrap();
        assert_eq!(h.network_mode, "n1");
        let ep = &n.endpoints_config["n1"];
        assert_eq!(ep.ipam_config.as_ref().unwrap().ipv4_address, "172.72.0.9");
        assert_eq!(ep.aliases, Some(vec!["svc".to_string()]));
        assert_eq!(ep.links, Some(vec!["db:mysql".to_string()]));
        assert_eq!(h.links, Some(vec!["db:mysql".to_string()]));
        assert_eq!(h.port_bindings.as_ref().unwrap()["80/tcp"], Some(vec![binding("", "18080")]));
        let exposed = c.exposed_ports.unwrap();
        assert!(exposed.contains_key("80/tcp") && exposed.contains_key("7000/udp") && exposed.contains_key("7001/udp"));
        assert_eq!(h.dns, Some(vec!["10.0.0.2".to_string()]));
        assert_eq!(h.extra_hosts, Some(vec!["h:10.0.0.3".to_string()]));
    }

    #[test]
    fn default_network_links_are_legacy_links_only() {
        let f = NetFlags { link: vec!["db:mysql".into()], ..Default::default() };
        let (mut c, mut h) = (ContainerConfig::default(), HostConfig::default());
        let n = apply_network_flags(&[], &f, &mut c, &mut h).unwrap();
        assert_eq!(h.network_mode, "default");
        assert_eq!(n.endpoints_config.get("default"), Some(&EndpointSettings::default()), "{n:?}");
        assert_eq!(h.links, Some(vec!["db:mysql".to_string()]));
    }

    #[test]
    fn bad_network_flags_are_errors() {
        let cases = [
            (vec!["n1"], NetFlags { ip: Some("300.1.1.1".into()), ..Default::default() }),
            (vec!["n1"], NetFlags { mac_address: Some("zz".into()), ..Default::default() }),
            (vec!["n1"], NetFlags { dns: vec!["dns.example".into()], ..Default::default() }),
            (vec!["n1"], NetFlags { add_host: vec!["nohost".into()], ..Default::default() }),
            (vec!["n1"], NetFlags { link: vec!["a:b:c".into()], ..Default::default() }),
            (vec!["n1", "host"], NetFlags::default()),
            (vec!["n1", "n1"], NetFlags::default()),
            (vec![], NetFlags { network_alias: vec!["svc".into()], ..Default::default() }),
            (vec!["bridge"], NetFlags { network_alias: vec!["svc".into()], ..Default::default() }),
        ];
        for (nets, f) in cases {
            let nets: Vec<String> = nets.into_iter().map(String::from).collect();
            let (mut c, mut h) = (ContainerConfig::default(), HostConfig::default());
            assert!(apply_network_flags(&nets, &f, &mut c, &mut h).is_err(), "{nets:?} {f:?}");
        }
    }

    #[test]
    fn ipam_consolidates_like_the_docker_cli() {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        let c = consolidate_ipam(&s(&["172.72.0.0/16"]), &s(&["172.72.0.0/24"]), &s(&["172.72.0.1"])).unwrap();
        assert_eq!(
            serde_json::to_value(&c).unwrap(),
            json!([{"Subnet": "172.72.0.0/16", "IPRange": "172.72.0.0/24", "Gateway": "172.72.0.1"}])
        );
        let e = consolidate_ipam(&s(&["172.72.0.0/16"]), &s(&["10.0.0.0/24"]), &[]).unwrap_err();
        assert_eq!(e.to_string(), "no matching subnet for range 10.0.0.0/24");
        let e = consolidate_ipam(&s(&["172.72.0.0/16"]), &[], &s(&["10.0.0.1"])).unwrap_err();
        assert_eq!(e.to_string(), "no matching subnet for gateway 10.0.0.1");
        assert!(consolidate_ipam(&s(&["10.0.0.0/8", "10.1.0.0/16"]), &[], &[]).is_err());
        assert!(consolidate_ipam(&[], &s(&["10.0.0.0/24"]), &[]).is_err());
        assert!(consolidate_ipam(&s(&["10.0.0.0/33"]), &[], &[]).is_err());
    }

    #[test]
    fn ports_column_groups_like_docker_ps() {
        let ports = json!([
            {"IP": "0.0.0.0", "PrivatePort": 80, "PublicPort": 18080, "Type": "tcp"},
            {"PrivatePort": 7000, "Type": "udp"},
            {"PrivatePort": 7001, "Type": "udp"},
            {"IP": "0.0.0.0", "PrivatePort": 443, "PublicPort": 443, "Type": "tcp"},
            {"IP": "::", "PrivatePort": 80, "PublicPort": 18080, "Type": "tcp"},
        ]);
        let ports: Vec<Port> = serde_json::from_value(ports).unwrap();
        assert_eq!(
            displayable_ports(&ports),
            "0.0.0.0:443->443/tcp, 7000-7001/udp, 0.0.0.0:18080->80/tcp, [::]:18080->80/tcp"
        );
        assert_eq!(displayable_ports(&[]), "");
    }

    #[test]
    fn port_lines_match_docker_port() {
        let ports: PortMap =
            serde_json::from_value(json!({"80/tcp": [{"HostIp": "0.0.0.0", "HostPort": "18080"}], "53/udp": null})).unwrap();
        assert_eq!(port_lines(&ports, "web", None).unwrap(), vec!["80/tcp -> 0.0.0.0:18080"]);
        assert_eq!(port_lines(&ports, "web", Some("80")).unwrap(), vec!["0.0.0.0:18080"]);
        assert_eq!(
            port_lines(&ports, "web", Some("53/udp")).unwrap_err().to_string(),
            "Error: No public port '53/udp' published for web"
        );
        assert!(port_lines(&ports, "web", Some("x")).is_err());
    }

    #[test]
    fn network_names_sort_naturally() {
        let mut v = vec!["n10", "n2", "bridge", "host", "n1"];
        v.sort_by(|a, b| natural_less(a, b));
        assert_eq!(v, vec!["bridge", "host", "n1", "n2", "n10"]);
    }
}
